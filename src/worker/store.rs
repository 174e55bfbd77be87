//! [`DataStore`]: results by key; [`Peers`]: every store of the local cluster.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::exec::{RemoteInput, RemoteSource, StageInput, TaskData};
use crate::key::{Key, KeyMap};
use crate::scheduler::WorkerId;

/// The results a worker holds.
#[derive(Debug, Default)]
pub struct DataStore {
    data: RwLock<KeyMap<Arc<TaskData>>>,
}

impl DataStore {
    /// Stores the result of `key`.
    pub fn insert(&self, key: Key, data: Arc<TaskData>) {
        self.data.write().insert(key, data);
    }

    /// The result of `key`, if held.
    pub fn get(&self, key: &Key) -> Option<Arc<TaskData>> {
        self.data.read().get(key).cloned()
    }

    /// Drops the result of `key`.
    pub fn remove(&self, key: &Key) -> Option<Arc<TaskData>> {
        crate::key::remove_shrinking(&mut self.data.write(), key)
    }

    /// How many results are held.
    pub fn len(&self) -> usize {
        self.data.read().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held.
    pub fn nbytes(&self) -> u64 {
        self.data.read().values().map(|d| d.nbytes()).sum()
    }
}

/// The stores of all workers in this process, by worker, and how to reach
/// workers in other processes.
#[derive(Debug, Default)]
pub struct Peers {
    stores: RwLock<HashMap<WorkerId, Arc<DataStore>>>,
    remote: Option<Arc<dyn RemoteSource>>,
}

impl Peers {
    /// Peers that fetch from workers of other processes through `remote`.
    pub fn with_remote(remote: Arc<dyn RemoteSource>) -> Self {
        Self {
            stores: RwLock::default(),
            remote: Some(remote),
        }
    }

    /// `key` as a task reads it: in place from a store of this process, else
    /// to be fetched from the remote `holders`; `None` if neither can be.
    pub fn input(&self, key: &Key, holders: &[WorkerId]) -> Option<StageInput> {
        if let Some(data) = holders.iter().find_map(|h| self.get(*h, key)) {
            return Some(StageInput::Held(data));
        }
        let source = self.remote.as_ref()?;
        (!holders.is_empty()).then(|| {
            StageInput::Remote(RemoteInput {
                key: key.clone(),
                holders: holders.to_vec(),
                source: Arc::clone(source),
            })
        })
    }

    /// `key` from whichever store of this process holds it.
    pub fn find(&self, key: &Key) -> Option<Arc<TaskData>> {
        self.stores.read().values().find_map(|s| s.get(key))
    }

    /// Adds a worker's store.
    pub fn insert(&self, worker: WorkerId, store: Arc<DataStore>) {
        self.stores.write().insert(worker, store);
    }

    /// Removes a worker's store.
    pub fn remove(&self, worker: WorkerId) {
        self.stores.write().remove(&worker);
    }

    /// How many results all stores hold.
    pub fn results_held(&self) -> usize {
        self.stores.read().values().map(|s| s.len()).sum()
    }

    /// `key` from `worker`'s store.
    pub fn get(&self, worker: WorkerId, key: &Key) -> Option<Arc<TaskData>> {
        self.stores.read().get(&worker)?.get(key)
    }
}
