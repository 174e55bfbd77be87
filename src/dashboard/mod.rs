//! The dashboard: a web page and a JSON API the scheduler serves over HTTP
//! (`--dashboard-address`, `:8787` by default), as Dask's does.
//!
//! Everything it shows comes from a [`ClusterView`]: the scheduler process
//! hands it one, and the page asks for it when it is opened and once a second
//! after. Assets are embedded in the binary: clusters are often offline.
//!
//! - `/status`: the cluster and its workers (the page);
//! - `/api/v1/info`: the scheduler, dashboard and workers, as JSON;
//! - `/api/v1/workers`: the workers alone;
//! - `/health`: `ok` while the scheduler serves.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::client::{ClusterInfo, WorkerInfo};
use crate::{Error, Result};

/// What the dashboard shows, read when a page or the API asks.
pub trait ClusterView: Send + Sync + 'static {
    /// The cluster as it is now.
    fn info(&self) -> ClusterInfo;
}

/// The page, embedded.
const STATUS_PAGE: &str = include_str!("status.html");

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
pub async fn bind(host: &str, port: u16) -> Result<TcpListener> {
    match TcpListener::bind((host, port)).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && port != 0 => {
            let listener = TcpListener::bind((host, 0))
                .await
                .map_err(|e| Error::Config(format!("cannot serve the dashboard on {host}: {e}")))?;
            if let Ok(chosen) = listener.local_addr() {
                tracing::warn!(
                    "port {port} is already in use (another cluster?); the dashboard is served on {chosen} instead"
                );
            }
            Ok(listener)
        }
        Err(e) => Err(Error::Config(format!(
            "cannot serve the dashboard on {host}:{port}: {e}"
        ))),
    }
}

/// Serves the dashboard of `view` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    view: Arc<dyn ClusterView>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(view))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Comm(format!("the dashboard stopped: {e}")))
}

/// The dashboard's link for a listener at `address`.
pub fn link(address: SocketAddr) -> String {
    format!("http://{address}/status")
}

fn router(view: Arc<dyn ClusterView>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/status") }))
        .route("/status", get(|| async { Html(STATUS_PAGE) }))
        .route("/health", get(|| async { "ok" }))
        .route("/api/v1/info", get(info))
        .route("/api/v1/workers", get(workers))
        .with_state(view)
}

async fn info(State(view): State<Arc<dyn ClusterView>>) -> impl IntoResponse {
    axum::Json(view.info())
}

async fn workers(State(view): State<Arc<dyn ClusterView>>) -> impl IntoResponse {
    let workers: Vec<WorkerInfo> = view.info().workers;
    axum::Json(workers)
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

    #[tokio::test]
    async fn a_taken_port_falls_back_to_a_free_one() {
        let taken = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let other = bind("127.0.0.1", port).await.unwrap();
        assert_ne!(other.local_addr().unwrap().port(), port);
    }
}
