//! The parameters of a timeseries table and the arithmetic of its partitions.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Nanoseconds in a second.
const SECOND: i64 = 1_000_000_000;
/// Nanoseconds in a day.
const DAY: i64 = 86_400 * SECOND;
/// `2000-01-01T00:00:00` in nanoseconds since the epoch (Dask's default start).
const Y2K: i64 = 946_684_800 * SECOND;

/// The seed used when none is given, so a query gives the same rows every run.
pub const DEFAULT_SEED: u64 = 42;

/// What to generate. Build one with [`TimeseriesSpec::default`] (Dask's defaults:
/// January 2000, one row a second, one partition a day) and the `with_` methods.
///
/// ```
/// use rask::datasets::TimeseriesSpec;
/// let spec = TimeseriesSpec::default();
/// assert_eq!(spec.partitions(), 30);
/// assert_eq!(spec.num_rows(), 2_592_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeseriesSpec {
    /// First timestamp, in nanoseconds since the epoch (inclusive).
    pub start: i64,
    /// Last timestamp bound, in nanoseconds since the epoch (exclusive).
    pub end: i64,
    /// Time between rows, in nanoseconds.
    pub freq: i64,
    /// Time covered by one partition, in nanoseconds.
    pub partition_freq: i64,
    /// Seed of the random columns.
    pub seed: u64,
}

impl Default for TimeseriesSpec {
    fn default() -> Self {
        Self {
            start: Y2K,
            end: Y2K + 30 * DAY,
            freq: SECOND,
            partition_freq: DAY,
            seed: DEFAULT_SEED,
        }
    }
}

/// Why a [`TimeseriesSpec`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// `end` is not after `start`.
    #[error("end ({end}) must be after start ({start})")]
    EmptyRange {
        /// The start given.
        start: String,
        /// The end given.
        end: String,
    },
    /// A frequency that is zero or negative.
    #[error("{name} must be a positive duration, got {value} ns")]
    NonPositive {
        /// Which frequency.
        name: &'static str,
        /// Its value.
        value: i64,
    },
    /// More partitions (each a task) than a query may plan.
    #[error(
        "it would make {partitions} partitions, more than {MAX_PARTITIONS}: \
         give a longer partition_freq"
    )]
    TooManyPartitions {
        /// How many.
        partitions: u128,
    },
}

/// The most partitions a table may have: each is a task of every query that
/// reads it, and planning billions of them would take the server down.
pub const MAX_PARTITIONS: u128 = 1_000_000;

impl TimeseriesSpec {
    /// Sets the first timestamp (nanoseconds since the epoch).
    pub fn with_start(mut self, start: i64) -> Self {
        self.start = start;
        self
    }
    /// Sets the exclusive end (nanoseconds since the epoch).
    pub fn with_end(mut self, end: i64) -> Self {
        self.end = end;
        self
    }
    /// Sets the time between rows (nanoseconds).
    pub fn with_freq(mut self, freq: i64) -> Self {
        self.freq = freq;
        self
    }
    /// Sets the time covered by one partition (nanoseconds).
    pub fn with_partition_freq(mut self, partition_freq: i64) -> Self {
        self.partition_freq = partition_freq;
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks that the spec describes a non-empty table.
    pub fn validate(&self) -> Result<(), SpecError> {
        for (name, value) in [("freq", self.freq), ("partition_freq", self.partition_freq)] {
            if value <= 0 {
                return Err(SpecError::NonPositive { name, value });
            }
        }
        if self.end <= self.start {
            return Err(SpecError::EmptyRange {
                start: format_timestamp(self.start),
                end: format_timestamp(self.end),
            });
        }
        let partitions = div_ceil(self.span(), self.partition_freq as u128);
        if partitions > MAX_PARTITIONS {
            return Err(SpecError::TooManyPartitions { partitions });
        }
        Ok(())
    }

    /// The number of partitions: one per `partition_freq`, the last one possibly shorter.
    pub fn partitions(&self) -> usize {
        div_ceil(self.span(), self.partition_freq as u128) as usize
    }

    /// The number of rows in the whole table.
    pub fn num_rows(&self) -> u64 {
        self.row_index_at(self.end)
    }

    /// The rows of partition `p`, as a range of global row indices.
    pub fn partition_rows(&self, p: usize) -> std::ops::Range<u64> {
        let bound = |q: usize| {
            let t = self.start as i128 + q as i128 * self.partition_freq as i128;
            self.row_index_at(t.min(self.end as i128) as i64)
        };
        bound(p)..bound(p + 1)
    }

    /// The timestamp of global row `row`.
    pub fn timestamp_of(&self, row: u64) -> i64 {
        self.start + row as i64 * self.freq
    }

    /// The index of the first row whose timestamp is at or after `t`.
    fn row_index_at(&self, t: i64) -> u64 {
        let since_start = (t as i128 - self.start as i128).max(0) as u128;
        div_ceil(since_start, self.freq as u128) as u64
    }

    fn span(&self) -> u128 {
        (self.end as i128 - self.start as i128).max(0) as u128
    }

    /// The table's full schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8View, false),
            Field::new("x", DataType::Float64, false),
            Field::new("y", DataType::Float64, false),
        ]))
    }
}

impl fmt::Display for TimeseriesSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "start={}, end={}, freq={}ns, partition_freq={}ns, seed={}",
            format_timestamp(self.start),
            format_timestamp(self.end),
            self.freq,
            self.partition_freq,
            self.seed
        )
    }
}

fn div_ceil(a: u128, b: u128) -> u128 {
    a.div_ceil(b)
}

/// Formats nanoseconds since the epoch as an ISO timestamp.
pub(crate) fn format_timestamp(ns: i64) -> String {
    use datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime;
    match timestamp_ns_to_datetime(ns) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
        None => format!("{ns}ns"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_dask() {
        let spec = TimeseriesSpec::default();
        assert_eq!(spec.partitions(), 30);
        assert_eq!(spec.num_rows(), 30 * 86_400);
        assert_eq!(spec.partition_rows(0), 0..86_400);
        assert_eq!(spec.partition_rows(29), 29 * 86_400..30 * 86_400);
        assert_eq!(format_timestamp(spec.start), "2000-01-01 00:00:00");
    }

    #[test]
    fn ragged_last_partition_and_freq_not_dividing_partitions() {
        // 10 hours, a row every 7 minutes, partitions of 3 hours.
        let hour = 3600 * SECOND;
        let spec = TimeseriesSpec::default()
            .with_end(Y2K + 10 * hour)
            .with_freq(7 * 60 * SECOND)
            .with_partition_freq(3 * hour);
        assert_eq!(spec.partitions(), 4);
        let total: u64 = (0..4).map(|p| spec.partition_rows(p).count() as u64).sum();
        assert_eq!(total, spec.num_rows());
        assert_eq!(spec.num_rows(), (10 * 60u64).div_ceil(7));
        // Partitions tile the rows with no gap or overlap.
        for p in 0..3 {
            assert_eq!(spec.partition_rows(p).end, spec.partition_rows(p + 1).start);
        }
        // Every row of partition p has its timestamp inside p's time range.
        for p in 0..4 {
            for row in spec.partition_rows(p) {
                let t = spec.timestamp_of(row);
                assert!(
                    t >= spec.start + p as i64 * 3 * hour
                        && t < spec.start + (p as i64 + 1) * 3 * hour
                );
            }
        }
    }

    #[test]
    fn rejects_bad_specs() {
        let spec = TimeseriesSpec::default();
        assert!(matches!(
            spec.with_freq(0).validate(),
            Err(SpecError::NonPositive { name: "freq", .. })
        ));
        assert!(matches!(
            spec.with_end(spec.start).validate(),
            Err(SpecError::EmptyRange { .. })
        ));
        assert!(spec.validate().is_ok());
        // A year in partitions of a second: 31 million tasks, refused.
        let year = spec.with_end(spec.start + 366 * 86_400 * 1_000_000_000);
        let e = year
            .with_partition_freq(1_000_000_000)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("more than 1000000"), "{e}");
    }
}
