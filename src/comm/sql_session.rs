//! SQL the scheduler plans and runs for thin clients (`rask query
//! --scheduler`): a client sends statements ([`FromClient::Sql`]) instead of
//! planning them, and the scheduler answers from a session it keeps for that
//! connection, warm (its code run before, its files' metadata read), as its
//! PostgreSQL port does. The rows go back on the client's control stream as
//! Arrow IPC.
//!
//! The scheduler core knows nothing of SQL: whoever starts the scheduler says
//! how a session opens ([`SchedulerNode::serve_sql`](super::SchedulerNode::serve_sql));
//! `rask scheduler` opens each as a client of itself.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::wire::{SqlFailure, ToClient, sql_credits};
use crate::Result;

/// A session SQL statements run in, one after another.
pub trait SqlSession: Send + Sync {
    /// Plans statement `sql` and starts it: its rows as they come.
    fn run(&self, sql: String) -> BoxFuture<'_, Result<SendableRecordBatchStream>>;

    /// Whether a session opened a while ago still fits the cluster (it plans
    /// for the workers there were then).
    fn is_current(&self) -> bool {
        true
    }
}

/// Opens a new session, for a connection's first statement.
pub type OpenSqlSession =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Box<dyn SqlSession>>> + Send + Sync>;

/// Sessions opened one ahead: opening one (a connection, a session) takes a
/// few milliseconds, which a thin client's first statement then does not
/// wait for.
pub(super) struct Sessions {
    open: OpenSqlSession,
    spare: Mutex<Option<Opening>>,
}

/// A session being opened.
type Opening = JoinHandle<Result<Box<dyn SqlSession>>>;

impl Sessions {
    pub(super) fn new(open: OpenSqlSession) -> Self {
        Self {
            open,
            spare: Mutex::new(None),
        }
    }

    /// A session for a new connection: the spare one if it is ready and
    /// current, else a new one. Another spare is opened behind it.
    pub(super) async fn take(&self) -> Result<Box<dyn SqlSession>> {
        let ready = self.spare.lock().take();
        *self.spare.lock() = Some(tokio::spawn((self.open)()));
        if let Some(spare) = ready
            && let Ok(Ok(session)) = spare.await
            && session.is_current()
        {
            return Ok(session);
        }
        (self.open)().await
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        if let Some(spare) = self.spare.lock().take() {
            spare.abort();
        }
    }
}

/// Runs statement `id` (`sql`) in `session` and sends its rows, then its end,
/// to `outbox`, each message once `credits` (returned as the client reads)
/// cover it. Stops early if the client is gone.
pub(super) async fn answer(
    session: &dyn SqlSession,
    id: u64,
    sql: String,
    outbox: &mpsc::UnboundedSender<ToClient>,
    credits: &Semaphore,
) {
    let error = match stream_rows(session, id, sql, outbox, credits).await {
        Ok(()) => None,
        Err(e) => Some(SqlFailure {
            message: e.to_string(),
            location: e.location().map(|l| (l.line, l.column)),
        }),
    };
    let _ = outbox.send(ToClient::SqlDone { id, error });
}

async fn stream_rows(
    session: &dyn SqlSession,
    id: u64,
    sql: String,
    outbox: &mpsc::UnboundedSender<ToClient>,
    credits: &Semaphore,
) -> Result<()> {
    let mut stream = session.run(sql).await?;
    let schema = stream.schema();
    // The schema first, alone: the client's output starts with it even when
    // no row follows.
    let send = |batch: Option<RecordBatch>| {
        let ipc = ipc_stream(&schema, batch.as_ref());
        async move {
            let ipc = ipc.map_err(DataFusionError::from)?;
            match credits.acquire_many(sql_credits(ipc.len())).await {
                Ok(permit) => permit.forget(),
                Err(_) => return Ok(false),
            }
            Ok::<_, crate::Error>(outbox.send(ToClient::SqlRows { id, ipc }).is_ok())
        }
    };
    if !send(None).await? {
        return Ok(());
    }
    while let Some(batch) = stream.next().await {
        if !send(Some(batch?)).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// An IPC stream of `schema` and `batch`, if any.
fn ipc_stream(schema: &Schema, batch: Option<&RecordBatch>) -> Result<Vec<u8>, ArrowError> {
    let mut ipc = Vec::new();
    let mut writer = StreamWriter::try_new(&mut ipc, schema)?;
    if let Some(batch) = batch {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(ipc)
}
