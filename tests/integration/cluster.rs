//! The shared scheduler on the local cluster: stages and task counts, futures,
//! errors, cancellation and release, through the library API.

use std::time::{Duration, Instant};

use rask::{Client, FutureStatus, LocalCluster};

const GROUPBY: &str = "SELECT name, max(x), avg(y) FROM timeseries() GROUP BY name ORDER BY name";

fn cluster(workers: usize, threads: usize) -> Client {
    LocalCluster::builder()
        .n_workers(workers)
        .threads_per_worker(threads)
        .build()
        .unwrap()
        .client()
        .unwrap()
}

/// Waits until the workers hold no results (releases travel through the scheduler thread).
fn wait_until_empty(client: &Client) {
    wait_until_cluster_empty(client.local_cluster().expect("a local cluster"));
}

/// Waits until `cluster`'s workers hold no results.
pub(crate) fn wait_until_cluster_empty(cluster: &LocalCluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.results_held() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} results still held",
            cluster.results_held()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_groupby_is_cut_into_stages_at_the_exchanges() {
    let client = cluster(1, 2);
    let graph = rask::internals::stages(&client.sql(GROUPBY).await.unwrap())
        .await
        .unwrap();
    let tasks: Vec<usize> = graph.stages.iter().map(|s| s.partitions()).collect();
    // 30 partial aggregates, 2 final aggregates (hash exchange into 2); the
    // client merges the 2 sorted results as it fetches them.
    assert_eq!(tasks, [30, 2], "{graph}");
    assert_eq!(graph.task_count(), 32);
    let text = graph.to_string();
    assert!(text.starts_with("2 stages, 32 tasks\n"), "{text}");
    assert!(text.contains("30 tasks → hash(name@0) into 2"), "{text}");
    assert!(
        text.ends_with("then sort-preserving-merge in the client\n"),
        "{text}"
    );
    let key = graph.key(0, 7);
    assert_eq!(key.operation(), "aggregate");
    assert!(key.as_str().ends_with("-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_read_their_build_side_from_its_own_stage() {
    let client = cluster(2, 1);
    client
        .sql("CREATE TABLE small AS VALUES ('Alice', 1), ('Bob', 2)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let sql = "SELECT s.column2, count(*) FROM timeseries() t JOIN small s ON t.name = s.column1 GROUP BY s.column2 ORDER BY 1";
    let graph = rask::internals::stages(&client.sql(sql).await.unwrap())
        .await
        .unwrap();
    assert!(graph.stages.len() >= 3, "{graph}");
    let batches = client.sql(sql).await.unwrap().collect().await.unwrap();
    let text = rask::output::to_string(
        rask::output::Format::Csv,
        batches[0].schema(),
        &batches,
        None,
    )
    .unwrap();
    // Same answer as without the join.
    let direct = client
        .sql("SELECT CASE name WHEN 'Alice' THEN 1 ELSE 2 END AS k, count(*) FROM timeseries() WHERE name IN ('Alice', 'Bob') GROUP BY k ORDER BY 1")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let expected =
        rask::output::to_string(rask::output::Format::Csv, direct[0].schema(), &direct, None)
            .unwrap();
    assert_eq!(
        text.lines().skip(1).collect::<Vec<_>>(),
        expected.lines().skip(1).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_gives_a_future_to_await_or_block_on() {
    let client = cluster(2, 1);
    let df = client.sql(GROUPBY).await.unwrap();
    let future = client.compute(&df).await.unwrap();
    assert!(future.key().as_str().starts_with("finalize-"), "{future:?}");
    let data = (&future).await.unwrap();
    assert_eq!(data.batches().map(|b| b.num_rows()).sum::<usize>(), 26);
    assert_eq!(future.status(), FutureStatus::Finished);

    // result() blocks a plain thread until the data is there.
    let second = client.compute(&df).await.unwrap();
    let rows = std::thread::spawn(move || {
        second
            .result()
            .map(|d| d.batches().map(|b| b.num_rows()).sum::<usize>())
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(rows, 26);

    // gather waits for several.
    let a = client
        .compute(&client.sql("SELECT 1 AS one").await.unwrap())
        .await
        .unwrap();
    let b = client
        .compute(&client.sql("SELECT 2 AS two").await.unwrap())
        .await
        .unwrap();
    let both = client.gather(&[a, b]).await.unwrap();
    let values: Vec<Vec<Vec<String>>> = both
        .iter()
        .map(|data| {
            let batches: Vec<_> = data.batches().cloned().collect();
            rask::output::format_rows(&batches).unwrap()
        })
        .collect();
    assert_eq!(values, [[["1"]], [["2"]]], "each future's value, in order");

    // Dropping the last future releases every result on the workers.
    drop(future);
    drop(both);
    wait_until_empty(&client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_errors_reach_the_future_with_the_failing_key() {
    let client = cluster(1, 2);
    let df = client
        .sql("SELECT CAST(name AS INT) AS n FROM timeseries()")
        .await
        .unwrap();
    let future = client.compute(&df).await.unwrap();
    let err = (&future).await.unwrap_err().to_string();
    assert_eq!(future.status(), FutureStatus::Error);
    // The finalize task reports the error of the task that failed, naming it and its worker.
    assert!(
        err.contains("failed on worker 0") && err.contains("Cannot cast string"),
        "{err}"
    );
    assert!(future.exception().is_some());
    drop(future);
    wait_until_empty(&client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_work_and_frees_it() {
    let client = cluster(1, 1);
    // A big query on one thread: cancel it while it runs.
    let df = client
        .sql("SELECT count(DISTINCT x) FROM timeseries('2000-01-01', '2000-03-01')")
        .await
        .unwrap();
    let future = client.compute(&df).await.unwrap();
    assert_eq!(future.status(), FutureStatus::Pending);
    future.cancel();
    let err = (&future).await.unwrap_err();
    assert!(matches!(err, rask::Error::Cancelled), "{err}");
    assert_eq!(future.status(), FutureStatus::Cancelled);
    drop(future);
    wait_until_empty(&client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_free_their_intermediate_results() {
    let client = cluster(2, 2);
    for _ in 0..3 {
        let batches = client.sql(GROUPBY).await.unwrap().collect().await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 26);
    }
    wait_until_empty(&client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dataframe_display_shows_partitions_and_tasks() {
    let client = cluster(1, 2);
    let df = client.sql("SELECT * FROM timeseries()").await.unwrap();
    let text = df.structure().await.unwrap().to_string();
    assert!(text.contains("npartitions=30"), "{text}");
    assert!(text.ends_with("rask Name: timeseries, 30 tasks"), "{text}");
    assert!(
        text.contains("timestamp") && text.contains("float64"),
        "{text}"
    );
    let grouped = client
        .sql(GROUPBY)
        .await
        .unwrap()
        .structure()
        .await
        .unwrap();
    assert_eq!((grouped.npartitions, grouped.tasks), (1, 32));
    assert_eq!(grouped.operation, "sort-preserving-merge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_tasks_read_their_inputs_results() {
    use rask::TaskData;
    use rask::TaskGraph;

    let client = cluster(2, 1);
    let number = |v: u64| TaskData::local_value(v, 8);
    let mut graph = TaskGraph::new();
    let leaves: Vec<_> = (1..=10u64)
        .map(|i| graph.add("leaf", &[], move |_| Ok(number(i))))
        .collect();
    let total = graph.add("sum", &leaves, move |args| {
        args.iter()
            .map(|a| a.value::<u64>().copied().ok_or("not a number".to_string()))
            .sum::<Result<u64, _>>()
            .map(number)
    });
    let failing = graph.add("explode", std::slice::from_ref(&total), |_| {
        Err("it went wrong".to_string())
    });
    let futures = client.submit_graph(graph, &[total, failing]);
    assert!(futures[0].key().as_str().starts_with("sum-"));
    let sum = futures[0].data().await.unwrap();
    assert_eq!(sum.value::<u64>(), Some(&55));
    let err = futures[1].data().await.unwrap_err().to_string();
    assert!(
        err.contains("failed on worker") && err.contains("explode: it went wrong"),
        "{err}"
    );
    drop(futures);
    wait_until_empty(&client);
}

/// Many clients submitting small graphs at once, from several threads, while
/// workers report from theirs: every graph finishes with the right value and
/// nothing is left held. A lost message or wake-up would stall here, so the
/// work runs under a watchdog that fails the test instead of hanging CI.
#[test]
fn concurrent_clients_and_tiny_tasks_never_stall() {
    use std::sync::Arc;
    use std::sync::mpsc;

    use rask::TaskData;
    use rask::TaskGraph;

    let cluster = LocalCluster::builder()
        .n_workers(2)
        .threads_per_worker(2)
        .build()
        .unwrap();
    let (done, finished) = mpsc::channel();
    for thread in 0..4u64 {
        let cluster = Arc::clone(&cluster);
        let done = done.clone();
        std::thread::spawn(move || {
            let client = cluster.client().unwrap();
            let number = |v: u64| TaskData::local_value(v, 8);
            let value = |d: &Arc<TaskData>| d.value::<u64>().copied().ok_or("not a number");
            for round in 0..500u64 {
                let mut graph = TaskGraph::new();
                let base = thread * 1000 + round;
                let a = graph.add("one", &[], move |_| Ok(number(base)));
                // An input passed twice reaches the function twice.
                let twice = graph.add("twice", &[a.clone(), a.clone()], move |args| {
                    Ok(number(value(&args[0])? + value(&args[1])?))
                });
                let leaves: Vec<_> = (0..6u64)
                    .map(|i| graph.add("leaf", &[], move |_| Ok(number(i))))
                    .collect();
                let mut inputs = leaves.clone();
                inputs.push(twice);
                let total = graph.add("sum", &inputs, move |args| {
                    let mut sum = 0;
                    for a in args {
                        sum += value(a)?;
                    }
                    Ok(number(sum))
                });
                let futures = client.submit_graph(graph, &[total]);
                let data = futures[0].result().unwrap();
                assert_eq!(data.value::<u64>(), Some(&(2 * base + 15)));
            }
            done.send(()).unwrap();
        });
    }
    for _ in 0..4 {
        finished
            .recv_timeout(Duration::from_secs(120))
            .expect("the cluster stalled: a graph never finished");
    }
    wait_until_cluster_empty(&cluster);
}

/// A client whose registry has `square`, `boom` (a UDF that panics on
/// negative input) and the task function `add`.
fn with_functions() -> Client {
    fn add(a: &i64, b: &i64) -> i64 {
        a + b
    }
    let registry = rask::udf::Registry::new()
        .with_scalar(rask::udf::scalar("square", |x: f64| x * x))
        .with_scalar(rask::udf::scalar("boom", |x: f64| {
            assert!(x >= 0.0, "boom on {x}");
            x
        }))
        .with_function("add", add)
        .with_function("one", || 1i64);
    rask::Client::with_config(rask::Config {
        workers: 2,
        threads: 1,
        registry,
        ..rask::Config::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udfs_from_closures_run_in_sql_and_fail_their_task_only() {
    let client = with_functions();
    let sql = "SELECT sum(square(x)) - sum(x * x) AS d, count(*) AS n FROM timeseries('2000-01-01', '2000-01-03')";
    let batches = client.sql(sql).await.unwrap().collect().await.unwrap();
    let formatted = rask::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(formatted.contains("| 0.0 | 172800 |"), "{formatted}");
    // A panic inside the UDF fails the query with its name; the workers live on.
    let sql = "SELECT boom(x) FROM timeseries('2000-01-01', '2000-01-02')";
    let err = crate::support::sql_error(&client, sql).await;
    assert!(err.contains("UDF boom: panicked: boom on -"), "{err}");
    let again =
        client.sql("SELECT count(boom(abs(x))) FROM timeseries('2000-01-01', '2000-01-02')");
    let batches = again.await.unwrap().collect().await.unwrap();
    assert_eq!(batches[0].num_rows(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_functions_run_by_name_on_the_local_cluster() {
    let client = with_functions();
    let registry = client.registry().clone();
    let mut graph = rask::TaskGraph::new();
    let one = graph.call(&registry, "one", &[]).unwrap();
    let two = graph.call(&registry, "add", &[one.clone(), one]).unwrap();
    let four = graph.call(&registry, "add", &[two.clone(), two]).unwrap();
    let futures = client.submit_graph(graph, &[four]);
    let values = client.gather(&futures).await.unwrap();
    // In process, the value is read in place, no decoding.
    assert_eq!(values[0].value::<i64>(), Some(&4));
    assert_eq!(values[0].get::<i64>().unwrap(), &4);
    let err = values[0].get::<String>().unwrap_err().to_string();
    assert!(
        err.contains("cannot read a i64 value as alloc::string::String"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_values_are_shared_in_place_on_the_local_cluster() {
    let client = with_functions();
    let registry = client.registry().clone();
    let a = client.scatter(40i64).await.unwrap();
    let b = client.broadcast(2i64).await.unwrap();
    assert_eq!(a.status(), FutureStatus::Finished);
    assert_eq!(client.local_cluster().unwrap().results_held(), 3);
    let mut graph = rask::TaskGraph::new();
    let sum = graph
        .call(&registry, "add", &[a.key().clone(), b.key().clone()])
        .unwrap();
    let futures = client.submit_graph(graph, &[sum]);
    let values = client.gather(&futures).await.unwrap();
    assert_eq!(values[0].get::<i64>().unwrap(), &42);
    drop((a, b, futures, values));
    wait_until_empty(&client);
}
