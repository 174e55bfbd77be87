//! The scheduler's record of each task and each worker.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use smallvec::SmallVec;

use super::{ClientId, TaskError, WorkerId};
use crate::key::{Key, KeyMap};

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

impl Task {
    /// Sent ahead to the worker that computes its last missing input: it
    /// starts there once that input is stored, with no round trip to the
    /// scheduler in between.
    pub fn is_ahead(&self) -> bool {
        matches!(self.state, TaskState::Processing(_)) && self.waiting_on > 0
    }
}

/// A task's index in [`Tasks`]: the core refers to tasks by number, and hashes
/// a key only when an event names one.
pub(super) type TaskId = u32;

/// One task.
#[derive(Debug)]
pub(super) struct Task {
    pub key: Key,
    pub state: TaskState,
    /// The tasks whose results this one reads, each once, in the order given.
    pub dependencies: SmallVec<[TaskId; 4]>,
    pub dependents: IdSet,
    /// Inputs not yet in memory, while waiting, or while processing ahead of
    /// its input (see [`Task::is_ahead`]).
    pub waiting_on: usize,
    pub wanted_by: Clients,
    pub who_has: SmallVec<[WorkerId; 2]>,
    pub nbytes: u64,
    pub priority: Priority,
    pub retries_left: u32,
    pub restrictions: Option<Vec<WorkerId>>,
    /// Registered functions it calls (see [`TaskSpec::functions`](super::TaskSpec)).
    pub functions: Box<[String]>,
    /// False for scattered data: there is nothing to recompute it from.
    pub recomputable: bool,
    /// Workers that died while running this task.
    pub died_on: Vec<WorkerId>,
    /// Times an input of this task could not be fetched from its holder.
    pub fetch_failures: u8,
    /// Whether it runs part of a query or calls a function.
    pub kind: super::TaskKind,
    /// Into how many parts its read of each dependency divides it, in the
    /// order of `dependencies`; empty when it reads them all whole (see
    /// [`TaskSpec::parts`](super::TaskSpec)).
    pub parts: Box<[u32]>,
    /// Its group, for progress.
    pub group: super::progress::GroupId,
    /// How long it was expected to run when it was last sent to a worker, in
    /// microseconds.
    pub expected: u64,
    /// What progress has counted of it.
    pub counted: u8,
}

/// Every task the scheduler knows, by id, and the ids by key. Ids of forgotten
/// tasks are reused.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    slots: Vec<Option<Task>>,
    free: Vec<TaskId>,
    ids: KeyMap<TaskId>,
}

impl Tasks {
    /// The id of `key`'s task.
    pub fn id(&self, key: &Key) -> Option<TaskId> {
        self.ids.get(key).copied()
    }

    pub fn get(&self, id: TaskId) -> Option<&Task> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// The task of `key`.
    pub fn by_key(&self, key: &Key) -> Option<&Task> {
        self.get(self.id(key)?)
    }

    /// The id the next [`insert`](Self::insert) gives.
    pub fn next_id(&self) -> TaskId {
        match self.free.last() {
            Some(&id) => id,
            None => self.slots.len() as TaskId,
        }
    }

    /// Adds a task; its key must be new.
    pub fn insert(&mut self, task: Task) -> TaskId {
        let key = task.key.clone();
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(task);
                id
            }
            None => {
                self.slots.push(Some(task));
                (self.slots.len() - 1) as TaskId
            }
        };
        self.ids.insert(key, id);
        id
    }

    /// Forgets a task.
    pub fn remove(&mut self, id: TaskId) -> Option<Task> {
        let task = self.slots.get_mut(id as usize)?.take()?;
        crate::key::remove_shrinking(&mut self.ids, &task.key);
        if self.ids.is_empty() {
            // Nothing left: start over small.
            self.slots = Vec::new();
            self.free = Vec::new();
        } else {
            self.free.push(id);
        }
        Some(task)
    }

    /// Every task, with its id.
    pub fn iter(&self) -> impl Iterator<Item = (TaskId, &Task)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, t)| Some((id as TaskId, t.as_ref()?)))
    }

    /// Room for `n` more tasks.
    pub fn reserve(&mut self, n: usize) {
        self.ids.reserve(n);
        self.slots.reserve(n.saturating_sub(self.free.len()));
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A set of task ids: inline while small (most tasks have a few dependents),
/// hashed when large (one input of a million tasks).
#[derive(Debug, Default)]
pub(super) struct IdSet {
    few: SmallVec<[TaskId; 4]>,
    // Boxed so that the common, small set costs one pointer for it in every task.
    #[allow(clippy::box_collection)]
    many: Option<Box<HashSet<TaskId, foldhash::fast::RandomState>>>,
}

/// Past this many ids an [`IdSet`] hashes them.
const FEW: usize = 32;

impl IdSet {
    /// Adds `id`; false if it was there.
    pub fn insert(&mut self, id: TaskId) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(id);
        }
        if self.few.contains(&id) {
            return false;
        }
        if self.few.len() < FEW {
            self.few.push(id);
        } else {
            let mut many: HashSet<TaskId, _> = self.few.drain(..).collect();
            many.insert(id);
            self.many = Some(Box::new(many));
        }
        true
    }

    /// Removes `id`; false if it was not there.
    pub fn remove(&mut self, id: TaskId) -> bool {
        if let Some(many) = &mut self.many {
            return many.remove(&id);
        }
        match self.few.iter().position(|i| *i == id) {
            Some(i) => {
                self.few.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.many.as_ref().map_or(self.few.len(), |many| many.len())
    }

    /// The ids, in no set order.
    pub fn iter(&self) -> impl Iterator<Item = TaskId> + '_ {
        let many = self.many.iter().flat_map(|many| many.iter()).copied();
        self.few.iter().copied().chain(many)
    }
}

/// The clients holding futures of a task: almost always none or one, so they
/// are kept inline, without an allocation.
#[derive(Debug, Default, Clone)]
pub(super) struct Clients(SmallVec<[ClientId; 2]>);

impl Clients {
    /// Adds `client`; false if it was there.
    pub fn insert(&mut self, client: ClientId) -> bool {
        if self.0.contains(&client) {
            return false;
        }
        self.0.push(client);
        true
    }

    /// Removes `client`; false if it was not there.
    pub fn remove(&mut self, client: &ClientId) -> bool {
        match self.0.iter().position(|c| c == client) {
            Some(i) => {
                self.0.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether no client holds a future.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The clients, in no set order.
    pub fn iter(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.0.iter().copied()
    }
}

/// One worker.
#[derive(Debug, Default)]
pub(super) struct Worker {
    pub nthreads: usize,
    /// The registered functions it carries; `None` for all.
    pub functions: Option<Arc<BTreeSet<String>>>,
    pub processing: HashSet<TaskId, foldhash::fast::RandomState>,
    /// How long its processing tasks are expected to run in all, in
    /// microseconds (each as [`Task::expected`]).
    pub occupancy: u64,
    /// Results held (the tasks know where their results are: `Task::who_has`).
    pub in_memory: usize,
    pub nbytes: u64,
    /// Past its memory's pause threshold: it gets no new tasks.
    pub paused: bool,
    /// Leaving: it gets no new tasks, and what only it holds moves elsewhere.
    pub retiring: Option<Retiring>,
}

/// A worker's way out (Dask's `retire_workers`): once its running tasks are
/// done, the results only it holds are copied to other workers; then it is told
/// to close.
#[derive(Debug, Default)]
pub(super) struct Retiring {
    /// Whether the copies have been asked for.
    pub planned: bool,
    /// Keys being copied away, with the worker copying each.
    pub moving: KeyMap<WorkerId>,
    /// Whether it has been told to close.
    pub closed: bool,
}

impl Worker {
    /// Whether the worker takes new tasks: not paused, not leaving.
    pub fn is_open(&self) -> bool {
        !self.paused && self.retiring.is_none()
    }

    /// Whether the worker can run `task`: it takes tasks, is allowed and
    /// carries its functions.
    pub fn can_run(&self, id: WorkerId, task: &Task) -> bool {
        self.is_open()
            && task.restrictions.as_ref().is_none_or(|r| r.contains(&id))
            && self
                .functions
                .as_ref()
                .is_none_or(|carried| task.functions.iter().all(|f| carried.contains(f)))
    }

    /// Counts a result of `nbytes` now held.
    pub fn hold(&mut self, nbytes: u64) {
        self.in_memory += 1;
        self.nbytes += nbytes;
    }

    /// Counts a result of `nbytes` no longer held.
    pub fn drop_held(&mut self, nbytes: u64) {
        self.in_memory = self.in_memory.saturating_sub(1);
        self.nbytes = self.nbytes.saturating_sub(nbytes);
    }

    /// Counts `id`, expected to run `micros`, among the tasks it processes.
    pub fn start(&mut self, id: TaskId, micros: u64) {
        if self.processing.insert(id) {
            self.occupancy += micros;
        }
    }

    /// No longer counts `id`, expected to run `micros`, among them.
    pub fn stop(&mut self, id: TaskId, micros: u64) {
        if self.processing.remove(&id) {
            self.occupancy = self.occupancy.saturating_sub(micros);
        }
    }

    /// Threads with no task sent to them.
    pub fn free_threads(&self) -> usize {
        self.nthreads.saturating_sub(self.processing.len())
    }

    /// Whether the worker holds `per_thread` tasks for each of its threads.
    pub fn is_saturated(&self, per_thread: usize) -> bool {
        self.processing.len() >= per_thread * self.nthreads
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
    /// Whether it takes new tasks (`running`), not now (`paused`: its memory
    /// is past the pause threshold) or never again (`retiring`).
    pub status: &'static str,
}

/// A task as its dashboard page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskDetail {
    /// Its key.
    pub key: String,
    /// Its group (see [`GroupProgress`](super::GroupProgress)).
    pub group: Option<String>,
    /// `waiting`, `queued`, `processing`, `memory`, `erred` or `released`.
    pub state: String,
    /// Why it erred.
    pub error: Option<String>,
    /// Workers holding its result.
    pub who_has: Vec<WorkerId>,
    /// Clients (and holders such as published names) wanting it.
    pub wanted_by: usize,
    /// Bytes of its result.
    pub nbytes: u64,
    /// The tasks it reads.
    pub dependencies: Vec<String>,
    /// The tasks that read it.
    pub dependents: Vec<String>,
}

/// A task in a drawing of the graph.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskNode {
    /// Its key.
    pub key: String,
    /// Its state's name.
    pub state: String,
    /// The tasks it reads.
    pub dependencies: Vec<String>,
}
