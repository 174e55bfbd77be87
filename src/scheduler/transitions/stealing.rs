//! Work stealing: a worker with a thread and nothing to run takes a task
//! another worker holds queued behind its running ones, as Dask's scheduler
//! does.
//!
//! Placement decides with what it knows when a task becomes ready; a task it
//! queued behind a long one on a busy worker may then wait there while
//! another worker goes idle (two long scans of one stage on one worker, the
//! other done with its short ones). The scheduler does not know which of a
//! worker's tasks have started, so it asks ([`Decision::Steal`]): the worker
//! gives the task back if it is still queued ([`Event::TaskStolen`]) and the
//! task is placed again; a task that has started runs where it is.

use super::*;

/// A task asked back ([`Decision::Steal`]), until it comes back or runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked {
    task: TaskId,
    /// The worker asked.
    from: WorkerId,
    /// The worker it was asked for.
    thief: WorkerId,
}

impl Scheduler {
    /// While an open worker has a thread with nothing to run and no queued
    /// task fits it, asks for a task back from a worker that holds more tasks
    /// than threads: one per idle thread, those already asked counted.
    pub(super) fn steal_for_idle(&mut self) {
        let idle: usize = self
            .workers
            .values()
            .filter(|w| w.is_open())
            .map(Worker::free_threads)
            .sum();
        if idle == 0 {
            return;
        }
        let tasks = &self.tasks;
        self.stealing.retain(|asked| {
            tasks
                .get(asked.task)
                .is_some_and(|t| t.state == TaskState::Processing(asked.from))
        });
        let thieves: SmallVec<[WorkerId; 4]> = self
            .workers
            .iter()
            .filter(|(_, w)| w.is_open() && w.free_threads() > 0)
            .map(|(id, _)| *id)
            .collect();
        for thief in thieves {
            if self.stealing.len() >= idle {
                return;
            }
            let Some((victim, id)) = self.task_to_steal(thief) else {
                continue;
            };
            let Some(task) = self.tasks.get(id) else {
                continue;
            };
            self.stealing.push(Asked {
                task: id,
                from: victim,
                thief,
            });
            self.out.push(Decision::Steal {
                worker: victim,
                key: task.key.clone(),
            });
        }
    }

    /// The task `thief` should ask for: of the tasks other workers hold
    /// queued beyond their threads (inputs in place, not asked for yet, not
    /// short, `thief` may run it, its inputs cheap to move there), the last
    /// in priority order, the likeliest not to have started.
    fn task_to_steal(&self, thief: WorkerId) -> Option<(WorkerId, TaskId)> {
        let t = self.workers.get(&thief)?;
        let mut best: Option<(Priority, WorkerId, TaskId)> = None;
        for (&victim, v) in &self.workers {
            if victim == thief || v.processing.len() <= v.nthreads {
                continue;
            }
            let asked = self.stealing.iter().filter(|a| a.from == victim).count();
            let startable = v
                .processing
                .iter()
                .filter(|&&id| self.tasks.get(id).is_some_and(|t| t.waiting_on == 0))
                .count();
            if startable <= v.nthreads + asked {
                continue;
            }
            for &id in &v.processing {
                let Some(task) = self.tasks.get(id) else {
                    continue;
                };
                let later = best.is_none_or(|(p, ..)| task.priority > p);
                if later
                    && task.waiting_on == 0
                    && !self.stealing.iter().any(|a| a.task == id)
                    && t.can_run(thief, task)
                    && !self.durations.is_short(&task.key)
                    && self.transfer_to(thief, task) as f64 <= CHEAP_FETCH_BYTES
                {
                    best = Some((task.priority, victim, id));
                }
            }
        }
        best.map(|(_, victim, id)| (victim, id))
    }

    /// `worker` gave `id` back unstarted: it goes to the worker it was asked
    /// for if that one still has room for it (placed anew otherwise, never
    /// straight back), and the tasks sent ahead to wait for it there wait
    /// again.
    pub(super) fn stolen(&mut self, worker: WorkerId, id: TaskId) {
        let thief = self
            .stealing
            .iter()
            .find(|a| a.task == id && a.from == worker)
            .map(|a| a.thief);
        self.stealing.retain(|a| a.task != id);
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        if task.state != TaskState::Processing(worker) {
            return;
        }
        let expected = task.expected;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.stop(id, expected);
        }
        self.call_back_ahead(id);
        let to_thief = thief.filter(|&thief| {
            let (Some(task), Some(t)) = (self.tasks.get(id), self.workers.get(&thief)) else {
                return false;
            };
            t.can_run(thief, task) && t.free_threads() > 0 && self.pending_inputs(id) == 0
        });
        match to_thief {
            Some(thief) => self.assign(id, thief),
            None => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.state = TaskState::Released;
                }
                self.compute_released(id);
            }
        }
    }
}
