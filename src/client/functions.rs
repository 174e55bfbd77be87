//! Tasks that call user functions run only on workers that announced every
//! registered function they call (the scheduler matches them by name, so a
//! worker restarted under a new id serves them too). A task no worker can run
//! is refused before it is submitted, naming the function.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, LazyLock};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;

use crate::exec::MapPartitionsExec;

use super::WorkerInfo;
use crate::udf::Registry;

/// The registry's scalar UDFs and partition functions that `plan` calls.
pub(crate) fn udfs_in(plan: &Arc<dyn ExecutionPlan>, registry: &Registry) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    // Walking plans and expressions cannot fail: the closures never err.
    let _ = plan.apply(|node| {
        if let Some(map) = node.downcast_ref::<MapPartitionsExec>()
            && registry.partition(map.function().name()).is_some()
        {
            found.insert(map.function().name().to_string());
        }
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

/// The scalar functions every worker's session has: DataFusion's own.
static BUILT_IN: LazyLock<HashSet<String>> = LazyLock::new(|| {
    datafusion::execution::session_state::SessionStateBuilder::new()
        .with_default_features()
        .build()
        .scalar_functions()
        .keys()
        .cloned()
        .collect()
});

/// A scalar function `plan` calls that no worker's session has: one added to
/// this client's session alone (as `pg_catalog`'s are), neither DataFusion's
/// nor the registry's. Such a plan runs in the client.
pub(crate) fn session_only(plan: &Arc<dyn ExecutionPlan>, registry: &Registry) -> Option<String> {
    let mut found = None;
    // Walking plans and expressions cannot fail: the closures never err.
    let _ = plan.apply(|node| {
        node.apply_expressions(&mut |expr| {
            expr.apply(|e| {
                if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>()
                    && !BUILT_IN.contains(f.name())
                    && !registry.has_scalar(f.name())
                {
                    found = Some(f.name().to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// Checks that some worker carries every function of `names` (the scheduler
/// then runs the task only on such workers); `Err` names a function no worker
/// has, or says that none has them all.
pub(crate) fn check_carried(
    names: &BTreeSet<String>,
    workers: &[WorkerInfo],
) -> Result<(), crate::Error> {
    if names.is_empty() {
        return Ok(());
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
    if !workers
        .iter()
        .any(|w| names.iter().all(|n| w.functions.contains(n)))
    {
        let list = names.iter().cloned().collect::<Vec<_>>().join(", ");
        return Err(crate::Error::Config(format!(
            "no worker of the cluster carries all of {list} at once"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: crate::scheduler::WorkerId, functions: &[&str]) -> WorkerInfo {
        WorkerInfo {
            id,
            name: format!("w{id}"),
            address: String::new(),
            nthreads: 1,
            memory_limit: None,
            functions: functions.iter().map(|f| f.to_string()).collect(),
            local_directory: String::new(),
            pid: None,
            nanny: None,
        }
    }

    #[test]
    fn a_function_no_worker_carries_is_refused() {
        let names: BTreeSet<String> = ["square".to_string()].into();
        let all = [worker(0, &["square"]), worker(1, &["square", "add"])];
        assert!(check_carried(&names, &all).is_ok());
        let some = [worker(0, &[]), worker(1, &["square"])];
        assert!(check_carried(&names, &some).is_ok());
        let both: BTreeSet<String> = ["square".to_string(), "add".to_string()].into();
        let apart = [worker(0, &["add"]), worker(1, &["square"])];
        let err = check_carried(&both, &apart).unwrap_err();
        assert!(
            err.to_string().contains("carries all of add, square"),
            "{err}"
        );
        let err = check_carried(&names, &[worker(0, &["add"])]).unwrap_err();
        assert!(
            err.to_string()
                .contains("function square is not registered on any of the 1 workers"),
            "{err}"
        );
        assert!(check_carried(&BTreeSet::new(), &[]).is_ok());
    }
}
