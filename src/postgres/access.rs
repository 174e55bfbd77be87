//! [`Access`]: the files and URLs a PostgreSQL session's SQL may read and
//! write (`--allow-path`, `--allow-url`), as DuckDB's `allowed_directories`
//! bound its SQL. With none given, a session touches no local file and no URL.
//!
//! A statement's logical plan is checked before it runs: every scan of a
//! listing table (`FROM 'path'`, a table made by `CREATE EXTERNAL TABLE`),
//! `CREATE EXTERNAL TABLE`'s location, `COPY … TO`, and `INSERT INTO` a listing
//! table. Local paths are resolved (symbolic links followed, globs cut at
//! their first wildcard) before they are compared.

use std::path::{Component, Path, PathBuf};

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::{ListingTable, ListingTableUrl};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};

use crate::{Error, Result};

/// What a session may read and write.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Local folders (resolved), all below them allowed.
    paths: Vec<PathBuf>,
    /// URL prefixes (`s3://bucket/data/`).
    urls: Vec<String>,
}

impl Access {
    /// Files under `paths` and URLs starting with `urls`; a path that does not
    /// exist is an error naming it.
    pub fn new(paths: &[PathBuf], urls: &[String]) -> Result<Self> {
        let paths = paths
            .iter()
            .map(|p| {
                p.canonicalize()
                    .map_err(|e| Error::Config(format!("--allow-path {}: {e}", p.display())))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            paths,
            urls: urls.to_vec(),
        })
    }

    /// In words, for the log.
    pub fn describe(&self) -> String {
        if self.paths.is_empty() && self.urls.is_empty() {
            return "no files or URLs".into();
        }
        let mut allowed: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        allowed.extend(self.urls.iter().cloned());
        allowed.join(", ")
    }

    /// Checks every location `plan` reads or writes.
    pub fn check(&self, plan: &LogicalPlan) -> Result<()> {
        let mut denied = None;
        plan.apply_with_subqueries(|node| {
            let locations = locations(node);
            for location in locations {
                if let Err(e) = self.allows(&location) {
                    denied = Some(e);
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        denied.map_or(Ok(()), Err)
    }

    /// Checks a table name no catalog holds, which planning would read as a
    /// path or URL: when it looks like one, or names something that exists.
    pub fn check_name(&self, name: &str) -> Result<()> {
        let looks_like_a_location =
            name.contains(['/', '\\', '.', '*', '?', '[', ':']) || Path::new(name).exists();
        match looks_like_a_location {
            true => self.allows(name),
            false => Ok(()),
        }
    }

    /// Whether `location` (a path or URL) is allowed; an error naming it and
    /// the flag that would allow it when not.
    fn allows(&self, location: &str) -> Result<()> {
        let url = ListingTableUrl::parse(location).ok();
        let local = url
            .as_ref()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| url::Url::parse(u.as_str()).ok()?.to_file_path().ok());
        let allowed = match &local {
            Some(path) => {
                let resolved = resolve(path);
                self.paths
                    .iter()
                    .any(|allowed| resolved.starts_with(allowed))
            }
            None => {
                let text = url.as_ref().map_or(location, |u| u.as_str());
                self.urls
                    .iter()
                    .any(|prefix| text.starts_with(prefix.as_str()))
            }
        };
        if allowed {
            return Ok(());
        }
        let flag = if local.is_some() {
            "--allow-path"
        } else {
            "--allow-url"
        };
        Err(Error::Denied {
            location: location.to_string(),
            flag,
        })
    }
}

/// The locations one plan node reads or writes.
fn locations(node: &LogicalPlan) -> Vec<String> {
    let listing = |provider: &dyn TableProvider| -> Vec<String> {
        provider
            .downcast_ref::<ListingTable>()
            .map(|t| {
                t.table_paths()
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    match node {
        LogicalPlan::TableScan(scan) => source_as_provider(&scan.source)
            .map(|p| listing(p.as_ref()))
            .unwrap_or_default(),
        LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => create.locations.clone(),
        LogicalPlan::Copy(copy) => vec![copy.output_url.clone()],
        LogicalPlan::Dml(dml) => source_as_provider(&dml.target)
            .map(|p| listing(p.as_ref()))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `path` with symbolic links resolved: its longest existing ancestor
/// canonicalised, the rest (not there yet, or a glob) appended as written,
/// cut at the first component with a wildcard.
fn resolve(path: &Path) -> PathBuf {
    let mut plain = PathBuf::new();
    for component in path.components() {
        let text = component.as_os_str().to_string_lossy();
        if text.contains(['*', '?', '[']) {
            break;
        }
        match component {
            // `..` is applied to what it follows, never left to climb later.
            Component::ParentDir => {
                plain.pop();
            }
            other => plain.push(other),
        }
    }
    let mut existing = plain.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => rest.push(name.to_os_string()),
            None => break,
        }
        if !existing.pop() {
            break;
        }
    }
    let mut resolved = existing.canonicalize().unwrap_or(existing);
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_resolved_before_they_are_compared() {
        let root = std::env::temp_dir().join(format!("rask-access-{}", std::process::id()));
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::os::unix::fs::symlink("/etc", data.join("etc")).unwrap();
        let access = Access::new(std::slice::from_ref(&data), &["s3://bucket/ok/".into()]).unwrap();
        let ok = |l: &str| access.allows(l).is_ok();
        assert!(ok(&data.join("a.csv").display().to_string()));
        assert!(ok(&data.join("new/dir/out.parquet").display().to_string()));
        assert!(ok(&format!("{}/*.csv", data.display())));
        assert!(ok("s3://bucket/ok/x.parquet"));
        assert!(!ok("/etc/passwd"));
        assert!(
            !ok(&data.join("etc/passwd").display().to_string()),
            "a link out"
        );
        assert!(!ok(&format!("{}/../secret", data.display())));
        assert!(!ok("s3://bucket/other/x.parquet"));
        assert!(!ok("http://169.254.169.254/latest/meta-data"));
        let e = access.allows("/etc/passwd").unwrap_err().to_string();
        assert!(
            e.contains("/etc/passwd") && e.contains("--allow-path"),
            "{e}"
        );
        let none = Access::default();
        assert!(
            none.allows(&data.join("a.csv").display().to_string())
                .is_err()
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
