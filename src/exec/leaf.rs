//! The `ExecutionPlan` methods that every leaf node, and every node of one
//! input, writes the same way.

/// Expands to the `apply_expressions` (none of its own) and
/// `with_new_children` (through `replace_children`) methods every rask node
/// writes alike.
macro_rules! plain_node_methods {
    () => {
        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
            ) -> datafusion::common::Result<datafusion::common::tree_node::TreeNodeRecursion>,
        ) -> datafusion::common::Result<datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }

        fn with_new_children(
            self: std::sync::Arc<Self>,
            children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
        ) -> datafusion::common::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            self.replace_children(
                children,
                datafusion::physical_plan::ReplaceChildrenOptions::new(
                    datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
                ),
            )
        }
    };
}

pub(crate) use plain_node_methods;

/// Expands to the `children`, `apply_expressions`, `replace_children` and
/// `with_new_children` methods of an `ExecutionPlan` with no children and no
/// expressions of its own.
macro_rules! leaf_node_methods {
    () => {
        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            vec![]
        }

        fn replace_children(
            self: std::sync::Arc<Self>,
            _children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
            _options: datafusion::physical_plan::ReplaceChildrenOptions,
        ) -> datafusion::common::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            Ok(self)
        }

        $crate::exec::plain_node_methods!();
    };
}

pub(crate) use leaf_node_methods;

/// Expands to the `children`, `apply_expressions` and `with_new_children`
/// methods of an `ExecutionPlan` whose one child is its field `$input` and
/// which has no expressions of its own (`replace_children` is the node's).
macro_rules! single_input_methods {
    ($input:ident) => {
        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            vec![&self.$input]
        }

        $crate::exec::plain_node_methods!();
    };
}

pub(crate) use single_input_methods;
