//! Record and provider validation (proto-spec/records.md §3, §5, §6): pure functions that decide
//! whether a record is well-formed, whether it belongs under a key, whether it may replace the
//! record held under that key, and which of several answers to a GET wins.
//!
//! Nothing here holds state; the store (`memstore`) applies these checks in the order of
//! records.md §3 and adds lifetimes and quotas. The checks are split by step so that the store
//! can report the first rule that applies, as the spec requires:
//!
//! | step (§3) | function |
//! |---|---|
//! | 0 bounds | [`check_bounds`] |
//! | 1 request | `ttl = 0` in the store; [`check_replace`] / [`check_absent`] for `expected_seq` |
//! | 2 key | [`Record::key`] |
//! | 3 signature | [`check_signature`] |
//! | 4 sequence, 5 compare-and-swap | [`check_replace`], or [`check_absent`] when nothing is held |
//! | 6 value size | [`check_value_size`] |
//! | 7 quotas | the store |
//!
//! [`validate`] bundles steps 0, 2, 3 and 6 for callers that need no ordering, and
//! [`validate_for_key`] is the §6 check of a FIND_VALUE answer.

use std::cmp::Ordering;
use std::fmt;

use crate::bytes::ByteBuf;
use crate::identity::NodeId;
use crate::wire::messages::{
    ErrorCode, Key, MutableRecord, PeerInfo, Record, MAX_ADDRS_PER_PEER, MAX_SALT_BYTES,
    MAX_VALUE_BYTES,
};

/// Why a record or provider announcement was refused. Each variant maps to one wire
/// [`ErrorCode`] ([`RecordError::code`]) and one metric label ([`RecordError::name`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum RecordError {
    /// The requested lifetime is zero, or so long that the expiry instant overflows
    /// (records.md §3 step 1, §5). Wire code `BadRequest`.
    BadTtl,
    /// `expected_seq` was given with an immutable record (records.md §3 step 1). Wire code
    /// `BadRequest`.
    CasOnImmutable,
    /// A salt above `MAX_SALT_BYTES` (a wire bound, messages.md §7). Wire code `BadRequest`.
    SaltTooLarge,
    /// A provider with more than `MAX_ADDRS_PER_PEER` addresses (a wire bound, messages.md §7).
    /// Wire code `BadRequest`.
    TooManyAddrs,
    /// The record does not belong under the key it is presented for (records.md §6).
    KeyMismatch,
    /// A mutable record's signature does not verify (records.md §3 step 3).
    BadSignature,
    /// A mutable record's `seq` is below the held one (records.md §3 step 4).
    StaleSequence,
    /// Same `seq` as the held record but another value (records.md §3 step 4).
    SequenceConflict,
    /// `expected_seq` does not match the held record's `seq`, or names a record when none is
    /// held (records.md §3 step 5).
    CasMismatch,
    /// The value exceeds this holder's limit (records.md §3 step 6).
    ValueTooLarge,
    /// The storing peer has used its quota here (records.md §3 step 7).
    QuotaExceeded,
    /// A global cap of this holder, or the per-key provider cap, is reached (records.md §3
    /// step 7).
    StorageFull,
    /// `AddProvider.provider.id` is not the sender (records.md §5).
    ProviderMismatch,
}

impl RecordError {
    /// Number of variants: the length of per-reason counter arrays.
    pub const COUNT: usize = 13;

    /// Every variant, in declaration order (`ALL[e.index()] == e`).
    pub const ALL: [RecordError; RecordError::COUNT] = [
        Self::BadTtl,
        Self::CasOnImmutable,
        Self::SaltTooLarge,
        Self::TooManyAddrs,
        Self::KeyMismatch,
        Self::BadSignature,
        Self::StaleSequence,
        Self::SequenceConflict,
        Self::CasMismatch,
        Self::ValueTooLarge,
        Self::QuotaExceeded,
        Self::StorageFull,
        Self::ProviderMismatch,
    ];

    /// The code to answer on the wire (proto-spec/messages.md §3.3).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadTtl | Self::CasOnImmutable | Self::SaltTooLarge | Self::TooManyAddrs => {
                ErrorCode::BadRequest
            }
            Self::KeyMismatch => ErrorCode::KeyMismatch,
            Self::BadSignature => ErrorCode::BadSignature,
            Self::StaleSequence => ErrorCode::StaleSequence,
            Self::SequenceConflict => ErrorCode::SequenceConflict,
            Self::CasMismatch => ErrorCode::CasMismatch,
            Self::ValueTooLarge => ErrorCode::ValueTooLarge,
            Self::QuotaExceeded => ErrorCode::QuotaExceeded,
            Self::StorageFull => ErrorCode::StorageFull,
            Self::ProviderMismatch => ErrorCode::ProviderMismatch,
        }
    }

    /// Metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::BadTtl => "bad_ttl",
            Self::CasOnImmutable => "cas_on_immutable",
            Self::SaltTooLarge => "salt_too_large",
            Self::TooManyAddrs => "too_many_addrs",
            Self::KeyMismatch => "key_mismatch",
            Self::BadSignature => "bad_signature",
            Self::StaleSequence => "stale_sequence",
            Self::SequenceConflict => "sequence_conflict",
            Self::CasMismatch => "cas_mismatch",
            Self::ValueTooLarge => "value_too_large",
            Self::QuotaExceeded => "quota_exceeded",
            Self::StorageFull => "storage_full",
            Self::ProviderMismatch => "provider_mismatch",
        }
    }

    /// Position in [`RecordError::ALL`], for counter arrays.
    pub fn index(&self) -> usize {
        *self as usize
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadTtl => "the lifetime is zero or out of range",
            Self::CasOnImmutable => "expected_seq given for an immutable record",
            Self::SaltTooLarge => "the salt exceeds MAX_SALT_BYTES",
            Self::TooManyAddrs => "the provider has more than MAX_ADDRS_PER_PEER addresses",
            Self::KeyMismatch => "the record does not belong under this key",
            Self::BadSignature => "the record's signature does not verify",
            Self::StaleSequence => "the record's seq is below the held record's",
            Self::SequenceConflict => "same seq as the held record but a different value",
            Self::CasMismatch => "expected_seq does not match the held record",
            Self::ValueTooLarge => "the value exceeds this holder's limit",
            Self::QuotaExceeded => "the peer has used its storage quota",
            Self::StorageFull => "this holder's storage is full",
            Self::ProviderMismatch => "the provider is not the sender",
        })
    }
}

impl std::error::Error for RecordError {}

/// What an accepted record does to the one held under its key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Replace {
    /// The same record (same value, and same `seq` if mutable): the held record stays and
    /// only its lifetime may grow (records.md §4).
    Refresh,
    /// A mutable record with a higher `seq`: it replaces the held one.
    Newer,
}

/// Content checks (records.md §3 steps 0, 2, 3, 6): wire bounds, the holder's value limit
/// `max_value_bytes` (capped at `MAX_VALUE_BYTES`) and the signature. Returns the key the
/// record belongs under. Costs one signature verification for a mutable record.
pub fn validate(record: &Record, max_value_bytes: usize) -> Result<Key, RecordError> {
    check_bounds(record)?;
    check_signature(record)?;
    check_value_size(record, max_value_bytes)?;
    Ok(record.key())
}

/// Checks a record returned for `key` by a FIND_VALUE (records.md §6): it must belong under
/// `key` (checked first, as it is cheaper than the signature) and pass [`validate`].
pub fn validate_for_key(
    record: &Record,
    key: &Key,
    max_value_bytes: usize,
) -> Result<(), RecordError> {
    if record.key() != *key {
        return Err(RecordError::KeyMismatch);
    }
    validate(record, max_value_bytes).map(|_| ())
}

/// Whether `new` may replace `held`, both under the same key (records.md §3 steps 1, 4, 5).
///
/// The sequence rule comes before compare-and-swap, so a stale record reports
/// `StaleSequence` whatever `expected_seq` says, and a refresh with a wrong `expected_seq`
/// is a `CasMismatch`. Records of different keys give `KeyMismatch`. Does not check
/// signatures: both records must already have passed [`check_signature`].
pub fn check_replace(
    held: &Record,
    new: &Record,
    expected_seq: Option<u64>,
) -> Result<Replace, RecordError> {
    match (held, new) {
        (Record::Immutable { value: held }, Record::Immutable { value: new }) => {
            if expected_seq.is_some() {
                return Err(RecordError::CasOnImmutable);
            }
            // Equal keys imply equal values, short of a SHA-256 collision.
            if held == new {
                Ok(Replace::Refresh)
            } else {
                Err(RecordError::KeyMismatch)
            }
        }
        (Record::Mutable(held), Record::Mutable(new)) => {
            if held.public_key != new.public_key || held.salt != new.salt {
                return Err(RecordError::KeyMismatch);
            }
            let replace = match new.seq.cmp(&held.seq) {
                Ordering::Less => return Err(RecordError::StaleSequence),
                Ordering::Equal if new.value != held.value => {
                    return Err(RecordError::SequenceConflict)
                }
                Ordering::Equal => Replace::Refresh,
                Ordering::Greater => Replace::Newer,
            };
            match expected_seq {
                Some(expected) if expected != held.seq => Err(RecordError::CasMismatch),
                _ => Ok(replace),
            }
        }
        (Record::Immutable { .. }, Record::Mutable(_)) => Err(RecordError::KeyMismatch),
        (Record::Mutable(_), Record::Immutable { .. }) => {
            if expected_seq.is_some() {
                return Err(RecordError::CasOnImmutable);
            }
            Err(RecordError::KeyMismatch)
        }
    }
}

/// Compare-and-swap when no record is held under the key (records.md §3 step 5): only
/// `expected_seq = None` matches, so `Some(0)` fails too (`CasMismatch`). An immutable record
/// with any `expected_seq` is `CasOnImmutable` (step 1).
pub fn check_absent(new: &Record, expected_seq: Option<u64>) -> Result<(), RecordError> {
    match (new, expected_seq) {
        (_, None) => Ok(()),
        (Record::Immutable { .. }, Some(_)) => Err(RecordError::CasOnImmutable),
        (Record::Mutable(_), Some(_)) => Err(RecordError::CasMismatch),
    }
}

/// The wire bounds of messages.md §7 (records.md §3 step 0): salt at most `MAX_SALT_BYTES`,
/// value at most `MAX_VALUE_BYTES`. The decoder already enforces them; this guards records
/// built locally or handed over by other layers.
pub fn check_bounds(record: &Record) -> Result<(), RecordError> {
    if let Record::Mutable(m) = record {
        if m.salt.0.len() > MAX_SALT_BYTES {
            return Err(RecordError::SaltTooLarge);
        }
    }
    check_value_size(record, MAX_VALUE_BYTES)
}

/// Verifies a mutable record's signature strictly (records.md §3 step 3); immutable records
/// pass. Costs one Ed25519 verification.
pub fn check_signature(record: &Record) -> Result<(), RecordError> {
    match record {
        Record::Mutable(m) if !m.verify() => Err(RecordError::BadSignature),
        _ => Ok(()),
    }
}

/// The holder's value limit (records.md §3 step 6); `max_value_bytes` is capped at
/// `MAX_VALUE_BYTES`.
pub fn check_value_size(record: &Record, max_value_bytes: usize) -> Result<(), RecordError> {
    if value_len(record) > max_value_bytes.min(MAX_VALUE_BYTES) {
        return Err(RecordError::ValueTooLarge);
    }
    Ok(())
}

/// The `AddProvider` checks that need the sender (records.md §5): `provider.id` must be the
/// sender's authenticated id, and the address list must respect its wire bound.
pub fn check_provider(sender: &NodeId, provider: &PeerInfo) -> Result<(), RecordError> {
    if provider.id != *sender {
        return Err(RecordError::ProviderMismatch);
    }
    if provider.addrs.len() > MAX_ADDRS_PER_PEER {
        return Err(RecordError::TooManyAddrs);
    }
    Ok(())
}

/// Picks the answer to use among records for one key, all already validated for it
/// (records.md §6): the mutable record with the highest `seq` (the first one on a tie), or
/// the first record when they are immutable. `None` for no records.
pub fn best<'a>(records: impl IntoIterator<Item = &'a Record>) -> Option<&'a Record> {
    records.into_iter().fold(None, |best, candidate| match (best, candidate) {
        (None, _) => Some(candidate),
        (Some(Record::Mutable(b)), Record::Mutable(c)) if c.seq > b.seq => Some(candidate),
        (Some(b), _) => Some(b),
    })
}

/// `record` with an empty value: what a holder keeps of a record whose value went cold
/// (everything else, signature included, stays, so the record's identity can be checked).
pub fn without_value(record: &Record) -> Record {
    match record {
        Record::Immutable { .. } => Record::Immutable { value: ByteBuf::default() },
        Record::Mutable(m) => {
            Record::Mutable(MutableRecord { value: ByteBuf::default(), ..m.clone() })
        }
    }
}

/// Bytes of the record's value.
pub fn value_len(record: &Record) -> usize {
    match record {
        Record::Immutable { value } => value.0.len(),
        Record::Mutable(m) => m.value.0.len(),
    }
}

/// Bytes of the record's salt (0 for an immutable record).
pub fn salt_len(record: &Record) -> usize {
    match record {
        Record::Immutable { .. } => 0,
        Record::Mutable(m) => m.salt.0.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::ByteBuf;
    use crate::identity::Keypair;
    use crate::wire::messages::MutableRecord;
    use crate::wire::signing::immutable_key;

    fn immutable(value: &[u8]) -> Record {
        Record::Immutable { value: ByteBuf::from(value.to_vec()) }
    }

    fn signed(seed: u8, salt: &[u8], seq: u64, value: &[u8]) -> MutableRecord {
        MutableRecord::sign(&Keypair::from_seed([seed; 32]), salt.to_vec(), seq, value.to_vec())
    }

    fn mutable(seed: u8, salt: &[u8], seq: u64, value: &[u8]) -> Record {
        Record::Mutable(signed(seed, salt, seq, value))
    }

    // ---- Immutable records ----

    #[test]
    fn immutable_record_validates_under_its_hash() {
        let r = immutable(b"hi");
        let key = validate(&r, MAX_VALUE_BYTES).unwrap();
        // records.md §1 example.
        assert_eq!(
            key.to_hex(),
            "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"
        );
        assert_eq!(validate_for_key(&r, &key, MAX_VALUE_BYTES), Ok(()));
    }

    #[test]
    fn immutable_record_under_wrong_hash_is_key_mismatch() {
        let r = immutable(b"hi");
        let other = immutable_key(b"ho");
        assert_eq!(validate_for_key(&r, &other, MAX_VALUE_BYTES), Err(RecordError::KeyMismatch));
    }

    #[test]
    fn oversize_value_is_refused_at_holder_limit_and_wire_bound() {
        let r = immutable(&[0; 101]);
        assert_eq!(validate(&r, 100), Err(RecordError::ValueTooLarge));
        assert!(validate(&r, 101).is_ok());
        let huge = immutable(&vec![0; MAX_VALUE_BYTES + 1]);
        // A holder limit above the wire bound does not lift the wire bound.
        assert_eq!(validate(&huge, usize::MAX), Err(RecordError::ValueTooLarge));
        assert_eq!(check_bounds(&huge), Err(RecordError::ValueTooLarge));
    }

    // ---- Mutable records ----

    #[test]
    fn mutable_record_validates_and_matches_spec_example() {
        let r = mutable(1, b"s", 7, b"hi");
        let key = validate(&r, MAX_VALUE_BYTES).unwrap();
        // records.md §7 example.
        assert_eq!(
            key.to_hex(),
            "88a2ebd55685cf7ee2897aa4c9f15f265a901719e18888d904b519389300f6c3"
        );
        assert_eq!(validate_for_key(&r, &key, MAX_VALUE_BYTES), Ok(()));
    }

    #[test]
    fn bad_signature_is_refused() {
        let mut m = signed(1, b"s", 7, b"hi");
        m.signature.0[0] ^= 1;
        let r = Record::Mutable(m);
        assert_eq!(validate(&r, MAX_VALUE_BYTES), Err(RecordError::BadSignature));
        assert_eq!(check_signature(&r), Err(RecordError::BadSignature));
    }

    #[test]
    fn tampered_salt_fails_signature_and_moves_key() {
        let good = signed(1, b"s", 7, b"hi");
        let mut bad = good.clone();
        bad.salt = b"t".to_vec().into();
        assert_ne!(good.key(), bad.key());
        let bad = Record::Mutable(bad);
        assert_eq!(validate(&bad, MAX_VALUE_BYTES), Err(RecordError::BadSignature));
        // Presented under the original key, the cheap key check fires first.
        let err = validate_for_key(&bad, &good.key(), MAX_VALUE_BYTES);
        assert_eq!(err, Err(RecordError::KeyMismatch));
    }

    #[test]
    fn salt_over_bound_is_refused() {
        let r = mutable(1, &[7; MAX_SALT_BYTES + 1], 0, b"v");
        assert_eq!(validate(&r, MAX_VALUE_BYTES), Err(RecordError::SaltTooLarge));
        assert!(validate(&mutable(1, &[7; MAX_SALT_BYTES], 0, b"v"), MAX_VALUE_BYTES).is_ok());
    }

    // ---- Replacement (records.md §3 steps 4 and 5) ----

    #[test]
    fn sequence_rules_decide_replacement() {
        let held = mutable(1, b"s", 5, b"v5");
        let cases = [
            (mutable(1, b"s", 4, b"v4"), Err(RecordError::StaleSequence)),
            (mutable(1, b"s", 5, b"other"), Err(RecordError::SequenceConflict)),
            (mutable(1, b"s", 5, b"v5"), Ok(Replace::Refresh)),
            (mutable(1, b"s", 6, b"v6"), Ok(Replace::Newer)),
            (mutable(1, b"t", 6, b"v6"), Err(RecordError::KeyMismatch)),
            (mutable(2, b"s", 6, b"v6"), Err(RecordError::KeyMismatch)),
        ];
        for (new, want) in cases {
            assert_eq!(check_replace(&held, &new, None), want, "{new:?}");
        }
    }

    #[test]
    fn compare_and_swap_checks_held_seq_after_sequence_rule() {
        let held = mutable(1, b"s", 5, b"v5");
        let newer = mutable(1, b"s", 6, b"v6");
        assert_eq!(check_replace(&held, &newer, Some(5)), Ok(Replace::Newer));
        assert_eq!(check_replace(&held, &newer, Some(4)), Err(RecordError::CasMismatch));
        // Sequence (step 4) is decided before CAS (step 5).
        let stale = mutable(1, b"s", 4, b"v4");
        assert_eq!(check_replace(&held, &stale, Some(9)), Err(RecordError::StaleSequence));
        assert_eq!(check_replace(&held, &held, Some(4)), Err(RecordError::CasMismatch));
    }

    #[test]
    fn compare_and_swap_on_absent_key_accepts_only_none() {
        let new = mutable(1, b"s", 0, b"v");
        assert_eq!(check_absent(&new, None), Ok(()));
        assert_eq!(check_absent(&new, Some(0)), Err(RecordError::CasMismatch));
        assert_eq!(check_absent(&immutable(b"v"), Some(0)), Err(RecordError::CasOnImmutable));
        assert_eq!(check_absent(&immutable(b"v"), None), Ok(()));
    }

    #[test]
    fn immutable_same_value_refreshes_and_refuses_cas() {
        let r = immutable(b"v");
        assert_eq!(check_replace(&r, &r, None), Ok(Replace::Refresh));
        assert_eq!(check_replace(&r, &r, Some(0)), Err(RecordError::CasOnImmutable));
        let m = mutable(1, b"", 0, b"v");
        assert_eq!(check_replace(&r, &m, None), Err(RecordError::KeyMismatch));
        assert_eq!(check_replace(&m, &r, None), Err(RecordError::KeyMismatch));
    }

    // ---- Providers, best answer, error mapping ----

    #[test]
    fn provider_must_be_the_sender_with_bounded_addrs() {
        let sender = NodeId::from_bytes([1; 32]);
        let mut p = PeerInfo { id: sender, addrs: vec![] };
        assert_eq!(check_provider(&sender, &p), Ok(()));
        let other = NodeId::from_bytes([2; 32]);
        assert_eq!(check_provider(&other, &p), Err(RecordError::ProviderMismatch));
        p.addrs = vec!["127.0.0.1:1".parse().unwrap(); MAX_ADDRS_PER_PEER + 1];
        assert_eq!(check_provider(&sender, &p), Err(RecordError::TooManyAddrs));
    }

    #[test]
    fn best_picks_highest_seq_first_on_tie() {
        let a = mutable(1, b"s", 3, b"a");
        let b = mutable(1, b"s", 9, b"b");
        let b2 = mutable(1, b"s", 9, b"b2");
        let c = mutable(1, b"s", 5, b"c");
        assert_eq!(best([&a, &b, &b2, &c]), Some(&b));
        assert_eq!(best([&c, &a]), Some(&c));
        let (x, y) = (immutable(b"x"), immutable(b"x"));
        assert!(std::ptr::eq(best([&x, &y]).unwrap(), &x));
        assert_eq!(best(std::iter::empty::<&Record>()), None);
    }

    #[test]
    fn every_error_has_a_code_a_unique_name_and_its_index() {
        let mut names: Vec<&str> = RecordError::ALL.iter().map(|e| e.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RecordError::COUNT);
        for (i, e) in RecordError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(RecordError::BadTtl.code(), ErrorCode::BadRequest);
        assert_eq!(RecordError::CasMismatch.code(), ErrorCode::CasMismatch);
        assert_eq!(RecordError::StorageFull.code(), ErrorCode::StorageFull);
    }
}
