//! The walkthrough suite: the walkthrough's groupby over a Parquet month and
//! `timeseries()` generation, in process, as whole processes and on a
//! cluster of processes, next to bare DataFusion (and Dask and pandas with
//! `--peers`). In process and on the cluster, rask's answers are checked
//! against DataFusion's (and `apply`'s against the expression it stands for):
//! a difference fails the suite.

use super::*;
use crate::tpch::answers;

pub(crate) async fn walkthrough(
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
        let measurement =
            format!("groupby over {what}, in process (rask's scheduler vs plain DataFusion)");
        let r = sql_pair(runs, &client, &ctx, sql, &measurement, report).await?;
        // Dask generates the month: its groupby compares with timeseries()'s.
        steps.push((step, Stats::of(&r)));
    }
    let unique = "SELECT DISTINCT name FROM timeseries()";
    let measurement = "unique names of the month, in process";
    let r = sql_pair(runs, &client, &ctx, unique, measurement, report).await?;
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
    // sharing the same cores (`threads / 2` threads each), against bare
    // DataFusion; then the `apply` step there. The processes are this binary
    // run as `rask`, so that they carry `square`.
    let per_worker = (threads / 2).max(1);
    let (cluster, remote) = general_compute::processes(2, per_worker).await?;
    let on_cluster = format!("scheduler + 2 worker processes × {per_worker} thread(s)");
    println!();
    for (what, sql, _) in queries {
        let measurement =
            format!("groupby over {what}, {on_cluster} vs plain DataFusion ({threads} threads)");
        sql_pair(runs, &remote, &ctx, sql, &measurement, report).await?;
        if let Some(row) = report.row(&measurement, "rask") {
            row.peak_memory = peak_memory(&cluster);
        }
    }
    apply_vs_expression(runs, &remote, &on_cluster, report).await?;
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

/// Runs `sql` on `client` and `ctx` alternately ([`alternate`]); prints and
/// records both sides' times as `measurement`, then fails unless both gave
/// the same answer. rask's times.
async fn sql_pair(
    runs: usize,
    client: &rask::Client,
    ctx: &SessionContext,
    sql: &str,
    measurement: &str,
    report: &mut Report,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let timed = alternate(runs, client, ctx, sql).await?;
    print_pair(
        measurement,
        ("rask", &timed.ours),
        ("DataFusion", &timed.theirs),
    );
    report.pair(measurement, &timed.ours, &timed.theirs);
    answers::check(
        measurement,
        ("rask", &timed.our_answer),
        ("DataFusion", &timed.their_answer),
    )?;
    Ok(timed.ours)
}

/// Records a generation rate (rows per second) as the time of the month's 2,592,000 rows.
pub(crate) fn record_rate(report: &mut Report, measurement: &str, rate: f64) {
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
pub(crate) async fn dataframe_udfs(
    runs: usize,
    client: &rask::Client,
    report: &mut Report,
) -> Result<Vec<(&'static str, Stats)>, Box<dyn std::error::Error>> {
    println!();
    let (a, n) = apply_vs_expression(runs, client, "in process", report).await?;
    let month = || client.timeseries().build();
    let identity = rask::udf::partition("identity", Ok::<_, String>);
    let mapped = || month()?.map_partitions(&identity);
    let (m, p) = alternate_frames(runs, client, mapped, month).await?;
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

/// The walkthrough's `apply(x, square)` then a sum, against the expression
/// `x * x` it stands for, alternately on `client` (`on`: where its tasks
/// run); prints and records both, then fails unless both gave the same sum.
/// `square` runs in the cluster's tasks: it is in the registry of `client`
/// and of its workers ([`general_compute::registry`]).
async fn apply_vs_expression(
    runs: usize,
    client: &rask::Client,
    on: &str,
    report: &mut Report,
) -> Result<(Vec<Duration>, Vec<Duration>), Box<dyn std::error::Error>> {
    use rask::datafusion::prelude::col;
    let square = general_compute::square();
    let month = || client.timeseries().build();
    let applied =
        || -> rask::Result<rask::DataFrame> { month()?.apply("x", &square)?.agg([("x", "sum")]) };
    let native = || -> rask::Result<rask::DataFrame> {
        month()?
            .select_exprs(vec![(col("x") * col("x")).alias("x")])?
            .agg([("x", "sum")])
    };
    let (a, n) = alternate_frames(runs, client, &applied, &native).await?;
    let measurement = format!("apply(x, square) then sum, vs the expression x * x (rask, {on})");
    print_pair(&measurement, ("apply", &a), ("x * x", &n));
    report.add(&measurement, "rask apply", &a);
    report.add(&measurement, "rask x * x", &n);
    let (ours, theirs) = (applied()?.collect().await?, native()?.collect().await?);
    answers::check(&measurement, ("apply", &ours), ("x * x", &theirs))?;
    Ok((a, n))
}

/// Runs `benches/peers/walkthrough_dask.py` on 2 worker processes and prints
/// its times next to rask's `steps`.
pub(crate) fn dask_walkthrough(
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
pub(crate) fn print_steps(
    steps: &[(&str, Stats)],
    peer: &PeerTimes,
    engine: &str,
    report: &mut Report,
) {
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
pub(crate) fn engines_walkthrough(
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

/// Collects the frames `a` and `b` make alternately ([`timing::abba`]), `runs`
/// times after one warm-up each; returns their times.
pub(crate) async fn alternate_frames(
    runs: usize,
    client: &rask::Client,
    a: impl Fn() -> rask::Result<rask::DataFrame>,
    b: impl Fn() -> rask::Result<rask::DataFrame>,
) -> Result<(Vec<Duration>, Vec<Duration>), Box<dyn std::error::Error>> {
    let (a, b) = (&a, &b);
    timing::abba(
        runs,
        move || collect_timed(client, a),
        move || collect_timed(client, b),
    )
    .await
}

/// Collects the frame `frame` makes, timed; then, untimed, lets `client`'s
/// cluster go idle ([`timing::settle`]).
async fn collect_timed(
    client: &rask::Client,
    frame: impl Fn() -> rask::Result<rask::DataFrame>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    frame()?.collect().await?;
    let took = started.elapsed();
    timing::settle(client, timing::SETTLE).await?;
    Ok(took)
}

/// Generates every partition of `spec` on this thread; returns rows per second.
pub(crate) fn generation_rate(spec: TimeseriesSpec) -> f64 {
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
pub(crate) async fn sql_generation_rate() -> Result<f64, Box<dyn std::error::Error>> {
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
pub(crate) async fn ensure_month_parquet(
    dir: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = dir.join("month.parquet");
    if !path.exists() {
        std::fs::create_dir_all(dir)?;
        let client = rask::Client::local()?;
        let sql = format!("COPY (SELECT * FROM timeseries()) TO '{}'", path.display());
        client.sql(&sql).await?.collect().await?;
    }
    Ok(std::fs::canonicalize(path)?)
}
