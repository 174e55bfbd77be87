//! [`PartitionFn`]: a Rust function from record batch to record batch, for a
//! dataframe's `map_partitions`.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

type Code = Arc<dyn Fn(RecordBatch) -> Result<RecordBatch, String> + Send + Sync>;

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
        code: Arc::new(move |batch| function(batch).map_err(|e| e.to_string())),
        schema: None,
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

    /// Runs the function on `batch`; an error or a panic comes back as
    /// `map_partitions NAME: message`.
    pub fn call(&self, batch: RecordBatch) -> Result<RecordBatch, String> {
        let fail = |message: String| format!("map_partitions {}: {message}", self.name);
        match std::panic::catch_unwind(AssertUnwindSafe(|| (self.code)(batch))) {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(message)) => Err(fail(message)),
            Err(payload) => Err(fail(format!(
                "panicked: {}",
                crate::error::panic_message(payload.as_ref())
            ))),
        }
    }

    /// What the function returns for batches of `input`: as declared, or as it
    /// returns for an empty batch.
    pub fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, String> {
        if let Some(schema) = &self.schema {
            return Ok(Arc::clone(schema));
        }
        let empty = RecordBatch::new_empty(Arc::clone(input));
        self.call(empty).map(|out| out.schema())
    }
}

impl fmt::Debug for PartitionFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionFn({})", self.name)
    }
}
