//! The clients' side of the scheduler process: a client's control stream,
//! its messages as the core takes them, its questions answered, and the
//! heartbeat that tells it the scheduler lives.

use super::*;

impl SchedulerState {
    pub(super) fn add_client(
        self: &Arc<Self>,
        version: u32,
        incoming: Streaming<FlightData>,
        peer: String,
    ) -> Result<Frames, Status> {
        check_version("client", version, &peer)?;
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let (outbox, frames) = flight::outgoing::<ToClient>();
        let _ = outbox.send(ToClient::Welcome(self.info()));
        let weak = Arc::downgrade(self);
        let reports = outbox.clone();
        let sink = Arc::new(move |key: Key, outcome: Outcome| {
            let Some(state) = weak.upgrade() else {
                return;
            };
            let outcome = match outcome {
                Outcome::Finished { workers } => WireOutcome::Finished(state.holders(&workers)),
                Outcome::Erred(error) => match (last_killed(&error), Handle::try_current()) {
                    // Its nanny's report of that worker's last words may be on the way.
                    (Some(worker), Ok(runtime)) => {
                        let reports = reports.clone();
                        runtime.spawn(async move {
                            let log = state.last_words(worker).await;
                            let outcome = WireOutcome::Erred(with_log(&error, &log));
                            let _ = reports.send(ToClient::Report { key, outcome });
                        });
                        return;
                    }
                    _ => WireOutcome::Erred((*error).clone()),
                },
                Outcome::Cancelled => WireOutcome::Cancelled,
            };
            let _ = reports.send(ToClient::Report { key, outcome });
        });
        self.server.send(Message::Connect(id, sink));
        self.clients.lock().insert(id, outbox);
        tracing::info!(%peer, "client {id} connected");

        let state = Arc::clone(self);
        let answers = self.clients.lock().get(&id).cloned();
        tokio::spawn(async move {
            let mut messages =
                flight::messages::<FromClient>(incoming, "client message", peer.clone());
            let mut sql = SqlStatements::default();
            while let Some(batch) = messages.next().await {
                for message in batch {
                    if let FromClient::SqlRead { id: statement, kib } = message {
                        sql.read(statement, kib);
                        continue;
                    }
                    if let FromClient::Sql {
                        id: statement,
                        sql: text,
                    } = message
                    {
                        if let Some(outbox) = &answers {
                            sql.run(&state, id, statement, text, outbox.clone());
                        }
                        continue;
                    }
                    if let FromClient::Ask { id, question } = message {
                        // Behind the messages before it, as they are handled now.
                        state.server.drain();
                        let answer = question.answer(&state.server, || state.worker_states());
                        if let Some(answers) = &answers {
                            let _ = answers.send(ToClient::Answer { id, answer });
                        }
                        continue;
                    }
                    if let Some(message) = client_message(id, message) {
                        state.server.enqueue(message);
                    }
                }
                state.server.drain();
            }
            drop(sql);
            state.clients.lock().remove(&id);
            state.server.send(Message::Disconnect(id));
            tracing::info!(%peer, "client {id} disconnected");
        });
        Ok(frames.map(Ok).boxed())
    }
}

/// The SQL statements a thin client's connection runs: its session, opened
/// at the first, and the statements running, stopped when it goes.
#[derive(Default)]
struct SqlStatements {
    session: Arc<tokio::sync::OnceCell<Box<dyn SqlSession>>>,
    /// The statements running, by number: their tasks, and the credits the
    /// client returns as it reads their rows.
    running: HashMap<u64, (tokio::task::AbortHandle, Arc<tokio::sync::Semaphore>)>,
}

impl SqlStatements {
    /// Runs statement `id` in the session of client `client`'s connection,
    /// answering on `outbox`.
    fn run(
        &mut self,
        state: &Arc<SchedulerState>,
        client: ClientId,
        id: u64,
        sql: String,
        outbox: mpsc::UnboundedSender<ToClient>,
    ) {
        let state = Arc::clone(state);
        let session = Arc::clone(&self.session);
        let credits = Arc::new(tokio::sync::Semaphore::new(
            crate::comm::wire::SQL_WINDOW_KIB as usize,
        ));
        let window = Arc::clone(&credits);
        let task = tokio::spawn(async move {
            let opened = match state.sql.get() {
                None => Err("this scheduler does not run SQL for its clients".to_string()),
                Some(sessions) => session
                    .get_or_try_init(|| async {
                        let session = sessions.take().await?;
                        tracing::info!("client {client}: a SQL session opened");
                        Ok::<_, crate::Error>(session)
                    })
                    .await
                    .map_err(|e| {
                        tracing::error!("cannot open a SQL session: {e}");
                        format!("the scheduler cannot open a SQL session: {e}")
                    }),
            };
            match opened {
                Ok(session) => {
                    sql_session::answer(session.as_ref(), id, sql, &outbox, &window).await
                }
                Err(message) => {
                    let error = Some(SqlFailure {
                        message,
                        location: None,
                    });
                    let _ = outbox.send(ToClient::SqlDone { id, error });
                }
            }
        });
        self.running.retain(|_, (task, _)| !task.is_finished());
        self.running.insert(id, (task.abort_handle(), credits));
    }

    /// The client read `kib` credits' worth of statement `id`'s rows.
    fn read(&self, id: u64, kib: u32) {
        if let Some((_, credits)) = self.running.get(&id) {
            // Never more than the window: a client cannot make the
            // scheduler buffer more by returning credits it was not given.
            let room = (crate::comm::wire::SQL_WINDOW_KIB as usize)
                .saturating_sub(credits.available_permits());
            credits.add_permits((kib as usize).min(room));
        }
    }
}

impl Drop for SqlStatements {
    fn drop(&mut self) {
        for (task, _) in self.running.values() {
            task.abort();
        }
    }
}

/// A client's message as the scheduler takes it; `None` for a question,
/// answered apart.
pub(super) fn client_message(client: ClientId, message: FromClient) -> Option<Message<EncodedJob>> {
    Some(Message::Event(match message {
        FromClient::Submit { tasks, wanted } => {
            return Some(Message::Submit {
                client,
                tasks: tasks.into_iter().map(task_spec).collect(),
                wanted,
            });
        }
        FromClient::Release { key } => Event::FutureReleased { client, key },
        FromClient::Cancel { keys } => Event::Cancel { client, keys },
        FromClient::Scattered {
            key,
            workers,
            nbytes,
        } => Event::DataScattered {
            client,
            key,
            workers,
            nbytes,
        },
        FromClient::FireAndForget { key } => Event::FireAndForget { key },
        FromClient::Publish { name, key } => Event::Publish { name, key },
        FromClient::Unpublish { name } => Event::Unpublish { name },
        FromClient::Ask { .. } | FromClient::Sql { .. } | FromClient::SqlRead { .. } => {
            return None;
        }
    }))
}

pub(super) fn task_spec(task: EncodedTask) -> (TaskSpec, Arc<EncodedJob>) {
    let kind = match task.job {
        EncodedJob::Function { .. } => TaskKind::Call,
        EncodedJob::Stage { .. } | EncodedJob::Concat => TaskKind::Stage,
    };
    let mut spec = TaskSpec::new(task.key, task.dependencies).with_kind(kind);
    spec.priority = task.priority;
    spec.retries = task.retries;
    spec.workers = task.workers;
    spec.functions = task.functions;
    spec.parts = task.parts;
    (spec, Arc::new(task.job))
}

/// Tells every client, every [`ALIVE_EVERY`](crate::comm::wire::ALIVE_EVERY), that
/// the scheduler lives, until the scheduler is gone.
pub(super) async fn tell_clients_alive(state: std::sync::Weak<SchedulerState>) {
    let mut ticks = tokio::time::interval(crate::comm::wire::ALIVE_EVERY);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        for client in state.clients.lock().values() {
            let _ = client.send(ToClient::Alive);
        }
    }
}
