//! The `rask` command line: an interactive SQL shell and batch SQL jobs on an
//! embedded local cluster.
//!
//! - [`args`]: the flags;
//! - [`allocator`]: which processes give up huge pages;
//! - [`runner`]: runs statements and prints their results (shared by both modes);
//! - [`query`]: `rask query -f job.sql` / `-c "SQL"`;
//! - [`scheduler_sql`]: when `rask query --scheduler` lets the scheduler plan;
//! - [`repl`]: `rask` / `rask sql`, interactive or fed through a pipe;
//! - [`progress`]: the progress bar both draw on a terminal;
//! - [`status`]: `rask status HOST:8786`, the workers table;
//! - [`cluster`]: `rask scheduler` and `rask worker`;
//! - [`settings`]: every flag from the environment and a config file too.

pub mod allocator;
pub mod args;
pub mod cluster;
pub mod completion;
pub mod progress;
pub mod query;
pub mod repl;
pub mod runner;
pub mod scheduler_sql;
pub mod settings;
pub mod status;

use std::process::ExitCode;

/// The allocator of the `rask` binary and of every binary built on this
/// crate (custom workers, `rask-bench`); see the `mimalloc` feature.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, FromArgMatches};

use args::{Cli, Command, RunArgs};

/// Runs the `rask` command with the process's arguments.
pub fn main() -> ExitCode {
    main_with(rask::udf::Registry::default())
}

/// Runs the `rask` command with the process's arguments, carrying `registry`:
/// its UDFs and task functions are usable from the shell and `rask query`, and
/// the workers this binary starts (`worker`, `worker-process`) announce and run
/// them. This is how a custom worker binary is made:
///
/// ```no_run
/// use rask::udf::{self, Registry};
///
/// fn main() -> std::process::ExitCode {
///     let registry = Registry::new().with_scalar(udf::scalar("square", |x: f64| x * x));
///     rask_cli::main_with(registry)
/// }
/// ```
/// `rask pg-verifier NAME`: the users-file line of NAME, for the password on
/// standard input (its first line).
fn pg_verifier(name: &str) -> bool {
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut password) {
        eprintln!("error: cannot read the password from standard input: {e}");
        return false;
    }
    let password = password.trim_end_matches(['\n', '\r']);
    if name.is_empty() || name.contains(':') || password.is_empty() {
        eprintln!("error: give a name without ':' and a password on standard input");
        return false;
    }
    println!(
        "{name}:{}",
        rask::internals::postgres::Verifier::from_password(password)
    );
    true
}

pub fn main_with(registry: rask::udf::Registry) -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (command, file) = match settings::load(Cli::command(), &args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let matches = command.clone().get_matches_from(&args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(Command::Config) = cli.command {
        print!("{}", settings::show(&command, &matches, file.as_ref()));
        return ExitCode::SUCCESS;
    }
    let serving = matches!(
        cli.command,
        Some(
            Command::Scheduler(_)
                | Command::Worker(_)
                | Command::WorkerProcess(_)
                | Command::Serve(_)
                | Command::Retire(_)
        )
    );
    let remote_client = matches!(cli.command, Some(Command::Status(_)))
        || (cli.run.scheduler.is_some() && !serving);
    if remote_client {
        allocator::small_pages_for_a_client();
    }
    // Cluster processes tell what they do, as Dask's do; SQL commands stay quiet.
    init_logging(cli.run.verbose + if serving { 1 } else { 0 });
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
    match &cli.command {
        Some(Command::Scheduler(args)) => {
            return exit(cluster::scheduler(&runtime, args, &cli.run));
        }
        Some(Command::Worker(args)) => return exit(cluster::nanny(&runtime, args, &cli.run)),
        Some(Command::WorkerProcess(args)) => {
            return cluster::worker_process(&runtime, args, &cli.run, registry);
        }
        Some(Command::Status(args)) => return exit(status::run(&runtime, args, &cli.run)),
        Some(Command::Retire(args)) => return exit(status::retire(&runtime, args, &cli.run)),
        Some(Command::PgVerifier(args)) => return exit(pg_verifier(&args.name)),
        _ => {}
    }
    if let Some(Command::Query(q)) = &cli.command {
        let Some(sources) = query::sources(q) else {
            return ExitCode::FAILURE;
        };
        let plans = scheduler_sql::plans_each_statement(&cli.run, q, &registry, &sources);
        let connecting = std::time::Instant::now();
        let session = match plans {
            Some(address) => {
                tracing::info!("the scheduler at {address} plans each statement");
                runtime
                    .block_on(rask::SchedulerSql::connect(
                        address,
                        cli.run.security.security(),
                    ))
                    .map(runner::Session::Scheduler)
            }
            None => runtime
                .block_on(client_for(&cli.run, registry))
                .map(runner::Session::Client),
        };
        let Some(session) = started(session, &cli.run, connecting) else {
            return ExitCode::from(2);
        };
        let runner = runner::Runner::new(session, &cli.run);
        return exit(query::run(&runtime, runner, q, sources));
    }
    let connecting = std::time::Instant::now();
    let client = runtime.block_on(client_for(&cli.run, registry));
    let Some(client) = started(client, &cli.run, connecting) else {
        return ExitCode::from(2);
    };
    if let Some(Command::Serve(args)) = &cli.command {
        return exit(cluster::serve(&runtime, args, &cli.run, client));
    }
    let runner = runner::Runner::new(runner::Session::Client(client.clone()), &cli.run);
    let ok = repl::run(&runtime, client, runner);
    exit(ok)
}

/// `session`, once connected (or started) at `connecting`, saying so with
/// `--timing`; `None` after printing why it could not be.
fn started<T>(
    session: rask::Result<T>,
    run: &RunArgs,
    connecting: std::time::Instant,
) -> Option<T> {
    match session {
        Ok(session) => {
            if run.timing {
                let cluster = match &run.scheduler {
                    Some(address) => format!("connected to {address}"),
                    None => "started the embedded cluster".to_string(),
                };
                eprintln!(
                    "{cluster} in {:.1} ms",
                    runner::millis(connecting.elapsed())
                );
            }
            Some(session)
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

pub(crate) fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A client of the cluster at `--scheduler`, else of an embedded one sized by the flags.
async fn client_for(run: &RunArgs, registry: rask::udf::Registry) -> rask::Result<rask::Client> {
    if let Some(address) = &run.scheduler {
        let client =
            rask::Client::connect_with_registry(address, run.security.security(), registry).await?;
        tracing::info!("connected:\n{client}");
        return Ok(client);
    }
    let mut config = rask::Config {
        registry,
        ..rask::Config::default()
    };
    if let Some(threads) = run.threads {
        config.threads = threads;
    }
    if let Some(workers) = run.workers {
        config.workers = workers;
    }
    config.memory_limit = run.memory_limit.for_config();
    rask::Client::with_config(config)
}

/// Logs to standard error: warnings, or more with each `-v` (info, debug,
/// trace); `RUST_LOG` overrides. Panics are caught and reported as errors by
/// the runner; their details go to the log at debug level instead of
/// interleaving with the output.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    std::panic::set_hook(Box::new(|info| tracing::debug!("caught panic: {info}")));
}
