//! The JSON API under `/api/v1/` behind every page, and the server-sent events
//! that push a page its updates.
//!
//! - `info`: the scheduler, its start, its workers and task counts;
//! - `workers`, `workers/{id}`: every worker now, or one;
//! - `progress`: every group of tasks, done / total / erred;
//! - `stream?after=N`: the task stream's bars numbered `N` and up;
//! - `graph`: the tasks and their inputs, or, past a few thousand, the groups;
//! - `tasks/{key}`: one task: state, holders, inputs, dependents, error;
//! - `events`: every [`TICK`], an `update` event with what changed: new bars,
//!   progress and workers. One snapshot per tick and page, whatever the
//!   scheduler does meanwhile.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::{ClusterView, GRAPH_TASKS};
use crate::cluster::{ClusterInfo, WorkerState};
use crate::key::Key;
use crate::scheduler::{Bar, GroupProgress, TaskNode};

/// How often pages get an update.
pub const TICK: Duration = Duration::from_millis(500);

/// Bars sent at most in one answer.
const BARS_SENT: usize = 5_000;

/// What every handler shares: the view, and when the dashboard started.
pub struct Dashboard {
    pub(super) view: Arc<dyn ClusterView>,
    started: SystemTime,
    /// Event streams open now.
    streams: Arc<std::sync::atomic::AtomicUsize>,
}

impl Dashboard {
    pub(super) fn new(view: Arc<dyn ClusterView>) -> Self {
        Self {
            view,
            started: SystemTime::now(),
            streams: Arc::default(),
        }
    }
}

/// Event streams open at once, at most: each reads the scheduler every tick.
pub const MAX_STREAMS: usize = 64;

/// Counts an open event stream while it lives.
struct Open(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

type Shared = State<Arc<Dashboard>>;

/// `/api/v1/info`: [`ClusterInfo`] and the scheduler's counts.
#[derive(Debug, Serialize)]
pub struct Info {
    #[serde(flatten)]
    cluster: ClusterInfo,
    /// When the dashboard started, in seconds since 1970.
    started: u64,
    /// Seconds since then.
    uptime: f64,
    /// Task slots of all workers.
    threads: usize,
    /// Memory limits of all workers.
    memory_limit: u64,
    /// Tasks the scheduler knows now.
    tasks_known: usize,
    /// Tasks finished since it started.
    tasks_finished: u64,
}

/// `/api/v1/stream`: bars, the number of the next, and the stream's clock.
#[derive(Debug, Serialize)]
pub struct StreamAnswer {
    bars: Vec<Bar>,
    next: u64,
    now: f64,
}

/// `/api/v1/graph`: the tasks when there are few, and the groups always.
#[derive(Debug, Serialize)]
pub struct GraphAnswer {
    /// `None` past `limit` tasks.
    tasks: Option<Vec<TaskNode>>,
    groups: Vec<GroupProgress>,
    limit: usize,
}

/// An `update` event.
#[derive(Debug, Serialize)]
struct Update {
    stream: StreamAnswer,
    progress: Vec<GroupProgress>,
    workers: Vec<WorkerState>,
    tasks_known: usize,
    tasks_finished: u64,
}

pub(super) fn routes() -> Router<Arc<Dashboard>> {
    Router::new()
        .route("/api/v1/info", get(info))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/workers/{id}", get(worker))
        .route("/api/v1/progress", get(progress))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/tasks/{key}", get(task))
        .route("/api/v1/events", get(events))
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, what).into_response()
}

async fn info(State(dashboard): Shared) -> Json<Info> {
    let cluster = dashboard.view.info();
    let scheduler = dashboard.view.scheduler();
    Json(Info {
        threads: cluster.total_threads(),
        memory_limit: cluster.total_memory(),
        cluster,
        started: dashboard
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        uptime: dashboard.started.elapsed().map_or(0.0, |d| d.as_secs_f64()),
        tasks_known: scheduler.task_count(),
        tasks_finished: scheduler.tasks_finished(),
    })
}

async fn workers(State(dashboard): Shared) -> Json<Vec<WorkerState>> {
    Json(dashboard.view.workers())
}

async fn worker(State(dashboard): Shared, Path(id): Path<String>) -> Response {
    let found = id.parse::<u64>().ok().and_then(|id| {
        dashboard
            .view
            .workers()
            .into_iter()
            .find(|w| w.info.id == id)
    });
    match found {
        Some(worker) => Json(worker).into_response(),
        None => not_found(format!("no worker {id}")),
    }
}

async fn progress(State(dashboard): Shared) -> Json<Vec<GroupProgress>> {
    Json(dashboard.view.scheduler().progress())
}

/// `after=N` from a query string; 0 when absent or not a number.
fn after(query: Option<&str>) -> u64 {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("after=")?.parse().ok())
        .unwrap_or(0)
}

fn bars_after(dashboard: &Dashboard, after: u64) -> StreamAnswer {
    let (bars, next, now) = dashboard.view.scheduler().stream(after, BARS_SENT);
    StreamAnswer { bars, next, now }
}

async fn stream(State(dashboard): Shared, RawQuery(query): RawQuery) -> Json<StreamAnswer> {
    Json(bars_after(&dashboard, after(query.as_deref())))
}

async fn graph(State(dashboard): Shared) -> Json<GraphAnswer> {
    let scheduler = dashboard.view.scheduler();
    Json(GraphAnswer {
        tasks: scheduler.graph(GRAPH_TASKS),
        groups: scheduler.progress(),
        limit: GRAPH_TASKS,
    })
}

async fn task(State(dashboard): Shared, Path(key): Path<String>) -> Response {
    match dashboard
        .view
        .scheduler()
        .task_detail(&Key::new(key.as_str()))
    {
        Some(task) => Json(task).into_response(),
        None => not_found(format!("the scheduler does not know {key}")),
    }
}

async fn events(State(dashboard): Shared, RawQuery(query): RawQuery) -> Response {
    use std::sync::atomic::Ordering;
    let open = dashboard.streams.fetch_add(1, Ordering::Relaxed);
    let counted = Open(Arc::clone(&dashboard.streams));
    if open >= MAX_STREAMS {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} event streams are open already: close a page\n"),
        )
            .into_response();
    }
    let start = after(query.as_deref());
    let state = (dashboard, start, counted);
    let updates = futures::stream::unfold(state, |(dashboard, after, counted)| async move {
        let update = snapshot(&dashboard, after);
        let next = update.stream.next;
        let event = Event::default()
            .event("update")
            .json_data(&update)
            .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
        tokio::time::sleep(TICK).await;
        Some((Ok::<_, Infallible>(event), (dashboard, next, counted)))
    });
    Sse::new(updates)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn snapshot(dashboard: &Dashboard, after: u64) -> Update {
    let scheduler = dashboard.view.scheduler();
    Update {
        stream: bars_after(dashboard, after),
        progress: scheduler.progress(),
        workers: dashboard.view.workers(),
        tasks_known: scheduler.task_count(),
        tasks_finished: scheduler.tasks_finished(),
    }
}

#[cfg(test)]
mod tests {
    use super::after;

    #[test]
    fn after_reads_its_number_from_the_query() {
        assert_eq!(after(Some("after=42")), 42);
        assert_eq!(after(Some("x=1&after=7")), 7);
        assert_eq!(after(Some("after=many")), 0);
        assert_eq!(after(None), 0);
    }
}
