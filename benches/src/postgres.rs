//! The PostgreSQL protocol (`rask serve --pg-port`) next to `rask query` and
//! bare DataFusion: a 1-row query and 100,000 rows streamed out.
//!
//! - Whole process: `psql -c SQL` against a running `rask serve` (connect, a
//!   session with its catalog, the query, rows out as text), `rask query -c
//!   SQL` (a local cluster started, the query, rows out as CSV) and this
//!   binary's `datafusion-sql -c SQL`.
//! - In one connection: psycopg's round trip and fetches
//!   (`peers/postgres_psycopg.py`), against the same query through an
//!   in-process `rask::Client` and a plain `SessionContext`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::report::Report;
use super::{Stats, alternate, args, compare, print_pair, run_once, sibling};

/// The suite's settings.
pub struct Options {
    pub runs: usize,
    pub threads: usize,
}

/// A 1-row query, and 100,000 rows of the walkthrough's data.
const QUERIES: [(&str, &str); 2] = [
    ("1-row query", "SELECT 1"),
    (
        "100,000 rows streamed out",
        "SELECT * FROM timeseries() LIMIT 100000",
    ),
];

/// `rask serve` on a free port, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `rask serve --pg-port 0` with `threads`; it and its port.
fn serve(rask: &PathBuf, threads: usize) -> Result<(Server, String), Box<dyn std::error::Error>> {
    let mut child = Command::new(rask)
        .args(["serve", "--pg-port", "0", "--threads", &threads.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("rask serve has no stderr")?;
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let marker = "postgres wire protocol at ";
    let port = loop {
        let line = lines
            .next()
            .ok_or("rask serve ended before serving the protocol")??;
        if let Some(rest) = line.split(marker).nth(1) {
            let address = rest.split_whitespace().next().unwrap_or_default();
            break address.rsplit(':').next().unwrap_or_default().to_string();
        }
    };
    // Keep reading its log, so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((server, port))
}

pub async fn run(options: Options, report: &mut Report) -> Result<(), Box<dyn std::error::Error>> {
    let Options { runs, threads } = options;
    let rask = sibling("rask")?;
    let me = std::env::current_exe()?;
    let (_server, port) = serve(&rask, threads)?;
    println!("threads per side: {threads}; runs: {runs}; rask serve on port {port}\n");
    let threads_arg = threads.to_string();

    for (what, sql) in QUERIES {
        let (query, datafusion) = super::whole_processes(&rask, &me, &threads_arg, sql);
        let psql = (
            PathBuf::from("psql"),
            args(&[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "rask",
                "-d",
                "rask",
                "-X",
                "-q",
                "-A",
                "-t",
                "-c",
                sql,
            ]),
        );
        let ((q, _), (d, _)) = compare(runs, &query, &datafusion)?;
        run_once(&psql)?;
        let p = (0..runs)
            .map(|_| run_once(&psql).map(|(took, _)| took))
            .collect::<Result<Vec<Duration>, _>>()?;
        let measurement = format!("{what}, whole process");
        print_pair(&measurement, ("rask query", &q), ("DataFusion", &d));
        print_pair(&measurement, ("psql to rask serve", &p), ("rask query", &q));
        println!();
        report.pair(&measurement, &q, &d);
        let theirs = Stats::of(&d).median;
        let row = report.add(&measurement, "psql to rask serve", &p);
        row.ratio_to_datafusion = Some(row.median_ms / theirs);
    }

    let (client, ctx) = super::in_process_sides(threads)?;
    let mut in_process = Vec::new();
    for (what, sql) in QUERIES {
        let timed = alternate(runs, &client, &ctx, sql).await?;
        let (r, d) = (timed.ours, timed.theirs);
        let measurement = format!("{what}, in one session");
        print_pair(&measurement, ("rask::Client", &r), ("DataFusion", &d));
        report.pair(&measurement, &r, &d);
        in_process.push((measurement, Stats::of(&d).median));
    }

    let psycopg = super::peer_script(
        "psycopg",
        "postgres_psycopg.py",
        &[port.clone(), runs.to_string()],
    )?;
    let Some(psycopg) = psycopg else {
        return Ok(());
    };
    println!("\npsycopg {} on one connection:", psycopg.version);
    let steps = [
        ("select_1", 0, "psycopg round trip"),
        ("rows_text", 1, "psycopg fetch, text"),
        ("rows_binary", 1, "psycopg fetch, binary"),
    ];
    for (step, query, engine) in steps {
        let Some(stats) = psycopg.times.get(step) else {
            continue;
        };
        let (measurement, datafusion) = &in_process[query];
        println!(
            "  {engine:<24} median {:8.2} ms   ({:.2} – {:.2}), {:.2} × DataFusion in process",
            stats.median,
            stats.min,
            stats.max,
            stats.median / datafusion
        );
        let row = report.add_stats(measurement, engine, *stats, runs);
        row.ratio_to_datafusion = Some(stats.median / datafusion);
    }
    Ok(())
}
