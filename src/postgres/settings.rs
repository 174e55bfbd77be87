//! Statements about the session rather than the data, which drivers send
//! whatever the query: psycopg's `BEGIN` before its first statement (unless in
//! autocommit), JDBC's `SET extra_float_digits = 3`, BI tools' `SHOW
//! transaction isolation level`.
//!
//! rask has no transactions: each statement takes effect when it runs, so
//! `BEGIN`, `COMMIT` and `ROLLBACK` are answered and change nothing else.
//! PostgreSQL's own settings are kept per session and shown back; DataFusion's
//! (`datafusion.*`) and anything else go to DataFusion as before.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use parking_lot::Mutex;
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;

/// A statement about the session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionStatement {
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK`, `ABORT`.
    Rollback,
    /// `SET name = value` (or `TO`), for a setting of PostgreSQL's.
    Set { name: String, value: String },
    /// `SHOW name`, for a setting of PostgreSQL's.
    Show { name: String },
}

impl SessionStatement {
    /// `sql` as a statement about the session; `None` for anything else,
    /// DataFusion's own settings included.
    pub fn parse(sql: &str) -> Option<Self> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        let [statement] = statements.as_slice() else {
            return None;
        };
        let ours = |name: String| (!name.starts_with("datafusion.")).then_some(name);
        match statement {
            Statement::StartTransaction { .. } => Some(Self::Begin),
            Statement::Commit { .. } => Some(Self::Commit),
            Statement::Rollback { .. } => Some(Self::Rollback),
            Statement::Set(Set::SingleAssignment {
                variable, values, ..
            }) => {
                let name = ours(variable.to_string().to_ascii_lowercase())?;
                let value = values
                    .iter()
                    .map(|v| v.to_string().trim_matches('\'').to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                Some(Self::Set { name, value })
            }
            Statement::Set(Set::SetTimeZone { value, .. }) => Some(Self::Set {
                name: "timezone".to_string(),
                value: value.to_string().trim_matches('\'').to_string(),
            }),
            Statement::ShowVariable { variable } => {
                let words: Vec<String> = variable
                    .iter()
                    .map(|w| w.value.to_ascii_lowercase())
                    .collect();
                let name = match words.join(" ").as_str() {
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    "time zone" => "timezone".to_string(),
                    other => other.replace(' ', "_"),
                };
                ours(name).map(|name| Self::Show { name })
            }
            _ => None,
        }
    }
}

/// One session's PostgreSQL settings.
#[derive(Debug)]
pub struct Settings(Mutex<BTreeMap<String, String>>);

impl Settings {
    /// PostgreSQL's defaults, and the parameters the server announced at
    /// startup (`server_version`, `DateStyle`, …).
    pub fn new(announced: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut values: BTreeMap<String, String> = [
            ("transaction_isolation", "read committed"),
            ("extra_float_digits", "1"),
            ("statement_timeout", "0"),
            ("max_identifier_length", "63"),
            ("standard_conforming_strings", "on"),
            ("client_min_messages", "notice"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (name, value) in announced {
            values.insert(name.to_ascii_lowercase(), value);
        }
        Self(Mutex::new(values))
    }

    /// Carries out `statement`; its response.
    pub fn run(&self, statement: SessionStatement) -> PgWireResult<Response> {
        Ok(match statement {
            SessionStatement::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            SessionStatement::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            SessionStatement::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            SessionStatement::Set { name, value } => {
                self.0.lock().insert(name, value);
                Response::Execution(Tag::new("SET"))
            }
            SessionStatement::Show { name } => {
                let value = self.value(&name)?;
                let fields = Arc::new(Self::described(&name));
                let mut row = DataRowEncoder::new(Arc::clone(&fields));
                row.encode_field(&value)?;
                let rows = futures::stream::iter([Ok(row.take_row())]);
                Response::Query(QueryResponse::new(fields, rows))
            }
        })
    }

    /// `statement_timeout`, when set (PostgreSQL's forms: `250` ms, `5s`,
    /// `2min`, `1h`); `None` for 0, none.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let value = self.0.lock().get("statement_timeout").cloned()?;
        let value = value.trim().trim_matches('\'').to_ascii_lowercase();
        let split = value
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(value.len());
        let (number, unit) = value.split_at(split);
        let number: f64 = number.parse().ok()?;
        let millis = number
            * match unit.trim() {
                "" | "ms" => 1.0,
                "s" => 1e3,
                "min" => 60e3,
                "h" => 3600e3,
                "d" => 86_400e3,
                _ => return None,
            };
        (millis > 0.0).then(|| std::time::Duration::from_secs_f64(millis / 1e3))
    }

    /// The value of the setting `name`; an error naming it when there is none.
    fn value(&self, name: &str) -> PgWireResult<String> {
        let name = name.to_ascii_lowercase();
        self.0.lock().get(&name).cloned().ok_or_else(|| {
            // 42704: undefined_object.
            let message = format!("unrecognized configuration parameter \"{name}\"");
            super::refusal("ERROR", "42704", message)
        })
    }

    /// The row description of `SHOW name`.
    pub fn described(name: &str) -> Vec<FieldInfo> {
        vec![FieldInfo::new(
            name.to_string(),
            None,
            None,
            Type::TEXT,
            FieldFormat::Text,
        )]
    }
}

/// `current_setting(name)`: the session's setting of that name, as `SHOW`
/// gives it.
pub fn current_setting(settings: Arc<Settings>) -> ScalarUDF {
    let lookup = move |args: &[ColumnarValue]| -> datafusion::error::Result<ColumnarValue> {
        let names = ColumnarValue::values_to_arrays(args)?;
        let names = names
            .first()
            .and_then(|a| a.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Plan(
                    "current_setting takes the name of a setting, as text".to_string(),
                )
            })?;
        let values = names
            .iter()
            .map(|name| name.map(|name| settings.value(name)).transpose())
            .collect::<PgWireResult<StringArray>>()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Array(Arc::new(values)))
    };
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(lookup),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_timeouts_read_as_postgresql_writes_them() {
        let settings = Settings::new([]);
        assert_eq!(settings.statement_timeout(), None);
        for (value, ms) in [
            ("250", 250),
            ("'5s'", 5000),
            ("2min", 120_000),
            ("1.5s", 1500),
        ] {
            settings
                .0
                .lock()
                .insert("statement_timeout".into(), value.into());
            let expected = std::time::Duration::from_millis(ms);
            assert_eq!(settings.statement_timeout(), Some(expected), "{value}");
        }
        settings
            .0
            .lock()
            .insert("statement_timeout".into(), "0".into());
        assert_eq!(settings.statement_timeout(), None);
    }

    #[test]
    fn session_statements_are_recognised() {
        use SessionStatement::*;
        assert_eq!(SessionStatement::parse("BEGIN"), Some(Begin));
        assert_eq!(SessionStatement::parse("start transaction"), Some(Begin));
        assert_eq!(SessionStatement::parse("COMMIT"), Some(Commit));
        assert_eq!(SessionStatement::parse("ROLLBACK"), Some(Rollback));
        assert_eq!(
            SessionStatement::parse("SET extra_float_digits = 3"),
            Some(Set {
                name: "extra_float_digits".into(),
                value: "3".into()
            })
        );
        assert_eq!(
            SessionStatement::parse("SET application_name TO 'psql'"),
            Some(Set {
                name: "application_name".into(),
                value: "psql".into()
            })
        );
        assert_eq!(
            SessionStatement::parse("SHOW TRANSACTION ISOLATION LEVEL"),
            Some(Show {
                name: "transaction_isolation".into()
            })
        );
        assert_eq!(
            SessionStatement::parse("SET datafusion.execution.batch_size = 10"),
            None
        );
        assert_eq!(SessionStatement::parse("SELECT 1"), None);
    }

    #[test]
    fn settings_are_kept_and_shown() {
        let settings = Settings::new([("DateStyle".to_string(), "ISO, MDY".to_string())]);
        let set = SessionStatement::Set {
            name: "extra_float_digits".into(),
            value: "3".into(),
        };
        assert!(matches!(settings.run(set), Ok(Response::Execution(_))));
        assert_eq!(
            settings
                .0
                .lock()
                .get("extra_float_digits")
                .map(String::as_str),
            Some("3")
        );
        assert!(settings.0.lock().contains_key("datestyle"));
        let unknown = SessionStatement::Show {
            name: "no_such_thing".into(),
        };
        assert!(settings.run(unknown).is_err());
    }
}
