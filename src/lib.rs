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
//! What users hold is re-exported here: [`Client`] and the [`DataFrame`]s,
//! [`Future`]s and [`Delayed`] calls it makes, [`Config`] and
//! [`LocalCluster`], user functions ([`udf`]), built-in data ([`datasets`])
//! and renderers ([`output`]). The layers beneath (see `ARCHITECTURE.md`) are
//! private; rask's own binaries reach them through a hidden module, which is
//! not part of the API.

mod client;
mod cluster;
mod comm;
mod dashboard;
pub mod datasets;
mod error;
mod exec;
mod fuzzing;
mod key;
mod net;
pub mod output;
mod planner;
mod postgres;
mod scheduler;
pub mod udf;
mod worker;

pub use client::delayed;
pub use client::{
    Agg, Argument, CallArgs, Client, Compute, Config, DataFrame, Delayed, Function, Future,
    FutureStatus, GroupBy, How, IntoArg, LocalCluster, LocalClusterBuilder, Report, Scatter,
    SchedulerSql, Structure, TaskGraph, TimeseriesBuilder, as_completed, gather, wait,
};
pub use cluster::{ClusterInfo, WorkerInfo, WorkerState};
pub use error::{Error, Location, Result};
pub use exec::{TaskData, Value, ValueError};
pub use key::Key;
pub use net::{Security, TlsFiles};
pub use scheduler::{GroupProgress, TaskError};

/// The DataFusion version rask is built on, re-exported so users need not pin it.
pub use datafusion;
/// Arrow, as used by DataFusion.
pub use datafusion::arrow;

/// rask's layers, for rask's own binaries, tests and benchmarks: not part of
/// the API, and changed without notice.
#[doc(hidden)]
pub mod internals {
    /// The stages `frame` runs as (for tests that check how plans are cut).
    pub async fn stages(
        frame: &crate::DataFrame,
    ) -> crate::Result<crate::internals::planner::StageGraph> {
        frame.stages().await
    }

    pub mod client {
        pub use crate::client::*;
    }
    pub mod cluster {
        pub use crate::cluster::*;
    }
    pub mod comm {
        pub use crate::comm::*;
    }
    pub mod dashboard {
        pub use crate::dashboard::*;
    }
    pub mod error {
        pub use crate::error::*;
    }
    pub mod exec {
        pub use crate::exec::*;
    }
    pub mod key {
        pub use crate::key::*;
    }
    pub mod net {
        pub use crate::net::*;
    }
    pub mod planner {
        pub use crate::planner::*;
    }
    pub mod postgres {
        pub use crate::postgres::*;
    }
    pub mod scheduler {
        pub use crate::scheduler::*;
    }
    pub mod worker {
        pub use crate::worker::*;
    }
    pub mod fuzzing {
        pub use crate::fuzzing::*;
    }
}

/// README.md's Rust examples, compiled by `cargo test --doc`.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeExamples;
