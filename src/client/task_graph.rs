//! [`TaskGraph`]: function tasks built up by the client, submitted at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::exec::TaskData;
use crate::key::Key;
use crate::scheduler::TaskSpec;
use crate::worker::{FunctionJob, Job, TaskFn};

static TOKENS: AtomicU64 = AtomicU64::new(0);

/// Tasks that call functions on each other's results. Build it, then hand it to
/// [`Client::submit_graph`](super::Client::submit_graph).
///
/// ```no_run
/// # async fn demo(client: rask::Client) -> rask::Result<()> {
/// use std::sync::Arc;
/// use rask::exec::TaskData;
/// let mut graph = rask::TaskGraph::new();
/// let one = graph.add("one", &[], |_| Ok(TaskData::Value(Arc::new(1u64), 8)));
/// let two = graph.add("double", &[one], |args| {
///     let v = args[0].value::<u64>().ok_or("not a number")?;
///     Ok(TaskData::Value(Arc::new(v * 2), 8))
/// });
/// let futures = client.submit_graph(graph, &[two]);
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct TaskGraph {
    pub(crate) tasks: Vec<TaskSpec>,
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
        let n = TOKENS.fetch_add(1, Ordering::Relaxed);
        let key = Key::new(format!("{name}-{:x}{:08x}", std::process::id(), n));
        // The scheduler sends each input once; an input passed twice is
        // handed to the function twice.
        let mut unique: Vec<Key> = Vec::with_capacity(inputs.len());
        let positions: Vec<usize> = inputs
            .iter()
            .map(|k| match unique.iter().position(|u| u == k) {
                Some(i) => i,
                None => {
                    unique.push(k.clone());
                    unique.len() - 1
                }
            })
            .collect();
        let function: TaskFn = if unique.len() == inputs.len() {
            Arc::new(function)
        } else {
            Arc::new(move |args: &[Arc<TaskData>]| {
                let args = positions
                    .iter()
                    .map(|&i| args.get(i).cloned().ok_or("an input was not sent"))
                    .collect::<Result<Vec<_>, _>>()?;
                function(&args)
            })
        };
        let job = Job::Function(FunctionJob {
            name: name.into(),
            function,
        });
        self.tasks
            .push(TaskSpec::new(key.clone(), unique).with_job(Arc::new(job)));
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
