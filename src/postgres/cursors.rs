//! Cursors: `DECLARE name CURSOR FOR query`, `FETCH n FROM name`, `CLOSE
//! name`, which psycopg's named cursors (and SQLAlchemy's `stream_results`)
//! send to read a large result a slice at a time.
//!
//! Declaring starts the query; each `FETCH` takes its next rows from the
//! result stream as the cluster produces it, so a client holds one slice at a
//! time. Cursors only move forward (`NO SCROLL`, as PostgreSQL's default), and
//! live until closed or until their connection ends.

use std::collections::HashMap;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{
    CloseCursor, DeclareType, FetchDirection, Statement, Value, ValueWithSpan,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::StreamExt;
use pgwire::error::{PgWireError, PgWireResult};

use crate::Error;

/// A statement about a cursor.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorStatement {
    /// `DECLARE name CURSOR [WITH HOLD] FOR query`; `hold` keeps it open
    /// past the end of its transaction.
    Declare {
        name: String,
        query: String,
        hold: bool,
    },
    /// `FETCH [FORWARD] n FROM name`; `count` is `None` for `ALL`.
    Fetch { name: String, count: Option<usize> },
    /// `CLOSE name`, or `CLOSE ALL` (`None`).
    Close { name: Option<String> },
}

impl CursorStatement {
    /// `sql` as a statement about a cursor; `None` for anything else. A fetch
    /// that moves backwards or jumps is an error: cursors here only go forward.
    pub fn parse(sql: &str) -> Option<PgWireResult<Self>> {
        let first = sql.split_whitespace().next()?.to_ascii_uppercase();
        if !matches!(first.as_str(), "DECLARE" | "FETCH" | "CLOSE") {
            return None;
        }
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        let [statement] = statements.as_slice() else {
            return None;
        };
        Some(Ok(match statement {
            Statement::Declare { stmts } => {
                let [declare] = stmts.as_slice() else {
                    return None;
                };
                let (Some(DeclareType::Cursor), Some(query), Some(name)) = (
                    &declare.declare_type,
                    &declare.for_query,
                    declare.names.first(),
                ) else {
                    return None;
                };
                if declare.scroll == Some(true) {
                    return Some(Err(unsupported("SCROLL cursors")));
                }
                Self::Declare {
                    name: name.value.clone(),
                    query: query.to_string(),
                    hold: declare.hold == Some(true),
                }
            }
            Statement::Fetch {
                name, direction, ..
            } => {
                let count = match direction {
                    FetchDirection::Next | FetchDirection::Forward { limit: None } => Some(1),
                    FetchDirection::Count { limit }
                    | FetchDirection::Forward { limit: Some(limit) } => match rows(limit) {
                        Some(n) => Some(n),
                        None => return Some(Err(unsupported("a fetch of that count"))),
                    },
                    FetchDirection::All | FetchDirection::ForwardAll => None,
                    other => return Some(Err(unsupported(&format!("FETCH {other}")))),
                };
                Self::Fetch {
                    name: name.value.clone(),
                    count,
                }
            }
            Statement::Close { cursor } => Self::Close {
                name: match cursor {
                    CloseCursor::All => None,
                    CloseCursor::Specific { name } => Some(name.value.clone()),
                },
            },
            _ => return None,
        }))
    }
}

/// A row count written as a literal.
fn rows(limit: &ValueWithSpan) -> Option<usize> {
    match &limit.value {
        Value::Number(n, _) => n.parse().ok(),
        _ => None,
    }
}

/// One open cursor: its result, and the rows of a batch not yet fetched.
struct Cursor {
    batches: SendableRecordBatchStream,
    held: Option<RecordBatch>,
    /// Kept open past the end of its transaction (`WITH HOLD`).
    hold: bool,
}

/// A connection's cursors, by name. A cursor being fetched from is out of
/// the map until the fetch ends: a connection runs one statement at a time.
#[derive(Default)]
pub struct Cursors {
    open: parking_lot::Mutex<HashMap<String, Cursor>>,
}

impl Cursors {
    /// Opens `name` on the result `batches`; an error if it is open already.
    pub fn declare(
        &self,
        name: String,
        batches: SendableRecordBatchStream,
        hold: bool,
    ) -> PgWireResult<()> {
        let mut open = self.open.lock();
        if open.contains_key(&name) {
            return Err(error("42P03", format!("cursor \"{name}\" already exists")));
        }
        let cursor = Cursor {
            batches,
            held: None,
            hold,
        };
        open.insert(name, cursor);
        Ok(())
    }

    /// The schema of the rows `name` gives, if it is open.
    pub fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.open.lock().get(name).map(|c| c.batches.schema())
    }

    /// Closes the cursors of the transaction that ended, as PostgreSQL does:
    /// all but those declared `WITH HOLD`.
    pub fn end_transaction(&self) {
        self.open.lock().retain(|_, cursor| cursor.hold);
    }

    /// The next `count` rows of `name` (all that are left for `None`), fewer
    /// at its end; with the schema of its rows.
    pub async fn fetch(
        &self,
        name: &str,
        count: Option<usize>,
    ) -> PgWireResult<(SchemaRef, Vec<RecordBatch>)> {
        let mut cursor = self.open.lock().remove(name).ok_or_else(|| missing(name))?;
        let fetched = Self::next_rows(&mut cursor, count).await;
        self.open.lock().insert(name.to_string(), cursor);
        fetched
    }

    /// The next `count` rows of `cursor` (all for `None`).
    async fn next_rows(
        cursor: &mut Cursor,
        count: Option<usize>,
    ) -> PgWireResult<(SchemaRef, Vec<RecordBatch>)> {
        let schema = cursor.batches.schema();
        let mut wanted = count.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        while wanted > 0 {
            let batch = match cursor.held.take() {
                Some(batch) => batch,
                None => match cursor.batches.next().await {
                    Some(batch) => batch.map_err(|e| PgWireError::from(Error::from(e)))?,
                    None => break,
                },
            };
            if batch.num_rows() > wanted {
                cursor.held = Some(batch.slice(wanted, batch.num_rows() - wanted));
                out.push(batch.slice(0, wanted));
                break;
            }
            wanted -= batch.num_rows();
            out.push(batch);
        }
        Ok((schema, out))
    }

    /// Closes `name`, or every cursor for `None`; an error if `name` is not open.
    pub fn close(&self, name: Option<&str>) -> PgWireResult<()> {
        let mut open = self.open.lock();
        match name {
            None => open.clear(),
            Some(name) => {
                open.remove(name).ok_or_else(|| missing(name))?;
            }
        }
        Ok(())
    }
}

fn missing(name: &str) -> PgWireError {
    error("34000", format!("cursor \"{name}\" does not exist"))
}

pub fn unsupported(what: &str) -> PgWireError {
    error(
        "0A000",
        format!("{what}: rask's cursors only move forward, a slice at a time"),
    )
}

fn error(code: &str, message: String) -> PgWireError {
    super::refusal("ERROR", code, message)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::*;

    #[test]
    fn cursor_statements_are_recognised() {
        assert_eq!(
            CursorStatement::parse("DECLARE \"c\" CURSOR FOR SELECT 1").map(Result::unwrap),
            Some(CursorStatement::Declare {
                name: "c".into(),
                query: "SELECT 1".into(),
                hold: false
            })
        );
        assert_eq!(
            CursorStatement::parse("FETCH FORWARD 100 FROM \"c\"").map(Result::unwrap),
            Some(CursorStatement::Fetch {
                name: "c".into(),
                count: Some(100)
            })
        );
        assert_eq!(
            CursorStatement::parse("FETCH ALL FROM c").map(Result::unwrap),
            Some(CursorStatement::Fetch {
                name: "c".into(),
                count: None
            })
        );
        assert_eq!(
            CursorStatement::parse("CLOSE c").map(Result::unwrap),
            Some(CursorStatement::Close {
                name: Some("c".into())
            })
        );
        assert!(matches!(
            CursorStatement::parse("FETCH BACKWARD 1 FROM c"),
            Some(Err(_))
        ));
        assert!(CursorStatement::parse("SELECT 1").is_none());
    }

    #[tokio::test]
    async fn fetches_take_the_next_rows_across_batches() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = |range: std::ops::Range<i64>| {
            let column = Arc::new(Int64Array::from_iter_values(range));
            Ok(RecordBatch::try_new(Arc::clone(&schema), vec![column]).unwrap())
        };
        let batches = futures::stream::iter([batch(0..3), batch(3..5)]);
        let stream = Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), batches));
        let cursors = Cursors::default();
        cursors.declare("c".into(), stream, false).unwrap();
        let rows = |batches: Vec<RecordBatch>| batches.iter().map(|b| b.num_rows()).sum::<usize>();
        let (_, first) = cursors.fetch("c", Some(2)).await.unwrap();
        let (_, second) = cursors.fetch("c", Some(2)).await.unwrap();
        let (_, rest) = cursors.fetch("c", None).await.unwrap();
        assert_eq!((rows(first), rows(second), rows(rest)), (2, 2, 1));
        assert_eq!(rows(cursors.fetch("c", Some(5)).await.unwrap().1), 0);
        cursors.close(Some("c")).unwrap();
        assert!(cursors.fetch("c", Some(1)).await.is_err());
        let empty = RecordBatchStreamAdapter::new(Arc::clone(&schema), futures::stream::empty());
        cursors
            .declare("kept".into(), Box::pin(empty), true)
            .unwrap();
        let empty = RecordBatchStreamAdapter::new(schema, futures::stream::empty());
        cursors
            .declare("gone".into(), Box::pin(empty), false)
            .unwrap();
        cursors.end_transaction();
        assert!(cursors.schema("kept").is_some() && cursors.schema("gone").is_none());
    }
}
