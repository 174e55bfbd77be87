//! Persisted partitions: results kept in the workers' memory under their keys,
//! read by later queries as a table ([`PersistedTable`], [`PersistedExec`]).
//!
//! A persisted frame's plan is a scan of these partitions. When it is cut into
//! stages, the cutter puts a [`StageReadExec`](super::StageReadExec) of the
//! keys in place of the scan, so the tasks above read the partitions where
//! they are and nothing below them is computed again. In a plan that runs in
//! the client, the node fetches the partitions itself.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::future::BoxFuture;

use super::TaskData;
use crate::key::Key;

/// Where one persisted partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionState {
    /// Still being computed.
    Computing,
    /// In a worker's memory.
    Memory,
    /// Its task, or one below it, failed.
    Erred,
}

/// The partitions behind a [`PersistedExec`]: their keys, and a way to read
/// and to follow each. The client implements it over the futures that keep
/// the keys alive on the cluster.
pub trait PersistedPartitions: Send + Sync + fmt::Debug {
    /// The key of every partition, in order.
    fn keys(&self) -> &[Key];

    /// The operation that made them (`aggregate`, `timeseries`, …).
    fn operation(&self) -> &str;

    /// Partition `partition`'s data, fetched from the cluster.
    fn data(&self, partition: usize) -> BoxFuture<'static, Result<Arc<TaskData>>>;

    /// The batches of partition `partition`, fetched from the cluster.
    fn read(&self, partition: usize) -> BoxFuture<'static, Result<Vec<RecordBatch>>> {
        let data = self.data(partition);
        Box::pin(async move { Ok(data.await?.batches().cloned().collect()) })
    }

    /// Where partition `partition` stands now.
    fn state(&self, partition: usize) -> PartitionState;
}

/// A scan of persisted partitions: partition `i` is the result held under key `i`.
#[derive(Debug, Clone)]
pub struct PersistedExec {
    partitions: Arc<dyn PersistedPartitions>,
    properties: Arc<PlanProperties>,
}

impl PersistedExec {
    /// A scan of `partitions`, which have the `properties` (schema,
    /// partitioning, ordering) of the plan that made them.
    pub fn new(partitions: Arc<dyn PersistedPartitions>, properties: Arc<PlanProperties>) -> Self {
        Self {
            partitions,
            properties,
        }
    }

    /// The partitions read.
    pub fn partitions(&self) -> &Arc<dyn PersistedPartitions> {
        &self.partitions
    }
}

impl DisplayAs for PersistedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "PersistedExec: {} partitions of {}",
            self.partitions.keys().len(),
            self.partitions.operation()
        )
    }
}

impl ExecutionPlan for PersistedExec {
    fn name(&self) -> &'static str {
        "PersistedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    super::leaf_node_methods!();

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let read = self.partitions.read(partition);
        let batches = futures::stream::once(async move {
            let batches = read.await?;
            Ok::<_, datafusion::error::DataFusionError>(futures::stream::iter(
                batches.into_iter().map(Ok),
            ))
        });
        use futures::TryStreamExt;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches.try_flatten(),
        )))
    }
}

/// Persisted partitions as a table, for a frame's logical plan.
#[derive(Debug)]
pub struct PersistedTable {
    scan: Arc<PersistedExec>,
}

impl PersistedTable {
    /// The table of `scan`'s partitions.
    pub fn new(scan: PersistedExec) -> Self {
        Self {
            scan: Arc::new(scan),
        }
    }
}

#[async_trait]
impl TableProvider for PersistedTable {
    fn schema(&self) -> SchemaRef {
        self.scan.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan: Arc<dyn ExecutionPlan> = Arc::clone(&self.scan) as _;
        let schema = self.scan.schema();
        match projection {
            Some(columns) if columns.len() != schema.fields().len() || !is_identity(columns) => {
                let exprs: Vec<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)> =
                    columns
                        .iter()
                        .map(|&i| {
                            let name = schema.field(i).name().clone();
                            let column =
                                datafusion::physical_expr::expressions::Column::new(&name, i);
                            (Arc::new(column) as _, name)
                        })
                        .collect();
                Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
            }
            _ => Ok(scan),
        }
    }
}

fn is_identity(columns: &[usize]) -> bool {
    columns.iter().enumerate().all(|(i, &c)| i == c)
}
