//! Plain Rust functions as tasks, as Dask's `delayed` and `client.submit`
//! make them: a [`Function`] is a registered function with its types, a
//! [`Delayed`] a call of it not yet run, whose arguments are plain values,
//! other delayed calls or [`Future`]s.
//!
//! ```no_run
//! # async fn demo(client: rask::Client) -> rask::Result<()> {
//! fn add(a: &f64, b: &f64) -> f64 {
//!     a + b
//! }
//! let add = client.register("add", add)?;
//! let three = add.delayed((1.0, 2.0)); // nothing runs yet
//! let six = add.delayed((&three, 3.0)); // a graph of two calls
//! let futures = client.compute(&[six]).await?; // now it runs
//! assert_eq!(futures[0].value::<f64>().await?, 6.0);
//! let nine = add.submit((&futures[0], 3.0)); // a future as an argument
//! # Ok(()) }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;

use super::Future;
use super::call::{CallInput, call_task, fresh_token, pure_token};
use super::connection::Connection;
use crate::exec::{PartitionState, TaskData, Value};
use crate::key::{Key, KeySet};
use crate::planner::{Layout, Link, Row};
use crate::scheduler::{TaskSpec, WorkerId};
use crate::worker::{FunctionJob, Job};

/// A function registered with a client, with its argument and result types:
/// `Args` is the tuple of its argument types, `R` its result's.
pub struct Function<Args, R> {
    job: FunctionJob,
    connection: Arc<Connection>,
    pure: bool,
    _types: PhantomData<fn(Args) -> R>,
}

impl<Args, R> Clone for Function<Args, R> {
    fn clone(&self) -> Self {
        Self {
            job: self.job.clone(),
            connection: Arc::clone(&self.connection),
            pure: self.pure,
            _types: PhantomData,
        }
    }
}

impl<Args, R> fmt::Debug for Function<Args, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Function({})", self.job.name)
    }
}

impl<Args, R> Function<Args, R> {
    pub(crate) fn new(job: FunctionJob, connection: Arc<Connection>) -> Self {
        Self {
            job,
            connection,
            pure: false,
            _types: PhantomData,
        }
    }

    /// The name it was registered as.
    pub fn name(&self) -> &str {
        &self.job.name
    }

    /// The same function, marked pure: a call's key comes from its arguments
    /// (`add-<hash of the arguments>`), so the same call made twice is one task
    /// computed once. Calls of a function not marked pure each get a fresh key.
    pub fn pure(mut self) -> Self {
        self.pure = true;
        self
    }

    /// A call of the function on `args` (a tuple, one element an argument:
    /// a value, a [`Delayed`] or a [`Future`]), not run until computed.
    pub fn delayed(&self, args: impl CallArgs<Args>) -> Delayed<R> {
        let (inputs, nodes, held) = split(args.into_args());
        let token = if self.pure {
            pure_token(&self.job.name, &inputs).unwrap_or_else(|_| fresh_token())
        } else {
            fresh_token()
        };
        let key = Key::new(format!("{}-{token}", self.job.name));
        let task = call_task(key.clone(), self.job.clone(), &inputs);
        Delayed::from_node(Node {
            key,
            task: Some(task),
            inputs: nodes,
            _held: held,
            connection: Arc::clone(&self.connection),
            workers: None,
        })
    }

    /// Runs the function on `args` now (Dask's `client.submit`).
    pub fn submit(&self, args: impl CallArgs<Args>) -> Future {
        self.delayed(args).compute()
    }

    /// Runs the function once for each element of `calls`, in one submission
    /// (Dask's `client.map`); the futures come in the same order.
    pub fn map<C: CallArgs<Args>>(&self, calls: impl IntoIterator<Item = C>) -> Vec<Future> {
        let delayed: Vec<Delayed<R>> = calls.into_iter().map(|c| self.delayed(c)).collect();
        compute(&delayed)
    }
}

/// One argument of a call. Made by [`IntoArg`]; opaque.
pub struct Argument(ArgumentKind);

enum ArgumentKind {
    Literal(Value),
    Delayed(Arc<Node>),
    Future(Future),
}

/// What can be passed where a function takes an `A`: an `A` itself (sent
/// with the call), a [`Delayed`] call returning an `A`, or a [`Future`] (whose
/// value is read as an `A` when the task runs).
pub trait IntoArg<A> {
    /// The argument.
    fn into_arg(self) -> Argument;
}

impl<A: Serialize + Send + Sync + 'static> IntoArg<A> for A {
    fn into_arg(self) -> Argument {
        Argument(ArgumentKind::Literal(Value::new(self)))
    }
}

impl<A> IntoArg<A> for &Delayed<A> {
    fn into_arg(self) -> Argument {
        Argument(ArgumentKind::Delayed(Arc::clone(&self.node)))
    }
}

impl<A> IntoArg<A> for Delayed<A> {
    fn into_arg(self) -> Argument {
        Argument(ArgumentKind::Delayed(self.node))
    }
}

impl<A> IntoArg<A> for &Future {
    fn into_arg(self) -> Argument {
        Argument(ArgumentKind::Future(self.clone()))
    }
}

impl<A> IntoArg<A> for Future {
    fn into_arg(self) -> Argument {
        Argument(ArgumentKind::Future(self))
    }
}

/// The arguments of a call of a function taking `Args`: a tuple with one
/// [`IntoArg`] per argument (`()`, `(a,)`, `(a, b)`, … up to six).
pub trait CallArgs<Args> {
    /// The arguments, in order.
    fn into_args(self) -> Vec<Argument>;
}

macro_rules! call_args {
    ($(($($arg:ident $x:ident $i:tt),*)),* $(,)?) => {$(
        impl<$($arg,)* $($x: IntoArg<$arg>),*> CallArgs<($($arg,)*)> for ($($x,)*) {
            #[allow(unused_variables)]
            fn into_args(self) -> Vec<Argument> {
                vec![$(self.$i.into_arg()),*]
            }
        }
    )*};
}

call_args! {
    (),
    (A XA 0),
    (A XA 0, B XB 1),
    (A XA 0, B XB 1, C XC 2),
    (A XA 0, B XB 1, C XC 2, D XD 3),
    (A XA 0, B XB 1, C XC 2, D XD 3, E XE 4),
    (A XA 0, B XB 1, C XC 2, D XD 3, E XE 4, F XF 5),
}

/// The task's inputs, the delayed calls it reads, and the futures it reads.
fn split(args: Vec<Argument>) -> (Vec<CallInput>, Vec<Arc<Node>>, Vec<Future>) {
    let mut inputs = Vec::with_capacity(args.len());
    let mut nodes = Vec::new();
    let mut held = Vec::new();
    for Argument(arg) in args {
        match arg {
            ArgumentKind::Literal(value) => {
                inputs.push(CallInput::Literal(Arc::new(TaskData::Value(value))));
            }
            ArgumentKind::Delayed(node) => {
                inputs.push(CallInput::Key(node.key().clone()));
                nodes.push(node);
            }
            ArgumentKind::Future(future) => {
                inputs.push(CallInput::Key(future.key().clone()));
                held.push(future);
            }
        }
    }
    (inputs, nodes, held)
}

/// One call in a graph of delayed calls.
#[derive(Clone)]
struct Node {
    key: Key,
    /// The task and its job; `None` once persisted, when `held` holds its future.
    task: Option<(TaskSpec, Arc<Job>)>,
    /// The delayed calls it reads.
    inputs: Vec<Arc<Node>>,
    /// The futures it reads (or, persisted, its own).
    _held: Vec<Future>,
    connection: Arc<Connection>,
    /// Names or addresses of the workers it may run on.
    workers: Option<Vec<String>>,
}

impl Node {
    fn key(&self) -> &Key {
        &self.key
    }
}

/// A call not run yet, whose value will be a `T`. Cheap to clone; calls that
/// take it as an argument build a graph, which [`compute`] submits whole.
pub struct Delayed<T> {
    node: Arc<Node>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Delayed<T> {
    fn clone(&self) -> Self {
        Self {
            node: Arc::clone(&self.node),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Delayed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Delayed('{}')", self.key())
    }
}

impl<T> Delayed<T> {
    fn from_node(node: Node) -> Self {
        Self {
            node: Arc::new(node),
            _type: PhantomData,
        }
    }

    /// The key its task will have (`add_two_people-<token>`).
    pub fn key(&self) -> &Key {
        self.node.key()
    }

    fn with_spec(mut self, f: impl FnOnce(&mut TaskSpec)) -> Self {
        if let Some((spec, _)) = Arc::make_mut(&mut self.node).task.as_mut() {
            f(spec);
        }
        self
    }

    /// Retries the task up to `n` times when it fails.
    pub fn retries(self, n: u32) -> Self {
        self.with_spec(|spec| spec.retries = n)
    }

    /// Runs it before ready tasks of lower priority (default 0).
    pub fn priority(self, priority: i32) -> Self {
        self.with_spec(|spec| spec.priority = priority)
    }

    /// Runs it only on the workers named (by name, address or id, as the
    /// workers table shows them), among those in the cluster when it is
    /// submitted. Restricted to none of them, it waits (Dask's `no-worker`
    /// state) until cancelled.
    pub fn workers<'a>(mut self, workers: impl IntoIterator<Item = &'a str>) -> Self {
        Arc::make_mut(&mut self.node).workers =
            Some(workers.into_iter().map(str::to_string).collect());
        self
    }

    /// Submits the call and what it needs; returns its future.
    pub fn compute(&self) -> Future {
        compute(std::slice::from_ref(self)).remove(0)
    }

    /// Submits the call and returns a delayed call standing for its result,
    /// which later graphs read instead of computing it again (Dask's `persist`).
    pub fn persist(&self) -> Delayed<T> {
        let future = self.compute();
        Delayed::from_node(Node {
            key: future.key().clone(),
            task: None,
            inputs: Vec::new(),
            _held: vec![future],
            connection: Arc::clone(&self.node.connection),
            workers: None,
        })
    }
}

/// Submits the calls `delayed` and everything they read, once each, in one
/// submission; returns their futures, in order (Dask's `client.compute`).
pub fn compute<T>(delayed: &[Delayed<T>]) -> Vec<Future> {
    let Some(first) = delayed.first() else {
        return Vec::new();
    };
    let connection = Arc::clone(&first.node.connection);
    let roots: Vec<&Arc<Node>> = delayed.iter().map(|d| &d.node).collect();
    let tasks = tasks_of(&roots, &connection);
    let wanted = delayed.iter().map(|d| d.key().clone()).collect();
    connection.submit(tasks, wanted)
}

/// The tasks of the graphs under `roots`, each once, inputs before readers.
fn tasks_of(roots: &[&Arc<Node>], connection: &Connection) -> Vec<(TaskSpec, Arc<Job>)> {
    let workers = connection.cluster().info().workers;
    let resolve = |names: &[String]| -> Vec<WorkerId> {
        workers
            .iter()
            .filter(|w| {
                names
                    .iter()
                    .any(|n| *n == w.name || *n == w.address || *n == w.id.to_string())
            })
            .map(|w| w.id)
            .collect()
    };
    let mut seen = KeySet::default();
    let mut tasks = Vec::new();
    // Depth first, a node after its inputs, without recursion (chains can be long).
    let mut stack: Vec<(&Arc<Node>, bool)> = roots.iter().rev().map(|n| (*n, false)).collect();
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            if let Some((spec, job)) = &node.task
                && seen.insert(spec.key.clone())
            {
                let mut spec = spec.clone();
                if let Some(names) = &node.workers {
                    spec.workers = Some(resolve(names));
                }
                tasks.push((spec, Arc::clone(job)));
            }
            continue;
        }
        if node.task.is_none() || seen.contains(node.key()) {
            continue;
        }
        stack.push((node, true));
        for input in node.inputs.iter().rev() {
            if !seen.contains(input.key()) {
                stack.push((input, false));
            }
        }
    }
    tasks
}

/// Writes the graph of the calls `delayed` (and everything they read) to
/// `path`, as [`DataFrame::visualize`](super::DataFrame::visualize) does: a
/// row per function and depth, futures read (scattered values, persisted
/// calls) below with their state.
pub fn visualize<T>(
    delayed: &[Delayed<T>],
    path: impl AsRef<std::path::Path>,
) -> crate::Result<()> {
    drawing(delayed).write(path.as_ref())
}

/// One task or future of a drawn graph.
struct Drawn {
    key: Key,
    operation: String,
    inputs: Vec<Key>,
    state: Option<PartitionState>,
}

/// The drawing of the graphs under `delayed`.
fn drawing<T>(delayed: &[Delayed<T>]) -> Layout {
    // Every node and future, inputs first.
    let mut drawn: Vec<Drawn> = Vec::new();
    let mut seen = KeySet::default();
    let mut stack: Vec<(&Arc<Node>, bool)> =
        delayed.iter().rev().map(|d| (&d.node, false)).collect();
    while let Some((node, expanded)) = stack.pop() {
        if !expanded {
            if seen.contains(node.key()) {
                continue;
            }
            stack.push((node, true));
            stack.extend(node.inputs.iter().rev().map(|n| (n, false)));
            continue;
        }
        if !seen.insert(node.key().clone()) {
            continue;
        }
        for future in &node._held {
            if seen.insert(future.key().clone()) {
                drawn.push(Drawn {
                    key: future.key().clone(),
                    operation: operation_of(future.key()),
                    inputs: Vec::new(),
                    state: Some(super::dataframe::future_state(Some(future))),
                });
            }
        }
        if let Some((spec, job)) = &node.task {
            let operation = match &**job {
                Job::Function(f) => f.name.to_string(),
                _ => operation_of(&spec.key),
            };
            drawn.push(Drawn {
                key: spec.key.clone(),
                operation,
                inputs: spec.dependencies.clone(),
                state: None,
            });
        }
    }
    // Rows by depth, then operation, in order of first appearance.
    let mut depth: crate::key::KeyMap<usize> = Default::default();
    let mut rows: Vec<(usize, String)> = Vec::new();
    let mut place: crate::key::KeyMap<(usize, usize)> = Default::default();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, d) in drawn.iter().enumerate() {
        let level = d
            .inputs
            .iter()
            .filter_map(|k| depth.get(k))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        depth.insert(d.key.clone(), level);
        let row = match rows.iter().position(|r| r.0 == level && r.1 == d.operation) {
            Some(row) => row,
            None => {
                rows.push((level, d.operation.clone()));
                members.push(Vec::new());
                rows.len() - 1
            }
        };
        place.insert(d.key.clone(), (row, members[row].len()));
        members[row].push(i);
    }
    // Rows sorted bottom up; edges as explicit lists.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&r| rows[r].0);
    let position: Vec<usize> = {
        let mut position = vec![0; rows.len()];
        for (at, &r) in order.iter().enumerate() {
            position[r] = at;
        }
        position
    };
    let drawn_rows = order
        .iter()
        .map(|&r| {
            let tasks = &members[r];
            let mut reads: Vec<(usize, Vec<Vec<usize>>)> = Vec::new();
            for (t, &i) in tasks.iter().enumerate() {
                for input in &drawn[i].inputs {
                    let Some(&(row, index)) = place.get(input) else {
                        continue;
                    };
                    let at = position[row];
                    let slot = match reads.iter().position(|(r, _)| *r == at) {
                        Some(slot) => slot,
                        None => {
                            reads.push((at, vec![Vec::new(); tasks.len()]));
                            reads.len() - 1
                        }
                    };
                    reads[slot].1[t].push(index);
                }
            }
            let states: Vec<Option<PartitionState>> =
                tasks.iter().map(|&i| drawn[i].state).collect();
            let states = states
                .iter()
                .all(Option::is_some)
                .then(|| states.into_iter().flatten().collect());
            Row::new(
                &rows[r].1,
                format!("{}-{}", rows[r].1, rows[r].0),
                tasks.iter().map(|&i| drawn[i].key.clone()).collect(),
                states,
                reads
                    .into_iter()
                    .map(|(row, lists)| (row, Link::Explicit(lists)))
                    .collect(),
            )
        })
        .collect();
    Layout::new(drawn_rows, None)
}

/// `add_two_people-1a2b` → `add_two_people`.
fn operation_of(key: &Key) -> String {
    key.operation().to_string()
}
