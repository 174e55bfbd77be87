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

/// The memory limit of this process's cgroup, the lowest on its way up to
/// the root (cgroup v2's `memory.max`, v1's `memory.limit_in_bytes`), if it has
/// one. Inside a container whose cgroup namespace is its own, that is the
/// container's limit.
pub fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut limits = Vec::new();
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            // v2: the unified tree, mounted at the root or beside v1's.
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                limits.extend(lowest_up(Path::new(root), path, "memory.max"));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let root = Path::new("/sys/fs/cgroup/memory");
            limits.extend(lowest_up(root, path, "memory.limit_in_bytes"));
        }
    }
    limits.into_iter().min()
}

/// The lowest limit in `file` from `root/path` up to `root`; "max" (v2) or a
/// huge number (v1) is no limit.
fn lowest_up(root: &Path, path: &str, file: &str) -> Option<u64> {
    let mut dir = root.join(path);
    let mut lowest = None::<u64>;
    loop {
        let limit = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|&limit| limit < (1 << 60));
        if let Some(limit) = limit {
            lowest = Some(lowest.map_or(limit, |l| l.min(limit)));
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            return lowest;
        }
    }
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
