//! `rask query`: batch jobs, output formats and errors, through the real binary.

use crate::support::{csv_rows, rask, run, run_with_input};

const GROUPBY: &str = "SELECT name, max(x), avg(y) FROM timeseries() GROUP BY name ORDER BY name";

#[test]
fn groupby_over_timeseries_as_csv() {
    let out = run(rask().args(["query", "--format", "csv", "-c", GROUPBY])).success();
    let rows = csv_rows(&out.stdout);
    assert_eq!(
        rows[0],
        ["name", "max(timeseries().x)", "avg(timeseries().y)"]
    );
    assert_eq!(rows.len(), 27, "{}", out.stdout);
    assert_eq!(rows[1][0], "Alice");
    assert_eq!(rows[26][0], "Zelda");
    for row in &rows[1..] {
        let max_x: f64 = row[1].parse().unwrap();
        let avg_y: f64 = row[2].parse().unwrap();
        assert!(
            max_x > 0.999 && max_x < 1.0,
            "max(x) {max_x} for {}",
            row[0]
        );
        assert!(avg_y.abs() < 0.02, "avg(y) {avg_y} for {}", row[0]);
    }
}

#[test]
fn the_readme_walkthrough_job_runs() {
    let out = run(rask().args(["query", "-f", "sample_data/walkthrough.sql"])).success();
    // The groupby head, the x2 head, the whole map_partitions result (elided) and the names.
    assert!(out.stdout.contains("| Alice "), "{}", out.stdout);
    assert!(out.stdout.contains("5 rows × 3 columns"));
    assert!(out.stdout.contains("5 rows × 6 columns"));
    assert!(out.stdout.contains("2592000 rows × 8 columns"));
    assert!(out.stdout.contains("26 rows × 1 column"));
    assert!(
        out.stdout.contains("| ... "),
        "the big result is elided:\n{}",
        out.stdout
    );
    // The first rows are the first seconds of January 2000; the eighth is
    // id 1002, Bob (the default seed makes the same rows every time).
    assert!(
        out.stdout.contains("| 2000-01-01T00:00:07 | 1002 | Bob ")
            && out.stdout.contains("1002-Bob"),
        "big_string values:\n{}",
        out.stdout
    );
}

#[test]
fn maxrows_bounds_the_table_and_the_footer_counts_everything() {
    let sql = "SELECT * FROM timeseries('2000-01-01', '2000-01-02', '1s')";
    let out = run(rask().args(["query", "--maxrows", "6", "-c", sql])).success();
    let data_rows = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("| 2000-01-01"))
        .count();
    assert_eq!(data_rows, 6, "{}", out.stdout);
    assert!(out.stdout.contains("| 2000-01-01T00:00:00 "));
    assert!(out.stdout.contains("| 2000-01-01T23:59:59 "));
    assert!(out.stdout.trim_end().ends_with("86400 rows × 5 columns"));

    let all = run(rask().args([
        "query",
        "--maxrows",
        "all",
        "-c",
        "SELECT * FROM timeseries(NULL, '2000-01-01 00:01:00')",
    ]))
    .success();
    assert_eq!(
        all.stdout
            .lines()
            .filter(|l| l.starts_with("| 2000-01-01"))
            .count(),
        60
    );
}

#[test]
fn json_and_ndjson_formats() {
    let sql = "SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, NULL ORDER BY a";
    let json = run(rask().args(["query", "--format", "json", "-c", sql])).success();
    assert_eq!(json.stdout.trim(), r#"[{"a":1,"b":"x"},{"a":2}]"#);
    let ndjson = run(rask().args(["query", "--format", "ndjson", "-c", sql])).success();
    assert_eq!(ndjson.stdout.trim(), "{\"a\":1,\"b\":\"x\"}\n{\"a\":2}");
    let empty = run(rask().args([
        "query",
        "--format",
        "json",
        "-c",
        "SELECT 1 AS a WHERE false",
    ]))
    .success();
    assert_eq!(empty.stdout.trim(), "[]");
}

#[test]
fn several_statements_and_comments_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.sql");
    std::fs::write(
        &job,
        "-- make a table\nCREATE TABLE t AS VALUES (1), (2), (3);\n/* add a row; then read */\nINSERT INTO t VALUES (4);\nSELECT sum(column1) AS total FROM t;\n",
    )
    .unwrap();
    let out = run(rask().args(["query", "--format", "csv", "-f"]).arg(&job)).success();
    assert!(out.stdout.ends_with("total\n10\n"), "{}", out.stdout);
}

#[test]
fn timing_goes_to_stderr() {
    let out = run(rask().args([
        "query",
        "--timing",
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS one; SELECT 2 AS two",
    ]))
    .success();
    assert_eq!(out.stdout, "one\n1\ntwo\n2\n");
    let timings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("1 row in ") && l.contains(" s (planned and submitted in "))
        .collect();
    assert_eq!(timings.len(), 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("started the embedded cluster in "),
        "{}",
        out.stderr
    );
}

#[test]
fn a_typo_stops_the_job_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.sql");
    let marker = dir.path().join("after.csv");
    std::fs::write(
        &job,
        format!(
            "SELECT 1;\n-- the next one is wrong\nSELECT name, max(x) FORM timeseries() GROUP BY name;\nCOPY (SELECT 1) TO '{}';\n",
            marker.display()
        ),
    )
    .unwrap();
    let out = run(rask().args(["query", "-f"]).arg(&job)).failure();
    let expected = format!("error: {}:3:26: ", job.display());
    assert!(
        out.stderr.starts_with(&expected),
        "expected {expected:?} in:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("timeseries"), "{}", out.stderr);
    assert!(
        !marker.exists(),
        "statements after the failing one must not run"
    );
    // The statement before the failure did run.
    assert!(out.stdout.contains("1 row × 1 column"));
}

#[test]
fn unknown_tables_and_columns_point_at_the_name() {
    let out = run(rask().args([
        "query",
        "-c",
        "SELECT 1;\nSELECT a,\n       nope FROM (VALUES (1)) AS v(a)",
    ]))
    .failure();
    assert!(out.stderr.starts_with("error: -c:3:8: "), "{}", out.stderr);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);

    let out = run(rask().args(["query", "-c", "SELECT * FROM missing_table"])).failure();
    assert!(out.stderr.starts_with("error: -c:1:15: "), "{}", out.stderr);
    assert!(out.stderr.contains("missing_table"), "{}", out.stderr);
}

#[test]
fn type_errors_name_the_types() {
    let out = run(rask().args(["query", "-c", "SELECT 'a' + true"])).failure();
    assert!(out.stderr.starts_with("error: -c:1:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("Utf8") && out.stderr.contains("Boolean"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_and_corrupt_files_are_errors_not_panics() {
    let out = run(rask().args(["query", "-f", "no/such/job.sql"])).failure();
    assert!(
        out.stderr
            .starts_with("error: cannot read no/such/job.sql: "),
        "{}",
        out.stderr
    );

    let out = run(rask().args([
        "query",
        "-c",
        "SELECT * FROM 'sample_data/nothing_here.parquet'",
    ]))
    .failure();
    assert!(out.stderr.starts_with("error: -c:1:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("nothing_here.parquet"),
        "{}",
        out.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not really parquet PAR1").unwrap();
    let sql = format!("SELECT count(*) FROM '{}'", corrupt.display());
    let out = run(rask().args(["query", "-c", &sql])).failure();
    assert!(out.stderr.starts_with("error: -c:1:"), "{}", out.stderr);
    // parquet 59 reads this footer's length with an unchecked subtraction: a
    // panic where overflow is checked (debug builds, as the tests run), which
    // rask catches and reports; elsewhere parquet's own error.
    let expected = if cfg!(debug_assertions) {
        "internal error: attempt to subtract with overflow"
    } else {
        "parquet"
    };
    assert!(
        out.stderr.to_lowercase().contains(expected),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_timeseries_arguments_are_explained() {
    let out = run(rask().args([
        "query",
        "-c",
        "SELECT * FROM timeseries('2000-01-01', '2000-01-02', '0s')",
    ]))
    .failure();
    assert!(
        out.stderr
            .contains("timeseries(): argument 3 (freq) '0s' must be a positive duration"),
        "{}",
        out.stderr
    );
}

#[test]
fn usage_errors() {
    let out = run(rask().args(["query"]));
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("nothing to run"), "{}", out.stderr);
    let out = run(rask().args(["query", "--format", "xml", "-c", "SELECT 1"]));
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("unknown format 'xml'"),
        "{}",
        out.stderr
    );
}

#[test]
fn output_closed_early_is_not_an_error() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = rask()
        .args([
            "query",
            "--format",
            "csv",
            "-c",
            "SELECT * FROM timeseries()",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn dash_f_dash_reads_the_statements_from_standard_input() {
    let script = "SELECT 1 AS one;\nSELECT 'a;b' AS s;\n";
    let out =
        run_with_input(rask().args(["query", "--format", "csv", "-f", "-"]), script).success();
    assert_eq!(out.stdout, "one\n1\ns\na;b\n");
    // Errors name standard input as the file.
    let out = run_with_input(rask().args(["query", "-f", "-"]), "SELECT 1;\nSELEC 2;\n").failure();
    assert!(out.stderr.starts_with("error: -:2:1:"), "{}", out.stderr);
}

#[test]
fn explain_shows_the_stages_a_query_runs_as() {
    let sql = "SELECT name, count(*) AS n FROM timeseries() GROUP BY name";
    let listing = "2 stages, 32 tasks\n  stage 1: aggregate-";
    // `--explain` prints the listing and runs nothing.
    let out = run(rask().args(["query", "--explain", "-c", sql])).success();
    assert!(out.stdout.starts_with(listing), "{}", out.stdout);
    assert!(
        out.stdout.contains("30 tasks → hash(name@0) into 2"),
        "{}",
        out.stdout
    );
    // SQL's EXPLAIN adds it after DataFusion's plans.
    let explain = format!("EXPLAIN {sql}");
    let out = run(rask().args(["query", "--format", "csv", "-c", &explain])).success();
    assert!(out.stdout.contains("physical_plan"), "{}", out.stdout);
    assert!(out.stdout.contains(listing), "{}", out.stdout);
}

/// `examples/sql.rs`, as README shows it, runs and prints the groupby.
#[test]
fn the_sql_example_runs() {
    let example = crate::processes::example_binary("sql");
    let out =
        run(std::process::Command::new(example).current_dir(crate::support::repository_root()))
            .success();
    assert!(
        out.stdout.contains("rask DataFrame Structure:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("| Alice "), "{}", out.stdout);
    assert!(out.stdout.contains("26 rows × 3 columns"), "{}", out.stdout);
}

#[test]
fn output_writes_the_results_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let path_text = path.display().to_string();
    let out = run(rask().args([
        "query",
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS one",
        "-c",
        "SELECT 2 AS two",
        "--output",
        &path_text,
    ]))
    .success();
    assert_eq!(out.stdout, "", "nothing on standard output");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n1\ntwo\n2\n");
    // A file that cannot be made is an error naming it, before anything runs.
    let missing = dir.path().join("no/such/folder/out.csv");
    let missing_text = missing.display().to_string();
    let out = run(rask().args(["query", "-c", "SELECT 1", "-o", &missing_text])).failure();
    assert!(
        out.stderr.contains(&format!("cannot write {missing_text}")),
        "{}",
        out.stderr
    );
}

/// `--set NAME=VALUE` (psql's `-v`): `:NAME`, `:'NAME'` and `:"NAME"` in the SQL.
#[test]
fn set_substitutes_variables_as_psql_does() {
    let sql = "SELECT :n + 1 AS m, :'who' AS w, ':n' AS s, 3::int AS c, :\"col\" FROM (SELECT 7 AS answer)";
    let out = run(rask().args([
        "query",
        "--format",
        "csv",
        "--set",
        "n=2",
        "--variable",
        "who=O'Brien",
        "--set",
        "col=answer",
        "-c",
        sql,
    ]))
    .success();
    assert_eq!(out.stdout, "m,w,s,c,answer\n3,O'Brien,:n,3,7\n");
    // A bad name is a usage error (exit 2), as clap reports them.
    let out = run(rask().args(["query", "--set", "1x=2", "-c", "SELECT 1"]));
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("is not a variable name"),
        "{}",
        out.stderr
    );
}

/// A setting comes from its flag, else its `RASK_*` variable, else the config
/// file (`$XDG_CONFIG_HOME/rask/config.toml`, or `--config FILE`), else the
/// default; `rask config` says which, for every command.
#[test]
fn settings_come_from_flag_then_environment_then_file_then_default() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("rask")).unwrap();
    let file = home.path().join("rask/config.toml");
    std::fs::write(
        &file,
        "format = \"csv\"\nmaxrows = 3\n\n[scheduler]\nport = 9999\n\n[worker]\nnthreads = 3\n",
    )
    .unwrap();
    let sql = "SELECT 1 AS x";
    let query = |env: &[(&str, &str)], flags: &[&str]| {
        let mut cmd = rask();
        cmd.env("XDG_CONFIG_HOME", home.path())
            .envs(env.iter().copied());
        run(cmd.args(["query", "-c", sql]).args(flags))
            .success()
            .stdout
    };
    // The file over the default (a table).
    assert_eq!(query(&[], &[]), "x\n1\n");
    // The environment over the file.
    assert_eq!(query(&[("RASK_FORMAT", "json")], &[]), "[{\"x\":1}]");
    // The flag over the environment.
    let table = query(&[("RASK_FORMAT", "json")], &["--format", "table"]);
    assert!(table.contains("| x |"), "{table}");
    // --config names another file, over the user's.
    let other = home.path().join("other.toml");
    std::fs::write(&other, "format = \"json\"\n").unwrap();
    assert_eq!(
        query(&[], &["--config", other.to_str().unwrap()]),
        "[{\"x\":1}]"
    );
    assert_eq!(
        query(&[("RASK_CONFIG", other.to_str().unwrap())], &[]),
        "[{\"x\":1}]"
    );

    let shown = run(rask()
        .env("XDG_CONFIG_HOME", home.path())
        .env("RASK_MAXROWS", "7")
        .env("RASK_WORKER_NTHREADS", "4")
        .arg("config"))
    .success()
    .stdout;
    let line = |start: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} in:\n{shown}"))
            .to_string()
    };
    let from_file = format!("# file {}", file.display());
    assert!(line("format = \"csv\"").ends_with(&from_file), "{shown}");
    assert!(
        line("maxrows = 7").ends_with("# environment RASK_MAXROWS"),
        "{shown}"
    );
    assert!(line("threads = 2").ends_with("# flag"), "{shown}");
    assert!(
        line("memory-limit = \"auto\"").ends_with("# default"),
        "{shown}"
    );
    assert!(line("port = 9999").ends_with(&from_file), "{shown}");
    assert!(
        line("nthreads = 4").ends_with("# environment RASK_WORKER_NTHREADS"),
        "{shown}"
    );
    assert!(
        shown.contains("\n[scheduler]\n") && shown.contains("\n[worker]\n"),
        "{shown}"
    );
}

/// A config file rask cannot use stops every command, naming the file, the
/// setting and what is wrong, before anything runs.
#[test]
fn a_wrong_config_file_is_an_error_naming_file_and_setting() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("rask.toml");
    let config = file.to_str().unwrap();
    for (text, expected) in [
        (
            "[worker]\nnthreads = \"many\"\n",
            "[worker] nthreads: invalid value 'many'",
        ),
        ("treads = 2\n", "treads: no such setting (these are: "),
        (
            "[wroker]\nnthreads = 2\n",
            "[wroker]: no command is named wroker",
        ),
        ("format = csv\n", "not a TOML file"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = run(rask().args(["--config", config, "query", "-c", "SELECT 1"]));
        assert_eq!(out.code, Some(2), "{text}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(
            out.stderr.contains(&format!("{config}: ")) && out.stderr.contains(expected),
            "{text}: {}",
            out.stderr
        );
    }
    let missing = home.path().join("missing.toml");
    let out = run(rask().args(["--config", missing.to_str().unwrap(), "config"]));
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("cannot read the config file"),
        "{}",
        out.stderr
    );
}
