//! Built-in datasets, generated on the fly.
//!
//! [`timeseries`] is the random table Dask users know from
//! `dask.datasets.timeseries()`, available in SQL as `timeseries(...)`.

pub mod timeseries;

pub use timeseries::{TimeseriesFunction, TimeseriesSpec, TimeseriesTable};
