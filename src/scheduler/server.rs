//! The scheduler's event loop: the I/O around the pure [`Scheduler`] core.
//!
//! One thread owns the core, the jobs of known tasks, the workers and the
//! clients. Everything reaches it as a [`Message`] on one channel: client
//! submissions and releases, worker reports. It applies each to the core and
//! carries out the decisions: jobs to workers, releases and aborts, reports to
//! clients.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::{ClientId, Decision, Event, Outcome, Scheduler, TaskSpec, WorkerId};
use crate::key::{Key, KeyMap, KeySet};
use crate::worker::{Job, Worker};

/// Where a client hears how its keys ended.
pub type ReportSink = Arc<dyn Fn(Key, Outcome) + Send + Sync>;

/// What the scheduler thread is told.
pub enum Message {
    /// A core event (from workers and clients).
    Event(Event),
    /// A client submits tasks with their jobs.
    Submit {
        /// Who.
        client: ClientId,
        /// The tasks, dependencies first.
        tasks: Vec<(TaskSpec, Arc<Job>)>,
        /// The keys it holds futures for.
        wanted: Vec<Key>,
    },
    /// A client connects.
    Connect(ClientId, ReportSink),
    /// A client goes away: its futures are released.
    Disconnect(ClientId),
    /// A worker joins.
    AddWorker(Arc<Worker>),
    /// Stop the loop.
    Shutdown,
}

/// A running scheduler thread.
pub struct SchedulerServer {
    tx: mpsc::Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl SchedulerServer {
    /// Starts the scheduler thread.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rask-scheduler".into())
            .spawn(move || EventLoop::default().run(rx))?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    /// Sends `message` to the scheduler; false if it has stopped.
    pub fn send(&self, message: Message) -> bool {
        self.tx.send(message).is_ok()
    }

    /// A sender for workers' and clients' messages.
    pub fn sender(&self) -> mpsc::Sender<Message> {
        self.tx.clone()
    }
}

impl Drop for SchedulerServer {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Default)]
struct EventLoop {
    core: Scheduler,
    jobs: KeyMap<Arc<Job>>,
    workers: HashMap<WorkerId, Arc<Worker>>,
    clients: HashMap<ClientId, ReportSink>,
    /// The keys each client holds, to release them when it disconnects.
    wanted: HashMap<ClientId, KeySet>,
}

impl EventLoop {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        while let Ok(message) = rx.recv() {
            let decisions = match message {
                Message::Event(event) => {
                    if let Event::FutureReleased { client, key } = &event
                        && let Some(keys) = self.wanted.get_mut(client)
                    {
                        keys.remove(key);
                    }
                    self.core.handle(event)
                }
                Message::Submit {
                    client,
                    tasks,
                    wanted,
                } => {
                    let mut specs = Vec::with_capacity(tasks.len());
                    for (spec, job) in tasks {
                        self.jobs.entry(spec.key.clone()).or_insert(job);
                        specs.push(spec);
                    }
                    self.wanted
                        .entry(client)
                        .or_default()
                        .extend(wanted.iter().cloned());
                    self.core.handle(Event::GraphSubmitted {
                        client,
                        tasks: specs,
                        wanted,
                    })
                }
                Message::Connect(client, sink) => {
                    self.clients.insert(client, sink);
                    continue;
                }
                Message::Disconnect(client) => {
                    self.clients.remove(&client);
                    let mut decisions = Vec::new();
                    for key in self.wanted.remove(&client).unwrap_or_default() {
                        decisions.extend(self.core.handle(Event::FutureReleased { client, key }));
                    }
                    decisions
                }
                Message::AddWorker(worker) => {
                    let (id, nthreads) = (worker.id(), worker.nthreads());
                    self.workers.insert(id, worker);
                    self.core.handle(Event::WorkerAdded {
                        worker: id,
                        nthreads,
                    })
                }
                Message::Shutdown => break,
            };
            self.dispatch(decisions);
        }
    }

    fn dispatch(&mut self, decisions: Vec<Decision>) {
        for decision in decisions {
            match decision {
                Decision::Run {
                    worker,
                    key,
                    inputs,
                } => {
                    let (Some(w), Some(job)) = (self.workers.get(&worker), self.jobs.get(&key))
                    else {
                        tracing::error!(%key, worker, "cannot run: unknown worker or job");
                        continue;
                    };
                    w.run(key, Arc::clone(job), inputs);
                }
                Decision::Release { worker, key } => {
                    if let Some(w) = self.workers.get(&worker) {
                        w.release(&key);
                    }
                }
                Decision::Abort { worker, key } => {
                    if let Some(w) = self.workers.get(&worker) {
                        w.abort(&key);
                    }
                }
                Decision::Forget { key } => {
                    self.jobs.remove(&key);
                }
                Decision::Report {
                    client,
                    key,
                    outcome,
                } => {
                    if let Some(sink) = self.clients.get(&client) {
                        sink(key, outcome);
                    }
                }
            }
        }
    }
}
