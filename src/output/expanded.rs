//! Expanded output (psql's `\x`): each row as a record of `column | value`
//! lines, for rows too wide for a table.

use std::io::Write;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use super::{ResultSink, format_rows};
use crate::Result;

/// Writes each row as it comes, under a `-[ RECORD n ]-` line.
pub struct ExpandedSink<W: Write> {
    names: Vec<String>,
    width: usize,
    rows: u64,
    out: W,
}

impl<W: Write> ExpandedSink<W> {
    /// A sink for a result with `schema`, written to `out`.
    pub fn new(schema: SchemaRef, out: W) -> Self {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        Self {
            names,
            width,
            rows: 0,
            out,
        }
    }
}

impl<W: Write> ResultSink for ExpandedSink<W> {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        for row in format_rows(std::slice::from_ref(batch))? {
            self.rows += 1;
            writeln!(self.out, "-[ RECORD {} ]-", self.rows).map_err(super::io_error)?;
            for (name, value) in self.names.iter().zip(row) {
                writeln!(self.out, "{name:<width$} | {value}", width = self.width)
                    .map_err(super::io_error)?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        if self.rows == 0 {
            writeln!(self.out, "(0 rows)").map_err(super::io_error)?;
        }
        self.out.flush().map_err(super::io_error)?;
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn each_row_is_a_record_of_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("legs", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("cat"), None])),
                Arc::new(Int64Array::from(vec![4, 2])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut sink = Box::new(ExpandedSink::new(schema, &mut out));
        sink.write_batch(&batch).unwrap();
        assert_eq!(sink.finish().unwrap(), 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-[ RECORD 1 ]-\nname | cat\nlegs | 4\n-[ RECORD 2 ]-\nname | NULL\nlegs | 2\n"
        );
    }
}
