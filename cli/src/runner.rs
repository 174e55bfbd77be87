//! Running statements and printing their results, for batch jobs and the shell.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use rask::Location;
use rask::datafusion;
use rask::internals::client::ScriptError;
use rask::internals::planner::script::substitute;
use rask::internals::planner::split_statements;
use rask::output::{self, Format};
use rask::{Client, Error, SchedulerSql};

use crate::args::RunArgs;
use crate::progress::ProgressBar;

/// Where statements are planned and run.
pub enum Session {
    /// In this process, on a client of the cluster (embedded or remote).
    Client(Client),
    /// On the scheduler, which plans and runs each statement and sends its
    /// rows back (`rask query --scheduler`, see [`crate::scheduler_sql`]).
    Scheduler(SchedulerSql),
}

/// Runs SQL on a client and prints results to standard output, errors and
/// timings to standard error.
pub struct Runner {
    pub session: Session,
    pub format: Format,
    pub maxrows: Option<usize>,
    pub timing: bool,
    /// Print each query's stages and task counts instead of running it.
    pub explain: bool,
    /// Where to write each query's task graph, if anywhere.
    pub visualize: Option<std::path::PathBuf>,
    /// Draw a progress bar on standard error while a query runs (when it is
    /// a terminal).
    pub progress: bool,
    /// Where results go instead of standard output (`--output FILE`, `\o`),
    /// one statement's after another.
    output: Option<OutputFile>,
    /// Variables substituted into scripts as psql does (`--set`, `\set`).
    pub variables: std::collections::BTreeMap<String, String>,
}

/// The file results go to, shared by the statements written to it.
#[derive(Clone)]
struct OutputFile {
    path: std::path::PathBuf,
    file: Arc<std::sync::Mutex<std::fs::File>>,
}

/// How running a piece of SQL ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every statement succeeded.
    Done,
    /// A statement failed; the error has been printed.
    Failed,
    /// Standard output was closed (e.g. piped into `head`): stop quietly.
    OutputClosed,
}

impl Runner {
    pub fn new(session: Session, args: &RunArgs) -> Self {
        Self {
            session,
            format: args.format,
            maxrows: args.maxrows.0,
            timing: args.timing,
            explain: false,
            visualize: None,
            progress: draws_progress(args),
            output: None,
            variables: Default::default(),
        }
    }

    /// Sends results to the file at `path` (created, or truncated) from now
    /// on; `None` back to standard output. `Err` says why the file cannot be
    /// written, and leaves results where they went.
    pub fn output_to(&mut self, path: Option<&std::path::Path>) -> Result<(), String> {
        self.output = match path {
            None => None,
            Some(path) => {
                let file = std::fs::File::create(path)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Some(OutputFile {
                    path: path.to_path_buf(),
                    file: Arc::new(std::sync::Mutex::new(file)),
                })
            }
        };
        Ok(())
    }

    /// Runs each statement of `script` in order, stopping at the first failure.
    /// `source` names the script in error messages (`job.sql`, `-c`, `<stdin>`);
    /// `first_line` is the script's first line number within that source.
    pub async fn run_script(&self, source: &str, script: &str, first_line: u64) -> Outcome {
        // A script that cannot be scanned runs as it is: its error then
        // points at the unterminated quote or comment.
        let substituted = match self.variables.is_empty() {
            true => None,
            false => substitute(script, &self.variables).ok(),
        };
        let script = substituted.as_deref().unwrap_or(script);
        let statements = match split_statements(script) {
            Ok(s) => s,
            Err(e) => return self.report(source, first_line, ScriptError::in_script(e)),
        };
        for statement in statements {
            if let Err(e) = self.run_statement(&statement.text).await {
                if is_broken_pipe(&e) {
                    return Outcome::OutputClosed;
                }
                return self.report(
                    source,
                    first_line,
                    ScriptError::in_statement(e, statement.start),
                );
            }
        }
        Outcome::Done
    }

    /// The client statements run on in this process, unless the scheduler
    /// runs them.
    pub fn client(&self) -> Option<&Client> {
        match &self.session {
            Session::Client(client) => Some(client),
            Session::Scheduler(_) => None,
        }
    }

    /// Plans and runs one statement, streaming its result to standard output.
    pub async fn run_statement(&self, sql: &str) -> rask::Result<()> {
        let started = Instant::now();
        let client = match &self.session {
            Session::Client(client) => client,
            Session::Scheduler(scheduler) => {
                let stream = scheduler.sql(sql).await?;
                return self.write_rows(stream, started).await;
            }
        };
        if self.explain {
            let stages = client.explain(sql).await?;
            let mut out = self.destination();
            return out
                .write_all(stages.as_bytes())
                .map_err(|source| self.output_error(source));
        }
        // Dropped (wiping its line) when the statement ends, however it ends.
        let _bar = match self.progress {
            true => Some(ProgressBar::start(
                client.clone(),
                client.progress().await.unwrap_or_default(),
            )),
            false => None,
        };
        let frame = client.sql(sql).await?;
        if let Some(path) = &self.visualize
            && !frame.logical_plan().schema().fields().is_empty()
        {
            frame.visualize(path).await?;
        }
        let stream = frame.stream().await?;
        self.write_rows(stream, started).await
    }

    /// Writes the rows of a statement started at `started` as they come.
    async fn write_rows(
        &self,
        mut stream: datafusion::execution::SendableRecordBatchStream,
        started: Instant,
    ) -> rask::Result<()> {
        let planned = started.elapsed();
        let mut first_rows = None;
        let destination = self.destination();
        let closed = destination.closed.clone();
        let mut sink = output::sink(self.format, stream.schema(), self.maxrows, destination);
        let written = async {
            while let Some(batch) = stream.next().await {
                first_rows.get_or_insert_with(|| started.elapsed());
                sink.write_batch(&batch?)?;
            }
            sink.finish()
        }
        .await;
        if closed.load(Ordering::Relaxed) {
            return Err(self.output_error(std::io::ErrorKind::BrokenPipe.into()));
        }
        let rows = written?;
        if self.timing {
            let steps = StatementSteps {
                planned,
                first_rows,
            };
            eprintln!(
                "{} in {:.3} s ({steps})",
                plural(rows, "row"),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    fn report(&self, source: &str, first_line: u64, error: ScriptError) -> Outcome {
        let location = Location {
            line: error.location.line + first_line - 1,
            column: error.location.column,
        };
        let place = if source.is_empty() {
            location.to_string()
        } else {
            format!("{source}:{location}")
        };
        print_error(&format!("{place}: {}", error.error));
        Outcome::Failed
    }
}

/// Where a statement's time went, for `--timing`: planning it into tasks
/// and submitting them, then waiting for its first rows.
struct StatementSteps {
    planned: std::time::Duration,
    first_rows: Option<std::time::Duration>,
}

impl std::fmt::Display for StatementSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "planned and submitted in {:.1} ms", millis(self.planned))?;
        match self.first_rows {
            Some(first) => write!(f, ", first rows at {:.1} ms", millis(first)),
            None => Ok(()),
        }
    }
}

/// Whether a running statement draws a progress bar: on a terminal, unless
/// `--no-progress`.
pub fn draws_progress(args: &RunArgs) -> bool {
    std::io::stderr().is_terminal() && !args.no_progress
}

/// A duration in milliseconds, as `--timing` prints them.
pub fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Prints `error: <message>` to standard error, in red on a terminal.
pub fn print_error(message: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = if std::io::stderr().is_terminal() {
        writeln!(stderr, "\x1b[31merror\x1b[0m: {message}")
    } else {
        writeln!(stderr, "error: {message}")
    };
}

impl Runner {
    /// Where this statement's results are written.
    fn destination(&self) -> Destination {
        Destination {
            closed: Arc::default(),
            file: self.output.as_ref().map(|o| Arc::clone(&o.file)),
        }
    }

    /// `source` as an error writing results, naming where they went.
    fn output_error(&self, source: std::io::Error) -> Error {
        let path = match &self.output {
            Some(output) => output.path.clone(),
            None => "<stdout>".into(),
        };
        Error::Io { path, source }
    }
}

/// Standard output (or the `--output` file) that remembers whether the reader
/// went away (a broken pipe), however deep in a writer the error surfaced.
struct Destination {
    closed: Arc<AtomicBool>,
    file: Option<Arc<std::sync::Mutex<std::fs::File>>>,
}

impl Write for Destination {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = match &self.file {
            Some(file) => lock(file)?.write(buf),
            None => std::io::stdout().lock().write(buf),
        };
        self.watch(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = match &self.file {
            Some(file) => lock(file)?.flush(),
            None => std::io::stdout().lock().flush(),
        };
        self.watch(flushed)
    }
}

/// The output file, for one write.
fn lock(
    file: &std::sync::Mutex<std::fs::File>,
) -> std::io::Result<std::sync::MutexGuard<'_, std::fs::File>> {
    file.lock()
        .map_err(|_| std::io::Error::other("a writer of the output file panicked"))
}

impl Destination {
    fn watch<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.closed.store(true, Ordering::Relaxed);
        }
        result
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}
