//! The extended query protocol: statements parsed and planned once (`Parse`),
//! described, bound to parameters (`$1`, `$2`, … sent as text) and run.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldFormat, FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::{ClientInfo, Type};
use pgwire::error::PgWireResult;

use super::{Session, types};
use crate::Error;

/// A statement as `Parse` left it: its text and its plan, placeholders unbound.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The SQL, for the command tag.
    pub sql: String,
    /// DataFusion's plan of it.
    pub plan: LogicalPlan,
}

/// Plans statements in a session's context.
pub struct Planner {
    pub(super) context: SessionContext,
}

#[async_trait]
impl QueryParser for Planner {
    type Statement = Planned;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Planned>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let plan = self
            .context
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(Error::from)?;
        Ok(Some(Planned {
            sql: sql.to_string(),
            plan,
        }))
    }

    fn get_parameter_types(&self, statement: &Planned) -> PgWireResult<Vec<Type>> {
        Ok(parameter_types(&statement.plan)?
            .iter()
            .map(|t| t.as_ref().map_or(Type::UNKNOWN, types::pg_type))
            .collect())
    }

    fn get_result_schema(
        &self,
        statement: &Planned,
        _format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(types::fields(statement.plan.schema().as_arrow()))
    }
}

/// The Arrow types DataFusion inferred for `$1`, `$2`, …, in order.
fn parameter_types(
    plan: &LogicalPlan,
) -> PgWireResult<Vec<Option<datafusion::arrow::datatypes::DataType>>> {
    let found: HashMap<String, Option<datafusion::arrow::datatypes::DataType>> = plan
        .get_parameter_types()
        .map_err(Error::from)?
        .into_iter()
        .collect();
    Ok((1..=found.len())
        .map(|i| found.get(&format!("${i}")).cloned().flatten())
        .collect())
}

/// The values bound to `portal`'s parameters, as the plan's types.
fn parameters(portal: &Portal<Planned>) -> PgWireResult<ParamValues> {
    let wanted = parameter_types(&portal.statement.statement.plan)?;
    let mut values = Vec::with_capacity(portal.parameters.len());
    for (i, raw) in portal.parameters.iter().enumerate() {
        let Some(raw) = raw else {
            values.push(ScalarValue::Null.into());
            continue;
        };
        let fail = |why: String| super::user_error(&format!("parameter ${}: {why}", i + 1));
        let wanted = wanted.get(i).cloned().flatten();
        let value = if portal.parameter_format.format_for(i) == FieldFormat::Binary {
            let declared = portal.statement.parameter_types.get(i).cloned().flatten();
            let pg = declared.or_else(|| wanted.as_ref().map(types::pg_type));
            let value = binary(pg.as_ref().unwrap_or(&Type::UNKNOWN), raw).map_err(fail)?;
            match &wanted {
                Some(data_type) => value.cast_to(data_type).map_err(|e| fail(e.to_string()))?,
                None => value,
            }
        } else {
            let text = std::str::from_utf8(raw).map_err(|e| fail(format!("not UTF-8: {e}")))?;
            match &wanted {
                Some(data_type) => ScalarValue::try_from_string(text.to_string(), data_type)
                    .map_err(|e| fail(e.to_string()))?,
                None => ScalarValue::Utf8(Some(text.to_string())),
            }
        };
        values.push(value.into());
    }
    Ok(ParamValues::List(values))
}

/// A parameter sent in binary, read as its PostgreSQL type says.
fn binary(pg: &Type, raw: &[u8]) -> Result<ScalarValue, String> {
    let fixed = |n: usize| -> Result<&[u8], String> {
        (raw.len() == n)
            .then_some(raw)
            .ok_or_else(|| format!("{} bytes for a {pg}, expected {n}", raw.len()))
    };
    let bytes = |n: usize| -> Result<[u8; 8], String> {
        let mut out = [0u8; 8];
        out[8 - n..].copy_from_slice(fixed(n)?);
        Ok(out)
    };
    Ok(match *pg {
        Type::BOOL => ScalarValue::Boolean(Some(fixed(1)?[0] != 0)),
        Type::INT2 => ScalarValue::Int16(Some(i64::from_be_bytes(bytes(2)?) as i16)),
        Type::INT4 => ScalarValue::Int32(Some(i64::from_be_bytes(bytes(4)?) as i32)),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(bytes(8)?))),
        Type::FLOAT4 => {
            ScalarValue::Float32(Some(f32::from_bits(u64::from_be_bytes(bytes(4)?) as u32)))
        }
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_bits(u64::from_be_bytes(bytes(8)?)))),
        Type::TEXT | Type::VARCHAR | Type::UNKNOWN | Type::NAME => {
            let text = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
            ScalarValue::Utf8(Some(text.to_string()))
        }
        _ => {
            return Err(format!(
                "binary {pg} parameters are not supported yet; send them as text"
            ));
        }
    })
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
        _client: &mut C,
        portal: &Portal<Planned>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let planned = &portal.statement.statement;
        let plan = planned
            .plan
            .clone()
            .with_param_values(parameters(portal)?)
            .map_err(Error::from)?;
        let frame = datafusion::dataframe::DataFrame::new(self.planner.context.state(), plan);
        self.respond(&planned.sql, crate::client::DataFrame::new(frame))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_parameters_are_read_by_their_type() {
        assert_eq!(
            binary(&Type::INT8, &42i64.to_be_bytes()),
            Ok(ScalarValue::Int64(Some(42)))
        );
        assert_eq!(
            binary(&Type::INT4, &(-7i32).to_be_bytes()),
            Ok(ScalarValue::Int32(Some(-7)))
        );
        assert_eq!(
            binary(&Type::FLOAT8, &0.5f64.to_be_bytes()),
            Ok(ScalarValue::Float64(Some(0.5)))
        );
        assert_eq!(
            binary(&Type::BOOL, &[1]),
            Ok(ScalarValue::Boolean(Some(true)))
        );
        assert!(
            binary(&Type::INT8, &[1, 2])
                .unwrap_err()
                .contains("expected 8")
        );
        assert!(
            binary(&Type::NUMERIC, &[0; 8])
                .unwrap_err()
                .contains("not supported")
        );
    }
}
