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

/// The scalar functions every worker's session has: DataFusion's own, by
/// name and alias (as a session registers them, without building one).
static BUILT_IN: LazyLock<HashSet<String>> = LazyLock::new(|| {
    datafusion::execution::SessionStateDefaults::default_scalar_functions()
        .iter()
        .flat_map(|f| std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)))
        .map(str::to_string)
        .collect()
});

/// A scalar function of this client's session alone: neither DataFusion's nor
/// the registry's.
pub(crate) struct SessionOnly {
    /// Its name.
    pub name: String,
    /// Whether it is a closure of this program (`udf::scalar`, as `apply`
    /// takes), rather than one a library added to the session (`pg_catalog`'s).
    pub closure: bool,
}

/// A scalar function `plan` calls that no worker's session has: one added to
/// this client's session alone, neither DataFusion's nor the registry's.
pub(crate) fn session_only(
    plan: &Arc<dyn ExecutionPlan>,
    registry: &Registry,
) -> Option<SessionOnly> {
    let mut found = None;
    // Walking plans and expressions cannot fail: the closures never err.
    let _ = plan.apply(|node| {
        node.apply_expressions(&mut |expr| {
            expr.apply(|e| {
                if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>()
                    && !BUILT_IN.contains(f.name())
                    && !registry.has_scalar(f.name())
                {
                    found = Some(SessionOnly {
                        name: f.name().to_string(),
                        closure: crate::udf::is_closure(f.fun()),
                    });
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_functions_are_those_of_a_default_session() {
        let session = datafusion::execution::session_state::SessionStateBuilder::new()
            .with_default_features()
            .build();
        let registered: HashSet<String> = session.scalar_functions().keys().cloned().collect();
        assert_eq!(*BUILT_IN, registered);
    }
}
