//! Running one task of a stage: one partition of the stage's plan, its output
//! split for the stage's readers.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics;
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion::prelude::SessionConfig;
use futures::StreamExt;

use super::{TaskData, TaskInputs, compact};

/// How a stage's output is laid out for the stage reading it.
#[derive(Debug, Clone)]
pub enum StageOutput {
    /// Each task's whole output is one bucket.
    Whole,
    /// Each task splits its output into the partitions of an exchange.
    Partitioned(Partitioning),
}

/// A stage as tasks run it: a plan whose leaves read other stages' outputs.
#[derive(Debug)]
pub struct StagePlan {
    /// The stage's number within its query.
    pub id: usize,
    /// The plan; one task runs one of its partitions.
    pub plan: Arc<dyn ExecutionPlan>,
    /// How the output is split for readers.
    pub output: StageOutput,
    /// The stages it reads.
    pub inputs: Vec<usize>,
    /// The query's session settings (batch size and the like).
    pub config: Arc<SessionConfig>,
}

impl StagePlan {
    /// Stage `id` running `plan`, its output laid out as `output`; the stages it
    /// reads are found from its [`StageReadExec`](super::StageReadExec) leaves.
    pub fn new(
        id: usize,
        plan: Arc<dyn ExecutionPlan>,
        output: StageOutput,
        config: Arc<SessionConfig>,
    ) -> Self {
        let mut inputs = Vec::new();
        collect_inputs(plan.as_ref(), &mut inputs);
        Self {
            id,
            plan,
            output,
            inputs,
            config,
        }
    }

    /// The number of tasks: one per partition of the plan.
    pub fn partitions(&self) -> usize {
        self.plan.properties().partitioning.partition_count()
    }

    /// Runs partition `partition` with `inputs`, in a task context derived from
    /// `base` (the worker's session), and returns its bucketed output.
    pub async fn run(
        &self,
        partition: usize,
        inputs: TaskInputs,
        base: &TaskContext,
    ) -> Result<TaskData> {
        let config = self
            .config
            .as_ref()
            .clone()
            .with_extension(Arc::new(inputs));
        let context = Arc::new(TaskContext::new(
            None,
            base.session_id(),
            config,
            base.scalar_functions().clone(),
            base.higher_order_functions().clone(),
            base.aggregate_functions().clone(),
            base.window_functions().clone(),
            base.runtime_env(),
        ));
        let mut stream = self.plan.execute(partition, context)?;
        match &self.output {
            StageOutput::Whole => {
                let mut batches = Vec::new();
                while let Some(batch) = stream.next().await {
                    batches.push(compact(batch?)?);
                }
                Ok(TaskData::Batches(vec![batches]))
            }
            StageOutput::Partitioned(partitioning) => {
                let mut buckets = vec![Vec::new(); partitioning.partition_count()];
                let mut partitioner = BatchPartitioner::try_new(
                    partitioning.clone(),
                    metrics::Time::new(),
                    partition,
                    self.partitions(),
                )?;
                while let Some(batch) = stream.next().await {
                    partitioner.partition(batch?, |bucket, part| {
                        if part.num_rows() > 0 {
                            buckets[bucket].push(compact(part)?);
                        }
                        Ok(())
                    })?;
                }
                Ok(TaskData::Batches(buckets))
            }
        }
    }
}

/// The stages `plan` reads, in the order its readers appear.
fn collect_inputs(plan: &dyn ExecutionPlan, inputs: &mut Vec<usize>) {
    if let Some(reader) = plan.downcast_ref::<super::StageReadExec>() {
        if !inputs.contains(&reader.stage()) {
            inputs.push(reader.stage());
        }
        return;
    }
    if let Some(map) = plan.downcast_ref::<super::MapPartitionsExec>()
        && let Some(super::MapArgument::Input(input)) = map.argument()
        && !inputs.contains(input)
    {
        inputs.push(*input);
    }
    for child in plan.children() {
        collect_inputs(child.as_ref(), inputs);
    }
}
