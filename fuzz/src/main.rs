//! `rask-fuzz`: hostile bytes for every door of rask, on the stable toolchain.
//!
//! ```text
//! rask-fuzz plan --inputs 10000000 --minutes 60
//! ```
//!
//! Each target (see `rask::internals::fuzzing` and [`postgres`]) starts from real
//! messages and feeds it inputs made by [`mutate`] until the count or the
//! time runs out. A panic that escapes a target is a crash: its input is kept
//! under `--findings` and the run fails. A panic that rask contained (a plan
//! datafusion-proto panics on, turned into a task error) is counted and its
//! first inputs kept too. Every kept input that was fixed becomes a file
//! under `fuzz/regressions/TARGET/`, replayed by this crate's tests.

mod mutate;
mod postgres;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rask::internals::fuzzing::{Control, FlightCalls, PlanDecode, SqlFrontEnd, Target};

#[derive(Parser)]
#[command(name = "rask-fuzz", about = "Hostile bytes for every door of rask.")]
struct Args {
    /// What to fuzz.
    target: Name,
    /// Inputs to try at most.
    #[arg(long, default_value_t = 10_000_000)]
    inputs: u64,
    /// Minutes to run at most.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// The random seed (the same seed makes the same inputs).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where inputs that crashed or panicked are kept.
    #[arg(long, default_value = "fuzz-findings")]
    findings: PathBuf,
    /// Stops at the first input after which this process holds more than
    /// this many MiB, keeping that input (0: no limit).
    #[arg(long, default_value_t = 4096)]
    max_rss_mib: u64,
    /// Runs these kept inputs once each and says what they do, instead.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    replay: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Name {
    /// Stages as workers decode them.
    Plan,
    /// Control-stream frames.
    Control,
    /// Flight tickets and actions.
    Flight,
    /// PostgreSQL frontend messages through the server.
    Postgres,
    /// `rask query` scripts through the SQL front end.
    Sql,
}

impl Name {
    fn label(self) -> &'static str {
        match self {
            Name::Plan => "plan",
            Name::Control => "control",
            Name::Flight => "flight",
            Name::Postgres => "postgres",
            Name::Sql => "sql",
        }
    }

    fn target(self) -> rask::Result<Box<dyn Target>> {
        Ok(match self {
            Name::Plan => Box::new(PlanDecode::new()?),
            Name::Control => Box::new(Control::new()?),
            Name::Flight => Box::new(FlightCalls::new()?),
            Name::Postgres => Box::new(postgres::Postgres::new()?),
            Name::Sql => Box::new(SqlFrontEnd::new()?),
        })
    }
}

/// Panics seen anywhere in the process (rask's own guards catch some), and
/// the last one's message.
static PANICS: AtomicU64 = AtomicU64::new(0);
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn count_panics() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = info.to_string();
        }
    }));
}

/// What one input did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No panic.
    Clean,
    /// A panic rask caught (its guards).
    Contained,
    /// A panic that escaped the target.
    Crash,
}

/// Runs `input` through `target`, telling a contained panic from a crash.
fn attempt(target: &mut dyn Target, input: &[u8]) -> Outcome {
    let before = PANICS.load(Ordering::SeqCst);
    let escaped = std::panic::catch_unwind(AssertUnwindSafe(|| target.run(input))).is_err();
    match (escaped, PANICS.load(Ordering::SeqCst) != before) {
        (true, _) => Outcome::Crash,
        (false, true) => Outcome::Contained,
        (false, false) => Outcome::Clean,
    }
}

/// What a run found.
#[derive(Debug, Default)]
struct Tally {
    inputs: u64,
    crashes: u64,
    contained: u64,
    /// Stopped: the process grew past `--max-rss-mib`.
    memory: bool,
}

/// This process's resident memory, in MiB (0 when unknown).
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| (pages * 4096) >> 20)
}

/// Feeds `target` inputs from `seed` until `inputs` or `limit`; keeps what
/// panicked under `findings`.
fn fuzz(
    label: &str,
    target: &mut dyn Target,
    (inputs, limit, max_rss_mib): (u64, Duration, u64),
    seed: u64,
    findings: &Path,
) -> Tally {
    let seeds = target.seeds();
    let dictionary = target.dictionary();
    let mut rng = mutate::Rng::new(seed);
    let mut tally = Tally::default();
    let start = Instant::now();
    let mut report = start;
    while tally.inputs < inputs && start.elapsed() < limit {
        let input = mutate::input(&mut rng, &seeds, &dictionary);
        let outcome = attempt(target, &input);
        tally.inputs += 1;
        if outcome != Outcome::Clean {
            let (what, n) = match outcome {
                Outcome::Crash => ("crash", &mut tally.crashes),
                _ => ("contained", &mut tally.contained),
            };
            *n += 1;
            if *n <= 20 {
                keep(findings, label, what, *n, &input);
            }
        }
        if max_rss_mib > 0 && rss_mib() > max_rss_mib {
            tally.memory = true;
            keep(findings, label, "memory", 1, &input);
            break;
        }
        if report.elapsed() > Duration::from_secs(30) {
            report = Instant::now();
            eprintln!(
                "{label}: {} inputs, {:.0}/s, {} crashes, {} contained panics",
                tally.inputs,
                tally.inputs as f64 / start.elapsed().as_secs_f64(),
                tally.crashes,
                tally.contained
            );
        }
    }
    tally
}

/// Writes `input` to `findings/LABEL-WHAT-N.bin`, with the panic's message
/// beside it.
fn keep(findings: &Path, label: &str, what: &str, n: u64, input: &[u8]) {
    let _ = std::fs::create_dir_all(findings);
    let file = findings.join(format!("{label}-{what}-{n}.bin"));
    let message = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
    let _ = std::fs::write(&file, input);
    let _ = std::fs::write(file.with_extension("txt"), &message);
    eprintln!("{label}: {what} kept in {}: {message}", file.display());
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    count_panics();
    let label = args.target.label();
    let mut target = match args.target.target() {
        Ok(target) => target,
        Err(e) => {
            eprintln!("error: cannot set up {label}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if !args.replay.is_empty() {
        for file in &args.replay {
            let Ok(input) = std::fs::read(file) else {
                eprintln!("error: cannot read {}", file.display());
                return std::process::ExitCode::FAILURE;
            };
            let outcome = attempt(target.as_mut(), &input);
            let message = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
            let what = match outcome {
                Outcome::Crash => format!("crash: {message}"),
                Outcome::Contained => format!("contained panic: {message}"),
                Outcome::Clean => "no panic".to_string(),
            };
            println!("{}: {what}", file.display());
        }
        return std::process::ExitCode::SUCCESS;
    }
    let limit = Duration::from_secs_f64(args.minutes.max(0.0) * 60.0);
    let start = Instant::now();
    let bounds = (args.inputs, limit, args.max_rss_mib);
    let tally = fuzz(label, target.as_mut(), bounds, args.seed, &args.findings);
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{label}: {} inputs in {seconds:.0} s ({:.0}/s), seed {}: {} crashes, {} contained panics{}",
        tally.inputs,
        tally.inputs as f64 / seconds.max(1e-9),
        args.seed,
        tally.crashes,
        tally.contained,
        target.notes()
    );
    if tally.memory {
        println!(
            "{label}: stopped past {} MiB of memory; the input is kept",
            args.max_rss_mib
        );
    }
    if tally.crashes > 0 || tally.memory {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input kept under `fuzz/regressions/TARGET/` runs through its
    /// target without a panic escaping.
    #[test]
    fn kept_inputs_stay_fixed() {
        count_panics();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
        let mut replayed = 0;
        for name in [
            Name::Plan,
            Name::Control,
            Name::Flight,
            Name::Postgres,
            Name::Sql,
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(name.label())) else {
                continue;
            };
            let mut target = name.target().expect("the target starts");
            for entry in entries.flatten() {
                let input = std::fs::read(entry.path()).expect("a kept input");
                let outcome = attempt(target.as_mut(), &input);
                assert_ne!(
                    outcome,
                    Outcome::Crash,
                    "{} crashes again",
                    entry.path().display()
                );
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no kept inputs under {}", root.display());
    }

    /// A short run of each in-process target finds no crash.
    #[test]
    fn a_short_run_of_each_target_finds_no_crash() {
        count_panics();
        let findings = std::env::temp_dir().join(format!("rask-fuzz-{}", std::process::id()));
        for name in [
            Name::Plan,
            Name::Control,
            Name::Flight,
            Name::Sql,
            Name::Postgres,
        ] {
            let mut target = name.target().expect("the target starts");
            let bounds = (300, Duration::from_secs(60), 4096);
            let tally = fuzz(name.label(), target.as_mut(), bounds, 7, &findings);
            assert!(
                !tally.memory,
                "{name:?}: past 4 GiB, see {}",
                findings.display()
            );
            assert_eq!(tally.crashes, 0, "{name:?}: see {}", findings.display());
            assert!(tally.inputs > 0);
        }
        let _ = std::fs::remove_dir_all(&findings);
    }
}
