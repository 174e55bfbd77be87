//! User code rask runs: one [`Registry`] of scalar UDFs (for SQL and dataframe
//! expressions) and task functions (called by name), shared by a client and
//! every worker.
//!
//! Compiled code cannot travel, so functions cross processes by name: each
//! worker announces the names it carries when it registers, a plan that needs a
//! function runs only on workers that announced it, and one that no worker has
//! is refused when it is planned, naming the function. Workers in other
//! processes carry the registry their binary was built with: a custom worker
//! binary passes its registry to the CLI's entry point (`rask_cli::main_with`).
//!
//! ```
//! use rask::udf::{self, Registry};
//!
//! fn add(a: &i64, b: &i64) -> i64 {
//!     a + b
//! }
//!
//! let registry = Registry::new()
//!     .with_scalar(udf::scalar("square", |x: f64| x * x))
//!     .with_function("add", add);
//! assert_eq!(registry.names(), ["add", "square"]);
//! ```

mod function;
mod scalar;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

pub use crate::exec::{PartitionFn, partition, partition_with};
pub use function::{Fallible, Infallible, TaskFunction};
pub(crate) use scalar::is_closure;
pub use scalar::{ScalarFn, SqlArg, SqlResult, scalar};

use crate::exec::TaskData;

/// A task function's code: its inputs' data in, its result out.
pub type TaskFn = Arc<dyn Fn(&[Arc<TaskData>]) -> Result<TaskData, String> + Send + Sync>;

/// Scalar UDFs and task functions by name. Cheap to clone: clones share what
/// was registered before them.
#[derive(Clone, Default)]
pub struct Registry {
    scalars: Arc<BTreeMap<String, ScalarUDF>>,
    functions: Arc<BTreeMap<String, Registered>>,
    partitions: Arc<BTreeMap<String, PartitionFn>>,
}

/// A task function as registered.
#[derive(Clone)]
struct Registered {
    arity: usize,
    code: TaskFn,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a scalar UDF (say, from [`scalar`]); a later one of the same name
    /// replaces it.
    pub fn add_scalar(&mut self, udf: ScalarUDF) -> &mut Self {
        Arc::make_mut(&mut self.scalars).insert(udf.name().to_string(), udf);
        self
    }

    /// [`add_scalar`](Self::add_scalar), by value.
    pub fn with_scalar(mut self, udf: ScalarUDF) -> Self {
        self.add_scalar(udf);
        self
    }

    /// Registers `function` as a task function called `name`: its arguments are
    /// references to serde types, its result a serde type.
    pub fn add_function<Args, F: TaskFunction<Args, Infallible>>(
        &mut self,
        name: &str,
        function: F,
    ) -> &mut Self {
        self.insert(name, F::arity(), function.into_task_fn())
    }

    /// [`add_function`](Self::add_function), by value.
    pub fn with_function<Args, F: TaskFunction<Args, Infallible>>(
        mut self,
        name: &str,
        function: F,
    ) -> Self {
        self.add_function(name, function);
        self
    }

    /// Registers a function returning `Result<T, E>`: an error fails its task
    /// with the function's name and the error's message.
    pub fn add_try_function<Args, F: TaskFunction<Args, Fallible>>(
        &mut self,
        name: &str,
        function: F,
    ) -> &mut Self {
        self.insert(name, F::arity(), function.into_task_fn())
    }

    /// [`add_try_function`](Self::add_try_function), by value.
    pub fn with_try_function<Args, F: TaskFunction<Args, Fallible>>(
        mut self,
        name: &str,
        function: F,
    ) -> Self {
        self.add_try_function(name, function);
        self
    }

    /// Adds a partition function (for `map_partitions` on workers of other
    /// processes); a later one of the same name replaces it.
    pub fn add_partition(&mut self, function: PartitionFn) -> &mut Self {
        Arc::make_mut(&mut self.partitions).insert(function.name().to_string(), function);
        self
    }

    /// [`add_partition`](Self::add_partition), by value.
    pub fn with_partition(mut self, function: PartitionFn) -> Self {
        self.add_partition(function);
        self
    }

    /// This registry with everything `other` holds added; `other`'s wins a
    /// name both have.
    pub fn merged(mut self, other: Registry) -> Self {
        Arc::make_mut(&mut self.scalars)
            .extend(other.scalars.iter().map(|(k, v)| (k.clone(), v.clone())));
        Arc::make_mut(&mut self.functions)
            .extend(other.functions.iter().map(|(k, v)| (k.clone(), v.clone())));
        Arc::make_mut(&mut self.partitions)
            .extend(other.partitions.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// The partition function `name`.
    pub fn partition(&self, name: &str) -> Option<&PartitionFn> {
        self.partitions.get(name)
    }

    fn insert(&mut self, name: &str, arity: usize, code: TaskFn) -> &mut Self {
        Arc::make_mut(&mut self.functions).insert(name.to_string(), Registered { arity, code });
        self
    }

    /// Registers the scalar UDFs in `ctx`, and keeps the registry in its
    /// configuration: plans decoded in that session find the partition
    /// functions there by name.
    pub fn install(&self, ctx: &datafusion::prelude::SessionContext) {
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(self.clone()));
        for udf in self.scalars() {
            ctx.register_udf(udf.clone());
        }
    }

    /// The scalar UDFs.
    pub fn scalars(&self) -> impl Iterator<Item = &ScalarUDF> {
        self.scalars.values()
    }

    /// Whether `name` is a scalar UDF of this registry.
    pub fn has_scalar(&self, name: &str) -> bool {
        self.scalars.contains_key(name)
    }

    /// The task function `name`'s code and its number of arguments.
    pub fn function(&self, name: &str) -> Option<(TaskFn, usize)> {
        self.functions
            .get(name)
            .map(|f| (Arc::clone(&f.code), f.arity))
    }

    /// Every name, scalar UDFs, task and partition functions, sorted: what a
    /// worker announces.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .scalars
            .keys()
            .chain(self.functions.keys())
            .chain(self.partitions.keys())
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("scalars", &self.scalars.keys().collect::<Vec<_>>())
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("partitions", &self.partitions.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Registries are the same when they hold the same names.
impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        self.scalars.keys().eq(other.scalars.keys())
            && self.functions.keys().eq(other.functions.keys())
            && self.partitions.keys().eq(other.partitions.keys())
    }
}

impl Eq for Registry {}
