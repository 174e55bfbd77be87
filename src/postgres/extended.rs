//! The extended query protocol: a statement parsed and planned once (`Parse`),
//! described, bound to parameters (`$1`, `$2`, …, in text or binary, decoded
//! by `arrow-pg` as the client's declared types or DataFusion's inferred ones
//! say) and run, its rows in the formats the client asked for.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::LogicalPlan;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use std::fmt::Debug;

use futures::{Sink, SinkExt};
use pgwire::api::portal::PortalExecutionState;
use pgwire::api::query::{ExtendedQueryHandler, send_execution_response, send_query_response};
use pgwire::api::store::Entry;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::api::{DEFAULT_NAME, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::response::EmptyQueryResponse;

use super::catalog::Dialect;
use super::cursors::CursorStatement;
use super::settings::{SessionStatement, Settings};
use super::{Opened, Session, types};

/// The most rows one `Execute` sends before it suspends its portal.
pub const MAX_ROWS_AT_ONCE: i32 = 1 << 20;
use crate::Error;
use crate::error::Location;

/// A statement as `Parse` left it.
#[derive(Debug, Clone)]
pub enum Planned {
    /// A query or DDL: the SQL that was planned (for the command tag) and
    /// DataFusion's plan of it, placeholders unbound.
    Plan { sql: String, plan: LogicalPlan },
    /// `DECLARE name CURSOR FOR query`: the query's plan, placeholders
    /// unbound, and whether it is held past its transaction.
    Declare {
        name: String,
        plan: LogicalPlan,
        hold: bool,
    },
    /// A statement about the session.
    Session(SessionStatement),
    /// `FETCH` or `CLOSE`.
    Cursor(CursorStatement),
}

impl Planned {
    /// The plan of a query to run; `None` for a statement about the session
    /// or a cursor.
    fn plan(&self) -> Option<&LogicalPlan> {
        match self {
            Planned::Plan { plan, .. } | Planned::Declare { plan, .. } => Some(plan),
            Planned::Session(_) | Planned::Cursor(_) => None,
        }
    }
}

/// Plans statements in a session's context.
pub struct Planner {
    pub(super) opened: Arc<Opened>,
    pub(super) dialect: Arc<Dialect>,
}

#[async_trait]
impl QueryParser for Planner {
    type Statement = Planned;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Planned>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if let Some(statement) = SessionStatement::parse(sql) {
            return Ok(Some(Planned::Session(statement)));
        }
        let context = self.opened.client(client).await?.session();
        let opened = &self.opened;
        let plan = |sql: String| async move {
            let plan = opened.plan(context, &sql).await?;
            Ok((sql, plan))
        };
        let planned = match CursorStatement::parse(sql).transpose()? {
            Some(CursorStatement::Declare { name, query, hold }) => {
                let (_, plan) = self.dialect.plan(&query, plan).await?;
                Planned::Declare { name, plan, hold }
            }
            Some(cursor) => Planned::Cursor(cursor),
            None => {
                let (sql, plan) = self
                    .dialect
                    .plan(sql, plan)
                    .await
                    .map_err(|e| super::error_at(&e, sql, Location::START))?;
                Planned::Plan { sql, plan }
            }
        };
        Ok(Some(planned))
    }

    fn get_parameter_types(&self, statement: &Planned) -> PgWireResult<Vec<Type>> {
        let Some(plan) = statement.plan() else {
            return Ok(Vec::new());
        };
        Ok(parameter_types(plan)?
            .iter()
            .map(|t| t.as_ref().map_or(Type::UNKNOWN, types::pg_type))
            .collect())
    }

    fn get_result_schema(
        &self,
        statement: &Planned,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match statement {
            Planned::Plan { plan, .. } => types::fields(plan.schema().as_arrow(), format),
            Planned::Session(SessionStatement::Show { name }) => Ok(Settings::described(name)),
            // A cursor's rows, once it is open.
            Planned::Cursor(CursorStatement::Fetch { name, .. })
            | Planned::Declare { name, .. } => match self.opened.cursors.schema(name) {
                Some(schema) => types::fields(&schema, format),
                None => Ok(Vec::new()),
            },
            Planned::Session(_) | Planned::Cursor(_) => Ok(Vec::new()),
        }
    }
}

/// The Arrow types DataFusion inferred for `$1`, `$2`, …, in order.
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let found: HashMap<String, Option<DataType>> = plan
        .get_parameter_types()
        .map_err(Error::from)?
        .into_iter()
        .collect();
    Ok((1..=found.len())
        .map(|i| found.get(&format!("${i}")).cloned().flatten())
        .collect())
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Planned;
    type QueryParser = Planner;

    fn query_parser(&self) -> Arc<Planner> {
        Arc::clone(&self.planner)
    }

    /// Rows go out as the cluster makes them. pgwire's own Execute gathers
    /// all of a portal's rows (up to `max_rows`) before it sends one, and
    /// makes room for `max_rows` first: `SELECT * FROM big` through a driver
    /// (max_rows 0) held the whole result in memory, and a client asking for
    /// billions of rows (or a negative count, read as billions) made it
    /// allocate gigabytes and abort the server. So a query's portal executed
    /// whole streams its rows here; a `max_rows` beyond [`MAX_ROWS_AT_ONCE`]
    /// suspends the portal there (the client asks for the rest, as after any
    /// `max_rows`); a negative count means all rows, as zero does. Other
    /// statements, and a portal fetched by parts, go through pgwire's.
    async fn on_execute<C>(&self, client: &mut C, mut message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        message.max_rows = message.max_rows.clamp(0, MAX_ROWS_AT_ONCE);
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) if message.max_rows == 0 => portal,
            _ => return self._on_execute(client, message).await,
        };
        let fresh = matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        if !fresh
            || !matches!(portal.statement.statement, Planned::Plan { .. })
            || !matches!(client.state(), PgWireConnectionState::ReadyForQuery)
        {
            return self._on_execute(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let response = self.do_query(client, &portal, 0).await;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        *portal.state().lock().await = PortalExecutionState::Finished;
        match response? {
            Response::Query(rows) => send_query_response(client, rows, false).await,
            Response::Execution(tag) => send_execution_response(client, tag).await,
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                Ok(())
            }
            Response::Error(info) => {
                client
                    .send(PgWireBackendMessage::ErrorResponse((*info).into()))
                    .await?;
                Ok(())
            }
            // A query's plan answers with rows or a count; nothing else.
            _ => Err(PgWireError::ApiError(
                "an unexpected answer to a query".into(),
            )),
        }
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Planned>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Planned>,
    {
        let settings = self.started(client);
        let deadline = settings
            .statement_timeout()
            .map(|timeout| tokio::time::Instant::now() + timeout);
        let format = &portal.result_column_format;
        // Where the query's rows go: to the client, or into a cursor.
        let (plan, cursor) = match &portal.statement.statement {
            Planned::Plan { sql, plan } => (plan, Err(sql)),
            Planned::Declare { hold: false, .. } if !super::in_transaction(client) => {
                return Err(super::outside_a_block());
            }
            Planned::Declare { name, plan, hold } => (plan, Ok((name, *hold))),
            Planned::Session(statement) => return self.run_about(settings, statement.clone()),
            Planned::Cursor(statement) => {
                return super::cancel::within(deadline, self.cursor(statement.clone(), format))
                    .await;
            }
        };
        let wanted = parameter_types(plan)?;
        let wanted: Vec<Option<&DataType>> = wanted.iter().map(Option::as_ref).collect();
        let parameters = arrow_pg::datatypes::df::deserialize_parameters(portal, &wanted)?;
        let plan = plan
            .clone()
            .with_param_values(parameters)
            .map_err(Error::from)?;
        let context = self.opened.client(client).await?.session();
        let frame = crate::error::catch_panics(context.execute_logical_plan(plan))
            .await?
            .map_err(Error::from)?;
        let frame = crate::client::DataFrame::new(frame);
        match cursor {
            Ok((name, hold)) => {
                let declared = self.declare(name.clone(), frame, hold).await?;
                // As in PostgreSQL, the cursor is a portal too: psycopg
                // describes it by its name before its first FETCH (and the
                // DECLARE, described once the cursor is open, has its rows).
                let cursor = Portal::new_cursor(name.clone(), Arc::clone(&portal.statement));
                client.portal_store().put_portal(Arc::new(cursor));
                Ok(declared)
            }
            Err(sql) => self.respond(sql, frame, format, true, deadline).await,
        }
    }
}
