//! [`DataFrame`]: a lazy query result.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;

use crate::Result;

/// A query that has been planned but not run. Nothing is computed until
/// [`collect`](Self::collect) or [`stream`](Self::stream) is called.
#[derive(Debug, Clone)]
pub struct DataFrame {
    inner: datafusion::dataframe::DataFrame,
}

impl DataFrame {
    pub(crate) fn new(inner: datafusion::dataframe::DataFrame) -> Self {
        Self { inner }
    }

    /// The columns and types the result will have.
    pub fn schema(&self) -> SchemaRef {
        self.inner.schema().inner().clone()
    }

    /// The logical plan.
    pub fn logical_plan(&self) -> &LogicalPlan {
        self.inner.logical_plan()
    }

    /// Runs the query and gathers every batch of the result.
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        Ok(self.inner.collect().await?)
    }

    /// Runs the query, handing out the result batch by batch as it is produced.
    pub async fn stream(self) -> Result<SendableRecordBatchStream> {
        Ok(self.inner.execute_stream().await?)
    }

    /// The DataFusion dataframe underneath.
    pub fn into_datafusion(self) -> datafusion::dataframe::DataFrame {
        self.inner
    }
}
