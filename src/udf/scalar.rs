//! Scalar UDFs from typed Rust closures: [`scalar`] turns `|x: f64| x * x` into a
//! vectorised DataFusion [`ScalarUDF`] whose argument and result types come from
//! the closure's signature.
//!
//! Arguments are `f64`, `f32`, `i64`, `i32`, `i16`, `i8`, `u64`, `u32`, `u16`,
//! `u8`, `bool` or `String`; a null in any of them makes the result null,
//! unless the argument is an `Option<T>`, which sees the null as `None`. The
//! result is one of those types, an `Option` of one (`None` is null), or a
//! `Result` of either, whose error fails the query with the UDF's name. A
//! panic inside the closure fails the task the same way; the worker lives on.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray, StringArray,
};
use datafusion::arrow::datatypes::{self as types, ArrowPrimitiveType, DataType};
use datafusion::common::{DataFusionError, Result, exec_datafusion_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Makes a scalar UDF named `name` from a typed closure.
///
/// ```
/// # async fn demo() -> rask::Result<()> {
/// let square = rask::udf::scalar("square", |x: f64| x * x);
/// let client = rask::Client::with_config(rask::Config {
///     registry: rask::udf::Registry::new().with_scalar(square),
///     ..Default::default()
/// })?;
/// let df = client.sql("SELECT square(3.0) AS nine").await?;
/// # Ok(()) }
/// ```
pub fn scalar<Args, F: ScalarFn<Args>>(name: &str, function: F) -> ScalarUDF {
    ScalarUDF::new_from_impl(ClosureUdf {
        name: name.to_string(),
        signature: Signature::exact(F::arg_types(), Volatility::Immutable),
        return_type: F::return_type(),
        kernel: function.into_kernel(name.to_string()),
    })
}

/// A column's values, computed from the argument arrays and the row count.
type Kernel = Arc<dyn Fn(&[ArrayRef], usize) -> Result<ArrayRef, String> + Send + Sync>;

/// A typed closure usable as a scalar UDF; implemented for closures of up to
/// four [`SqlArg`] arguments returning a [`SqlResult`].
pub trait ScalarFn<Args>: Send + Sync + 'static {
    /// The SQL types of the arguments.
    fn arg_types() -> Vec<DataType>;
    /// The SQL type of the result.
    fn return_type() -> DataType;
    /// The vectorised form.
    #[doc(hidden)]
    fn into_kernel(self, name: String) -> Kernel;
}

/// A Rust type a UDF can take as an argument.
pub trait SqlArg: Sized + 'static {
    /// The column as the UDF reads it.
    type Column<'a>;
    /// The SQL type.
    fn data_type() -> DataType;
    /// The argument array, as this type reads it.
    fn column(array: &ArrayRef) -> Result<Self::Column<'_>, String>;
    /// Whether some row is null (and so must be looked at one by one).
    fn has_nulls(column: &Self::Column<'_>) -> bool;
    /// Row `i`, ignoring nulls.
    fn value(column: &Self::Column<'_>, i: usize) -> Self;
    /// Row `i`, `None` when it is null (and the result is then null).
    fn get(column: &Self::Column<'_>, i: usize) -> Option<Self> {
        if Self::has_nulls(column) && Self::is_null(column, i) {
            None
        } else {
            Some(Self::value(column, i))
        }
    }
    /// Whether row `i` is null.
    fn is_null(column: &Self::Column<'_>, i: usize) -> bool;
}

/// A Rust type a UDF can return.
pub trait SqlResult: Sized + 'static {
    /// The SQL type.
    fn data_type() -> DataType;
    /// The column of `values`, one per row, none of them null.
    fn from_values(values: impl Iterator<Item = Self>) -> Result<ArrayRef, String>;
    /// The column of `values`, one per row, `None` for a null.
    fn from_options(values: impl Iterator<Item = Option<Self>>) -> Result<ArrayRef, String>;
}

/// `SqlArg` and `SqlResult` for `$rust`, read from and collected into
/// `$array`s of SQL type `$data_type`.
macro_rules! sql_type {
    ($rust:ty, $array:ty, $data_type:expr,
     |$a:ident| $downcast:expr, |$c:ident, $i:ident| $value:expr, |$v:ident| $from_values:expr) => {
        impl SqlArg for $rust {
            type Column<'a> = &'a $array;
            fn data_type() -> DataType {
                $data_type
            }
            fn column($a: &ArrayRef) -> Result<Self::Column<'_>, String> {
                $downcast.ok_or_else(|| {
                    format!(
                        "expected {}, got {}",
                        <Self as SqlArg>::data_type(),
                        $a.data_type()
                    )
                })
            }
            fn has_nulls(column: &Self::Column<'_>) -> bool {
                column.null_count() > 0
            }
            fn value($c: &Self::Column<'_>, $i: usize) -> Self {
                $value
            }
            fn is_null(column: &Self::Column<'_>, i: usize) -> bool {
                column.is_null(i)
            }
        }

        impl SqlResult for $rust {
            fn data_type() -> DataType {
                $data_type
            }
            fn from_values($v: impl Iterator<Item = Self>) -> Result<ArrayRef, String> {
                Ok(Arc::new($from_values))
            }
            fn from_options(
                values: impl Iterator<Item = Option<Self>>,
            ) -> Result<ArrayRef, String> {
                Ok(Arc::new(values.collect::<$array>()))
            }
        }
    };
}

macro_rules! primitive {
    ($($rust:ty => $arrow:ty),* $(,)?) => {$(
        sql_type!(
            $rust, PrimitiveArray<$arrow>, <$arrow as ArrowPrimitiveType>::DATA_TYPE,
            |a| a.as_primitive_opt::<$arrow>(), |c, i| c.value(i),
            |v| PrimitiveArray::<$arrow>::from_iter_values(v)
        );
    )*};
}

primitive! {
    f64 => types::Float64Type, f32 => types::Float32Type,
    i64 => types::Int64Type, i32 => types::Int32Type, i16 => types::Int16Type, i8 => types::Int8Type,
    u64 => types::UInt64Type, u32 => types::UInt32Type, u16 => types::UInt16Type, u8 => types::UInt8Type,
}

sql_type!(
    bool,
    BooleanArray,
    DataType::Boolean,
    |a| a.as_boolean_opt(),
    |c, i| c.value(i),
    |v| v.map(Some).collect::<BooleanArray>()
);

sql_type!(
    String,
    StringArray,
    DataType::Utf8,
    |a| a.as_string_opt::<i32>(),
    |c, i| c.value(i).to_string(),
    |v| v.map(Some).collect::<StringArray>()
);

/// `Option<T>` sees nulls as `None` instead of skipping the row.
impl<T: SqlArg> SqlArg for Option<T> {
    type Column<'a> = T::Column<'a>;
    fn data_type() -> DataType {
        T::data_type()
    }
    fn column(array: &ArrayRef) -> Result<Self::Column<'_>, String> {
        T::column(array)
    }
    fn has_nulls(_: &Self::Column<'_>) -> bool {
        false
    }
    fn value(column: &Self::Column<'_>, i: usize) -> Self {
        T::get(column, i)
    }
    fn is_null(_: &Self::Column<'_>, _: usize) -> bool {
        false
    }
}

/// `None` is a null result.
impl<T: SqlResult> SqlResult for Option<T> {
    fn data_type() -> DataType {
        T::data_type()
    }
    fn from_values(values: impl Iterator<Item = Self>) -> Result<ArrayRef, String> {
        T::from_options(values)
    }
    fn from_options(values: impl Iterator<Item = Option<Self>>) -> Result<ArrayRef, String> {
        T::from_options(values.map(Option::flatten))
    }
}

/// An error fails the query, with the UDF's name and the message.
impl<T: SqlResult, E: fmt::Display + 'static> SqlResult for Result<T, E> {
    fn data_type() -> DataType {
        T::data_type()
    }
    fn from_values(values: impl Iterator<Item = Self>) -> Result<ArrayRef, String> {
        let mut error = None;
        let array = T::from_values(values.map_while(|v| v.map_err(|e| error = Some(e)).ok()))?;
        match error {
            Some(e) => Err(e.to_string()),
            None => Ok(array),
        }
    }
    fn from_options(values: impl Iterator<Item = Option<Self>>) -> Result<ArrayRef, String> {
        let mut error = None;
        let ok = values.map_while(|v| match v {
            Some(Err(e)) => {
                error = Some(e);
                None
            }
            Some(Ok(v)) => Some(Some(v)),
            None => Some(None),
        });
        let array = T::from_options(ok)?;
        match error {
            Some(e) => Err(e.to_string()),
            None => Ok(array),
        }
    }
}

macro_rules! closures {
    ($(($($arg:ident $col:ident $n:tt),*)),* $(,)?) => {$(
        impl<Fun, R, $($arg),*> ScalarFn<($($arg,)*)> for Fun
        where
            Fun: Fn($($arg),*) -> R + Send + Sync + 'static,
            R: SqlResult,
            $($arg: SqlArg,)*
        {
            fn arg_types() -> Vec<DataType> {
                vec![$($arg::data_type()),*]
            }
            fn return_type() -> DataType {
                R::data_type()
            }
            fn into_kernel(self, name: String) -> Kernel {
                Arc::new(move |arrays: &[ArrayRef], rows: usize| {
                    let wrong = || format!("{name} takes {} arguments, got {}", Self::arg_types().len(), arrays.len());
                    $(let $col = $arg::column(arrays.get($n).ok_or_else(wrong)?)?;)*
                    if !($($arg::has_nulls(&$col))||*) {
                        R::from_values((0..rows).map(|i| (self)($($arg::value(&$col, i)),*)))
                    } else {
                        R::from_options((0..rows).map(|i| Some((self)($($arg::get(&$col, i)?),*))))
                    }
                })
            }
        }
    )*};
}

closures! {
    (A a 0),
    (A a 0, B b 1),
    (A a 0, B b 1, C c 2),
    (A a 0, B b 1, C c 2, D d 3),
}

/// A closure as a DataFusion UDF.
struct ClosureUdf {
    name: String,
    signature: Signature,
    return_type: DataType,
    kernel: Kernel,
}

impl fmt::Debug for ClosureUdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClosureUdf({})", self.name)
    }
}

// Two UDFs are the same when their names and types are: a session holds one
// function per name.
impl PartialEq for ClosureUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.signature == other.signature
            && self.return_type == other.return_type
    }
}

impl Eq for ClosureUdf {}

impl Hash for ClosureUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.return_type.hash(state);
    }
}

/// Whether `udf` is a closure made by [`scalar`].
pub(crate) fn is_closure(udf: &ScalarUDF) -> bool {
    let inner: &dyn std::any::Any = udf.inner().as_ref();
    inner.is::<ClosureUdf>()
}

impl ScalarUDFImpl for ClosureUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let call = std::panic::AssertUnwindSafe(|| (self.kernel)(&arrays, rows));
        match std::panic::catch_unwind(call) {
            Ok(Ok(array)) => Ok(ColumnarValue::Array(array)),
            Ok(Err(message)) => Err(udf_error(&self.name, &message)),
            Err(panic) => {
                let message = crate::exec::panic_message(panic.as_ref());
                Err(udf_error(&self.name, &format!("panicked: {message}")))
            }
        }
    }
}

fn udf_error(name: &str, message: &str) -> DataFusionError {
    exec_datafusion_err!("UDF {name}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array};
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    fn invoke(udf: &ScalarUDF, args: Vec<ArrayRef>) -> Result<ArrayRef> {
        let rows = args.first().map_or(1, |a| a.len());
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type().clone(), true)))
            .collect();
        let out = udf.invoke_with_args(ScalarFunctionArgs {
            args: args.into_iter().map(ColumnarValue::Array).collect(),
            arg_fields,
            number_rows: rows,
            return_field: Arc::new(Field::new("r", udf.return_type(&[])?, true)),
            config_options: Arc::new(ConfigOptions::default()),
        })?;
        out.into_array(rows)
    }

    #[test]
    fn types_come_from_the_signature_and_nulls_propagate() {
        let square = scalar("square", |x: f64| x * x);
        assert_eq!(square.return_type(&[]).unwrap(), DataType::Float64);
        let x: ArrayRef = Arc::new(Float64Array::from(vec![Some(2.0), None, Some(-3.0)]));
        let out = invoke(&square, vec![x]).unwrap();
        let out = out.as_primitive::<types::Float64Type>();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(4.0), None, Some(9.0)]
        );

        let label = scalar("label", |n: i64, name: String| format!("{name}#{n}"));
        assert_eq!(label.return_type(&[]).unwrap(), DataType::Utf8);
        let n: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let out = invoke(&label, vec![n, names]).unwrap();
        assert_eq!(out.as_string::<i32>().value(1), "b#2");

        let or_zero = scalar("or_zero", |x: Option<f64>| x.unwrap_or(0.0));
        let x: ArrayRef = Arc::new(Float64Array::from(vec![None, Some(1.0)]));
        let out = invoke(&or_zero, vec![x]).unwrap();
        assert_eq!(out.null_count(), 0);
    }

    #[test]
    fn errors_and_panics_name_the_udf() {
        let checked = scalar("checked_sqrt", |x: f64| {
            if x < 0.0 {
                Err(format!("{x} is negative"))
            } else {
                Ok(x.sqrt())
            }
        });
        let x: ArrayRef = Arc::new(Float64Array::from(vec![4.0, -1.0]));
        let err = invoke(&checked, vec![x.clone()]).unwrap_err().to_string();
        assert!(err.contains("UDF checked_sqrt: -1 is negative"), "{err}");

        let boom = scalar("boom", |x: f64| -> f64 { panic!("bad row {x}") });
        let err = invoke(&boom, vec![x]).unwrap_err().to_string();
        assert!(err.contains("UDF boom: panicked: bad row 4"), "{err}");
    }
}
