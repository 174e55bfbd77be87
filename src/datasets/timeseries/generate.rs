//! Column generators.
//!
//! Random values come from a counter-based generator: value `r` of a column is
//! `mix(stream + r·γ)` (SplitMix64's output function over its counter), where
//! `stream` is derived from `(seed, partition, column)`. Any slice of rows can be
//! generated without generating what comes before it, columns that a query does
//! not read cost nothing, and the loops vectorise.
//!
//! - `id`: Poisson(λ = 1000), sampled with Walker's alias method from a table
//!   built once (exact to within 2⁻³² per outcome; outcomes further than 16σ from
//!   λ, of total probability below 10⁻⁵⁰, are left out);
//! - `name`: uniform over the 26 names Dask uses;
//! - `x`, `y`: uniform in [-1, 1), with 53 random bits each.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringViewArray, TimestampNanosecondArray,
};
use datafusion::arrow::buffer::{Buffer, ScalarBuffer};

use super::spec::TimeseriesSpec;

/// The names, as in `dask.datasets.timeseries`.
pub const NAMES: [&str; 26] = [
    "Alice", "Bob", "Charlie", "Dan", "Edith", "Frank", "George", "Hannah", "Ingrid", "Jerry",
    "Kevin", "Laura", "Michael", "Norbert", "Oliver", "Patricia", "Quinn", "Ray", "Sarah", "Tim",
    "Ursula", "Victor", "Wendy", "Xavier", "Yvonne", "Zelda",
];

/// The mean of the `id` column.
pub const ID_LAMBDA: f64 = 1000.0;

/// The columns of the table, in schema order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Row timestamps.
    Timestamp,
    /// Poisson integers.
    Id,
    /// Names.
    Name,
    /// Uniform floats.
    X,
    /// Uniform floats.
    Y,
}

impl Column {
    /// All columns, in schema order.
    pub const ALL: [Column; 5] = [
        Column::Timestamp,
        Column::Id,
        Column::Name,
        Column::X,
        Column::Y,
    ];

    /// Generates rows `rows` (global row indices) of partition `partition`.
    pub fn generate(
        self,
        spec: &TimeseriesSpec,
        partition: usize,
        rows: std::ops::Range<u64>,
    ) -> ArrayRef {
        let stream = stream_key(spec.seed, partition as u64, self as u64);
        match self {
            Column::Timestamp => Arc::new(TimestampNanosecondArray::from_iter_values(
                rows.map(|r| spec.timestamp_of(r)),
            )),
            Column::Id => {
                let table = &*POISSON;
                Arc::new(Int64Array::from_iter_values(
                    rows.map(|r| table.sample(draw(stream, r))),
                ))
            }
            Column::Name => {
                let views = &*NAME_VIEWS;
                let buffer: ScalarBuffer<u128> = rows
                    .map(|r| views[pick(draw(stream, r), NAMES.len() as u64) as usize])
                    .collect();
                // SAFETY: every view is an inline view (names are at most 12 bytes)
                // made by `StringViewArray::from_iter_values` from valid UTF-8.
                Arc::new(unsafe {
                    StringViewArray::new_unchecked(buffer, Vec::<Buffer>::new(), None)
                })
            }
            Column::X | Column::Y => Arc::new(Float64Array::from_iter_values(
                rows.map(|r| unit_interval(draw(stream, r))),
            )),
        }
    }
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijective mix of 64 bits.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The counter base of one column of one partition.
fn stream_key(seed: u64, partition: u64, column: u64) -> u64 {
    mix(mix(mix(seed ^ GAMMA).wrapping_add(partition)).wrapping_add(column))
}

/// The random word of row `row` in stream `stream`.
#[inline(always)]
fn draw(stream: u64, row: u64) -> u64 {
    mix(stream.wrapping_add(row.wrapping_mul(GAMMA)))
}

/// A uniform integer in `0..n` from the high 32 bits of `word` (Lemire's reduction).
#[inline(always)]
fn pick(word: u64, n: u64) -> u64 {
    ((word >> 32) * n) >> 32
}

/// A uniform float in [-1, 1) from the high 53 bits of `word`.
#[inline(always)]
fn unit_interval(word: u64) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 52) as f64;
    (word >> 11) as f64 * SCALE - 1.0
}

static NAME_VIEWS: LazyLock<Vec<u128>> =
    LazyLock::new(|| StringViewArray::from_iter_values(NAMES).views().to_vec());

static POISSON: LazyLock<AliasTable> = LazyLock::new(|| AliasTable::poisson(ID_LAMBDA));

/// Walker's alias table over the integers `low..low + n`.
struct AliasTable {
    low: i64,
    /// Acceptance threshold of each bucket, scaled to 2³² (2³² means always).
    threshold: Vec<u64>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// Poisson(λ), truncated to λ ± 16√λ.
    fn poisson(lambda: f64) -> Self {
        let spread = (16.0 * lambda.sqrt()).ceil();
        let low = (lambda - spread).max(0.0) as i64;
        let high = (lambda + spread) as i64;
        // ln P(k) = k ln λ − λ − ln k!
        let mut ln_factorial = 0.0f64;
        for i in 2..=low {
            ln_factorial += (i as f64).ln();
        }
        let mut weights = Vec::with_capacity((high - low + 1) as usize);
        for k in low..=high {
            if k >= 2 && k > low {
                ln_factorial += (k as f64).ln();
            }
            weights.push((k as f64 * lambda.ln() - lambda - ln_factorial).exp());
        }
        Self::from_weights(low, &weights)
    }

    /// Vose's construction.
    fn from_weights(low: i64, weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left is 1 up to rounding.
        for i in small.into_iter().chain(large) {
            scaled[i] = 1.0;
        }
        let threshold = scaled
            .iter()
            .map(|p| (p.clamp(0.0, 1.0) * (1u64 << 32) as f64) as u64)
            .collect();
        Self {
            low,
            threshold,
            alias,
        }
    }

    #[inline(always)]
    fn sample(&self, word: u64) -> i64 {
        let bucket = pick(word, self.threshold.len() as u64) as usize;
        let coin = word & 0xffff_ffff;
        let index = if coin < self.threshold[bucket] {
            bucket
        } else {
            self.alias[bucket] as usize
        };
        self.low + index as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};

    fn spec() -> TimeseriesSpec {
        TimeseriesSpec::default()
    }

    #[test]
    fn ids_are_poisson_1000() {
        let ids = Column::Id.generate(&spec(), 0, 0..200_000);
        let ids = ids.as_primitive::<Int64Type>();
        let n = ids.len() as f64;
        let mean = ids.values().iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = ids
            .values()
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        // Standard error of the mean is √(1000/200000) ≈ 0.07.
        assert!((mean - 1000.0).abs() < 0.5, "mean {mean}");
        assert!((var - 1000.0).abs() < 30.0, "variance {var}");
        // P(X = 1000) = 0.01261; expect ≈ 2522 of them.
        let at_mean = ids.values().iter().filter(|&&v| v == 1000).count();
        assert!((2300..2750).contains(&at_mean), "{at_mean} rows equal 1000");
    }

    #[test]
    fn floats_are_uniform_in_minus_one_one() {
        let xs = Column::X.generate(&spec(), 3, 0..100_000);
        let xs = xs.as_primitive::<Float64Type>();
        assert!(xs.values().iter().all(|&v| (-1.0..1.0).contains(&v)));
        let mean = xs.values().iter().sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        let below_half = xs.values().iter().filter(|&&v| v < -0.5).count();
        assert!((24_000..26_000).contains(&below_half));
        assert_eq!(unit_interval(0), -1.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }

    #[test]
    fn names_cover_all_26_evenly() {
        let names = Column::Name.generate(&spec(), 0, 0..260_000);
        let names = names.as_string_view();
        for name in NAMES {
            let count = names.iter().filter(|v| *v == Some(name)).count();
            assert!((9_400..10_600).contains(&count), "{name}: {count}");
        }
    }

    #[test]
    fn any_slice_equals_the_same_rows_of_the_whole() {
        for column in Column::ALL {
            let whole = column.generate(&spec(), 7, 0..1000);
            let part = column.generate(&spec(), 7, 400..650);
            assert_eq!(&whole.slice(400, 250), &part, "{column:?}");
        }
    }

    #[test]
    fn partitions_columns_and_seeds_get_different_streams() {
        let a = Column::X.generate(&spec(), 0, 0..100);
        assert_ne!(&a, &Column::X.generate(&spec(), 1, 0..100));
        assert_ne!(&a, &Column::Y.generate(&spec(), 0, 0..100));
        assert_ne!(&a, &Column::X.generate(&spec().with_seed(7), 0, 0..100));
        assert_eq!(&a, &Column::X.generate(&spec(), 0, 0..100));
    }
}
