//! Signature inputs, record keys and message ids (proto-spec/records.md, messages.md §5.1).
//!
//! Every signature petrel makes is over a byte string that starts with a domain separator
//! naming its purpose and protocol version, so a signature made for one purpose can never be
//! replayed as another. Integers are little-endian; variable-length fields are preceded by
//! their length as a `u64`, so the encoding is injective.

use sha2::{Digest, Sha256};

use super::messages::{GossipMessage, Key, MessageId, MutableRecord, Record};
use crate::bytes::{ByteBuf, Bytes32, Bytes64};
use crate::identity::{verify_signature, verify_strict_with, Keypair, NodeId, StrictKey};

/// Domain separator of the mutable-record signing input.
pub const MUTABLE_RECORD_DOMAIN: &[u8] = b"petrel/v1/mutable-record";
/// Domain separator of the gossip-message signing input.
pub const GOSSIP_MESSAGE_DOMAIN: &[u8] = b"petrel/v1/gossip-message";
/// Domain separator of the gossip message id hash.
pub const MESSAGE_ID_DOMAIN: &[u8] = b"petrel/v1/message-id";
/// Domain separator of a topic's DHT key (messages.md §5.2).
pub const TOPIC_KEY_DOMAIN: &[u8] = b"petrel/v1/topic";

/// `MUTABLE_RECORD_DOMAIN ‖ u64(len salt) ‖ salt ‖ u64(seq) ‖ u64(len value) ‖ value`.
pub fn mutable_record_signing_input(salt: &[u8], seq: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MUTABLE_RECORD_DOMAIN.len() + 24 + salt.len() + value.len());
    out.extend_from_slice(MUTABLE_RECORD_DOMAIN);
    put_bytes(&mut out, salt);
    out.extend_from_slice(&seq.to_le_bytes());
    put_bytes(&mut out, value);
    out
}

/// `GOSSIP_MESSAGE_DOMAIN ‖ u64(seqno) ‖ u64(len topic) ‖ topic ‖ u64(len payload) ‖ payload`.
pub fn gossip_signing_input(seqno: u64, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(GOSSIP_MESSAGE_DOMAIN.len() + 24 + topic.len() + payload.len());
    out.extend_from_slice(GOSSIP_MESSAGE_DOMAIN);
    out.extend_from_slice(&seqno.to_le_bytes());
    put_bytes(&mut out, topic.as_bytes());
    put_bytes(&mut out, payload);
    out
}

/// Key of an immutable value: `SHA-256(value)`.
pub fn immutable_key(value: &[u8]) -> Key {
    NodeId::from_bytes(Sha256::digest(value).into())
}

/// The DHT key under which subscribers of `topic` announce themselves as providers:
/// `SHA-256(TOPIC_KEY_DOMAIN ‖ u64(len topic) ‖ topic)` (messages.md §5.2). No record or
/// content key can collide with it by accident, and a topic named like a value does not
/// share the value's key.
pub fn topic_key(topic: &str) -> Key {
    let mut h = Sha256::new();
    h.update(TOPIC_KEY_DOMAIN);
    h.update((topic.len() as u64).to_le_bytes());
    h.update(topic.as_bytes());
    NodeId::from_bytes(h.finalize().into())
}

/// Key of a mutable record: `SHA-256(public key ‖ salt)`.
pub fn mutable_key(public_key: &[u8; 32], salt: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update(public_key);
    h.update(salt);
    NodeId::from_bytes(h.finalize().into())
}

impl Record {
    /// The key this record is stored under, derived from its contents.
    pub fn key(&self) -> Key {
        match self {
            Record::Immutable { value } => immutable_key(&value.0),
            Record::Mutable(m) => m.key(),
        }
    }
}

impl MutableRecord {
    /// Builds and signs a record with `keypair`.
    pub fn sign(keypair: &Keypair, salt: Vec<u8>, seq: u64, value: Vec<u8>) -> MutableRecord {
        let signature = keypair.sign(&mutable_record_signing_input(&salt, seq, &value));
        MutableRecord {
            public_key: Bytes32(keypair.public_key()),
            salt: ByteBuf::from(salt),
            seq,
            value: ByteBuf::from(value),
            signature: Bytes64(signature),
        }
    }

    /// Whether the signature verifies under `public_key`.
    pub fn verify(&self) -> bool {
        let input = mutable_record_signing_input(&self.salt.0, self.seq, &self.value.0);
        verify_signature(&self.public_key.0, &input, &self.signature.0)
    }

    /// `SHA-256(public key ‖ salt)`.
    pub fn key(&self) -> Key {
        mutable_key(&self.public_key.0, &self.salt.0)
    }
}

impl GossipMessage {
    /// Builds and signs a message with `keypair` as author.
    pub fn sign(keypair: &Keypair, seqno: u64, topic: String, payload: Vec<u8>) -> GossipMessage {
        let signature = keypair.sign(&gossip_signing_input(seqno, &topic, &payload));
        GossipMessage {
            author: Bytes32(keypair.public_key()),
            seqno,
            topic,
            payload: ByteBuf::from(payload),
            signature: Bytes64(signature),
        }
    }

    /// Whether the author's signature verifies.
    pub fn verify(&self) -> bool {
        StrictKey::new(&self.author.0).is_ok_and(|key| self.verify_with(&key))
    }

    /// [`verify`](Self::verify) with the author's key already decoded (`author_keys`); false
    /// if `key` is not the author's.
    pub fn verify_with(&self, key: &StrictKey) -> bool {
        let input = gossip_signing_input(self.seqno, &self.topic, &self.payload.0);
        key.as_bytes() == &self.author.0
            && verify_strict_with(key, &input, &self.signature.0).is_ok()
    }

    /// `SHA-256(MESSAGE_ID_DOMAIN ‖ author ‖ u64(seqno))`: cheap to compute before the
    /// signature is checked, which IDONTWANT and duplicate suppression need.
    pub fn id(&self) -> MessageId {
        let mut h = Sha256::new();
        h.update(MESSAGE_ID_DOMAIN);
        h.update(self.author.0);
        h.update(self.seqno.to_le_bytes());
        Bytes32(h.finalize().into())
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutable_record_signs_and_detects_tampering() {
        let kp = Keypair::from_seed([1; 32]);
        let rec = MutableRecord::sign(&kp, b"salt".to_vec(), 3, b"value".to_vec());
        assert!(rec.verify());
        for tamper in [
            |r: &mut MutableRecord| r.seq += 1,
            |r: &mut MutableRecord| r.value = [r.value.as_slice(), &[0]].concat().into(),
            |r: &mut MutableRecord| r.salt = Vec::new().into(),
            |r: &mut MutableRecord| r.public_key.0[0] ^= 1,
        ] {
            let mut bad = rec.clone();
            tamper(&mut bad);
            assert!(!bad.verify());
        }
    }

    #[test]
    fn signing_input_is_injective_across_field_boundaries() {
        // Moving a byte from salt to value must change the input.
        let a = mutable_record_signing_input(b"ab", 1, b"c");
        let b = mutable_record_signing_input(b"a", 1, b"bc");
        assert_ne!(a, b);
        assert!(a.starts_with(b"petrel/v1/mutable-record"));
    }

    #[test]
    fn record_keys_follow_the_spec() {
        let v = b"hello".to_vec();
        let expected: [u8; 32] = Sha256::digest(&v).into();
        let rec = Record::Immutable { value: ByteBuf::from(v) };
        assert_eq!(rec.key().as_bytes(), &expected);

        let kp = Keypair::from_seed([2; 32]);
        let m = MutableRecord::sign(&kp, b"s".to_vec(), 0, vec![]);
        let mut h = Sha256::new();
        h.update(kp.public_key());
        h.update(b"s");
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(Record::Mutable(m).key().as_bytes(), &expected);
    }

    #[test]
    fn gossip_message_signature_and_id() {
        let kp = Keypair::from_seed([3; 32]);
        let m = GossipMessage::sign(&kp, 9, "t".into(), b"payload".to_vec());
        assert!(m.verify());
        let mut other_topic = m.clone();
        other_topic.topic = "u".into();
        assert!(!other_topic.verify());
        // The id depends on author and seqno only.
        assert_eq!(other_topic.id(), m.id());
        let next = GossipMessage::sign(&kp, 10, "t".into(), b"payload".to_vec());
        assert_ne!(next.id(), m.id());
    }

    #[test]
    fn topic_key_matches_the_spec_vector() {
        // messages.md §5.2, the worked example.
        let key = topic_key("news");
        assert_eq!(key.to_hex(), TOPIC_NEWS_KEY);
        assert_ne!(key, immutable_key(b"news"));
    }

    /// `topic_key("news")`, as printed in proto-spec/messages.md §5.2.
    const TOPIC_NEWS_KEY: &str = "a124b52493abb7b99001b740aec0a1cf62c9e599e1f51b49f43c8967b8cd4faf";

    #[test]
    fn gossip_signature_does_not_verify_as_record() {
        // Domain separation: the same key signing the "same" fields for another purpose.
        let kp = Keypair::from_seed([4; 32]);
        let g = GossipMessage::sign(&kp, 1, "x".into(), b"v".to_vec());
        let as_record = MutableRecord {
            public_key: g.author,
            salt: ByteBuf::from(b"x".to_vec()),
            seq: 1,
            value: ByteBuf::from(b"v".to_vec()),
            signature: g.signature,
        };
        assert!(!as_record.verify());
    }
}
