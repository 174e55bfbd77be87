//! [`RootQueue`]: ready root tasks, best first, waiting for a free thread.
//!
//! A binary heap costs a logarithm of cache misses per task, and a graph can
//! queue a million roots. Roots arrive almost always in priority order: one
//! submission's tasks have one user priority and rising graph order. So the
//! queue keeps one FIFO per (user priority, submission), each in graph order:
//! pushing and popping are O(1) for roots arriving in order, and a late root
//! (recomputed after a worker died) is put in its place by binary search.

use std::collections::{BTreeMap, VecDeque};

use super::state::{Priority, TaskId};

/// Ready root tasks, by [`Priority`]. See the [module docs](self).
#[derive(Debug, Default)]
pub(super) struct RootQueue {
    runs: BTreeMap<(i32, u64), VecDeque<(u64, TaskId)>>,
}

impl RootQueue {
    /// Queues task `id` at `priority`.
    pub fn push(&mut self, (user, generation, order): Priority, id: TaskId) {
        let run = self.runs.entry((user, generation)).or_default();
        match run.back() {
            Some(&(last, _)) if last > order => {
                let at = run.partition_point(|&(o, _)| o <= order);
                run.insert(at, (order, id));
            }
            _ => run.push_back((order, id)),
        }
    }

    /// Takes the best task.
    pub fn pop(&mut self) -> Option<(Priority, TaskId)> {
        let mut entry = self.runs.first_entry()?;
        let (user, generation) = *entry.key();
        let popped = entry.get_mut().pop_front();
        if entry.get().is_empty() {
            entry.remove();
        }
        popped.map(|(order, id)| ((user, generation, order), id))
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_priority_order_whatever_the_push_order() {
        let mut q = RootQueue::default();
        for (p, id) in [
            ((0, 1, 5), 5),
            ((0, 1, 6), 6),
            ((0, 1, 2), 2),
            ((-1, 2, 9), 9),
            ((0, 2, 1), 1),
            ((0, 1, 5), 50),
        ] {
            q.push(p, id);
        }
        let order: Vec<TaskId> = std::iter::from_fn(|| q.pop().map(|(_, id)| id)).collect();
        assert_eq!(order, [9, 2, 5, 50, 6, 1]);
        assert!(q.is_empty());
    }
}
