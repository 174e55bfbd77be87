//! How much memory a worker may use: by default the machine's (or its
//! container's) memory divided among the workers, as Dask does.

use std::path::Path;

use super::Budget;

/// Results past this fraction of the memory limit go to disk (as Dask's `spill`).
pub const SPILL_FRACTION: f64 = 0.6;

/// Past this fraction the worker takes no new tasks (as Dask's `pause`).
pub const PAUSE_FRACTION: f64 = 0.8;

/// The memory this process may use: the machine's (`MemTotal`), or its
/// cgroup's limit when that is lower (a container's); 4 GiB when neither can
/// be read.
pub fn available() -> u64 {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
    match (machine, cgroup_limit()) {
        (Some(m), Some(c)) => m.min(c),
        (m, c) => m.or(c).unwrap_or(4 << 30),
    }
}

/// The memory limit of this process's cgroup (v2 `memory.max`, or v1
/// `memory.limit_in_bytes`), if it has one.
pub fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // v2: one line `0::/path`; the limit is in the unified tree at that path,
    // or at its root inside a container's own namespace.
    let v2 = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|path| Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
    let candidates = v2.into_iter().map(|dir| dir.join("memory.max")).chain([
        Path::new("/sys/fs/cgroup/memory.max").to_path_buf(),
        Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").to_path_buf(),
    ]);
    candidates
        .filter_map(|file| std::fs::read_to_string(file).ok())
        // "max" (v2) or a huge number (v1) means no limit.
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .find(|&limit| limit < (1 << 60))
}

/// `limit` bytes split as Dask splits it, spilling to `directory`.
pub fn budget(limit: u64, directory: &Path) -> Budget {
    Budget {
        limit,
        spill: SPILL_FRACTION,
        pause: PAUSE_FRACTION,
        directory: directory.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn some_memory_is_available() {
        let bytes = super::available();
        assert!(bytes >= 64 << 20, "{bytes}");
        if let Some(limit) = super::cgroup_limit() {
            assert!(bytes <= limit);
        }
    }
}
