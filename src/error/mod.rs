//! rask's error type.
//!
//! One enum for the whole crate. DataFusion errors keep their structure (wrapped,
//! not flattened into strings) so callers can still find the SQL position of a
//! planning error; [`Error::describe`] renders them for people, without the
//! debug-formatting and backtraces DataFusion's own `Display` may include.

mod location;

use std::path::PathBuf;

use datafusion::error::DataFusionError;

pub(crate) use location::strip_position;
pub use location::{Location, locate};

/// The result type of every fallible rask call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in rask.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Planning or running a query failed inside DataFusion.
    #[error("{}", describe_datafusion(.0))]
    DataFusion(#[from] DataFusionError),

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// SQL text that could not be split into statements (an unterminated quote or
    /// comment), with where it starts.
    #[error("{message}")]
    Script {
        /// What is wrong.
        message: String,
        /// Where, in the script.
        location: Location,
    },

    /// A bug: code rask runs (its own, DataFusion's, a file reader's) panicked.
    /// The panic is caught and reported instead of taking the process down.
    #[error("internal error: {0}")]
    Panic(String),

    /// A task on the cluster failed (or an input of it did).
    #[error("{0}")]
    Task(std::sync::Arc<crate::scheduler::TaskError>),

    /// A task's value is not of the type it was read as.
    #[error("{0}")]
    Value(#[from] crate::exec::ValueError),

    /// The value of a key could not be read as the type asked for.
    #[error("cannot read the value of {key}: {source}")]
    Decode {
        /// The key.
        key: crate::Key,
        /// Why.
        source: crate::exec::ValueError,
    },

    /// A finished result is no longer held by any worker.
    #[error("the result of {0} was lost with its worker")]
    Lost(crate::Key),

    /// The query was cancelled by the user.
    #[error("query cancelled")]
    Cancelled,

    /// Another process of the cluster could not be reached.
    #[error("cannot reach {address}: {message}")]
    Connect {
        /// Its address.
        address: String,
        /// Why.
        message: String,
    },

    /// A process of the cluster refused this one for good: a wrong or missing
    /// token, another protocol version. Trying again does not help.
    #[error("{address} refused this process: {message}")]
    Refused {
        /// Its address.
        address: String,
        /// Why.
        message: String,
    },

    /// SQL asked to read or write a file or URL its server does not allow.
    #[error("{location} is not among the paths and URLs this server allows (see {flag})")]
    Denied {
        /// The path or URL.
        location: String,
        /// The flag that would allow it.
        flag: &'static str,
    },

    /// A port would listen beyond this machine with nothing to check who
    /// connects.
    #[error(
        "refusing to serve {port} on {address} to anyone who can reach it: give the cluster a token (--auth-token or RASK_AUTH_TOKEN) or TLS (--tls-cert, --tls-key, --tls-ca), listen on 127.0.0.1, or pass --insecure to accept the risk"
    )]
    Exposed {
        /// What the port serves.
        port: &'static str,
        /// Where it would listen.
        address: std::net::SocketAddr,
    },

    /// A connection between processes of the cluster failed or was refused.
    #[error("{0}")]
    Comm(String),

    /// A statement the scheduler planned and ran for this client (`rask
    /// query --scheduler`) failed there.
    #[error("{message}")]
    Remote {
        /// What went wrong, as the scheduler said it.
        message: String,
        /// Where in the statement, when known.
        location: Option<Location>,
    },

    /// A configuration value that makes no sense.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Where in the SQL text the problem lies, when it is known: a parse error,
    /// an unknown table or column, a type error on an expression.
    ///
    /// The location is relative to the SQL text given to [`crate::Client::sql`].
    pub fn location(&self) -> Option<Location> {
        match self {
            Error::DataFusion(e) => locate(e),
            Error::Script { location, .. } => Some(*location),
            Error::Remote { location, .. } => *location,
            _ => None,
        }
    }
}

/// Renders a DataFusion error for a person: the innermost useful message, without
/// the `ParserError("...")` debug wrapping, position suffixes or backtraces.
fn describe_datafusion(err: &DataFusionError) -> String {
    match err {
        DataFusionError::SQL(parser, _) => strip_position(&parser.to_string()),
        DataFusionError::Diagnostic(_, inner) => describe_datafusion(inner),
        DataFusionError::Context(ctx, inner) => format!("{ctx}: {}", describe_datafusion(inner)),
        DataFusionError::Shared(inner) => describe_datafusion(inner),
        DataFusionError::External(inner) => match inner.downcast_ref::<DataFusionError>() {
            Some(df) => describe_datafusion(df),
            None => match inner.downcast_ref::<Error>() {
                Some(own) => own.to_string(),
                None => inner.to_string(),
            },
        },
        DataFusionError::Collection(errs) => errs
            .iter()
            .map(describe_datafusion)
            .collect::<Vec<_>>()
            .join("; "),
        other => other.strip_backtrace(),
    }
}

impl Error {
    /// The error for a caught panic with payload `payload`.
    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        Error::Panic(crate::exec::panic_message(payload.as_ref()))
    }
}

/// Runs `future`, turning a panic inside it into [`Error::Panic`].
pub(crate) async fn catch_panics<T>(future: impl Future<Output = T>) -> Result<T> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(Error::from_panic)
}
