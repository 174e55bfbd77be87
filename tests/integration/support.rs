//! Running the `rask` binary in tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root, where `sample_data/` is.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test-only TLS files (`tests/fixtures/tls`): certificate, key and
/// authority, as paths for flags.
pub fn tls_files() -> (String, String, String) {
    let tls = repository_root().join("tests/fixtures/tls");
    let path = |name: &str| tls.join(name).display().to_string();
    (path("node.pem"), path("node.key"), path("ca.pem"))
}

/// The reference data: Dask-written Parquet and DuckDB's answers
/// (`tests/data/`, see its README).
pub fn shared_data() -> PathBuf {
    repository_root().join("tests/data")
}

/// A `rask` command run from the repository root, with two threads.
pub fn rask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rask"));
    cmd.current_dir(repository_root()).arg("--threads").arg("2");
    // The user's own config file does not change what the tests see.
    cmd.env(
        "XDG_CONFIG_HOME",
        repository_root().join("target/no-config"),
    )
    .env_remove("RASK_CONFIG");
    cmd
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        // No run of rask, failing or not, may show a panic or a backtrace.
        assert!(
            !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
            "rask panicked:\n{}",
            run.stderr
        );
        run
    }

    /// Asserts the command succeeded, showing its output if not.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts the command failed with exit code 1.
    #[track_caller]
    pub fn failure(self) -> Self {
        assert_eq!(
            self.code,
            Some(1),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` to completion with nothing on standard input.
pub fn run(cmd: &mut Command) -> Run {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run::from(output)
}

/// Runs `cmd` with `input` piped to its standard input.
pub fn run_with_input(cmd: &mut Command, input: &str) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("rask runs to the end");
    writer
        .join()
        .expect("writer thread")
        .expect("input written");
    Run::from(output)
}

/// Parses CSV output into rows of fields (no quoting in the outputs tested here).
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// The batches `sql` returns on `client`.
pub async fn collect(
    client: &rask::Client,
    sql: &str,
) -> Vec<rask::arrow::record_batch::RecordBatch> {
    let frame = client
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    frame
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The error a query fails with, as text.
pub async fn sql_error(client: &rask::Client, sql: &str) -> String {
    let planned = client.sql(sql).await;
    match planned {
        Ok(frame) => match frame.collect().await {
            Ok(_) => panic!("{sql} succeeded"),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}
