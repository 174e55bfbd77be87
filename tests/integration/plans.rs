//! The stages the walkthrough's queries run as, pinned as a snapshot
//! (`snapshots/`), so a planner change shows as a diff. The TPC-H queries'
//! listings are pinned in `tpch`.

use rask::internals::planner::{StageGraph, split_statements};

use crate::support::repository_root;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_queries_run_as_these_stages() {
    let client = crate::dataframe::cluster();
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

/// Runs each of `settings` (`SET …`) in `client`'s session.
async fn set(client: &rask::Client, settings: &[&str]) {
    for setting in settings {
        client.sql(setting).await.unwrap().collect().await.unwrap();
    }
}

/// `graph`'s listing without its query's token, which differs run to run.
pub(crate) fn pinned(graph: &StageGraph) -> String {
    graph.to_string().replace(&graph.token, "<token>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_more_bytes_than_a_task_reads_is_split_into_more_tasks() {
    let client = crate::dataframe::cluster();
    let data = repository_root().join("tests/data/timeseries-2days");
    let sql = format!(
        "SELECT name, count(*) AS n, sum(id) AS s FROM '{}/' GROUP BY name ORDER BY name",
        data.display()
    );
    let scan_tasks = |graph: &StageGraph| graph.keys(0).len();
    let whole = client.sql(&sql).await.unwrap();
    let default = rask::internals::stages(&whole).await.unwrap();
    // Two files of 2.5 MB: one task a thread, as DataFusion plans them.
    assert_eq!(scan_tasks(&default), 2, "{}", pinned(&default));
    let expected = whole.collect().await.unwrap();

    // At most 1 MB a task (and files split from 1 byte up): six tasks.
    set(
        &client,
        &[
            "SET rask.scan_bytes_per_task = 1000000",
            "SET datafusion.optimizer.repartition_file_min_size = 1",
        ],
    )
    .await;
    let split = client.sql(&sql).await.unwrap();
    let graph = rask::internals::stages(&split).await.unwrap();
    assert_eq!(scan_tasks(&graph), 6, "{}", pinned(&graph));
    let answer = split.collect().await.unwrap();
    assert_eq!(
        rask::arrow::util::pretty::pretty_format_batches(&answer)
            .unwrap()
            .to_string(),
        rask::arrow::util::pretty::pretty_format_batches(&expected)
            .unwrap()
            .to_string()
    );
    let total: i64 = answer
        .iter()
        .map(|b| {
            rask::arrow::compute::sum(
                b.column(1)
                    .as_any()
                    .downcast_ref::<rask::arrow::array::Int64Array>()
                    .unwrap(),
            )
            .unwrap_or(0)
        })
        .sum();
    assert_eq!(total, 2 * 86_400, "every row counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_with_a_small_build_side_sends_it_whole_instead_of_shuffling_both() {
    let client = crate::dataframe::cluster();
    let data = repository_root().join("tests/data/timeseries-2days");
    // 172,800 rows of two numbers on the build side: above DataFusion's
    // thresholds for collecting it (128 Ki rows), within rask's.
    let sql = format!(
        "SELECT count(*) AS n FROM '{0}/' a JOIN (SELECT id, x FROM '{0}/') b \
         ON a.id = b.id AND a.x = b.x",
        data.display()
    );
    let count = |batches: &[rask::arrow::record_batch::RecordBatch]| {
        batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<rask::arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    };
    let broadcast = client.sql(&sql).await.unwrap();
    let graph = rask::internals::stages(&broadcast).await.unwrap();
    assert!(!pinned(&graph).contains("hash("), "{}", pinned(&graph));
    assert_eq!(count(&broadcast.collect().await.unwrap()), 2 * 86_400);

    // DataFusion's thresholds: both sides hash-partitioned, the same answer.
    set(
        &client,
        &[
            "SET datafusion.optimizer.hash_join_single_partition_threshold = 1048576",
            "SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 131072",
        ],
    )
    .await;
    let shuffled = client.sql(&sql).await.unwrap();
    let graph = rask::internals::stages(&shuffled).await.unwrap();
    assert_eq!(
        pinned(&graph).matches("hash(").count(),
        2,
        "{}",
        pinned(&graph)
    );
    assert_eq!(count(&shuffled.collect().await.unwrap()), 2 * 86_400);
}
