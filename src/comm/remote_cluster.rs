//! [`RemoteCluster`]: a client's link to a scheduler in another process.
//!
//! The client's messages (submissions, releases, cancels) go out on one control
//! stream in the order they are queued; reports come back on it and settle the
//! client's futures. Results are fetched from the workers holding them, not
//! through the scheduler.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use super::codec::{encode_job, encode_stage};
use super::fetch::FlightFetcher;
use super::flight::{self, open_control};
use super::wire::{
    CLIENT_PATIENCE, EncodedJob, EncodedTask, FromClient, Hello, PROTOCOL_VERSION, SqlFailure,
    ToClient, WireOutcome,
};
use crate::cluster::{Answer, ClusterInfo, ClusterLink, Question, check_carried, stage_tasks};
use crate::exec::{RemoteInput, StageInput, TaskData, Value};
use crate::key::{Key, KeySet};
use crate::net::Security;
use crate::planner::StageGraph;
use crate::scheduler::{Event, Message, Outcome, ReportSink, TaskError, TaskSpec, WorkerId};
use crate::worker::Job;
use crate::{Error, Result};

/// A scheduler in another process, as a client reaches it.
pub struct RemoteCluster {
    address: String,
    outbox: Mutex<Option<mpsc::UnboundedSender<FromClient>>>,
    shared: Arc<Shared>,
    fetcher: FlightFetcher,
}

/// What the stream's reader shares with the link.
#[derive(Default)]
struct Shared {
    info: RwLock<ClusterInfo>,
    sink: Mutex<Option<ReportSink>>,
    /// Wanted keys not reported yet: failed if the scheduler goes away.
    pending: Mutex<KeySet>,
    /// Set when the client disconnects: the stream's end is then expected.
    closed: std::sync::atomic::AtomicBool,
    /// Why the scheduler is gone, once it is: every call fails at once after.
    gone: Mutex<Option<String>>,
    /// Questions awaiting their answer, by number.
    questions: Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<Answer>>>,
    /// The number of the next question (or SQL statement).
    next_question: std::sync::atomic::AtomicU64,
    /// SQL statements the scheduler runs for this client, by number: where
    /// their answers go.
    statements: Mutex<std::collections::HashMap<u64, mpsc::UnboundedSender<SqlAnswer>>>,
}

/// What the scheduler answers, piece by piece, of a statement it plans and
/// runs for this client ([`RemoteCluster::sql`]).
#[derive(Debug)]
pub enum SqlAnswer {
    /// An Arrow IPC stream: the schema, then batches of rows.
    Rows(Vec<u8>),
    /// The statement ended: every row was sent, or it failed.
    Done(Option<SqlFailure>),
}

impl RemoteCluster {
    /// Connects to the scheduler at `address`.
    pub async fn connect(address: &str, security: Security) -> Result<Arc<Self>> {
        Self::open(address, security, true).await
    }

    /// Connects to the scheduler at `address` to send it SQL
    /// ([`sql`](Self::sql)), fetching nothing from workers itself: no
    /// connection to them is made ahead.
    pub async fn connect_for_sql(address: &str, security: Security) -> Result<Arc<Self>> {
        Self::open(address, security, false).await
    }

    async fn open(address: &str, security: Security, warm: bool) -> Result<Arc<Self>> {
        let address = &crate::net::address::normalize(address)?;
        let mut client = flight::connect(address, &security).await?;
        let hello = Hello::Client {
            version: PROTOCOL_VERSION,
        };
        let refused = |message: String| Error::Connect {
            address: address.to_string(),
            message,
        };
        let (outbox, mut incoming) = open_control::<FromClient>(&mut client, &security, hello)
            .await
            .map_err(|e| refused(e.to_string()))?;
        let first = flight::next_messages::<ToClient>(&mut incoming, "scheduler message")
            .await
            .map_err(|e| refused(e.to_string()))?;
        // The frame with the welcome may carry reports too: keep them.
        let mut first = first.unwrap_or_default().into_iter();
        let info = match first.next() {
            Some(ToClient::Welcome(info)) => info,
            Some(ToClient::Close { reason }) => return Err(refused(reason)),
            _ => return Err(refused("the scheduler did not answer".into())),
        };
        let shared = Arc::new(Shared {
            info: RwLock::new(info),
            ..Shared::default()
        });
        let fetcher = FlightFetcher::new(security);
        // Results come from workers: be connected to them by the time the
        // first query has been planned.
        let holders = shared
            .info
            .read()
            .workers
            .iter()
            .map(|w| (w.id, w.address.clone()))
            .collect();
        match warm {
            true => fetcher.warm(holders),
            false => drop(fetcher.learn(holders)),
        }
        let reader = (Arc::clone(&shared), fetcher.clone(), address.to_string());
        tokio::spawn(async move {
            let (shared, fetcher, address) = reader;
            let rest: Vec<ToClient> = first.collect();
            let mut messages = futures::stream::iter([rest]).chain(flight::messages::<ToClient>(
                incoming,
                "scheduler message",
                address.clone(),
            ));
            let why = loop {
                match tokio::time::timeout(CLIENT_PATIENCE, messages.next()).await {
                    Ok(Some(batch)) => {
                        for message in batch {
                            shared.receive(message, &fetcher);
                        }
                    }
                    Ok(None) => break "the connection closed".to_string(),
                    Err(_) => break format!("silent for {CLIENT_PATIENCE:?}"),
                }
            };
            shared.lost(&address, why);
        });
        Ok(Arc::new(Self {
            address: address.to_string(),
            outbox: Mutex::new(Some(outbox)),
            shared,
            fetcher,
        }))
    }

    /// Notes that reports of `keys` are awaited; if the scheduler is gone, fails
    /// them at once instead and returns `false`.
    fn expect(&self, keys: &[Key]) -> bool {
        let why = {
            let mut pending = self.shared.pending.lock();
            let gone = self.shared.gone.lock().clone();
            if gone.is_none() {
                pending.extend(keys.iter().cloned());
            }
            gone
        };
        let Some(why) = why else {
            return true;
        };
        for key in keys {
            self.shared.report_lost(key.clone(), &self.address, &why);
        }
        false
    }

    fn send(&self, message: FromClient) {
        if let Some(outbox) = &*self.outbox.lock() {
            let _ = outbox.send(message);
        }
    }

    /// `tasks` as they travel, each function call to run on the workers that
    /// carry its function; `Err` names the first that cannot travel or that no
    /// worker carries.
    fn encode(&self, tasks: Vec<(TaskSpec, Arc<Job>)>) -> Result<Vec<EncodedTask>> {
        let workers = self.shared.info.read().workers.clone();
        tasks
            .into_iter()
            .map(|(task, job)| {
                let job = encode_job(&job)?;
                let mut functions = task.functions;
                if let EncodedJob::Function { name, .. } = &job {
                    check_carried(&[name.clone()].into(), &workers)?;
                    if !functions.contains(name) {
                        functions.push(name.clone());
                    }
                }
                Ok(EncodedTask {
                    key: task.key,
                    dependencies: task.dependencies,
                    priority: task.priority,
                    retries: task.retries,
                    workers: task.workers,
                    functions,
                    parts: task.parts,
                    job,
                })
            })
            .collect()
    }
}

impl Shared {
    fn report(&self, key: Key, outcome: Outcome) {
        self.pending.lock().remove(&key);
        let sink = self.sink.lock().clone();
        if let Some(sink) = sink {
            sink(key, outcome);
        }
    }

    fn receive(&self, message: ToClient, fetcher: &FlightFetcher) {
        match message {
            ToClient::Report { key, outcome } => {
                let outcome = match outcome {
                    WireOutcome::Finished(holders) => Outcome::Finished {
                        workers: fetcher.learn(holders),
                    },
                    WireOutcome::Erred(error) => Outcome::Erred(Arc::new(error)),
                    WireOutcome::Cancelled => Outcome::Cancelled,
                };
                self.report(key, outcome);
            }
            ToClient::Workers(workers) => self.info.write().workers = workers,
            ToClient::Welcome(info) => *self.info.write() = info,
            ToClient::Answer { id, answer } => {
                if let Some(waiting) = self.questions.lock().remove(&id) {
                    let _ = waiting.send(answer);
                }
            }
            ToClient::SqlRows { id, ipc } => {
                if let Some(statement) = self.statements.lock().get(&id) {
                    let _ = statement.send(SqlAnswer::Rows(ipc));
                }
            }
            ToClient::SqlDone { id, error } => {
                if let Some(statement) = self.statements.lock().remove(&id) {
                    let _ = statement.send(SqlAnswer::Done(error));
                }
            }
            ToClient::Alive => {}
            ToClient::Close { reason } => tracing::warn!("the scheduler closes: {reason}"),
        }
    }

    /// The scheduler is gone: whatever was still wanted fails, and so does
    /// every call from now on.
    fn lost(&self, address: &str, why: String) {
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        tracing::warn!(%address, "lost the scheduler: {why}");
        // Set under the locks that calls check it under, so that a call
        // either sees it or is found here.
        let pending: Vec<Key> = {
            let mut pending = self.pending.lock();
            let mut questions = self.questions.lock();
            let mut statements = self.statements.lock();
            *self.gone.lock() = Some(why.clone());
            // Questions not answered now never will be, nor statements ended.
            questions.clear();
            statements.clear();
            pending.drain().collect()
        };
        for key in pending {
            self.report_lost(key, address, &why);
        }
    }

    /// Reports `key` failed: the scheduler at `address` is gone, as `why` says.
    fn report_lost(&self, key: Key, address: &str, why: &str) {
        let error = TaskError::SchedulerLost {
            key: key.clone(),
            scheduler: address.to_string(),
            reason: why.to_string(),
        };
        self.report(key, Outcome::Erred(Arc::new(error)));
    }
}

impl ClusterLink for RemoteCluster {
    fn enqueue(&self, message: Message<Job>) {
        match message {
            Message::Connect(_, sink) => *self.shared.sink.lock() = Some(sink),
            Message::Disconnect(_) => {
                // Ending the stream disconnects: the scheduler releases our keys.
                self.shared
                    .closed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.outbox.lock().take();
            }
            Message::Submit { tasks, wanted, .. } => match self.encode(tasks) {
                Ok(tasks) => {
                    if self.expect(&wanted) {
                        self.send(FromClient::Submit { tasks, wanted });
                    }
                }
                Err(e) => {
                    for key in wanted {
                        let error = TaskError::Failed {
                            key: key.clone(),
                            worker: WorkerId::MAX,
                            message: e.to_string(),
                        };
                        self.shared.report(key, Outcome::Erred(Arc::new(error)));
                    }
                }
            },
            Message::Event(Event::FutureReleased { key, .. }) => {
                self.send(FromClient::Release { key });
            }
            Message::Event(Event::Cancel { keys, .. }) => self.send(FromClient::Cancel { keys }),
            Message::Event(Event::DataScattered {
                key,
                workers,
                nbytes,
                ..
            }) => {
                if !self.expect(std::slice::from_ref(&key)) {
                    return;
                }
                self.send(FromClient::Scattered {
                    key,
                    workers,
                    nbytes,
                });
            }
            Message::Event(Event::FireAndForget { key }) => {
                self.send(FromClient::FireAndForget { key });
            }
            Message::Event(Event::Publish { name, key }) => {
                self.send(FromClient::Publish { name, key });
            }
            Message::Event(Event::Unpublish { name }) => {
                self.send(FromClient::Unpublish { name });
            }
            Message::Event(other) => {
                tracing::error!(
                    ?other,
                    "a client cannot send this event to a remote scheduler"
                );
            }
            Message::AddWorker(_) | Message::RemoveWorker(_) => {
                tracing::error!("a client cannot add or remove workers of a remote scheduler");
            }
        }
    }

    fn drain(&self) {}

    fn fetch(&self, key: &Key, workers: &[WorkerId]) -> BoxFuture<'static, Result<Arc<TaskData>>> {
        // The same holder-by-holder fetch a task does for a remote input.
        let input = StageInput::Remote(RemoteInput {
            key: key.clone(),
            holders: workers.to_vec(),
            nbytes: 0,
            source: Arc::new(self.fetcher.clone()),
        });
        Box::pin(async move { input.data().await.map_err(|e| Error::Comm(e.to_string())) })
    }

    fn fetch_many(
        &self,
        keys: &[(Key, Vec<WorkerId>)],
    ) -> BoxFuture<'static, Result<Vec<Arc<TaskData>>>> {
        let inputs: Vec<StageInput> = keys
            .iter()
            .map(|(key, workers)| {
                StageInput::Remote(RemoteInput {
                    key: key.clone(),
                    holders: workers.clone(),
                    nbytes: 0,
                    source: Arc::new(self.fetcher.clone()),
                })
            })
            .collect();
        Box::pin(async move {
            StageInput::data_each(&inputs)
                .await
                .map_err(|e| Error::Comm(e.to_string()))
        })
    }

    fn put(
        &self,
        key: &Key,
        value: &Value,
        workers: &[WorkerId],
    ) -> BoxFuture<'static, Result<()>> {
        let fetcher = self.fetcher.clone();
        let holders: Vec<_> = {
            let info = self.shared.info.read();
            workers
                .iter()
                .filter_map(|w| info.workers.iter().find(|i| i.id == *w))
                .map(|w| (w.id, w.address.clone()))
                .collect()
        };
        let (key, value) = (key.clone(), value.clone());
        Box::pin(async move {
            let failed = |message: String| Error::Comm(format!("cannot scatter {key}: {message}"));
            let batches = value.to_batches().map_err(failed)?;
            for worker in fetcher.learn(holders) {
                fetcher
                    .put_to(worker, key.clone(), batches.clone())
                    .await
                    .map_err(|e| failed(format!("worker {worker}: {e}")))?;
            }
            Ok(())
        })
    }

    fn tasks(&self, graph: &StageGraph) -> Result<Vec<(TaskSpec, Arc<Job>)>> {
        let encoded = graph
            .stages
            .iter()
            .map(|stage| encode_stage(stage, &graph.token).map(Arc::new))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        Ok(stage_tasks(graph, Some(&encoded)))
    }

    fn info(&self) -> ClusterInfo {
        self.shared.info.read().clone()
    }

    fn ask(&self, question: Question) -> BoxFuture<'static, Result<Answer>> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let id = match self.await_answer(&self.shared.questions, answer) {
            Ok(id) => id,
            Err(gone) => return Box::pin(async move { Err(gone) }),
        };
        self.send(FromClient::Ask { id, question });
        let address = self.address.clone();
        Box::pin(async move {
            answered.await.map_err(|_| {
                Error::Comm(format!(
                    "the scheduler at {address} went away before answering"
                ))
            })
        })
    }
}

impl RemoteCluster {
    /// Sends statement `sql` for the scheduler to plan and run in the session
    /// it keeps for this connection: its number, and its answers in order.
    /// The stream ends without [`SqlAnswer::Done`] if the scheduler goes
    /// away. The scheduler sends rows a window ahead of what the client has
    /// read: tell it of each [`SqlAnswer::Rows`] read with [`sql_read`](Self::sql_read).
    pub fn sql(&self, sql: String) -> Result<(u64, mpsc::UnboundedReceiver<SqlAnswer>)> {
        let (answers, answered) = mpsc::unbounded_channel();
        let id = self.await_answer(&self.shared.statements, answers)?;
        self.send(FromClient::Sql { id, sql });
        Ok((id, answered))
    }

    /// Tells the scheduler that rows of statement `id`, `len` bytes of IPC,
    /// were read: it may send as much more.
    pub fn sql_read(&self, id: u64, len: usize) {
        self.send(FromClient::SqlRead {
            id,
            kib: super::wire::sql_credits(len),
        });
    }

    /// Numbers a question or statement and notes in `waiting` where its
    /// answer goes; fails if the scheduler is gone (checked under the same
    /// lock that [`Shared::lost`] empties `waiting` under).
    fn await_answer<T>(
        &self,
        waiting: &Mutex<std::collections::HashMap<u64, T>>,
        answer: T,
    ) -> Result<u64> {
        let id = self
            .shared
            .next_question
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut waiting = waiting.lock();
        if let Some(why) = self.shared.gone.lock().clone() {
            return Err(self.gone(&why));
        }
        waiting.insert(id, answer);
        Ok(id)
    }

    /// The error of a statement or call cut short: the scheduler is gone.
    pub fn went_away(&self) -> Error {
        let why = self.shared.gone.lock().clone();
        self.gone(why.as_deref().unwrap_or("the connection closed"))
    }

    /// The error of a call made once the scheduler is gone, as `why` says.
    fn gone(&self, why: &str) -> Error {
        Error::Comm(format!("the scheduler at {} is gone ({why})", self.address))
    }

    /// Where the scheduler is.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl std::fmt::Debug for RemoteCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteCluster({})", self.address)
    }
}
