//! A record of a block of work to look at later, as Dask's
//! `performance_report`: one self-contained HTML file (no server, no
//! network) with the task stream of the block, progress and time per stage
//! and operation, transfers and spills, memory per worker, and each query's
//! text and stage listing.
//!
//! ```no_run
//! # async fn demo(client: rask::Client) -> rask::Result<()> {
//! let report = client.report("run.html").await?;
//! let frame = client.sql("SELECT name, avg(x) FROM timeseries() GROUP BY name").await?;
//! frame.collect().await?;
//! report.write().await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use datafusion::arrow::temporal_conversions::timestamp_s_to_datetime;
use parking_lot::Mutex;
use serde::Serialize;

use super::{Client, DataFrame};
use crate::cluster::WorkerState;
use crate::scheduler::{BARS_KEPT, Bar, GroupProgress};
use crate::{Error, Result};

/// The queries a report records: each query's text and frame, as
/// [`Client::sql`] planned them while the report was open.
type Entries = Mutex<Vec<(String, DataFrame)>>;
type Journal = Arc<Entries>;

/// The reports open on a client, which [`Client::sql`] tells of each query.
#[derive(Debug, Default, Clone)]
pub(super) struct Journals(Arc<Mutex<Vec<Weak<Entries>>>>);

impl Journals {
    /// Notes `sql`, planned as `frame`, in every report still open.
    pub(super) fn note(&self, sql: &str, frame: &DataFrame) {
        let mut open = self.0.lock();
        open.retain(|journal| match journal.upgrade() {
            Some(journal) => {
                journal.lock().push((sql.to_string(), frame.clone()));
                true
            }
            None => false,
        });
    }

    fn open(&self) -> Journal {
        let journal = Journal::default();
        self.0.lock().push(Arc::downgrade(&journal));
        journal
    }
}

/// A report being recorded: what the cluster does from [`Client::report`]
/// until [`write`](Self::write).
#[must_use = "a report is written only by Report::write"]
pub struct Report {
    client: Client,
    path: PathBuf,
    /// The first bar of the stream that belongs to the report.
    first_bar: u64,
    /// The stream's clock when the report began (ms).
    began: f64,
    /// Groups of tasks that started before the report (by their order).
    groups_before: u64,
    /// When it began, for the file's header.
    wall: std::time::SystemTime,
    journal: Journal,
}

impl Client {
    /// Starts recording what this client's cluster does, for a report written
    /// to `path` (HTML) by [`Report::write`]: Dask's `performance_report`.
    /// Queries planned through [`Client::sql`] meanwhile are listed with their
    /// stages.
    pub async fn report(&self, path: impl AsRef<Path>) -> Result<Report> {
        let (next, now) = stream_position(self).await?;
        let groups_before = self
            .progress()
            .await?
            .iter()
            .map(|g| g.order + 1)
            .max()
            .unwrap_or(0);
        Ok(Report {
            client: self.clone(),
            path: path.as_ref().to_path_buf(),
            first_bar: next,
            began: now,
            groups_before,
            wall: std::time::SystemTime::now(),
            journal: self.journals.open(),
        })
    }
}

/// The number the task stream's next bar will have, and its clock now (ms).
async fn stream_position(client: &Client) -> Result<(u64, f64)> {
    let (_, next, now) = client.connection.stream(u64::MAX, 0).await?;
    Ok((next, now))
}

/// What the page draws, as JSON.
#[derive(Debug, Serialize)]
struct Data {
    title: String,
    began: String,
    cluster: String,
    /// Bars the stream no longer held when the report was written.
    bars_lost: u64,
    now: f64,
    start: f64,
    bars: Vec<Bar>,
    progress: Vec<GroupProgress>,
    workers: Vec<WorkerState>,
    queries: Vec<Query>,
}

#[derive(Debug, Serialize)]
struct Query {
    sql: String,
    stages: String,
}

impl Report {
    /// Where the report goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the report: one HTML file that opens offline. Returns its path.
    pub async fn write(self) -> Result<PathBuf> {
        // The work ends now; its last transfers and spills may come later.
        let (_, now) = stream_position(&self.client).await?;
        let workers = self.hear_every_worker().await?;
        let (bars, next, _) = self
            .client
            .connection
            .stream(self.first_bar, BARS_KEPT)
            .await?;
        let held = next.saturating_sub(self.first_bar);
        let progress = self
            .client
            .progress()
            .await?
            .into_iter()
            .filter(|g| g.order >= self.groups_before)
            .collect();
        let journal = std::mem::take(&mut *self.journal.lock());
        let mut queries = Vec::with_capacity(journal.len());
        for (sql, frame) in journal {
            let stages = frame.explain().await.unwrap_or_else(|e| e.to_string());
            queries.push(Query { sql, stages });
        }
        let info = self.client.info();
        let data = Data {
            title: format!(
                "rask report, {}",
                self.path
                    .file_name()
                    .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned())
            ),
            began: humane_time(self.wall),
            cluster: format!(
                "scheduler {}, {} workers, {} threads",
                info.scheduler,
                info.workers.len(),
                info.total_threads()
            ),
            bars_lost: held.saturating_sub(bars.len() as u64),
            now,
            start: self.began,
            bars,
            progress,
            workers,
            queries,
        };
        let json = serde_json::to_string(&data)
            .map_err(|e| Error::Config(format!("cannot encode the report: {e}")))?;
        let html = page(&data.title, &json);
        std::fs::write(&self.path, html).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.path)
    }

    /// Waits (at most [`HEARD_WITHIN`]) until every worker of another process
    /// has sent a heartbeat since now: the transfers and spills it made until
    /// now come with its heartbeats. The workers as last heard.
    async fn hear_every_worker(&self) -> Result<Vec<WorkerState>> {
        let ended = std::time::Instant::now();
        loop {
            // A worker heard less than this long before the answer was heard
            // from after `ended`, whatever the answer's own delay.
            let since = ended.elapsed().as_secs_f64();
            let workers = self.client.workers().await?;
            let heard = workers
                .iter()
                .all(|w| w.last_seen.is_none_or(|ago| ago < since));
            if heard || ended.elapsed() >= HEARD_WITHIN {
                return Ok(workers);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// How long a report waits for the workers' last heartbeats: a few of their
/// intervals (1 s by default).
const HEARD_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// The page: the dashboard's style and drawing code, the report's script and
/// its data, all inline.
fn page(title: &str, json: &str) -> String {
    // `</` inside a script element would end it early.
    let json = json.replace("</", "<\\/");
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>\n{style}</style>\n</head>\n<body>\n\
         <nav><span class=\"brand\">rask</span><span id=\"summary\" class=\"muted\"></span></nav>\n\
         <main id=\"main\"></main>\n\
         <script type=\"application/json\" id=\"report-data\">{json}</script>\n\
         <script>\n{draw}</script>\n<script>\n{report}</script>\n</body>\n</html>\n",
        style = crate::dashboard::STYLE,
        draw = crate::dashboard::DRAW,
        report = crate::dashboard::REPORT,
    )
}

/// `time` as `2026-12-07 16:50:02 UTC`.
fn humane_time(time: std::time::SystemTime) -> String {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match timestamp_s_to_datetime(seconds) {
        Some(when) => format!("{} UTC", when.format("%Y-%m-%d %H:%M:%S")),
        None => format!("{seconds} s after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_calendar_dates_in_utc() {
        let at = |s: u64| humane_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(10_957 * 86_400), "2000-01-01 00:00:00 UTC");
        assert_eq!(at(11_016 * 86_400 + 3_723), "2000-02-29 01:02:03 UTC");
        assert_eq!(at(20_794 * 86_400), "2026-12-07 00:00:00 UTC");
    }

    #[test]
    fn the_data_cannot_end_its_script_element() {
        let html = page("a <b>", r#"{"sql":"SELECT '</script><script>alert(1)'"}"#);
        assert!(!html.contains("</script><script>alert"), "{html}");
        assert!(html.contains("<title>a &lt;b&gt;</title>"));
    }
}
