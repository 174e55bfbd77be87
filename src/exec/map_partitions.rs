//! `map_partitions`: a [`PartitionFn`] over every batch of its input, as a
//! logical node ([`MapPartitionsNode`]), its physical operator
//! ([`MapPartitionsExec`]) and the planner that makes one from the other
//! ([`MapPartitionsPlanner`]). The operator keeps its input's partitions, so
//! it runs inside the tasks of its input's stage.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

use crate::udf::PartitionFn;

/// `function` over `input`, in a logical plan.
#[derive(Debug, Clone)]
pub struct MapPartitionsNode {
    input: LogicalPlan,
    function: PartitionFn,
    schema: DFSchemaRef,
}

impl MapPartitionsNode {
    /// The node, its output schema found from `function` (declared, or its
    /// result on an empty batch).
    pub fn try_new(input: LogicalPlan, function: PartitionFn) -> Result<Self> {
        let input_schema: SchemaRef = Arc::new(input.schema().as_arrow().clone());
        let output = function
            .output_schema(&input_schema)
            .map_err(|e| DataFusionError::Plan(format!("cannot find what it returns: {e}")))?;
        let schema = Arc::new(DFSchema::try_from(output.as_ref().clone())?);
        Ok(Self {
            input,
            function,
            schema,
        })
    }
}

impl PartialEq for MapPartitionsNode {
    fn eq(&self, other: &Self) -> bool {
        self.function.name() == other.function.name() && self.input == other.input
    }
}

impl Eq for MapPartitionsNode {}

impl PartialOrd for MapPartitionsNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.function.name().cmp(other.function.name()) {
            Ordering::Equal => self.input.partial_cmp(&other.input),
            order => Some(order),
        }
    }
}

impl Hash for MapPartitionsNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.function.name().hash(state);
        self.input.hash(state);
    }
}

impl UserDefinedLogicalNodeCore for MapPartitionsNode {
    fn name(&self) -> &str {
        "MapPartitions"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MapPartitions: {}", self.function.name())
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let Some(input) = inputs.pop() else {
            return internal_err!("MapPartitions takes one input");
        };
        Ok(Self {
            input,
            function: self.function.clone(),
            schema: Arc::clone(&self.schema),
        })
    }
}

/// Runs `function` on each batch of each partition of `input`.
#[derive(Debug)]
pub struct MapPartitionsExec {
    input: Arc<dyn ExecutionPlan>,
    function: PartitionFn,
    properties: Arc<PlanProperties>,
}

impl MapPartitionsExec {
    /// `function` over `input`, producing batches of `schema`.
    pub fn new(input: Arc<dyn ExecutionPlan>, function: PartitionFn, schema: SchemaRef) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            input,
            function,
            properties: Arc::new(properties),
        }
    }

    /// The function.
    pub fn function(&self) -> &PartitionFn {
        &self.function
    }
}

impl DisplayAs for MapPartitionsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MapPartitionsExec: {}", self.function.name())
    }
}

impl ExecutionPlan for MapPartitionsExec {
    fn name(&self) -> &'static str {
        "MapPartitionsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: datafusion::physical_plan::ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(input) = children.pop() else {
            return internal_err!("MapPartitionsExec takes one input");
        };
        Ok(Arc::new(Self::new(
            input,
            self.function.clone(),
            self.schema(),
        )))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            datafusion::physical_plan::ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let function = self.function.clone();
        let schema = self.schema();
        let expected = Arc::clone(&schema);
        let batches = input.map(move |batch| {
            let out = function
                .call(batch?)
                .map_err(DataFusionError::Execution)?;
            if out.schema().fields() != expected.fields() {
                return Err(DataFusionError::Execution(format!(
                    "map_partitions {}: returned columns {:?}, not the {:?} it returned for an empty batch (declare them with PartitionFn::with_schema)",
                    function.name(),
                    names(&out.schema()),
                    names(&expected)
                )));
            }
            Ok(out)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

fn names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Plans a [`MapPartitionsNode`] as a [`MapPartitionsExec`].
#[derive(Debug, Default)]
pub struct MapPartitionsPlanner;

#[async_trait]
impl ExtensionPlanner for MapPartitionsPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session_state: &dyn Session,
        _planning: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<MapPartitionsNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return internal_err!("MapPartitions takes one input");
        };
        let schema = Arc::new(node.schema.as_arrow().clone());
        Ok(Some(Arc::new(MapPartitionsExec::new(
            Arc::clone(input),
            node.function.clone(),
            schema,
        ))))
    }
}
