//! [`Scheduler`]: events in, decisions out. Every state change happens here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use super::state::{Priority, Task, Worker};
use super::{
    ClientId, Decision, Event, Input, Key, Outcome, TaskError, TaskSpec, TaskState, TaskStatus,
    WorkerId, WorkerStatus,
};
use crate::key::{KeyMap, KeySet};

/// A task that has taken down this many workers errs instead of running again.
const MAX_WORKER_DEATHS: usize = 3;

/// The scheduler state machine. See the [module docs](super).
#[derive(Debug, Default)]
pub struct Scheduler {
    tasks: KeyMap<Task>,
    workers: BTreeMap<WorkerId, Worker>,
    /// Ready root tasks, best first; entries whose task is no longer queued are skipped.
    queue: BinaryHeap<Reverse<(Priority, Key)>>,
    /// Ready tasks that no current worker may run.
    unrunnable: BTreeSet<(Priority, Key)>,
    generation: u64,
    order: u64,
    out: Vec<Decision>,
}

impl Scheduler {
    /// An empty scheduler: no tasks, no workers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `event` and returns what the cluster must do about it.
    pub fn handle(&mut self, event: Event) -> Vec<Decision> {
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
            } => self.finished(worker, key, nbytes),
            Event::TaskErred { worker, key, error } => self.erred(worker, key, error),
            Event::WorkerAdded { worker, nthreads } => self.add_worker(worker, nthreads),
            Event::WorkerRemoved { worker } => self.remove_worker(worker),
            Event::FutureReleased { client, key } => self.unwant(client, &key, false),
            Event::Cancel { client, keys } => {
                for key in keys {
                    self.unwant(client, &key, true);
                }
            }
        }
        self.fill_slots();
        std::mem::take(&mut self.out)
    }

    /// The state of `key`, if the scheduler knows it.
    pub fn task(&self, key: &Key) -> Option<TaskStatus> {
        self.tasks.get(key).map(|t| TaskStatus {
            state: t.state.clone(),
            who_has: t.who_has.clone(),
            wanted_by: t.wanted_by.iter().copied().collect(),
        })
    }

    /// How many tasks the scheduler knows.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// The state of `worker`.
    pub fn worker(&self, worker: WorkerId) -> Option<WorkerStatus> {
        self.workers.get(&worker).map(|w| WorkerStatus {
            nthreads: w.nthreads,
            processing: w.processing.len(),
            in_memory: w.has.len(),
            nbytes: w.nbytes,
        })
    }

    /// The workers, by id.
    pub fn workers(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.workers.keys().copied()
    }

    // ----- events -------------------------------------------------------------------------

    fn submit(&mut self, client: ClientId, specs: Vec<TaskSpec>, wanted: Vec<Key>) {
        self.generation += 1;
        let mut new = Vec::new();
        for spec in specs {
            if self.tasks.contains_key(&spec.key) {
                continue;
            }
            let missing = spec
                .dependencies
                .iter()
                .find(|d| !self.tasks.contains_key(*d))
                .cloned();
            for dep in &spec.dependencies {
                if let Some(d) = self.tasks.get_mut(dep) {
                    d.dependents.insert(spec.key.clone());
                }
            }
            self.order += 1;
            let task = Task {
                state: TaskState::Released,
                dependencies: spec.dependencies,
                dependents: KeySet::default(),
                waiting_on: 0,
                wanted_by: BTreeSet::new(),
                who_has: Vec::new(),
                nbytes: 0,
                priority: (-spec.priority, self.generation, self.order),
                retries_left: spec.retries,
                restrictions: spec.workers,
                recomputable: true,
                died_on: Vec::new(),
            };
            self.tasks.insert(spec.key.clone(), task);
            match missing {
                Some(missing) => {
                    let error = TaskError::MissingDependency {
                        key: spec.key.clone(),
                        missing,
                    };
                    self.fail(&spec.key, Arc::new(error));
                }
                None => new.push(spec.key),
            }
        }
        for key in &wanted {
            match self.tasks.get_mut(key) {
                Some(task) => {
                    task.wanted_by.insert(client);
                    let outcome = match &task.state {
                        TaskState::Memory => Some(Outcome::Finished {
                            workers: task.who_has.clone(),
                        }),
                        TaskState::Erred(e) => Some(Outcome::Erred(Arc::clone(e))),
                        _ => None,
                    };
                    if let Some(outcome) = outcome {
                        self.out.push(Decision::Report {
                            client,
                            key: key.clone(),
                            outcome,
                        });
                    }
                }
                None => {
                    let error = TaskError::MissingDependency {
                        key: key.clone(),
                        missing: key.clone(),
                    };
                    self.out.push(Decision::Report {
                        client,
                        key: key.clone(),
                        outcome: Outcome::Erred(Arc::new(error)),
                    });
                }
            }
        }
        // Tasks nobody asked for and no wanted task needs are dropped at once.
        for key in new.iter().rev() {
            self.settle(key.clone());
        }
        // The rest come dependencies first, so each one's inputs are already pending.
        for key in &new {
            self.compute(key);
        }
    }

    fn scattered(&mut self, client: ClientId, key: Key, workers: Vec<WorkerId>, nbytes: u64) {
        let workers: Vec<WorkerId> = workers
            .into_iter()
            .filter(|w| self.workers.contains_key(w))
            .collect();
        if workers.is_empty() && !self.tasks.contains_key(&key) {
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
        for w in &workers {
            if let Some(worker) = self.workers.get_mut(w)
                && worker.has.insert(key.clone())
            {
                worker.nbytes += nbytes;
            }
        }
        self.order += 1;
        let order = self.order;
        let task = self.tasks.entry(key.clone()).or_insert_with(|| Task {
            state: TaskState::Memory,
            dependencies: Vec::new(),
            dependents: KeySet::default(),
            waiting_on: 0,
            wanted_by: BTreeSet::new(),
            who_has: Vec::new(),
            nbytes,
            priority: (0, 0, order),
            retries_left: 0,
            restrictions: None,
            recomputable: false,
            died_on: Vec::new(),
        });
        for w in workers {
            if !task.who_has.contains(&w) {
                task.who_has.push(w);
            }
        }
        task.wanted_by.insert(client);
        let workers = task.who_has.clone();
        self.out.push(Decision::Report {
            client,
            key,
            outcome: Outcome::Finished { workers },
        });
    }

    fn finished(&mut self, worker: WorkerId, key: Key, nbytes: u64) {
        let Some(task) = self.tasks.get_mut(&key) else {
            // Forgotten while it ran: nobody wants the result.
            self.release_on(worker, key, nbytes);
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
                    w.has.insert(key.clone());
                    w.nbytes += nbytes;
                }
                return;
            }
            _ => {
                self.release_on(worker, key, nbytes);
                return;
            }
        }
        task.state = TaskState::Memory;
        task.who_has = vec![worker];
        task.nbytes = nbytes;
        let clients: Vec<ClientId> = task.wanted_by.iter().copied().collect();
        let dependents: Vec<Key> = task.dependents.iter().cloned().collect();
        let dependencies = task.dependencies.clone();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&key);
            w.has.insert(key.clone());
            w.nbytes += nbytes;
        }
        for client in clients {
            let outcome = Outcome::Finished {
                workers: vec![worker],
            };
            self.out.push(Decision::Report {
                client,
                key: key.clone(),
                outcome,
            });
        }
        let mut ready = Vec::new();
        for dependent in dependents {
            if let Some(d) = self.tasks.get_mut(&dependent)
                && d.state == TaskState::Waiting
            {
                d.waiting_on -= 1;
                if d.waiting_on == 0 {
                    ready.push((d.priority, dependent));
                }
            }
        }
        ready.sort();
        for (_, dependent) in ready {
            self.ready(&dependent);
        }
        self.settle(key);
        for dep in dependencies {
            self.settle(dep);
        }
    }

    fn erred(&mut self, worker: WorkerId, key: Key, error: TaskError) {
        let Some(task) = self.tasks.get_mut(&key) else {
            return;
        };
        if task.state != TaskState::Processing(worker) {
            return;
        }
        task.state = TaskState::Released;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&key);
        }
        match error {
            TaskError::FetchFailed {
                worker: holder,
                key: input,
            } => {
                // The input is gone from where we thought it was: forget that copy,
                // recompute it if it was the last, and run this task again after.
                self.drop_copy(holder, &input);
                self.compute(&key);
            }
            error if task.retries_left > 0 => {
                task.retries_left -= 1;
                tracing::debug!(%key, %error, "retrying task");
                self.compute(&key);
            }
            error => self.fail(&key, Arc::new(error)),
        }
    }

    fn add_worker(&mut self, worker: WorkerId, nthreads: usize) {
        self.workers.entry(worker).or_insert_with(|| Worker {
            nthreads: nthreads.max(1),
            ..Worker::default()
        });
        // Tasks that had nowhere to run may have somewhere now.
        for (_, key) in std::mem::take(&mut self.unrunnable) {
            if self
                .tasks
                .get(&key)
                .is_some_and(|t| t.state == TaskState::Released)
            {
                self.ready(&key);
            }
        }
    }

    fn remove_worker(&mut self, worker: WorkerId) {
        let Some(gone) = self.workers.remove(&worker) else {
            return;
        };
        let mut rerun = Vec::new();
        for key in gone.processing {
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            task.died_on.push(worker);
            task.state = TaskState::Released;
            if task.died_on.len() >= MAX_WORKER_DEATHS {
                let error = TaskError::KilledWorkers {
                    key: key.clone(),
                    workers: task.died_on.clone(),
                };
                self.fail(&key, Arc::new(error));
            } else {
                rerun.push((task.priority, key));
            }
        }
        for key in gone.has {
            self.drop_copy(worker, &key);
        }
        rerun.sort();
        for (_, key) in rerun {
            self.compute(&key);
        }
    }

    fn unwant(&mut self, client: ClientId, key: &Key, cancel: bool) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        if task.wanted_by.remove(&client) && cancel {
            self.out.push(Decision::Report {
                client,
                key: key.clone(),
                outcome: Outcome::Cancelled,
            });
        }
        self.settle(key.clone());
    }

    // ----- transitions --------------------------------------------------------------------

    /// Forgets that `worker` holds `key`. If that was the last copy, the task goes
    /// back to released (or errs, for scattered data), and is recomputed if needed.
    fn drop_copy(&mut self, worker: WorkerId, key: &Key) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.has.remove(key);
        }
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        task.who_has.retain(|w| *w != worker);
        if task.state != TaskState::Memory || !task.who_has.is_empty() {
            return;
        }
        if !task.recomputable {
            self.fail(
                key,
                Arc::new(TaskError::DataLost {
                    key: key.clone(),
                    worker,
                }),
            );
            return;
        }
        task.state = TaskState::Released;
        let dependents: Vec<Key> = task.dependents.iter().cloned().collect();
        let mut needed = !task.wanted_by.is_empty();
        for dependent in dependents {
            if let Some(d) = self.tasks.get_mut(&dependent) {
                if d.state == TaskState::Waiting {
                    d.waiting_on += 1;
                    needed = true;
                } else if d.state.is_pending() {
                    needed = true;
                }
            }
        }
        if needed {
            self.compute(key);
        }
    }

    /// Brings `key` toward memory: it and every released ancestor it needs are
    /// made waiting or ready, in graph order.
    fn compute(&mut self, key: &Key) {
        let Some(task) = self.tasks.get(key) else {
            return;
        };
        let inputs_known = task.dependencies.iter().all(|d| {
            self.tasks
                .get(d)
                .is_none_or(|d| d.state != TaskState::Released)
        });
        if inputs_known {
            self.compute_released(key);
            return;
        }
        // Collect the released tasks to revive, then revive them dependencies first.
        let mut revive = Vec::new();
        let mut seen = KeySet::default();
        let mut stack = vec![key.clone()];
        while let Some(k) = stack.pop() {
            let Some(task) = self.tasks.get(&k) else {
                continue;
            };
            if task.state != TaskState::Released || !seen.insert(k.clone()) {
                continue;
            }
            for dep in &task.dependencies {
                stack.push(dep.clone());
            }
            revive.push((task.priority, k));
        }
        revive.sort();
        for (_, k) in revive {
            self.compute_released(&k);
        }
    }

    /// A released task whose inputs are each pending, in memory or erred becomes
    /// erred, waiting or ready.
    fn compute_released(&mut self, key: &Key) {
        let Some(task) = self.tasks.get(key) else {
            return;
        };
        if task.state != TaskState::Released {
            return;
        }
        let mut waiting_on = 0;
        for dep in &task.dependencies {
            match self.tasks.get(dep).map(|d| &d.state) {
                Some(TaskState::Memory) => {}
                Some(TaskState::Erred(e)) => {
                    let error = Arc::new(TaskError::DependencyFailed {
                        key: dep.clone(),
                        source: Arc::clone(e),
                    });
                    let error = match e.as_ref() {
                        TaskError::DependencyFailed { .. } => Arc::clone(e),
                        _ => error,
                    };
                    self.fail(key, error);
                    return;
                }
                _ => waiting_on += 1,
            }
        }
        if waiting_on == 0 {
            self.ready(key);
        } else if let Some(task) = self.tasks.get_mut(key) {
            task.state = TaskState::Waiting;
            task.waiting_on = waiting_on;
        }
    }

    /// A task whose inputs are all in memory: root tasks queue for a free thread,
    /// others go to the best worker now.
    fn ready(&mut self, key: &Key) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        if task.dependencies.is_empty() {
            task.state = TaskState::Queued;
            self.queue.push(Reverse((task.priority, key.clone())));
            return;
        }
        match self.decide_worker(key) {
            Some(worker) => self.assign(key, worker),
            None => {
                if let Some(task) = self.tasks.get_mut(key) {
                    task.state = TaskState::Released;
                    self.unrunnable.insert((task.priority, key.clone()));
                }
            }
        }
    }

    /// The best worker for a task with inputs: one with a free thread if any, then
    /// the fewest input bytes to fetch, then the lowest load.
    fn decide_worker(&self, key: &Key) -> Option<WorkerId> {
        let task = self.tasks.get(key)?;
        let inputs: Vec<&Task> = task
            .dependencies
            .iter()
            .filter_map(|d| self.tasks.get(d))
            .collect();
        self.allowed_workers(task)
            .map(|(id, w)| {
                let transfer: u64 = inputs
                    .iter()
                    .filter(|d| !d.who_has.contains(&id))
                    .map(|d| d.nbytes)
                    .sum();
                ((w.is_saturated(), transfer, OrderedLoad(w.load())), id)
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, id)| id)
    }

    fn allowed_workers<'a>(
        &'a self,
        task: &'a Task,
    ) -> impl Iterator<Item = (WorkerId, &'a Worker)> + 'a {
        self.workers
            .iter()
            .filter(move |(id, _)| task.restrictions.as_ref().is_none_or(|r| r.contains(id)))
            .map(|(id, w)| (*id, w))
    }

    fn assign(&mut self, key: &Key, worker: WorkerId) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        task.state = TaskState::Processing(worker);
        let dependencies = task.dependencies.clone();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.insert(key.clone());
        }
        let inputs = dependencies
            .into_iter()
            .map(|d| {
                let holders = self
                    .tasks
                    .get(&d)
                    .map(|t| t.who_has.clone())
                    .unwrap_or_default();
                Input { key: d, holders }
            })
            .collect();
        self.out.push(Decision::Run {
            worker,
            key: key.clone(),
            inputs,
        });
    }

    /// Sends queued root tasks to workers with free threads, best first.
    fn fill_slots(&mut self) {
        let mut blocked = Vec::new();
        while let Some(Reverse((priority, key))) = self.queue.pop() {
            let Some(task) = self.tasks.get(&key) else {
                continue;
            };
            if task.state != TaskState::Queued || task.priority != priority {
                continue;
            }
            if self.workers.values().all(Worker::is_saturated) {
                self.queue.push(Reverse((priority, key)));
                break;
            }
            let free = self
                .allowed_workers(task)
                .filter(|(_, w)| !w.is_saturated())
                .min_by(|a, b| OrderedLoad(a.1.load()).cmp(&OrderedLoad(b.1.load())))
                .map(|(id, _)| id);
            match free {
                Some(worker) => self.assign(&key, worker),
                None if self.allowed_workers(task).next().is_none() => {
                    if let Some(task) = self.tasks.get_mut(&key) {
                        task.state = TaskState::Released;
                        self.unrunnable.insert((priority, key));
                    }
                }
                None => blocked.push(Reverse((priority, key))),
            }
        }
        self.queue.extend(blocked);
    }

    /// Marks `key` erred with `error`, and every pending task downstream of it with
    /// a [`TaskError::DependencyFailed`] pointing at `key`.
    fn fail(&mut self, key: &Key, error: Arc<TaskError>) {
        let downstream = match error.as_ref() {
            TaskError::DependencyFailed { .. } => Arc::clone(&error),
            _ => Arc::new(TaskError::DependencyFailed {
                key: key.clone(),
                source: Arc::clone(&error),
            }),
        };
        let mut stack = vec![(key.clone(), error)];
        let mut settle = Vec::new();
        while let Some((k, e)) = stack.pop() {
            let Some(task) = self.tasks.get_mut(&k) else {
                continue;
            };
            if let TaskState::Processing(w) = task.state {
                self.abort_on(w, &k);
            }
            let Some(task) = self.tasks.get_mut(&k) else {
                continue;
            };
            task.state = TaskState::Erred(Arc::clone(&e));
            for client in task.wanted_by.iter().copied() {
                self.out.push(Decision::Report {
                    client,
                    key: k.clone(),
                    outcome: Outcome::Erred(Arc::clone(&e)),
                });
            }
            let dependents: Vec<Key> = task.dependents.iter().cloned().collect();
            settle.extend(task.dependencies.iter().cloned());
            settle.push(k);
            for dependent in dependents {
                if self
                    .tasks
                    .get(&dependent)
                    .is_some_and(|d| d.state.is_pending())
                {
                    stack.push((dependent, Arc::clone(&downstream)));
                }
            }
        }
        for k in settle {
            self.settle(k);
        }
    }

    /// Drops what is no longer needed, starting at `key`: a task nobody wants and
    /// nothing depends on is forgotten (and its inputs looked at in turn); a result
    /// nobody wants and no pending task reads is released from its workers.
    fn settle(&mut self, key: Key) {
        let mut stack = vec![key];
        while let Some(k) = stack.pop() {
            let Some(task) = self.tasks.get(&k) else {
                continue;
            };
            if !task.wanted_by.is_empty() {
                continue;
            }
            if task.dependents.is_empty() {
                let Some(task) = self.tasks.remove(&k) else {
                    continue;
                };
                self.unrunnable.remove(&(task.priority, k.clone()));
                if let TaskState::Processing(w) = task.state {
                    self.abort_on(w, &k);
                }
                for w in task.who_has {
                    self.release_on(w, k.clone(), task.nbytes);
                }
                self.out.push(Decision::Forget { key: k.clone() });
                for dep in task.dependencies {
                    if let Some(d) = self.tasks.get_mut(&dep) {
                        d.dependents.remove(&k);
                        stack.push(dep);
                    }
                }
                continue;
            }
            let still_read = task
                .dependents
                .iter()
                .any(|d| self.tasks.get(d).is_some_and(|d| d.state.is_pending()));
            if task.state == TaskState::Memory && !still_read {
                let nbytes = task.nbytes;
                let holders = match self.tasks.get_mut(&k) {
                    Some(task) => {
                        task.state = TaskState::Released;
                        std::mem::take(&mut task.who_has)
                    }
                    None => Vec::new(),
                };
                for w in holders {
                    self.release_on(w, k.clone(), nbytes);
                }
            }
        }
    }

    /// Tells `worker` to stop running `key`.
    fn abort_on(&mut self, worker: WorkerId, key: &Key) {
        self.out.push(Decision::Abort {
            worker,
            key: key.clone(),
        });
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(key);
        }
    }

    /// Tells `worker` to drop its copy of `key` (of `nbytes`).
    fn release_on(&mut self, worker: WorkerId, key: Key, nbytes: u64) {
        if let Some(w) = self.workers.get_mut(&worker) {
            if w.has.remove(&key) {
                w.nbytes = w.nbytes.saturating_sub(nbytes);
            }
            self.out.push(Decision::Release { worker, key });
        }
    }
}

/// Loads compared as numbers (they are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedLoad(f64);

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
