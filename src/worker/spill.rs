//! Results on disk: a [`TaskData`] of record batches as an Arrow IPC file.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::exec::TaskData;
use crate::key::Key;

static FILES: AtomicU64 = AtomicU64::new(0);

/// A spilled result: its file and how many batches each bucket has.
#[derive(Debug, Clone)]
pub struct SpillFile {
    path: Arc<PathBuf>,
    buckets: Arc<[usize]>,
}

/// Whether `data` can go to disk: batches (not function values), at least one.
pub fn spillable(data: &TaskData) -> bool {
    matches!(data, TaskData::Batches(_)) && data.batches().next().is_some()
}

impl SpillFile {
    /// Writes `data` into `directory`.
    pub fn write(directory: &Path, key: &Key, data: &TaskData) -> Result<Self, ArrowError> {
        let TaskData::Batches(buckets) = data else {
            return Err(ArrowError::InvalidArgumentError("not batches".into()));
        };
        let Some(first) = data.batches().next() else {
            return Err(ArrowError::InvalidArgumentError("no batches".into()));
        };
        let name: String = key
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let path = directory.join(format!("{name}-{}-{n}.arrow", std::process::id()));
        // A new file, never one already there (nor what a link points to).
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let file = BufWriter::new(file);
        let mut writer = StreamWriter::try_new(file, &first.schema())?;
        for batch in data.batches() {
            writer.write(batch)?;
        }
        writer.finish()?;
        Ok(Self {
            path: Arc::new(path),
            buckets: buckets.iter().map(Vec::len).collect(),
        })
    }

    /// The data back, bucket by bucket.
    pub fn read(&self) -> Result<TaskData, ArrowError> {
        let file = BufReader::new(File::open(self.path.as_ref())?);
        let mut batches = StreamReader::try_new(file, None)?;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for &count in self.buckets.iter() {
            let bucket = batches
                .by_ref()
                .take(count)
                .collect::<Result<Vec<_>, _>>()?;
            buckets.push(bucket);
        }
        Ok(TaskData::Batches(buckets))
    }

    /// Bucket `bucket` alone, read from the file batch by batch (the batches
    /// of the buckets before it are decoded and dropped one at a time), with
    /// the result's schema.
    pub fn read_bucket(&self, bucket: usize) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
        let (schema, batches) = self.lazy(Some(bucket))?;
        let batches = batches
            .collect::<Result<Vec<_>, _>>()
            .map_err(ArrowError::IpcError)?;
        Ok((schema, batches))
    }

    /// Bucket `bucket` (or all) read as iterated, with the schema.
    fn lazy(&self, bucket: Option<usize>) -> Result<crate::exec::StoredBatches, ArrowError> {
        let file = BufReader::new(File::open(self.path.as_ref())?);
        let mut batches = StreamReader::try_new(file, None)?;
        let schema = batches.schema();
        let (skip, take) = match bucket {
            Some(b) => (
                self.buckets.iter().take(b).sum(),
                self.buckets.get(b).copied().unwrap_or(0),
            ),
            None => (0, self.buckets.iter().sum()),
        };
        for skipped in batches.by_ref().take(skip) {
            skipped?;
        }
        let wanted = batches.take(take).map(|b| b.map_err(|e| e.to_string()));
        Ok((schema, Box::new(wanted)))
    }

    /// Removes the file.
    pub fn delete(&self) {
        if let Err(e) = std::fs::remove_file(self.path.as_ref()) {
            tracing::debug!("cannot remove {}: {e}", self.path.display());
        }
    }
}

impl crate::exec::StoredResult for SpillFile {
    fn data(&self) -> Result<TaskData, String> {
        self.read().map_err(|e| e.to_string())
    }

    fn batches(&self, bucket: Option<usize>) -> Result<crate::exec::StoredBatches, String> {
        self.lazy(bucket).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::record_batch::RecordBatch;

    use super::super::store::{Budget, DataStore};
    use super::*;

    fn batch(n: i64) -> RecordBatch {
        let values = Int64Array::from_iter_values(0..n);
        RecordBatch::try_from_iter([("v", Arc::new(values) as _)]).unwrap()
    }

    #[test]
    fn least_recently_used_results_go_to_disk_and_come_back() {
        let dir = std::env::temp_dir().join(format!("rask-spill-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = TaskData::Batches(vec![vec![batch(1000)], vec![], vec![batch(10)]]);
        let size = one.nbytes();
        let store = DataStore::with_budget(Budget {
            limit: size * 4,
            spill: 0.6,
            pause: 0.8,
            directory: dir.clone(),
        });
        for k in ["a", "b", "c", "d"] {
            store.insert(Key::new(k), Arc::new(one.clone()));
        }
        store.get(&Key::new("a")); // now most recently used of the first ones
        store.insert(Key::new("e"), Arc::new(one.clone()));
        assert!(
            store.memory() <= (size * 4) * 6 / 10,
            "{} in memory",
            store.memory()
        );
        assert!(store.spilled() >= size * 2);
        assert_eq!(store.nbytes(), size * 5);
        let files = || std::fs::read_dir(&dir).unwrap().count();
        assert!(files() >= 2);
        // A bucket of a spilled result is read alone, with the schema.
        let (schema, third) = store.bucket(&Key::new("b"), 2).unwrap();
        assert_eq!(schema.fields().len(), 1);
        assert_eq!(third.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
        assert!(store.bucket(&Key::new("b"), 1).unwrap().1.is_empty());
        // b was the least recently used: on disk, and read back whole, by bucket.
        let back = store.get(&Key::new("b")).unwrap();
        assert_eq!(back.bucket(0).unwrap()[0].num_rows(), 1000);
        assert!(back.bucket(1).unwrap().is_empty());
        assert_eq!(back.bucket(2).unwrap()[0].num_rows(), 10);
        for k in ["a", "b", "c", "d", "e"] {
            store.remove(&Key::new(k));
        }
        assert_eq!(files(), 0, "spill files are removed with their results");
        assert_eq!(store.nbytes(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_operator_short_of_memory_makes_results_go_to_disk() {
        use datafusion::execution::memory_pool::MemoryConsumer;

        let dir = std::env::temp_dir().join(format!("rask-reclaim-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = TaskData::Batches(vec![vec![batch(10_000)]]);
        let size = one.nbytes() as usize;
        let options = crate::exec::SessionOptions {
            target_partitions: 1,
            memory_limit: Some(size * 4),
            ..Default::default()
        };
        let session = crate::exec::new_context(&options, None).unwrap();
        let store = DataStore::for_session(Some(size * 4), &dir, &session);
        // Two results: half the limit, under the spill fraction.
        store.insert(Key::new("a"), Arc::new(one.clone()));
        store.insert(Key::new("b"), Arc::new(one));
        assert_eq!(store.spilled(), 0);
        // A join wanting three quarters of the limit gets it: the least
        // recently used result goes to disk for it.
        let pool = &session.runtime_env().memory_pool;
        let join = MemoryConsumer::new("join").register(pool);
        join.try_grow(size * 3).expect("the results make room");
        assert_eq!(store.memory() as usize, size);
        assert_eq!(store.spilled() as usize, size);
        assert!(store.get(&Key::new("a")).is_some(), "read back from disk");
        // Past what spilling can free: refused.
        assert!(join.try_grow(size * 2).is_err());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
