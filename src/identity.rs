//! Node identity: the Ed25519 key pair, the `NodeId` derived from it, the XOR metric, the optional
//! id proof-of-work, and the key file.
//!
//! Implements proto-spec/identity.md. `NodeId = SHA-256(public key)`; the Kademlia key space and
//! the TLS identity are the same 256 bits, so a dialer that knows a `NodeId` can authenticate the
//! peer from the raw public key it presents.
//!
//! The key file holds a 4-byte magic, the 32-byte secret seed and the 32-byte public key; the
//! public key lets a load detect a corrupt file instead of silently becoming another node.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bytes::{hex_decode_32, hex_encode, Bytes32};

/// Length of a `NodeId`, a record key and a message id, in bytes.
pub const ID_BYTES: usize = 32;
/// Number of bits in a `NodeId`, and so the number of Kademlia buckets.
pub const ID_BITS: usize = ID_BYTES * 8;
/// Domain separator of the id proof-of-work hash (proto-spec/identity.md §3).
pub const ID_POW_DOMAIN: &[u8] = b"petrel/v1/id-pow";
/// Magic at the start of a key file, version 1.
const KEY_FILE_MAGIC: &[u8; 4] = b"PTK1";
/// Exact length of a version 1 key file.
pub const KEY_FILE_BYTES: usize = 4 + 32 + 32;
/// Highest id-PoW difficulty accepted in configuration: 32 bits already takes ~4 billion
/// key generations, so anything above is a configuration mistake, not a security setting.
pub const MAX_ID_POW_BITS: u8 = 32;

/// A 256-bit node identifier: SHA-256 of the node's Ed25519 public key.
///
/// Ordered as a big-endian integer. `Display` prints the first 8 hex digits (for logs);
/// `{:#}` and `to_hex()` give all 64.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(Bytes32);

impl NodeId {
    /// Derives the id of the node owning `public_key`.
    pub fn from_public_key(public_key: &[u8; 32]) -> NodeId {
        NodeId(Bytes32(Sha256::digest(public_key).into()))
    }

    /// Wraps raw id bytes (a record key or lookup target uses the same space).
    pub const fn from_bytes(bytes: [u8; ID_BYTES]) -> NodeId {
        NodeId(Bytes32(bytes))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0 .0
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; ID_BYTES];
        for (i, byte) in d.iter_mut().enumerate() {
            *byte = self.as_bytes()[i] ^ other.as_bytes()[i];
        }
        Distance(d)
    }

    /// The Kademlia bucket `other` falls into from our point of view: the number of leading
    /// zero bits of the distance, so 0 is the far half of the key space and 255 the nearest.
    /// `None` for our own id, which belongs to no bucket.
    pub fn bucket_index(&self, other: &NodeId) -> Option<usize> {
        let zeros = self.distance(other).leading_zeros();
        (zeros < ID_BITS).then_some(zeros)
    }

    /// All 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex_encode(self.as_bytes())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str(&self.to_hex())
        } else {
            f.write_str(&hex_encode(&self.as_bytes()[..4]))
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = ParseIdError;

    /// Parses exactly 64 hex digits (either case).
    fn from_str(s: &str) -> Result<NodeId, ParseIdError> {
        hex_decode_32(s).map(NodeId::from_bytes).ok_or(ParseIdError)
    }
}

/// A string was not 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseIdError;

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node id is exactly 64 hex digits")
    }
}

impl std::error::Error for ParseIdError {}

/// The XOR distance between two ids, ordered as a 256-bit big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Distance(pub [u8; ID_BYTES]);

impl Distance {
    /// Leading zero bits; `ID_BITS` for the zero distance.
    pub fn leading_zeros(&self) -> usize {
        leading_zero_bits(&self.0)
    }
}

/// An Ed25519 key pair: the node's long-term identity.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// Generates a fresh key pair from the operating system's CSPRNG.
    pub fn generate() -> Result<Keypair, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| IdentityError::Entropy(e.to_string()))?;
        Ok(Keypair::from_seed(seed))
    }

    /// Generates key pairs until one meets `difficulty` (proto-spec/identity.md §3). Expected
    /// cost: 2^difficulty generations.
    pub fn generate_with_pow(difficulty: u8) -> Result<Keypair, IdentityError> {
        if difficulty > MAX_ID_POW_BITS {
            return Err(IdentityError::DifficultyTooHigh(difficulty));
        }
        loop {
            let keypair = Keypair::generate()?;
            if meets_id_pow(&keypair.public_key(), difficulty) {
                return Ok(keypair);
            }
        }
    }

    /// Builds the key pair whose secret is `seed` (deterministic; tests and the simulator).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair { signing: SigningKey::from_bytes(&seed) }
    }

    /// The 32-byte public key, as carried on the wire and in TLS.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The 32-byte secret seed. Handle with care: it is the node's identity.
    pub fn secret_seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_public_key(&self.public_key())
    }

    /// Signs `message` (already domain-separated by the caller, see proto-spec).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Loads a key file written by [`Keypair::save`]. Refuses a file that group or others can
    /// read or write, and names the path in every error.
    pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
        let io_err = |source| IdentityError::Io { path: path.to_owned(), source };
        let mode = fs::metadata(path).map_err(io_err)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(IdentityError::InsecurePermissions { path: path.to_owned(), mode });
        }
        let bytes = fs::read(path).map_err(io_err)?;
        Keypair::from_key_file(&bytes)
            .map_err(|why| IdentityError::Corrupt { path: path.to_owned(), why })
    }

    /// Writes the key file atomically (temporary file with mode 0600, fsync, rename, fsync of
    /// the directory), so a crash leaves either the old file or the new one, never a torn one.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io_err = |source| IdentityError::Io { path: path.to_owned(), source };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let write = || -> io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // `mode` applies only when the file is created; an old temp file keeps its mode.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(&self.to_key_file())?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(e)
        })
    }

    /// The contents of the key file (proto-spec/identity.md §4): magic, seed, public key.
    pub fn to_key_file(&self) -> [u8; KEY_FILE_BYTES] {
        let mut out = [0u8; KEY_FILE_BYTES];
        out[..4].copy_from_slice(KEY_FILE_MAGIC);
        out[4..36].copy_from_slice(&self.secret_seed());
        out[36..].copy_from_slice(&self.public_key());
        out
    }

    /// Parses the contents of a key file, with the checks of proto-spec/identity.md §4 in
    /// their order (length, magic, public key); [`Keypair::load`] checks the permissions first.
    pub fn from_key_file(bytes: &[u8]) -> Result<Keypair, KeyFileError> {
        if bytes.len() < KEY_FILE_BYTES {
            return Err(KeyFileError::Truncated);
        }
        if bytes.len() > KEY_FILE_BYTES {
            return Err(KeyFileError::TrailingBytes);
        }
        if &bytes[..4] != KEY_FILE_MAGIC {
            return Err(KeyFileError::BadMagic);
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[4..36]);
        let keypair = Keypair::from_seed(seed);
        if keypair.public_key()[..] != bytes[36..] {
            return Err(KeyFileError::KeyMismatch);
        }
        Ok(keypair)
    }
}

/// Why the contents of a key file were refused (proto-spec/identity.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileError {
    /// Fewer than 68 bytes.
    Truncated,
    /// More than 68 bytes.
    TrailingBytes,
    /// The first 4 bytes are not `PTK1`.
    BadMagic,
    /// The public key is not the one the seed derives.
    KeyMismatch,
}

impl KeyFileError {
    /// Stable snake_case name, as in proto-spec/identity.md §4 and the key file vectors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::TrailingBytes => "trailing_bytes",
            Self::BadMagic => "bad_magic",
            Self::KeyMismatch => "key_mismatch",
        }
    }
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "truncated",
            Self::TrailingBytes => "trailing bytes",
            Self::BadMagic => "not a petrel key file (bad magic)",
            Self::KeyMismatch => "public key does not match the secret key",
        })
    }
}

impl std::error::Error for KeyFileError {}

impl fmt::Debug for Keypair {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.node_id())
    }
}

/// Whether an Ed25519 `signature` by `public_key` over `message` passes strict verification
/// ([`verify_strict`]).
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    verify_strict(public_key, message, signature).is_ok()
}

/// Verifies an Ed25519 `signature` by `public_key` over `message` strictly, with the checks of
/// proto-spec/identity.md §1 in their order, and names the first that fails.
///
/// ed25519-dalek's `verify_strict` makes every check but the first: its `from_bytes` takes a
/// public key whose `y` is not reduced (`y ≥ p`), which RFC 8032 §5.1.3 refuses. So the
/// encodings are checked here, then dalek decides the equation.
pub fn verify_strict(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let key = StrictKey::new(public_key)?;
    verify_strict_with(&key, message, signature)
}

/// [`verify_strict`] with the public key already decoded and checked ([`StrictKey`]).
///
/// A signature that passes costs one decoding of `R`, not two: `R`'s encoding and `S` are byte
/// comparisons, and dalek's `verify_strict` decodes `R` and refuses it if it is of small order,
/// so when dalek accepts, every check of §1 has passed. Only a refused signature decodes `R`
/// again, to name which check failed.
pub fn verify_strict_with(
    key: &StrictKey,
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let mut r = [0u8; 32];
    r.copy_from_slice(&signature[..32]);
    let encodings_valid = is_canonical_point(&r) && is_below_group_order(&signature[32..]);
    let dalek_signature = ed25519_dalek::Signature::from_bytes(signature);
    if encodings_valid && key.0.verify_strict(message, &dalek_signature).is_ok() {
        return Ok(());
    }
    strict_point(&r).map_err(|e| e.of_r())?;
    if !is_below_group_order(&signature[32..]) {
        return Err(SignatureError::SNonCanonical);
    }
    Err(SignatureError::EquationFails)
}

/// A public key that passed the key checks of proto-spec/identity.md §1 (canonical, on the
/// curve, not of small order), decoded once so that several signatures by it skip the decoding.
#[derive(Clone, Copy)]
pub struct StrictKey(VerifyingKey);

impl StrictKey {
    /// Decodes and checks `public_key`; the error names the first key check that failed.
    pub fn new(public_key: &[u8; 32]) -> Result<StrictKey, SignatureError> {
        strict_point(public_key).map(StrictKey).map_err(|e| e.of_key())
    }

    /// The key's encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for StrictKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StrictKey({})", NodeId::from_public_key(self.as_bytes()))
    }
}

/// Why strict verification refused a signature (proto-spec/identity.md §1). The checks run in
/// the order of the variants; the first that fails is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The public key is not a canonical encoding: `y ≥ p`, or `x = 0` with the sign bit set.
    KeyNonCanonical,
    /// The public key does not decode to a curve point.
    KeyNotOnCurve,
    /// The public key is a point of small order.
    KeySmallOrder,
    /// `R` is not a canonical encoding.
    RNonCanonical,
    /// `R` does not decode to a curve point.
    RNotOnCurve,
    /// `R` is a point of small order.
    RSmallOrder,
    /// `S` is not below the group order `L`.
    SNonCanonical,
    /// Every encoding is valid but `[S]B − [k]A` does not encode to `R`.
    EquationFails,
}

impl SignatureError {
    /// Stable snake_case name, as in proto-spec/identity.md §1 and the signature vectors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::KeyNonCanonical => "key_non_canonical",
            Self::KeyNotOnCurve => "key_not_on_curve",
            Self::KeySmallOrder => "key_small_order",
            Self::RNonCanonical => "r_non_canonical",
            Self::RNotOnCurve => "r_not_on_curve",
            Self::RSmallOrder => "r_small_order",
            Self::SNonCanonical => "s_non_canonical",
            Self::EquationFails => "equation_fails",
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KeyNonCanonical => "the public key is not canonically encoded",
            Self::KeyNotOnCurve => "the public key is not a curve point",
            Self::KeySmallOrder => "the public key has small order",
            Self::RNonCanonical => "the signature's R is not canonically encoded",
            Self::RNotOnCurve => "the signature's R is not a curve point",
            Self::RSmallOrder => "the signature's R has small order",
            Self::SNonCanonical => "the signature's S is not below the group order",
            Self::EquationFails => "the signature does not verify",
        })
    }
}

impl std::error::Error for SignatureError {}

/// What is wrong with a point encoding, before we know whether it is the key or `R`.
enum PointError {
    NonCanonical,
    NotOnCurve,
    SmallOrder,
}

impl PointError {
    fn of_key(self) -> SignatureError {
        match self {
            PointError::NonCanonical => SignatureError::KeyNonCanonical,
            PointError::NotOnCurve => SignatureError::KeyNotOnCurve,
            PointError::SmallOrder => SignatureError::KeySmallOrder,
        }
    }

    fn of_r(self) -> SignatureError {
        match self {
            PointError::NonCanonical => SignatureError::RNonCanonical,
            PointError::NotOnCurve => SignatureError::RNotOnCurve,
            PointError::SmallOrder => SignatureError::RSmallOrder,
        }
    }
}

/// Decodes a point that is canonically encoded, on the curve and not of small order.
fn strict_point(bytes: &[u8; 32]) -> Result<VerifyingKey, PointError> {
    if !is_canonical_point(bytes) {
        return Err(PointError::NonCanonical);
    }
    let point = VerifyingKey::from_bytes(bytes).map_err(|_| PointError::NotOnCurve)?;
    if point.is_weak() {
        return Err(PointError::SmallOrder);
    }
    Ok(point)
}

/// RFC 8032 §5.1.3: `y`, the low 255 bits (little-endian), is below `p = 2^255 − 19`, and a
/// point with `x = 0` (`y = 1` or `y = p − 1`) does not have the sign bit (bit 255) set.
fn is_canonical_point(bytes: &[u8; 32]) -> bool {
    let sign = bytes[31] >> 7;
    let top = bytes[31] & 0x7f;
    let middle_all_ones = bytes[1..31].iter().all(|&b| b == 0xff);
    // p = ed ff .. ff 7f little-endian, so y ≥ p exactly when y is one of the 19 values
    // p .. 2^255 − 1: top byte 7f, middle bytes ff, low byte at least ed.
    let y_at_least_p = top == 0x7f && middle_all_ones && bytes[0] >= 0xed;
    let y_is_one = bytes[0] == 1 && bytes[1..31].iter().all(|&b| b == 0) && top == 0;
    let y_is_p_minus_one = top == 0x7f && middle_all_ones && bytes[0] == 0xec;
    !y_at_least_p && !(sign == 1 && (y_is_one || y_is_p_minus_one))
}

/// Whether the little-endian integer `s` is below the group order
/// `L = 2^252 + 27742317777372353535851937790883648493`.
fn is_below_group_order(s: &[u8]) -> bool {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    // Compare from the most significant byte down.
    for (a, l) in s.iter().rev().zip(L.iter().rev()) {
        if a != l {
            return a < l;
        }
    }
    false
}

/// The id proof-of-work of `public_key`: leading zero bits of
/// `SHA-256(ID_POW_DOMAIN ‖ public_key)` (proto-spec/identity.md §3).
pub fn id_pow_bits(public_key: &[u8; 32]) -> usize {
    let mut hasher = Sha256::new();
    hasher.update(ID_POW_DOMAIN);
    hasher.update(public_key);
    leading_zero_bits(&hasher.finalize())
}

/// Whether `public_key` meets a network's id difficulty (0 = no requirement).
pub fn meets_id_pow(public_key: &[u8; 32], difficulty: u8) -> bool {
    id_pow_bits(public_key) >= usize::from(difficulty)
}

/// Errors loading, saving or generating an identity.
#[derive(Debug)]
pub enum IdentityError {
    /// Reading or writing the key file failed.
    Io {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The key file is readable or writable by group or others.
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The key file is truncated, has the wrong magic or an inconsistent key.
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        why: KeyFileError,
    },
    /// The OS random source failed.
    Entropy(String),
    /// A requested id-PoW difficulty is above [`MAX_ID_POW_BITS`].
    DifficultyTooHigh(u8),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "key file {}: {source}", path.display()),
            Self::InsecurePermissions { path, mode } => write!(
                f,
                "key file {} has mode {:o}; it must not be accessible to group or others \
                 (chmod 600)",
                path.display(),
                mode & 0o777
            ),
            Self::Corrupt { path, why } => {
                write!(f, "key file {} is corrupt: {why}", path.display())
            }
            Self::Entropy(e) => write!(f, "OS random source failed: {e}"),
            Self::DifficultyTooHigh(d) => {
                write!(f, "id-PoW difficulty {d} is above the maximum {MAX_ID_POW_BITS}")
            }
        }
    }
}

impl std::error::Error for IdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Leading zero bits of a big-endian byte string.
fn leading_zero_bits(bytes: &[u8]) -> usize {
    let mut zeros = 0;
    for &b in bytes {
        if b != 0 {
            return zeros + b.leading_zeros() as usize;
        }
        zeros += 8;
    }
    zeros
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8) -> NodeId {
        let mut b = [0u8; 32];
        b[0] = first;
        NodeId::from_bytes(b)
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("petrel-id-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    // ---- NodeId and the XOR metric ----

    #[test]
    fn node_id_is_sha256_of_public_key() {
        let kp = Keypair::from_seed([7; 32]);
        let expected: [u8; 32] = Sha256::digest(kp.public_key()).into();
        assert_eq!(kp.node_id().as_bytes(), &expected);
    }

    #[test]
    fn distance_is_xor_and_symmetric() {
        let a = id(0b1010_0000);
        let b = id(0b0110_0000);
        assert_eq!(a.distance(&b).0[0], 0b1100_0000);
        assert_eq!(a.distance(&b), b.distance(&a));
        assert_eq!(a.distance(&a), Distance([0; 32]));
    }

    #[test]
    fn bucket_index_counts_leading_zeros_of_distance() {
        let zero = NodeId::from_bytes([0; 32]);
        assert_eq!(zero.bucket_index(&id(0x80)), Some(0));
        assert_eq!(zero.bucket_index(&id(0x01)), Some(7));
        let mut last = [0u8; 32];
        last[31] = 1;
        assert_eq!(zero.bucket_index(&NodeId::from_bytes(last)), Some(255));
        assert_eq!(zero.bucket_index(&zero), None);
    }

    #[test]
    fn distances_order_as_big_endian_integers() {
        let target = NodeId::from_bytes([0; 32]);
        let mut low = [0u8; 32];
        low[31] = 0xff;
        let near = target.distance(&NodeId::from_bytes(low));
        let far = target.distance(&id(0x01));
        assert!(near < far);
    }

    #[test]
    fn display_is_short_and_alternate_is_full() {
        let n = id(0xab);
        assert_eq!(n.to_string(), "ab000000");
        assert_eq!(format!("{n:#}").len(), 64);
        assert_eq!(format!("{n:#}").parse::<NodeId>(), Ok(n));
        assert_eq!("abc".parse::<NodeId>(), Err(ParseIdError));
        assert_eq!("zz".repeat(32).parse::<NodeId>(), Err(ParseIdError));
    }

    // ---- Signatures ----

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let kp = Keypair::from_seed([1; 32]);
        let sig = kp.sign(b"hello");
        assert!(verify_signature(&kp.public_key(), b"hello", &sig));
        assert!(!verify_signature(&kp.public_key(), b"hellp", &sig));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!verify_signature(&kp.public_key(), b"hello", &bad));
        let other = Keypair::from_seed([2; 32]);
        assert!(!verify_signature(&other.public_key(), b"hello", &sig));
    }

    #[test]
    fn strict_verification_names_the_first_failed_check() {
        let kp = Keypair::from_seed([1; 32]);
        let sig = kp.sign(b"hello");
        assert_eq!(verify_strict(&kp.public_key(), b"hello", &sig), Ok(()));
        // y = p + 3: a point of large order, written with an unreduced y.
        let mut unreduced = [0xff; 32];
        unreduced[0] = 0xf0;
        unreduced[31] = 0x7f;
        let check = |key: &[u8; 32], sig: &[u8; 64]| verify_strict(key, b"hello", sig);
        assert_eq!(check(&unreduced, &sig), Err(SignatureError::KeyNonCanonical));
        // The identity, with and without the sign bit.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(check(&identity, &sig), Err(SignatureError::KeySmallOrder));
        let mut signed_identity = identity;
        signed_identity[31] = 0x80;
        assert_eq!(check(&signed_identity, &sig), Err(SignatureError::KeyNonCanonical));
        let mut two = [0u8; 32];
        two[0] = 2;
        assert_eq!(check(&two, &sig), Err(SignatureError::KeyNotOnCurve));
        // R small order, then S = L (not below the order).
        let mut bad_r = sig;
        bad_r[..32].copy_from_slice(&identity);
        assert_eq!(check(&kp.public_key(), &bad_r), Err(SignatureError::RSmallOrder));
        let mut big_s = sig;
        big_s[32..].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ]);
        assert_eq!(check(&kp.public_key(), &big_s), Err(SignatureError::SNonCanonical));
        assert_eq!(
            verify_strict(&kp.public_key(), b"hellp", &sig),
            Err(SignatureError::EquationFails)
        );
    }

    #[test]
    fn a_refused_signature_names_its_first_failure_whichever_path_refused_it() {
        let kp = Keypair::from_seed([1; 32]);
        let key = StrictKey::new(&kp.public_key()).unwrap();
        let sig = kp.sign(b"hello");
        assert_eq!(verify_strict_with(&key, b"hello", &sig), Ok(()));
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut two = [0u8; 32];
        two[0] = 2;
        let l_bytes = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        // R's failures come before S's, whether dalek was asked (S valid) or not (S = L).
        for (r, named) in
            [(identity, SignatureError::RSmallOrder), (two, SignatureError::RNotOnCurve)]
        {
            let mut bad = sig;
            bad[..32].copy_from_slice(&r);
            assert_eq!(verify_strict_with(&key, b"hello", &bad), Err(named));
            bad[32..].copy_from_slice(&l_bytes);
            assert_eq!(verify_strict_with(&key, b"hello", &bad), Err(named));
        }
        let mut big_s = sig;
        big_s[32..].copy_from_slice(&l_bytes);
        assert_eq!(verify_strict_with(&key, b"hello", &big_s), Err(SignatureError::SNonCanonical));
        assert_eq!(verify_strict_with(&key, b"hellp", &sig), Err(SignatureError::EquationFails));
        assert_eq!(StrictKey::new(&identity).err(), Some(SignatureError::KeySmallOrder));
        assert_eq!(StrictKey::new(&two).err(), Some(SignatureError::KeyNotOnCurve));
    }

    #[test]
    fn canonical_points_are_those_below_p_without_a_signed_zero_x() {
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!is_canonical_point(&p));
        let mut p_minus_one = p;
        p_minus_one[0] = 0xec;
        assert!(is_canonical_point(&p_minus_one));
        p_minus_one[31] = 0xff; // x = 0 with the sign bit
        assert!(!is_canonical_point(&p_minus_one));
        assert!(is_canonical_point(&Keypair::from_seed([9; 32]).public_key()));
    }

    // ---- Id proof-of-work ----

    #[test]
    fn generated_identity_meets_requested_pow() {
        let kp = Keypair::generate_with_pow(8).unwrap();
        assert!(id_pow_bits(&kp.public_key()) >= 8);
        assert!(meets_id_pow(&kp.public_key(), 8));
        assert!(meets_id_pow(&kp.public_key(), 0));
    }

    #[test]
    fn pow_is_domain_separated_hash_of_key() {
        let kp = Keypair::from_seed([3; 32]);
        let mut h = Sha256::new();
        h.update(b"petrel/v1/id-pow");
        h.update(kp.public_key());
        assert_eq!(id_pow_bits(&kp.public_key()), leading_zero_bits(&h.finalize()));
        // A key with fewer bits than required is refused.
        let bits = id_pow_bits(&kp.public_key());
        assert!(!meets_id_pow(&kp.public_key(), (bits + 1) as u8));
    }

    #[test]
    fn refuses_absurd_difficulty() {
        assert!(matches!(
            Keypair::generate_with_pow(MAX_ID_POW_BITS + 1),
            Err(IdentityError::DifficultyTooHigh(33))
        ));
    }

    // ---- Key file ----

    #[test]
    fn key_file_round_trips_with_mode_0600() {
        let dir = tempdir("roundtrip");
        let path = dir.join("node.key");
        let kp = Keypair::generate().unwrap();
        kp.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Keypair::load(&path).unwrap().node_id(), kp.node_id());
        // Overwriting keeps it atomic and leaves no temporary file behind.
        Keypair::from_seed([9; 32]).save(&path).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(Keypair::load(&path).unwrap().secret_seed(), [9; 32]);
    }

    #[test]
    fn refuses_key_file_readable_by_others() {
        let dir = tempdir("perms");
        let path = dir.join("node.key");
        Keypair::from_seed([4; 32]).save(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keypair::load(&path).unwrap_err();
        assert!(
            matches!(err, IdentityError::InsecurePermissions { mode, .. } if mode & 0o777 == 0o644)
        );
        assert!(err.to_string().contains("node.key"));
    }

    #[test]
    fn truncated_or_corrupt_key_file_names_the_path() {
        let dir = tempdir("corrupt");
        let path = dir.join("node.key");
        let kp = Keypair::from_seed([5; 32]);
        let good = kp.to_key_file();
        let cases: [(&[u8], &str); 4] = [
            (&good[..40], "truncated"),
            (&[good.as_slice(), b"x"].concat(), "trailing bytes"),
            (&[b"XXXX", &good[4..]].concat(), "bad magic"),
            (&[&good[..36], &[0u8; 32][..]].concat(), "does not match"),
        ];
        for (bytes, why) in cases {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            f.write_all(bytes).unwrap();
            drop(f);
            let err = Keypair::load(&path).unwrap_err();
            assert!(matches!(err, IdentityError::Corrupt { .. }), "{why}: {err}");
            let text = err.to_string();
            assert!(text.contains(&*path.to_string_lossy()) && text.contains(why), "{text}");
        }
    }

    #[test]
    fn missing_key_file_is_io_error_naming_path() {
        let err = Keypair::load(Path::new("/nonexistent/petrel.key")).unwrap_err();
        assert!(matches!(err, IdentityError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/petrel.key"));
    }
}
