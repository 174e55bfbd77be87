//! # rask
//!
//! Dask rebuilt in Rust around a SQL engine. SQL statements, dataframe calls and
//! plain Rust functions become one partitioned task graph, run by one scheduler on
//! in-process workers (the embedded default) or on worker processes across machines.
//!
//! The front door is [`Client`]:
//!
//! ```no_run
//! # async fn demo() -> rask::Result<()> {
//! let client = rask::Client::local()?;
//! let df = client
//!     .sql("SELECT name, max(x), avg(y) FROM timeseries() GROUP BY name")
//!     .await?; // planned, not run
//! let batches = df.collect().await?; // run on the cluster
//! # Ok(()) }
//! ```
//!
//! The crate is split by layer (see `ARCHITECTURE.md`): [`client`] is what users
//! hold, [`planner`] turns SQL text into plans, [`exec`] configures and runs
//! DataFusion, [`datasets`] holds built-in data generators such as
//! [`timeseries`](datasets::timeseries), and [`output`] renders results.

pub mod client;
pub mod cluster;
pub mod comm;
pub mod dashboard;
pub mod datasets;
pub mod error;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod key;
pub mod net;
pub mod output;
pub mod planner;
pub mod postgres;
pub mod scheduler;
pub mod udf;
pub mod worker;

pub use client::{
    Agg, Client, Config, DataFrame, Delayed, Function, Future, FutureStatus, How, LocalCluster,
    TaskGraph, as_completed, gather, wait,
};
pub use error::{Error, Result};
pub use key::Key;

/// The DataFusion version rask is built on, re-exported so users need not pin it.
pub use datafusion;
/// Arrow, as used by DataFusion.
pub use datafusion::arrow;
