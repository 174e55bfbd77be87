//! The dashboard: web pages and a JSON API the scheduler serves over HTTP
//! (`--dashboard-address`, `:8787` by default; a local cluster on a free port),
//! as Dask's does.
//!
//! Everything it shows comes from a [`ClusterView`]: the scheduler's
//! [`SchedulerHandle`] (progress, task stream, graph, tasks) and the workers'
//! state. Reading costs the scheduler little: progress is counted as tasks
//! change state, the task stream sits behind a lock of its own, and a graph
//! past [`GRAPH_TASKS`] tasks is drawn by group. Pages get their updates pushed
//! by server-sent events ([`api`]). Assets are embedded in the binary:
//! clusters are often offline.
//!
//! Pages: `/status` (task stream, progress, memory), `/workers`, `/graph`,
//! `/info` with `/info/worker/{id}` and `/info/task/{key}`. The API behind them
//! is under `/api/v1/`; `/health` answers `ok`, `/metrics` speaks Prometheus.
//! With a cluster token, everything but `/health` asks for it ([`Gate`]).

mod api;
mod gate;
mod listener;
mod metrics;

pub use gate::Gate;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{Html, Redirect};
use axum::routing::get;

use crate::cluster::{ClusterInfo, WorkerState};
use crate::net::{Limits, Port, Security};
use crate::scheduler::SchedulerHandle;
use crate::{Error, Result};

/// Past this many tasks the graph page shows groups, not tasks.
pub const GRAPH_TASKS: usize = 2_000;

/// What the dashboard shows, read when a page or the API asks.
pub trait ClusterView: Send + Sync + 'static {
    /// The scheduler, its dashboard and the workers as registered.
    fn info(&self) -> ClusterInfo;
    /// Every worker now.
    fn workers(&self) -> Vec<WorkerState>;
    /// The scheduler: progress, task stream, graph and tasks.
    fn scheduler(&self) -> &dyn SchedulerHandle;
}

/// The page (one for all paths: its script draws the one asked for), its
/// scripts and its style, embedded.
const PAGE: &str = include_str!("assets/page.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
/// The drawing code the live pages and reports share.
pub(crate) const DRAW: &str = include_str!("assets/draw.js");
/// The style of the pages and of reports.
pub(crate) const STYLE: &str = include_str!("assets/dashboard.css");
/// What draws a report ([`crate::Report`]) from the data written into it.
pub(crate) const REPORT: &str = include_str!("assets/report.js");

/// Where `address` (`:8787`, `HOST:PORT`) asks to serve, with `host` for a
/// missing host.
pub fn parse_address(address: &str, host: &str) -> Result<(String, u16)> {
    let (h, port) = address.rsplit_once(':').ok_or_else(|| {
        Error::Config(format!(
            "dashboard address {address:?}: expected HOST:PORT or :PORT"
        ))
    })?;
    let port = port.parse().map_err(|_| {
        Error::Config(format!(
            "dashboard address {address:?}: {port:?} is not a port"
        ))
    })?;
    let h = if h.is_empty() { host } else { h };
    Ok((h.to_string(), port))
}

/// Binds `host:port`, or, when that port is taken, any free port of `host`
/// (with a warning that names it, as Dask does).
pub fn bind(host: &str, port: u16) -> Result<std::net::TcpListener> {
    let listener = match std::net::TcpListener::bind((host, port)) {
        Ok(listener) => listener,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && port != 0 => {
            let listener = std::net::TcpListener::bind((host, 0))
                .map_err(|e| Error::Config(format!("cannot serve the dashboard on {host}: {e}")))?;
            if let Ok(chosen) = listener.local_addr() {
                tracing::warn!(
                    "port {port} is already in use (another cluster?); the dashboard is served on {chosen} instead"
                );
            }
            listener
        }
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot serve the dashboard on {host}:{port}: {e}"
            )));
        }
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Config(format!("cannot serve the dashboard: {e}")))?;
    Ok(listener)
}

/// Binds where `address` asks (see [`parse_address`] and [`bind`]); the
/// listener and the dashboard's link.
pub fn bind_address(address: &str, host: &str) -> Result<(std::net::TcpListener, String)> {
    let (host, port) = parse_address(address, host)?;
    let listener = bind(&host, port)?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Comm(format!("the dashboard's address: {e}")))?;
    Ok((listener, link(local)))
}

/// The dashboard's port on `listener` (from [`bind`]), if `security` lets it
/// listen there: beyond loopback it needs a token (asked of every request but
/// `/health`) or TLS (with client certificates when there is no token).
pub fn port(listener: std::net::TcpListener, security: &Security) -> Result<Port> {
    Port::from_std(listener, "the dashboard", Limits::DASHBOARD)?
        .expose(security, security.checks_callers())
}

/// Serves the dashboard of `view` on `port` until `shutdown` resolves: over
/// TLS when `security` has it, asking for its token when it has one.
pub async fn serve(
    port: Port,
    security: &Security,
    view: Arc<dyn ClusterView>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let gate = security.token.as_ref().map(|_| {
        let security = security.clone();
        Arc::new(move |presented: &str| security.accepts(presented)) as Gate
    });
    let tls = security.tls_acceptor(security.token.is_none())?;
    let port = listener::HttpPort::new(port, tls)?;
    axum::serve(port, router(view, gate))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Comm(format!("the dashboard stopped: {e}")))
}

/// Serves the dashboard of `view` on `listener` from a thread of its own,
/// until the returned sender is dropped: for a cluster with no runtime of its
/// own to serve from (the local cluster, which has no token: only loopback).
pub fn serve_in_thread(
    listener: std::net::TcpListener,
    view: Arc<dyn ClusterView>,
) -> Result<tokio::sync::oneshot::Sender<()>> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Comm(format!("cannot start the dashboard: {e}")))?;
    let security = Security::default();
    let port = {
        let _entered = runtime.enter();
        port(listener, &security)?
    };
    std::thread::Builder::new()
        .name("rask-dashboard".into())
        .spawn(move || {
            let served = runtime.block_on(serve(port, &security, view, async move {
                let _ = stopped.await;
            }));
            if let Err(e) = served {
                tracing::error!("{e}");
            }
        })
        .map_err(|e| Error::Comm(format!("cannot start the dashboard: {e}")))?;
    Ok(stop)
}

/// The dashboard's link for a listener at `address`.
pub fn link(address: SocketAddr) -> String {
    format!("http://{address}/status")
}

fn router(view: Arc<dyn ClusterView>, gate: Option<Gate>) -> Router {
    let page = || async { Html(PAGE) };
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/status") }))
        .route("/status", get(page))
        .route("/workers", get(page))
        .route("/graph", get(page))
        .route("/info", get(page))
        .route("/info/worker/{id}", get(page))
        .route("/info/task/{key}", get(page))
        .route(
            "/assets/draw.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], DRAW) }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }),
        )
        .route(
            "/assets/dashboard.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE) }),
        )
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics::metrics))
        .merge(api::routes())
        .with_state(Arc::new(api::Dashboard::new(view)))
        .layer(axum::middleware::from_fn_with_state(gate, gate::admit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_the_scheduler_host_when_they_name_none() {
        assert_eq!(
            parse_address(":8787", "127.0.0.1").unwrap(),
            ("127.0.0.1".to_string(), 8787)
        );
        assert_eq!(
            parse_address("0.0.0.0:9000", "127.0.0.1").unwrap(),
            ("0.0.0.0".to_string(), 9000)
        );
        let err = parse_address("8787", "h").unwrap_err().to_string();
        assert!(err.contains("expected HOST:PORT"), "{err}");
        let err = parse_address(":http", "h").unwrap_err().to_string();
        assert!(err.contains("\"http\" is not a port"), "{err}");
    }

    #[test]
    fn a_taken_port_falls_back_to_a_free_one() {
        let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let other = bind("127.0.0.1", port).unwrap();
        assert_ne!(other.local_addr().unwrap().port(), port);
    }
}
