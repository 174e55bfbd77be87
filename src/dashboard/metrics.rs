//! `/metrics`: the scheduler and its workers in Prometheus' text format.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::api::Dashboard;

/// The text Prometheus scrapes.
pub(super) async fn metrics(State(dashboard): State<Arc<Dashboard>>) -> impl IntoResponse {
    let text = render(&dashboard);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

fn render(dashboard: &Dashboard) -> String {
    let scheduler = dashboard.view.scheduler();
    let workers = dashboard.view.workers();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |value: f64| vec![(String::new(), value)];
    gauge(
        "rask_workers",
        "Workers registered.",
        "gauge",
        one(workers.len() as f64),
    );
    let threads: usize = workers.iter().map(|w| w.info.nthreads).sum();
    gauge(
        "rask_threads",
        "Task slots of all workers.",
        "gauge",
        one(threads as f64),
    );
    gauge(
        "rask_tasks",
        "Tasks the scheduler knows.",
        "gauge",
        one(scheduler.task_count() as f64),
    );
    gauge(
        "rask_tasks_finished_total",
        "Tasks finished since the scheduler started.",
        "counter",
        one(scheduler.tasks_finished() as f64),
    );
    let per_worker = |value: &dyn Fn(&crate::cluster::WorkerState) -> f64| {
        workers
            .iter()
            .map(|w| (format!("{{worker=\"{}\"}}", escape(&w.info.name)), value(w)))
            .collect::<Vec<_>>()
    };
    gauge(
        "rask_worker_memory_bytes",
        "Bytes of results a worker holds in memory.",
        "gauge",
        per_worker(&|w| w.metrics.memory as f64),
    );
    gauge(
        "rask_worker_spilled_bytes",
        "Bytes of results a worker spilled to disk.",
        "gauge",
        per_worker(&|w| w.metrics.spilled as f64),
    );
    gauge(
        "rask_worker_executing",
        "Tasks running on a worker.",
        "gauge",
        per_worker(&|w| w.metrics.executing as f64),
    );
    gauge(
        "rask_worker_processing",
        "Tasks sent to a worker and not finished.",
        "gauge",
        per_worker(&|w| w.processing as f64),
    );
    let mut groups = Vec::new();
    for group in scheduler.progress().into_iter().filter(|g| g.live > 0) {
        let name = escape(&group.name);
        for (state, value) in [
            ("total", group.total),
            ("done", group.done),
            ("erred", group.erred),
        ] {
            groups.push((
                format!("{{group=\"{name}\",state=\"{state}\"}}"),
                value as f64,
            ));
        }
    }
    gauge(
        "rask_group_tasks",
        "Tasks of each live group, by how far they came.",
        "gauge",
        groups,
    );
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
