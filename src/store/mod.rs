//! The node's on-disk store: one append-only log, `DIR/records.log`, that keeps records,
//! provider entries and routing-table peers across restarts (DESIGN.md, "Storage"). The
//! format is normative in proto-spec/store.md; this module implements it.
//!
//! - [`crc32c`]: the entry checksum. [`entry`]: one entry's bytes (§2), pure.
//! - `recovery.rs`: the scan on open (§3): a torn tail is cut, a corrupt entry followed by
//!   good ones is skipped, expired and superseded entries are left out of the index.
//! - [`Log`] (`log.rs`): appends, tombstones, positional reads, group commit.
//! - `compact.rs`: rewrite of the live set and atomic rename (§5).
//!
//! Guarantees. [`Log::append`] returns once `write` returned for every entry, so a crash of
//! the process loses nothing acknowledged; with [`SyncMode::Batch`] or [`SyncMode::Always`]
//! it also waits for an fdatasync, so a power loss does not either. Everything is bounded:
//! an entry's length is checked before anything is allocated for it
//! ([`entry::MAX_PAYLOAD_BYTES`]), the file by [`LogConfig::max_bytes`] and the index by
//! [`LogConfig::max_entries`]. Payloads are opaque bytes here; the caller encodes them.

mod compact;
pub mod crc32c;
pub mod entry;
mod log;
mod recovery;

#[cfg(test)]
mod log_tests;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use compact::CompactReport;
pub use log::Log;

/// When an append is made durable against power loss, not only against a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Never fdatasync: an append survives the process dying, not the machine.
    None,
    /// Group commit: appenders waiting together share one fdatasync, at most one per
    /// `batch_interval`.
    #[default]
    Batch,
    /// One fdatasync per `append` call.
    Always,
}

impl SyncMode {
    /// The name the command line and reports use.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::None => "none",
            SyncMode::Batch => "batch",
            SyncMode::Always => "always",
        }
    }
}

impl std::str::FromStr for SyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<SyncMode, String> {
        match s {
            "none" => Ok(SyncMode::None),
            "batch" => Ok(SyncMode::Batch),
            "always" => Ok(SyncMode::Always),
            _ => Err("one of none, batch, always".into()),
        }
    }
}

/// Where the log lives and its bounds. [`LogConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Directory holding `records.log`; created if absent.
    pub dir: PathBuf,
    /// Durability of an acknowledged append.
    pub sync: SyncMode,
    /// With [`SyncMode::Batch`], the least time between two fdatasyncs: longer batches more
    /// appends per sync and makes each wait longer.
    pub batch_interval: Duration,
    /// Cap on the file; an append that would pass it fails with [`StoreError::Full`].
    pub max_bytes: u64,
    /// Garbage share of the file above which [`Log::needs_compaction`] says yes.
    pub compact_garbage_ratio: f64,
    /// Files smaller than this are never worth compacting.
    pub compact_min_bytes: u64,
    /// Cap on indexed keys; past it, open skips (and counts) new keys and append fails with
    /// [`StoreError::Full`].
    pub max_entries: usize,
}

impl LogConfig {
    /// The defaults for a log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            sync: SyncMode::Batch,
            batch_interval: DEFAULT_BATCH_INTERVAL,
            max_bytes: DEFAULT_MAX_BYTES,
            compact_garbage_ratio: DEFAULT_COMPACT_GARBAGE_RATIO,
            compact_min_bytes: DEFAULT_COMPACT_MIN_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What an entry is; part of its identity, so a record and a provider entry never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A DHT record under its key.
    Record,
    /// A provider of a key; `sub` names the provider.
    Provider,
    /// A routing-table peer; `key` is its node id.
    Peer,
}

/// The identity an entry is indexed and superseded under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey {
    /// The entry's kind.
    pub kind: Kind,
    /// The record key, provided key or node id.
    pub key: [u8; 32],
    /// A second key (the provider's id); zeros when unused.
    pub sub: [u8; 32],
}

/// One entry as appended and read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its identity.
    pub id: EntryKey,
    /// Version: an append with a lower `seq` than the indexed entry is ignored.
    pub seq: u64,
    /// Unix milliseconds after which it is dropped; 0 = never.
    pub expires_ms: u64,
    /// Opaque to the log, at most [`entry::MAX_PAYLOAD_BYTES`].
    pub payload: Vec<u8>,
}

/// Why a log operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The disk, the quota, [`LogConfig::max_bytes`] or [`LogConfig::max_entries`] is full;
    /// nothing was written.
    Full,
    /// An I/O error other than a full disk: its kind and message.
    Io(io::ErrorKind, String),
    /// An entry read back fails its length or CRC check, at this file offset.
    Corrupt {
        /// File offset of the entry's length field.
        offset: u64,
    },
    /// A payload over [`entry::MAX_PAYLOAD_BYTES`]; nothing was written.
    TooLarge,
    /// `records.log` does not start with the magic `PTRLLOG`: not a log, left untouched.
    BadMagic,
    /// `records.log` has a version byte this code does not know; left untouched.
    UnsupportedVersion(u8),
    /// Another process has this directory's log open (its `LOCK` file is locked).
    Locked,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Full => f.write_str("store full"),
            StoreError::Io(kind, msg) => write!(f, "store I/O error ({kind:?}): {msg}"),
            StoreError::Corrupt { offset } => write!(f, "corrupt log entry at offset {offset}"),
            StoreError::TooLarge => f.write_str("log entry payload too large"),
            StoreError::BadMagic => f.write_str("not a petrel log (bad magic)"),
            StoreError::UnsupportedVersion(v) => write!(f, "unsupported log version {v}"),
            StoreError::Locked => {
                f.write_str("another process has this data directory's log open (LOCK)")
            }
        }
    }
}

impl std::error::Error for StoreError {}

impl From<io::Error> for StoreError {
    /// ENOSPC and EDQUOT are [`StoreError::Full`]: the caller refuses the write as it would
    /// at `max_bytes`, instead of treating the disk as broken.
    fn from(e: io::Error) -> StoreError {
        match e.raw_os_error() {
            Some(ENOSPC) => StoreError::Full,
            #[cfg(target_os = "linux")]
            Some(EDQUOT) => StoreError::Full,
            _ => StoreError::Io(e.kind(), e.to_string()),
        }
    }
}

/// What open found in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Live entries indexed.
    pub entries: u64,
    /// Bytes cut from a torn or corrupt tail.
    pub truncated_bytes: u64,
    /// Corrupt stretches skipped between good entries (each counts once).
    pub corrupt_skipped: u64,
    /// Entries of a kind this code does not know, skipped.
    pub unknown_skipped: u64,
    /// Entries left out because they had expired by `now_ms`.
    pub expired: u64,
    /// Entries replaced by a later one with the same key, or ignored for a lower `seq`,
    /// or deleted by a tombstone.
    pub superseded: u64,
    /// New keys beyond [`LogConfig::max_entries`], skipped.
    pub over_cap: u64,
    /// Time the scan took.
    pub elapsed: Duration,
}

/// Counters since open, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Size of the file (its logical end).
    pub file_bytes: u64,
    /// Bytes of the indexed entries; the rest of the file is garbage.
    pub live_bytes: u64,
    /// Indexed entries.
    pub live_entries: u64,
    /// Entries written, tombstones included.
    pub appends: u64,
    /// fdatasyncs of the log by appends (group commit makes this lower than `appends`).
    pub syncs: u64,
    /// Compactions completed.
    pub compactions: u64,
    /// Bytes written, by appends and compactions.
    pub bytes_written: u64,
    /// Entries read back by `get` and `scan`.
    pub reads: u64,
    /// Operations that failed with an I/O or corruption error.
    pub errors: u64,
}

/// Default [`LogConfig::batch_interval`].
pub const DEFAULT_BATCH_INTERVAL: Duration = Duration::ZERO;
/// Default [`LogConfig::max_bytes`]: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default [`LogConfig::compact_garbage_ratio`].
pub const DEFAULT_COMPACT_GARBAGE_RATIO: f64 = 0.5;
/// Default [`LogConfig::compact_min_bytes`]: 1 MiB.
pub const DEFAULT_COMPACT_MIN_BYTES: u64 = 1 << 20;
/// Default [`LogConfig::max_entries`].
pub const DEFAULT_MAX_ENTRIES: usize = 1 << 20;

/// The log's file name inside [`LogConfig::dir`].
pub const LOG_FILE: &str = "records.log";
/// Where compaction writes the new file before renaming it over [`LOG_FILE`].
pub const TMP_FILE: &str = "records.log.tmp";
/// The file locked by the process that has the log open.
pub const LOCK_FILE: &str = "LOCK";

/// "No space left on device", the same number on Linux and the BSDs.
const ENOSPC: i32 = 28;
/// "Disk quota exceeded" on Linux.
#[cfg(target_os = "linux")]
const EDQUOT: i32 = 122;
