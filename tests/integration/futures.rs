//! Plain Rust functions as tasks on the local cluster: delayed calls, the
//! futures API (submit, map, gather, wait, as_completed, cancel, retries,
//! priority, worker restrictions, fire_and_forget, publish), scatter, and
//! errors that name the function, the key and the worker.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rask::TaskError;
use rask::delayed;
use rask::{Client, Error, FutureStatus, LocalCluster};

fn cluster(workers: usize, threads: usize) -> (Arc<LocalCluster>, Client) {
    let cluster = LocalCluster::builder()
        .n_workers(workers)
        .threads_per_worker(threads)
        .build()
        .unwrap();
    let client = cluster.client().unwrap();
    (cluster, client)
}

fn add(a: &i64, b: &i64) -> i64 {
    a + b
}

fn pause(ms: &u64) -> u64 {
    std::thread::sleep(Duration::from_millis(*ms));
    *ms
}

/// Waits (up to 10 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_calls_build_a_graph_that_runs_only_when_computed() {
    let (local, client) = cluster(1, 2);
    let add = client.register("add", add).unwrap();
    let three = add.delayed((1i64, 2i64));
    let six = add.delayed((&three, 3i64));
    let twelve = add.delayed((&six, &six));
    assert!(
        format!("{twelve:?}").starts_with("Delayed('add-"),
        "{twelve:?}"
    );
    assert_eq!(local.tasks_finished(), 0, "nothing runs before compute");
    let futures = client
        .compute(&[twelve.clone(), six.clone()])
        .await
        .unwrap();
    assert_eq!(futures[0].key(), twelve.key());
    assert_eq!(rask::gather::<i64>(&futures).await.unwrap(), [12, 6]);
    assert_eq!(local.tasks_finished(), 3, "each call once, six read twice");

    // Pure calls are keyed by their arguments: the same call is one task.
    let pure = add.clone().pure();
    let (a, b) = (pure.delayed((40i64, 2i64)), pure.delayed((40i64, 2i64)));
    assert_eq!(a.key(), b.key());
    assert_ne!(pure.delayed((2i64, 40i64)).key(), a.key());
    assert_ne!(
        add.delayed((40i64, 2i64)).key(),
        add.delayed((40i64, 2i64)).key()
    );
    let finished = local.tasks_finished();
    let both = client.compute(&vec![a, b]).await.unwrap();
    assert_eq!(rask::gather::<i64>(&both).await.unwrap(), [42, 42]);
    assert_eq!(local.tasks_finished() - finished, 1);

    // A persisted call is computed once; graphs built on it read its result.
    let kept = six.persist();
    assert_eq!(kept.compute().value::<i64>().await.unwrap(), 6);
    let finished = local.tasks_finished();
    let seven = add.delayed((&kept, 1i64)).compute();
    assert_eq!(seven.value::<i64>().await.unwrap(), 7);
    assert_eq!(
        local.tasks_finished() - finished,
        1,
        "only the new call ran"
    );

    // Drawn: one node per call, an edge per input read.
    let dir = tempfile::tempdir().unwrap();
    let dot = dir.path().join("calls.dot");
    delayed::visualize(std::slice::from_ref(&twelve), &dot).unwrap();
    let dot = std::fs::read_to_string(dot).unwrap();
    assert_eq!(dot.matches("shape=circle").count(), 3, "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 2, "{dot}");
    let svg = dir.path().join("calls.svg");
    delayed::visualize(&[twelve], &svg).unwrap();
    assert!(std::fs::read_to_string(svg).unwrap().contains("add × 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_map_wait_and_as_completed() {
    let (_local, client) = cluster(1, 2);
    let pause = client.register("pause", pause).unwrap();
    let add = client.register("add", add).unwrap();

    let futures = client.map(&pause, [(400u64,), (10u64,)]);
    let order: Vec<u64> = rask::as_completed(futures.clone())
        .then(|f| async move { f.value::<u64>().await.unwrap() })
        .collect()
        .await;
    assert_eq!(order, [10, 400], "in the order they finish");
    assert_eq!(
        rask::wait(&futures).await,
        [FutureStatus::Finished, FutureStatus::Finished]
    );

    // A future is an argument like any value.
    let one = client.submit(&add, (0i64, 1i64));
    let two = add.submit((&one, &one));
    assert_eq!(two.value::<i64>().await.unwrap(), 2);
    assert_eq!(two.status(), FutureStatus::Finished);
    assert!(two.exception().is_none());

    // 650 calls over the ordered pairs of 26 numbers, in one submission.
    let numbers: Vec<i64> = (0..26).collect();
    let pairs: Vec<(i64, i64)> = numbers
        .iter()
        .flat_map(|a| {
            numbers
                .iter()
                .filter(move |b| *b != a)
                .map(move |b| (*a, *b))
        })
        .collect();
    let sums = add.map(pairs.clone());
    let got: Vec<i64> = rask::gather(&sums).await.unwrap();
    let expected: Vec<i64> = pairs.iter().map(|(a, b)| a + b).collect();
    assert_eq!(got, expected);

    // A value read as another type: the error names the key and both types.
    let err = one.value::<String>().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(
        text.contains(one.key().as_str()) && text.contains("String"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_retries_and_worker_restrictions() {
    let (_local, client) = cluster(2, 1);
    let pause = client.register("pause", pause).unwrap();

    // Cancelled while it runs: the future says so at once (the call itself
    // cannot be interrupted; its thread is free once it returns).
    let long = pause.submit((1_000u64,));
    tokio::time::sleep(Duration::from_millis(50)).await;
    long.cancel();
    assert_eq!(long.wait().await, FutureStatus::Cancelled);
    assert!(matches!(long.value::<u64>().await, Err(Error::Cancelled)));

    // A flaky function: fails twice, then works; retries(2) sees it through.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let flaky = client
        .register_fallible("flaky", move |n: &i64| {
            if counted.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(format!("not yet ({n})"))
            } else {
                Ok(*n)
            }
        })
        .unwrap();
    let tried = flaky.delayed((5i64,)).retries(2).compute();
    assert_eq!(tried.value::<i64>().await.unwrap(), 5);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    calls.store(0, Ordering::SeqCst);
    let once = flaky.submit((5i64,));
    let err = once.value::<i64>().await.unwrap_err().to_string();
    assert!(err.contains("flaky: not yet (5)"), "{err}");

    // Restricted to a worker by name, it runs there.
    for (name, id) in [("local-1", 1), ("local-0", 0)] {
        let placed = pause.delayed((1u64,)).workers([name]).compute();
        placed.wait().await;
        assert_eq!(placed.workers(), [id], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_calls_run_first() {
    // One thread, busy: of the calls submitted together, the high-priority
    // one runs first.
    let (_local, client) = cluster(1, 1);
    let pause = client.register("pause", pause).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    let record = client
        .register("record", move |tag: &String| {
            seen.lock().unwrap().push(tag.clone());
        })
        .unwrap();
    let blockers = client.map(&pause, [(300u64,)]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut calls: Vec<rask::Delayed<()>> = (0..4)
        .map(|i| record.delayed((format!("low-{i}"),)).priority(-1))
        .collect();
    calls.push(record.delayed(("high".to_string(),)).priority(10));
    let recorded = client.compute(&calls).await.unwrap();
    rask::wait(&recorded).await;
    rask::wait(&blockers).await;
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 5);
    assert_eq!(order[0], "high", "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_function_the_key_and_the_worker_and_reach_dependents() {
    let (_local, client) = cluster(1, 2);
    let half = client
        .register_fallible("checked_half", |n: &i64| {
            if n % 2 == 0 {
                Ok(n / 2)
            } else {
                Err(format!("{n} is odd"))
            }
        })
        .unwrap();
    let add = client.register("add", add).unwrap();
    let odd = half.delayed((3i64,));
    let dependent = add.delayed((&odd, 1i64));
    let futures = client
        .compute(&[odd.clone(), dependent.clone()])
        .await
        .unwrap();
    rask::wait(&futures).await;
    let Some(Error::Task(error)) = futures[0].exception() else {
        panic!("expected a task error");
    };
    match error.as_ref() {
        TaskError::Failed { key, message, .. } => {
            assert_eq!(key, odd.key());
            assert_eq!(message, "checked_half: 3 is odd");
        }
        other => panic!("{other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("on worker 0"), "{text}");
    let Some(Error::Task(downstream)) = futures[1].exception() else {
        panic!("the dependent errs too");
    };
    assert!(
        matches!(downstream.as_ref(), TaskError::DependencyFailed { key, .. } if key == odd.key()),
        "{downstream:?}"
    );

    // A panic fails its task with the message; the worker goes on.
    let boom = client
        .register("boom", |n: &i64| -> i64 { panic!("boom at {n}") })
        .unwrap();
    let err = boom
        .submit((7i64,))
        .value::<i64>()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("boom: panicked: boom at 7"), "{err}");
    assert_eq!(add.submit((1i64, 1i64)).value::<i64>().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_and_forget_and_published_futures_outlive_their_holders() {
    let (local, client) = cluster(1, 2);
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let effect = client
        .register("effect", move |ms: &u64| {
            std::thread::sleep(Duration::from_millis(*ms));
            flag.store(true, Ordering::SeqCst);
        })
        .unwrap();
    let future = effect.submit((100u64,));
    future.fire_and_forget();
    drop(future);
    eventually("the fire-and-forget task", || done.load(Ordering::SeqCst)).await;
    eventually("its release", || local.tasks_known() == 0).await;

    // Published by one client, read by another after the first is gone.
    let add = client.register("add", add).unwrap();
    let sum = add.submit((20i64, 22i64));
    sum.wait().await;
    client.publish("answer", &sum).await.unwrap();
    drop(sum);
    drop(add);
    drop(client);
    let other = local.client().unwrap();
    let answer = other.get_published("answer").await.unwrap();
    assert_eq!(answer.value::<i64>().await.unwrap(), 42);
    other.unpublish("answer");
    let err = other.get_published("answer").await.unwrap_err().to_string();
    assert!(err.contains("nothing is published as \"answer\""), "{err}");
    drop(answer);
    eventually("the unpublished key's release", || local.tasks_known() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_values_go_round_robin_or_everywhere() {
    let (local, client) = cluster(2, 1);
    let people = client
        .scatter_each(["a", "b", "c", "d"].map(String::from))
        .await
        .unwrap();
    let placed: Vec<Vec<u64>> = people.iter().map(|f| f.workers()).collect();
    assert_eq!(placed, [vec![0], vec![1], vec![0], vec![1]]);
    assert!(people[0].key().as_str().starts_with("String-"));
    let everywhere = client
        .scatter(vec![1.5f64; 1000])
        .broadcast(true)
        .await
        .unwrap();
    assert_eq!(everywhere.workers().len(), 2);
    assert!(local.results_held() >= 6);
    // Scattered data counts in the workers' memory, as their encoded size.
    let workers = client.workers().await.unwrap();
    assert!(
        workers
            .iter()
            .all(|w| w.metrics.memory >= 8_000 && w.in_memory >= 3),
        "{workers:?}"
    );
    let length = client
        .register("length", |name: &String, weights: &Vec<f64>| {
            name.len() as f64 * weights[0]
        })
        .unwrap();
    let lengths = length.map(people.iter().map(|p| (p, &everywhere)));
    assert_eq!(rask::gather::<f64>(&lengths).await.unwrap(), [1.5; 4]);
}

/// Three days of `timeseries()` through `x_above` with `threshold` (a future
/// of 0.5): checked against the same count in SQL; returns the frame.
pub(crate) async fn check_x_above(client: &Client, threshold: &rask::Future) -> rask::DataFrame {
    let above = rask::udf::partition_with("x_above", crate::functions::custom_worker::x_above);
    let days = client.timeseries().end("2000-01-04").build().unwrap();
    let mapped = days.map_partitions_with(&above, threshold).await.unwrap();
    let expected = client
        .sql("SELECT count(*) FROM timeseries('2000-01-01', '2000-01-04') WHERE x > 0.5")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let expected = rask::output::format_rows(&expected).unwrap()[0][0].clone();
    assert_eq!(mapped.clone().count().await.unwrap().to_string(), expected);
    mapped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_is_an_argument_of_map_partitions() {
    let (_local, client) = cluster(2, 1);
    let identity = client.register("identity", |x: &f64| *x).unwrap();
    let threshold = identity.submit((0.5f64,));
    let mapped = check_x_above(&client, &threshold).await;
    let graph = mapped.explain().await.unwrap();
    assert!(
        graph.contains("reads persisted argument (1 partitions)"),
        "{graph}"
    );
    // A function without an argument, or the wrong argument type, is refused clearly.
    let days = || client.timeseries().end("2000-01-04").build().unwrap();
    let plain = rask::udf::partition("plain", Ok::<_, String>);
    let err = days()
        .map_partitions_with(&plain, &threshold)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("plain takes no argument"), "{err}");
    let text = client
        .register("text", |s: &String| s.clone())
        .unwrap()
        .submit(("a".to_string(),));
    let above = rask::udf::partition_with("x_above", crate::functions::custom_worker::x_above);
    let err = days()
        .map_partitions_with(&above, &text)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("its argument: cannot read"), "{err}");
}
