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
use tokio::sync::mpsc;

use super::codec::decode_stage;
use super::fetch::FlightFetcher;
use super::flight::{self, FlightNode, open_control};
use super::wire::{EncodedJob, EncodedStage, FromWorker, Hello, PROTOCOL_VERSION, ToWorker};
use crate::cluster::WorkerInfo;
use crate::exec::{self, StagePlan};
use crate::key::KeySet;
use crate::net::{Limits, Port, Security, address};
use crate::output::format_bytes;
use crate::scheduler::{Event, Input, TaskError, WorkerId};
use crate::udf::Registry;
use crate::worker::{DataStore, EventSink, FunctionJob, Job, Peers, StageJob, Worker};
use crate::{Error, Result};

/// How one worker process is set up.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The scheduler, `HOST:PORT` (or `tcp://HOST:PORT`, a name).
    pub scheduler: String,
    /// The interface to serve results on.
    pub host: String,
    /// The port to serve results on (0 for any free one).
    pub port: u16,
    /// The address to give others (`--contact-address`: `HOST:PORT`, or a host
    /// for the listening port); by default, see [`address::advertised`].
    pub contact_address: Option<String>,
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
    /// How long it keeps trying to reach a scheduler it lost (or never
    /// reached) before it gives up with an error (Dask's `--death-timeout`).
    pub death_timeout: Duration,
    /// The UDFs and task functions it carries (and announces).
    pub registry: Registry,
    /// The process id of the nanny that started it, if one did.
    pub nanny: Option<u32>,
}

/// Stages decoded, by stage id; cleared when it grows past this.
const STAGE_CACHE: usize = 256;

/// How long a retiring worker waits for the scheduler to move its results
/// and close it before it leaves anyway.
const RETIRE_PATIENCE: Duration = Duration::from_secs(120);

/// How long a retired worker still serves its results after it is closed.
const RETIRE_LINGER: Duration = Duration::from_secs(2);

/// How a worker's time with one scheduler ended.
enum Ended {
    /// The scheduler closed it (it retired, or the scheduler shuts down).
    Closed,
    /// The connection was lost, or the scheduler fell silent: try again.
    Lost(String),
    /// Told to stop (its nanny went away).
    Left,
}

/// Runs a worker until the scheduler closes it, `leave` resolves, or it cannot
/// reach a scheduler for `death_timeout` ([`Error::Connect`]); a scheduler
/// that refuses it for good is [`Error::Refused`]. When `retire` resolves
/// (SIGTERM), it asks the scheduler to move what it holds to other workers,
/// then leaves when closed. A worker that loses its scheduler drops what it
/// held and, once it reaches one again, registers as a new worker.
pub async fn run_worker(
    options: WorkerOptions,
    retire: impl Future<Output = ()>,
    leave: impl Future<Output = ()>,
) -> Result<()> {
    let port = Port::bind(&options.host, options.port, "the worker", Limits::FLIGHT)
        .await?
        .expose(&options.security, options.security.checks_callers())?;
    let listening = port.address()?;
    let toward = address::resolve(&options.scheduler).ok();
    let address = address::advertised(listening, options.contact_address.as_deref(), toward)?;
    let settings = exec::SessionOptions {
        target_partitions: options.nthreads,
        batch_size: None,
        memory_limit: options.memory_limit,
        local_directory: Some(options.local_directory.clone()),
    };
    let session = exec::new_context(&settings, None)?;
    options.registry.install(&session);
    let store = DataStore::for_session(options.memory_limit, &options.local_directory, &session);
    let fetcher = FlightFetcher::for_worker(options.security.clone(), Arc::clone(store.activity()));
    let peers = Arc::new(Peers::with_remote(Arc::new(fetcher.clone())));
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let node = FlightNode {
        security: options.security.clone(),
        results: Some(Arc::clone(&peers)),
        store: Some(Arc::clone(&store)),
        control: None,
    };
    tokio::spawn(flight::serve(port, node, async move {
        let _ = serving_stopped.await;
    }));
    let _stop_serving = StopOnDrop(Some(stop_serving));

    let pid = std::process::id();
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("{address}-{pid}"));
    let memory = options
        .memory_limit
        .map_or("none".into(), |m| format_bytes(m as u64));
    if listening.to_string() != address {
        tracing::info!("listening on {listening}");
    }
    tracing::info!(
        "worker {name} at {address}: {} threads, memory limit {memory}, local directory {}, pid {pid}",
        options.nthreads,
        options.local_directory.display()
    );
    let registration = WorkerInfo {
        id: 0,
        name: name.clone(),
        address: address.clone(),
        nthreads: options.nthreads,
        memory_limit: options.memory_limit.map(|m| m as u64),
        local_directory: options.local_directory.display().to_string(),
        pid: Some(pid),
        functions: options.registry.names(),
        nanny: options.nanny,
    };
    let shared = Shared {
        options: &options,
        session: &session,
        store: &store,
        peers: &peers,
        fetcher: &fetcher,
    };
    tokio::pin!(retire);
    tokio::pin!(leave);
    let mut retiring = false;
    let mut lost_since = tokio::time::Instant::now();
    loop {
        let connected = tokio::select! {
            connected = shared.register(&registration, lost_since) => connected?,
            () = &mut leave => return Ok(()),
            () = &mut retire, if !retiring => {
                tracing::info!("asked to retire while no scheduler is reached: leaving");
                return Ok(());
            }
        };
        let ended = shared
            .serve(connected, &mut retire, &mut leave, &mut retiring)
            .await;
        match ended {
            Ended::Closed if retiring => {
                // Readers told to fetch from here before the copies were made
                // may still come: serve them a moment longer.
                tokio::select! {
                    () = tokio::time::sleep(RETIRE_LINGER) => {}
                    () = &mut leave => {}
                }
                tracing::info!("retired");
                return Ok(());
            }
            Ended::Closed | Ended::Left => return Ok(()),
            Ended::Lost(why) if retiring => {
                tracing::info!("lost the scheduler while retiring ({why}): leaving");
                return Ok(());
            }
            Ended::Lost(why) => {
                let dropped = store.len();
                store.clear();
                fetcher.forget_all();
                tracing::warn!(
                    "lost the scheduler at {} ({why}); dropped the {dropped} results held; \
                     reconnecting for up to {:?}",
                    options.scheduler,
                    options.death_timeout
                );
                lost_since = tokio::time::Instant::now();
            }
        }
    }
}

/// Sends on a oneshot when dropped.
struct StopOnDrop(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// A registered link to the scheduler.
struct Connected {
    id: WorkerId,
    outbox: mpsc::UnboundedSender<FromWorker>,
    incoming: tonic::Streaming<arrow_flight::FlightData>,
    /// Messages that came with the welcome.
    first: Vec<ToWorker>,
    /// How long the scheduler may stay silent.
    silence: Duration,
}

/// What a worker keeps across its times with schedulers.
struct Shared<'a> {
    options: &'a WorkerOptions,
    session: &'a datafusion::prelude::SessionContext,
    store: &'a Arc<DataStore>,
    peers: &'a Arc<Peers>,
    fetcher: &'a FlightFetcher,
}

impl Shared<'_> {
    /// Registers with the scheduler, trying again until `death_timeout` has
    /// passed since `since`; a refusal (token, version) ends it at once.
    async fn register(
        &self,
        registration: &WorkerInfo,
        since: tokio::time::Instant,
    ) -> Result<Connected> {
        let options = self.options;
        let mut backoff = Duration::from_millis(200);
        let mut tries = 0u32;
        loop {
            tries += 1;
            let error = match self.try_register(registration).await {
                Ok(connected) => return Ok(connected),
                Err(refused @ Error::Refused { .. }) => return Err(refused),
                Err(e) => e,
            };
            if since.elapsed() >= options.death_timeout {
                return Err(Error::Connect {
                    address: options.scheduler.clone(),
                    message: format!(
                        "gave up reaching the scheduler after {:?} ({tries} tries; \
                         --death-timeout): {error}",
                        options.death_timeout
                    ),
                });
            }
            if tries == 1 || tries.is_multiple_of(10) {
                tracing::info!(
                    "cannot reach the scheduler at {} yet: {error}; trying again",
                    options.scheduler
                );
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn try_register(&self, registration: &WorkerInfo) -> Result<Connected> {
        let options = self.options;
        let mut client = flight::connect(&options.scheduler, &options.security).await?;
        let hello = Hello::Worker {
            version: PROTOCOL_VERSION,
            info: registration.clone(),
        };
        let (outbox, mut incoming) =
            open_control::<FromWorker>(&mut client, &options.security, hello).await?;
        let first = flight::next_messages::<ToWorker>(&mut incoming, "scheduler message").await?;
        // The frame with the welcome may carry the first tasks too: keep them.
        let mut first = first.unwrap_or_default().into_iter();
        let refused = |message: String| Error::Refused {
            address: options.scheduler.clone(),
            message,
        };
        let (id, silence_ms) = match first.next() {
            Some(ToWorker::Welcome { id, silence_ms }) => (id, silence_ms),
            Some(ToWorker::Close { reason }) => return Err(refused(reason)),
            _ => {
                return Err(Error::Comm(
                    "the scheduler did not welcome this worker".into(),
                ));
            }
        };
        tracing::info!("registered to {} as worker {id}", options.scheduler);
        Ok(Connected {
            id,
            outbox,
            incoming,
            first: first.collect(),
            silence: Duration::from_millis(silence_ms.max(1000)),
        })
    }

    /// Runs what the scheduler sends until it closes us, is lost, or we leave.
    async fn serve(
        &self,
        connected: Connected,
        retire: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        leave: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        retiring: &mut bool,
    ) -> Ended {
        let Connected {
            id,
            outbox,
            incoming,
            first,
            silence,
        } = connected;
        let options = self.options;
        let reports = outbox.clone();
        let events: EventSink = Arc::new(move |event| {
            if let Some(message) = report(event) {
                let _ = reports.send(message);
            }
        });
        let worker = match Worker::start_with_store(
            id,
            options.nthreads,
            self.session,
            Arc::clone(self.peers),
            events,
            Arc::clone(self.store),
        ) {
            Ok(worker) => Arc::new(worker),
            Err(e) => return Ended::Lost(format!("cannot start the worker's threads: {e}")),
        };
        let heartbeats = AbortOnDrop(tokio::spawn(heartbeat(
            outbox.clone(),
            Arc::clone(&worker),
            options.heartbeat,
        )));
        let mut tasks = TaskMaker {
            id,
            context: TaskContext::from(self.session),
            stages: HashMap::new(),
            fetcher: self.fetcher.clone(),
            registry: options.registry.clone(),
        };
        let mut messages = futures::stream::iter([first]).chain(flight::messages::<ToWorker>(
            incoming,
            "scheduler message",
            options.scheduler.clone(),
        ));
        // When a retiring worker stops waiting to be closed.
        let mut retired_by = std::pin::pin!(tokio::time::sleep(RETIRE_PATIENCE));
        let ended = loop {
            let batch = tokio::select! {
                batch = tokio::time::timeout(silence, messages.next()) => batch,
                () = leave.as_mut() => break Ended::Left,
                () = retire.as_mut(), if !*retiring => {
                    *retiring = true;
                    tracing::info!("retiring: asking the scheduler to move what this worker holds");
                    let _ = outbox.send(FromWorker::Retire);
                    retired_by.as_mut().reset(tokio::time::Instant::now() + RETIRE_PATIENCE);
                    continue;
                }
                () = retired_by.as_mut(), if *retiring => {
                    tracing::warn!("the scheduler did not close this retiring worker in {RETIRE_PATIENCE:?}: leaving");
                    break Ended::Closed;
                }
            };
            let batch = match batch {
                Ok(Some(batch)) => batch,
                Ok(None) => break Ended::Lost("the connection ended".into()),
                Err(_) => break Ended::Lost(format!("silent for {silence:?}")),
            };
            let mut aborts = KeySet::default();
            let mut closed = None;
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
                                    .map(|input| Input {
                                        key: input.key,
                                        nbytes: input.nbytes,
                                        holders: tasks.fetcher.learn(input.holders),
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
                    ToWorker::Steal { key } => worker.steal(key),
                    ToWorker::Replicate { key, from } => {
                        let from = self.fetcher.learn(from);
                        tokio::spawn(copy(
                            self.fetcher.clone(),
                            Arc::clone(self.store),
                            outbox.clone(),
                            key,
                            from,
                        ));
                    }
                    ToWorker::Welcome { .. } | ToWorker::Alive => {}
                    ToWorker::Close { reason } => closed = Some(reason),
                }
            }
            if !aborts.is_empty() {
                worker.abort(&aborts);
            }
            if let Some(reason) = closed {
                tracing::info!("the scheduler closes this worker: {reason}");
                break Ended::Closed;
            }
        };
        drop(heartbeats);
        ended
    }
}

/// Copies `key` from the first of `from` that has it into `store`, and tells
/// the scheduler how it went.
async fn copy(
    fetcher: FlightFetcher,
    store: Arc<DataStore>,
    outbox: mpsc::UnboundedSender<FromWorker>,
    key: crate::key::Key,
    from: Vec<WorkerId>,
) {
    let mut error = format!("no worker to copy {key} from");
    for holder in from {
        match fetcher.copy_from(holder, key.clone()).await {
            Ok(data) => {
                store.insert(key.clone(), Arc::new(data));
                let _ = outbox.send(FromWorker::Replicated { key, error: None });
                return;
            }
            Err(e) => error = format!("cannot copy {key} from worker {holder}: {e}"),
        }
    }
    let _ = outbox.send(FromWorker::Replicated {
        key,
        error: Some(error),
    });
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
                Some((code, _)) => Ok(Job::Function(FunctionJob {
                    args: args
                        .as_deref()
                        .map(|args| args.iter().map(super::codec::decode_arg).collect()),
                    ..FunctionJob::new(name, code, true)
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
        Event::TaskStolen { key, .. } => Some(FromWorker::Stolen { key }),
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
