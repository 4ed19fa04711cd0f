//! One log entry's bytes, and the file header (proto-spec/store.md §1, §2). Pure: no I/O.
//!
//! ```text
//! len u32le | kind u8 | key [32] | sub [32] | seq u64le | expires_ms u64le | payload | crc u32le
//!           '------------------------- len bytes, crc = CRC32C(kind..payload) -----------'
//! ```
//!
//! Bound: [`MIN_LEN`] ≤ `len` ≤ [`MAX_LEN`], checked before anything is allocated or read
//! for the entry, so a corrupt length costs nothing.

use super::crc32c::crc32c;
use super::{EntryKey, Kind, StoreError};

/// The first bytes of the file: magic, then the format version.
pub const HEADER: [u8; 8] = *b"PTRLLOG\x01";
/// Bytes of [`HEADER`].
pub const HEADER_BYTES: u64 = HEADER.len() as u64;
/// The only format version this code reads and writes.
pub const VERSION: u8 = 1;

/// Largest payload: a 1 MiB record value plus room for its encoding.
pub const MAX_PAYLOAD_BYTES: usize = (1 << 20) + (64 << 10);
/// Bytes of the length field.
pub const LEN_BYTES: usize = 4;
/// `len` of an entry with an empty payload: kind, key, sub, seq, expires_ms, crc.
pub const MIN_LEN: u32 = 1 + 32 + 32 + 8 + 8 + 4;
/// Largest `len` a reader accepts.
pub const MAX_LEN: u32 = MIN_LEN + MAX_PAYLOAD_BYTES as u32;

/// Kind byte of a record.
pub const KIND_RECORD: u8 = 1;
/// Kind byte of a provider entry.
pub const KIND_PROVIDER: u8 = 2;
/// Kind byte of a routing-table peer.
pub const KIND_PEER: u8 = 3;
/// Kind byte of a tombstone; its payload's first byte is the kind it deletes.
pub const KIND_TOMBSTONE: u8 = 4;

/// An entry decoded in place; `kind` may be any byte, the caller decides what it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry<'a> {
    /// The kind byte.
    pub kind: u8,
    /// The key field.
    pub key: [u8; 32],
    /// The sub field.
    pub sub: [u8; 32],
    /// The seq field.
    pub seq: u64,
    /// The expires_ms field.
    pub expires_ms: u64,
    /// The payload.
    pub payload: &'a [u8],
}

/// Why bytes are not an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the length field or the length it announces: a torn write, or the
    /// caller must read more.
    Short,
    /// The length is outside `MIN_LEN..=MAX_LEN`.
    BadLen,
    /// The CRC does not match.
    BadCrc,
}

/// The byte of a kind.
pub fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Record => KIND_RECORD,
        Kind::Provider => KIND_PROVIDER,
        Kind::Peer => KIND_PEER,
    }
}

/// The kind of a byte, if it is a data kind (not a tombstone, not unknown).
pub fn kind_of(byte: u8) -> Option<Kind> {
    match byte {
        KIND_RECORD => Some(Kind::Record),
        KIND_PROVIDER => Some(Kind::Provider),
        KIND_PEER => Some(Kind::Peer),
        _ => None,
    }
}

/// Bytes an entry with `payload_len` bytes of payload takes on disk, length field included.
pub fn encoded_len(payload_len: usize) -> usize {
    LEN_BYTES + MIN_LEN as usize + payload_len
}

/// Appends the entry's bytes to `out`; `TooLarge` (and `out` untouched) past the bound.
pub fn encode(e: &RawEntry<'_>, out: &mut Vec<u8>) -> Result<(), StoreError> {
    if e.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(StoreError::TooLarge);
    }
    // Cannot overflow: the payload is bounded above.
    let len = MIN_LEN + e.payload.len() as u32;
    out.reserve(LEN_BYTES + len as usize);
    out.extend_from_slice(&len.to_le_bytes());
    let body = out.len();
    out.push(e.kind);
    out.extend_from_slice(&e.key);
    out.extend_from_slice(&e.sub);
    out.extend_from_slice(&e.seq.to_le_bytes());
    out.extend_from_slice(&e.expires_ms.to_le_bytes());
    out.extend_from_slice(e.payload);
    let crc = crc32c(&out[body..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The `len` field at the start of `buf`, checked against the bound; `Short` if `buf` holds
/// less than the field.
pub fn read_len(buf: &[u8]) -> Result<u32, DecodeError> {
    let field = buf.first_chunk::<LEN_BYTES>().ok_or(DecodeError::Short)?;
    let len = u32::from_le_bytes(*field);
    if (MIN_LEN..=MAX_LEN).contains(&len) {
        Ok(len)
    } else {
        Err(DecodeError::BadLen)
    }
}

/// Decodes the entry at the start of `buf`, returning it and the bytes it takes; trailing
/// bytes are left for the next entry.
pub fn decode(buf: &[u8]) -> Result<(RawEntry<'_>, usize), DecodeError> {
    let len = read_len(buf)? as usize;
    let body = buf.get(LEN_BYTES..LEN_BYTES + len).ok_or(DecodeError::Short)?;
    let (covered, crc) = body.split_at(len - 4);
    if crc32c(covered) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(DecodeError::BadCrc);
    }
    let (kind, rest) = covered.split_at(1);
    let (key, rest) = rest.split_at(32);
    let (sub, rest) = rest.split_at(32);
    let (seq, rest) = rest.split_at(8);
    let (expires_ms, payload) = rest.split_at(8);
    let entry = RawEntry {
        kind: kind[0],
        key: to_array(key),
        sub: to_array(sub),
        seq: u64::from_le_bytes(to_array(seq)),
        expires_ms: u64::from_le_bytes(to_array(expires_ms)),
        payload,
    };
    Ok((entry, LEN_BYTES + len))
}

/// The raw form of a data entry.
pub fn raw<'a>(id: &EntryKey, seq: u64, expires_ms: u64, payload: &'a [u8]) -> RawEntry<'a> {
    RawEntry { kind: kind_byte(id.kind), key: id.key, sub: id.sub, seq, expires_ms, payload }
}

/// Appends a tombstone deleting `id` (its seq is informative: the deleted entry's).
pub fn encode_tombstone(id: &EntryKey, seq: u64, out: &mut Vec<u8>) {
    let kind = [kind_byte(id.kind)];
    let tomb = RawEntry {
        kind: KIND_TOMBSTONE,
        key: id.key,
        sub: id.sub,
        seq,
        expires_ms: 0,
        payload: &kind,
    };
    // Cannot fail: a one-byte payload is within the bound.
    let _ = encode(&tomb, out);
}

/// `slice` as an array; the callers split exactly `N` bytes.
fn to_array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(slice);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: RawEntry<'static> = RawEntry {
        kind: KIND_RECORD,
        key: [0x11; 32],
        sub: [0; 32],
        seq: 7,
        expires_ms: 0,
        payload: b"hello",
    };

    #[test]
    fn encode_then_decode_gives_back_the_entry_and_its_size() {
        let mut buf = Vec::new();
        encode(&TEMPLATE, &mut buf).unwrap();
        assert_eq!(buf.len(), encoded_len(5));
        buf.extend_from_slice(b"next");
        let (e, used) = decode(&buf).unwrap();
        assert_eq!((e, used), (TEMPLATE, encoded_len(5)));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode(&TEMPLATE, &mut buf).unwrap();
        for i in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(decode(&bad).is_err(), "bit {i} flipped went unnoticed");
        }
    }

    #[test]
    fn lengths_out_of_bounds_are_refused_before_reading_the_body() {
        for len in [0, MIN_LEN - 1, MAX_LEN + 1, u32::MAX] {
            assert_eq!(decode(&len.to_le_bytes()), Err(DecodeError::BadLen), "len {len}");
        }
        assert_eq!(decode(&MAX_LEN.to_le_bytes()), Err(DecodeError::Short));
        assert_eq!(decode(&[1, 0]), Err(DecodeError::Short));
    }

    #[test]
    fn payload_over_the_bound_is_too_large_and_writes_nothing() {
        let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
        let mut out = Vec::new();
        assert_eq!(
            encode(&RawEntry { payload: &big, ..TEMPLATE }, &mut out),
            Err(StoreError::TooLarge)
        );
        assert!(out.is_empty());
        let max = vec![0u8; MAX_PAYLOAD_BYTES];
        encode(&RawEntry { payload: &max, ..TEMPLATE }, &mut out).unwrap();
        assert_eq!(read_len(&out), Ok(MAX_LEN));
    }
}
