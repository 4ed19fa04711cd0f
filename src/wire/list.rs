//! Decoding of `list<T>` (proto-spec/messages.md §1.1, §8) the same way on every host.
//!
//! serde's `Vec<T>` goes through bincode's `deserialize_seq`, which converts the `u64` count
//! to a `usize` before reading any element: on a 32-bit host a count of 2^32 or more fails
//! there, with an error of its own, while a 64-bit host goes on reading elements until the
//! payload or the frame limit ends. The spec gives one answer for every host (the count is
//! read but not checked; the elements run into the end of the payload, `truncated`, or the
//! limit, `length_over_limit`), so every list field of `messages.rs` is decoded by
//! [`deserialize`] instead: it reads the count as a `u64` and the elements one by one.
//!
//! The encoding is serde's own (`u64` count, then the elements), and human-readable formats
//! (the JSON test vectors) use plain `Vec<T>`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// At most this many elements are reserved before they are read: the count is the peer's
/// claim, the elements are what it actually sent.
const PREALLOC_ELEMENTS: u64 = 256;

/// Deserializes a `list<T>`: `#[serde(deserialize_with = "list::deserialize")]`.
pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    if deserializer.is_human_readable() {
        return Vec::deserialize(deserializer);
    }
    // The count is the first element of an open-ended tuple: bincode reads a tuple without a
    // length prefix and hands out elements until the visitor stops asking.
    deserializer.deserialize_tuple(usize::MAX, ListVisitor(PhantomData))
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a u64 count followed by that many elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let count: u64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
        // `min` keeps the value below 256, so the cast cannot truncate.
        let mut out = Vec::with_capacity(count.min(PREALLOC_ELEMENTS) as usize);
        for _ in 0..count {
            // bincode hands out up to usize::MAX elements; a payload below 2^32 bytes ends
            // long before, so `None` cannot happen here.
            let element = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
            out.push(element);
        }
        Ok(out)
    }
}
