//! Compacting batches before they are kept as a task's result.
//!
//! Operators that pick rows (`take` in hash partitioning and joins, filters)
//! leave string and binary *view* arrays pointing into every data buffer of
//! their input. Kept as they are, a few rows of a result can hold gigabytes of
//! their input alive, count as that much memory, and travel as that much over
//! Flight (IPC writes whole view buffers) or to disk when spilled. Copying the
//! rows in use into fresh buffers costs a pass over them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// Buffers past this many bytes more than their rows use are copied.
const SLACK: usize = 64 * 1024;

/// `batch` with every string and binary view column that holds much more
/// buffer than its rows use copied into buffers of its own; other columns
/// as they are (nested types are left alone).
pub fn compact(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let compacted: Vec<Option<ArrayRef>> = batch.columns().iter().map(compacted).collect();
    if compacted.iter().all(Option::is_none) {
        return Ok(batch);
    }
    let columns = compacted
        .into_iter()
        .zip(batch.columns())
        .map(|(new, old)| new.unwrap_or_else(|| Arc::clone(old)))
        .collect();
    RecordBatch::try_new(batch.schema(), columns)
}

/// `column` copied into fresh buffers, if it is a view array wasting them.
fn compacted(column: &ArrayRef) -> Option<ArrayRef> {
    let wasteful = |buffers: &[datafusion::arrow::buffer::Buffer], used: usize| {
        buffers.iter().map(|b| b.len()).sum::<usize>() > 2 * used + SLACK
    };
    match column.data_type() {
        DataType::Utf8View => {
            let a = column.as_string_view();
            wasteful(a.data_buffers(), a.total_buffer_bytes_used())
                .then(|| Arc::new(a.gc()) as ArrayRef)
        }
        DataType::BinaryView => {
            let a = column.as_binary_view();
            wasteful(a.data_buffers(), a.total_buffer_bytes_used())
                .then(|| Arc::new(a.gc()) as ArrayRef)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringViewArray;
    use datafusion::arrow::compute::take;
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn a_few_rows_taken_from_a_large_view_array_no_longer_hold_it() {
        let long: Vec<String> = (0..10_000)
            .map(|i| format!("a string longer than twelve {i}"))
            .collect();
        let all = StringViewArray::from_iter_values(long.iter());
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let picked = take(
            &all,
            &datafusion::arrow::array::UInt32Array::from(vec![3, 7]),
            None,
        )
        .unwrap();
        let batch = RecordBatch::try_new(schema, vec![picked]).unwrap();
        let before = batch.get_array_memory_size();
        let compacted = compact(batch.clone()).unwrap();
        assert_eq!(compacted, batch, "the same rows");
        assert!(
            compacted.get_array_memory_size() * 10 < before,
            "{before} bytes before"
        );
        // Already compact: left as it is.
        let again = compact(compacted.clone()).unwrap();
        assert_eq!(
            again.get_array_memory_size(),
            compacted.get_array_memory_size()
        );
    }
}
