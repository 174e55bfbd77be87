//! A cluster of processes, as users start one: `rask scheduler`, `rask worker`
//! with its nanny, and clients connecting with `--scheduler`.

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use crate::processes::{Process, ProcessCluster, kill_9, signal};
use crate::support::{rask, repository_root, run, run_with_input};

/// A multi-stage query (two aggregations, a join, a sort) with exact answers.
pub(crate) const JOINED: &str = "\
WITH a AS (SELECT name, count(*) AS n, max(x) AS mx FROM timeseries('2000-01-01', '2000-01-21') GROUP BY name), \
     b AS (SELECT name, min(y) AS my, count(DISTINCT id) AS ids FROM timeseries('2000-01-01', '2000-01-21') GROUP BY name) \
SELECT a.name, a.n, a.mx, b.my, b.ids FROM a JOIN b ON a.name = b.name ORDER BY a.name";

/// The same over four months: long enough to kill a worker in the middle of it.
fn joined_long() -> String {
    JOINED.replace("'2000-01-21'", "'2000-05-01'")
}

/// `sql` through `rask query` on the scheduler at `address`, as CSV.
pub(crate) fn remote_query(address: &str, sql: &str, extra: &[&str]) -> crate::support::Run {
    remote_query_with(rask(), address, sql, extra)
}

/// `sql` through `command query` (`rask` or a binary built on its entry point)
/// on the scheduler at `address`, as CSV.
pub(crate) fn remote_query_with(
    mut command: std::process::Command,
    address: &str,
    sql: &str,
    extra: &[&str],
) -> crate::support::Run {
    run(command
        .args([
            "query",
            "--format",
            "csv",
            "--scheduler",
            address,
            "-c",
            sql,
        ])
        .args(extra)
        .env_remove("RASK_AUTH_TOKEN"))
}

/// `sql` on an embedded cluster, as CSV: the answer to compare with.
pub(crate) fn local_query(sql: &str) -> String {
    run(rask().args(["query", "--format", "csv", "-c", sql]))
        .success()
        .stdout
}

/// `--nprocs` (Dask's name for `--nworkers`) starts that many worker processes.
#[test]
fn nprocs_starts_that_many_worker_processes() {
    let root = repository_root();
    let (scheduler, address) = crate::processes::scheduler(&root);
    let _workers = Process::start(
        "workers",
        &root,
        &[
            "worker",
            &address,
            "--nprocs",
            "2",
            "--nthreads",
            "1",
            "--watch-stdin",
        ],
        &[],
    );
    scheduler.wait_for_nth("registered:", 2);
    let out = run(rask().args(["status", &address, "--format", "csv"])).success();
    assert_eq!(
        out.stdout.lines().count(),
        3,
        "a header and two workers:\n{}",
        out.stdout
    );
}

#[test]
fn scheduler_and_workers_run_queries_and_say_what_they_do() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    cluster.scheduler.wait_for("worker 0 registered:");
    cluster.scheduler.wait_for("worker 1 registered:");
    for expected in [
        "registered to 127.0.0.1:",
        "1 threads",
        "memory limit",
        "local directory",
        "nanny: started",
    ] {
        cluster.workers.wait_for(expected);
    }
    // A worker's results are served on 127.0.0.1 only.
    for address in cluster.worker_addresses() {
        assert!(address.starts_with("127.0.0.1:"), "{address}");
    }

    // Addresses as users write them: a name, and Dask's tcp:// form.
    let port = cluster.address.rsplit(':').next().unwrap_or_default();
    let named = format!("tcp://localhost:{port}");
    let remote = remote_query(&named, JOINED, &[]).success().stdout;
    assert_eq!(remote, local_query(JOINED));
    assert_eq!(remote.lines().count(), 27, "{remote}");

    // RASK_SCHEDULER stands for --scheduler: the query is the scheduler's
    // next client.
    let clients = cluster.scheduler.count("disconnected");
    let by_env = run(rask()
        .env("RASK_SCHEDULER", &cluster.address)
        .args(["query", "--format", "csv", "-c", JOINED]))
    .success()
    .stdout;
    assert_eq!(by_env, remote);
    cluster.scheduler.wait_for_nth("disconnected", clients + 1);

    // The shell connects the same way.
    let shell = run_with_input(
        rask().args(["--scheduler", &cluster.address, "--format", "csv"]),
        "SELECT count(*) AS n FROM timeseries('2000-01-01', '2000-01-02');\n",
    )
    .success();
    assert_eq!(shell.stdout, "n\n86400\n");

    // The client's display, as Dask's: scheduler, workers, threads, memory.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let text = runtime.block_on(async {
        let client = rask::Client::connect(&cluster.address)
            .await
            .expect("connects");
        client.to_string()
    });
    assert!(
        text.contains(&format!("Scheduler: {}", cluster.address)),
        "{text}"
    );
    assert!(text.contains("Workers: 2  Threads: 2"), "{text}");
}

/// `rask query --scheduler` sends each statement for the scheduler to plan
/// and run in a session it keeps for the process: a table one statement
/// makes is there for the next, the rows and errors (placed in the script)
/// are those of planning in the client (`--plan-here`), and SQL naming a
/// relative path is planned in the client, in the client's folder.
#[test]
fn the_scheduler_plans_the_statements_of_rask_query() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    let people = root.join("sample_data/people.parquet");
    let script = format!(
        "CREATE EXTERNAL TABLE people STORED AS PARQUET LOCATION '{}';\n\
         SELECT count(*) AS n FROM people;\n\
         SELECT name FROM people ORDER BY name LIMIT 3;\n\
         {JOINED}",
        people.display()
    );
    let thin = remote_query(&cluster.address, &script, &[])
        .success()
        .stdout;
    let planned_here = remote_query(&cluster.address, &script, &["--plan-here"])
        .success()
        .stdout;
    assert_eq!(thin, planned_here);
    assert!(thin.starts_with("n\n"), "{thin}");
    assert!(thin.contains(&local_query(JOINED)), "{thin}");

    let failing = "SELECT 1;\nSELECT\n  nosuch FROM (SELECT 1 AS a)";
    let thin = remote_query(&cluster.address, failing, &[]).failure();
    let here = remote_query(&cluster.address, failing, &["--plan-here"]).failure();
    assert_eq!(thin.stdout, here.stdout);
    assert_eq!(thin.stderr, here.stderr);
    assert!(thin.stderr.contains("-c:3:3: "), "{}", thin.stderr);

    // More rows than the scheduler sends ahead of what the client has read
    // (a window of 32 MiB): they all come, as the client reads them.
    let wide = "SELECT id, name || repeat('-', 500) AS padded \
                FROM timeseries('2000-01-01', '2000-01-02') ORDER BY timestamp";
    let thin = remote_query(&cluster.address, wide, &[]).success().stdout;
    assert!(thin.len() > 40 << 20, "{} bytes", thin.len());
    assert_eq!(thin.lines().count(), 86_401);
    let here = remote_query(&cluster.address, wide, &["--plan-here"]).success();
    assert!(thin == here.stdout, "the rows differ");

    // A relative path is the client's: its folder, not the scheduler's.
    let count = "SELECT count(*) AS n FROM 'people.parquet'";
    let relative = run(rask()
        .current_dir(root.join("sample_data"))
        .args([
            "query",
            "-v",
            "--format",
            "csv",
            "--scheduler",
            &cluster.address,
        ])
        .args(["-c", count]))
    .success();
    let here = run(rask()
        .current_dir(root.join("sample_data"))
        .args(["query", "--format", "csv", "-c", count]))
    .success();
    assert_eq!(relative.stdout, here.stdout);
    assert!(!relative.stderr.contains(PLANS), "{}", relative.stderr);
    let thin = remote_query(&cluster.address, "SELECT 1", &["-v"]).success();
    assert!(thin.stderr.contains(PLANS), "{}", thin.stderr);
}

/// What `rask query -v` says when the scheduler plans its statements.
const PLANS: &str = "plans each statement";

#[test]
fn killing_a_worker_mid_query_loses_nothing_and_its_nanny_restarts_it() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    let long = joined_long();
    let expected = local_query(&long);

    let query = rask()
        .args([
            "query",
            "--format",
            "csv",
            "--scheduler",
            &cluster.address,
            "-c",
            &long,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut query = query.expect("the query starts");
    cluster.scheduler.wait_for("client 1 connected");
    std::thread::sleep(Duration::from_millis(500));
    let victim = cluster.worker_pids()[0];
    let running = matches!(query.try_wait(), Ok(None));
    kill_9(victim);
    let output = query.wait_with_output().expect("the query ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    assert!(running, "the query ended before the kill: make it longer");
    // The worker held results or ran tasks when it died: the kill cost something.
    let removed = cluster.scheduler.wait_for("removed: its connection closed");
    let numbers: Vec<usize> = removed
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let lost = &numbers[numbers.len() - 2..];
    assert!(lost.iter().sum::<usize>() > 0, "{removed}");
    // The nanny says how it died, with the worker's last words.
    let died = cluster
        .workers
        .wait_for(&format!("(pid {victim}) died (signal: 9"));
    assert!(died.contains("its last log lines:"), "{died}");
    let log = cluster.workers.log();
    let at = log
        .iter()
        .position(|l| l == &died)
        .expect("the line is in the log");
    assert!(
        log[at + 1..]
            .iter()
            .any(|l| l.contains(&format!("pid {victim}"))),
        "the last lines of {victim} follow:\n{}",
        log[at..].join("\n")
    );

    // The nanny starts a new worker, which registers as a new one.
    cluster.scheduler.wait_for("worker 2 registered:");
    assert_eq!(cluster.worker_pids().len(), 3);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = rask::Client::connect(&cluster.address)
            .await
            .expect("connects");
        client
            .wait_for_workers(2, Duration::from_secs(30))
            .await
            .expect("two workers again");
    });
    assert_eq!(
        remote_query(&cluster.address, &long, &[]).success().stdout,
        expected
    );
}

#[test]
fn a_wrong_or_missing_token_is_refused() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 1, 1, &["--auth-token", "s3cret"]);
    let sql = "SELECT 41 + 1 AS answer";

    let missing = remote_query(&cluster.address, sql, &[]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("no auth token"),
        "{}",
        missing.stderr
    );
    let wrong = remote_query(&cluster.address, sql, &["--auth-token", "guess"]);
    assert_eq!(wrong.code, Some(2), "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("wrong auth token"),
        "{}",
        wrong.stderr
    );
    cluster
        .scheduler
        .wait_for("refused a connection with no auth token");
    cluster
        .scheduler
        .wait_for("refused a connection with a wrong auth token");

    // A worker with the wrong token is refused too, and says why.
    let intruder = Process::start(
        "intruder",
        &root,
        &[
            "worker-process",
            &cluster.address,
            "--auth-token",
            "guess",
            "--watch-stdin",
        ],
        &[],
    );
    intruder.wait_for("wrong auth token");
    assert_eq!(cluster.scheduler.count("registered:"), 1);

    let right = remote_query(&cluster.address, sql, &["--auth-token", "s3cret"]).success();
    assert_eq!(right.stdout, "answer\n42\n");
}

#[test]
fn garbage_sent_to_any_port_leaves_the_cluster_working() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    let mut ports = vec![cluster.address.clone()];
    ports.extend(cluster.worker_addresses());
    assert_eq!(ports.len(), 3);
    let garbage: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for address in &ports {
        // Plain garbage, an HTTP/1 request, and an HTTP/2 preface followed by junk.
        for payload in [
            garbage.clone(),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            [
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice(),
                &garbage[..4096],
            ]
            .concat(),
        ] {
            let mut stream = TcpStream::connect(address).expect("the port is open");
            let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
            let _ = stream.write_all(&payload);
        }
    }
    // Well-formed gRPC carrying a malformed control message: that call is
    // refused and logged.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let refused = runtime.block_on(async {
        use arrow_flight::FlightData;
        use arrow_flight::flight_service_client::FlightServiceClient;
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", cluster.address))
            .expect("an address")
            .connect()
            .await
            .expect("connects");
        let mut client = FlightServiceClient::new(channel);
        let junk = FlightData {
            app_metadata: garbage[..100].to_vec().into(),
            ..Default::default()
        };
        client.do_exchange(futures::stream::iter([junk])).await
    });
    let status = refused.expect_err("a malformed hello is refused");
    assert!(
        status.message().contains("must start with a hello"),
        "{status:?}"
    );
    cluster
        .scheduler
        .wait_for("closing the connection: a malformed hello");

    let sql = "SELECT name, count(*) AS n FROM timeseries('2000-01-01', '2000-01-03') GROUP BY name ORDER BY name";
    assert_eq!(
        remote_query(&cluster.address, sql, &[]).success().stdout,
        local_query(sql)
    );
    assert_eq!(
        cluster.scheduler.count("removed:"),
        0,
        "{}",
        cluster.scheduler.log().join("\n")
    );
}

#[test]
fn a_silent_worker_is_removed_and_its_work_done_elsewhere() {
    let root = repository_root();
    let cluster = ProcessCluster::start_with(&root, 2, 1, &[], &["--heartbeat-timeout", "2"], &[]);
    let expected = local_query(JOINED);
    // A stopped process keeps its connection open but says nothing.
    let frozen = cluster.worker_pids()[0];
    signal(frozen, "-STOP");
    let answer = remote_query(&cluster.address, JOINED, &[]);
    signal(frozen, "-CONT");
    assert_eq!(answer.success().stdout, expected);
    cluster
        .scheduler
        .wait_for("removed: silent for 2s (no heartbeat)");
}

#[test]
fn tls_clusters_talk_tls_and_refuse_plain_clients() {
    let root = repository_root();
    let (cert, key, ca) = crate::support::tls_files();
    let flags = ["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca];
    let cluster = ProcessCluster::start(&root, 2, 1, &flags);
    let sql = "SELECT name, count(*) AS n FROM timeseries('2000-01-01', '2000-01-03') GROUP BY name ORDER BY name";
    let answer = remote_query(&cluster.address, sql, &flags).success();
    assert_eq!(answer.stdout, local_query(sql));
    let plain = remote_query(&cluster.address, sql, &[]);
    assert_eq!(plain.code, Some(2), "{}", plain.stderr);
    assert!(
        plain
            .stderr
            .contains(&format!("cannot reach {}", cluster.address)),
        "{}",
        plain.stderr
    );
}

#[test]
fn a_query_over_more_data_than_the_workers_memory_finishes() {
    let root = repository_root();
    let spill = tempfile::tempdir().expect("a temporary folder");
    let out = tempfile::tempdir().expect("a temporary folder");
    let local_directory = spill.path().display().to_string();
    // Two months are about 260 MB in memory; the two workers get 64 MB each.
    let flags = [
        "--memory-limit",
        "64MB",
        "--local-directory",
        &local_directory,
    ];
    let cluster = ProcessCluster::start_with(&root, 2, 1, &[], &[], &flags);
    // CSV: a Parquet writer buffers a whole row group (a million rows) in memory.
    let sorted = out.path().join("sorted.csv").display().to_string();
    let months = "timeseries('2000-01-01', '2000-03-01', '1s', '7d')";
    let copy = format!("COPY (SELECT * FROM {months} ORDER BY x) TO '{sorted}'");
    let written = remote_query(&cluster.address, &copy, &[]).success();
    assert_eq!(written.stdout, "count\n5184000\n");
    cluster.workers.wait_for("spilling results to");
    // Each worker stays within 1.2× its limit plus a fixed allowance: the
    // process itself (about 40 MiB) and what the budget does not count, the
    // batches in flight and a merge's batch of each input. (Before inputs
    // streamed, the merging worker peaked at 5× the limit.) Its allocator
    // uses small pages, unless told otherwise.
    const LIMIT: u64 = 64_000_000;
    const ALLOWANCE: u64 = 160 << 20;
    for pid in cluster.worker_pids() {
        let environment = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            environment
                .split(|&b| b == 0)
                .any(|v| v == b"MIMALLOC_ALLOW_THP=0"),
            "worker {pid} runs with transparent huge pages"
        );
        let peak = peak_rss(pid);
        assert!(
            peak <= LIMIT * 12 / 10 + ALLOWANCE,
            "worker {pid} peaked at {} MiB",
            peak >> 20
        );
    }
    let check = "SELECT count(*) AS n, count(DISTINCT id) AS ids, min(x) AS lo, max(x) AS hi";
    let back = local_query(&format!("{check} FROM '{sorted}'"));
    assert_eq!(back, local_query(&format!("{check} FROM {months}")));
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    crate::processes::status_kib(pid, "VmHWM") * 1024
}

/// A memory cgroup of this test's own, below the test process's, removed
/// when dropped (once the processes in it are gone).
struct MemoryCgroup {
    dir: std::path::PathBuf,
    procs: &'static str,
}

impl MemoryCgroup {
    /// A cgroup limited to `bytes`: v1's memory controller, or v2's unified tree.
    fn new(name: &str, bytes: u64) -> Self {
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let v1 = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| format!("/sys/fs/cgroup/memory{path}"))
        });
        let (parent, limit_file) = match v1 {
            Some(dir) => (dir, "memory.limit_in_bytes"),
            None => {
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .expect("a cgroup v1 memory controller or a cgroup v2 tree");
                (format!("/sys/fs/cgroup{path}"), "memory.max")
            }
        };
        let dir = std::path::Path::new(&parent).join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot make the cgroup {} (the test needs root): {e}",
                dir.display()
            )
        });
        let cgroup = Self {
            dir,
            procs: "cgroup.procs",
        };
        std::fs::write(cgroup.dir.join(limit_file), bytes.to_string())
            .unwrap_or_else(|e| panic!("cannot limit {}: {e}", cgroup.dir.display()));
        cgroup
    }

    /// `rask ARGS…`, started inside the cgroup.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let procs = self.dir.join(self.procs);
        let mut command = std::process::Command::new("sh");
        command
            .current_dir(repository_root())
            .arg("-c")
            .arg(format!(
                "echo $$ > {} && exec \"$0\" \"$@\"",
                procs.display()
            ))
            .arg(env!("CARGO_BIN_EXE_rask"))
            .args(args);
        command
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Its processes leave once their nanny is gone; wait for them.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn workers_in_a_container_take_their_share_of_its_memory_limit() {
    let root = repository_root();
    let (scheduler, address) = crate::processes::scheduler(&root);
    let address = address.as_str();
    // A container of 3 GiB for two workers: 1.5 GiB each, as Dask divides it.
    let cgroup = MemoryCgroup::new("rask-memory-test", 3 << 30);
    let args = [
        "worker",
        address,
        "--nworkers",
        "2",
        "--nthreads",
        "1",
        "--watch-stdin",
    ];
    let workers = Process::start_command(cgroup.command(&args), "workers in a cgroup");
    scheduler.wait_for_nth("registered:", 2);
    assert_eq!(
        workers.count("memory limit 1.50 GiB"),
        2,
        "{:?}",
        workers.log()
    );
    drop(workers);
    drop(cgroup);
}

/// Every Flight method of `address`, called with `token` (none, or a wrong
/// one): the status codes, by method.
async fn flight_calls(address: &str, token: Option<&str>) -> Vec<(&'static str, tonic::Code)> {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::{
        Action, Criteria, Empty, FlightData, FlightDescriptor, HandshakeRequest, Ticket,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("an endpoint")
        .connect()
        .await
        .expect("connects");
    let mut client = FlightServiceClient::new(channel);
    fn with<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().expect("ASCII");
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
    let code = |r: Result<(), tonic::Status>| r.err().map_or(tonic::Code::Ok, |s| s.code());
    let stream = |m: FlightData| futures::stream::iter([m]);
    let descriptor = FlightDescriptor::new_cmd(vec![1, 2, 3]);
    vec![
        (
            "handshake",
            code(
                client
                    .handshake(with(
                        futures::stream::iter([HandshakeRequest::default()]),
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "list_flights",
            code(
                client
                    .list_flights(with(Criteria::default(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "get_flight_info",
            code(
                client
                    .get_flight_info(with(descriptor.clone(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "poll_flight_info",
            code(
                client
                    .poll_flight_info(with(descriptor.clone(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "get_schema",
            code(client.get_schema(with(descriptor, token)).await.map(drop)),
        ),
        (
            "do_get",
            code(
                client
                    .do_get(with(Ticket::new(vec![0u8; 16]), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "do_put",
            code(
                client
                    .do_put(with(stream(FlightData::default()), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "do_exchange",
            code(
                client
                    .do_exchange(with(stream(FlightData::default()), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "do_action",
            code(
                client
                    .do_action(with(Action::new("worker-died", vec![0u8; 4]), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "list_actions",
            code(
                client
                    .list_actions(with(Empty::default(), token))
                    .await
                    .map(drop),
            ),
        ),
    ]
}

#[test]
fn every_flight_method_of_every_process_checks_the_token_before_the_body() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 1, 1, &["--auth-token", "s3cret"]);
    let mut ports = vec![cluster.address.clone()];
    ports.extend(cluster.worker_addresses());
    assert_eq!(ports.len(), 2);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    for address in &ports {
        for token in [None, Some("guess")] {
            for (method, code) in runtime.block_on(flight_calls(address, token)) {
                assert_eq!(
                    code,
                    tonic::Code::Unauthenticated,
                    "{method} on {address} with token {token:?}"
                );
            }
        }
    }
    // A 200 MB ticket without the token is refused on its headers: the
    // worker's memory does not grow by it.
    let worker = *cluster.worker_pids().last().expect("a worker");
    let before = peak_rss(worker);
    let refused = runtime.block_on(async {
        use arrow_flight::flight_service_client::FlightServiceClient;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", ports[1]))
            .expect("an endpoint")
            .connect()
            .await
            .expect("connects");
        let mut client = FlightServiceClient::new(channel).max_encoding_message_size(usize::MAX);
        let huge = arrow_flight::Ticket::new(vec![7u8; 200 << 20]);
        client.do_get(huge).await.map(drop)
    });
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(tonic::Code::Unauthenticated)
    );
    let after = peak_rss(worker);
    assert!(
        after < before + (50 << 20),
        "the worker grew from {} to {} MiB",
        before >> 20,
        after >> 20
    );
    // With the token, the worker answers (here: a key it does not hold).
    let held = runtime.block_on(async {
        let codes = flight_calls(&ports[1], Some("s3cret")).await;
        codes
            .into_iter()
            .find(|(m, _)| *m == "do_get")
            .map(|(_, c)| c)
    });
    assert_ne!(held, Some(tonic::Code::Unauthenticated));
}

/// The stage a hostile client sends: the three bytes of an Avro scan
/// (datafusion-proto panics on it without Avro), or a plan the fuzzer found
/// (kept under `fuzz/regressions/plan/`: a literal whose buffers make arrow
/// panic), as raw plan bytes or a whole encoded stage, whichever it is.
fn hostile_stage(name: &str, bytes: Vec<u8>) -> rask::internals::comm::EncodedStage {
    use rask::internals::comm::EncodedStage;
    let raw = EncodedStage {
        id: name.into(),
        number: 0,
        plan: bytes.clone(),
        output: None,
        config: Vec::new(),
        subqueries: Vec::new(),
    };
    let task = rask::internals::exec::new_context(&Default::default(), None)
        .expect("a session")
        .task_ctx();
    let panics = |stage: &EncodedStage| {
        rask::internals::comm::codec::decode_stage(stage, &task)
            .err()
            .is_some_and(|e| e.to_string().contains("a plan rask cannot run"))
    };
    match rask::internals::comm::wire::decode::<EncodedStage>(&bytes, "stage") {
        Ok(stage) if !panics(&raw) && panics(&stage) => EncodedStage {
            id: name.into(),
            ..stage
        },
        _ => raw,
    }
}

#[test]
fn a_plan_that_would_crash_a_worker_fails_its_task_and_the_worker_lives() {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use rask::internals::comm::EncodedJob;
    use rask::internals::comm::wire::{
        self, EncodedTask, FromClient, Hello, PROTOCOL_VERSION, ToClient,
    };

    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 1, 1, &[]);
    let worker = *cluster.worker_pids().last().expect("a worker");
    let found = std::fs::read(root.join("fuzz/regressions/plan/buffer-slice-out-of-range.bin"))
        .expect("the fuzzer's plan");
    let hostile = [
        (
            "avro",
            hostile_stage("avro", vec![0x8a, 0x01, 0x00]),
            "this plan has an Avro scan",
        ),
        (
            "found",
            hostile_stage("found", found),
            "a plan rask cannot run",
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    for (name, stage, expected) in hostile {
        let task = EncodedTask {
            key: rask::Key::new(format!("hostile-00ff-{name}")),
            dependencies: Vec::new(),
            priority: 0,
            retries: 0,
            workers: None,
            functions: Vec::new(),
            parts: Vec::new(),
            job: EncodedJob::Stage {
                stage: std::sync::Arc::new(stage),
                partition: 0,
                inputs: Vec::new(),
            },
        };
        let outcome = runtime.block_on(async {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.address))
                    .expect("an endpoint")
                    .connect()
                    .await
                    .expect("connects");
            let mut client = FlightServiceClient::new(channel);
            let messages = futures::stream::iter([
                wire::frame(&[Hello::Client {
                    version: PROTOCOL_VERSION,
                }]),
                wire::frame(&[FromClient::Submit {
                    tasks: vec![task.clone()],
                    wanted: vec![task.key.clone()],
                }]),
            ])
            .chain(futures::stream::pending());
            use futures::StreamExt as _;
            let mut replies = client
                .do_exchange(messages)
                .await
                .expect("a stream")
                .into_inner();
            loop {
                let frame = replies
                    .message()
                    .await
                    .expect("a frame")
                    .expect("not the end");
                for message in wire::unframe::<ToClient>(&frame, "reply").expect("messages") {
                    if let ToClient::Report { outcome, .. } = message {
                        return format!("{outcome:?}");
                    }
                }
            }
        });
        assert!(outcome.contains(expected), "{name}: {outcome}");
    }
    // The worker lives, the same process, and other work goes on.
    assert_eq!(cluster.worker_pids().last(), Some(&worker));
    assert_eq!(
        cluster.workers.count("died"),
        0,
        "{:?}",
        cluster.workers.log()
    );
    let answer = remote_query(&cluster.address, "SELECT 41 + 1 AS answer", &[]).success();
    assert_eq!(answer.stdout, "answer\n42\n");
}

#[test]
fn each_worker_spills_in_a_private_folder_removed_when_it_ends() {
    use std::os::unix::fs::PermissionsExt;
    let root = repository_root();
    let spill = tempfile::tempdir().expect("a temporary folder");
    let local = spill.path().display().to_string();
    let flags = ["--local-directory", local.as_str()];
    let mut cluster = ProcessCluster::start_with(&root, 1, 1, &[], &[], &flags);
    let folders = || -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(spill.path())
            .expect("the spill folder")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("rask-worker-"))
            })
            .collect();
        found.sort();
        found
    };
    let first = folders();
    assert_eq!(first.len(), 1, "{first:?}");
    let mode = std::fs::metadata(&first[0])
        .expect("a folder")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{:o}", mode);
    // Killed with -9, the worker leaves its folder; the one its nanny starts
    // removes it, and makes its own.
    kill_9(cluster.worker_pids()[0]);
    cluster.scheduler.wait_for("worker 1 registered:");
    let second = folders();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first);
    // SIGTERM: the worker retires and its folder goes with it.
    signal(cluster.workers.pid(), "-TERM");
    let start = std::time::Instant::now();
    while cluster.workers.is_running() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the nanny did not exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(folders().is_empty(), "{:?}", folders());
}
