//! A client's connection to its cluster: the futures it holds and the reports
//! that settle them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::cluster::{ClusterLink, Message};
use crate::exec::{TaskData, Value};
use crate::key::{Key, KeyMap};
use crate::scheduler::{ClientId, Event, Outcome, TaskSpec, WorkerId};
use crate::worker::Job;

static CLIENTS: AtomicU64 = AtomicU64::new(1);

/// Results fetched together, at most, by [`Connection::gather`].
const GATHER_CHUNK: usize = 4096;

/// One client of a cluster. Futures share it; it keeps, per key, the
/// [`KeySlot`] its futures share.
pub(crate) struct Connection {
    id: ClientId,
    cluster: Arc<dyn ClusterLink>,
    slots: Mutex<KeyMap<Arc<KeySlot>>>,
    /// Where the next scattered value goes, counting worker threads round-robin.
    scatter_turn: AtomicU64,
}

/// What a client knows of one key, shared by the key's futures: they read it
/// without going through the connection.
#[derive(Default)]
pub(crate) struct KeySlot(Mutex<SlotState>);

#[derive(Default)]
struct SlotState {
    /// Futures of the key alive.
    refs: usize,
    /// How the key ended, once it has.
    outcome: Option<Outcome>,
    /// Tasks awaiting the outcome.
    wakers: Vec<Waker>,
}

impl KeySlot {
    /// How the key ended, if it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.0.lock().outcome.clone()
    }

    /// How the key ended, or pending with `cx` woken when it ends.
    pub fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut state = self.0.lock();
        if let Some(outcome) = &state.outcome {
            return Poll::Ready(outcome.clone());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// One more future shares the slot.
    pub fn acquire(&self) {
        self.0.lock().refs += 1;
    }

    fn settle(&self, outcome: Outcome) {
        let wakers = {
            let mut state = self.0.lock();
            state.outcome = Some(outcome);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Connection {
    /// Connects a new client to `cluster`.
    pub fn open(cluster: Arc<dyn ClusterLink>) -> Arc<Self> {
        let id = CLIENTS.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Self {
            id,
            cluster,
            slots: Mutex::new(KeyMap::default()),
            scatter_turn: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&connection);
        connection.cluster.send(Message::Connect(
            id,
            Arc::new(move |key, outcome| {
                if let Some(connection) = weak.upgrade() {
                    connection.report(&key, outcome);
                }
            }),
        ));
        connection
    }

    /// The cluster this client is connected to.
    pub fn cluster(&self) -> &Arc<dyn ClusterLink> {
        &self.cluster
    }

    /// Submits `tasks` and returns futures of `wanted`.
    pub fn submit(
        self: &Arc<Self>,
        tasks: Vec<(TaskSpec, Arc<Job>)>,
        wanted: Vec<Key>,
    ) -> Vec<super::Future> {
        self.slots.lock().reserve(wanted.len());
        let futures: Vec<super::Future> = wanted.iter().map(|k| self.future(k.clone())).collect();
        self.cluster.send(Message::Submit {
            client: self.id,
            tasks,
            wanted,
        });
        futures
    }

    /// Places `value` on a worker (the next thread round-robin) or, with
    /// `broadcast`, on every worker; tells the scheduler, and returns its
    /// future, finished once the scheduler knows where the value is.
    pub async fn scatter(
        self: &Arc<Self>,
        key: Key,
        value: Value,
        broadcast: bool,
    ) -> crate::Result<super::Future> {
        let info = self.cluster.info();
        let workers: Vec<WorkerId> = if broadcast {
            info.workers.iter().map(|w| w.id).collect()
        } else {
            let threads: Vec<WorkerId> = info
                .workers
                .iter()
                .flat_map(|w| std::iter::repeat_n(w.id, w.nthreads.max(1)))
                .collect();
            let turn = self.scatter_turn.fetch_add(1, Ordering::Relaxed) as usize;
            threads
                .get(turn % threads.len().max(1))
                .into_iter()
                .copied()
                .collect()
        };
        if workers.is_empty() {
            return Err(crate::Error::Comm(format!(
                "cannot scatter {key}: the cluster has no workers"
            )));
        }
        self.cluster.put(&key, &value, &workers).await?;
        let future = self.future(key.clone());
        self.cluster.send(Message::Event(Event::DataScattered {
            client: self.id,
            key,
            workers,
            nbytes: value.nbytes(),
        }));
        // Finished once the scheduler has taken note of it.
        future.wait().await;
        match future.exception() {
            Some(error) => Err(error),
            None => Ok(future),
        }
    }

    /// A future of `key`, counted among the key's holders.
    pub fn future(self: &Arc<Self>, key: Key) -> super::Future {
        let slot = {
            let mut slots = self.slots.lock();
            let slot = slots.entry(key.clone()).or_default();
            slot.acquire();
            Arc::clone(slot)
        };
        super::Future::new(key, slot, Arc::clone(self))
    }

    /// A future of `key` is gone; the last one releases the key.
    pub fn release(&self, key: &Key, slot: &KeySlot) {
        let server = &self.cluster;
        {
            let mut slots = self.slots.lock();
            let mut state = slot.0.lock();
            state.refs = state.refs.saturating_sub(1);
            if state.refs > 0 {
                return;
            }
            drop(state);
            crate::key::remove_shrinking(&mut slots, key);
            // Queued before the lock goes: a new future of the key, made after,
            // submits behind this release, so the release cannot undo it.
            server.enqueue(Message::Event(Event::FutureReleased {
                client: self.id,
                key: key.clone(),
            }));
        }
        server.drain();
    }

    /// Keeps `key` computing even when no future of it is left.
    pub fn fire_and_forget(&self, key: &Key) {
        self.cluster
            .send(Message::Event(Event::FireAndForget { key: key.clone() }));
    }

    /// Publishes `key` as `name`; returns once the scheduler has it.
    pub async fn publish(&self, name: &str, key: &Key) -> crate::Result<()> {
        self.cluster.send(Message::Event(Event::Publish {
            name: name.to_string(),
            key: key.clone(),
        }));
        // The scheduler answers a question after the messages sent before
        // it: once answered, any client that asks finds the name.
        match self
            .cluster
            .ask(super::Question::Published(name.to_string()))
            .await?
        {
            super::Answer::Published(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Unpublishes `name`.
    pub fn unpublish(&self, name: &str) {
        self.cluster.send(Message::Event(Event::Unpublish {
            name: name.to_string(),
        }));
    }

    /// A future of the key published as `name`, wanted by this client.
    pub async fn published(self: &Arc<Self>, name: &str) -> crate::Result<super::Future> {
        let answer = self
            .cluster
            .ask(super::Question::Published(name.to_string()))
            .await?;
        let super::Answer::Published(Some(key)) = answer else {
            return Err(crate::Error::Config(format!(
                "nothing is published as {name:?}"
            )));
        };
        Ok(self.submit(Vec::new(), vec![key]).remove(0))
    }

    /// How far each group of tasks on the cluster has come.
    pub async fn progress(&self) -> crate::Result<Vec<crate::scheduler::GroupProgress>> {
        match self.cluster.ask(super::Question::Progress).await? {
            super::Answer::Progress(groups) => Ok(groups),
            other => Err(unexpected(other)),
        }
    }

    /// The task stream's bars numbered `after` and up (at most `limit`), the
    /// next bar's number and the stream's clock now.
    pub async fn stream(
        &self,
        after: u64,
        limit: usize,
    ) -> crate::Result<(Vec<crate::scheduler::Bar>, u64, f64)> {
        match self
            .cluster
            .ask(super::Question::Stream { after, limit })
            .await?
        {
            super::Answer::Stream { bars, next, now } => Ok((bars, next, now)),
            other => Err(unexpected(other)),
        }
    }

    /// What each worker holds and does now.
    pub async fn workers(&self) -> crate::Result<Vec<super::WorkerState>> {
        match self.cluster.ask(super::Question::Workers).await? {
            super::Answer::Workers(workers) => Ok(workers),
            other => Err(unexpected(other)),
        }
    }

    /// Starts retiring `workers` (addresses, names or ids); their ids.
    pub async fn retire(&self, workers: Vec<String>) -> crate::Result<Vec<WorkerId>> {
        match self.cluster.ask(super::Question::Retire(workers)).await? {
            super::Answer::Retiring(ids) => Ok(ids),
            super::Answer::Refused(why) => Err(crate::Error::Config(why)),
            other => Err(unexpected(other)),
        }
    }

    /// Cancels `key` for this client.
    pub fn cancel(&self, key: &Key) {
        self.cluster.send(Message::Event(Event::Cancel {
            client: self.id,
            keys: vec![key.clone()],
        }));
    }

    /// The scheduler says how `key` ended.
    fn report(&self, key: &Key, outcome: Outcome) {
        let slot = self.slots.lock().get(key).cloned();
        if let Some(slot) = slot {
            slot.settle(outcome);
        }
    }

    /// The data of every future, in order, once all are done; the error of
    /// the first that failed.
    pub async fn gather(&self, futures: &[super::Future]) -> crate::Result<Vec<Arc<TaskData>>> {
        let mut holders = Vec::with_capacity(futures.len());
        // Waiting for the last first wakes this about once, not once per future.
        for future in futures.iter().rev() {
            future.wait().await;
        }
        for future in futures {
            match future.outcome() {
                Some(Outcome::Finished { workers }) => {
                    holders.push((future.key().clone(), workers))
                }
                Some(Outcome::Erred(e)) => return Err(crate::Error::Task(e)),
                Some(Outcome::Cancelled) => return Err(crate::Error::Cancelled),
                None => return Err(crate::Error::Comm(format!("{} is not done", future.key()))),
            }
        }
        // Bounded requests: a very wide gather still streams.
        let mut data = Vec::with_capacity(holders.len());
        for chunk in holders.chunks(GATHER_CHUNK) {
            data.extend(self.cluster.fetch_many(chunk).await?);
        }
        Ok(data)
    }

    /// The data of `key` from one of `workers`.
    pub async fn fetch(&self, key: &Key, workers: &[WorkerId]) -> crate::Result<Arc<TaskData>> {
        self.cluster.fetch(key, workers).await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.cluster.send(Message::Disconnect(self.id));
    }
}

/// The error for an answer to another question.
fn unexpected(answer: super::Answer) -> crate::Error {
    crate::Error::Comm(format!(
        "the scheduler answered another question: {answer:?}"
    ))
}
