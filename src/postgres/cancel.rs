//! Cancel requests: a client (psql's Ctrl-C, psycopg's `cancel()`) opens a
//! second connection and names the first by the process id and secret key it
//! was given at startup.
//!
//! While a statement is being planned and run, pgwire itself stops it (its
//! `ConnectionManager`). Rows are streamed out after that, so [`Cancels`] also
//! tells the connection's [`Session`](super::Session), whose stream of result
//! batches ([`guard`]) ends there with SQLSTATE `57014`. Either way the query's
//! stream is dropped, which releases its tasks on the cluster.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use pgwire::api::ConnectionManager;
use pgwire::api::cancel::CancelHandler;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::watch;

/// A connection as cancel requests name it: its process id and secret key.
pub type BackendKey = (i32, Bytes);

/// The key of a connection given `pid` and `secret`.
pub fn backend_key(pid: i32, secret: &SecretKey) -> BackendKey {
    (pid, secret.to_bytes())
}

/// The server's connections, for cancel requests.
pub struct Cancels {
    /// pgwire's: stops a statement being planned or run.
    pub manager: Arc<ConnectionManager>,
    /// Ours: each streaming connection's signal, bumped by a cancel request.
    streams: Mutex<HashMap<BackendKey, watch::Sender<u64>>>,
}

impl Cancels {
    /// No connections yet.
    pub fn new() -> Self {
        Self {
            manager: Arc::new(ConnectionManager::new()),
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Lets cancel requests for `key` reach `signal`.
    pub fn register(&self, key: BackendKey, signal: watch::Sender<u64>) {
        self.streams.lock().insert(key, signal);
    }

    /// Forgets the connection of `key`, which has closed.
    pub fn forget(&self, key: &BackendKey) {
        self.streams.lock().remove(key);
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.manager.cancel(request.pid, &request.secret_key).await;
        let key = backend_key(request.pid, &request.secret_key);
        if let Some(signal) = self.streams.lock().get(&key) {
            signal.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// `items` until a cancel request bumps `signal` (none before now counts),
/// or `deadline` (the statement's timeout) passes, then one error and the end.
pub fn guard<S, T>(
    signal: &watch::Sender<u64>,
    rows: S,
    deadline: Option<tokio::time::Instant>,
) -> impl Stream<Item = PgWireResult<T>> + Send + use<S, T>
where
    S: Stream<Item = PgWireResult<T>> + Send + Unpin + 'static,
    T: Send + 'static,
{
    let rows = within_stream(rows, deadline);
    /// Where the guarded stream stands.
    enum Guard {
        Watching(watch::Receiver<u64>),
        /// The session is gone: nothing can cancel any more.
        Unwatched,
        Cancelled,
    }
    let start = Guard::Watching(signal.subscribe());
    futures::stream::unfold((rows, start), |(mut rows, guard)| async move {
        match guard {
            Guard::Cancelled => None,
            Guard::Unwatched => rows.next().await.map(|row| (row, (rows, Guard::Unwatched))),
            Guard::Watching(mut requests) => tokio::select! {
                row = rows.next() => row.map(|row| (row, (rows, Guard::Watching(requests)))),
                changed = requests.changed() => match changed {
                    Ok(()) => Some((Err(cancelled()), (rows, Guard::Cancelled))),
                    Err(_) => rows.next().await.map(|row| (row, (rows, Guard::Unwatched))),
                },
            },
        }
    })
}

/// `rows` until `deadline`, then one timeout error and the end.
fn within_stream<S, T>(
    rows: S,
    deadline: Option<tokio::time::Instant>,
) -> futures::stream::BoxStream<'static, PgWireResult<T>>
where
    S: Stream<Item = PgWireResult<T>> + Send + Unpin + 'static,
    T: Send + 'static,
{
    let Some(deadline) = deadline else {
        return rows.boxed();
    };
    futures::stream::unfold(Some(rows), move |rows| async move {
        let mut rows = rows?;
        tokio::select! {
            row = rows.next() => row.map(|row| (row, Some(rows))),
            () = tokio::time::sleep_until(deadline) => Some((Err(timed_out()), None)),
        }
    })
    .boxed()
}

/// Runs `work` until `deadline`; past it, the statement-timeout error.
pub async fn within<T>(
    deadline: Option<tokio::time::Instant>,
    work: impl Future<Output = PgWireResult<T>>,
) -> PgWireResult<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| Err(timed_out())),
        None => work.await,
    }
}

/// PostgreSQL's answer to a statement past its `statement_timeout`.
fn timed_out() -> PgWireError {
    super::refusal(
        "ERROR",
        "57014",
        "canceling statement due to statement timeout",
    )
}

/// PostgreSQL's answer to a cancelled query.
fn cancelled() -> PgWireError {
    super::refusal("ERROR", "57014", "canceling statement due to user request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_request_ends_the_rows_with_57014() {
        let (signal, _) = watch::channel(0);
        signal.send_modify(|n| *n += 1); // an earlier request: does not count
        let rows = futures::stream::iter([Ok(1), Ok(2)]).chain(futures::stream::pending());
        let mut guarded = Box::pin(guard(&signal, rows, None));
        assert_eq!(guarded.next().await.unwrap().unwrap(), 1);
        assert_eq!(guarded.next().await.unwrap().unwrap(), 2);
        signal.send_modify(|n| *n += 1);
        match guarded.next().await {
            Some(Err(PgWireError::UserError(info))) => assert_eq!(info.code, "57014"),
            other => panic!("expected a cancel, got {other:?}"),
        }
        assert!(guarded.next().await.is_none());
    }
}
