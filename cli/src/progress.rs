//! The progress bar `rask query` and the shell draw on standard error while a
//! query runs: tasks done of all, each stage's count, and the time so far.
//!
//! It is drawn only when standard error is a terminal, after a short wait (a
//! quick query shows nothing), from the scheduler's progress of the groups that
//! started after the query did; the line is wiped when the query ends.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use rask::Client;
use rask::GroupProgress;

/// How long a query runs before the bar shows.
const DELAY: Duration = Duration::from_millis(300);

/// How often the bar is redrawn.
const EVERY: Duration = Duration::from_millis(100);

/// Cells of the bar itself.
const WIDTH: usize = 24;

/// The bar of one query: drawn until dropped.
pub struct ProgressBar {
    task: tokio::task::JoinHandle<()>,
}

impl ProgressBar {
    /// Starts drawing the progress of what `client`'s cluster runs from now on.
    /// `before` is the progress as it was before the query started.
    pub fn start(client: Client, before: Vec<GroupProgress>) -> Self {
        let known: HashSet<String> = before.into_iter().map(|g| g.name).collect();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            tokio::time::sleep(DELAY).await;
            loop {
                if let Ok(groups) = client.progress().await {
                    let ours: Vec<GroupProgress> = groups
                        .into_iter()
                        .filter(|g| !known.contains(&g.name))
                        .collect();
                    if !ours.is_empty() {
                        let line = render(&ours, started.elapsed(), columns());
                        let mut stderr = std::io::stderr().lock();
                        let _ = write!(stderr, "\r\x1b[2K{line}");
                        let _ = stderr.flush();
                    }
                }
                tokio::time::sleep(EVERY).await;
            }
        });
        Self { task }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.task.abort();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K");
        let _ = stderr.flush();
    }
}

/// The terminal's width, from `COLUMNS`, else 80.
fn columns() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(80)
}

/// `[██████░░░░░░] 12/40 tasks · read-parquet 8/8 · aggregate 4/16 · 1.2 s`,
/// cut to `width` characters. Stages come in the order they started.
pub fn render(groups: &[GroupProgress], elapsed: Duration, width: usize) -> String {
    let total: u64 = groups.iter().map(|g| g.total).sum();
    let done: u64 = groups.iter().map(|g| g.done).sum();
    let erred: u64 = groups.iter().map(|g| g.erred).sum();
    let mut ordered: Vec<&GroupProgress> = groups.iter().collect();
    ordered.sort_by_key(|g| g.order);
    let filled = if total == 0 {
        0
    } else {
        (done as usize * WIDTH / total as usize).min(WIDTH)
    };
    let mut line = format!(
        "[{}{}] {done}/{total} tasks",
        "█".repeat(filled),
        "░".repeat(WIDTH - filled)
    );
    if erred > 0 {
        line.push_str(&format!(", {erred} erred"));
    }
    let time = format!(" · {:.1} s", elapsed.as_secs_f64());
    for group in ordered {
        let stage = format!(" · {} {}/{}", group.operation, group.done, group.total);
        if line.chars().count() + stage.chars().count() + time.chars().count() > width {
            line.push_str(" · …");
            break;
        }
        line.push_str(&stage);
    }
    line.push_str(&time);
    line.chars().take(width.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, order: u64, done: u64, total: u64) -> GroupProgress {
        GroupProgress {
            name: format!("{name}-ab12{order}"),
            operation: name.to_string(),
            total,
            done,
            erred: 0,
            live: total,
            inputs: Vec::new(),
            order,
        }
    }

    #[test]
    fn the_bar_counts_tasks_and_lists_stages_in_order() {
        let groups = [group("aggregate", 2, 4, 16), group("read-parquet", 1, 8, 8)];
        let line = render(&groups, Duration::from_millis(1234), 200);
        let bar = format!("[{}{}]", "█".repeat(12), "░".repeat(12));
        assert_eq!(
            line,
            format!("{bar} 12/24 tasks · read-parquet 8/8 · aggregate 4/16 · 1.2 s")
        );
        let short = render(&groups, Duration::from_millis(1234), 60);
        assert!(short.chars().count() <= 60, "{short}");
        assert!(
            short.contains("12/24 tasks") && short.contains("…"),
            "{short}"
        );
    }
}
