//! `persist` and `head`: keeping a frame's partitions on the cluster, and
//! computing only the partitions a few rows need.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{LogicalPlanBuilder, SortExpr};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use futures::StreamExt;
use futures::future::BoxFuture;

use super::{DataFrame, cluster_exec, column};
use crate::client::{Future, FutureStatus};
use crate::exec::{PartitionState, PersistedExec, PersistedPartitions, PersistedTable, TaskData};
use crate::key::Key;
use crate::{Error, Result};

/// The final partitions of a computation, held on the cluster by their futures.
#[derive(Debug)]
struct Persisted {
    keys: Vec<Key>,
    operation: String,
    futures: Vec<Future>,
}

impl PersistedPartitions for Persisted {
    fn keys(&self) -> &[Key] {
        &self.keys
    }

    fn operation(&self) -> &str {
        &self.operation
    }

    fn data(
        &self,
        partition: usize,
    ) -> BoxFuture<'static, datafusion::error::Result<Arc<TaskData>>> {
        future_data(self.futures.get(partition).cloned(), partition)
    }

    fn state(&self, partition: usize) -> PartitionState {
        future_state(self.futures.get(partition))
    }
}

/// The data of `future` (partition `partition` of something persisted).
pub(crate) fn future_data(
    future: Option<Future>,
    partition: usize,
) -> BoxFuture<'static, datafusion::error::Result<Arc<TaskData>>> {
    Box::pin(async move {
        let future = future.ok_or_else(|| {
            DataFusionError::Internal(format!("no persisted partition {partition}"))
        })?;
        future
            .data()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))
    })
}

/// Where `future`'s task stands, as a drawing shows it.
pub(crate) fn future_state(future: Option<&Future>) -> PartitionState {
    match future.map(Future::status) {
        Some(FutureStatus::Finished) => PartitionState::Memory,
        Some(FutureStatus::Pending) => PartitionState::Computing,
        Some(FutureStatus::Error | FutureStatus::Cancelled) | None => PartitionState::Erred,
    }
}

/// A future as a one-partition input of a query: the argument of a
/// `map_partitions_with`.
#[derive(Debug)]
pub(crate) struct FutureInput {
    keys: [Key; 1],
    future: Future,
}

impl FutureInput {
    pub(crate) fn new(future: &Future) -> Self {
        Self {
            keys: [future.key().clone()],
            future: future.clone(),
        }
    }
}

impl PersistedPartitions for FutureInput {
    fn keys(&self) -> &[Key] {
        &self.keys
    }

    fn operation(&self) -> &str {
        "argument"
    }

    fn data(
        &self,
        partition: usize,
    ) -> BoxFuture<'static, datafusion::error::Result<Arc<TaskData>>> {
        future_data((partition == 0).then(|| self.future.clone()), partition)
    }

    fn state(&self, _partition: usize) -> PartitionState {
        future_state(Some(&self.future))
    }
}

impl DataFrame {
    /// Starts computing the frame and keeps its partitions in the workers'
    /// memory (Dask's `persist`). Returns at once with a frame over those
    /// partitions: queries on it read them where they are instead of
    /// computing them again, so they take fewer tasks; computing it alone
    /// takes none. The partitions stay while the returned frame, or a query
    /// reading it, is alive.
    ///
    /// A frame that cannot run on the cluster is computed in the client and
    /// kept there.
    pub async fn persist(self) -> Result<DataFrame> {
        let plan = self.physical_plan().await?;
        let Some(exec) = cluster_exec(&plan) else {
            if self.stages().await?.only_reads_persisted() {
                return Ok(self); // Already persisted.
            }
            let batches = self.clone().collect().await?;
            let table = datafusion::datasource::MemTable::try_new(self.schema(), vec![batches])?;
            return self.over_table(Arc::new(table), Vec::new());
        };
        // A sorted frame is kept as sorted partitions, merged again when read.
        let order = if plan.is::<SortPreservingMergeExec>() {
            match sort_columns(exec) {
                Some(order) => order,
                None => {
                    tracing::debug!("persisting in the client: the order is not by columns");
                    let batches = self.clone().collect().await?;
                    let table =
                        datafusion::datasource::MemTable::try_new(self.schema(), vec![batches])?;
                    return self.over_table(Arc::new(table), Vec::new());
                }
            }
        } else {
            Vec::new()
        };
        let graph = exec.graph();
        let last = graph.stages.len() - 1;
        let persisted = Persisted {
            keys: graph.keys(last),
            operation: graph.operation(last).to_string(),
            futures: exec.futures(),
        };
        let scan = PersistedExec::new(Arc::new(persisted), Arc::clone(exec.properties()));
        self.over_table(Arc::new(PersistedTable::new(scan)), order)
    }

    /// A frame with this one's columns and index over `table`, sorted by `order`.
    fn over_table(
        &self,
        table: Arc<dyn datafusion::catalog::TableProvider>,
        order: Vec<SortExpr>,
    ) -> Result<DataFrame> {
        let (state, _) = self.inner.clone().into_parts();
        let mut plan = LogicalPlanBuilder::scan("persisted", provider_as_source(table), None)?;
        if !order.is_empty() {
            plan = plan.sort(order)?;
        }
        let inner = datafusion::dataframe::DataFrame::new(state, plan.build()?);
        Ok(self.with_inner(inner))
    }

    /// The first `n` rows, computing partitions one after another until they
    /// hold `n` rows (as Dask's `head` computes the first): the first
    /// partition's tasks only, when it has enough. A sorted frame needs every
    /// partition, and computes its top `n` rows in each.
    pub async fn head(self, n: usize) -> Result<Vec<RecordBatch>> {
        let plan = self.physical_plan().await?;
        if plan.is::<SortPreservingMergeExec>() {
            return self.limit(n)?.collect().await;
        }
        let (partitions, n) = match plan.downcast_ref::<CoalescePartitionsExec>() {
            Some(merge) => (
                Arc::clone(merge.input()),
                merge.fetch().map_or(n, |f| f.min(n)),
            ),
            None => (Arc::clone(&plan), n),
        };
        if let Some(exec) = cluster_exec(&partitions) {
            exec.submit_by_partition();
        }
        let context = self.inner.task_ctx();
        let context = Arc::new(context);
        let mut batches = Vec::new();
        let mut rows = 0;
        for partition in 0..partitions.output_partitioning().partition_count() {
            if rows >= n {
                break;
            }
            let mut stream = partitions.execute(partition, Arc::clone(&context))?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let take = batch.num_rows().min(n - rows);
                rows += take;
                batches.push(batch.slice(0, take));
                if rows >= n {
                    break;
                }
            }
        }
        Ok(batches)
    }

    /// The physical plan, lowered onto the cluster.
    async fn physical_plan(&self) -> Result<Arc<dyn ExecutionPlan>> {
        let frame = self.inner.clone();
        crate::error::catch_panics(frame.create_physical_plan())
            .await?
            .map_err(Error::from)
    }
}

/// The order of `exec`'s partitions as sort expressions on its columns, if
/// it is by columns alone.
fn sort_columns(exec: &super::ClusterExec) -> Option<Vec<SortExpr>> {
    let ordering = exec.properties().output_ordering()?;
    ordering
        .iter()
        .map(|sort| {
            let name = sort.expr.downcast_ref::<Column>()?.name();
            Some(column(name).sort(!sort.options.descending, sort.options.nulls_first))
        })
        .collect()
}
