//! Running one task of a stage: one partition of the stage's plan, its output
//! split for the stage's readers.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
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
        // The output counts in the worker's budget as it grows, so that the
        // operators running beside it, and the results held, make room for
        // it (the pool has stored results spilled first). Past what can be
        // freed it is not counted, and the task goes on: its output goes to
        // the store, which spills what does not fit, when the task ends.
        let reservation = MemoryConsumer::new(format!("stage {} output", self.id))
            .register(&base.runtime_env().memory_pool);
        let keep = |batch: RecordBatch| -> Result<RecordBatch> {
            let batch = compact(batch)?;
            let _ = reservation.try_grow(super::sliced_bytes(&batch) as usize);
            Ok(batch)
        };
        match &self.output {
            StageOutput::Whole => {
                let mut batches = Vec::new();
                while let Some(batch) = stream.next().await {
                    batches.push(keep(batch?)?);
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
                            buckets[bucket].push(keep(part)?);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::execution::memory_pool::MemoryPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;

    use super::*;
    use crate::exec::memory_pool::HeldResults;
    use crate::exec::{Reclaim, ReclaimingPool};

    #[tokio::test]
    async fn a_task_output_growing_makes_held_results_give_way() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batches: Vec<RecordBatch> = (0..8)
            .map(|i| {
                let column = Int64Array::from_iter_values(i * 10_000..(i + 1) * 10_000);
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(column)])
            })
            .collect::<Result<_, _>>()
            .expect("batches");
        // 8 batches of 80 kB out, a pool of 1 MB that results fill 90 % of.
        let pool: Arc<dyn MemoryPool> = Arc::new(ReclaimingPool::new(1 << 20));
        let results = HeldResults::holding(&pool, 900 << 10);
        let reclaim: Arc<dyn Reclaim> = Arc::clone(&results) as _;
        pool.downcast_ref::<ReclaimingPool>()
            .expect("a reclaiming pool")
            .reclaim_from(Arc::downgrade(&reclaim));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::clone(&pool))
            .build_arc()
            .expect("runtime");
        let base = TaskContext::default().with_runtime(runtime);

        let plan = MemorySourceConfig::try_new_exec(&[batches], schema, None).expect("plan");
        let stage = StagePlan::new(0, plan, StageOutput::Whole, Arc::default());
        let output = stage
            .run(0, TaskInputs::default(), &base)
            .await
            .expect("the task runs");

        assert_eq!(
            output.batches().map(RecordBatch::num_rows).sum::<usize>(),
            80_000
        );
        assert_eq!(results.asked.load(Ordering::SeqCst), 1);
        // The output's reservation ends with the task: the store counts it.
        assert_eq!(pool.reserved(), 0);
    }
}
