//! The workers' side of the scheduler process: a worker's control stream,
//! from its registration to its removal, its reports as core events, and the
//! [`RemoteWorker`] the core drives it through.

use super::*;

impl SchedulerState {
    pub(super) fn add_worker(
        self: &Arc<Self>,
        version: u32,
        info: WorkerInfo,
        incoming: Streaming<FlightData>,
        peer: String,
    ) -> Result<Frames, Status> {
        check_version("worker", version, &peer)?;
        let (outbox, frames) = flight::outgoing::<ToWorker>();
        let id = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let info = WorkerInfo {
            id,
            nthreads: info.nthreads.max(1),
            ..info
        };
        let silence_ms = self.heartbeat_timeout.as_millis() as u64;
        let _ = outbox.send(ToWorker::Welcome { id, silence_ms });
        let pings = outbox.clone();
        self.workers.write().insert(id, info.clone());
        self.reported
            .lock()
            .insert(id, (WorkerMetrics::default(), Instant::now()));
        if let Some(pid) = info.pid {
            self.pids.lock().insert(id, pid);
        }
        let endpoint = RemoteWorker {
            id,
            nthreads: info.nthreads,
            functions: Arc::new(info.functions.iter().cloned().collect()),
            outbox,
            state: Arc::downgrade(self),
        };
        self.server.send(Message::AddWorker(Arc::new(endpoint)));
        self.announce_workers();
        // Said once the worker is known everywhere: tests and operators wait for it.
        tracing::info!(
            "worker {id} registered: {} at {}, {} threads, memory limit {}, pid {}",
            info.name,
            info.address,
            info.nthreads,
            info.memory_limit.map_or("none".into(), format_bytes),
            info.pid.map_or("unknown".into(), |pid| pid.to_string()),
        );

        let state = Arc::clone(self);
        tokio::spawn(async move {
            let mut messages = flight::messages::<FromWorker>(incoming, "worker message", peer);
            let mut alive = tokio::time::interval(crate::comm::wire::ALIVE_EVERY);
            let mut heard = Instant::now();
            let mut paused = false;
            let why = loop {
                let batch = tokio::select! {
                    batch = messages.next() => batch,
                    _ = alive.tick() => {
                        if heard.elapsed() > state.heartbeat_timeout {
                            break format!("silent for {:?} (no heartbeat)", state.heartbeat_timeout);
                        }
                        let _ = pings.send(ToWorker::Alive);
                        continue;
                    }
                };
                let Some(batch) = batch else {
                    break "its connection closed".to_string();
                };
                heard = Instant::now();
                for message in batch {
                    tracing::trace!(worker = id, ?message, "from worker");
                    match message {
                        FromWorker::Heartbeat { metrics, marks } => {
                            if metrics.paused != paused {
                                paused = metrics.paused;
                                tracing::info!(worker = id, paused, "worker paused (memory)");
                                let event = Event::WorkerPaused { worker: id, paused };
                                state.server.enqueue(Message::Event(event));
                            }
                            state.server.note_marks(id, marks);
                            state.reported.lock().insert(id, (metrics, heard));
                        }
                        FromWorker::Retire => {
                            tracing::info!(worker = id, "worker {id} asks to retire");
                            let event = Event::RetireWorker { worker: id };
                            state.server.enqueue(Message::Event(event));
                        }
                        message => {
                            if let Some(event) = worker_event(id, message) {
                                state.server.enqueue(Message::Event(event));
                            }
                        }
                    }
                }
                state.server.drain();
            };
            let info = state.workers.write().remove(&id);
            state.reported.lock().remove(&id);
            let name = info.map(|i| i.name).unwrap_or_default();
            let lost = state.server.worker(id).map_or(String::new(), |w| {
                format!(
                    "; {} running tasks go elsewhere, {} results it held are recomputed if needed",
                    w.processing, w.in_memory
                )
            });
            tracing::warn!("worker {id} ({name}) removed: {why}{lost}");
            state.server.send(Message::RemoveWorker(id));
            state.announce_workers();
        });
        Ok(frames.map(Ok).boxed())
    }
}

/// A worker's report as a core event.
pub(super) fn worker_event(worker: WorkerId, message: FromWorker) -> Option<Event> {
    match message {
        FromWorker::Finished {
            key,
            nbytes,
            micros,
        } => Some(Event::TaskFinished {
            worker,
            key,
            nbytes,
            micros,
        }),
        FromWorker::Erred { key, error } => Some(Event::TaskErred { worker, key, error }),
        FromWorker::Stolen { key } => Some(Event::TaskStolen { worker, key }),
        FromWorker::Replicated { key, error: None } => Some(Event::DataReplicated { worker, key }),
        FromWorker::Replicated {
            key,
            error: Some(why),
        } => {
            tracing::warn!(%key, worker, "a copy of a retiring worker's result failed: {why}");
            Some(Event::ReplicateFailed { worker, key })
        }
        FromWorker::Heartbeat { .. } | FromWorker::Retire => None,
    }
}

/// A worker of another process, as the scheduler server drives it: every call
/// queues a message on its control stream.
pub(super) struct RemoteWorker {
    id: WorkerId,
    nthreads: usize,
    functions: Arc<std::collections::BTreeSet<String>>,
    outbox: mpsc::UnboundedSender<ToWorker>,
    state: std::sync::Weak<SchedulerState>,
}

impl WorkerEndpoint<EncodedJob> for RemoteWorker {
    fn id(&self) -> WorkerId {
        self.id
    }

    fn nthreads(&self) -> usize {
        self.nthreads
    }

    fn functions(&self) -> Option<Arc<std::collections::BTreeSet<String>>> {
        Some(Arc::clone(&self.functions))
    }

    fn run(&self, key: Key, job: Arc<EncodedJob>, inputs: Vec<Input>) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let inputs = inputs
            .into_iter()
            .map(|input| RunInput {
                holders: state.holders(&input.holders),
                key: input.key,
                nbytes: input.nbytes,
            })
            .collect();
        let _ = self.outbox.send(ToWorker::Run { key, job, inputs });
    }

    fn release(&self, key: &Key) -> Option<Released> {
        let _ = self.outbox.send(ToWorker::Release { key: key.clone() });
        None
    }

    fn abort(&self, keys: &KeySet) {
        let keys = keys.iter().cloned().collect();
        let _ = self.outbox.send(ToWorker::Abort { keys });
    }

    fn steal(&self, key: Key) {
        let _ = self.outbox.send(ToWorker::Steal { key });
    }

    fn replicate(&self, key: Key, from: Vec<WorkerId>) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let from = state.holders(&from);
        let _ = self.outbox.send(ToWorker::Replicate { key, from });
    }

    fn retire(&self) -> bool {
        tracing::info!(
            "worker {} retired: what only it held is on other workers",
            self.id
        );
        let reason = "retired".to_string();
        let _ = self.outbox.send(ToWorker::Close { reason });
        false
    }
}
