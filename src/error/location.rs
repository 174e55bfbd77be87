//! [`Location`]: where in SQL text something went wrong, and [`locate`], which
//! finds the position DataFusion attached to an error.

use std::fmt;

use datafusion::error::DataFusionError;

/// A position in SQL text: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1, in characters.
    pub column: u64,
}

impl Location {
    /// The first character of a text.
    pub const START: Location = Location { line: 1, column: 1 };

    /// Maps a location relative to a statement's own text onto the script it was
    /// cut from, given where the statement starts in that script.
    pub fn offset_by(self, statement_start: Location) -> Location {
        if self.line <= 1 {
            Location {
                line: statement_start.line,
                column: statement_start.column + self.column.saturating_sub(1),
            }
        } else {
            Location {
                line: statement_start.line + self.line - 1,
                column: self.column,
            }
        }
    }

    /// The index, in characters from 0, of this location in `text`; `None`
    /// past its end.
    ///
    /// ```
    /// use rask::Location;
    /// let at = Location { line: 2, column: 3 };
    /// assert_eq!(at.char_index("ab\ncdé"), Some(5));
    /// assert_eq!(Location { line: 3, column: 1 }.char_index("ab"), None);
    /// ```
    pub fn char_index(self, text: &str) -> Option<usize> {
        let line = usize::try_from(self.line.checked_sub(1)?).ok()?;
        let column = usize::try_from(self.column.checked_sub(1)?).ok()?;
        let mut before = 0;
        for (i, content) in text.split('\n').enumerate() {
            if i == line {
                return (column <= content.chars().count()).then_some(before + column);
            }
            before += content.chars().count() + 1;
        }
        None
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The position DataFusion attached to an error, if any: the span of a
/// [`Diagnostic`](datafusion::common::Diagnostic) (unknown table or column, type
/// errors) or the `at Line: L, Column: C` of a parser error.
pub fn locate(err: &DataFusionError) -> Option<Location> {
    for e in err.iter() {
        match e {
            DataFusionError::Diagnostic(diag, _) => {
                if let Some(span) = diag.span.filter(|s| s.start.line > 0) {
                    return Some(Location {
                        line: span.start.line,
                        column: span.start.column,
                    });
                }
            }
            DataFusionError::SQL(parser, _) => {
                if let Some(loc) = parse_position(&parser.to_string()) {
                    return Some(loc);
                }
            }
            DataFusionError::External(inner) => {
                if let Some(own) = inner.downcast_ref::<crate::Error>() {
                    return own.location();
                }
            }
            _ => {}
        }
    }
    None
}

const POSITION_MARKER: &str = " at Line: ";

/// Reads the `at Line: L, Column: C` suffix sqlparser puts on its messages.
fn parse_position(message: &str) -> Option<Location> {
    let rest = &message[message.rfind(POSITION_MARKER)? + POSITION_MARKER.len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Location {
        line: line.trim().parse().ok()?,
        column: column.parse().ok()?,
    })
}

/// Drops sqlparser's `sql parser error: ` prefix and position suffix: rask prints
/// the position itself, in `file:line:col` form.
pub(crate) fn strip_position(message: &str) -> String {
    let message = message
        .strip_prefix("sql parser error: ")
        .or_else(|| message.strip_prefix("sql tokenizer error: "))
        .unwrap_or(message);
    match message.rfind(POSITION_MARKER) {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlparser_positions() {
        let msg =
            "sql parser error: Expected: an SQL statement, found: SELEC at Line: 3, Column: 17";
        assert_eq!(
            parse_position(msg),
            Some(Location {
                line: 3,
                column: 17
            })
        );
        assert_eq!(
            strip_position(msg),
            "Expected: an SQL statement, found: SELEC"
        );
        assert_eq!(parse_position("no position here"), None);
    }

    #[test]
    fn offsets_relative_locations() {
        let start = Location { line: 4, column: 3 };
        assert_eq!(
            Location { line: 1, column: 8 }.offset_by(start),
            Location {
                line: 4,
                column: 10
            }
        );
        assert_eq!(
            Location { line: 2, column: 5 }.offset_by(start),
            Location { line: 5, column: 5 }
        );
    }
}
