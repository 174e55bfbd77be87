//! [`TaskGraph`]: function tasks built up by the client, submitted at once.

use std::sync::Arc;

use super::call::{CallInput, call_task, fresh_token};
use crate::exec::TaskData;
use crate::key::Key;
use crate::scheduler::TaskSpec;
use crate::udf::Registry;
use crate::worker::{FunctionJob, Job};

/// Tasks that call functions on each other's results. Build it, then hand it to
/// [`Client::submit_graph`](super::Client::submit_graph).
///
/// ```no_run
/// # async fn demo(client: rask::Client) -> rask::Result<()> {
/// use std::sync::Arc;
/// use rask::TaskData;
/// let mut graph = rask::TaskGraph::new();
/// let one = graph.add("one", &[], |_| Ok(TaskData::local_value(1u64, 8)));
/// let two = graph.add("double", &[one], |args| {
///     let v = args[0].value::<u64>().ok_or("not a number")?;
///     Ok(TaskData::local_value(v * 2, 8))
/// });
/// let futures = client.submit_graph(graph, &[two]);
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct TaskGraph {
    pub(crate) tasks: Vec<(TaskSpec, Arc<Job>)>,
}

impl TaskGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task calling `function` on the results of `inputs` (keys of tasks
    /// added before, or of futures the client holds); returns its key,
    /// `<name>-<token>`.
    pub fn add(
        &mut self,
        name: &str,
        inputs: &[Key],
        function: impl Fn(&[Arc<TaskData>]) -> Result<TaskData, String> + Send + Sync + 'static,
    ) -> Key {
        self.push(
            name,
            inputs,
            FunctionJob::new(name, Arc::new(function), false),
        )
    }

    /// Adds a task calling the function registered as `name` in `registry` (the
    /// client's, [`Client::registry`](super::Client::registry)) on the results
    /// of `inputs`; returns its key. Unlike a closure, it can run on workers in
    /// other processes: those that carry the same function.
    pub fn call(&mut self, registry: &Registry, name: &str, inputs: &[Key]) -> crate::Result<Key> {
        let (code, arity) = registry.function(name).ok_or_else(|| {
            crate::Error::Config(format!("no task function {name} is registered"))
        })?;
        if arity != inputs.len() {
            return Err(crate::Error::Config(format!(
                "{name} takes {arity} arguments, got {}",
                inputs.len()
            )));
        }
        Ok(self.push(name, inputs, FunctionJob::new(name, code, true)))
    }

    /// Adds a task running `job` on `inputs`, keyed `<name>-<token>`.
    fn push(&mut self, name: &str, inputs: &[Key], job: FunctionJob) -> Key {
        let key = Key::new(format!("{name}-{}", fresh_token()));
        let args: Vec<CallInput> = inputs.iter().cloned().map(CallInput::Key).collect();
        self.tasks.push(call_task(key.clone(), job, &args));
        key
    }

    /// Tasks in the graph.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the graph has no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}
