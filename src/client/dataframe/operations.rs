//! The Dask-style operations of a [`DataFrame`]: each returns a new lazy frame
//! (or, for `head`, `compute` and the writers, runs it).

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::JoinType;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, Partitioning, ScalarUDF};

use super::groupby::GroupBy;
use super::{DataFrame, column};
use crate::exec::{MapPartitionsNode, MapUnit};
use crate::output;
use crate::udf::PartitionFn;
use crate::{Error, Result};

/// How [`DataFrame::merge`] joins, as pandas' `how=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum How {
    /// Rows with a match on both sides.
    Inner,
    /// Every row of the left side.
    Left,
    /// Every row of the right side.
    Right,
    /// Every row of both sides.
    Outer,
}

/// Column `name` of the join side `table` (`left` or `right`).
fn side(table: &str, name: &str) -> Expr {
    Expr::Column(datafusion::common::Column::new(Some(table), name))
}

impl DataFrame {
    /// Runs `f` on the DataFusion frame underneath, as a new frame.
    pub(super) fn map(
        self,
        f: impl FnOnce(
            datafusion::dataframe::DataFrame,
        ) -> datafusion::error::Result<datafusion::dataframe::DataFrame>,
    ) -> Result<DataFrame> {
        let DataFrame { inner, index } = self;
        Ok(DataFrame {
            inner: f(inner)?,
            index,
        }
        .retain_index())
    }

    /// Groups rows by the values of `keys`, for [`GroupBy::agg`].
    pub fn groupby<'a>(self, keys: impl IntoIterator<Item = &'a str>) -> GroupBy {
        GroupBy::new(self, keys.into_iter().map(str::to_string).collect())
    }

    /// Only the columns `names`, in that order.
    pub fn select<'a>(self, names: impl IntoIterator<Item = &'a str>) -> Result<DataFrame> {
        let exprs: Vec<Expr> = names.into_iter().map(column).collect();
        self.map(|df| df.select(exprs))
    }

    /// Columns computed by `exprs`.
    pub fn select_exprs(self, exprs: Vec<Expr>) -> Result<DataFrame> {
        self.map(|df| df.select(exprs))
    }

    /// The same columns, those named in `renames` (`(old, new)`) renamed.
    pub fn rename<'a>(
        self,
        renames: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<DataFrame> {
        let mut frame = self.inner.clone();
        let mut index = self.index.clone();
        for (old, new) in renames {
            if frame.schema().index_of_column_by_name(None, old).is_none() {
                return Err(Error::Config(format!("rename: there is no column {old:?}")));
            }
            frame = frame.with_column_renamed(format!("\"{old}\""), new)?;
            for name in index.iter_mut().filter(|n| *n == old) {
                *name = new.to_string();
            }
        }
        Ok(DataFrame::new(frame).with_index(index))
    }

    /// Aggregates the whole frame into one row, as [`GroupBy::agg`] does per group.
    pub fn agg<'a>(self, specs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<DataFrame> {
        self.groupby([]).agg(specs)
    }

    /// The first `n` rows, lazily (see [`head`](Self::head) to compute them).
    pub fn limit(self, n: usize) -> Result<DataFrame> {
        self.map(|df| df.limit(0, Some(n)))
    }

    /// The rows for which `predicate` is true.
    pub fn filter(self, predicate: Expr) -> Result<DataFrame> {
        self.map(|df| df.filter(predicate))
    }

    /// Adds (or replaces) column `name`, computed by `expr` (pandas' `assign`).
    pub fn assign(self, name: &str, expr: Expr) -> Result<DataFrame> {
        self.map(|df| df.with_column(name, expr))
    }

    /// `udf` applied to every value of `column`, as a one-column frame named
    /// after the column (Dask's `df.x.apply(f)`). The UDF's types come from its
    /// signature ([`crate::udf::scalar`]); nulls stay null.
    pub fn apply(self, column_name: &str, udf: &ScalarUDF) -> Result<DataFrame> {
        let expr = udf.call(vec![column(column_name)]).alias(column_name);
        self.map(|df| df.select(vec![expr]))
    }

    /// `function` over every partition whole (Dask's `map_partitions`): the
    /// partition's batches concatenated into one, so the function sees all
    /// its rows at once and may sort, deduplicate or keep a running total
    /// within it. It runs in the tasks that make the partitions: no extra
    /// stage. The output columns are declared on the function or found by
    /// running it on an empty batch. On workers of other processes it runs by
    /// name: register it in their binary's registry
    /// ([`Registry::with_partition`](crate::udf::Registry::with_partition)).
    /// For a function of single rows over partitions too big to hold, use
    /// [`map_batches`](Self::map_batches).
    pub fn map_partitions(self, function: &PartitionFn) -> Result<DataFrame> {
        self.map_each(function, MapUnit::Partition)
    }

    /// `function` over every batch as each partition streams (about 8,192
    /// rows at a time), holding no more than one batch: the streaming form of
    /// [`map_partitions`](Self::map_partitions), right only for functions
    /// whose answer for a row does not depend on the other rows.
    pub fn map_batches(self, function: &PartitionFn) -> Result<DataFrame> {
        self.map_each(function, MapUnit::Batch)
    }

    fn map_each(self, function: &PartitionFn, unit: MapUnit) -> Result<DataFrame> {
        let (state, plan) = self.inner.clone().into_parts();
        let node = MapPartitionsNode::try_new(plan, function.clone(), unit)?;
        self.with_node(state, node)
    }

    /// [`map_partitions`](Self::map_partitions) with a function that also
    /// takes `argument`'s value (from [`udf::partition_with`](crate::udf::partition_with)):
    /// Dask's `df.map_partitions(f, future)`. Each task reads the value where
    /// it is held, decoded once per process; the value is also read now, to
    /// find what the function returns unless it declares it.
    pub async fn map_partitions_with(
        self,
        function: &PartitionFn,
        argument: &crate::Future,
    ) -> Result<DataFrame> {
        self.map_each_with(function, argument, MapUnit::Partition)
            .await
    }

    /// [`map_batches`](Self::map_batches) with a function that also takes
    /// `argument`'s value, as [`map_partitions_with`](Self::map_partitions_with).
    pub async fn map_batches_with(
        self,
        function: &PartitionFn,
        argument: &crate::Future,
    ) -> Result<DataFrame> {
        self.map_each_with(function, argument, MapUnit::Batch).await
    }

    async fn map_each_with(
        self,
        function: &PartitionFn,
        argument: &crate::Future,
        unit: MapUnit,
    ) -> Result<DataFrame> {
        if !function.takes_argument() {
            return Err(Error::Config(format!(
                "{}: {} takes no argument (make it with udf::partition_with)",
                match unit {
                    MapUnit::Partition => "map_partitions_with",
                    MapUnit::Batch => "map_batches_with",
                },
                function.name()
            )));
        }
        let sample = argument.data().await?;
        let input: Arc<dyn crate::exec::PersistedPartitions> =
            Arc::new(super::persist::FutureInput::new(argument));
        let (state, plan) = self.inner.clone().into_parts();
        let argument = Some((input, sample));
        let node = MapPartitionsNode::try_with_argument(plan, function.clone(), argument, unit)?;
        self.with_node(state, node)
    }

    /// This frame's index over `node`, planned in `state`.
    fn with_node(
        &self,
        state: datafusion::execution::SessionState,
        node: MapPartitionsNode,
    ) -> Result<DataFrame> {
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(node),
        });
        Ok(self.with_inner(datafusion::dataframe::DataFrame::new(state, plan)))
    }

    /// The distinct values of `column_name`, in one column (Dask's `unique`).
    pub fn unique(self, column_name: &str) -> Result<DataFrame> {
        let expr = column(column_name);
        self.map(|df| df.select(vec![expr])?.distinct())
    }

    /// The distinct rows.
    pub fn drop_duplicates(self) -> Result<DataFrame> {
        self.map(|df| df.distinct())
    }

    /// Rows sorted by `by`, each ascending or not, nulls last.
    pub fn sort_values<'a>(
        self,
        by: impl IntoIterator<Item = (&'a str, bool)>,
    ) -> Result<DataFrame> {
        let order = by
            .into_iter()
            .map(|(name, ascending)| column(name).sort(ascending, false))
            .collect();
        self.map(|df| df.sort(order))
    }

    /// Rows sorted by `index`, which becomes the frame's index (Dask's
    /// `set_index` sorts by the new index; in rask the column stays a column).
    pub fn set_index(self, index: &str) -> Result<DataFrame> {
        Ok(self
            .sort_values([(index, true)])?
            .with_index(vec![index.to_string()]))
    }

    /// The same rows spread round-robin over `n` partitions.
    pub fn repartition(self, n: usize) -> Result<DataFrame> {
        if n == 0 {
            return Err(Error::Config(
                "repartition needs at least one partition".into(),
            ));
        }
        self.map(|df| df.repartition(Partitioning::RoundRobinBatch(n)))
    }

    /// Joins with `right` on columns of the same names (pandas' `merge(on=..)`):
    /// the key columns once, then the other columns of both sides, those of
    /// the right whose names the left has too suffixed `_right`.
    pub fn merge<'a>(
        self,
        right: DataFrame,
        on: impl IntoIterator<Item = &'a str>,
        how: How,
    ) -> Result<DataFrame> {
        let on: Vec<&str> = on.into_iter().collect();
        let left_names: Vec<String> = self.columns();
        let right_names: Vec<String> = right.columns();
        let mut exprs: Vec<Expr> = left_names
            .iter()
            .map(|name| {
                let key = on.contains(&name.as_str());
                let value = match how {
                    How::Right if key => side("right", name),
                    How::Outer if key => datafusion::functions::expr_fn::coalesce(vec![
                        side("left", name),
                        side("right", name),
                    ]),
                    _ => side("left", name),
                };
                value.alias(name)
            })
            .collect();
        for name in right_names.iter().filter(|n| !on.contains(&n.as_str())) {
            let alias = if left_names.contains(name) {
                format!("{name}_right")
            } else {
                name.clone()
            };
            exprs.push(side("right", name).alias(alias));
        }
        self.join(right, &on, &on, how)?.select_exprs(exprs)
    }

    /// Joins with `right` where `left_on` equals `right_on`, column by column.
    pub fn join(
        self,
        right: DataFrame,
        left_on: &[&str],
        right_on: &[&str],
        how: How,
    ) -> Result<DataFrame> {
        if left_on.len() != right_on.len() || left_on.is_empty() {
            return Err(Error::Config(format!(
                "a join needs as many left columns as right ones, and one at least: got {} and {}",
                left_on.len(),
                right_on.len()
            )));
        }
        let join_type = match how {
            How::Inner => JoinType::Inner,
            How::Left => JoinType::Left,
            How::Right => JoinType::Right,
            How::Outer => JoinType::Full,
        };
        let on: Vec<Expr> = left_on
            .iter()
            .zip(right_on)
            .map(|(l, r)| side("left", l).eq(side("right", r)))
            .collect();
        // Sides are told apart by table: a column of the same name on both
        // sides is qualified by the side it comes from.
        let right = right.inner.alias("right")?;
        self.map(|df| df.alias("left")?.join_on(right, join_type, on))
    }

    /// The whole result, computed (Dask's `compute`).
    pub async fn compute(self) -> Result<Vec<RecordBatch>> {
        self.collect().await
    }

    /// The result as an aligned table with a `rows × columns` footer, as the
    /// REPL shows it (long results elided in the middle past `maxrows`).
    pub async fn to_table(self, maxrows: Option<usize>) -> Result<String> {
        let schema = self.schema();
        let index = self.index.len();
        let batches = self.collect().await?;
        let mut text = Vec::new();
        let sink = output::TableSink::new(schema, maxrows, &mut text).with_index_columns(index);
        output::write_all(Box::new(sink), &batches)?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Rows of the result.
    pub async fn count(self) -> Result<usize> {
        let frame = crate::error::catch_panics(self.inner.count()).await??;
        Ok(frame)
    }

    /// Writes the result as Parquet files under `path` (a folder), one a partition.
    pub async fn to_parquet(self, path: &str) -> Result<()> {
        let write = self
            .inner
            .write_parquet(path, DataFrameWriteOptions::new(), None);
        crate::error::catch_panics(write).await??;
        Ok(())
    }

    /// Writes the result as CSV files with a header under `path` (a folder).
    pub async fn to_csv(self, path: &str) -> Result<()> {
        let write = self
            .inner
            .write_csv(path, DataFrameWriteOptions::new(), None);
        crate::error::catch_panics(write).await??;
        Ok(())
    }
}
