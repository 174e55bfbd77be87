//! [`ClusterInfo`]: what a client shows of its cluster, as Dask's client display does,
//! the state of each worker, and the questions a client asks its scheduler.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::output::format_bytes;
use crate::scheduler::{GroupProgress, SchedulerHandle, WorkerId, WorkerStatus};
use crate::worker::WorkerMetrics;

/// The scheduler, its workers and its dashboard, as the client last heard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The scheduler's address (`in-process` for a local cluster).
    pub scheduler: String,
    /// The dashboard's address, when one is served.
    pub dashboard: Option<String>,
    /// The workers.
    pub workers: Vec<WorkerInfo>,
}

/// One worker, as registered with the scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its id on the scheduler.
    pub id: WorkerId,
    /// Its name (`--name`, or host and pid).
    pub name: String,
    /// Where it serves its results.
    pub address: String,
    /// Task slots.
    pub nthreads: usize,
    /// Bytes its queries may hold before spilling, when bounded.
    pub memory_limit: Option<u64>,
    /// The scalar UDFs and task functions it carries, by name.
    pub functions: Vec<String>,
    /// Where it spills.
    pub local_directory: String,
    /// Its process id (`None` in process).
    pub pid: Option<u32>,
    /// The process id of the nanny that keeps it running, if one does.
    pub nanny: Option<u32>,
}

/// A worker now: as registered, what it reports of itself, and what the
/// scheduler counts of it. A row of the dashboard's and `rask status`'s tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerState {
    /// As registered.
    pub info: WorkerInfo,
    /// As it last reported.
    pub metrics: WorkerMetrics,
    /// Tasks the scheduler sent it that have not finished.
    pub processing: usize,
    /// Results it holds, as the scheduler counts them.
    pub in_memory: usize,
    /// Seconds since its last heartbeat, which brings its metrics and the
    /// transfers and spills it made since the one before (`None` in process:
    /// those are known at once).
    pub last_seen: Option<f64>,
    /// `running`; `paused` (its memory is past the pause threshold: it gets
    /// no new tasks); or `retiring` (moving what it holds before it leaves).
    pub status: String,
}

impl WorkerState {
    /// A worker's row: `info` as registered, `metrics` as reported, `status`
    /// as the scheduler counts it, its last heartbeat `last_seen` seconds ago.
    pub fn new(
        info: WorkerInfo,
        metrics: WorkerMetrics,
        status: Option<WorkerStatus>,
        last_seen: Option<f64>,
    ) -> Self {
        let (processing, in_memory) = status
            .as_ref()
            .map_or((0, 0), |s| (s.processing, s.in_memory));
        let status = match status.map(|s| s.status) {
            Some("running") | None if metrics.paused => "paused",
            Some(status) => status,
            None => "running",
        };
        Self {
            info,
            metrics,
            processing,
            in_memory,
            last_seen,
            status: status.to_string(),
        }
    }
}

/// What a client can ask its scheduler, besides submitting work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Question {
    /// Which key is published under this name?
    Published(String),
    /// How far has each group of tasks come?
    Progress,
    /// What are the workers doing?
    Workers,
    /// Retire these workers (addresses, names or ids) gracefully.
    Retire(Vec<String>),
    /// The task stream's bars numbered `after` and up, at most `limit`.
    Stream {
        /// The first bar's number.
        after: u64,
        /// How many at most (the latest).
        limit: usize,
    },
}

impl Question {
    /// The answer of `scheduler`, whose workers are as `workers` tells.
    pub fn answer(
        self,
        scheduler: &dyn SchedulerHandle,
        workers: impl FnOnce() -> Vec<WorkerState>,
    ) -> Answer {
        match self {
            Question::Published(name) => Answer::Published(scheduler.published(&name)),
            Question::Progress => Answer::Progress(scheduler.progress()),
            Question::Workers => Answer::Workers(workers()),
            Question::Stream { after, limit } => {
                let (bars, next, now) = scheduler.stream(after, limit);
                Answer::Stream { bars, next, now }
            }
            Question::Retire(wanted) => {
                let known = workers();
                let mut found = Vec::new();
                for name in &wanted {
                    let matched = known.iter().find(|w| {
                        w.info.address == *name
                            || w.info.name == *name
                            || w.info.id.to_string() == *name
                    });
                    let Some(worker) = matched else {
                        return Answer::Refused(format!(
                            "no worker is {name} (give an address, name or id as `rask status` shows)"
                        ));
                    };
                    found.push(worker.info.id);
                }
                for &worker in &found {
                    let event = crate::scheduler::Event::RetireWorker { worker };
                    scheduler.handle(event);
                }
                Answer::Retiring(found)
            }
        }
    }
}

/// The scheduler's answer to a [`Question`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// The key published under the name, if any.
    Published(Option<crate::key::Key>),
    /// Every group's progress.
    Progress(Vec<GroupProgress>),
    /// Every worker's state.
    Workers(Vec<WorkerState>),
    /// The workers now retiring.
    Retiring(Vec<WorkerId>),
    /// Bars of the task stream, the next bar's number and the stream's clock
    /// now (ms since the scheduler started).
    Stream {
        /// The bars asked for.
        bars: Vec<crate::scheduler::Bar>,
        /// The number the next bar will have.
        next: u64,
        /// The stream's clock now.
        now: f64,
    },
    /// The question cannot be answered, for this reason.
    Refused(String),
}

/// The scheduler address of an in-process cluster.
pub const IN_PROCESS: &str = "in-process";

impl ClusterInfo {
    /// Whether the cluster runs in this process.
    pub fn is_local(&self) -> bool {
        self.scheduler == IN_PROCESS
    }

    /// Task slots of all workers.
    pub fn total_threads(&self) -> usize {
        self.workers.iter().map(|w| w.nthreads).sum()
    }

    /// The workers and threads per worker queries are planned for (at least
    /// one of each).
    pub fn shape(&self) -> (usize, usize) {
        let workers = self.workers.len().max(1);
        (workers, (self.total_threads() / workers).max(1))
    }

    /// Memory of all workers with a limit.
    pub fn total_memory(&self) -> u64 {
        self.workers.iter().filter_map(|w| w.memory_limit).sum()
    }
}

impl fmt::Display for ClusterInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Client")?;
        writeln!(f, "  Scheduler: {}", self.scheduler)?;
        if let Some(dashboard) = &self.dashboard {
            writeln!(f, "  Dashboard: {dashboard}")?;
        }
        let memory = match self.total_memory() {
            0 => "unlimited".to_string(),
            bytes => format_bytes(bytes),
        };
        write!(
            f,
            "  Workers: {}  Threads: {}  Memory: {memory}",
            self.workers.len(),
            self.total_threads()
        )
    }
}

/// Checks that some worker carries every function of `names` (the scheduler
/// then runs the task only on such workers); `Err` names a function no worker
/// has, or says that none has them all.
pub fn check_carried(names: &BTreeSet<String>, workers: &[WorkerInfo]) -> Result<(), crate::Error> {
    if names.is_empty() {
        return Ok(());
    }
    if let Some(missing) = names
        .iter()
        .find(|name| !workers.iter().any(|w| w.functions.contains(name)))
    {
        return Err(crate::Error::Config(format!(
            "function {missing} is not registered on any of the {} workers of the cluster; \
             start the workers with a binary that registers it (rask_cli::main_with)",
            workers.len()
        )));
    }
    if !workers
        .iter()
        .any(|w| names.iter().all(|n| w.functions.contains(n)))
    {
        let list = names.iter().cloned().collect::<Vec<_>>().join(", ");
        return Err(crate::Error::Config(format!(
            "no worker of the cluster carries all of {list} at once"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: crate::scheduler::WorkerId, functions: &[&str]) -> WorkerInfo {
        WorkerInfo {
            id,
            name: format!("w{id}"),
            address: String::new(),
            nthreads: 1,
            memory_limit: None,
            functions: functions.iter().map(|f| f.to_string()).collect(),
            local_directory: String::new(),
            pid: None,
            nanny: None,
        }
    }

    #[test]
    fn a_function_no_worker_carries_is_refused() {
        let names: BTreeSet<String> = ["square".to_string()].into();
        let all = [worker(0, &["square"]), worker(1, &["square", "add"])];
        assert!(check_carried(&names, &all).is_ok());
        let some = [worker(0, &[]), worker(1, &["square"])];
        assert!(check_carried(&names, &some).is_ok());
        let both: BTreeSet<String> = ["square".to_string(), "add".to_string()].into();
        let apart = [worker(0, &["add"]), worker(1, &["square"])];
        let err = check_carried(&both, &apart).unwrap_err();
        assert!(
            err.to_string().contains("carries all of add, square"),
            "{err}"
        );
        let err = check_carried(&names, &[worker(0, &["add"])]).unwrap_err();
        assert!(
            err.to_string()
                .contains("function square is not registered on any of the 1 workers"),
            "{err}"
        );
        assert!(check_carried(&BTreeSet::new(), &[]).is_ok());
    }

    #[test]
    fn display_sums_threads_and_memory() {
        let worker = |id, nthreads| WorkerInfo {
            id,
            name: format!("w{id}"),
            address: "127.0.0.1:1".into(),
            nthreads,
            memory_limit: Some(1 << 30),
            functions: Vec::new(),
            local_directory: "/tmp".into(),
            pid: None,
            nanny: None,
        };
        let info = ClusterInfo {
            scheduler: "127.0.0.1:8786".into(),
            dashboard: Some("http://127.0.0.1:8787/status".into()),
            workers: vec![worker(0, 1), worker(1, 2)],
        };
        let text = info.to_string();
        assert!(text.contains("Scheduler: 127.0.0.1:8786"), "{text}");
        assert!(
            text.contains("Dashboard: http://127.0.0.1:8787/status"),
            "{text}"
        );
        assert!(
            text.contains("Workers: 2  Threads: 3  Memory: 2.00 GiB"),
            "{text}"
        );
        // A worker is paused as it reports itself, retiring as the scheduler has it.
        let paused = WorkerMetrics {
            paused: true,
            ..WorkerMetrics::default()
        };
        let state = WorkerState::new(worker(0, 1), paused.clone(), None, Some(0.5));
        assert_eq!(state.status, "paused");
        let status = |status| WorkerStatus {
            nthreads: 1,
            processing: 0,
            in_memory: 0,
            nbytes: 0,
            status,
        };
        let state = WorkerState::new(worker(0, 1), paused, Some(status("retiring")), None);
        assert_eq!(state.status, "retiring");
        let running = WorkerState::new(
            worker(0, 1),
            WorkerMetrics::default(),
            Some(status("running")),
            None,
        );
        assert_eq!(running.status, "running");
    }
}
