//! TPC-H's 22 queries on a cluster of processes, answers checked against bare
//! DataFusion's on the same files (scale factor 0.01; `rask-bench tpch` runs
//! SF1 and checks DuckDB's answers too). Data and answer checking are the
//! benchmark's own code. Each query's stage listing is a snapshot
//! (`snapshots/`).

use std::time::Duration;

use rask::Client;
use rask::datafusion::prelude::{SessionConfig, SessionContext};

use crate::processes::ProcessCluster;
use crate::support::repository_root;

// Shared with the bench, which also compares answers in any row order (`check`).
#[allow(dead_code)]
#[path = "../../benches/src/tpch/answers.rs"]
mod answers;
#[path = "../../benches/src/tpch/data.rs"]
mod data;

#[test]
fn the_22_tpch_queries_answer_on_a_cluster_as_datafusion_does() {
    let root = repository_root();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let tables = data::generate(dir.path(), 0.01, 2).expect("TPC-H data");
    let queries = data::queries(&root.join("benches/tpch/queries")).expect("the queries");
    assert_eq!(queries.len(), 22);
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = Client::connect(&cluster.address).await.unwrap();
        client
            .wait_for_workers(2, Duration::from_secs(30))
            .await
            .unwrap();
        let bare = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        for statement in data::create_tables(&tables) {
            client
                .sql(&statement)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            bare.sql(&statement).await.unwrap().collect().await.unwrap();
        }
        let mut wrong = Vec::new();
        for (name, sql) in &queries {
            let stages = rask::internals::stages(&client.sql(sql).await.unwrap())
                .await
                .unwrap();
            assert!(
                stages.stages.len() > 1,
                "{name} runs as one stage:\n{stages}"
            );
            // The stage listing, pinned: a planner change shows as a diff
            // (`cargo insta review`, or INSTA_UPDATE=always to accept).
            insta::assert_snapshot!(format!("tpch_{name}"), crate::plans::pinned(&stages));
            let ours = client.sql(sql).await.unwrap().collect().await;
            let theirs = bare.sql(sql).await.unwrap().collect().await.unwrap();
            let verdict = ours
                .map_err(|e| format!("failed: {e}"))
                .and_then(|ours| answers::same(&answers::rows(&ours)?, &answers::rows(&theirs)?));
            if let Err(e) = verdict {
                wrong.push(format!("{name}: {e}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    });
}
