//! [`TaskQueue`]: tasks sent to a worker, waiting for one of its slots.
//!
//! A worker runs `nthreads` slot loops, each taking the next task from this
//! queue. Waking a parked thread costs more than a small task, so the queue
//! wakes a slot only when it has more tasks than the slots about to come back
//! for one: a slot that finishes a task reports it first (and the scheduler,
//! run by that report, often queues the next task here) and then takes the next
//! task itself, with no thread woken.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::future::AbortRegistration;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Job;
use crate::key::{Key, KeySet};
use crate::scheduler::Input;

/// A task sent to the worker: its key, what it does and where its inputs are.
#[derive(Debug)]
pub(super) struct Assigned {
    pub key: Key,
    pub job: Arc<Job>,
    pub inputs: Vec<Input>,
    /// For stage tasks: how an abort reaches the task, registered when queued.
    pub abort: Option<(u64, AbortRegistration)>,
}

/// The queue of one worker. See the [module docs](self).
#[derive(Debug, Default)]
pub(super) struct TaskQueue {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    tasks: VecDeque<Assigned>,
    /// Slots parked until a task comes.
    idle: usize,
    /// Slots reporting a finished task, which come back for a task after.
    reporting: usize,
    closed: bool,
}

impl TaskQueue {
    /// Queues `task`, waking a parked slot if no returning slot will take it.
    pub fn push(&self, task: Assigned) {
        let mut state = self.state.lock();
        state.tasks.push_back(task);
        if state.idle > 0 && state.tasks.len() > state.reporting {
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Takes the tasks of `keys` that have not started out of the queue, in one
    /// pass; returns the keys taken out.
    pub fn remove(&self, keys: &KeySet) -> KeySet {
        let mut removed = KeySet::default();
        self.state.lock().tasks.retain(|t| {
            let keep = !keys.contains(&t.key);
            if !keep {
                removed.insert(t.key.clone());
            }
            keep
        });
        removed
    }

    /// The next task, waiting for one; `None` once the queue is closed.
    pub async fn next(&self) -> Option<Assigned> {
        loop {
            {
                let mut state = self.state.lock();
                if state.closed {
                    return None;
                }
                if let Some(task) = state.tasks.pop_front() {
                    // Tasks left and other slots parked: pass the wake-up on.
                    let more = !state.tasks.is_empty() && state.idle > 0;
                    drop(state);
                    if more {
                        self.wake.notify_one();
                    }
                    return Some(task);
                }
                state.idle += 1;
            }
            self.wake.notified().await;
            self.state.lock().idle -= 1;
        }
    }

    /// Runs `report` (the report of a finished task) counted as a slot that
    /// comes back for the next task.
    pub fn reporting<T>(&self, report: impl FnOnce() -> T) -> T {
        self.state.lock().reporting += 1;
        let _back = Returning(self);
        report()
    }

    /// Tasks queued.
    pub fn len(&self) -> usize {
        self.state.lock().tasks.len()
    }

    /// Stops every slot loop; queued tasks are dropped.
    pub fn close(&self) {
        let tasks = {
            let mut state = self.state.lock();
            state.closed = true;
            std::mem::take(&mut state.tasks)
        };
        drop(tasks);
        self.wake.notify_waiters();
    }
}

/// Ends a slot's report, also if it unwinds.
struct Returning<'a>(&'a TaskQueue);

impl Drop for Returning<'_> {
    fn drop(&mut self) {
        self.0.state.lock().reporting -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn task(i: usize) -> Assigned {
        Assigned {
            key: Key::new(format!("t-{i}")),
            job: Arc::new(Job::Concat),
            inputs: Vec::new(),
            abort: None,
        }
    }

    /// Slots that report (and push follow-up tasks while reporting), slots that
    /// park, and pushes from another thread: every task is taken exactly once.
    #[test]
    fn every_task_is_taken_once_by_reporting_and_parked_slots() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let queue = Arc::new(TaskQueue::default());
        let taken = Arc::new(AtomicUsize::new(0));
        let (done, finished) = std::sync::mpsc::channel();
        for _ in 0..3 {
            let (queue, taken, done) = (Arc::clone(&queue), Arc::clone(&taken), done.clone());
            runtime.spawn(async move {
                while let Some(t) = queue.next().await {
                    let n = taken.fetch_add(1, Ordering::SeqCst) + 1;
                    // Half the tasks lead to a follow-up, queued while reporting.
                    let i: usize = t.key.as_str()[2..].parse().unwrap();
                    if i < 20_000 && i.is_multiple_of(2) {
                        queue.reporting(|| queue.push(task(i + 100_000)));
                    }
                    if n == 30_000 {
                        done.send(()).unwrap();
                    }
                }
            });
        }
        for i in 0..20_000 {
            queue.push(task(i));
            if i.is_multiple_of(1000) {
                std::thread::yield_now();
            }
        }
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("tasks left in the queue with slots parked");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(taken.load(Ordering::SeqCst), 30_000);
        assert_eq!(queue.len(), 0);
        queue.close();
    }

    #[test]
    fn a_queued_task_can_be_taken_back() {
        let queue = TaskQueue::default();
        queue.push(task(1));
        queue.push(task(2));
        let keys: KeySet = [Key::new("t-1"), Key::new("t-3")].into_iter().collect();
        assert_eq!(queue.remove(&keys).len(), 1);
        assert!(queue.remove(&keys).is_empty());
        assert_eq!(queue.len(), 1);
    }
}
