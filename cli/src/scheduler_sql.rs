//! When `rask query --scheduler` lets the scheduler plan.
//!
//! A short-lived client spends most of its time building a session and
//! planning cold: the scheduler keeps one warm, as its PostgreSQL port does
//! (see [`rask::SchedulerSql`]). So `rask query --scheduler` sends each
//! statement there and prints the rows that come back, unless something
//! needs the plan in this process: `--explain`, `--visualize`, `--report`,
//! a progress bar, functions this binary registers, `--plan-here`, or a
//! relative path in the SQL (it names a file in this folder, and the
//! scheduler's folder is another).

use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::resolve::resolve_table_references;
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
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !run.no_progress;
    let here = query.plan_here
        || query.explain
        || query.visualize.is_some()
        || query.report.is_some()
        || progress
        || !registry.names().is_empty();
    if here {
        return None;
    }
    let variables = query.variables.iter().cloned().collect();
    let relative = sources.iter().any(|(_, text)| {
        let substituted = substitute(text, &variables);
        names_a_relative_path(substituted.as_deref().unwrap_or(text))
    });
    (!relative).then_some(address)
}

/// Whether `sql` names a file by a relative path (or cannot be parsed, so
/// that its error is placed by this process, as always).
fn names_a_relative_path(sql: &str) -> bool {
    let Ok(statements) = DFParser::parse_sql(sql) else {
        return true;
    };
    statements.iter().any(|statement| {
        let locations: Vec<&str> = match statement {
            Statement::CreateExternalTable(create) => {
                create.locations.iter().map(String::as_str).collect()
            }
            Statement::CopyTo(copy) => vec![copy.target.as_str()],
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
    fn relative_paths_keep_planning_here() {
        let absolute = [
            "SELECT 1",
            "SELECT count(*) FROM t WHERE x > 0.5",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/data/t.parquet'",
            "SELECT * FROM '/data/t.parquet'",
            "COPY (SELECT 1) TO 's3://bucket/out.parquet'",
            "SELECT * FROM public.t",
        ];
        for sql in absolute {
            assert!(!names_a_relative_path(sql), "{sql}");
        }
        let relative = [
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 'data/t.csv'",
            "SELECT * FROM 'data/t.parquet'",
            "SELECT * FROM \"t.parquet\"",
            "COPY (SELECT 1) TO 'out.parquet'",
            "SELECT * FROM (SELECT * FROM 'a/b.csv') JOIN t USING (id)",
            "SELEC 1",
        ];
        for sql in relative {
            assert!(names_a_relative_path(sql), "{sql}");
        }
    }
}
