//! The scheduler's event loop: the I/O around the pure [`Scheduler`] core.
//!
//! The core, the jobs of the tasks it knows, the workers and the clients live
//! behind one lock. Everything reaches them as a [`Message`] through
//! [`EventLoop::send`]: client submissions and releases, worker reports.
//! There is no scheduler thread to wake: the thread that sends a message applies
//! it to the core and carries out the decisions (jobs to workers, releases and
//! aborts, reports to clients), then also handles whatever other threads queued
//! meanwhile. A worker finishing a task thus schedules the next one itself,
//! without a hand-off. Messages sent while decisions are carried out (a dropped
//! value releasing a future, say) are queued, never handled re-entrantly.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use super::stream::{Bar, Mark, TaskStream};
use super::{
    ClientId, Decision, Event, GroupProgress, Input, Outcome, Scheduler, TaskDetail, TaskNode,
    TaskSpec, WorkerId, WorkerStatus,
};
use crate::key::{Key, KeySet};

/// Where a client hears how its keys ended.
pub type ReportSink = Arc<dyn Fn(Key, Outcome) + Send + Sync>;

/// What a worker's copy of a result turns into when released: dropped by the
/// server once its lock is let go (dropping data may send messages).
pub type Released = Box<dyn std::any::Any + Send>;

/// A worker as the scheduler drives it, running jobs of type `J`: in this
/// process or in another, reached over the network. Calls must not block:
/// they queue work.
pub trait WorkerEndpoint<J>: Send + Sync {
    /// The worker's id.
    fn id(&self) -> WorkerId;
    /// Its task slots.
    fn nthreads(&self) -> usize;
    /// The registered functions it carries; `None` (the default) for every
    /// one the cluster knows, as a worker sharing the client's registry.
    fn functions(&self) -> Option<Arc<std::collections::BTreeSet<String>>> {
        None
    }
    /// Runs `job` as task `key`, reading `inputs`.
    fn run(&self, key: Key, job: Arc<J>, inputs: Vec<Input>);
    /// Drops the worker's copy of `key`.
    fn release(&self, key: &Key) -> Option<Released>;
    /// Stops the tasks of `keys`.
    fn abort(&self, keys: &KeySet);
    /// Gives task `key` back if it has not started: it leaves the worker's
    /// queue and the worker reports [`Event::TaskStolen`]. A task that has
    /// started runs on.
    fn steal(&self, key: Key);
    /// Copies `key` from one of the workers `from` into this worker's store,
    /// then reports [`Event::DataReplicated`] (or [`Event::ReplicateFailed`]).
    fn replicate(&self, key: Key, from: Vec<WorkerId>);
    /// The worker has retired: nothing only it holds is needed any more. A
    /// worker of another process is told to close (its stream's end then
    /// removes it); `true` asks the server to remove it at once.
    fn retire(&self) -> bool;
}

/// What the scheduler is told.
pub enum Message<J> {
    /// A core event (from workers and clients).
    Event(Event),
    /// A client submits tasks (dependencies first), each with its job, and
    /// wants the results of `wanted` ([`Event::GraphSubmitted`]). The job of a
    /// key the scheduler already knows is dropped: that task is not redone.
    Submit {
        /// Who submits.
        client: ClientId,
        /// The tasks, each after its dependencies, with what they do.
        tasks: Vec<(TaskSpec, Arc<J>)>,
        /// The keys the client holds futures for.
        wanted: Vec<Key>,
    },
    /// A client connects.
    Connect(ClientId, ReportSink),
    /// A client goes away: its futures are released.
    Disconnect(ClientId),
    /// A worker joins.
    AddWorker(Arc<dyn WorkerEndpoint<J>>),
    /// A worker left or died: what it ran and held is recomputed elsewhere.
    RemoveWorker(WorkerId),
}

/// The scheduler at work: the core, its workers and clients, and the jobs of
/// its tasks. Cheap to clone: clones share it.
pub struct EventLoop<J> {
    shared: Arc<Shared<J>>,
}

impl<J> Clone for EventLoop<J> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<J> Default for EventLoop<J> {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                inbox: Mutex::default(),
                state: Mutex::new(LoopState {
                    core: Scheduler::default(),
                    jobs: HashMap::new(),
                    workers: HashMap::new(),
                    clients: HashMap::new(),
                    decisions: Vec::new(),
                }),
                stream: Mutex::default(),
            }),
        }
    }
}

struct Shared<J> {
    inbox: Mutex<VecDeque<Message<J>>>,
    state: Mutex<LoopState<J>>,
    /// Apart from the state, so that reading it never holds the scheduler up.
    stream: Mutex<TaskStream>,
}

impl<J: Send + Sync + 'static> EventLoop<J> {
    /// A scheduler with no workers and no clients.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands `message` to the scheduler. It is handled before this returns,
    /// unless another thread is handling messages: that one handles it.
    pub fn send(&self, message: Message<J>) {
        self.enqueue(message);
        self.drain();
    }

    /// Queues `message` behind those sent before, without handling it: for a
    /// sender that must fix its place in line while holding a lock of its own
    /// (which handling could need). Call [`drain`](Self::drain) after.
    pub fn enqueue(&self, message: Message<J>) {
        self.shared.inbox.lock().push_back(message);
    }

    /// Handles what is in the inbox, unless another thread holds the scheduler:
    /// that one does. Whoever takes the lock must come through here, or a
    /// message sent meanwhile could be left behind.
    pub fn drain(&self) {
        loop {
            let Some(mut state) = self.shared.state.try_lock() else {
                // The thread holding the lock handles it.
                return;
            };
            let mut dropped = Vec::new();
            loop {
                let batch = std::mem::take(&mut *self.shared.inbox.lock());
                if batch.is_empty() {
                    break;
                }
                self.note(&batch);
                for message in batch {
                    state.handle(message, &mut dropped);
                }
            }
            drop(state);
            // Data let go of outside the lock: dropping it may send messages.
            drop(dropped);
            // A message sent after our last look but before we let go of the lock
            // found it taken, and was left to us.
            if self.shared.inbox.lock().is_empty() {
                return;
            }
        }
    }

    /// Notes the tasks that ended and the workers that came or went in the
    /// task stream.
    fn note(&self, batch: &VecDeque<Message<J>>) {
        let mut stream = self.shared.stream.lock();
        let now = stream.now();
        for message in batch {
            match message {
                Message::Event(Event::TaskFinished {
                    worker,
                    key,
                    micros,
                    ..
                }) => stream.task(*worker, key, *micros, false, now),
                Message::Event(Event::TaskErred { worker, key, .. }) => {
                    stream.task(*worker, key, 0, true, now)
                }
                Message::AddWorker(worker) => stream.add_worker(worker.id(), worker.nthreads()),
                Message::RemoveWorker(worker) => stream.remove_worker(*worker),
                _ => {}
            }
        }
    }

    /// Adds what `worker` reports it moved (transfers, spills) to the task stream.
    pub fn note_marks(&self, worker: WorkerId, marks: Vec<Mark>) {
        let mut stream = self.shared.stream.lock();
        let now = stream.now();
        for mark in marks {
            stream.mark(worker, mark, now);
        }
    }

    /// What `look` reads of the core, once the message being handled is done.
    /// Messages sent while we held the lock were left to us: handled after.
    fn read<T>(&self, look: impl FnOnce(&Scheduler) -> T) -> T {
        let seen = look(&self.shared.state.lock().core);
        self.drain();
        seen
    }

    /// A weak handle, for senders owned by what the scheduler owns (workers).
    pub fn downgrade(&self) -> WeakEventLoop<J> {
        WeakEventLoop(Arc::downgrade(&self.shared))
    }
}

/// What is read of a running scheduler, and told to it, by those that do not
/// deal in its jobs: the dashboard, the cluster's questions.
pub trait SchedulerHandle: Send + Sync {
    /// Hands the core `event`, as [`EventLoop::send`] does.
    fn handle(&self, event: Event);

    /// The task stream's bars numbered `after` and up (at most `limit`, the
    /// latest), the number of the next bar, and the stream's clock now (ms).
    fn stream(&self, after: u64, limit: usize) -> (Vec<Bar>, u64, f64);

    /// How far each group of tasks has come (see [`Scheduler::progress`]).
    fn progress(&self) -> Vec<GroupProgress>;

    /// `key`'s task, as its page shows it.
    fn task_detail(&self, key: &Key) -> Option<TaskDetail>;

    /// Every task, when there are at most `limit` (see [`Scheduler::graph`]).
    fn graph(&self, limit: usize) -> Option<Vec<TaskNode>>;

    /// How many tasks the scheduler knows (waits for the message being handled).
    fn task_count(&self) -> usize;

    /// The key published as `name`.
    fn published(&self, name: &str) -> Option<Key>;

    /// How many tasks have finished since the scheduler started.
    fn tasks_finished(&self) -> u64;

    /// What the scheduler knows of `worker`: its load and holdings.
    fn worker(&self, worker: WorkerId) -> Option<WorkerStatus>;
}

impl<J: Send + Sync + 'static> SchedulerHandle for EventLoop<J> {
    fn handle(&self, event: Event) {
        self.send(Message::Event(event));
    }

    fn stream(&self, after: u64, limit: usize) -> (Vec<Bar>, u64, f64) {
        let stream = self.shared.stream.lock();
        (stream.since(after, limit), stream.next_seq(), stream.now())
    }

    fn progress(&self) -> Vec<GroupProgress> {
        self.read(|core| core.progress())
    }

    fn task_detail(&self, key: &Key) -> Option<TaskDetail> {
        self.read(|core| core.task_detail(key))
    }

    fn graph(&self, limit: usize) -> Option<Vec<TaskNode>> {
        self.read(|core| core.graph(limit))
    }

    fn task_count(&self) -> usize {
        self.read(|core| core.task_count())
    }

    fn published(&self, name: &str) -> Option<Key> {
        self.read(|core| core.published(name))
    }

    fn tasks_finished(&self) -> u64 {
        self.read(|core| core.tasks_finished())
    }

    fn worker(&self, worker: WorkerId) -> Option<WorkerStatus> {
        self.read(|core| core.worker(worker))
    }
}

/// An [`EventLoop`] handle that does not keep the scheduler alive.
pub struct WeakEventLoop<J>(std::sync::Weak<Shared<J>>);

impl<J> Clone for WeakEventLoop<J> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<J: Send + Sync + 'static> WeakEventLoop<J> {
    /// Sends `message` if the scheduler still exists.
    pub fn send(&self, message: Message<J>) {
        if let Some(shared) = self.0.upgrade() {
            EventLoop { shared }.send(message);
        }
    }
}

/// What the lock guards.
struct LoopState<J> {
    core: Scheduler,
    /// The job of each task the core knows (until it decides to forget it).
    jobs: HashMap<Key, Arc<J>>,
    workers: HashMap<WorkerId, Arc<dyn WorkerEndpoint<J>>>,
    clients: HashMap<ClientId, ReportSink>,
    /// The core's decisions, carried out one message at a time.
    decisions: Vec<Decision>,
}

/// Something let go of while the lock is held, to be dropped after.
type Dropped = Vec<Box<dyn std::any::Any + Send>>;

impl<J: Send + Sync + 'static> LoopState<J> {
    fn handle(&mut self, message: Message<J>, dropped: &mut Dropped) {
        let mut decisions = std::mem::take(&mut self.decisions);
        match message {
            Message::Event(event) => self.core.handle_into(event, &mut decisions),
            Message::Submit {
                client,
                tasks,
                wanted,
            } => {
                let mut specs = Vec::with_capacity(tasks.len());
                for (spec, job) in tasks {
                    match self.jobs.entry(spec.key.clone()) {
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(job);
                        }
                        std::collections::hash_map::Entry::Occupied(_) => {
                            dropped.push(Box::new(job))
                        }
                    }
                    specs.push(spec);
                }
                let event = Event::GraphSubmitted {
                    client,
                    tasks: specs,
                    wanted,
                };
                self.core.handle_into(event, &mut decisions);
            }
            Message::Connect(client, sink) => {
                self.clients.insert(client, sink);
            }
            Message::Disconnect(client) => {
                if let Some(sink) = self.clients.remove(&client) {
                    dropped.push(Box::new(sink));
                }
                let event = Event::ClientRemoved { client };
                self.core.handle_into(event, &mut decisions);
            }
            Message::AddWorker(worker) => {
                let (id, nthreads) = (worker.id(), worker.nthreads());
                let event = Event::WorkerAdded {
                    worker: id,
                    nthreads,
                    functions: worker.functions(),
                };
                self.workers.insert(id, worker);
                self.core.handle_into(event, &mut decisions);
            }
            Message::RemoveWorker(worker) => {
                if let Some(endpoint) = self.workers.remove(&worker) {
                    dropped.push(Box::new(endpoint));
                }
                let event = Event::WorkerRemoved { worker };
                self.core.handle_into(event, &mut decisions);
            }
        }
        self.dispatch(&mut decisions, dropped);
        self.decisions = decisions;
    }

    fn dispatch(&mut self, decisions: &mut Vec<Decision>, dropped: &mut Dropped) {
        // Aborts go out per worker at the end, so a worker looks through its queue
        // once however many of its tasks a cancel stops.
        let mut aborts: HashMap<WorkerId, KeySet> = HashMap::new();
        let mut removed = Vec::new();
        for decision in decisions.drain(..) {
            tracing::trace!("{decision}");
            match decision {
                Decision::Run {
                    worker,
                    key,
                    inputs,
                } => {
                    let (Some(w), Some(job)) = (self.workers.get(&worker), self.jobs.get(&key))
                    else {
                        tracing::error!(%key, worker, "cannot run: unknown worker or no job");
                        continue;
                    };
                    // Aborts decided before this run must not catch it.
                    if let Some(keys) = aborts.remove(&worker) {
                        w.abort(&keys);
                    }
                    w.run(key, Arc::clone(job), inputs);
                }
                Decision::Release { worker, key } => {
                    if let Some(data) = self.workers.get(&worker).and_then(|w| w.release(&key)) {
                        dropped.push(data);
                    }
                }
                Decision::Abort { worker, key } => {
                    aborts.entry(worker).or_default().insert(key);
                }
                Decision::Steal { worker, key } => {
                    if let Some(w) = self.workers.get(&worker) {
                        w.steal(key);
                    }
                }
                Decision::Forget { key } => {
                    if let Some(job) = self.jobs.remove(&key) {
                        dropped.push(Box::new(job));
                    }
                }
                Decision::Replicate { worker, key, from } => match self.workers.get(&worker) {
                    Some(w) => w.replicate(key, from),
                    None => tracing::debug!(%key, worker, "no worker to copy to"),
                },
                Decision::Retire { worker } => {
                    if self.workers.get(&worker).is_some_and(|w| w.retire()) {
                        removed.push(worker);
                    }
                }
                Decision::Report {
                    client,
                    key,
                    outcome,
                } => {
                    if let Some(sink) = self.clients.get(&client) {
                        sink(key, outcome);
                    }
                }
            }
        }
        for (worker, keys) in aborts {
            if let Some(w) = self.workers.get(&worker) {
                w.abort(&keys);
            }
        }
        for worker in removed {
            tracing::info!(worker, "worker retired");
            self.handle(Message::RemoveWorker(worker), dropped);
        }
    }
}
