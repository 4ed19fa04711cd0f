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
const KEY_FILE_BYTES: usize = 4 + 32 + 32;
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
        Keypair::from_file_bytes(&bytes)
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
            file.write_all(&self.to_file_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(e)
        })
    }

    fn to_file_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEY_FILE_BYTES);
        out.extend_from_slice(KEY_FILE_MAGIC);
        out.extend_from_slice(&self.secret_seed());
        out.extend_from_slice(&self.public_key());
        out
    }

    fn from_file_bytes(bytes: &[u8]) -> Result<Keypair, &'static str> {
        if bytes.len() < KEY_FILE_BYTES {
            return Err("truncated");
        }
        if bytes.len() > KEY_FILE_BYTES {
            return Err("trailing bytes");
        }
        if &bytes[..4] != KEY_FILE_MAGIC {
            return Err("not a petrel key file (bad magic)");
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[4..36]);
        let keypair = Keypair::from_seed(seed);
        if keypair.public_key()[..] != bytes[36..] {
            return Err("public key does not match the secret key");
        }
        Ok(keypair)
    }
}

impl fmt::Debug for Keypair {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.node_id())
    }
}

/// Verifies an Ed25519 `signature` by `public_key` over `message` (strict verification: no
/// small-order keys, canonical `S`).
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(message, &signature).is_ok()
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
        why: &'static str,
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
        let good = kp.to_file_bytes();
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
