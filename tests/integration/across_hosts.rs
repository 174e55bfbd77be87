//! A cluster across test hosts (network namespaces on a bridge, each with an
//! address of its own): the scheduler on one host, a worker on each of two
//! others, all listening on `0.0.0.0` with a token (without one they would
//! refuse to start), the client in the root namespace. Partitions are links
//! set down; every answer is checked.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::dashboard::get_with;
use crate::hosts::{Host, TestNet, start_in};
use crate::processes::{Process, kill_9, signal};
use crate::remote::{JOINED, local_query, remote_query};
use crate::support::{Run, rask, repository_root, run};

/// A query whose shuffles cross between the workers (two aggregations
/// joined and sorted), with exact answers.
const SHUFFLED: &str = JOINED;

/// The same over two years: long enough to cut a host off in the middle.
fn shuffled_long() -> String {
    JOINED.replace("'2000-01-21'", "'2002-01-01'")
}

/// The cluster's token: every process and client of these tests has it.
const TOKEN: &str = "across-hosts-token";

/// The token, as the processes of a test host get it.
const WITH_TOKEN: &[(&str, &str)] = &[("RASK_AUTH_TOKEN", TOKEN)];

/// `sql` on the cluster at `address`, from the root namespace, as CSV.
fn query(address: &str, sql: &str) -> Run {
    query_with(address, sql, &["--no-progress"])
}

/// A library client of the cluster at `address`, with the token.
async fn connect(address: &str) -> rask::Client {
    let security = rask::internals::net::Security {
        token: Some(TOKEN.into()),
        ..Default::default()
    };
    rask::Client::connect_with(address, security)
        .await
        .expect("connects")
}

/// `GET path` of the dashboard at `address`, with the token.
fn get(address: &str, path: &str) -> (String, String) {
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (status, _, body) = get_with(address, path, &[&bearer]);
    (status, body)
}

/// A scheduler on `host`, on every interface, port 8786.
fn scheduler_on(host: &Host, dir: &Path, extra: &[&str]) -> Process {
    let mut args = vec![
        "scheduler",
        "--host",
        "0.0.0.0",
        "--port",
        "8786",
        "--dashboard-address",
        "0.0.0.0:8787",
        "--heartbeat-timeout",
        "4",
        "--watch-stdin",
    ];
    args.extend(extra);
    let scheduler = start_in(host, "scheduler", dir, &args, WITH_TOKEN);
    scheduler.wait_for("scheduler at ");
    scheduler
}

/// One worker process (under its nanny) on `host`, listening on every
/// interface (the default for a scheduler not on loopback).
fn worker_on(host: &Host, scheduler: &str, dir: &Path, extra: &[&str]) -> Process {
    let mut args = vec![
        "worker",
        scheduler,
        "--nworkers",
        "1",
        "--nthreads",
        "1",
        "--watch-stdin",
    ];
    args.extend(extra);
    start_in(
        host,
        &format!("worker on {}", host.address),
        dir,
        &args,
        WITH_TOKEN,
    )
}

/// Waits up to `limit` for `done`, polling.
fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hosts_advertise_reachable_addresses_shuffle_and_survive_a_cut_off_worker() {
    let net = TestNet::new("cut_off_worker", 3);
    let (s, a, b) = (net.host(0), net.host(1), net.host(2));
    let root = repository_root();
    let scheduler = scheduler_on(s, &root, &[]);
    // Users write addresses as Dask's: with tcp://.
    let address = format!("{}:8786", s.address);
    let written = format!("tcp://{address}");
    let line = scheduler.wait_for("scheduler at ");
    assert!(
        line.ends_with(&address),
        "the scheduler gives its host's address: {line}"
    );
    let _worker_a = worker_on(a, &written, &root, &[]);
    let worker_b = worker_on(b, &written, &root, &[]);
    scheduler.wait_for_nth("registered:", 2);
    // Each worker gives the address of its own host, never 0.0.0.0.
    for host in [a, b] {
        scheduler.wait_for(&format!(" at {}:", host.address));
    }
    let status = run(rask()
        .args(["status", &address, "--format", "csv"])
        .env("RASK_AUTH_TOKEN", TOKEN))
    .success()
    .stdout;
    assert!(!status.contains("0.0.0.0"), "{status}");
    assert!(
        status.contains(&a.address) && status.contains(&b.address),
        "{status}"
    );
    // The dashboard, on every interface, is reached at the host's address.
    let (code, body) = get(&format!("{}:8787", s.address), "/api/v1/workers");
    assert!(code.contains("200"), "{code}");
    assert!(
        body.contains(&a.address) && !body.contains("0.0.0.0"),
        "{body}"
    );

    let answer = local_query(SHUFFLED);
    assert_eq!(query(&address, SHUFFLED).success().stdout, answer);

    // Host b is cut off in the middle of a long query: after the heartbeat
    // timeout it is removed, its work runs on a, and the answer is right.
    let long = shuffled_long();
    let long_answer = local_query(&long);
    let client = {
        let address = address.clone();
        let long = long.clone();
        std::thread::spawn(move || query(&address, &long))
    };
    // `rask status` and the first query were clients 1 and 2.
    scheduler.wait_for_nth("connected", 3);
    std::thread::sleep(Duration::from_millis(1000));
    b.cut();
    scheduler.wait_for("removed: silent for");
    let done = client.join().expect("the client thread");
    assert_eq!(done.success().stdout, long_answer);

    // When the link is back, b learns it was removed, drops what it held and
    // joins again as a new worker; queries use it, with right answers.
    b.heal();
    worker_b.wait_for("lost the scheduler");
    worker_b.wait_for("dropped the");
    scheduler.wait_for("worker 2 registered:");
    assert_eq!(query(&address, SHUFFLED).success().stdout, answer);
    // A worker whose process is killed in a shuffle: restarted by its nanny.
    let pids: Vec<u32> = worker_b
        .log()
        .iter()
        .filter(|l| l.contains("nanny: started"))
        .filter_map(|l| l.rsplit("pid ").next()?.trim().parse().ok())
        .collect();
    let client = {
        let address = address.clone();
        std::thread::spawn(move || query(&address, &long))
    };
    std::thread::sleep(Duration::from_millis(1500));
    kill_9(*pids.last().expect("a worker pid"));
    assert_eq!(client.join().expect("client").success().stdout, long_answer);
    scheduler.wait_for("worker 3 registered:");
    drop(net);
}

#[test]
fn a_lost_scheduler_fails_every_call_and_workers_rejoin_its_successor() {
    let net = TestNet::new("lost_scheduler", 3);
    let (s, a, b) = (net.host(0), net.host(1), net.host(2));
    let root = repository_root();
    let address = format!("{}:8786", s.address);
    let mut scheduler = scheduler_on(s, &root, &[]);
    let worker_a = worker_on(a, &address, &root, &["--death-timeout", "60"]);
    let _worker_b = worker_on(b, &address, &root, &["--death-timeout", "60"]);
    scheduler.wait_for_nth("registered:", 2);

    // A query running when the scheduler is killed fails, naming the scheduler.
    let long = shuffled_long();
    let client = {
        let (address, long) = (address.clone(), long.clone());
        std::thread::spawn(move || query(&address, &long))
    };
    std::thread::sleep(Duration::from_millis(1500));
    let pid = scheduler_pid(&scheduler);
    kill_9(pid);
    let failed = client.join().expect("client");
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    assert!(
        failed
            .stderr
            .contains(&format!("the scheduler at {address} is gone")),
        "{}",
        failed.stderr
    );
    assert!(
        !failed.stderr.contains(&u64::MAX.to_string()),
        "{}",
        failed.stderr
    );
    // Its process (and the namespace's wrapper around it) takes a moment to
    // go; the client may have noticed first.
    eventually(
        "the killed scheduler exits",
        Duration::from_secs(10),
        || !scheduler.is_running(),
    );

    // The scheduler restarted on the same address: the workers still trying
    // rejoin it, and queries run.
    scheduler = scheduler_on(s, &root, &[]);
    scheduler.wait_for_nth("registered:", 2);
    worker_a.wait_for("lost the scheduler");
    assert_eq!(
        query(&address, SHUFFLED).success().stdout,
        local_query(SHUFFLED)
    );

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = connect(&address).await;
        assert_eq!(client.workers().await.expect("workers").len(), 2);
        kill_9(scheduler_pid(&scheduler));
        let waiting = client.sql(&long).await;
        let outcome = match waiting {
            Ok(frame) => frame.collect().await.map(|_| ()),
            Err(e) => Err(e),
        };
        let e = outcome.expect_err("the scheduler is gone").to_string();
        assert!(e.contains("scheduler"), "{e}");
        // Every later call fails too, at once: none is left unanswered.
        for _ in 0..3 {
            let e = client.workers().await.expect_err("gone").to_string();
            assert!(
                e.contains(&format!("the scheduler at {address} is gone")),
                "{e}"
            );
            let frame = client.sql(SHUFFLED).await.expect("planned in the client");
            let e = frame.collect().await.expect_err("gone").to_string();
            assert!(
                e.contains(&format!("the scheduler at {address} is gone")),
                "{e}"
            );
        }
    });
    drop(net);
}

#[test]
fn workers_give_up_on_a_scheduler_that_never_returns_and_on_a_refusal() {
    let net = TestNet::new("death_timeout", 2);
    let (s, a) = (net.host(0), net.host(1));
    let root = repository_root();
    let address = format!("{}:8786", s.address);
    let scheduler = scheduler_on(s, &root, &["--auth-token", "right"]);
    // A wrong token is refused for good: no restarts, a clear message, exit ≠ 0.
    let mut refused = start_in(
        a,
        "refused worker",
        &root,
        &["worker", &address, "--nthreads", "1", "--watch-stdin"],
        &[("RASK_AUTH_TOKEN", "wrong")],
    );
    refused.wait_for("not restarting it");
    eventually("the refused nanny exits", Duration::from_secs(30), || {
        !refused.is_running()
    });
    assert_eq!(refused.count("nanny: started"), 1);
    assert_eq!(refused.exit_code(), Some(1));
    // A worker whose scheduler dies for good gives up after --death-timeout.
    let mut worker = start_in(
        a,
        "worker",
        &root,
        &[
            "worker",
            &address,
            "--nthreads",
            "1",
            "--death-timeout",
            "3",
            "--watch-stdin",
        ],
        &[("RASK_AUTH_TOKEN", "right")],
    );
    scheduler.wait_for("registered:");
    kill_9(scheduler_pid(&scheduler));
    worker.wait_for("gave up reaching the scheduler");
    eventually("the nanny exits", Duration::from_secs(30), || {
        !worker.is_running()
    });
    assert_eq!(worker.count("nanny: started"), 1);
    assert_eq!(worker.exit_code(), Some(1));
    drop(net);
}

/// The pid of a process started in a host (`ip netns exec` runs it in place).
fn scheduler_pid(scheduler: &Process) -> u32 {
    scheduler.pid()
}

/// Tasks the scheduler on `host` has finished since it started, from its
/// dashboard's JSON API.
fn tasks_finished(host: &Host) -> u64 {
    let (status, body) = get(&format!("{}:8787", host.address), "/api/v1/info");
    assert!(status.contains("200"), "{status}");
    let info: serde_json::Value = serde_json::from_str(&body).expect("JSON info");
    info["tasks_finished"].as_u64().expect("tasks_finished")
}

/// The number of tasks `sql` runs as, from `rask query --explain`.
fn tasks_of(address: &str, sql: &str) -> u64 {
    let listing = query_with(address, sql, &["--explain"]).success().stdout;
    let first = listing.lines().next().unwrap_or_default();
    // "2 stages, 32 tasks"
    first
        .split(", ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no task count in {listing}"))
}

fn query_with(address: &str, sql: &str, extra: &[&str]) -> Run {
    let mut with_token = vec!["--auth-token", TOKEN];
    with_token.extend(extra);
    remote_query(address, sql, &with_token)
}

#[test]
fn retiring_workers_hand_over_what_they_hold_and_nothing_is_recomputed() {
    let net = TestNet::new("retire", 4);
    let (s, a, b, c) = (net.host(0), net.host(1), net.host(2), net.host(3));
    let root = repository_root();
    let address = format!("{}:8786", s.address);
    let scheduler = scheduler_on(s, &root, &[]);
    let mut worker_a = worker_on(a, &address, &root, &[]);
    let mut worker_b = worker_on(b, &address, &root, &[]);
    scheduler.wait_for_nth("registered:", 2);

    // Partitions persisted on both workers; `rask retire` takes a's away.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = connect(&address).await;
        let sql = "SELECT * FROM timeseries('2000-01-01', '2000-01-31')";
        let persisted = client.sql(sql).await.expect("plans");
        let persisted = persisted.persist().await.expect("persists");
        let rows = |batches: &[rask::arrow::record_batch::RecordBatch]| -> usize {
            batches.iter().map(|b| b.num_rows()).sum()
        };
        let before = rows(&persisted.clone().collect().await.expect("reads"));
        assert_eq!(before, 30 * 24 * 3600);
        let finished = tasks_finished(s);
        let a_address = scheduler
            .log()
            .iter()
            .find(|l| l.contains("registered:") && l.contains(&format!(" at {}:", a.address)))
            .and_then(|l| {
                l.split(" at ")
                    .nth(1)?
                    .split(',')
                    .next()
                    .map(str::to_string)
            })
            .expect("a's address");
        let retired = run(rask()
            .args(["retire", &a_address, "--scheduler", &address])
            .env("RASK_AUTH_TOKEN", TOKEN))
        .success()
        .stdout;
        assert!(retired.starts_with("retired worker"), "{retired}");
        eventually("a's nanny exits", Duration::from_secs(60), || {
            !worker_a.is_running()
        });
        assert_eq!(worker_a.exit_code(), Some(0), "{:?}", worker_a.log());
        assert_eq!(worker_a.count("nanny: started"), 1, "not restarted");
        // Everything a held is on b: read again, nothing is recomputed.
        let after = rows(&persisted.collect().await.expect("reads after retire"));
        assert_eq!(after, before);
        assert_eq!(tasks_finished(s), finished, "tasks ran again");
    });
    drop(runtime);

    // SIGTERM to a nanny in the middle of a query: its worker retires; the
    // query runs each of its tasks once, and the answer is right.
    let _worker_c = worker_on(c, &address, &root, &[]);
    scheduler.wait_for_nth("registered:", 3);
    let long = shuffled_long();
    let answer = local_query(&long);
    let tasks = tasks_of(&address, &long);
    let finished = tasks_finished(s);
    let client = {
        let (address, long) = (address.clone(), long.clone());
        std::thread::spawn(move || query(&address, &long))
    };
    std::thread::sleep(Duration::from_millis(1500));
    signal(worker_b.pid(), "-TERM");
    assert_eq!(client.join().expect("client").success().stdout, answer);
    eventually("b's nanny exits", Duration::from_secs(60), || {
        !worker_b.is_running()
    });
    assert_eq!(worker_b.exit_code(), Some(0), "{:?}", worker_b.log());
    assert_eq!(worker_b.count("nanny: started"), 1, "not restarted");
    scheduler.wait_for("asks to retire");
    assert_eq!(tasks_finished(s) - finished, tasks, "every task ran once");
    drop(net);
}

/// The `memory` column (bytes of results a worker reports holding) of each
/// worker, from `rask status`.
fn held_bytes(address: &str) -> Vec<u64> {
    let csv = run(rask()
        .args(["status", address, "--format", "csv"])
        .env("RASK_AUTH_TOKEN", TOKEN))
    .success()
    .stdout;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let at = header
        .iter()
        .position(|h| *h == "memory")
        .unwrap_or_else(|| panic!("no memory column in {csv}"));
    lines
        .map(|l| {
            l.split(',')
                .nth(at)
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        })
        .collect()
}

#[test]
fn workers_that_cannot_reach_each_other_give_up_clearly_and_leak_nothing() {
    let net = TestNet::new("blocked_fetch", 3);
    let (s, a, b) = (net.host(0), net.host(1), net.host(2));
    let root = repository_root();
    let address = format!("{}:8786", s.address);
    let scheduler = scheduler_on(s, &root, &[]);
    let _worker_a = worker_on(a, &address, &root, &[]);
    let _worker_b = worker_on(b, &address, &root, &[]);
    scheduler.wait_for_nth("registered:", 2);
    let answer = local_query(SHUFFLED);
    // Both reach the scheduler and the client, not each other: every shuffle
    // fetch between them fails. Each reading task has its input recomputed at
    // most twice, then fails naming the input and both workers; or the
    // recomputed inputs land where they are read and the answer is right.
    a.block(b);
    let client = {
        let address = address.clone();
        std::thread::spawn(move || query(&address, SHUFFLED))
    };
    let start = Instant::now();
    while !client.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the query hangs on fetches that keep failing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = client.join().expect("client");
    match done.code {
        Some(0) => assert_eq!(done.stdout, answer),
        _ => {
            let e = &done.stderr;
            assert!(e.contains("tries); giving up"), "{e}");
            assert!(
                e.contains("could not fetch") && e.contains("from worker"),
                "{e}"
            );
        }
    }
    // Nothing is left behind on either worker: stale copies were released.
    eventually("the workers hold nothing", Duration::from_secs(30), || {
        held_bytes(&address) == [0, 0]
    });
    a.unblock(b);
    assert_eq!(query(&address, SHUFFLED).success().stdout, answer);
    drop(net);
}
