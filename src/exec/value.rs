//! [`Value`]: the result of a function task, live in the process that made it
//! and encoded (postcard bytes) for every other process.
//!
//! A value made by a registered function knows how to encode itself, so a worker
//! can serve it to a peer or a client; what arrives from another process is kept
//! as bytes and decoded once, into the type the first reader asks for. Across
//! Arrow Flight a value travels as batches with one `LargeBinary` column
//! whose schema is marked as a value, its bytes in rows of at most
//! [`VALUE_CHUNK`], so it rides the same fetch path as tables. A large value
//! is not copied on its way: a `Vec<u8>` is sent from its own memory, and
//! what arrives in pieces is kept in its pieces until a reader needs it.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, LargeBinaryArray};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A shared Rust value of any type.
pub type AnyValue = Arc<dyn Any + Send + Sync>;

/// Encodes a live value of the type it was made with.
type Encoder = fn(&(dyn Any + Send + Sync)) -> Result<Vec<u8>, String>;

/// The schema metadata key that marks a batch as an encoded value; its value is
/// the Rust type's name.
const VALUE_MARK: &str = "rask.value";

/// A function task's value. Cheap to clone (shared).
#[derive(Clone)]
pub struct Value(Arc<Inner>);

struct Inner {
    /// The value itself, when this process made it (or decoded it).
    live: OnceLock<AnyValue>,
    /// Turns `live` into bytes; `None` for a value that cannot leave its process.
    encoder: Option<Encoder>,
    /// The bytes, made on first need: encoded from `live`, or joined from
    /// `pieces`.
    bytes: OnceLock<Result<Buffer, String>>,
    /// The bytes in the pieces they arrived in (one, when they came whole),
    /// not joined until someone needs them whole; empty for a value made here.
    pieces: Vec<Buffer>,
    /// The Rust type's name, for errors.
    type_name: String,
    nbytes: u64,
}

/// Why a value could not be had as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read a {found} value as {wanted}: {reason}")]
pub struct ValueError {
    /// The type the value was made as.
    pub found: String,
    /// The type asked for.
    pub wanted: &'static str,
    /// What went wrong.
    pub reason: String,
}

impl Value {
    /// A value that can travel to other processes: encoded with postcard when
    /// first needed there.
    pub fn new<T: Serialize + Send + Sync + 'static>(value: T) -> Self {
        let encoder: Encoder = |any| {
            if let Some(bytes) = any.downcast_ref::<Vec<u8>>() {
                return Ok(encode_bytes(bytes));
            }
            let value = any
                .downcast_ref::<T>()
                .ok_or_else(|| format!("not a {}", std::any::type_name::<T>()))?;
            postcard::to_allocvec(value).map_err(|e| e.to_string())
        };
        let nbytes = encoded_size(&value);
        Self::made(
            Arc::new(value),
            Some(encoder),
            std::any::type_name::<T>(),
            nbytes,
        )
    }

    /// A value that stays in this process (a closure's result on the local
    /// cluster), with its size in bytes.
    pub fn local(value: AnyValue, nbytes: u64) -> Self {
        Self::made(value, None, "local value", nbytes)
    }

    fn made(value: AnyValue, encoder: Option<Encoder>, type_name: &str, nbytes: u64) -> Self {
        let live = OnceLock::new();
        let _ = live.set(value);
        Self(Arc::new(Inner {
            live,
            encoder,
            bytes: OnceLock::new(),
            pieces: Vec::new(),
            type_name: type_name.to_string(),
            nbytes,
        }))
    }

    /// A value as it arrived from another process: `bytes` of type `type_name`.
    pub fn encoded(bytes: Buffer, type_name: String) -> Self {
        Self::arrived(vec![bytes], type_name)
    }

    /// A value that arrived as `pieces` of its bytes, one after the other.
    fn arrived(pieces: Vec<Buffer>, type_name: String) -> Self {
        Self(Arc::new(Inner {
            live: OnceLock::new(),
            encoder: None,
            bytes: OnceLock::new(),
            nbytes: pieces.iter().map(|p| p.len() as u64).sum(),
            pieces,
            type_name,
        }))
    }

    /// Bytes held in memory.
    pub fn nbytes(&self) -> u64 {
        self.0.nbytes
    }

    /// The name of the Rust type it was made as.
    pub fn type_name(&self) -> &str {
        &self.0.type_name
    }

    /// The value as a `T`, when it is one and lives in this process.
    pub fn downcast<T: 'static>(&self) -> Option<&T> {
        self.0.live.get().and_then(|v| v.downcast_ref())
    }

    /// The value as a `T`: itself when it lives here, else decoded from its
    /// bytes (once; later readers share the decoded value).
    pub fn get<T: DeserializeOwned + Send + Sync + 'static>(&self) -> Result<&T, ValueError> {
        let error = |reason: String| ValueError {
            found: self.0.type_name.clone(),
            wanted: std::any::type_name::<T>(),
            reason,
        };
        if let Some(live) = self.0.live.get() {
            return live
                .downcast_ref()
                .ok_or_else(|| error("it is another type".into()));
        }
        let wanted = std::any::type_name::<T>();
        if short_type_name(wanted) != short_type_name(&self.0.type_name) {
            return Err(error("it is another type".into()));
        }
        // A `Vec<u8>` straight from the pieces it arrived in: one copy.
        let raw = (std::any::TypeId::of::<T>() == std::any::TypeId::of::<Vec<u8>>())
            .then(|| decode_bytes(&self.0.pieces))
            .flatten();
        let decoded: AnyValue = match raw {
            Some(raw) => Arc::new(raw),
            None => {
                let bytes = self.bytes().map_err(error)?;
                Arc::new(postcard::from_bytes::<T>(&bytes).map_err(|e| error(e.to_string()))?)
            }
        };
        let live = self.0.live.get_or_init(|| decoded);
        live.downcast_ref()
            .ok_or_else(|| error("it was decoded as another type first".into()))
    }

    /// The value's bytes, encoding it on first use (shared, not copied, by
    /// every reader: the batch that carries it over Flight among them).
    pub fn bytes(&self) -> Result<Buffer, String> {
        self.0
            .bytes
            .get_or_init(|| {
                if !self.0.pieces.is_empty() {
                    return Ok(join(&self.0.pieces));
                }
                let live = self.0.live.get().ok_or("a value with no content")?;
                let encoder = self.0.encoder.ok_or_else(|| {
                    "it was made by a closure on the local cluster; register the function \
                     (Registry::function) to send its values to other processes"
                        .to_string()
                })?;
                encoder(live.as_ref()).map(Buffer::from_vec)
            })
            .clone()
    }

    /// The value as a batch to send over Flight: its bytes in rows of
    /// 1 MiB (slices of one buffer, not copies), so a large value
    /// travels as many messages of a bounded size.
    pub fn to_batch(&self) -> Result<RecordBatch, String> {
        self.batch_of(self.bytes()?)
    }

    /// [`to_batch`](Self::to_batch) without encoding first where encoding
    /// is a copy: a live `Vec<u8>` goes as its postcard length prefix in a
    /// batch of its own, then its bytes as they are in memory (rows sliced
    /// from the vector itself). What [`from_batches`](Self::from_batches)
    /// makes of either is the same value.
    pub fn to_batches(&self) -> Result<Vec<RecordBatch>, String> {
        let bytes = self
            .0
            .live
            .get()
            .filter(|_| self.0.bytes.get().is_none() && self.0.encoder.is_some())
            .and_then(|live| Arc::clone(live).downcast::<Vec<u8>>().ok());
        let Some(bytes) = bytes else {
            return Ok(vec![self.to_batch()?]);
        };
        let mut length = Vec::new();
        put_varint(&mut length, bytes.len() as u64);
        let shared = Buffer::from(bytes::Bytes::from_owner(SharedBytes(bytes)));
        Ok(vec![
            self.batch_of(Buffer::from_vec(length))?,
            self.batch_of(shared)?,
        ])
    }

    /// `bytes` as a value's batch, in rows of at most [`VALUE_CHUNK`].
    fn batch_of(&self, bytes: Buffer) -> Result<RecordBatch, String> {
        let metadata = HashMap::from([(VALUE_MARK.to_string(), self.0.type_name.clone())]);
        let schema = Schema::new(vec![Field::new("value", DataType::LargeBinary, false)])
            .with_metadata(metadata);
        let ends = (1..=bytes.len().div_ceil(VALUE_CHUNK).max(1))
            .map(|row| (row * VALUE_CHUNK).min(bytes.len()) as i64);
        let offsets = OffsetBuffer::new(ScalarBuffer::from_iter(std::iter::once(0).chain(ends)));
        let column = LargeBinaryArray::try_new(offsets, bytes, None).map_err(|e| e.to_string())?;
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(column)]).map_err(|e| e.to_string())
    }

    /// The value a fetch of [`to_batch`](Self::to_batch)'s output carries
    /// (its rows in order, in one batch or several); `None` when the batches
    /// are a table.
    pub fn from_batches(batches: &[RecordBatch]) -> Option<Self> {
        let type_name = batches
            .first()?
            .schema()
            .metadata()
            .get(VALUE_MARK)?
            .clone();
        let mut columns = Vec::with_capacity(batches.len());
        for batch in batches {
            if batch.schema().metadata().get(VALUE_MARK) != Some(&type_name) {
                return None;
            }
            columns.push(
                batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<LargeBinaryArray>()?,
            );
        }
        // Each row's bytes where they arrived, not copied.
        let pieces: Vec<Buffer> = columns
            .iter()
            .flat_map(|column| {
                let offsets = column.value_offsets();
                offsets.windows(2).map(|w| {
                    let (start, end) = (w[0] as usize, w[1] as usize);
                    column.values().slice_with_length(start, end - start)
                })
            })
            .collect();
        (!pieces.is_empty()).then(|| Self::arrived(pieces, type_name))
    }
}

/// The bytes of a value in one row of the batch that carries it: messages
/// well under the Flight message limit, and small enough to stream.
pub const VALUE_CHUNK: usize = 1 << 20;

/// A byte buffer as postcard encodes a `Vec<u8>` (its length as a varint,
/// then the bytes), with one copy instead of a call per byte.
fn encode_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 10);
    put_varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

/// Appends `n` as postcard's (LEB128) varint.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A shared `Vec<u8>` as the owner of a [`bytes::Bytes`] over its memory.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// `pieces` as one buffer (the piece itself when there is one).
fn join(pieces: &[Buffer]) -> Buffer {
    if let [whole] = pieces {
        return whole.clone();
    }
    let mut joined = Vec::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for piece in pieces {
        joined.extend_from_slice(piece.as_slice());
    }
    Buffer::from_vec(joined)
}

/// The bytes `value` takes encoded, which is what a worker counts it as
/// holding: for its heap data as well as its inline part. One pass over the
/// value, writing nothing; a `Vec<u8>` is measured without one.
fn encoded_size<T: Serialize + 'static>(value: &T) -> u64 {
    if let Some(bytes) = (value as &dyn Any).downcast_ref::<Vec<u8>>() {
        let varint = (64 - (bytes.len() as u64 | 1).leading_zeros()).div_ceil(7);
        return bytes.len() as u64 + u64::from(varint);
    }
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_or(std::mem::size_of::<T>() as u64, |n| n as u64)
        .max(std::mem::size_of::<T>() as u64)
}

/// The `Vec<u8>` whose postcard encoding `pieces` hold, one after the
/// other, if they hold one: copied once.
fn decode_bytes(pieces: &[Buffer]) -> Option<Vec<u8>> {
    let mut encoded = pieces.iter().flat_map(|p| p.as_slice().iter().copied());
    let (mut len, mut shift, mut at) = (0u64, 0u32, 0usize);
    loop {
        let byte = encoded.next()?;
        len |= u64::from(byte & 0x7f) << shift;
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    if (total - at) as u64 != len {
        return None;
    }
    let mut out = Vec::with_capacity(total - at);
    for piece in pieces {
        let skip = at.min(piece.len());
        out.extend_from_slice(&piece.as_slice()[skip..]);
        at -= skip;
    }
    Some(out)
}

/// A type's name without module paths (`alloc::vec::Vec<app::Person>` →
/// `Vec<Person>`): the same type compiled into two binaries may sit in
/// different modules of each.
fn short_type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut segment = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            segment.push(c);
        } else {
            out.push_str(segment.rsplit("::").next().unwrap_or_default());
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(segment.rsplit("::").next().unwrap_or_default());
    out
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({}, {} bytes)", self.0.type_name, self.0.nbytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_buffers_encode_as_postcard_does_with_one_copy() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(encode_bytes(&bytes), postcard::to_allocvec(&bytes).unwrap());
            let value = Value::new(bytes.clone());
            let arrived = Value::encoded(value.bytes().unwrap(), value.type_name().into());
            assert_eq!(arrived.get::<Vec<u8>>().unwrap(), &bytes);
            // Counted as what it takes encoded, in the process that made it too.
            assert_eq!(value.nbytes(), arrived.nbytes(), "{len} bytes");
        }
        let floats = Value::new(vec![1.5f64; 1000]);
        assert_eq!(floats.nbytes(), 8000 + 2);
        assert_eq!(
            decode_bytes(&[Buffer::from_vec(vec![3u8, 1, 2])]),
            None,
            "a length that does not match"
        );
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Person {
        name: String,
        value: f64,
    }

    #[test]
    fn values_cross_as_batches_and_decode_once() {
        let alice = Value::new(Person {
            name: "Alice".into(),
            value: 1.5,
        });
        assert_eq!(alice.downcast::<Person>().map(|p| p.value), Some(1.5));
        let batch = alice.to_batch().unwrap();
        let back = Value::from_batches(&[batch]).unwrap();
        assert!(back.type_name().ends_with("Person"), "{}", back.type_name());
        let person: &Person = back.get().unwrap();
        assert_eq!(person.name, "Alice");
        // Decoded once: the same value again.
        assert!(std::ptr::eq(person, back.get::<Person>().unwrap()));
    }

    #[test]
    fn byte_buffers_travel_from_their_own_memory_and_arrive_in_pieces() {
        for len in [0usize, 1, 300, VALUE_CHUNK + 5, 3 * VALUE_CHUNK] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let value = Value::new(bytes.clone());
            let batches = value.to_batches().unwrap();
            // The length prefix, then the bytes as they are in the vector.
            assert_eq!(batches.len(), 2, "{len} bytes");
            let data = batches[1]
                .column(0)
                .as_any()
                .downcast_ref::<LargeBinaryArray>();
            let live = value.downcast::<Vec<u8>>().unwrap();
            if len > 0 {
                let sent = data.unwrap().values().as_ptr();
                assert_eq!(sent, live.as_ptr(), "not copied");
            }
            let arrived = Value::from_batches(&batches).unwrap();
            assert_eq!(arrived.nbytes(), value.nbytes(), "{len} bytes");
            assert_eq!(arrived.get::<Vec<u8>>().unwrap(), &bytes);
            // Joined when wanted whole: postcard's encoding.
            let pieces = Value::from_batches(&batches).unwrap();
            assert_eq!(
                pieces.bytes().unwrap().as_slice(),
                postcard::to_allocvec(&bytes).unwrap()
            );
            // Sent on again from its pieces, it is the same value.
            let again = Value::from_batches(&pieces.to_batches().unwrap()).unwrap();
            assert_eq!(again.get::<Vec<u8>>().unwrap(), &bytes);
        }
        // Other types go as one batch, as before.
        assert_eq!(Value::new(vec![1.5f64; 3]).to_batches().unwrap().len(), 1);
    }

    #[test]
    fn type_names_compare_without_their_modules() {
        assert_eq!(
            short_type_name("alloc::vec::Vec<app::people::Person>"),
            "Vec<Person>"
        );
        assert_eq!(
            short_type_name("(i64, core::option::Option<f64>)"),
            "(i64, Option<f64>)"
        );
    }

    #[test]
    fn wrong_types_and_local_values_err_clearly() {
        let back = Value::from_batches(&[Value::new(7u8).to_batch().unwrap()]).unwrap();
        let err = back.get::<Person>().unwrap_err();
        assert_eq!(err.found, "u8");
        assert!(err.wanted.ends_with("Person"), "{err}");
        let local = Value::local(Arc::new(3u64), 8);
        assert!(
            local
                .to_batch()
                .unwrap_err()
                .contains("register the function")
        );
        assert_eq!(local.get::<u64>().unwrap(), &3);
        assert!(local.get::<i32>().is_err());
    }
}
