//! Uncorrelated scalar subqueries (`… HAVING sum(v) > (SELECT sum(v) * 0.0001 …)`)
//! on the cluster.
//!
//! DataFusion runs them inside the query: a `ScalarSubqueryExec` computes each
//! subquery before its input runs and fills a container its
//! `ScalarSubqueryExpr`s read. Cut into stages, those expressions would run in
//! tasks (and processes) the filling never reaches. So the subqueries run
//! first, each as a query of its own on the cluster; their values fill the
//! container, the `ScalarSubqueryExec` is dropped, and the expressions carry
//! the values with their stage (`comm::codec` sends them along).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::scalar_subquery::ScalarSubqueryExec;
use futures::future::BoxFuture;

/// How a plan runs on the cluster (cut into stages), as the query planner lowers it.
pub(crate) type Lower<'a> =
    dyn Fn(Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> + Send + Sync + 'a;

/// `plan` with its uncorrelated scalar subqueries computed (each lowered by
/// `lower` and run) and their `ScalarSubqueryExec` nodes removed.
pub(crate) fn resolve<'a>(
    plan: Arc<dyn ExecutionPlan>,
    lower: &'a Lower<'a>,
    session: &'a dyn Session,
) -> BoxFuture<'a, Result<Arc<dyn ExecutionPlan>>> {
    Box::pin(async move {
        let mut found = Vec::new();
        outermost(&plan, &mut found);
        if found.is_empty() {
            return Ok(plan);
        }
        for node in &found {
            let Some(exec) = node.downcast_ref::<ScalarSubqueryExec>() else {
                continue;
            };
            for link in exec.subqueries() {
                // A subquery may hold subqueries of its own.
                let subquery = resolve(Arc::clone(&link.plan), lower, session).await?;
                let schema = subquery.schema();
                let lowered = lower(subquery)?;
                let batches =
                    datafusion::physical_plan::collect(lowered, session.task_ctx()).await?;
                exec.results()
                    .set(link.index, single_value(&batches, &schema)?)?;
            }
        }
        plan.transform_up(|node| match node.downcast_ref::<ScalarSubqueryExec>() {
            Some(exec) => Ok(Transformed::yes(Arc::clone(exec.input()))),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    })
}

/// The `ScalarSubqueryExec` nodes of `plan` not inside another one's subqueries.
fn outermost(plan: &Arc<dyn ExecutionPlan>, found: &mut Vec<Arc<dyn ExecutionPlan>>) {
    if let Some(exec) = plan.downcast_ref::<ScalarSubqueryExec>() {
        found.push(Arc::clone(plan));
        return outermost(exec.input(), found);
    }
    for child in plan.children() {
        outermost(child, found);
    }
}

/// The one value a scalar subquery returned: null for no row, an error for several.
fn single_value(batches: &[RecordBatch], schema: &SchemaRef) -> Result<ScalarValue> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    match (rows, batches.iter().find(|b| b.num_rows() > 0)) {
        (0, _) | (_, None) => match schema.fields().first() {
            Some(field) => ScalarValue::try_from(field.data_type()),
            None => exec_err!("a scalar subquery returned no column"),
        },
        (1, Some(batch)) => ScalarValue::try_from_array(batch.column(0), 0),
        (n, _) => exec_err!("a scalar subquery returned {n} rows; it must return at most one"),
    }
}
