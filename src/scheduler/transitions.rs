//! [`Scheduler`]: events in, decisions out. Every state change happens here.
//!
//! Tasks are referred to by [`TaskId`] inside: an event's key is looked up once,
//! and the transitions it leads to follow ids, with no hashing of keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use smallvec::SmallVec;

use super::progress::{GroupProgress, NO_GROUP, Progress};
use super::queue::RootQueue;
use super::state::{Clients, IdSet, Priority, Retiring, Task, TaskId, Tasks, Worker};
use super::state::{TaskDetail, TaskNode};
use super::{
    ClientId, Decision, Event, FIRE_AND_FORGET, Input, Key, Outcome, PUBLISHED, TaskError,
    TaskKind, TaskSpec, TaskState, TaskStatus, WorkerId, WorkerStatus,
};

/// A task that has taken down this many workers errs instead of running again.
const MAX_WORKER_DEATHS: usize = 3;

/// A task whose inputs could not be fetched this many times errs instead of
/// having them recomputed again (the holder lives, but cannot be reached).
const MAX_FETCH_FAILURES: u8 = 3;

/// Root tasks a worker holds per thread: one running, one waiting, so a thread
/// finishing a task finds the next one, while root tasks still don't run far
/// ahead of the tasks that consume their output.
const TASKS_PER_THREAD: usize = 2;

/// Root tasks a worker holds per thread when they are short function calls
/// (see [`Durations::is_short`]): enough that a thread does not wait on round
/// trips to the scheduler between them.
const SHORT_TASKS_PER_THREAD: usize = 16;

/// Tasks of a name that runs this long or less, on average, are short.
const SHORT_TASK_MICROS: u64 = 500;

/// How long tasks run, by their key's operation (the function, or the
/// operation of a stage: `add_two_people`, `read-parquet`).
#[derive(Debug, Default)]
struct Durations(std::collections::HashMap<String, (u64, u64)>);

impl Durations {
    fn record(&mut self, key: &Key, micros: u64) {
        let name = key.operation();
        match self.0.get_mut(name) {
            Some((n, total)) => {
                *n += 1;
                *total += micros;
            }
            None => {
                self.0.insert(name.to_string(), (1, micros));
            }
        }
    }

    /// Whether tasks named as `key` is have run short, on average, at least
    /// four times.
    fn is_short(&self, key: &Key) -> bool {
        self.0
            .get(key.operation())
            .is_some_and(|&(n, total)| n >= 4 && total / n <= SHORT_TASK_MICROS)
    }
}

/// The scheduler state machine. See the module docs of `scheduler`.
#[derive(Debug, Default)]
pub struct Scheduler {
    tasks: Tasks,
    workers: BTreeMap<WorkerId, Worker>,
    /// Ready root tasks; entries whose task is no longer queued are skipped.
    queue: RootQueue,
    /// Ready tasks that no current worker may run.
    unrunnable: BTreeSet<(Priority, TaskId)>,
    /// Workers on their way out (see [`Event::RetireWorker`]).
    retiring: BTreeSet<WorkerId>,
    generation: u64,
    order: u64,
    /// Tasks that have finished since the scheduler started, all clients together.
    finished_total: u64,
    /// Published keys by name.
    published: BTreeMap<String, Key>,
    /// How long tasks run, by function or operation.
    durations: Durations,
    /// How far each group of tasks has come.
    progress: Progress,
    out: Vec<Decision>,
    /// Scratch space, kept to save allocations per task.
    scratch: Scratch,
}

#[derive(Debug, Default)]
struct Scratch {
    settle: Vec<TaskId>,
    ready: Vec<(Priority, TaskId)>,
    ids: Vec<TaskId>,
}

impl Scheduler {
    /// An empty scheduler: no tasks, no workers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `event` and returns what the cluster must do about it.
    pub fn handle(&mut self, event: Event) -> Vec<Decision> {
        let mut out = Vec::new();
        self.handle_into(event, &mut out);
        out
    }

    /// Applies `event` and appends what the cluster must do about it to `out`.
    /// A caller handling many events reuses one buffer.
    pub fn handle_into(&mut self, event: Event, out: &mut Vec<Decision>) {
        if out.is_empty() {
            // Hand our (empty, allocated) buffer over and fill the caller's.
            std::mem::swap(&mut self.out, out);
        }
        self.apply(event);
        if !self.retiring.is_empty() {
            self.advance_retiring();
        }
        self.fill_slots();
        if out.is_empty() {
            std::mem::swap(&mut self.out, out);
        } else {
            out.append(&mut self.out);
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::GraphSubmitted {
                client,
                tasks,
                wanted,
            } => self.submit(client, tasks, wanted),
            Event::DataScattered {
                client,
                key,
                workers,
                nbytes,
            } => self.scattered(client, key, workers, nbytes),
            Event::TaskFinished {
                worker,
                key,
                nbytes,
                micros,
            } => match self.tasks.id(&key) {
                Some(id) => {
                    self.durations.record(&key, micros);
                    self.finished(worker, id, nbytes);
                    self.forget_fired(id);
                }
                // Forgotten while it ran: nobody wants the result.
                None => self.release_on(worker, key, None),
            },
            Event::TaskErred { worker, key, error } => {
                if let Some(id) = self.tasks.id(&key) {
                    self.erred(worker, id, error);
                }
            }
            Event::WorkerAdded {
                worker,
                nthreads,
                functions,
            } => self.add_worker(worker, nthreads, functions),
            Event::WorkerRemoved { worker } => self.remove_worker(worker),
            Event::WorkerPaused { worker, paused } => self.pause(worker, paused),
            Event::RetireWorker { worker } => self.retire(worker),
            Event::DataReplicated { worker, key } => self.replicated(worker, key),
            Event::ReplicateFailed { worker, key } => self.moved(&key, worker),
            Event::FutureReleased { client, key } => self.unwant(client, &key, false),
            Event::ClientRemoved { client } => self.remove_client(client),
            Event::FireAndForget { key } => self.fire_and_forget(&key),
            Event::Publish { name, key } => self.publish(name, key),
            Event::Unpublish { name } => self.unpublish(&name),
            Event::Cancel { client, keys } => {
                for key in keys {
                    self.unwant(client, &key, true);
                }
            }
        }
    }

    /// The state of `key`, if the scheduler knows it.
    pub fn task(&self, key: &Key) -> Option<TaskStatus> {
        self.tasks.by_key(key).map(|t| {
            let mut wanted_by: Vec<ClientId> = t.wanted_by.iter().collect();
            wanted_by.sort_unstable();
            TaskStatus {
                state: t.state.clone(),
                who_has: t.who_has.to_vec(),
                wanted_by,
            }
        })
    }

    /// How many tasks the scheduler knows.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// How many tasks have finished since the scheduler started.
    pub fn tasks_finished(&self) -> u64 {
        self.finished_total
    }

    /// `key`'s task as the dashboard shows it: state, holders, inputs,
    /// dependents and error.
    pub fn task_detail(&self, key: &Key) -> Option<TaskDetail> {
        let task = self.tasks.by_key(key)?;
        let keys = |ids: &mut dyn Iterator<Item = TaskId>| -> Vec<String> {
            let mut keys: Vec<String> = ids
                .filter_map(|id| self.tasks.get(id).map(|t| t.key.to_string()))
                .collect();
            keys.sort_unstable();
            keys
        };
        let (state, error) = describe(&task.state);
        Some(TaskDetail {
            key: task.key.to_string(),
            group: self.progress.group_name(task.group).map(str::to_string),
            state: state.to_string(),
            error,
            who_has: task.who_has.to_vec(),
            wanted_by: task.wanted_by.iter().count(),
            nbytes: task.nbytes,
            dependencies: keys(&mut task.dependencies.iter().copied()),
            dependents: keys(&mut task.dependents.iter()),
        })
    }

    /// Every task with its state and inputs, when there are at most `limit`
    /// of them; `None` past that (show [`progress`](Self::progress) instead:
    /// a large graph is drawn by group).
    pub fn graph(&self, limit: usize) -> Option<Vec<TaskNode>> {
        if self.tasks.len() > limit {
            return None;
        }
        let mut nodes: Vec<TaskNode> = self
            .tasks
            .iter()
            .map(|(_, task)| TaskNode {
                key: task.key.to_string(),
                state: describe(&task.state).0.to_string(),
                dependencies: task
                    .dependencies
                    .iter()
                    .filter_map(|&d| self.tasks.get(d).map(|t| t.key.to_string()))
                    .collect(),
            })
            .collect();
        nodes.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Some(nodes)
    }

    /// How far each group of tasks has come: live groups in the order they
    /// started, then those that ended lately.
    pub fn progress(&self) -> Vec<GroupProgress> {
        self.progress.snapshot()
    }

    /// The state of `worker`.
    pub fn worker(&self, worker: WorkerId) -> Option<WorkerStatus> {
        self.workers.get(&worker).map(|w| WorkerStatus {
            nthreads: w.nthreads,
            processing: w.processing.len(),
            in_memory: w.in_memory,
            nbytes: w.nbytes,
            status: if w.retiring.is_some() {
                "retiring"
            } else if w.paused {
                "paused"
            } else {
                "running"
            },
        })
    }

    /// The workers, by id.
    pub fn workers(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.workers.keys().copied()
    }

    // ----- events -------------------------------------------------------------------------

    fn submit(&mut self, client: ClientId, specs: Vec<TaskSpec>, wanted: Vec<Key>) {
        self.generation += 1;
        self.tasks.reserve(specs.len());
        let mut new = Vec::with_capacity(specs.len());
        for spec in specs {
            if self.tasks.id(&spec.key).is_some() {
                continue;
            }
            // Each input once, in the order given; a wide fan-in dedups by hashing.
            let mut dependencies = SmallVec::<[TaskId; 4]>::new();
            let mut seen = IdSet::default();
            let mut missing = None;
            for dep in &spec.dependencies {
                match self.tasks.id(dep) {
                    Some(d) if seen.insert(d) => dependencies.push(d),
                    Some(_) => {}
                    None => missing = missing.or_else(|| Some(dep.clone())),
                }
            }
            let id = self.tasks.next_id();
            let input_groups = dependencies
                .iter()
                .filter_map(|&d| self.tasks.get(d).map(|t| t.group));
            let group = self.progress.add(&spec.key, input_groups);
            for &d in &dependencies {
                if let Some(dep) = self.tasks.get_mut(d) {
                    dep.dependents.insert(id);
                }
            }
            self.order += 1;
            let inserted = self.tasks.insert(Task {
                key: spec.key.clone(),
                state: TaskState::Released,
                dependencies,
                dependents: IdSet::default(),
                waiting_on: 0,
                wanted_by: Clients::default(),
                who_has: SmallVec::new(),
                nbytes: 0,
                priority: (-spec.priority, self.generation, self.order),
                retries_left: spec.retries,
                restrictions: spec.workers,
                functions: spec.functions.into(),
                recomputable: true,
                died_on: Vec::new(),
                fetch_failures: 0,
                kind: spec.kind,
                group,
                counted: 0,
            });
            debug_assert_eq!(id, inserted);
            match missing {
                Some(missing) => {
                    let error = TaskError::MissingDependency {
                        key: spec.key,
                        missing,
                    };
                    self.fail(id, Arc::new(error));
                }
                None => new.push(id),
            }
        }
        for key in wanted {
            let Some(task) = self.tasks.id(&key).and_then(|id| self.tasks.get_mut(id)) else {
                let error = TaskError::MissingDependency {
                    key: key.clone(),
                    missing: key.clone(),
                };
                self.out.push(Decision::Report {
                    client,
                    key,
                    outcome: Outcome::Erred(Arc::new(error)),
                });
                continue;
            };
            task.wanted_by.insert(client);
            let outcome = match &task.state {
                TaskState::Memory => Some(Outcome::Finished {
                    workers: task.who_has.to_vec(),
                }),
                TaskState::Erred(e) => Some(Outcome::Erred(Arc::clone(e))),
                _ => None,
            };
            if let Some(outcome) = outcome {
                self.out.push(Decision::Report {
                    client,
                    key,
                    outcome,
                });
            }
        }
        // Tasks nobody asked for and no wanted task needs are dropped at once.
        for &id in new.iter().rev() {
            self.settle(id);
        }
        // The rest come dependencies first, so each one's inputs are already pending.
        for id in new {
            self.compute(id);
        }
    }

    fn scattered(&mut self, client: ClientId, key: Key, workers: Vec<WorkerId>, nbytes: u64) {
        let workers: Vec<WorkerId> = workers
            .into_iter()
            .filter(|w| self.workers.contains_key(w))
            .collect();
        let known = self.tasks.id(&key);
        if workers.is_empty() && known.is_none() {
            let error = TaskError::DataLost {
                key: key.clone(),
                worker: WorkerId::MAX,
            };
            self.out.push(Decision::Report {
                client,
                key,
                outcome: Outcome::Erred(Arc::new(error)),
            });
            return;
        }
        self.order += 1;
        let id = match known {
            Some(id) => id,
            None => self.tasks.insert(Task {
                key: key.clone(),
                state: TaskState::Memory,
                dependencies: SmallVec::new(),
                dependents: IdSet::default(),
                waiting_on: 0,
                wanted_by: Clients::default(),
                who_has: SmallVec::new(),
                nbytes,
                priority: (0, 0, self.order),
                retries_left: 0,
                restrictions: None,
                functions: Box::default(),
                recomputable: false,
                died_on: Vec::new(),
                fetch_failures: 0,
                kind: TaskKind::Stage,
                group: NO_GROUP,
                counted: 0,
            }),
        };
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        for w in workers {
            if !task.who_has.contains(&w) {
                task.who_has.push(w);
                if let Some(worker) = self.workers.get_mut(&w) {
                    worker.hold(nbytes);
                }
            }
        }
        task.wanted_by.insert(client);
        let workers = task.who_has.to_vec();
        self.out.push(Decision::Report {
            client,
            key,
            outcome: Outcome::Finished { workers },
        });
    }

    fn finished(&mut self, worker: WorkerId, id: TaskId, nbytes: u64) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        match task.state {
            TaskState::Processing(w) if w == worker => {}
            TaskState::Memory
                if !task.who_has.contains(&worker) && self.workers.contains_key(&worker) =>
            {
                // A second copy (the task ran twice after a presumed loss): keep it.
                task.who_has.push(worker);
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.hold(nbytes);
                }
                return;
            }
            _ => {
                let key = task.key.clone();
                self.release_on(worker, key, None);
                return;
            }
        }
        task.state = TaskState::Memory;
        self.finished_total += 1;
        self.progress.done(task.group, &mut task.counted);
        // Copies recorded while it ran (data scattered under its key) give way.
        for holder in std::mem::take(&mut task.who_has) {
            if let Some(w) = self.workers.get_mut(&holder) {
                w.drop_held(task.nbytes);
                // The runner's store now holds the new result under the key.
                if holder != worker {
                    self.out.push(Decision::Release {
                        worker: holder,
                        key: task.key.clone(),
                    });
                }
            }
        }
        task.who_has.push(worker);
        task.nbytes = nbytes;
        for client in task.wanted_by.iter() {
            self.out.push(Decision::Report {
                client,
                key: task.key.clone(),
                outcome: Outcome::Finished {
                    workers: vec![worker],
                },
            });
        }
        let mut inputs = std::mem::take(&mut self.scratch.ids);
        inputs.extend_from_slice(&task.dependencies);
        // Taken out while the dependents are looked at, which never reads them.
        let dependents = std::mem::take(&mut task.dependents);
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&id);
            w.hold(nbytes);
        }
        let mut ready = std::mem::take(&mut self.scratch.ready);
        for dependent in dependents.iter() {
            if let Some(d) = self.tasks.get_mut(dependent)
                && d.state == TaskState::Waiting
            {
                d.waiting_on -= 1;
                if d.waiting_on == 0 {
                    ready.push((d.priority, dependent));
                }
            }
        }
        if let Some(task) = self.tasks.get_mut(id) {
            task.dependents = dependents;
        }
        ready.sort_unstable();
        for (_, dependent) in ready.drain(..) {
            self.ready(dependent);
        }
        self.scratch.ready = ready;
        self.settle(id);
        for input in inputs.drain(..) {
            self.settle(input);
        }
        self.scratch.ids = inputs;
    }

    fn erred(&mut self, worker: WorkerId, id: TaskId, error: TaskError) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.state != TaskState::Processing(worker) {
            return;
        }
        task.state = TaskState::Released;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&id);
        }
        match error {
            TaskError::FetchFailed {
                worker: holder,
                key: input,
            } => {
                // The input is gone from where we thought it was, or cannot be
                // reached there: that copy is released (on its holder too, if
                // it still lives), recomputed if it was the last, and this task
                // runs again after, a bounded number of times.
                task.fetch_failures = task.fetch_failures.saturating_add(1);
                let attempts = task.fetch_failures;
                let key = task.key.clone();
                if let Some(input_id) = self.tasks.id(&input) {
                    let held = self
                        .tasks
                        .get(input_id)
                        .and_then(|t| t.who_has.contains(&holder).then_some(t.nbytes));
                    self.drop_copy(holder, input_id);
                    if held.is_some() {
                        self.release_on(holder, input.clone(), None);
                    }
                }
                if attempts >= MAX_FETCH_FAILURES {
                    let error = TaskError::FetchGaveUp {
                        key,
                        input,
                        holder,
                        worker,
                        attempts: u32::from(attempts),
                    };
                    self.fail(id, Arc::new(error));
                } else {
                    self.compute(id);
                }
            }
            error if task.retries_left > 0 => {
                task.retries_left -= 1;
                tracing::debug!(key = %task.key, %error, "retrying task");
                self.compute(id);
            }
            error => self.fail(id, Arc::new(error)),
        }
    }

    fn add_worker(
        &mut self,
        worker: WorkerId,
        nthreads: usize,
        functions: Option<Arc<BTreeSet<String>>>,
    ) {
        self.workers.entry(worker).or_insert_with(|| Worker {
            nthreads: nthreads.max(1),
            functions,
            ..Worker::default()
        });
        self.retry_unrunnable();
    }

    /// Tasks that had nowhere to run may have somewhere now.
    fn retry_unrunnable(&mut self) {
        for (_, id) in std::mem::take(&mut self.unrunnable) {
            if self
                .tasks
                .get(id)
                .is_some_and(|t| t.state == TaskState::Released)
            {
                self.ready(id);
            }
        }
    }

    fn remove_worker(&mut self, worker: WorkerId) {
        let Some(gone) = self.workers.remove(&worker) else {
            return;
        };
        self.retiring.remove(&worker);
        // Copies it was making for retiring workers will not come.
        self.keep_moves(|_, to| to != worker);
        let mut rerun = Vec::new();
        for id in gone.processing {
            let Some(task) = self.tasks.get_mut(id) else {
                continue;
            };
            task.died_on.push(worker);
            task.state = TaskState::Released;
            if task.died_on.len() >= MAX_WORKER_DEATHS {
                let error = TaskError::KilledWorkers {
                    key: task.key.clone(),
                    workers: task.died_on.clone(),
                    log: Vec::new(),
                };
                self.fail(id, Arc::new(error));
            } else {
                rerun.push((task.priority, id));
            }
        }
        let held: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.who_has.contains(&worker))
            .map(|(id, _)| id)
            .collect();
        for id in held {
            self.drop_copy(worker, id);
        }
        rerun.sort_unstable();
        for (_, id) in rerun {
            self.compute(id);
        }
    }

    fn pause(&mut self, worker: WorkerId, paused: bool) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        let was = std::mem::replace(&mut w.paused, paused);
        if was && !paused {
            self.retry_unrunnable();
        }
    }

    fn retire(&mut self, worker: WorkerId) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        if w.retiring.is_none() {
            w.retiring = Some(Retiring::default());
            self.retiring.insert(worker);
        }
    }

    /// Moves each retiring worker one step on its way out: once it runs
    /// nothing, copies of what only it holds are asked of the other workers
    /// (least loaded first); once they are made (or failed), it may close.
    fn advance_retiring(&mut self) {
        let retiring: Vec<WorkerId> = self.retiring.iter().copied().collect();
        for worker in retiring {
            let Some(w) = self.workers.get(&worker) else {
                continue;
            };
            let Some(r) = &w.retiring else {
                continue;
            };
            if r.closed || !w.processing.is_empty() {
                continue;
            }
            if !r.planned {
                self.plan_moves(worker);
            }
            let Some(r) = self
                .workers
                .get_mut(&worker)
                .and_then(|w| w.retiring.as_mut())
            else {
                continue;
            };
            if r.moving.is_empty() {
                r.closed = true;
                self.out.push(Decision::Retire { worker });
            }
        }
    }

    /// Asks for a copy elsewhere of every result only `worker` holds.
    fn plan_moves(&mut self, worker: WorkerId) {
        // Where copies go: open workers, each time the one holding the fewest bytes.
        let mut targets: Vec<(u64, WorkerId)> = self
            .workers
            .iter()
            .filter(|(id, w)| **id != worker && w.retiring.is_none())
            .map(|(id, w)| (w.nbytes, *id))
            .collect();
        let mut moves = Vec::new();
        if !targets.is_empty() {
            for (_, task) in self.tasks.iter() {
                if task.state != TaskState::Memory || task.who_has.as_slice() != [worker] {
                    continue;
                }
                let Some(target) = targets.iter_mut().min() else {
                    break;
                };
                target.0 += task.nbytes;
                moves.push((task.key.clone(), target.1));
            }
        }
        let Some(r) = self
            .workers
            .get_mut(&worker)
            .and_then(|w| w.retiring.as_mut())
        else {
            return;
        };
        r.planned = true;
        for (key, to) in moves {
            r.moving.insert(key.clone(), to);
            self.out.push(Decision::Replicate {
                worker: to,
                key,
                from: vec![worker],
            });
        }
    }

    /// `worker` holds a copy of `key` it was asked for.
    fn replicated(&mut self, worker: WorkerId, key: Key) {
        self.moved(&key, worker);
        let id = self.tasks.id(&key);
        let task = id.and_then(|id| self.tasks.get_mut(id));
        match task {
            Some(task) if task.state == TaskState::Memory && self.workers.contains_key(&worker) => {
                if !task.who_has.contains(&worker) {
                    task.who_has.push(worker);
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.hold(task.nbytes);
                    }
                    // Its clients learn where else to fetch it: the retiring
                    // holder is about to go.
                    for client in task.wanted_by.iter() {
                        self.out.push(Decision::Report {
                            client,
                            key: task.key.clone(),
                            outcome: Outcome::Finished {
                                workers: task.who_has.to_vec(),
                            },
                        });
                    }
                }
            }
            // Let go of meanwhile: the copy is not needed.
            _ => self.release_on(worker, key, None),
        }
    }

    /// The copy of `key` that `worker` was making is done, or failed.
    fn moved(&mut self, key: &Key, worker: WorkerId) {
        self.keep_moves(|k, to| !(k == key && to == worker));
    }

    /// Keeps the copies under way for retiring workers that `keep` says to
    /// (by key and the worker making the copy); forgets the others.
    fn keep_moves(&mut self, keep: impl Fn(&Key, WorkerId) -> bool) {
        for retiring in &self.retiring {
            if let Some(r) = self
                .workers
                .get_mut(retiring)
                .and_then(|w| w.retiring.as_mut())
            {
                r.moving.retain(|key, to| keep(key, *to));
            }
        }
    }

    fn remove_client(&mut self, client: ClientId) {
        let wanted: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.wanted_by.iter().any(|c| c == client))
            .map(|(id, _)| id)
            .collect();
        for id in wanted {
            if let Some(task) = self.tasks.get_mut(id) {
                task.wanted_by.remove(&client);
                self.settle(id);
            }
        }
    }

    /// Keeps `key` wanted until it is done, whoever else lets go of it.
    fn fire_and_forget(&mut self, key: &Key) {
        let Some(task) = self.tasks.id(key).and_then(|id| self.tasks.get_mut(id)) else {
            return;
        };
        if task.state.is_pending() || task.state == TaskState::Released {
            task.wanted_by.insert(FIRE_AND_FORGET);
        }
    }

    /// A task is done: the fire-and-forget holder lets go of it.
    fn forget_fired(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.wanted_by.remove(&FIRE_AND_FORGET) {
            self.settle(id);
        }
    }

    fn publish(&mut self, name: String, key: Key) {
        let Some(task) = self.tasks.id(&key).and_then(|id| self.tasks.get_mut(id)) else {
            return;
        };
        task.wanted_by.insert(PUBLISHED);
        if let Some(old) = self.published.insert(name, key.clone())
            && old != key
        {
            self.release_published(&old);
        }
    }

    fn unpublish(&mut self, name: &str) {
        if let Some(key) = self.published.remove(name) {
            self.release_published(&key);
        }
    }

    /// `key` lost a name: let go of it if no other name holds it.
    fn release_published(&mut self, key: &Key) {
        if !self.published.values().any(|k| k == key) {
            self.unwant(PUBLISHED, key, false);
        }
    }

    /// The key published as `name`.
    pub fn published(&self, name: &str) -> Option<Key> {
        self.published.get(name).cloned()
    }

    /// The published names, sorted.
    pub fn published_names(&self) -> Vec<String> {
        self.published.keys().cloned().collect()
    }

    fn unwant(&mut self, client: ClientId, key: &Key, cancel: bool) {
        let Some(id) = self.tasks.id(key) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.wanted_by.remove(&client) && cancel {
            self.out.push(Decision::Report {
                client,
                key: key.clone(),
                outcome: Outcome::Cancelled,
            });
        }
        self.settle(id);
    }

    // ----- transitions --------------------------------------------------------------------

    /// Forgets that `worker` holds `id`. If that was the last copy, the task goes
    /// back to released (or errs, for scattered data), and is recomputed if needed.
    fn drop_copy(&mut self, worker: WorkerId, id: TaskId) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.who_has.contains(&worker) {
            task.who_has.retain(|w| *w != worker);
            if let Some(w) = self.workers.get_mut(&worker) {
                w.drop_held(task.nbytes);
            }
        }
        if task.state != TaskState::Memory || !task.who_has.is_empty() {
            return;
        }
        if !task.recomputable {
            let error = TaskError::DataLost {
                key: task.key.clone(),
                worker,
            };
            self.fail(id, Arc::new(error));
            return;
        }
        task.state = TaskState::Released;
        let mut needed = !task.wanted_by.is_empty();
        let dependents = std::mem::take(&mut task.dependents);
        for dependent in dependents.iter() {
            if let Some(d) = self.tasks.get_mut(dependent) {
                if d.state == TaskState::Waiting {
                    d.waiting_on += 1;
                    needed = true;
                } else if d.state.is_pending() {
                    needed = true;
                }
            }
        }
        if let Some(task) = self.tasks.get_mut(id) {
            task.dependents = dependents;
        }
        if needed {
            self.compute(id);
        }
    }

    /// Brings `id` toward memory: it and every released ancestor it needs are
    /// made waiting or ready, in graph order.
    fn compute(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        let inputs_known = task.dependencies.iter().all(|&d| {
            self.tasks
                .get(d)
                .is_none_or(|d| d.state != TaskState::Released)
        });
        if inputs_known {
            self.compute_released(id);
            return;
        }
        // Collect the released tasks to revive, then revive them dependencies first.
        let mut revive = Vec::new();
        let mut seen = std::collections::HashSet::<TaskId>::new();
        let mut stack = vec![id];
        while let Some(t) = stack.pop() {
            let Some(task) = self.tasks.get(t) else {
                continue;
            };
            if task.state != TaskState::Released || !seen.insert(t) {
                continue;
            }
            stack.extend_from_slice(&task.dependencies);
            revive.push((task.priority, t));
        }
        revive.sort_unstable();
        for (_, t) in revive {
            self.compute_released(t);
        }
    }

    /// A released task whose inputs are each pending, in memory or erred becomes
    /// erred, waiting or ready.
    fn compute_released(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        if task.state != TaskState::Released {
            return;
        }
        let mut waiting_on = 0;
        for &d in &task.dependencies {
            let Some(dep) = self.tasks.get(d) else {
                continue;
            };
            match &dep.state {
                TaskState::Memory => {}
                TaskState::Erred(e) => {
                    let error = match e.as_ref() {
                        TaskError::DependencyFailed { .. } => Arc::clone(e),
                        _ => Arc::new(TaskError::DependencyFailed {
                            key: dep.key.clone(),
                            source: Arc::clone(e),
                        }),
                    };
                    self.fail(id, error);
                    return;
                }
                _ => waiting_on += 1,
            }
        }
        if waiting_on == 0 {
            self.ready(id);
        } else if let Some(task) = self.tasks.get_mut(id) {
            task.state = TaskState::Waiting;
            task.waiting_on = waiting_on;
        }
    }

    /// A task whose inputs are all in memory: root tasks queue for a free thread,
    /// others go to the best worker now.
    fn ready(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.dependencies.is_empty() {
            task.state = TaskState::Queued;
            self.queue.push(task.priority, id);
            return;
        }
        match self.decide_worker(id) {
            Some(worker) => self.assign(id, worker),
            None => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.state = TaskState::Released;
                    self.unrunnable.insert((task.priority, id));
                }
            }
        }
    }

    /// The best worker for a task with inputs: one with a free thread if any,
    /// then the one where it would start soonest, counting the input bytes to
    /// fetch and the tasks already there (each worth [`QUEUED_TASK_BYTES`]).
    fn decide_worker(&self, id: TaskId) -> Option<WorkerId> {
        let task = self.tasks.get(id)?;
        self.allowed_workers(task)
            .map(|(worker, w)| {
                let transfer: u64 = task
                    .dependencies
                    .iter()
                    .filter_map(|&d| self.tasks.get(d))
                    .filter(|d| !d.who_has.contains(&worker))
                    .map(|d| d.nbytes)
                    .sum();
                let cost = transfer as f64 + w.load() * QUEUED_TASK_BYTES;
                (
                    (w.is_saturated(TASKS_PER_THREAD), OrderedLoad(cost)),
                    worker,
                )
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, worker)| worker)
    }

    fn allowed_workers<'a>(
        &'a self,
        task: &'a Task,
    ) -> impl Iterator<Item = (WorkerId, &'a Worker)> + 'a {
        self.workers
            .iter()
            .filter(move |(id, w)| w.can_run(**id, task))
            .map(|(id, w)| (*id, w))
    }

    fn assign(&mut self, id: TaskId, worker: WorkerId) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        task.state = TaskState::Processing(worker);
        let key = task.key.clone();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.insert(id);
        }
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        let inputs = task
            .dependencies
            .iter()
            .filter_map(|&d| self.tasks.get(d))
            .map(|d| Input {
                key: d.key.clone(),
                holders: d.who_has.to_vec(),
            })
            .collect();
        self.out.push(Decision::Run {
            worker,
            key,
            inputs,
        });
    }

    /// Sends queued root tasks to workers with free threads, best first.
    fn fill_slots(&mut self) {
        let mut blocked = Vec::new();
        while !self.queue.is_empty()
            && self
                .workers
                .values()
                .any(|w| w.is_open() && !w.is_saturated(SHORT_TASKS_PER_THREAD))
        {
            let Some((priority, id)) = self.queue.pop() else {
                break;
            };
            let Some(task) = self.tasks.get(id) else {
                continue;
            };
            if task.state != TaskState::Queued || task.priority != priority {
                continue;
            }
            // Short function calls may run further ahead: a thread finishing
            // one finds the next waiting instead of waiting a round trip for
            // it. Query stages keep to two, not to run ahead of their readers.
            let is_call = task.kind == TaskKind::Call;
            let per_thread = if is_call && self.durations.is_short(&task.key) {
                SHORT_TASKS_PER_THREAD
            } else {
                TASKS_PER_THREAD
            };
            let free = self
                .allowed_workers(task)
                .filter(|(_, w)| !w.is_saturated(per_thread))
                .min_by(|a, b| OrderedLoad(a.1.load()).cmp(&OrderedLoad(b.1.load())))
                .map(|(worker, _)| worker);
            let open = self.workers.values().filter(|w| w.is_open()).count();
            let unrestricted = self.allowed_workers(task).count() == open;
            match free {
                Some(worker) => self.assign(id, worker),
                None if self.allowed_workers(task).next().is_none() => {
                    if let Some(task) = self.tasks.get_mut(id) {
                        task.state = TaskState::Released;
                        self.unrunnable.insert((priority, id));
                    }
                }
                // Every worker is as busy as this task allows: so they are
                // for the (mostly alike) tasks queued behind it.
                None if unrestricted => {
                    blocked.push((priority, id));
                    break;
                }
                None => blocked.push((priority, id)),
            }
        }
        for (priority, id) in blocked {
            self.queue.push(priority, id);
        }
    }

    /// Marks `id` erred with `error`, and every pending task downstream of it with
    /// a [`TaskError::DependencyFailed`] pointing at it.
    fn fail(&mut self, id: TaskId, error: Arc<TaskError>) {
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        let downstream = match error.as_ref() {
            TaskError::DependencyFailed { .. } => Arc::clone(&error),
            _ => Arc::new(TaskError::DependencyFailed {
                key: task.key.clone(),
                source: Arc::clone(&error),
            }),
        };
        let mut stack = vec![(id, error)];
        let mut settle = Vec::new();
        while let Some((t, e)) = stack.pop() {
            let Some(task) = self.tasks.get(t) else {
                continue;
            };
            if let TaskState::Processing(w) = task.state {
                self.abort_on(w, t);
            }
            let Some(task) = self.tasks.get_mut(t) else {
                continue;
            };
            task.state = TaskState::Erred(Arc::clone(&e));
            self.progress.erred(task.group, &mut task.counted);
            for client in task.wanted_by.iter() {
                self.out.push(Decision::Report {
                    client,
                    key: task.key.clone(),
                    outcome: Outcome::Erred(Arc::clone(&e)),
                });
            }
            // Done: a fire-and-forget holder lets go (settled below).
            task.wanted_by.remove(&FIRE_AND_FORGET);
            settle.extend_from_slice(&task.dependencies);
            settle.push(t);
            let Some(task) = self.tasks.get(t) else {
                continue;
            };
            for dependent in task.dependents.iter() {
                if self
                    .tasks
                    .get(dependent)
                    .is_some_and(|d| d.state.is_pending())
                {
                    stack.push((dependent, Arc::clone(&downstream)));
                }
            }
        }
        for t in settle {
            self.settle(t);
        }
    }

    /// Drops what is no longer needed, starting at `id`: a task nobody wants and
    /// nothing depends on is forgotten (and its inputs looked at in turn); a result
    /// nobody wants and no pending task reads is released from its workers.
    fn settle(&mut self, id: TaskId) {
        let mut stack = std::mem::take(&mut self.scratch.settle);
        stack.push(id);
        while let Some(t) = stack.pop() {
            let Some(task) = self.tasks.get(t) else {
                continue;
            };
            if !task.wanted_by.is_empty() {
                continue;
            }
            if task.dependents.is_empty() {
                let Some(task) = self.tasks.remove(t) else {
                    continue;
                };
                self.unrunnable.remove(&(task.priority, t));
                if let TaskState::Processing(w) = task.state {
                    self.abort_on_key(w, t, task.key.clone());
                }
                for w in task.who_has {
                    self.release_on(w, task.key.clone(), Some(task.nbytes));
                }
                for &dep in &task.dependencies {
                    if let Some(d) = self.tasks.get_mut(dep) {
                        d.dependents.remove(t);
                        stack.push(dep);
                    }
                }
                self.progress.forget(task.group);
                self.out.push(Decision::Forget { key: task.key });
                continue;
            }
            let still_read = task
                .dependents
                .iter()
                .any(|d| self.tasks.get(d).is_some_and(|d| d.state.is_pending()));
            if task.state == TaskState::Memory && !still_read {
                let Some(task) = self.tasks.get_mut(t) else {
                    continue;
                };
                task.state = TaskState::Released;
                let holders = std::mem::take(&mut task.who_has);
                let (key, nbytes) = (task.key.clone(), task.nbytes);
                for w in holders {
                    self.release_on(w, key.clone(), Some(nbytes));
                }
            }
        }
        self.scratch.settle = stack;
    }

    /// Tells `worker` to stop running `id`.
    fn abort_on(&mut self, worker: WorkerId, id: TaskId) {
        if let Some(key) = self.tasks.get(id).map(|t| t.key.clone()) {
            self.abort_on_key(worker, id, key);
        }
    }

    fn abort_on_key(&mut self, worker: WorkerId, id: TaskId, key: Key) {
        self.out.push(Decision::Abort { worker, key });
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&id);
        }
    }

    /// Tells `worker` to drop its copy of `key`; `held` is its size if the
    /// scheduler counted it among the worker's results.
    fn release_on(&mut self, worker: WorkerId, key: Key, held: Option<u64>) {
        if let Some(w) = self.workers.get_mut(&worker) {
            if let Some(nbytes) = held {
                w.drop_held(nbytes);
            }
            self.out.push(Decision::Release { worker, key });
        }
    }
}

/// A state's name, and its error when erred.
fn describe(state: &TaskState) -> (&'static str, Option<String>) {
    match state {
        TaskState::Released => ("released", None),
        TaskState::Waiting => ("waiting", None),
        TaskState::Queued => ("queued", None),
        TaskState::Processing(_) => ("processing", None),
        TaskState::Memory => ("memory", None),
        TaskState::Erred(e) => ("erred", Some(e.to_string())),
    }
}

/// Loads compared as numbers (they are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedLoad(f64);

/// What a task queued ahead on a thread weighs against moving input bytes when
/// placing a task: about what a link moves in the time of a short task (a
/// millisecond at 1 GB/s). Small inputs then do not pile every reader onto the
/// worker holding a few more of them; large ones still draw tasks to their data.
const QUEUED_TASK_BYTES: f64 = 1024.0 * 1024.0;

impl PartialOrd for OrderedLoad {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Eq for OrderedLoad {}

impl Ord for OrderedLoad {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
