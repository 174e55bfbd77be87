//! CSV, JSON and NDJSON output through Arrow's writers.

use std::io::Write;

use datafusion::arrow::csv;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::{ArrayWriter, LineDelimitedWriter};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;

use super::{Format, ResultSink};
use crate::Result;

/// Writes a result as CSV (with header), a JSON array, or NDJSON.
pub struct TextSink<W: Write> {
    writer: Writer<W>,
    rows: u64,
}

#[allow(clippy::large_enum_variant)] // one per result, not per row
enum Writer<W: Write> {
    Csv(csv::Writer<W>),
    Json(ArrayWriter<W>),
    Ndjson(LineDelimitedWriter<W>),
}

impl<W: Write> TextSink<W> {
    /// A sink for `format`, which must not be [`Format::Table`].
    pub fn new(format: Format, _schema: SchemaRef, out: W) -> Self {
        let writer = match format {
            Format::Json => Writer::Json(ArrayWriter::new(out)),
            Format::Ndjson => Writer::Ndjson(LineDelimitedWriter::new(out)),
            Format::Csv | Format::Table | Format::Expanded => {
                Writer::Csv(csv::WriterBuilder::new().with_header(true).build(out))
            }
        };
        Self { writer, rows: 0 }
    }
}

impl<W: Write> ResultSink for TextSink<W> {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        match &mut self.writer {
            Writer::Csv(w) => w.write(batch),
            Writer::Json(w) => w.write(batch),
            Writer::Ndjson(w) => w.write(batch),
        }
        .map_err(|e| DataFusionError::from(e).into())
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        let finished = match self.writer {
            Writer::Csv(w) => w.into_inner().flush().map_err(super::io_error),
            Writer::Json(mut w) => {
                w.finish()
                    .map_err(|e| crate::Error::from(DataFusionError::from(e)))?;
                w.into_inner().flush().map_err(super::io_error)
            }
            Writer::Ndjson(mut w) => {
                w.finish()
                    .map_err(|e| crate::Error::from(DataFusionError::from(e)))?;
                w.into_inner().flush().map_err(super::io_error)
            }
        };
        finished?;
        Ok(self.rows)
    }
}
