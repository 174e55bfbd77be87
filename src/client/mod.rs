//! What users hold: the [`Client`], its [`Config`] and lazy [`DataFrame`]s.
//!
//! A client plans SQL into DataFusion logical plans without running them; a
//! [`DataFrame`] runs when it is collected or streamed. Today the plans run in the
//! client's embedded DataFusion session; the shared scheduler will take over
//! execution behind this same API.

mod config;
mod dataframe;

use datafusion::prelude::SessionContext;

pub use config::Config;
pub use dataframe::DataFrame;

use crate::planner::Location;
use crate::{Error, Result, exec};

/// A connection to a rask cluster: the entry point for SQL and dataframes.
///
/// Cloning a client is cheap; clones share the session and its tables.
#[derive(Clone)]
pub struct Client {
    ctx: SessionContext,
    config: Config,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish()
    }
}

impl Client {
    /// A client on an embedded local cluster sized from this machine.
    pub fn local() -> Result<Self> {
        Self::with_config(Config::default())
    }

    /// A client on an embedded local cluster configured by `config`.
    pub fn with_config(config: Config) -> Result<Self> {
        config.validate()?;
        let ctx = exec::new_context(&config)?;
        Ok(Self { ctx, config })
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Plans one SQL statement. Queries come back as a lazy [`DataFrame`];
    /// statements with effects (`CREATE EXTERNAL TABLE`, `SET`, …) take effect now.
    ///
    /// Errors carry the position in `sql` where DataFusion knows it
    /// ([`Error::location`]).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let frame = dataframe::catch_panics(self.ctx.sql(sql)).await??;
        Ok(DataFrame::new(frame))
    }

    /// The DataFusion session behind this client, for tools built on
    /// `SessionContext`. Tables registered there are visible to [`Client::sql`].
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }
}

/// An error in a script, placed in the script's own lines and columns.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {error}")]
pub struct ScriptError {
    /// Where the problem is: the exact spot when known, else the failing
    /// statement's first token.
    pub location: Location,
    /// What went wrong.
    pub error: Error,
}

impl ScriptError {
    /// Places `error`, raised by the statement starting at `start`, in the script.
    pub fn in_statement(error: Error, start: Location) -> Self {
        let location = error.location().map_or(start, |l| l.offset_by(start));
        Self { location, error }
    }

    /// Places an error that has its own location in the script (or none).
    pub fn in_script(error: Error) -> Self {
        Self {
            location: error.location().unwrap_or(Location::START),
            error,
        }
    }
}
