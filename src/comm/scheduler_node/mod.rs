//! The scheduler as a process: the shared [`EventLoop`] behind a Flight
//! service, with workers and clients of other processes on control streams.
//!
//! A worker's stream starts with its [`WorkerInfo`]; the scheduler answers
//! with its id and from then on sends it tasks, releases and aborts, while the
//! worker reports results and heartbeats. A stream that ends (the process died,
//! `kill -9` included), sends garbage, or stays silent past the heartbeat
//! timeout removes the worker: the core reschedules what it ran and recomputes
//! what it held from lineage. [`worker_link`] holds the workers' side,
//! [`client_link`] the clients', [`deaths`] what nannies report of workers
//! that died, for the errors of the tasks that killed them.

mod client_link;
mod deaths;
mod worker_link;

use client_link::tell_clients_alive;
use deaths::{DEATHS_KEPT, last_killed, with_log};

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
use super::sql_session::{self, OpenSqlSession, SqlSession};
use super::wire::{
    EncodedJob, EncodedTask, FromClient, FromWorker, Hello, Holder, PROTOCOL_VERSION, RunInput,
    SqlFailure, ToClient, ToWorker, WireOutcome, WorkerDeath,
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
    /// How a session for a thin client's SQL opens, once set.
    sql: std::sync::OnceLock<sql_session::Sessions>,
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
            sql: std::sync::OnceLock::new(),
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

    /// Plans and runs the SQL of thin clients ([`FromClient::Sql`]) from now
    /// on, each connection in a session `open` makes at its first statement.
    /// Without it, such a statement fails, saying so.
    pub fn serve_sql(&self, open: OpenSqlSession) {
        let _ = self.state.sql.set(sql_session::Sessions::new(open));
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
