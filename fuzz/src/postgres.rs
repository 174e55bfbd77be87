//! The PostgreSQL server fuzzed over a socket: a `rask serve`-style server
//! in this process, on a free port of 127.0.0.1, and a connection that sends
//! it mutated frontend messages.
//!
//! An input is a list of messages in a framing of our own (a type byte, a
//! 16-bit little-endian body length, the body) that the driver turns into
//! wire messages with correct lengths, so that most inputs reach the
//! handlers; one in 256 goes out raw, wrong lengths and all. Each input is
//! followed by `Sync` and an empty query, whose answer (`I`, then `Z`) says
//! the server is done with it. A connection the server closes (it should,
//! on garbage) is opened again; a server that no longer accepts is a crash.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rask::internals::fuzzing::Target;

/// How long an answer may take before the connection counts as stuck.
const PATIENCE: Duration = Duration::from_millis(300);

/// The server, and our connection to it.
pub struct Postgres {
    address: SocketAddr,
    connection: Option<TcpStream>,
    _client: rask::Client,
    _runtime: tokio::runtime::Runtime,
    /// Connections the server closed, and inputs left unanswered.
    pub closed: u64,
    pub stuck: u64,
}

impl Postgres {
    /// Starts the server: trusted logins on loopback, no file access.
    pub fn new() -> rask::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| rask::Error::Comm(e.to_string()))?;
        let config = rask::Config {
            threads: 1,
            dashboard: None,
            ..rask::Config::default()
        };
        let client = {
            let _entered = runtime.enter();
            rask::Client::with_config(config)?
        };
        let cluster = client
            .local_cluster()
            .cloned()
            .ok_or_else(|| rask::Error::Config("no local cluster".into()))?;
        let open: rask::internals::postgres::OpenSession = Arc::new(move || {
            let cluster = Arc::clone(&cluster);
            Box::pin(async move { cluster.client() })
        });
        let server = runtime.block_on(rask::internals::postgres::Server::bind(
            "127.0.0.1",
            0,
            64,
            &rask::internals::net::Security::default(),
            rask::internals::postgres::Logins::Trust,
            rask::internals::postgres::Access::new(&[], &[])?,
        ))?;
        let address = server.address()?;
        runtime.spawn(server.serve(open));
        Ok(Self {
            address,
            connection: None,
            _client: client,
            _runtime: runtime,
            closed: 0,
            stuck: 0,
        })
    }

    /// A logged-in connection; panics when the server accepts none (a crash).
    fn connect(&self) -> TcpStream {
        let mut last = String::new();
        for _ in 0..50 {
            match self.try_connect() {
                Ok(stream) => return stream,
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the PostgreSQL server no longer lets anyone in: {last}");
    }

    fn try_connect(&self) -> std::io::Result<TcpStream> {
        let mut stream = TcpStream::connect(self.address)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.set_nodelay(true)?;
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes());
        for (k, v) in [
            ("user", "fuzz"),
            ("database", "rask"),
            ("statement_timeout", "200"),
        ] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        stream.write_all(&startup)?;
        read_until_ready(&mut stream, false)?;
        // Bounds what one input may run for (a mutated range can ask for
        // billions of rows); an empty query after it marks the answer's end.
        stream.write_all(b"Q\0\0\0\x20SET statement_timeout = 200\0Q\0\0\0\x05\0")?;
        read_until_ready(&mut stream, true)?;
        Ok(stream)
    }
}

/// Reads answers up to `Z` (ready for query) — after an `I` (the empty
/// query's answer) when `after_empty`.
fn read_until_ready(stream: &mut TcpStream, after_empty: bool) -> std::io::Result<()> {
    let mut seen_empty = !after_empty;
    loop {
        let mut head = [0u8; 5];
        stream.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4).min(64 << 20)];
        stream.read_exact(&mut body)?;
        match head[0] {
            b'I' => seen_empty = true,
            b'Z' if seen_empty => return Ok(()),
            _ => {}
        }
    }
}

/// One message in our framing: type, body length (u16 LE), body.
fn framed(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Our framing turned into wire messages with their lengths.
fn to_wire(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = input;
    while let [kind, a, b, tail @ ..] = rest {
        let len = (u16::from_le_bytes([*a, *b]) as usize).min(tail.len());
        out.push(*kind);
        out.extend_from_slice(&((len + 4) as u32).to_be_bytes());
        out.extend_from_slice(&tail[..len]);
        rest = &tail[len..];
    }
    out
}

/// `input` with every `statement_timeout` (any case) made `application_name`
/// (of the same length, so framing lengths stay right).
fn neutralised(input: &[u8]) -> Vec<u8> {
    const NAME: &[u8] = b"statement_timeout";
    const OTHER: &[u8] = b"application_namex";
    let mut out = input.to_vec();
    let mut i = 0;
    while i + NAME.len() <= out.len() {
        if out[i..i + NAME.len()].eq_ignore_ascii_case(NAME) {
            out[i..i + NAME.len()].copy_from_slice(OTHER);
            i += NAME.len();
        } else {
            i += 1;
        }
    }
    out
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

impl Target for Postgres {
    fn seeds(&self) -> Vec<Vec<u8>> {
        let query = |sql: &str| framed(b'Q', &cstr(sql));
        let parse = {
            let mut body = cstr("s1");
            body.extend(cstr("SELECT $1::INT + 1 AS n, $2::TEXT AS t"));
            body.extend_from_slice(&2u16.to_be_bytes());
            body.extend_from_slice(&23u32.to_be_bytes());
            body.extend_from_slice(&25u32.to_be_bytes());
            framed(b'P', &body)
        };
        let bind = {
            let mut body = cstr("");
            body.extend(cstr("s1"));
            body.extend_from_slice(&1u16.to_be_bytes());
            body.extend_from_slice(&0u16.to_be_bytes());
            body.extend_from_slice(&2u16.to_be_bytes());
            for value in [&b"41"[..], b"hi"] {
                body.extend_from_slice(&(value.len() as u32).to_be_bytes());
                body.extend_from_slice(value);
            }
            body.extend_from_slice(&1u16.to_be_bytes());
            body.extend_from_slice(&1u16.to_be_bytes());
            framed(b'B', &body)
        };
        let describe = framed(b'D', &[b"P".as_slice(), &cstr("")].concat());
        let execute = framed(b'E', &[cstr(""), 2u32.to_be_bytes().to_vec()].concat());
        let close = framed(b'C', &[b"S".as_slice(), &cstr("s1")].concat());
        let sync = framed(b'S', &[]);
        let flush = framed(b'H', &[]);
        vec![
            query("SELECT 1"),
            query(
                "SELECT name, count(*) FROM timeseries('2000-01-01', '2000-01-01 01:00:00') GROUP BY name",
            ),
            query(
                "BEGIN; DECLARE c CURSOR FOR SELECT * FROM generate_series(1, 10); FETCH 2 FROM c; CLOSE c; COMMIT",
            ),
            query("SET application_name = 'fuzz'; SHOW application_name"),
            query("SELECT * FROM pg_catalog.pg_type LIMIT 3"),
            [
                parse.clone(),
                bind.clone(),
                describe.clone(),
                execute.clone(),
                sync.clone(),
            ]
            .concat(),
            [parse, bind, execute, flush, close, sync].concat(),
            describe,
        ]
    }

    fn run(&mut self, input: &[u8]) {
        // The session's statement_timeout bounds what an input may run; an
        // input may not change it (a result held whole can fill memory: see
        // SECURITY.md), so the setting's name is replaced by another's.
        let input = &neutralised(input);
        let mut bytes = if input.first() == Some(&0xff) {
            input[1..].to_vec()
        } else {
            to_wire(input)
        };
        bytes.extend_from_slice(b"S\0\0\0\x04Q\0\0\0\x05\0");
        let mut stream = match self.connection.take() {
            Some(stream) => stream,
            None => self.connect(),
        };
        let answered = stream
            .write_all(&bytes)
            .and_then(|()| read_until_ready(&mut stream, true));
        match answered {
            Ok(()) => self.connection = Some(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                self.stuck += 1
            }
            Err(_) => self.closed += 1,
        }
    }

    fn notes(&self) -> String {
        format!(
            "; {} connections closed by the server, {} inputs left unanswered",
            self.closed, self.stuck
        )
    }

    fn dictionary(&self) -> Vec<Vec<u8>> {
        [
            "SELECT ",
            " FROM ",
            "DECLARE c CURSOR WITH HOLD FOR ",
            "FETCH ALL FROM c",
            "CLOSE c",
            "COPY ",
            " TO STDOUT",
            "'/etc/passwd'",
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION ",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SET ",
            "SHOW ",
            "$1",
            "::INT",
            ";",
            "\0",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }
}
