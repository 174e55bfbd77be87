//! A worker as a process: the shared [`Worker`] (task slots, result store)
//! driven by the scheduler over a control stream, serving its results over Flight.
//!
//! The worker registers with what it offers (threads, memory, functions, where
//! it serves), then runs what it is told. Stage plans arrive encoded; each is
//! decoded once, in the worker's own session, and cached by stage. Inputs held
//! by other workers are fetched from them when a task reads them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::TaskContext;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::Security;
use super::codec::decode_stage;
use super::fetch::FlightFetcher;
use super::flight::{self, FlightNode, open_control};
use super::wire::{
    EncodedJob, EncodedStage, FromWorker, Hello, PROTOCOL_VERSION, Registration, ToWorker,
};
use crate::client::{Config, format_bytes};
use crate::exec::{self, StagePlan};
use crate::key::KeySet;
use crate::scheduler::{Event, Input, TaskError, WorkerId};
use crate::udf::Registry;
use crate::worker::{Budget, DataStore, EventSink, FunctionJob, Job, Peers, StageJob, Worker};
use crate::{Error, Result};

/// How one worker process is set up.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The scheduler, `HOST:PORT`.
    pub scheduler: String,
    /// The interface to serve results on (a free port is taken).
    pub host: String,
    /// Its name; host and pid by default.
    pub name: Option<String>,
    /// Task slots.
    pub nthreads: usize,
    /// Bytes its queries may hold before spilling.
    pub memory_limit: Option<usize>,
    /// Where it spills.
    pub local_directory: PathBuf,
    /// Token and TLS.
    pub security: Security,
    /// How often it tells the scheduler it is alive.
    pub heartbeat: Duration,
    /// The UDFs and task functions it carries (and announces).
    pub registry: Registry,
    /// The process id of the nanny that started it, if one did.
    pub nanny: Option<u32>,
}

/// Results past this fraction of the memory limit go to disk (as Dask's `spill`).
const SPILL_FRACTION: f64 = 0.6;

/// Past this fraction the worker takes no new tasks (as Dask's `pause`).
const PAUSE_FRACTION: f64 = 0.8;

/// Stages decoded, by stage id; cleared when it grows past this.
const STAGE_CACHE: usize = 256;

/// Runs a worker until the scheduler closes it, the connection is lost, or
/// `shutdown` resolves (then it returns `Ok`).
pub async fn run_worker(options: WorkerOptions, shutdown: impl Future<Output = ()>) -> Result<()> {
    let listener = TcpListener::bind((options.host.as_str(), 0))
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", options.host)))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Comm(e.to_string()))?
        .to_string();
    let store = Arc::new(match options.memory_limit {
        Some(limit) => DataStore::with_budget(Budget {
            limit: limit as u64,
            spill: SPILL_FRACTION,
            pause: PAUSE_FRACTION,
            directory: options.local_directory.clone(),
        }),
        None => DataStore::default(),
    });
    let fetcher = FlightFetcher::for_worker(options.security.clone(), Arc::clone(store.activity()));
    let peers = Arc::new(Peers::with_remote(Arc::new(fetcher.clone())));
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let node = FlightNode {
        security: options.security.clone(),
        results: Some(Arc::clone(&peers)),
        store: Some(Arc::clone(&store)),
        control: None,
    };
    tokio::spawn(flight::serve(listener, node, async move {
        let _ = serving_stopped.await;
    }));

    let pid = std::process::id();
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("{address}-{pid}"));
    let memory = options
        .memory_limit
        .map_or("none".into(), |m| format_bytes(m as u64));
    tracing::info!(
        "worker {name} at {address}: {} threads, memory limit {memory}, local directory {}, pid {pid}",
        options.nthreads,
        options.local_directory.display()
    );
    let registration = Registration {
        version: PROTOCOL_VERSION,
        name: name.clone(),
        address: address.clone(),
        nthreads: options.nthreads,
        memory_limit: options.memory_limit.map(|m| m as u64),
        local_directory: options.local_directory.display().to_string(),
        pid,
        functions: options.registry.names(),
        nanny: options.nanny,
    };
    let mut client = flight::connect(&options.scheduler, &options.security).await?;
    let (outbox, mut incoming) =
        open_control::<FromWorker>(&mut client, &options.security, Hello::Worker(registration))
            .await?;
    let first = flight::next_messages::<ToWorker>(&mut incoming, "scheduler message").await?;
    // The frame with the welcome may carry the first tasks too: keep them.
    let mut first = first.unwrap_or_default().into_iter();
    let id = match first.next() {
        Some(ToWorker::Welcome { id }) => id,
        Some(ToWorker::Close { reason }) => return Err(Error::Comm(reason)),
        _ => {
            return Err(Error::Comm(
                "the scheduler did not welcome this worker".into(),
            ));
        }
    };
    tracing::info!("registered to {} as worker {id}", options.scheduler);

    let config = Config {
        workers: 1,
        threads: options.nthreads,
        memory_limit: options.memory_limit,
        local_directory: Some(options.local_directory.clone()),
        registry: options.registry.clone(),
        ..Config::default()
    };
    let session = exec::new_context(&config, None)?;
    let reports = outbox.clone();
    let events: EventSink = Arc::new(move |event| {
        if let Some(message) = report(event) {
            let _ = reports.send(message);
        }
    });
    let worker = Worker::start_with_store(
        id,
        options.nthreads,
        &session,
        Arc::clone(&peers),
        events,
        store,
    )
    .map_err(|e| Error::Comm(format!("cannot start the worker's threads: {e}")))?;
    let worker = Arc::new(worker);
    let heartbeats = tokio::spawn(heartbeat(
        outbox.clone(),
        Arc::clone(&worker),
        options.heartbeat,
    ));
    let mut tasks = TaskMaker {
        id,
        context: TaskContext::from(&session),
        stages: HashMap::new(),
        fetcher,
        registry: options.registry.clone(),
    };
    let rest: Vec<ToWorker> = first.collect();
    let mut messages = futures::stream::iter([rest]).chain(flight::messages::<ToWorker>(
        incoming,
        "scheduler message",
        options.scheduler.clone(),
    ));
    tokio::pin!(shutdown);
    let result = loop {
        let batch = tokio::select! {
            batch = messages.next() => batch,
            () = &mut shutdown => break Ok(()),
        };
        let Some(batch) = batch else {
            break Err(Error::Comm(format!(
                "lost the scheduler at {}",
                options.scheduler
            )));
        };
        let mut aborts = KeySet::default();
        for message in batch {
            match message {
                ToWorker::Run { key, job, inputs } => {
                    if !aborts.is_empty() {
                        worker.abort(&std::mem::take(&mut aborts));
                    }
                    match tasks.job(&job) {
                        Ok(job) => {
                            let inputs = inputs
                                .into_iter()
                                .map(|(key, holders)| Input {
                                    key,
                                    holders: tasks.fetcher.learn(holders),
                                })
                                .collect();
                            worker.run(key, Arc::new(job), inputs);
                        }
                        Err(message) => {
                            let error = TaskError::Failed {
                                key: key.clone(),
                                worker: id,
                                message,
                            };
                            let _ = outbox.send(FromWorker::Erred { key, error });
                        }
                    }
                }
                ToWorker::Release { key } => drop(worker.release(&key)),
                ToWorker::Abort { keys } => aborts.extend(keys),
                ToWorker::Welcome { .. } => {}
                ToWorker::Close { reason } => {
                    tracing::info!("the scheduler closes this worker: {reason}");
                    return Ok(());
                }
            }
        }
        if !aborts.is_empty() {
            worker.abort(&aborts);
        }
    };
    heartbeats.abort();
    let _ = stop_serving.send(());
    result
}

/// Turns jobs as they travel into jobs the worker runs.
struct TaskMaker {
    id: WorkerId,
    context: TaskContext,
    stages: HashMap<String, Arc<StagePlan>>,
    fetcher: FlightFetcher,
    registry: Registry,
}

impl TaskMaker {
    fn job(&mut self, job: &EncodedJob) -> Result<Job, String> {
        match job {
            EncodedJob::Stage {
                stage,
                partition,
                inputs,
            } => Ok(Job::Stage(StageJob {
                stage: self.stage(stage)?,
                partition: *partition as usize,
                inputs: inputs
                    .iter()
                    .map(|(s, keys)| (*s as usize, keys.clone().into()))
                    .collect(),
            })),
            EncodedJob::Concat => Ok(Job::Concat),
            EncodedJob::Function { name, args } => match self.registry.function(name) {
                Some((function, _)) => Ok(Job::Function(FunctionJob {
                    args: args
                        .as_deref()
                        .map(|args| args.iter().map(super::codec::decode_arg).collect()),
                    ..function
                })),
                None => Err(format!(
                    "function {name} is not registered on worker {}",
                    self.id
                )),
            },
        }
    }

    fn stage(&mut self, encoded: &EncodedStage) -> Result<Arc<StagePlan>, String> {
        if let Some(stage) = self.stages.get(&encoded.id) {
            return Ok(Arc::clone(stage));
        }
        let stage = decode_stage(encoded, &self.context)
            .map_err(|e| format!("cannot decode stage {}: {}", encoded.id, Error::from(e)))?;
        if self.stages.len() >= STAGE_CACHE {
            self.stages.clear();
        }
        tracing::debug!(
            "stage {}:\n{}",
            encoded.id,
            datafusion::physical_plan::displayable(stage.plan.as_ref()).indent(true)
        );
        let stage = Arc::new(stage);
        self.stages.insert(encoded.id.clone(), Arc::clone(&stage));
        Ok(stage)
    }
}

/// A worker event as a message to the scheduler.
fn report(event: Event) -> Option<FromWorker> {
    match event {
        Event::TaskFinished {
            key,
            nbytes,
            micros,
            ..
        } => Some(FromWorker::Finished {
            key,
            nbytes,
            micros,
        }),
        Event::TaskErred { key, error, .. } => Some(FromWorker::Erred { key, error }),
        _ => None,
    }
}

/// Tells the scheduler every `every` that the worker lives, what it holds and
/// does, and what it moved since the last time.
async fn heartbeat(
    outbox: mpsc::UnboundedSender<FromWorker>,
    worker: Arc<Worker>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let message = FromWorker::Heartbeat {
            metrics: worker.metrics(),
            marks: worker.store().activity().take_marks(),
        };
        if outbox.send(message).is_err() {
            return;
        }
    }
}
