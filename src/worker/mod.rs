//! Workers: task slots, a store of results by key, and the code that runs tasks.
//!
//! A [`Worker`] runs [`Job`]s on a runtime of its own (`nthreads` threads, so CPU
//! work stays off the client's async reactor): `nthreads` slot loops take tasks
//! from the worker's [`TaskQueue`](queue::TaskQueue) and run them. A task's inputs are read from the stores of the workers holding them
//! ([`Peers`]); in-process that is a lookup returning the same `Arc`, never a
//! copy. Each result goes into the worker's [`DataStore`], and the scheduler
//! hears of it through the worker's event sink.

mod activity;
mod job;
pub mod memory;
mod queue;
mod space;
mod spill;
mod store;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::execution::TaskContext;
use datafusion::prelude::SessionContext;
use futures::future::{AbortHandle, Abortable};
use parking_lot::Mutex;

pub use activity::{Activity, WorkerMetrics};
pub use job::{EncodedJob, EncodedStage, FunctionArg, FunctionJob, Job, StageJob, WireArg};
pub use space::WorkSpace;
pub use store::{Budget, DataStore, Peers, Stored};

use crate::exec::{FetchError, StageInput, TaskData, TaskInputs};
use crate::key::{Key, KeyMap, KeySet};
use crate::scheduler::{Event, Input, TaskError, WorkerId};
use queue::{Assigned, TaskQueue};

/// Where a worker reports finished and failed tasks.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// An in-process worker.
pub struct Worker {
    slots: Arc<Slots>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// What the worker's slot loops share.
struct Slots {
    id: WorkerId,
    nthreads: usize,
    store: Arc<DataStore>,
    peers: Arc<Peers>,
    queue: TaskQueue,
    /// What every task context of the worker starts from.
    base: Arc<TaskContext>,
    /// Tasks sent ahead of an input this worker computes first, by that
    /// input: queued once it is stored (see [`Input::holders`]).
    parked: Mutex<KeyMap<Vec<Assigned>>>,
    /// Stage tasks queued or running, to abort them; each with the number of
    /// its run, so a run that ends late does not unregister a newer one.
    running: Mutex<KeyMap<(u64, AbortHandle)>>,
    runs: std::sync::atomic::AtomicU64,
    events: EventSink,
}

impl Worker {
    /// Starts worker `id` with `nthreads` task slots, running tasks in `session`
    /// (its object stores, memory pool and functions), reading inputs from
    /// `peers` and reporting to `events`. The worker adds its store to `peers`.
    pub fn start(
        id: WorkerId,
        nthreads: usize,
        session: &SessionContext,
        peers: Arc<Peers>,
        events: EventSink,
    ) -> std::io::Result<Self> {
        let store = Arc::new(DataStore::default());
        Self::start_with_store(id, nthreads, session, peers, events, store)
    }

    /// [`start`](Self::start), keeping results in `store` (with its budget).
    pub fn start_with_store(
        id: WorkerId,
        nthreads: usize,
        session: &SessionContext,
        peers: Arc<Peers>,
        events: EventSink,
        store: Arc<DataStore>,
    ) -> std::io::Result<Self> {
        let nthreads = nthreads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(nthreads)
            .thread_name(format!("rask-worker-{id}"))
            .enable_all()
            .build()?;
        peers.insert(id, Arc::clone(&store));
        let slots = Arc::new(Slots {
            id,
            nthreads,
            store,
            peers,
            queue: TaskQueue::default(),
            parked: Mutex::new(KeyMap::default()),
            base: Arc::new(TaskContext::from(session)),
            running: Mutex::new(KeyMap::default()),
            runs: std::sync::atomic::AtomicU64::new(0),
            events,
        });
        for _ in 0..nthreads {
            runtime.spawn(Arc::clone(&slots).run_slot());
        }
        Ok(Self {
            slots,
            runtime: Some(runtime),
        })
    }

    /// The worker's id.
    pub fn id(&self) -> WorkerId {
        self.slots.id
    }

    /// Task slots.
    pub fn nthreads(&self) -> usize {
        self.slots.nthreads
    }

    /// The results this worker holds.
    pub fn store(&self) -> &Arc<DataStore> {
        &self.slots.store
    }

    /// What the worker holds and is doing now.
    pub fn metrics(&self) -> WorkerMetrics {
        self.slots.store.metrics(self.slots.queue.len() as u64)
    }

    /// Queues `job` as task `key`, reading `inputs`; a slot runs it and reports.
    /// An input with no holders is one this worker computes first: the task
    /// waits for it to be stored. A stage task can be aborted from now on,
    /// waiting, queued or running.
    pub fn run(&self, key: Key, job: Arc<Job>, inputs: Vec<Input>) {
        let abort = matches!(*job, Job::Stage(_)).then(|| {
            let run = self.slots.runs.fetch_add(1, Ordering::Relaxed);
            let (handle, registration) = AbortHandle::new_pair();
            self.slots.running.lock().insert(key.clone(), (run, handle));
            (run, registration)
        });
        self.slots.queue_or_park(Assigned {
            key,
            job,
            inputs,
            abort,
        });
    }

    /// Gives task `key` back to the scheduler if it has not started here: it
    /// leaves the queue and the worker reports [`Event::TaskStolen`]. A task
    /// running, done or waiting for an input computed here stays.
    pub fn steal(&self, key: Key) {
        let keys: KeySet = std::iter::once(key).collect();
        let taken = self.slots.queue.remove(&keys);
        {
            let mut running = self.slots.running.lock();
            for key in &taken {
                running.remove(key);
            }
        }
        for key in taken {
            (self.slots.events)(Event::TaskStolen {
                worker: self.slots.id,
                key,
            });
        }
    }

    /// Takes this worker's copy of `key` out of its store.
    pub fn release(&self, key: &Key) -> Option<Arc<TaskData>> {
        self.slots.store.remove(key)
    }

    /// Stops the tasks of `keys`: drops those that have not started, stops
    /// running stages. A running function call finishes; its result is dropped.
    pub fn abort(&self, keys: &KeySet) {
        self.slots.queue.remove(keys);
        self.slots.parked.lock().retain(|_, waiting| {
            waiting.retain(|task| !keys.contains(&task.key));
            !waiting.is_empty()
        });
        let mut running = self.slots.running.lock();
        for key in keys {
            if let Some((_, handle)) = running.remove(key) {
                handle.abort();
            }
        }
    }
}

impl crate::scheduler::WorkerEndpoint<Job> for Worker {
    fn id(&self) -> WorkerId {
        Worker::id(self)
    }

    fn nthreads(&self) -> usize {
        Worker::nthreads(self)
    }

    fn run(&self, key: Key, job: Arc<Job>, inputs: Vec<Input>) {
        Worker::run(self, key, job, inputs);
    }

    fn release(&self, key: &Key) -> Option<crate::scheduler::Released> {
        Worker::release(self, key).map(|data| Box::new(data) as _)
    }

    fn abort(&self, keys: &KeySet) {
        Worker::abort(self, keys);
    }

    fn steal(&self, key: Key) {
        Worker::steal(self, key);
    }

    /// In process, a copy is the same `Arc` in this worker's store.
    fn replicate(&self, key: Key, from: Vec<WorkerId>) {
        let slots = &self.slots;
        let event = match from.iter().find_map(|w| slots.peers.get(*w, &key)) {
            Some(data) => {
                slots.store.insert(key.clone(), data);
                Event::DataReplicated {
                    worker: slots.id,
                    key,
                }
            }
            None => Event::ReplicateFailed {
                worker: slots.id,
                key,
            },
        };
        (slots.events)(event);
    }

    fn retire(&self) -> bool {
        true
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.slots.queue.close();
        self.slots.peers.remove(self.slots.id);
        // Dropping a runtime from async code would panic; let it wind down on its own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Slots {
    /// Queues `task`, or parks it until the first of its inputs this worker
    /// is still computing is stored.
    fn queue_or_park(&self, task: Assigned) {
        let mut parked = self.parked.lock();
        // Checked under the lock: `unpark` takes it after storing a result.
        let missing = task
            .inputs
            .iter()
            .find(|input| input.holders.is_empty() && !self.store.contains(&input.key))
            .map(|input| input.key.clone());
        match missing {
            Some(key) => parked.entry(key).or_default().push(task),
            None => {
                drop(parked);
                self.queue.push(task);
            }
        }
    }

    /// `key` is stored: the tasks waiting for it go on.
    fn unpark(&self, key: &Key) {
        let waiting = self.parked.lock().remove(key);
        for task in waiting.into_iter().flatten() {
            self.queue_or_park(task);
        }
    }

    /// One task slot: takes tasks from the queue, runs them, reports them.
    async fn run_slot(self: Arc<Self>) {
        loop {
            if self.store.over_pause() {
                // Past the pause fraction: no new work until results are
                // released or spilled.
                tracing::debug!(memory = self.store.memory(), "paused");
                while self.store.over_pause() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            let Some(task) = self.queue.next().await else {
                return;
            };
            if let Some(event) = self.execute(task).await {
                self.queue.reporting(|| (self.events)(event));
            }
        }
    }

    /// Runs a task and stores its result; the event to report, or `None` if the
    /// task was aborted.
    async fn execute(&self, task: Assigned) -> Option<Event> {
        let Assigned {
            key,
            job,
            inputs,
            abort,
        } = task;
        let started = std::time::Instant::now();
        let _running = self.store.activity().running();
        let result = match &*job {
            Job::Function(function) => match self.fetch_all(&inputs).await {
                Ok(args) => call(function, &args),
                Err(e) => Err(e),
            },
            Job::Concat => self.fetch_all(&inputs).await.map(|inputs| {
                let batches = inputs.iter().flat_map(|d| d.batches().cloned()).collect();
                TaskData::Batches(vec![batches])
            }),
            Job::Stage(stage) => {
                let (run, registration) = match abort {
                    Some(abort) => abort,
                    None => (u64::MAX, AbortHandle::new_pair().1),
                };
                let result = Abortable::new(self.run_stage(stage, &inputs), registration).await;
                let mut running = self.running.lock();
                if running.get(&key).is_some_and(|(r, _)| *r == run) {
                    running.remove(&key);
                }
                drop(running);
                result.ok()?
            }
            Job::Encoded(_) => Err(Failure::Message(
                "a job encoded for another process reached a worker undecoded".into(),
            )),
        };
        let id = self.id;
        Some(match result {
            Ok(data) => {
                let data = Arc::new(data);
                let nbytes = self.store.insert(key.clone(), Arc::clone(&data));
                tracing::debug!(
                    %key,
                    rows = data.batches().map(|b| b.num_rows()).sum::<usize>(),
                    nbytes,
                    micros = started.elapsed().as_micros() as u64,
                    "task finished"
                );
                drop(data);
                self.unpark(&key);
                Event::TaskFinished {
                    worker: id,
                    key,
                    nbytes,
                    micros: started.elapsed().as_micros() as u64,
                }
            }
            Err(Failure::Fetch(error)) => Event::TaskErred {
                worker: id,
                key,
                error,
            },
            Err(Failure::Message(message)) => Event::TaskErred {
                worker: id,
                key: key.clone(),
                error: TaskError::Failed {
                    key,
                    worker: id,
                    message,
                },
            },
        })
    }

    /// Runs one partition of a stage on its inputs.
    async fn run_stage(&self, stage: &StageJob, inputs: &[Input]) -> Result<TaskData, Failure> {
        let mut found = KeyMap::with_capacity_and_hasher(inputs.len(), Default::default());
        for input in inputs {
            found.insert(input.key.clone(), self.input(input)?);
        }
        let mut task_inputs = TaskInputs::default();
        for (input_stage, keys) in &stage.inputs {
            let outputs = keys
                .iter()
                .map(|k| {
                    found.get(k).cloned().ok_or_else(|| {
                        Failure::Message(format!("input {k} was not sent to the task"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            task_inputs.insert(*input_stage, outputs);
        }
        let run = stage.stage.run(stage.partition, task_inputs, &self.base);
        match crate::error::catch_panics(run).await {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(e)) => Err(match FetchError::find(&e) {
                // An input held elsewhere could not be fetched: it is recomputed.
                Some(fetch) => Failure::fetch(fetch.key.clone(), fetch.worker),
                None => Failure::Message(crate::Error::from(e).to_string()),
            }),
            Err(panic) => Err(Failure::Message(panic.to_string())),
        }
    }

    /// Reads every input whole, in order; those held elsewhere are fetched
    /// at the same time.
    async fn fetch_all(&self, inputs: &[Input]) -> Result<Vec<Arc<TaskData>>, Failure> {
        let sources = inputs
            .iter()
            .map(|input| self.input(input))
            .collect::<Result<Vec<_>, _>>()?;
        StageInput::data_each(&sources)
            .await
            .map_err(|e| Failure::fetch(e.key, e.worker))
    }

    /// Where an input can be read: in this process, or from a remote holder.
    fn input(&self, input: &Input) -> Result<StageInput, Failure> {
        // No holders: computed here before this task (sent ahead).
        let here = [self.id];
        let holders = match input.holders.as_slice() {
            [] => &here[..],
            holders => holders,
        };
        self.peers
            .input(&input.key, input.nbytes, holders)
            .ok_or_else(|| {
                let worker = holders.first().copied().unwrap_or(WorkerId::MAX);
                Failure::fetch(input.key.clone(), worker)
            })
    }
}

/// Calls a function on its inputs' data, in input order.
fn call(function: &FunctionJob, args: &[Arc<TaskData>]) -> Result<TaskData, Failure> {
    let call = std::panic::AssertUnwindSafe(|| function.call(args));
    match std::panic::catch_unwind(call) {
        Ok(result) => result.map_err(|e| Failure::Message(format!("{}: {e}", function.name))),
        Err(panic) => Err(Failure::Message(format!(
            "{}: panicked: {}",
            function.name,
            crate::exec::panic_message(panic.as_ref())
        ))),
    }
}

/// Why a task has no result.
enum Failure {
    /// An input could not be read: the scheduler recomputes it.
    Fetch(TaskError),
    /// The task's code failed.
    Message(String),
}

impl Failure {
    fn fetch(key: Key, worker: WorkerId) -> Self {
        Failure::Fetch(TaskError::FetchFailed { worker, key })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A function job returning `f` of its inputs' `u64` values.
    fn job(f: fn(&[u64]) -> u64) -> Arc<Job> {
        let code: crate::udf::TaskFn = Arc::new(move |inputs: &[Arc<TaskData>]| {
            let values: Vec<u64> = inputs
                .iter()
                .map(|d| d.value::<u64>().copied().ok_or("not a u64"))
                .collect::<Result<_, _>>()?;
            Ok(TaskData::local_value(f(&values), 8))
        });
        Arc::new(Job::Function(FunctionJob::new("f", code, false)))
    }

    /// Worker 1 with one thread, and what it reports.
    fn one_thread_worker() -> (Worker, mpsc::Receiver<Event>) {
        let (sender, events) = mpsc::channel();
        let sink: EventSink = Arc::new(move |event| {
            let _ = sender.send(event);
        });
        let session = SessionContext::new();
        let worker = Worker::start(1, 1, &session, Arc::new(Peers::default()), sink)
            .expect("worker threads");
        (worker, events)
    }

    /// An input computed on this worker first (sent with no holders).
    fn computed_here(k: &str) -> Input {
        Input {
            key: Key::new(k),
            holders: Vec::new(),
            nbytes: 0,
        }
    }

    #[test]
    fn a_task_sent_ahead_starts_once_its_input_is_stored_here() {
        let (worker, events) = one_thread_worker();
        // b reads a, c reads b, and both arrive before a; d waits on an input
        // that never comes and is aborted.
        worker.run(
            Key::new("c-1"),
            job(|v| v[0] * 10),
            vec![computed_here("b-1")],
        );
        worker.run(
            Key::new("b-1"),
            job(|v| v[0] + 1),
            vec![computed_here("a-1")],
        );
        worker.run(Key::new("d-1"), job(|v| v[0]), vec![computed_here("x-1")]);
        worker.abort(&[Key::new("d-1")].into_iter().collect());
        worker.run(Key::new("a-1"), job(|_| 41), Vec::new());
        let mut finished = Vec::new();
        while finished.len() < 3 {
            match events.recv_timeout(Duration::from_secs(10)) {
                Ok(Event::TaskFinished { key, .. }) => finished.push(key.to_string()),
                Ok(other) => panic!("unexpected event {other:?}"),
                Err(e) => panic!("finished so far {finished:?}: {e}"),
            }
        }
        assert_eq!(finished, ["a-1", "b-1", "c-1"]);
        let c = worker.store().get(&Key::new("c-1")).expect("c stored");
        assert_eq!(c.value::<u64>(), Some(&420));
        assert!(worker.slots.parked.lock().is_empty(), "d was dropped");
    }

    #[test]
    fn a_queued_task_is_given_back_and_a_running_one_runs_on() {
        let (worker, events) = one_thread_worker();
        // The one thread runs a task that holds it until told to go on.
        let (started, has_started) = mpsc::channel();
        let (go_on, gone_on) = mpsc::channel::<()>();
        let gone_on = Mutex::new(gone_on);
        let code: crate::udf::TaskFn = Arc::new(move |_: &[Arc<TaskData>]| {
            let _ = started.send(());
            let _ = gone_on.lock().recv_timeout(Duration::from_secs(10));
            Ok(TaskData::local_value(1u64, 8))
        });
        let holds = Arc::new(Job::Function(FunctionJob::new("holds", code, false)));
        worker.run(Key::new("holds-1"), holds, Vec::new());
        has_started
            .recv_timeout(Duration::from_secs(10))
            .expect("the first task starts");
        worker.run(Key::new("next-1"), job(|_| 2), Vec::new());

        worker.steal(Key::new("holds-1"));
        worker.steal(Key::new("next-1"));
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::TaskStolen { worker: 1, key }) => assert_eq!(key.as_str(), "next-1"),
            other => panic!("expected next-1 given back, got {other:?}"),
        }
        go_on.send(()).expect("the task waits");
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::TaskFinished { key, .. }) => assert_eq!(key.as_str(), "holds-1"),
            other => panic!("expected holds-1 to finish, got {other:?}"),
        }
        assert!(
            events.recv_timeout(Duration::from_millis(200)).is_err(),
            "the task given back ran"
        );
        assert!(worker.store().get(&Key::new("next-1")).is_none());
    }
}
