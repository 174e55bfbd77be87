//! The scheduler's dashboard over plain HTTP: its address is logged and given
//! to clients, a taken port falls back to a free one, and the page and JSON API
//! show the real workers. (Its pages in a browser are issue 7's tests.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rask::client::ClusterInfo;

use crate::processes::{Process, ProcessCluster};
use crate::support::repository_root;

/// `GET path` from `address` (`HOST:PORT`): the status line and the body.
fn get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("the dashboard accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

/// The dashboard's link, as the scheduler logged it.
fn dashboard_link(scheduler: &Process) -> String {
    let logged = scheduler.wait_for("dashboard at ");
    let link = logged.rsplit("dashboard at ").next().unwrap_or_default();
    link.trim().to_string()
}

/// `http://HOST:PORT/status` → `HOST:PORT`.
fn host_port(link: &str) -> String {
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
    assert!(
        page.contains("/api/v1/info") && page.contains("<table"),
        "{page}"
    );
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
