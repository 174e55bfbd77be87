//! User functions on a cluster of processes: a custom worker binary
//! (`cli/examples/custom_worker.rs`, built on `rask_cli::main_with`) carries
//! scalar UDFs and task functions; clients call them by name; plans that need
//! a function no worker has are refused; a task that keeps killing its workers
//! errs with the last worker's last log lines.

use std::sync::Arc;
use std::time::Duration;

use rask::TaskError;
use rask::internals::net::Security;
use rask::{Client, Error, TaskGraph};

use crate::processes::{ProcessCluster, custom_worker_binary};
use crate::remote::remote_query_with;
use crate::support::{rask, repository_root, run, sql_error};

#[allow(dead_code)]
#[path = "../../cli/examples/custom_worker.rs"]
pub(crate) mod custom_worker;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a runtime")
}

async fn connect(address: &str) -> Client {
    let client =
        Client::connect_with_registry(address, Security::default(), custom_worker::registry())
            .await
            .expect("connects");
    client
        .wait_for_workers(2, Duration::from_secs(30))
        .await
        .expect("two workers");
    client
}

/// A client of `cluster` (custom workers), with its handle of their `pause`.
async fn pausing(cluster: &ProcessCluster) -> (Client, rask::Function<(u64,), u64>) {
    let client = connect(&cluster.address).await;
    let pause = client
        .register("pause", |ms: &u64| *ms)
        .expect("the workers carry pause");
    (client, pause)
}

/// The error a future ended with.
fn task_error(error: Error) -> Arc<TaskError> {
    match error {
        Error::Task(error) => error,
        other => panic!("expected a task error, got {other}"),
    }
}

#[test]
fn custom_workers_run_registered_udfs_and_task_functions_by_name() {
    let root = repository_root();
    let program = custom_worker_binary();
    let cluster = ProcessCluster::start_program(&program, &root, 2, 1);
    let registered = cluster.scheduler.wait_for("registered:");
    assert!(registered.contains("worker"), "{registered}");

    // A UDF in SQL, run by the workers (the client is the same binary),
    // against the same query with the expression written out, run by plain rask.
    let sql = "SELECT name, max(square(x)) AS m, sum(square(y)) AS s FROM timeseries('2000-01-01', '2000-01-08') GROUP BY name ORDER BY name";
    let mut command = std::process::Command::new(&program);
    command.current_dir(&root);
    let remote = remote_query_with(command, &cluster.address, sql, &[])
        .success()
        .stdout;
    let written_out = sql
        .replace("square(x)", "(x * x)")
        .replace("square(y)", "(y * y)");
    let expected = run(rask().args(["query", "--format", "csv", "-c", &written_out]))
        .success()
        .stdout;
    let rows = |csv: &str| csv.lines().skip(1).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(rows(&remote).len(), 26, "{remote}");
    assert_eq!(rows(&remote), rows(&expected));

    runtime().block_on(async {
        let client = connect(&cluster.address).await;
        let registry = client.registry().clone();
        // Task functions by name; values come back from the workers' memory.
        let mut graph = TaskGraph::new();
        let a = graph.call(&registry, "seven", &[]).unwrap();
        let b = graph.call(&registry, "seven", &[]).unwrap();
        let sum = graph.call(&registry, "add", &[a.clone(), b]).unwrap();
        let twice = graph
            .call(&registry, "add", &[sum.clone(), sum.clone()])
            .unwrap();
        let half = graph.call(&registry, "checked_half", &[a]).unwrap();
        assert!(sum.as_str().starts_with("add-"), "{sum}");
        let futures = client.submit_graph(graph, &[sum, twice, half]);
        let values = client.gather(&futures[..2]).await.unwrap();
        assert_eq!(values[0].get::<i64>().unwrap(), &14);
        assert_eq!(values[1].get::<i64>().unwrap(), &28);
        // A function's error: its name, the key and the message.
        let error = task_error(futures[2].data().await.unwrap_err());
        let message = error.to_string();
        assert!(message.contains("checked_half: 7 is odd"), "{message}");
        assert!(message.contains(futures[2].key().as_str()), "{message}");
        // Arguments checked against the registration.
        let mut graph = TaskGraph::new();
        let err = graph.call(&registry, "add", &[]).unwrap_err();
        assert!(
            err.to_string().contains("add takes 2 arguments, got 0"),
            "{err}"
        );
        let err = graph.call(&registry, "nope", &[]).unwrap_err();
        assert!(err.to_string().contains("no task function nope"), "{err}");

        // A registered partition function runs on the workers, by name.
        let with_z = registry.partition("with_z").expect("with_z is registered");
        let sums = client
            .timeseries()
            .end("2000-01-03")
            .build()
            .unwrap()
            .map_partitions(with_z)
            .unwrap()
            .groupby(["name"])
            .agg([("z", "sum")])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let local = Client::local().unwrap();
        let expected = local
            .sql("SELECT name, sum(x * y) AS z FROM timeseries('2000-01-01', '2000-01-03') GROUP BY name ORDER BY name")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(
            rask::output::format_rows(&sums).unwrap(),
            rask::output::format_rows(&expected).unwrap()
        );
        assert!(
            cluster.workers.count("MapPartitionsExec: with_z") > 0,
            "the workers ran with_z"
        );
    });
}

#[test]
fn functions_no_worker_carries_are_refused_by_name() {
    let root = repository_root();
    // Plain `rask` workers: they carry no user function.
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    runtime().block_on(async {
        let client = connect(&cluster.address).await;
        let sql = "SELECT square(x) FROM timeseries('2000-01-01', '2000-01-02')";
        let err = sql_error(&client, sql).await;
        assert!(
            err.contains("function square is not registered on any of the 2 workers"),
            "{err}"
        );
        let mut graph = TaskGraph::new();
        let seven = graph.call(client.registry(), "seven", &[]).unwrap();
        let futures = client.submit_graph(graph, &[seven]);
        let err = futures[0].data().await.unwrap_err().to_string();
        assert!(
            err.contains("function seven is not registered on any"),
            "{err}"
        );
        // A closure cannot go to another process at all.
        let mut graph = TaskGraph::new();
        let one = graph.add("one", &[], |_| Ok(rask::TaskData::local_value(1u8, 1)));
        let futures = client.submit_graph(graph, &[one]);
        let err = futures[0].data().await.unwrap_err().to_string();
        assert!(
            err.contains("the closure one cannot run on workers of another process"),
            "{err}"
        );
        // Nor does a scalar closure in a dataframe: refused while planned, by
        // name, rather than run in the client.
        let cube = rask::udf::scalar("cube", |x: f64| x * x * x);
        let frame = client
            .timeseries()
            .end("2000-01-02")
            .build()
            .unwrap()
            .apply("x", &cube)
            .unwrap();
        let err = frame.clone().collect().await.unwrap_err().to_string();
        assert!(
            err.contains("function cube is not registered on any worker of the cluster"),
            "{err}"
        );
        let err = frame.explain().await.unwrap_err().to_string();
        assert!(err.contains("function cube is not registered"), "{err}");
    });
}

#[test]
fn a_task_that_kills_three_workers_errs_with_the_last_words() {
    let root = repository_root();
    let program = custom_worker_binary();
    let cluster = ProcessCluster::start_program(&program, &root, 2, 1);
    runtime().block_on(async {
        let client = connect(&cluster.address).await;
        let mut graph = TaskGraph::new();
        let crash = graph.call(client.registry(), "crash", &[]).unwrap();
        let futures = client.submit_graph(graph, std::slice::from_ref(&crash));
        let error = task_error(futures[0].data().await.unwrap_err());
        let TaskError::KilledWorkers { key, workers, log } = &*error else {
            panic!("expected KilledWorkers, got {error}");
        };
        assert_eq!(key, &crash);
        assert_eq!(workers.len(), 3, "{error}");
        let message = error.to_string();
        assert!(message.contains(crash.as_str()), "{message}");
        assert!(message.contains("3 workers that died"), "{message}");
        // The nanny's report: how the last worker ended and what it logged.
        assert!(log[0].contains("SIGABRT"), "{message}");
        assert!(
            log.iter()
                .any(|l| l.contains("crash: ending this worker process now")),
            "{message}"
        );
        // The nannies brought the workers back: the cluster still computes.
        client
            .wait_for_workers(2, Duration::from_secs(30))
            .await
            .unwrap();
        let mut graph = TaskGraph::new();
        let seven = graph.call(client.registry(), "seven", &[]).unwrap();
        let futures = client.submit_graph(graph, &[seven]);
        let values = client.gather(&futures).await.unwrap();
        assert_eq!(values[0].get::<i64>().unwrap(), &7);
    });
    assert_eq!(cluster.workers.count("died (signal: 6 (SIGABRT)"), 3);
}

#[test]
fn scattered_values_are_read_where_they_live_and_lost_clearly_with_their_worker() {
    let root = repository_root();
    let program = custom_worker_binary();
    let cluster = ProcessCluster::start_program(&program, &root, 2, 1);
    runtime().block_on(async {
        let client = connect(&cluster.address).await;
        let registry = client.registry().clone();
        // Round-robin over the threads: one value on each worker.
        let a = client.scatter(20i64).await.unwrap();
        let b = client.scatter(22i64).await.unwrap();
        assert!(a.key().as_str().starts_with("i64-"), "{}", a.key());
        assert_eq!(a.status(), rask::FutureStatus::Finished);
        let everywhere = client.broadcast(100i64).await.unwrap();
        let mut graph = TaskGraph::new();
        let sum = graph
            .call(&registry, "add", &[a.key().clone(), b.key().clone()])
            .unwrap();
        let plus = graph
            .call(&registry, "add", &[sum.clone(), everywhere.key().clone()])
            .unwrap();
        let futures = client.submit_graph(graph, &[sum, plus]);
        let values = client.gather(&futures).await.unwrap();
        assert_eq!(values[0].get::<i64>().unwrap(), &42);
        assert_eq!(values[1].get::<i64>().unwrap(), &142);
        // The client reads a scattered value back from its worker.
        assert_eq!(a.data().await.unwrap().get::<i64>().unwrap(), &20);

        // `a` lives only on the first worker: kill it.
        let first = cluster.scheduler.wait_for("worker 0 registered:");
        let pid: u32 = first.rsplit("pid ").next().unwrap().trim().parse().unwrap();
        crate::processes::kill_9(pid);
        cluster.scheduler.wait_for("removed: its connection closed");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while a.status() != rask::FutureStatus::Error {
            assert!(std::time::Instant::now() < deadline, "{:?}", a.status());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lost = a.data().await.unwrap_err().to_string();
        assert!(
            lost.contains("was lost with worker 0 and cannot be recomputed"),
            "{lost}"
        );
        // A task reading it errs the same way; the broadcast value survived.
        let mut graph = TaskGraph::new();
        let again = graph
            .call(&registry, "add", &[a.key().clone(), b.key().clone()])
            .unwrap();
        let kept = graph
            .call(
                &registry,
                "add",
                &[b.key().clone(), everywhere.key().clone()],
            )
            .unwrap();
        let futures = client.submit_graph(graph, &[again, kept]);
        let err = futures[0].data().await.unwrap_err().to_string();
        assert!(err.contains("cannot be recomputed"), "{err}");
        let kept = futures[1].data().await.unwrap();
        assert_eq!(kept.get::<i64>().unwrap(), &122);
    });
}

#[test]
fn a_value_larger_than_one_flight_message_is_scattered_and_read_back_whole() {
    let root = repository_root();
    let cluster = ProcessCluster::start_program(&custom_worker_binary(), &root, 2, 1);
    runtime().block_on(async {
        let client = connect(&cluster.address).await;
        // Past the 64 MiB a Flight message may carry: it travels in rows.
        let size = rask::internals::comm::MAX_MESSAGE + (3 << 20) + 7;
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let expected = (
            size as u64,
            bytes.iter().map(|&b| u64::from(b)).sum::<u64>(),
        );
        let scattered = client.scatter(bytes).await.unwrap();
        let mut graph = TaskGraph::new();
        let checked = graph
            .call(
                client.registry(),
                "checksum",
                std::slice::from_ref(scattered.key()),
            )
            .unwrap();
        let futures = client.submit_graph(graph, &[checked]);
        let values = client.gather(&futures).await.unwrap();
        assert_eq!(values[0].get::<(u64, u64)>().unwrap(), &expected);
        // And back to the client from its worker.
        let back = scattered.data().await.unwrap();
        let back = back.get::<Vec<u8>>().unwrap();
        assert_eq!(back.len(), size);
        assert!(back.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    });
}

/// What the walkthrough example prints, on whichever cluster it ran.
fn assert_walkthrough_output(stdout: &str) {
    assert_shows(
        stdout,
        &[
            "rask Name: timeseries, 30 tasks",
            "rask Name: sort-preserving-merge, 32 tasks",
            "2 stages, 32 tasks",
            "rask Name: sort-preserving-merge, 0 tasks",
            "| Alice   |",
            "5 rows × 2 columns",
            "rask Name: sort-preserving-merge, 2 tasks",
            "x2\n",
            "rask Name: map-partitions, 30 tasks",
            "big_string",
            "937-Charlie",
            "2592000 rows × 7 columns",
        ],
    );
}

#[test]
fn the_walkthrough_example_runs_on_the_local_cluster_and_on_workers_of_other_processes() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let example = crate::processes::example_binary("walkthrough");
    let local = run(std::process::Command::new(&example).current_dir(dir.path())).success();
    assert_walkthrough_output(&local.stdout);
    let svg = std::fs::read_to_string(dir.path().join("walkthrough-groupby.svg")).unwrap();
    assert_eq!(svg.matches("<circle").count(), 32);

    let root = repository_root();
    let cluster = ProcessCluster::start_program(&custom_worker_binary(), &root, 2, 1);
    cluster.scheduler.wait_for("registered:");
    let remote = run(std::process::Command::new(&example)
        .current_dir(dir.path())
        .args(["--scheduler", &cluster.address]))
    .success();
    assert_walkthrough_output(&remote.stdout);
    assert!(
        remote.stdout.contains(&cluster.address),
        "{}",
        remote.stdout
    );
    assert!(
        cluster
            .workers
            .count("MapPartitionsExec: my_multi_function")
            > 0,
        "the workers ran my_multi_function"
    );
}

/// Every one of `expected` is somewhere in `stdout`.
fn assert_shows(stdout: &str, expected: &[&str]) {
    for expected in expected {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}

/// What the people example prints, on whichever cluster it ran.
fn assert_people_output(stdout: &str) {
    assert_shows(
        stdout,
        &[
            "list_of_people (26)",
            "<Alice, 0.",
            "delayed_operations[:10] (of 650)",
            "Delayed('add_two_people-",
            "<Future: ",
            "all 650 computed in",
            "scattered_list_of_people[:3] (of 26)",
            "key: Person-",
            "computed_add_operation[0].result()",
            "predictions[0].result()",
            "10 predictions, the same as the model's here",
        ],
    );
}

#[test]
fn the_people_example_runs_on_the_local_cluster_and_on_workers_of_other_processes() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let example = crate::processes::example_binary("people");
    let local = run(std::process::Command::new(&example).current_dir(dir.path())).success();
    assert_people_output(&local.stdout);
    let svg = std::fs::read_to_string(dir.path().join("people-add-two.svg")).unwrap();
    assert_eq!(svg.matches("<circle").count(), 10);
    let svg = std::fs::read_to_string(dir.path().join("people-add-a-value.svg")).unwrap();
    assert_eq!(
        svg.matches("(in memory)</title>").count(),
        10,
        "scattered people"
    );

    let root = repository_root();
    let cluster = ProcessCluster::start_program(&custom_worker_binary(), &root, 2, 1);
    cluster.scheduler.wait_for("registered:");
    let remote = run(std::process::Command::new(&example)
        .current_dir(dir.path())
        .args(["--scheduler", &cluster.address]))
    .success();
    assert_people_output(&remote.stdout);
    assert!(
        remote.stdout.contains(&cluster.address),
        "{}",
        remote.stdout
    );
}

#[test]
fn a_worker_with_nothing_to_run_takes_a_task_queued_on_a_busy_one() {
    let cluster = ProcessCluster::start_program(&custom_worker_binary(), &repository_root(), 2, 1);
    runtime().block_on(async {
        let (_client, pause) = pausing(&cluster).await;
        // Two one-thread workers, three calls placed at once: the first and
        // the third go to one worker (one running, one queued), the short
        // second to the other, which then has nothing to run.
        let futures = pause.map([(1_500u64,), (30,), (1_500,)]);
        let values: Vec<u64> = rask::gather(&futures).await.expect("all finish");
        assert_eq!(values, [1_500, 30, 1_500]);
        let (first, short, third) = (
            futures[0].workers(),
            futures[1].workers(),
            futures[2].workers(),
        );
        assert_ne!(first, short, "the first two calls ran side by side");
        assert_eq!(
            third, short,
            "the queued call was taken by the idle worker (the first ran on {first:?})"
        );
    });
}

#[test]
fn a_map_survives_the_loss_of_a_worker_and_published_futures_cross_clients() {
    let cluster = ProcessCluster::start_program(&custom_worker_binary(), &repository_root(), 2, 1);
    runtime().block_on(async {
        let (client, pause) = pausing(&cluster).await;
        // 40 calls of 50 ms over 2 workers: one dies a quarter of the way in.
        let futures = pause.map((0..40u64).map(|i| (50 + i,)));
        futures[5].wait().await;
        crate::processes::kill_9(cluster.worker_pids()[0]);
        let values: Vec<u64> = rask::gather(&futures).await.expect("all finish");
        assert_eq!(values, (0..40u64).map(|i| 50 + i).collect::<Vec<_>>());
        cluster.scheduler.wait_for("removed:");

        // One client publishes, another, connected later, reads it.
        let add = client.register("add", |a: &i64, b: &i64| a + b).unwrap();
        let sum = add.submit((40i64, 2i64));
        client.publish("answer", &sum).await.expect("published");
        sum.wait().await;
        drop(sum);
        let other = connect(&cluster.address).await;
        let answer = other.get_published("answer").await.expect("published");
        assert_eq!(answer.value::<i64>().await.unwrap(), 42);
        let missing = other
            .get_published("nothing")
            .await
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nothing is published"), "{missing}");

        // A future as the argument of a map_partitions, run by the workers.
        let threshold = client.scatter(0.5f64).await.unwrap();
        crate::futures::check_x_above(&client, &threshold).await;
        assert!(cluster.workers.count("MapPartitionsExec: x_above") > 0);

        // A function the workers do not carry is refused by name.
        let err = client
            .register("not_carried", |a: &i64| *a)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("function not_carried is not registered"),
            "{err}"
        );
    });
}
