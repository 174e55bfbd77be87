//! Tab completion in the shell: SQL keywords, the session's tables and their
//! columns, its functions (the UDFs it carries included), and the shell's
//! backslash commands.

use std::collections::BTreeSet;

use rask::Client;
use rask::datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

/// The shell's backslash commands.
const COMMANDS: [&str; 14] = [
    "\\d", "\\dt", "\\df", "\\status", "\\timing", "\\format", "\\x", "\\o", "\\set", "\\i", "\\?",
    "\\q", "\\h", "\\help",
];

/// Completes the word before the cursor from what the client's session knows.
pub struct SqlCompleter {
    client: Client,
}

impl SqlCompleter {
    /// A completer over `client`'s session.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Tables, their columns and functions, as the session has them now.
    fn names(&self) -> BTreeSet<String> {
        let session = self.client.session();
        let mut names = BTreeSet::new();
        for catalog in session.catalog_names() {
            let Some(catalog) = session.catalog(&catalog) else {
                continue;
            };
            for schema in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema) else {
                    continue;
                };
                for table in schema.table_names() {
                    if let Ok(Some(provider)) = futures::executor::block_on(schema.table(&table)) {
                        names.extend(provider.schema().fields().iter().map(|f| f.name().clone()));
                    }
                    names.insert(table);
                }
            }
        }
        let state = session.state();
        names.extend(state.scalar_functions().keys().cloned());
        names.extend(state.aggregate_functions().keys().cloned());
        names.extend(state.table_functions().keys().cloned());
        names
    }
}

impl Completer for SqlCompleter {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = line.get(..pos).unwrap_or(line);
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\\'))
            .map_or(0, |i| i + 1);
        let word = &before[start..];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let lower = word.to_lowercase();
        let mut found: BTreeSet<String> = BTreeSet::new();
        if word.starts_with('\\') {
            found.extend(
                COMMANDS
                    .iter()
                    .filter(|c| c.starts_with(word))
                    .map(|c| c.to_string()),
            );
            return Ok((start, found.into_iter().collect()));
        }
        // Keywords in the case the word was typed in.
        let upper = word.chars().any(char::is_uppercase);
        found.extend(
            ALL_KEYWORDS
                .iter()
                .filter(|k| k.to_lowercase().starts_with(&lower))
                .map(|k| {
                    if upper {
                        k.to_string()
                    } else {
                        k.to_lowercase()
                    }
                }),
        );
        found.extend(
            self.names()
                .into_iter()
                .filter(|n| n.to_lowercase().starts_with(&lower)),
        );
        Ok((start, found.into_iter().collect()))
    }
}

impl Hinter for SqlCompleter {
    type Hint = String;
}

impl Highlighter for SqlCompleter {}

impl Validator for SqlCompleter {}

impl Helper for SqlCompleter {}
