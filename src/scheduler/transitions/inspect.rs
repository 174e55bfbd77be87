//! What displays and tests read of the scheduler: tasks, their details and
//! graph, progress, workers and published names. Nothing here changes state.

use super::*;

impl Scheduler {
    /// The state of `key`, if the scheduler knows it.
    pub fn task(&self, key: &Key) -> Option<TaskStatus> {
        self.tasks.by_key(key).map(|t| {
            let mut wanted_by: Vec<ClientId> = t.wanted_by.iter().collect();
            wanted_by.sort_unstable();
            TaskStatus {
                state: t.state.clone(),
                who_has: t.who_has.to_vec(),
                wanted_by,
            }
        })
    }

    /// How many tasks the scheduler knows.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// How many tasks have finished since the scheduler started.
    pub fn tasks_finished(&self) -> u64 {
        self.finished_total
    }

    /// `key`'s task as the dashboard shows it: state, holders, inputs,
    /// dependents and error.
    pub fn task_detail(&self, key: &Key) -> Option<TaskDetail> {
        let task = self.tasks.by_key(key)?;
        let keys = |ids: &mut dyn Iterator<Item = TaskId>| -> Vec<String> {
            let mut keys: Vec<String> = ids
                .filter_map(|id| self.tasks.get(id).map(|t| t.key.to_string()))
                .collect();
            keys.sort_unstable();
            keys
        };
        let (state, error) = describe(&task.state);
        Some(TaskDetail {
            key: task.key.to_string(),
            group: self.progress.group_name(task.group).map(str::to_string),
            state: state.to_string(),
            error,
            who_has: task.who_has.to_vec(),
            wanted_by: task.wanted_by.iter().count(),
            nbytes: task.nbytes,
            dependencies: keys(&mut task.dependencies.iter().copied()),
            dependents: keys(&mut task.dependents.iter()),
        })
    }

    /// Every task with its state and inputs, when there are at most `limit`
    /// of them; `None` past that (show [`progress`](Self::progress) instead:
    /// a large graph is drawn by group).
    pub fn graph(&self, limit: usize) -> Option<Vec<TaskNode>> {
        if self.tasks.len() > limit {
            return None;
        }
        let mut nodes: Vec<TaskNode> = self
            .tasks
            .iter()
            .map(|(_, task)| TaskNode {
                key: task.key.to_string(),
                state: describe(&task.state).0.to_string(),
                dependencies: task
                    .dependencies
                    .iter()
                    .filter_map(|&d| self.tasks.get(d).map(|t| t.key.to_string()))
                    .collect(),
            })
            .collect();
        nodes.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Some(nodes)
    }

    /// How far each group of tasks has come: live groups in the order they
    /// started, then those that ended lately.
    pub fn progress(&self) -> Vec<GroupProgress> {
        self.progress.snapshot()
    }

    /// The state of `worker`.
    pub fn worker(&self, worker: WorkerId) -> Option<WorkerStatus> {
        self.workers.get(&worker).map(|w| WorkerStatus {
            nthreads: w.nthreads,
            processing: w.processing.len(),
            in_memory: w.in_memory,
            nbytes: w.nbytes,
            status: if w.retiring.is_some() {
                "retiring"
            } else if w.paused {
                "paused"
            } else {
                "running"
            },
        })
    }

    /// The workers, by id.
    pub fn workers(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.workers.keys().copied()
    }

    /// The key published as `name`.
    pub fn published(&self, name: &str) -> Option<Key> {
        self.published.get(name).cloned()
    }

    /// The published names, sorted.
    pub fn published_names(&self) -> Vec<String> {
        self.published.keys().cloned().collect()
    }
}

/// A state's name, and its error when erred.
fn describe(state: &TaskState) -> (&'static str, Option<String>) {
    match state {
        TaskState::Released => ("released", None),
        TaskState::Waiting => ("waiting", None),
        TaskState::Queued => ("queued", None),
        TaskState::Processing(_) => ("processing", None),
        TaskState::Memory => ("memory", None),
        TaskState::Erred(e) => ("erred", Some(e.to_string())),
    }
}
