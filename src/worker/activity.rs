//! [`Activity`]: what a worker is doing and has moved, for its heartbeat and
//! the dashboard's workers table and task stream.
//!
//! Counters are atomics bumped where the work happens (a task slot, a fetch, a
//! spill, a result served); transfers and spills are also kept as [`Mark`]s
//! until the next heartbeat (or dashboard look, in process) takes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::scheduler::{BarKind, Mark};

/// Marks kept between two takes; past this the oldest go.
const MARKS_KEPT: usize = 1_000;

/// A worker's counters and recent transfers and spills.
#[derive(Debug, Default)]
pub struct Activity {
    executing: AtomicU64,
    in_flight: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    marks: Mutex<Vec<(Instant, Mark)>>,
    cpu: Mutex<Option<(Instant, f64)>>,
}

/// A worker's state, as its heartbeat carries it and the dashboard shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerMetrics {
    /// Bytes of results in memory (Dask's "managed").
    pub memory: u64,
    /// Bytes of results spilled to disk.
    pub spilled: u64,
    /// Results held.
    pub results: u64,
    /// Tasks running now.
    pub executing: u64,
    /// Tasks queued on the worker, ready to run.
    pub ready: u64,
    /// Fetches of inputs from other workers under way.
    pub in_flight: u64,
    /// CPU use of the worker's process since the last look, in percent of one
    /// core; `None` where it cannot be read.
    pub cpu: Option<f64>,
    /// Bytes fetched from other workers.
    pub bytes_read: u64,
    /// Bytes served to other workers and clients.
    pub bytes_written: u64,
    /// Whether its results in memory are past the pause threshold: it starts
    /// no new task, and the scheduler sends it none.
    pub paused: bool,
}

/// Counts a running task while it lives.
pub struct Running<'a>(&'a AtomicU64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A fetch under way; [`done`](Transfer::done) records it.
pub struct Transfer<'a> {
    activity: &'a Activity,
    started: Instant,
}

impl Transfer<'_> {
    /// The fetch brought `nbytes` of `what`.
    pub fn done(self, what: String, nbytes: u64) {
        self.activity
            .bytes_read
            .fetch_add(nbytes, Ordering::Relaxed);
        let micros = self.started.elapsed().as_micros() as u64;
        self.activity.mark(BarKind::Transfer, what, micros, nbytes);
    }
}

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    /// Counts a task as running until the guard is dropped.
    pub fn running(&self) -> Running<'_> {
        self.executing.fetch_add(1, Ordering::Relaxed);
        Running(&self.executing)
    }

    /// Counts a fetch as in flight until the guard is dropped.
    pub fn transfer(&self) -> Transfer<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Transfer {
            activity: self,
            started: Instant::now(),
        }
    }

    /// `nbytes` were served to a peer or a client.
    pub fn served(&self, nbytes: u64) {
        self.bytes_written.fetch_add(nbytes, Ordering::Relaxed);
    }

    /// `what` (`nbytes`) went to disk, taking `took`.
    pub fn spilled(&self, what: String, nbytes: u64, took: Duration) {
        self.mark(BarKind::Spill, what, took.as_micros() as u64, nbytes);
    }

    fn mark(&self, kind: BarKind, what: String, micros: u64, nbytes: u64) {
        let mark = Mark {
            kind,
            what,
            micros,
            ago_micros: 0,
            nbytes,
        };
        let mut marks = self.marks.lock();
        if marks.len() >= MARKS_KEPT {
            marks.remove(0);
        }
        marks.push((Instant::now(), mark));
    }

    /// The transfers and spills since the last take, each with how long ago it ended.
    pub fn take_marks(&self) -> Vec<Mark> {
        let now = Instant::now();
        std::mem::take(&mut *self.marks.lock())
            .into_iter()
            .map(|(ended, mut mark)| {
                mark.ago_micros = now.duration_since(ended).as_micros() as u64;
                mark
            })
            .collect()
    }

    /// The counters now, with the store's `memory`, `spilled` and `results`
    /// and the queue's `ready` filled in by the caller.
    pub fn metrics(&self) -> WorkerMetrics {
        WorkerMetrics {
            executing: self.executing.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            cpu: self.cpu_percent(),
            ..WorkerMetrics::default()
        }
    }

    /// The process's CPU use since the last call, in percent of one core.
    fn cpu_percent(&self) -> Option<f64> {
        let used = process_cpu_seconds()?;
        let now = Instant::now();
        let mut last = self.cpu.lock();
        let percent = last.map(|(at, before)| {
            let wall = now.duration_since(at).as_secs_f64();
            if wall > 0.0 {
                (used - before) / wall * 100.0
            } else {
                0.0
            }
        });
        *last = Some((now, used));
        Some(percent.unwrap_or(0.0))
    }
}

/// CPU seconds this process has used (user and system), from `/proc/self/stat`
/// (Linux; clock ticks of 1/100 s, the kernel's `USER_HZ`).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the command.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_their_guards_and_marks_are_taken_once() {
        let activity = Activity::default();
        {
            let _running = activity.running();
            let transfer = activity.transfer();
            let metrics = activity.metrics();
            assert_eq!((metrics.executing, metrics.in_flight), (1, 1));
            transfer.done("sum-ab12-0".into(), 100);
        }
        activity.served(7);
        activity.spilled("x".into(), 9, Duration::from_millis(1));
        let metrics = activity.metrics();
        assert_eq!((metrics.executing, metrics.in_flight), (0, 0));
        assert_eq!((metrics.bytes_read, metrics.bytes_written), (100, 7));
        let marks = activity.take_marks();
        assert_eq!(marks.len(), 2);
        assert_eq!(marks[0].kind, BarKind::Transfer);
        assert_eq!(marks[1].micros, 1_000);
        assert!(activity.take_marks().is_empty());
        if cfg!(target_os = "linux") {
            assert!(metrics.cpu.is_some());
        }
    }
}
