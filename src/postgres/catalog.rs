//! What PostgreSQL clients ask of the catalog.
//!
//! psql's `\d` and `\dt`, JDBC's `DatabaseMetaData` and psycopg's type lookups
//! query `pg_catalog` (`pg_class`, `pg_attribute`, `format_type(…)`, …) in
//! PostgreSQL's own dialect (`OPERATOR(pg_catalog.~)`, `COLLATE
//! pg_catalog.default`, `'t'::regclass`). Both halves come from the
//! `datafusion-pg-catalog` crate: [`install`] adds the `pg_catalog` schema,
//! built from the session's own tables each time it is read, and its functions;
//! [`Dialect::rewrite`] turns such a query into one DataFusion plans.
//!
//! A statement that names the catalog (`pg_class`, `'t'::regclass`) is
//! planned rewritten; any other runs as written, and is rewritten only when
//! DataFusion refuses it ([`Dialect::plan`]), so user queries keep their exact
//! meaning and their error positions.

use std::future::Future;
use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use std::sync::{Arc, OnceLock};

use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt;
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use datafusion_pg_catalog::pg_catalog::{
    self as pg, PgCatalogSchemaProvider, PgCatalogStaticTables, array_bounds_udf, format_type,
    has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::{Error, Result};

/// Adds `pg_catalog` (tables and functions) to `ctx`, under its default
/// catalog: what the crate's `setup_pg_catalog` does, with the catalog's
/// static tables (`pg_type`, `pg_proc`, … shipped as compressed Arrow files)
/// decoded once per process rather than once per connection, which took
/// most of a connection's start.
pub fn install(ctx: &SessionContext) -> Result<()> {
    let catalog = default_catalog(ctx);
    let tables = static_tables()?;
    let schema = PgCatalogSchemaProvider::try_new(
        ctx.state().catalog_list().clone(),
        Arc::clone(&tables),
        EmptyContextProvider,
    )?;
    ctx.catalog(&catalog)
        .ok_or_else(|| {
            DataFusionError::Configuration(format!("no catalog {catalog} for pg_catalog"))
        })?
        .register_schema("pg_catalog", Arc::new(schema))?;
    for function in [
        pg::create_current_database_udf(&catalog),
        pg::create_current_schema_udf(),
        pg::create_current_schemas_udf(),
        pg::create_pg_get_userbyid_udf(),
        has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
        pg::create_pg_table_is_visible(),
        format_type::create_format_type_udf(),
        pg::create_session_user_udf(),
        pg_get_expr_udf::create_pg_get_expr_udf(),
        pg::create_pg_get_partkeydef_udf(),
        pg::create_pg_relation_is_publishable_udf(),
        pg::create_pg_get_statisticsobjdef_columns_udf(),
        pg::create_pg_encoding_to_char_udf(),
        pg::create_pg_backend_pid_udf(),
        pg::create_pg_relation_size_udf(),
        pg::create_pg_total_relation_size_udf(),
        pg::create_pg_stat_get_numscans(),
        pg::create_pg_get_constraintdef(),
        pg::create_pg_get_partition_ancestors_udf(),
        quote_ident_udf::create_quote_ident_udf(),
        quote_ident_udf::create_parse_ident_udf(),
        array_bounds_udf::create_array_upper_udf(),
        array_bounds_udf::create_array_lower_udf(),
    ] {
        ctx.register_udf(function);
    }
    ctx.register_udtf("pg_get_keywords", tables.pg_get_keywords.clone());
    // `regclass`, `regproc`, … as types, and int4 bounds for `generate_series`.
    let state = ctx.state_ref();
    let current = state.read().clone();
    *state.write() = SessionStateBuilder::new_from_existing(current)
        .with_type_planner(Arc::new(PgOidTypePlanner))
        .build();
    CoerceIntArgsToBigInt::widen(ctx);
    Ok(())
}

/// The catalog's static tables, decoded on first use.
fn static_tables() -> Result<Arc<PgCatalogStaticTables>> {
    static TABLES: OnceLock<std::result::Result<Arc<PgCatalogStaticTables>, String>> =
        OnceLock::new();
    TABLES
        .get_or_init(|| {
            PgCatalogStaticTables::try_new()
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| {
            Error::DataFusion(DataFusionError::Internal(format!(
                "cannot decode pg_catalog's tables: {e}"
            )))
        })
}

/// The name of `ctx`'s default catalog, where `pg_catalog` goes.
fn default_catalog(ctx: &SessionContext) -> String {
    ctx.state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone()
}

/// Takes `pg_catalog` out of `ctx` when its connection ends. Its schema holds
/// the session's catalog list, which holds it: until one lets go, neither
/// (nor the session's tables) is ever freed, a few MiB a connection. The
/// session's catalog cannot deregister a schema, so an empty one takes its place.
pub fn uninstall(ctx: &SessionContext) {
    let name = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    let empty = std::sync::Arc::new(datafusion::catalog::MemorySchemaProvider::new());
    if let Some(catalog) = ctx.catalog(&name)
        && let Err(e) = catalog.register_schema("pg_catalog", empty)
    {
        tracing::warn!("pg_catalog stays, and its session with it: {e}");
    }
}

/// PostgreSQL's dialect, as far as clients' catalog queries use it.
#[derive(Debug, Default)]
pub struct Dialect {
    parser: PostgresCompatibilityParser,
}

impl Dialect {
    /// `sql` rewritten into SQL DataFusion plans; `None` when it does not
    /// parse as PostgreSQL or is not one statement, or nothing changed.
    pub fn rewrite(&self, sql: &str) -> Option<String> {
        let mut statements = self.parser.parse(sql).ok()?;
        let [statement] = statements.as_mut_slice() else {
            return None;
        };
        let _ = statement.visit(&mut ToRegtype);
        let rewritten = statement.to_string();
        (rewritten != sql.trim()).then_some(rewritten)
    }

    /// Plans `sql` with `plan`. A statement that names `pg_catalog`'s objects
    /// (a `pg_` name, a `reg*` type) is planned rewritten first; any other as
    /// written first, and rewritten only when DataFusion refuses it. The error,
    /// when neither plans, is the one of `sql` as written, which points into it.
    pub async fn plan<T, F, Fut>(&self, sql: &str, plan: F) -> Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if names_the_catalog(sql)
            && let Some(rewritten) = self.rewrite(sql)
        {
            match plan(rewritten.clone()).await {
                Ok(planned) => {
                    tracing::debug!(%rewritten, "postgres: planned in PostgreSQL's dialect");
                    return Ok(planned);
                }
                Err(e) => tracing::debug!(%rewritten, "postgres: not planned rewritten: {e}"),
            }
            return plan(sql.to_string()).await;
        }
        let error = match plan(sql.to_string()).await {
            Ok(planned) => return Ok(planned),
            Err(error) => error,
        };
        let Some(rewritten) = self.rewrite(sql) else {
            return Err(error);
        };
        match plan(rewritten.clone()).await {
            Ok(planned) => {
                tracing::debug!(%rewritten, "postgres: planned in PostgreSQL's dialect");
                Ok(planned)
            }
            Err(second) => {
                tracing::debug!(%rewritten, "postgres: not planned rewritten either: {second}");
                Err(error)
            }
        }
    }
}

/// Whether `sql` names `pg_catalog`'s tables, functions or `reg*` types, whose
/// meaning only the rewrite gets right (`'t'::regclass` plans as written, as a
/// cast of a name to an integer, and fails when it runs).
fn names_the_catalog(sql: &str) -> bool {
    const REG_TYPES: [&str; 7] = [
        "regclass",
        "regtype",
        "regproc",
        "regprocedure",
        "regnamespace",
        "regrole",
        "regoper",
    ];
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return false;
    };
    tokens.iter().any(|token| match token {
        Token::Word(word) => {
            let name = word.value.to_ascii_lowercase();
            name.starts_with("pg_") || REG_TYPES.contains(&name.as_str())
        }
        _ => false,
    })
}

/// `to_regtype(name)` (psycopg's `TypeInfo.fetch`) as the oid of the type of
/// that name in `pg_type`.
struct ToRegtype;

impl VisitorMut for ToRegtype {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr
            && function
                .name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .is_some_and(|name| name.value.eq_ignore_ascii_case("to_regtype"))
            && let FunctionArguments::List(list) = &function.args
            && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(name))] = list.args.as_slice()
        {
            let lookup = format!("(SELECT oid FROM pg_catalog.pg_type WHERE typname = {name})");
            if let Ok(lookup) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&lookup)
                .and_then(|mut parser| parser.parse_expr())
            {
                *expr = lookup;
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_operators_and_collations_are_rewritten() {
        let dialect = Dialect::default();
        let sql = "SELECT c.relname FROM pg_catalog.pg_class c \
                   WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default";
        let rewritten = dialect.rewrite(sql).unwrap();
        assert!(!rewritten.contains("OPERATOR"), "{rewritten}");
        assert!(!rewritten.contains("COLLATE"), "{rewritten}");
        assert_eq!(dialect.rewrite("SELECT 1"), None);
        assert!(names_the_catalog("SELECT 'people'::regclass::oid"));
        assert!(names_the_catalog("SELECT relname FROM PG_CLASS"));
        assert!(!names_the_catalog("SELECT 'pg_class' AS name FROM t"));
        let lookup = dialect
            .rewrite("SELECT oid FROM pg_type t WHERE t.oid = to_regtype($1)")
            .unwrap();
        assert!(lookup.contains("WHERE typname = $1"), "{lookup}");
        assert_eq!(dialect.rewrite("SELECT (("), None);
    }

    #[tokio::test]
    async fn the_catalog_lists_the_sessions_tables() {
        let ctx = SessionContext::new();
        install(&ctx).unwrap();
        ctx.sql("CREATE TABLE people AS VALUES (1, 'Alice')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let dialect = Dialect::default();
        let sql = "SELECT c.relname FROM pg_catalog.pg_class c \
                   WHERE c.relname OPERATOR(pg_catalog.~) '^(people)$' COLLATE pg_catalog.default";
        let frame = dialect
            .plan(sql, |sql| {
                let ctx = ctx.clone();
                async move { Ok(ctx.sql(&sql).await?) }
            })
            .await
            .unwrap();
        let batches = frame.collect().await.unwrap();
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(shown.contains("people"), "{shown}");
    }
}
