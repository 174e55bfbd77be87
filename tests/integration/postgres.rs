//! PostgreSQL clients against `rask serve --pg-port` and `rask scheduler
//! --pg-port`: psql (Debian's `postgresql-client`, which `.ci/run` installs)
//! runs the walkthrough's query and the shared data's queries, whose answers
//! DuckDB computed; errors come back with their SQLSTATE; a client sending
//! garbage loses only its own connection. Python's psycopg (PyPI, which
//! `.ci/run` installs) binds parameters through the extended protocol.

use std::io::{Read, Write};
use std::process::Command;

use crate::processes::{Process, ProcessCluster};
use crate::shared_data::{queries, same_value};
use crate::support::{repository_root, shared_data};

/// The port the protocol is served on, as `process` logged it.
fn pg_port(process: &Process) -> String {
    let line = process.wait_for("postgres wire protocol at ");
    let address = line
        .rsplit("postgres wire protocol at ")
        .next()
        .unwrap_or_default();
    let address = address.split_whitespace().next().unwrap_or_default();
    address.rsplit(':').next().unwrap_or_default().to_string()
}

/// `rask serve` on a free port with `threads` threads and `env`; the port.
fn serve(root: &std::path::Path, threads: &str, env: &[(&str, &str)]) -> (Process, String) {
    let args = [
        "serve",
        "--pg-port",
        "0",
        "--threads",
        threads,
        "--watch-stdin",
    ];
    let server = Process::start("serve", root, &args, env);
    let port = pg_port(&server);
    (server, port)
}

/// `psql` on `port`, quiet, CSV out, with `commands` in one session:
/// (exit code, standard output, standard error).
fn psql(port: &str, commands: &[&str]) -> (i32, String, String) {
    psql_with(port, commands, None)
}

/// [`psql`] giving `password`.
fn psql_with(port: &str, commands: &[&str], password: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new("psql");
    command.env_remove("PGPASSWORD");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.args(["-h", "127.0.0.1", "-p", port, "-U", "rask", "-d", "rask"]);
    command.args(["-X", "-w", "-q", "--csv", "-v", "VERBOSITY=verbose"]);
    for c in commands {
        command.args(["-c", c]);
    }
    let out = command
        .output()
        .expect("psql runs (the tests need Debian's postgresql-client)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn psql_runs_sql_on_rask_serve() {
    let root = repository_root();
    let (server, port) = serve(&root, "2", &[]);

    // The issue's command: the walkthrough's groupby.
    let (code, out, err) = psql(
        &port,
        &["SELECT name, max(x), avg(y) FROM timeseries() GROUP BY name ORDER BY name"],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 27, "a header and 26 names:\n{out}");
    assert!(lines[1].starts_with("Alice,0.99"), "{out}");

    // The shared data's queries, against DuckDB's answers.
    let data = shared_data();
    let create = format!(
        "CREATE EXTERNAL TABLE ts STORED AS PARQUET LOCATION '{}'",
        data.join("timeseries-2days/").display()
    );
    let text = std::fs::read_to_string(data.join("queries.sql")).unwrap();
    for (n, sql) in queries(&text) {
        let (code, out, err) = psql(&port, &[&create, &sql]);
        assert_eq!(code, 0, "query {n}: {err}");
        let expected = std::fs::read_to_string(data.join(format!("expected/{n}.csv"))).unwrap();
        let ours: Vec<&str> = out.lines().collect();
        let theirs: Vec<&str> = expected.lines().collect();
        assert_eq!(ours.len(), theirs.len(), "query {n}:\n{out}");
        assert_eq!(ours[0], theirs[0], "query {n}: column names");
        for (a, b) in ours.iter().zip(&theirs).skip(1) {
            for (x, y) in a.split(',').zip(b.split(',')) {
                assert!(same_value(x, y), "query {n}: rask {a:?}, DuckDB {b:?}");
            }
        }
    }

    // Errors carry a SQLSTATE; later statements of the session still run.
    let (code, _, err) = psql(&port, &["SELEC 1"]);
    assert_ne!(code, 0);
    assert!(err.contains("ERROR:  42601"), "{err}");
    let (code, _, err) = psql(&port, &["SELECT * FROM nowhere"]);
    assert_ne!(code, 0);
    assert!(err.contains("42P01") && err.contains("nowhere"), "{err}");

    // Each connection has its own tables.
    let (code, out, err) = psql(
        &port,
        &[
            "CREATE TABLE mine AS SELECT 41 + 1 AS n",
            "SELECT n FROM mine",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "n\n42\n"), "{err}");
    let (code, _, err) = psql(&port, &["SELECT n FROM mine"]);
    assert_ne!(code, 0, "another session does not see it: {err}");

    // Garbage closes that connection only.
    let mut garbage = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    garbage
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let ours = garbage.local_addr().unwrap().to_string();
    garbage.write_all(&[0xff; 64]).unwrap();
    let mut rest = Vec::new();
    garbage
        .read_to_end(&mut rest)
        .expect("the server closes the connection");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !server
        .log()
        .iter()
        .any(|l| l.contains("connection closed") && l.contains(&ours))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line for {ours}: {:?}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, out, err) = psql(&port, &["SELECT 1 AS one"]);
    assert_eq!((code, out.as_str()), (0, "one\n1\n"), "{err}");
}

/// Python's psycopg (PyPI), through the extended protocol: a prepared
/// statement with parameters, its answer against DuckDB's.
#[test]
fn psycopg_binds_parameters() {
    let root = repository_root();
    let (_server, port) = serve(&root, "2", &[]);
    let data = shared_data();
    let script = r#"
import sys, psycopg
port, location = sys.argv[1], sys.argv[2]
with psycopg.connect(f"host=127.0.0.1 port={port} user=rask dbname=rask", autocommit=True) as conn:
    conn.execute(f"CREATE EXTERNAL TABLE ts STORED AS PARQUET LOCATION '{location}'")
    rows = conn.execute(
        "SELECT name, count(*) AS n FROM ts WHERE x > %s GROUP BY name ORDER BY name", (0.0,)
    ).fetchall()
    print("name,n")
    for name, n in rows:
        print(f"{name},{n}")
    (answer,) = conn.execute("SELECT %s::bigint + %s::bigint AS a", (40, 2)).fetchone()
    print(f"answer,{answer}")
    try:
        conn.execute("SELECT * FROM nowhere WHERE x = %s", (1,))
    except psycopg.Error as e:
        print(f"error,{e.sqlstate}")
"#;
    let location = data.join("timeseries-2days/").display().to_string();
    let out = Command::new("python3")
        .args(["-c", script, &port, &location])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read_to_string(data.join("expected/2.csv")).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let theirs: Vec<&str> = expected.lines().collect();
    assert_eq!(
        &lines[..theirs.len()],
        &theirs[..],
        "query 2 through psycopg"
    );
    assert_eq!(lines[theirs.len()], "answer,42");
    assert_eq!(lines[theirs.len() + 1], "error,42P01");
}

#[test]
fn psql_runs_sql_on_a_cluster_of_processes() {
    let root = repository_root();
    let cluster = ProcessCluster::start_with(&root, 2, 1, &[], &["--pg-port", "0"], &[]);
    let port = pg_port(&cluster.scheduler);
    let (code, out, err) = psql(&port, &["SELECT 1 AS one"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "one\n1\n"),
        "trusted without a token: {err}"
    );
    let (code, out, err) = psql(
        &port,
        &["SELECT name, count(*) AS n FROM timeseries() GROUP BY name ORDER BY name"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 27, "{out}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("Alice,")),
        "{out}"
    );
}

/// With a cluster token, the token is the password: without it, no session.
#[test]
fn a_cluster_token_is_the_password() {
    let root = repository_root();
    let (_server, port) = serve(&root, "1", &[("RASK_AUTH_TOKEN", "sesame")]);
    let (code, _, err) = psql_with(&port, &["SELECT 1"], None);
    assert_ne!(code, 0, "no password, no session");
    assert!(err.contains("password"), "{err}");
    let (code, _, err) = psql_with(&port, &["SELECT 1"], Some("wrong"));
    assert_ne!(code, 0, "{err}");
    let (code, out, err) = psql_with(&port, &["SELECT 1 AS one"], Some("sesame"));
    assert_eq!((code, out.as_str()), (0, "one\n1\n"), "{err}");
}
