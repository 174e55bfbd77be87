//! Where tasks that call user functions may run: only on workers that announced
//! every registered function they call. A task no worker can run is refused
//! before it is submitted, naming the function.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;

use super::WorkerInfo;
use crate::scheduler::WorkerId;
use crate::udf::Registry;

/// The registry's scalar UDFs that `plan` calls.
pub(crate) fn udfs_in(plan: &Arc<dyn ExecutionPlan>, registry: &Registry) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    // Walking plans and expressions cannot fail: the closures never err.
    let _ = plan.apply(|node| {
        node.apply_expressions(&mut |expr| {
            expr.apply(|e| {
                if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>()
                    && registry.has_scalar(f.name())
                {
                    found.insert(f.name().to_string());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The workers a task calling `names` may run on: `None` when any may (all
/// announced them, or it calls none); `Err` names a function no worker has.
pub(crate) fn workers_with(
    names: &BTreeSet<String>,
    workers: &[WorkerInfo],
) -> Result<Option<Vec<WorkerId>>, crate::Error> {
    if names.is_empty() {
        return Ok(None);
    }
    if let Some(missing) = names
        .iter()
        .find(|name| !workers.iter().any(|w| w.functions.contains(name)))
    {
        return Err(crate::Error::Config(format!(
            "function {missing} is not registered on any of the {} workers of the cluster; \
             start the workers with a binary that registers it (rask_cli::main_with)",
            workers.len()
        )));
    }
    let able: Vec<WorkerId> = workers
        .iter()
        .filter(|w| names.iter().all(|n| w.functions.contains(n)))
        .map(|w| w.id)
        .collect();
    if able.is_empty() {
        let list = names.iter().cloned().collect::<Vec<_>>().join(", ");
        return Err(crate::Error::Config(format!(
            "no worker of the cluster carries all of {list} at once"
        )));
    }
    Ok((able.len() < workers.len()).then_some(able))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: WorkerId, functions: &[&str]) -> WorkerInfo {
        WorkerInfo {
            id,
            name: format!("w{id}"),
            address: String::new(),
            nthreads: 1,
            memory_limit: None,
            functions: functions.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn tasks_go_where_their_functions_are() {
        let names: BTreeSet<String> = ["square".to_string()].into();
        let all = [worker(0, &["square"]), worker(1, &["square", "add"])];
        assert_eq!(workers_with(&names, &all).unwrap(), None);
        let some = [worker(0, &[]), worker(1, &["square"])];
        assert_eq!(workers_with(&names, &some).unwrap(), Some(vec![1]));
        let err = workers_with(&names, &[worker(0, &["add"])]).unwrap_err();
        assert!(
            err.to_string()
                .contains("function square is not registered on any of the 1 workers"),
            "{err}"
        );
        assert_eq!(workers_with(&BTreeSet::new(), &[]).unwrap(), None);
    }
}
