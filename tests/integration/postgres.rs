//! PostgreSQL clients against `rask serve --pg-port` and `rask scheduler
//! --pg-port`: psql (Debian's `postgresql-client`, which `.ci/run` installs)
//! runs the walkthrough's query and the shared data's queries, whose answers
//! DuckDB computed; errors come back with their SQLSTATE; a client sending
//! garbage, a broken startup packet or a huge message loses only its own
//! connection; psql's `\dt` and `\d` describe the session's tables. Python's
//! psycopg (PyPI, which `.ci/run` installs) binds parameters through the
//! extended protocol, reads results in binary, runs in transactions and
//! cancels a query.

use std::io::{Read, Write};
use std::process::Command;

use crate::processes::{Process, ProcessCluster};
use crate::shared_data::{assert_same_rows, queries};
use crate::support::{rask, repository_root, run, shared_data};

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

/// `rask serve` on a free port with `threads` threads and `env`, its sessions
/// allowed the reference data and nothing else; the port.
fn serve(root: &std::path::Path, threads: &str, env: &[(&str, &str)]) -> (Process, String) {
    let data = shared_data().display().to_string();
    serve_with(root, &["--threads", threads, "--allow-path", &data], env)
}

/// `rask serve --pg-port 0 EXTRA…` with `env`, ended when the test drops it
/// (`--watch-stdin`); the port it listens on.
fn serve_with(root: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> (Process, String) {
    let mut args = vec!["serve", "--pg-port", "0"];
    args.extend(extra);
    args.push("--watch-stdin");
    let server = Process::start("serve", root, &args, env);
    let port = pg_port(&server);
    (server, port)
}

/// `psql` on `port`, quiet, CSV out, with `commands` in one session:
/// (exit code, standard output, standard error).
fn psql(port: &str, commands: &[&str]) -> (i32, String, String) {
    psql_with(port, commands, None, &["-q"])
}

/// [`psql`] giving `password`, with `flags` of its own.
fn psql_with(
    port: &str,
    commands: &[&str],
    password: Option<&str>,
    flags: &[&str],
) -> (i32, String, String) {
    let mut command = Command::new("psql");
    command.env_remove("PGPASSWORD");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.args(["-h", "127.0.0.1", "-p", port, "-U", "rask", "-d", "rask"]);
    command.args(["-X", "-w", "--csv", "-v", "VERBOSITY=verbose"]);
    command.args(flags);
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
        assert_same_rows(
            &ours,
            &theirs,
            &format!("query {n} against DuckDB's answer"),
        );
    }

    // psql's descriptions of the session's tables, from pg_catalog.
    let (code, out, err) = psql(&port, &[&create, "\\dt"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l == "public,ts,table,postgres"),
        "{out}"
    );
    let (code, out, err) = psql(&port, &[&create, "\\d ts"]);
    assert_eq!(code, 0, "{err}");
    for column in ["name,text", "id,bigint", "x,double precision"] {
        assert!(
            out.lines().any(|l| l.starts_with(column)),
            "{column}:\n{out}"
        );
    }
    // What JDBC and BI tools send on connect: PostgreSQL's settings, kept per
    // session, and information_schema.
    let (code, out, err) = psql(
        &port,
        &[
            "SET extra_float_digits = 3",
            "SET application_name = 'PostgreSQL JDBC Driver'",
            "SHOW extra_float_digits",
            "SHOW transaction isolation level",
            "SELECT current_setting('extra_float_digits') AS digits",
            "SELECT table_name FROM information_schema.tables WHERE table_name = 'pg_class'",
            &create,
            "SELECT 'ts'::regclass = oid AS same FROM pg_catalog.pg_class WHERE relname = 'ts'",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "extra_float_digits\n3\ntransaction_isolation\nread committed\ndigits\n3\n\
         table_name\npg_class\nsame\nt\n"
    );
    // What PostgreSQL's JDBC driver asks for its DatabaseMetaData.
    let fixtures = root.join("tests/fixtures/postgres");
    let query = |name: &str| std::fs::read_to_string(fixtures.join(name)).unwrap();
    let people = "CREATE TABLE people AS SELECT 1 AS id, 'Alice' AS name";
    let (code, out, err) = psql(&port, &[people, &query("jdbc_get_tables.sql")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l == ",public,people,TABLE,,,,,,"),
        "{out}"
    );
    let (code, out, err) = psql(&port, &[people, &query("jdbc_get_columns.sql")]);
    assert_eq!(code, 0, "{err}");
    let columns: Vec<(&str, &str)> = out
        .lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            Some((*fields.get(2)?, *fields.get(3)?))
        })
        .collect();
    assert_eq!(columns, [("id", "20"), ("name", "25")], "{out}");
    // A cursor, read a slice at a time.
    let (code, out, err) = psql(
        &port,
        &[
            "BEGIN",
            "DECLARE c CURSOR FOR SELECT n FROM (VALUES (1), (2), (3)) AS t(n) ORDER BY n",
            "FETCH 2 FROM c",
            "FETCH ALL FROM c",
            "CLOSE c",
            "COMMIT",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "n\n1\n2\nn\n3\n"), "{err}");
    let (code, _, err) = psql(&port, &["FETCH 1 FROM nowhere"]);
    assert_ne!(code, 0);
    assert!(err.contains("34000"), "{err}");
    // Not quiet: psql says what it did not find.
    let (code, _, err) = psql_with(&port, &["\\d nowhere"], None, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("Did not find any relation named"), "{err}");

    // Errors carry a SQLSTATE and the position; later statements of the
    // session still run.
    let (code, _, err) = psql(&port, &["SELEC 1"]);
    assert_ne!(code, 0);
    assert!(err.contains("ERROR:  42601"), "{err}");
    let (code, _, err) = psql(&port, &[&create, "SELECT 1,\n  nope FROM ts"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("42703") && err.contains("LINE 2:   nope"),
        "{err}"
    );
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
    assert_closed(&port, &[0xff; 64], &server);
    let (code, out, err) = psql(&port, &["SELECT 1 AS one"]);
    assert_eq!((code, out.as_str()), (0, "one\n1\n"), "{err}");

    // A broken startup packet, and a message claiming 2 GB after a good
    // startup: each closes its own connection only.
    let broken = [0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78];
    assert_closed(&port, &broken, &server);
    let mut startup = Vec::new();
    let body = b"\0\x03\0\0user\0rask\0database\0rask\0\0";
    startup.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
    startup.extend_from_slice(body);
    startup.push(b'Q');
    startup.extend_from_slice(&0x7fff_fff0u32.to_be_bytes());
    assert_closed(&port, &startup, &server);
    let (code, out, err) = psql(&port, &["SELECT 2 AS two"]);
    assert_eq!((code, out.as_str()), (0, "two\n2\n"), "{err}");
}

/// Sends `bytes` on a new connection to `port` and waits for the server to
/// close it and log that it did.
fn assert_closed(port: &str, bytes: &[u8], server: &Process) {
    let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let ours = stream.local_addr().unwrap().to_string();
    stream.write_all(bytes).unwrap();
    let mut rest = Vec::new();
    stream
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
}

/// Python's psycopg (PyPI), through the extended protocol: a prepared
/// statement with parameters, its answer against DuckDB's; results in binary
/// and in text, parameters of every common type, a transaction as psycopg
/// opens one unless in autocommit, its type lookups, two sessions querying at
/// once each with its own table, and a cancelled query.
#[test]
fn psycopg_binds_parameters() {
    let root = repository_root();
    let (_server, port) = serve(&root, "2", &[]);
    let data = shared_data();
    let script = r#"
import sys, threading, time, datetime, decimal, psycopg
from psycopg.types import TypeInfo
port, location = sys.argv[1], sys.argv[2]
url = f"host=127.0.0.1 port={port} user=rask dbname=rask"
with psycopg.connect(url, autocommit=True) as conn:
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

    typed = ("SELECT CAST(1 AS INT) AS i, CAST(2 AS BIGINT) AS b, CAST(1.5 AS DOUBLE) AS f, "
             "'hé' AS t, true AS yes, DATE '2000-01-02' AS d, "
             "TIMESTAMP '2000-01-01 10:00:00.25' AS ts, CAST(12.34 AS DECIMAL(10, 2)) AS n, "
             "CAST(NULL AS INT) AS nothing")
    for binary in (True, False):
        with conn.cursor(binary=binary) as cur:
            print(f"binary={binary},{cur.execute(typed).fetchone()!r}")
    params = (decimal.Decimal("1.25"), datetime.date(2000, 1, 2),
              datetime.datetime(2000, 1, 1, 10, 0, 0), True, "hé")
    casts = ("DECIMAL(10, 2)", "DATE", "TIMESTAMP", "BOOLEAN", "TEXT")
    for placeholder in ("%s", "%b"):
        sql = "SELECT " + ", ".join(f"CAST({placeholder} AS {cast})" for cast in casts)
        print(f"params {placeholder},{conn.execute(sql, params).fetchone()!r}")
    print(f"typeinfo,{TypeInfo.fetch(conn, 'numeric').oid}")

with psycopg.connect(url) as conn:
    conn.execute("CREATE TABLE t AS SELECT 1 AS one")
    print(f"in transaction,{conn.execute('SELECT one FROM t').fetchone()[0]},{conn.info.transaction_status.name}")
    cur = conn.execute("INSERT INTO t VALUES (2), (3)")
    print(f"insert,{cur.statusmessage},{cur.rowcount}")
    with conn.cursor(name="big") as big:
        big.itersize = 1000
        big.execute("SELECT id FROM timeseries() WHERE x > %s LIMIT 5000", (0.0,))
        print(f"named cursor,{sum(1 for _ in big)}")
    conn.commit()
    print(f"after commit,{conn.info.transaction_status.name}")

sessions = [psycopg.connect(url, autocommit=True) for _ in range(2)]
for who, conn in zip("ab", sessions):
    conn.execute(f"CREATE TABLE mine AS SELECT '{who}' AS who")
seen = {}
def ask(who, conn):
    seen[who] = conn.execute(
        "SELECT who FROM mine WHERE (SELECT sum(x) FROM timeseries('2000-01-01', '2000-01-08')) IS NOT NULL"
    ).fetchone()[0]
askers = [threading.Thread(target=ask, args=(w, c)) for w, c in zip("ab", sessions)]
for t in askers:
    t.start()
for t in askers:
    t.join()
print(f"sessions,{seen['a']},{seen['b']}")
for conn in sessions:
    conn.close()

with psycopg.connect(url, autocommit=True) as conn:
    outcome = {}
    def long_query():
        try:
            conn.execute("SELECT sum(x) FROM timeseries('2000-01-01', '2040-01-01')").fetchone()
            outcome["query"] = "finished"
        except psycopg.errors.QueryCanceled as e:
            outcome["query"] = f"cancelled {e.sqlstate}"
    worker = threading.Thread(target=long_query)
    worker.start()
    while worker.is_alive():
        time.sleep(0.5)
        conn.cancel_safe()
    worker.join()
    print(f"cancel,{outcome['query']},{conn.execute('SELECT 7').fetchone()[0]}")
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
    let rest: Vec<&str> = lines[theirs.len()..].to_vec();
    let values = "(1, 2, 1.5, 'hé', True, datetime.date(2000, 1, 2), \
                  datetime.datetime(2000, 1, 1, 10, 0, 0, 250000), Decimal('12.34'), None)";
    let params = "(Decimal('1.25'), datetime.date(2000, 1, 2), \
                  datetime.datetime(2000, 1, 1, 10, 0), True, 'hé')";
    assert_eq!(
        rest,
        [
            "answer,42".to_string(),
            "error,42P01".to_string(),
            format!("binary=True,{values}"),
            format!("binary=False,{values}"),
            format!("params %s,{params}"),
            format!("params %b,{params}"),
            "typeinfo,1700".to_string(),
            "in transaction,1,INTRANS".to_string(),
            "insert,INSERT 0 2,2".to_string(),
            "named cursor,5000".to_string(),
            "after commit,IDLE".to_string(),
            "sessions,a,b".to_string(),
            "cancel,cancelled 57014,7".to_string(),
        ],
        "{stdout}"
    );
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
    // Catalog queries and pg_catalog's functions run in the scheduler's session.
    let (code, out, err) = psql(
        &port,
        &[
            "CREATE TABLE mine AS SELECT 1 AS n",
            "\\dt",
            "SELECT current_database() AS db",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("public,mine,table,postgres\n"), "{out}");
    assert!(out.ends_with("db\ndatafusion\n"), "{out}");
}

/// With a cluster token, the token is the password: without it, no session.
#[test]
fn a_cluster_token_is_the_password() {
    let root = repository_root();
    let (_server, port) = serve(&root, "1", &[("RASK_AUTH_TOKEN", "sesame")]);
    let (code, _, err) = psql_with(&port, &["SELECT 1"], None, &["-q"]);
    assert_ne!(code, 0, "no password, no session");
    assert!(err.contains("password"), "{err}");
    let (code, _, err) = psql_with(&port, &["SELECT 1"], Some("wrong"), &["-q"]);
    assert_ne!(code, 0, "{err}");
    let (code, out, err) = psql_with(&port, &["SELECT 1 AS one"], Some("sesame"), &["-q"]);
    assert_eq!((code, out.as_str()), (0, "one\n1\n"), "{err}");
}

/// Each `(user, password, require_auth)` login tried with psycopg against
/// `port`: `ok`, or the SQLSTATE (or message) it failed with.
fn psycopg_logins(port: &str, logins: &[(&str, &str, &str)]) -> Vec<String> {
    let script = r#"
import sys, psycopg
port = sys.argv[1]
for login in sys.argv[2:]:
    user, password, require = login.split(":")
    url = f"host=127.0.0.1 port={port} user={user} password={password} dbname=rask require_auth={require}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            (one,) = conn.execute("SELECT 1").fetchone()
            print("ok" if one == 1 else "wrong")
    except psycopg.Error as e:
        print(e.sqlstate or str(e).splitlines()[0])
"#;
    let args: Vec<String> = logins
        .iter()
        .map(|(u, p, r)| format!("{u}:{p}:{r}"))
        .collect();
    let out = Command::new("python3")
        .args(["-c", script, port])
        .args(&args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn logins_go_by_scram_never_in_clear() {
    let root = repository_root();
    // The cluster's token, by SCRAM, for any user name.
    let (server, port) = serve(&root, "1", &[("RASK_AUTH_TOKEN", "sesame")]);
    server.wait_for("SCRAM-SHA-256, the cluster's token as password");
    let answers = psycopg_logins(
        &port,
        &[
            ("rask", "sesame", "scram-sha-256"),
            ("anyone", "sesame", "scram-sha-256"),
            ("rask", "wrong", "scram-sha-256"),
            // A client that insists on a password in clear is not given the chance.
            ("rask", "sesame", "password"),
            ("rask", "sesame", "scram-sha-256"),
        ],
    );
    assert_eq!(answers[..2], ["ok", "ok"], "{answers:?}");
    assert!(answers[2].contains("authentication failed"), "{answers:?}");
    assert_ne!(answers[3], "ok", "{answers:?}");
    assert_eq!(answers[4], "ok", "the server lives on: {answers:?}");

    // PostgreSQL users of their own: the token is not a password then.
    let (_users, port) = serve_with(
        &root,
        &[
            "--threads",
            "1",
            "--pg-user",
            "alice:wonder",
            "--pg-user",
            "bob:builder",
        ],
        &[("RASK_AUTH_TOKEN", "sesame")],
    );
    let answers = psycopg_logins(
        &port,
        &[
            ("alice", "wonder", "scram-sha-256"),
            ("bob", "builder", "scram-sha-256"),
            ("alice", "builder", "scram-sha-256"),
            ("carol", "wonder", "scram-sha-256"),
            ("rask", "sesame", "scram-sha-256"),
        ],
    );
    assert_eq!(answers[..2], ["ok", "ok"], "{answers:?}");
    for refused in &answers[2..] {
        assert!(refused.contains("authentication failed"), "{answers:?}");
    }
    // On the wire: SASL offered (SCRAM-SHA-256), a wrong proof answered with
    // SQLSTATE 28P01.
    assert_eq!(
        wrong_scram_proof(&port),
        ("SCRAM-SHA-256".to_string(), "28P01".to_string())
    );
    let bad = run(rask().args(["serve", "--pg-port", "0", "--pg-user", "nopassword"]));
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("is not NAME:PASSWORD"),
        "{}",
        bad.stderr
    );
}

/// Logs in to `port` as alice with a SCRAM proof that cannot be right, by
/// hand: the mechanism the server offered first, and the SQLSTATE it answered.
fn wrong_scram_proof(port: &str) -> (String, String) {
    use std::net::TcpStream;
    let mut socket = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connects");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a timeout");
    // StartupMessage: protocol 3.0, user and database.
    let mut body = 196608u32.to_be_bytes().to_vec();
    for part in ["user", "alice", "database", "rask", ""] {
        body.extend(part.as_bytes());
        body.push(0);
    }
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend(body);
    socket.write_all(&startup).expect("writes");
    let read = |socket: &mut TcpStream| -> (u8, Vec<u8>) {
        let mut head = [0u8; 5];
        socket.read_exact(&mut head).expect("a message");
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        socket.read_exact(&mut body).expect("its body");
        (head[0], body)
    };
    let send = |socket: &mut TcpStream, body: Vec<u8>| {
        let mut message = vec![b'p'];
        message.extend(((body.len() + 4) as u32).to_be_bytes());
        message.extend(body);
        socket.write_all(&message).expect("writes");
    };
    // AuthenticationSASL (10) with the mechanisms.
    let (kind, body) = read(&mut socket);
    assert_eq!(kind, b'R');
    assert_eq!(body[..4], 10u32.to_be_bytes(), "not SASL: {body:?}");
    let mechanism = String::from_utf8_lossy(&body[4..])
        .split('\0')
        .next()
        .unwrap_or_default()
        .to_string();
    // SASLInitialResponse: client-first-message.
    let client_first = "n,,n=,r=abcdefghijklmnopqrstuvwx";
    let mut initial = b"SCRAM-SHA-256\0".to_vec();
    initial.extend((client_first.len() as u32).to_be_bytes());
    initial.extend(client_first.as_bytes());
    send(&mut socket, initial);
    // AuthenticationSASLContinue (11): server-first-message with the nonce.
    let (kind, body) = read(&mut socket);
    assert_eq!((kind, &body[..4]), (b'R', &11u32.to_be_bytes()[..]));
    let server_first = String::from_utf8_lossy(&body[4..]).to_string();
    let nonce = server_first
        .split(',')
        .find_map(|f| f.strip_prefix("r="))
        .expect("a nonce");
    // SASLResponse: a proof of 32 zero bytes, in base64.
    let proof = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    send(
        &mut socket,
        format!("c=biws,r={nonce},p={proof}").into_bytes(),
    );
    let (kind, body) = read(&mut socket);
    assert_eq!(kind, b'E', "{:?}", String::from_utf8_lossy(&body));
    let code = body
        .split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).to_string())
        .unwrap_or_default();
    (mechanism, code)
}

#[test]
fn sql_sessions_touch_only_the_paths_they_are_allowed() {
    let root = repository_root();
    let (_server, port) = serve(&root, "1", &[]);
    let outside = tempfile::tempdir().expect("a temporary folder");
    let stolen = outside.path().join("stolen.csv");
    let link = outside.path().join("link-to-etc");
    std::os::unix::fs::symlink("/etc", &link).expect("a link");
    let data = shared_data().canonicalize().expect("the data");
    // A table read by its path is refused before planning opens it.
    let secret = outside.path().join("secret.csv");
    std::fs::write(&secret, "password\nhunter2\n").expect("a file");
    for (sql, named) in [
        (
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'".to_string(),
            "/etc/passwd".to_string(),
        ),
        (
            "SELECT * FROM '/etc/passwd'".to_string(),
            "/etc/passwd".to_string(),
        ),
        (
            format!("SELECT * FROM '{}'", secret.display()),
            "secret.csv".to_string(),
        ),
        (
            format!("COPY (SELECT 1 AS one) TO '{}'", stolen.display()),
            stolen.display().to_string(),
        ),
        (
            format!(
                "CREATE EXTERNAL TABLE q STORED AS CSV LOCATION '{}/passwd'",
                link.display()
            ),
            "passwd".to_string(),
        ),
        (
            format!(
                "COPY (SELECT 1 AS one) TO '{}/../escape.csv'",
                data.display()
            ),
            "escape.csv".to_string(),
        ),
        (
            "CREATE EXTERNAL TABLE r STORED AS CSV LOCATION 'http://169.254.169.254/latest/'"
                .to_string(),
            "169.254.169.254".to_string(),
        ),
    ] {
        let (code, _, err) = psql(&port, &[&sql]);
        assert_ne!(code, 0, "{sql} was let through");
        assert!(err.contains("42501"), "{sql}: {err}");
        assert!(err.contains(&named), "{sql}: {err}");
        assert!(err.contains("--allow-"), "{sql}: {err}");
    }
    assert!(!stolen.exists());
    // What is allowed is served.
    let create = format!(
        "CREATE EXTERNAL TABLE ts STORED AS PARQUET LOCATION '{}'",
        data.join("timeseries-2days/").display()
    );
    let (code, out, err) = psql(&port, &[&create, "SELECT count(*) > 0 AS some FROM ts"]);
    assert_eq!((code, out.as_str()), (0, "some\nt\n"), "{err}");
}

#[test]
fn a_statement_past_its_statement_timeout_is_cancelled() {
    let root = repository_root();
    let (_server, port) = serve(&root, "2", &[]);
    let long =
        "SELECT name, count(DISTINCT x) FROM timeseries('2000-01-01', '2001-01-01') GROUP BY name";
    let (code, _, err) = psql(&port, &["SET statement_timeout = 200", long]);
    assert_ne!(code, 0, "the statement ran to its end");
    assert!(err.contains("57014"), "{err}");
    assert!(err.contains("statement timeout"), "{err}");
    // A session with no timeout runs as before; so does a short statement with one.
    let (code, out, err) = psql(
        &port,
        &["SET statement_timeout = '10s'", "SELECT 41 + 1 AS a"],
    );
    assert_eq!((code, out.as_str()), (0, "a\n42\n"), "{err}");
}

/// A logged-in connection to `port`, as a driver makes one (trusted login),
/// once one is let in (connections that just ended may still hold a place).
fn logged_in(port: &str) -> std::net::TcpStream {
    for _ in 0..50 {
        let mut stream = connect(port);
        if answers_ok(&mut stream) {
            return stream;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("not let in");
}

/// Whether the server answers `stream`'s startup with `ReadyForQuery`.
fn answers_ok(stream: &mut std::net::TcpStream) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answers(stream)))
        .is_ok_and(|(kinds, _)| !kinds.contains('E'))
}

/// A connection to `port` with the startup message sent.
fn connect(port: &str) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0rask\0database\0rask\0\0");
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    stream.write_all(&startup).unwrap();
    stream
}

/// The types of the messages the server sends up to `ReadyForQuery`, with
/// the bodies of its data rows.
fn answers(stream: &mut std::net::TcpStream) -> (String, Vec<Vec<u8>>) {
    let (mut kinds, mut rows) = (String::new(), Vec::new());
    loop {
        let mut head = [0u8; 5];
        if let Err(e) = stream.read_exact(&mut head) {
            kinds.push('!');
            assert!(kinds.contains('E'), "no answer ({e}) after {kinds}");
            return (kinds, rows);
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        stream.read_exact(&mut body).expect("its body");
        kinds.push(head[0] as char);
        if head[0] == b'D' {
            rows.push(body);
        }
        if head[0] == b'Z' {
            return (kinds, rows);
        }
    }
}

/// A frontend message: its type, then its body with its length.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// PostgreSQL's limits: an Execute's `max_rows` suspends the portal after so
/// many rows; cursors of an autocommit statement close with it unless
/// declared WITH HOLD (and one outside a transaction block is refused, 25P01);
/// past `--pg-max-connections` a connection is told "too many clients"
/// (53300) and the others carry on.
#[test]
fn postgres_limits_rows_cursors_and_connections() {
    let root = repository_root();
    let (_server, port) = serve_with(&root, &["--threads", "1", "--pg-max-connections", "2"], &[]);

    // max_rows: 2, 2, then the last one.
    let mut stream = logged_in(&port);
    let mut parse = b"\0SELECT n FROM generate_series(1, 5) AS t(n)\0".to_vec();
    parse.extend_from_slice(&0u16.to_be_bytes());
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let execute =
        |max_rows: u32| message(b'E', &[b"\0".as_slice(), &max_rows.to_be_bytes()].concat());
    let mut sent = message(b'P', &parse);
    sent.extend(message(b'B', &bind));
    sent.extend(execute(2));
    sent.extend(execute(2));
    sent.extend(execute(0));
    sent.extend(message(b'S', &[]));
    stream.write_all(&sent).unwrap();
    let (kinds, rows) = answers(&mut stream);
    assert_eq!(kinds, "12DDsDDsDCZ", "{rows:?}");
    let last = rows.last().expect("rows");
    assert!(last.ends_with(b"5"), "{last:?}");
    // Billions of rows asked for (a negative count reads as billions) made
    // the server allocate room for them all and abort; now all five come.
    for max_rows in [i32::MAX as u32, u32::MAX] {
        let mut sent = message(b'B', &bind);
        sent.extend(execute(max_rows));
        sent.extend(message(b'S', &[]));
        stream.write_all(&sent).unwrap();
        let (kinds, rows) = answers(&mut stream);
        assert_eq!(kinds, "2DDDDDCZ", "max_rows {max_rows}: {rows:?}");
    }

    // Cursors and transactions.
    let (code, _, err) = psql(&port, &["DECLARE c CURSOR FOR SELECT 1 AS a"]);
    assert_ne!(code, 0);
    assert!(err.contains("25P01"), "{err}");
    let (_, out, err) = psql(
        &port,
        &[
            "DECLARE c CURSOR FOR SELECT 1 AS a; FETCH ALL FROM c",
            "FETCH ALL FROM c",
            "DECLARE h CURSOR WITH HOLD FOR SELECT 2 AS b",
            "FETCH ALL FROM h",
        ],
    );
    assert!(out.contains("a\n1\n"), "{out}");
    assert!(
        err.contains("34000"),
        "the autocommit cursor is closed: {err}"
    );
    assert!(out.contains("b\n2\n"), "the held cursor lives on: {out}");

    // Connections: two are in; a third is turned away, and gets in once one leaves.
    let other = logged_in(&port);
    let (code, _, err) = psql(&port, &["SELECT 1"]);
    assert_ne!(code, 0);
    assert!(err.contains("too many clients"), "{err}");
    drop(other);
    let mut retried = (1, String::new(), String::new());
    for _ in 0..50 {
        retried = psql(&port, &["SELECT 41 + 1 AS n"]);
        if retried.0 == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(retried.1, "n\n42\n", "{}", retried.2);
    drop(stream);
}

/// With the cluster's TLS files, the PostgreSQL port speaks TLS (psql checks
/// the certificate against the authority) and refuses connections without it.
#[test]
fn postgres_speaks_tls_with_the_clusters_certificate() {
    let root = repository_root();
    let (cert, key, ca) = crate::support::tls_files();
    let (_server, port) = serve_with(
        &root,
        &[
            "--threads",
            "1",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
        ],
        &[],
    );
    let verified = format!("sslmode=verify-full sslrootcert={ca}");
    let (code, out, err) = psql_with(
        &port,
        &["SELECT ssl FROM (SELECT true AS ssl) t"],
        None,
        &["-q", "-d", &format!("dbname=rask {verified}")],
    );
    assert_eq!((code, out.as_str()), (0, "ssl\nt\n"), "{err}");
    let (code, _, err) = psql_with(
        &port,
        &["SELECT 1"],
        None,
        &["-q", "-d", "dbname=rask sslmode=disable"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("only TLS"), "{err}");
}

/// A users file holds verifiers, never passwords: `rask pg-verifier` makes
/// its lines; psycopg logs in by SCRAM against them, a wrong password gets
/// 28P01, and a line that is not a verifier stops the server with its line.
#[test]
fn a_users_file_of_scram_verifiers_lets_its_users_in() {
    let root = repository_root();
    let dir = tempfile::tempdir().expect("a folder");
    let file = dir.path().join("users");
    let line = crate::support::run_with_input(rask().args(["pg-verifier", "dora"]), "explorer\n")
        .success()
        .stdout;
    assert!(line.starts_with("dora:SCRAM-SHA-256$4096:"), "{line}");
    assert!(!line.contains("explorer"), "{line}");
    std::fs::write(&file, format!("# who may log in\n{line}")).expect("a file");
    let users = file.display().to_string();
    let (_server, port) = serve_with(&root, &["--threads", "1", "--pg-users-file", &users], &[]);
    let answers = psycopg_logins(
        &port,
        &[
            ("dora", "explorer", "scram-sha-256"),
            ("dora", "wrong", "scram-sha-256"),
            ("rask", "explorer", "scram-sha-256"),
            ("dora", "explorer", "scram-sha-256"),
        ],
    );
    assert_eq!(answers[0], "ok", "{answers:?}");
    assert!(answers[1].contains("authentication failed"), "{answers:?}");
    assert!(answers[2].contains("authentication failed"), "{answers:?}");
    assert_eq!(answers[3], "ok", "{answers:?}");
    std::fs::write(&file, "dora:md5abcdef\n").expect("a file");
    let bad = run(rask().args(["serve", "--pg-port", "0", "--pg-users-file", &users]));
    assert_ne!(bad.code, Some(0));
    assert!(
        bad.stderr.contains("users:1: not a SCRAM-SHA-256 verifier"),
        "{}",
        bad.stderr
    );
}

/// The resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    crate::processes::status_kib(pid, "VmRSS") >> 10
}

/// A connection that ran a statement leaves nothing behind when it closes:
/// `pg_catalog` and the session's catalog held each other, so every such
/// connection kept its session (about 5 MiB) for good (found by rask-fuzz).
#[test]
fn closed_sessions_leave_nothing_behind() {
    let root = repository_root();
    let (server, port) = serve(&root, "1", &[]);
    let run_one = || {
        let mut stream = logged_in(&port);
        stream.write_all(&message(b'Q', b"SELECT 1\0")).unwrap();
        let (kinds, _) = answers(&mut stream);
        assert_eq!(kinds, "TDCZ");
    };
    // Warm up: the first sessions grow the allocator's pools.
    for _ in 0..20 {
        run_one();
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = rss_mib(server.pid());
    for _ in 0..150 {
        run_one();
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = rss_mib(server.pid());
    assert!(
        after < before + 150,
        "150 closed sessions grew the server from {before} to {after} MiB"
    );
}
