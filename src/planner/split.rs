//! Splitting a stage that scans large files into more tasks.
//!
//! DataFusion plans a scan with as many partitions as the cluster has
//! threads, and streams each one through the operators above it. A stage
//! that ends in an exchange holds its task's whole output until the task
//! ends, so with two threads a scan of gigabytes makes two tasks that each
//! hold half of it at once (and one worker may run both). Split into tasks
//! that read at most [`SCAN_BYTES_PER_TASK`] of files each, its output comes
//! in pieces the worker's store can keep or spill one by one, and idle
//! workers can take the tasks not yet started. The size is the session's
//! `rask.scan_bytes_per_task` ([`SCAN_BYTES_PER_TASK`] unless set).

use std::sync::Arc;

use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use crate::exec::{MAX_TASKS, RaskOptions, SCAN_BYTES_PER_TASK};

/// `plan`, the plan of a stage whose output goes to an exchange, with its
/// file scan split into partitions of `rask.scan_bytes_per_task` or less;
/// `None` when it has no such scan under operators that work partition by
/// partition (filters, projections, partial aggregates), or the scan is
/// small enough or cannot be split.
pub fn split_large_scan(
    plan: &Arc<dyn ExecutionPlan>,
    config: &ConfigOptions,
) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some(scan) = plan.downcast_ref::<DataSourceExec>() {
        let files = scan.data_source().downcast_ref::<FileScanConfig>()?;
        let bytes: u64 = files
            .file_groups
            .iter()
            .flat_map(|group| group.files())
            .map(|file| match &file.range {
                Some(range) => (range.end - range.start).max(0) as u64,
                None => file.object_meta.size,
            })
            .sum();
        let (per_task, most) = config
            .extensions
            .get::<RaskOptions>()
            .map_or((SCAN_BYTES_PER_TASK, MAX_TASKS), |options| {
                (options.scan_bytes_per_task, options.max_tasks)
            });
        let wanted = (bytes.div_ceil(per_task.max(1)) as usize).min(most);
        if wanted <= plan.output_partitioning().partition_count() {
            return None;
        }
        return plan.repartitioned(wanted, config).ok().flatten();
    }
    let partition_wise = plan.is::<FilterExec>()
        || plan.is::<ProjectionExec>()
        || plan
            .downcast_ref::<AggregateExec>()
            .is_some_and(|a| *a.mode() == AggregateMode::Partial);
    let [child] = plan.children()[..] else {
        return None;
    };
    if !partition_wise {
        return None;
    }
    let child = split_large_scan(child, config)?;
    #[allow(deprecated)]
    Arc::clone(plan).with_new_children(vec![child]).ok()
}
