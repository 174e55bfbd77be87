//! [`Key`]: the name of a task and of its result, as in Dask.

use std::fmt;
use std::sync::Arc;

/// Names a task and the result it produces: `<operation>-<token>` or
/// `<operation>-<token>-<partition>`, e.g. `aggregate-3f9c1a2b-7`. The operation
/// prefix is what task counts, progress bars and the task stream group by.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

impl Key {
    /// A key from its full text.
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        Key(text.into())
    }

    /// `<operation>-<token>-<partition>`.
    pub fn partition(operation: &str, token: &str, partition: usize) -> Self {
        Key(format!("{operation}-{token}-{partition}").into())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The operation prefix: everything before the token.
    ///
    /// ```
    /// use rask::Key;
    /// assert_eq!(Key::partition("hash-aggregate", "3f9c", 7).operation(), "hash-aggregate");
    /// assert_eq!(Key::new("add_two_people-1a2b").operation(), "add_two_people");
    /// ```
    pub fn operation(&self) -> &str {
        let text = self.as_str();
        // The token is the first part made only of hex digits.
        let mut end = 0;
        for part in text.split('-') {
            if !part.is_empty() && part.chars().all(|c| c.is_ascii_hexdigit()) && end > 0 {
                return &text[..end - 1];
            }
            end += part.len() + 1;
        }
        text
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.0)
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::new(s)
    }
}

/// A hash map by [`Key`], with a fast hasher: the scheduler and the workers look
/// keys up several times per task.
pub type KeyMap<V> = std::collections::HashMap<Key, V, foldhash::fast::RandomState>;

/// A set of [`Key`]s, with the hasher of [`KeyMap`].
pub type KeySet = std::collections::HashSet<Key, foldhash::fast::RandomState>;
