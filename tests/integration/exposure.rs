//! Secure by default: a port that would listen beyond this machine with
//! nothing checking who connects refuses to start, naming `--auth-token` and
//! `--insecure`; with a token, or `--insecure`, it starts. Listening on
//! `0.0.0.0` sends nothing anywhere; every connection here goes to 127.0.0.1.

use crate::processes::{Process, scheduler, scheduler_with};
use crate::remote::remote_query;
use crate::support::{rask, repository_root, run};

/// Asserts `args` exits with an error that names `port` and the way out.
#[track_caller]
fn refuses(args: &[&str], port: &str) {
    let refused = run(rask().args(args).env_remove("RASK_AUTH_TOKEN")).failure();
    for needed in [port, "0.0.0.0", "--auth-token", "--insecure"] {
        assert!(
            refused.stderr.contains(needed),
            "{args:?}: no {needed:?} in\n{}",
            refused.stderr
        );
    }
}

#[test]
fn every_port_refuses_to_listen_beyond_loopback_unprotected() {
    refuses(
        &[
            "scheduler",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--dashboard-address",
            "127.0.0.1:0",
            "--watch-stdin",
        ],
        "the scheduler",
    );
    refuses(
        &[
            "scheduler",
            "--port",
            "0",
            "--dashboard-address",
            "0.0.0.0:0",
            "--watch-stdin",
        ],
        "the dashboard",
    );
    refuses(
        &[
            "serve",
            "--host",
            "0.0.0.0",
            "--pg-port",
            "0",
            "--watch-stdin",
        ],
        "the PostgreSQL port",
    );
    // A worker of a scheduler on loopback, told to listen on every interface.
    let root = repository_root();
    let (_scheduler, address) = scheduler(&root);
    let mut worker = Process::start(
        "worker",
        &root,
        &["worker", &address, "--host", "0.0.0.0", "--watch-stdin"],
        &[],
    );
    worker.wait_for("not restarting it");
    let start = std::time::Instant::now();
    while worker.is_running() {
        assert!(start.elapsed().as_secs() < 30, "the nanny exits");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(worker.exit_code(), Some(1));
    assert_eq!(worker.count("nanny: started"), 1, "{:?}", worker.log());
    assert!(worker.count("--insecure") > 0, "{:?}", worker.log());
}

#[test]
fn with_a_token_or_insecure_a_cluster_listens_on_every_interface() {
    let root = repository_root();
    for (flags, env) in [
        (vec!["--insecure"], vec![]),
        (vec![], vec![("RASK_AUTH_TOKEN", "everywhere")]),
    ] {
        // Every interface; others are given 127.0.0.1.
        let everywhere = ["--host", "0.0.0.0", "--contact-address", "127.0.0.1"];
        let extra: Vec<&str> = everywhere.iter().chain(&flags).copied().collect();
        let (scheduler, address) = scheduler_with(&root, &extra, &env);
        let mut worker_args = vec!["worker", address.as_str(), "--nthreads", "1"];
        worker_args.extend(everywhere.iter().chain(&flags).chain(&["--watch-stdin"]));
        let _worker = Process::start("worker", &root, &worker_args, &env);
        scheduler.wait_for("registered:");
        let token: Vec<&str> = env.iter().flat_map(|(_, t)| ["--auth-token", *t]).collect();
        let answer = remote_query(&address, "SELECT 6 * 7 AS answer", &token).success();
        assert_eq!(answer.stdout, "answer\n42\n");
    }
}
