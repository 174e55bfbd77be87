//! The `rask` command line: an interactive SQL shell and batch SQL jobs on an
//! embedded local cluster.
//!
//! - [`args`]: the flags;
//! - [`runner`]: runs statements and prints their results (shared by both modes);
//! - [`query`]: `rask query -f job.sql` / `-c "SQL"`;
//! - [`repl`]: `rask` / `rask sql`, interactive or fed through a pipe.

pub mod args;
pub mod query;
pub mod repl;
pub mod runner;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, RunArgs};

/// Runs the `rask` command with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rask")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match client_for(&cli.run) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runner = runner::Runner::new(client, &cli.run);
    let ok = match cli.command {
        Some(Command::Query(q)) => query::run(&runtime, runner, &q),
        Some(Command::Sql) | None => repl::run(&runtime, runner),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn client_for(run: &RunArgs) -> rask::Result<rask::Client> {
    let mut config = rask::Config::default();
    if let Some(threads) = run.threads {
        config.threads = threads;
    }
    if let Some(workers) = run.workers {
        config.workers = workers;
    }
    config.memory_limit = run.memory_limit;
    rask::Client::with_config(config)
}

/// Logs to standard error at the level `RUST_LOG` asks for (warnings by default).
/// Panics are caught and reported as errors by the runner; their details go to
/// the log at debug level instead of interleaving with the output.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    std::panic::set_hook(Box::new(|info| tracing::debug!("caught panic: {info}")));
}
