//! [`DataFrame`]: a lazy query, built from SQL or from Dask-style calls.
//!
//! Every operation returns a new frame over a bigger DataFusion logical plan;
//! nothing runs until [`collect`](DataFrame::collect) (or `compute`, `head`,
//! `to_parquet`, …), when the plan is cut into stages and run on the cluster
//! like any SQL query.
//!
//! ```no_run
//! use rask::datafusion::prelude::{col, lit};
//!
//! # async fn demo() -> rask::Result<()> {
//! let client = rask::Client::local()?;
//! let df = client.timeseries().end("2000-01-08").build()?;
//! let by_name = df.clone().groupby(["name"]).agg([("x", "max"), ("y", "mean"), ("y", "std")])?;
//! println!("{}", by_name.clone().to_table(None).await?); // columns name, x, y_mean, y_std
//! let kept = by_name.persist().await?; // computed once, held by the workers
//! let few = kept.filter(col("x").gt(lit(0.99)))?; // reads the held partitions: 2 tasks
//! let square = rask::udf::scalar("square", |x: f64| x * x);
//! let squares = df.clone().apply("x", &square)?; // Dask's df.x.apply(f)
//! let positive = df.assign("z", col("x") * col("y"))?.filter(col("z").gt(lit(0)))?;
//! let top = positive.sort_values([("z", false)])?.head(5).await?;
//! # Ok(()) }
//! ```

mod groupby;
mod operations;
mod persist;
mod sources;
mod structure;

pub use groupby::{Agg, GroupBy};
pub use operations::How;
pub(crate) use persist::future_state;
pub use sources::TimeseriesBuilder;
pub use structure::Structure;

use std::panic::AssertUnwindSafe;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use std::sync::Arc;

use super::query_planner::{ClientExec, ClusterExec, cut, in_client};
use crate::planner::StageGraph;
use crate::{Error, Result};

/// A query that has been planned but not run. Nothing is computed until
/// [`collect`](Self::collect) or [`stream`](Self::stream) is called.
///
/// As in pandas, some columns may be the frame's index (a timeseries'
/// `timestamp`, the keys of a groupby, what `set_index` names). They stay
/// ordinary columns for every operation; the index only changes how the
/// frame is displayed: tables and structures count and list the other
/// columns, as pandas does.
#[derive(Debug, Clone)]
pub struct DataFrame {
    inner: datafusion::dataframe::DataFrame,
    index: Vec<String>,
}

impl DataFrame {
    pub(crate) fn new(inner: datafusion::dataframe::DataFrame) -> Self {
        Self {
            inner,
            index: Vec::new(),
        }
    }

    /// A frame over `inner` with this frame's index, as far as `inner` keeps
    /// its columns.
    pub(super) fn with_inner(&self, inner: datafusion::dataframe::DataFrame) -> Self {
        Self {
            inner,
            index: self.index.clone(),
        }
        .retain_index()
    }

    /// The same frame, its index without the columns it no longer has.
    fn retain_index(mut self) -> Self {
        let schema = self.inner.schema();
        self.index
            .retain(|name| schema.index_of_column_by_name(None, name).is_some());
        self
    }

    /// The same frame with `columns` as its index.
    pub(crate) fn with_index(mut self, columns: Vec<String>) -> Self {
        self.index = columns;
        self
    }

    /// The columns that make the index (pandas' `df.index.names`); empty
    /// when the frame has none.
    pub fn index(&self) -> &[String] {
        &self.index
    }

    /// The same frame without an index: every column counts as a column
    /// (pandas' `reset_index`; nothing moves, as the index already is a column).
    pub fn reset_index(self) -> DataFrame {
        self.with_index(Vec::new())
    }

    /// The columns and types the result will have.
    pub fn schema(&self) -> SchemaRef {
        self.inner.schema().inner().clone()
    }

    /// The column names, in order, the index columns among them (unlike
    /// pandas' `df.columns`, which leaves the index out).
    pub fn columns(&self) -> Vec<String> {
        self.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The logical plan.
    pub fn logical_plan(&self) -> &LogicalPlan {
        self.inner.logical_plan()
    }

    /// Runs the query and gathers every batch of the result.
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        let mut stream = self.stream().await?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        Ok(batches)
    }

    /// Runs the query, handing out the result batch by batch as it is produced.
    ///
    /// A panic while the query runs ends the stream with [`Error::Panic`].
    pub async fn stream(self) -> Result<SendableRecordBatchStream> {
        let stream = crate::error::catch_panics(self.inner.execute_stream()).await??;
        let schema = stream.schema();
        let guarded = AssertUnwindSafe(stream)
            .catch_unwind()
            .map(|item| match item {
                Ok(batch) => batch,
                Err(payload) => Err(DataFusionError::External(Box::new(Error::from_panic(
                    payload,
                )))),
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, guarded)))
    }

    /// The stages and tasks this query runs as.
    pub(crate) async fn stages(&self) -> Result<StageGraph> {
        self.placement(true)
            .await?
            .map_err(|why| Error::Config(in_client(&why)))
    }

    /// The graph of this frame's tasks, or why it runs in the client instead.
    /// With `gathered` (its result kept on the cluster), a plan that runs in
    /// the client only because it reads no data is a graph of tasks too.
    async fn placement(&self, gathered: bool) -> Result<std::result::Result<StageGraph, String>> {
        let frame = self.inner.clone();
        let config = Arc::new(frame.task_ctx().session_config().clone());
        let mut plan = crate::error::catch_panics(frame.create_physical_plan()).await??;
        if let Some(exec) = cluster_exec(&plan) {
            return Ok(Ok(exec.graph().clone()));
        }
        if let Some(client) = plan.downcast_ref::<ClientExec>() {
            match client.reading_nothing() {
                Some(input) if gathered => plan = Arc::clone(input),
                _ => return Ok(Err(client.why().to_string())),
            }
        }
        // Nothing to run: the plan reads persisted partitions.
        cut(plan, config)
            .map(|(graph, _)| Ok(graph))
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// The stages and tasks this frame runs as, one line a stage (what
    /// `EXPLAIN` adds after DataFusion's plans), or why it runs in the client.
    pub async fn explain(&self) -> Result<String> {
        Ok(match self.placement(false).await? {
            Ok(graph) => graph.to_string(),
            Err(why) => format!("{}\n", in_client(&why)),
        })
    }

    /// Writes the task graph to `path`: Graphviz DOT when it ends in `.dot`,
    /// otherwise a standalone SVG (no Graphviz needed), one colour per
    /// operation.
    pub async fn visualize(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let graph = self.stages().await?;
        graph.write_drawing(path.as_ref())
    }

    /// What the result will look like and what computing it takes, as Dask's
    /// `df` display shows: columns and types, partitions, operation and tasks.
    pub async fn structure(&self) -> Result<Structure> {
        let graph = match self.placement(false).await? {
            Ok(graph) => graph,
            Err(why) => {
                return Ok(Structure {
                    schema: self.schema(),
                    index: self.index.clone(),
                    npartitions: 1,
                    operation: "client".to_string(),
                    tasks: 0,
                    in_client: Some(why),
                });
            }
        };
        // A merge in the client makes one partition of the final stage's.
        let (npartitions, operation) = match graph.merge() {
            Some(merge) => (1, merge),
            None => (
                graph.final_stage().partitions(),
                graph.operation(graph.stages.len() - 1),
            ),
        };
        let tasks = if graph.only_reads_persisted() {
            0
        } else {
            graph.task_count()
        };
        Ok(Structure {
            schema: self.schema(),
            index: self.index.clone(),
            npartitions,
            operation: operation.to_string(),
            tasks,
            in_client: None,
        })
    }

    /// The DataFusion dataframe underneath.
    pub fn into_datafusion(self) -> datafusion::dataframe::DataFrame {
        self.inner
    }
}

/// Column `name` as an expression, quoted so case and dots are kept
/// (DataFusion's `col` would lower-case `Name` and split `a.b`).
fn column(name: &str) -> datafusion::logical_expr::Expr {
    datafusion::logical_expr::col(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// The cluster node of `plan`: its root, or under the merge the client runs.
fn cluster_exec(plan: &Arc<dyn ExecutionPlan>) -> Option<&ClusterExec> {
    // Below the merge the client runs, and the projections over it.
    plan.downcast_ref::<ClusterExec>().or_else(|| {
        let merge = crate::planner::below_projections(plan);
        let child = merge.children().into_iter().next()?;
        child.downcast_ref::<ClusterExec>()
    })
}
