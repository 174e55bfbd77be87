//! The small-queries suite: fifteen short queries over a 10-day Parquet copy of
//! Dask's `timeseries` data, each run as a whole `rask query --scheduler`
//! process against a running scheduler with 2 worker processes, next to the
//! same query in a bare DataFusion session in this process.
//!
//! What it measures is the fixed cost of a query on a cluster (start-up,
//! connecting, registering, planning, dispatching the first tasks) where
//! the work itself takes milliseconds. Answers are checked: each query also
//! runs through a `rask::Client` connected to the same cluster, compared
//! with DataFusion's in any row order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::processes::ProcessCluster;
use crate::report::Report;
use crate::timing::{Invocation, Stats, abba, args, print_pair, run_once};
use crate::tpch::answers;
use crate::{bare_datafusion, sibling};

/// The queries, over `{t}` (the Parquet copy's path).
const QUERIES: [(&str, &str); 15] = [
    ("count", "SELECT count(*) FROM {t}"),
    (
        "time-range count",
        "SELECT count(*) FROM {t} WHERE timestamp >= '2000-01-03' AND timestamp < '2000-01-04'",
    ),
    (
        "count by name",
        "SELECT name, count(*) AS n FROM {t} GROUP BY name ORDER BY name",
    ),
    (
        "groupby max, mean",
        "SELECT name, max(x) AS x, avg(y) AS y FROM {t} GROUP BY name ORDER BY name",
    ),
    (
        "mean, stddev",
        "SELECT avg(x) AS x, stddev(y) AS y FROM {t}",
    ),
    (
        "top 10",
        "SELECT id, x FROM {t} WHERE x > 0.999 ORDER BY x DESC, id LIMIT 10",
    ),
    (
        "distinct names",
        "SELECT count(DISTINCT name) AS n FROM {t}",
    ),
    (
        "daily mean",
        "SELECT date_trunc('day', timestamp) AS day, avg(x) AS x FROM {t} GROUP BY 1 ORDER BY 1",
    ),
    (
        "filtered top names",
        "SELECT name, sum(x) AS s FROM {t} WHERE id > 1000 GROUP BY name ORDER BY s DESC, name LIMIT 5",
    ),
    (
        "point lookup",
        "SELECT timestamp, id, x FROM {t} WHERE name = 'Alice' AND id = 1000 ORDER BY timestamp",
    ),
    (
        "time span",
        "SELECT min(timestamp) AS first, max(timestamp) AS last FROM {t}",
    ),
    (
        "buckets",
        "SELECT id % 10 AS bucket, count(*) AS n FROM {t} GROUP BY 1 ORDER BY 1",
    ),
    (
        "band count",
        "SELECT count(*) FROM {t} WHERE y BETWEEN -0.1 AND 0.1",
    ),
    (
        "conditional counts",
        "SELECT name, count(*) FILTER (WHERE x > 0) AS positive FROM {t} GROUP BY name ORDER BY name",
    ),
    (
        "first rows",
        "SELECT timestamp, id, name, x, y FROM {t} ORDER BY timestamp LIMIT 20",
    ),
];

/// Runs the suite: `runs` timed runs of each query on each side, alternated.
pub async fn run(
    runs: usize,
    threads: usize,
    data: &Path,
    report: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let rask_bin = sibling("rask")?;
    let table = ensure_ten_days(data).await?;
    let per_worker = (threads / 2).max(1);
    let cluster = ProcessCluster::start_program(&rask_bin, Path::new("."), 2, per_worker);
    let client = rask::Client::connect(&cluster.address).await?;
    client.wait_for_workers(2, Duration::from_secs(30)).await?;
    let ctx = bare_datafusion(threads);
    println!(
        "15 queries over {} (10 days, 864,000 rows); rask: a `rask query --scheduler` \
         process each, on a scheduler + 2 worker processes × {per_worker} thread(s); \
         DataFusion: in this process, {threads} partitions; {runs} runs\n",
        table.display()
    );
    let (mut ours_total, mut theirs_total) = (0.0, 0.0);
    for (name, template) in QUERIES {
        let sql = template.replace("{t}", &format!("'{}'", table.display()));
        let ours: Invocation = (
            rask_bin.clone(),
            args(&[
                "--scheduler",
                &cluster.address,
                "query",
                "--format",
                "csv",
                "-c",
                &sql,
            ]),
        );
        let (r, d) = abba(
            runs,
            || async { Ok(run_once(&ours)?.0) },
            || async {
                let started = std::time::Instant::now();
                ctx.sql(&sql).await?.collect().await?;
                Ok(started.elapsed())
            },
        )
        .await?;
        let measurement = format!("{name}, a `rask query --scheduler` process");
        print_pair(&measurement, ("rask", &r), ("DataFusion", &d));
        report.pair(&measurement, &r, &d);
        ours_total += Stats::of(&r).median;
        theirs_total += Stats::of(&d).median;
        let rask_answer = client.sql(&sql).await?.collect().await?;
        let datafusion_answer = ctx.sql(&sql).await?.collect().await?;
        answers::check(
            name,
            ("rask", &rask_answer),
            ("DataFusion", &datafusion_answer),
        )?;
    }
    println!(
        "\nall 15, sum of medians: rask {ours_total:.1} ms, DataFusion {theirs_total:.1} ms, \
         ratio {:.2}; answers: 15/15 the same",
        ours_total / theirs_total
    );
    Ok(())
}

/// Writes the first 10 days of the default timeseries to one Parquet file
/// once (with rask itself); its path.
async fn ensure_ten_days(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = dir.join("ten-days.parquet");
    if !path.exists() {
        std::fs::create_dir_all(dir)?;
        let client = rask::Client::local()?;
        let sql = format!(
            "COPY (SELECT * FROM timeseries() WHERE timestamp < '2000-01-11' ORDER BY timestamp) \
             TO '{}'",
            path.display()
        );
        client.sql(&sql).await?.collect().await?;
    }
    Ok(std::fs::canonicalize(path)?)
}
