//! What users hold: the [`Client`], its [`Config`], lazy [`DataFrame`]s and
//! [`Future`]s, and the [`LocalCluster`] they run on.
//!
//! A client plans SQL into DataFusion logical plans without running them; a
//! [`DataFrame`] runs when it is collected or streamed: its physical plan is cut
//! into stages and submitted to the scheduler as tasks (see `query_planner`).

mod call;
mod config;
mod connection;
mod dataframe;
pub mod delayed;
mod functions;
mod future;
mod futures_api;
mod local_cluster;
mod query_planner;
mod report;
mod scatter;
mod scheduler_sql;
mod subqueries;
mod task_graph;

use std::sync::Arc;

use datafusion::prelude::SessionContext;

pub use crate::cluster::{Answer, ClusterInfo, Question, WorkerInfo, WorkerState};
pub use config::Config;
pub use dataframe::{Agg, DataFrame, GroupBy, How, Structure, TimeseriesBuilder};
pub use delayed::{Argument, CallArgs, Delayed, Function, IntoArg};
pub use future::{Future, FutureStatus};
pub use futures_api::{Compute, as_completed, gather, wait};
pub use local_cluster::{LocalCluster, LocalClusterBuilder};
pub use report::Report;
pub use scatter::Scatter;
pub use scheduler_sql::SchedulerSql;
pub use task_graph::TaskGraph;

use crate::cluster::ClusterLink;
use crate::error::Location;
use crate::{Error, Key, Result, exec};
use connection::Connection;
use query_planner::ClusterQueryPlanner;

/// How long [`Client::connect`] waits for a first worker to plan queries for.
const FIRST_WORKER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection to a rask cluster: the entry point for SQL and dataframes.
///
/// Cloning a client is cheap; clones share the session, its tables and the
/// cluster connection.
#[derive(Clone)]
pub struct Client {
    ctx: SessionContext,
    config: Config,
    connection: Arc<Connection>,
    local: Option<Arc<LocalCluster>>,
    /// The reports being recorded ([`Client::report`]).
    journals: report::Journals,
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.info().fmt(f)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish()
    }
}

impl Client {
    /// A client on an embedded local cluster sized from this machine.
    pub fn local() -> Result<Self> {
        Self::with_config(Config::default())
    }

    /// A client on an embedded local cluster configured by `config`.
    pub fn with_config(config: Config) -> Result<Self> {
        LocalCluster::builder().config(config).build()?.client()
    }

    pub(crate) fn connect_local(cluster: Arc<LocalCluster>) -> Result<Self> {
        let config = cluster.config().clone();
        let mut client = Self::over(Arc::clone(&cluster) as _, config)?;
        client.local = Some(cluster);
        Ok(client)
    }

    /// A client whose queries run through `link`, planned for a cluster of `config`'s size.
    pub(crate) fn over(link: Arc<dyn ClusterLink>, config: Config) -> Result<Self> {
        let connection = Connection::open(link);
        let planner = Arc::new(ClusterQueryPlanner::new(
            Arc::clone(&connection),
            config.registry.clone(),
        ));
        let ctx = exec::new_context(&config.session_options(), Some(planner))?;
        config.registry.install(&ctx);
        crate::datasets::install(&ctx);
        Ok(Self {
            ctx,
            config,
            connection,
            local: None,
            journals: report::Journals::default(),
        })
    }

    /// A client of the scheduler at `address` (`HOST:PORT`), as `rask scheduler`
    /// serves; `security` holds the token and TLS settings, if the cluster uses them.
    /// Queries are planned for the workers registered when it connects.
    ///
    /// ```no_run
    /// # async fn demo() -> rask::Result<()> {
    /// let client = rask::Client::connect("127.0.0.1:8786").await?;
    /// println!("{client}");
    /// # Ok(()) }
    /// ```
    pub async fn connect(address: &str) -> Result<Self> {
        Self::connect_with(address, crate::net::Security::from_env()?).await
    }

    /// [`connect`](Self::connect) with explicit token and TLS settings.
    pub async fn connect_with(address: &str, security: crate::net::Security) -> Result<Self> {
        Self::connect_with_registry(address, security, crate::udf::Registry::default()).await
    }

    /// [`connect_with`](Self::connect_with), with the UDFs and task functions
    /// of `registry` usable from this client. They run on the workers that
    /// announce them (a worker binary built with the same registry).
    pub async fn connect_with_registry(
        address: &str,
        security: crate::net::Security,
        registry: crate::udf::Registry,
    ) -> Result<Self> {
        let link = crate::comm::RemoteCluster::connect(address, security).await?;
        // Queries are planned for the workers there are: give the first a moment.
        let deadline = std::time::Instant::now() + FIRST_WORKER_WAIT;
        while link.info().workers.is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let info = link.info();
        if info.workers.is_empty() {
            tracing::warn!("no workers are registered with {address} yet: queries wait for them");
        }
        let (workers, threads) = info.shape();
        let config = Config {
            workers,
            threads,
            registry,
            ..Config::default()
        };
        Self::over(link, config)
    }

    /// Waits until the cluster has at least `n` workers, or `timeout` passes.
    pub async fn wait_for_workers(&self, n: usize, timeout: std::time::Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let have = self.info().workers.len();
            if have >= n {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Comm(format!(
                    "{have} of {n} workers registered after {timeout:?}"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The scheduler, its workers and the dashboard's address.
    pub fn info(&self) -> ClusterInfo {
        self.connection.cluster().info()
    }

    /// The dashboard's address, when the scheduler serves one.
    pub fn dashboard_link(&self) -> Option<String> {
        self.info().dashboard
    }

    /// How far each group of tasks on the cluster has come: the live groups in
    /// the order they started (a query's stages, a function's calls), then
    /// those that ended lately. What progress bars draw.
    pub async fn progress(&self) -> Result<Vec<crate::scheduler::GroupProgress>> {
        self.connection.progress().await
    }

    /// Every worker now: as registered, what it holds and does, and when it
    /// was last heard from. What `rask status` prints.
    pub async fn workers(&self) -> Result<Vec<WorkerState>> {
        self.connection.workers().await
    }

    /// Retires `workers` (their addresses, names or ids, as
    /// [`workers`](Self::workers) shows them) gracefully, as Dask's
    /// `retire_workers`: they take no new tasks, what only they hold is copied
    /// to other workers, then they close (and their nannies do not restart
    /// them). Returns once they have left the cluster, or after `patience`.
    pub async fn retire_workers(
        &self,
        workers: &[&str],
        patience: std::time::Duration,
    ) -> Result<Vec<crate::scheduler::WorkerId>> {
        let names = workers.iter().map(|w| w.to_string()).collect();
        let ids = self.connection.retire(names).await?;
        let deadline = std::time::Instant::now() + patience;
        while std::time::Instant::now() < deadline {
            let present = self.workers().await?;
            if !present.iter().any(|w| ids.contains(&w.info.id)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(ids)
    }

    /// The in-process cluster this client runs on; `None` for a remote one.
    pub fn local_cluster(&self) -> Option<&Arc<LocalCluster>> {
        self.local.as_ref()
    }

    /// The stages and tasks `sql` (one query) would run as.
    pub async fn explain(&self, sql: &str) -> Result<String> {
        self.sql(sql).await?.explain().await
    }

    /// Submits a graph of function tasks; returns futures of `wanted`, in order.
    pub fn submit_graph(&self, graph: TaskGraph, wanted: &[Key]) -> Vec<Future> {
        self.connection.submit(graph.tasks, wanted.to_vec())
    }

    /// Waits for every future and returns their data, in order; or the error
    /// of one that failed.
    pub async fn gather(&self, futures: &[Future]) -> Result<Vec<Arc<exec::TaskData>>> {
        self.connection.gather(futures).await
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The UDFs and task functions usable from this client.
    pub fn registry(&self) -> &crate::udf::Registry {
        &self.config.registry
    }

    /// Plans one SQL statement. Queries come back as a lazy [`DataFrame`];
    /// statements with effects (`CREATE EXTERNAL TABLE`, `SET`, …) take effect now.
    ///
    /// Errors carry the position in `sql` where DataFusion knows it
    /// ([`Error::location`]).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let frame = DataFrame::new(crate::error::catch_panics(self.ctx.sql(sql)).await??);
        self.journals.note(sql, &frame);
        Ok(frame)
    }

    /// The DataFusion session behind this client, for tools built on
    /// `SessionContext`. Tables registered there are visible to [`Client::sql`].
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }
}

/// An error in a script, placed in the script's own lines and columns.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {error}")]
pub struct ScriptError {
    /// Where the problem is: the exact spot when known, else the failing
    /// statement's first token.
    pub location: Location,
    /// What went wrong.
    pub error: Error,
}

impl ScriptError {
    /// Places `error`, raised by the statement starting at `start`, in the script.
    pub fn in_statement(error: Error, start: Location) -> Self {
        let location = error.location().map_or(start, |l| l.offset_by(start));
        Self { location, error }
    }

    /// Places an error that has its own location in the script (or none).
    pub fn in_script(error: Error) -> Self {
        Self {
            location: error.location().unwrap_or(Location::START),
            error,
        }
    }
}
