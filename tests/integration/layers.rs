//! The import rule: every `crate::` path in `src/` goes to a layer its own
//! layer may import, as the table under "Who may import whom" in
//! ARCHITECTURE.md says. The table is read from that file, so the document and
//! the check cannot drift apart; it must itself have no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer → the layers it may import, as ARCHITECTURE.md's table lists them.
type Rules = BTreeMap<String, BTreeSet<String>>;

const HEADING: &str = "## Who may import whom";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli package sits in the workspace")
        .to_path_buf()
}

/// The rows of the table under [`HEADING`]: `` | `layer` | a, b, c | ``.
fn rules(architecture: &str) -> Rules {
    let section = architecture
        .split_once(HEADING)
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no section {HEADING:?}"));
    let mut rules = Rules::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        let Some(row) = line.strip_prefix('|') else {
            break;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (Some(layer), Some(allowed)) = (cells.first(), cells.get(1)) else {
            continue;
        };
        let layer = layer.trim_matches('`');
        if layer == "layer" || layer.starts_with("---") {
            continue;
        }
        let allowed = allowed
            .split(',')
            .map(|a| a.trim().trim_matches('`').to_string())
            .filter(|a| !a.is_empty() && a != "—")
            .collect();
        rules.insert(layer.to_string(), allowed);
    }
    assert!(!rules.is_empty(), "the table under {HEADING:?} has no rows");
    rules
}

/// The layer of a file of `src/`: its folder, or the file's own name.
fn layer_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// The names `lib.rs` re-exports at the crate root, with the layer each comes from.
fn root_names(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((layer, rest)) = path.split_once("::") else {
            continue;
        };
        let rest = rest.trim_start_matches('{').trim_end_matches('}');
        for name in rest.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                names.insert(name.to_string(), layer.to_string());
            }
        }
    }
    names
}

/// The first segment of every path `source` names through `crate::`, groups
/// (`crate::{a::B, c}`) included; comments are skipped.
fn crate_imports(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = group.len();
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let mut level = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => level += 1,
                    '}' => level -= 1,
                    ',' if level == 0 => {
                        let first = item.trim().split("::").next().unwrap_or("").trim();
                        if !first.is_empty() {
                            found.push(first.to_string());
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// Every import of `files` (path → source) that the rules do not allow.
fn violations(
    rules: &Rules,
    roots: &BTreeMap<String, String>,
    files: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (path, source) in files {
        let layer = layer_of(path);
        let Some(allowed) = rules.get(&layer) else {
            wrong.push(format!(
                "{}: the layer `{layer}` is not in ARCHITECTURE.md's table",
                path.display()
            ));
            continue;
        };
        for name in crate_imports(source) {
            let target = if name.starts_with(char::is_uppercase) {
                match roots.get(&name) {
                    Some(layer) => layer.clone(),
                    None => continue, // a macro or a name lib.rs defines itself
                }
            } else {
                name
            };
            if target == "self" || target == layer || allowed.contains(&target) {
                continue;
            }
            wrong.push(format!(
                "{}: `{layer}` imports `{target}`, which it may not",
                path.display()
            ));
        }
    }
    wrong.sort();
    wrong.dedup();
    wrong
}

/// A cycle among the rules, if they have one.
fn cycle(rules: &Rules) -> Option<Vec<String>> {
    fn visit(
        layer: &str,
        rules: &Rules,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|l| l == layer) {
            let mut found = path[at..].to_vec();
            found.push(layer.to_string());
            return Some(found);
        }
        if done.contains(layer) {
            return None;
        }
        path.push(layer.to_string());
        for next in rules.get(layer).into_iter().flatten() {
            if let Some(found) = visit(next, rules, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(layer.to_string());
        None
    }
    let mut done = BTreeSet::new();
    rules
        .keys()
        .find_map(|layer| visit(layer, rules, &mut Vec::new(), &mut done))
}

fn sources(dir: &Path, base: &Path, files: &mut BTreeMap<PathBuf, String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, base, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(base).expect("under src").to_path_buf();
            if relative != Path::new("lib.rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                files.insert(relative, text);
            }
        }
    }
}

#[test]
fn every_import_follows_the_table_in_architecture_md() {
    let root = root();
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let rules = rules(&architecture);
    if let Some(cycle) = cycle(&rules) {
        panic!(
            "the table lets layers import in a circle: {}",
            cycle.join(" → ")
        );
    }
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let mut files = BTreeMap::new();
    sources(&root.join("src"), &root.join("src"), &mut files);
    assert!(files.len() > 50, "src/ read: {} files", files.len());
    let wrong = violations(&rules, &root_names(&lib), &files);
    assert!(
        wrong.is_empty(),
        "imports against the table:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_finds_an_import_against_the_table() {
    let table = format!(
        "{HEADING}\n\n| layer | may import |\n|---|---|\n| `scheduler` | key |\n| `key` | — |\n| `worker` | scheduler, key |\n"
    );
    let table = rules(&table);
    assert_eq!(cycle(&table), None);
    let roots = root_names("pub use worker::{Worker, Job};\npub use key::Key;");
    let files: BTreeMap<PathBuf, String> = [
        (
            "scheduler/state.rs",
            "use crate::key::Key;\n// crate::worker in a comment is fine\nuse crate::{Key, worker::Job};",
        ),
        ("scheduler/mod.rs", "fn f(_: crate::Worker) {}"),
        ("worker/mod.rs", "use crate::{key::{Key, KeySet}, scheduler::Event};"),
        ("comm/mod.rs", "use crate::key::Key;"),
    ]
    .into_iter()
    .map(|(p, s)| (PathBuf::from(p), s.to_string()))
    .collect();
    assert_eq!(
        violations(&table, &roots, &files),
        [
            "comm/mod.rs: the layer `comm` is not in ARCHITECTURE.md's table",
            "scheduler/mod.rs: `scheduler` imports `worker`, which it may not",
            "scheduler/state.rs: `scheduler` imports `worker`, which it may not",
        ]
    );
    let circular = rules(&format!(
        "{HEADING}\n\n| layer | may import |\n|---|---|\n| `a` | b |\n| `b` | a |\n"
    ));
    assert_eq!(
        cycle(&circular),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
