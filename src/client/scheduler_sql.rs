//! [`SchedulerSql`]: SQL the scheduler plans and runs, for a client that only
//! sends statements and reads their rows. The scheduler keeps a session for
//! the connection, so tables a statement creates are there for the next;
//! and it is warm (its code has run, its files' metadata is read), which
//! saves a short-lived client (`rask query --scheduler`) the cost of building
//! a session and planning cold.
//!
//! The scheduler reads the files the SQL names, with its own working
//! folder: relative paths resolve there, not in the client's.

use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::Client;
use crate::cluster::ClusterLink;
use crate::comm::wire::SqlFailure;
use crate::comm::{RemoteCluster, SqlAnswer, SqlSession};
use crate::scheduler::Message;
use crate::{Error, Location, Result};

/// A connection to a scheduler that plans and runs this client's SQL.
///
/// ```no_run
/// # async fn demo() -> rask::Result<()> {
/// use futures::TryStreamExt;
/// let scheduler = rask::SchedulerSql::connect("127.0.0.1:8786", rask::Security::from_env()?).await?;
/// scheduler.sql("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/data/t.parquet'").await?;
/// let rows: Vec<_> = scheduler.sql("SELECT count(*) FROM t").await?.try_collect().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SchedulerSql {
    link: Arc<RemoteCluster>,
}

impl SchedulerSql {
    /// Connects to the scheduler at `address` (`HOST:PORT`).
    pub async fn connect(address: &str, security: crate::Security) -> Result<Self> {
        Ok(Self {
            link: RemoteCluster::connect_for_sql(address, security).await?,
        })
    }

    /// Runs statement `sql` (one) on the scheduler: its rows, once it is
    /// planned and running. An error says where in `sql` it lies, when known.
    pub async fn sql(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        let (id, mut answers) = self.link.sql(sql.to_string())?;
        let (schema, batches) = read(&self.link, id, answers.recv().await)
            .ok_or_else(|| Error::Comm("the scheduler sent no schema".into()))??;
        let link = Arc::clone(&self.link);
        let rest = futures::stream::unfold(Some(answers), move |answers| {
            let link = Arc::clone(&link);
            async move {
                let mut answers: mpsc::UnboundedReceiver<SqlAnswer> = answers?;
                let item = read(&link, id, answers.recv().await)?.map(|(_, batches)| batches);
                let next = item.is_ok().then_some(answers);
                Some((item, next))
            }
        });
        let batches =
            futures::stream::iter([Ok(batches)])
                .chain(rest)
                .flat_map(|item| match item {
                    Ok(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
                    Err(e) => {
                        futures::stream::iter([Err(DataFusionError::External(Box::new(e)))]).boxed()
                    }
                });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

impl Drop for SchedulerSql {
    /// Ends the connection: the scheduler closes its session.
    fn drop(&mut self) {
        self.link.enqueue(Message::Disconnect(0));
    }
}

/// What `answer` (the next of statement `id`'s, `None` once the scheduler
/// went away) holds: rows, read (the scheduler is told, so it sends more),
/// an error, or `None` at the statement's end.
fn read(
    link: &RemoteCluster,
    id: u64,
    answer: Option<SqlAnswer>,
) -> Option<Result<(SchemaRef, Vec<RecordBatch>)>> {
    match answer {
        Some(SqlAnswer::Rows(ipc)) => {
            link.sql_read(id, ipc.len());
            Some(decode(ipc))
        }
        Some(SqlAnswer::Done(None)) => None,
        Some(SqlAnswer::Done(Some(failure))) => Some(Err(failed(failure))),
        None => Some(Err(link.went_away())),
    }
}

/// The schema and batches of an IPC stream from the scheduler.
fn decode(ipc: Vec<u8>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = StreamReader::try_new(Cursor::new(ipc), None).map_err(DataFusionError::from)?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(DataFusionError::from)?;
    Ok((schema, batches))
}

/// The error of a statement that failed on the scheduler.
fn failed(failure: SqlFailure) -> Error {
    Error::Remote {
        message: failure.message,
        location: failure
            .location
            .map(|(line, column)| Location { line, column }),
    }
}

/// A client is a session the scheduler runs thin clients' SQL in.
impl SqlSession for Client {
    fn run(&self, sql: String) -> BoxFuture<'_, Result<SendableRecordBatchStream>> {
        Box::pin(async move { self.sql(&sql).await?.stream().await })
    }

    /// Whether it plans for the workers there are: it took their number
    /// when it connected.
    fn is_current(&self) -> bool {
        let config = self.config();
        self.info().shape() == (config.workers, config.threads)
    }
}
