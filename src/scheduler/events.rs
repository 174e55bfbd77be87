//! What goes into the scheduler ([`Event`]) and what comes out ([`Decision`]).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use super::{ClientId, Key, WorkerId};

/// A task as the scheduler sees it: a key and the keys it reads. What the task
/// does (a plan fragment, a function call) is the cluster's business: the core
/// knows only its [`TaskKind`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task's key.
    pub key: Key,
    /// The keys whose results the task reads.
    pub dependencies: Vec<Key>,
    /// Higher runs first among ready tasks (default 0), before submission order.
    pub priority: i32,
    /// Times the task is retried after it fails.
    pub retries: u32,
    /// Workers the task may run on; `None` for any.
    pub workers: Option<Vec<WorkerId>>,
    /// Registered functions the task calls (its stage's UDFs, its task
    /// function): it runs only on workers that carry them all, whenever
    /// they join.
    pub functions: Vec<String>,
    /// Whether it runs part of a query or calls a function.
    pub kind: TaskKind,
    /// For each of `dependencies`, into how many parts the task's read
    /// divides it: `n` when it reads one bucket of an output hashed into
    /// `n`, 1 (or nothing given) when it reads it whole. Placement weighs
    /// what a task would fetch from other workers by it.
    pub parts: Vec<u32>,
}

/// What sort of work a task is, as far as placing it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskKind {
    /// One partition of a query stage (or the gathering of a query's result):
    /// kept to few per thread, not to run ahead of its readers.
    #[default]
    Stage,
    /// A function call: short ones may queue further ahead on a worker.
    Call,
}

impl TaskSpec {
    /// A task with default priority, no retries and no restrictions.
    pub fn new(key: Key, dependencies: Vec<Key>) -> Self {
        Self {
            key,
            dependencies,
            priority: 0,
            retries: 0,
            workers: None,
            functions: Vec::new(),
            kind: TaskKind::Stage,
            parts: Vec::new(),
        }
    }

    /// The same task, of `kind`.
    pub fn with_kind(mut self, kind: TaskKind) -> Self {
        self.kind = kind;
        self
    }
}

/// Why a task has no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TaskError {
    /// The task's code returned an error or panicked.
    #[error("task {key} failed on worker {worker}: {message}")]
    Failed {
        /// The task.
        key: Key,
        /// Where it ran.
        worker: WorkerId,
        /// What it said.
        message: String,
    },
    /// A worker could not get an input from the worker holding it.
    #[error("task could not fetch {key} from worker {worker}")]
    FetchFailed {
        /// The worker that should hold the input.
        worker: WorkerId,
        /// The input.
        key: Key,
    },
    /// The task was running on workers that died, too many times.
    #[error(
        "task {key} was running on {} workers that died ({}); giving up{}",
        workers.len(),
        list(workers),
        last_words(log)
    )]
    KilledWorkers {
        /// The task.
        key: Key,
        /// The workers that died while running it.
        workers: Vec<WorkerId>,
        /// The last log lines of the last of them, with how it ended, when its
        /// nanny reported them (filled in by the scheduler process, not the core).
        log: Vec<String>,
    },
    /// Data that cannot be recomputed (scattered by a client) was on workers that died.
    #[error(
        "{key} was lost with worker {worker} and cannot be recomputed (it was scattered, not computed)"
    )]
    DataLost {
        /// The lost key.
        key: Key,
        /// The last worker that held it.
        worker: WorkerId,
    },
    /// An input of the task failed; `source` is that failure.
    #[error("input {key} failed: {source}")]
    DependencyFailed {
        /// The input that failed first.
        key: Key,
        /// Its error.
        source: Arc<TaskError>,
    },
    /// An input could not be fetched from its holder, time after time (the
    /// holder lives, but the worker running the task cannot reach it).
    #[error(
        "task {key} on worker {worker} could not fetch {input} from worker {holder} \
         ({attempts} tries); giving up"
    )]
    FetchGaveUp {
        /// The task.
        key: Key,
        /// The input it could not fetch.
        input: Key,
        /// The worker holding the input, last time.
        holder: WorkerId,
        /// The worker that ran the task, last time.
        worker: WorkerId,
        /// How many times it tried.
        attempts: u32,
    },
    /// The client lost its scheduler: the task's outcome will never be known.
    #[error("the scheduler at {scheduler} is gone ({reason}): {key} will not finish")]
    SchedulerLost {
        /// The task.
        key: Key,
        /// The scheduler's address.
        scheduler: String,
        /// How it was lost.
        reason: String,
    },
    /// A task names an input the scheduler has never seen.
    #[error("task {key} depends on unknown key {missing}")]
    MissingDependency {
        /// The task.
        key: Key,
        /// The unknown input.
        missing: Key,
    },
}

fn last_words(log: &[String]) -> String {
    if log.is_empty() {
        return String::new();
    }
    let mut text = String::from(". The last worker's last log lines:");
    for line in log {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text
}

fn list(workers: &[WorkerId]) -> String {
    workers
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Something that happened, for the scheduler to act on.
#[derive(Debug, Clone)]
pub enum Event {
    /// A client submits tasks (dependencies first) and wants the results of `wanted`.
    GraphSubmitted {
        /// Who submits.
        client: ClientId,
        /// The tasks, each after its dependencies. Keys the scheduler already
        /// knows are not recomputed.
        tasks: Vec<TaskSpec>,
        /// The keys the client holds futures for.
        wanted: Vec<Key>,
    },
    /// A client placed data on workers directly (scatter). It cannot be recomputed.
    DataScattered {
        /// Who scattered it.
        client: ClientId,
        /// Its key.
        key: Key,
        /// The workers holding it.
        workers: Vec<WorkerId>,
        /// Its size.
        nbytes: u64,
    },
    /// A worker holds the result of a task it ran.
    TaskFinished {
        /// The worker.
        worker: WorkerId,
        /// The task.
        key: Key,
        /// Size of the result.
        nbytes: u64,
        /// How long it ran, in microseconds.
        micros: u64,
    },
    /// A task failed on a worker.
    TaskErred {
        /// The worker.
        worker: WorkerId,
        /// The task.
        key: Key,
        /// Why.
        error: TaskError,
    },
    /// A worker joined, with `nthreads` task slots.
    WorkerAdded {
        /// The worker.
        worker: WorkerId,
        /// Its task slots.
        nthreads: usize,
        /// The registered functions it carries; `None` when it carries every
        /// one the cluster knows (a worker of the client's own process).
        functions: Option<Arc<BTreeSet<String>>>,
    },
    /// A worker passed its memory's pause threshold (`paused`), or came back
    /// under it: a paused worker gets no new tasks.
    WorkerPaused {
        /// The worker.
        worker: WorkerId,
        /// Whether it is paused now.
        paused: bool,
    },
    /// A worker is to leave gracefully: no new tasks; once its running tasks
    /// end, the results only it holds are copied to other workers
    /// ([`Decision::Replicate`]), then it is told to close ([`Decision::Retire`]).
    RetireWorker {
        /// The worker.
        worker: WorkerId,
    },
    /// `worker` holds a copy of `key` it was asked to make.
    DataReplicated {
        /// The worker holding the copy.
        worker: WorkerId,
        /// The key.
        key: Key,
    },
    /// `worker` could not copy `key`.
    ReplicateFailed {
        /// The worker that tried.
        worker: WorkerId,
        /// The key.
        key: Key,
    },
    /// `worker` gave task `key` back without running it, as asked by
    /// [`Decision::Steal`]: the task had not started there.
    TaskStolen {
        /// The worker that held it.
        worker: WorkerId,
        /// The task.
        key: Key,
    },
    /// A worker left or died, with everything it held.
    WorkerRemoved {
        /// The worker.
        worker: WorkerId,
    },
    /// A client went away: every future it held is released.
    ClientRemoved {
        /// The client.
        client: ClientId,
    },
    /// A client dropped its last future of `key`.
    FutureReleased {
        /// The client.
        client: ClientId,
        /// The key.
        key: Key,
    },
    /// A client cancels its futures of `keys`.
    Cancel {
        /// The client.
        client: ClientId,
        /// The keys.
        keys: Vec<Key>,
    },
    /// `key` is computed even if no future of it is left, then let go of
    /// (Dask's `fire_and_forget`).
    FireAndForget {
        /// The key.
        key: Key,
    },
    /// `key` is kept under `name` for any client to ask for, until unpublished
    /// (Dask's `publish_dataset`); a name published again moves to the new key.
    Publish {
        /// The name.
        name: String,
        /// The key.
        key: Key,
    },
    /// `name` is no longer published; its key goes when nothing else needs it.
    Unpublish {
        /// The name.
        name: String,
    },
}

/// Where an input of a task can be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The input's key.
    pub key: Key,
    /// The workers holding it. Empty when the input is still being computed
    /// on the worker this task is sent to: the task was sent ahead (see the
    /// scheduler's placement) and starts once that result is stored there.
    pub holders: Vec<WorkerId>,
    /// The size of the whole result as its holder reported it (0 while it
    /// is still being computed): what reading it may cost a reader.
    pub nbytes: u64,
}

/// How a wanted key ended, as reported to the client wanting it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The result is in memory on `workers`.
    Finished {
        /// The workers holding the result.
        workers: Vec<WorkerId>,
    },
    /// The task, or one of its inputs, failed.
    Erred(Arc<TaskError>),
    /// The client cancelled it.
    Cancelled,
}

/// What the cluster must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run task `key` on `worker`, reading `inputs`.
    Run {
        /// The worker.
        worker: WorkerId,
        /// The task.
        key: Key,
        /// Its inputs, each with the workers holding it.
        inputs: Vec<Input>,
    },
    /// Drop `worker`'s copy of `key`.
    Release {
        /// The worker.
        worker: WorkerId,
        /// The key.
        key: Key,
    },
    /// Stop running `key` on `worker`: nobody needs it any more.
    Abort {
        /// The worker.
        worker: WorkerId,
        /// The task.
        key: Key,
    },
    /// Ask `worker` to give task `key` back if it has not started it (work
    /// stealing: another worker has a thread with nothing to run). A worker
    /// that gives it back reports [`Event::TaskStolen`]; one that has started
    /// it runs it as usual.
    Steal {
        /// The worker holding it.
        worker: WorkerId,
        /// The task.
        key: Key,
    },
    /// Copy `key` to `worker` from one of `from` (a retiring worker's results).
    Replicate {
        /// The worker to copy to.
        worker: WorkerId,
        /// The key.
        key: Key,
        /// The workers holding it.
        from: Vec<WorkerId>,
    },
    /// `worker` has retired: nothing only it holds is needed. Tell it to close.
    Retire {
        /// The worker.
        worker: WorkerId,
    },
    /// The scheduler no longer knows `key`: whatever the cluster keeps about the
    /// task (what it runs) can go.
    Forget {
        /// The key.
        key: Key,
    },
    /// Tell `client` how `key` ended.
    Report {
        /// The client.
        client: ClientId,
        /// The key.
        key: Key,
        /// How it ended.
        outcome: Outcome,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Run { worker, key, .. } => write!(f, "run {key} on {worker}"),
            Decision::Release { worker, key } => write!(f, "release {key} on {worker}"),
            Decision::Abort { worker, key } => write!(f, "abort {key} on {worker}"),
            Decision::Steal { worker, key } => write!(f, "steal {key} from {worker}"),
            Decision::Forget { key } => write!(f, "forget {key}"),
            Decision::Replicate { worker, key, .. } => write!(f, "copy {key} to {worker}"),
            Decision::Retire { worker } => write!(f, "retire {worker}"),
            Decision::Report {
                client,
                key,
                outcome,
            } => write!(f, "report {key} to {client}: {outcome:?}"),
        }
    }
}
