//! rask's answers on data Dask wrote, against DuckDB's answers to the same queries
//! (`tests/data/`: Parquet from `dask.datasets.timeseries(seed=42)`, expected
//! results from DuckDB). Floats must agree to a relative 1e-9.

use rask::{Client, Config};

use crate::support::shared_data;

/// The numbered queries of `queries.sql`: `-- N` on the line before each.
pub(crate) fn queries(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut number = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(n) = line
            .strip_prefix("-- ")
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        {
            number = Some(n.to_string());
        } else if !line.is_empty()
            && !line.starts_with("--")
            && let Some(n) = number.take()
        {
            out.push((n, line.to_string()));
        }
    }
    out
}

pub(crate) fn same_value(ours: &str, theirs: &str) -> bool {
    if ours == theirs {
        return true;
    }
    match (ours.parse::<f64>(), theirs.parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        _ => false,
    }
}

/// Asserts that two results, as CSV lines, are the same: value by value,
/// floats equal to rounding (partial sums arrive in any order).
pub(crate) fn assert_same_rows(ours: &[&str], theirs: &[&str], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: {ours:?}\n{theirs:?}");
    for (a, b) in ours.iter().zip(theirs) {
        let (x, y): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
        let same = x.len() == y.len() && x.iter().zip(&y).all(|(x, y)| same_value(x, y));
        assert!(same, "{what}: {a:?}, expected {b:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_queries_match_duckdb() {
    let data = shared_data();
    let text = std::fs::read_to_string(data.join("queries.sql"))
        .unwrap_or_else(|e| panic!("the reference data must be at {}: {e}", data.display()));
    let client = Client::with_config(Config {
        threads: 4,
        ..Config::default()
    })
    .unwrap();
    let location = data.join("timeseries-2days/");
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE ts STORED AS PARQUET LOCATION '{}'",
            location.display()
        ))
        .await
        .unwrap();

    let queries = queries(&text);
    assert_eq!(queries.len(), 5, "queries.sql has five numbered queries");
    for (n, sql) in queries {
        let frame = client
            .sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("query {n}: {e}"));
        assert_matches_duckdb(&n, frame).await;
    }
}

/// Checks `frame`'s column names and rows against DuckDB's answer to query `n`.
pub(crate) async fn assert_matches_duckdb(n: &str, frame: rask::DataFrame) {
    let data = shared_data();
    let expected = std::fs::read_to_string(data.join(format!("expected/{n}.csv"))).unwrap();
    let mut expected = expected.lines();
    let header: Vec<&str> = expected.next().unwrap().split(',').collect();
    let expected: Vec<Vec<&str>> = expected.map(|l| l.split(',').collect()).collect();
    let names: Vec<String> = frame.columns();
    assert_eq!(names, header, "query {n}: column names");
    let batches = frame.collect().await.unwrap();
    let rows = rask::output::format_rows(&batches).unwrap();
    assert_eq!(rows.len(), expected.len(), "query {n}: row count");
    for (i, (ours, theirs)) in rows.iter().zip(&expected).enumerate() {
        for (a, b) in ours.iter().zip(theirs) {
            assert!(
                same_value(a, b),
                "query {n}, row {i}: rask {ours:?}, DuckDB {theirs:?}"
            );
        }
    }
}
