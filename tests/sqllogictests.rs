//! Runs the `.slt` files under `tests/sql/` against rask, one test per file.
//!
//! Each file gets a fresh [`rask::Client`] and runs with the repository root as
//! its working directory, so files name data as `sample_data/people.csv`. Floats
//! print with 12 significant digits, which keeps results independent of the
//! order parallel aggregates add in.
//!
//! Every file runs twice: `local::FILE` on an embedded cluster of 2 workers,
//! and `cluster::FILE` on a real cluster of processes (`scheduler` and
//! `worker --nworkers 2`, started once for all files on free ports and killed
//! at the end), where plans travel as bytes and data over Arrow Flight. Both
//! carry the UDFs of `cli/examples/custom_worker.rs`; the cluster's processes
//! are that binary.
//!
//! `cargo nextest run --test sqllogictests` runs them all; add a file name (or
//! part of one) to run only that file. `cargo test --test sqllogictests --
//! --complete [NAME]` writes what the embedded cluster answers into the files
//! as their expected results (new queries, or after a deliberate change):
//! review the diff before committing it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use libtest_mimic::{Arguments, Failed, Trial};
use rask::arrow::array::{Array, ArrayRef, AsArray};
use rask::arrow::datatypes::{DataType, Float16Type, Float32Type, Float64Type};
use rask::arrow::util::display::{ArrayFormatter, FormatOptions};
use rask::{Client, Config};
use sqllogictest::DBOutput;

#[path = "common/processes.rs"]
mod processes;

/// The functions `.slt` files may call (`square`, …): the example worker
/// binary's, which the cluster's workers run.
#[allow(dead_code)]
#[path = "../cli/examples/custom_worker.rs"]
mod custom_worker;

use processes::{ProcessCluster, custom_worker_binary};

/// The cluster of processes the `cluster::` trials share, started by the first.
type SharedCluster = Arc<Mutex<Option<ProcessCluster>>>;

fn main() {
    let complete = std::env::args().any(|a| a == "--complete");
    let args = Arguments::from_iter(std::env::args().filter(|a| a != "--complete"));
    let root = repository_root();
    let files = slt_files(&root.join("tests/sql"));
    let cluster: SharedCluster = Arc::default();
    let mut trials = Vec::new();
    for path in files {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (root_a, path_a) = (root.clone(), path.clone());
        trials.push(Trial::test(format!("local::{name}"), move || {
            run_file(&root_a, &path_a, Target::Local, complete)
        }));
        if complete {
            // The embedded cluster's answers are what a file is completed with.
            continue;
        }
        let (root_b, cluster) = (root.clone(), Arc::clone(&cluster));
        trials.push(Trial::test(format!("cluster::{name}"), move || {
            let address = cluster_address(&root_b, &cluster)?;
            run_file(&root_b, &path, Target::Scheduler(address), false)
        }));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the processes before exiting (exit skips destructors).
    drop(cluster.lock().map(|mut c| c.take()));
    conclusion.exit();
}

/// The shared cluster's address, starting it on first use.
fn cluster_address(root: &Path, cluster: &SharedCluster) -> Result<String, Failed> {
    static STARTED: OnceLock<Result<String, String>> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        let mut slot = cluster.lock().map_err(|e| e.to_string())?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ProcessCluster::start_program(&custom_worker_binary(), root, 2, 2)
        }))
        .map(|c| {
            let address = c.address.clone();
            *slot = Some(c);
            address
        })
        .map_err(|_| "the cluster of processes did not start".to_string())
    });
    started.clone().map_err(Failed::from)
}

/// Where a file's statements run.
#[derive(Debug, Clone)]
enum Target {
    /// An embedded cluster of 2 workers × 2 threads.
    Local,
    /// The scheduler at this address.
    Scheduler(String),
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn slt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "slt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs the file at `path` on `target`; with `complete`, writes the answers
/// into it as its expected results instead of checking them.
fn run_file(root: &Path, path: &Path, target: Target, complete: bool) -> Result<(), Failed> {
    std::env::set_current_dir(root).map_err(|e| format!("cannot enter {}: {e}", root.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut runner = sqllogictest::Runner::new(|| {
            let target = target.clone();
            async move {
                let client = match target {
                    // Two workers: stages read each other's outputs across workers.
                    Target::Local => Client::with_config(Config {
                        workers: 2,
                        threads: 2,
                        registry: custom_worker::registry(),
                        ..Config::default()
                    })?,
                    Target::Scheduler(address) => {
                        let registry = custom_worker::registry();
                        let security = rask::internals::net::Security::default();
                        Client::connect_with_registry(&address, security, registry).await?
                    }
                };
                Ok(RaskDb { client })
            }
        });
        if complete {
            return runner
                .update_test_file(
                    path,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .map_err(|e| Failed::from(format!("cannot complete {}: {e}", path.display())));
        }
        runner
            .run_file_async(path)
            .await
            .map_err(|e| Failed::from(e.display(true).to_string()))
    })
}

/// A rask client as a sqllogictest database.
struct RaskDb {
    client: Client,
}

#[async_trait]
impl sqllogictest::AsyncDB for RaskDb {
    type Error = rask::Error;
    type ColumnType = ColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<ColumnType>, rask::Error> {
        let frame = self.client.sql(sql).await?;
        let schema = frame.schema();
        let batches = frame.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let mut rows = Vec::new();
        for batch in &batches {
            let columns: Vec<Vec<String>> = batch
                .columns()
                .iter()
                .map(render_column)
                .collect::<Result<_, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(columns.iter().map(|c| c[row].clone()).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "rask"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// A result column's type, as a `query` line's letters say it (DataFusion's
/// letters): `I` integer, `R` floating point or decimal, `B` boolean, `P`
/// timestamp, `D` date or time, `T` text and everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    Integer,
    Float,
    Boolean,
    Timestamp,
    DateTime,
    Text,
}

impl sqllogictest::ColumnType for ColumnType {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'I' => Self::Integer,
            'R' => Self::Float,
            'B' => Self::Boolean,
            'P' => Self::Timestamp,
            'D' => Self::DateTime,
            'T' => Self::Text,
            _ => return None,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Self::Integer => 'I',
            Self::Float => 'R',
            Self::Boolean => 'B',
            Self::Timestamp => 'P',
            Self::DateTime => 'D',
            Self::Text => 'T',
        }
    }
}

fn column_type(t: &DataType) -> ColumnType {
    match t {
        t if t.is_integer() => ColumnType::Integer,
        t if t.is_floating() => ColumnType::Float,
        DataType::Decimal128(..) | DataType::Decimal256(..) => ColumnType::Float,
        DataType::Boolean => ColumnType::Boolean,
        DataType::Timestamp(..) => ColumnType::Timestamp,
        DataType::Date32 | DataType::Date64 | DataType::Time32(_) | DataType::Time64(_) => {
            ColumnType::DateTime
        }
        _ => ColumnType::Text,
    }
}

fn render_column(array: &ArrayRef) -> Result<Vec<String>, rask::Error> {
    let floats: Option<Vec<Option<f64>>> = match array.data_type() {
        DataType::Float64 => Some(array.as_primitive::<Float64Type>().iter().collect()),
        DataType::Float32 => Some(
            array
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.map(f64::from))
                .collect(),
        ),
        DataType::Float16 => Some(
            array
                .as_primitive::<Float16Type>()
                .iter()
                .map(|v| v.map(f64::from))
                .collect(),
        ),
        _ => None,
    };
    if let Some(values) = floats {
        return Ok(values
            .into_iter()
            .map(|v| v.map_or("NULL".to_string(), render_float))
            .collect());
    }
    let options = FormatOptions::default().with_null("NULL");
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options)
        .map_err(rask::datafusion::error::DataFusionError::from)?;
    Ok((0..array.len())
        .map(|i| {
            let text = formatter.value(i).to_string();
            if text.is_empty() && !array.is_null(i) {
                "(empty)".to_string()
            } else {
                text
            }
        })
        .collect())
}

/// A float with 12 significant digits, in its shortest form.
fn render_float(v: f64) -> String {
    if v.is_nan() || v.is_infinite() || v == 0.0 {
        return if v == 0.0 {
            "0".to_string()
        } else {
            v.to_string()
        };
    }
    let rounded: f64 = format!("{v:.11e}").parse().unwrap_or(v);
    rounded.to_string()
}
