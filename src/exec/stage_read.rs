//! [`StageReadExec`]: the leaf through which a stage reads another stage's output.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result, exec_err, internal_datafusion_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use futures::{StreamExt, TryStreamExt};

use super::{StageInput, TaskInputs};

/// Inputs read together, at most: those of one worker among them in one
/// request. Enough to make one round trip of many small results, few enough
/// that a reader of a large shuffle still streams.
const INPUTS_PER_WINDOW: usize = 16;

/// Bytes a window fetches from other processes, at most (by the sizes their
/// makers reported), unless one input alone is larger: a reader of a large
/// shuffle holds a few fetched inputs at a time, not sixteen.
const WINDOW_BYTES: u64 = 64 << 20;

/// Windows of inputs in flight at the same time.
const CONCURRENT_WINDOWS: usize = 2;

/// A part of a reader's inputs, read as one.
enum Segment {
    /// Up to [`INPUTS_PER_WINDOW`] inputs in memory or in other processes,
    /// fetching up to about [`WINDOW_BYTES`].
    Window(Vec<StageInput>),
    /// An input this process spilled to disk, streamed from its file.
    Spilled(StageInput),
}

/// `inputs` in order, spilled ones apart, the others in windows. A reader
/// reads one part in `parts` of each input (one bucket of every producer's
/// output, or 1 for whole outputs): what a remote input's window costs.
fn segments(inputs: Vec<StageInput>, parts: u64) -> Vec<Segment> {
    // What reading `window` fetches from other processes.
    let fetched = |window: &[StageInput]| -> u64 {
        window
            .iter()
            .map(|input| match input {
                StageInput::Remote(remote) => remote.nbytes / parts.max(1),
                _ => 0,
            })
            .sum()
    };
    let mut segments = Vec::new();
    let mut window = Vec::new();
    for input in inputs {
        if matches!(input, StageInput::Stored(_)) {
            if !window.is_empty() {
                segments.push(Segment::Window(std::mem::take(&mut window)));
            }
            segments.push(Segment::Spilled(input));
            continue;
        }
        window.push(input);
        if window.len() == INPUTS_PER_WINDOW || fetched(&window) >= WINDOW_BYTES {
            segments.push(Segment::Window(std::mem::take(&mut window)));
        }
    }
    if !window.is_empty() {
        segments.push(Segment::Window(window));
    }
    segments
}

/// How a reader's partitions map onto the producers' outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Partition `i` is bucket `i` of every producer (after a hash or
    /// round-robin exchange: all-to-all).
    Bucket,
    /// Partition `i` is the whole output of producer `i` (below a coalesce, a
    /// merge or a join's build side).
    Whole,
}

/// Reads the output of stage `stage` from the task's [`TaskInputs`]. Stands where
/// an exchange was cut out of a plan, with the properties (partitioning,
/// ordering) of what it replaces, so the operators above it plan as before.
#[derive(Debug, Clone)]
pub struct StageReadExec {
    stage: usize,
    mode: ReadMode,
    properties: Arc<PlanProperties>,
}

impl StageReadExec {
    /// A reader of `stage`, standing in for a node with `properties`.
    pub fn new(stage: usize, mode: ReadMode, properties: Arc<PlanProperties>) -> Self {
        Self {
            stage,
            mode,
            properties,
        }
    }

    /// The stage read.
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// How partitions map to producers.
    pub fn mode(&self) -> ReadMode {
        self.mode
    }

    /// What partition `partition` reads: the inputs, and the bucket of each
    /// (`None` for all of it).
    fn sources(
        &self,
        partition: usize,
        inputs: &TaskInputs,
    ) -> Result<(Vec<StageInput>, Option<usize>)> {
        let outputs = inputs.stage(self.stage).ok_or_else(|| {
            internal_datafusion_err!("the inputs of stage {} are missing", self.stage)
        })?;
        Ok(match self.mode {
            ReadMode::Bucket => (outputs.to_vec(), Some(partition)),
            ReadMode::Whole => match outputs.get(partition) {
                Some(output) => (vec![output.clone()], None),
                None => return exec_err!("stage {} has no partition {partition}", self.stage),
            },
        })
    }
}

impl DisplayAs for StageReadExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let mode = match self.mode {
            ReadMode::Bucket => "bucket",
            ReadMode::Whole => "whole",
        };
        write!(
            f,
            "StageReadExec: stage={}, read={mode}, partitions={}",
            self.stage,
            self.properties.partitioning.partition_count()
        )
    }
}

impl ExecutionPlan for StageReadExec {
    fn name(&self) -> &'static str {
        "StageReadExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn schema(&self) -> SchemaRef {
        self.properties.eq_properties.schema().clone()
    }

    crate::exec::leaf_node_methods!();

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let inputs = context
            .session_config()
            .get_extension::<TaskInputs>()
            .ok_or_else(|| {
                internal_datafusion_err!("StageReadExec runs only inside a rask task")
            })?;
        let (inputs, bucket) = self.sources(partition, &inputs)?;
        // One producer's whole output (below a merge, a coalesce, a join's
        // build side): batch by batch as it is read or fetched, so a merge of
        // many holds a batch of each, not each whole.
        if let [input] = inputs.as_slice() {
            let batches = input
                .stream(bucket)
                .map_err(|e| DataFusionError::External(Box::new(e)));
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                self.schema(),
                batches,
            )));
        }
        // Inputs are yielded in producer order. Those in this process's
        // memory are read in place, and others fetched a window at a time
        // as the stream is polled (those of one worker in a window in one
        // request), a window bounded by count and by bytes fetched; those
        // this process spilled stream from their files batch by batch, so a
        // reader of many holds a batch of each at a time, not each whole.
        let parts = match bucket {
            Some(_) => self.properties.partitioning.partition_count() as u64,
            None => 1,
        };
        let batches = futures::stream::iter(segments(inputs, parts))
            .map(move |segment| async move {
                match segment {
                    Segment::Window(window) => {
                        let batches = StageInput::read_each(&window, bucket).await?;
                        Ok(futures::stream::iter(batches.into_iter().map(Ok)).boxed())
                    }
                    Segment::Spilled(input) => Ok(input.stream(bucket)),
                }
            })
            .buffered(CONCURRENT_WINDOWS)
            .try_flatten()
            .map_err(|e| DataFusionError::External(Box::new(e)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{StoredBatches, StoredInput, StoredResult, TaskData};
    use crate::key::Key;

    /// A spilled result that is never read.
    #[derive(Debug)]
    struct OnDisk;

    impl StoredResult for OnDisk {
        fn data(&self) -> std::result::Result<TaskData, String> {
            Err("not read in this test".into())
        }
        fn batches(&self, _: Option<usize>) -> std::result::Result<StoredBatches, String> {
            Err("not read in this test".into())
        }
    }

    /// Workers that are never asked.
    #[derive(Debug)]
    struct Nowhere;

    impl crate::exec::RemoteSource for Nowhere {
        fn fetch(
            &self,
            _: u64,
            _: &[Key],
            _: Option<usize>,
        ) -> futures::future::BoxFuture<
            'static,
            std::result::Result<Vec<Vec<datafusion::arrow::record_batch::RecordBatch>>, String>,
        > {
            Box::pin(async { Err("not fetched in this test".to_string()) })
        }
    }

    fn held() -> StageInput {
        StageInput::Held(Arc::new(TaskData::Batches(Vec::new())))
    }

    fn remote(nbytes: u64) -> StageInput {
        StageInput::Remote(crate::exec::RemoteInput {
            key: Key::new("r-1"),
            holders: vec![1],
            nbytes,
            source: Arc::new(Nowhere),
        })
    }

    /// What [`segments`] makes of `inputs`, in words.
    fn shape(inputs: Vec<StageInput>, parts: u64) -> Vec<String> {
        segments(inputs, parts)
            .iter()
            .map(|s| match s {
                Segment::Window(w) => format!("window of {}", w.len()),
                Segment::Spilled(_) => "spilled".into(),
            })
            .collect()
    }

    #[test]
    fn spilled_inputs_stream_apart_and_the_others_go_in_windows() {
        let spilled = || {
            StageInput::Stored(StoredInput {
                key: Key::new("s-1"),
                worker: 0,
                result: Arc::new(OnDisk),
            })
        };
        let mut inputs: Vec<StageInput> = (0..20).map(|_| held()).collect();
        inputs.insert(3, spilled());
        inputs.push(spilled());
        assert_eq!(
            shape(inputs, 1),
            [
                "window of 3",
                "spilled",
                "window of 16",
                "window of 1",
                "spilled"
            ]
        );
    }

    #[test]
    fn a_window_fetches_about_its_bytes_of_the_part_read() {
        const MB: u64 = 1 << 20;
        // Buckets of a quarter of 100 MB: a window ends at 64 MB fetched.
        let inputs: Vec<StageInput> = (0..7).map(|_| remote(100 * MB)).collect();
        assert_eq!(
            shape(inputs, 4),
            ["window of 3", "window of 3", "window of 1"]
        );
        // Whole outputs larger than a window go one by one; inputs held
        // here cost nothing to read, and small ones share a window.
        let mut inputs = vec![remote(200 * MB), held(), remote(MB), remote(200 * MB)];
        inputs.extend((0..20).map(|_| remote(MB)));
        assert_eq!(
            shape(inputs, 1),
            ["window of 1", "window of 3", "window of 16", "window of 4"]
        );
    }
}
