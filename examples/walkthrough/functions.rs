//! The walkthrough's own functions, shared by `examples/walkthrough.rs` and
//! the custom worker binary (`cli/examples/custom_worker.rs`), which carries
//! them to workers in other processes.

use std::sync::Arc;

use rask::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use rask::arrow::compute::kernels::numeric::add;
use rask::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use rask::arrow::error::ArrowError;
use rask::arrow::record_batch::RecordBatch;
use rask::udf::{self, PartitionFn, Registry};

/// `val ** 2`, the walkthrough's `df['x'].apply(lambda val: val**2)`.
pub fn square(x: f64) -> f64 {
    x * x
}

/// The walkthrough's `my_multi_function`: adds `big_string` (`id-name`) and
/// `new_value` (`x + y`) to a batch.
pub fn my_multi_function(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let column = |name: &str| {
        batch.column_by_name(name).cloned().ok_or_else(|| {
            ArrowError::SchemaError(format!("my_multi_function needs a column {name}"))
        })
    };
    let (id, name, x, y) = (column("id")?, column("name")?, column("x")?, column("y")?);
    let ids = id
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| ArrowError::SchemaError("id must be int64".into()))?;
    let names = rask::arrow::compute::cast(&name, &DataType::Utf8)?;
    let names = names.as_string::<i32>();
    let mut big_string = StringBuilder::with_capacity(batch.num_rows(), batch.num_rows() * 12);
    for row in 0..batch.num_rows() {
        if ids.is_null(row) || names.is_null(row) {
            big_string.append_null();
        } else {
            big_string.append_value(format!("{}-{}", ids.value(row), names.value(row)));
        }
    }
    let new_value: ArrayRef = add(&x, &y)?;
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(Field::new("big_string", DataType::Utf8, true)));
    fields.push(Arc::new(Field::new("new_value", DataType::Float64, true)));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(big_string.finish()));
    columns.push(new_value);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// `my_multi_function` as a partition function.
pub fn my_multi_partition() -> PartitionFn {
    udf::partition("my_multi_function", my_multi_function)
}

/// The walkthrough's functions, registered.
pub fn registry() -> Registry {
    Registry::new()
        .with_scalar(udf::scalar("square", square))
        .with_partition(my_multi_partition())
}
