//! When `rask query --scheduler` lets the scheduler plan.
//!
//! A short-lived client spends most of its time building a session and
//! planning cold: the scheduler keeps one warm, as its PostgreSQL port does
//! (see [`rask::SchedulerSql`]). So `rask query --scheduler` sends each
//! statement there and prints the rows that come back, unless something
//! needs the plan in this process: `--explain`, `--visualize`, `--report`,
//! a progress bar, functions this binary registers, `--plan-here`, a
//! relative path in the SQL (it names a file in this folder, and the
//! scheduler's folder is another), or SQL that writes files (what a client
//! writes lands on its machine).

use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast;
use rask::datafusion;
use rask::internals::planner::script::substitute;

use crate::args::{QueryArgs, RunArgs};

/// The scheduler to send each statement of `sources` to, if it may plan
/// them all (see the module's doc).
pub fn plans_each_statement<'a>(
    run: &'a RunArgs,
    query: &QueryArgs,
    registry: &rask::udf::Registry,
    sources: &[(String, String)],
) -> Option<&'a str> {
    let address = run.scheduler.as_deref()?;
    let here = query.plan_here
        || query.explain
        || query.visualize.is_some()
        || query.report.is_some()
        || crate::runner::draws_progress(run)
        || !registry.names().is_empty();
    if here {
        return None;
    }
    let variables = query.variables.iter().cloned().collect();
    let relative = sources.iter().any(|(_, text)| {
        let substituted = substitute(text, &variables);
        needs_this_process(substituted.as_deref().unwrap_or(text))
    });
    (!relative).then_some(address)
}

/// Whether `sql` is to be planned in this process: it names a file by a
/// relative path, or writes files (`COPY … TO`, `INSERT`: what a client
/// writes lands where it runs), or cannot be parsed (its error is then
/// placed by this process, as always).
fn needs_this_process(sql: &str) -> bool {
    let Ok(statements) = DFParser::parse_sql(sql) else {
        return true;
    };
    statements.iter().any(|statement| {
        let locations: Vec<&str> = match statement {
            Statement::CreateExternalTable(create) => {
                create.locations.iter().map(String::as_str).collect()
            }
            Statement::CopyTo(_) => return true,
            Statement::Statement(inner) if matches!(**inner, ast::Statement::Insert(_)) => {
                return true;
            }
            _ => Vec::new(),
        };
        // A table name that is not a registered table is read as a path
        // (`FROM 'data/t.parquet'`): one with a dot or a slash may be.
        let tables = match resolve_table_references(statement, true) {
            Ok((tables, _)) => tables,
            Err(_) => return true,
        };
        locations.into_iter().any(is_relative)
            || tables
                .iter()
                .map(|table| table.table())
                .filter(|name| name.contains(['.', '/', '\\']))
                .any(is_relative)
    })
}

/// Whether `location` is a path relative to the working folder (not
/// absolute, not a URL).
fn is_relative(location: &str) -> bool {
    !location.starts_with('/') && !location.contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_and_writes_keep_planning_here() {
        let scheduler = [
            "SELECT 1",
            "SELECT count(*) FROM t WHERE x > 0.5",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/data/t.parquet'",
            "SELECT * FROM '/data/t.parquet'",
            "SELECT * FROM 's3://bucket/t.parquet'",
            "SELECT * FROM public.t",
            "CREATE TABLE small AS SELECT 1 AS one",
        ];
        for sql in scheduler {
            assert!(!needs_this_process(sql), "{sql}");
        }
        let here = [
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 'data/t.csv'",
            "SELECT * FROM 'data/t.parquet'",
            "SELECT * FROM \"t.parquet\"",
            "COPY (SELECT 1) TO 'out.parquet'",
            "COPY (SELECT 1) TO '/data/out.parquet'",
            "INSERT INTO t VALUES (1)",
            "SELECT * FROM (SELECT * FROM 'a/b.csv') JOIN t USING (id)",
            "SELEC 1",
        ];
        for sql in here {
            assert!(needs_this_process(sql), "{sql}");
        }
    }
}
