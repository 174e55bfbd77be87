//! The `tpch` suite: TPC-H at scale factor `--sf`, its 22 queries on a scheduler
//! with two worker processes, next to bare DataFusion on the same files and
//! cores, each answer checked against DataFusion's and, with `--peers` and the
//! `duckdb` Python package installed, against DuckDB's: once the table is
//! printed, a wrong answer fails the run, naming the queries.
//!
//! The queries (`benches/tpch/queries/`) are the specification's with its
//! validation parameters; where a `LIMIT` cuts through ties, a key is added to
//! the `ORDER BY` so every engine must return the same rows.

pub mod answers;
pub mod data;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rask::datafusion::prelude::SessionContext;

use crate::report::Report;
use crate::report::format_memory;
use crate::timing::alternate;
use crate::{
    ProcessCluster, Stats, bare_datafusion, bare_datafusion_within, describe_peaks, peak_memory,
    sibling,
};

/// How the suite runs.
pub struct Options {
    /// Scale factor.
    pub sf: f64,
    /// Timed runs per query and engine (after one warm-up).
    pub runs: usize,
    /// Threads on each side (the cluster's two workers share them).
    pub threads: usize,
    /// Where the data is generated once and kept.
    pub data: PathBuf,
    /// Also run DuckDB, when installed.
    pub peers: bool,
    /// Only these queries (1–22); all when empty.
    pub only: Vec<usize>,
    /// Memory each worker may use, in bytes (DataFusion gets a pool of the
    /// two workers' sum); unbounded when `None`.
    pub memory_limit: Option<usize>,
}

/// One query's figures.
struct Measured {
    name: String,
    rows: usize,
    rask: Stats,
    datafusion: Stats,
    duckdb: Option<Stats>,
    vs_datafusion: Result<(), String>,
    vs_duckdb: Option<Result<(), String>>,
}

pub async fn run(options: Options, report: &mut Report) -> Result<(), Box<dyn std::error::Error>> {
    let Options {
        sf,
        runs,
        threads,
        ref data,
        peers,
        ref only,
        memory_limit,
    } = options;
    let dir = data.join(format!("tpch-sf{sf}"));
    let started = Instant::now();
    let dir = std::fs::canonicalize(data::generate(&dir, sf, (threads * 2) as i32)?)?;
    println!(
        "TPC-H SF{sf} in {} ({:.1} s to make or find)",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    let query_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch/queries");
    let queries: Vec<(String, String)> = data::queries(&query_dir)?
        .into_iter()
        .enumerate()
        .filter(|(i, _)| only.is_empty() || only.contains(&(i + 1)))
        .map(|(_, q)| q)
        .collect();

    let duckdb = if peers {
        duckdb_answers(&dir, &query_dir, data, runs, threads)?
    } else {
        None
    };

    let rask_bin = sibling("rask")?;
    let per_worker = (threads / 2).max(1);
    let limit = memory_limit.map(|bytes| bytes.to_string());
    let worker_flags: Vec<&str> = match &limit {
        Some(bytes) => vec!["--memory-limit", bytes],
        None => vec![],
    };
    let cluster = ProcessCluster::start_program_with(
        &rask_bin,
        std::path::Path::new("."),
        (2, per_worker),
        &worker_flags,
    );
    let client = rask::Client::connect(&cluster.address).await?;
    client.wait_for_workers(2, Duration::from_secs(30)).await?;
    let ctx = match memory_limit {
        Some(bytes) => bare_datafusion_within(threads, 2 * bytes)?,
        None => bare_datafusion(threads),
    };
    for statement in data::create_tables(&dir) {
        client.sql(&statement).await?.collect().await?;
        ctx.sql(&statement).await?.collect().await?;
    }
    let bounded = match memory_limit {
        Some(bytes) => format!(
            "; memory: {} a worker (`--memory-limit`), DataFusion a FairSpillPool of {}",
            format_memory(bytes as u64),
            format_memory(2 * bytes as u64)
        ),
        None => String::new(),
    };
    println!(
        "rask: scheduler + 2 worker processes × {per_worker} thread(s); DataFusion: one SessionContext, {threads} partitions; {runs} runs each, medians{bounded}\n"
    );
    let mut measured = Vec::new();
    let mut failed = Vec::new();
    for (name, sql) in &queries {
        match measure(name, sql, runs, &client, &ctx, duckdb.as_ref()).await {
            Ok(m) => {
                print_row(&m);
                measured.push(m);
            }
            // A query that cannot run (e.g. out of memory on either side)
            // is reported, and the others still run.
            Err(e) => {
                println!("{name}  FAILED: {e}");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    print_summary(&measured);
    println!("peak memory: {}", describe_peaks(&cluster));
    let peaks = peak_memory(&cluster);
    if let Some(bytes) = memory_limit {
        for (role, peak) in peaks.iter().filter(|(role, _)| role.starts_with("worker")) {
            println!(
                "{role}: peak resident {} = {:.2} × its limit of {}",
                format_memory(*peak),
                *peak as f64 / bytes as f64,
                format_memory(bytes as u64)
            );
        }
        if let Some(peak) = crate::report::peak_memory(std::process::id()) {
            println!(
                "this process (DataFusion, and rask's client): peak resident {}",
                format_memory(peak)
            );
        }
    }
    record(&measured, runs, peaks, report);
    drop(client);
    drop(cluster);
    let wrong = wrong_answers(&measured);
    if !failed.is_empty() || !wrong.is_empty() {
        return Err(format!(
            "failed: {}; wrong answers: {}",
            failed.len(),
            failed
                .into_iter()
                .chain(wrong)
                .collect::<Vec<_>>()
                .join("; ")
        )
        .into());
    }
    Ok(())
}

/// The queries whose answer differed from DataFusion's or DuckDB's, and how.
fn wrong_answers(measured: &[Measured]) -> Vec<String> {
    let mut wrong = Vec::new();
    for m in measured {
        if let Err(e) = &m.vs_datafusion {
            wrong.push(format!("{} vs DataFusion: {e}", m.name));
        }
        if let Some(Err(e)) = &m.vs_duckdb {
            wrong.push(format!("{} vs DuckDB: {e}", m.name));
        }
    }
    wrong
}

/// Runs `sql` on both sides alternately ([`alternate`]); checks the answers.
async fn measure(
    name: &str,
    sql: &str,
    runs: usize,
    client: &rask::Client,
    ctx: &SessionContext,
    duckdb: Option<&DuckDb>,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let timed = alternate(runs, client, ctx, sql).await?;
    // Answers are formatted once, from the last run of each side.
    let our_rows = answers::rows(&timed.our_answer)?;
    let their_rows = answers::rows(&timed.their_answer)?;
    let vs_duckdb = duckdb
        .and_then(|d| d.answers.get(name))
        .map(|expected| answers::same(&our_rows, expected));
    Ok(Measured {
        name: name.to_string(),
        rows: our_rows.len(),
        rask: Stats::of(&timed.ours),
        datafusion: Stats::of(&timed.theirs),
        duckdb: duckdb.and_then(|d| d.times.get(name).copied()),
        vs_datafusion: answers::same(&our_rows, &their_rows),
        vs_duckdb,
    })
}

fn verdict(check: &Result<(), String>) -> String {
    match check {
        Ok(()) => "same".into(),
        Err(e) => format!("DIFFERENT: {e}"),
    }
}

fn print_row(m: &Measured) {
    let duck = m
        .duckdb
        .map_or("-".to_string(), |d| format!("{:.1}", d.median));
    println!(
        "{}  rask {:8.1} ms ({:.1}–{:.1})  DataFusion {:8.1} ms ({:.1}–{:.1})  ratio {:5.2}  DuckDB {:>8} ms  {:>5} rows  vs DataFusion: {}  vs DuckDB: {}",
        m.name,
        m.rask.median,
        m.rask.min,
        m.rask.max,
        m.datafusion.median,
        m.datafusion.min,
        m.datafusion.max,
        m.rask.median / m.datafusion.median,
        duck,
        m.rows,
        verdict(&m.vs_datafusion),
        m.vs_duckdb.as_ref().map_or("-".into(), verdict),
    );
}

fn print_summary(measured: &[Measured]) {
    let total = |f: fn(&Measured) -> f64| measured.iter().map(f).sum::<f64>();
    let (r, d) = (total(|m| m.rask.median), total(|m| m.datafusion.median));
    let same_df = measured.iter().filter(|m| m.vs_datafusion.is_ok()).count();
    let same_duck = measured
        .iter()
        .filter(|m| matches!(m.vs_duckdb, Some(Ok(()))))
        .count();
    println!(
        "\nall {} queries: rask {r:.0} ms, DataFusion {d:.0} ms, ratio {:.2}; answers same as DataFusion's: {same_df}/{}, as DuckDB's: {same_duck}/{}",
        measured.len(),
        r / d,
        measured.len(),
        measured.iter().filter(|m| m.vs_duckdb.is_some()).count()
    );
}

/// Each query's rows of the report: rask's (with the cluster's peak memory on
/// the first), DataFusion's and DuckDB's, and whether the answers agreed.
fn record(measured: &[Measured], runs: usize, mut peaks: Vec<(String, u64)>, report: &mut Report) {
    let same = |check: &Result<(), String>| if check.is_ok() { 1.0 } else { 0.0 };
    for m in measured {
        let measurement = format!("TPC-H {}", m.name);
        report
            .add_stats(&measurement, "DataFusion", m.datafusion, runs)
            .ratio_to_datafusion = Some(1.0);
        let row = report.add_stats(&measurement, "rask", m.rask, runs);
        row.ratio_to_datafusion = Some(m.rask.median / m.datafusion.median);
        row.peak_memory = std::mem::take(&mut peaks);
        row.figures.push(("rows".into(), m.rows as f64));
        row.figures
            .push(("same_as_datafusion".into(), same(&m.vs_datafusion)));
        if let Some(check) = &m.vs_duckdb {
            row.figures.push(("same_as_duckdb".into(), same(check)));
        }
        if let Some(duckdb) = m.duckdb {
            let row = report.add_stats(&measurement, "DuckDB", duckdb, runs);
            row.ratio_to_datafusion = Some(duckdb.median / m.datafusion.median);
        }
    }
}

/// DuckDB's answers and times, by query.
struct DuckDb {
    answers: std::collections::HashMap<String, Vec<Vec<String>>>,
    times: std::collections::HashMap<String, Stats>,
}

/// Runs `benches/peers/tpch_duckdb.py`; `None` when DuckDB is not installed.
fn duckdb_answers(
    dir: &Path,
    queries: &Path,
    data: &Path,
    runs: usize,
    threads: usize,
) -> Result<Option<DuckDb>, Box<dyn std::error::Error>> {
    let out = data.join("tpch-duckdb-answers");
    let path = |p: &Path| p.display().to_string();
    let args = [
        path(dir),
        path(queries),
        path(&out),
        runs.to_string(),
        threads.to_string(),
    ];
    let Some(peer) = crate::peer_script("duckdb", "tpch_duckdb.py", &args)? else {
        return Ok(None);
    };
    let mut answers = std::collections::HashMap::new();
    for name in peer.times.keys() {
        let csv = std::fs::read_to_string(out.join(format!("{name}.csv")))?;
        answers.insert(name.clone(), parse_csv(&csv));
    }
    Ok(Some(DuckDb {
        answers,
        times: peer.times,
    }))
}

/// Rows of a CSV file as Python's `csv` module writes them.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut row = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => row.push(std::mem::take(&mut field)),
                (c, _) => field.push(c),
            }
        }
        row.push(field);
        rows.push(row);
    }
    rows
}
