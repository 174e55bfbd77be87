//! [`TimeseriesExec`]: the leaf of a plan that reads `timeseries(...)`.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::stats::Precision;
use datafusion::common::{Result, Statistics, exec_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column as ColumnExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use super::generate::Column;
use super::spec::TimeseriesSpec;

/// Generates the partitions of a [`TimeseriesSpec`], one DataFusion partition per
/// timeseries partition, in batches of the session's `batch_size`.
///
/// Only the projected columns are generated, and a pushed-down limit stops each
/// partition early. Within a partition rows come in timestamp order, which the
/// node declares so that `ORDER BY timestamp` needs only a merge.
#[derive(Debug, Clone)]
pub struct TimeseriesExec {
    spec: TimeseriesSpec,
    columns: Vec<Column>,
    fetch: Option<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl TimeseriesExec {
    /// A scan of `spec` producing the columns at `projection` (all when `None`),
    /// at most `fetch` rows per partition.
    pub fn try_new(
        spec: TimeseriesSpec,
        projection: Option<&[usize]>,
        fetch: Option<usize>,
    ) -> Result<Self> {
        let full = TimeseriesSpec::schema();
        let indices: Vec<usize> = match projection {
            Some(p) => p.to_vec(),
            None => (0..Column::ALL.len()).collect(),
        };
        if let Some(&bad) = indices.iter().find(|&&i| i >= Column::ALL.len()) {
            return exec_err!("timeseries has no column {bad}");
        }
        let schema: SchemaRef = Arc::new(full.project(&indices)?);
        let columns: Vec<Column> = indices.iter().map(|&i| Column::ALL[i]).collect();

        let ordering = columns
            .iter()
            .position(|c| *c == Column::Timestamp)
            .map(|i| {
                vec![PhysicalSortExpr::new_default(
                    Arc::new(ColumnExpr::new("timestamp", i)) as _,
                )]
            });
        let eq = EquivalenceProperties::new_with_orderings(Arc::clone(&schema), ordering);
        let properties = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(spec.partitions()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        )
        .with_scheduling_type(SchedulingType::Cooperative);
        Ok(Self {
            spec,
            columns,
            fetch,
            schema,
            properties: Arc::new(properties),
        })
    }

    /// What this node generates.
    pub fn spec(&self) -> &TimeseriesSpec {
        &self.spec
    }

    /// The rows each partition stops at, when limited.
    pub fn fetch(&self) -> Option<usize> {
        self.fetch
    }

    /// The indices (into the full timeseries schema) of the generated columns.
    pub fn projection(&self) -> Vec<usize> {
        self.columns.iter().map(|c| *c as usize).collect()
    }

    /// The rows partition `p` produces, after the limit.
    fn rows(&self, p: usize) -> std::ops::Range<u64> {
        let rows = self.spec.partition_rows(p);
        match self.fetch {
            Some(n) => rows.start..rows.end.min(rows.start + n as u64),
            None => rows,
        }
    }
}

impl DisplayAs for TimeseriesExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "TimeseriesExec: partitions={}, rows={}, {}, projection=[{}]",
                    self.spec.partitions(),
                    self.spec.num_rows(),
                    self.spec,
                    names.join(", ")
                )?;
                if let Some(n) = self.fetch {
                    write!(f, ", fetch={n}")?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => write!(f, "partitions={}", self.spec.partitions()),
        }
    }
}

impl ExecutionPlan for TimeseriesExec {
    fn name(&self) -> &'static str {
        "TimeseriesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    crate::exec::leaf_node_methods!();

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition >= self.spec.partitions() {
            return exec_err!(
                "timeseries has {} partitions, partition {partition} was asked for",
                self.spec.partitions()
            );
        }
        let batch_size = context.session_config().batch_size().max(1) as u64;
        let rows = self.rows(partition);
        let (spec, columns, schema) = (self.spec, self.columns.clone(), Arc::clone(&self.schema));
        let batches = (rows.start..rows.end)
            .step_by(batch_size as usize)
            .map(move |from| {
                let slice = from..(from + batch_size).min(rows.end);
                let len = (slice.end - slice.start) as usize;
                let arrays = columns
                    .iter()
                    .map(|c| c.generate(&spec, partition, slice.clone()))
                    .collect();
                let options = RecordBatchOptions::new().with_row_count(Some(len));
                RecordBatch::try_new_with_options(Arc::clone(&schema), arrays, &options)
                    .map_err(Into::into)
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(batches),
        )))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let rows: u64 = match args.partition() {
            Some(p) => row_count(&self.rows(p)),
            None => (0..self.spec.partitions())
                .map(|p| row_count(&self.rows(p)))
                .sum(),
        };
        Ok(Arc::new(
            Statistics::new_unknown(&self.schema).with_num_rows(Precision::Exact(rows as usize)),
        ))
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        let mut node = self.clone();
        node.fetch = limit;
        Some(Arc::new(node))
    }

    fn fetch(&self) -> Option<usize> {
        self.fetch
    }
}

fn row_count(rows: &std::ops::Range<u64>) -> u64 {
    rows.end - rows.start
}
