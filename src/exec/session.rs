//! The DataFusion session every rask query is planned and run in.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::ObjectStores;
use crate::client::Config;
use crate::datasets::TimeseriesFunction;

/// A session configured from `config`: `timeseries()` and the registry's
/// scalar UDFs registered, files and
/// object-store URLs readable by path (`SELECT * FROM 'data/*.parquet'`), cloud
/// The most tasks one query may run unless its session says otherwise.
pub const MAX_TASKS: usize = 100_000;

datafusion::common::extensions_options! {
    /// rask's own session settings, set like DataFusion's:
    /// `SET rask.max_tasks = 500000`.
    pub struct RaskOptions {
        /// The most tasks one query may run; a query that would run more is
        /// refused while it is planned, before any task starts.
        pub max_tasks: usize, default = MAX_TASKS
    }
}

impl datafusion::common::config::ConfigExtension for RaskOptions {
    const PREFIX: &'static str = "rask";
}

/// stores created on first use, SQL positions kept for error messages, and
/// memory bounded as `config.memory_limit` says. With a `query_planner`,
/// physical plans are made by it (the client's sessions lower them to tasks).
pub fn new_context(
    config: &Config,
    query_planner: Option<Arc<dyn QueryPlanner + Send + Sync>>,
) -> Result<SessionContext> {
    let mut session = SessionConfig::new()
        .with_target_partitions(config.total_threads().max(1))
        .with_information_schema(true);
    // Plans decoded here find the partition functions by name.
    session = session.with_extension(Arc::new(config.registry.clone()));
    if let Some(batch_size) = config.batch_size {
        session = session.with_batch_size(batch_size);
    }
    let options = session.options_mut();
    options.extensions.insert(RaskOptions::default());
    options.sql_parser.collect_spans = true;
    // A partitioned hash join's dynamic filter waits for every partition's build
    // side; the partitions of a join run as separate tasks, not all at once.
    options.optimizer.enable_join_dynamic_filter_pushdown = false;
    // A task reads exactly its partition's files: with work stealing, a scan
    // partition also reads files of siblings it finds unclaimed, which in a
    // task of its own (another process, or a rerun) means read twice or never.
    options.execution.enable_file_stream_work_stealing = false;

    let mut runtime =
        RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(ObjectStores::new()));
    if let Some(limit) = config.worker_memory_limit() {
        runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
    }
    if let Some(directory) = &config.local_directory {
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
    let ctx = SessionContext::new_with_state(state.build()).enable_url_table();
    ctx.register_udtf("timeseries", Arc::new(TimeseriesFunction));
    for udf in config.registry.scalars() {
        ctx.register_udf(udf.clone());
    }
    Ok(ctx)
}
