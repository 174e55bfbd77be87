//! `rask-bench`: rask next to bare DataFusion, on the same data, in the same run.
//!
//! ```text
//! cargo build --release -p rask-cli -p rask-bench
//! target/release/rask-bench walkthrough --runs 10
//! ```
//!
//! Each measurement runs both sides alternately, `--runs` times, and reports the
//! median, the range and the ratio rask / DataFusion. Whole-process timings
//! include start-up on both sides: `rask query -c SQL` against this binary's
//! `datafusion-sql -c SQL`, a plain DataFusion `SessionContext` with the same
//! partition count.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod chaos;
mod general_compute;
mod postgres;
#[path = "../../tests/common/processes.rs"]
mod processes;
mod report;
mod tpch;

use processes::ProcessCluster;

use clap::{Parser, Subcommand};
use futures::StreamExt;
use rask::datafusion::execution::TaskContext;
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
        } => runtime.block_on(walkthrough(runs, threads, &data, peers, report)),
        Suite::Tpch {
            sf,
            runs,
            threads,
            data,
            peers,
            queries,
        } => runtime.block_on(tpch::run(
            tpch::Options {
                sf,
                runs,
                threads,
                data,
                peers,
                only: queries,
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
            threads,
            shapes,
            clusters,
        } => runtime.block_on(general_compute::scheduler(
            general_compute::Graphs {
                sizes,
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
/// worker with `threads` threads, and [`bare_datafusion`].
fn in_process_sides(threads: usize) -> rask::Result<(rask::Client, SessionContext)> {
    let client = rask::Client::with_config(rask::Config {
        workers: 1,
        threads,
        ..rask::Config::default()
    })?;
    Ok((client, bare_datafusion(threads)))
}

/// A plain DataFusion session with `threads` partitions; `timeseries()` is
/// registered so the same SQL runs on both sides (no scheduler, no stages).
fn bare_datafusion(threads: usize) -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(threads);
    let ctx = SessionContext::new_with_config(config).enable_url_table();
    ctx.register_udtf("timeseries", Arc::new(rask::datasets::TimeseriesFunction));
    ctx
}

async fn walkthrough(
    runs: usize,
    threads: usize,
    data: &Path,
    peers: bool,
    report: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let rask_bin = sibling("rask")?;
    let me = std::env::current_exe()?;
    let month = ensure_month_parquet(data).await?;
    println!("threads per side: {threads}; runs: {runs}\n");

    let groupby = format!(
        "SELECT name, max(x) AS x, avg(y) AS y FROM '{}' GROUP BY name ORDER BY name",
        month.display()
    );
    let generated =
        "SELECT name, max(x) AS x, avg(y) AS y FROM timeseries() GROUP BY name ORDER BY name";
    let threads_arg = threads.to_string();
    for (what, sql) in [
        ("a Parquet month", groupby.as_str()),
        ("timeseries()", generated),
    ] {
        let (ours, theirs) = whole_processes(&rask_bin, &me, &threads_arg, sql);
        let ((r, r_peak), (d, d_peak)) = compare(runs, &ours, &theirs)?;
        let measurement = format!("groupby over {what}, whole process");
        print_pair(&measurement, ("rask", &r), ("DataFusion", &d));
        report.pair(&measurement, &r, &d);
        for (engine, peak) in [("rask", r_peak), ("DataFusion", d_peak)] {
            if let Some(row) = report.row(&measurement, engine) {
                row.peak_memory.push(("process".into(), peak));
            }
        }
        println!(
            "  peak memory: rask {}, DataFusion {}",
            report::format_memory(r_peak),
            report::format_memory(d_peak)
        );
    }

    let (client, ctx) = in_process_sides(threads)?;
    let queries = [
        ("Parquet month", groupby.as_str(), "groupby_parquet"),
        ("timeseries()", generated, "groupby"),
    ];
    // rask's medians of the steps Dask also runs, in process.
    let mut steps: Vec<(&str, Stats)> = Vec::new();
    for (what, sql, step) in queries {
        let (r, d) = alternate(runs, &client, &ctx, sql).await?;
        let measurement =
            format!("groupby over {what}, in process (rask's scheduler vs plain DataFusion)");
        print_pair(&measurement, ("rask", &r), ("DataFusion", &d));
        report.pair(&measurement, &r, &d);
        // Dask generates the month: its groupby compares with timeseries()'s.
        steps.push((step, Stats::of(&r)));
    }
    let unique = "SELECT DISTINCT name FROM timeseries()";
    let (r, d) = alternate(runs, &client, &ctx, unique).await?;
    let measurement = "unique names of the month, in process";
    print_pair(measurement, ("rask", &r), ("DataFusion", &d));
    report.pair(measurement, &r, &d);
    steps.push(("unique", Stats::of(&r)));

    steps.extend(dataframe_udfs(runs, &client, report).await?);
    println!();
    steps.extend(general_compute::walkthrough_steps(runs, report).await?);
    if let Some(peak) = report::own_peak_memory() {
        println!(
            "peak memory of this process (rask and DataFusion in process): {}",
            report::format_memory(peak)
        );
    }
    if peers {
        // A peer that fails is reported, and the suite goes on.
        if let Err(e) = dask_walkthrough(runs, threads, &steps, report) {
            println!("Dask: {e}");
        }
        if let Err(e) = engines_walkthrough(runs, threads, &month, &steps, report) {
            println!("DuckDB / Polars: {e}");
        }
    }

    // The same groupby on a cluster of processes: a scheduler and two workers
    // sharing the same cores (`threads / 2` threads each), against bare DataFusion.
    let per_worker = (threads / 2).max(1);
    let cluster = ProcessCluster::start_program(&rask_bin, Path::new("."), 2, per_worker);
    let remote = rask::Client::connect(&cluster.address).await?;
    remote.wait_for_workers(2, Duration::from_secs(30)).await?;
    println!();
    for (what, sql, _) in queries {
        let (r, d) = alternate(runs, &remote, &ctx, sql).await?;
        let measurement = format!(
            "groupby over {what}, scheduler + 2 worker processes × {per_worker} thread(s) vs plain DataFusion ({threads} threads)"
        );
        print_pair(&measurement, ("rask", &r), ("DataFusion", &d));
        report.pair(&measurement, &r, &d);
        if let Some(row) = report.row(&measurement, "rask") {
            row.peak_memory = peak_memory(&cluster);
        }
    }
    println!(
        "  peak memory of the cluster's processes: {}",
        describe_peaks(&cluster)
    );
    drop(remote);
    drop(cluster);

    let rate = generation_rate(TimeseriesSpec::default());
    println!(
        "\ntimeseries() generation, all 5 columns, one core: {:.1} M rows/s ({:.2} ns a row)",
        rate / 1e6,
        1e9 / rate
    );
    record_rate(
        report,
        "timeseries() generation of the month, one core",
        rate,
    );
    let rate = sql_generation_rate().await?;
    println!(
        "timeseries() through DataFusion, one partition at a time on one thread: {:.1} M rows/s",
        rate / 1e6
    );
    record_rate(
        report,
        "timeseries() through DataFusion's executor, one thread",
        rate,
    );
    Ok(())
}

/// Records a generation rate (rows per second) as the time of the month's 2,592,000 rows.
fn record_rate(report: &mut Report, measurement: &str, rate: f64) {
    let ms = 2_592_000.0 / rate * 1e3;
    let stats = Stats {
        median: ms,
        min: ms,
        max: ms,
    };
    let row = report.add_stats(measurement, "rask", stats, 1);
    row.figures.push(("rows_per_second".into(), rate));
}

/// The walkthrough's `apply` and `map_partitions` on the month, each against
/// the plain rask frame it stands for, in the same run.
async fn dataframe_udfs(
    runs: usize,
    client: &rask::Client,
    report: &mut Report,
) -> Result<Vec<(&'static str, Stats)>, Box<dyn std::error::Error>> {
    use rask::datafusion::prelude::col;
    let square = rask::udf::scalar("square", |x: f64| x * x);
    let month = || client.timeseries().build();
    let applied =
        || -> rask::Result<rask::DataFrame> { month()?.apply("x", &square)?.agg([("x", "sum")]) };
    let native = || -> rask::Result<rask::DataFrame> {
        month()?
            .select_exprs(vec![(col("x") * col("x")).alias("x")])?
            .agg([("x", "sum")])
    };
    let (a, n) = alternate_frames(runs, applied, native).await?;
    println!();
    let measurement = "apply(x, square) then sum, vs the expression x * x (rask, in process)";
    print_pair(measurement, ("apply", &a), ("x * x", &n));
    report.add(measurement, "rask apply", &a);
    report.add(measurement, "rask x * x", &n);
    let identity = rask::udf::partition("identity", Ok::<_, String>);
    let mapped = || month()?.map_partitions(&identity);
    let (m, p) = alternate_frames(runs, mapped, month).await?;
    let measurement =
        "map_partitions(identity), every row to the client, vs the plain frame (rask, in process)";
    print_pair(measurement, ("map_partitions", &m), ("plain", &p));
    report.add(measurement, "rask map_partitions", &m);
    report.add(measurement, "rask plain", &p);
    Ok(vec![
        ("apply", Stats::of(&a)),
        ("x*x", Stats::of(&n)),
        ("map_partitions", Stats::of(&m)),
        ("plain", Stats::of(&p)),
    ])
}

/// Runs `benches/peers/walkthrough_dask.py` on 2 worker processes and prints
/// its times next to rask's `steps`.
fn dask_walkthrough(
    runs: usize,
    threads: usize,
    steps: &[(&str, Stats)],
    report: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let per_worker = (threads / 2).max(1);
    let Some(dask) = peer_script(
        "dask.distributed",
        "walkthrough_dask.py",
        &[runs.min(5).to_string(), "2".into(), per_worker.to_string()],
    )?
    else {
        return Ok(());
    };
    println!(
        "\nDask {} on a LocalCluster of 2 processes × {per_worker} thread(s), against rask in process ({threads} threads)",
        dask.version
    );
    println!(
        "  {:<16} {:>12} {:>12} {:>16}",
        "step", "rask ms", "Dask ms", "Dask / rask"
    );
    print_steps(steps, &dask, "Dask", report);
    // The general-compute steps, from the futures peer on the same cluster size.
    if let Some(people) = peer_script(
        "dask.distributed",
        "people_dask.py",
        &[runs.min(5).to_string()],
    )? {
        print_steps(steps, &people, "Dask", report);
    }
    Ok(())
}

/// Prints a peer's step times next to rask's; records them.
fn print_steps(steps: &[(&str, Stats)], peer: &PeerTimes, engine: &str, report: &mut Report) {
    for (step, ours) in steps {
        if let Some(theirs) = peer.times.get(*step) {
            println!(
                "  {step:<16} {:>12.1} {:>12.1} {:>16.1}",
                ours.median,
                theirs.median,
                theirs.median / ours.median
            );
            let name = format!("{engine} {}", peer.version);
            let row = report.add_stats(&format!("walkthrough step {step}"), &name, *theirs, 0);
            row.figures
                .push(("times_rask".into(), theirs.median / ours.median));
        }
    }
}

/// DuckDB's and Polars' groupby and unique over the Parquet month
/// (`benches/peers/walkthrough_engines.py`), next to rask's.
fn engines_walkthrough(
    runs: usize,
    threads: usize,
    month: &Path,
    steps: &[(&str, Stats)],
    report: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let month_steps: Vec<(&str, Stats)> = steps
        .iter()
        .filter(|(s, _)| *s == "groupby_parquet")
        .copied()
        .collect();
    for (module, engine) in [("duckdb", "DuckDB"), ("polars", "Polars")] {
        let args = [
            module.to_string(),
            month.display().to_string(),
            runs.to_string(),
            threads.to_string(),
        ];
        let Some(peer) = peer_script(module, "walkthrough_engines.py", &args)? else {
            continue;
        };
        println!(
            "\n{engine} {} on the Parquet month, against rask in process ({threads} threads)",
            peer.version
        );
        println!(
            "  {:<16} {:>12} {:>12} {:>16}",
            "step",
            "rask ms",
            format!("{engine} ms"),
            format!("{engine} / rask")
        );
        print_steps(&month_steps, &peer, engine, report);
    }
    Ok(())
}

/// What a peer script printed: its package's version and a time per step.
struct PeerTimes {
    version: String,
    times: std::collections::HashMap<String, Stats>,
}

/// The Python that runs the peer scripts: `$RASK_PYTHON`, else `python3`.
fn peer_python() -> String {
    std::env::var("RASK_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs `benches/peers/<script>` with `args` if `module` imports; reads its
/// `<step> <median> <min> <max>` lines. `None` (and a line saying so) when
/// the module is not installed.
fn peer_script(
    module: &str,
    script: &str,
    args: &[String],
) -> Result<Option<PeerTimes>, Box<dyn std::error::Error>> {
    let python = peer_python();
    let package = module.split('.').next().unwrap_or(module);
    let version = Command::new(&python)
        .args([
            "-c",
            &format!("import {module}, {package}; print({package}.__version__)"),
        ])
        .stderr(Stdio::null())
        .output();
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => {
            println!("{module}: not installed in {python} (set RASK_PYTHON), skipped");
            return Ok(None);
        }
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(script);
    let output = Command::new(&python).arg(&path).args(args).output()?;
    if !output.status.success() {
        return Err(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let mut times = std::collections::HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, median, min, max] = fields[..] else {
            continue;
        };
        let ms = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
        times.insert(
            name.to_string(),
            Stats {
                median: ms(median),
                min: ms(min),
                max: ms(max),
            },
        );
    }
    Ok(Some(PeerTimes { version, times }))
}

/// Collects the frames `a` and `b` make alternately, `runs` times after one
/// warm-up each; returns their times.
async fn alternate_frames(
    runs: usize,
    a: impl Fn() -> rask::Result<rask::DataFrame>,
    b: impl Fn() -> rask::Result<rask::DataFrame>,
) -> Result<(Vec<Duration>, Vec<Duration>), Box<dyn std::error::Error>> {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for i in 0..=runs {
        let started = Instant::now();
        a()?.collect().await?;
        let ta = started.elapsed();
        let started = Instant::now();
        b()?.collect().await?;
        let tb = started.elapsed();
        if i > 0 {
            first.push(ta);
            second.push(tb);
        }
    }
    Ok((first, second))
}

/// Runs `sql` on `client` and on `ctx` alternately, `runs` times after one
/// warm-up each; returns their times.
async fn alternate(
    runs: usize,
    client: &rask::Client,
    ctx: &SessionContext,
    sql: &str,
) -> Result<(Vec<Duration>, Vec<Duration>), Box<dyn std::error::Error>> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..=runs {
        let started = Instant::now();
        client.sql(sql).await?.collect().await?;
        let a = started.elapsed();
        let started = Instant::now();
        ctx.sql(sql).await?.collect().await?;
        let b = started.elapsed();
        if i > 0 {
            ours.push(a);
            theirs.push(b);
        }
    }
    Ok((ours, theirs))
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A program and its arguments.
type Invocation = (PathBuf, Vec<String>);

/// `sql` run by a whole process on each side, CSV out: `rask query` (the
/// binary `rask`) and bare DataFusion (`me datafusion-sql`), on `threads`.
fn whole_processes(rask: &Path, me: &Path, threads: &str, sql: &str) -> (Invocation, Invocation) {
    let query = ["--threads", threads, "query", "--format", "csv", "-c", sql];
    let datafusion = ["datafusion-sql", "--threads", threads, "-c", sql];
    (
        (rask.to_path_buf(), args(&query)),
        (me.to_path_buf(), args(&datafusion)),
    )
}

/// Wall-clock times of a command's runs, and the largest peak memory of one.
type Timed = (Vec<Duration>, u64);

/// Runs both commands alternately `runs` times; returns their wall-clock
/// times and peak memory.
fn compare(
    runs: usize,
    ours: &Invocation,
    theirs: &Invocation,
) -> Result<(Timed, Timed), Box<dyn std::error::Error>> {
    // One warm-up each: page cache, binary loading.
    run_once(ours)?;
    run_once(theirs)?;
    let (mut a, mut b) = ((Vec::new(), 0), (Vec::new(), 0));
    for _ in 0..runs {
        for ((took, peak), command) in [(&mut a, ours), (&mut b, theirs)] {
            let (time, memory) = run_once(command)?;
            took.push(time);
            *peak = (*peak).max(memory);
        }
    }
    Ok((a, b))
}

/// Runs a command to its end; its wall-clock time and peak memory (its
/// high-water mark, read every millisecond while it runs).
fn run_once((program, args): &Invocation) -> Result<(Duration, u64), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .spawn()?;
    let mut peak = 0;
    let status = loop {
        if let Some(memory) = report::peak_memory(child.id()) {
            peak = peak.max(memory);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let took = started.elapsed();
    if !status.success() {
        return Err(format!("{} {} failed: {status}", program.display(), args.join(" ")).into());
    }
    Ok((took, peak))
}

/// Median, fastest and slowest of some timings, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    fn of(timings: &[Duration]) -> Self {
        let mut ms: Vec<f64> = timings.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        match ms.as_slice() {
            [] => Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            },
            ms => Self {
                median: ms[ms.len() / 2],
                min: ms[0],
                max: ms[ms.len() - 1],
            },
        }
    }
}

/// Prints two timings of the same work, their medians and ranges, and the
/// ratio of the first to the second.
fn print_pair(what: &str, (a_name, a): (&str, &[Duration]), (b_name, b): (&str, &[Duration])) {
    let (r, d) = (Stats::of(a), Stats::of(b));
    println!("{what}");
    let width = a_name.len().max(b_name.len()).max(10);
    println!(
        "  {a_name:<width$}  median {:8.1} ms   ({:.1} – {:.1})",
        r.median, r.min, r.max
    );
    println!(
        "  {b_name:<width$}  median {:8.1} ms   ({:.1} – {:.1})",
        d.median, d.min, d.max
    );
    println!("  ratio {a_name} / {b_name}: {:.3}", r.median / d.median);
}

/// Generates every partition of `spec` on this thread; returns rows per second.
fn generation_rate(spec: TimeseriesSpec) -> f64 {
    use rask::datasets::timeseries::generate::Column;
    let started = Instant::now();
    let mut rows = 0u64;
    for p in 0..spec.partitions() {
        let range = spec.partition_rows(p);
        for from in (range.start..range.end).step_by(8192) {
            let slice = from..(from + 8192).min(range.end);
            for column in Column::ALL {
                std::hint::black_box(column.generate(&spec, p, slice.clone()));
            }
            rows += slice.end - slice.start;
        }
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// Runs `TimeseriesExec` partition by partition on one thread; returns rows per second.
async fn sql_generation_rate() -> Result<f64, Box<dyn std::error::Error>> {
    let exec = Arc::new(TimeseriesExec::try_new(
        TimeseriesSpec::default(),
        None,
        None,
    )?);
    let ctx = Arc::new(TaskContext::default());
    let started = Instant::now();
    let mut rows = 0;
    for p in 0..exec.properties().partitioning.partition_count() {
        let mut stream = exec.execute(p, Arc::clone(&ctx))?;
        while let Some(batch) = stream.next().await {
            rows += batch?.num_rows();
        }
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Writes the default timeseries month to Parquet once (with rask itself).
async fn ensure_month_parquet(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = dir.join("month.parquet");
    if !path.exists() {
        std::fs::create_dir_all(dir)?;
        let client = rask::Client::local()?;
        let sql = format!("COPY (SELECT * FROM timeseries()) TO '{}'", path.display());
        client.sql(&sql).await?.collect().await?;
    }
    Ok(std::fs::canonicalize(path)?)
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
