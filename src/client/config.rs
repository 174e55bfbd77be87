//! [`Config`]: how big the cluster is and how it runs queries.

use crate::{Error, Result};

/// Settings of a client and its cluster, with defaults from the machine. The CLI
/// fills the same struct from its flags.
///
/// ```
/// let config = rask::Config { threads: 2, ..Default::default() };
/// let client = rask::Client::with_config(config).unwrap();
/// assert_eq!(client.config().threads, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Workers of the local cluster. Default: 1.
    pub workers: usize,
    /// Task slots (threads) per worker. Default: the machine's cores.
    /// `workers × threads` is the number of partitions exchanges spread data over.
    pub threads: usize,
    /// Rows per record batch; `None` for DataFusion's default (8192).
    pub batch_size: Option<usize>,
    /// Bytes of memory each worker may hold (its queries' sorts, aggregations
    /// and joins, and the results it keeps, which spill to disk past 60 % of
    /// it); `None` (the default) for the machine's memory, or its container's
    /// limit when lower, divided among the workers; `Some(0)` for no limit.
    pub memory_limit: Option<usize>,
    /// Where queries spill; `None` for the system's temporary directory.
    pub local_directory: Option<std::path::PathBuf>,
    /// Scalar UDFs and task functions, usable from SQL, dataframes and tasks;
    /// workers in this process carry them too. Default: none.
    pub registry: crate::udf::Registry,
    /// Where a local cluster serves its dashboard (`HOST:PORT`, `:PORT`; port 0
    /// for any free one, a taken port falls back to a free one); `None` for
    /// none. Default: a free port of 127.0.0.1.
    pub dashboard: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workers: 1,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_size: None,
            memory_limit: None,
            local_directory: None,
            registry: crate::udf::Registry::default(),
            dashboard: Some("127.0.0.1:0".into()),
        }
    }
}

impl Config {
    /// Each worker's memory limit, as [`memory_limit`](Self::memory_limit)
    /// says; `None` for none.
    pub fn worker_memory_limit(&self) -> Option<usize> {
        match self.memory_limit {
            None => {
                let share = crate::worker::memory::available() / self.workers.max(1) as u64;
                Some(share as usize)
            }
            Some(0) => None,
            Some(bytes) => Some(bytes),
        }
    }

    /// What sessions of this cluster's client and workers are set up with.
    pub(crate) fn session_options(&self) -> crate::exec::SessionOptions {
        crate::exec::SessionOptions {
            target_partitions: self.total_threads(),
            batch_size: self.batch_size,
            memory_limit: self.worker_memory_limit(),
            local_directory: self.local_directory.clone(),
        }
    }

    /// Task slots in the whole cluster.
    pub fn total_threads(&self) -> usize {
        self.workers * self.threads
    }

    /// Checks the settings make sense.
    pub fn validate(&self) -> Result<()> {
        if self.threads == 0 {
            return Err(Error::Config("threads must be at least 1".into()));
        }
        if self.workers == 0 {
            return Err(Error::Config("workers must be at least 1".into()));
        }
        if self.batch_size == Some(0) {
            return Err(Error::Config("batch_size must be at least 1".into()));
        }
        Ok(())
    }
}
