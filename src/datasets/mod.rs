//! Built-in datasets, generated on the fly.
//!
//! [`timeseries`] is the random table Dask users know from
//! `dask.datasets.timeseries()`, available in SQL as `timeseries(...)`.

pub mod timeseries;

pub use timeseries::{TimeseriesFunction, TimeseriesSpec, TimeseriesTable};

/// Makes the built-in datasets callable from `ctx`'s SQL (`timeseries(...)`).
pub fn install(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udtf("timeseries", std::sync::Arc::new(TimeseriesFunction));
}
