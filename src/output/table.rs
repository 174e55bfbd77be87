//! The table view: aligned columns, long results elided in the middle, and a
//! `2592000 rows × 8 columns` footer, as pandas and Dask users know it.

use std::collections::VecDeque;
use std::io::Write;

use comfy_table::{Cell, CellAlignment, Table};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;

use super::ResultSink;
use crate::Result;

/// Borders like Arrow's and DataFusion's pretty printers.
const STYLE: &str = "||--+-++|    ++++++";
/// The cell standing for the rows that are not shown.
const ELIDED: &str = "...";

/// Prints a result as a table, keeping at most `2 × maxrows` rows in memory.
pub struct TableSink<W: Write> {
    schema: SchemaRef,
    maxrows: Option<usize>,
    out: W,
    /// The first `maxrows` rows.
    head: Vec<RecordBatch>,
    head_rows: usize,
    /// The last `maxrows` rows (possibly overlapping `head`).
    tail: VecDeque<RecordBatch>,
    tail_rows: usize,
    total: u64,
    /// Columns that are the frame's index, left out of the footer's count.
    index_columns: usize,
}

impl<W: Write> TableSink<W> {
    /// A table of `schema` showing at most `maxrows` rows (all when `None`).
    pub fn new(schema: SchemaRef, maxrows: Option<usize>, out: W) -> Self {
        Self {
            schema,
            maxrows,
            out,
            head: Vec::new(),
            head_rows: 0,
            tail: VecDeque::new(),
            tail_rows: 0,
            total: 0,
            index_columns: 0,
        }
    }

    /// Counts `n` columns as the frame's index, not as columns, in the
    /// footer (`2592000 rows × 7 columns` for a timeseries with its
    /// `timestamp` index, as pandas counts).
    pub fn with_index_columns(mut self, n: usize) -> Self {
        self.index_columns = n;
        self
    }

    fn keep(&mut self, batch: &RecordBatch) {
        let limit = self.maxrows.unwrap_or(usize::MAX);
        let take = batch.num_rows().min(limit.saturating_sub(self.head_rows));
        if take > 0 {
            self.head.push(batch.slice(0, take));
            self.head_rows += take;
        }
        if self.maxrows.is_some() && limit > 0 {
            let skip = batch.num_rows().saturating_sub(limit);
            self.tail
                .push_back(batch.slice(skip, batch.num_rows() - skip));
            self.tail_rows += batch.num_rows() - skip;
            while let Some(front) = self.tail.front() {
                if self.tail_rows - front.num_rows() < limit {
                    break;
                }
                self.tail_rows -= front.num_rows();
                self.tail.pop_front();
            }
        }
    }

    /// The rows to show: all of them, or the first and last halves of `maxrows`
    /// around an elision mark (`None`).
    fn shown_rows(&self) -> Result<Vec<Option<Vec<String>>>> {
        let all_fit = self.maxrows.is_none_or(|limit| self.total <= limit as u64);
        if all_fit {
            return Ok(format_rows(&self.head)?.into_iter().map(Some).collect());
        }
        let limit = self.maxrows.unwrap_or_default();
        let (first, last) = (limit.div_ceil(2), limit / 2);
        let mut rows: Vec<Option<Vec<String>>> = format_rows(&self.head)?
            .into_iter()
            .take(first)
            .map(Some)
            .collect();
        rows.push(None);
        let tail: Vec<RecordBatch> = self.tail.iter().cloned().collect();
        let tail = format_rows(&tail)?;
        rows.extend(
            tail[tail.len().saturating_sub(last)..]
                .iter()
                .cloned()
                .map(Some),
        );
        Ok(rows)
    }
}

impl<W: Write> ResultSink for TableSink<W> {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.total += batch.num_rows() as u64;
        self.keep(batch);
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        let columns = self.schema.fields().len();
        if columns == 0 {
            // Statements such as CREATE TABLE have no result to show.
            return Ok(self.total);
        }
        let mut table = Table::new();
        table.load_preset(STYLE);
        table.set_header(self.schema.fields().iter().map(|f| Cell::new(f.name())));
        for row in self.shown_rows()? {
            match row {
                Some(cells) => table.add_row(cells),
                None => table.add_row(vec![ELIDED; columns]),
            };
        }
        for (i, field) in self.schema.fields().iter().enumerate() {
            if field.data_type().is_numeric()
                && let Some(column) = table.column_mut(i)
            {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        let total = self.total;
        writeln!(self.out, "{table}").map_err(super::io_error)?;
        let counted = columns.saturating_sub(self.index_columns);
        writeln!(self.out, "{}", footer(total, counted)).map_err(super::io_error)?;
        self.out.flush().map_err(super::io_error)?;
        Ok(total)
    }
}

/// `2592000 rows × 8 columns`, singular where it should be.
pub fn footer(rows: u64, columns: usize) -> String {
    let plural = |n: u64, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    format!(
        "{} × {}",
        plural(rows, "row"),
        plural(columns as u64, "column")
    )
}

/// The rows of `batches`, each value as text (`NULL` for a null).
pub fn format_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataFusionError::from)?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::output::{Format, to_string};

    fn batches(n: i64, per_batch: i64) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batches = (0..n)
            .step_by(per_batch as usize)
            .map(|from| {
                let values = Int64Array::from_iter_values(from..(from + per_batch).min(n));
                RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
            })
            .collect();
        (schema, batches)
    }

    #[test]
    fn short_results_show_every_row() {
        let (schema, b) = batches(3, 2);
        let text = to_string(Format::Table, schema, &b, Some(10)).unwrap();
        assert!(text.contains("| 0 |") && text.contains("| 2 |"), "{text}");
        assert!(text.ends_with("3 rows × 1 column\n"), "{text}");
    }

    #[test]
    fn long_results_show_head_and_tail_around_an_elision() {
        for per_batch in [1, 3, 7, 1000] {
            let (schema, b) = batches(100, per_batch);
            let text = to_string(Format::Table, schema, &b, Some(5)).unwrap();
            let cells: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with('|'))
                .map(|l| l.trim_matches(|c| c == '|' || c == ' '))
                .collect();
            assert_eq!(
                cells,
                ["v", "0", "1", "2", "...", "98", "99"],
                "batches of {per_batch}"
            );
            assert!(text.ends_with("100 rows × 1 column\n"));
        }
    }

    #[test]
    fn singular_and_plural() {
        assert_eq!(footer(1, 1), "1 row × 1 column");
        assert_eq!(footer(2_592_000, 7), "2592000 rows × 7 columns");
    }
}
