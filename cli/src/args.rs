//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rask::output::Format;

/// rask: Dask rebuilt in Rust around a SQL engine.
///
/// With no command, starts the interactive SQL shell on an embedded local cluster
/// (or reads statements from standard input when it is not a terminal).
#[derive(Debug, Parser)]
#[command(name = "rask", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The interactive SQL shell (the default command).
    Sql,
    /// Run SQL from files or the command line as a batch job.
    ///
    /// Statements run in order; the first one that fails stops the job with a
    /// message `error: FILE:LINE:COL: ...` and a non-zero exit code.
    Query(QueryArgs),
    /// Start a scheduler that workers register with and clients connect to.
    Scheduler(SchedulerArgs),
    /// Start workers for a scheduler, each watched by a nanny that restarts it
    /// if it dies.
    Worker(WorkerArgs),
    /// One worker process, as a nanny starts it.
    #[command(hide = true)]
    WorkerProcess(WorkerProcessArgs),
    /// Print the workers of the scheduler at HOST:PORT: what each holds and does.
    Status(StatusArgs),
    /// Print the settings in effect, and where each came from: a flag, the
    /// environment (RASK_*), the config file, or rask's default.
    ///
    /// The config file is --config FILE (or RASK_CONFIG), else
    /// $XDG_CONFIG_HOME/rask/config.toml (~/.config/rask/config.toml): the
    /// flags every command takes at its top, each command's own in a table
    /// named after it (`[scheduler]`, `[worker]`, `[serve]`, ...). A flag wins over
    /// the environment, the environment over the file.
    Config,
    /// Retire workers gracefully: what they hold moves to other workers, then
    /// they exit (their nannies do not restart them).
    Retire(RetireArgs),
    /// Serve SQL to PostgreSQL clients (psql, drivers, BI tools) from an
    /// embedded local cluster, until Ctrl-C.
    Serve(ServeArgs),
    /// Print a line of a `--pg-users-file` for a user, from the password read
    /// on standard input: NAME:SCRAM-SHA-256$… (no password is kept).
    PgVerifier(PgVerifierArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PgVerifierArgs {
    /// The user's name.
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// The port of the PostgreSQL wire protocol (0 for any free one).
    #[arg(long, default_value_t = 5433)]
    pub pg_port: u16,

    #[command(flatten)]
    pub pg: PgUsers,

    /// Exit when standard input closes (for supervisors and tests).
    #[arg(long, hide = true)]
    pub watch_stdin: bool,
}

/// Who may connect to the PostgreSQL port, and what their SQL may touch.
#[derive(Debug, Clone, Args)]
pub struct PgUsers {
    /// A PostgreSQL user, NAME:PASSWORD (may be repeated), who logs in by
    /// SCRAM-SHA-256. Without any, the cluster's token is the password (by
    /// SCRAM too); without a token either, connections are trusted.
    #[arg(long = "pg-user", value_name = "NAME:PASSWORD", value_parser = rask::internals::postgres::parse_user, hide_env_values = true)]
    pub users: Vec<(String, String)>,

    /// A file of PostgreSQL users, a line each: NAME:SCRAM-SHA-256$… (the
    /// verifier PostgreSQL keeps in pg_authid, or `rask pg-verifier` prints).
    #[arg(long = "pg-users-file", value_name = "FILE")]
    pub users_file: Option<PathBuf>,

    /// A folder PostgreSQL sessions may read and write files under (may be
    /// repeated); with none, they touch no local file.
    #[arg(long = "allow-path", value_name = "PATH")]
    pub allow_paths: Vec<PathBuf>,

    /// A URL prefix PostgreSQL sessions may read and write under, such as
    /// s3://bucket/data/ (may be repeated); with none, they touch no URL.
    #[arg(long = "allow-url", value_name = "PREFIX")]
    pub allow_urls: Vec<String>,

    /// PostgreSQL connections open at once; more are told "too many clients"
    /// (SQLSTATE 53300).
    #[arg(long = "pg-max-connections", value_name = "N", default_value_t = rask::internals::postgres::MAX_CONNECTIONS)]
    pub max_connections: usize,
}

impl PgUsers {
    /// The logins, with `token` the cluster's.
    pub fn logins(&self, token: Option<&str>) -> rask::Result<rask::internals::postgres::Logins> {
        rask::internals::postgres::Logins::new(&self.users, self.users_file.as_deref(), token)
    }

    /// What the sessions' SQL may touch.
    pub fn access(&self) -> rask::Result<rask::internals::postgres::Access> {
        rask::internals::postgres::Access::new(&self.allow_paths, &self.allow_urls)
    }
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The scheduler, HOST:PORT.
    #[arg(value_name = "HOST:PORT")]
    pub scheduler: String,
}

#[derive(Debug, Clone, Args)]
pub struct RetireArgs {
    /// The workers: addresses (as `rask status` shows them), names or ids.
    #[arg(value_name = "WORKER", required = true)]
    pub retiring: Vec<String>,
}

/// Token and TLS, shared by every command that talks to a cluster.
#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// A shared secret every connection of the cluster must present.
    #[arg(long, env = "RASK_AUTH_TOKEN", hide_env_values = true, global = true)]
    pub auth_token: Option<String>,

    /// This process's TLS certificate (PEM); turns TLS on, with --tls-key and --tls-ca.
    #[arg(long, value_name = "PEM", global = true, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The authority that signed every certificate of the cluster (PEM).
    #[arg(long, value_name = "PEM", global = true, requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,

    /// Listen beyond this machine even with neither token nor TLS, so that
    /// anyone who can reach a port may use the cluster.
    #[arg(long, global = true)]
    pub insecure: bool,
}

impl SecurityArgs {
    /// The settings as the library takes them.
    pub fn security(&self) -> rask::internals::net::Security {
        let tls = match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(rask::internals::net::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            _ => None,
        };
        rask::internals::net::Security {
            token: self.auth_token.clone().filter(|t| !t.is_empty()),
            tls,
            insecure: self.insecure,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    /// The interface to listen on (127.0.0.1: only this machine; 0.0.0.0: all).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// The port workers and clients connect to (0 for any free one).
    #[arg(long, default_value_t = 8786)]
    pub port: u16,

    /// Where the dashboard is served, e.g. :8787 (the scheduler's host) or
    /// HOST:PORT; a port in use falls back to a free one, with a warning.
    #[arg(long, default_value = ":8787")]
    pub dashboard_address: String,

    /// Seconds a worker may stay silent before it is considered dead.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat_timeout: f64,

    /// The address workers and clients are given for this scheduler
    /// (HOST:PORT, or HOST for the listening port) [default: the address
    /// listened on; on every interface, the first that is not loopback].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub contact_address: Option<String>,

    /// Also serve SQL to PostgreSQL clients on this port (0 for any free one),
    /// each connection a client of this scheduler's cluster. Off unless given.
    #[arg(long)]
    pub pg_port: Option<u16>,

    #[command(flatten)]
    pub pg: PgUsers,

    /// Exit when standard input closes (for supervisors and tests).
    #[arg(long, hide = true)]
    pub watch_stdin: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The scheduler, HOST:PORT.
    pub scheduler: String,

    /// Worker processes to start.
    #[arg(long, default_value_t = 1, alias = "nprocs")]
    pub nworkers: usize,

    /// Exit when standard input closes (for supervisors and tests).
    #[arg(long, hide = true)]
    pub watch_stdin: bool,

    #[command(flatten)]
    pub process: WorkerSettings,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerProcessArgs {
    /// The scheduler, HOST:PORT.
    pub scheduler: String,

    #[command(flatten)]
    pub process: WorkerSettings,

    /// Exit when standard input closes (the nanny is gone).
    #[arg(long, hide = true)]
    pub watch_stdin: bool,
}

/// What each worker process is given.
#[derive(Debug, Clone, Args)]
pub struct WorkerSettings {
    /// Task slots per worker [default: the machine's cores / --nworkers].
    #[arg(long)]
    pub nthreads: Option<usize>,

    /// The workers' name (numbered when there are several).
    #[arg(long)]
    pub name: Option<String>,

    /// Where workers spill to disk: each makes a folder of its own in it, mode
    /// 0700, removed when it exits [default: the system's temporary directory].
    #[arg(long)]
    pub local_directory: Option<PathBuf>,

    /// The interface workers serve results on [default: 127.0.0.1 for a
    /// scheduler on loopback, else every interface (0.0.0.0)].
    #[arg(long)]
    pub host: Option<String>,

    /// The port workers serve results on (with several workers, one port
    /// each from this one up) [default: any free port].
    #[arg(long, value_name = "PORT")]
    pub worker_port: Option<u16>,

    /// The address other processes are given for this worker (HOST:PORT, or
    /// HOST for the listening port) [default: the address listened on; on
    /// every interface, that of the interface that routes to the scheduler].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub contact_address: Option<String>,

    /// Seconds a worker keeps trying to reach a scheduler it lost (or never
    /// reached) before it exits with an error.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub death_timeout: f64,

    /// Seconds between heartbeats to the scheduler.
    #[arg(long, default_value_t = 1.0, hide = true)]
    pub heartbeat: f64,
}

/// `--memory-limit`: a size, a share of the machine's memory, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// This many bytes.
    Bytes(usize),
    /// The machine's memory (or its container's limit, when lower) divided
    /// among the workers: the default.
    Auto,
    /// No limit (`0` or `none`).
    Unlimited,
}

impl MemoryLimit {
    /// The bytes for each of `workers` workers; `None` for no limit.
    pub fn per_worker(self, workers: usize) -> Option<usize> {
        match self {
            MemoryLimit::Bytes(bytes) => Some(bytes),
            MemoryLimit::Auto => Some(
                (rask::internals::worker::memory::available() / workers.max(1) as u64) as usize,
            ),
            MemoryLimit::Unlimited => None,
        }
    }

    /// As [`rask::Config::memory_limit`] takes it.
    pub fn for_config(self) -> Option<usize> {
        match self {
            MemoryLimit::Bytes(bytes) => Some(bytes),
            MemoryLimit::Auto => None,
            MemoryLimit::Unlimited => Some(0),
        }
    }
}

fn parse_memory_limit(s: &str) -> Result<MemoryLimit, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(MemoryLimit::Auto),
        "0" | "none" | "off" => Ok(MemoryLimit::Unlimited),
        _ => parse_bytes(s).map(MemoryLimit::Bytes),
    }
}

/// Options shared by every command that runs SQL.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Output format.
    #[arg(long, default_value_t = Format::Table, value_parser = parse_format, global = true)]
    pub format: Format,

    /// Rows the table format shows before eliding the middle ("all" for no limit).
    #[arg(long, default_value = "40", value_parser = parse_maxrows, global = true)]
    pub maxrows: MaxRows,

    /// Print how long each statement took (on standard error).
    #[arg(long, global = true)]
    pub timing: bool,

    /// Draw no progress bar (one is drawn on standard error while a query
    /// runs, when that is a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// Threads per worker of the embedded cluster [default: the machine's cores].
    #[arg(long, global = true)]
    pub threads: Option<usize>,

    /// Workers of the embedded cluster [default: 1].
    #[arg(long, global = true)]
    pub workers: Option<usize>,

    /// Memory each worker may hold (its queries, and its results, which spill
    /// to disk past 60 % of it): a size such as 2GiB or 512MB, "auto" (the
    /// machine's memory, or the container's limit, divided among the workers),
    /// or 0 / "none" for no limit.
    #[arg(long, value_parser = parse_memory_limit, default_value = "auto", global = true)]
    pub memory_limit: MemoryLimit,

    /// Run on the cluster of the scheduler at HOST:PORT instead of an embedded one.
    #[arg(long, value_name = "HOST:PORT", env = "RASK_SCHEDULER", global = true)]
    pub scheduler: Option<String>,

    /// Read settings from this TOML file [default:
    /// $XDG_CONFIG_HOME/rask/config.toml, if it exists]; `rask config` shows them.
    #[arg(long, value_name = "FILE", env = "RASK_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Log more (-v: info, -vv: debug); RUST_LOG sets levels in detail.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// A SQL file to run (may be repeated; "-" reads standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// SQL to run (may be repeated; runs before any --file).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,

    /// Show the stages and task counts each query would run as, instead of running it.
    #[arg(long)]
    pub explain: bool,

    /// Also write each query's task graph to this file: SVG, or Graphviz DOT
    /// when it ends in `.dot` (with several queries, the last one's).
    #[arg(long, value_name = "FILE")]
    pub visualize: Option<PathBuf>,
    /// Also write a report of the run to FILE: one HTML page that opens
    /// offline, with the task stream, progress and time per stage, transfers
    /// and spills, memory per worker, and each query with its stages (Dask's
    /// performance_report).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the results to FILE (created, or truncated) instead of standard output
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Set a variable for the SQL, as psql's --set: `:NAME` is replaced by VALUE,
    /// `:'NAME'` by it as a string, `:"NAME"` as an identifier (repeatable)
    #[arg(long = "set", alias = "variable", value_name = "NAME=VALUE", value_parser = parse_variable)]
    pub variables: Vec<(String, String)>,
    /// With --scheduler: plan each statement in this process, not on the
    /// scheduler (which plans them when nothing needs them here)
    #[arg(long)]
    pub plan_here: bool,
}

/// How many rows the table view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxRows(pub Option<usize>);

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_maxrows(s: &str) -> Result<MaxRows, String> {
    match s {
        "all" | "inf" | "0" => Ok(MaxRows(None)),
        n => n
            .parse()
            .map(|n| MaxRows(Some(n)))
            .map_err(|_| format!("'{n}' is not a number of rows (or 'all')")),
    }
}

/// Parses sizes such as `2GiB`, `512MB`, `1e9` or `1000000`.
/// `NAME=VALUE`, for `--set`.
fn parse_variable(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{name:?} is not a variable name (letters, digits and _)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 2GiB, 512MB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "'{s}' has an unknown unit '{other}' (use B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    let bytes = number * scale;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < usize::MAX as f64) {
        return Err(format!("'{s}' is not a usable size"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("512MB"), Ok(512_000_000));
        assert_eq!(parse_bytes("1e9"), Ok(1_000_000_000));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("0").is_err());
        assert_eq!(parse_memory_limit("auto"), Ok(MemoryLimit::Auto));
        assert_eq!(parse_memory_limit("1KiB"), Ok(MemoryLimit::Bytes(1024)));
        assert_eq!(parse_memory_limit("0"), Ok(MemoryLimit::Unlimited));
        assert_eq!(parse_memory_limit("none"), Ok(MemoryLimit::Unlimited));
        assert_eq!(MemoryLimit::Unlimited.per_worker(2), None);
        let whole = MemoryLimit::Auto.per_worker(1).unwrap();
        let half = MemoryLimit::Auto.per_worker(2).unwrap();
        assert!(half > 0 && half <= whole / 2 + 1, "{half} of {whole}");
    }
}
