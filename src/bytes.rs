//! Byte-string field types with a fixed wire layout and a readable text form.
//!
//! On the wire (bincode, not human-readable) a [`Bytes32`] is 32 raw bytes, a [`Bytes64`] 64 raw
//! bytes, and a [`ByteBuf`] a `u64` little-endian length followed by the bytes
//! (proto-spec/messages.md §1). In human-readable formats (the JSON test vectors) all three
//! are lower-case hex strings, so vectors can be read and written by hand.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

/// Exactly 32 bytes: ids, keys, public keys, message ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes32(pub [u8; 32]);

/// Exactly 64 bytes: Ed25519 signatures.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bytes64(pub [u8; 64]);

/// A length-prefixed byte string (values, payloads, salts). Its bound is enforced by the
/// message that contains it, not here.
///
/// Shared, not copied: a clone is a reference count, so a record served to many peers, or a
/// payload sent to many, is one allocation however many answers carry it.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct ByteBuf(pub Arc<[u8]>);

impl ByteBuf {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Their length.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Decodes hex (either case) into bytes; `None` on odd length or a non-hex digit.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

/// Decodes exactly 64 hex digits.
pub(crate) fn hex_decode_32(s: &str) -> Option<[u8; 32]> {
    hex_decode(s)?.try_into().ok()
}

macro_rules! fixed_bytes {
    ($name:ident, $len:expr) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    return s.serialize_str(&hex_encode(&self.0));
                }
                let mut t = s.serialize_tuple($len)?;
                for b in &self.0 {
                    t.serialize_element(b)?;
                }
                t.end()
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} bytes", $len)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        let bytes = hex_decode(v).ok_or_else(|| E::custom("invalid hex"))?;
                        let arr =
                            bytes.try_into().map_err(|_| E::invalid_length(v.len() / 2, &self))?;
                        Ok($name(arr))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<$name, A::Error> {
                        let mut out = [0u8; $len];
                        for (i, slot) in out.iter_mut().enumerate() {
                            *slot = seq
                                .next_element()?
                                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                        }
                        Ok($name(out))
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(V)
                } else {
                    d.deserialize_tuple($len, V)
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex_encode(&self.0))
            }
        }
    };
}

fixed_bytes!(Bytes32, 32);
fixed_bytes!(Bytes64, 64);

impl Serialize for ByteBuf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex_encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteBuf, E> {
                hex_decode(v).map(ByteBuf::from).ok_or_else(|| E::custom("invalid hex"))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.into()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf::from(v))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_byte_buf(V)
        }
    }
}

impl fmt::Debug for ByteBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        if self.0.len() <= SHOWN {
            f.write_str(&hex_encode(&self.0))
        } else {
            write!(f, "{}..({} bytes)", hex_encode(&self.0[..SHOWN]), self.0.len())
        }
    }
}

impl From<Vec<u8>> for ByteBuf {
    fn from(v: Vec<u8>) -> ByteBuf {
        ByteBuf(v.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex_encode(&[0x00, 0xff, 0x1a]), "00ff1a");
        assert_eq!(hex_decode("00FF1a"), Some(vec![0, 255, 26]));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("0g"), None);
    }
}
