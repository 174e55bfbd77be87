//! [`Key`]: the name of a task and of its result, as in Dask.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// Names a task and the result it produces: `<operation>-<token>` or
/// `<operation>-<token>-<partition>`, e.g. `aggregate-3f9c1a2b-7`. The operation
/// prefix is what task counts, progress bars and the task stream group by.
///
/// A key hashes its text once, when made: the scheduler and the workers look
/// keys up several times per task, and then hash a number, not a string.
#[derive(Clone)]
pub struct Key {
    hash: u64,
    text: Arc<str>,
}

/// The hash of a key's text; fixed seeds so a key hashes the same in every process.
fn text_hash(text: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x7261_736b).hash_one(text)
}

impl Key {
    /// A key from its full text.
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        let text = text.into();
        Key {
            hash: text_hash(&text),
            text,
        }
    }

    /// `<operation>-<token>-<partition>`.
    pub fn partition(operation: &str, token: &str, partition: usize) -> Self {
        Key::new(format!("{operation}-{token}-{partition}"))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.text
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

    /// The group of tasks the key belongs to, as progress and the dashboard
    /// count them: a stage's partitions share one (`aggregate-3f9c02-7` →
    /// `aggregate-3f9c02`), a function's calls another (`add_two_people-5e1a`
    /// → `add_two_people`).
    ///
    /// ```
    /// use rask::Key;
    /// assert_eq!(Key::new("read-parquet-3f9c02-7").group(), "read-parquet-3f9c02");
    /// assert_eq!(Key::new("add_two_people-5e1a00000001").group(), "add_two_people");
    /// assert_eq!(Key::new("plain").group(), "plain");
    /// ```
    pub fn group(&self) -> &str {
        let text = self.as_str();
        if let Some((rest, last)) = text.rsplit_once('-')
            && !last.is_empty()
            && last.bytes().all(|b| b.is_ascii_digit())
            && rest.contains('-')
        {
            return rest;
        }
        self.operation()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// By text, so sorted keys read in order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.text)
    }
}

/// Keys travel between processes as their text; the hash is made anew.
impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Key::new)
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::new(s)
    }
}

/// A hash map by [`Key`]. Keys carry their hash, so the map's hasher only mixes
/// one number.
pub type KeyMap<V> = std::collections::HashMap<Key, V, foldhash::fast::RandomState>;

/// A set of [`Key`]s, with the hasher of [`KeyMap`].
pub type KeySet = std::collections::HashSet<Key, foldhash::fast::RandomState>;

/// Removes `key` from `map`, and gives memory back once the map is mostly
/// empty. A map that held a million keys and lost them would otherwise stay
/// that big, and slow: removed entries leave markers that lookups step over.
pub fn remove_shrinking<V>(map: &mut KeyMap<V>, key: &Key) -> Option<V> {
    let removed = map.remove(key);
    if map.capacity() > 1024 && map.len() * 8 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
    removed
}
