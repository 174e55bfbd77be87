//! [`TaskData`]: a task's result, as workers hold it and tasks read it.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

/// The result of one task. Stage tasks produce record batches split into the
/// partitions their consumers read ("buckets"): one bucket when the whole output
/// goes to one reader, `n` when it is hash- or round-robin-partitioned for `n`.
///
/// Held behind an `Arc`: on the local cluster, readers get the same batches,
/// never a copy.
#[derive(Debug, Clone)]
pub enum TaskData {
    /// Record batches, by output bucket.
    Batches(Vec<Vec<RecordBatch>>),
    /// A value of a function task, with its size in bytes.
    Value(Arc<dyn std::any::Any + Send + Sync>, u64),
}

impl TaskData {
    /// Bytes held in memory.
    pub fn nbytes(&self) -> u64 {
        match self {
            TaskData::Batches(buckets) => buckets
                .iter()
                .flatten()
                .map(|b| b.get_array_memory_size() as u64)
                .sum(),
            TaskData::Value(_, nbytes) => *nbytes,
        }
    }

    /// The value of a function task, if it is a `T`.
    pub fn value<T: 'static>(&self) -> Option<&T> {
        match self {
            TaskData::Value(value, _) => value.downcast_ref(),
            TaskData::Batches(_) => None,
        }
    }

    /// The batches of `bucket`, if this is batch data and the bucket exists.
    pub fn bucket(&self, bucket: usize) -> Option<&[RecordBatch]> {
        match self {
            TaskData::Batches(buckets) => buckets.get(bucket).map(Vec::as_slice),
            TaskData::Value(..) => None,
        }
    }

    /// All batches, bucket after bucket (none for a value).
    pub fn batches(&self) -> impl Iterator<Item = &RecordBatch> {
        let buckets: &[Vec<RecordBatch>] = match self {
            TaskData::Batches(buckets) => buckets,
            TaskData::Value(..) => &[],
        };
        buckets.iter().flatten()
    }
}

/// The data of the inputs of one task, by input stage, each in producer order.
/// Travels to [`StageReadExec`](super::StageReadExec) as a session config extension.
#[derive(Debug, Default)]
pub struct TaskInputs {
    stages: Vec<(usize, Vec<Arc<TaskData>>)>,
}

impl TaskInputs {
    /// Adds the outputs of the producers of `stage`, in partition order.
    pub fn insert(&mut self, stage: usize, outputs: Vec<Arc<TaskData>>) {
        self.stages.push((stage, outputs));
    }

    /// The outputs of the producers of `stage`.
    pub fn stage(&self, stage: usize) -> Option<&[Arc<TaskData>]> {
        self.stages
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, o)| o.as_slice())
    }
}
