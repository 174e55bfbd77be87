//! The PostgreSQL wire protocol: psql, BI tools and database drivers run SQL on
//! rask (`rask serve --pg-port`, `rask scheduler --pg-port`).
//!
//! The protocol itself is the `pgwire` crate's; this module answers it. Each
//! connection gets a [`Client`] of its own (its own tables, on the shared
//! cluster), opened by the server's [`OpenSession`]. The simple query protocol
//! runs the statements of a message in order; the extended protocol plans a
//! statement once and binds its parameters ([`extended`]). Results go out as
//! text, typed after their Arrow types ([`types`]). Errors go back as PostgreSQL error
//! responses with a SQLSTATE; a client that sends garbage loses its own
//! connection, with a log line, and nobody else's.

mod extended;
mod types;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use futures::future::BoxFuture;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{DataRowEncoder, QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use crate::{Client, Error, Result};

/// Opens the client a new connection runs its SQL on.
pub type OpenSession = Arc<dyn Fn() -> BoxFuture<'static, Result<Client>> + Send + Sync>;

/// Binds `host:port` for the protocol (0 for any free port).
pub async fn bind(host: &str, port: u16) -> Result<TcpListener> {
    TcpListener::bind((host, port)).await.map_err(|e| {
        Error::Config(format!(
            "cannot serve the PostgreSQL protocol on {host}:{port}: {e}"
        ))
    })
}

/// Serves the protocol on `listener`, each connection on a client from `open`,
/// until the task is dropped. With a `token` (the cluster's), a client must
/// give it as its password; without, connections are trusted.
pub async fn serve(listener: TcpListener, open: OpenSession, token: Option<String>) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("postgres: cannot accept a connection: {e}");
                continue;
            }
        };
        let open = Arc::clone(&open);
        let token = token.clone();
        tokio::spawn(async move {
            let client = match open().await {
                Ok(client) => client,
                Err(e) => {
                    tracing::error!(%peer, "postgres: cannot open a session: {e}");
                    return;
                }
            };
            let planner = Arc::new(extended::Planner {
                context: client.session().clone(),
            });
            let session = Arc::new(Session { client, planner });
            let door = Arc::new(match token {
                None => Door::Trust(Arc::clone(&session)),
                Some(token) => Door::Token(Box::new(CleartextPasswordAuthStartupHandler::new(
                    Token(token),
                    DefaultServerParameterProvider::default(),
                ))),
            });
            tracing::info!(%peer, "postgres: connected");
            match pgwire::tokio::process_socket(socket, None, Handlers(session, door)).await {
                Ok(()) => tracing::info!(%peer, "postgres: connection closed"),
                Err(e) => tracing::warn!(%peer, "postgres: connection closed: {e}"),
            }
        });
    }
}

/// One connection's SQL session.
struct Session {
    client: Client,
    /// Plans the extended protocol's statements in the client's session.
    planner: Arc<extended::Planner>,
}

/// The handlers of one connection: its [`Session`], and how it gets in.
struct Handlers(Arc<Session>, Arc<Door>);

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
}

/// Trust: any user, no password (the listener binds 127.0.0.1 unless told otherwise).
impl NoopStartupHandler for Session {}

/// How a connection gets in: trusted, or with the cluster's token as its password.
enum Door {
    Trust(Arc<Session>),
    Token(Box<CleartextPasswordAuthStartupHandler<Token, DefaultServerParameterProvider>>),
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
        match self {
            Door::Trust(session) => session.on_startup(client, message).await,
            Door::Token(handler) => handler.on_startup(client, message).await,
        }
    }
}

/// The cluster's token, the one password every user must give.
struct Token(String);

impl Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

#[async_trait]
impl AuthSource for Token {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(None, self.0.as_bytes().to_vec()))
    }
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let statements = crate::planner::split_statements(query).map_err(|e| user_error(&e))?;
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            match self.run(&statement.text).await {
                Ok(response) => responses.push(response),
                // Later statements do not run, as in PostgreSQL.
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(responses)
    }
}

impl Session {
    /// Runs one statement; its rows, or its tag when it returns none.
    async fn run(&self, sql: &str) -> PgWireResult<Response> {
        let frame = self.client.sql(sql).await?;
        self.respond(sql, frame).await
    }

    /// Runs `frame` (planned from `sql`); its rows, or its tag when it returns none.
    async fn respond(&self, sql: &str, frame: crate::DataFrame) -> PgWireResult<Response> {
        let schema = frame.schema();
        if schema.fields().is_empty() {
            frame.collect().await?;
            return Ok(Response::Execution(Tag::new(&command_tag(sql))));
        }
        let fields = Arc::new(types::fields(&schema));
        let batches = frame.collect().await?;
        let mut rows = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
        let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
        for batch in &batches {
            let texts = types::texts(batch)?;
            for row in 0..batch.num_rows() {
                for column in &texts {
                    encoder.encode_field(&column.value(row))?;
                }
                rows.push(Ok(encoder.take_row()));
            }
        }
        Ok(Response::Query(QueryResponse::new(
            fields,
            futures::stream::iter(rows),
        )))
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

/// A rask error as PostgreSQL reports it: severity, SQLSTATE, message.
fn error_info(error: &Error) -> ErrorInfo {
    let text = error.to_string();
    let code = if text.contains("SQL error") || text.contains("Expected") {
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

fn user_error(error: &dyn std::fmt::Display) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "42601".to_string(),
        error.to_string(),
    )))
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
    fn errors_carry_a_sqlstate() {
        let e = Error::Config("table 'nope' not found".into());
        assert_eq!(error_info(&e).code, "42P01");
        assert_eq!(error_info(&Error::Config("boom".into())).code, "XX000");
    }
}
