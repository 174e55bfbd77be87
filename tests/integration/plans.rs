//! The stages the walkthrough's queries run as, pinned as a snapshot
//! (`snapshots/`), so a planner change shows as a diff. The TPC-H queries'
//! listings are pinned in `tpch`.

use rask::LocalCluster;
use rask::internals::planner::{StageGraph, split_statements};

use crate::support::repository_root;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_queries_run_as_these_stages() {
    let client = LocalCluster::builder()
        .n_workers(2)
        .threads_per_worker(1)
        .build()
        .unwrap()
        .client()
        .unwrap();
    let path = repository_root().join("sample_data/walkthrough.sql");
    let script = std::fs::read_to_string(&path).unwrap();
    let statements = split_statements(&script).unwrap();
    assert!(statements.len() >= 4, "{} statements", statements.len());
    let mut listing = String::new();
    for statement in statements {
        let sql = statement.text.trim();
        let stages = rask::internals::stages(&client.sql(sql).await.unwrap())
            .await
            .unwrap();
        let line = statement.start.line;
        listing.push_str(&format!("-- line {line}\n{}\n", pinned(&stages)));
    }
    insta::assert_snapshot!("walkthrough", listing);
}

/// `graph`'s listing without its query's token, which differs run to run.
pub(crate) fn pinned(graph: &StageGraph) -> String {
    graph.to_string().replace(&graph.token, "<token>")
}
