//! What a suite measured: printed as it goes, and written at the end as one JSON
//! file with the machine it ran on (`--json`, by default
//! `target/bench-results/<suite>.json`).
//!
//! Each row is one engine's timing of one measurement, with the ratio of its
//! median to bare DataFusion's where DataFusion ran the same work, and the peak
//! memory of the processes that did it, where it could be read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::Stats;

/// The machine a suite ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores the process may use.
    pub cores: usize,
    /// Memory, in bytes (`/proc/meminfo`).
    pub memory_bytes: Option<u64>,
    /// The processor's model name (`/proc/cpuinfo`).
    pub cpu: Option<String>,
    /// `linux`, `macos`…
    pub os: &'static str,
}

impl Machine {
    /// This machine.
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, name)| name.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cores: crate::available_cores(),
            memory_bytes: kib_field(&meminfo, "MemTotal:"),
            cpu,
            os: std::env::consts::OS,
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let memory = self.memory_bytes.map_or("unknown".into(), |m| {
            format!("{:.1} GiB", m as f64 / (1u64 << 30) as f64)
        });
        write!(
            f,
            "machine: {} cores, {memory} of memory, {} ({})",
            self.cores,
            self.cpu.as_deref().unwrap_or("unknown processor"),
            self.os
        )
    }
}

/// One engine's timing of one measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured.
    pub measurement: String,
    /// Who did it: `rask`, `DataFusion`, `DuckDB`, `Polars`, `Dask`, …
    pub engine: String,
    /// Milliseconds: median, fastest, slowest.
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Timed runs.
    pub runs: usize,
    /// Its median over bare DataFusion's, when DataFusion did the same work.
    pub ratio_to_datafusion: Option<f64>,
    /// Peak resident memory of each process that did the work, by role.
    pub peak_memory: Vec<(String, u64)>,
    /// Figures of its own (tasks per second, GB/s, rows…).
    pub figures: Vec<(String, f64)>,
}

/// A suite's rows.
#[derive(Debug, Serialize)]
pub struct Report {
    suite: String,
    command: String,
    machine: Machine,
    rows: Vec<Row>,
    #[serde(skip)]
    path: PathBuf,
}

impl Report {
    /// An empty report of `suite`, written to `path` (or the default place).
    pub fn new(suite: &str, path: Option<PathBuf>) -> Self {
        let machine = Machine::this();
        println!("{machine}");
        Self {
            suite: suite.to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine,
            rows: Vec::new(),
            path: path
                .unwrap_or_else(|| Path::new("target/bench-results").join(format!("{suite}.json"))),
        }
    }

    /// Adds one engine's timings of `measurement`.
    pub fn add(&mut self, measurement: &str, engine: &str, timings: &[Duration]) -> &mut Row {
        let stats = Stats::of(timings);
        self.add_stats(measurement, engine, stats, timings.len())
    }

    /// Adds one engine's figures of `measurement`, already summed up.
    pub fn add_stats(
        &mut self,
        measurement: &str,
        engine: &str,
        stats: Stats,
        runs: usize,
    ) -> &mut Row {
        self.rows.push(Row {
            measurement: measurement.to_string(),
            engine: engine.to_string(),
            median_ms: stats.median,
            min_ms: stats.min,
            max_ms: stats.max,
            runs,
            ratio_to_datafusion: None,
            peak_memory: Vec::new(),
            figures: Vec::new(),
        });
        let last = self.rows.len() - 1;
        &mut self.rows[last]
    }

    /// Adds rask's and DataFusion's timings of `measurement`, the ratio on rask's row.
    pub fn pair(&mut self, measurement: &str, rask: &[Duration], datafusion: &[Duration]) {
        let theirs = Stats::of(datafusion).median;
        self.add(measurement, "DataFusion", datafusion)
            .ratio_to_datafusion = Some(1.0);
        let row = self.add(measurement, "rask", rask);
        row.ratio_to_datafusion = Some(row.median_ms / theirs);
    }

    /// The last row of `engine` for `measurement`, to add to it.
    pub fn row(&mut self, measurement: &str, engine: &str) -> Option<&mut Row> {
        self.rows
            .iter_mut()
            .rev()
            .find(|r| r.measurement == measurement && r.engine == engine)
    }

    /// Writes the JSON file; says where.
    pub fn write(&self) -> Result<(), Box<dyn std::error::Error>> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&self.path, serde_json::to_string_pretty(self)?)?;
        println!("\nfigures written to {}", self.path.display());
        Ok(())
    }
}

/// A `KiB` field of a `/proc` file, in bytes.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The peak resident memory (`VmHWM`) of process `pid` so far.
pub fn peak_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&status, "VmHWM:")
}

/// This process's peak resident memory so far.
pub fn own_peak_memory() -> Option<u64> {
    peak_memory(std::process::id())
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // The parent is the second field after the command's parentheses.
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// `2400416 KiB` → `2.29 GiB`.
pub fn format_memory(bytes: u64) -> String {
    rask::output::format_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_the_ratio_to_datafusion_and_the_file_is_json() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let path = std::env::temp_dir().join(format!("rask-bench-{}.json", std::process::id()));
        let mut report = Report::new("test", Some(path.clone()));
        report.pair("groupby", &ms(&[30, 20, 40]), &ms(&[10, 12, 8]));
        report
            .row("groupby", "rask")
            .unwrap()
            .peak_memory
            .push(("worker".into(), 1 << 20));
        report.write().unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(json["suite"], "test");
        assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
        let rask = &json["rows"][1];
        assert_eq!(
            (rask["engine"].as_str(), rask["median_ms"].as_f64()),
            (Some("rask"), Some(30.0))
        );
        assert_eq!(rask["ratio_to_datafusion"].as_f64(), Some(3.0));
        assert_eq!(rask["peak_memory"][0][1], 1 << 20);
        assert!(own_peak_memory().is_some_and(|m| m > 0) || !cfg!(target_os = "linux"));
        assert_eq!(kib_field("VmHWM:\t  2048 kB\n", "VmHWM:"), Some(2 << 20));
    }
}
