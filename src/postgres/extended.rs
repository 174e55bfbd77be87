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
use pgwire::api::{ClientInfo, Type};
use pgwire::error::PgWireResult;

use super::catalog::Dialect;
use super::settings::{SessionStatement, Settings};
use super::{Opened, Session, types};
use crate::Error;
use crate::planner::Location;

/// A statement as `Parse` left it.
#[derive(Debug, Clone)]
pub enum Planned {
    /// A query or DDL: the SQL that was planned (for the command tag) and
    /// DataFusion's plan of it, placeholders unbound.
    Plan { sql: String, plan: LogicalPlan },
    /// A statement about the session.
    Session(SessionStatement),
}

impl Planned {
    /// The plan; `None` for a statement about the session.
    fn plan(&self) -> Option<&LogicalPlan> {
        match self {
            Planned::Plan { plan, .. } => Some(plan),
            Planned::Session(_) => None,
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
        let planned = self
            .dialect
            .plan(sql, |sql| async move {
                let state = context.state();
                let plan = crate::error::catch_panics(state.create_logical_plan(&sql)).await??;
                Ok(Planned::Plan { sql, plan })
            })
            .await
            .map_err(|e| super::error_at(&e, sql, Location::START))?;
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
        match statement {
            Planned::Plan { plan, .. } => types::fields(
                plan.schema().as_arrow(),
                format.unwrap_or(&Format::UnifiedText),
            ),
            Planned::Session(SessionStatement::Show { name }) => Ok(Settings::described(name)),
            Planned::Session(_) => Ok(Vec::new()),
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
impl pgwire::api::query::ExtendedQueryHandler for Session {
    type Statement = Planned;
    type QueryParser = Planner;

    fn query_parser(&self) -> Arc<Planner> {
        Arc::clone(&self.planner)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Planned>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let settings = self.started(client);
        let (sql, plan) = match &portal.statement.statement {
            Planned::Plan { sql, plan } => (sql, plan),
            Planned::Session(statement) => return settings.run(statement.clone()),
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
        self.respond(sql, frame, &portal.result_column_format, true)
            .await
    }
}
