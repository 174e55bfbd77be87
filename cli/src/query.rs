//! `rask query`: SQL from `-c` and `-f` as a batch job.

use std::io::Read;

use tokio::runtime::Runtime;

use crate::args::QueryArgs;
use crate::runner::{Outcome, Runner, print_error};

/// The SQL of every `-c` command, then of every `-f` file, each with the
/// name its errors give; `None`, said on standard error, when there is none
/// or a file cannot be read.
pub fn sources(args: &QueryArgs) -> Option<Vec<(String, String)>> {
    if args.commands.is_empty() && args.files.is_empty() {
        print_error("nothing to run: give SQL with -c \"SQL\" or a file with -f FILE");
        return None;
    }
    let mut sources: Vec<(String, String)> = args
        .commands
        .iter()
        .map(|sql| ("-c".to_string(), sql.clone()))
        .collect();
    for path in &args.files {
        let name = path.display().to_string();
        let text = if name == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(path)
        };
        match text {
            Ok(text) => sources.push((name, text)),
            Err(e) => {
                print_error(&format!("cannot read {name}: {e}"));
                return None;
            }
        }
    }
    Some(sources)
}

/// Runs `sources` (from [`sources`]) in order, stopping at the first failure.
/// Returns whether everything succeeded.
pub fn run(
    runtime: &Runtime,
    mut runner: Runner,
    args: &QueryArgs,
    sources: Vec<(String, String)>,
) -> bool {
    runner.explain = args.explain;
    runner.visualize = args.visualize.clone();
    runner.variables = args.variables.iter().cloned().collect();
    if let Err(e) = runner.output_to(args.output.as_deref()) {
        print_error(&e);
        return false;
    }
    runtime.block_on(async {
        let report = match (&args.report, runner.client()) {
            (Some(path), Some(client)) => match client.report(path).await {
                Ok(report) => Some(report),
                Err(e) => {
                    print_error(&format!("cannot start the report {}: {e}", path.display()));
                    return false;
                }
            },
            // The scheduler plans only when no report is asked for.
            (Some(_), None) | (None, _) => None,
        };
        let mut ok = true;
        for (name, text) in &sources {
            match runner.run_script(name, text, 1).await {
                Outcome::Done => {}
                Outcome::OutputClosed => break,
                Outcome::Failed => {
                    ok = false;
                    break;
                }
            }
        }
        // Written whether the job succeeded or not, as Dask's performance_report.
        if let Some(report) = report {
            match report.write().await {
                Ok(path) => eprintln!("report written to {}", path.display()),
                Err(e) => {
                    print_error(&format!("cannot write the report: {e}"));
                    ok = false;
                }
            }
        }
        ok
    })
}
