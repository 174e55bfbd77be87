//! [`DataFrame`]: a lazy query result.

use std::panic::AssertUnwindSafe;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::{Error, Result};

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

    /// The DataFusion dataframe underneath.
    pub fn into_datafusion(self) -> datafusion::dataframe::DataFrame {
        self.inner
    }
}
