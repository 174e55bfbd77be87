//! Cutting a DataFusion physical plan into stages, and stages into tasks.
//!
//! An exchange moves rows between partitions, so it is where one task's work
//! must end and another's begin. [`StageGraph::cut`] walks the plan bottom-up
//! and cuts it
//!
//! - at hash and round-robin `RepartitionExec`s: the subtree below becomes a
//!   stage whose tasks split their output into the exchange's partitions (a
//!   large file scan in it split into more tasks, as `rask.scan_bytes_per_task`
//!   says); a
//!   [`StageReadExec`] in [`ReadMode::Bucket`] replaces the exchange, so reader
//!   partition `i` is bucket `i` of every producer;
//! - below `CoalescePartitionsExec` and `SortPreservingMergeExec`: the subtree
//!   becomes a stage whose tasks keep their whole output; the merge stays, over a
//!   [`ReadMode::Whole`] reader whose partition `i` is producer `i`'s output;
//! - below the build (left) side of joins that collect it (`CollectLeft` hash
//!   joins, cross joins, nested-loop joins): the build side is computed once, and
//!   every task of the join reads it. A build side that merges partitions (a
//!   `CoalescePartitionsExec`, as DataFusion plans them) stays in the join's
//!   stage over a [`ReadMode::Whole`] reader: each task of the join merges the
//!   build side's outputs itself, with no one-task stage (and round trip) in
//!   between. A collecting join that also emits build
//!   rows once every probe partition is done (left, full, left semi / anti /
//!   mark joins) counts those partitions in shared state that tasks in other
//!   processes cannot see, so its probe side is merged first and the join runs
//!   as one task.
//!
//! - at scans of persisted partitions ([`PersistedExec`]): a reader of their
//!   keys replaces the scan, numbered from [`PERSISTED_STAGES`] up, so the
//!   tasks above read the partitions where they are held.
//!
//! What remains above the last cut is the final stage. One task runs one
//! partition of a stage; its key is `<operation>-<token>-<partition>`, the
//! operation being the stage's root operator (`aggregate-3f9c1a2b-7`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::{JoinType, Result};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PartitionMode,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};
use datafusion::prelude::SessionConfig;

use crate::exec::{
    MapArgument, MapPartitionsExec, PersistedExec, PersistedPartitions, ReadMode, StageOutput,
    StagePlan, StageReadExec,
};
use crate::key::Key;

/// A query cut into stages, producers before consumers; the last is the final stage.
#[derive(Debug, Clone)]
pub struct StageGraph {
    /// The stages.
    pub stages: Vec<Arc<StagePlan>>,
    /// Names this query's tasks.
    pub token: String,
    operations: Vec<String>,
    /// The merge stage the client runs over the final stage's outputs, if it
    /// was taken off ([`take_final_merge`](Self::take_final_merge)), with its
    /// operation.
    merge: Option<(Arc<StagePlan>, String)>,
    /// Persisted partitions the stages read: input `PERSISTED_STAGES + i` is
    /// `persisted[i]`. Holding them keeps them on the cluster while the
    /// query runs.
    persisted: Vec<Arc<dyn PersistedPartitions>>,
}

/// The input number of the first persisted input a stage reads (stages
/// proper are numbered from 0).
pub const PERSISTED_STAGES: usize = 1 << 20;

/// Why a plan cannot be cut into stages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operator} cannot run as separate tasks")]
pub struct Uncuttable {
    /// The operator in the way.
    pub operator: String,
}

/// Operators that run every partition of their input inside one partition of
/// their own, outside the exchanges rask cuts at.
const WHOLE_INPUT_OPERATORS: [&str; 3] = ["AnalyzeExec", "RecursiveQueryExec", "WorkTableExec"];

static QUERIES: AtomicU64 = AtomicU64::new(0);

impl StageGraph {
    /// Cuts `plan` into stages. `config` travels with every stage to its tasks.
    pub fn cut(
        plan: Arc<dyn ExecutionPlan>,
        config: Arc<SessionConfig>,
    ) -> Result<StageGraph, Uncuttable> {
        let mut cutter = Cutter {
            stages: Vec::new(),
            persisted: Vec::new(),
            config,
        };
        let root = cutter.cut(plan)?;
        cutter.push(root, StageOutput::Whole);
        let token = new_token();
        let operations = cutter
            .stages
            .iter()
            .map(|s| operation_name(s.plan.as_ref()))
            .collect();
        Ok(StageGraph {
            stages: cutter.stages,
            token,
            operations,
            merge: None,
            persisted: cutter.persisted,
        })
    }

    /// The persisted partitions the stages read, in input order.
    pub fn persisted(&self) -> &[Arc<dyn PersistedPartitions>] {
        &self.persisted
    }

    /// The persisted partitions behind input `input`, if it is not a stage.
    pub fn persisted_input(&self, input: usize) -> Option<&Arc<dyn PersistedPartitions>> {
        input
            .checked_sub(PERSISTED_STAGES)
            .and_then(|i| self.persisted.get(i))
    }

    /// Whether the query only reads persisted partitions as they are, or
    /// merges them (a persisted frame computed or displayed alone): the
    /// client then reads them itself, and no task runs.
    pub fn only_reads_persisted(&self) -> bool {
        let [stage] = self.stages.as_slice() else {
            return false;
        };
        let mut node = Arc::clone(&stage.plan);
        loop {
            if let Some(read) = node.downcast_ref::<StageReadExec>() {
                return read.stage() >= PERSISTED_STAGES;
            }
            let projects_columns = node
                .downcast_ref::<datafusion::physical_plan::projection::ProjectionExec>()
                .is_some_and(|p| {
                    p.expr().iter().all(|e| {
                        e.expr
                            .downcast_ref::<datafusion::physical_expr::expressions::Column>()
                            .is_some()
                    })
                });
            let merges =
                node.is::<CoalescePartitionsExec>() || node.is::<SortPreservingMergeExec>();
            let child = node.children().first().map(|c| Arc::clone(*c));
            match child {
                Some(child) if projects_columns || merges => node = child,
                _ => return false,
            }
        }
    }

    /// Takes off a final stage that only merges the partitions of the stage
    /// below it (a `CoalescePartitionsExec` or `SortPreservingMergeExec` over
    /// the whole outputs of its tasks, perhaps under projections), and returns
    /// that plan: the client runs it over the partitions it fetches, saving a
    /// task and a round trip through a worker. The stage below becomes the
    /// final stage.
    pub fn take_final_merge(&mut self) -> Option<Arc<dyn ExecutionPlan>> {
        let n = self.stages.len();
        // Projections over the merge (`SELECT x * x … LIMIT 5`) run in the
        // client with it: they stream over the rows it yields.
        let plan = below_projections(&self.stages.last()?.plan);
        let merges = plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>();
        let reads_below = match plan.children().as_slice() {
            [child] => child
                .downcast_ref::<StageReadExec>()
                .is_some_and(|r| r.mode() == ReadMode::Whole && r.stage() + 2 == n),
            _ => false,
        };
        if !merges || !reads_below {
            return None;
        }
        // Named after the merge, not the projections over it.
        let merging = operation_name(plan.as_ref());
        let merge = Arc::clone(&self.stages.last()?.plan);
        let stage = self.stages.pop()?;
        self.operations.pop()?;
        self.merge = Some((stage, merging));
        Some(merge)
    }

    /// Puts back the merge stage [`take_final_merge`](Self::take_final_merge)
    /// took off, for a result computed whole on the cluster.
    pub fn restore_final_merge(&mut self) {
        if let Some((stage, operation)) = self.merge.take() {
            self.stages.push(stage);
            self.operations.push(operation);
        }
    }

    /// The operation of the merge the client runs, if it was taken off.
    pub fn merge(&self) -> Option<&str> {
        self.merge.as_ref().map(|(_, operation)| operation.as_str())
    }

    /// The stage whose tasks produce the query's result.
    pub fn final_stage(&self) -> &Arc<StagePlan> {
        // `cut` always pushes the final stage.
        &self.stages[self.stages.len() - 1]
    }

    /// Tasks in all stages.
    pub fn task_count(&self) -> usize {
        self.stages.iter().map(|s| s.partitions()).sum()
    }

    /// The operation name of stage `stage` (`aggregate`, `timeseries`, …).
    pub fn operation(&self, stage: usize) -> &str {
        &self.operations[stage]
    }

    /// The key of task `partition` of stage `stage`.
    pub fn key(&self, stage: usize, partition: usize) -> Key {
        Key::partition(&self.operations[stage], &self.stage_token(stage), partition)
    }

    /// The token of stage `stage`'s keys: the query's token and the stage number.
    fn stage_token(&self, stage: usize) -> String {
        format!("{}{stage:02x}", self.token)
    }

    /// The keys of every task of `stage`, in partition order; for a
    /// persisted input, the keys of its partitions.
    pub fn keys(&self, stage: usize) -> Vec<Key> {
        if let Some(persisted) = self.persisted_input(stage) {
            return persisted.keys().to_vec();
        }
        (0..self.stages[stage].partitions())
            .map(|p| self.key(stage, p))
            .collect()
    }
}

impl fmt::Display for StageGraph {
    /// One line per stage: its tasks, what it reads and how its output is laid out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.only_reads_persisted() {
            let partitions: usize = self.persisted.iter().map(|p| p.keys().len()).sum();
            return writeln!(
                f,
                "no tasks: the client reads {partitions} persisted partition{}",
                if partitions == 1 { "" } else { "s" }
            );
        }
        let tasks = self.task_count();
        let stages = self.stages.len();
        writeln!(
            f,
            "{stages} stage{}, {tasks} task{}",
            if stages == 1 { "" } else { "s" },
            if tasks == 1 { "" } else { "s" }
        )?;
        for (i, stage) in self.stages.iter().enumerate() {
            let n = stage.partitions();
            let output = match &stage.output {
                StageOutput::Whole if i + 1 == self.stages.len() => "result".to_string(),
                StageOutput::Whole => "whole output".to_string(),
                StageOutput::Partitioned(Partitioning::Hash(exprs, k)) => {
                    let cols: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                    format!("hash({}) into {k}", cols.join(", "))
                }
                StageOutput::Partitioned(p) => format!("{p} ",).trim_end().to_string(),
            };
            let reads = if stage.inputs.is_empty() {
                String::new()
            } else {
                let inputs: Vec<String> = stage
                    .inputs
                    .iter()
                    .map(|&s| match self.persisted_input(s) {
                        Some(p) => format!(
                            "persisted {} ({} partitions)",
                            p.operation(),
                            p.keys().len()
                        ),
                        None => format!("stage {}", s + 1),
                    })
                    .collect();
                format!(", reads {}", inputs.join(" and "))
            };
            writeln!(
                f,
                "  stage {}: {}-{}-*  {n} task{}{reads} → {output}",
                i + 1,
                self.operations[i],
                self.stage_token(i),
                if n == 1 { "" } else { "s" },
            )?;
        }
        if let Some(merge) = self.merge() {
            writeln!(f, "  then {merge} in the client")?;
        }
        Ok(())
    }
}

struct Cutter {
    stages: Vec<Arc<StagePlan>>,
    persisted: Vec<Arc<dyn PersistedPartitions>>,
    config: Arc<SessionConfig>,
}

impl Cutter {
    /// Cuts below `plan` and returns it with readers in place of what was cut.
    fn cut(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>, Uncuttable> {
        if WHOLE_INPUT_OPERATORS.contains(&plan.name()) {
            return Err(Uncuttable {
                operator: plan.name().to_string(),
            });
        }
        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>()
            && !repartition.preserve_order()
            && matches!(
                repartition.partitioning(),
                Partitioning::Hash(..) | Partitioning::RoundRobinBatch(_)
            )
        {
            let input = self.cut(Arc::clone(repartition.input()))?;
            let input =
                super::split::split_large_scan(&input, self.config.options()).unwrap_or(input);
            let stage = self.push(
                input,
                StageOutput::Partitioned(repartition.partitioning().clone()),
            );
            return Ok(reader(stage, ReadMode::Bucket, repartition));
        }
        if let Some(scan) = plan.downcast_ref::<PersistedExec>() {
            let input = self.persisted_input(scan.partitions());
            return Ok(reader(input, ReadMode::Whole, scan));
        }
        // A map_partitions argument is read as an input of the task.
        let plan = match plan
            .downcast_ref::<MapPartitionsExec>()
            .and_then(|m| match m.argument() {
                Some(MapArgument::Partitions(p)) => Some((m, Arc::clone(p))),
                _ => None,
            }) {
            Some((map, partitions)) => {
                let input = self.persisted_input(&partitions);
                Arc::new(map.reading_argument_as(input)) as Arc<dyn ExecutionPlan>
            }
            None => plan,
        };
        let plan = with_one_probe_partition(plan)?;
        let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
        if children.is_empty() {
            return Ok(plan);
        }
        let cut_whole = |i: usize| -> bool {
            if plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>() {
                return true;
            }
            let collects_left = plan
                .downcast_ref::<HashJoinExec>()
                .is_some_and(|j| *j.partition_mode() == PartitionMode::CollectLeft)
                || plan.is::<CrossJoinExec>()
                || plan.is::<NestedLoopJoinExec>();
            collects_left && i == 0
        };
        let mut new_children = Vec::with_capacity(children.len());
        for (i, child) in children.iter().enumerate() {
            let child = self.cut(Arc::clone(child))?;
            let child = if cut_whole(i) && !reads_whole_outputs(child.as_ref()) {
                let properties = Arc::clone(child.properties());
                let stage = self.push(child, StageOutput::Whole);
                Arc::new(StageReadExec::new(stage, ReadMode::Whole, properties))
                    as Arc<dyn ExecutionPlan>
            } else {
                child
            };
            new_children.push(child);
        }
        let unchanged = new_children
            .iter()
            .zip(&children)
            .all(|(a, b)| Arc::ptr_eq(a, b));
        if unchanged {
            return Ok(plan);
        }
        let operator = plan.name().to_string();
        #[allow(deprecated)]
        plan.with_new_children(new_children)
            .map_err(|e| Uncuttable {
                operator: format!("{operator} ({e})"),
            })
    }

    /// The input number of `partitions`, the same each time they are read.
    fn persisted_input(&mut self, partitions: &Arc<dyn PersistedPartitions>) -> usize {
        let i = match self
            .persisted
            .iter()
            .position(|p| std::ptr::addr_eq(Arc::as_ptr(p), Arc::as_ptr(partitions)))
        {
            Some(i) => i,
            None => {
                self.persisted.push(Arc::clone(partitions));
                self.persisted.len() - 1
            }
        };
        PERSISTED_STAGES + i
    }

    /// Adds a stage running `plan`; returns its number.
    fn push(&mut self, plan: Arc<dyn ExecutionPlan>, output: StageOutput) -> usize {
        let id = self.stages.len();
        let stage = StagePlan::new(id, plan, output, Arc::clone(&self.config));
        self.stages.push(Arc::new(stage));
        id
    }
}

/// `plan` with its probe side merged into one partition if it is a collecting
/// join that emits build rows after its last probe partition (see the module
/// docs); as it is otherwise.
fn with_one_probe_partition(
    plan: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>, Uncuttable> {
    let join_type = if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        (*join.partition_mode() == PartitionMode::CollectLeft).then(|| *join.join_type())
    } else {
        plan.downcast_ref::<NestedLoopJoinExec>()
            .map(|join| *join.join_type())
    };
    let emits_at_end = join_type.is_some_and(|t| {
        matches!(
            t,
            JoinType::Left
                | JoinType::LeftAnti
                | JoinType::LeftSemi
                | JoinType::LeftMark
                | JoinType::Full
        )
    });
    let children = plan.children();
    if !emits_at_end
        || children.len() != 2
        || children[1].output_partitioning().partition_count() <= 1
    {
        return Ok(plan);
    }
    let merged: Arc<dyn ExecutionPlan> =
        Arc::new(CoalescePartitionsExec::new(Arc::clone(children[1])));
    let left = Arc::clone(children[0]);
    let operator = plan.name().to_string();
    #[allow(deprecated)]
    plan.with_new_children(vec![left, merged])
        .map_err(|e| Uncuttable {
            operator: format!("{operator} ({e})"),
        })
}

/// The first node of `plan` that is not a projection: the merge under the
/// projections of a final stage the client runs
/// ([`StageGraph::take_final_merge`]).
pub fn below_projections(plan: &Arc<dyn ExecutionPlan>) -> &Arc<dyn ExecutionPlan> {
    let mut node = plan;
    while node.is::<datafusion::physical_plan::projection::ProjectionExec>() {
        match node.children().as_slice() {
            [child] => node = child,
            _ => break,
        }
    }
    node
}

/// Whether `plan` reads the whole outputs of a stage's tasks: a reader in
/// [`ReadMode::Whole`], or a merge of one, which a task can run itself.
fn reads_whole_outputs(plan: &dyn ExecutionPlan) -> bool {
    let whole_reader = |p: &dyn ExecutionPlan| {
        p.downcast_ref::<StageReadExec>()
            .is_some_and(|r| r.mode() == ReadMode::Whole)
    };
    if plan.is::<StageReadExec>() {
        return true;
    }
    plan.is::<CoalescePartitionsExec>()
        && matches!(plan.children().as_slice(), [child] if whole_reader(child.as_ref()))
}

/// A reader of `stage` standing in for `replaced`.
fn reader(stage: usize, mode: ReadMode, replaced: &dyn ExecutionPlan) -> Arc<dyn ExecutionPlan> {
    Arc::new(StageReadExec::new(
        stage,
        mode,
        Arc::clone(replaced.properties()),
    ))
}

/// `AggregateExec` → `aggregate`, `SortPreservingMergeExec` → `sort-preserving-merge`;
/// a data source is named after what it reads (`read-parquet`).
fn operation_name(plan: &dyn ExecutionPlan) -> String {
    let name = plan.name().trim_end_matches("Exec");
    if name == "DataSource" {
        let mut shown = String::new();
        let _ = fmt::write(
            &mut shown,
            format_args!(
                "{}",
                datafusion::physical_plan::displayable(plan).one_line()
            ),
        );
        for format in ["parquet", "csv", "json", "arrow", "avro", "memory"] {
            if shown.contains(&format!("file_type={format}"))
                || (format == "memory" && shown.contains("MemoryExec"))
            {
                return format!("read-{format}");
            }
        }
        return "read".to_string();
    }
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    if out.is_empty() {
        "stage".to_string()
    } else {
        out
    }
}

/// Eight hex digits, different for every query of this process.
fn new_token() -> String {
    let n = QUERIES.fetch_add(1, Ordering::Relaxed);
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:08x}", (z ^ (z >> 31)) as u32)
}
