//! Where tasks run: ready tasks with inputs go to the worker where they would
//! start soonest; queued root tasks fill free threads, best first.

use super::*;

/// Root tasks a worker holds per thread: one running, one waiting, so a thread
/// finishing a task finds the next one, while root tasks still don't run far
/// ahead of the tasks that consume their output.
const TASKS_PER_THREAD: usize = 2;

/// Root tasks a worker holds per thread when they are short function calls
/// (see [`Durations::is_short`]): enough that a thread does not wait on round
/// trips to the scheduler between them.
const SHORT_TASKS_PER_THREAD: usize = 16;

/// How many tasks [`Scheduler::run_ahead`] looks at for one task that starts.
const AHEAD_LOOKS: usize = 64;

/// Tasks of a name that runs this long or less, on average, are short.
const SHORT_TASK_MICROS: u64 = 500;

/// What placement expects a task to run for before any task of its
/// operation has finished (Dask's `unknown-task-duration`).
const UNKNOWN_TASK_MICROS: u64 = 500_000;

/// What a link between workers moves in a microsecond (1 GB/s): placement
/// weighs fetching inputs against waiting for a busy worker at this rate.
const BYTES_PER_MICRO: f64 = 1000.0;

/// How long tasks run, by their key's operation (the function, or the
/// operation of a stage: `add_two_people`, `read-parquet`).
#[derive(Debug, Default)]
pub(super) struct Durations(std::collections::HashMap<String, (u64, u64)>);

impl Durations {
    pub(super) fn record(&mut self, key: &Key, micros: u64) {
        let name = key.operation();
        match self.0.get_mut(name) {
            Some((n, total)) => {
                *n += 1;
                *total += micros;
            }
            None => {
                self.0.insert(name.to_string(), (1, micros));
            }
        }
    }

    /// How long a task named as `key` is expected to run, in
    /// microseconds: the average of its operation so far, or
    /// [`UNKNOWN_TASK_MICROS`] before one has finished.
    pub(super) fn expected(&self, key: &Key) -> u64 {
        self.0
            .get(key.operation())
            .map_or(UNKNOWN_TASK_MICROS, |&(n, total)| total / n.max(1))
    }

    /// Whether tasks named as `key` is have run short, on average, at least
    /// four times.
    pub(super) fn is_short(&self, key: &Key) -> bool {
        self.0
            .get(key.operation())
            .is_some_and(|&(n, total)| n >= 4 && total / n <= SHORT_TASK_MICROS)
    }
}

impl Scheduler {
    /// The best worker for a task with inputs: one with room for it if any,
    /// then the one where it would start soonest: the time to fetch its
    /// inputs from other workers (at [`BYTES_PER_MICRO`]) plus the time its
    /// threads are expected to be busy with the tasks already there (their
    /// [`Worker::occupancy`] over its threads), as Dask estimates it.
    pub(super) fn decide_worker(&self, id: TaskId) -> Option<WorkerId> {
        let task = self.tasks.get(id)?;
        self.allowed_workers(task)
            .map(|(worker, w)| {
                let fetch = self.transfer_to(worker, task) as f64 / BYTES_PER_MICRO;
                let cost = fetch + w.occupancy as f64 / w.nthreads.max(1) as f64;
                (
                    (w.is_saturated(TASKS_PER_THREAD), OrderedLoad(cost)),
                    worker,
                )
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, worker)| worker)
    }

    pub(super) fn allowed_workers<'a>(
        &'a self,
        task: &'a Task,
    ) -> impl Iterator<Item = (WorkerId, &'a Worker)> + 'a {
        self.workers
            .iter()
            .filter(move |(id, w)| w.can_run(**id, task))
            .map(|(id, w)| (*id, w))
    }

    /// Sends `id`, whose inputs are all in memory, to `worker`, and the tasks
    /// that wait only on it after it ([`run_ahead`](Self::run_ahead)).
    pub(super) fn assign(&mut self, id: TaskId, worker: WorkerId) {
        self.dispatch(id, worker);
        self.run_ahead(id, worker);
    }

    /// Marks `id` processing on `worker` and tells the worker to run it. An
    /// input not yet in memory is one `worker` computes first: it goes with
    /// no holders, and the worker starts the task once it has stored it.
    fn dispatch(&mut self, id: TaskId, worker: WorkerId) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        task.state = TaskState::Processing(worker);
        task.expected = self.durations.expected(&task.key);
        let key = task.key.clone();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.start(id, task.expected);
        }
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        let inputs = task
            .dependencies
            .iter()
            .filter_map(|&d| self.tasks.get(d))
            .map(|d| Input {
                key: d.key.clone(),
                holders: match d.state {
                    TaskState::Memory => d.who_has.to_vec(),
                    _ => Vec::new(),
                },
                nbytes: d.nbytes,
            })
            .collect();
        self.out.push(Decision::Run {
            worker,
            key,
            inputs,
        });
    }

    /// Sends `worker`, which runs `id` (or will, once its input is stored),
    /// the tasks waiting only on `id`, and those waiting only on them in turn,
    /// while it has room for them. A chain of tasks then runs on one worker
    /// with no round trip to the scheduler between its links; each still
    /// reports when it ends. Tasks that would read more than
    /// [`CHEAP_FETCH_BYTES`] from other workers are left for
    /// [`decide_worker`](Self::decide_worker) once their input is in memory.
    pub(super) fn run_ahead(&mut self, id: TaskId, worker: WorkerId) {
        let mut stack = vec![id];
        let mut looked = 0;
        while let Some(t) = stack.pop() {
            looked += 1;
            if looked > AHEAD_LOOKS {
                return;
            }
            let Some(task) = self.tasks.get(t) else {
                continue;
            };
            let mut send = SmallVec::<[TaskId; 4]>::new();
            for d in task.dependents.iter() {
                let Some(dependent) = self.tasks.get(d) else {
                    continue;
                };
                match dependent.state {
                    // Already sent ahead there: look beyond it.
                    TaskState::Processing(w) if w == worker && dependent.is_ahead() => {
                        stack.push(d)
                    }
                    // Waits on `t` alone.
                    TaskState::Waiting if dependent.waiting_on == 1 => send.push(d),
                    _ => {}
                }
            }
            for d in send {
                let Some(dependent) = self.tasks.get(d) else {
                    continue;
                };
                let Some(w) = self.workers.get(&worker) else {
                    return;
                };
                let room = w.can_run(worker, dependent)
                    && !w.is_saturated(self.tasks_per_thread(dependent))
                    && self.transfer_to(worker, dependent) as f64 <= CHEAP_FETCH_BYTES;
                if room {
                    self.dispatch(d, worker);
                    stack.push(d);
                }
            }
        }
    }

    /// The bytes of `task`'s inputs in memory elsewhere that `worker` would
    /// fetch: of an input it reads one bucket of, that bucket's share.
    pub(super) fn transfer_to(&self, worker: WorkerId, task: &Task) -> u64 {
        task.dependencies
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| Some((self.tasks.get(d)?, task.parts.get(i).copied())))
            .filter(|(d, _)| d.state == TaskState::Memory && !d.who_has.contains(&worker))
            .map(|(d, parts)| d.nbytes / u64::from(parts.unwrap_or(1).max(1)))
            .sum()
    }

    /// How many tasks like `task` a worker holds per thread: short function
    /// calls run further ahead, so a thread finishing one finds the next
    /// waiting instead of waiting a round trip for it; query stages keep to
    /// two, not to run ahead of their readers.
    fn tasks_per_thread(&self, task: &Task) -> usize {
        if task.kind == TaskKind::Call && self.durations.is_short(&task.key) {
            SHORT_TASKS_PER_THREAD
        } else {
            TASKS_PER_THREAD
        }
    }

    /// Sends queued root tasks to workers with free threads, best first.
    pub(super) fn fill_slots(&mut self) {
        let mut blocked = Vec::new();
        while !self.queue.is_empty()
            && self
                .workers
                .values()
                .any(|w| w.is_open() && !w.is_saturated(SHORT_TASKS_PER_THREAD))
        {
            let Some((priority, id)) = self.queue.pop() else {
                break;
            };
            let Some(task) = self.tasks.get(id) else {
                continue;
            };
            if task.state != TaskState::Queued || task.priority != priority {
                continue;
            }
            let per_thread = self.tasks_per_thread(task);
            let free = self
                .allowed_workers(task)
                .filter(|(_, w)| !w.is_saturated(per_thread))
                .min_by(|a, b| OrderedLoad(a.1.load()).cmp(&OrderedLoad(b.1.load())))
                .map(|(worker, _)| worker);
            let open = self.workers.values().filter(|w| w.is_open()).count();
            let unrestricted = self.allowed_workers(task).count() == open;
            match free {
                Some(worker) => self.assign(id, worker),
                None if self.allowed_workers(task).next().is_none() => {
                    if let Some(task) = self.tasks.get_mut(id) {
                        task.state = TaskState::Released;
                        self.unrunnable.insert((priority, id));
                    }
                }
                // Every worker is as busy as this task allows: so they are
                // for the (mostly alike) tasks queued behind it.
                None if unrestricted => {
                    blocked.push((priority, id));
                    break;
                }
                None => blocked.push((priority, id)),
            }
        }
        for (priority, id) in blocked {
            self.queue.push(priority, id);
        }
    }
}

/// Loads compared as numbers (they are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedLoad(f64);

/// Input bytes a task may fetch from other workers and still be sent ahead
/// to a worker ([`Scheduler::run_ahead`]) or taken by an idle one (work
/// stealing): about what a link moves in the time of a short task (a
/// millisecond at 1 GB/s).
pub(super) const CHEAP_FETCH_BYTES: f64 = 1024.0 * 1024.0;

impl PartialOrd for OrderedLoad {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Eq for OrderedLoad {}

impl Ord for OrderedLoad {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
