//! `rask status HOST:8786`: the scheduler's workers table in the terminal, the
//! dashboard's Workers page without a browser.
//!
//! It prints in `--format` like query results: sizes in KiB/MiB for the table,
//! plain byte counts for CSV and JSON (for scripts).

use std::sync::Arc;

use rask::WorkerState;
use rask::arrow::array::{ArrayRef, Float64Array, StringArray, UInt64Array};
use rask::arrow::datatypes::{DataType, Field, Schema};
use rask::arrow::record_batch::RecordBatch;
use rask::output::format_bytes;
use rask::output::{self, Format};
use tokio::runtime::Runtime;

use crate::args::{RetireArgs, RunArgs, StatusArgs};
use crate::runner::print_error;

/// Connects to the scheduler, prints its workers; whether that worked.
pub fn run(runtime: &Runtime, args: &StatusArgs, run: &RunArgs) -> bool {
    let workers = runtime.block_on(async {
        let client = rask::Client::connect_with_registry(
            &args.scheduler,
            run.security.security(),
            rask::udf::Registry::default(),
        )
        .await?;
        client.workers().await
    });
    let workers = match workers {
        Ok(workers) => workers,
        Err(e) => {
            print_error(&e.to_string());
            return false;
        }
    };
    let batch = match table(&workers, run.format == Format::Table) {
        Ok(batch) => batch,
        Err(e) => {
            print_error(&format!("cannot build the workers table: {e}"));
            return false;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let sink = output::sink(run.format, batch.schema(), None, &mut stdout);
    match output::write_all(sink, &[batch]) {
        Ok(_) => true,
        Err(e) => {
            print_error(&e.to_string());
            false
        }
    }
}

/// `rask retire WORKER… --scheduler HOST:PORT`: retires the workers and
/// waits until they have left; whether that worked.
pub fn retire(runtime: &Runtime, args: &RetireArgs, run: &RunArgs) -> bool {
    let Some(scheduler) = &run.scheduler else {
        print_error("rask retire needs the scheduler: --scheduler HOST:PORT (or RASK_SCHEDULER)");
        return false;
    };
    let retired = runtime.block_on(async {
        let client = rask::Client::connect_with_registry(
            scheduler,
            run.security.security(),
            rask::udf::Registry::default(),
        )
        .await?;
        let names: Vec<&str> = args.retiring.iter().map(String::as_str).collect();
        let ids = client.retire_workers(&names, RETIRE_PATIENCE).await?;
        let left = client.workers().await?;
        Ok::<_, rask::Error>((ids, left))
    });
    match retired {
        Ok((ids, left)) => {
            let stayed: Vec<String> = left
                .iter()
                .filter(|w| ids.contains(&w.info.id))
                .map(|w| format!("{} ({})", w.info.id, w.info.address))
                .collect();
            if stayed.is_empty() {
                let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                println!("retired worker {}", ids.join(", "));
                true
            } else {
                print_error(&format!(
                    "still retiring after {RETIRE_PATIENCE:?}: worker {}",
                    stayed.join(", ")
                ));
                false
            }
        }
        Err(e) => {
            print_error(&e.to_string());
            false
        }
    }
}

/// How long `rask retire` waits for the workers to leave.
const RETIRE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// One cell of the table.
enum Cell {
    Count(u64),
    Bytes(u64),
    Percent(Option<f64>),
    Text(String),
}

/// The workers as a table: one row each; sizes as text when `human`.
pub fn table(workers: &[WorkerState], human: bool) -> rask::arrow::error::Result<RecordBatch> {
    let rows: Vec<Vec<(&str, Cell)>> = workers
        .iter()
        .map(|w| {
            let m = &w.metrics;
            vec![
                ("id", Cell::Count(w.info.id)),
                ("name", Cell::Text(w.info.name.clone())),
                ("address", Cell::Text(w.info.address.clone())),
                ("status", Cell::Text(w.status.clone())),
                ("threads", Cell::Count(w.info.nthreads as u64)),
                ("memory", Cell::Bytes(m.memory)),
                (
                    "memory_limit",
                    Cell::Bytes(w.info.memory_limit.unwrap_or(0)),
                ),
                ("spilled", Cell::Bytes(m.spilled)),
                ("executing", Cell::Count(m.executing)),
                ("in_memory", Cell::Count(w.in_memory as u64)),
                ("ready", Cell::Count(m.ready)),
                ("in_flight", Cell::Count(m.in_flight)),
                ("cpu_percent", Cell::Percent(m.cpu)),
                ("read", Cell::Bytes(m.bytes_read)),
                ("written", Cell::Bytes(m.bytes_written)),
                (
                    "last_seen",
                    Cell::Text(
                        w.last_seen
                            .map_or("now".into(), |s| format!("{s:.1} s ago")),
                    ),
                ),
                (
                    "nanny",
                    Cell::Text(w.info.nanny.map_or("no".into(), |pid| format!("pid {pid}"))),
                ),
                (
                    "local_directory",
                    Cell::Text(w.info.local_directory.clone()),
                ),
            ]
        })
        .collect();
    let names: Vec<&str> = match rows.first() {
        Some(row) => row.iter().map(|(name, _)| *name).collect(),
        None => vec!["id", "name", "address", "threads"],
    };
    let mut fields = Vec::with_capacity(names.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let cells = rows.iter().map(|row| &row[i].1);
        let first = rows.first().map(|row| &row[i].1);
        let column: ArrayRef = match first {
            Some(Cell::Count(_)) => Arc::new(UInt64Array::from_iter_values(cells.map(count))),
            Some(Cell::Bytes(_)) if !human => {
                Arc::new(UInt64Array::from_iter_values(cells.map(count)))
            }
            Some(Cell::Percent(_)) => Arc::new(Float64Array::from_iter(cells.map(|c| match c {
                Cell::Percent(p) => p.map(|p| (p * 10.0).round() / 10.0),
                _ => None,
            }))),
            _ => Arc::new(StringArray::from_iter_values(cells.map(text))),
        };
        fields.push(Field::new(*name, column.data_type().clone(), true));
        columns.push(column);
    }
    if rows.is_empty() {
        fields = names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect();
        columns = names
            .iter()
            .map(|_| Arc::new(StringArray::from(Vec::<String>::new())) as ArrayRef)
            .collect();
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn count(cell: &Cell) -> u64 {
    match cell {
        Cell::Count(n) | Cell::Bytes(n) => *n,
        _ => 0,
    }
}

fn text(cell: &Cell) -> String {
    match cell {
        Cell::Text(t) => t.clone(),
        Cell::Bytes(0) => "0 B".into(),
        Cell::Bytes(n) => format_bytes(*n),
        Cell::Count(n) => n.to_string(),
        Cell::Percent(p) => p.map_or(String::new(), |p| format!("{p:.0}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rask::WorkerInfo;
    use rask::internals::worker::WorkerMetrics;

    #[test]
    fn the_table_shows_sizes_for_people_and_bytes_for_programs() {
        let worker = WorkerState {
            info: WorkerInfo {
                id: 3,
                name: "w3".into(),
                address: "127.0.0.1:4000".into(),
                nthreads: 2,
                memory_limit: Some(1 << 30),
                functions: Vec::new(),
                local_directory: "/tmp/w3".into(),
                pid: Some(10),
                nanny: Some(9),
            },
            metrics: WorkerMetrics {
                memory: 2048,
                cpu: Some(12.34),
                ..WorkerMetrics::default()
            },
            processing: 1,
            in_memory: 4,
            last_seen: Some(0.25),
            status: "paused".into(),
        };
        let human = table(std::slice::from_ref(&worker), true).unwrap();
        let text = output::to_string(Format::Table, human.schema(), &[human], None).unwrap();
        for shown in [
            "w3",
            "paused",
            "2.00 KiB",
            "1.00 GiB",
            "pid 9",
            "0.2 s ago",
            "12.3",
            "/tmp/w3",
        ] {
            assert!(text.contains(shown), "{shown} in\n{text}");
        }
        let plain = table(&[worker], false).unwrap();
        let csv = output::to_string(Format::Csv, plain.schema(), &[plain], None).unwrap();
        assert!(csv.contains(",2048,1073741824,"), "{csv}");
        let empty = table(&[], true).unwrap();
        assert_eq!(empty.num_rows(), 0);
    }
}
