//! `map_partitions`: a [`PartitionFn`] over every partition of its input (or,
//! for `map_batches`, every batch as it streams), as a logical node
//! ([`MapPartitionsNode`]), its physical operator ([`MapPartitionsExec`]) and
//! the planner that makes one from the other ([`MapPartitionsPlanner`]). The
//! operator keeps its input's partitions, so it runs inside the tasks of its
//! input's stage.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::{
    DFSchema, DFSchemaRef, DataFusionError, Result, internal_datafusion_err, internal_err,
};
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
use futures::{StreamExt, TryStreamExt};

use super::{PersistedPartitions, TaskData, TaskInputs};

use super::PartitionFn;

/// What a [`PartitionFn`] is called on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum MapUnit {
    /// Each partition whole, its batches concatenated: Dask's
    /// `map_partitions` contract (a function may sort, deduplicate or keep a
    /// running total within its partition).
    #[default]
    Partition,
    /// Each batch as the partition streams (about 8,192 rows), holding no
    /// more than one: for functions of single rows, over partitions too big
    /// to hold.
    Batch,
}

/// `function` over `input`, in a logical plan.
#[derive(Debug, Clone)]
pub struct MapPartitionsNode {
    input: LogicalPlan,
    function: PartitionFn,
    unit: MapUnit,
    schema: DFSchemaRef,
    /// The value passed to the function besides each batch: a future's result.
    argument: Option<Arc<dyn PersistedPartitions>>,
}

impl MapPartitionsNode {
    /// The node, its output schema found from `function` (declared, or its
    /// result on an empty batch).
    pub fn try_new(input: LogicalPlan, function: PartitionFn, unit: MapUnit) -> Result<Self> {
        Self::try_with_argument(input, function, None, unit)
    }

    /// The node with `argument` (its one partition the value, `sample` that
    /// value as read now) passed to `function` besides each batch.
    pub fn try_with_argument(
        input: LogicalPlan,
        function: PartitionFn,
        argument: Option<(Arc<dyn PersistedPartitions>, Arc<TaskData>)>,
        unit: MapUnit,
    ) -> Result<Self> {
        let input_schema: SchemaRef = Arc::new(input.schema().as_arrow().clone());
        let output = function
            .output_schema(
                &input_schema,
                argument.as_ref().map(|(_, data)| data.as_ref()),
            )
            .map_err(|e| DataFusionError::Plan(format!("cannot find what it returns: {e}")))?;
        let schema = Arc::new(DFSchema::try_from(output.as_ref().clone())?);
        Ok(Self {
            input,
            function,
            unit,
            schema,
            argument: argument.map(|(partitions, _)| partitions),
        })
    }

    fn argument_key(&self) -> Option<&crate::key::Key> {
        self.argument.as_ref().and_then(|a| a.keys().first())
    }
}

impl PartialEq for MapPartitionsNode {
    fn eq(&self, other: &Self) -> bool {
        self.function.name() == other.function.name()
            && self.unit == other.unit
            && self.argument_key() == other.argument_key()
            && self.input == other.input
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
        self.unit.hash(state);
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
        write!(
            f,
            "MapPartitions: {}{}",
            self.function.name(),
            self.unit.suffix()
        )
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
            unit: self.unit,
            schema: Arc::clone(&self.schema),
            argument: self.argument.clone(),
        })
    }
}

/// Where a [`MapPartitionsExec`] reads its function's argument.
#[derive(Debug, Clone)]
pub enum MapArgument {
    /// From the cluster, through the future behind it (a plan in the client).
    Partitions(Arc<dyn PersistedPartitions>),
    /// From the task's inputs, as input `i` (a plan cut into stages).
    Input(usize),
}

impl MapUnit {
    /// How listings tell the per-batch form apart.
    fn suffix(self) -> &'static str {
        match self {
            MapUnit::Partition => "",
            MapUnit::Batch => " (per batch)",
        }
    }
}

/// Runs `function` on each partition of `input`, or each batch.
#[derive(Debug)]
pub struct MapPartitionsExec {
    input: Arc<dyn ExecutionPlan>,
    function: PartitionFn,
    unit: MapUnit,
    properties: Arc<PlanProperties>,
    argument: Option<MapArgument>,
}

impl MapPartitionsExec {
    /// `function` over each `unit` of `input`, producing batches of
    /// `schema`, also given `argument`'s value if there is one.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        function: PartitionFn,
        unit: MapUnit,
        schema: SchemaRef,
        argument: Option<MapArgument>,
    ) -> Self {
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
            unit,
            properties: Arc::new(properties),
            argument,
        }
    }

    /// What the function is called on.
    pub fn unit(&self) -> MapUnit {
        self.unit
    }

    /// The function.
    pub fn function(&self) -> &PartitionFn {
        &self.function
    }

    /// Where the function's argument comes from, if it takes one.
    pub fn argument(&self) -> Option<&MapArgument> {
        self.argument.as_ref()
    }

    /// The same node reading its argument as task input `input`.
    pub fn reading_argument_as(&self, input: usize) -> Self {
        Self::new(
            Arc::clone(&self.input),
            self.function.clone(),
            self.unit,
            self.schema(),
            Some(MapArgument::Input(input)),
        )
    }
}

impl DisplayAs for MapPartitionsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "MapPartitionsExec: {}{}",
            self.function.name(),
            self.unit.suffix()
        )
    }
}

impl ExecutionPlan for MapPartitionsExec {
    fn name(&self) -> &'static str {
        "MapPartitionsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    super::single_input_methods!(input);

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
            self.unit,
            self.schema(),
            self.argument.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let argument = self.argument_data(&context)?;
        let input_schema = self.input.schema();
        let input = self.input.execute(partition, context)?;
        let function = self.function.clone();
        let schema = self.schema();
        let expected = Arc::clone(&schema);
        let stream: futures::stream::BoxStream<'static, Result<RecordBatch>> =
            match self.unit {
                MapUnit::Batch => futures::stream::once(async move {
                    let argument = argument.await?;
                    Ok::<_, DataFusionError>(input.map(move |batch| {
                        map_batch(&function, batch?, argument.as_deref(), &expected)
                    }))
                })
                .try_flatten()
                .boxed(),
                // The whole partition, as one batch: the function sees all its rows.
                MapUnit::Partition => futures::stream::once(async move {
                    let argument = argument.await?;
                    let batches: Vec<RecordBatch> = input.try_collect().await?;
                    let whole = concat_batches(&input_schema, &batches)?;
                    drop(batches);
                    map_batch(&function, whole, argument.as_deref(), &expected)
                })
                .boxed(),
            };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

impl MapPartitionsExec {
    /// The argument's value, read once per partition run (in place when this
    /// process holds it).
    fn argument_data(
        &self,
        context: &Arc<TaskContext>,
    ) -> Result<futures::future::BoxFuture<'static, Result<Option<Arc<TaskData>>>>> {
        Ok(match &self.argument {
            None => Box::pin(std::future::ready(Ok(None))),
            Some(MapArgument::Partitions(partitions)) => {
                let data = partitions.data(0);
                Box::pin(async move { data.await.map(Some) })
            }
            Some(MapArgument::Input(input)) => {
                let inputs = context
                    .session_config()
                    .get_extension::<TaskInputs>()
                    .ok_or_else(|| internal_datafusion_err!("the task's inputs are missing"))?;
                let source = inputs
                    .stage(*input)
                    .and_then(|s| s.first().cloned())
                    .ok_or_else(|| {
                        internal_datafusion_err!("the argument input {input} is missing")
                    })?;
                Box::pin(async move {
                    source
                        .data()
                        .await
                        .map(Some)
                        .map_err(|e| DataFusionError::External(Box::new(e)))
                })
            }
        })
    }
}

/// `function` on one batch, its output checked against `expected`.
fn map_batch(
    function: &PartitionFn,
    batch: RecordBatch,
    argument: Option<&TaskData>,
    expected: &SchemaRef,
) -> Result<RecordBatch> {
    let out = function
        .call_with(batch, argument)
        .map_err(DataFusionError::Execution)?;
    if out.schema().fields() != expected.fields() {
        return Err(DataFusionError::Execution(format!(
            "map_partitions {}: returned columns {:?}, not the {:?} it returned for an empty batch (declare them with PartitionFn::with_schema)",
            function.name(),
            names(&out.schema()),
            names(expected)
        )));
    }
    Ok(out)
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
            node.unit,
            schema,
            node.argument.clone().map(MapArgument::Partitions),
        ))))
    }
}
