//! `rask scheduler` and `rask worker`: a cluster of processes.
//!
//! `rask worker` is a nanny: it starts each worker as a child process
//! (`rask worker-process`, hidden) and starts it again if it dies, as Dask's
//! nanny does. A worker exits when its nanny goes away (its standard input
//! closes), so no worker outlives the command that started it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rask::comm::{
    SchedulerNode, SchedulerOptions, TOKEN_VARIABLE, WorkerDeath, WorkerOptions, report_death,
    run_worker,
};
use tokio::process::Command;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::args::{RunArgs, SchedulerArgs, WorkerArgs, WorkerProcessArgs, WorkerSettings};

/// The environment variable that tells a worker process its nanny's pid.
const NANNY_VARIABLE: &str = "RASK_NANNY_PID";

/// Runs a scheduler until Ctrl-C or SIGTERM.
pub fn scheduler(runtime: &Runtime, args: &SchedulerArgs, run: &RunArgs) -> bool {
    let options = SchedulerOptions {
        host: args.host.clone(),
        port: args.port,
        dashboard: Some(args.dashboard_address.clone()),
        security: run.security.security(),
        heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout.max(0.1)),
    };
    let watch_stdin = args.watch_stdin;
    let (host, pg_port) = (args.host.clone(), args.pg_port);
    let security = run.security.security();
    let token = security.token.clone();
    let result = runtime.block_on(async move {
        let node = SchedulerNode::start(options).await?;
        let _postgres = match pg_port {
            Some(port) => {
                let address = node.address().to_string();
                let open: rask::postgres::OpenSession = std::sync::Arc::new(move || {
                    let (address, security) = (address.clone(), security.clone());
                    Box::pin(async move {
                        rask::Client::connect_with_registry(
                            &address,
                            security,
                            rask::udf::Registry::default(),
                        )
                        .await
                    })
                });
                Some(serve_postgres(&host, port, open, token).await?)
            }
            None => None,
        };
        node.run_until(stop(watch_stdin)).await?;
        tracing::info!("scheduler stopped");
        Ok::<_, rask::Error>(())
    });
    report(result)
}

/// Serves the PostgreSQL protocol on `host:port` with sessions from `open`,
/// until the returned task is dropped (aborted).
pub async fn serve_postgres(
    host: &str,
    port: u16,
    open: rask::postgres::OpenSession,
    token: Option<String>,
) -> rask::Result<AbortOnDrop> {
    let listener = rask::postgres::bind(host, port).await?;
    if let Ok(address) = listener.local_addr() {
        let login = match token {
            Some(_) => "the cluster's token as password",
            None => "trusted",
        };
        tracing::info!("postgres wire protocol at {address} ({login})");
    }
    let served = rask::postgres::serve(listener, open, token);
    Ok(AbortOnDrop(tokio::spawn(served)))
}

/// Aborts a spawned task when dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `rask serve`: an embedded local cluster serving PostgreSQL clients until
/// Ctrl-C or SIGTERM (or standard input closing, with `--watch-stdin`).
pub fn serve(
    runtime: &Runtime,
    args: &crate::args::ServeArgs,
    run: &RunArgs,
    client: rask::Client,
) -> bool {
    let Some(cluster) = client.local_cluster().cloned() else {
        tracing::error!(
            "rask serve runs an embedded cluster; use rask scheduler --pg-port for a cluster of processes"
        );
        return false;
    };
    let open: rask::postgres::OpenSession = std::sync::Arc::new(move || {
        let cluster = std::sync::Arc::clone(&cluster);
        Box::pin(async move { cluster.client() })
    });
    let watch_stdin = args.watch_stdin;
    let result = runtime.block_on(async move {
        let token = run.security.security().token;
        let _served = serve_postgres(&args.host, args.pg_port, open, token).await?;
        if let Some(link) = client.dashboard_link() {
            tracing::info!("dashboard at {link}");
        }
        stop(watch_stdin).await;
        tracing::info!("stopped serving");
        Ok::<_, rask::Error>(())
    });
    report(result)
}

/// Starts `--nworkers` workers, each under a nanny, until Ctrl-C or SIGTERM.
pub fn nanny(runtime: &Runtime, args: &WorkerArgs, run: &RunArgs) -> bool {
    let nworkers = args.nworkers.max(1);
    let settings = WorkerSettings {
        nthreads: Some(args.process.nthreads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / nworkers).max(1)
        })),
        ..args.process.clone()
    };
    let memory = run.memory_limit.map(|m| m.per_worker(nworkers));
    let security = run.security.clone();
    runtime.block_on(async move {
        let (stopping, stopped) = watch::channel(false);
        let mut nannies = Vec::new();
        for i in 0..nworkers {
            let name = match (&settings.name, nworkers) {
                (Some(name), 1) => Some(name.clone()),
                (Some(name), _) => Some(format!("{name}-{i}")),
                (None, _) => None,
            };
            let mut command = vec!["worker-process".to_string(), args.scheduler.clone()];
            let nthreads = settings.nthreads.unwrap_or(1);
            command.extend(["--nthreads".into(), nthreads.to_string()]);
            command.extend(["--host".into(), settings.host.clone()]);
            command.extend(["--heartbeat".into(), settings.heartbeat.to_string()]);
            if let Some(name) = &name {
                command.extend(["--name".into(), name.clone()]);
            }
            if let Some(memory) = memory {
                command.extend(["--memory-limit".into(), memory.to_string()]);
            }
            if let Some(dir) = &settings.local_directory {
                command.extend(["--local-directory".into(), dir.display().to_string()]);
            }
            for (flag, path) in [
                ("--tls-cert", &security.tls_cert),
                ("--tls-key", &security.tls_key),
                ("--tls-ca", &security.tls_ca),
            ] {
                if let Some(path) = path {
                    command.extend([flag.into(), path.display().to_string()]);
                }
            }
            command.push("--watch-stdin".into());
            let label = name.unwrap_or_else(|| format!("worker {i}"));
            nannies.push(tokio::spawn(watch_worker(
                Watched {
                    label,
                    command,
                    scheduler: args.scheduler.clone(),
                    token: security.auth_token.clone(),
                    security: security.security(),
                },
                stopped.clone(),
            )));
        }
        stop(args.watch_stdin).await;
        tracing::info!("closing the workers");
        let _ = stopping.send(true);
        for nanny in nannies {
            let _ = nanny.await;
        }
        true
    })
}

/// A worker process a nanny keeps running.
struct Watched {
    /// How the nanny's log names it.
    label: String,
    /// Its arguments.
    command: Vec<String>,
    /// The scheduler, told when the worker dies.
    scheduler: String,
    /// The cluster's token, passed to the worker by environment.
    token: Option<String>,
    /// How the nanny reaches the scheduler.
    security: rask::comm::Security,
}

/// Keeps one worker process running until `stop` turns true.
async fn watch_worker(watched: Watched, mut stop: watch::Receiver<bool>) {
    let Watched {
        label,
        command,
        scheduler,
        token,
        security,
    } = watched;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::error!("nanny: cannot find the rask executable: {e}");
            return;
        }
    };
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut child = Command::new(&exe);
        child
            .args(&command)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = &token {
            // The token goes by environment, not argument: `ps` shows arguments.
            child.env(TOKEN_VARIABLE, token);
        }
        child.env(NANNY_VARIABLE, std::process::id().to_string());
        let mut child = match child.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::error!("nanny: cannot start {label}: {e}");
                return;
            }
        };
        let pid = child.id().unwrap_or_default();
        // Held until the worker should leave (`wait` would close it at once).
        let stdin = child.stdin.take();
        let tail = child.stderr.take().map(relay);
        tracing::info!("nanny: started {label}, pid {pid}");
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                if *stop.borrow() {
                    return;
                }
                match status {
                    Ok(status) if status.success() => {
                        tracing::info!("nanny: {label} (pid {pid}) exited");
                        return;
                    }
                    Ok(status) => {
                        let last = match tail {
                            Some(tail) => tail.await.unwrap_or_default(),
                            None => Vec::new(),
                        };
                        tracing::warn!(
                            "nanny: {label} (pid {pid}) died ({status}); restarting in {backoff:?}; its last log lines:\n{}",
                            last.join("\n")
                        );
                        let death = WorkerDeath { pid, status: status.to_string(), log: last };
                        if let Err(e) = report_death(&scheduler, &security, &death).await {
                            tracing::warn!("nanny: cannot tell the scheduler that {label} died: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("nanny: lost {label} (pid {pid}): {e}; restarting"),
                }
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(500);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            _ = stop.changed() => {
                // Closing its standard input asks the worker to leave.
                drop(stdin);
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    tracing::warn!("nanny: {label} (pid {pid}) did not exit: killing it");
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}

/// Copies a worker's log to ours as it comes; resolves to its last lines once
/// the worker's standard error closes (it exited).
fn relay(stderr: tokio::process::ChildStderr) -> tokio::task::JoinHandle<Vec<String>> {
    use tokio::io::AsyncBufReadExt;
    const KEPT: usize = 20;
    tokio::spawn(async move {
        let mut last = std::collections::VecDeque::with_capacity(KEPT);
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
            if last.len() == KEPT {
                last.pop_front();
            }
            last.push_back(line);
        }
        last.into()
    })
}

/// One worker process, until the scheduler closes it, its nanny goes, or a signal.
pub fn worker_process(
    runtime: &Runtime,
    args: &WorkerProcessArgs,
    run: &RunArgs,
    registry: rask::udf::Registry,
) -> bool {
    let settings = &args.process;
    let nthreads = settings
        .nthreads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let local_directory = settings
        .local_directory
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("rask-worker-space"));
    if let Err(e) = std::fs::create_dir_all(&local_directory) {
        tracing::error!("cannot create {}: {e}", local_directory.display());
        return false;
    }
    let options = WorkerOptions {
        scheduler: args.scheduler.clone(),
        host: settings.host.clone(),
        name: settings.name.clone(),
        nthreads,
        memory_limit: run.memory_limit.map(|m| m.per_worker(1)),
        local_directory,
        security: run.security.security(),
        heartbeat: Duration::from_secs_f64(settings.heartbeat.max(0.05)),
        registry,
        nanny: std::env::var(NANNY_VARIABLE)
            .ok()
            .and_then(|pid| pid.parse().ok()),
    };
    let watch_stdin = args.watch_stdin;
    let result = runtime.block_on(run_worker(options, stop(watch_stdin)));
    report(result)
}

/// Resolves when standard input closes, if `watch`; never otherwise.
async fn stdin_closed(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    let (closed, rx) = tokio::sync::oneshot::channel::<()>();
    // A plain thread: a blocking read must not hold up the runtime's shutdown.
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buffer = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buffer), Ok(n) if n > 0) {}
        let _ = closed.send(());
    });
    let _ = rx.await;
}

/// Ctrl-C, SIGTERM, or (with `watch_stdin`) standard input closing: the
/// parent that started us is gone.
async fn stop(watch_stdin: bool) {
    tokio::select! {
        () = stop_signal() => {}
        () = stdin_closed(watch_stdin) => tracing::info!("standard input closed: leaving"),
    }
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn report(result: rask::Result<()>) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            false
        }
    }
}
