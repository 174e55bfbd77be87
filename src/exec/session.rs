//! The DataFusion session every rask query is planned and run in.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, DEFAULT_METADATA_CACHE_LIMIT, FileMetadataCache,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::{ObjectStores, ReclaimingPool};

/// The file-embedded metadata (Parquet footers and page indexes) every
/// session of this process has read, so that a new session (a thin client's
/// or a PostgreSQL connection's, on the scheduler) finds what those before it
/// read. An entry serves only while its file keeps the size and modification
/// time it was read with. Listings are not shared: a session sees the files
/// there are when it first lists a folder.
static FILE_METADATA: std::sync::LazyLock<Arc<FileMetadataCache>> =
    std::sync::LazyLock::new(|| {
        Arc::new(DefaultCache::new(DEFAULT_METADATA_CACHE_LIMIT).with_name("rask's file metadata"))
    });

/// What a session is set up with. The functions and tables of a session are
/// its caller's to register (`Registry::install`, `datasets::install`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// How many partitions DataFusion spreads a query over (at least 1): the
    /// task slots of the cluster that runs it.
    pub target_partitions: usize,
    /// Rows per record batch; `None` for DataFusion's default (8192).
    pub batch_size: Option<usize>,
    /// Bytes the session's sorts, joins and aggregations may hold before
    /// spilling (a [`ReclaimingPool`]); `None` for no bound.
    pub memory_limit: Option<usize>,
    /// Where queries spill; `None` for the system's temporary directory.
    pub local_directory: Option<std::path::PathBuf>,
}

/// Bytes of files one scan task reads at most, unless its session says
/// otherwise (`rask.scan_bytes_per_task`).
pub const SCAN_BYTES_PER_TASK: u64 = 256 << 20;

/// Bytes of a join's build side, by its statistics, up to which it is
/// broadcast (`datafusion.optimizer.hash_join_single_partition_threshold`;
/// DataFusion's own default is 1 MiB, for one process).
pub const BROADCAST_JOIN_BYTES: usize = 4 << 20;

/// Rows of a join's build side up to which it is broadcast
/// (`datafusion.optimizer.hash_join_single_partition_threshold_rows`;
/// DataFusion's own default is 131,072).
pub const BROADCAST_JOIN_ROWS: usize = 256 << 10;

/// The most tasks one query may run unless its session says otherwise.
pub const MAX_TASKS: usize = 100_000;

datafusion::common::extensions_options! {
    /// rask's own session settings, set like DataFusion's:
    /// `SET rask.max_tasks = 500000`.
    pub struct RaskOptions {
        /// The most tasks one query may run; a query that would run more is
        /// refused while it is planned, before any task starts.
        pub max_tasks: usize, default = MAX_TASKS
        /// Bytes of files (as stored) one task of a scan reads at most
        /// where the scan's output goes to an exchange: a larger scan is
        /// split into more tasks than the cluster has threads.
        pub scan_bytes_per_task: u64, default = SCAN_BYTES_PER_TASK
    }
}

impl datafusion::common::config::ConfigExtension for RaskOptions {
    const PREFIX: &'static str = "rask";
}

/// A session set up as `options` say: files and object-store URLs readable by
/// path (`SELECT * FROM 'data/*.parquet'`), cloud stores created on first use,
/// SQL positions kept for error messages, `rask.*` settings known, and memory
/// bounded. With a `query_planner`, physical plans are made by it (the
/// client's sessions lower them to tasks).
pub fn new_context(
    options: &SessionOptions,
    query_planner: Option<Arc<dyn QueryPlanner + Send + Sync>>,
) -> Result<SessionContext> {
    let mut session = SessionConfig::new()
        .with_target_partitions(options.target_partitions.max(1))
        .with_information_schema(true);
    if let Some(batch_size) = options.batch_size {
        session = session.with_batch_size(batch_size);
    }
    let settings = session.options_mut();
    settings.extensions.insert(RaskOptions::default());
    settings.sql_parser.collect_spans = true;
    // A partitioned hash join's dynamic filter waits for every partition's build
    // side; the partitions of a join run as separate tasks, not all at once.
    settings.optimizer.enable_join_dynamic_filter_pushdown = false;
    // A task reads exactly its partition's files: with work stealing, a scan
    // partition also reads files of siblings it finds unclaimed, which in a
    // task of its own (another process, or a rerun) means read twice or never.
    settings.execution.enable_file_stream_work_stealing = false;
    // A join's build side is collected whole by every task of its probe side
    // (a broadcast) up to these sizes, rather than both sides hash-shuffled:
    // between processes a shuffle moves the larger probe side across the
    // network, which costs more than sending a small build side to each task.
    settings.optimizer.hash_join_single_partition_threshold = BROADCAST_JOIN_BYTES;
    settings.optimizer.hash_join_single_partition_threshold_rows = BROADCAST_JOIN_ROWS;
    // Rows already hashed on some of a grouping's or join's keys stay where
    // they are (`Hash(a)` satisfies `Hash(a, b)`), however few the
    // partitions: between processes each repartition is a shuffle, a stage
    // boundary, which DataFusion's default (below 4 partitions, repartition)
    // weighs as one process's cheap one. TPC-H q18: 6 stages → 5.
    settings.optimizer.subset_repartition_threshold = 1;

    let mut runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(ObjectStores::new()))
        .with_cache_manager(
            CacheManagerConfig::default()
                .with_file_metadata_cache(Some(Arc::clone(&*FILE_METADATA) as _)),
        );
    if let Some(limit) = options.memory_limit {
        runtime = runtime.with_memory_pool(Arc::new(ReclaimingPool::new(limit)));
    }
    if let Some(directory) = &options.local_directory {
        let mode = DiskManagerMode::Directories(vec![directory.clone()]);
        runtime = runtime.with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode));
    }
    let mut state = SessionStateBuilder::new()
        .with_config(session)
        .with_runtime_env(runtime.build_arc()?)
        .with_default_features();
    if let Some(planner) = query_planner {
        state = state.with_query_planner(planner);
    }
    Ok(SessionContext::new_with_state(state.build()).enable_url_table())
}
