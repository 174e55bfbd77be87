//! [`Future`]: a handle on a task's result, as in Dask.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::connection::{Connection, KeySlot};
use crate::exec::TaskData;
use crate::key::Key;
use crate::scheduler::Outcome;
use crate::{Error, Result};

/// Where a future's task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FutureStatus {
    /// Not done yet.
    Pending,
    /// The result is in memory on the cluster.
    Finished,
    /// The task or one of its inputs failed.
    Error,
    /// Cancelled by this client.
    Cancelled,
}

impl fmt::Display for FutureStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FutureStatus::Pending => "pending",
            FutureStatus::Finished => "finished",
            FutureStatus::Error => "error",
            FutureStatus::Cancelled => "cancelled",
        })
    }
}

/// The result of a task on the cluster, now or later. Await it (or call
/// [`result`](Self::result) outside async code) for the data.
///
/// The cluster keeps the result while any future of its key is alive: dropping
/// the last one releases it.
pub struct Future {
    key: Key,
    slot: Arc<KeySlot>,
    connection: Arc<Connection>,
}

impl Future {
    pub(crate) fn new(key: Key, slot: Arc<KeySlot>, connection: Arc<Connection>) -> Self {
        Self {
            key,
            slot,
            connection,
        }
    }

    /// The task's key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Where the task stands now.
    pub fn status(&self) -> FutureStatus {
        match self.slot.outcome() {
            None => FutureStatus::Pending,
            Some(Outcome::Finished { .. }) => FutureStatus::Finished,
            Some(Outcome::Erred(_)) => FutureStatus::Error,
            Some(Outcome::Cancelled) => FutureStatus::Cancelled,
        }
    }

    /// The error, if the task failed.
    pub fn exception(&self) -> Option<Error> {
        match self.slot.outcome() {
            Some(Outcome::Erred(e)) => Some(Error::Task(e)),
            _ => None,
        }
    }

    /// How the task ended, if it has.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        self.slot.outcome()
    }

    /// The client connection the future belongs to.
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// The workers holding the result, once finished (Dask's `who_has`).
    pub fn workers(&self) -> Vec<crate::scheduler::WorkerId> {
        match self.slot.outcome() {
            Some(Outcome::Finished { workers }) => workers,
            _ => Vec::new(),
        }
    }

    /// Has the cluster compute the task even when no future of it is left,
    /// then let go of the result (Dask's `fire_and_forget`): for tasks run
    /// for their effects.
    pub fn fire_and_forget(&self) {
        self.connection.fire_and_forget(&self.key);
    }

    /// Asks the cluster to stop computing this key for this client.
    pub fn cancel(&self) {
        self.connection.cancel(&self.key);
    }

    /// Waits until the task is done (finished, failed or cancelled), without
    /// fetching its result; returns how it ended.
    pub async fn wait(&self) -> FutureStatus {
        std::future::poll_fn(|cx| self.slot.poll_outcome(cx)).await;
        self.status()
    }

    /// Waits for the result, blocking the thread. Use `.await` in async code.
    pub fn result(&self) -> Result<Arc<TaskData>> {
        futures::executor::block_on(self.data())
    }

    /// Waits for the result and reads it as a `T` (a copy of the value the
    /// task returned; decoded if it came from another process).
    ///
    /// ```no_run
    /// # async fn demo(future: rask::Future) -> rask::Result<()> {
    /// let total: f64 = future.value().await?;
    /// # Ok(()) }
    /// ```
    pub async fn value<T>(&self) -> Result<T>
    where
        T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let data = self.data().await?;
        data.get::<T>().cloned().map_err(|source| Error::Decode {
            key: self.key.clone(),
            source,
        })
    }

    /// Waits for the result.
    pub async fn data(&self) -> Result<Arc<TaskData>> {
        match std::future::poll_fn(|cx| self.slot.poll_outcome(cx)).await {
            Outcome::Finished { workers } => self.connection.fetch(&self.key, &workers).await,
            Outcome::Erred(e) => Err(Error::Task(e)),
            Outcome::Cancelled => Err(Error::Cancelled),
        }
    }
}

impl Clone for Future {
    fn clone(&self) -> Self {
        self.slot.acquire();
        Self {
            key: self.key.clone(),
            slot: Arc::clone(&self.slot),
            connection: Arc::clone(&self.connection),
        }
    }
}

impl Drop for Future {
    fn drop(&mut self) {
        self.connection.release(&self.key, &self.slot);
    }
}

impl fmt::Debug for Future {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Future: {}, key: {}>", self.status(), self.key)
    }
}

impl fmt::Display for Future {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<'a> IntoFuture for &'a Future {
    type Output = Result<Arc<TaskData>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.data())
    }
}

impl IntoFuture for Future {
    type Output = Result<Arc<TaskData>>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.data().await })
    }
}
