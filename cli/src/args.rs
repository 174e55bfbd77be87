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

    /// Threads per worker of the embedded cluster [default: the machine's cores].
    #[arg(long, global = true)]
    pub threads: Option<usize>,

    /// Workers of the embedded cluster [default: 1].
    #[arg(long, global = true)]
    pub workers: Option<usize>,

    /// Memory queries may hold before spilling to disk, e.g. 2GiB or 512MB.
    #[arg(long, value_parser = parse_bytes, global = true)]
    pub memory_limit: Option<usize>,
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
    }
}
