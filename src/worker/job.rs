//! [`Job`]: what a task does, as the scheduler hands it to a worker.

use std::sync::Arc;

use crate::exec::StagePlan;
use crate::key::Key;

/// The work of one task.
#[derive(Debug)]
pub enum Job {
    /// One partition of a query stage.
    Stage(StageJob),
    /// All inputs' batches, in input order, as one result (a query's `finalize`).
    Concat,
}

/// One partition of a query stage, and the keys of the stages it reads.
#[derive(Debug)]
pub struct StageJob {
    /// The stage.
    pub stage: Arc<StagePlan>,
    /// The partition this task runs.
    pub partition: usize,
    /// For each stage read, the keys of its tasks in partition order.
    pub inputs: Vec<(usize, Arc<[Key]>)>,
}
