//! Rendering query results: a table for people, CSV, JSON and NDJSON for programs.
//!
//! Results are written batch by batch as they arrive, so printing a large result
//! never holds it whole: the table view keeps only the rows it will show (the
//! first and last `maxrows / 2`) and counts the rest.

mod expanded;
mod table;
mod text;

use std::io::Write;
use std::str::FromStr;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::Result;

pub use expanded::ExpandedSink;
pub use table::{TableSink, format_rows};
pub use text::TextSink;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// An aligned table with a `rows × columns` footer, long results elided in the middle.
    #[default]
    Table,
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON array of row objects.
    Json,
    /// One JSON object per row, one per line.
    Ndjson,
    /// Each row as a record of `column | value` lines (psql's `\x`).
    Expanded,
}

impl Format {
    /// All formats, by name.
    pub const NAMES: [&'static str; 5] = ["table", "csv", "json", "ndjson", "expanded"];
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            "expanded" => Ok(Format::Expanded),
            other => Err(format!(
                "unknown format '{other}' (expected one of {})",
                Format::NAMES.join(", ")
            )),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Expanded => "expanded",
        };
        f.write_str(name)
    }
}

/// Where one statement's result goes, batch by batch.
pub trait ResultSink {
    /// Takes the next batch of the result.
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Ends the result (prints the table, closes the JSON array) and returns how
    /// many rows were written.
    fn finish(self: Box<Self>) -> Result<u64>;
}

/// A sink printing a result with `schema` to `out` in `format`. `maxrows` bounds
/// the rows the table view shows (`None`: all); other formats print every row.
pub fn sink<'a, W: Write + 'a>(
    format: Format,
    schema: SchemaRef,
    maxrows: Option<usize>,
    out: W,
) -> Box<dyn ResultSink + 'a> {
    match format {
        Format::Table => Box::new(TableSink::new(schema, maxrows, out)),
        Format::Expanded => Box::new(ExpandedSink::new(schema, out)),
        other => Box::new(TextSink::new(other, schema, out)),
    }
}

/// Writes `batches` in `format` into a string (for tests and small results).
pub fn to_string(
    format: Format,
    schema: SchemaRef,
    batches: &[RecordBatch],
    maxrows: Option<usize>,
) -> Result<String> {
    let mut buffer = Vec::new();
    write_all(sink(format, schema, maxrows, &mut buffer), batches)?;
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

/// Writes `batches` to `sink` and finishes it; returns the rows written.
pub fn write_all(mut sink: Box<dyn ResultSink + '_>, batches: &[RecordBatch]) -> Result<u64> {
    for batch in batches {
        sink.write_batch(batch)?;
    }
    sink.finish()
}

fn io_error(e: std::io::Error) -> crate::Error {
    crate::Error::Io {
        path: "<output>".into(),
        source: e,
    }
}

/// `2147483648` → `2.00 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_read_as_people_say_them() {
        assert_eq!(super::format_bytes(512), "512 B");
        assert_eq!(super::format_bytes(2147483648), "2.00 GiB");
    }
}
