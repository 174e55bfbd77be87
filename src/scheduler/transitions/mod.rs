//! [`Scheduler`]: events in, decisions out. Every state change happens here:
//! this file holds the events and the task transitions they lead to;
//! [`clients`] what clients hold, release, forget and publish;
//! [`workers`] the workers' comings, goings, pauses and retirements;
//! [`placement`] where ready tasks run; [`stealing`] how an idle worker takes
//! a task queued on a busy one; [`inspect`] what displays read.
//!
//! Tasks are referred to by [`TaskId`] inside: an event's key is looked up once,
//! and the transitions it leads to follow ids, with no hashing of keys.

mod clients;
mod inspect;
mod placement;
mod stealing;
mod workers;

use placement::{CHEAP_FETCH_BYTES, Durations};

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
    /// Tasks asked back from the workers holding them (see
    /// [`Decision::Steal`]), until they come back or run there.
    stealing: Vec<stealing::Asked>,
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
        self.steal_for_idle();
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
            Event::TaskStolen { worker, key } => {
                if let Some(id) = self.tasks.id(&key) {
                    self.stolen(worker, id);
                }
            }
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
            let mut parts = Vec::new();
            let mut seen = IdSet::default();
            let mut missing = None;
            for (i, dep) in spec.dependencies.iter().enumerate() {
                match self.tasks.id(dep) {
                    Some(d) if seen.insert(d) => {
                        dependencies.push(d);
                        parts.push(spec.parts.get(i).copied().unwrap_or(1).max(1));
                    }
                    Some(_) => {}
                    None => missing = missing.or_else(|| Some(dep.clone())),
                }
            }
            if parts.iter().all(|&p| p == 1) {
                parts.clear();
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
                parts: parts.into(),
                group,
                counted: 0,
                expected: 0,
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
                parts: Box::default(),
                group: NO_GROUP,
                counted: 0,
                expected: 0,
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
        // Sent ahead, it may report before the input it waited on (both ran
        // on this worker, the input first).
        task.waiting_on = 0;
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
            w.stop(id, task.expected);
            w.hold(nbytes);
        }
        let mut ready = std::mem::take(&mut self.scratch.ready);
        let mut started = SmallVec::<[(TaskId, WorkerId); 2]>::new();
        for dependent in dependents.iter() {
            let Some(d) = self.tasks.get_mut(dependent) else {
                continue;
            };
            match d.state {
                TaskState::Waiting => {
                    d.waiting_on -= 1;
                    if d.waiting_on == 0 {
                        ready.push((d.priority, dependent));
                    }
                }
                // Sent ahead: it starts once nothing it reads is pending
                // (counted again: an input lost meanwhile is recomputed).
                TaskState::Processing(w) if d.waiting_on > 0 => started.push((dependent, w)),
                _ => {}
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
        for (dependent, w) in started {
            let waiting_on = self.pending_inputs(dependent);
            if let Some(d) = self.tasks.get_mut(dependent) {
                d.waiting_on = waiting_on;
            }
            if waiting_on == 0 {
                self.run_ahead(dependent, w);
            }
        }
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
            w.stop(id, task.expected);
        }
        self.call_back_ahead(id);
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
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

    /// `id` will not be stored where it ran: the tasks sent ahead to wait for
    /// it there (and those waiting on them) are stopped and wait again.
    fn call_back_ahead(&mut self, id: TaskId) {
        let mut stack = vec![id];
        while let Some(t) = stack.pop() {
            let Some(task) = self.tasks.get(t) else {
                continue;
            };
            let ahead: SmallVec<[(TaskId, WorkerId); 4]> = task
                .dependents
                .iter()
                .filter_map(|d| {
                    let dependent = self.tasks.get(d)?;
                    match dependent.state {
                        TaskState::Processing(w) if dependent.is_ahead() => Some((d, w)),
                        _ => None,
                    }
                })
                .collect();
            for (d, w) in ahead {
                self.abort_on(w, d);
                // Counted again: another input may have been lost meanwhile.
                let waiting_on = self.pending_inputs(d);
                if let Some(dependent) = self.tasks.get_mut(d) {
                    dependent.state = TaskState::Waiting;
                    dependent.waiting_on = waiting_on;
                }
                stack.push(d);
            }
        }
    }

    /// How many inputs of `id` are not in memory.
    fn pending_inputs(&self, id: TaskId) -> usize {
        self.tasks.get(id).map_or(0, |task| {
            task.dependencies
                .iter()
                .filter(|&&d| {
                    self.tasks
                        .get(d)
                        .is_some_and(|d| d.state != TaskState::Memory)
                })
                .count()
        })
    }

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
        let expected = self.tasks.get(id).map_or(0, |t| t.expected);
        if let Some(w) = self.workers.get_mut(&worker) {
            w.stop(id, expected);
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
