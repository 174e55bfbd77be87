//! The PostgreSQL wire protocol: psql, BI tools and database drivers run SQL on
//! rask (`rask serve --pg-port`, `rask scheduler --pg-port`).
//!
//! The protocol itself is the `pgwire` crate's; this module answers it. Each
//! connection gets a [`Client`] of its own (its own tables, on the shared
//! cluster), opened by the server's [`OpenSession`], with `pg_catalog` in its
//! session ([`catalog`]). The simple query protocol runs the statements of a
//! message in order; the extended protocol plans a statement once and binds
//! its parameters ([`extended`]). Rows stream out as the cluster produces
//! them, in text or binary, typed after their Arrow types ([`types`]). A
//! cancel request stops the query it names ([`cancel`]). Errors go back as
//! PostgreSQL error responses with a SQLSTATE and, where known, the position;
//! a client that sends garbage loses its own connection, with a log line, and
//! nobody else's.

mod access;
mod cancel;
mod catalog;
mod cursors;
mod extended;
mod logins;
mod scram;
mod settings;
mod text_rows;
mod types;
mod wire;

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Sink, StreamExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{DefaultServerParameterProvider, ServerParameterProvider, StartupHandler};
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, ConnectionManager, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use tokio::sync::watch;

use self::cancel::{BackendKey, Cancels};
use self::catalog::Dialect;
use self::cursors::{CursorStatement, Cursors};
use self::settings::{SessionStatement, Settings};
use crate::error::Location;
use crate::net::{Arrival, Limits, Port, Security};
use crate::{Client, Error, Result};

pub use self::access::Access;
pub use self::logins::{Logins, parse_user};
pub use self::scram::Verifier;

/// Opens the client a new connection runs its SQL on.
pub type OpenSession = Arc<dyn Fn() -> BoxFuture<'static, Result<Client>> + Send + Sync>;

/// Connections PostgreSQL allows by default (`max_connections`).
pub const MAX_CONNECTIONS: usize = 100;

/// How long a connection may take to log in (PostgreSQL's
/// `authentication_timeout`).
const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The PostgreSQL port of a process, bound, with who may log in and what
/// their SQL may touch.
pub struct Server {
    port: Port,
    tls: Option<TlsAcceptor>,
    logins: Logins,
    access: Access,
}

impl Server {
    /// Binds `host:port` (0 for any free port) for at most `max_connections`
    /// at once. Refuses to listen beyond loopback when anyone may log in
    /// (trust) unless `security` says `--insecure`; speaks TLS when
    /// `security` has it.
    pub async fn bind(
        host: &str,
        port: u16,
        max_connections: usize,
        security: &Security,
        logins: Logins,
        access: Access,
    ) -> Result<Self> {
        let limits = Limits {
            connections: max_connections.max(1),
            // An idle session is the user's to keep; a dead peer is found by
            // TCP keepalive and a login that never ends by `LOGIN_TIMEOUT`.
            idle: None,
        };
        let port = Port::bind(host, port, "the PostgreSQL port", limits)
            .await?
            .expose(security, !matches!(logins, Logins::Trust))?;
        let tls = security.tls_acceptor(false)?;
        Ok(Self {
            port,
            tls,
            logins,
            access,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> Result<std::net::SocketAddr> {
        self.port.address()
    }

    /// For the log: how connections get in and what their SQL may touch.
    pub fn describe(&self) -> String {
        let tls = if self.tls.is_some() { ", TLS" } else { "" };
        format!(
            "{}{tls}; SQL may touch {}",
            self.logins.describe(),
            self.access.describe()
        )
    }

    /// Serves until the task is dropped, each connection on a client from `open`.
    pub async fn serve(self, open: OpenSession) {
        let Server {
            port,
            tls,
            logins,
            access,
        } = self;
        let access = Arc::new(access);
        let dialect = Arc::new(Dialect::default());
        let cancels = Arc::new(Cancels::new());
        loop {
            let (connection, peer) = match port.accept().await {
                Arrival::Admitted(connection, peer) => (connection, peer),
                Arrival::Full(socket, peer) => {
                    tokio::spawn(too_many(socket, peer));
                    continue;
                }
            };
            let (socket, permit) = connection.into_parts();
            if let Err(e) = keep_alive(&socket) {
                tracing::debug!(%peer, "postgres: no TCP keepalive: {e}");
            }
            let opened = Arc::new(Opened {
                open: Arc::clone(&open),
                client: tokio::sync::OnceCell::new(),
                settings: OnceLock::new(),
                cursors: Cursors::default(),
                access: Arc::clone(&access),
            });
            let planner = Arc::new(extended::Planner {
                opened: Arc::clone(&opened),
                dialect: Arc::clone(&dialect),
            });
            let session = Arc::new(Session {
                opened,
                planner,
                cancels: Arc::clone(&cancels),
                key: OnceLock::new(),
                cancel: watch::Sender::new(0),
            });
            let (logged_in, login) = watch::channel(false);
            let way = match logins.lookup() {
                None => Way::Trust(Arc::clone(&session)),
                Some(lookup) => Way::Scram(Box::new(scram::ScramLogin::new(
                    lookup,
                    Arc::clone(&cancels.manager),
                ))),
            };
            let door = Arc::new(Door {
                way,
                logged_in,
                tls_only: tls.is_some(),
            });
            let cancels = Arc::clone(&cancels);
            let tls = tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                tracing::info!(%peer, "postgres: connected");
                let handlers = Handlers(Arc::clone(&session), door, Arc::clone(&cancels));
                // pgwire's decoder panics on some malformed messages: that
                // ends this connection, with its log line, and nothing else.
                let served =
                    std::panic::AssertUnwindSafe(wire::serve(socket, tls, handlers)).catch_unwind();
                let result = tokio::select! {
                    result = served => match result {
                        Ok(result) => result.map_err(|e| e.to_string()),
                        Err(panic) => Err(format!(
                            "a malformed message ({})",
                            crate::exec::panic_message(panic.as_ref())
                        )),
                    },
                    () = login_overdue(login) => Err(format!(
                        "no login within {} s", LOGIN_TIMEOUT.as_secs()
                    )),
                };
                match result {
                    Ok(()) => tracing::info!(%peer, "postgres: connection closed"),
                    Err(e) => tracing::warn!(%peer, "postgres: connection closed: {e}"),
                }
                if let Some(key) = session.key.get() {
                    cancels.forget(key);
                }
                if let Some(client) = session.opened.client.get() {
                    catalog::uninstall(client.session());
                }
            });
        }
    }
}

/// Resolves if the connection has not logged in within [`LOGIN_TIMEOUT`];
/// never once it has.
async fn login_overdue(mut login: watch::Receiver<bool>) {
    let logged_in = tokio::time::timeout(LOGIN_TIMEOUT, login.wait_for(|done| *done))
        .await
        .is_ok_and(|seen| seen.is_ok());
    if logged_in {
        std::future::pending::<()>().await;
    }
}

/// Tells a connection past `max_connections` so, as PostgreSQL does, and
/// closes it: after its startup message (declining TLS first, if asked, so
/// that the client shows the message).
async fn too_many(mut socket: tokio::net::TcpStream, peer: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// SSLRequest and GSSENCRequest: 8 bytes, these codes.
    const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];
    /// The longest startup message read (PostgreSQL's own limit).
    const MAX_STARTUP: usize = 10_000;
    use pgwire::messages::Message;
    let info = ErrorInfo::new(
        "FATAL".into(),
        "53300".into(),
        "sorry, too many clients already".into(),
    );
    let mut message = bytes::BytesMut::new();
    if let Err(e) = pgwire::messages::response::ErrorResponse::from(info).encode(&mut message) {
        tracing::debug!(%peer, "postgres: cannot encode the refusal: {e}");
        return;
    }
    let told = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut head = [0u8; 8];
        socket.read_exact(&mut head).await?;
        let [a, b, c, d, e, f, g, h] = head;
        let mut len = u32::from_be_bytes([a, b, c, d]) as usize;
        if len == 8 && ENCRYPTION_REQUESTS.contains(&u32::from_be_bytes([e, f, g, h])) {
            socket.write_all(b"N").await?;
            let mut next = [0u8; 4];
            socket.read_exact(&mut next).await?;
            len = (u32::from_be_bytes(next) as usize).saturating_sub(4);
        } else {
            len = len.saturating_sub(8);
        }
        let mut rest = vec![0u8; len.min(MAX_STARTUP)];
        socket.read_exact(&mut rest).await?;
        socket.write_all(&message).await?;
        socket.shutdown().await
    })
    .await;
    tracing::debug!(%peer, "postgres: too many connections; turned one away ({told:?})");
}

/// TCP keepalive on `socket`, so that a peer that vanished (half-open) is
/// found within minutes.
fn keep_alive(socket: &tokio::net::TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: `fd` is an open socket owned by `socket` for this call; the
        // option value is a c_int on the stack, its size passed with it.
        let done = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        match done {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 60)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 6)
}

/// The client a connection runs its SQL on, opened (with `pg_catalog` in its
/// session) at its first statement: a cancel request, or a client that never
/// gets in, opens none.
struct Opened {
    open: OpenSession,
    client: tokio::sync::OnceCell<Client>,
    /// Its PostgreSQL settings, from the parameters announced at startup.
    settings: OnceLock<Arc<Settings>>,
    /// Its open cursors.
    cursors: Cursors,
    /// The files and URLs its SQL may touch.
    access: Arc<Access>,
}

impl Opened {
    /// `sql`'s logical plan in `session`, once every file and URL it reads or
    /// writes is found allowed.
    async fn plan(
        &self,
        session: &datafusion::prelude::SessionContext,
        sql: &str,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        let state = session.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect)?;
        // A table name no catalog has is read as a path or URL (`FROM
        // 'file.csv'`), and planning opens it to learn its schema: checked
        // before that, and the whole plan again after.
        for reference in state.resolve_table_references(&statement)? {
            if !session.table_exist(reference.clone())? {
                self.access.check_name(reference.table())?;
            }
        }
        let plan = crate::error::catch_panics(state.statement_to_plan(statement)).await??;
        self.access.check(&plan)?;
        Ok(plan)
    }

    /// The connection's settings (`info` is the started connection's).
    fn settings<C: ClientInfo>(&self, info: &C) -> &Arc<Settings> {
        self.settings.get_or_init(|| {
            let mut announced = DefaultServerParameterProvider::default()
                .server_parameters(info)
                .unwrap_or_default();
            // A setting the client gave at startup, as PostgreSQL takes any.
            if let Some(timeout) = info.metadata().get("statement_timeout") {
                announced.insert("statement_timeout".into(), timeout.clone());
            }
            Arc::new(Settings::new(announced))
        })
    }

    /// The connection's client, opened now if it is not yet, with
    /// `pg_catalog` and `current_setting(name)` in its session.
    async fn client<C: ClientInfo>(&self, info: &C) -> PgWireResult<&Client> {
        let settings = Arc::clone(self.settings(info));
        let opened = self
            .client
            .get_or_try_init(|| async {
                let client = (self.open)().await?;
                catalog::install(client.session())?;
                client
                    .session()
                    .register_udf(settings::current_setting(settings));
                Ok::<_, Error>(client)
            })
            .await;
        opened.map_err(|e| {
            tracing::error!("postgres: cannot open a session: {e}");
            PgWireError::from(e)
        })
    }
}

/// One connection's SQL session.
struct Session {
    /// Its client, once opened.
    opened: Arc<Opened>,
    /// Plans the extended protocol's statements in the client's session.
    planner: Arc<extended::Planner>,
    /// Every connection of the server, for cancel requests.
    cancels: Arc<Cancels>,
    /// How cancel requests name this connection, known once it has started.
    key: OnceLock<BackendKey>,
    /// Bumped by a cancel request for this connection.
    cancel: watch::Sender<u64>,
}

/// The handlers of one connection: its [`Session`], how it gets in, and how
/// cancel requests find it.
struct Handlers(Arc<Session>, Arc<Door>, Arc<Cancels>);

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.0)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.0)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.1)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.2)
    }
}

/// Trust: any user, no password (the listener binds 127.0.0.1 unless told otherwise).
impl NoopStartupHandler for Session {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.cancels.manager))
    }
}

/// How a connection gets in, and who hears when it has.
struct Door {
    way: Way,
    /// Set once the connection has logged in.
    logged_in: watch::Sender<bool>,
    /// The server has TLS: a connection without it is refused.
    tls_only: bool,
}

/// Trusted, or by SCRAM-SHA-256.
enum Way {
    Trust(Arc<Session>),
    Scram(Box<scram::ScramLogin>),
}

#[async_trait]
impl StartupHandler for Door {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_only && !client.is_secure() {
            return Err(refusal(
                "FATAL",
                "28000",
                "this server takes only TLS connections (sslmode=require or stronger)",
            ));
        }
        match &self.way {
            Way::Trust(session) => session.on_startup(client, message).await?,
            Way::Scram(handler) => handler.on_startup(client, message).await?,
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            self.logged_in.send_replace(true);
        }
        Ok(())
    }
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let statements = crate::planner::split_statements(query)
            .map_err(|e| error_at(&e, query, Location::START))?;
        let settings = self.started(client);
        if statements.is_empty() {
            // An empty query (drivers ping with one) opens no session.
            return Ok(vec![Response::EmptyQuery]);
        }
        let rask = self.opened.client(client).await?;
        let last = statements.len().saturating_sub(1);
        let mut responses = Vec::with_capacity(statements.len());
        // In a transaction block (BEGIN … COMMIT), or a message of several
        // statements (PostgreSQL's implicit block): cursors live to its end.
        let mut in_block = in_transaction(client);
        for (i, statement) in statements.iter().enumerate() {
            let sql = &statement.text;
            let deadline = settings
                .statement_timeout()
                .map(|timeout| tokio::time::Instant::now() + timeout);
            if let Some(about) = SessionStatement::parse(sql) {
                in_block = match about {
                    SessionStatement::Begin => true,
                    SessionStatement::Commit | SessionStatement::Rollback => false,
                    _ => in_block,
                };
                responses.push(self.run_about(settings, about)?);
                continue;
            }
            let plan = async |sql: &str| {
                let opened = &self.opened;
                let run = |sql: String| async move {
                    let plan = opened.plan(rask.session(), &sql).await?;
                    let frame = rask.session().execute_logical_plan(plan).await?;
                    Ok::<_, Error>(crate::client::DataFrame::new(frame))
                };
                self.planner.dialect.plan(sql, run).await
            };
            let response = match CursorStatement::parse(sql) {
                Some(Ok(CursorStatement::Declare { hold: false, .. }))
                    if !in_block && statements.len() == 1 =>
                {
                    Err(outside_a_block())
                }
                Some(Ok(CursorStatement::Declare { name, query, hold })) => {
                    match plan(&query).await {
                        Ok(frame) => self.declare(name, frame, hold).await,
                        Err(e) => Err(e.into()),
                    }
                }
                Some(Ok(cursor)) => {
                    cancel::within(deadline, self.cursor(cursor, &Format::UnifiedText)).await
                }
                Some(Err(e)) => Err(e),
                // The last statement streams its rows; earlier ones run to the
                // end first, so that each sees the effects of those before it.
                None => match plan(sql).await {
                    Ok(frame) => {
                        self.respond(sql, frame, &Format::UnifiedText, i == last, deadline)
                            .await
                    }
                    Err(e) => Err(error_at(&e, query, statement.start)),
                },
            };
            match response {
                Ok(response) => responses.push(response),
                // Later statements do not run, as in PostgreSQL.
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        // The end of an autocommit statement is the end of its transaction:
        // its cursors close, but for those declared WITH HOLD.
        if !in_block {
            self.opened.cursors.end_transaction();
        }
        Ok(responses)
    }
}

/// Whether `client` is inside a transaction block.
fn in_transaction<C: ClientInfo>(client: &C) -> bool {
    !matches!(
        client.transaction_status(),
        pgwire::messages::response::TransactionStatus::Idle
    )
}

/// PostgreSQL's answer to `DECLARE` without `WITH HOLD` outside a transaction
/// block: such a cursor would close before anyone could read it.
fn outside_a_block() -> PgWireError {
    refusal(
        "ERROR",
        "25P01",
        "DECLARE CURSOR can only be used in transaction blocks",
    )
}

/// An error response: `severity` (`ERROR` ends the statement, `FATAL` the
/// connection), the SQLSTATE `code` and the message.
pub(crate) fn refusal(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.into(),
        code.into(),
        message.into(),
    )))
}

impl Session {
    /// Lets cancel requests reach this connection, once it has started; its
    /// settings.
    fn started<C: ClientInfo>(&self, client: &C) -> &Settings {
        let (pid, secret) = client.pid_and_secret_key();
        let key = cancel::backend_key(pid, &secret);
        if self.key.set(key.clone()).is_ok() {
            self.cancels.register(key, self.cancel.clone());
        }
        self.opened.settings(client)
    }

    /// Carries out a statement about the session; the end of a transaction
    /// closes its cursors.
    fn run_about(&self, settings: &Settings, about: SessionStatement) -> PgWireResult<Response> {
        if matches!(about, SessionStatement::Commit | SessionStatement::Rollback) {
            self.opened.cursors.end_transaction();
        }
        settings.run(about)
    }

    /// Starts `frame` into the cursor `name` (kept past its transaction with `hold`).
    async fn declare(
        &self,
        name: String,
        frame: crate::DataFrame,
        hold: bool,
    ) -> PgWireResult<Response> {
        // As in PostgreSQL, the query runs as its rows are fetched: it starts
        // at the first FETCH, under that statement's timeout, and stops with
        // the cursor. (Started here, it ran on unbounded by any timeout.)
        let schema = frame.schema();
        let started = futures::stream::once(async move {
            match frame.stream().await {
                Ok(batches) => batches,
                Err(e) => {
                    let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty());
                    let failed = futures::stream::once(async move {
                        Err(datafusion::error::DataFusionError::External(Box::new(e)))
                    });
                    Box::pin(RecordBatchStreamAdapter::new(schema, failed))
                }
            }
        })
        .flatten();
        let batches = Box::pin(RecordBatchStreamAdapter::new(schema, started));
        self.opened.cursors.declare(name, batches, hold)?;
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }

    /// Fetches from a cursor, in `format`, or closes it.
    async fn cursor(&self, statement: CursorStatement, format: &Format) -> PgWireResult<Response> {
        let cursors = &self.opened.cursors;
        match statement {
            CursorStatement::Fetch { name, count } => {
                let (schema, batches) = cursors.fetch(&name, count).await?;
                let fields = Arc::new(types::fields(&schema, format)?);
                let batches = futures::stream::iter(batches.into_iter().map(Ok));
                let mut response =
                    QueryResponse::new(Arc::clone(&fields), types::rows(batches, fields));
                response.set_command_tag("FETCH");
                Ok(Response::Query(response))
            }
            CursorStatement::Close { name } => {
                cursors.close(name.as_deref())?;
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
            CursorStatement::Declare { .. } => Err(cursors::unsupported("DECLARE here")),
        }
    }

    /// Runs `frame` (planned from `sql`): its rows in `format`, streamed as
    /// they come when `stream`, else gathered first; or its tag when it
    /// returns none.
    async fn respond(
        &self,
        sql: &str,
        frame: crate::DataFrame,
        format: &Format,
        stream: bool,
        deadline: Option<tokio::time::Instant>,
    ) -> PgWireResult<Response> {
        let schema = frame.schema();
        let collect = |frame: crate::DataFrame| {
            cancel::within(deadline, async move { Ok(frame.collect().await?) })
        };
        if let Some(command) = counted_command(frame.logical_plan()) {
            // PostgreSQL reports the rows written in the tag, with no rows.
            let batches = collect(frame).await?;
            return Ok(Response::Execution(command.tag(written(&batches))));
        }
        if schema.fields().is_empty() {
            collect(frame).await?;
            return Ok(Response::Execution(Tag::new(&command_tag(sql))));
        }
        let fields = Arc::new(types::fields(&schema, format)?);
        let batches: BoxStream<'static, PgWireResult<RecordBatch>> = if stream {
            let batches = cancel::within(deadline, async { Ok(frame.stream().await?) }).await?;
            batches
                .map(|b| b.map_err(|e| Error::from(e).into()))
                .boxed()
        } else {
            let batches = collect(frame).await?;
            futures::stream::iter(batches.into_iter().map(Ok)).boxed()
        };
        // A cancel request, or the statement's timeout, is looked for between
        // batches, not between rows.
        let batches = cancel::guard(&self.cancel, batches, deadline);
        let rows = types::rows(batches, Arc::clone(&fields));
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

/// The command tag of a statement that returns no rows (`CREATE TABLE`, …).
fn command_tag(sql: &str) -> String {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(2)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    match words.first().map(String::as_str) {
        Some("CREATE" | "DROP") => words.join(" "),
        Some(word) => word.to_string(),
        None => "OK".to_string(),
    }
}

/// A statement whose rows are a count of those it wrote.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Counted {
    Insert,
    Update,
    Delete,
    Copy,
}

impl Counted {
    /// The tag of this statement having written `rows`: `INSERT 0 3`, `COPY 3`, …
    fn tag(self, rows: usize) -> Tag {
        match self {
            Counted::Insert => Tag::new("INSERT").with_oid(0).with_rows(rows),
            Counted::Update => Tag::new("UPDATE").with_rows(rows),
            Counted::Delete => Tag::new("DELETE").with_rows(rows),
            Counted::Copy => Tag::new("COPY").with_rows(rows),
        }
    }
}

/// What `plan` writes, when it answers with a count of rows written.
fn counted_command(plan: &datafusion::logical_expr::LogicalPlan) -> Option<Counted> {
    use datafusion::logical_expr::{LogicalPlan, WriteOp};
    match plan {
        LogicalPlan::Dml(dml) => match dml.op {
            WriteOp::Insert(_) => Some(Counted::Insert),
            WriteOp::Update => Some(Counted::Update),
            WriteOp::Delete => Some(Counted::Delete),
            _ => None,
        },
        LogicalPlan::Copy(_) => Some(Counted::Copy),
        _ => None,
    }
}

/// The count in a write's answer: the sum of its `count` column.
fn written(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> usize {
    use datafusion::arrow::array::{Array, UInt64Array};
    batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
        .flat_map(|counts| counts.iter().flatten())
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .sum()
}

/// `error`, raised by the statement that starts at `start` in `query`, as
/// PostgreSQL reports it: with the position (in characters, from 1) of the
/// spot in `query` when it is known.
fn error_at(error: &Error, query: &str, start: Location) -> PgWireError {
    let mut info = error_info(error);
    info.position = error
        .location()
        .and_then(|at| at.offset_by(start).char_index(query))
        .map(|i| (i + 1).to_string());
    PgWireError::UserError(Box::new(info))
}

/// A rask error as PostgreSQL reports it: severity, SQLSTATE, message.
fn error_info(error: &Error) -> ErrorInfo {
    let text = error.to_string();
    let code = if matches!(error, Error::Denied { .. }) {
        "42501" // insufficient_privilege
    } else if text.contains("SQL error") || text.contains("Expected") {
        "42601" // syntax_error
    } else if text.contains("table") && text.contains("not found") {
        "42P01" // undefined_table
    } else if text.contains("No field named") || text.contains("Schema error") {
        "42703" // undefined_column
    } else if text.contains("Error during planning") {
        "42000" // syntax_error_or_access_rule_violation
    } else {
        "XX000" // internal_error
    };
    ErrorInfo::new("ERROR".to_string(), code.to_string(), text)
}

impl From<Error> for PgWireError {
    fn from(error: Error) -> Self {
        PgWireError::UserError(Box::new(error_info(&error)))
    }
}

impl Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_without_rows_are_tagged_by_their_command() {
        assert_eq!(command_tag("create table t as select 1"), "CREATE TABLE");
        assert_eq!(command_tag("  insert into t values (1)"), "INSERT");
        assert_eq!(command_tag(""), "OK");
    }

    #[test]
    fn writes_are_tagged_with_their_count() {
        use datafusion::arrow::array::UInt64Array;
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "count",
            DataType::UInt64,
            false,
        )]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![2, 1]))]).unwrap();
        assert_eq!(written(&[batch]), 3);
        let tag = pgwire::messages::response::CommandComplete::from(Counted::Insert.tag(3));
        assert_eq!(tag.tag, "INSERT 0 3");
    }

    #[test]
    fn errors_carry_a_sqlstate() {
        let e = Error::Config("table 'nope' not found".into());
        assert_eq!(error_info(&e).code, "42P01");
        assert_eq!(error_info(&Error::Config("boom".into())).code, "XX000");
    }
}
