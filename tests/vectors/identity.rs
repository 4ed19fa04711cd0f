//! The vectors of proto-spec/identity.md and transport.md §2, and their generator:
//! - `signature/`: strict Ed25519 verification (identity.md §1), one vector per check;
//! - `identity/`: key pairs with their NodeId, id proof-of-work, key file and TLS
//!   SubjectPublicKeyInfo (identity.md §2 to §4, transport.md §2);
//! - `key_file/`: key file contents a loader refuses (identity.md §4);
//! - `spki/`: certificate entries a TLS peer refuses (transport.md §2).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use petrel::bytes::hex_encode;
use petrel::identity::{
    id_pow_bits, meets_id_pow, verify_strict, KeyFileError, Keypair, NodeId, SignatureError,
};
use petrel::transport::tls::{ed25519_spki, spki_public_key, ED25519_SPKI_PREFIX};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{check_all, check_common, hex_field, keypair, load, pretty_json, str_field};

/// The vector sets of this module, in the order the README shows them.
pub const SETS: &[&str] = &["signature", "identity", "key_file", "spki"];

/// Every `SignatureError`, in the order of the checks of identity.md §1; held to the names
/// listed there by `every_signature_error_is_in_the_spec_and_has_a_vector`.
const ALL_SIGNATURE_ERRORS: &[SignatureError] = &[
    SignatureError::KeyNonCanonical,
    SignatureError::KeyNotOnCurve,
    SignatureError::KeySmallOrder,
    SignatureError::RNonCanonical,
    SignatureError::RNotOnCurve,
    SignatureError::RSmallOrder,
    SignatureError::SNonCanonical,
    SignatureError::EquationFails,
];

/// Every `KeyFileError`, in the order of identity.md §4.
const ALL_KEY_FILE_ERRORS: &[KeyFileError] = &[
    KeyFileError::Truncated,
    KeyFileError::TrailingBytes,
    KeyFileError::BadMagic,
    KeyFileError::KeyMismatch,
];

/// The alert a receiver fails the handshake with for a malformed certificate entry.
const BAD_CERTIFICATE: &str = "bad_certificate";

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn signature_vectors_verify_or_fail_with_their_error() {
    let results = check_all(&load("signature"), |v| {
        check_common(v, &["name", "description", "public_key", "message", "signature", "error"])?;
        let key: [u8; 32] = fixed(&hex_field(&v.json, "public_key")?)?;
        let signature: [u8; 64] = fixed(&hex_field(&v.json, "signature")?)?;
        let message = hex_field(&v.json, "message")?;
        let expected = v.json.get("error").map(|_| str_field(&v.json, "error")).transpose()?;
        let got = verify_strict(&key, &message, &signature).err().map(|e| e.name());
        if got != expected {
            return Err(format!("verification gives {got:?}, the vector says {expected:?}"));
        }
        Ok(got)
    });
    assert!(results.iter().any(|(_, e)| e.is_none()), "no signature vector verifies");
}

#[test]
fn every_signature_error_is_in_the_spec_and_has_a_vector() {
    let spec = fs::read_to_string(super::vectors_dir().join("../identity.md")).expect("identity");
    let section = spec.split("## 1.").nth(1).and_then(|s| s.split("## 2.").next()).expect("§1");
    let in_spec: BTreeSet<&str> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| ["key_", "r_", "s_", "equation_"].iter().any(|p| w.starts_with(p)))
        .collect();
    let in_code: BTreeSet<&str> = ALL_SIGNATURE_ERRORS.iter().map(SignatureError::name).collect();
    assert_eq!(in_spec, in_code, "identity.md §1 and ALL_SIGNATURE_ERRORS name other checks");
    for e in ALL_SIGNATURE_ERRORS {
        must_be_listed(e);
    }
    let errors = errors_of("signature");
    let missing: Vec<_> = in_code.iter().filter(|e| !errors.contains(**e)).collect();
    assert!(missing.is_empty(), "no signature vector fails with {missing:?}");
}

#[test]
fn identity_vectors_derive_their_values() {
    let fields = [
        "name",
        "description",
        "seed",
        "public_key",
        "node_id",
        "id_pow_hash",
        "id_pow_bits",
        "difficulty",
        "meets_difficulty",
        "key_file",
        "spki",
    ];
    let results = check_all(&load("identity"), |v| {
        check_common(v, &fields)?;
        let keypair = Keypair::from_seed(fixed(&hex_field(&v.json, "seed")?)?);
        let key = keypair.public_key();
        let same = |field: &str, value: &[u8]| -> Result<(), String> {
            match hex_field(&v.json, field)? == value {
                true => Ok(()),
                false => Err(format!("\"{field}\" is not {}", hex_encode(value))),
            }
        };
        same("public_key", &key)?;
        // identity.md §2: NodeId = SHA-256(public key).
        same("node_id", &Sha256::digest(key))?;
        same("node_id", keypair.node_id().as_bytes())?;
        // identity.md §3: SHA-256("petrel/v1/id-pow" ‖ public key), and its leading zero bits.
        let pow_hash = Sha256::new().chain_update(b"petrel/v1/id-pow").chain_update(key).finalize();
        same("id_pow_hash", &pow_hash)?;
        let bits = uint(v, "id_pow_bits")?;
        if bits != leading_zero_bits(&pow_hash) || bits != id_pow_bits(&key) as u64 {
            return Err(format!("\"id_pow_bits\" {bits} is not the hash's leading zeros"));
        }
        let difficulty = u8::try_from(uint(v, "difficulty")?).map_err(|e| e.to_string())?;
        let meets = v.json.get("meets_difficulty").and_then(Value::as_bool);
        if meets != Some(u64::from(difficulty) <= bits)
            || meets != Some(meets_id_pow(&key, difficulty))
        {
            return Err(format!("\"meets_difficulty\" is wrong for difficulty {difficulty}"));
        }
        // identity.md §4: "PTK1" ‖ seed ‖ public key, and it loads back.
        let file = [b"PTK1".as_slice(), &keypair.secret_seed(), &key].concat();
        same("key_file", &file)?;
        same("key_file", &keypair.to_key_file())?;
        let loaded = Keypair::from_key_file(&file).map_err(|e| e.to_string())?;
        if loaded.public_key() != key {
            return Err("the key file loads another key".into());
        }
        // transport.md §2: the 12-byte DER prefix ‖ public key.
        let spki = [ED25519_SPKI_PREFIX.as_slice(), &key].concat();
        same("spki", &spki)?;
        same("spki", &ed25519_spki(&key))?;
        if spki_public_key(&spki) != Some(key) {
            return Err("the SPKI does not give the key back".into());
        }
        Ok((bits, meets))
    });
    assert!(results.iter().any(|(_, (_, m))| *m == Some(false)), "no key below a difficulty");
    assert!(results.iter().any(|(_, (b, _))| *b >= 8), "no key with 8 bits of work or more");
}

#[test]
fn key_file_and_spki_vectors_fail_with_their_error() {
    check_all(&load("key_file"), |v| {
        check_common(v, &["name", "description", "key_file", "error"])?;
        let got = match Keypair::from_key_file(&hex_field(&v.json, "key_file")?) {
            Ok(_) => return Err("the key file loads".into()),
            Err(e) => e.name(),
        };
        match str_field(&v.json, "error")? == got {
            true => Ok(()),
            false => Err(format!("refused with {got}")),
        }
    });
    let errors = errors_of("key_file");
    for e in ALL_KEY_FILE_ERRORS {
        assert!(errors.contains(e.name()), "no key file vector fails with {}", e.name());
    }
    check_all(&load("spki"), |v| {
        check_common(v, &["name", "description", "spki", "error"])?;
        if str_field(&v.json, "error")? != BAD_CERTIFICATE {
            return Err(format!("the error of a refused entry is {BAD_CERTIFICATE}"));
        }
        match spki_public_key(&hex_field(&v.json, "spki")?) {
            Some(_) => Err("the entry is accepted".into()),
            None => Ok(()),
        }
    });
}

/// Exhaustive over `SignatureError`: a new check does not compile until it is listed in
/// `ALL_SIGNATURE_ERRORS` (and identity.md §1) and given a vector.
fn must_be_listed(e: &SignatureError) {
    match e {
        SignatureError::KeyNonCanonical
        | SignatureError::KeyNotOnCurve
        | SignatureError::KeySmallOrder
        | SignatureError::RNonCanonical
        | SignatureError::RNotOnCurve
        | SignatureError::RSmallOrder
        | SignatureError::SNonCanonical
        | SignatureError::EquationFails => {}
    }
}

/// The `error`s of the vectors of `set`.
fn errors_of(set: &str) -> BTreeSet<String> {
    load(set).iter().filter_map(|v| Some(v.json.get("error")?.as_str()?.to_owned())).collect()
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("{} bytes, not {N}", bytes.len()))
}

fn uint(v: &super::Loaded, field: &str) -> Result<u64, String> {
    v.json.get(field).and_then(Value::as_u64).ok_or_else(|| format!("no integer \"{field}\""))
}

fn leading_zero_bits(bytes: &[u8]) -> u64 {
    let zero_bytes = bytes.iter().take_while(|&&b| b == 0).count();
    let next = bytes.get(zero_bytes).map_or(0, |b| b.leading_zeros());
    (zero_bytes * 8) as u64 + u64::from(next)
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

/// One generated vector of these sets, for the README's tables.
pub struct Entry {
    pub set: &'static str,
    pub name: String,
    pub description: String,
    pub error: Option<&'static str>,
}

/// Writes every vector of these sets into `files` and returns them in order.
pub fn generate(files: &mut BTreeMap<String, String>) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for spec in signature_specs() {
        let file = SignatureFile {
            name: &spec.name,
            description: &spec.description,
            public_key: hex_encode(&spec.public_key),
            message: hex_encode(&spec.message),
            signature: hex_encode(&spec.signature),
            error: spec.error,
        };
        files.insert(format!("signature/{}.json", spec.name), pretty_json(&file)?);
        entries.push(Entry {
            set: "signature",
            name: spec.name,
            description: spec.description,
            error: spec.error,
        });
    }
    for (name, description, seed, difficulty) in identity_specs() {
        files.insert(
            format!("identity/{name}.json"),
            identity_file(name, description, seed, difficulty)?,
        );
        entries.push(Entry {
            set: "identity",
            name: name.into(),
            description: description.into(),
            error: None,
        });
    }
    for (name, description, bytes, error) in key_file_specs() {
        let file = RefusedFile {
            name,
            description,
            key_file: Some(hex_encode(&bytes)),
            spki: None,
            error: error.name(),
        };
        files.insert(format!("key_file/{name}.json"), pretty_json(&file)?);
        entries.push(Entry {
            set: "key_file",
            name: name.into(),
            description: description.into(),
            error: Some(error.name()),
        });
    }
    for (name, description, bytes) in spki_specs() {
        let file = RefusedFile {
            name,
            description,
            key_file: None,
            spki: Some(hex_encode(&bytes)),
            error: BAD_CERTIFICATE,
        };
        files.insert(format!("spki/{name}.json"), pretty_json(&file)?);
        entries.push(Entry {
            set: "spki",
            name: name.into(),
            description: description.into(),
            error: Some(BAD_CERTIFICATE),
        });
    }
    Ok(entries)
}

#[derive(Serialize)]
struct SignatureFile<'a> {
    name: &'a str,
    description: &'a str,
    public_key: String,
    message: String,
    signature: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct IdentityFile<'a> {
    name: &'a str,
    description: &'a str,
    seed: String,
    public_key: String,
    node_id: String,
    id_pow_hash: String,
    id_pow_bits: usize,
    difficulty: u8,
    meets_difficulty: bool,
    key_file: String,
    spki: String,
}

#[derive(Serialize)]
struct RefusedFile<'a> {
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spki: Option<String>,
    error: &'a str,
}

struct SignatureSpec {
    name: String,
    description: String,
    public_key: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
    error: Option<&'static str>,
}

/// The message most signature vectors sign.
const MESSAGE: &[u8] = b"petrel/v1 signature vector";

/// A point encoding: `y` little-endian in the low 255 bits, the sign of `x` in bit 255.
fn point(y_low: u8, fill: u8, top: u8) -> [u8; 32] {
    let mut out = [fill; 32];
    out[0] = y_low;
    out[31] = top;
    out
}

fn signature_specs() -> Vec<SignatureSpec> {
    let alice = keypair(1);
    let key = alice.public_key();
    let good = alice.sign(MESSAGE);
    let with_r = |r: [u8; 32]| -> [u8; 64] {
        let mut s = good;
        s[..32].copy_from_slice(&r);
        s
    };
    // Points: the identity (small order), y = p + 3 (unreduced; a point of large order), y = 2
    // (no x solves the curve equation), the identity with the sign bit (x = 0, signed), and the
    // base point B.
    let identity = point(1, 0, 0);
    let unreduced = point(0xf0, 0xff, 0x7f);
    let off_curve = point(2, 0, 0);
    let signed_identity = point(1, 0, 0x80);
    let base = point(0x58, 0x66, 0x66);
    let b_and_one = {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&base);
        s[32] = 1;
        s
    };
    let mut s_plus_l = good;
    s_plus_l[32..].copy_from_slice(&add_group_order(&good[32..]));
    let mut flipped_s = good;
    flipped_s[32] ^= 1;
    let mut flipped_message = MESSAGE.to_vec();
    flipped_message[0] ^= 1;
    let spec = |name: &str, description: &str, public_key, message: &[u8], signature, error| {
        SignatureSpec {
            name: format!("signature_{name}"),
            description: description.to_owned(),
            public_key,
            message: message.to_vec(),
            signature,
            error,
        }
    };
    use SignatureError::*;
    let e = |error: SignatureError| Some(error.name());
    vec![
        spec(
            "valid",
            "Key pair 1 signs the 26 ASCII bytes \"petrel/v1 signature vector\".",
            key,
            MESSAGE,
            good,
            None,
        ),
        spec(
            "valid_empty_message",
            "Key pair 2 signs the empty message.",
            keypair(2).public_key(),
            b"",
            keypair(2).sign(b""),
            None,
        ),
        spec(
            "key_non_canonical_y",
            "signature_valid's signature under a key whose y is p + 3, written unreduced \
             (f0 ff .. ff 7f): a point of large order that a decoder reducing y would \
             accept.",
            unreduced,
            MESSAGE,
            good,
            e(KeyNonCanonical),
        ),
        spec(
            "key_non_canonical_x_zero",
            "A key 01 00 .. 00 80: the identity (x = 0) with the sign bit set. Refused as \
             non-canonical before its small order is looked at.",
            signed_identity,
            MESSAGE,
            good,
            e(KeyNonCanonical),
        ),
        spec(
            "key_not_on_curve",
            "A key with y = 2, for which no x is on the curve.",
            off_curve,
            MESSAGE,
            good,
            e(KeyNotOnCurve),
        ),
        spec(
            "key_small_order",
            "The identity as public key, with R = B and S = 1: [S]B - [k]A = B = R holds \
             for every message, so a verifier without the small-order check accepts this \
             signature of anything.",
            identity,
            MESSAGE,
            b_and_one,
            e(KeySmallOrder),
        ),
        spec(
            "r_non_canonical",
            "signature_valid with R replaced by the unreduced encoding f0 ff .. ff 7f.",
            key,
            MESSAGE,
            with_r(unreduced),
            e(RNonCanonical),
        ),
        spec(
            "r_not_on_curve",
            "signature_valid with R replaced by y = 2, not on the curve.",
            key,
            MESSAGE,
            with_r(off_curve),
            e(RNotOnCurve),
        ),
        spec(
            "r_small_order",
            "signature_valid with R replaced by the identity, a point of small order.",
            key,
            MESSAGE,
            with_r(identity),
            e(RSmallOrder),
        ),
        spec(
            "s_non_canonical",
            "signature_valid with S + L in place of S: equal modulo the group order L, so a \
             verifier that reduces S accepts it (malleability).",
            key,
            MESSAGE,
            s_plus_l,
            e(SNonCanonical),
        ),
        spec(
            "flipped_message_bit",
            "signature_valid over the message with its first bit flipped.",
            key,
            &flipped_message,
            good,
            e(EquationFails),
        ),
        spec(
            "flipped_signature_bit",
            "signature_valid with the lowest bit of S flipped.",
            key,
            MESSAGE,
            flipped_s,
            e(EquationFails),
        ),
        spec(
            "wrong_key",
            "signature_valid checked against key pair 2's public key.",
            keypair(2).public_key(),
            MESSAGE,
            good,
            e(EquationFails),
        ),
    ]
}

/// `s + L`, little-endian, for `s < L` (it stays below 2^254).
fn add_group_order(s: &[u8]) -> [u8; 32] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// The seed of identity.md §3's example: `5f 02` then 30 zero bytes, 8 bits of work.
fn pow_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..2].copy_from_slice(&[0x5f, 0x02]);
    seed
}

fn identity_specs() -> Vec<(&'static str, &'static str, [u8; 32], u8)> {
    vec![
        (
            "identity_seed_01",
            "Key pair 1 (seed 01 x 32, identity.md §2's example) on a network without id \
             proof-of-work (difficulty 0).",
            [1; 32],
            0,
        ),
        (
            "identity_pow_8_meets_8",
            "The key of identity.md §3's example (seed 5f 02, then 30 zero bytes): its id-PoW \
             hash has 8 leading zero bits, so it meets difficulty 8.",
            pow_seed(),
            8,
        ),
        (
            "identity_pow_8_misses_9",
            "The same key at difficulty 9: 8 bits of work are not enough, and a verifier \
             refuses it.",
            pow_seed(),
            9,
        ),
        (
            "identity_seed_01_misses_1",
            "Key pair 1 at difficulty 1: its id-PoW hash starts with a 1 bit.",
            [1; 32],
            1,
        ),
    ]
}

fn identity_file(
    name: &str,
    description: &str,
    seed: [u8; 32],
    difficulty: u8,
) -> Result<String, String> {
    let keypair = Keypair::from_seed(seed);
    let key = keypair.public_key();
    let pow_hash = Sha256::new().chain_update(b"petrel/v1/id-pow").chain_update(key).finalize();
    pretty_json(&IdentityFile {
        name,
        description,
        seed: hex_encode(&seed),
        public_key: hex_encode(&key),
        node_id: NodeId::from_public_key(&key).to_hex(),
        id_pow_hash: hex_encode(&pow_hash),
        id_pow_bits: id_pow_bits(&key),
        difficulty,
        meets_difficulty: meets_id_pow(&key, difficulty),
        key_file: hex_encode(&keypair.to_key_file()),
        spki: hex_encode(&ed25519_spki(&key)),
    })
}

fn key_file_specs() -> Vec<(&'static str, &'static str, Vec<u8>, KeyFileError)> {
    let good = keypair(1).to_key_file();
    let with = |at: usize, bytes: &[u8]| {
        let mut out = good.to_vec();
        out[at..at + bytes.len()].copy_from_slice(bytes);
        out
    };
    vec![
        (
            "key_file_truncated",
            "Key pair 1's key file without its last byte: 67 bytes.",
            good[..67].to_vec(),
            KeyFileError::Truncated,
        ),
        ("key_file_empty", "An empty key file.", vec![], KeyFileError::Truncated),
        (
            "key_file_trailing_bytes",
            "Key pair 1's key file followed by a newline: 69 bytes.",
            [good.as_slice(), b"\n"].concat(),
            KeyFileError::TrailingBytes,
        ),
        (
            "key_file_bad_magic",
            "Key pair 1's key file with the magic PTK2, a format this version does not know.",
            with(0, b"PTK2"),
            KeyFileError::BadMagic,
        ),
        (
            "key_file_key_mismatch",
            "Key pair 1's seed with key pair 2's public key: a corrupt file must not silently \
             become another identity.",
            with(36, &keypair(2).public_key()),
            KeyFileError::KeyMismatch,
        ),
    ]
}

fn spki_specs() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let key = keypair(1).public_key();
    let good = ed25519_spki(&key).to_vec();
    let mut x25519 = good.clone();
    x25519[8] = 0x6e;
    let with_null_parameters =
        [&[0x30, 0x2c, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00][..], &good[9..]]
            .concat();
    let long_length = [&[0x30, 0x81, 0x2a][..], &good[2..]].concat();
    vec![
        (
            "spki_truncated",
            "Key pair 1's SubjectPublicKeyInfo without its last byte: 43 bytes.",
            good[..43].to_vec(),
        ),
        (
            "spki_trailing_byte",
            "Key pair 1's SubjectPublicKeyInfo followed by a zero byte: 45 bytes.",
            [good.as_slice(), &[0]].concat(),
        ),
        (
            "spki_x25519",
            "The same bytes with the OID 1.3.101.110 (X25519) instead of 1.3.101.112 (Ed25519).",
            x25519,
        ),
        (
            "spki_null_parameters",
            "An Ed25519 SubjectPublicKeyInfo whose AlgorithmIdentifier carries NULL parameters \
             (05 00), which RFC 8410 forbids.",
            with_null_parameters,
        ),
        (
            "spki_long_length",
            "Key pair 1's SubjectPublicKeyInfo with its outer length in the long form (30 81 \
             2a): valid BER, not DER.",
            long_length,
        ),
    ]
}
