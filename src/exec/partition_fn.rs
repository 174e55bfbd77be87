//! [`PartitionFn`]: a Rust function from record batch to record batch, for a
//! dataframe's `map_partitions`.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde::de::DeserializeOwned;

use super::TaskData;

type Code =
    Arc<dyn Fn(RecordBatch, Option<&TaskData>) -> Result<RecordBatch, String> + Send + Sync>;

/// A named function applied to every batch of every partition of a frame
/// (Dask's `map_partitions`, on the batches a partition streams as). Its output
/// schema is declared with [`with_schema`](Self::with_schema), or found by
/// running it on an empty batch of its input's schema.
///
/// ```
/// use rask::udf;
/// let identity = udf::partition("identity", |batch| Ok::<_, String>(batch));
/// assert_eq!(identity.name(), "identity");
/// ```
#[derive(Clone)]
pub struct PartitionFn {
    name: String,
    code: Code,
    schema: Option<SchemaRef>,
    /// Whether it takes a value besides the batch ([`partition_with`]).
    takes_argument: bool,
}

/// A [`PartitionFn`] called `name` running `function`; an `Err` (or a panic)
/// fails the task running it with the function's name and the message.
pub fn partition<F, E>(name: &str, function: F) -> PartitionFn
where
    F: Fn(RecordBatch) -> Result<RecordBatch, E> + Send + Sync + 'static,
    E: fmt::Display,
{
    PartitionFn {
        name: name.to_string(),
        code: Arc::new(move |batch, _| function(batch).map_err(|e| e.to_string())),
        schema: None,
        takes_argument: false,
    }
}

/// A [`PartitionFn`] that also takes a value: the result of a future, given
/// with [`DataFrame::map_partitions_with`](crate::DataFrame::map_partitions_with)
/// and read (decoded once per process) as a `T` (Dask's
/// `df.map_partitions(f, future)`).
pub fn partition_with<T, F, E>(name: &str, function: F) -> PartitionFn
where
    T: DeserializeOwned + Send + Sync + 'static,
    F: Fn(RecordBatch, &T) -> Result<RecordBatch, E> + Send + Sync + 'static,
    E: fmt::Display,
{
    PartitionFn {
        name: name.to_string(),
        code: Arc::new(move |batch, argument| {
            let argument = argument.ok_or("it takes an argument, and was given none")?;
            let value = argument
                .get::<T>()
                .map_err(|e| format!("its argument: {e}"))?;
            function(batch, value).map_err(|e| e.to_string())
        }),
        schema: None,
        takes_argument: true,
    }
}

impl PartitionFn {
    /// Its name, as registered and as it travels to other processes.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same function, declaring the schema of what it returns.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Whether it takes a value besides the batch.
    pub fn takes_argument(&self) -> bool {
        self.takes_argument
    }

    /// Runs the function on `batch`; an error or a panic comes back as
    /// `map_partitions NAME: message`.
    pub fn call(&self, batch: RecordBatch) -> Result<RecordBatch, String> {
        self.call_with(batch, None)
    }

    /// Runs the function on `batch` and `argument`, as [`call`](Self::call).
    pub fn call_with(
        &self,
        batch: RecordBatch,
        argument: Option<&TaskData>,
    ) -> Result<RecordBatch, String> {
        let fail = |message: String| format!("map_partitions {}: {message}", self.name);
        match std::panic::catch_unwind(AssertUnwindSafe(|| (self.code)(batch, argument))) {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(message)) => Err(fail(message)),
            Err(payload) => Err(fail(format!(
                "panicked: {}",
                crate::exec::panic_message(payload.as_ref())
            ))),
        }
    }

    /// What the function returns for batches of `input` (given `argument`):
    /// as declared, or as it returns for an empty batch.
    pub fn output_schema(
        &self,
        input: &SchemaRef,
        argument: Option<&TaskData>,
    ) -> Result<SchemaRef, String> {
        if let Some(schema) = &self.schema {
            return Ok(Arc::clone(schema));
        }
        let empty = RecordBatch::new_empty(Arc::clone(input));
        self.call_with(empty, argument).map(|out| out.schema())
    }
}

impl fmt::Debug for PartitionFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionFn({})", self.name)
    }
}
