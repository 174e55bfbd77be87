//! Workers coming and going: added, removed (their tasks rerun, their results
//! recomputed), paused and resumed, and retired (what only they hold copied to
//! others before they close).

use super::*;

impl Scheduler {
    pub(super) fn add_worker(
        &mut self,
        worker: WorkerId,
        nthreads: usize,
        functions: Option<Arc<BTreeSet<String>>>,
    ) {
        self.workers.entry(worker).or_insert_with(|| Worker {
            nthreads: nthreads.max(1),
            functions,
            ..Worker::default()
        });
        self.retry_unrunnable();
    }

    /// Tasks that had nowhere to run may have somewhere now.
    pub(super) fn retry_unrunnable(&mut self) {
        for (_, id) in std::mem::take(&mut self.unrunnable) {
            if self
                .tasks
                .get(id)
                .is_some_and(|t| t.state == TaskState::Released)
            {
                self.ready(id);
            }
        }
    }

    pub(super) fn remove_worker(&mut self, worker: WorkerId) {
        let Some(gone) = self.workers.remove(&worker) else {
            return;
        };
        self.retiring.remove(&worker);
        // Copies it was making for retiring workers will not come.
        self.keep_moves(|_, to| to != worker);
        let mut rerun = Vec::new();
        for id in gone.processing {
            let Some(task) = self.tasks.get_mut(id) else {
                continue;
            };
            task.died_on.push(worker);
            task.state = TaskState::Released;
            if task.died_on.len() >= MAX_WORKER_DEATHS {
                let error = TaskError::KilledWorkers {
                    key: task.key.clone(),
                    workers: task.died_on.clone(),
                    log: Vec::new(),
                };
                self.fail(id, Arc::new(error));
            } else {
                rerun.push((task.priority, id));
            }
        }
        let held: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.who_has.contains(&worker))
            .map(|(id, _)| id)
            .collect();
        for id in held {
            self.drop_copy(worker, id);
        }
        rerun.sort_unstable();
        for (_, id) in rerun {
            self.compute(id);
        }
    }

    pub(super) fn pause(&mut self, worker: WorkerId, paused: bool) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        let was = std::mem::replace(&mut w.paused, paused);
        if was && !paused {
            self.retry_unrunnable();
        }
    }

    pub(super) fn retire(&mut self, worker: WorkerId) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        if w.retiring.is_none() {
            w.retiring = Some(Retiring::default());
            self.retiring.insert(worker);
        }
    }

    /// Moves each retiring worker one step on its way out: once it runs
    /// nothing, copies of what only it holds are asked of the other workers
    /// (least loaded first); once they are made (or failed), it may close.
    pub(super) fn advance_retiring(&mut self) {
        let retiring: Vec<WorkerId> = self.retiring.iter().copied().collect();
        for worker in retiring {
            let Some(w) = self.workers.get(&worker) else {
                continue;
            };
            let Some(r) = &w.retiring else {
                continue;
            };
            if r.closed || !w.processing.is_empty() {
                continue;
            }
            if !r.planned {
                self.plan_moves(worker);
            }
            let Some(r) = self
                .workers
                .get_mut(&worker)
                .and_then(|w| w.retiring.as_mut())
            else {
                continue;
            };
            if r.moving.is_empty() {
                r.closed = true;
                self.out.push(Decision::Retire { worker });
            }
        }
    }

    /// Asks for a copy elsewhere of every result only `worker` holds.
    pub(super) fn plan_moves(&mut self, worker: WorkerId) {
        // Where copies go: open workers, each time the one holding the fewest bytes.
        let mut targets: Vec<(u64, WorkerId)> = self
            .workers
            .iter()
            .filter(|(id, w)| **id != worker && w.retiring.is_none())
            .map(|(id, w)| (w.nbytes, *id))
            .collect();
        let mut moves = Vec::new();
        if !targets.is_empty() {
            for (_, task) in self.tasks.iter() {
                if task.state != TaskState::Memory || task.who_has.as_slice() != [worker] {
                    continue;
                }
                let Some(target) = targets.iter_mut().min() else {
                    break;
                };
                target.0 += task.nbytes;
                moves.push((task.key.clone(), target.1));
            }
        }
        let Some(r) = self
            .workers
            .get_mut(&worker)
            .and_then(|w| w.retiring.as_mut())
        else {
            return;
        };
        r.planned = true;
        for (key, to) in moves {
            r.moving.insert(key.clone(), to);
            self.out.push(Decision::Replicate {
                worker: to,
                key,
                from: vec![worker],
            });
        }
    }

    /// `worker` holds a copy of `key` it was asked for.
    pub(super) fn replicated(&mut self, worker: WorkerId, key: Key) {
        self.moved(&key, worker);
        let id = self.tasks.id(&key);
        let task = id.and_then(|id| self.tasks.get_mut(id));
        match task {
            Some(task) if task.state == TaskState::Memory && self.workers.contains_key(&worker) => {
                if !task.who_has.contains(&worker) {
                    task.who_has.push(worker);
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.hold(task.nbytes);
                    }
                    // Its clients learn where else to fetch it: the retiring
                    // holder is about to go.
                    for client in task.wanted_by.iter() {
                        self.out.push(Decision::Report {
                            client,
                            key: task.key.clone(),
                            outcome: Outcome::Finished {
                                workers: task.who_has.to_vec(),
                            },
                        });
                    }
                }
            }
            // Let go of meanwhile: the copy is not needed.
            _ => self.release_on(worker, key, None),
        }
    }

    /// The copy of `key` that `worker` was making is done, or failed.
    pub(super) fn moved(&mut self, key: &Key, worker: WorkerId) {
        self.keep_moves(|k, to| !(k == key && to == worker));
    }

    /// Keeps the copies under way for retiring workers that `keep` says to
    /// (by key and the worker making the copy); forgets the others.
    pub(super) fn keep_moves(&mut self, keep: impl Fn(&Key, WorkerId) -> bool) {
        for retiring in &self.retiring {
            if let Some(r) = self
                .workers
                .get_mut(retiring)
                .and_then(|w| w.retiring.as_mut())
            {
                r.moving.retain(|key, to| keep(key, *to));
            }
        }
    }
}
