//! The SQL front end: from SQL text to statements DataFusion can plan.
//!
//! [`script`] splits a script into statements and remembers where each one starts,
//! so an error deep inside the third statement of a file can still be reported as
//! `job.sql:3:17` (see [`Location`](crate::error::Location)).

pub mod script;
mod split;
pub mod stages;
mod visualize;

pub use script::{Statement, split_statements};
pub use stages::{PERSISTED_STAGES, StageGraph, Uncuttable, below_projections};
pub use visualize::MAX_DRAWN_TASKS;
pub(crate) use visualize::{Layout, Link, Row};
