//! The scheduler's record of each task and each worker.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{ClientId, TaskError, WorkerId};
use crate::key::{Key, KeySet};

/// Where a task stands.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Known, with no result anywhere and nothing under way.
    Released,
    /// Waiting for inputs to be in memory.
    Waiting,
    /// Ready, with no inputs, held until a worker has a free thread.
    Queued,
    /// Sent to a worker.
    Processing(WorkerId),
    /// The result is held by one or more workers.
    Memory,
    /// The task, or one of its inputs, failed.
    Erred(Arc<TaskError>),
}

impl TaskState {
    /// Waiting, queued or processing: the task will produce a result.
    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            TaskState::Waiting | TaskState::Queued | TaskState::Processing(_)
        )
    }
}

/// The order ready tasks run in: higher user priority first, then earlier
/// submissions, then earlier in their graph.
pub(super) type Priority = (i32, u64, u64);

/// One task.
#[derive(Debug)]
pub(super) struct Task {
    pub state: TaskState,
    pub dependencies: Vec<Key>,
    pub dependents: KeySet,
    /// Inputs not yet in memory, while waiting.
    pub waiting_on: usize,
    pub wanted_by: BTreeSet<ClientId>,
    pub who_has: Vec<WorkerId>,
    pub nbytes: u64,
    pub priority: Priority,
    pub retries_left: u32,
    pub restrictions: Option<Vec<WorkerId>>,
    /// False for scattered data: there is nothing to recompute it from.
    pub recomputable: bool,
    /// Workers that died while running this task.
    pub died_on: Vec<WorkerId>,
}

/// One worker.
#[derive(Debug, Default)]
pub(super) struct Worker {
    pub nthreads: usize,
    pub processing: KeySet,
    pub has: KeySet,
    pub nbytes: u64,
}

impl Worker {
    /// Whether the worker has as many tasks as it should hold: two per thread,
    /// so a thread finishing a task finds the next one waiting instead of waiting
    /// on the scheduler, while root tasks still don't run far ahead of the tasks
    /// that consume their output.
    pub fn is_saturated(&self) -> bool {
        self.processing.len() >= 2 * self.nthreads
    }

    /// Tasks per thread.
    pub fn load(&self) -> f64 {
        self.processing.len() as f64 / self.nthreads.max(1) as f64
    }
}

/// A snapshot of a task, for displays and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStatus {
    /// Its state.
    pub state: TaskState,
    /// Workers holding its result.
    pub who_has: Vec<WorkerId>,
    /// Clients holding futures of it.
    pub wanted_by: Vec<ClientId>,
}

/// A snapshot of a worker, for displays and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStatus {
    /// Task slots.
    pub nthreads: usize,
    /// Tasks sent to it and not finished.
    pub processing: usize,
    /// Results it holds.
    pub in_memory: usize,
    /// Bytes of results it holds.
    pub nbytes: u64,
}
