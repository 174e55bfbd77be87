//! The Dask-style DataFrame API, each operation checked against an answer
//! computed another way: DuckDB's answers on data Dask wrote
//! (`tests/data/`), or the same query written in SQL.

use std::sync::Arc;

use rask::arrow::record_batch::RecordBatch;
use rask::datafusion::prelude::{col, lit};
use rask::{Client, DataFrame, How, LocalCluster};

use crate::functions::custom_worker::with_z;
use crate::shared_data::{assert_matches_duckdb, assert_same_rows};
use crate::support::{repository_root, shared_data};

/// A client of an embedded cluster of two one-thread workers.
pub(crate) fn cluster() -> Client {
    LocalCluster::builder()
        .n_workers(2)
        .threads_per_worker(1)
        .build()
        .unwrap()
        .client()
        .unwrap()
}

fn csv(batches: &[RecordBatch]) -> Vec<String> {
    rask::output::format_rows(batches)
        .unwrap()
        .into_iter()
        .map(|row| row.join(","))
        .collect()
}

async fn rows(frame: DataFrame) -> Vec<String> {
    csv(&frame.collect().await.unwrap())
}

async fn sql_rows(client: &Client, sql: &str) -> Vec<String> {
    rows(client.sql(sql).await.unwrap()).await
}

/// [`assert_same_rows`] of owned lines.
fn assert_same(ours: &[String], theirs: &[String], what: &str) {
    fn lines(rows: &[String]) -> Vec<&str> {
        rows.iter().map(String::as_str).collect()
    }
    assert_same_rows(&lines(ours), &lines(theirs), what);
}

async fn two_days(client: &Client) -> DataFrame {
    let path = shared_data().join("timeseries-2days/");
    client
        .read_parquet(&path.display().to_string())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataframe_calls_answer_the_shared_queries_as_duckdb_does() {
    let client = cluster();
    // 1: SELECT name, max(x) AS max_x, avg(y) AS avg_y … GROUP BY name ORDER BY name
    let q1 = two_days(&client)
        .await
        .groupby(["name"])
        .agg([("x", "max"), ("y", "mean")])
        .unwrap()
        .rename([("x", "max_x"), ("y", "avg_y")])
        .unwrap();
    assert_matches_duckdb("1", q1).await;
    // 2: count(*) AS n WHERE x > 0, by name
    let q2 = two_days(&client)
        .await
        .filter(col("x").gt(lit(0.0)))
        .unwrap()
        .groupby(["name"])
        .size()
        .unwrap()
        .rename([("size", "n")])
        .unwrap();
    assert_matches_duckdb("2", q2).await;
    // 3: SELECT DISTINCT name ORDER BY name
    let q3 = two_days(&client)
        .await
        .unique("name")
        .unwrap()
        .sort_values([("name", true)])
        .unwrap();
    assert_matches_duckdb("3", q3).await;
    // 4: name, id, y ORDER BY y DESC, id LIMIT 3
    let q4 = two_days(&client)
        .await
        .select(["name", "id", "y"])
        .unwrap()
        .sort_values([("y", false), ("id", true)])
        .unwrap()
        .limit(3)
        .unwrap();
    assert_matches_duckdb("4", q4).await;
    // 5: count(*) AS c, sum(id) AS s, avg(x + y) AS m
    let q5 = two_days(&client)
        .await
        .assign("xy", col("x") + col("y"))
        .unwrap()
        .agg([("id", "size"), ("id", "sum"), ("xy", "mean")])
        .unwrap()
        .rename([("size", "c"), ("id_sum", "s"), ("xy", "m")])
        .unwrap();
    assert_matches_duckdb("5", q5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aggregation_matches_its_sql() {
    let client = cluster();
    let df = client.timeseries().end("2000-01-04").build().unwrap();
    let ours = df
        .groupby(["name"])
        .agg([
            ("x", "count"),
            ("x", "size"),
            ("x", "sum"),
            ("x", "min"),
            ("x", "max"),
            ("x", "mean"),
            ("y", "std"),
            ("y", "var"),
            ("id", "nunique"),
        ])
        .unwrap();
    let names: Vec<String> = ours.columns();
    assert_eq!(
        names,
        [
            "name", "x_count", "size", "x_sum", "x_min", "x_max", "x_mean", "y_std", "y_var", "id"
        ]
    );
    let expected = sql_rows(
        &client,
        "SELECT name, count(x), count(*), sum(x), min(x), max(x), avg(x), stddev(y), var_samp(y), count(DISTINCT id) \
         FROM timeseries('2000-01-01', '2000-01-04') GROUP BY name ORDER BY name",
    )
    .await;
    assert_same(&rows(ours).await, &expected, "aggregations");
    // First and last are order-dependent; over one partition, they are its ends.
    let one = client.timeseries().end("2000-01-02").build().unwrap();
    let ends = rows(one.agg([("id", "first"), ("id", "last")]).unwrap()).await;
    let expected = sql_rows(
        &client,
        "SELECT first_value(id), last_value(id) FROM timeseries('2000-01-01', '2000-01-02')",
    )
    .await;
    assert_eq!(ends, expected);
    let unknown = client
        .timeseries()
        .build()
        .unwrap()
        .agg([("x", "median")])
        .unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("unknown aggregation \"median\""),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_and_column_operations_match_their_sql() {
    let client = cluster();
    let week = || client.timeseries().end("2000-01-08").build().unwrap();
    let sql = |body: &str| format!("{body} FROM timeseries('2000-01-01', '2000-01-08')");

    let assigned = week()
        .assign("z", col("x") * col("y"))
        .unwrap()
        .filter(col("z").gt(lit(0.5)))
        .unwrap()
        .select(["name", "id", "z"])
        .unwrap()
        .sort_values([("id", true), ("z", false)])
        .unwrap();
    let expected = sql_rows(
        &client,
        &(sql("SELECT name, id, x * y AS z") + " WHERE x * y > 0.5 ORDER BY id, z DESC"),
    )
    .await;
    assert_eq!(rows(assigned).await, expected);

    // A closure the registry does not hold runs in the cluster's tasks: the
    // workers share this process.
    let square = rask::udf::scalar("square", |x: f64| x * x);
    let applied = week()
        .apply("x", &square)
        .unwrap()
        .agg([("x", "sum")])
        .unwrap();
    let tasks = applied.structure().await.unwrap().tasks;
    assert!(tasks > 1, "{tasks} tasks");
    let local = client.local_cluster().expect("a local cluster");
    let before = local.tasks_finished();
    let ours = rows(applied).await;
    assert_eq!(local.tasks_finished() - before, tasks as u64, "tasks run");
    let expected = sql_rows(&client, &sql("SELECT sum(x * x)")).await;
    assert_same(&ours, &expected, "apply");

    let head = week()
        .sort_values([("id", true)])
        .unwrap()
        .head(5)
        .await
        .unwrap();
    let expected = sql_rows(&client, &(sql("SELECT *") + " ORDER BY id LIMIT 5")).await;
    assert_eq!(csv(&head), expected);

    let deduplicated = week()
        .select(["name"])
        .unwrap()
        .drop_duplicates()
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(deduplicated, 26);

    let spread = week().repartition(3).unwrap();
    assert_eq!(spread.clone().count().await.unwrap(), 7 * 86_400);
    let indexed = week().set_index("x").unwrap().head(1).await.unwrap();
    let expected = sql_rows(&client, &(sql("SELECT *") + " ORDER BY x LIMIT 1")).await;
    assert_eq!(csv(&indexed), expected);
    assert!(week().repartition(0).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_joins_like_pandas() {
    let client = cluster();
    let people = client
        .read_csv(
            &repository_root()
                .join("sample_data/people.csv")
                .display()
                .to_string(),
        )
        .await
        .unwrap();
    let names: Vec<String> = people.columns();
    assert!(names.contains(&"name".to_string()), "{names:?}");
    let counts = client
        .timeseries()
        .end("2000-01-02")
        .build()
        .unwrap()
        .groupby(["name"])
        .size()
        .unwrap();
    let merged = people
        .clone()
        .merge(counts.clone(), ["name"], How::Inner)
        .unwrap();
    let merged_names: Vec<String> = merged.columns();
    assert_eq!(
        merged_names.iter().filter(|n| *n == "name").count(),
        1,
        "{merged_names:?}"
    );
    assert_eq!(merged_names.last().map(String::as_str), Some("size"));
    let ours = rows(merged.sort_values([("name", true)]).unwrap()).await;
    let path = repository_root().join("sample_data/people.csv");
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE people STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            path.display()
        ))
        .await
        .unwrap();
    let columns = names
        .iter()
        .map(|n| format!("p.\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let expected = sql_rows(
        &client,
        &format!(
            "SELECT {columns}, c.size FROM people p JOIN \
             (SELECT name, count(*) AS size FROM timeseries('2000-01-01', '2000-01-02') GROUP BY name) c \
             ON p.name = c.name ORDER BY p.name"
        ),
    )
    .await;
    assert_eq!(ours, expected);
    assert!(!ours.is_empty());
    let left = people.merge(counts, ["name"], How::Left).unwrap();
    let expected_left = sql_rows(&client, "SELECT count(*) FROM people").await;
    assert_eq!(vec![left.count().await.unwrap().to_string()], expected_left);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_start_from_files_generators_and_batches_and_write_files() {
    let client = cluster();
    let built = client
        .timeseries()
        .start("2000-01-02")
        .end("2000-01-03")
        .freq("10s")
        .partition_freq("6h")
        .seed(7)
        .build()
        .unwrap();
    assert_eq!(built.structure().await.unwrap().npartitions, 4);
    let expected = sql_rows(
        &client,
        "SELECT * FROM timeseries('2000-01-02', '2000-01-03', '10s', '6h', 7) ORDER BY timestamp",
    )
    .await;
    let ours = built.sort_values([("timestamp", true)]).unwrap();
    let batches = ours.collect().await.unwrap();
    assert_eq!(csv(&batches), expected);

    let bad = client.timeseries().freq("often").build().unwrap_err();
    assert!(bad.to_string().contains("freq"), "{bad}");
    let empty = client
        .timeseries()
        .start("2000-02-01")
        .end("2000-01-01")
        .build()
        .unwrap_err();
    assert!(empty.to_string().contains("must be after start"), "{empty}");

    // Written and read back, as Parquet and as CSV.
    let dir = tempfile::tempdir().unwrap();
    let from_batches = client.from_batches(batches.clone()).unwrap();
    let parquet = dir.path().join("parquet");
    from_batches
        .clone()
        .to_parquet(&parquet.display().to_string())
        .await
        .unwrap();
    let back = client
        .read_parquet(&parquet.display().to_string())
        .await
        .unwrap();
    assert_eq!(
        rows(back.sort_values([("timestamp", true)]).unwrap()).await,
        expected
    );
    // The same files by a glob, and by a file:// URL (an object store's).
    for path in [
        format!("{}/*.parquet", parquet.display()),
        format!("file://{}/", parquet.display()),
    ] {
        let back = client.read_parquet(&path).await.unwrap();
        assert_eq!(
            rows(back.sort_values([("timestamp", true)]).unwrap()).await,
            expected,
            "{path}"
        );
    }
    let csv_dir = dir.path().join("csv");
    from_batches
        .select(["name", "id"])
        .unwrap()
        .to_csv(&csv_dir.display().to_string())
        .await
        .unwrap();
    let back = client
        .read_csv(&csv_dir.display().to_string())
        .await
        .unwrap();
    assert_eq!(back.count().await.unwrap(), 8640);

    let json = client
        .read_json(
            &repository_root()
                .join("sample_data/orders.json")
                .display()
                .to_string(),
        )
        .await
        .unwrap();
    let lines = std::fs::read_to_string(repository_root().join("sample_data/orders.json"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    assert_eq!(json.count().await.unwrap(), lines);
    let missing = client.read_parquet("/no/such/folder/").await.unwrap_err();
    assert!(
        missing.to_string().contains("/no/such/folder/"),
        "{missing}"
    );
    assert!(client.from_batches(Vec::new()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_partitions_runs_in_the_tasks_of_its_input() {
    let client = cluster();
    let function = rask::udf::partition("with_z", with_z);
    let mapped = client
        .timeseries()
        .build()
        .unwrap()
        .map_partitions(&function)
        .unwrap();
    assert_eq!(mapped.columns(), ["timestamp", "id", "name", "x", "y", "z"]);
    let structure = mapped.structure().await.unwrap();
    assert_eq!((structure.npartitions, structure.tasks), (30, 30));
    assert!(
        structure
            .to_string()
            .ends_with("rask Name: map-partitions, 30 tasks"),
        "{structure}"
    );
    let sums = mapped
        .clone()
        .groupby(["name"])
        .agg([("z", "sum")])
        .unwrap();
    let expected = sql_rows(
        &client,
        "SELECT name, sum(x * y) FROM timeseries() GROUP BY name ORDER BY name",
    )
    .await;
    assert_same(&rows(sums).await, &expected, "sums of map_partitions");
    assert_eq!(mapped.count().await.unwrap(), 2_592_000);

    // An error on data fails the query with the function's name and message.
    let picky = rask::udf::partition("picky", |batch: RecordBatch| {
        if batch.num_rows() > 0 {
            Err(format!("{} rows is too many", batch.num_rows()))
        } else {
            Ok(batch)
        }
    });
    let df = client.timeseries().end("2000-01-02").build().unwrap();
    let err = df
        .clone()
        .map_partitions(&picky)
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("map_partitions picky: "), "{err}");
    assert!(err.to_string().contains("rows is too many"), "{err}");
    // Persisted, the error reaches every query reading it, and its drawing.
    let failed = df
        .clone()
        .map_partitions(&picky)
        .unwrap()
        .persist()
        .await
        .unwrap();
    let err = failed.clone().count().await.unwrap_err();
    assert!(err.to_string().contains("rows is too many"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let dot_path = dir.path().join("failed.dot");
    failed.visualize(&dot_path).await.unwrap();
    let dot = std::fs::read_to_string(&dot_path).unwrap();
    assert!(
        dot.contains("fillcolor=\"#d62728\""),
        "erred partitions are red: {dot}"
    );
    // A panic too; the workers live on.
    let panicky = rask::udf::partition("panicky", |batch: RecordBatch| {
        if batch.num_rows() > 0 {
            panic!("no rows wanted");
        }
        Ok::<_, String>(batch)
    });
    let err = df
        .clone()
        .map_partitions(&panicky)
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("map_partitions panicky: panicked: no rows wanted"),
        "{err}"
    );
    assert_eq!(df.clone().count().await.unwrap(), 86_400);
    // One that fails on an empty batch cannot say what it returns: refused at once.
    let hopeless =
        rask::udf::partition("hopeless", |_: RecordBatch| Err::<RecordBatch, _>("never"));
    let err = df.map_partitions(&hopeless).unwrap_err();
    assert!(
        err.to_string().contains("map_partitions hopeless: never"),
        "{err}"
    );
}

/// Dask's contract: `map_partitions` gives the function each partition
/// whole; `map_batches` each batch as it streams. A row number within what
/// the function is given tells them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_partitions_sees_whole_partitions_and_map_batches_single_batches() {
    use rask::arrow::array::{ArrayRef, Int64Array};
    use rask::arrow::datatypes::{DataType, Field};

    let client = cluster();
    let row_number = rask::udf::partition("row_number", |batch: RecordBatch| {
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(0..batch.num_rows() as i64));
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("n", DataType::Int64, false));
        let mut columns = batch.columns().to_vec();
        columns.push(n);
        RecordBatch::try_new(
            Arc::new(rask::arrow::datatypes::Schema::new(fields)),
            columns,
        )
    });
    // Two daily partitions of 86,400 rows each.
    let days = || client.timeseries().end("2000-01-03").build().unwrap();
    let stats = |frame: DataFrame| async move {
        let summary = frame.agg([("n", "max"), ("n", "count")]).unwrap();
        rows(summary).await
    };
    let whole = days().map_partitions(&row_number).unwrap();
    assert_eq!(stats(whole).await, ["86399,172800"]);
    let batches = days().map_batches(&row_number).unwrap();
    let summary = stats(batches).await;
    let max: i64 = summary[0].split(',').next().unwrap().parse().unwrap();
    assert!(
        max < 8192,
        "per batch, no row number reaches a batch's size: {summary:?}"
    );
    assert!(summary[0].ends_with(",172800"), "{summary:?}");
    let plan = days().map_batches(&row_number).unwrap();
    let plan = plan.logical_plan().display_indent().to_string();
    assert!(
        plan.contains("MapPartitions: row_number (per batch)"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visualize_draws_every_task_coloured_by_operation() {
    let client = cluster();
    let grouped = client
        .timeseries()
        .build()
        .unwrap()
        .groupby(["name"])
        .agg([("x", "max"), ("y", "mean")])
        .unwrap();
    let explained = grouped.explain().await.unwrap();
    assert!(explained.starts_with("2 stages, 32 tasks"), "{explained}");
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("graph.svg");
    grouped.visualize(&svg_path).await.unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert_eq!(svg.matches("<circle").count(), 32, "one circle a task");
    // 30 partial aggregates all feed both final aggregates; those feed the client.
    assert_eq!(svg.matches("<line").count(), 30 * 2 + 2);
    assert!(
        svg.contains("aggregate × 30") && svg.contains("sort × 2"),
        "{svg}"
    );
    assert!(svg.contains("sort-preserving-merge in the client"), "{svg}");
    let colours: std::collections::BTreeSet<&str> = svg
        .split("<circle")
        .skip(1)
        .filter_map(|c| c.split("fill=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(colours.len(), 2, "one colour per operation: {colours:?}");

    let dot_path = dir.path().join("graph.dot");
    grouped.visualize(&dot_path).await.unwrap();
    let dot = std::fs::read_to_string(&dot_path).unwrap();
    assert!(dot.starts_with("digraph tasks {"), "{dot}");
    assert_eq!(dot.matches("shape=circle").count(), 32);
    assert_eq!(dot.matches(" -> ").count(), 30 * 2 + 2);

    // The same from the command line.
    let out = dir.path().join("query.svg");
    crate::support::run(crate::support::rask().args([
        "query",
        "--visualize",
        &out.display().to_string(),
        "-c",
        "SELECT name, max(x), avg(y) FROM timeseries() GROUP BY name ORDER BY name",
    ]))
    .success();
    let drawn = std::fs::read_to_string(&out).unwrap();
    assert_eq!(drawn.matches("<circle").count(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_partitions_stay_on_the_workers_and_later_queries_reuse_them() {
    let client = cluster();
    let local = std::sync::Arc::clone(client.local_cluster().unwrap());
    let grouped = || {
        client
            .timeseries()
            .build()
            .unwrap()
            .groupby(["name"])
            .agg([("x", "max"), ("y", "mean")])
            .unwrap()
    };
    let expected = sql_rows(
        &client,
        "SELECT name, max(x) AS x, avg(y) AS y FROM timeseries() GROUP BY name ORDER BY name",
    )
    .await;

    let persisted = grouped().persist().await.unwrap();
    assert_eq!(persisted.index(), ["name"]);
    let structure = persisted.structure().await.unwrap();
    assert_eq!(
        (structure.npartitions, structure.tasks),
        (1, 0),
        "{structure}"
    );
    assert!(
        persisted.explain().await.unwrap().starts_with("no tasks"),
        "{}",
        persisted.explain().await.unwrap()
    );
    // Computed alone, it runs no task: the client reads the two partitions.
    let computed = rows(persisted.clone()).await;
    let finished = local.tasks_finished();
    assert_eq!(computed, expected, "sorted by name as the groupby was");
    assert_eq!(rows(persisted.clone()).await, expected);
    assert_eq!(local.tasks_finished(), finished, "no task ran for it");
    assert!(local.results_held() >= 2, "its partitions are held");

    // A query on it reads them in place: 2 tasks instead of 32.
    let filter = || col("x").gt(lit(0.9999)).and(col("y").lt(lit(0.0)));
    let derived = persisted.clone().filter(filter()).unwrap();
    let fresh = grouped().filter(filter()).unwrap();
    assert_eq!(fresh.structure().await.unwrap().tasks, 32);
    assert_eq!(derived.structure().await.unwrap().tasks, 2);
    let expected_filtered = sql_rows(
        &client,
        "SELECT * FROM (SELECT name, max(x) AS x, avg(y) AS y FROM timeseries() GROUP BY name) \
         WHERE x > 0.9999 AND y < 0 ORDER BY name",
    )
    .await;
    assert!(!expected_filtered.is_empty());
    let finished = local.tasks_finished();
    assert_eq!(rows(derived).await, expected_filtered);
    assert_eq!(local.tasks_finished() - finished, 2);

    // Drawn with their state: both partitions in memory.
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("persisted.svg");
    persisted.visualize(&svg_path).await.unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.contains("persisted sort × 2, 2 in memory"), "{svg}");
    assert_eq!(svg.matches("(in memory)</title>").count(), 2, "{svg}");
    let dot_path = dir.path().join("persisted.dot");
    persisted.visualize(&dot_path).await.unwrap();
    let dot = std::fs::read_to_string(&dot_path).unwrap();
    assert_eq!(dot.matches("penwidth=3").count(), 2, "{dot}");

    // A persisted month: the groupby reads it instead of generating it again.
    let month = client
        .timeseries()
        .build()
        .unwrap()
        .persist()
        .await
        .unwrap();
    let from_month = month
        .clone()
        .groupby(["name"])
        .agg([("x", "max"), ("y", "mean")])
        .unwrap();
    let graph = from_month.explain().await.unwrap();
    assert!(
        graph.contains("reads persisted timeseries (30 partitions)"),
        "{graph}"
    );
    assert_eq!(rows(from_month).await, expected);
    assert_eq!(month.count().await.unwrap(), 30 * 86_400);

    // Once no frame holds them, the workers let them go.
    drop(persisted);
    crate::cluster::wait_until_cluster_empty(&local);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_computes_only_the_partitions_it_needs() {
    let client = cluster();
    let local = std::sync::Arc::clone(client.local_cluster().unwrap());
    let month = || client.timeseries().build().unwrap();
    let first = |n: usize| format!("SELECT * FROM timeseries() ORDER BY timestamp LIMIT {n}");

    let expected = sql_rows(&client, &first(5)).await;
    let finished = local.tasks_finished();
    let head = month().head(5).await.unwrap();
    assert_eq!(
        local.tasks_finished() - finished,
        1,
        "the first partition only"
    );
    assert_eq!(csv(&head), expected);

    // A day has 86,400 rows: 100,000 take two partitions.
    let expected = sql_rows(&client, &first(100_000)).await;
    let finished = local.tasks_finished();
    let head = month().head(100_000).await.unwrap();
    assert_eq!(local.tasks_finished() - finished, 2);
    assert_eq!(csv(&head), expected);

    // After a filter, partitions go on until there are enough rows.
    let filtered = month()
        .filter(col("name").eq(lit("Alice")))
        .unwrap()
        .head(10)
        .await
        .unwrap();
    let expected = sql_rows(
        &client,
        "SELECT * FROM timeseries() WHERE name = 'Alice' ORDER BY timestamp LIMIT 10",
    )
    .await;
    assert_eq!(csv(&filtered), expected);

    // A sorted frame needs every partition's top rows.
    let top = month()
        .sort_values([("x", false)])
        .unwrap()
        .head(3)
        .await
        .unwrap();
    let expected = sql_rows(
        &client,
        "SELECT * FROM timeseries() ORDER BY x DESC LIMIT 3",
    )
    .await;
    assert_eq!(csv(&top), expected);

    // More rows than there are: all of them.
    let all = client
        .timeseries()
        .end("2000-01-02")
        .freq("1h")
        .build()
        .unwrap()
        .head(1000)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|b| b.num_rows()).sum::<usize>(), 24);
}

/// A plan that cannot be cut into tasks (a recursive query) runs in the
/// client, and every listing says so and why; no task runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_runs_in_the_client_says_so() {
    let client = cluster();
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) \
               SELECT sum(i) AS total FROM n";
    let why = "RecursiveQueryExec cannot run as separate tasks";
    let explained = client.explain(sql).await.unwrap();
    assert_eq!(
        explained,
        format!("no tasks: runs in the client, as {why}\n")
    );
    let frame = client.sql(sql).await.unwrap();
    let structure = frame.structure().await.unwrap();
    assert_eq!(structure.tasks, 0);
    assert_eq!(structure.in_client.as_deref(), Some(why));
    assert!(
        structure
            .to_string()
            .ends_with(&format!("runs in the client, as {why}"))
    );
    let plan = client.sql(&format!("EXPLAIN {sql}")).await.unwrap();
    let listing = csv(&plan.collect().await.unwrap()).join("\n");
    assert!(
        listing.contains(&format!("no tasks: runs in the client, as {why}")),
        "{listing}"
    );
    let local = client.local_cluster().expect("a local cluster");
    let before = local.tasks_finished();
    assert_eq!(rows(frame).await, ["15"]);
    assert_eq!(local.tasks_finished(), before, "no task runs");
}

/// DDL (done as it is planned) and a query that reads nothing send no task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_reads_nothing_runs_no_task() {
    let client = cluster();
    let local = client.local_cluster().expect("a local cluster");
    let before = local.tasks_finished();
    let created = client
        .sql("CREATE VIEW v AS SELECT 1 AS one")
        .await
        .unwrap();
    assert!(created.collect().await.unwrap().is_empty());
    let nothing = "SELECT one FROM v WHERE false";
    assert_eq!(
        client.explain(nothing).await.unwrap(),
        "no tasks: runs in the client, as it reads no data\n"
    );
    let rows = client.sql(nothing).await.unwrap().collect().await.unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    assert_eq!(local.tasks_finished(), before, "no task runs");
    assert_eq!(
        csv(&client
            .sql("SELECT one FROM v")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()),
        ["1"]
    );
    assert_eq!(
        local.tasks_finished(),
        before,
        "SELECT without FROM runs no task"
    );

    // A count the files' statistics answer reads no data either.
    let people = crate::support::repository_root().join("sample_data/people.parquet");
    let count = format!("SELECT count(*) FROM '{}'", people.display());
    assert_eq!(
        client.explain(&count).await.unwrap(),
        "no tasks: runs in the client, as it reads no data\n"
    );
    let counted = csv(&client.sql(&count).await.unwrap().collect().await.unwrap());
    assert_eq!(local.tasks_finished(), before, "no task runs");
    let filtered = format!("{count} WHERE name <> ''");
    let scanned = csv(&client
        .sql(&filtered)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap());
    assert!(local.tasks_finished() > before, "a filter reads the rows");
    assert_eq!(counted, scanned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_computes_the_partitions_it_needs_not_all() {
    // 30 daily partitions of 86,400 rows; 100,000 rows are in the first two.
    let client = cluster();
    let local = client.local_cluster().expect("a local cluster");
    let sql = "SELECT * FROM timeseries() LIMIT 100000";
    let frame = client.sql(sql).await.unwrap();
    assert_eq!(frame.structure().await.unwrap().tasks, 30);
    let before = local.tasks_finished();
    let batches = frame.collect().await.unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 100_000);
    // The first partitions run first, as Dask's head reads them: the rows
    // are of the first five days at the latest.
    use rask::arrow::array::AsArray;
    use rask::arrow::datatypes::TimestampNanosecondType;
    let latest = batches
        .iter()
        .filter_map(|b| {
            rask::arrow::compute::max(b.column(0).as_primitive::<TimestampNanosecondType>())
        })
        .max()
        .expect("timestamps");
    let fifth_day_ends = 946_684_800_000_000_000 + 5 * 86_400 * 1_000_000_000;
    assert!(latest < fifth_day_ends, "a row of {latest} ns");
    // The partitions' exact row counts say the first two hold the rows: only
    // they are submitted, and only they run.
    let ran = local.tasks_finished() - before;
    assert_eq!(ran, 2, "{ran} of 30 tasks ran");
    // Tasks of the latest query's stage.
    let submitted = |groups: Vec<rask::GroupProgress>| {
        groups
            .iter()
            .max_by_key(|g| g.order)
            .expect("the query's group")
            .total
    };
    assert_eq!(submitted(client.progress().await.unwrap()), 2);
    // Under a filter the counts are not known: a window of 2 partitions per
    // thread (4 here) is computed ahead of the reader, and once the
    // partitions read hold the rows (about three days' worth) the rest are
    // never submitted.
    let before = local.tasks_finished();
    let filtered = crate::support::collect(
        &client,
        "SELECT * FROM timeseries() WHERE x > 0 LIMIT 100000",
    )
    .await;
    assert_eq!(
        filtered.iter().map(RecordBatch::num_rows).sum::<usize>(),
        100_000
    );
    let ran = local.tasks_finished() - before;
    assert!((3..=8).contains(&ran), "{ran} of 30 tasks ran");
    let total = submitted(client.progress().await.unwrap());
    assert!((3..=8).contains(&total), "{total} of 30 tasks submitted");
    // An offset counts among the rows the merge needs.
    let skipped =
        crate::support::collect(&client, "SELECT * FROM timeseries() LIMIT 7 OFFSET 259195").await;
    assert_eq!(skipped.iter().map(RecordBatch::num_rows).sum::<usize>(), 7);
}
