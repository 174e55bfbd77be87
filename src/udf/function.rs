//! Task functions from plain Rust functions: arguments and result are serde
//! types, so a call can run in any process that registered the same function.
//!
//! A function takes its arguments by reference (`fn add(a: &i64, b: &i64) -> i64`):
//! each is a task's result, shared by every task that reads it. On the worker
//! that made it the value is read in place; from another process it arrives as
//! postcard bytes and is decoded once, into the type the function names.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TaskFn;
use crate::exec::{TaskData, Value};

/// Marks a function whose result is its value ([`Registry::function`](super::Registry::function)).
pub struct Infallible(PhantomData<()>);

/// Marks a function returning `Result<T, E>`, whose error fails the task
/// ([`Registry::add_try_function`](super::Registry::add_try_function)).
pub struct Fallible(PhantomData<()>);

/// A Rust function usable as a task: implemented for functions and closures of
/// up to six arguments, each `&A` with `A: Deserialize`, returning a `Serialize`
/// value (`Infallible`) or a `Result` of one (`Fallible`).
pub trait TaskFunction<Args, Kind>: Send + Sync + 'static {
    /// What a call's value is (the `T` of a fallible function's `Result<T, E>`).
    type Output;
    /// The number of arguments.
    fn arity() -> usize;
    /// The function as workers call it, on its arguments' data.
    #[doc(hidden)]
    fn into_task_fn(self) -> TaskFn;
}

/// Argument `i` (from 0) of a call, as an `A`.
fn arg<A: DeserializeOwned + Send + Sync + 'static>(
    args: &[Arc<TaskData>],
    i: usize,
) -> Result<&A, String> {
    match args.get(i).map(|data| &**data) {
        Some(TaskData::Value(value)) => value
            .get::<A>()
            .map_err(|e| format!("argument {}: {e}", i + 1)),
        Some(TaskData::Batches(_)) => Err(format!(
            "argument {} is a table, not a {}",
            i + 1,
            std::any::type_name::<A>()
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn check_arity(args: &[Arc<TaskData>], arity: usize) -> Result<(), String> {
    if args.len() == arity {
        Ok(())
    } else {
        Err(format!("takes {arity} arguments, got {}", args.len()))
    }
}

/// One `TaskFunction` impl: functions of `$arg`s returning `$ret`, whose
/// result `$out` becomes the task's value through `$value`.
macro_rules! task_function {
    ($kind:ident, [$($extra:tt)*], $ret:ty, |$out:ident| $value:expr; $n:expr; $($arg:ident $i:tt),*) => {
        impl<Fun, R, $($extra)* $($arg),*> TaskFunction<($($arg,)*), $kind> for Fun
        where
            Fun: Fn($(&$arg),*) -> $ret + Send + Sync + 'static,
            R: Serialize + Send + Sync + 'static,
            $($arg: DeserializeOwned + Send + Sync + 'static,)*
        {
            type Output = R;
            fn arity() -> usize {
                $n
            }
            #[allow(unused_variables)]
            fn into_task_fn(self) -> TaskFn {
                Arc::new(move |args: &[Arc<TaskData>]| {
                    check_arity(args, $n)?;
                    let $out = (self)($(arg::<$arg>(args, $i)?),*);
                    Ok(TaskData::Value(Value::new($value)))
                })
            }
        }
    };
}

macro_rules! task_functions {
    ($(($n:expr; $($arg:ident $i:tt),*)),* $(,)?) => {$(
        task_function!(Infallible, [], R, |out| out; $n; $($arg $i),*);
        task_function!(
            Fallible, [E: std::fmt::Display,], Result<R, E>, |out| out.map_err(|e| e.to_string())?;
            $n; $($arg $i),*
        );
    )*};
}

task_functions! {
    (0;),
    (1; A 0),
    (2; A 0, B 1),
    (3; A 0, B 1, C 2),
    (4; A 0, B 1, C 2, D 3),
    (5; A 0, B 1, C 2, D 3, E2 4),
    (6; A 0, B 1, C 2, D 3, E2 4, F 5),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<T: Serialize + Send + Sync + 'static>(v: T) -> Arc<TaskData> {
        Arc::new(TaskData::Value(Value::new(v)))
    }

    fn add(a: &i64, b: &i64) -> i64 {
        a + b
    }

    #[test]
    fn calls_decode_arguments_and_encode_results() {
        let f = TaskFunction::<(i64, i64), Infallible>::into_task_fn(add);
        let out = f(&[value(2i64), value(40i64)]).unwrap();
        assert_eq!(out.value::<i64>(), Some(&42));
        // An argument that came over the wire, as bytes.
        let remote = Value::from_batches(&[Value::new(5i64).to_batch().unwrap()]).unwrap();
        let out = f(&[Arc::new(TaskData::Value(remote)), value(1i64)]).unwrap();
        assert_eq!(out.value::<i64>(), Some(&6));
    }

    #[test]
    fn bad_arguments_say_which_and_why() {
        let f = TaskFunction::<(i64, i64), Infallible>::into_task_fn(add);
        assert_eq!(f(&[value(1i64)]).unwrap_err(), "takes 2 arguments, got 1");
        let wire = Value::from_batches(&[Value::new("text".to_string()).to_batch().unwrap()]);
        let err = f(&[value(1i64), Arc::new(TaskData::Value(wire.unwrap()))]).unwrap_err();
        assert!(
            err.starts_with("argument 2: cannot read a alloc::string::String value as i64"),
            "{err}"
        );
        let table = Arc::new(TaskData::Batches(vec![]));
        assert!(
            f(&[table, value(1i64)])
                .unwrap_err()
                .contains("argument 1 is a table")
        );

        let checked = |x: &i64| {
            if *x > 0 {
                Ok(*x)
            } else {
                Err(format!("{x} is not positive"))
            }
        };
        let f = TaskFunction::<(i64,), Fallible>::into_task_fn(checked);
        assert_eq!(f(&[value(-3i64)]).unwrap_err(), "-3 is not positive");
    }
}
