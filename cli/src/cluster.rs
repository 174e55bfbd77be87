//! `rask scheduler` and `rask worker`: a cluster of processes.
//!
//! `rask worker` is a nanny: it starts each worker as a child process
//! (`rask worker-process`, hidden) and starts it again if it dies, as Dask's
//! nanny does. A worker exits when its nanny goes away (its standard input
//! closes), so no worker outlives the command that started it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rask::internals::comm::{
    SchedulerNode, SchedulerOptions, WorkerDeath, WorkerOptions, report_death, run_worker,
};
use rask::internals::net::TOKEN_VARIABLE;
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
        contact_address: args.contact_address.clone(),
    };
    let watch_stdin = args.watch_stdin;
    let (host, pg_port) = (args.host.clone(), args.pg_port);
    let security = run.security.security();
    let result = runtime.block_on(async move {
        let node = SchedulerNode::start(options).await?;
        // SQL sessions, for thin clients and PostgreSQL's, are clients of
        // this scheduler in its own process.
        let address = node.address().to_string();
        let session_security = security.clone();
        let client = move || {
            let (address, security) = (address.clone(), session_security.clone());
            async move {
                rask::Client::connect_with_registry(
                    &address,
                    security,
                    rask::udf::Registry::default(),
                )
                .await
            }
        };
        let sessions = client.clone();
        node.serve_sql(std::sync::Arc::new(move || {
            let session = sessions();
            Box::pin(async move {
                Ok(Box::new(session.await?) as Box<dyn rask::internals::comm::SqlSession>)
            })
        }));
        let _postgres = match pg_port {
            Some(port) => {
                let open: rask::internals::postgres::OpenSession =
                    std::sync::Arc::new(move || Box::pin(client()));
                Some(serve_postgres(&host, port, &args.pg, &security, open).await?)
            }
            None => None,
        };
        node.run_until(async move {
            stop(watch_stdin).await;
        })
        .await?;
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
    pg: &crate::args::PgUsers,
    security: &rask::internals::net::Security,
    open: rask::internals::postgres::OpenSession,
) -> rask::Result<AbortOnDrop> {
    let logins = pg.logins(security.token.as_deref())?;
    let server = rask::internals::postgres::Server::bind(
        host,
        port,
        pg.max_connections,
        security,
        logins,
        pg.access()?,
    )
    .await?;
    tracing::info!(
        "postgres wire protocol at {} ({})",
        server.address()?,
        server.describe()
    );
    Ok(AbortOnDrop(tokio::spawn(server.serve(open))))
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
    let open: rask::internals::postgres::OpenSession = std::sync::Arc::new(move || {
        let cluster = std::sync::Arc::clone(&cluster);
        Box::pin(async move { cluster.client() })
    });
    let watch_stdin = args.watch_stdin;
    let result = runtime.block_on(async move {
        let security = run.security.security();
        let _served = serve_postgres(&args.host, args.pg_port, &args.pg, &security, open).await?;
        if let Some(link) = client.dashboard_link() {
            tracing::info!("dashboard at {link}");
        }
        stop(watch_stdin).await;
        tracing::info!("stopped serving");
        Ok::<_, rask::Error>(())
    });
    report(result)
}

/// The exit code of a worker process refused by its scheduler for good (a
/// wrong token, another protocol version): its nanny does not restart it.
pub const EXIT_REFUSED: u8 = 3;

/// The exit code of a worker process that would listen beyond loopback with
/// neither token nor TLS (see `--insecure`): restarting it would not help.
pub const EXIT_EXPOSED: u8 = 5;

/// The exit code of a worker process that gave up reaching its scheduler
/// (`--death-timeout`): its nanny does not restart it either.
pub const EXIT_GAVE_UP: u8 = 4;

/// How long a nanny waits for a retiring worker to move its results and exit.
const RETIRE_WAIT: Duration = Duration::from_secs(150);

/// Starts `--nworkers` workers, each under a nanny, until Ctrl-C or SIGTERM
/// (which retire the workers gracefully) or standard input closing (with
/// `--watch-stdin`: they leave at once). Fails when a worker is refused for good.
pub fn nanny(runtime: &Runtime, args: &WorkerArgs, run: &RunArgs) -> bool {
    let nworkers = args.nworkers.max(1);
    let settings = WorkerSettings {
        nthreads: Some(args.process.nthreads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / nworkers).max(1)
        })),
        ..args.process.clone()
    };
    // Each worker process is given its share, 0 for none.
    let memory = run.memory_limit.per_worker(nworkers).unwrap_or(0);
    let security = run.security.clone();
    runtime.block_on(async move {
        let (stopping, stopped) = watch::channel(None::<Stop>);
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
            if let Some(host) = &settings.host {
                command.extend(["--host".into(), host.clone()]);
            }
            if let Some(port) = settings.worker_port {
                let port = port.saturating_add(i as u16);
                command.extend(["--worker-port".into(), port.to_string()]);
            }
            if let Some(contact) = &settings.contact_address {
                command.extend(["--contact-address".into(), contact.clone()]);
            }
            command.extend(["--death-timeout".into(), settings.death_timeout.to_string()]);
            command.extend(["--heartbeat".into(), settings.heartbeat.to_string()]);
            if let Some(name) = &name {
                command.extend(["--name".into(), name.clone()]);
            }
            command.extend(["--memory-limit".into(), memory.to_string()]);
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
            if security.insecure {
                command.push("--insecure".into());
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
        drop(stopped);
        // Every worker ended on its own (retired, refused), or we are told to stop.
        let all_ended = futures::future::join_all(nannies);
        tokio::pin!(all_ended);
        let outcomes = tokio::select! {
            outcomes = &mut all_ended => outcomes,
            how = stop(args.watch_stdin) => {
                match how {
                    Stop::Signal => tracing::info!("retiring the workers"),
                    Stop::StdinClosed => tracing::info!("closing the workers"),
                }
                let _ = stopping.send(Some(how));
                all_ended.await
            }
        };
        outcomes.into_iter().all(|ok| ok.unwrap_or(false))
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
    security: rask::internals::net::Security,
}

/// Keeps one worker process running until it exits by itself (it retired:
/// `true`; it was refused for good: `false`) or `stop` says how to end it.
async fn watch_worker(watched: Watched, mut stop: watch::Receiver<Option<Stop>>) -> bool {
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
            return false;
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
        child.envs(crate::allocator::worker_environment());
        let mut child = match child.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::error!("nanny: cannot start {label}: {e}");
                return false;
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
                match status {
                    Ok(status) if status.success() => {
                        tracing::info!("nanny: {label} (pid {pid}) exited");
                        return true;
                    }
                    Ok(status) if status.code() == Some(i32::from(EXIT_REFUSED)) => {
                        tracing::error!(
                            "nanny: {label} (pid {pid}) was refused by the scheduler at {scheduler} \
                             (see its last lines above); not restarting it"
                        );
                        return false;
                    }
                    Ok(status) if status.code() == Some(i32::from(EXIT_EXPOSED)) => {
                        tracing::error!(
                            "nanny: {label} (pid {pid}) would listen beyond this machine unprotected \
                             (see its last lines above); not restarting it"
                        );
                        return false;
                    }
                    Ok(status) if status.code() == Some(i32::from(EXIT_GAVE_UP)) => {
                        tracing::error!(
                            "nanny: {label} (pid {pid}) gave up reaching the scheduler at {scheduler} \
                             (--death-timeout); not restarting it"
                        );
                        return false;
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
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return true,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            _ = stop.changed() => {
                let how = *stop.borrow();
                let wait = match how {
                    Some(Stop::Signal) => {
                        // SIGTERM asks the worker to retire: its results move first.
                        terminate(pid);
                        RETIRE_WAIT
                    }
                    // Closing its standard input asks the worker to leave now.
                    _ => Duration::from_secs(5),
                };
                let status = tokio::time::timeout(wait, child.wait()).await;
                drop(stdin);
                match status {
                    Ok(Ok(status)) => tracing::info!("nanny: {label} (pid {pid}) ended: {status}"),
                    _ => {
                        tracing::warn!("nanny: {label} (pid {pid}) did not exit: killing it");
                        let _ = child.kill().await;
                    }
                }
                return true;
            }
        }
    }
}

/// Sends SIGTERM to `pid`.
fn terminate(pid: u32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid we started and a valid signal number.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
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

/// One worker process, until the scheduler closes it (after SIGTERM: once it
/// retired) or its nanny goes; exits with [`EXIT_REFUSED`] when the scheduler
/// refuses it for good.
pub fn worker_process(
    runtime: &Runtime,
    args: &WorkerProcessArgs,
    run: &RunArgs,
    registry: rask::udf::Registry,
) -> std::process::ExitCode {
    let settings = &args.process;
    let nthreads = settings
        .nthreads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let parent = settings
        .local_directory
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    // Its own folder in there, mode 0700, removed when it exits (and by the
    // next worker, if it is killed).
    let space = match rask::internals::worker::WorkSpace::create(&parent) {
        Ok(space) => space,
        Err(e) => {
            tracing::error!("cannot make a folder in {}: {e}", parent.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    let local_directory = space.path().to_path_buf();
    let host = settings.host.clone().unwrap_or_else(|| {
        rask::internals::net::address::default_worker_host(&args.scheduler).into()
    });
    let options = WorkerOptions {
        scheduler: args.scheduler.clone(),
        host,
        port: settings.worker_port.unwrap_or(0),
        contact_address: settings.contact_address.clone(),
        name: settings.name.clone(),
        nthreads,
        memory_limit: run.memory_limit.per_worker(1),
        local_directory,
        security: run.security.security(),
        heartbeat: Duration::from_secs_f64(settings.heartbeat.max(0.05)),
        death_timeout: Duration::from_secs_f64(settings.death_timeout.max(0.0)),
        registry,
        nanny: std::env::var(NANNY_VARIABLE)
            .ok()
            .and_then(|pid| pid.parse().ok()),
    };
    let watch_stdin = args.watch_stdin;
    let leave = async move {
        stdin_closed(watch_stdin).await;
        tracing::info!("standard input closed: leaving");
    };
    let result = runtime.block_on(run_worker(options, stop_signal(), leave));
    drop(space);
    match result {
        Err(e @ rask::Error::Refused { .. }) => {
            tracing::error!("{e}");
            std::process::ExitCode::from(EXIT_REFUSED)
        }
        Err(e @ rask::Error::Connect { .. }) => {
            tracing::error!("{e}");
            std::process::ExitCode::from(EXIT_GAVE_UP)
        }
        Err(e @ rask::Error::Exposed { .. }) => {
            tracing::error!("{e}");
            std::process::ExitCode::from(EXIT_EXPOSED)
        }
        other => crate::exit(report(other)),
    }
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

/// Why a process stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// Standard input closed: the parent that started us is gone.
    StdinClosed,
}

/// Ctrl-C, SIGTERM, or (with `watch_stdin`) standard input closing: the
/// parent that started us is gone.
async fn stop(watch_stdin: bool) -> Stop {
    tokio::select! {
        () = stop_signal() => Stop::Signal,
        () = stdin_closed(watch_stdin) => {
            tracing::info!("standard input closed: leaving");
            Stop::StdinClosed
        }
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
