//! `timeseries(...)` in SQL: the table function and the table it returns.
//!
//! Arguments are positional, each optional (`NULL` also means "the default"):
//!
//! ```sql
//! SELECT * FROM timeseries();                                  -- January 2000
//! SELECT * FROM timeseries('2000-01-01', '2000-01-02', '1h');  -- one day, hourly
//! SELECT * FROM timeseries(NULL, NULL, '10s', '1h', 7);        -- seed 7
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::TableReference;
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_datafusion_err};
use datafusion::datasource::TableType;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;

use super::exec::TimeseriesExec;
use super::spec::TimeseriesSpec;

/// The names of the arguments, in order.
const ARGUMENTS: [&str; 5] = ["start", "end", "freq", "partition_freq", "seed"];

/// The `timeseries` table function. Register it with
/// `ctx.register_udtf("timeseries", Arc::new(TimeseriesFunction))`; rask's
/// sessions have it already.
#[derive(Debug, Default)]
pub struct TimeseriesFunction;

impl TimeseriesFunction {
    /// Reads the SQL arguments into a spec.
    pub fn spec_from_args(args: &[Expr]) -> Result<TimeseriesSpec> {
        if args.len() > ARGUMENTS.len() {
            return Err(arg_error(format!(
                "takes at most {} arguments ({}), got {}",
                ARGUMENTS.len(),
                ARGUMENTS.join(", "),
                args.len()
            )));
        }
        let mut spec = TimeseriesSpec::default();
        for (i, arg) in args.iter().enumerate() {
            let name = ARGUMENTS[i];
            let Some(value) = literal(arg) else {
                return Err(arg_error(format!(
                    "argument {} ({name}) must be a constant, got {arg}",
                    i + 1
                )));
            };
            if value.is_null() {
                continue;
            }
            let bad = |why: String| arg_error(format!("argument {} ({name}) {why}", i + 1));
            match name {
                "start" => spec.start = timestamp(&value).map_err(bad)?,
                "end" => spec.end = timestamp(&value).map_err(bad)?,
                "freq" => spec.freq = duration(&value).map_err(bad)?,
                "partition_freq" => spec.partition_freq = duration(&value).map_err(bad)?,
                _ => spec.seed = seed(&value).map_err(bad)?,
            }
        }
        spec.validate().map_err(|e| arg_error(e.to_string()))?;
        Ok(spec)
    }
}

impl TableFunctionImpl for TimeseriesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let spec = Self::spec_from_args(args.exprs())?;
        Ok(Arc::new(TimeseriesTable::new(spec)))
    }
}

/// A timeseries as a table.
///
/// DataFusion names every scan of a table function after the function alone
/// (`timeseries()`), and treats scans with equal names as equal plans, so two
/// calls with different arguments in one query could be merged as a common
/// subexpression. The table therefore presents itself as a one-scan logical plan
/// over a table named after its arguments, which DataFusion inlines in place of
/// the `timeseries()` scan.
#[derive(Debug, Clone)]
pub struct TimeseriesTable {
    spec: TimeseriesSpec,
    schema: SchemaRef,
    /// The scan of this table under its full name; `None` on that inner table.
    named_scan: Option<LogicalPlan>,
}

impl TimeseriesTable {
    /// The table for `spec`.
    pub fn new(spec: TimeseriesSpec) -> Self {
        let inner = Self {
            spec,
            schema: TimeseriesSpec::schema(),
            named_scan: None,
        };
        let name = TableReference::bare(format!("timeseries({spec})"));
        let source = provider_as_source(Arc::new(inner.clone()));
        let named_scan = LogicalPlanBuilder::scan(name, source, None)
            .and_then(|b| b.build())
            .ok();
        Self {
            named_scan,
            ..inner
        }
    }
}

#[async_trait]
impl TableProvider for TimeseriesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.named_scan.as_ref().map(Cow::Borrowed)
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(TimeseriesExec::try_new(
            self.spec,
            projection.map(Vec::as_slice),
            limit,
        )?))
    }
}

fn arg_error(message: String) -> DataFusionError {
    plan_datafusion_err!("timeseries(): {message}")
}

/// The constant value of an argument: a literal, or a negated numeric literal.
fn literal(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Negative(inner) => match literal(inner)? {
            ScalarValue::Int64(Some(v)) => Some(ScalarValue::Int64(Some(-v))),
            ScalarValue::Float64(Some(v)) => Some(ScalarValue::Float64(Some(-v))),
            _ => None,
        },
        Expr::Cast(cast) => literal(&cast.expr)?.cast_to(cast.field.data_type()).ok(),
        _ => None,
    }
}

fn string(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

/// A timestamp from a string (`'2000-01-01'`, `'2000-01-01 12:00:00'`), a date
/// or a timestamp literal.
fn timestamp(value: &ScalarValue) -> Result<i64, String> {
    if let Some(s) = string(value) {
        return string_to_timestamp_nanos(s.trim())
            .map_err(|_| format!("'{s}' is not a date or timestamp (expected e.g. '2000-01-01' or '2000-01-01 12:00:00')"));
    }
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    match value.cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, None)) {
        Ok(ScalarValue::TimestampNanosecond(Some(ns), _)) if value.data_type().is_temporal() => {
            Ok(ns)
        }
        _ => Err(format!(
            "must be a date or timestamp, got {} {value}",
            value.data_type()
        )),
    }
}

/// A duration from a pandas-style frequency string: an optional count and a unit
/// (`'1s'`, `'10min'`, `'1h'`, `'1d'`, `'500ms'`), or an interval literal.
fn duration(value: &ScalarValue) -> Result<i64, String> {
    let ns = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000_000_000 + v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000)
        }
        _ => match string(value) {
            Some(s) => Some(parse_frequency(s)?),
            None => None,
        },
    };
    match ns {
        Some(ns) if ns > 0 => Ok(ns),
        Some(_) => Err(format!("must be a positive duration, got {value}")),
        None => Err(format!(
            "must be a frequency such as '1s', '10min', '1h' or '1d', got {} {value}",
            value.data_type()
        )),
    }
}

/// Parses `'<count><unit>'` into nanoseconds.
fn parse_frequency(text: &str) -> Result<i64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (count, unit) = s.split_at(split);
    let count: f64 = if count.is_empty() {
        1.0
    } else {
        count
            .parse()
            .map_err(|_| format!("'{text}' does not start with a number"))?
    };
    let unit_ns: f64 = match unit.trim() {
        "ns" | "N" => 1.0,
        "us" | "U" => 1e3,
        "ms" | "L" => 1e6,
        "s" | "S" | "sec" | "second" | "seconds" => 1e9,
        "min" | "T" | "minute" | "minutes" => 60e9,
        "h" | "H" | "hour" | "hours" => 3600e9,
        "d" | "D" | "day" | "days" => 86_400e9,
        "w" | "W" | "week" | "weeks" => 7.0 * 86_400e9,
        other => {
            return Err(format!(
                "'{text}' has an unknown unit '{other}' (use ns, us, ms, s, min, h, d or W)"
            ));
        }
    };
    let ns = count * unit_ns;
    if !(ns.is_finite() && ns.abs() < i64::MAX as f64) {
        return Err(format!("'{text}' is out of range"));
    }
    if ns <= 0.0 || ns.round() == 0.0 {
        return Err(format!("'{text}' must be a positive duration"));
    }
    Ok(ns.round() as i64)
}

fn seed(value: &ScalarValue) -> Result<u64, String> {
    match value {
        ScalarValue::Int64(Some(v)) if *v >= 0 => Ok(*v as u64),
        ScalarValue::UInt64(Some(v)) => Ok(*v),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_) => seed(
            &value
                .cast_to(&datafusion::arrow::datatypes::DataType::Int64)
                .map_err(|e| e.to_string())?,
        ),
        _ => Err(format!("must be a non-negative integer, got {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::lit;

    #[test]
    fn parses_frequencies() {
        assert_eq!(parse_frequency("1s"), Ok(1_000_000_000));
        assert_eq!(parse_frequency("10min"), Ok(600_000_000_000));
        assert_eq!(parse_frequency("1d"), Ok(86_400_000_000_000));
        assert_eq!(parse_frequency("H"), Ok(3_600_000_000_000));
        assert_eq!(parse_frequency("500ms"), Ok(500_000_000));
        assert!(parse_frequency("0s").unwrap_err().contains("positive"));
        assert!(
            parse_frequency("3 fortnights")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_frequency("abc").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn reads_positional_arguments_with_defaults() {
        let spec = TimeseriesFunction::spec_from_args(&[
            lit("2000-01-01"),
            lit("2000-01-02"),
            lit("1h"),
            lit(ScalarValue::Utf8(None)),
            lit(7i64),
        ])
        .unwrap();
        assert_eq!(spec.num_rows(), 24);
        assert_eq!(spec.partitions(), 1);
        assert_eq!(spec.seed, 7);
    }

    #[test]
    fn explains_bad_arguments() {
        let err = |args: &[Expr]| {
            TimeseriesFunction::spec_from_args(args)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(&[lit("2000-13-01")]).contains("argument 1 (start) '2000-13-01' is not a date")
        );
        assert!(
            err(&[lit("2000-01-05"), lit("2000-01-01")])
                .contains("end (2000-01-01 00:00:00) must be after start")
        );
        assert!(
            err(&[lit(ScalarValue::Null), lit(ScalarValue::Null), lit("0s")])
                .contains("argument 3 (freq)")
        );
        assert!(
            err(&[lit(1), lit(2), lit(3), lit(4), lit(5), lit(6)]).contains("at most 5 arguments")
        );
        assert!(
            err(&[
                lit(ScalarValue::Null),
                lit(ScalarValue::Null),
                lit(ScalarValue::Null),
                lit(ScalarValue::Null),
                lit(-3i64)
            ])
            .contains("non-negative")
        );
    }
}
