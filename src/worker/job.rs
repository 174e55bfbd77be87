//! [`Job`]: what a task does, as the scheduler hands it to a worker, and
//! [`EncodedJob`], the form it travels in to a worker in another process.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::exec::{StagePlan, TaskData};
use crate::key::Key;
use crate::udf::TaskFn;

/// The work of one task.
#[derive(Debug)]
pub enum Job {
    /// One partition of a query stage.
    Stage(StageJob),
    /// All inputs' batches, in input order, as one result (a query's `finalize`).
    Concat,
    /// A function of the task's inputs, in dependency order.
    Function(FunctionJob),
    /// A job on its way to a worker in another process, as it travels: the
    /// scheduler there passes it on, the receiving worker decodes it.
    Encoded(EncodedJob),
}

/// A function called on the data of the task's dependencies.
#[derive(Clone)]
pub struct FunctionJob {
    /// The function's name, for errors and displays.
    pub name: Arc<str>,
    /// The code.
    pub function: TaskFn,
    /// Whether it is a registry's function, which workers of other processes
    /// look up by name; a bare closure runs only in this process.
    pub registered: bool,
    /// The function's arguments, when they are not the task's inputs in
    /// order: inputs by position (an input passed twice is sent once and
    /// handed over twice) and values that travel with the task.
    pub args: Option<Arc<[FunctionArg]>>,
}

/// One argument of a function call.
#[derive(Debug, Clone)]
pub enum FunctionArg {
    /// Input `i` of the task (the result of its dependency `i`).
    Input(u32),
    /// A value given with the call.
    Literal(Arc<TaskData>),
}

impl FunctionJob {
    /// A function called on the task's inputs, in order.
    pub fn new(name: &str, function: TaskFn, registered: bool) -> Self {
        Self {
            name: name.into(),
            function,
            registered,
            args: None,
        }
    }

    /// Calls the function on the task's `inputs`.
    pub fn call(&self, inputs: &[Arc<TaskData>]) -> Result<TaskData, String> {
        let Some(args) = &self.args else {
            return (self.function)(inputs);
        };
        let args = args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Input(i) => inputs.get(*i as usize).cloned(),
                FunctionArg::Literal(value) => Some(Arc::clone(value)),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or("an input was not sent")?;
        (self.function)(&args)
    }
}

impl fmt::Debug for FunctionJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FunctionJob({})", self.name)
    }
}

/// One partition of a query stage, and the keys of the stages it reads.
#[derive(Debug)]
pub struct StageJob {
    /// The stage.
    pub stage: Arc<StagePlan>,
    /// The partition this task runs.
    pub partition: usize,
    /// For each stage read, the keys of its tasks in partition order.
    pub inputs: Vec<(usize, Arc<[Key]>)>,
}

/// A query stage encoded for workers in other processes; shared by the jobs of
/// its tasks, decoded once per worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedStage {
    /// Unique per query and stage: workers cache the decoded plan under it.
    pub id: String,
    /// The stage's number within its query.
    pub number: u32,
    /// The plan, as `datafusion-proto` bytes.
    pub plan: Vec<u8>,
    /// How the output is split (a `datafusion-proto` partitioning), or `None`
    /// for one bucket.
    pub output: Option<Vec<u8>>,
    /// The query's session settings.
    pub config: Vec<(String, String)>,
    /// The values of the scalar subqueries the plan reads, by index (as
    /// `datafusion-proto` scalars), computed before the query was cut.
    pub subqueries: Vec<Option<Vec<u8>>>,
}

/// A task's job as it travels to a worker in another process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EncodedJob {
    /// One partition of a stage.
    Stage {
        /// The stage.
        stage: Arc<EncodedStage>,
        /// The partition to run.
        partition: u32,
        /// For each stage read, the keys of its tasks in partition order.
        inputs: Vec<(u32, Vec<Key>)>,
    },
    /// All inputs' batches as one result.
    Concat,
    /// A function, by its registered name.
    Function {
        /// The name.
        name: String,
        /// Its arguments, when not the task's inputs in order.
        args: Option<Vec<WireArg>>,
    },
}

/// One argument of a function call, as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireArg {
    /// Input `i` of the task.
    Input(u32),
    /// A value given with the call: its Rust type's name and postcard bytes.
    Literal {
        /// The type, as `Value::type_name` gives it.
        type_name: String,
        /// The value's bytes.
        bytes: Vec<u8>,
    },
}
