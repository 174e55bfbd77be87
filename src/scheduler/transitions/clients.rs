//! What clients hold: a client leaving, keys released, fired and forgotten,
//! or published for other clients.

use super::*;

impl Scheduler {
    pub(super) fn remove_client(&mut self, client: ClientId) {
        let wanted: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.wanted_by.iter().any(|c| c == client))
            .map(|(id, _)| id)
            .collect();
        for id in wanted {
            if let Some(task) = self.tasks.get_mut(id) {
                task.wanted_by.remove(&client);
                self.settle(id);
            }
        }
    }

    /// Keeps `key` wanted until it is done, whoever else lets go of it.
    pub(super) fn fire_and_forget(&mut self, key: &Key) {
        let Some(task) = self.tasks.id(key).and_then(|id| self.tasks.get_mut(id)) else {
            return;
        };
        if task.state.is_pending() || task.state == TaskState::Released {
            task.wanted_by.insert(FIRE_AND_FORGET);
        }
    }

    /// A task is done: the fire-and-forget holder lets go of it.
    pub(super) fn forget_fired(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.wanted_by.remove(&FIRE_AND_FORGET) {
            self.settle(id);
        }
    }

    pub(super) fn publish(&mut self, name: String, key: Key) {
        let Some(task) = self.tasks.id(&key).and_then(|id| self.tasks.get_mut(id)) else {
            return;
        };
        task.wanted_by.insert(PUBLISHED);
        if let Some(old) = self.published.insert(name, key.clone())
            && old != key
        {
            self.release_published(&old);
        }
    }

    pub(super) fn unpublish(&mut self, name: &str) {
        if let Some(key) = self.published.remove(name) {
            self.release_published(&key);
        }
    }

    /// `key` lost a name: let go of it if no other name holds it.
    pub(super) fn release_published(&mut self, key: &Key) {
        if !self.published.values().any(|k| k == key) {
            self.unwant(PUBLISHED, key, false);
        }
    }

    pub(super) fn unwant(&mut self, client: ClientId, key: &Key, cancel: bool) {
        let Some(id) = self.tasks.id(key) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.wanted_by.remove(&client) && cancel {
            self.out.push(Decision::Report {
                client,
                key: key.clone(),
                outcome: Outcome::Cancelled,
            });
        }
        self.settle(id);
    }
}
