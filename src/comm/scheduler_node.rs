//! The scheduler as a process: the shared [`EventLoop`] behind a Flight
//! service, with workers and clients of other processes on control streams.
//!
//! A worker's stream starts with its [`Registration`]; the scheduler answers
//! with its id and from then on sends it tasks, releases and aborts, while the
//! worker reports results and heartbeats. A stream that ends (the process died,
//! `kill -9` included), sends garbage, or stays silent past the heartbeat
//! timeout removes the worker: the core reschedules what it ran and recomputes
//! what it held from lineage.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow_flight::FlightData;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::flight::{self, ControlPlane, FlightNode, Frames};
use super::wire::{
    EncodedJob, EncodedTask, FromClient, FromWorker, Hello, Holder, PROTOCOL_VERSION, ToClient,
    ToWorker, WireOutcome, WorkerDeath,
};
use crate::cluster::{ClusterInfo, WorkerInfo, WorkerState};
use crate::key::{Key, KeySet};
use crate::net::{Limits, Port, Security};
use crate::output::format_bytes;
use crate::scheduler::{
    ClientId, Event, EventLoop, Input, Message, Outcome, Released, SchedulerHandle, TaskError,
    TaskKind, TaskSpec, WorkerEndpoint, WorkerId,
};
use crate::worker::WorkerMetrics;
use crate::{Error, Result};

/// How `rask scheduler` is set up.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// The interface to listen on.
    pub host: String,
    /// The port (0 for any free one).
    pub port: u16,
    /// Where to serve the dashboard (`:8787`, `HOST:PORT`; a taken port falls
    /// back to a free one); `None` for no dashboard.
    pub dashboard: Option<String>,
    /// Token and TLS.
    pub security: Security,
    /// A worker silent this long is removed.
    pub heartbeat_timeout: Duration,
    /// The address to give others (`--contact-address`); by default the
    /// listening address, or for every interface, the first that is not loopback.
    pub contact_address: Option<String>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8786,
            dashboard: None,
            security: Security::default(),
            heartbeat_timeout: Duration::from_secs(10),
            contact_address: None,
        }
    }
}

/// A scheduler serving on a port.
pub struct SchedulerNode {
    address: SocketAddr,
    state: Arc<SchedulerState>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    served: Mutex<Option<tokio::task::JoinHandle<Result<()>>>>,
    dashboard: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the control streams share.
struct SchedulerState {
    server: EventLoop<EncodedJob>,
    address: String,
    dashboard: Option<String>,
    heartbeat_timeout: Duration,
    workers: RwLock<BTreeMap<WorkerId, WorkerInfo>>,
    /// What each worker last reported of itself, and when.
    reported: Mutex<HashMap<WorkerId, (WorkerMetrics, Instant)>>,
    clients: Mutex<HashMap<ClientId, mpsc::UnboundedSender<ToClient>>>,
    /// Each worker's process id, from its registration.
    pids: Mutex<HashMap<WorkerId, u32>>,
    /// Deaths reported by nannies, by process id.
    deaths: Mutex<HashMap<u32, WorkerDeath>>,
    next_worker: AtomicU64,
    next_client: AtomicU64,
}

impl SchedulerNode {
    /// Binds and starts serving; returns once the port is open.
    pub async fn start(options: SchedulerOptions) -> Result<Self> {
        let port = Port::bind(&options.host, options.port, "the scheduler", Limits::FLIGHT)
            .await?
            .expose(&options.security, options.security.checks_callers())?;
        let address = port.address()?;
        let advertised =
            crate::net::address::advertised(address, options.contact_address.as_deref(), None)?;
        let (dashboard, link) = match &options.dashboard {
            Some(wanted) => {
                let (listener, _) = crate::dashboard::bind_address(wanted, &options.host)?;
                let port = crate::dashboard::port(listener, &options.security)?;
                let local = port.address()?;
                // Shown with the scheduler's advertised host when on every interface.
                let host = advertised
                    .rsplit_once(':')
                    .map_or(advertised.as_str(), |(h, _)| h);
                let shown = match local.ip().is_unspecified() {
                    true => format!("{host}:{}", local.port()),
                    false => local.to_string(),
                };
                let scheme = options.security.scheme();
                (Some(port), Some(format!("{scheme}://{shown}/status")))
            }
            None => (None, None),
        };
        let state = Arc::new(SchedulerState {
            server: EventLoop::new(),
            address: advertised.clone(),
            dashboard: link.clone(),
            heartbeat_timeout: options.heartbeat_timeout,
            workers: RwLock::default(),
            reported: Mutex::default(),
            clients: Mutex::default(),
            pids: Mutex::default(),
            deaths: Mutex::default(),
            next_worker: AtomicU64::new(0),
            next_client: AtomicU64::new(1),
        });
        let node = FlightNode {
            security: options.security.clone(),
            results: None,
            store: None,
            control: Some(Arc::new(Arc::clone(&state)) as Arc<dyn ControlPlane>),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(flight::serve(port, node, async move {
            let _ = stopped.await;
        }));
        if advertised != address.to_string() {
            tracing::info!("listening on {address}");
        }
        tracing::info!("scheduler at {advertised}");
        let dashboard = dashboard.map(|port| {
            let view = Arc::new(Arc::clone(&state)) as Arc<dyn crate::dashboard::ClusterView>;
            let security = options.security.clone();
            tokio::spawn(async move {
                let served = crate::dashboard::serve(port, &security, view, std::future::pending());
                if let Err(e) = served.await {
                    tracing::error!("{e}");
                }
            })
        });
        if let Some(link) = &link {
            // The printed link carries the token, as Jupyter's does.
            match &options.security.token {
                Some(token) => tracing::info!("dashboard at {link}?token={token}"),
                None => tracing::info!("dashboard at {link}"),
            }
        }
        tokio::spawn(tell_clients_alive(Arc::downgrade(&state)));
        Ok(Self {
            address,
            state,
            stop: Mutex::new(Some(stop)),
            served: Mutex::new(Some(served)),
            dashboard: Mutex::new(dashboard),
        })
    }

    /// Its Flight service, to call in this process (the fuzzer does).
    pub(crate) fn flight_node(&self) -> FlightNode {
        FlightNode {
            security: Security::default(),
            results: None,
            store: None,
            control: Some(Arc::new(Arc::clone(&self.state)) as Arc<dyn ControlPlane>),
        }
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The cluster as a client would see it.
    pub fn info(&self) -> ClusterInfo {
        self.state.info()
    }

    /// The scheduler server, shared with every stream.
    pub fn server(&self) -> &EventLoop<EncodedJob> {
        &self.state.server
    }

    /// Serves until `shutdown` resolves, then stops.
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let served = self.served.lock().take();
        let Some(mut served) = served else {
            return Ok(());
        };
        tokio::select! {
            result = &mut served => result.map_err(|e| Error::Comm(e.to_string()))?,
            () = shutdown => {
                self.stop();
                Ok(())
            }
        }
    }

    /// Stops serving.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        if let Some(dashboard) = self.dashboard.lock().take() {
            dashboard.abort();
        }
    }
}

impl Drop for SchedulerNode {
    fn drop(&mut self) {
        self.stop();
    }
}

impl SchedulerState {
    fn info(&self) -> ClusterInfo {
        ClusterInfo {
            scheduler: self.address.clone(),
            dashboard: self.dashboard.clone(),
            workers: self.workers.read().values().cloned().collect(),
        }
    }

    /// Tells every client who the workers are now.
    fn announce_workers(&self) {
        let workers: Vec<WorkerInfo> = self.workers.read().values().cloned().collect();
        for client in self.clients.lock().values() {
            let _ = client.send(ToClient::Workers(workers.clone()));
        }
    }

    fn holders(&self, workers: &[WorkerId]) -> Vec<Holder> {
        let directory = self.workers.read();
        workers
            .iter()
            .filter_map(|w| directory.get(w).map(|info| (*w, info.address.clone())))
            .collect()
    }

    fn add_worker(
        self: &Arc<Self>,
        version: u32,
        info: WorkerInfo,
        incoming: Streaming<FlightData>,
        peer: String,
    ) -> Result<Frames, Status> {
        check_version("worker", version, &peer)?;
        let (outbox, frames) = flight::outgoing::<ToWorker>();
        let id = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let info = WorkerInfo {
            id,
            nthreads: info.nthreads.max(1),
            ..info
        };
        let silence_ms = self.heartbeat_timeout.as_millis() as u64;
        let _ = outbox.send(ToWorker::Welcome { id, silence_ms });
        let pings = outbox.clone();
        tracing::info!(
            "worker {id} registered: {} at {}, {} threads, memory limit {}, pid {}",
            info.name,
            info.address,
            info.nthreads,
            info.memory_limit.map_or("none".into(), format_bytes),
            info.pid.map_or("unknown".into(), |pid| pid.to_string()),
        );
        self.workers.write().insert(id, info.clone());
        self.reported
            .lock()
            .insert(id, (WorkerMetrics::default(), Instant::now()));
        if let Some(pid) = info.pid {
            self.pids.lock().insert(id, pid);
        }
        let endpoint = RemoteWorker {
            id,
            nthreads: info.nthreads,
            functions: Arc::new(info.functions.iter().cloned().collect()),
            outbox,
            state: Arc::downgrade(self),
        };
        self.server.send(Message::AddWorker(Arc::new(endpoint)));
        self.announce_workers();

        let state = Arc::clone(self);
        tokio::spawn(async move {
            let mut messages = flight::messages::<FromWorker>(incoming, "worker message", peer);
            let mut alive = tokio::time::interval(super::wire::ALIVE_EVERY);
            let mut heard = Instant::now();
            let mut paused = false;
            let why = loop {
                let batch = tokio::select! {
                    batch = messages.next() => batch,
                    _ = alive.tick() => {
                        if heard.elapsed() > state.heartbeat_timeout {
                            break format!("silent for {:?} (no heartbeat)", state.heartbeat_timeout);
                        }
                        let _ = pings.send(ToWorker::Alive);
                        continue;
                    }
                };
                let Some(batch) = batch else {
                    break "its connection closed".to_string();
                };
                heard = Instant::now();
                if let Some(last) = state.reported.lock().get_mut(&id) {
                    last.1 = heard;
                }
                for message in batch {
                    tracing::trace!(worker = id, ?message, "from worker");
                    match message {
                        FromWorker::Heartbeat { metrics, marks } => {
                            if metrics.paused != paused {
                                paused = metrics.paused;
                                tracing::info!(worker = id, paused, "worker paused (memory)");
                                let event = Event::WorkerPaused { worker: id, paused };
                                state.server.enqueue(Message::Event(event));
                            }
                            state.server.note_marks(id, marks);
                            state.reported.lock().insert(id, (metrics, heard));
                        }
                        FromWorker::Retire => {
                            tracing::info!(worker = id, "worker {id} asks to retire");
                            let event = Event::RetireWorker { worker: id };
                            state.server.enqueue(Message::Event(event));
                        }
                        message => {
                            if let Some(event) = worker_event(id, message) {
                                state.server.enqueue(Message::Event(event));
                            }
                        }
                    }
                }
                state.server.drain();
            };
            let info = state.workers.write().remove(&id);
            state.reported.lock().remove(&id);
            let name = info.map(|i| i.name).unwrap_or_default();
            let lost = state.server.worker(id).map_or(String::new(), |w| {
                format!(
                    "; {} running tasks go elsewhere, {} results it held are recomputed if needed",
                    w.processing, w.in_memory
                )
            });
            tracing::warn!("worker {id} ({name}) removed: {why}{lost}");
            state.server.send(Message::RemoveWorker(id));
            state.announce_workers();
        });
        Ok(frames.map(Ok).boxed())
    }

    fn add_client(
        self: &Arc<Self>,
        version: u32,
        incoming: Streaming<FlightData>,
        peer: String,
    ) -> Result<Frames, Status> {
        check_version("client", version, &peer)?;
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let (outbox, frames) = flight::outgoing::<ToClient>();
        let _ = outbox.send(ToClient::Welcome(self.info()));
        let weak = Arc::downgrade(self);
        let reports = outbox.clone();
        let sink = Arc::new(move |key: Key, outcome: Outcome| {
            let Some(state) = weak.upgrade() else {
                return;
            };
            let outcome = match outcome {
                Outcome::Finished { workers } => WireOutcome::Finished(state.holders(&workers)),
                Outcome::Erred(error) => match (last_killed(&error), Handle::try_current()) {
                    // Its nanny's report of that worker's last words may be on the way.
                    (Some(worker), Ok(runtime)) => {
                        let reports = reports.clone();
                        runtime.spawn(async move {
                            let log = state.last_words(worker).await;
                            let outcome = WireOutcome::Erred(with_log(&error, &log));
                            let _ = reports.send(ToClient::Report { key, outcome });
                        });
                        return;
                    }
                    _ => WireOutcome::Erred((*error).clone()),
                },
                Outcome::Cancelled => WireOutcome::Cancelled,
            };
            let _ = reports.send(ToClient::Report { key, outcome });
        });
        self.server.send(Message::Connect(id, sink));
        self.clients.lock().insert(id, outbox);
        tracing::info!(%peer, "client {id} connected");

        let state = Arc::clone(self);
        let answers = self.clients.lock().get(&id).cloned();
        tokio::spawn(async move {
            let mut messages =
                flight::messages::<FromClient>(incoming, "client message", peer.clone());
            while let Some(batch) = messages.next().await {
                for message in batch {
                    if let FromClient::Ask { id, question } = message {
                        // Behind the messages before it, as they are handled now.
                        state.server.drain();
                        let answer = question.answer(&state.server, || state.worker_states());
                        if let Some(answers) = &answers {
                            let _ = answers.send(ToClient::Answer { id, answer });
                        }
                        continue;
                    }
                    if let Some(message) = client_message(id, message) {
                        state.server.enqueue(message);
                    }
                }
                state.server.drain();
            }
            state.clients.lock().remove(&id);
            state.server.send(Message::Disconnect(id));
            tracing::info!(%peer, "client {id} disconnected");
        });
        Ok(frames.map(Ok).boxed())
    }
}

impl SchedulerState {
    /// Every worker now: as registered, as it last reported, as the core counts it.
    fn worker_states(&self) -> Vec<WorkerState> {
        let reported = self.reported.lock();
        self.workers
            .read()
            .values()
            .map(|info| {
                let (metrics, seen) = reported
                    .get(&info.id)
                    .map_or((WorkerMetrics::default(), None), |(m, at)| {
                        (m.clone(), Some(at.elapsed().as_secs_f64()))
                    });
                WorkerState::new(info.clone(), metrics, self.server.worker(info.id), seen)
            })
            .collect()
    }

    /// How worker `worker` ended and its last log lines, as its nanny reported
    /// them; waits a little for the report, which races the worker's removal.
    async fn last_words(&self, worker: WorkerId) -> Vec<String> {
        let Some(pid) = self.pids.lock().get(&worker).copied() else {
            return Vec::new();
        };
        let deadline = tokio::time::Instant::now() + DEATH_REPORT_WAIT;
        loop {
            if let Some(death) = self.deaths.lock().get(&pid) {
                let mut log = vec![format!(
                    "worker {worker} (pid {pid}) ended: {}",
                    death.status
                )];
                log.extend(death.log.iter().cloned());
                return log;
            }
            if tokio::time::Instant::now() >= deadline {
                return vec![format!(
                    "worker {worker} (pid {pid}): no nanny reported how it ended"
                )];
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How long a report of a task that killed its workers waits for the nanny's
/// word on the last of them.
const DEATH_REPORT_WAIT: Duration = Duration::from_secs(3);

/// Deaths kept at most; past that, those known are forgotten.
const DEATHS_KEPT: usize = 1024;

/// The last worker killed by the task behind `error`, if that is why it failed.
fn last_killed(error: &TaskError) -> Option<WorkerId> {
    match error {
        TaskError::KilledWorkers { workers, .. } => workers.last().copied(),
        TaskError::DependencyFailed { source, .. } => last_killed(source),
        _ => None,
    }
}

/// `error` with `log` as the last words of the workers it killed.
fn with_log(error: &TaskError, log: &[String]) -> TaskError {
    match error {
        TaskError::KilledWorkers { key, workers, .. } => TaskError::KilledWorkers {
            key: key.clone(),
            workers: workers.clone(),
            log: log.to_vec(),
        },
        TaskError::DependencyFailed { key, source } => TaskError::DependencyFailed {
            key: key.clone(),
            source: Arc::new(with_log(source, log)),
        },
        other => other.clone(),
    }
}

impl crate::dashboard::ClusterView for Arc<SchedulerState> {
    fn info(&self) -> ClusterInfo {
        SchedulerState::info(self)
    }

    fn workers(&self) -> Vec<WorkerState> {
        self.worker_states()
    }

    fn scheduler(&self) -> &dyn SchedulerHandle {
        &self.server
    }
}

impl ControlPlane for Arc<SchedulerState> {
    fn worker_died(&self, death: WorkerDeath) {
        tracing::info!(
            "a nanny reports that worker process {} ended: {}",
            death.pid,
            death.status
        );
        let mut deaths = self.deaths.lock();
        if deaths.len() >= DEATHS_KEPT {
            deaths.clear();
        }
        deaths.insert(death.pid, death);
    }

    fn exchange(
        &self,
        hello: Hello,
        incoming: Streaming<FlightData>,
        peer: Option<SocketAddr>,
    ) -> Result<Frames, Status> {
        let peer = peer.map_or_else(|| "unknown peer".into(), |p| p.to_string());
        match hello {
            Hello::Worker { version, info } => self.add_worker(version, info, incoming, peer),
            Hello::Client { version } => self.add_client(version, incoming, peer),
        }
    }
}

/// Refuses a peer of another protocol version, with a log line.
fn check_version(who: &str, version: u32, peer: &str) -> Result<(), Status> {
    if version == PROTOCOL_VERSION {
        return Ok(());
    }
    let reason = format!(
        "the {who} speaks protocol {version}, this scheduler {PROTOCOL_VERSION}: use the same rask version"
    );
    tracing::warn!(%peer, "refused a {who}: {reason}");
    Err(Status::failed_precondition(reason))
}

/// A worker's report as a core event.
fn worker_event(worker: WorkerId, message: FromWorker) -> Option<Event> {
    match message {
        FromWorker::Finished {
            key,
            nbytes,
            micros,
        } => Some(Event::TaskFinished {
            worker,
            key,
            nbytes,
            micros,
        }),
        FromWorker::Erred { key, error } => Some(Event::TaskErred { worker, key, error }),
        FromWorker::Replicated { key, error: None } => Some(Event::DataReplicated { worker, key }),
        FromWorker::Replicated {
            key,
            error: Some(why),
        } => {
            tracing::warn!(%key, worker, "a copy of a retiring worker's result failed: {why}");
            Some(Event::ReplicateFailed { worker, key })
        }
        FromWorker::Heartbeat { .. } | FromWorker::Retire => None,
    }
}

/// A client's message as the scheduler takes it; `None` for a question,
/// answered apart.
fn client_message(client: ClientId, message: FromClient) -> Option<Message<EncodedJob>> {
    Some(Message::Event(match message {
        FromClient::Submit { tasks, wanted } => {
            return Some(Message::Submit {
                client,
                tasks: tasks.into_iter().map(task_spec).collect(),
                wanted,
            });
        }
        FromClient::Release { key } => Event::FutureReleased { client, key },
        FromClient::Cancel { keys } => Event::Cancel { client, keys },
        FromClient::Scattered {
            key,
            workers,
            nbytes,
        } => Event::DataScattered {
            client,
            key,
            workers,
            nbytes,
        },
        FromClient::FireAndForget { key } => Event::FireAndForget { key },
        FromClient::Publish { name, key } => Event::Publish { name, key },
        FromClient::Unpublish { name } => Event::Unpublish { name },
        FromClient::Ask { .. } => return None,
    }))
}

fn task_spec(task: EncodedTask) -> (TaskSpec, Arc<EncodedJob>) {
    let kind = match task.job {
        EncodedJob::Function { .. } => TaskKind::Call,
        EncodedJob::Stage { .. } | EncodedJob::Concat => TaskKind::Stage,
    };
    let mut spec = TaskSpec::new(task.key, task.dependencies).with_kind(kind);
    spec.priority = task.priority;
    spec.retries = task.retries;
    spec.workers = task.workers;
    spec.functions = task.functions;
    (spec, Arc::new(task.job))
}

/// A worker of another process, as the scheduler server drives it: every call
/// queues a message on its control stream.
struct RemoteWorker {
    id: WorkerId,
    nthreads: usize,
    functions: Arc<std::collections::BTreeSet<String>>,
    outbox: mpsc::UnboundedSender<ToWorker>,
    state: std::sync::Weak<SchedulerState>,
}

impl WorkerEndpoint<EncodedJob> for RemoteWorker {
    fn id(&self) -> WorkerId {
        self.id
    }

    fn nthreads(&self) -> usize {
        self.nthreads
    }

    fn functions(&self) -> Option<Arc<std::collections::BTreeSet<String>>> {
        Some(Arc::clone(&self.functions))
    }

    fn run(&self, key: Key, job: Arc<EncodedJob>, inputs: Vec<Input>) {
        let job = Arc::unwrap_or_clone(job);
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let inputs = inputs
            .into_iter()
            .map(|input| {
                let holders = state.holders(&input.holders);
                (input.key, holders)
            })
            .collect();
        let _ = self.outbox.send(ToWorker::Run { key, job, inputs });
    }

    fn release(&self, key: &Key) -> Option<Released> {
        let _ = self.outbox.send(ToWorker::Release { key: key.clone() });
        None
    }

    fn abort(&self, keys: &KeySet) {
        let keys = keys.iter().cloned().collect();
        let _ = self.outbox.send(ToWorker::Abort { keys });
    }

    fn replicate(&self, key: Key, from: Vec<WorkerId>) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let from = state.holders(&from);
        let _ = self.outbox.send(ToWorker::Replicate { key, from });
    }

    fn retire(&self) -> bool {
        tracing::info!(
            "worker {} retired: what only it held is on other workers",
            self.id
        );
        let reason = "retired".to_string();
        let _ = self.outbox.send(ToWorker::Close { reason });
        false
    }
}

/// Tells every client, every [`ALIVE_EVERY`](super::wire::ALIVE_EVERY), that
/// the scheduler lives, until the scheduler is gone.
async fn tell_clients_alive(state: std::sync::Weak<SchedulerState>) {
    let mut ticks = tokio::time::interval(super::wire::ALIVE_EVERY);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        for client in state.clients.lock().values() {
            let _ = client.send(ToClient::Alive);
        }
    }
}
