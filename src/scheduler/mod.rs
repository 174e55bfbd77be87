//! The scheduler core: a pure state machine over tasks and workers.
//!
//! [`Scheduler::handle`] takes an [`Event`] (a graph submitted, a task finished
//! or failed, a worker added or removed, a future released, a cancel) and returns
//! the [`Decision`]s it leads to (run a task on a worker, release data, abort a
//! task, report to a client). There are no sockets, threads or clocks inside, so
//! every behaviour can be replayed from a list of events; the cluster layer does
//! the I/O around it.
//!
//! Task states follow Dask's: a task is *waiting* for inputs, *queued* (a ready
//! root task held back until a worker has a free thread, so workers don't
//! overproduce), *processing* on a worker, in *memory* on one or more workers,
//! *erred*, or *released* (known, no data). A task nobody needs any more is
//! *forgotten*: removed entirely.

mod events;
mod progress;
mod queue;
mod server;
mod state;
mod stream;
mod transitions;

pub use crate::key::Key;
pub use events::{Decision, Event, Input, Outcome, TaskError, TaskKind, TaskSpec};
pub use progress::GroupProgress;
pub use server::{
    EventLoop, Message, Released, ReportSink, SchedulerHandle, WeakEventLoop, WorkerEndpoint,
};
pub use state::{TaskDetail, TaskNode, TaskState, TaskStatus, WorkerStatus};
pub use stream::{BARS_KEPT, Bar, BarKind, Mark};
pub use transitions::Scheduler;

/// Identifies a client (a holder of futures) of the scheduler.
pub type ClientId = u64;

/// The holder of keys computed with no future left (`Event::FireAndForget`).
pub const FIRE_AND_FORGET: ClientId = u64::MAX;

/// The holder of published keys (`Event::Publish`).
pub const PUBLISHED: ClientId = u64::MAX - 1;

/// Identifies a worker.
pub type WorkerId = u64;

#[cfg(test)]
mod tests;
