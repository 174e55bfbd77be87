//! Where [`DataFrame`]s start: `client.timeseries()`, `read_parquet`,
//! `read_csv`, `read_json`, `from_batches` (and `client.sql`).

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{Expr, lit};
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions};

use super::DataFrame;
use crate::client::Client;
use crate::datasets::{TimeseriesFunction, TimeseriesTable};
use crate::{Error, Result};

/// Builds Dask's `dask.datasets.timeseries(..)`: from `client.timeseries()`,
/// set what differs from Dask's defaults (January 2000, a row a second, a
/// partition a day, seed 42), then [`build`](Self::build). Times and
/// durations are written as in SQL's `timeseries(..)`: `"2000-01-01"`,
/// `"1s"`, `"1d"`, `"12h"`.
///
/// ```no_run
/// # fn demo(client: rask::Client) -> rask::Result<()> {
/// let df = client.timeseries().end("2000-01-08").freq("10s").build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TimeseriesBuilder {
    client: Client,
    start: Option<String>,
    end: Option<String>,
    freq: Option<String>,
    partition_freq: Option<String>,
    seed: Option<u64>,
}

impl TimeseriesBuilder {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            start: None,
            end: None,
            freq: None,
            partition_freq: None,
            seed: None,
        }
    }

    /// The first timestamp (inclusive).
    pub fn start(mut self, start: &str) -> Self {
        self.start = Some(start.to_string());
        self
    }

    /// Where the timestamps stop (exclusive).
    pub fn end(mut self, end: &str) -> Self {
        self.end = Some(end.to_string());
        self
    }

    /// Time between rows.
    pub fn freq(mut self, freq: &str) -> Self {
        self.freq = Some(freq.to_string());
        self
    }

    /// Time covered by one partition.
    pub fn partition_freq(mut self, partition_freq: &str) -> Self {
        self.partition_freq = Some(partition_freq.to_string());
        self
    }

    /// Seed of the random columns.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The lazy frame; `Err` names a time or duration that does not parse, or
    /// a range that is empty.
    pub fn build(self) -> Result<DataFrame> {
        let text = |v: Option<String>| v.map_or(lit(datafusion::common::ScalarValue::Null), lit);
        let args: Vec<Expr> = vec![
            text(self.start),
            text(self.end),
            text(self.freq),
            text(self.partition_freq),
            self.seed.map_or(
                lit(datafusion::common::ScalarValue::Null),
                |s| lit(s as i64),
            ),
        ];
        let spec = TimeseriesFunction::spec_from_args(&args)?;
        let frame = self
            .client
            .session()
            .read_table(Arc::new(TimeseriesTable::new(spec)))?;
        Ok(DataFrame::new(frame).with_index(vec!["timestamp".to_string()]))
    }
}

impl Client {
    /// A generated timeseries, as Dask's `dask.datasets.timeseries()`; see
    /// [`TimeseriesBuilder`].
    pub fn timeseries(&self) -> TimeseriesBuilder {
        TimeseriesBuilder::new(self.clone())
    }

    /// Parquet files: a file, a folder, a glob (`data/*.parquet`) or an
    /// object store URL registered with the session.
    pub async fn read_parquet(&self, path: &str) -> Result<DataFrame> {
        let read = self
            .session()
            .read_parquet(path, ParquetReadOptions::default());
        read_frame(path, read).await
    }

    /// CSV files with a header row (types inferred), as [`read_parquet`](Self::read_parquet) finds them.
    pub async fn read_csv(&self, path: &str) -> Result<DataFrame> {
        let read = self.session().read_csv(path, CsvReadOptions::new());
        read_frame(path, read).await
    }

    /// Newline-delimited JSON files, as [`read_parquet`](Self::read_parquet) finds them.
    pub async fn read_json(&self, path: &str) -> Result<DataFrame> {
        let options = JsonReadOptions {
            file_extension: if path.ends_with(".json") { ".json" } else { "" },
            ..JsonReadOptions::default()
        };
        let read = self.session().read_json(path, options);
        read_frame(path, read).await
    }

    /// A frame over batches already in memory (one partition per batch).
    pub fn from_batches(&self, batches: Vec<RecordBatch>) -> Result<DataFrame> {
        if batches.is_empty() {
            return Err(Error::Config(
                "from_batches needs at least one batch".into(),
            ));
        }
        let frame = self.session().read_batches(batches)?;
        Ok(DataFrame::new(frame))
    }
}

/// The frame `reading` makes of `path`; its error says which path could not be read.
async fn read_frame(
    path: &str,
    reading: impl Future<Output = datafusion::error::Result<datafusion::dataframe::DataFrame>>,
) -> Result<DataFrame> {
    let frame = crate::error::catch_panics(reading)
        .await?
        .map_err(|e| Error::Config(format!("cannot read {path}: {e}")))?;
    Ok(DataFrame::new(frame))
}
