//! Real `rask scheduler` and `rask worker` processes on 127.0.0.1 for tests
//! and benchmarks (`rask-bench` includes this file): started on free ports,
//! their logs kept, killed when dropped (also when a test fails).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `rask` binary: the one cargo built for these tests, or else the one
/// beside the running program (`target/<profile>/rask`, as for `rask-bench`).
pub fn rask_binary() -> std::path::PathBuf {
    match option_env!("CARGO_BIN_EXE_rask") {
        Some(path) => path.into(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("rask")))
            .expect("the running program's folder"),
    }
}

/// How long a test waits for a process to say something.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running process and everything it logged.
pub struct Process {
    child: Child,
    /// Set when its standard error closes: it has exited.
    ended: Arc<std::sync::atomic::AtomicBool>,
    /// Kept open while the test wants the process: dropping it tells it to go.
    _stdin: Option<std::process::ChildStdin>,
    log: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Process {
    /// Starts `rask ARGS…` from `dir`, logging at info level.
    pub fn start(name: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_program(&rask_binary(), name, dir, args, env)
    }

    /// Starts `PROGRAM ARGS…` (`rask` or a binary built on its entry point)
    /// from `dir`, logging at info level.
    pub fn start_program(
        program: &Path,
        name: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(program);
        command
            .current_dir(dir)
            .args(args)
            .envs(env.iter().copied());
        Self::start_command(command, name)
    }

    /// Starts `command` (its program, folder, arguments and environment set),
    /// logging at info level unless it sets `RUST_LOG`, without the cluster's
    /// token and address unless it sets them.
    pub fn start_command(mut command: Command, name: &str) -> Self {
        // Workers also log each stage plan they decode, so tests can see
        // where a plan ran.
        let defaults = [
            ("RUST_LOG", Some("info,rask::comm::worker_node=debug")),
            ("RASK_AUTH_TOKEN", None),
            ("RASK_SCHEDULER", None),
        ];
        for (key, value) in defaults {
            if command.get_envs().any(|(set, _)| set == key) {
                continue;
            }
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
            // Closed when the test process ends, however it ends: the
            // processes see it (`--watch-stdin`) and exit.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::clone(&log);
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closed = Arc::clone(&ended);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().expect("log lock").push(line);
            }
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        Self {
            child,
            ended,
            _stdin: stdin,
            log,
            name: name.to_string(),
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// The first logged line containing `pattern`, waiting for it.
    #[track_caller]
    pub fn wait_for(&self, pattern: &str) -> String {
        self.wait_for_nth(pattern, 1)
    }

    /// The `n`th logged line containing `pattern`, waiting for it.
    #[track_caller]
    pub fn wait_for_nth(&self, pattern: &str, n: usize) -> String {
        let start = Instant::now();
        loop {
            let ended = self.ended.load(std::sync::atomic::Ordering::SeqCst);
            if let Some(line) = self
                .log()
                .into_iter()
                .filter(|l| l.contains(pattern))
                .nth(n - 1)
            {
                return line;
            }
            if ended || start.elapsed() > PATIENCE {
                panic!(
                    "{} never logged {pattern:?} ({n} times); its log:\n{}",
                    self.name,
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many logged lines contain `pattern`.
    pub fn count(&self, pattern: &str) -> usize {
        self.log().iter().filter(|l| l.contains(pattern)).count()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit code, once it has exited.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child.try_wait().ok().flatten().and_then(|s| s.code())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rask scheduler` from `dir` on free ports, and its address once it listens.
pub fn scheduler(dir: &Path) -> (Process, String) {
    scheduler_with(dir, &[], &[])
}

/// `rask scheduler EXTRA…` from `dir` on free ports with `env`, and its
/// address once it listens.
pub fn scheduler_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Process, String) {
    start_scheduler(&rask_binary(), dir, extra, env)
}

/// `program scheduler EXTRA…` from `dir` on free ports (tests run side by
/// side), and its address once it listens.
fn start_scheduler(
    program: &Path,
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Process, String) {
    let mut args = vec![
        "scheduler",
        "--port",
        "0",
        "--dashboard-address",
        ":0",
        "--watch-stdin",
    ];
    args.extend(extra);
    let scheduler = Process::start_program(program, "scheduler", dir, &args, env);
    let line = scheduler.wait_for("scheduler at ");
    let address = line
        .rsplit("scheduler at ")
        .next()
        .map(|a| a.trim().to_string())
        .expect("an address");
    (scheduler, address)
}

/// A scheduler and a nanny with its workers.
pub struct ProcessCluster {
    /// `127.0.0.1:PORT`.
    pub address: String,
    pub scheduler: Process,
    pub workers: Process,
}

impl ProcessCluster {
    /// A scheduler on a free port and `nworkers` workers of `nthreads` threads,
    /// all registered; `extra` goes to both commands.
    pub fn start(dir: &Path, nworkers: usize, nthreads: usize, extra: &[&str]) -> Self {
        Self::start_with(dir, nworkers, nthreads, extra, &[], &[])
    }

    /// [`start`](Self::start), with `scheduler_extra` for the scheduler only
    /// and `worker_extra` for the workers only.
    pub fn start_with(
        dir: &Path,
        nworkers: usize,
        nthreads: usize,
        extra: &[&str],
        scheduler_extra: &[&str],
        worker_extra: &[&str],
    ) -> Self {
        let flags = [extra, scheduler_extra, worker_extra];
        Self::launch(&rask_binary(), dir, (nworkers, nthreads), flags, &[])
    }

    /// A scheduler and `nworkers` workers started by `program` (a custom worker
    /// binary built on `rask_cli::main_with`).
    pub fn start_program(program: &Path, dir: &Path, nworkers: usize, nthreads: usize) -> Self {
        Self::start_program_with_env(program, dir, nworkers, nthreads, &[])
    }

    /// [`start_program`](Self::start_program), with `worker_extra` for the
    /// workers only (e.g. `--memory-limit`).
    pub fn start_program_with(
        program: &Path,
        dir: &Path,
        (nworkers, nthreads): (usize, usize),
        worker_extra: &[&str],
    ) -> Self {
        Self::launch(
            program,
            dir,
            (nworkers, nthreads),
            [&[], &[], worker_extra],
            &[],
        )
    }

    /// [`start_program`](Self::start_program), both processes run with `env`.
    pub fn start_program_with_env(
        program: &Path,
        dir: &Path,
        nworkers: usize,
        nthreads: usize,
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(program, dir, (nworkers, nthreads), [&[], &[], &[]], env)
    }

    /// `program`'s scheduler and workers; `flags` go to both, to the
    /// scheduler, and to the workers.
    fn launch(
        program: &Path,
        dir: &Path,
        (nworkers, nthreads): (usize, usize),
        [extra, scheduler_extra, worker_extra]: [&[&str]; 3],
        env: &[(&str, &str)],
    ) -> Self {
        let flags: Vec<&str> = extra.iter().chain(scheduler_extra).copied().collect();
        let (scheduler, address) = start_scheduler(program, dir, &flags, env);
        let (n, t) = (nworkers.to_string(), nthreads.to_string());
        let mut args = vec![
            "worker",
            &address,
            "--nworkers",
            &n,
            "--nthreads",
            &t,
            "--watch-stdin",
        ];
        args.extend(extra);
        args.extend(worker_extra);
        let workers = Process::start_program(program, "workers", dir, &args, env);
        for i in 1..=nworkers {
            scheduler.wait_for_nth("registered:", i);
        }
        Self {
            address,
            scheduler,
            workers,
        }
    }

    /// The pids of the worker processes the nanny started, newest last.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers
            .log()
            .iter()
            .filter(|l| l.contains("nanny: started"))
            .filter_map(|l| l.rsplit("pid ").next()?.trim().parse().ok())
            .collect()
    }

    /// The addresses workers serve results on, as the scheduler logged them.
    pub fn worker_addresses(&self) -> Vec<String> {
        self.scheduler
            .log()
            .iter()
            .filter(|l| l.contains("registered:"))
            .filter_map(|l| {
                let after = l.split(" at ").nth(1)?;
                Some(after.split(',').next()?.trim().to_string())
            })
            .collect()
    }
}

/// The example worker binary `cli/examples/custom_worker.rs` (built on
/// `rask_cli::main_with`).
pub fn custom_worker_binary() -> std::path::PathBuf {
    example_binary("custom_worker")
}

/// The example program `name`, built beside the tests: `cargo test` and
/// nextest build the examples with the test targets.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-… → target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .expect("a target folder");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --workspace --examples`",
        path.display()
    );
    path
}

/// Sends `kill -9` to `pid`.
pub fn kill_9(pid: u32) {
    signal(pid, "-KILL");
}

/// Sends `signal` (`-STOP`, `-CONT`, `-KILL`) to `pid`, with the shell's own
/// `kill` (a clean machine may have no /bin/kill).
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill {signal} {pid}")])
        .status()
        .expect("sh runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// The field `name` (`VmRSS`, `VmHWM`) of process `pid`'s status, in KiB.
pub fn status_kib(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("process {pid} is gone: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}
