//! [`WorkSpace`]: a worker's own folder for what it spills, private to its
//! user (mode 0700), made so that nothing already there is reused or followed,
//! and removed when the worker ends. A worker that starts removes the folders
//! of workers that died without removing theirs.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What a worker's folder is named after, in the parent folder.
const PREFIX: &str = "rask-worker-";

/// The file in each folder naming the process that owns it.
const OWNER: &str = "pid";

/// A worker's spill folder, removed when dropped.
#[derive(Debug)]
pub struct WorkSpace {
    path: PathBuf,
}

impl WorkSpace {
    /// A new folder of this process inside `parent` (made if missing), after
    /// removing those of processes that are gone.
    pub fn create(parent: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        remove_stale(parent);
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for attempt in 0..64u32 {
            let path = parent.join(format!(
                "{PREFIX}{pid}-{:x}",
                nanos ^ attempt.wrapping_mul(0x9e37_79b9)
            ));
            match private_dir(&path) {
                Ok(()) => {
                    let space = Self { path };
                    let mut owner = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(space.path.join(OWNER))?;
                    writeln!(owner, "{pid}")?;
                    return Ok(space);
                }
                // Someone else's, or one of ours from before: never reused.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("no free folder name in {}", parent.display()),
        ))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkSpace {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Makes `path`, mode 0700, failing if anything (a folder, a link) is there.
fn private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Removes the worker folders in `parent` whose owner process is gone.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        // Only real folders of ours (not links), owned by this user.
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_dir() || !owned_by_us(&meta) {
            continue;
        }
        let owner = std::fs::read_to_string(entry.path().join(OWNER))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if owner.is_some() && !alive {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(
                    "removed {}, left by a worker that is gone",
                    entry.path().display()
                ),
                Err(e) => tracing::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}

#[cfg(unix)]
fn owned_by_us(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self").map(|m| m.uid());
    own.is_ok_and(|uid| uid == meta.uid())
}

#[cfg(not(unix))]
fn owned_by_us(_meta: &std::fs::Metadata) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_folder_gone_when_dropped_and_stale_ones_removed() {
        let parent = std::env::temp_dir().join(format!("rask-space-test-{}", std::process::id()));
        let space = WorkSpace::create(&parent).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(space.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        // A folder left by a process that is gone (pid 0 is never a process
        // of ours): removed when the next worker starts.
        let stale = parent.join(format!("{PREFIX}0-1"));
        private_dir(&stale).unwrap();
        std::fs::write(stale.join(OWNER), "4294967295\n").unwrap();
        let other = WorkSpace::create(&parent).unwrap();
        assert!(!stale.exists());
        assert!(space.path().exists(), "a living worker's folder stays");
        let (a, b) = (space.path().to_path_buf(), other.path().to_path_buf());
        assert_ne!(a, b);
        drop(space);
        drop(other);
        assert!(!a.exists() && !b.exists());
        std::fs::remove_dir(&parent).unwrap();
    }
}
