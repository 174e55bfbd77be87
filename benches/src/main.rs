//! `rask-bench`: rask next to bare DataFusion, on the same data, in the same run.
//!
//! ```text
//! cargo build --release -p rask-cli -p rask-bench
//! target/release/rask-bench walkthrough --runs 10
//! ```
//!
//! Each measurement runs both sides alternately (rask first in one run,
//! DataFusion first in the next), `--runs` times after a warm-up of each, and
//! reports the median, the range and the ratio rask / DataFusion. Whole-process timings
//! include start-up on both sides: `rask query -c SQL` against this binary's
//! `datafusion-sql -c SQL`, a plain DataFusion `SessionContext` with the same
//! partition count.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod chaos;
mod general_compute;
mod peers;
mod postgres;
#[path = "../../tests/common/processes.rs"]
mod processes;
mod queries;
mod report;
mod timing;
mod tpch;
mod walkthrough;

use peers::{PeerTimes, peer_script};
use processes::ProcessCluster;
use timing::{Stats, alternate, args, compare, print_pair, run_once, whole_processes};

use clap::{Parser, Subcommand};
use futures::StreamExt;
use rask::datafusion::execution::TaskContext;
use rask::datafusion::execution::memory_pool::FairSpillPool;
use rask::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use rask::datafusion::physical_plan::ExecutionPlan;
use rask::datafusion::prelude::{SessionConfig, SessionContext};
use rask::datasets::timeseries::{TimeseriesExec, TimeseriesSpec};
use report::Report;

#[derive(Parser)]
#[command(about = "rask side by side with bare DataFusion")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
    /// Where the suite's figures go as JSON [default: target/bench-results/SUITE.json].
    #[arg(long, global = true, value_name = "PATH")]
    json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Suite {
    /// The walkthrough's groupby over a Parquet month and timeseries() generation.
    Walkthrough {
        /// Runs per measurement.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Threads (and partitions) on both sides.
        #[arg(long, default_value_t = available_cores())]
        threads: usize,
        /// Where the Parquet copy of the month is written once and reused.
        #[arg(long, default_value = "target/bench-data")]
        data: PathBuf,
        /// Also run the same steps on Dask (`benches/peers/walkthrough_dask.py`,
        /// needs `dask[distributed]` in `$RASK_PYTHON` or `python3`).
        #[arg(long)]
        peers: bool,
    },
    /// No-op task throughput by graph shape and size, on the local cluster and
    /// on a scheduler with 2 worker processes.
    Scheduler {
        /// Graph sizes, in tasks.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
        /// Timed runs per shape and size (after a warm-up graph of the smallest size).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Threads in all (the local cluster's one worker; split over the 2 processes).
        #[arg(long, default_value_t = available_cores())]
        threads: usize,
        /// Graph shapes to run.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "independent,chain,fan-in-tree,shuffle"
        )]
        shapes: Vec<general_compute::Shape>,
        /// Clusters to run on.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "local,local-watched,processes"
        )]
        clusters: Vec<general_compute::ClusterKind>,
    },
    /// TPC-H: the 22 queries on a scheduler with 2 worker processes, next to
    /// bare DataFusion (and DuckDB with --peers), answers checked.
    Tpch {
        /// Scale factor (1 is 6 million lineitems).
        #[arg(long, default_value_t = 1.0)]
        sf: f64,
        /// Runs per query and engine.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Threads on each side.
        #[arg(long, default_value_t = available_cores())]
        threads: usize,
        /// Where the data is generated once and kept.
        #[arg(long, default_value = "target/bench-data")]
        data: PathBuf,
        /// Also run DuckDB (Python package `duckdb`) on the same files.
        #[arg(long)]
        peers: bool,
        /// Only these queries, by number.
        #[arg(long, value_delimiter = ',')]
        queries: Vec<usize>,
        /// Memory each worker may use (e.g. 2GiB): the workers get it as
        /// `--memory-limit`, DataFusion a spilling pool of the two workers'
        /// sum; peak resident memory is reported against it.
        #[arg(long, value_parser = rask_cli::args::parse_bytes)]
        memory_limit: Option<usize>,
    },
    /// Fifteen small queries over a 10-day Parquet copy of Dask's data, each a
    /// `rask query --scheduler` process on a scheduler with 2 worker
    /// processes, next to bare DataFusion in this process; answers checked.
    Queries {
        /// Runs per query and side.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Threads in all (split over the 2 worker processes) and
        /// DataFusion's partitions.
        #[arg(long, default_value_t = available_cores())]
        threads: usize,
        /// Where the Parquet copy is written once and reused.
        #[arg(long, default_value = "target/bench-data")]
        data: PathBuf,
    },
    /// TPC-H's 22 queries in a loop on a scheduler with 2 worker processes,
    /// a random worker killed every --kill-every seconds; every answer checked.
    Chaos {
        /// How long the loop with kills runs.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Seconds between kills.
        #[arg(long, default_value_t = 10.0)]
        kill_every: f64,
        /// Scale factor.
        #[arg(long, default_value_t = 1.0)]
        sf: f64,
        /// Threads in all.
        #[arg(long, default_value_t = available_cores())]
        threads: usize,
        /// Where the data is generated once and kept.
        #[arg(long, default_value = "target/bench-data")]
        data: PathBuf,
    },
    /// The walkthrough's general compute: 650 delayed calls, no-op task
    /// throughput, scatter; local cluster and 2 worker processes (and Dask
    /// with --peers).
    Futures {
        /// Runs per measurement.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// No-op tasks submitted and gathered per run.
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        /// Also run Dask (`benches/peers/people_dask.py`).
        #[arg(long)]
        peers: bool,
    },
    /// The PostgreSQL protocol: a 1-row query and 100,000 rows through psql
    /// and psycopg to `rask serve`, next to `rask query` and bare DataFusion.
    Postgres {
        /// Runs per measurement.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Threads on each side.
        #[arg(long, default_value_t = available_cores())]
        threads: usize,
    },
    /// The baseline: run SQL on a plain DataFusion SessionContext, print CSV.
    #[command(hide = true)]
    DatafusionSql {
        #[arg(short = 'c')]
        sql: String,
        #[arg(long)]
        threads: usize,
    },
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> std::process::ExitCode {
    // Started as a cluster process of the futures suite.
    if let Some(code) = general_compute::as_rask() {
        return code;
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rask-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let name = match &cli.suite {
        Suite::Walkthrough { .. } => "walkthrough".to_string(),
        Suite::Scheduler { .. } => "scheduler".to_string(),
        Suite::Tpch { sf, .. } if *sf == 1.0 => "tpch".to_string(),
        Suite::Tpch { sf, .. } => format!("tpch-sf{sf}"),
        Suite::Futures { .. } => "futures".to_string(),
        Suite::Postgres { .. } => "postgres".to_string(),
        Suite::Chaos { .. } => "chaos".to_string(),
        Suite::Queries { .. } => "queries".to_string(),
        Suite::DatafusionSql { sql, threads } => {
            return runtime.block_on(datafusion_sql(sql, *threads));
        }
    };
    let mut report = Report::new(&name, cli.json);
    let report = &mut report;
    let ran = match cli.suite {
        Suite::Walkthrough {
            runs,
            threads,
            data,
            peers,
        } => runtime.block_on(walkthrough::walkthrough(
            runs, threads, &data, peers, report,
        )),
        Suite::Tpch {
            sf,
            runs,
            threads,
            data,
            peers,
            queries,
            memory_limit,
        } => runtime.block_on(tpch::run(
            tpch::Options {
                sf,
                runs,
                threads,
                data,
                peers,
                only: queries,
                memory_limit,
            },
            report,
        )),
        Suite::Chaos {
            minutes,
            kill_every,
            sf,
            threads,
            data,
        } => runtime.block_on(chaos::run(
            chaos::Options {
                minutes,
                kill_every,
                sf,
                threads,
                data,
            },
            report,
        )),
        Suite::Queries {
            runs,
            threads,
            data,
        } => runtime.block_on(queries::run(runs, threads, &data, report)),
        Suite::DatafusionSql { .. } => Ok(()),
        Suite::Postgres { runs, threads } => {
            runtime.block_on(postgres::run(postgres::Options { runs, threads }, report))
        }
        Suite::Futures { runs, tasks, peers } => runtime.block_on(general_compute::run(
            general_compute::Options { runs, tasks, peers },
            report,
        )),
        Suite::Scheduler {
            sizes,
            runs,
            threads,
            shapes,
            clusters,
        } => runtime.block_on(general_compute::scheduler(
            general_compute::Graphs {
                sizes,
                runs,
                threads,
                shapes,
                clusters,
            },
            report,
        )),
    };
    // What was measured is kept even when a later step failed.
    report.write()?;
    ran
}

async fn datafusion_sql(sql: &str, threads: usize) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = bare_datafusion(threads);
    let batches = ctx.sql(sql).await?.collect().await?;
    let mut writer = rask::arrow::csv::Writer::new(std::io::stdout().lock());
    for batch in &batches {
        writer.write(batch)?;
    }
    Ok(())
}

/// Both sides in this process: a `rask::Client` on a local cluster of one
/// worker with `threads` threads, carrying the suites' functions
/// ([`general_compute::registry`]), and [`bare_datafusion`].
fn in_process_sides(threads: usize) -> rask::Result<(rask::Client, SessionContext)> {
    let client = rask::Client::with_config(rask::Config {
        workers: 1,
        threads,
        registry: general_compute::registry(),
        ..rask::Config::default()
    })?;
    Ok((client, bare_datafusion(threads)))
}

/// A plain DataFusion session with `threads` partitions; `timeseries()` is
/// registered so the same SQL runs on both sides (no scheduler, no stages).
fn bare_datafusion(threads: usize) -> SessionContext {
    with_timeseries(SessionContext::new_with_config(
        SessionConfig::new().with_target_partitions(threads),
    ))
}

/// [`bare_datafusion`], its memory bounded by a spilling pool of `limit`
/// bytes (DataFusion's `FairSpillPool`, the pool of each rask worker).
fn bare_datafusion_within(
    threads: usize,
    limit: usize,
) -> Result<SessionContext, rask::datafusion::error::DataFusionError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
        .build_arc()?;
    let config = SessionConfig::new().with_target_partitions(threads);
    Ok(with_timeseries(SessionContext::new_with_config_rt(
        config, runtime,
    )))
}

/// `ctx` reading files by path and with rask's `timeseries()`.
fn with_timeseries(ctx: SessionContext) -> SessionContext {
    let ctx = ctx.enable_url_table();
    ctx.register_udtf("timeseries", Arc::new(rask::datasets::TimeseriesFunction));
    ctx
}

/// A binary built next to this one.
fn sibling(name: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p rask-cli -p rask-bench`",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// The peak memory of each process of `cluster` so far: the scheduler, the
/// nanny, its workers.
fn peak_memory(cluster: &ProcessCluster) -> Vec<(String, u64)> {
    let mut peaks = Vec::new();
    for (pid, role) in [
        (cluster.scheduler.pid(), "scheduler"),
        (cluster.workers.pid(), "nanny"),
    ] {
        if let Some(peak) = report::peak_memory(pid) {
            peaks.push((role.to_string(), peak));
        }
    }
    for (i, worker) in report::children_of(cluster.workers.pid())
        .into_iter()
        .enumerate()
    {
        if let Some(peak) = report::peak_memory(worker) {
            peaks.push((format!("worker {i}"), peak));
        }
    }
    peaks
}

/// [`peak_memory`] in words.
fn describe_peaks(cluster: &ProcessCluster) -> String {
    peak_memory(cluster)
        .iter()
        .map(|(role, peak)| format!("{role} {}", report::format_memory(*peak)))
        .collect::<Vec<_>>()
        .join(", ")
}
