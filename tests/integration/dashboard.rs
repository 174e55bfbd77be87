//! The scheduler's dashboard over plain HTTP: its address is logged and given
//! to clients, a taken port falls back to a free one, and the page and JSON API
//! show the real workers. (Its pages in a browser are issue 7's tests.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rask::ClusterInfo;

use crate::processes::{Process, ProcessCluster};
use crate::support::repository_root;

/// `GET path` from `address` (`HOST:PORT`): the status line and the body.
pub(crate) fn get(address: &str, path: &str) -> (String, String) {
    let (status, _, body) = get_with(address, path, &[]);
    (status, body)
}

/// `GET path` from `address` with `headers` (`Name: value`): the status line,
/// the response's headers and the body.
pub(crate) fn get_with(address: &str, path: &str, headers: &[&str]) -> (String, String, String) {
    let mut stream = TcpStream::connect(address).expect("the dashboard accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head.to_string(), body.to_string())
}

/// The dashboard's link, as the scheduler logged it.
pub(crate) fn dashboard_link(scheduler: &Process) -> String {
    let logged = scheduler.wait_for("dashboard at ");
    let link = logged.rsplit("dashboard at ").next().unwrap_or_default();
    link.trim().to_string()
}

/// `http://HOST:PORT/status` → `HOST:PORT`.
pub(crate) fn host_port(link: &str) -> String {
    link.trim_start_matches("http://")
        .trim_end_matches("/status")
        .to_string()
}

#[test]
fn the_dashboard_serves_the_cluster_and_its_workers() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    let link = dashboard_link(&cluster.scheduler);
    assert!(link.starts_with("http://127.0.0.1:"), "{link}");
    let address = host_port(&link);

    assert_eq!(
        get(&address, "/health"),
        ("HTTP/1.1 200 OK".into(), "ok".into())
    );
    let (status, body) = get(&address, "/api/v1/info");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let info: ClusterInfo = serde_json::from_str(&body).expect("JSON cluster info");
    assert_eq!(info.scheduler, cluster.address);
    assert_eq!(info.dashboard.as_deref(), Some(link.as_str()));
    assert_eq!(info.workers.len(), 2, "{body}");
    assert!(info.workers.iter().all(|w| w.nthreads == 1), "{body}");
    let (_, workers) = get(&address, "/api/v1/workers");
    assert!(workers.contains(&info.workers[1].address), "{workers}");
    let (status, page) = get(&address, "/status");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(page.contains("/assets/dashboard.js"), "{page}");
    let (status, script) = get(&address, "/assets/dashboard.js");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        script.contains("/api/v1/events"),
        "the page is pushed its updates"
    );
    for page in [
        "/workers",
        "/graph",
        "/info",
        "/info/worker/0",
        "/info/task/x-1",
    ] {
        assert_eq!(get(&address, page).0, "HTTP/1.1 200 OK", "{page}");
    }
    let (status, _) = get(&address, "/");
    assert!(status.contains("307"), "{status}");

    // Clients get the link.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(rask::Client::connect(&cluster.address))
        .unwrap();
    assert_eq!(client.dashboard_link().as_deref(), Some(link.as_str()));
    assert!(client.to_string().contains(&link), "{client}");
}

#[test]
fn a_taken_dashboard_port_falls_back_to_a_free_one_with_a_warning() {
    let root = repository_root();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let wanted = format!(":{port}");
    let scheduler = Process::start(
        "scheduler",
        &root,
        &[
            "scheduler",
            "--port",
            "0",
            "--dashboard-address",
            &wanted,
            "--watch-stdin",
        ],
        &[],
    );
    let warning = scheduler.wait_for("is already in use");
    assert!(warning.contains(&format!("port {port}")), "{warning}");
    let link = dashboard_link(&scheduler);
    assert!(!link.contains(&format!(":{port}/")), "{link}");
    assert_eq!(get(&host_port(&link), "/health").1, "ok");
}

/// `GET path` as JSON.
fn get_json(address: &str, path: &str) -> serde_json::Value {
    let (status, body) = get(address, path);
    assert_eq!(status, "HTTP/1.1 200 OK", "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
}

/// The first server-sent event of `path`: its name and data.
fn first_event(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("the dashboard accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 65536];
    loop {
        let n = stream.read(&mut buffer).expect("an event within 10 s");
        assert!(
            n > 0,
            "the stream closed: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&seen);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        assert!(head.contains("text/event-stream"), "{head}");
        // Chunked: the event's lines sit between chunk sizes; a blank line ends it.
        if let Some(end) = body.find("\n\n") {
            let event = &body[..end];
            let name = event
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default();
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_default();
            return (name.to_string(), data.to_string());
        }
    }
}

/// Waits up to 30 s for `check`.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "waited for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const GROUPBY: &str = "SELECT name, count(*) AS n, avg(x) AS x FROM timeseries('2000-01-01', '2000-01-03') GROUP BY name";

#[test]
fn the_json_api_follows_the_work_of_a_cluster() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    let address = host_port(&dashboard_link(&cluster.scheduler));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(rask::Client::connect(&cluster.address))
        .unwrap();
    // A value placed on a worker, and a query run to its end.
    let scattered = runtime
        .block_on(async { client.scatter(vec![7u8; 100_000]).await })
        .unwrap();
    let rows = runtime
        .block_on(async { client.sql(GROUPBY).await?.collect().await })
        .unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 26);

    // Progress: the query's stages, each done, as the client and the API see them.
    let groups = runtime.block_on(client.progress()).unwrap();
    assert!(
        groups.len() >= 2 && groups.iter().all(|g| g.is_complete() && g.total > 0),
        "{groups:?}"
    );
    let api = get_json(&address, "/api/v1/progress");
    let names: Vec<&str> = api
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    for group in &groups {
        assert!(
            names.contains(&group.name.as_str()),
            "{} in {api}",
            group.name
        );
    }

    // The task stream: bars of finished tasks on both workers, numbered.
    let stream = get_json(&address, "/api/v1/stream?after=0");
    let bars = stream["bars"].as_array().unwrap();
    let tasks: Vec<&serde_json::Value> = bars.iter().filter(|b| b["kind"] == "task").collect();
    let total: u64 = groups.iter().map(|g| g.done).sum();
    assert_eq!(
        tasks.len() as u64,
        total,
        "one bar per finished task: {stream}"
    );
    let workers_used: std::collections::BTreeSet<u64> =
        tasks.iter().filter_map(|b| b["worker"].as_u64()).collect();
    assert_eq!(workers_used.len(), 2, "{stream}");
    assert!(
        tasks
            .iter()
            .all(|b| b["end"].as_f64() >= b["start"].as_f64())
    );
    let next = stream["next"].as_u64().unwrap();
    let later = get_json(&address, &format!("/api/v1/stream?after={next}"));
    assert_eq!(later["bars"].as_array().unwrap().len(), 0, "{later}");

    // Workers: as registered, and as they report (the scattered bytes count).
    eventually("the scattered value in a worker's memory", || {
        let workers = runtime.block_on(client.workers()).unwrap();
        workers.iter().map(|w| w.metrics.memory).sum::<u64>() >= 100_000
    });
    let workers = runtime.block_on(client.workers()).unwrap();
    assert_eq!(workers.len(), 2);
    for w in &workers {
        assert!(w.last_seen.is_some_and(|s| s < 30.0), "{w:?}");
        assert!(w.info.nanny.is_some() && w.info.pid.is_some(), "{w:?}");
        assert!(!w.info.local_directory.is_empty(), "{w:?}");
        assert!(w.metrics.cpu.is_some(), "{w:?}");
    }
    let api = get_json(&address, "/api/v1/workers");
    assert_eq!(api.as_array().unwrap().len(), 2);
    let one = get_json(&address, &format!("/api/v1/workers/{}", workers[1].info.id));
    assert_eq!(one["info"]["address"], workers[1].info.address.as_str());
    assert!(get(&address, "/api/v1/workers/999").0.contains("404"));

    // Tasks and the graph: the scattered value is in memory where it was put.
    let key = scattered.key().to_string();
    let task = get_json(&address, &format!("/api/v1/tasks/{key}"));
    assert_eq!(task["state"], "memory", "{task}");
    assert_eq!(task["who_has"].as_array().unwrap().len(), 1, "{task}");
    assert!(get(&address, "/api/v1/tasks/nothing-1").0.contains("404"));
    let graph = get_json(&address, "/api/v1/graph");
    let keys: Vec<&str> = graph["tasks"]
        .as_array()
        .expect("a small graph, task by task")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert!(keys.contains(&key.as_str()), "{graph}");

    // Info, Prometheus metrics and the pushed updates.
    let info = get_json(&address, "/api/v1/info");
    assert_eq!(info["threads"], 2);
    assert!(info["tasks_finished"].as_u64().unwrap() >= total, "{info}");
    let (_, metrics) = get(&address, "/metrics");
    assert!(metrics.contains("\nrask_workers 2\n"), "{metrics}");
    assert!(
        metrics.contains("# TYPE rask_tasks_finished_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rask_worker_memory_bytes{worker=\""),
        "{metrics}"
    );
    let (name, data) = first_event(&address, "/api/v1/events");
    assert_eq!(name, "update");
    let update: serde_json::Value = serde_json::from_str(&data).expect("JSON data");
    assert_eq!(update["workers"].as_array().unwrap().len(), 2, "{update}");
    let pushed = update["stream"]["bars"].as_array().unwrap();
    assert_eq!(
        pushed.iter().filter(|b| b["kind"] == "task").count(),
        tasks.len(),
        "the first update carries the stream so far"
    );
    // The workers' heartbeats told of the shuffle's transfers by now.
    assert!(
        pushed
            .iter()
            .any(|b| b["kind"] == "transfer" && b["nbytes"].as_u64() > Some(0)),
        "{update}"
    );

    // `rask status` prints the same workers in the terminal.
    let out =
        crate::support::run(crate::support::rask().args(["status", &cluster.address])).success();
    for w in &workers {
        assert!(out.stdout.contains(&w.info.address), "{}", out.stdout);
    }
    assert!(out.stdout.contains("2 rows"), "{}", out.stdout);
    let csv = crate::support::run(crate::support::rask().args([
        "status",
        &cluster.address,
        "--format",
        "csv",
    ]))
    .success();
    assert_eq!(csv.stdout.lines().count(), 3, "{}", csv.stdout);
    let refused =
        crate::support::run(crate::support::rask().args(["status", "127.0.0.1:1"])).failure();
    assert!(refused.stderr.contains("127.0.0.1:1"), "{}", refused.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_serves_its_dashboard_on_a_free_port() {
    let client = rask::Client::with_config(rask::Config {
        workers: 2,
        threads: 1,
        ..rask::Config::default()
    })
    .unwrap();
    let link = client
        .dashboard_link()
        .expect("a local cluster serves a dashboard");
    assert!(link.starts_with("http://127.0.0.1:"), "{link}");
    assert!(client.to_string().contains(&link), "{client}");
    client.sql(GROUPBY).await.unwrap().collect().await.unwrap();
    let address = host_port(&link);
    let (info, workers, stream) = tokio::task::spawn_blocking(move || {
        (
            get_json(&address, "/api/v1/info"),
            get_json(&address, "/api/v1/workers"),
            get_json(&address, "/api/v1/stream"),
        )
    })
    .await
    .unwrap();
    assert_eq!(info["scheduler"], "in-process");
    assert_eq!(workers.as_array().unwrap().len(), 2, "{workers}");
    assert!(!stream["bars"].as_array().unwrap().is_empty(), "{stream}");
    let groups = client.progress().await.unwrap();
    assert!(groups.iter().any(|g| g.done > 0), "{groups:?}");

    // Past 2,000 tasks the graph is drawn by group.
    let mut graph = rask::TaskGraph::new();
    let keys: Vec<rask::Key> = (0..2_500)
        .map(|i| {
            graph.add("leaf", &[], move |_| {
                Ok(rask::TaskData::local_value(i as u64, 8))
            })
        })
        .collect();
    let held = client.submit_graph(graph, &keys);
    client.gather(&held).await.unwrap();
    let address = host_port(&link);
    let graph = tokio::task::spawn_blocking(move || get_json(&address, "/api/v1/graph"))
        .await
        .unwrap();
    assert!(
        graph["tasks"].is_null(),
        "too many tasks to draw one by one"
    );
    let leaf = graph["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "leaf")
        .unwrap_or_else(|| panic!("a leaf group in {graph}"))
        .clone();
    assert_eq!(
        (leaf["total"].as_u64(), leaf["done"].as_u64()),
        (Some(2_500), Some(2_500))
    );
    drop(held);
}

/// A job that keeps the cluster busy: the same query, again and again, until
/// told to stop; how many ran.
fn busy(
    address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let client = rask::Client::connect(&address).await.unwrap();
            let mut ran = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client.sql(GROUPBY).await.unwrap().collect().await.unwrap();
                ran += 1;
            }
            ran
        })
    })
}

/// Where the tests keep their screenshots.
fn artifact(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn the_status_and_workers_pages_show_the_real_cluster_at_work_in_chromium() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    let link = dashboard_link(&cluster.scheduler);
    let addresses = cluster.worker_addresses();
    assert_eq!(addresses.len(), 2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let job = busy(cluster.address.clone(), std::sync::Arc::clone(&stop));
    let browser = crate::browser::Browser::start();

    // Status: a row per worker thread, and a task stream that grows.
    browser.open(&link);
    let bars = |b: &crate::browser::Browser| {
        b.run("const s = document.querySelector('#stream'); return s ? Number(s.dataset.bars) : 0")
            .as_u64()
            .unwrap_or(0)
    };
    browser.wait_for(
        "bars in the task stream",
        "return document.querySelectorAll('#stream rect.task').length",
    );
    let first = bars(&browser);
    let labels = browser.run(
        "return [...document.querySelectorAll('#stream text')].map(t => t.textContent).join('\\n')",
    );
    let labels = labels.as_str().unwrap_or_default().to_string();
    for address in &addresses {
        assert!(
            labels.contains(address.as_str()),
            "{address} in the stream's rows:\n{labels}"
        );
    }
    browser.wait_for(
        "the task stream to grow",
        &format!("const s = document.querySelector('#stream'); return s && Number(s.dataset.bars) > {first}"),
    );
    let progress = browser.wait_for(
        "progress rows",
        "return document.querySelector('#progress tbody')?.innerText",
    );
    assert!(
        progress.as_str().unwrap_or_default().contains('/'),
        "{progress}"
    );
    let memory = browser.run("return document.querySelector('#memory tbody').rows.length");
    assert_eq!(memory, 2, "a memory row per worker");
    let status_png = artifact("status.png");
    std::fs::write(&status_png, browser.screenshot()).unwrap();

    // Workers: the real workers, with their nannies.
    let workers_link = link.replace("/status", "/workers");
    browser.open(&workers_link);
    let table = browser.wait_for(
        "the workers table",
        "const t = document.querySelector('#workers tbody'); return t && t.rows.length === 2 ? t.innerText : ''",
    );
    let table = table.as_str().unwrap_or_default().to_string();
    for address in &addresses {
        assert!(table.contains(address.as_str()), "{address} in\n{table}");
    }
    assert!(table.contains("pid "), "nannies shown:\n{table}");
    let workers_png = artifact("workers.png");
    std::fs::write(&workers_png, browser.screenshot()).unwrap();

    // Graph: the tasks the scheduler knows, as it runs them; Info: the scheduler.
    browser.open(&link.replace("/status", "/graph"));
    browser.wait_for(
        "tasks in the graph",
        "return document.querySelectorAll('#graph circle').length",
    );
    browser.open(&link.replace("/status", "/info"));
    let info = browser.wait_for(
        "the scheduler's facts",
        "return document.querySelector('main dl')?.innerText",
    );
    assert!(
        info.as_str().unwrap_or_default().contains(&cluster.address),
        "{info}"
    );
    let worker = browser.run("return document.querySelector('#info-workers a').href");
    browser.open(worker.as_str().unwrap_or_default());
    let page = browser.wait_for(
        "a worker's page",
        "return document.querySelector('main dl')?.innerText",
    );
    assert!(
        page.as_str()
            .unwrap_or_default()
            .contains("local directory"),
        "{page}"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ran = job.join().expect("the job ran");
    assert!(ran >= 1);
    for png in [&status_png, &workers_png] {
        let bytes = std::fs::read(png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
        eprintln!("screenshot: {}", png.display());
    }
}

#[test]
fn with_a_token_every_page_api_stream_and_metrics_asks_for_it_but_health() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 1, 1, &["--auth-token", "s3cret"]);
    let logged = cluster.scheduler.wait_for("dashboard at ");
    // The printed link carries the token.
    assert!(logged.ends_with("/status?token=s3cret"), "{logged}");
    let link = logged.rsplit("dashboard at ").next().unwrap_or_default();
    let address = host_port(link.trim().trim_end_matches("?token=s3cret"));
    for path in [
        "/status",
        "/workers",
        "/assets/dashboard.js",
        "/api/v1/info",
        "/api/v1/workers",
        "/api/v1/events",
        "/metrics",
    ] {
        let (status, _, _) = get_with(&address, path, &[]);
        assert!(status.contains("401"), "{path} without the token: {status}");
        let (status, _, _) = get_with(&address, path, &["Authorization: Bearer guess"]);
        assert!(
            status.contains("401"),
            "{path} with a wrong token: {status}"
        );
        if path != "/api/v1/events" {
            let (status, _, _) = get_with(&address, path, &["Authorization: Bearer s3cret"]);
            assert!(status.contains("200"), "{path} with the token: {status}");
        }
    }
    let (status, _, body) = get_with(&address, "/health", &[]);
    assert!(
        status.contains("200") && body.contains("ok"),
        "{status} {body}"
    );
    // Once with ?token=: an HttpOnly cookie, which is enough after.
    let (status, head, _) = get_with(&address, "/status?token=s3cret", &[]);
    assert!(status.contains("200"), "{status}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie in {head}"));
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie.split(';').next().unwrap_or_default();
    let (status, _, body) = get_with(&address, "/api/v1/info", &[&format!("Cookie: {pair}")]);
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("tasks_finished"), "{body}");
}

#[test]
fn event_streams_are_capped_and_a_closed_one_frees_its_place() {
    use std::io::BufRead;
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 1, 1, &[]);
    let address = host_port(&dashboard_link(&cluster.scheduler));
    // The status line of `GET /api/v1/events` on a connection kept open.
    let open = || {
        let stream = TcpStream::connect(&address).expect("the dashboard accepts");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        write!(
            writer,
            "GET /api/v1/events HTTP/1.1\r\nHost: {address}\r\n\r\n"
        )
        .unwrap();
        let mut status = String::new();
        std::io::BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut status)
            .unwrap();
        (status, stream)
    };
    let mut streams = Vec::new();
    for _ in 0..64 {
        let (status, stream) = open();
        assert!(status.contains("200"), "{status}");
        streams.push(stream);
    }
    let (status, _) = open();
    assert!(status.contains("503"), "the 65th: {status}");
    drop(streams.pop());
    let start = std::time::Instant::now();
    loop {
        let (status, stream) = open();
        if status.contains("200") {
            streams.push(stream);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no place freed: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `curl ARGS… URL`: (exit code, HTTP status, body).
fn curl(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs (the tests need Debian's curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        status.to_string(),
        body.to_string(),
    )
}

/// With the cluster's TLS files the dashboard speaks HTTPS only; with a token
/// it asks for the token, without one for a client certificate signed by the
/// cluster's authority.
#[test]
fn with_tls_the_dashboard_speaks_https() {
    let root = repository_root();
    let (cert, key, ca) = crate::support::tls_files();
    let flags = [
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        &key,
        "--tls-ca",
        &ca,
    ];
    for token in [Some("tls-and-token"), None] {
        let env: Vec<(&str, &str)> = token.iter().map(|t| ("RASK_AUTH_TOKEN", *t)).collect();
        let (scheduler, _) = crate::processes::scheduler_with(&root, &flags, &env);
        let link = dashboard_link(&scheduler);
        assert!(link.starts_with("https://127.0.0.1:"), "{link}");
        let base = link.split("/status").next().unwrap_or_default().to_string();
        let info = format!("{base}/api/v1/info");
        let (code, status, _) = curl(&info.replace("https://", "http://"), &[]);
        assert!(
            code != 0 || status != "200",
            "plain HTTP is not served: {status}"
        );
        match token {
            Some(token) => {
                let bearer = format!("Authorization: Bearer {token}");
                let (_, status, body) = curl(&info, &["--cacert", &ca, "-H", &bearer]);
                assert_eq!(status, "200", "{body}");
                assert!(body.contains("\"scheduler\""), "{body}");
                let (_, status, _) = curl(&info, &["--cacert", &ca]);
                assert_eq!(status, "401");
            }
            None => {
                let (code, status, _) = curl(&info, &["--cacert", &ca]);
                assert!(
                    code != 0 && status != "200",
                    "no client certificate: {code} {status}"
                );
                let (_, status, body) =
                    curl(&info, &["--cacert", &ca, "--cert", &cert, "--key", &key]);
                assert_eq!(status, "200", "{body}");
            }
        }
    }
}

/// The walkthrough's groupby: 30 partial aggregates, 2 final ones.
const WALKTHROUGH_GROUPBY: &str =
    "SELECT name, max(x) AS x, avg(y) AS y FROM timeseries() GROUP BY name ORDER BY name";

/// `rask query --report FILE` on a cluster of processes writes one page that
/// Chromium opens from the file, offline: the run's task stream, progress,
/// time per stage, transfers and spills, memory per worker, and each query
/// with its stages.
#[test]
fn a_report_of_a_run_opens_offline_in_chromium() {
    let root = repository_root();
    let cluster = ProcessCluster::start(&root, 2, 1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("run.html");
    let head = "SELECT * FROM timeseries() WHERE x > 0.5 LIMIT 3";
    let out = crate::support::run(crate::support::rask().args([
        "query",
        "--scheduler",
        &cluster.address,
        "--report",
        report.to_str().unwrap(),
        "-c",
        WALKTHROUGH_GROUPBY,
        "-c",
        head,
    ]))
    .success();
    assert!(
        out.stderr
            .contains(&format!("report written to {}", report.display())),
        "{}",
        out.stderr
    );
    let html = std::fs::read_to_string(&report).unwrap();
    for outside in ["src=", "href=\"http", "fetch(\"/", "EventSource(\"/"] {
        assert!(
            !html.contains(&format!("<script {outside}")) && !html.contains("<link "),
            "the page loads nothing: {outside}"
        );
    }

    let browser = crate::browser::Browser::start();
    browser.open(&format!("file://{}", report.display()));
    let tasks = browser.wait_for(
        "the run's task stream",
        "return document.querySelectorAll('#stream rect.task').length",
    );
    // 30 partial aggregates, 2 final ones; the head's partitions.
    assert!(tasks.as_u64().unwrap_or(0) >= 32, "{tasks} task bars");
    let rows = browser.run(
        "return [...document.querySelectorAll('#stream text')].map(t => t.textContent).join('\\n')",
    );
    assert_eq!(
        rows.as_str().unwrap_or_default().lines().count(),
        2,
        "a row per worker thread: {rows}"
    );
    let stages = browser.run("return document.querySelector('#stages tbody').innerText");
    let stages = stages.as_str().unwrap_or_default().to_string();
    assert!(
        stages.contains("aggregate") && stages.contains("projection"),
        "{stages}"
    );
    let progress = browser.run("return document.querySelector('#progress tbody').innerText");
    assert!(
        progress.as_str().unwrap_or_default().contains("30 / 30"),
        "{progress}"
    );
    assert_eq!(
        browser.run("return document.querySelector('#memory tbody').rows.length"),
        2
    );
    let moves = browser.run("return document.querySelector('#moves').innerText");
    assert!(
        moves.as_str().unwrap_or_default().contains("transfer"),
        "the shuffle moved data between the workers: {moves}\n{}",
        browser.run("return JSON.stringify(data.bars.map(b => [b.kind, b.worker, b.key]))")
    );
    let queries = browser
        .run("return [...document.querySelectorAll('#queries pre')].map(p => p.textContent)");
    let queries: Vec<String> = serde_json::from_value(queries).unwrap();
    assert_eq!(queries.len(), 4, "{queries:?}");
    assert_eq!(queries[0], WALKTHROUGH_GROUPBY);
    assert!(
        queries[1].starts_with("2 stages, 32 tasks"),
        "{}",
        queries[1]
    );
    assert_eq!(queries[2], head);
    let summary = browser.run("return document.getElementById('summary').textContent");
    assert!(
        summary
            .as_str()
            .unwrap_or_default()
            .contains(&cluster.address),
        "{summary}"
    );
    // Nothing was fetched: the page holds everything it shows.
    assert_eq!(
        browser.run("return performance.getEntriesByType('resource').length"),
        0
    );
    let png = artifact("report.png");
    std::fs::write(&png, browser.screenshot()).unwrap();
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    eprintln!("screenshot: {}", png.display());
}

/// `Client::report` around a block of work on the embedded cluster: the
/// block's queries and tasks, not those before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reports_the_work_of_a_block() {
    let client = rask::Client::with_config(rask::Config {
        workers: 1,
        threads: 2,
        ..rask::Config::default()
    })
    .unwrap();
    let before = "SELECT count(*) FROM timeseries()";
    client.sql(before).await.unwrap().collect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = client.report(dir.path().join("block.html")).await.unwrap();
    client
        .sql(WALKTHROUGH_GROUPBY)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let path = report.write().await.unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    let start = html.find("id=\"report-data\">").unwrap() + "id=\"report-data\">".len();
    let end = start + html[start..].find("</script>").unwrap();
    let data: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
    let queries = data["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 1, "only the block's query: {queries:?}");
    assert_eq!(queries[0]["sql"], WALKTHROUGH_GROUPBY);
    let bars = data["bars"].as_array().unwrap();
    assert_eq!(bars.len(), 32, "the block's 32 tasks");
    let groups: Vec<&str> = data["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["operation"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["aggregate", "projection"], "the block's groups");
}
