//! `rask query`: SQL from `-c` and `-f` as a batch job.

use std::io::Read;

use rask::internals::planner::script::substitute;
use tokio::runtime::Runtime;

use crate::args::QueryArgs;
use crate::runner::{Outcome, Runner, print_error};

/// Runs every `-c` command, then every `-f` file, stopping at the first failure.
/// Returns whether everything succeeded.
pub fn run(runtime: &Runtime, mut runner: Runner, args: &QueryArgs) -> bool {
    runner.explain = args.explain;
    runner.visualize = args.visualize.clone();
    if let Some(path) = &args.output {
        match std::fs::File::create(path) {
            Ok(file) => runner.output = Some(std::sync::Arc::new(std::sync::Mutex::new(file))),
            Err(e) => {
                print_error(&format!("cannot write {}: {e}", path.display()));
                return false;
            }
        }
    }
    if args.commands.is_empty() && args.files.is_empty() {
        print_error("nothing to run: give SQL with -c \"SQL\" or a file with -f FILE");
        return false;
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
                return false;
            }
        }
    }
    let variables: std::collections::BTreeMap<String, String> =
        args.variables.iter().cloned().collect();
    runtime.block_on(async {
        for (name, text) in &sources {
            // A script that cannot be scanned runs as it is: its error then
            // points at the unterminated quote or comment.
            let text = match variables.is_empty() {
                true => text.clone(),
                false => substitute(text, &variables).unwrap_or_else(|_| text.clone()),
            };
            match runner.run_script(name, &text, 1).await {
                Outcome::Done => {}
                Outcome::OutputClosed => return true,
                Outcome::Failed => return false,
            }
        }
        true
    })
}
