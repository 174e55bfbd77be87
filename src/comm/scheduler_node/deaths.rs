//! Workers that died: what their nannies report (exit status, last log
//! lines), kept for the errors of the tasks that killed them.

use super::*;

impl SchedulerState {
    /// How worker `worker` ended and its last log lines, as its nanny reported
    /// them; waits a little for the report, which races the worker's removal.
    pub(super) async fn last_words(&self, worker: WorkerId) -> Vec<String> {
        let Some(pid) = self.pids.lock().get(&worker).copied() else {
            return Vec::new();
        };
        let deadline = tokio::time::Instant::now() + DEATH_REPORT_WAIT;
        loop {
            if let Some(death) = self.deaths.lock().get(&pid) {
                let mut log = vec![format!(
                    "worker {worker} (pid {pid}) ended: {}",
                    death.status
                )];
                log.extend(death.log.iter().cloned());
                return log;
            }
            if tokio::time::Instant::now() >= deadline {
                return vec![format!(
                    "worker {worker} (pid {pid}): no nanny reported how it ended"
                )];
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How long a report of a task that killed its workers waits for the nanny's
/// word on the last of them.
pub(super) const DEATH_REPORT_WAIT: Duration = Duration::from_secs(3);

/// Deaths kept at most; past that, those known are forgotten.
pub(super) const DEATHS_KEPT: usize = 1024;

/// The last worker killed by the task behind `error`, if that is why it failed.
pub(super) fn last_killed(error: &TaskError) -> Option<WorkerId> {
    match error {
        TaskError::KilledWorkers { workers, .. } => workers.last().copied(),
        TaskError::DependencyFailed { source, .. } => last_killed(source),
        _ => None,
    }
}

/// `error` with `log` as the last words of the workers it killed.
pub(super) fn with_log(error: &TaskError, log: &[String]) -> TaskError {
    match error {
        TaskError::KilledWorkers { key, workers, .. } => TaskError::KilledWorkers {
            key: key.clone(),
            workers: workers.clone(),
            log: log.to_vec(),
        },
        TaskError::DependencyFailed { key, source } => TaskError::DependencyFailed {
            key: key.clone(),
            source: Arc::new(with_log(source, log)),
        },
        other => other.clone(),
    }
}
