//! The interactive SQL shell (`rask`, `rask sql`).
//!
//! Lines accumulate until they end a statement with `;`; backslash commands act
//! at the start of a statement. With standard input not a terminal, the same
//! loop reads lines from it, so `printf 'SELECT 1;' | rask` works in scripts: an
//! error there does not stop the input, but makes the exit code non-zero.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use rask::internals::planner::script::is_incomplete;
use rask::output::Format;
use rustyline::Editor;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use tokio::runtime::Runtime;

use crate::completion::SqlCompleter;
use crate::runner::{Outcome, Runner, print_error};

const PROMPT: &str = "rask> ";
const CONTINUATION: &str = "   -> ";

const HELP: &str = "\
SQL statements end with ';' and may span lines. Commands:
  \\d, \\dt       list tables
  \\d NAME       columns and types of table NAME
  \\df           user functions, and the workers that carry them
  \\status       the cluster: scheduler, dashboard, workers, threads, memory
  \\timing       toggle printing how long each statement took
  \\format [F]   show or set the output format (table, csv, json, ndjson, expanded)
  \\x [on|off]   toggle expanded rows (a record of column | value lines per row)
  \\set [N V]    set variable N to V (:N, :'N', :\"N\" in statements); alone, list them
  \\o [FILE]     send results to FILE (created, or truncated); alone, back to the screen
  \\i FILE       run the SQL file FILE
  \\?            this help
  \\q            quit
Ctrl-C cancels a running query; Ctrl-D quits.";

/// Runs the shell until `\q` or end of input; returns whether every statement succeeded.
pub fn run(runtime: &Runtime, client: rask::Client, runner: Runner) -> bool {
    let mut shell = Shell {
        client,
        runner,
        failed: false,
        source: "<stdin>".into(),
    };
    if std::io::stdin().is_terminal() {
        shell.source = String::new();
        interactive(runtime, &mut shell);
    } else {
        piped(runtime, &mut shell);
    }
    !shell.failed
}

struct Shell {
    /// The client the runner's statements run on.
    client: rask::Client,
    runner: Runner,
    failed: bool,
    /// Names the input in error messages; empty when interactive.
    source: String,
}

/// What the shell does after a line.
enum Step {
    Continue,
    Quit,
}

/// Lines gathered into one statement, and where it started.
#[derive(Default)]
struct Buffer {
    text: String,
    first_line: u64,
}

impl Shell {
    /// Feeds one line (line number `line_no` of the input) into `buffer`,
    /// running what it completes.
    fn feed(&mut self, runtime: &Runtime, buffer: &mut Buffer, line: &str, line_no: u64) -> Step {
        if buffer.text.trim().is_empty() && line.trim_start().starts_with('\\') {
            buffer.text.clear();
            return self.command(runtime, line.trim());
        }
        if buffer.text.trim().is_empty() {
            buffer.text.clear();
            buffer.first_line = line_no;
        }
        buffer.text.push_str(line);
        buffer.text.push('\n');
        if !is_incomplete(&buffer.text) {
            let text = std::mem::take(&mut buffer.text);
            self.execute(runtime, &text, buffer.first_line);
        }
        Step::Continue
    }

    /// Runs SQL, cancelling it on Ctrl-C. Errors are printed and remembered.
    fn execute(&mut self, runtime: &Runtime, text: &str, first_line: u64) {
        let source = self.source.clone();
        let outcome = runtime.block_on(async {
            tokio::select! {
                outcome = self.runner.run_script(&source, text, first_line) => outcome,
                _ = tokio::signal::ctrl_c() => {
                    print_error("query cancelled");
                    Outcome::Failed
                }
            }
        });
        if outcome == Outcome::Failed {
            self.failed = true;
        }
    }

    fn command(&mut self, runtime: &Runtime, line: &str) -> Step {
        let (name, arg) = match line.split_once(char::is_whitespace) {
            Some((name, arg)) => (name, arg.trim()),
            None => (line, ""),
        };
        match (name, arg) {
            ("\\q", _) => return Step::Quit,
            ("\\?" | "\\h" | "\\help", _) => println!("{HELP}"),
            ("\\d" | "\\dt", "") => self.execute(
                runtime,
                "SELECT table_schema AS schema, table_name AS name, table_type AS type \
                 FROM information_schema.tables \
                 WHERE table_schema <> 'information_schema' ORDER BY 1, 2;",
                1,
            ),
            ("\\d", table) => self.describe(runtime, table),
            ("\\timing", arg) => {
                self.runner.timing = match arg {
                    "on" => true,
                    "off" => false,
                    _ => !self.runner.timing,
                };
                println!(
                    "timing is {}",
                    if self.runner.timing { "on" } else { "off" }
                );
            }
            ("\\status", _) => println!("{}", self.client.info()),
            ("\\df", _) => self.functions(),
            ("\\set", "") => {
                for (name, value) in &self.runner.variables {
                    println!("{name} = '{value}'");
                }
            }
            ("\\set", arg) => {
                let (name, value) = arg
                    .split_once(char::is_whitespace)
                    .map_or((arg, ""), |(n, v)| (n, v.trim()));
                self.runner
                    .variables
                    .insert(name.to_string(), value.to_string());
            }
            ("\\x", arg) => {
                let expanded = match arg {
                    "on" => true,
                    "off" => false,
                    _ => self.runner.format != Format::Expanded,
                };
                self.runner.format = if expanded {
                    Format::Expanded
                } else {
                    Format::Table
                };
                println!(
                    "expanded display is {}",
                    if expanded { "on" } else { "off" }
                );
            }
            ("\\format", "") => println!("format is {}", self.runner.format),
            ("\\format", format) => match format.parse::<Format>() {
                Ok(f) => {
                    self.runner.format = f;
                    println!("format is {f}");
                }
                Err(e) => self.fail(&e),
            },
            ("\\o", path) => {
                let to = (!path.is_empty()).then(|| std::path::Path::new(path));
                match self.runner.output_to(to) {
                    Ok(()) if path.is_empty() => println!("results go to standard output"),
                    Ok(()) => println!("results go to {path}"),
                    Err(e) => self.fail(&e),
                }
            }
            ("\\i", "") => self.fail("\\i needs a file name"),
            ("\\i", path) => self.include(runtime, PathBuf::from(path)),
            (other, _) => self.fail(&format!("unknown command {other} (\\? lists the commands)")),
        }
        Step::Continue
    }

    /// `\df`: the client's user functions, each with the workers carrying it.
    fn functions(&self) {
        let info = self.client.info();
        let names = self.client.registry().names();
        if names.is_empty() {
            println!("no user functions (a registry adds them: rask_cli::main_with)");
            return;
        }
        let width = names.iter().map(String::len).max().unwrap_or(0);
        for name in names {
            let carriers: Vec<&str> = info
                .workers
                .iter()
                .filter(|w| w.functions.contains(&name))
                .map(|w| w.name.as_str())
                .collect();
            let on = match carriers.len() {
                0 => "no worker".to_string(),
                n if n == info.workers.len() => format!("every worker ({n})"),
                _ => carriers.join(", "),
            };
            println!("{name:<width$}  {on}");
        }
    }

    fn describe(&mut self, runtime: &Runtime, table: &str) {
        let name = table.trim_end_matches(';').replace('\'', "''");
        let sql = format!(
            "SELECT column_name AS column, data_type AS type, is_nullable AS nullable \
             FROM information_schema.columns WHERE table_name = '{name}' \
             ORDER BY ordinal_position;"
        );
        let exists = runtime.block_on(async {
            let probe =
                format!("SELECT 1 FROM information_schema.tables WHERE table_name = '{name}'");
            match self.client.sql(&probe).await {
                Ok(df) => df
                    .collect()
                    .await
                    .map(|b| b.iter().any(|b| b.num_rows() > 0)),
                Err(e) => Err(e),
            }
        });
        match exists {
            Ok(true) => self.execute(runtime, &sql, 1),
            Ok(false) => self.fail(&format!("no table named '{table}' (\\d lists the tables)")),
            Err(e) => self.fail(&e.to_string()),
        }
    }

    fn include(&mut self, runtime: &Runtime, path: PathBuf) {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let source = path.display().to_string();
                let outcome = runtime.block_on(self.runner.run_script(&source, &text, 1));
                if outcome == Outcome::Failed {
                    self.failed = true;
                }
            }
            Err(e) => self.fail(&format!("cannot read {}: {e}", path.display())),
        }
    }

    fn fail(&mut self, message: &str) {
        print_error(message);
        self.failed = true;
    }
}

fn interactive(runtime: &Runtime, shell: &mut Shell) {
    let mut editor: Editor<SqlCompleter, DefaultHistory> = match Editor::new() {
        Ok(editor) => editor,
        Err(e) => {
            print_error(&format!("cannot start line editing: {e}"));
            return;
        }
    };
    // Tab completes keywords, tables, columns, functions and commands.
    editor.set_helper(Some(SqlCompleter::new(shell.client.clone())));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let info = shell.client.info();
    let on = if info.is_local() {
        "an embedded local cluster".to_string()
    } else {
        format!("the cluster at {}", info.scheduler)
    };
    println!(
        "rask {} — SQL on {on}. \\? for help, \\q to quit.",
        env!("CARGO_PKG_VERSION")
    );
    // The scheduler, the dashboard's link (the embedded cluster's too) and
    // the workers, as Dask's client display shows them.
    println!("{info}");
    let mut buffer = Buffer::default();
    loop {
        let prompt = if buffer.text.trim().is_empty() {
            PROMPT
        } else {
            CONTINUATION
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                // Positions in errors count from the statement's first line.
                if let Step::Quit = shell.feed(runtime, &mut buffer, &line, 1) {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => buffer = Buffer::default(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                print_error(&format!("cannot read input: {e}"));
                break;
            }
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
}

fn piped(runtime: &Runtime, shell: &mut Shell) {
    let mut buffer = Buffer::default();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        match line {
            Ok(line) => {
                if let Step::Quit = shell.feed(runtime, &mut buffer, &line, i as u64 + 1) {
                    return;
                }
            }
            Err(e) => {
                shell.fail(&format!("cannot read standard input: {e}"));
                return;
            }
        }
    }
    // A last statement without its ';' still runs.
    if !buffer.text.trim().is_empty() {
        let text = std::mem::take(&mut buffer.text);
        shell.execute(runtime, &text, buffer.first_line);
    }
}

/// `~/.rask_history`.
fn history_path() -> Option<PathBuf> {
    std::env::home_dir().map(|home| home.join(".rask_history"))
}
