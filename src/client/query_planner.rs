//! Lowering DataFusion plans onto the cluster.
//!
//! [`ClusterQueryPlanner`] is the `QueryPlanner` of every client's session: it
//! lets DataFusion plan and optimise as usual, cuts the physical plan into a
//! [`StageGraph`], and returns a [`ClusterExec`] in its place. Running a
//! partition of that node submits the graph (once) to the scheduler and streams
//! the result of the matching final task. So everything built on the session
//! (`sql`, `collect`, `CREATE TABLE AS`, `COPY`) runs as tasks on the cluster.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::display::{PlanType, StringifiedPlan};
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::explain::ExplainExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;
use parking_lot::Mutex;

use super::connection::Connection;
use super::{Future, functions, subqueries};
use crate::cluster::WorkerInfo;
use crate::exec::MapPartitionsPlanner;
use crate::key::Key;
use crate::planner::{StageGraph, Uncuttable, below_projections};
use crate::scheduler::TaskSpec;
use crate::udf::Registry;
use crate::worker::Job;

/// Plans queries as DataFusion does, then lowers them to tasks.
pub(crate) struct ClusterQueryPlanner {
    connection: Arc<Connection>,
    registry: Registry,
}

impl ClusterQueryPlanner {
    pub fn new(connection: Arc<Connection>, registry: Registry) -> Self {
        Self {
            connection,
            registry,
        }
    }

    /// `plan` as tasks on the cluster (a [`ClusterExec`]), or, where it must
    /// run here, in a [`ClientExec`] saying why (logged at `info`). Refused:
    /// a query of too many tasks, or calling a function no worker carries.
    fn lower(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &Arc<SessionConfig>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A statement that reads nothing (DDL done while it was planned, a
        // filter that is always false, `SELECT 1`, a count answered from the
        // files' statistics): no task to send, no round trip. Registered
        // functions still run on the workers that carry them.
        if reads_nothing(&plan) && functions::udfs_in(&plan, &self.registry).is_empty() {
            return Ok(Arc::new(ClientExec::new(plan, READS_NOTHING.into())));
        }
        match self.place(Arc::clone(&plan), config)? {
            Placement::Tasks {
                graph,
                merge,
                tasks,
            } => {
                if graph.only_reads_persisted() {
                    // The client reads the persisted partitions itself: no task to run.
                    return Ok(plan);
                }
                let mut cluster = ClusterExec::new(graph, tasks, Arc::clone(&self.connection));
                // A merge that stops at a row count (`LIMIT`) reads partitions
                // as they come: computing them a window at a time, it leaves
                // those it does not need unsubmitted.
                let rows = merge
                    .as_ref()
                    .and_then(|m| below_projections(m).downcast_ref::<CoalescePartitionsExec>())
                    .and_then(|m| m.fetch());
                if let Some(rows) = rows {
                    let threads: usize = self
                        .connection
                        .cluster()
                        .info()
                        .workers
                        .iter()
                        .map(|w| w.nthreads)
                        .sum();
                    cluster.submit_in_window(2 * threads.max(1), rows);
                }
                let cluster: Arc<dyn ExecutionPlan> = Arc::new(cluster);
                match merge {
                    Some(merge) => over_cluster(&merge, cluster),
                    None => Ok(cluster),
                }
            }
            Placement::Client(why) => {
                tracing::info!("this query runs in the client, not as tasks: {why}");
                Ok(Arc::new(ClientExec::new(plan, why)))
            }
        }
    }

    /// Where `plan` runs: as the tasks of its stages, or in the client (and
    /// why). On a local cluster every function runs in its tasks (the workers
    /// share this process); on a cluster of processes a closure no worker
    /// carries is refused by name, and a function of this session alone
    /// (`pg_catalog`'s) keeps the plan here.
    fn place(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &Arc<SessionConfig>,
    ) -> Result<Placement> {
        // The cluster as last heard, read once for the whole decision.
        let info = self.connection.cluster().info();
        let local = info.is_local();
        if !local && let Some(function) = functions::session_only(&plan, &self.registry) {
            if function.closure {
                return Err(DataFusionError::Plan(format!(
                    "function {} is not registered on any worker of the cluster: a closure \
                     runs only in this process; register it in the workers' binary \
                     (Registry::with_scalar, rask_cli::main_with) and in this client's registry",
                    function.name
                )));
            }
            return Ok(Placement::Client(format!(
                "it calls {}, a function of this session alone",
                function.name
            )));
        }
        let (graph, merge) = match cut(plan, Arc::clone(config)) {
            Ok(cut) => cut,
            Err(e) => return Ok(Placement::Client(e.to_string())),
        };
        let most = config
            .options()
            .extensions
            .get::<crate::exec::RaskOptions>()
            .map_or(crate::exec::MAX_TASKS, |options| options.max_tasks);
        if graph.task_count() > most {
            return Err(DataFusionError::Plan(format!(
                "this query would run {} tasks, more than {most} (fewer partitions, a coarser partition_freq, or SET rask.max_tasks = N allows more)",
                graph.task_count()
            )));
        }
        if graph.only_reads_persisted() {
            return Ok(Placement::Tasks {
                graph,
                merge,
                tasks: Vec::new(),
            });
        }
        let functions = self.functions(&graph, &info.workers)?;
        match self.connection.cluster().tasks(&graph) {
            Ok(mut tasks) => {
                needs(&mut tasks, &graph, &functions);
                Ok(Placement::Tasks {
                    graph,
                    merge,
                    tasks,
                })
            }
            // A node without a wire form: workers of another process cannot get it.
            Err(e) => Ok(Placement::Client(format!(
                "workers of another process cannot be sent its plan: {e}"
            ))),
        }
    }

    /// For each stage, the registered UDFs it calls. Refuses a stage none of
    /// `workers` can run.
    fn functions(&self, graph: &StageGraph, workers: &[WorkerInfo]) -> Result<Vec<Vec<String>>> {
        graph
            .stages
            .iter()
            .map(|stage| {
                let names = functions::udfs_in(&stage.plan, &self.registry);
                crate::cluster::check_carried(&names, workers)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                Ok(names.into_iter().collect())
            })
            .collect()
    }
}

/// Whether `plan` reads no data: every leaf is an empty relation or the
/// one row of a `SELECT` without `FROM` (or of values known at planning).
fn reads_nothing(plan: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
    match plan.children().as_slice() {
        [] => {
            plan.downcast_ref::<EmptyExec>().is_some()
                || plan.downcast_ref::<PlaceholderRowExec>().is_some()
        }
        children => children.iter().all(|child| reads_nothing(child)),
    }
}

impl fmt::Debug for ClusterQueryPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterQueryPlanner")
    }
}

#[async_trait]
impl QueryPlanner for ClusterQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(MapPartitionsPlanner)]);
        let plan = planner.create_physical_plan(logical, session).await?;
        let config = Arc::new(session.config().clone());
        if let LogicalPlan::Explain(explain) = logical {
            // EXPLAIN shows the stages the query would run as, after DataFusion's plans.
            let Some(exec) = plan.downcast_ref::<ExplainExec>() else {
                return Ok(plan);
            };
            let inner = planner.create_physical_plan(&explain.plan, session).await?;
            let stages = self.place(inner, &config)?.to_string();
            let mut rows = exec.stringified_plans().to_vec();
            rows.push(StringifiedPlan::new(PlanType::FinalPhysicalPlan, stages));
            return Ok(Arc::new(ExplainExec::new(
                exec.schema(),
                rows,
                exec.verbose(),
            )));
        }
        // Uncorrelated scalar subqueries run first, as queries of their own;
        // their values then travel with the stages that read them.
        let lower = |subquery| self.lower(subquery, &config);
        let plan = subqueries::resolve(plan, &lower, session).await?;
        self.lower(plan, &config)
    }
}

/// `plan` cut into stages for the cluster, with the final merge the client
/// runs over the last stage's outputs, if there is one.
pub(crate) fn cut(
    plan: Arc<dyn ExecutionPlan>,
    config: Arc<SessionConfig>,
) -> std::result::Result<(StageGraph, Option<Arc<dyn ExecutionPlan>>), Uncuttable> {
    let mut graph = StageGraph::cut(plan, config)?;
    let merge = graph.take_final_merge();
    Ok((graph, merge))
}

/// Marks the tasks of `graph` (as [`tasks`] orders them: stage by stage,
/// partition by partition) with the functions their stage calls.
fn needs(tasks: &mut [(TaskSpec, Arc<Job>)], graph: &StageGraph, functions: &[Vec<String>]) {
    let mut tasks = tasks.iter_mut();
    for (stage, names) in graph.stages.iter().zip(functions) {
        for (task, _) in tasks.by_ref().take(stage.partitions()) {
            task.functions.clone_from(names);
        }
    }
}

/// `merge` (and the projections over it) reading `cluster` in place of the
/// stage it read.
fn over_cluster(
    merge: &Arc<dyn ExecutionPlan>,
    cluster: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let options = || ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
    let child = match merge.children().as_slice() {
        [child] if !Arc::ptr_eq(merge, below_projections(merge)) => over_cluster(child, cluster)?,
        _ => cluster,
    };
    Arc::clone(merge).replace_children(vec![child], options())
}

/// The batches of final partition `partition`, once its future has them (the
/// future is dropped after: the cluster may release the result).
async fn final_batches(future: Option<Future>, partition: usize) -> Result<Vec<RecordBatch>> {
    let Some(future) = future else {
        return Err(DataFusionError::Internal(format!(
            "no final task for partition {partition}"
        )));
    };
    let data = future
        .data()
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let batches = data.batches().cloned().collect();
    tracing::debug!(partition, "final partition fetched");
    Ok(batches)
}

/// A query's tasks, stage by stage, each with its job.
type Tasks = Vec<(TaskSpec, Arc<Job>)>;

/// Submits the tasks of `tasks` that `key` needs (the scheduler skips those
/// it knows) and returns the future of `key`.
fn submit_needed(tasks: &Mutex<Tasks>, connection: &Arc<Connection>, key: Key) -> Option<Future> {
    let needed = needed_by(&tasks.lock(), &key);
    connection.submit(needed, vec![key]).pop()
}

/// The tasks of `tasks` that `key` needs, itself included, in their order.
fn needed_by(tasks: &[(TaskSpec, Arc<Job>)], key: &Key) -> Vec<(TaskSpec, Arc<Job>)> {
    let index: crate::key::KeyMap<usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (t.key.clone(), i))
        .collect();
    let mut needed = vec![false; tasks.len()];
    let mut stack: Vec<usize> = index.get(key).copied().into_iter().collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        stack.extend(
            tasks[i]
                .0
                .dependencies
                .iter()
                .filter_map(|d| index.get(d).copied()),
        );
    }
    tasks
        .iter()
        .zip(needed)
        .filter(|(_, n)| *n)
        .map(|(t, _)| t.clone())
        .collect()
}

/// Where a plan runs.
enum Placement {
    /// As the tasks of its stages (none when it only reads persisted
    /// partitions), with the merge the client runs over the final stage.
    Tasks {
        graph: StageGraph,
        merge: Option<Arc<dyn ExecutionPlan>>,
        tasks: Vec<(TaskSpec, Arc<Job>)>,
    },
    /// In the client, for this reason.
    Client(String),
}

impl fmt::Display for Placement {
    /// The stage listing, or why there is none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Tasks { graph, .. } => write!(f, "{graph}"),
            Placement::Client(why) => writeln!(f, "{}", in_client(why)),
        }
    }
}

/// How listings say a plan runs in the client.
pub(crate) fn in_client(why: &str) -> String {
    format!("no tasks: runs in the client, as {why}")
}

/// A plan that runs in the client rather than as tasks, and why: it runs its
/// input as it is, and tells listings (`explain`, `structure`) the reason.
#[derive(Debug)]
pub(crate) struct ClientExec {
    input: Arc<dyn ExecutionPlan>,
    why: String,
}

/// Why a plan that reads no data runs in the client.
const READS_NOTHING: &str = "it reads no data";

impl ClientExec {
    fn new(input: Arc<dyn ExecutionPlan>, why: String) -> Self {
        Self { input, why }
    }

    /// Why the plan runs in the client.
    pub fn why(&self) -> &str {
        &self.why
    }

    /// The plan, when it runs here only because it reads no data: it could
    /// run as tasks (to gather its result on the cluster).
    pub fn reading_nothing(&self) -> Option<&Arc<dyn ExecutionPlan>> {
        (self.why == READS_NOTHING).then_some(&self.input)
    }
}

impl DisplayAs for ClientExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ClientExec: runs in the client, as {}", self.why)
    }
}

impl ExecutionPlan for ClientExec {
    fn name(&self) -> &'static str {
        "ClientExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    crate::exec::single_input_methods!(input);

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("ClientExec takes one input".into()))?;
        Ok(Arc::new(ClientExec::new(input, self.why.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// A query running on the cluster, as one DataFusion node: partition `i` is the
/// result of the final stage's task `i`.
pub(crate) struct ClusterExec {
    graph: StageGraph,
    /// The tasks, until submitted.
    tasks: Arc<Mutex<Tasks>>,
    connection: Arc<Connection>,
    properties: Arc<PlanProperties>,
    /// The futures of the final tasks once submitted; each partition takes its own.
    futures: Mutex<Option<Vec<Option<Future>>>>,
    /// Whether each partition submits only the tasks it needs, when it is
    /// run, rather than the first submitting the whole graph.
    by_partition: std::sync::atomic::AtomicBool,
    /// If set, partitions are computed a few at a time, and not at all once
    /// the reader has the rows it wants.
    window: Option<Arc<Window>>,
}

/// How the partitions of a merge that wants `rows` rows (`LIMIT`) run:
/// `width` at a time, in partition order (the first partitions first, as
/// Dask's `head` reads them): partition `p` submits its tasks once
/// `p < width + done`, and counts itself done when its reader has taken its
/// batches. Once the partitions read hold `rows` rows, the merge has its
/// answer and the others are not submitted. Partitions from `needed` on are
/// never run: those before it hold the rows wanted, by their exact counts.
#[derive(Debug)]
struct Window {
    width: usize,
    needed: usize,
    done: tokio::sync::watch::Sender<usize>,
    rows: usize,
    read: std::sync::atomic::AtomicUsize,
}

impl Window {
    /// Waits for partition `partition`'s turn; it ends when the turn is dropped.
    async fn turn(self: &Arc<Self>, partition: usize) -> Turn {
        let mut done = self.done.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = done.wait_for(|done| partition < self.width + done).await;
        Turn(Arc::clone(self))
    }

    /// Whether the partitions read so far hold the rows wanted.
    fn is_full(&self) -> bool {
        self.read.load(std::sync::atomic::Ordering::Relaxed) >= self.rows
    }
}

/// A partition's turn in a [`Window`]; the next partition's comes when it is dropped.
struct Turn(Arc<Window>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.done.send_modify(|done| *done += 1);
    }
}

/// How many of `plan`'s first partitions hold `rows` rows, by their exact row
/// counts; all of them when a count is not known exactly (a filter, a join)
/// before they do.
fn partitions_holding(plan: &Arc<dyn ExecutionPlan>, rows: usize) -> usize {
    let partitions = plan.properties().partitioning.partition_count();
    let statistics = StatisticsContext::new();
    let mut held = 0;
    for partition in 0..partitions {
        if held >= rows {
            return partition;
        }
        let args = StatisticsArgs::new().with_partition(Some(partition));
        match statistics.compute(plan.as_ref(), &args).map(|s| s.num_rows) {
            Ok(Precision::Exact(n)) => held += n,
            _ => return partitions,
        }
    }
    partitions
}

impl ClusterExec {
    fn new(
        graph: StageGraph,
        tasks: Vec<(TaskSpec, Arc<Job>)>,
        connection: Arc<Connection>,
    ) -> Self {
        let properties = Arc::clone(graph.final_stage().plan.properties());
        Self {
            graph,
            tasks: Arc::new(Mutex::new(tasks)),
            connection,
            properties,
            futures: Mutex::new(None),
            by_partition: std::sync::atomic::AtomicBool::new(false),
            window: None,
        }
    }

    /// Runs partitions `width` at a time at most, each submitting the tasks
    /// it needs once its turn comes, until they hold `rows` rows (see
    /// [`Window`]).
    fn submit_in_window(&mut self, width: usize, rows: usize) {
        self.submit_by_partition();
        let needed = partitions_holding(&self.graph.final_stage().plan, rows);
        self.window = Some(Arc::new(Window {
            width: width.max(1),
            needed,
            done: tokio::sync::watch::Sender::new(0),
            rows,
            read: std::sync::atomic::AtomicUsize::new(0),
        }));
    }

    /// From now on, running a partition submits only the tasks that partition
    /// needs (for `head`, which may not need them all).
    pub fn submit_by_partition(&self) {
        self.by_partition
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The futures of every final partition, submitting the graph the first time.
    pub fn futures(&self) -> Vec<Future> {
        (0..self.graph.final_stage().partitions())
            .filter_map(|p| self.future(p))
            .collect()
    }

    /// Submits the tasks final partition `partition` needs (known ones are
    /// skipped by the scheduler) and returns its future.
    fn submit_partition(&self, partition: usize) -> Option<Future> {
        let key = self.graph.key(self.graph.stages.len() - 1, partition);
        submit_needed(&self.tasks, &self.connection, key)
    }

    /// The graph this node runs.
    pub fn graph(&self) -> &StageGraph {
        &self.graph
    }

    /// The future of final partition `partition`, submitting the graph the first time.
    fn future(&self, partition: usize) -> Option<Future> {
        if self.by_partition.load(std::sync::atomic::Ordering::Relaxed) {
            return self.submit_partition(partition);
        }
        let mut futures = self.futures.lock();
        let submitted = futures.get_or_insert_with(|| {
            let tasks = std::mem::take(&mut *self.tasks.lock());
            let wanted = self.graph.keys(self.graph.stages.len() - 1);
            tracing::debug!(token = %self.graph.token, tasks = tasks.len(), "submitting");
            self.connection
                .submit(tasks, wanted)
                .into_iter()
                .map(Some)
                .collect()
        });
        match submitted.get_mut(partition).and_then(Option::take) {
            Some(future) => Some(future),
            // Run again: ask for the key anew (the scheduler recomputes it if released).
            None => Some(
                self.connection
                    .future(self.graph.key(self.graph.stages.len() - 1, partition)),
            ),
        }
    }
}

impl fmt::Debug for ClusterExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterExec({} tasks)", self.graph.task_count())
    }
}

impl DisplayAs for ClusterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ClusterExec: {}",
            self.graph.to_string().lines().next().unwrap_or_default()
        )
    }
}

impl ExecutionPlan for ClusterExec {
    fn name(&self) -> &'static str {
        "ClusterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    crate::exec::leaf_node_methods!();

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema: SchemaRef = self.schema();
        let turn = self.window.as_ref().map(|window| {
            let key = self.graph.key(self.graph.stages.len() - 1, partition);
            (
                Arc::clone(window),
                Arc::clone(&self.tasks),
                Arc::clone(&self.connection),
                key,
            )
        });
        let future = match turn {
            Some(_) => None,
            None => self.future(partition),
        };
        let batches = futures::stream::once(async move {
            let (batches, permit) = match &turn {
                Some((window, ..)) if partition >= window.needed => (Vec::new(), None),
                Some((window, tasks, connection, key)) => {
                    let permit = window.turn(partition).await;
                    // Once the merge has its rows, this partition is not needed.
                    let batches = match window.is_full() {
                        true => Vec::new(),
                        false => {
                            let future = submit_needed(tasks, connection, key.clone());
                            let batches = final_batches(future, partition).await?;
                            let rows = batches.iter().map(RecordBatch::num_rows).sum();
                            window
                                .read
                                .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
                            batches
                        }
                    };
                    (batches, Some(permit))
                }
                None => (final_batches(future, partition).await?, None),
            };
            // A window's turn ends once the reader has taken every batch (or
            // dropped the stream): a reader that stops early stops the
            // partitions behind it.
            Ok::<_, DataFusionError>(futures::stream::iter(batches).map(move |batch| {
                let _turn = &permit;
                Ok(batch)
            }))
        });
        use futures::{StreamExt, TryStreamExt};
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            batches.try_flatten(),
        )))
    }
}
