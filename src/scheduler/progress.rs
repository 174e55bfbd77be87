//! [`Progress`]: how far each task group has come, counted as tasks change state.
//!
//! A task's group is its key without the partition number: one group per query
//! stage (`aggregate-3f9c02`), one for all calls of a function
//! (`add_two_people`). The core counts as tasks are added, finish, err and are
//! forgotten, so reading progress looks at a few groups and never walks the
//! tasks: dashboards and progress bars can ask as often as they like without
//! slowing the scheduler.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::key::Key;

/// A group's number; never reused while the scheduler runs.
pub(super) type GroupId = u32;

/// The group of tasks that have none (scattered data).
pub(super) const NO_GROUP: GroupId = GroupId::MAX;

/// Groups kept after their last task is forgotten, newest first.
const ENDED_KEPT: usize = 64;

/// One group's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupProgress {
    /// The group: its tasks' keys without the partition number.
    pub name: String,
    /// The operation or function it runs (`aggregate`, `add_two_people`).
    pub operation: String,
    /// Tasks added to the group.
    pub total: u64,
    /// Tasks that finished.
    pub done: u64,
    /// Tasks that failed, or whose inputs failed.
    pub erred: u64,
    /// Tasks the scheduler still knows; 0 once the group is over.
    pub live: u64,
    /// The groups whose results its tasks read.
    pub inputs: Vec<String>,
    /// When it started, counted in groups: later groups have larger numbers.
    pub order: u64,
}

impl GroupProgress {
    /// Whether every task is done or erred.
    pub fn is_complete(&self) -> bool {
        self.done + self.erred >= self.total
    }
}

#[derive(Debug)]
struct Group {
    progress: GroupProgress,
    inputs: BTreeSet<GroupId>,
}

/// The groups of the tasks the scheduler knows, and those that ended lately.
#[derive(Debug, Default)]
pub(super) struct Progress {
    groups: HashMap<GroupId, Group, foldhash::fast::RandomState>,
    ids: HashMap<String, GroupId, foldhash::fast::RandomState>,
    next: GroupId,
    ended: VecDeque<GroupProgress>,
    /// The group found last: tasks of one submission mostly share it.
    last: Option<(Box<str>, GroupId)>,
}

/// What has been counted of one task, so a task that runs twice (its worker
/// died) counts once.
pub(super) const COUNTED_DONE: u8 = 1;
/// See [`COUNTED_DONE`].
pub(super) const COUNTED_ERRED: u8 = 2;

impl Progress {
    /// Counts a new task of `key`, reading results of the groups `inputs`.
    pub fn add(&mut self, key: &Key, inputs: impl IntoIterator<Item = GroupId>) -> GroupId {
        let name = key.group();
        let id = match &self.last {
            Some((last, id)) if **last == *name && self.groups.contains_key(id) => *id,
            _ => {
                let id = self.find_or_start(name);
                self.last = Some((name.into(), id));
                id
            }
        };
        if let Some(group) = self.groups.get_mut(&id) {
            group.progress.total += 1;
            group.progress.live += 1;
            for input in inputs {
                if input != id && input != NO_GROUP {
                    group.inputs.insert(input);
                }
            }
        }
        id
    }

    fn find_or_start(&mut self, name: &str) -> GroupId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1) % NO_GROUP;
        let key = Key::new(name);
        let progress = GroupProgress {
            name: name.to_string(),
            operation: key.operation().to_string(),
            total: 0,
            done: 0,
            erred: 0,
            live: 0,
            inputs: Vec::new(),
            order: u64::from(id),
        };
        self.ids.insert(name.to_string(), id);
        self.groups.insert(
            id,
            Group {
                progress,
                inputs: BTreeSet::new(),
            },
        );
        id
    }

    /// A task of `group` finished (first time only, per `counted`).
    pub fn done(&mut self, group: GroupId, counted: &mut u8) {
        if *counted & COUNTED_DONE == 0 {
            *counted |= COUNTED_DONE;
            if let Some(g) = self.groups.get_mut(&group) {
                g.progress.done += 1;
            }
        }
    }

    /// A task of `group` erred (first time only, per `counted`).
    pub fn erred(&mut self, group: GroupId, counted: &mut u8) {
        if *counted & COUNTED_ERRED == 0 {
            *counted |= COUNTED_ERRED;
            if let Some(g) = self.groups.get_mut(&group) {
                g.progress.erred += 1;
            }
        }
    }

    /// A task of `group` was forgotten; the group ends with its last task.
    pub fn forget(&mut self, group: GroupId) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        g.progress.live = g.progress.live.saturating_sub(1);
        if g.progress.live > 0 {
            return;
        }
        if let Some(g) = self.groups.remove(&group) {
            let progress = self.resolve(g);
            self.ids.remove(&progress.name);
            self.ended.push_front(progress);
            self.ended.truncate(ENDED_KEPT);
        }
    }

    fn resolve(&self, group: Group) -> GroupProgress {
        let mut progress = group.progress;
        progress.inputs = group
            .inputs
            .iter()
            .filter_map(|id| self.name(*id))
            .collect();
        progress
    }

    fn name(&self, id: GroupId) -> Option<String> {
        if let Some(g) = self.groups.get(&id) {
            return Some(g.progress.name.clone());
        }
        self.ended
            .iter()
            .find(|g| g.order == u64::from(id))
            .map(|g| g.name.clone())
    }

    /// The name of `group`, if it is live.
    pub fn group_name(&self, group: GroupId) -> Option<&str> {
        self.groups.get(&group).map(|g| g.progress.name.as_str())
    }

    /// Live groups in the order they started, then those that ended lately,
    /// newest first.
    pub fn snapshot(&self) -> Vec<GroupProgress> {
        let mut live: Vec<GroupProgress> = self
            .groups
            .values()
            .map(|g| {
                let mut progress = g.progress.clone();
                progress.inputs = g.inputs.iter().filter_map(|id| self.name(*id)).collect();
                progress
            })
            .collect();
        live.sort_by_key(|g| g.order);
        live.extend(self.ended.iter().cloned());
        live
    }

    /// How many groups are live.
    #[cfg(test)]
    pub fn live_groups(&self) -> usize {
        self.groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_count_once_per_task_and_end_with_their_last_task() {
        let mut progress = Progress::default();
        let a = progress.add(&Key::new("read-ab12-0"), []);
        let b = progress.add(&Key::new("read-ab12-1"), []);
        assert_eq!(a, b);
        let c = progress.add(&Key::new("sum-cd34-0"), [a]);
        let (mut ca, mut cb, mut cc) = (0, 0, 0);
        progress.done(a, &mut ca);
        progress.done(a, &mut ca);
        progress.done(b, &mut cb);
        progress.erred(c, &mut cc);
        let snapshot = progress.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(
            (snapshot[0].total, snapshot[0].done, snapshot[0].live),
            (2, 2, 2)
        );
        assert_eq!(snapshot[1].inputs, vec!["read-ab12".to_string()]);
        assert_eq!(snapshot[1].erred, 1);
        progress.forget(a);
        progress.forget(a);
        assert_eq!(progress.live_groups(), 1);
        let snapshot = progress.snapshot();
        assert_eq!(snapshot[1].name, "read-ab12");
        assert_eq!(snapshot[1].live, 0);
        assert!(snapshot[1].is_complete());
    }
}
