//! One function call as a task: its key, and its arguments as the task's
//! inputs and the values that travel with it. Shared by [`TaskGraph`](super::TaskGraph)
//! and [`Delayed`](super::Delayed) calls.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::exec::TaskData;
use crate::key::Key;
use crate::scheduler::{TaskKind, TaskSpec};
use crate::worker::{FunctionArg, FunctionJob, Job};

static TOKENS: AtomicU64 = AtomicU64::new(0);

/// One argument of a call, as the task gets it.
#[derive(Debug, Clone)]
pub(crate) enum CallInput {
    /// The result of another task.
    Key(Key),
    /// A value given with the call.
    Literal(Arc<TaskData>),
}

/// A token no other call of this process has: the process id and a counter.
pub(crate) fn fresh_token() -> String {
    let n = TOKENS.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n:08x}", std::process::id())
}

/// A token made from the function's name and its arguments (keys, and the
/// bytes of literal values), so the same call of a pure function gets the same
/// key and is computed once.
pub(crate) fn pure_token(name: &str, args: &[CallInput]) -> Result<String, String> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    for arg in args {
        match arg {
            CallInput::Key(key) => key.as_str().hash(&mut hasher),
            CallInput::Literal(data) => {
                let value = data.value_ref().ok_or("a table argument")?;
                value.bytes()?.as_slice().hash(&mut hasher);
            }
        }
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// The task calling `job` on `args`, keyed `key`. The scheduler sends each
/// input once: an input passed twice is handed to the function twice, and
/// literals travel in the job.
pub(crate) fn call_task(key: Key, job: FunctionJob, args: &[CallInput]) -> (TaskSpec, Arc<Job>) {
    let mut inputs: Vec<Key> = Vec::with_capacity(args.len());
    let mut plain = true;
    let positions: Vec<FunctionArg> = args
        .iter()
        .enumerate()
        .map(|(i, arg)| match arg {
            CallInput::Key(k) => {
                let at = match inputs.iter().position(|u| u == k) {
                    Some(at) => at,
                    None => {
                        inputs.push(k.clone());
                        inputs.len() - 1
                    }
                };
                plain &= at == i;
                FunctionArg::Input(at as u32)
            }
            CallInput::Literal(value) => {
                plain = false;
                FunctionArg::Literal(Arc::clone(value))
            }
        })
        .collect();
    let job = FunctionJob {
        args: (!plain).then(|| positions.into()),
        ..job
    };
    let spec = TaskSpec::new(key, inputs).with_kind(TaskKind::Call);
    (spec, Arc::new(Job::Function(job)))
}
