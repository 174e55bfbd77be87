//! A `rask` binary that carries your own functions: the template for running
//! Rust UDFs and task functions on workers in other processes.
//!
//! Compiled code cannot travel over the network, so each worker must be built
//! with the functions it runs. This program is the whole `rask` command (shell,
//! `query`, `scheduler`, `worker`) plus the registry below; run it wherever
//! you would run `rask`:
//!
//! ```sh
//! cargo build --release -p rask-cli --example custom_worker
//! B=target/release/examples/custom_worker
//! $B scheduler &
//! $B worker 127.0.0.1:8786 --nworkers 2 --nthreads 1 &
//! $B query --scheduler 127.0.0.1:8786 -c "SELECT name, max(square(x)) FROM timeseries() GROUP BY name"
//! ```
//!
//! A client program calls the task functions by name with the same registry
//! (`Client::connect_with_registry`, `TaskGraph::call`).

use std::process::ExitCode;
use std::sync::Arc;

use rask::arrow::array::{ArrayRef, Float64Array};
use rask::arrow::compute::kernels::numeric::mul;
use rask::arrow::datatypes::{DataType, Field, Schema};
use rask::arrow::error::ArrowError;
use rask::arrow::record_batch::RecordBatch;
use rask::udf::{self, Registry};

#[path = "../../examples/walkthrough/functions.rs"]
mod walkthrough;

#[path = "../../examples/people/functions.rs"]
mod people;

/// A task function: the sum of two task results.
fn add(a: &i64, b: &i64) -> i64 {
    a + b
}

/// A task function with no inputs.
fn seven() -> i64 {
    7
}

/// A task function that fails: its error reaches the caller with the key.
fn checked_half(n: &i64) -> Result<i64, String> {
    if n % 2 == 0 {
        Ok(n / 2)
    } else {
        Err(format!("{n} is odd"))
    }
}

/// A partition function: the batch with a column `z = x * y` added (the
/// walkthrough's `map_partitions`).
pub fn with_z(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| ArrowError::SchemaError(format!("with_z needs a column {name}")))
    };
    let (x, y) = (column("x")?, column("y")?);
    let z: ArrayRef = if batch.num_rows() == 0 {
        Arc::new(Float64Array::from(Vec::<f64>::new()))
    } else {
        mul(&x, &y)?
    };
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(Field::new("z", DataType::Float64, true)));
    let mut columns = batch.columns().to_vec();
    columns.push(z);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// A partition function with an argument: the rows whose `x` is above
/// `threshold` (the result of a future, for `map_partitions_with`).
pub fn x_above(batch: RecordBatch, threshold: &f64) -> Result<RecordBatch, ArrowError> {
    let x = batch
        .column_by_name("x")
        .ok_or_else(|| ArrowError::SchemaError("x_above needs a column x".into()))?;
    let above = rask::arrow::compute::kernels::cmp::gt(x, &Float64Array::new_scalar(*threshold))?;
    rask::arrow::compute::filter_record_batch(&batch, &above)
}

/// A task function that takes `ms` milliseconds: for tasks that must still
/// be running when something happens to their worker.
fn pause(ms: &u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(*ms));
    *ms
}

/// The length and byte sum of a (scattered) buffer: to check a large value
/// arrived whole.
#[allow(clippy::ptr_arg)] // a task function takes the scattered type itself
fn checksum(bytes: &Vec<u8>) -> (u64, u64) {
    let sum = bytes.iter().map(|&b| u64::from(b)).sum();
    (bytes.len() as u64, sum)
}

/// Ends the worker process at once, as a segfault or the kernel's OOM killer
/// would: to see the cluster cope (the nanny restarts the worker, the task is
/// retried elsewhere, and after three deaths it errs with the last log lines).
fn crash() -> i64 {
    eprintln!("crash: ending this worker process now, as asked");
    std::process::abort()
}

/// The functions this binary's workers carry: the walkthrough's
/// (`examples/walkthrough.rs`, `examples/people.rs`) and the ones below.
pub fn registry() -> Registry {
    walkthrough::registry()
        .merged(people::registry())
        .with_function("add", add)
        .with_function("seven", seven)
        .with_try_function("checked_half", checked_half)
        .with_function("crash", crash)
        .with_function("pause", pause)
        .with_function("checksum", checksum)
        .with_partition(udf::partition("with_z", with_z))
        .with_partition(udf::partition_with("x_above", x_above))
}

fn main() -> ExitCode {
    rask_cli::main_with(registry())
}
