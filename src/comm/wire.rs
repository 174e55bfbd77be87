//! What travels between the processes of a cluster, and how it is framed.
//!
//! Control messages are plain Rust enums encoded with `postcard`; a batch of them
//! rides in the `app_metadata` of one Arrow Flight `FlightData` frame of a
//! long-lived `do_exchange` stream (one per worker and per client). Plans
//! travel inside jobs as `datafusion-proto` bytes ([`super::codec`]); results
//! travel as Arrow IPC over Flight `do_get`, named by a [`FetchTicket`].

use std::sync::Arc;

use arrow_flight::FlightData;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cluster::{Answer, ClusterInfo, Question, WorkerInfo};
use crate::key::Key;
use crate::scheduler::{Mark, TaskError, WorkerId};
use crate::worker::WorkerMetrics;

/// The version of this protocol; peers of another version are refused.
pub const PROTOCOL_VERSION: u32 = 9;

/// The first message of a control stream: who is connecting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Hello {
    /// A worker registers: itself as the cluster will list it (the scheduler
    /// gives its id).
    Worker {
        /// Its [`PROTOCOL_VERSION`].
        version: u32,
        /// The worker.
        info: WorkerInfo,
    },
    /// A client connects.
    Client {
        /// Its [`PROTOCOL_VERSION`].
        version: u32,
    },
}

pub use crate::worker::{EncodedJob, EncodedStage, WireArg};

/// The rows of a statement the scheduler runs for a thin client that may be
/// on their way, unread, in KiB: past it the scheduler waits for the client
/// ([`FromClient::SqlRead`]), so a slow reader of a large result holds the
/// statement back instead of the scheduler's memory filling with its rows.
pub const SQL_WINDOW_KIB: u32 = 32 << 10;

/// What an IPC message of `len` bytes of a statement's rows costs of the
/// window: its size in KiB, rounded up, and all of the window at most.
pub fn sql_credits(len: usize) -> u32 {
    u32::try_from(len.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, SQL_WINDOW_KIB)
}

/// How often the scheduler tells each worker and client that it lives.
pub const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a client waits for a word from its scheduler before taking it for
/// lost: a few of [`ALIVE_EVERY`].
pub const CLIENT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// A worker's address, as inputs and reports carry it.
pub type Holder = (WorkerId, String);

/// An input of a task sent to a worker: its key, its size as reported by
/// the worker that made it (0 while it is computed), and where it is held.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInput {
    /// The input's key.
    pub key: Key,
    /// Its size in bytes, whole.
    pub nbytes: u64,
    /// The workers holding it; none when the worker computes it first.
    pub holders: Vec<Holder>,
}

/// Scheduler → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    /// Registration accepted: the worker's id.
    Welcome {
        /// The id.
        id: WorkerId,
        /// How long the scheduler may stay silent (it sends [`ToWorker::Alive`]
        /// every [`ALIVE_EVERY`]) before the worker takes it for lost, in ms.
        silence_ms: u64,
    },
    /// The scheduler lives (sent every [`ALIVE_EVERY`]).
    Alive,
    /// Copy `key` from one of `from` into this worker's store (the results of
    /// a retiring worker); answered with [`FromWorker::Replicated`].
    Replicate {
        /// The key.
        key: Key,
        /// The workers holding it.
        from: Vec<Holder>,
    },
    /// Run a task.
    Run {
        /// The task.
        key: Key,
        /// What it does: the scheduler's own copy, shared, not cloned per
        /// task (it travels as the job itself).
        job: Arc<EncodedJob>,
        /// Its inputs, each with the workers holding it.
        inputs: Vec<RunInput>,
    },
    /// Drop the result of `key`.
    Release {
        /// The key.
        key: Key,
    },
    /// Stop these tasks.
    Abort {
        /// Their keys.
        keys: Vec<Key>,
    },
    /// Give task `key` back if it has not started (work stealing); answered
    /// with [`FromWorker::Stolen`] if it had not, with nothing if it had.
    Steal {
        /// The task.
        key: Key,
    },
    /// Registration refused, or the scheduler is closing: exit.
    Close {
        /// Why.
        reason: String,
    },
}

/// Worker → scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromWorker {
    /// A task's result is stored.
    Finished {
        /// The task.
        key: Key,
        /// Its size.
        nbytes: u64,
        /// How long it ran, in microseconds.
        micros: u64,
    },
    /// A task failed.
    Erred {
        /// The task.
        key: Key,
        /// Why.
        error: TaskError,
    },
    /// The copy asked for with [`ToWorker::Replicate`] is stored, or failed.
    Replicated {
        /// The key.
        key: Key,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// The worker wants to leave (it got SIGTERM): move what it holds, then
    /// close it.
    Retire,
    /// Task `key`, asked for with [`ToWorker::Steal`], left the queue unstarted.
    Stolen {
        /// The task.
        key: Key,
    },
    /// Alive, with what it holds and does, and what it moved since the last one.
    Heartbeat {
        /// Its state now.
        metrics: WorkerMetrics,
        /// Transfers and spills since the last heartbeat.
        marks: Vec<Mark>,
    },
}

/// Client → scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromClient {
    /// Tasks to run, and the keys the client holds futures of.
    Submit {
        /// The tasks, dependencies first.
        tasks: Vec<EncodedTask>,
        /// The wanted keys.
        wanted: Vec<Key>,
    },
    /// The client dropped its last future of `key`.
    Release {
        /// The key.
        key: Key,
    },
    /// The client cancels `keys`.
    Cancel {
        /// The keys.
        keys: Vec<Key>,
    },
    /// The client placed a value on workers (scatter).
    Scattered {
        /// Its key.
        key: Key,
        /// The workers holding it.
        workers: Vec<WorkerId>,
        /// Its size.
        nbytes: u64,
    },
    /// Compute `key` even if the client lets go of it.
    FireAndForget {
        /// The key.
        key: Key,
    },
    /// Keep `key` under `name` for any client.
    Publish {
        /// The name.
        name: String,
        /// The key.
        key: Key,
    },
    /// Stop publishing `name`.
    Unpublish {
        /// The name.
        name: String,
    },
    /// One SQL statement for the scheduler to plan and run in a session it
    /// keeps for this connection (a thin client, as `rask query --scheduler`
    /// is): answered with [`ToClient::SqlRows`], then [`ToClient::SqlDone`], of
    /// the same `id`.
    Sql {
        /// Numbers the statement among the client's.
        id: u64,
        /// Its text.
        sql: String,
    },
    /// The client has read rows of statement `id` worth `kib` credits (see
    /// [`sql_credits`]): the scheduler may send that much more.
    SqlRead {
        /// The statement's number.
        id: u64,
        /// Credits returned.
        kib: u32,
    },
    /// A question, answered with [`ToClient::Answer`] of the same `id`.
    Ask {
        /// Numbers the question among the client's.
        id: u64,
        /// What it asks.
        question: Question,
    },
}

/// A task as a client submits it over the network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncodedTask {
    /// The task's key.
    pub key: Key,
    /// The keys it reads.
    pub dependencies: Vec<Key>,
    /// Higher runs first.
    pub priority: i32,
    /// Times retried after failing.
    pub retries: u32,
    /// The workers it may run on; `None` for any.
    pub workers: Option<Vec<WorkerId>>,
    /// The registered functions it calls: it runs on workers carrying them.
    pub functions: Vec<String>,
    /// Into how many parts its read of each dependency divides it (see
    /// [`TaskSpec::parts`](crate::scheduler::TaskSpec)).
    pub parts: Vec<u32>,
    /// What it does.
    pub job: EncodedJob,
}

/// Scheduler → client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToClient {
    /// Connected: the cluster as it is now.
    Welcome(ClusterInfo),
    /// Workers joined or left: the cluster as it is now.
    Workers(Vec<WorkerInfo>),
    /// How a wanted key ended.
    Report {
        /// The key.
        key: Key,
        /// How.
        outcome: WireOutcome,
    },
    /// The answer to [`FromClient::Ask`] `id`.
    Answer {
        /// The question's number.
        id: u64,
        /// The answer.
        answer: Answer,
    },
    /// Rows of statement [`FromClient::Sql`] `id`: an Arrow IPC stream, its
    /// schema and the batches that follow. The first holds the schema alone,
    /// once the statement is planned and running.
    SqlRows {
        /// The statement's number.
        id: u64,
        /// The IPC stream's bytes.
        ipc: Vec<u8>,
    },
    /// Statement [`FromClient::Sql`] `id` ended: every row was sent, or it
    /// failed.
    SqlDone {
        /// The statement's number.
        id: u64,
        /// Why it failed, if it did.
        error: Option<SqlFailure>,
    },
    /// The scheduler lives (sent every [`ALIVE_EVERY`]).
    Alive,
    /// The client is refused or the scheduler closes.
    Close {
        /// Why.
        reason: String,
    },
}

/// Why a statement the scheduler ran failed: its message, and where in the
/// statement, when known (line and column, from 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SqlFailure {
    /// What went wrong.
    pub message: String,
    /// Line and column in the statement's text.
    pub location: Option<(u64, u64)>,
}

/// How a key ended, with the addresses of the workers holding it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireOutcome {
    /// In memory there.
    Finished(Vec<Holder>),
    /// Failed.
    Erred(TaskError),
    /// Cancelled by the client.
    Cancelled,
}

/// A nanny's report that its worker process died, sent to the scheduler with
/// Flight `do_action` ([`WORKER_DIED`]): it lands in the error of a task that
/// kept killing workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerDeath {
    /// The worker process's id (as its registration gave it).
    pub pid: u32,
    /// How it ended (`signal: 6 (SIGABRT)`, `exit status: 1`).
    pub status: String,
    /// Its last log lines, oldest first.
    pub log: Vec<String>,
}

/// The Flight action type of a [`WorkerDeath`].
pub const WORKER_DIED: &str = "worker-died";

/// Names results to fetch with one Flight `do_get`: the batches of each key
/// in turn (a reader of one bucket of many producers on the same worker asks
/// for them all at once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchTicket {
    /// The results.
    pub keys: Vec<Key>,
    /// One bucket of each, or all.
    pub bucket: Option<u32>,
    /// Each bucket of each key as a section of its own (a copy of the whole
    /// result, buckets kept), instead of one section a key.
    pub by_bucket: bool,
}

/// A message that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what}: {source}")]
pub struct DecodeError {
    /// What was expected.
    pub what: &'static str,
    /// Why it failed.
    pub source: postcard::Error,
}

/// `value` as bytes.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain types into a growable buffer cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// A `T` from `bytes`; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    postcard::from_bytes(bytes).map_err(|source| DecodeError { what, source })
}

/// One frame carrying `messages`.
pub fn frame<T: Serialize>(messages: &[T]) -> FlightData {
    FlightData {
        app_metadata: encode(&messages).into(),
        ..Default::default()
    }
}

/// Frames carrying `messages` in order, each of about `limit` bytes at most
/// (a single larger message gets a frame of its own). A frame is a postcard
/// sequence: its length, then each message's bytes, so messages are encoded
/// once.
pub fn frames<T: Serialize>(messages: &[T], limit: usize) -> Vec<FlightData> {
    let mut frames = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut count = 0usize;
    let mut finish = |body: &mut Vec<u8>, count: &mut usize| {
        if *count > 0 {
            let mut frame = encode(&(*count as u64));
            frame.append(body);
            frames.push(FlightData {
                app_metadata: frame.into(),
                ..Default::default()
            });
            *count = 0;
        }
    };
    for message in messages {
        let bytes = encode(message);
        if count > 0 && body.len() + bytes.len() > limit {
            finish(&mut body, &mut count);
        }
        body.extend_from_slice(&bytes);
        count += 1;
    }
    finish(&mut body, &mut count);
    frames
}

/// The messages of a frame.
pub fn unframe<T: DeserializeOwned>(
    data: &FlightData,
    what: &'static str,
) -> Result<Vec<T>, DecodeError> {
    decode(&data.app_metadata, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_costs_its_kib_of_the_window_and_at_most_all_of_it() {
        assert_eq!(sql_credits(0), 1);
        assert_eq!(sql_credits(1024), 1);
        assert_eq!(sql_credits(1025), 2);
        assert_eq!(sql_credits(usize::MAX), SQL_WINDOW_KIB);
    }

    #[test]
    fn frames_split_by_size_and_keep_the_order() {
        let messages: Vec<String> = (0..10).map(|i| format!("{i}").repeat(100)).collect();
        let frames = frames(&messages, 250);
        assert!(frames.len() >= 4, "{}", frames.len());
        let back: Vec<String> = frames
            .iter()
            .flat_map(|f| unframe::<String>(f, "test").unwrap())
            .collect();
        assert_eq!(back, messages);
        assert_eq!(
            unframe::<String>(&frame(&messages), "test").unwrap(),
            messages
        );
    }

    #[test]
    fn messages_round_trip_and_garbage_errs() {
        let run = ToWorker::Run {
            key: Key::new("aggregate-3f9c-1"),
            job: Arc::new(EncodedJob::Concat),
            inputs: vec![RunInput {
                key: Key::new("scan-3f9c-0"),
                nbytes: 1 << 20,
                holders: vec![(2, "127.0.0.1:4000".into())],
            }],
        };
        let back: Vec<ToWorker> = unframe(&frame(&[run]), "worker message").unwrap();
        match &back[..] {
            [ToWorker::Run { key, inputs, .. }] => {
                assert_eq!(key.as_str(), "aggregate-3f9c-1");
                assert_eq!(inputs[0].holders[0].1, "127.0.0.1:4000");
                assert_eq!(inputs[0].nbytes, 1 << 20);
            }
            other => panic!("{other:?}"),
        }
        let garbage = FlightData {
            app_metadata: vec![0xff; 7].into(),
            ..Default::default()
        };
        let err = unframe::<ToWorker>(&garbage, "worker message").unwrap_err();
        assert!(
            err.to_string().starts_with("malformed worker message"),
            "{err}"
        );
    }
}
