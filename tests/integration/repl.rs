//! The shell (`rask`, `rask sql`) driven through a pipe, as scripts use it.

use crate::support::{rask, run_with_input};

#[test]
fn statements_from_a_pipe() {
    let out = run_with_input(&mut rask(), "select 1 as one;").success();
    assert!(out.stdout.contains("| one |"), "{}", out.stdout);
    assert!(out.stdout.contains("1 row × 1 column"));
}

#[test]
fn statements_span_lines_until_the_semicolon() {
    let input = "SELECT\n  40 + 2\n  AS answer\n;\nSELECT 'a;b' AS s;\n";
    let out = run_with_input(rask().arg("sql").args(["--format", "csv"]), input).success();
    assert_eq!(out.stdout, "answer\n42\ns\na;b\n");
}

#[test]
fn backslash_commands() {
    let input = "\
CREATE TABLE pets (name VARCHAR, legs INT) AS VALUES ('cat', 4), ('bird', 2);
\\d
\\d pets
\\format csv
SELECT name FROM pets ORDER BY legs;
\\timing
SELECT count(*) AS n FROM pets;
\\?
\\q
SELECT 'never reached' AS x;
";
    let out = run_with_input(&mut rask(), input).success();
    // \d lists the table, \d pets its columns and types.
    assert!(out.stdout.contains("| public | pets "), "{}", out.stdout);
    assert!(out.stdout.contains("| name   | Utf8"), "{}", out.stdout);
    assert!(out.stdout.contains("| legs   | Int32"), "{}", out.stdout);
    // \format csv switched the output.
    assert!(
        out.stdout.contains("format is csv\nname\nbird\ncat\n"),
        "{}",
        out.stdout
    );
    // \timing printed a timing for the next statement.
    assert!(
        out.stdout.contains("timing is on\nn\n2\n"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("1 row in "), "{}", out.stderr);
    assert!(out.stdout.contains("\\d NAME"), "help lists the commands");
    // \q quit before the last statement.
    assert!(!out.stdout.contains("never reached"));
}

/// `\x` shows each row as a record; `\dt` lists tables as `\d` does.
#[test]
fn backslash_x_expands_rows_and_dt_lists_tables() {
    let input = "CREATE TABLE pets (name VARCHAR, legs INT) AS VALUES ('cat', 4);\n\\dt\n\\x\nSELECT name, legs FROM pets;\n\\x off\nSELECT legs FROM pets;\n";
    let out = run_with_input(&mut rask(), input).success();
    assert!(out.stdout.contains("| public | pets "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("expanded display is on\n-[ RECORD 1 ]-\nname | cat\nlegs | 4\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("expanded display is off\n+------+"),
        "{}",
        out.stdout
    );
}

/// `\set NAME VALUE` fills `:NAME` in later statements, as psql does.
#[test]
fn backslash_set_fills_variables() {
    let input = "\\set n 41\n\\set who O'Brien\n\\set\n\\format csv\nSELECT :n + 1 AS m, :'who' AS w, ':n' AS s;\n";
    let out = run_with_input(&mut rask(), input).success();
    assert!(
        out.stdout.contains("n = '41'\nwho = 'O'Brien'\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("m,w,s\n42,O'Brien,:n\n"),
        "{}",
        out.stdout
    );
}

/// `\status` shows the cluster; `\df` the user functions and their workers.
#[test]
fn backslash_status_and_df() {
    let out = run_with_input(&mut rask(), "\\status\n\\df\n").success();
    assert!(
        out.stdout.contains("Scheduler: in-process"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Dashboard: http://127.0.0.1:"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Workers: 1  Threads: 2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("no user functions"), "{}", out.stdout);
    // The custom worker binary carries the walkthrough's functions, on every worker.
    let custom = crate::processes::custom_worker_binary();
    let mut shell = std::process::Command::new(custom);
    shell.current_dir(crate::support::repository_root());
    let out = run_with_input(&mut shell, "\\df\n").success();
    assert!(out.stdout.contains("square"), "{}", out.stdout);
    assert!(out.stdout.contains("every worker (1)"), "{}", out.stdout);
}

/// `\o FILE` sends results to a file until `\o` alone.
#[test]
fn backslash_o_sends_results_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let input = format!(
        "\\format csv\n\\o {}\nSELECT 1 AS one;\nSELECT 2 AS two;\n\\o\nSELECT 3 AS three;\n\\o /no/such/folder/x\n",
        path.display()
    );
    let out = run_with_input(&mut rask(), &input).failure();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n1\ntwo\n2\n");
    assert!(out.stdout.contains("three\n3\n"), "{}", out.stdout);
    assert!(!out.stdout.contains("one\n1"), "{}", out.stdout);
    assert!(
        out.stderr.contains("cannot write /no/such/folder/x"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_error_keeps_the_session_and_sets_the_exit_code() {
    let input = "SELECT 1 AS a;\nSELECT nope;\n\\d nosuchtable\n\\bogus\nSELECT 2 AS b;\n";
    let out = run_with_input(rask().args(["--format", "csv"]), input).failure();
    assert!(
        out.stdout.contains("a\n1\n") && out.stdout.contains("b\n2\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("error: <stdin>:2:8: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("no table named 'nosuchtable'"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("unknown command \\bogus"),
        "{}",
        out.stderr
    );
}

#[test]
fn include_runs_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("part.sql");
    std::fs::write(
        &file,
        "CREATE TABLE inc AS VALUES (5);\nSELECT column1 * 2 AS doubled FROM inc;\n",
    )
    .unwrap();
    let input = format!(
        "\\format csv\n\\i {}\nSELECT count(*) AS c FROM inc;\n",
        file.display()
    );
    let out = run_with_input(&mut rask(), &input).success();
    assert!(out.stdout.contains("doubled\n10\n"), "{}", out.stdout);
    assert!(out.stdout.contains("c\n1\n"), "{}", out.stdout);
}

#[test]
fn a_last_statement_without_semicolon_still_runs() {
    let out = run_with_input(rask().args(["--format", "csv"]), "SELECT 7 AS seven").success();
    assert_eq!(out.stdout, "seven\n7\n");
}

/// The shell in a real terminal (tmux): a running query shows its progress, and
/// Ctrl-C stops it, not the session.
#[test]
fn a_running_query_shows_progress_and_ctrl_c_cancels_it_keeping_the_session() {
    use std::process::Command;
    use std::time::{Duration, Instant};

    let socket = format!("rask-test-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()
            .expect("tmux runs (the shell tests need it: apt-get install tmux)")
    };
    struct Session<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Session<'_> {
        fn drop(&mut self) {
            (self.0)(&["kill-server"]);
        }
    }
    let home = tempfile::tempdir().unwrap();
    let command = format!(
        "cd {} && HOME={} {} --threads 1",
        crate::support::repository_root().display(),
        home.path().display(),
        env!("CARGO_BIN_EXE_rask")
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        "shell",
        "-x",
        "150",
        "-y",
        "40",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");
    let _session = Session(&tmux);
    let screen = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-t", "shell", "-p"]).stdout).into_owned()
    };
    let wait_for = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let shown = screen();
            if shown.contains(text) {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {text:?}, the screen shows:\n{shown}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Waits until the shell reads a new line: keys typed while a statement
    // runs would reach the terminal, not the line editor (Tab included).
    let at_prompt = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while screen().lines().rev().find(|l| !l.trim().is_empty()) != Some("rask>") {
            assert!(Instant::now() < deadline, "no prompt:\n{}", screen());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The banner shows the embedded cluster and its dashboard's link.
    let banner = wait_for("rask>");
    assert!(banner.contains("Scheduler: in-process"), "{banner}");
    assert!(banner.contains("Dashboard: http://127.0.0.1:"), "{banner}");
    // Ten years of seconds: far longer than the test waits.
    tmux(&[
        "send-keys",
        "-t",
        "shell",
        "SELECT count(DISTINCT x) FROM timeseries('2000-01-01', '2010-01-01')\\;",
        "Enter",
    ]);
    // On a terminal, a running query draws its progress bar.
    let shown = wait_for(" tasks · ");
    assert!(shown.contains("timeseries"), "{shown}");
    tmux(&["send-keys", "-t", "shell", "C-c"]);
    wait_for("query cancelled");
    tmux(&[
        "send-keys",
        "-t",
        "shell",
        "SELECT 40 + 2 AS answer\\;",
        "Enter",
    ]);
    let shown = wait_for("1 row × 1 column");
    assert!(shown.contains("|     42 |"), "{shown}");

    // Tab completes keywords (in the case typed) and the session's tables.
    tmux(&[
        "send-keys",
        "-t",
        "shell",
        "CREATE TABLE zoo_pets AS VALUES (4)\\;",
        "Enter",
    ]);
    wait_for("zoo_pets AS VALUES (4);");
    at_prompt();
    tmux(&["send-keys", "-t", "shell", "sel", "Tab"]);
    tmux(&[
        "send-keys",
        "-t",
        "shell",
        " count(*) AS pets_counted FROM zoo",
        "Tab",
    ]);
    tmux(&["send-keys", "-t", "shell", "\\;", "Enter"]);
    // The completed line ran: its result is on the screen below it.
    let shown = wait_for("| pets_counted |");
    assert!(
        shown.contains("select count(*) AS pets_counted FROM zoo_pets;"),
        "{shown}"
    );
    // And backslash commands.
    at_prompt();
    tmux(&["send-keys", "-t", "shell", "\\stat", "Tab", "Enter"]);
    // \status prints the cluster a second time, under the banner's.
    let deadline = Instant::now() + Duration::from_secs(60);
    while screen().matches("Scheduler: in-process").count() < 2 {
        assert!(Instant::now() < deadline, "no \\status:\n{}", screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(screen().contains("rask> \\status"), "{}", screen());

    // Leaving keeps the lines typed in ~/.rask_history, for the next session.
    tmux(&["send-keys", "-t", "shell", "\\q", "Enter"]);
    // Polled until written: the file exists a moment before its lines do.
    let history = home.path().join(".rask_history");
    let deadline = Instant::now() + Duration::from_secs(30);
    let saved = loop {
        let saved = std::fs::read_to_string(&history).unwrap_or_default();
        if saved.contains("SELECT 40 + 2 AS answer;") {
            break saved;
        }
        assert!(
            Instant::now() < deadline,
            "no history with the first query in {} after \\q: {saved:?}",
            history.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        saved.contains("timeseries('2000-01-01', '2010-01-01')"),
        "{saved}"
    );
}
