//! Splitting a SQL script into statements.
//!
//! A script is text with several `;`-separated statements and comments. Splitting
//! happens before parsing so each statement can run (and fail) on its own, and so
//! every statement knows the line and column it starts at. Semicolons inside
//! quoted strings, quoted identifiers, dollar-quoted bodies and comments do not
//! split.

use crate::error::Location;
use crate::{Error, Result};

/// One statement cut from a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text, from its first token up to (not including) its `;`.
    pub text: String,
    /// Where its first token stands in the script.
    pub start: Location,
}

/// Splits `script` into statements. Text that holds only whitespace and comments
/// yields no statement. A statement need not end with `;` at the end of the script.
///
/// ```
/// use rask::internals::planner::split_statements;
/// let stmts = split_statements("-- two of them\nSELECT 1;\n  SELECT ';' ;").unwrap();
/// assert_eq!(stmts.len(), 2);
/// assert_eq!(stmts[1].text, "SELECT ';' ");
/// assert_eq!((stmts[1].start.line, stmts[1].start.column), (3, 3));
/// ```
pub fn split_statements(script: &str) -> Result<Vec<Statement>> {
    let mut statements = split(script)?;
    if let Some(last) = statements.last_mut().filter(|s| !s.terminated) {
        last.statement
            .text
            .truncate(last.statement.text.trim_end().len());
    }
    Ok(statements.into_iter().map(|s| s.statement).collect())
}

/// Whether `script` ends inside a statement: text after the last `;` that is
/// more than whitespace and comments, or an unterminated quote or comment. The
/// REPL keeps reading lines while this holds.
///
/// ```
/// use rask::internals::planner::script::is_incomplete;
/// assert!(is_incomplete("SELECT 1"));
/// assert!(is_incomplete("SELECT ';"));
/// assert!(!is_incomplete("SELECT 1; -- done"));
/// ```
pub fn is_incomplete(script: &str) -> bool {
    match split(script) {
        Ok(statements) => statements.last().is_some_and(|s| !s.terminated),
        Err(_) => true,
    }
}

/// `script` with psql's variables substituted: `:NAME` by the value as it is,
/// `:'NAME'` as a string literal and `:"NAME"` as a quoted identifier (quotes
/// inside doubled). Names not in `variables`, casts (`::`), and everything in
/// strings, quoted identifiers and comments are left as they are. Positions
/// in errors are those of the substituted text.
///
/// ```
/// use std::collections::BTreeMap;
/// use rask::internals::planner::script::substitute;
/// let vars = BTreeMap::from([("t".to_string(), "people".to_string()), ("n".into(), "2".into())]);
/// let sql = "SELECT :n + 1, :'t', ':n', 3::int, :other FROM :\"t\"";
/// assert_eq!(
///     substitute(sql, &vars).unwrap(),
///     "SELECT 2 + 1, 'people', ':n', 3::int, :other FROM \"people\""
/// );
/// ```
pub fn substitute(
    script: &str,
    variables: &std::collections::BTreeMap<String, String>,
) -> Result<String> {
    let mut out = String::with_capacity(script.len());
    let mut cursor = Cursor::new(script);
    // Bytes of `script` already in `out`.
    let mut copied = 0;
    while let Some(c) = cursor.peek() {
        let here = cursor.location();
        match c {
            '-' if cursor.peek_nth(1) == Some('-') => cursor.skip_line(),
            '/' if cursor.peek_nth(1) == Some('*') => cursor.skip_block_comment(here)?,
            '\'' | '"' | '`' => cursor.skip_quoted(c, here)?,
            '$' => cursor.skip_dollar_quoted(here)?,
            ':' if cursor.peek_nth(1) == Some(':') => {
                cursor.bump();
                cursor.bump();
            }
            ':' => {
                let colon = cursor.offset;
                match reference(&script[colon + 1..], variables) {
                    Some((value, len)) => {
                        out.push_str(&script[copied..colon]);
                        out.push_str(&value);
                        while cursor.offset < colon + 1 + len {
                            cursor.bump();
                        }
                        copied = cursor.offset;
                    }
                    None => {
                        cursor.bump();
                    }
                }
            }
            _ => {
                cursor.bump();
            }
        }
    }
    out.push_str(&script[copied..]);
    Ok(out)
}

/// What the text after a `:` refers to among `variables`, as it is to be
/// written, and how many bytes the reference takes.
fn reference(
    rest: &str,
    variables: &std::collections::BTreeMap<String, String>,
) -> Option<(String, usize)> {
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"');
    let body = &rest[quote.map_or(0, char::len_utf8)..];
    let name_len = body
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    if name_len == 0 || body.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let value = variables.get(&body[..name_len])?;
    match quote {
        None => Some((value.clone(), name_len)),
        Some(q) if body[name_len..].starts_with(q) => {
            let escaped = value.replace(q, &format!("{q}{q}"));
            Some((format!("{q}{escaped}{q}"), name_len + 2))
        }
        Some(_) => None,
    }
}

struct Split {
    statement: Statement,
    terminated: bool,
}

fn split(script: &str) -> Result<Vec<Split>> {
    let mut out = Vec::new();
    let mut cursor = Cursor::new(script);
    // Byte offset and location of the current statement's first token.
    let mut current: Option<(usize, Location)> = None;

    while let Some(c) = cursor.peek() {
        let here = cursor.location();
        let offset = cursor.offset;
        match c {
            c if c.is_whitespace() => {
                cursor.bump();
            }
            '-' if cursor.peek_nth(1) == Some('-') => cursor.skip_line(),
            '/' if cursor.peek_nth(1) == Some('*') => cursor.skip_block_comment(here)?,
            ';' => {
                if let Some((start_offset, start)) = current.take() {
                    out.push(Split {
                        statement: Statement {
                            text: script[start_offset..offset].to_string(),
                            start,
                        },
                        terminated: true,
                    });
                }
                cursor.bump();
            }
            _ => {
                current.get_or_insert((offset, here));
                match c {
                    '\'' | '"' | '`' => cursor.skip_quoted(c, here)?,
                    '$' => cursor.skip_dollar_quoted(here)?,
                    _ => {
                        cursor.bump();
                    }
                }
            }
        }
    }
    if let Some((start_offset, start)) = current {
        out.push(Split {
            statement: Statement {
                text: script[start_offset..].to_string(),
                start,
            },
            terminated: false,
        });
    }
    Ok(out)
}

/// Walks a script by character, tracking byte offset, line and column.
struct Cursor<'a> {
    text: &'a str,
    offset: usize,
    line: u64,
    column: u64,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            offset: 0,
            line: 1,
            column: 1,
        }
    }

    fn location(&self) -> Location {
        Location {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.offset..].chars().next()
    }

    fn peek_nth(&self, n: usize) -> Option<char> {
        self.text[self.offset..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn skip_block_comment(&mut self, start: Location) -> Result<()> {
        self.bump();
        self.bump();
        while let Some(c) = self.bump() {
            if c == '*' && self.peek() == Some('/') {
                self.bump();
                return Ok(());
            }
        }
        Err(unterminated("comment", start))
    }

    /// Skips a quoted string or identifier; a doubled quote inside is an escape.
    fn skip_quoted(&mut self, quote: char, start: Location) -> Result<()> {
        self.bump();
        while let Some(c) = self.bump() {
            if c == quote {
                if self.peek() == Some(quote) {
                    self.bump();
                } else {
                    return Ok(());
                }
            }
        }
        let what = if quote == '\'' {
            "string"
        } else {
            "quoted identifier"
        };
        Err(unterminated(what, start))
    }

    /// Skips `$tag$ ... $tag$`; a lone `$` (as in a `$1` parameter) is just a character.
    fn skip_dollar_quoted(&mut self, start: Location) -> Result<()> {
        let rest = &self.text[self.offset + 1..];
        let tag_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let is_quote = rest[tag_len..].starts_with('$')
            && !rest[..tag_len].starts_with(|c: char| c.is_ascii_digit());
        if !is_quote {
            self.bump();
            return Ok(());
        }
        let delimiter = &self.text[self.offset..self.offset + tag_len + 2];
        let body_start = self.offset + delimiter.len();
        match self.text[body_start..].find(delimiter) {
            Some(end) => {
                while self.offset < body_start + end + delimiter.len() {
                    self.bump();
                }
                Ok(())
            }
            None => Err(unterminated("dollar-quoted string", start)),
        }
    }
}

fn unterminated(what: &str, location: Location) -> Error {
    Error::Script {
        message: format!("unterminated {what}"),
        location,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(script: &str) -> Vec<(String, u64, u64)> {
        split_statements(script)
            .unwrap()
            .into_iter()
            .map(|s| (s.text, s.start.line, s.start.column))
            .collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let script = "SELECT 'a;b', \"c;d\" -- e;f\n; /* g; */ SELECT $$h;i$$;\nSELECT 3";
        assert_eq!(
            texts(script),
            vec![
                ("SELECT 'a;b', \"c;d\" -- e;f\n".to_string(), 1, 1),
                ("SELECT $$h;i$$".to_string(), 2, 12),
                ("SELECT 3".to_string(), 3, 1),
            ]
        );
    }

    #[test]
    fn comment_only_scripts_have_no_statements() {
        assert!(texts("-- nothing\n/* at all */ ;;\n").is_empty());
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        assert_eq!(texts("SELECT 'it''s;'; SELECT 2").len(), 2);
    }

    #[test]
    fn parameters_are_not_dollar_quotes() {
        assert_eq!(texts("SELECT $1; SELECT $2").len(), 2);
    }

    #[test]
    fn unterminated_strings_report_where_they_start() {
        let err = split_statements("SELECT 1;\nSELECT 'oops;").unwrap_err();
        assert_eq!(err.location(), Some(Location { line: 2, column: 8 }));
        assert_eq!(err.to_string(), "unterminated string");
    }
}
