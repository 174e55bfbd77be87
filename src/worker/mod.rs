//! Workers: task slots, a store of results by key, and the code that runs tasks.
//!
//! A [`Worker`] runs [`Job`]s on a runtime of its own (`nthreads` threads, so CPU
//! work stays off the client's async reactor), at most `nthreads` at a time. A
//! task's inputs are read from the stores of the workers holding them
//! ([`Peers`]); in-process that is a lookup returning the same `Arc`, never a
//! copy. Each result goes into the worker's [`DataStore`], and the scheduler
//! hears of it through the worker's event sink.

mod job;
mod store;

use std::sync::Arc;

use datafusion::execution::TaskContext;
use datafusion::prelude::SessionContext;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

pub use job::{FunctionJob, Job, StageJob, TaskFn};
pub use store::{DataStore, Peers};

use crate::exec::{TaskData, TaskInputs};
use crate::key::{Key, KeyMap};
use crate::scheduler::{Event, Input, TaskError, WorkerId};

/// Where a worker reports finished and failed tasks.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// An in-process worker.
pub struct Worker {
    id: WorkerId,
    nthreads: usize,
    store: Arc<DataStore>,
    peers: Arc<Peers>,
    slots: Arc<Semaphore>,
    session: TaskBase,
    running: Arc<Mutex<KeyMap<tokio::task::AbortHandle>>>,
    events: EventSink,
    runtime: Option<tokio::runtime::Runtime>,
}

/// What every task context of a worker starts from.
#[derive(Clone)]
struct TaskBase(Arc<TaskContext>);

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
        let nthreads = nthreads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(nthreads)
            .thread_name(format!("rask-worker-{id}"))
            .enable_all()
            .build()?;
        let store = Arc::new(DataStore::default());
        peers.insert(id, Arc::clone(&store));
        Ok(Self {
            id,
            nthreads,
            store,
            peers,
            slots: Arc::new(Semaphore::new(nthreads)),
            session: TaskBase(Arc::new(TaskContext::from(session))),
            running: Arc::new(Mutex::new(KeyMap::default())),
            events,
            runtime: Some(runtime),
        })
    }

    /// The worker's id.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// Task slots.
    pub fn nthreads(&self) -> usize {
        self.nthreads
    }

    /// The results this worker holds.
    pub fn store(&self) -> &Arc<DataStore> {
        &self.store
    }

    /// Runs `job` as task `key`, reading `inputs`; reports when done.
    pub fn run(&self, key: Key, job: Arc<Job>, inputs: Vec<Input>) {
        let Some(runtime) = &self.runtime else { return };
        let (id, store, peers, slots, base, events, running) = (
            self.id,
            Arc::clone(&self.store),
            Arc::clone(&self.peers),
            Arc::clone(&self.slots),
            self.session.clone(),
            Arc::clone(&self.events),
            Arc::clone(&self.running),
        );
        let task_key = key.clone();
        // Held until the handle is recorded, so a task that ends at once finds it to remove.
        let mut tasks = self.running.lock();
        let handle = runtime.spawn(async move {
            let Ok(_slot) = slots.acquire().await else {
                return;
            };
            let event = match execute(id, &key, &job, &inputs, &peers, &base.0).await {
                Ok(data) => {
                    let nbytes = data.nbytes();
                    store.insert(key.clone(), Arc::new(data));
                    Event::TaskFinished {
                        worker: id,
                        key: key.clone(),
                        nbytes,
                    }
                }
                Err(error) => Event::TaskErred {
                    worker: id,
                    key: key.clone(),
                    error,
                },
            };
            running.lock().remove(&key);
            events(event);
        });
        tasks.insert(task_key, handle.abort_handle());
    }

    /// Takes this worker's copy of `key` out of its store.
    pub fn release(&self, key: &Key) -> Option<Arc<TaskData>> {
        self.store.remove(key)
    }

    /// Stops task `key` if it is running.
    pub fn abort(&self, key: &Key) {
        if let Some(handle) = self.running.lock().remove(key) {
            handle.abort();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.peers.remove(self.id);
        // Dropping a runtime from async code would panic; let it wind down on its own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Gathers the inputs of a task and runs it. Panics become task errors.
async fn execute(
    worker: WorkerId,
    key: &Key,
    job: &Job,
    inputs: &[Input],
    peers: &Peers,
    base: &TaskContext,
) -> Result<TaskData, TaskError> {
    let fetched = fetch_inputs(inputs, peers)?;
    let failed = |message: String| TaskError::Failed {
        key: key.clone(),
        worker,
        message,
    };
    let run = async {
        match job {
            Job::Stage(stage) => {
                let mut task_inputs = TaskInputs::default();
                for (input_stage, keys) in &stage.inputs {
                    let outputs = keys
                        .iter()
                        .map(|k| {
                            fetched
                                .get(k)
                                .cloned()
                                .ok_or_else(|| format!("input {k} was not sent to the task"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    task_inputs.insert(*input_stage, outputs);
                }
                stage
                    .stage
                    .run(stage.partition, task_inputs, base)
                    .await
                    .map_err(|e| crate::Error::from(e).to_string())
            }
            Job::Function(function) => {
                let args = inputs
                    .iter()
                    .map(|i| {
                        fetched
                            .get(&i.key)
                            .cloned()
                            .ok_or_else(|| format!("input {} was not sent to the task", i.key))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (function.function)(&args).map_err(|e| format!("{}: {e}", function.name))
            }
            Job::Concat => {
                let mut batches = Vec::new();
                for input in inputs {
                    if let Some(data) = fetched.get(&input.key) {
                        batches.extend(data.batches().cloned());
                    }
                }
                Ok(TaskData::Batches(vec![batches]))
            }
        }
    };
    match crate::error::catch_panics(run).await {
        Ok(result) => result.map_err(failed),
        Err(panic) => Err(failed(panic.to_string())),
    }
}

/// Reads every input from a worker holding it.
fn fetch_inputs(inputs: &[Input], peers: &Peers) -> Result<KeyMap<Arc<TaskData>>, TaskError> {
    let mut fetched = KeyMap::with_capacity_and_hasher(inputs.len(), Default::default());
    for input in inputs {
        let found = input.holders.iter().find_map(|h| peers.get(*h, &input.key));
        match found {
            Some(data) => {
                fetched.insert(input.key.clone(), data);
            }
            None => {
                let worker = input.holders.first().copied().unwrap_or(WorkerId::MAX);
                return Err(TaskError::FetchFailed {
                    worker,
                    key: input.key.clone(),
                });
            }
        }
    }
    Ok(fetched)
}
