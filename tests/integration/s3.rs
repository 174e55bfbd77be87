//! Object storage: rask reading and writing `s3://` against a real S3-compatible
//! server (moto's, from PyPI) started on 127.0.0.1 for the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{csv_rows, rask, run};

/// A moto S3 server, killed when dropped (also when the test fails).
struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (the S3 tests need `pip install 'moto[server]'`)");
        let mut server = S3Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "moto's S3 server exited ({status}); install it with `pip install 'moto[server]'`"
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto's S3 server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (S3's `PUT /bucket`).
    fn create_bucket(&self, name: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "creating bucket {name}: {response}"
        );
    }

    /// A `rask` command whose environment points at this server.
    fn rask(&self) -> Command {
        let mut cmd = rask();
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ALLOW_HTTP", "true");
        cmd
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn copy_to_s3_then_query_it_by_table_and_by_path() {
    let server = S3Server::start();
    server.create_bucket("rask-test");

    let sql = "
        COPY (SELECT * FROM timeseries('2000-01-01', '2000-01-03', '1min')) TO 's3://rask-test/ts/month.parquet';
        COPY (SELECT name, count(*) AS n FROM timeseries('2000-01-01', '2000-01-03', '1min') GROUP BY name) TO 's3://rask-test/counts.csv';
        CREATE EXTERNAL TABLE ts STORED AS PARQUET LOCATION 's3://rask-test/ts/';
        SELECT count(*) AS rows FROM ts;
        SELECT sum(n) AS counted FROM 's3://rask-test/counts.csv';
        SELECT (SELECT sum(id) FROM ts) = (SELECT sum(id) FROM timeseries('2000-01-01', '2000-01-03', '1min')) AS same;
    ";
    let out = run(server.rask().args(["query", "--format", "csv", "-c", sql])).success();
    // 2 days of minutes, read back from Parquet by table and from CSV by path.
    assert_eq!(
        csv_rows(&out.stdout),
        [
            ["count"],
            ["2880"],
            ["count"],
            ["26"],
            ["rows"],
            ["2880"],
            ["counted"],
            ["2880"],
            ["same"],
            ["true"]
        ],
        "{}",
        out.stdout
    );
}

#[test]
fn object_store_failures_are_errors_with_the_location() {
    let server = S3Server::start();
    let out = run(server.rask().args([
        "query",
        "-c",
        "SELECT * FROM 's3://no-such-bucket/data.parquet'",
    ]))
    .failure();
    assert!(out.stderr.starts_with("error: -c:1:"), "{}", out.stderr);
    assert!(out.stderr.contains("no-such-bucket"), "{}", out.stderr);

    let out = run(server.rask().args([
        "query",
        "-c",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://no-such-bucket/x/'",
    ]))
    .failure();
    assert!(out.stderr.contains("no-such-bucket"), "{}", out.stderr);
}
