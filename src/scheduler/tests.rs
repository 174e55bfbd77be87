//! Scheduler tests: event sequences replayed by hand, and a simulated cluster
//! running random graphs through random worker deaths.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

fn key(s: &str) -> Key {
    Key::new(s)
}

fn spec(k: &str, deps: &[&str]) -> TaskSpec {
    TaskSpec::new(key(k), deps.iter().map(|d| key(d)).collect())
}

fn runs(decisions: &[Decision]) -> Vec<(WorkerId, String)> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Run { worker, key, .. } => Some((*worker, key.to_string())),
            _ => None,
        })
        .collect()
}

/// A scheduler with `(worker, nthreads)` workers.
fn with_workers(workers: &[(WorkerId, usize)]) -> Scheduler {
    let mut s = Scheduler::new();
    for &(worker, nthreads) in workers {
        s.handle(Event::WorkerAdded {
            worker,
            nthreads,
            functions: None,
        });
    }
    s
}

/// The error of the first erred report among `decisions`.
fn first_error(decisions: &[Decision]) -> Arc<TaskError> {
    decisions
        .iter()
        .find_map(|d| match d {
            Decision::Report {
                outcome: Outcome::Erred(e),
                ..
            } => Some(Arc::clone(e)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no erred report in {decisions:?}"))
}

fn submit(
    s: &mut Scheduler,
    client: ClientId,
    tasks: Vec<TaskSpec>,
    wanted: &[&str],
) -> Vec<Decision> {
    s.handle(Event::GraphSubmitted {
        client,
        tasks,
        wanted: wanted.iter().map(|k| key(k)).collect(),
    })
}

/// Two workers of a thread, and b-1 reading a-1, b-1 wanted.
fn chain_on_two_workers() -> Scheduler {
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    submit(
        &mut s,
        1,
        vec![spec("a-1", &[]), spec("b-1", &["a-1"])],
        &["b-1"],
    );
    s
}

/// Client 1 submits a-1 → b-1 → c-1 and wants c-1.
fn submit_chain_of_three(s: &mut Scheduler) -> Vec<Decision> {
    submit(
        s,
        1,
        vec![
            spec("a-1", &[]),
            spec("b-1", &["a-1"]),
            spec("c-1", &["b-1"]),
        ],
        &["c-1"],
    )
}

fn finish(s: &mut Scheduler, worker: WorkerId, k: &str) -> Vec<Decision> {
    s.handle(Event::TaskFinished {
        worker,
        key: key(k),
        nbytes: 10,
        micros: 5_000,
    })
}

#[test]
fn root_tasks_queue_until_a_worker_has_room() {
    // A worker holds two tasks per thread; further root tasks wait in the queue.
    let mut s = with_workers(&[(1, 1)]);
    let d = submit(
        &mut s,
        7,
        vec![spec("a-1", &[]), spec("b-1", &[]), spec("c-1", &[])],
        &["a-1", "b-1", "c-1"],
    );
    assert_eq!(runs(&d), [(1, "a-1".into()), (1, "b-1".into())]);
    assert_eq!(s.task(&key("c-1")).unwrap().state, TaskState::Queued);
    let d = finish(&mut s, 1, "a-1");
    assert_eq!(runs(&d), [(1, "c-1".into())]);
    assert!(d.contains(&Decision::Report {
        client: 7,
        key: key("a-1"),
        outcome: Outcome::Finished { workers: vec![1] }
    }));
}

#[test]
fn fire_and_forget_tasks_run_with_no_future_then_go() {
    let mut s = with_workers(&[(1, 1)]);
    let d = submit(
        &mut s,
        7,
        vec![spec("a-1", &[]), spec("b-1", &["a-1"])],
        &["b-1"],
    );
    assert_eq!(runs(&d), [(1, "a-1".into()), (1, "b-1".into())]);
    s.handle(Event::FireAndForget { key: key("b-1") });
    let d = s.handle(Event::FutureReleased {
        client: 7,
        key: key("b-1"),
    });
    // Still wanted: a runs, then b (sent ahead, not aborted).
    assert!(d.is_empty(), "{d:?}");
    finish(&mut s, 1, "a-1");
    let d = finish(&mut s, 1, "b-1");
    assert!(
        d.contains(&Decision::Forget { key: key("b-1") }),
        "done, nobody holds it: {d:?}"
    );
    assert_eq!(s.task_count(), 0);
    // A task already done is not held on to.
    submit(&mut s, 7, vec![spec("c-1", &[])], &["c-1"]);
    finish(&mut s, 1, "c-1");
    s.handle(Event::FireAndForget { key: key("c-1") });
    s.handle(Event::FutureReleased {
        client: 7,
        key: key("c-1"),
    });
    assert_eq!(s.task_count(), 0);
}

#[test]
fn published_keys_outlive_their_clients_until_unpublished() {
    let mut s = with_workers(&[(1, 1)]);
    submit(&mut s, 7, vec![spec("a-1", &[])], &["a-1"]);
    finish(&mut s, 1, "a-1");
    s.handle(Event::Publish {
        name: "model".into(),
        key: key("a-1"),
    });
    s.handle(Event::ClientRemoved { client: 7 });
    assert_eq!(s.published("model"), Some(key("a-1")));
    assert_eq!(s.task(&key("a-1")).unwrap().state, TaskState::Memory);
    // Another client asks for it.
    let d = submit(&mut s, 8, vec![], &["a-1"]);
    assert!(d.contains(&Decision::Report {
        client: 8,
        key: key("a-1"),
        outcome: Outcome::Finished { workers: vec![1] }
    }));
    s.handle(Event::Unpublish {
        name: "model".into(),
    });
    assert_eq!(s.published("model"), None);
    assert_eq!(s.published_names(), Vec::<String>::new());
    assert!(s.task(&key("a-1")).is_some(), "client 8 still holds it");
    s.handle(Event::FutureReleased {
        client: 8,
        key: key("a-1"),
    });
    assert_eq!(s.task_count(), 0);
}

/// A root task calling a function.
fn call_spec(k: &str) -> TaskSpec {
    spec(k, &[]).with_kind(super::TaskKind::Call)
}

#[test]
fn short_function_calls_run_further_ahead() {
    let mut s = with_workers(&[(1, 1)]);
    let specs: Vec<TaskSpec> = (0..40).map(|i| call_spec(&format!("noop-{i}"))).collect();
    let names: Vec<String> = (0..40).map(|i| format!("noop-{i}")).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    let d = submit(&mut s, 7, specs, &wanted);
    assert_eq!(
        runs(&d).len(),
        2,
        "two per thread while their length is unknown"
    );
    let mut sent = 2;
    for i in 0..4 {
        let d = s.handle(Event::TaskFinished {
            worker: 1,
            key: key(&format!("noop-{i}")),
            nbytes: 8,
            micros: 20,
        });
        sent += runs(&d).len();
    }
    // Four short ones seen: the worker may hold 16 a thread.
    assert_eq!(sent - 4, 16, "{sent}");
    // Calls of a name not known to be short still go two at a time, and so
    // do query stages, however short.
    let names: Vec<String> = (0..10).map(|i| format!("slow-{i}")).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    let d = submit(
        &mut s,
        7,
        names.iter().map(|n| call_spec(n)).collect(),
        &wanted,
    );
    assert_eq!(runs(&d).len(), 0, "the worker is full of short ones");
    let mut stages = with_workers(&[(1, 1)]);
    let names: Vec<String> = (0..10).map(|i| format!("aggregate-{i}")).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    submit(
        &mut stages,
        7,
        names.iter().map(|n| spec(n, &[])).collect(),
        &wanted,
    );
    let mut sent = 0;
    for i in 0..6 {
        let d = stages.handle(Event::TaskFinished {
            worker: 1,
            key: key(&format!("aggregate-{i}")),
            nbytes: 8,
            micros: 20,
        });
        assert_eq!(runs(&d).len(), 1, "after aggregate-{i}: {:?}", runs(&d));
        sent += runs(&d).len();
    }
    assert_eq!(sent, 6, "one in for each one out");
}

#[test]
fn dependents_run_where_their_inputs_are() {
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    let d = submit(
        &mut s,
        1,
        vec![spec("a-1", &[]), spec("b-1", &[]), spec("c-1", &["b-1"])],
        &["a-1", "c-1"],
    );
    // c runs where b is: sent ahead, to start once b is stored there.
    assert_eq!(
        runs(&d),
        [(1, "a-1".into()), (2, "b-1".into()), (2, "c-1".into())]
    );
    finish(&mut s, 1, "a-1");
    let d = finish(&mut s, 2, "b-1");
    assert!(runs(&d).is_empty(), "{d:?}");
    // b is released as soon as c, its only reader, is done.
    let d = finish(&mut s, 2, "c-1");
    assert!(d.contains(&Decision::Release {
        worker: 2,
        key: key("b-1")
    }));
    assert_eq!(s.task(&key("b-1")).unwrap().state, TaskState::Released);
}

#[test]
fn readers_of_small_inputs_spread_over_workers() {
    // Five small inputs spread over two workers, unevenly: the two readers of
    // all five should not queue on one worker for the sake of a few bytes.
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    let inputs = ["i-0", "i-1", "i-2", "i-3", "i-4"];
    let mut tasks: Vec<TaskSpec> = inputs.iter().map(|k| spec(k, &[])).collect();
    tasks.push(spec("r-0", &inputs));
    tasks.push(spec("r-1", &inputs));
    let mut pending = runs(&submit(&mut s, 1, tasks, &["r-0", "r-1"]));
    let mut readers = Vec::new();
    while let Some((worker, k)) = pending.pop() {
        if k.starts_with("r-") {
            readers.push(worker);
        } else {
            pending.extend(runs(&finish(&mut s, worker, &k)));
        }
    }
    readers.sort_unstable();
    assert_eq!(readers, [1, 2]);
}

/// The tasks `decisions` ask back, with the worker asked.
fn steals(decisions: &[Decision]) -> Vec<(WorkerId, String)> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Steal { worker, key } => Some((*worker, key.to_string())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_idle_worker_takes_a_task_queued_behind_a_long_one() {
    // Two one-thread workers, three root tasks: the first and third go to
    // worker 1 (one running, one waiting), the second to worker 2.
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    let tasks = vec![spec("a-0", &[]), spec("a-1", &[]), spec("a-2", &[])];
    let placed = runs(&submit(&mut s, 1, tasks, &["a-0", "a-1", "a-2"]));
    assert_eq!(placed.len(), 3, "{placed:?}");
    let first = placed[0].0;
    let other = if first == 1 { 2 } else { 1 };
    assert_eq!(
        placed.iter().filter(|(w, _)| *w == first).count(),
        2,
        "{placed:?}"
    );
    let queued = placed
        .iter()
        .rev()
        .find(|(w, _)| *w == first)
        .map(|(_, k)| k.clone())
        .unwrap();
    let short = placed.iter().find(|(w, _)| *w == other).unwrap().1.clone();

    // The other worker's task ends while the first still runs its first:
    // the queued one is asked back, once however many events come.
    let d = finish(&mut s, other, &short);
    assert_eq!(steals(&d), [(first, queued.clone())], "{d:?}");
    assert!(runs(&d).is_empty(), "{d:?}");
    let d = s.handle(Event::FutureReleased {
        client: 1,
        key: key(&short),
    });
    assert!(steals(&d).is_empty(), "asked twice: {d:?}");

    // Given back unstarted, it runs on the idle worker.
    let d = s.handle(Event::TaskStolen {
        worker: first,
        key: key(&queued),
    });
    assert_eq!(runs(&d), [(other, queued.clone())], "{d:?}");
    assert_eq!(
        s.task(&key(&queued)).unwrap().state,
        TaskState::Processing(other)
    );

    // A late answer from a worker that no longer holds it changes nothing.
    let d = s.handle(Event::TaskStolen {
        worker: first,
        key: key(&queued),
    });
    assert!(d.is_empty(), "{d:?}");
    let d = finish(&mut s, other, &queued);
    assert!(steals(&d).is_empty() && runs(&d).is_empty(), "{d:?}");
}

#[test]
fn short_tasks_and_tasks_far_from_their_inputs_stay_where_they_are() {
    // Short calls: a steal costs as much as the task.
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    let warm: Vec<TaskSpec> = (0..4).map(|i| spec(&format!("f-{i}"), &[])).collect();
    let quick = |s: &mut Scheduler, worker, k: &str| {
        s.handle(Event::TaskFinished {
            worker,
            key: key(k),
            nbytes: 8,
            micros: 50,
        })
    };
    let mut pending = runs(&submit(&mut s, 1, warm, &["f-0", "f-1", "f-2", "f-3"]));
    assert_eq!(pending.len(), 4);
    while let Some((worker, k)) = pending.pop() {
        pending.extend(runs(&quick(&mut s, worker, &k)));
    }
    let tasks = vec![spec("f-4", &[]), spec("f-5", &[]), spec("f-6", &[])];
    let placed = runs(&submit(&mut s, 1, tasks, &["f-4", "f-5", "f-6"]));
    let (worker, k) = placed
        .iter()
        .find(|(w, _)| placed.iter().filter(|(o, _)| o == w).count() == 1)
        .unwrap_or_else(|| panic!("one worker has one task: {placed:?}"));
    let d = quick(&mut s, *worker, k);
    assert!(steals(&d).is_empty(), "{d:?}");

    // A reader of 64 MiB held where it queues is not moved for a thread.
    let on = |k: &str, deps: &[&str], worker: WorkerId| TaskSpec {
        workers: Some(vec![worker]),
        ..spec(k, deps)
    };
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    submit(&mut s, 1, vec![on("big-0", &[], 1)], &["big-0"]);
    s.handle(Event::TaskFinished {
        worker: 1,
        key: key("big-0"),
        nbytes: 64 << 20,
        micros: 50_000,
    });
    let tasks = vec![
        on("long-0", &[], 1),
        spec("read-0", &["big-0"]),
        on("other-0", &[], 2),
    ];
    let placed = runs(&submit(&mut s, 1, tasks, &["long-0", "read-0", "other-0"]));
    assert!(placed.contains(&(1, "read-0".to_string())), "{placed:?}");
    let d = finish(&mut s, 2, "other-0");
    assert!(steals(&d).is_empty(), "{d:?}");
}

#[test]
fn readers_of_large_inputs_spread_when_waiting_costs_more_than_fetching() {
    // Fifteen 300 MB outputs, eight on worker 1 and seven on worker 2; two
    // readers of all of them (a shuffle's two partitions). The first goes
    // to worker 1, which holds more; the second would fetch 300 MB more on
    // worker 2 (0.3 s at 1 GB/s) but wait there for no task: it goes there.
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    let inputs: Vec<String> = (0..15).map(|i| format!("scan-{i}")).collect();
    let names: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let tasks: Vec<TaskSpec> = names
        .iter()
        .enumerate()
        .map(|(i, k)| TaskSpec {
            workers: Some(vec![if i < 8 { 1 } else { 2 }]),
            ..spec(k, &[])
        })
        .chain([spec("join-0", &names), spec("join-1", &names)])
        .collect();
    assert_eq!(where_joins_run(&mut s, tasks, 300 << 20, 2_000_000), [1, 2]);
}

#[test]
fn a_reader_of_one_bucket_weighs_fetching_that_bucket_only() {
    // Four 200 MB outputs on worker 1, hashed into two buckets; two readers
    // of one bucket each (a shuffle's two partitions). The first goes to
    // worker 1, which holds them all. The second would wait there behind
    // it (0.5 s, a task of unknown length) or fetch its buckets to idle
    // worker 2: 400 MB, 0.4 s at 1 GB/s, so it goes there. Counted whole,
    // 800 MB would have kept it on worker 1 while worker 2 idled.
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    let names = ["scan-0", "scan-1", "scan-2", "scan-3"];
    let reader = |k: &str| TaskSpec {
        parts: vec![2; names.len()],
        ..spec(k, &names)
    };
    let tasks: Vec<TaskSpec> = names
        .iter()
        .map(|k| TaskSpec {
            workers: Some(vec![1]),
            ..spec(k, &[])
        })
        .chain([reader("join-0"), reader("join-1")])
        .collect();
    assert_eq!(where_joins_run(&mut s, tasks, 200 << 20, 100_000), [1, 2]);
}

/// Submits `tasks`, wanting `join-0` and `join-1`, and finishes every other
/// task where it runs (each `nbytes` big, `micros` long): the workers the
/// two joins go to, in order.
fn where_joins_run(
    s: &mut Scheduler,
    tasks: Vec<TaskSpec>,
    nbytes: u64,
    micros: u64,
) -> Vec<WorkerId> {
    let mut pending = runs(&submit(s, 1, tasks, &["join-0", "join-1"]));
    let mut joins = Vec::new();
    while let Some((worker, k)) = pending.pop() {
        if k.starts_with("join-") {
            joins.push(worker);
            continue;
        }
        pending.extend(runs(&s.handle(Event::TaskFinished {
            worker,
            key: key(&k),
            nbytes,
            micros,
        })));
    }
    joins.sort_unstable();
    joins
}

#[test]
fn errors_reach_every_dependent_with_the_original_key() {
    let mut s = with_workers(&[(1, 4)]);
    submit_chain_of_three(&mut s);
    let error = TaskError::Failed {
        key: key("a-1"),
        worker: 1,
        message: "boom".into(),
    };
    let d = s.handle(Event::TaskErred {
        worker: 1,
        key: key("a-1"),
        error: error.clone(),
    });
    let Some(Decision::Report {
        key: k,
        outcome: Outcome::Erred(e),
        ..
    }) = d.iter().find(|d| matches!(d, Decision::Report { .. }))
    else {
        panic!("no report in {d:?}");
    };
    assert_eq!(k, &key("c-1"));
    assert_eq!(
        **e,
        TaskError::DependencyFailed {
            key: key("a-1"),
            source: Arc::new(error)
        }
    );
    assert_eq!(
        e.to_string(),
        "input a-1 failed: task a-1 failed on worker 1: boom"
    );
    // Releasing the future forgets everything.
    s.handle(Event::FutureReleased {
        client: 1,
        key: key("c-1"),
    });
    assert_eq!(s.task_count(), 0);
}

#[test]
fn progress_graph_and_task_pages_follow_the_tasks() {
    let mut s = with_workers(&[(1, 1)]);
    let tasks = vec![
        spec("read-ab12-0", &[]),
        spec("read-ab12-1", &[]),
        spec("sum-cd34-0", &["read-ab12-0", "read-ab12-1"]),
    ];
    submit(&mut s, 1, tasks, &["sum-cd34-0"]);
    finish(&mut s, 1, "read-ab12-0");
    let groups = s.progress();
    let names: Vec<(&str, &str, u64, u64)> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.operation.as_str(), g.done, g.total))
        .collect();
    assert_eq!(
        names,
        [("read-ab12", "read", 1, 2), ("sum-cd34", "sum", 0, 1)]
    );
    assert_eq!(groups[1].inputs, ["read-ab12"]);

    let graph = s.graph(10).expect("a small graph is drawn task by task");
    let sum = graph.iter().find(|t| t.key == "sum-cd34-0").unwrap();
    assert_eq!(sum.state, "waiting");
    assert_eq!(sum.dependencies, ["read-ab12-0", "read-ab12-1"]);
    assert!(
        s.graph(2).is_none(),
        "past the limit, groups stand for tasks"
    );

    let read = s.task_detail(&key("read-ab12-0")).unwrap();
    assert_eq!(
        (read.state.as_str(), read.who_has.clone()),
        ("memory", vec![1])
    );
    assert_eq!(read.dependents, ["sum-cd34-0"]);
    assert_eq!(read.group.as_deref(), Some("read-ab12"));

    s.handle(Event::TaskErred {
        worker: 1,
        key: key("read-ab12-1"),
        error: TaskError::Failed {
            key: key("read-ab12-1"),
            worker: 1,
            message: "boom".into(),
        },
    });
    let erred = s.task_detail(&key("sum-cd34-0")).unwrap();
    assert_eq!(erred.state, "erred");
    assert!(erred.error.unwrap().contains("boom"));
    let groups = s.progress();
    assert_eq!((groups[0].erred, groups[1].erred), (1, 1));
    s.handle(Event::FutureReleased {
        client: 1,
        key: key("sum-cd34-0"),
    });
    assert!(s.progress().iter().all(|g| g.live == 0 && g.is_complete()));
}

#[test]
fn retries_rerun_a_failed_task() {
    let mut s = with_workers(&[(1, 1)]);
    let mut t = spec("a-1", &[]);
    t.retries = 1;
    submit(&mut s, 1, vec![t], &["a-1"]);
    let error = TaskError::Failed {
        key: key("a-1"),
        worker: 1,
        message: "flaky".into(),
    };
    let d = s.handle(Event::TaskErred {
        worker: 1,
        key: key("a-1"),
        error: error.clone(),
    });
    assert_eq!(runs(&d), [(1, "a-1".into())]);
    let d = s.handle(Event::TaskErred {
        worker: 1,
        key: key("a-1"),
        error,
    });
    assert!(
        matches!(
            &d[..],
            [Decision::Report {
                outcome: Outcome::Erred(_),
                ..
            }]
        ),
        "{d:?}"
    );
}

#[test]
fn cancel_forgets_pending_work_and_aborts_running_tasks() {
    let mut s = with_workers(&[(1, 1)]);
    submit(
        &mut s,
        1,
        vec![spec("a-1", &[]), spec("b-1", &["a-1"])],
        &["b-1"],
    );
    let d = s.handle(Event::Cancel {
        client: 1,
        keys: vec![key("b-1")],
    });
    assert!(d.contains(&Decision::Report {
        client: 1,
        key: key("b-1"),
        outcome: Outcome::Cancelled
    }));
    assert!(d.contains(&Decision::Abort {
        worker: 1,
        key: key("a-1")
    }));
    assert_eq!(s.task_count(), 0);
    // A late result of the aborted task is dropped.
    let d = finish(&mut s, 1, "a-1");
    assert_eq!(
        d,
        [Decision::Release {
            worker: 1,
            key: key("a-1")
        }]
    );
}

#[test]
fn shared_keys_are_computed_once_for_two_clients() {
    let mut s = with_workers(&[(1, 1)]);
    submit(&mut s, 1, vec![spec("a-1", &[])], &["a-1"]);
    let d = submit(&mut s, 2, vec![spec("a-1", &[])], &["a-1"]);
    assert!(runs(&d).is_empty());
    let d = finish(&mut s, 1, "a-1");
    assert_eq!(
        d.iter()
            .filter(|d| matches!(d, Decision::Report { .. }))
            .count(),
        2
    );
    s.handle(Event::FutureReleased {
        client: 1,
        key: key("a-1"),
    });
    assert!(s.task(&key("a-1")).is_some(), "client 2 still holds it");
    let d = s.handle(Event::FutureReleased {
        client: 2,
        key: key("a-1"),
    });
    assert_eq!(
        d,
        [
            Decision::Release {
                worker: 1,
                key: key("a-1")
            },
            Decision::Forget { key: key("a-1") }
        ]
    );
}

#[test]
fn a_lost_result_is_recomputed_from_its_lineage() {
    let mut s = chain_on_two_workers();
    finish(&mut s, 1, "a-1");
    finish(&mut s, 1, "b-1");
    // a was released once b was done; losing b's worker recomputes a, then b.
    let d = s.handle(Event::WorkerRemoved { worker: 1 });
    assert_eq!(runs(&d), [(2, "a-1".into()), (2, "b-1".into())]);
    finish_a_then_b(&mut s, 2);
}

#[test]
fn an_input_that_cannot_be_fetched_is_released_and_the_task_gives_up() {
    let mut s = chain_on_two_workers();
    // a runs on 1; wherever b runs, it cannot fetch a (both workers live).
    finish(&mut s, 1, "a-1");
    for attempt in 1..=3 {
        let b_on = match s.task(&key("b-1")).map(|t| t.state) {
            Some(TaskState::Processing(w)) => w,
            other => panic!("b is not running: {other:?}"),
        };
        let a_on = s.task(&key("a-1")).map(|t| t.who_has).unwrap_or_default();
        let a_on = *a_on.first().expect("a is held");
        let d = s.handle(Event::TaskErred {
            worker: b_on,
            key: key("b-1"),
            error: TaskError::FetchFailed {
                worker: a_on,
                key: key("a-1"),
            },
        });
        // The stale copy is released on its (live) holder.
        assert!(
            d.contains(&Decision::Release {
                worker: a_on,
                key: key("a-1")
            }),
            "{d:?}"
        );
        if attempt < 3 {
            // a is recomputed, and b goes ahead with it to run again.
            let again = runs(&d);
            let keys: Vec<&str> = again.iter().map(|(_, k)| k.as_str()).collect();
            assert_eq!(keys, ["a-1", "b-1"], "{d:?}");
            finish(&mut s, again[0].0, "a-1");
        } else {
            let e = first_error(&d).to_string();
            assert!(e.contains("b-1"), "{e}");
            assert!(e.contains("could not fetch a-1 from worker"), "{e}");
            assert!(e.contains("(3 tries)"), "{e}");
            assert!(runs(&d).is_empty(), "no more tries: {d:?}");
        }
    }
}

#[test]
fn a_retiring_worker_hands_its_results_over_then_closes() {
    // Both roots run on worker 1; worker 2 joins after.
    let mut s = with_workers(&[(1, 2)]);
    submit(
        &mut s,
        1,
        vec![
            spec("a-1", &[]),
            spec("a-2", &[]),
            spec("b-1", &["a-1", "a-2"]),
        ],
        &["a-1", "b-1"],
    );
    s.handle(Event::WorkerAdded {
        worker: 2,
        nthreads: 1,
        functions: None,
    });
    finish(&mut s, 1, "a-1");
    // Worker 1 retires while running a-2: no copies until it is done.
    let d = s.handle(Event::RetireWorker { worker: 1 });
    assert!(d.is_empty(), "{d:?}");
    let running_a2 = match s.task(&key("a-2")).map(|t| t.state) {
        Some(TaskState::Processing(w)) => w,
        other => panic!("{other:?}"),
    };
    assert_eq!(running_a2, 1);
    let d = finish(&mut s, running_a2, "a-2");
    // b goes to worker 2 (1 takes no new tasks); what only 1 holds is copied to 2.
    assert!(runs(&d).iter().all(|(w, _)| *w == 2), "{d:?}");
    let copies: Vec<Key> = d
        .iter()
        .filter_map(|d| match d {
            Decision::Replicate {
                worker: 2,
                key,
                from,
            } if from == &[1] => Some(key.clone()),
            _ => None,
        })
        .collect();
    assert!(copies.contains(&key("a-1")), "{d:?}");
    let mut closed = Vec::new();
    for k in copies {
        closed.extend(s.handle(Event::DataReplicated { worker: 2, key: k }));
    }
    assert!(
        closed.contains(&Decision::Retire { worker: 1 }),
        "{closed:?}"
    );
    assert_eq!(s.worker(1).map(|w| w.status), Some("retiring"));
    // The client wanting a-1 learns where else it is.
    let told = closed.iter().any(|d| {
        matches!(d, Decision::Report { key: k, outcome: Outcome::Finished { workers }, .. }
            if k == &key("a-1") && workers == &[1, 2])
    });
    assert!(told, "{closed:?}");
    // Its leaving recomputes nothing: worker 2 has every copy.
    let d = s.handle(Event::WorkerRemoved { worker: 1 });
    assert!(runs(&d).is_empty(), "{d:?}");
    assert_eq!(s.task(&key("a-1")).map(|t| t.who_has), Some(vec![2]));
}

#[test]
fn a_paused_worker_gets_no_tasks_until_it_resumes() {
    let mut s = with_workers(&[(1, 1)]);
    s.handle(Event::WorkerPaused {
        worker: 1,
        paused: true,
    });
    assert_eq!(s.worker(1).map(|w| w.status), Some("paused"));
    let d = submit(&mut s, 1, vec![spec("a-1", &[])], &["a-1"]);
    assert!(runs(&d).is_empty(), "{d:?}");
    let d = s.handle(Event::WorkerPaused {
        worker: 1,
        paused: false,
    });
    assert_eq!(runs(&d), [(1, "a-1".into())]);
}

#[test]
fn scattered_data_lost_with_its_worker_errs_clearly() {
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    s.handle(Event::DataScattered {
        client: 1,
        key: key("Person-1"),
        workers: vec![1],
        nbytes: 8,
    });
    let d = s.handle(Event::WorkerRemoved { worker: 1 });
    let e = first_error(&d);
    assert!(
        e.to_string()
            .contains("Person-1 was lost with worker 1 and cannot be recomputed")
    );
}

#[test]
fn a_task_that_kills_three_workers_errs_naming_them() {
    let mut s = Scheduler::new();
    for w in 1..=4 {
        s.handle(Event::WorkerAdded {
            worker: w,
            nthreads: 1,
            functions: None,
        });
    }
    submit(&mut s, 1, vec![spec("boom-1", &[])], &["boom-1"]);
    let mut last = Vec::new();
    for _ in 0..3 {
        let Some(TaskState::Processing(w)) = s.task(&key("boom-1")).map(|t| t.state) else {
            panic!()
        };
        last = s.handle(Event::WorkerRemoved { worker: w });
    }
    let e = first_error(&last);
    assert!(
        e.to_string()
            .starts_with("task boom-1 was running on 3 workers that died"),
        "{e}"
    );
}

#[test]
fn restricted_tasks_wait_for_their_worker() {
    let mut s = with_workers(&[(1, 1)]);
    let mut t = spec("a-1", &[]);
    t.workers = Some(vec![9]);
    let d = submit(&mut s, 1, vec![t], &["a-1"]);
    assert!(runs(&d).is_empty());
    let d = s.handle(Event::WorkerAdded {
        worker: 9,
        nthreads: 1,
        functions: None,
    });
    assert_eq!(runs(&d), [(9, "a-1".into())]);
}

#[test]
fn tasks_calling_functions_wait_for_a_worker_that_carries_them() {
    let carries = |names: &[&str]| Some(Arc::new(names.iter().map(|n| n.to_string()).collect()));
    let mut s = Scheduler::new();
    s.handle(Event::WorkerAdded {
        worker: 1,
        nthreads: 1,
        functions: carries(&[]),
    });
    let mut t = spec("square-1", &[]);
    t.functions = vec!["square".into()];
    let d = submit(&mut s, 1, vec![t], &["square-1"]);
    assert!(runs(&d).is_empty(), "worker 1 does not carry square");
    // A worker restarted under a new id carries it: the task runs there.
    let d = s.handle(Event::WorkerAdded {
        worker: 7,
        nthreads: 1,
        functions: carries(&["square", "add"]),
    });
    assert_eq!(runs(&d), [(7, "square-1".into())]);
    // A worker sharing the client's registry carries everything.
    let mut t = spec("square-2", &[]);
    t.functions = vec!["square".into()];
    s.handle(Event::WorkerAdded {
        worker: 8,
        nthreads: 1,
        functions: None,
    });
    let d = submit(&mut s, 1, vec![t], &["square-2"]);
    assert_eq!(runs(&d), [(8, "square-2".into())]);
}

/// The inputs of the run of `k` among `decisions`, with their holders.
fn inputs_of(decisions: &[Decision], k: &str) -> Vec<(String, Vec<WorkerId>)> {
    decisions
        .iter()
        .find_map(|d| match d {
            Decision::Run { key, inputs, .. } if key.as_str() == k => Some(
                inputs
                    .iter()
                    .map(|i| (i.key.to_string(), i.holders.clone()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no run of {k} in {decisions:?}"))
}

#[test]
fn a_chain_runs_ahead_on_the_worker_of_its_input() {
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    let d = submit_chain_of_three(&mut s);
    // b-1 goes with a-1, to wait there for it (no holders: computed there
    // first); c-1 waits for room (two tasks a thread).
    let w = runs(&d)[0].0;
    assert_eq!(runs(&d), [(w, "a-1".into()), (w, "b-1".into())]);
    assert_eq!(inputs_of(&d, "b-1"), [("a-1".to_string(), vec![])]);
    assert_eq!(s.task(&key("b-1")).unwrap().state, TaskState::Processing(w));
    assert_eq!(s.task(&key("c-1")).unwrap().state, TaskState::Waiting);
    // a-1 stored: b-1 runs, and c-1 goes ahead of it.
    let d = finish(&mut s, w, "a-1");
    assert_eq!(runs(&d), [(w, "c-1".into())]);
    assert_eq!(inputs_of(&d, "c-1"), [("b-1".to_string(), vec![])]);
    // b-1 read a-1, which nothing else needs, once b-1 is done.
    let d = finish(&mut s, w, "b-1");
    assert!(d.contains(&Decision::Release {
        worker: w,
        key: key("a-1")
    }));
    let d = finish(&mut s, w, "c-1");
    assert!(d.contains(&Decision::Report {
        client: 1,
        key: key("c-1"),
        outcome: Outcome::Finished { workers: vec![w] }
    }));
}

#[test]
fn a_task_sent_ahead_may_report_before_its_input() {
    let mut s = with_workers(&[(1, 1)]);
    submit(
        &mut s,
        1,
        vec![spec("a-1", &[]), spec("b-1", &["a-1"])],
        &["b-1"],
    );
    // The worker ran both; b-1's report overtook a-1's.
    let d = finish(&mut s, 1, "b-1");
    assert!(d.contains(&Decision::Report {
        client: 1,
        key: key("b-1"),
        outcome: Outcome::Finished { workers: vec![1] }
    }));
    let d = finish(&mut s, 1, "a-1");
    assert!(d.contains(&Decision::Release {
        worker: 1,
        key: key("a-1")
    }));
    let status = s.worker(1).unwrap();
    assert_eq!((status.processing, status.in_memory), (0, 1));
}

#[test]
fn tasks_sent_ahead_of_a_failed_input_are_called_back() {
    let mut s = with_workers(&[(1, 1)]);
    let mut a = spec("a-1", &[]);
    a.retries = 1;
    let d = submit(&mut s, 1, vec![a, spec("b-1", &["a-1"])], &["b-1"]);
    assert_eq!(runs(&d), [(1, "a-1".into()), (1, "b-1".into())]);
    let d = s.handle(Event::TaskErred {
        worker: 1,
        key: key("a-1"),
        error: TaskError::Failed {
            key: key("a-1"),
            worker: 1,
            message: "flaky".into(),
        },
    });
    // b-1 is stopped, then sent ahead again with the retry of a-1.
    let abort = d
        .iter()
        .position(|d| {
            *d == Decision::Abort {
                worker: 1,
                key: key("b-1"),
            }
        })
        .unwrap_or_else(|| panic!("b-1 not aborted: {d:?}"));
    let rerun = d
        .iter()
        .position(|d| matches!(d, Decision::Run { key, .. } if key.as_str() == "b-1"))
        .unwrap_or_else(|| panic!("b-1 not sent again: {d:?}"));
    assert!(abort < rerun, "{d:?}");
    assert_eq!(runs(&d), [(1, "a-1".into()), (1, "b-1".into())]);
    finish_a_then_b(&mut s, 1);
}

#[test]
fn tasks_sent_ahead_to_a_worker_that_dies_run_elsewhere() {
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    let d = submit(
        &mut s,
        1,
        vec![spec("a-1", &[]), spec("b-1", &["a-1"])],
        &["b-1"],
    );
    let w = runs(&d)[0].0;
    let other = if w == 1 { 2 } else { 1 };
    let d = s.handle(Event::WorkerRemoved { worker: w });
    assert_eq!(runs(&d), [(other, "a-1".into()), (other, "b-1".into())]);
    assert_eq!(inputs_of(&d, "b-1"), [("a-1".to_string(), vec![])]);
}

#[test]
fn fan_outs_are_sent_ahead_only_while_the_worker_has_room() {
    // Four readers of one root on a worker of one thread: one goes ahead
    // (two tasks a thread), the rest are placed once the root is stored.
    let mut s = with_workers(&[(1, 1), (2, 1)]);
    let mut tasks = vec![spec("a-1", &[])];
    for i in 0..4 {
        tasks.push(spec(&format!("b-{i}"), &["a-1"]));
    }
    let wanted: Vec<String> = (0..4).map(|i| format!("b-{i}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let d = submit(&mut s, 1, tasks, &wanted);
    let w = runs(&d)[0].0;
    assert_eq!(runs(&d).len(), 2, "{d:?}");
    let d = finish(&mut s, w, "a-1");
    let placed = runs(&d);
    assert_eq!(placed.len(), 3, "{d:?}");
    assert!(
        placed.iter().any(|(worker, _)| *worker != w),
        "spread: {placed:?}"
    );
}

/// Finishes a-1 then b-1 on `worker`; b-1, wanted, is reported finished.
fn finish_a_then_b(s: &mut Scheduler, worker: WorkerId) {
    finish(s, worker, "a-1");
    let d = finish(s, worker, "b-1");
    assert!(
        matches!(first_report(&d, "b-1"), Some(Outcome::Finished { .. })),
        "{d:?}"
    );
}

/// The outcome of the first report of `k` among `decisions`.
fn first_report(decisions: &[Decision], k: &str) -> Option<Outcome> {
    decisions.iter().find_map(|d| match d {
        Decision::Report { key, outcome, .. } if key.as_str() == k => Some(outcome.clone()),
        _ => None,
    })
}

// ----- a simulated cluster, for property tests --------------------------------------------

/// A random DAG: task i depends on some of tasks 0..i.
#[derive(Debug, Clone)]
struct Graph {
    deps: Vec<Vec<usize>>,
    wanted: Vec<usize>,
}

impl Graph {
    fn key(i: usize) -> Key {
        Key::partition("task", "ab12", i)
    }

    fn specs(&self) -> Vec<TaskSpec> {
        self.deps
            .iter()
            .enumerate()
            .map(|(i, d)| TaskSpec::new(Self::key(i), d.iter().map(|&j| Self::key(j)).collect()))
            .collect()
    }

    /// The wanted tasks and everything they depend on.
    fn needed(&self) -> std::collections::BTreeSet<usize> {
        let mut needed = std::collections::BTreeSet::new();
        let mut stack = self.wanted.clone();
        while let Some(i) = stack.pop() {
            if needed.insert(i) {
                stack.extend(&self.deps[i]);
            }
        }
        needed
    }

    /// The value task i must produce: i plus the values of its inputs.
    fn expected(&self, i: usize, memo: &mut HashMap<usize, u64>) -> u64 {
        if let Some(v) = memo.get(&i) {
            return *v;
        }
        let v = i as u64
            + self.deps[i]
                .iter()
                .map(|&j| self.expected(j, memo))
                .sum::<u64>();
        memo.insert(i, v);
        v
    }
}

fn graphs() -> impl Strategy<Value = Graph> {
    (1usize..40).prop_flat_map(|n| {
        let deps = (0..n)
            .map(|i| {
                if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    prop::collection::btree_set(0..i, 0..4.min(i + 1))
                        .prop_map(|s| s.into_iter().collect())
                        .boxed()
                }
            })
            .collect::<Vec<_>>();
        let wanted =
            prop::collection::btree_set(0..n, 1..=n.min(5)).prop_map(|s| s.into_iter().collect());
        (deps, wanted).prop_map(|(deps, wanted)| Graph { deps, wanted })
    })
}

/// Runs decisions like a cluster would: each worker has a store; runs complete in
/// an order chosen by `choices`; some steps kill a worker and start a new one.
struct Cluster {
    scheduler: Scheduler,
    stores: BTreeMap<WorkerId, HashMap<Key, u64>>,
    running: Vec<(WorkerId, Key, Vec<Input>)>,
    reports: HashMap<Key, Outcome>,
    runs: HashMap<Key, usize>,
    next_worker: WorkerId,
    /// Events and decisions so far, shown when the cluster gets stuck.
    log: Vec<String>,
}

impl Cluster {
    fn new(workers: &[usize]) -> Self {
        let mut c = Cluster {
            scheduler: Scheduler::new(),
            stores: BTreeMap::new(),
            running: Vec::new(),
            reports: HashMap::new(),
            runs: HashMap::new(),
            next_worker: 0,
            log: Vec::new(),
        };
        for &n in workers {
            c.add_worker(n);
        }
        c
    }

    /// Takes `key` off `worker` before it ran (a task here runs only when
    /// it completes): it no longer counts as a run. Whether it was there.
    fn take_back(&mut self, worker: WorkerId, key: &Key) -> bool {
        let Some(i) = self
            .running
            .iter()
            .position(|(w, k, _)| *w == worker && k == key)
        else {
            return false;
        };
        self.running.remove(i);
        if let Some(runs) = self.runs.get_mut(key) {
            *runs -= 1;
        }
        true
    }

    fn add_worker(&mut self, nthreads: usize) {
        let id = self.next_worker;
        self.next_worker += 1;
        self.stores.insert(id, HashMap::new());
        self.event(Event::WorkerAdded {
            worker: id,
            nthreads,
            functions: None,
        });
    }

    fn event(&mut self, event: Event) {
        self.log.push(format!("{event:?}"));
        for decision in self.scheduler.handle(event) {
            self.log.push(format!("  -> {decision:?}"));
            match decision {
                Decision::Run {
                    worker,
                    key,
                    inputs,
                    ..
                } => {
                    assert!(
                        self.stores.contains_key(&worker),
                        "run on dead worker {worker}"
                    );
                    *self.runs.entry(key.clone()).or_default() += 1;
                    self.running.push((worker, key, inputs));
                }
                Decision::Release { worker, key } => {
                    let store = self
                        .stores
                        .get_mut(&worker)
                        .expect("release on a live worker");
                    assert!(
                        store.remove(&key).is_some(),
                        "{key} released on {worker}, which does not hold it"
                    );
                }
                Decision::Abort { worker, key } => {
                    self.take_back(worker, &key);
                }
                // Half the asks find the task still queued (the other half,
                // started: it runs on), by the length of the log so far.
                Decision::Steal { worker, key } => {
                    if self.log.len().is_multiple_of(2) && self.take_back(worker, &key) {
                        self.event(Event::TaskStolen { worker, key });
                    }
                }
                Decision::Report { key, outcome, .. } => {
                    self.reports.insert(key, outcome);
                }
                Decision::Forget { .. } => {}
                Decision::Replicate { worker, key, from } => {
                    let value = from
                        .iter()
                        .find_map(|h| self.stores.get(h).and_then(|s| s.get(&key)).copied());
                    let event = match (value, self.stores.get_mut(&worker)) {
                        (Some(v), Some(store)) => {
                            store.insert(key.clone(), v);
                            Event::DataReplicated { worker, key }
                        }
                        _ => Event::ReplicateFailed { worker, key },
                    };
                    self.event(event);
                }
                Decision::Retire { .. } => {}
            }
        }
    }

    /// Completes startable task number `pick`: one whose inputs sent without
    /// holders (computed first on its worker) are stored there, as a worker
    /// parks a task sent ahead until then.
    fn complete(&mut self, pick: usize) {
        let startable: Vec<usize> = (0..self.running.len())
            .filter(|&i| {
                let (worker, _, inputs) = &self.running[i];
                inputs.iter().all(|input| {
                    !input.holders.is_empty()
                        || self
                            .stores
                            .get(worker)
                            .is_some_and(|s| s.contains_key(&input.key))
                })
            })
            .collect();
        assert!(
            !startable.is_empty(),
            "every task sent waits on an input that is not coming: {:?}\n{}",
            self.running,
            self.log.join("\n")
        );
        let (worker, key, inputs) = self.running.remove(startable[pick % startable.len()]);
        let index: u64 = key
            .as_str()
            .rsplit('-')
            .next()
            .and_then(|i| i.parse().ok())
            .expect("task index");
        let mut value = index;
        for input in &inputs {
            let here = [worker];
            let holders = match input.holders.as_slice() {
                [] => &here[..],
                holders => holders,
            };
            let found = holders
                .iter()
                .find_map(|h| self.stores.get(h).and_then(|s| s.get(&input.key)));
            match found {
                Some(v) => value += v,
                None => {
                    let holder = holders.first().copied().unwrap_or(WorkerId::MAX);
                    let error = TaskError::FetchFailed {
                        worker: holder,
                        key: input.key.clone(),
                    };
                    return self.event(Event::TaskErred { worker, key, error });
                }
            }
        }
        self.stores
            .get_mut(&worker)
            .expect("running on a live worker")
            .insert(key.clone(), value);
        self.event(Event::TaskFinished {
            worker,
            key,
            nbytes: 8,
            micros: 5_000,
        });
    }

    fn kill(&mut self, pick: usize) {
        let ids: Vec<WorkerId> = self.stores.keys().copied().collect();
        let victim = ids[pick % ids.len()];
        self.stores.remove(&victim);
        self.running.retain(|(w, _, _)| *w != victim);
        self.event(Event::WorkerRemoved { worker: victim });
        self.add_worker(1 + pick % 2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every wanted key ends in memory with the right value, each task runs once
    /// when no worker dies, and once the futures are released nothing is left.
    #[test]
    fn random_graphs_survive_random_worker_deaths(
        graph in graphs(),
        workers in prop::collection::vec(1usize..4, 1..4),
        choices in prop::collection::vec((0usize..1000, 0u8..100), 0..400),
        kills in 0usize..3,
    ) {
        let mut cluster = Cluster::new(&workers);
        let wanted: Vec<Key> = graph.wanted.iter().map(|&i| Graph::key(i)).collect();
        cluster.event(Event::GraphSubmitted { client: 1, tasks: graph.specs(), wanted: wanted.clone() });

        let mut kills_left = kills;
        let mut choices = choices.into_iter();
        let mut steps = 0;
        while !cluster.running.is_empty() {
            steps += 1;
            prop_assert!(steps < 10_000, "no progress");
            let (pick, roll) = choices.next().unwrap_or((0, 99));
            if roll < 5 && kills_left > 0 {
                kills_left -= 1;
                cluster.kill(pick);
            } else {
                cluster.complete(pick);
            }
        }

        let mut memo = HashMap::new();
        for &i in &graph.wanted {
            let key = Graph::key(i);
            let Some(Outcome::Finished { workers }) = cluster.reports.get(&key) else {
                return Err(TestCaseError::fail(format!("{key}: {:?}", cluster.reports.get(&key))));
            };
            let value = workers.iter().find_map(|w| cluster.stores.get(w).and_then(|s| s.get(&key)));
            prop_assert_eq!(value.copied(), Some(graph.expected(i, &mut memo)), "value of {}", key);
        }
        // Without worker deaths, exactly the tasks the wanted keys need ran, once each.
        if kills == 0 {
            let needed = graph.needed();
            for i in 0..graph.deps.len() {
                let expected = needed.contains(&i).then_some(1);
                prop_assert_eq!(cluster.runs.get(&Graph::key(i)).copied(), expected, "runs of task {}", i);
            }
        }

        // Progress counted each needed task once, however often it ran.
        let groups = cluster.scheduler.progress();
        let live: Vec<&GroupProgress> = groups.iter().filter(|g| g.live > 0).collect();
        prop_assert_eq!(live.len(), 1, "one group: {:?}", groups);
        prop_assert_eq!(live[0].name.as_str(), "task-ab12");
        prop_assert_eq!(live[0].done as usize, graph.needed().len());
        prop_assert_eq!(live[0].total as usize, graph.deps.len());

        for key in wanted {
            cluster.event(Event::FutureReleased { client: 1, key });
        }
        prop_assert_eq!(cluster.scheduler.task_count(), 0, "tasks left after release");
        prop_assert!(cluster.scheduler.progress().iter().all(|g| g.live == 0));
        for (w, store) in &cluster.stores {
            prop_assert!(store.is_empty(), "worker {} still holds {:?}", w, store.keys().collect::<Vec<_>>());
            prop_assert_eq!(cluster.scheduler.worker(*w).map(|s| (s.processing, s.in_memory, s.nbytes)), Some((0, 0, 0)));
        }
    }
}
