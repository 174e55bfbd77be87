//! [`TaskData`]: a task's result, as workers hold it and tasks read it.

use std::sync::Arc;

use datafusion::arrow::buffer::Buffer;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::Value;
use crate::key::Key;

/// The result of one task. Stage tasks produce record batches split into the
/// partitions their consumers read ("buckets"): one bucket when the whole output
/// goes to one reader, `n` when it is hash- or round-robin-partitioned for `n`.
///
/// Held behind an `Arc`: on the local cluster, readers get the same batches,
/// never a copy.
#[derive(Debug, Clone)]
pub enum TaskData {
    /// Record batches, by output bucket.
    Batches(Vec<Vec<RecordBatch>>),
    /// A value of a function task.
    Value(Value),
}

/// The memory `batches` hold: each buffer counted once, with all it
/// allocated, however many arrays share it.
///
/// Arrow's `get_array_memory_size` counts a whole buffer for every array that
/// slices it: the buckets of a hash repartition (one `take` of the batch,
/// then a slice per bucket) or the columns of a batch decoded from one IPC
/// message would count the same memory once per bucket or column.
///
/// ```
/// use std::sync::Arc;
/// use rask::internals::exec::held_bytes;
/// use rask::arrow::array::{ArrayRef, Int64Array};
/// use rask::arrow::record_batch::RecordBatch;
///
/// let column: ArrayRef = Arc::new(Int64Array::from_iter_values(0..1024));
/// let batch = RecordBatch::try_from_iter([("n", column)]).unwrap();
/// let (left, right) = (batch.slice(0, 512), batch.slice(512, 512));
/// assert_eq!(held_bytes([&left, &right]), held_bytes([&batch]));
/// assert!(held_bytes([&batch]) >= 1024 * 8);
/// ```
pub fn held_bytes<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut count = |buffer: &Buffer| {
        if seen.insert(buffer.data_ptr()) {
            total += buffer.capacity() as u64;
        }
    };
    let mut stack = Vec::new();
    for batch in batches {
        stack.extend(batch.columns().iter().map(|c| c.to_data()));
        while let Some(data) = stack.pop() {
            data.buffers().iter().for_each(&mut count);
            if let Some(nulls) = data.nulls() {
                count(nulls.buffer());
            }
            stack.extend(data.child_data().iter().cloned());
        }
    }
    total
}

/// The bytes of `batch`'s rows alone: what it takes to send it, not the
/// buffers its arrays may slice.
pub fn sliced_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

impl TaskData {
    /// Bytes held in memory (see [`held_bytes`]).
    pub fn nbytes(&self) -> u64 {
        match self {
            TaskData::Batches(buckets) => held_bytes(buckets.iter().flatten()),
            TaskData::Value(value) => value.nbytes(),
        }
    }

    /// The value of a function task, if this is one.
    pub fn value_ref(&self) -> Option<&Value> {
        match self {
            TaskData::Value(value) => Some(value),
            TaskData::Batches(_) => None,
        }
    }

    /// The value of a function task, if it is a `T` made in this process.
    pub fn value<T: 'static>(&self) -> Option<&T> {
        match self {
            TaskData::Value(value) => value.downcast(),
            TaskData::Batches(_) => None,
        }
    }

    /// The value of a function task as a `T`: itself when made in this
    /// process, else decoded from the bytes it arrived as.
    pub fn get<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
        &self,
    ) -> Result<&T, super::ValueError> {
        match self {
            TaskData::Value(value) => value.get(),
            TaskData::Batches(_) => Err(super::ValueError {
                found: "table".into(),
                wanted: std::any::type_name::<T>(),
                reason: "it is record batches, not a value".into(),
            }),
        }
    }

    /// A local value (say, a closure's result on the local cluster) of `nbytes` bytes.
    pub fn local_value<T: Send + Sync + 'static>(value: T, nbytes: u64) -> Self {
        TaskData::Value(Value::local(Arc::new(value), nbytes))
    }

    /// Data fetched from another process: a value if the batches carry one.
    pub fn fetched(batches: Vec<RecordBatch>) -> Self {
        match Value::from_batches(&batches) {
            Some(value) => TaskData::Value(value),
            None => TaskData::Batches(vec![batches]),
        }
    }

    /// The batches of `bucket`, if this is batch data and the bucket exists.
    pub fn bucket(&self, bucket: usize) -> Option<&[RecordBatch]> {
        match self {
            TaskData::Batches(buckets) => buckets.get(bucket).map(Vec::as_slice),
            TaskData::Value(..) => None,
        }
    }

    /// All batches, bucket after bucket (none for a value).
    pub fn batches(&self) -> impl Iterator<Item = &RecordBatch> {
        let buckets: &[Vec<RecordBatch>] = match self {
            TaskData::Batches(buckets) => buckets,
            TaskData::Value(..) => &[],
        };
        buckets.iter().flatten()
    }
}

/// One producer's output as a task reads it.
#[derive(Debug, Clone)]
pub enum StageInput {
    /// Held in this process: read in place.
    Held(Arc<TaskData>),
    /// Held by workers in other processes: fetched when read, only the part read.
    Remote(RemoteInput),
    /// Held in this process but not in memory (spilled): read when used.
    Stored(StoredInput),
}

/// A result held in this process out of memory, and where.
#[derive(Debug, Clone)]
pub struct StoredInput {
    /// The result's key.
    pub key: Key,
    /// The worker holding it.
    pub worker: u64,
    /// Reads it back.
    pub result: Arc<dyn StoredResult>,
}

/// A result this process holds out of memory (on disk), read back on demand.
pub trait StoredResult: std::fmt::Debug + Send + Sync {
    /// The whole result.
    fn data(&self) -> Result<TaskData, String>;
    /// Bucket `bucket` (or all) of it, batch by batch as it is read, with
    /// its schema.
    fn batches(&self, bucket: Option<usize>) -> Result<StoredBatches, String>;
}

/// The batches of a [`StoredResult`], read as they are iterated, and their schema.
pub type StoredBatches = (
    datafusion::arrow::datatypes::SchemaRef,
    Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>,
);

/// A result held elsewhere, and where to fetch it from.
#[derive(Debug, Clone)]
pub struct RemoteInput {
    /// The result's key.
    pub key: Key,
    /// Workers holding it, tried in order.
    pub holders: Vec<u64>,
    /// Its size in bytes, whole, as its maker reported it; 0 if unknown.
    pub nbytes: u64,
    /// Fetches from them.
    pub source: Arc<dyn RemoteSource>,
}

/// Fetches results from workers in other processes.
pub trait RemoteSource: std::fmt::Debug + Send + Sync {
    /// The batches of each of `keys` held by `worker`, key by key: bucket
    /// `bucket` of each, or all of them.
    fn fetch(
        &self,
        worker: u64,
        keys: &[Key],
        bucket: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<Vec<RecordBatch>>, String>>;

    /// Bucket `bucket` (or all) of `key` held by `worker`, batch by batch as
    /// it arrives. By default fetched whole, then yielded.
    fn stream(
        &self,
        worker: u64,
        key: &Key,
        bucket: Option<usize>,
    ) -> BoxStream<'static, Result<RecordBatch, String>> {
        let fetched = self.fetch(worker, std::slice::from_ref(key), bucket);
        futures::stream::once(fetched)
            .map_ok(|mut keys| {
                let batches = keys.pop().unwrap_or_default();
                futures::stream::iter(batches.into_iter().map(Ok))
            })
            .try_flatten()
            .boxed()
    }
}

/// An input that could not be fetched from any worker said to hold it: the
/// scheduler recomputes it rather than failing the task that read it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not fetch {key} from worker {worker}: {message}")]
pub struct FetchError {
    /// The input.
    pub key: Key,
    /// The last worker tried.
    pub worker: u64,
    /// Why.
    pub message: String,
}

impl FetchError {
    /// The fetch failure behind `error`, if that is what it is.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a FetchError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(fetch) = e.downcast_ref::<FetchError>() {
                return Some(fetch);
            }
            current = e.source();
        }
        None
    }
}

impl RemoteInput {
    /// Bucket `bucket` (or everything) of the input, from the first holder that has it.
    pub async fn read(&self, bucket: Option<usize>) -> Result<Vec<RecordBatch>, FetchError> {
        let mut last = FetchError {
            key: self.key.clone(),
            worker: u64::MAX,
            message: "no worker holds it".into(),
        };
        for &worker in &self.holders {
            match self
                .source
                .fetch(worker, std::slice::from_ref(&self.key), bucket)
                .await
            {
                Ok(mut keys) => return Ok(keys.pop().unwrap_or_default()),
                Err(message) => {
                    last = FetchError {
                        key: self.key.clone(),
                        worker,
                        message,
                    }
                }
            }
        }
        Err(last)
    }

    /// Bucket `bucket` (or everything) of the input as it arrives, from the
    /// first holder that has it: a holder failing before its first batch is
    /// passed over, one failing after it fails the stream.
    pub fn stream(
        &self,
        bucket: Option<usize>,
    ) -> BoxStream<'static, Result<RecordBatch, FetchError>> {
        let this = self.clone();
        futures::stream::once(async move {
            let mut last = FetchError {
                key: this.key.clone(),
                worker: u64::MAX,
                message: "no worker holds it".into(),
            };
            for &worker in &this.holders {
                let mut batches = this.source.stream(worker, &this.key, bucket);
                let key = this.key.clone();
                let failed = move |message: String| FetchError {
                    key: key.clone(),
                    worker,
                    message,
                };
                match batches.next().await {
                    None => return Ok(futures::stream::empty().boxed()),
                    Some(Ok(first)) => {
                        let rest = batches.map_err(failed);
                        return Ok(futures::stream::iter([Ok(first)]).chain(rest).boxed());
                    }
                    Some(Err(message)) => last = failed(message),
                }
            }
            Err(last)
        })
        .try_flatten()
        .boxed()
    }

    /// Bucket `bucket` (or all) of each of `inputs`, input by input, in one
    /// request to `worker` (which holds them all; the inputs share a source,
    /// as those of one process do). If that request fails, each input is read
    /// on its own from all its holders, so a failure names the input that
    /// could not be read.
    pub async fn read_many(
        worker: u64,
        inputs: &[&RemoteInput],
        bucket: Option<usize>,
    ) -> Result<Vec<Vec<RecordBatch>>, FetchError> {
        let Some(first) = inputs.first() else {
            return Ok(Vec::new());
        };
        let keys: Vec<Key> = inputs.iter().map(|r| r.key.clone()).collect();
        if let Ok(batches) = first.source.fetch(worker, &keys, bucket).await {
            return Ok(batches);
        }
        let mut batches = Vec::with_capacity(inputs.len());
        for input in inputs {
            batches.push(input.read(bucket).await?);
        }
        Ok(batches)
    }
}

impl StageInput {
    /// The batches of bucket `bucket`, or all of them when `None`.
    pub async fn read(&self, bucket: Option<usize>) -> Result<Vec<RecordBatch>, FetchError> {
        match self {
            StageInput::Held(data) => Ok(match bucket {
                Some(b) => data.bucket(b).map(<[_]>::to_vec).unwrap_or_default(),
                None => data.batches().cloned().collect(),
            }),
            StageInput::Remote(remote) => remote.read(bucket).await,
            StageInput::Stored(stored) => stored
                .result
                .batches(bucket)
                .and_then(|(_, batches)| batches.collect())
                .map_err(|message| stored_failed(stored, message)),
        }
    }

    /// Bucket `bucket` (or all) of the input, batch by batch: held batches in
    /// place, stored ones read from disk and remote ones fetched as the stream
    /// is polled, so a reader holds a batch of it at a time, not all of it.
    pub fn stream(
        &self,
        bucket: Option<usize>,
    ) -> BoxStream<'static, Result<RecordBatch, FetchError>> {
        match self {
            StageInput::Held(data) => {
                let batches: Vec<RecordBatch> = match bucket {
                    Some(b) => data.bucket(b).map(<[_]>::to_vec).unwrap_or_default(),
                    None => data.batches().cloned().collect(),
                };
                futures::stream::iter(batches.into_iter().map(Ok)).boxed()
            }
            StageInput::Remote(remote) => remote.stream(bucket),
            StageInput::Stored(stored) => match stored.result.batches(bucket) {
                Ok((_, batches)) => {
                    let stored = stored.clone();
                    futures::stream::iter(batches)
                        .map_err(move |message| stored_failed(&stored, message))
                        .boxed()
                }
                Err(message) => {
                    futures::stream::iter([Err(stored_failed(stored, message))]).boxed()
                }
            },
        }
    }

    /// Bucket `bucket` (or all) of each of `inputs`, in their order: those in
    /// this process in place, those held by the same worker (their first
    /// holder) in one request, every worker's at the same time.
    pub async fn read_each(
        inputs: &[StageInput],
        bucket: Option<usize>,
    ) -> Result<Vec<RecordBatch>, FetchError> {
        Ok(Self::read_apart(inputs, bucket)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// [`read_each`](Self::read_each), each input's batches apart.
    pub async fn read_apart(
        inputs: &[StageInput],
        bucket: Option<usize>,
    ) -> Result<Vec<Vec<RecordBatch>>, FetchError> {
        // Remote inputs by first holder: their positions, and the inputs.
        let mut by_worker: Vec<(u64, Vec<usize>, Vec<&RemoteInput>)> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            if let StageInput::Remote(remote) = input {
                let worker = remote.holders.first().copied().unwrap_or(u64::MAX);
                match by_worker.iter_mut().find(|(w, _, _)| *w == worker) {
                    Some((_, positions, group)) => {
                        positions.push(i);
                        group.push(remote);
                    }
                    None => by_worker.push((worker, vec![i], vec![remote])),
                }
            }
        }
        let fetches = by_worker
            .iter()
            .map(|(worker, _, group)| RemoteInput::read_many(*worker, group, bucket));
        let mut fetched: Vec<Option<Vec<RecordBatch>>> = vec![None; inputs.len()];
        for ((_, positions, _), batches) in by_worker
            .iter()
            .zip(futures::future::try_join_all(fetches).await?)
        {
            for (&i, batches) in positions.iter().zip(batches) {
                fetched[i] = Some(batches);
            }
        }
        let mut out = Vec::with_capacity(inputs.len());
        for (input, fetched) in inputs.iter().zip(fetched) {
            match fetched {
                Some(batches) => out.push(batches),
                None => out.push(input.read(bucket).await?),
            }
        }
        Ok(out)
    }

    /// Each of `inputs` whole, as task data: in place when held here, else
    /// fetched, those of one worker in one request.
    pub async fn data_each(inputs: &[StageInput]) -> Result<Vec<Arc<TaskData>>, FetchError> {
        let remote: Vec<StageInput> = inputs
            .iter()
            .filter(|i| matches!(i, StageInput::Remote(_)))
            .cloned()
            .collect();
        let mut fetched = Self::read_apart(&remote, None).await?.into_iter();
        inputs
            .iter()
            .map(|input| match input {
                StageInput::Held(data) => Ok(Arc::clone(data)),
                StageInput::Stored(stored) => stored.data(),
                StageInput::Remote(_) => Ok(Arc::new(TaskData::fetched(
                    fetched.next().unwrap_or_default(),
                ))),
            })
            .collect()
    }

    /// The whole input as task data: as held, or fetched into one bucket.
    pub async fn data(&self) -> Result<Arc<TaskData>, FetchError> {
        match self {
            StageInput::Held(data) => Ok(Arc::clone(data)),
            StageInput::Stored(stored) => stored.data(),
            StageInput::Remote(remote) => Ok(Arc::new(TaskData::fetched(remote.read(None).await?))),
        }
    }
}

impl StoredInput {
    /// The whole result, read back.
    fn data(&self) -> Result<Arc<TaskData>, FetchError> {
        self.result
            .data()
            .map(Arc::new)
            .map_err(|message| stored_failed(self, message))
    }
}

/// A stored result that could not be read back: the scheduler recomputes it.
fn stored_failed(stored: &StoredInput, message: String) -> FetchError {
    FetchError {
        key: stored.key.clone(),
        worker: stored.worker,
        message: format!("cannot read it back from disk: {message}"),
    }
}

/// The data of the inputs of one task, by input stage, each in producer order.
/// Travels to [`StageReadExec`](super::StageReadExec) as a session config extension.
#[derive(Debug, Default)]
pub struct TaskInputs {
    stages: Vec<(usize, Vec<StageInput>)>,
}

impl TaskInputs {
    /// Adds the outputs of the producers of `stage`, in partition order.
    pub fn insert(&mut self, stage: usize, outputs: Vec<StageInput>) {
        self.stages.push((stage, outputs));
    }

    /// The outputs of the producers of `stage`.
    pub fn stage(&self, stage: usize) -> Option<&[StageInput]> {
        self.stages
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, o)| o.as_slice())
    }
}
