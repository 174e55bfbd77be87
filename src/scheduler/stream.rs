//! [`TaskStream`]: what ran where and when, as the dashboard's task stream draws it.
//!
//! The scheduler server notes every finished or failed task as it handles the
//! worker's report: the report's arrival is the bar's end, the task's run time
//! its length. Workers tell of transfers and spills with their heartbeats; those
//! become bars of their own kind. Each bar takes the first of its worker's rows
//! (one per thread) that is free at its start. The stream keeps the last
//! [`BARS_KEPT`] bars, numbered, so a page asks for those after the last it saw.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::WorkerId;
use crate::key::Key;

/// Bars kept; older ones are dropped.
pub const BARS_KEPT: usize = 20_000;

/// What a bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BarKind {
    /// A task that finished.
    Task,
    /// A task that failed.
    Erred,
    /// Results fetched from another worker.
    Transfer,
    /// Results written to disk.
    Spill,
}

/// One bar of the task stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Its number: later bars have larger ones.
    pub seq: u64,
    /// The worker it ran on.
    pub worker: WorkerId,
    /// The worker's row (thread) it is drawn in.
    pub row: u32,
    /// What it shows.
    pub kind: BarKind,
    /// The task's key, or what was moved.
    pub key: String,
    /// Its operation, which colours it (`aggregate`, `add_two_people`, `transfer`).
    pub operation: String,
    /// When it started and ended, in milliseconds since the scheduler started.
    pub start: f64,
    /// See `start`.
    pub end: f64,
    /// Bytes moved, for transfers and spills.
    pub nbytes: u64,
}

/// A transfer or spill as a worker reports it: it ended `ago_micros` before the
/// report was sent and lasted `micros`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Transfer or spill.
    pub kind: BarKind,
    /// What was moved.
    pub what: String,
    /// How long it took.
    pub micros: u64,
    /// How long before the report it ended.
    pub ago_micros: u64,
    /// Bytes moved.
    pub nbytes: u64,
}

/// A bar as the stream keeps it: the key shared with the task, its text and
/// operation made only when someone asks.
#[derive(Debug)]
struct Entry {
    seq: u64,
    worker: WorkerId,
    row: u32,
    kind: BarKind,
    key: Key,
    start: f64,
    end: f64,
    nbytes: u64,
}

impl Entry {
    fn bar(&self) -> Bar {
        let operation = match self.kind {
            BarKind::Task | BarKind::Erred => self.key.operation(),
            BarKind::Transfer => "transfer",
            BarKind::Spill => "spill",
        };
        Bar {
            seq: self.seq,
            worker: self.worker,
            row: self.row,
            kind: self.kind,
            key: self.key.to_string(),
            operation: operation.to_string(),
            start: self.start,
            end: self.end,
            nbytes: self.nbytes,
        }
    }
}

/// The stream: bars, and the rows they are packed into.
#[derive(Debug)]
pub struct TaskStream {
    epoch: Instant,
    bars: VecDeque<Entry>,
    next: u64,
    /// Per worker: its threads, and when each row's last bar ends.
    rows: HashMap<WorkerId, (usize, Vec<f64>)>,
}

impl Default for TaskStream {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            bars: VecDeque::new(),
            next: 0,
            rows: HashMap::new(),
        }
    }
}

impl TaskStream {
    /// Milliseconds since the stream started.
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1e3
    }

    /// `worker` has `nthreads` rows.
    pub fn add_worker(&mut self, worker: WorkerId, nthreads: usize) {
        self.rows.insert(worker, (nthreads.max(1), Vec::new()));
    }

    /// `worker` left.
    pub fn remove_worker(&mut self, worker: WorkerId) {
        self.rows.remove(&worker);
    }

    /// A task of `key` that ran `micros` on `worker` ended at `now`.
    pub fn task(&mut self, worker: WorkerId, key: &Key, micros: u64, erred: bool, now: f64) {
        let kind = if erred { BarKind::Erred } else { BarKind::Task };
        let start = now - micros as f64 / 1e3;
        self.push(worker, kind, key.clone(), (start, now), 0);
    }

    /// A worker's `mark`, reported at `now`.
    pub fn mark(&mut self, worker: WorkerId, mark: Mark, now: f64) {
        let end = now - mark.ago_micros as f64 / 1e3;
        let start = end - mark.micros as f64 / 1e3;
        let what = Key::new(mark.what);
        self.push(worker, mark.kind, what, (start, end), mark.nbytes);
    }

    fn push(&mut self, worker: WorkerId, kind: BarKind, key: Key, span: (f64, f64), nbytes: u64) {
        let (start, end) = span;
        let (nthreads, rows) = self.rows.entry(worker).or_insert((1, Vec::new()));
        // A little slack: a report's arrival is a moment after the task ended.
        let row = match rows.iter().position(|&free| free <= start + 0.05) {
            Some(row) => row,
            None if rows.len() < *nthreads => {
                rows.push(f64::MIN);
                rows.len() - 1
            }
            // Clocks and network delays overlap bars now and then: take the
            // row that frees first.
            None => rows
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i),
        };
        rows[row] = rows[row].max(end);
        self.bars.push_back(Entry {
            seq: self.next,
            worker,
            row: row as u32,
            kind,
            key,
            start,
            end,
            nbytes,
        });
        self.next += 1;
        if self.bars.len() > BARS_KEPT {
            self.bars.pop_front();
        }
    }

    /// The bars numbered `after` and up, at most `limit` of them (the latest).
    pub fn since(&self, after: u64, limit: usize) -> Vec<Bar> {
        let first = self.bars.front().map_or(0, |b| b.seq);
        let skip = after.saturating_sub(first) as usize;
        let newer = self.bars.len().saturating_sub(skip);
        let skip = skip + newer.saturating_sub(limit);
        self.bars.iter().skip(skip).map(Entry::bar).collect()
    }

    /// The number the next bar gets.
    pub fn next_seq(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_take_the_first_free_row_of_their_worker() {
        let mut stream = TaskStream::default();
        stream.add_worker(0, 2);
        let key = Key::new("sum-ab12-0");
        stream.task(0, &key, 10_000, false, 10.0); // 0..10 ms
        stream.task(0, &key, 5_000, false, 12.0); // 7..12: row 0 is busy
        stream.task(0, &key, 1_000, true, 14.0); // 13..14: row 0 is free again
        let bars = stream.since(0, 100);
        assert_eq!(bars.iter().map(|b| b.row).collect::<Vec<_>>(), [0, 1, 0]);
        assert_eq!(bars[2].kind, BarKind::Erred);
        assert_eq!(bars[0].operation, "sum");
        assert_eq!(stream.since(2, 100).len(), 1);
        assert_eq!(stream.since(0, 1)[0].seq, 2);
        let spill = Mark {
            kind: BarKind::Spill,
            what: "sum-ab12-0".into(),
            micros: 2_000,
            ago_micros: 1_000,
            nbytes: 64,
        };
        stream.mark(0, spill, 20.0);
        let bar = &stream.since(3, 10)[0];
        assert_eq!(
            (bar.start, bar.end, bar.operation.as_str()),
            (17.0, 19.0, "spill")
        );
    }
}
