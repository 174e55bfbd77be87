//! `timeseries(start, end, freq, partition_freq, seed)`: Dask's random demo table.
//!
//! The same shape as `dask.datasets.timeseries`: one row every `freq` from `start`
//! (inclusive) to `end` (exclusive), cut into partitions of `partition_freq`, with
//! columns
//!
//! | column      | type                  | values                                |
//! |-------------|-----------------------|---------------------------------------|
//! | `timestamp` | timestamp (ns)        | `start`, `start + freq`, …            |
//! | `id`        | int64                 | Poisson, λ = 1000                     |
//! | `name`      | string                | one of 26 names, Alice … Zelda        |
//! | `x`, `y`    | float64               | uniform in [-1, 1)                    |
//!
//! Every value is a pure function of `(seed, partition, column, row)`, so each
//! partition is generated lazily, independently and in parallel, the same on any
//! worker and on any rerun; the table is never materialised whole.
//!
//! - [`spec`]: the parameters and the partition arithmetic;
//! - [`generate`]: the column generators;
//! - [`exec`]: the DataFusion leaf node that produces one partition's batches;
//! - [`table`]: the SQL table function and its argument parsing.

pub mod exec;
pub mod generate;
pub mod spec;
pub mod table;

pub use exec::TimeseriesExec;
pub use spec::TimeseriesSpec;
pub use table::{TimeseriesFunction, TimeseriesTable};
