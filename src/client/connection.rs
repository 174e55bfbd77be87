//! A client's connection to its cluster: the futures it holds and the reports
//! that settle them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use super::LocalCluster;
use crate::exec::TaskData;
use crate::key::{Key, KeyMap};
use crate::scheduler::{ClientId, Event, Message, Outcome, TaskSpec};

static CLIENTS: AtomicU64 = AtomicU64::new(1);

/// One client of a cluster. Futures share it; it keeps, per key, how many
/// futures are alive and how the key ended.
pub(crate) struct Connection {
    id: ClientId,
    cluster: Arc<LocalCluster>,
    slots: Mutex<KeyMap<Slot>>,
}

/// What a client knows of one key.
struct Slot {
    /// Futures of the key alive.
    refs: usize,
    /// How the key ended, once it has.
    outcome: Option<Outcome>,
    /// Tasks awaiting the outcome.
    wakers: Vec<Waker>,
}

impl Connection {
    /// Connects a new client to `cluster`.
    pub fn open(cluster: Arc<LocalCluster>) -> Arc<Self> {
        let id = CLIENTS.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Self {
            id,
            cluster,
            slots: Mutex::new(KeyMap::default()),
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
    pub fn cluster(&self) -> &Arc<LocalCluster> {
        &self.cluster
    }

    /// Submits `tasks` and returns futures of `wanted`.
    pub fn submit(
        self: &Arc<Self>,
        tasks: Vec<TaskSpec>,
        wanted: Vec<Key>,
    ) -> Vec<super::Future> {
        self.slots.lock().reserve(wanted.len());
        let futures: Vec<super::Future> = wanted.iter().map(|k| self.future(k.clone())).collect();
        self.cluster.send(Message::Event(Event::GraphSubmitted {
            client: self.id,
            tasks,
            wanted,
        }));
        futures
    }

    /// A future of `key`, counted among the key's holders.
    pub fn future(self: &Arc<Self>, key: Key) -> super::Future {
        self.slots
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Slot {
                refs: 0,
                outcome: None,
                wakers: Vec::new(),
            })
            .refs += 1;
        super::Future::new(key, Arc::clone(self))
    }

    /// How `key` ended, if it has (and this client holds a future of it).
    pub fn outcome(&self, key: &Key) -> Option<Outcome> {
        self.slots.lock().get(key)?.outcome.clone()
    }

    /// How `key` ended, or pending with `cx` woken when it ends.
    pub fn poll_outcome(&self, key: &Key, cx: &mut Context<'_>) -> Poll<Option<Outcome>> {
        let mut slots = self.slots.lock();
        let Some(slot) = slots.get_mut(key) else {
            return Poll::Ready(None);
        };
        if let Some(outcome) = &slot.outcome {
            return Poll::Ready(Some(outcome.clone()));
        }
        if !slot.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            slot.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// One more future of `key` exists.
    pub fn acquire(&self, key: &Key) {
        if let Some(slot) = self.slots.lock().get_mut(key) {
            slot.refs += 1;
        }
    }

    /// A future of `key` is gone; the last one releases the key.
    pub fn release(&self, key: &Key) {
        let last = {
            let mut slots = self.slots.lock();
            match slots.get_mut(key) {
                Some(slot) if slot.refs > 1 => {
                    slot.refs -= 1;
                    false
                }
                Some(_) => {
                    slots.remove(key);
                    true
                }
                None => false,
            }
        };
        if last {
            self.cluster.send(Message::Event(Event::FutureReleased {
                client: self.id,
                key: key.clone(),
            }));
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
        let wakers = match self.slots.lock().get_mut(key) {
            Some(slot) => {
                slot.outcome = Some(outcome);
                std::mem::take(&mut slot.wakers)
            }
            None => return,
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// The data of `key` from one of `workers`.
    pub fn fetch(
        &self,
        key: &Key,
        workers: &[crate::scheduler::WorkerId],
    ) -> Option<Arc<TaskData>> {
        workers
            .iter()
            .find_map(|w| self.cluster.peers().get(*w, key))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.cluster.send(Message::Disconnect(self.id));
    }
}
