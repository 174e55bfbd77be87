//! [`GroupBy`]: `df.groupby(keys).agg(..)`, as in Dask and pandas.

use std::fmt;
use std::str::FromStr;

use datafusion::functions_aggregate::expr_fn as f;
use datafusion::logical_expr::{Expr, lit};

use super::DataFrame;
use crate::{Error, Result};

/// An aggregation, by its pandas name (`"max"`, `"mean"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Agg {
    /// Non-null values.
    Count,
    /// Rows, nulls included.
    Size,
    /// Sum.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Arithmetic mean.
    Mean,
    /// Sample standard deviation (ddof = 1, as pandas).
    Std,
    /// Sample variance (ddof = 1, as pandas).
    Var,
    /// First value in partition order.
    First,
    /// Last value in partition order.
    Last,
    /// Distinct non-null values.
    Nunique,
}

impl Agg {
    /// Every aggregation, in the order of their pandas names' documentation.
    pub const ALL: [Agg; 11] = [
        Agg::Count,
        Agg::Size,
        Agg::Sum,
        Agg::Min,
        Agg::Max,
        Agg::Mean,
        Agg::Std,
        Agg::Var,
        Agg::First,
        Agg::Last,
        Agg::Nunique,
    ];

    /// Its pandas name.
    pub fn name(self) -> &'static str {
        match self {
            Agg::Count => "count",
            Agg::Size => "size",
            Agg::Sum => "sum",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Mean => "mean",
            Agg::Std => "std",
            Agg::Var => "var",
            Agg::First => "first",
            Agg::Last => "last",
            Agg::Nunique => "nunique",
        }
    }

    /// The aggregate expression over `column`.
    pub fn of(self, column: &str) -> Expr {
        let c = super::column(column);
        match self {
            Agg::Count => f::count(c),
            Agg::Size => f::count(lit(1)),
            Agg::Sum => f::sum(c),
            Agg::Min => f::min(c),
            Agg::Max => f::max(c),
            Agg::Mean => f::avg(c),
            Agg::Std => f::stddev(c),
            Agg::Var => f::var_sample(c),
            Agg::First => f::first_value(c, Vec::new()),
            Agg::Last => f::last_value(c, Vec::new()),
            Agg::Nunique => f::count_distinct(c),
        }
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Agg {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let name = match s {
            "avg" => "mean",
            "stddev" => "std",
            "variance" => "var",
            "count_distinct" => "nunique",
            other => other,
        };
        Agg::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Agg::ALL.iter().map(|a| a.name()).collect();
                Error::Config(format!(
                    "unknown aggregation {s:?}; use one of {}",
                    known.join(", ")
                ))
            })
    }
}

/// A [`DataFrame`] grouped by key columns, waiting for its aggregations.
#[derive(Debug, Clone)]
pub struct GroupBy {
    frame: DataFrame,
    keys: Vec<String>,
}

impl GroupBy {
    pub(super) fn new(frame: DataFrame, keys: Vec<String>) -> Self {
        Self { frame, keys }
    }

    /// Aggregates columns by name, as pandas' `agg({"x": "max", "y": ["mean", "std"]})`:
    /// `agg([("x", "max"), ("y", "mean"), ("y", "std")])`. A column aggregated once
    /// keeps its name; one aggregated several ways gives `y_mean`, `y_std`. The
    /// result has one row per group, keys first.
    ///
    /// ```no_run
    /// # async fn demo(client: rask::Client) -> rask::Result<()> {
    /// let df = client.timeseries().build()?;
    /// let means = df.groupby(["name"]).agg([("x", "max"), ("y", "mean")])?;
    /// # Ok(()) }
    /// ```
    pub fn agg<'a>(self, specs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<DataFrame> {
        let specs: Vec<(&str, Agg)> = specs
            .into_iter()
            .map(|(column, agg)| agg.parse().map(|agg| (column, agg)))
            .collect::<Result<_>>()?;
        if specs.is_empty() {
            return Err(Error::Config("agg needs at least one aggregation".into()));
        }
        let times = |column: &str| specs.iter().filter(|(c, _)| *c == column).count();
        let exprs: Vec<Expr> = specs
            .iter()
            .map(|&(column, agg)| {
                let name = match (agg, times(column)) {
                    (Agg::Size, _) => "size".to_string(),
                    (_, 1) => column.to_string(),
                    _ => format!("{column}_{agg}"),
                };
                agg.of(column).alias(name)
            })
            .collect();
        self.aggregate(exprs)
    }

    /// Aggregates with DataFusion expressions (`max(col("x")).alias("top")`).
    pub fn aggregate(self, exprs: Vec<Expr>) -> Result<DataFrame> {
        let keys: Vec<Expr> = self.keys.iter().map(|k| super::column(k)).collect();
        let order: Vec<_> = keys.iter().map(|k| k.clone().sort(true, false)).collect();
        // Sorted by the keys, as Dask's groupby results are, which become the index.
        let frame = self.frame.map(|df| {
            let grouped = df.aggregate(keys, exprs)?;
            if order.is_empty() {
                Ok(grouped)
            } else {
                grouped.sort(order)
            }
        })?;
        Ok(frame.with_index(self.keys))
    }

    /// Rows per group, in a column `size` (pandas' `groupby().size()`).
    pub fn size(self) -> Result<DataFrame> {
        self.aggregate(vec![Agg::Size.of("").alias("size")])
    }

    /// Applies `agg` to every column that is not a key.
    pub fn all(self, agg: Agg) -> Result<DataFrame> {
        let schema = self.frame.schema();
        let exprs: Vec<Expr> = schema
            .fields()
            .iter()
            .map(|f| f.name())
            .filter(|name| !self.keys.contains(name))
            .map(|name| agg.of(name).alias(name))
            .collect();
        self.aggregate(exprs)
    }
}
