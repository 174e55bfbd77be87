//! [`DataStore`]: results by key, spilled to disk past a budget; [`Peers`]:
//! every store of this process, and the way to others.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use parking_lot::RwLock;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::exec::{RemoteInput, RemoteSource, StageInput, StoredInput, StoredResult, TaskData};
use crate::key::{Key, KeyMap};
use crate::scheduler::WorkerId;

use super::spill;

/// The results a worker holds. With a [`Budget`], the least recently used
/// results go to disk (Arrow IPC files) once those in memory pass the spill
/// fraction of the limit, and come back from disk when read.
#[derive(Debug, Default)]
pub struct DataStore {
    data: RwLock<KeyMap<Entry>>,
    budget: Option<Budget>,
    /// Bytes of results in memory, and on disk.
    in_memory: AtomicU64,
    on_disk: AtomicU64,
    /// Orders uses, for least-recently-used spilling.
    clock: AtomicU64,
    /// The worker's counters and recent transfers and spills.
    activity: Arc<super::Activity>,
    /// The results in memory, counted in the worker's DataFusion memory pool:
    /// its queries and its results share one budget.
    reservation: Option<parking_lot::Mutex<MemoryReservation>>,
}

/// Where a held result is.
#[derive(Debug, Clone)]
pub enum Stored {
    /// In memory.
    Memory(Arc<TaskData>),
    /// Spilled to disk.
    Disk(spill::SpillFile),
}

/// How much memory a worker's results may take, and where the rest goes.
#[derive(Debug, Clone)]
pub struct Budget {
    /// The worker's memory limit, in bytes.
    pub limit: u64,
    /// Results past this fraction of the limit go to disk (Dask's 0.6).
    pub spill: f64,
    /// Past this fraction the worker takes no new tasks (Dask's 0.8).
    pub pause: f64,
    /// Where spilled results go.
    pub directory: PathBuf,
}

#[derive(Debug)]
struct Entry {
    data: Held,
    nbytes: u64,
    last_used: AtomicU64,
}

#[derive(Debug)]
enum Held {
    Memory(Arc<TaskData>),
    Disk(spill::SpillFile),
}

impl DataStore {
    /// A store that spills past `budget`.
    pub fn with_budget(budget: Budget) -> Self {
        Self {
            budget: Some(budget),
            ..Self::default()
        }
    }

    /// A store that spills past `budget`, its results in memory counted in
    /// `pool` (the worker's DataFusion pool, of the same limit): queries then
    /// have what the results leave them, and the process stays near the limit.
    pub fn sharing(budget: Budget, pool: &Arc<dyn MemoryPool>) -> Self {
        let reservation = MemoryConsumer::new("rask results").register(pool);
        Self {
            budget: Some(budget),
            reservation: Some(parking_lot::Mutex::new(reservation)),
            ..Self::default()
        }
    }

    /// The store of a worker running queries in `session`: with a `limit`,
    /// spilling to `directory` and sharing the session's memory pool, which
    /// has it spill results when an operator needs their memory (see
    /// [`ReclaimingPool`](crate::exec::ReclaimingPool)); unbounded without.
    pub fn for_session(
        limit: Option<usize>,
        directory: &std::path::Path,
        session: &datafusion::prelude::SessionContext,
    ) -> Arc<Self> {
        let Some(limit) = limit else {
            return Arc::new(Self::default());
        };
        let budget = super::memory::budget(limit as u64, directory);
        let pool = &session.runtime_env().memory_pool;
        let store = Arc::new(Self::sharing(budget, pool));
        if let Some(pool) = pool.downcast_ref::<crate::exec::ReclaimingPool>() {
            let reclaim: Arc<dyn crate::exec::Reclaim> = Arc::clone(&store) as _;
            pool.reclaim_from(Arc::downgrade(&reclaim));
        }
        store
    }

    /// Counts `nbytes` more (or fewer) of results in memory.
    fn count_memory(&self, nbytes: u64, more: bool) {
        if more {
            self.in_memory.fetch_add(nbytes, Ordering::Relaxed);
        } else {
            self.in_memory.fetch_sub(nbytes, Ordering::Relaxed);
        }
        if let Some(reservation) = &self.reservation {
            let reservation = reservation.lock();
            if more {
                reservation.grow(nbytes as usize);
            } else {
                reservation.shrink((nbytes as usize).min(reservation.size()));
            }
        }
    }

    /// The worker's counters and recent transfers and spills.
    pub fn activity(&self) -> &Arc<super::Activity> {
        &self.activity
    }

    /// The worker's state now: its results and counters, with `ready` tasks queued.
    pub fn metrics(&self, ready: u64) -> super::WorkerMetrics {
        super::WorkerMetrics {
            memory: self.memory(),
            spilled: self.spilled(),
            results: self.len() as u64,
            ready,
            paused: self.over_pause(),
            ..self.activity.metrics()
        }
    }

    /// Stores the result of `key`; returns its size, as counted.
    pub fn insert(&self, key: Key, data: Arc<TaskData>) -> u64 {
        let nbytes = data.nbytes();
        let entry = Entry {
            data: Held::Memory(data),
            nbytes,
            last_used: AtomicU64::new(self.tick()),
        };
        self.count_memory(nbytes, true);
        let mut map = self.data.write();
        if let Some(old) = map.insert(key, entry) {
            self.forget(old);
        }
        self.spill_if_needed(&mut map);
        nbytes
    }

    /// The result of `key`, if held (read back from disk if spilled).
    pub fn get(&self, key: &Key) -> Option<Arc<TaskData>> {
        let file = {
            let map = self.data.read();
            let entry = map.get(key)?;
            entry.last_used.store(self.tick(), Ordering::Relaxed);
            match &entry.data {
                Held::Memory(data) => return Some(Arc::clone(data)),
                Held::Disk(file) => file.clone(),
            }
        };
        match file.read() {
            Ok(data) => Some(Arc::new(data)),
            Err(e) => {
                tracing::error!(%key, "cannot read a spilled result back: {e}");
                None
            }
        }
    }

    /// Bucket `bucket` of the batches of `key`, with their schema, if held
    /// (a spilled result's bucket alone is read back); `None` for a value.
    pub fn bucket(&self, key: &Key, bucket: usize) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let file = {
            let map = self.data.read();
            let entry = map.get(key)?;
            entry.last_used.store(self.tick(), Ordering::Relaxed);
            match &entry.data {
                Held::Memory(data) => {
                    let TaskData::Batches(_) = data.as_ref() else {
                        return None;
                    };
                    let batches = data.bucket(bucket).map(<[_]>::to_vec).unwrap_or_default();
                    let schema = batches
                        .first()
                        .or_else(|| data.batches().next())
                        .map_or_else(|| Arc::new(Schema::empty()), |b| b.schema());
                    return Some((schema, batches));
                }
                Held::Disk(file) => file.clone(),
            }
        };
        match file.read_bucket(bucket) {
            Ok(read) => Some(read),
            Err(e) => {
                tracing::error!(%key, "cannot read a spilled result back: {e}");
                None
            }
        }
    }

    /// Whether the result of `key` is held, in memory or on disk.
    pub fn contains(&self, key: &Key) -> bool {
        self.data.read().contains_key(key)
    }

    /// Where `key`'s result is, without reading it back from disk.
    pub fn stored(&self, key: &Key) -> Option<Stored> {
        let map = self.data.read();
        let entry = map.get(key)?;
        entry.last_used.store(self.tick(), Ordering::Relaxed);
        Some(match &entry.data {
            Held::Memory(data) => Stored::Memory(Arc::clone(data)),
            Held::Disk(file) => Stored::Disk(file.clone()),
        })
    }

    /// Drops the result of `key`; its data, if it was in memory.
    pub fn remove(&self, key: &Key) -> Option<Arc<TaskData>> {
        let entry = crate::key::remove_shrinking(&mut self.data.write(), key)?;
        self.forget(entry)
    }

    /// Drops every result (a worker that lost its scheduler: nobody will ask
    /// for them by these keys again).
    pub fn clear(&self) {
        let entries: Vec<Entry> = self.data.write().drain().map(|(_, e)| e).collect();
        for entry in entries {
            self.forget(entry);
        }
    }

    /// How many results are held.
    pub fn len(&self) -> usize {
        self.data.read().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, in memory and on disk.
    pub fn nbytes(&self) -> u64 {
        self.memory() + self.spilled()
    }

    /// Bytes held in memory.
    pub fn memory(&self) -> u64 {
        self.in_memory.load(Ordering::Relaxed)
    }

    /// Bytes spilled to disk.
    pub fn spilled(&self) -> u64 {
        self.on_disk.load(Ordering::Relaxed)
    }

    /// Whether results in memory are past the pause fraction of the limit.
    pub fn over_pause(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|b| self.memory() as f64 > b.pause * b.limit as f64)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn forget(&self, entry: Entry) -> Option<Arc<TaskData>> {
        match entry.data {
            Held::Memory(data) => {
                self.count_memory(entry.nbytes, false);
                Some(data)
            }
            Held::Disk(file) => {
                self.on_disk.fetch_sub(entry.nbytes, Ordering::Relaxed);
                file.delete();
                None
            }
        }
    }

    /// Spills the least recently used results until those in memory fit.
    fn spill_if_needed(&self, map: &mut KeyMap<Entry>) {
        if let Some(budget) = &self.budget {
            self.spill_down_to(map, (budget.spill * budget.limit as f64) as u64);
        }
    }

    /// Spills the least recently used results until those in memory take
    /// `target` bytes or less, or none is left to spill.
    fn spill_down_to(&self, map: &mut KeyMap<Entry>, target: u64) {
        let Some(budget) = &self.budget else {
            return;
        };
        while self.memory() > target {
            let victim = map
                .iter()
                .filter(|(_, e)| matches!(&e.data, Held::Memory(d) if spill::spillable(d)))
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone());
            let Some(key) = victim else {
                return;
            };
            let Some(entry) = map.get_mut(&key) else {
                return;
            };
            let Held::Memory(data) = &entry.data else {
                return;
            };
            let started = std::time::Instant::now();
            match spill::SpillFile::write(&budget.directory, &key, data) {
                Ok(file) => {
                    let took = started.elapsed();
                    self.activity.spilled(key.to_string(), entry.nbytes, took);
                    if self.on_disk.load(Ordering::Relaxed) == 0 {
                        tracing::info!(
                            "spilling results to {}: those in memory passed {:.0}% of {}",
                            budget.directory.display(),
                            budget.spill * 100.0,
                            crate::output::format_bytes(budget.limit)
                        );
                    }
                    tracing::debug!(%key, nbytes = entry.nbytes, "spilled to disk");
                    entry.data = Held::Disk(file);
                    self.count_memory(entry.nbytes, false);
                    self.on_disk.fetch_add(entry.nbytes, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(%key, "cannot spill a result: {e}; keeping it in memory");
                    return;
                }
            }
        }
    }
}

/// When an operator of a task needs memory the pool does not have, results
/// in memory go to disk, least recently used first, until what it lacks is
/// free (or nothing is left to spill).
impl crate::exec::Reclaim for DataStore {
    fn reclaim(&self, bytes: usize) -> usize {
        let before = self.memory();
        let target = before.saturating_sub(bytes as u64);
        self.spill_down_to(&mut self.data.write(), target);
        before.saturating_sub(self.memory()) as usize
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

    /// `key` as a task reads it: in place from a store of this process (read
    /// back from disk as it is read, if spilled), else to be fetched from the
    /// remote `holders`, `nbytes` in all; `None` if neither can be.
    pub fn input(&self, key: &Key, nbytes: u64, holders: &[WorkerId]) -> Option<StageInput> {
        let local = {
            let stores = self.stores.read();
            holders
                .iter()
                .find_map(|h| Some((*h, stores.get(h)?.stored(key)?)))
        };
        match local {
            Some((_, Stored::Memory(data))) => return Some(StageInput::Held(data)),
            Some((worker, Stored::Disk(file))) => {
                return Some(StageInput::Stored(StoredInput {
                    key: key.clone(),
                    worker,
                    result: Arc::new(file),
                }));
            }
            None => {}
        }
        let source = self.remote.as_ref()?;
        (!holders.is_empty()).then(|| {
            StageInput::Remote(RemoteInput {
                key: key.clone(),
                holders: holders.to_vec(),
                nbytes,
                source: Arc::clone(source),
            })
        })
    }

    /// Bucket `bucket` of `key` from whichever store of this process holds
    /// it (see [`DataStore::bucket`]).
    pub fn find_bucket(&self, key: &Key, bucket: usize) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        self.stores
            .read()
            .values()
            .find_map(|s| s.bucket(key, bucket))
    }

    /// `key`, spilled to disk, from whichever store of this process holds it
    /// so: to be read back as it is served.
    pub fn find_spilled(&self, key: &Key) -> Option<Arc<dyn StoredResult>> {
        self.stores
            .read()
            .values()
            .find_map(|s| match s.stored(key)? {
                Stored::Disk(file) => Some(Arc::new(file) as Arc<dyn StoredResult>),
                Stored::Memory(_) => None,
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

    /// `worker`'s store, when it is in this process.
    pub fn store(&self, worker: WorkerId) -> Option<Arc<DataStore>> {
        self.stores.read().get(&worker).cloned()
    }

    /// `key` from `worker`'s store.
    pub fn get(&self, worker: WorkerId, key: &Key) -> Option<Arc<TaskData>> {
        self.stores.read().get(&worker)?.get(key)
    }
}
