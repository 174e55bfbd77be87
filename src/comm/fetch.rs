//! [`FlightFetcher`]: fetches results from workers of other processes over Flight.
//!
//! Fetches run on the runtime the fetcher was made on (a process's I/O runtime),
//! whichever runtime asks: a worker's task slots run CPU-bound DataFusion code
//! that seldom yields, and a connection driven from there would answer HTTP/2
//! pings and flow-control updates only between polls of a busy task.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_flight::flight_service_client::FlightServiceClient;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::OnceCell;
use tonic::transport::Channel;

use super::wire::{FetchTicket, Holder};
use crate::exec::{RemoteSource, TaskData};
use crate::key::Key;
use crate::net::Security;
use crate::scheduler::WorkerId;
use crate::worker::Activity;

/// Connections [`FlightFetcher::warm`] opens ahead of the first fetch: enough
/// for the workers a small query's results come from, few enough for a
/// cluster of hundreds.
const WARM_CONNECTIONS: usize = 16;

/// Knows where workers serve their results and keeps one connection to each.
/// Cheap to clone: clones share the connections.
#[derive(Clone, Default)]
pub(crate) struct FlightFetcher {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    security: Security,
    /// Where connections and fetches run; the caller's runtime when `None`.
    io: Option<Handle>,
    addresses: RwLock<HashMap<WorkerId, String>>,
    /// One connection per address, made once however many ask for it at
    /// the same time (a fetch and [`warm`](FlightFetcher::warm) among them).
    clients: Mutex<HashMap<String, Arc<OnceCell<FlightServiceClient<Channel>>>>>,
    /// Where a worker counts what it fetches; `None` for a client.
    activity: Option<Arc<Activity>>,
}

impl std::fmt::Debug for FlightFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FlightFetcher({} workers)",
            self.inner.addresses.read().len()
        )
    }
}

impl FlightFetcher {
    /// A fetcher presenting `security`'s token, doing its I/O on the current
    /// tokio runtime (if there is one).
    pub fn new(security: Security) -> Self {
        Self {
            inner: Arc::new(Inner {
                security,
                io: Handle::try_current().ok(),
                ..Inner::default()
            }),
        }
    }

    /// [`new`](Self::new), counting fetches in a worker's `activity`.
    pub fn for_worker(security: Security, activity: Arc<Activity>) -> Self {
        Self {
            inner: Arc::new(Inner {
                security,
                io: Handle::try_current().ok(),
                activity: Some(activity),
                ..Inner::default()
            }),
        }
    }

    /// Notes where `holders` serve; returns their ids.
    pub fn learn(&self, holders: Vec<Holder>) -> Vec<WorkerId> {
        let mut addresses = self.inner.addresses.write();
        holders
            .into_iter()
            .map(|(id, address)| {
                addresses.insert(id, address);
                id
            })
            .collect()
    }

    /// Connects to the first [`WARM_CONNECTIONS`] of `holders` in the
    /// background (and learns where they serve), so that the first fetch
    /// from them does not wait for a connection: a client's first query
    /// plans meanwhile. A connection that fails is made again when needed.
    pub fn warm(&self, holders: Vec<Holder>) {
        let workers = self.learn(holders);
        let io = self.inner.io.clone().or_else(|| Handle::try_current().ok());
        let Some(io) = io else {
            return;
        };
        for worker in workers.into_iter().take(WARM_CONNECTIONS) {
            let this = self.clone();
            // An error here is met again, and reported, by the fetch.
            io.spawn(async move { this.with_client(worker, |_| async { Ok(()) }).await });
        }
    }

    /// Bucket `bucket` (or all) of each of `keys` from `worker`, in one
    /// request: the batches of each key, in the order asked.
    pub async fn fetch_from(
        &self,
        worker: WorkerId,
        keys: Vec<Key>,
        bucket: Option<usize>,
    ) -> Result<Vec<Vec<RecordBatch>>, String> {
        let what = match keys.as_slice() {
            [key] => key.to_string(),
            keys => format!("{} results", keys.len()),
        };
        let ticket = FetchTicket {
            keys,
            bucket: bucket.map(|b| b as u32),
            by_bucket: false,
        };
        let transfer = self.inner.activity.as_deref().map(Activity::transfer);
        let this = self.clone();
        let fetched = self
            .on_io(async move {
                let security = &this.inner.security;
                this.with_client(worker, |mut client| async move {
                    super::flight::fetch(&mut client, security, &ticket).await
                })
                .await
            })
            .await?;
        if let Some(transfer) = transfer {
            let nbytes = crate::exec::held_bytes(fetched.iter().flatten());
            transfer.done(format!("{what} from worker {worker}"), nbytes);
        }
        Ok(fetched)
    }

    /// A copy of the whole result `key` from `worker`, buckets kept (a
    /// retiring worker's result moving here).
    pub async fn copy_from(&self, worker: WorkerId, key: Key) -> Result<TaskData, String> {
        let transfer = self.inner.activity.as_deref().map(Activity::transfer);
        let what = format!("{key} from worker {worker}");
        let this = self.clone();
        let data = self
            .on_io(async move {
                let security = &this.inner.security;
                this.with_client(worker, |mut client| async move {
                    super::flight::fetch_whole(&mut client, security, &key).await
                })
                .await
            })
            .await?;
        if let Some(transfer) = transfer {
            transfer.done(what, data.nbytes());
        }
        Ok(data)
    }

    /// Forgets every worker's address and connection: the workers of a
    /// scheduler this process no longer belongs to.
    pub fn forget_all(&self) {
        self.inner.addresses.write().clear();
        self.inner.clients.lock().clear();
    }

    /// Stores `batches` (a value, as [`Value::to_batches`](crate::exec::Value::to_batches)
    /// makes it) on `worker` under `key`.
    pub async fn put_to(
        &self,
        worker: WorkerId,
        key: Key,
        batches: Vec<RecordBatch>,
    ) -> Result<(), String> {
        let this = self.clone();
        self.on_io(async move {
            let security = &this.inner.security;
            this.with_client(worker, |mut client| async move {
                super::flight::put(&mut client, security, &key, batches).await
            })
            .await
        })
        .await
    }

    /// Runs `call` on the I/O runtime and waits for it; dropping the wait
    /// (an aborted task) aborts the call.
    async fn on_io<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        let Some(io) = &self.inner.io else {
            return call.await;
        };
        let task = io.spawn(call);
        let _abort = AbortOnDrop(task.abort_handle());
        task.await
            .map_err(|e| format!("the transfer was cancelled: {e}"))?
    }

    /// Runs `call` with the connection to `worker`, connecting first if need be;
    /// a failed call drops the connection (the worker may be gone).
    async fn with_client<T, F>(
        &self,
        worker: WorkerId,
        call: impl FnOnce(FlightServiceClient<Channel>) -> F,
    ) -> Result<T, String>
    where
        F: Future<Output = Result<T, String>>,
    {
        let address = self
            .inner
            .addresses
            .read()
            .get(&worker)
            .cloned()
            .ok_or_else(|| format!("no address known for worker {worker}"))?;
        let cell = Arc::clone(
            self.inner
                .clients
                .lock()
                .entry(address.clone())
                .or_default(),
        );
        let security = &self.inner.security;
        let client = cell
            .get_or_try_init(|| super::flight::connect(&address, security))
            .await
            .map_err(|e| e.to_string())?
            .clone();
        let result = call(client).await;
        if result.is_err() {
            let mut clients = self.inner.clients.lock();
            // Only this connection: another may have replaced it meanwhile.
            if clients.get(&address).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                clients.remove(&address);
            }
        }
        result
    }
}

impl RemoteSource for FlightFetcher {
    /// Batch by batch, through a small channel: the fetch runs on the I/O
    /// runtime, and waits (HTTP/2 flow control holding the sender) while the
    /// reader is busy; dropping the stream ends it.
    fn stream(
        &self,
        worker: u64,
        key: &Key,
        bucket: Option<usize>,
    ) -> futures::stream::BoxStream<'static, Result<RecordBatch, String>> {
        use futures::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, String>>(2);
        let this = self.clone();
        let key = key.clone();
        let what = format!("{key} from worker {worker}");
        let fetch = async move {
            let transfer = this.inner.activity.as_deref().map(Activity::transfer);
            let security = &this.inner.security;
            let sent = this
                .with_client(worker, |mut client| {
                    let tx = tx.clone();
                    async move {
                        let batches =
                            super::flight::fetch_stream(&mut client, security, &key, bucket)
                                .await?;
                        let mut batches = std::pin::pin!(batches);
                        let mut nbytes = 0;
                        while let Some(batch) = batches.next().await {
                            let batch = batch?;
                            nbytes += crate::exec::held_bytes([&batch]);
                            if tx.send(Ok(batch)).await.is_err() {
                                break;
                            }
                        }
                        Ok(nbytes)
                    }
                })
                .await;
            match sent {
                Ok(nbytes) => {
                    if let Some(transfer) = transfer {
                        transfer.done(what, nbytes);
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        };
        match &self.inner.io {
            Some(io) => drop(io.spawn(fetch)),
            None => drop(tokio::spawn(fetch)),
        }
        tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
    }

    fn fetch(
        &self,
        worker: u64,
        keys: &[Key],
        bucket: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<Vec<RecordBatch>>, String>> {
        let this = self.clone();
        let keys = keys.to_vec();
        Box::pin(async move { this.fetch_from(worker, keys, bucket).await })
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
