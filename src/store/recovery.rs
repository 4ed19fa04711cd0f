//! The scan on open (proto-spec/store.md §3): checks the header, replays every entry in file
//! order into the index, and decides what a bad entry means.
//!
//! Rules, in order:
//! 1. A file shorter than the header whose bytes are a prefix of it is a creation cut short:
//!    the header is written again. Any other bad magic or version is refused and the file is
//!    left untouched.
//! 2. An entry whose length is out of bounds, runs past the end of the file, or whose CRC
//!    fails is *bad*. From there the scan looks for the next offset where an entry verifies
//!    (length in bounds, inside the file, CRC good). If there is one, the bad stretch is
//!    skipped and counted once (`corrupt_skipped`); if not, the file is a torn tail and is
//!    cut at the bad entry (`truncated_bytes`), so the next append continues a valid file.
//! 3. A data entry replaces the indexed one with the same key unless its `seq` is lower; an
//!    entry expired at `now_ms` deletes the key; a tombstone deletes its key whatever its
//!    seq; an unknown kind is skipped. These are the rules `Log::append` applies live, so a
//!    reopen rebuilds the index the running log had.
//! 4. A new key past `max_entries` is skipped and counted (`over_cap`).
//!
//! Memory is bounded by one read window (1 MiB, or one entry if larger) plus the
//! index. Time is linear in the file for a good file; a corrupt stretch costs a CRC per
//! candidate offset whose length field looks plausible.

use std::cmp::{max, min};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::entry::{self, RawEntry, HEADER, HEADER_BYTES, KIND_TOMBSTONE, LEN_BYTES};
use super::{EntryKey, Recovery, StoreError};

/// Where an indexed entry is and what the index needs to know without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    /// File offset of its length field.
    pub offset: u64,
    /// Bytes on disk, length field included.
    pub bytes: u32,
    /// Its seq.
    pub seq: u64,
    /// Its expiry, unix ms, 0 = never.
    pub expires_ms: u64,
}

/// The index: one slot per live key.
pub(super) type Index = HashMap<EntryKey, Slot>;

/// What a scan produced.
#[derive(Debug)]
pub(super) struct Scanned {
    /// The live entries.
    pub index: Index,
    /// The logical end of the file: where the next append goes.
    pub end: u64,
    /// What was found.
    pub recovery: Recovery,
}

/// Checks (or completes) the header of `file` and scans it; cuts a torn tail.
pub(super) fn recover(file: &File, now_ms: u64, max_entries: usize) -> Result<Scanned, StoreError> {
    let started = Instant::now();
    let file_len = file.metadata()?.len();
    if file_len < HEADER_BYTES {
        let mut head = vec![0u8; file_len as usize];
        file.read_exact_at(&mut head, 0)?;
        if !HEADER.starts_with(&head) {
            return Err(StoreError::BadMagic);
        }
        // Rule 1: creation was cut short (or the file is new); the header covers the prefix.
        file.write_all_at(&HEADER, 0)?;
        file.sync_all()?;
        let recovery = Recovery { elapsed: started.elapsed(), ..Recovery::default() };
        return Ok(Scanned { index: Index::new(), end: HEADER_BYTES, recovery });
    }
    let mut head = [0u8; HEADER.len()];
    file.read_exact_at(&mut head, 0)?;
    if head[..7] != HEADER[..7] {
        return Err(StoreError::BadMagic);
    }
    if head[7] != entry::VERSION {
        return Err(StoreError::UnsupportedVersion(head[7]));
    }
    let mut replay = Replay { now_ms, max_entries, index: Index::new(), rec: Recovery::default() };
    let mut window = Window { file, file_len, start: 0, buf: Vec::new() };
    let mut pos = HEADER_BYTES;
    while pos < file_len {
        if let Some(used) = window.entry_at(pos)?.map(|(e, used)| replay.apply(&e, pos, used)) {
            pos += used as u64;
            continue;
        }
        match window.resync(pos + 1)? {
            Some(next) => {
                replay.rec.corrupt_skipped += 1;
                pos = next;
            }
            None => {
                replay.rec.truncated_bytes = file_len - pos;
                file.set_len(pos)?;
                file.sync_all()?;
                break;
            }
        }
    }
    let mut rec = replay.rec;
    rec.entries = replay.index.len() as u64;
    rec.elapsed = started.elapsed();
    Ok(Scanned { index: replay.index, end: min(pos, file_len), recovery: rec })
}

/// Whether an entry with this expiry is dead at `now_ms`.
pub(super) fn is_expired(expires_ms: u64, now_ms: u64) -> bool {
    expires_ms != 0 && expires_ms <= now_ms
}

/// The index being rebuilt (rules 3 and 4).
struct Replay {
    now_ms: u64,
    max_entries: usize,
    index: Index,
    rec: Recovery,
}

impl Replay {
    /// Applies the good entry `e` found at `offset`, `bytes` long; returns `bytes`.
    fn apply(&mut self, e: &RawEntry<'_>, offset: u64, bytes: usize) -> usize {
        if e.kind == KIND_TOMBSTONE {
            match e.payload.first().copied().and_then(entry::kind_of) {
                Some(kind) => {
                    let id = EntryKey { kind, key: e.key, sub: e.sub };
                    self.rec.superseded += u64::from(self.index.remove(&id).is_some());
                }
                None => self.rec.unknown_skipped += 1,
            }
            return bytes;
        }
        let Some(kind) = entry::kind_of(e.kind) else {
            self.rec.unknown_skipped += 1;
            return bytes;
        };
        let id = EntryKey { kind, key: e.key, sub: e.sub };
        let old = self.index.get(&id).map(|s| s.seq);
        if old.is_some_and(|seq| e.seq < seq) {
            self.rec.superseded += 1;
        } else if is_expired(e.expires_ms, self.now_ms) {
            self.rec.superseded += u64::from(self.index.remove(&id).is_some());
            self.rec.expired += 1;
        } else if old.is_none() && self.index.len() >= self.max_entries {
            self.rec.over_cap += 1;
        } else {
            self.rec.superseded += u64::from(old.is_some());
            // `bytes` is at most MAX_LEN + 4: the length was checked.
            let slot = Slot { offset, bytes: bytes as u32, seq: e.seq, expires_ms: e.expires_ms };
            self.index.insert(id, slot);
        }
        bytes
    }
}

/// A read-ahead buffer over the file: the scan reads each region once, in large reads.
struct Window<'f> {
    file: &'f File,
    file_len: u64,
    /// File offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// The entry at `pos` if one verifies there (rule 2), and its size.
    fn entry_at(&mut self, pos: u64) -> io::Result<Option<(RawEntry<'_>, usize)>> {
        let len = match entry::read_len(self.bytes(pos, LEN_BYTES)?) {
            Ok(len) => len as usize,
            Err(_) => return Ok(None),
        };
        Ok(entry::decode(self.bytes(pos, LEN_BYTES + len)?).ok())
    }

    /// The first offset from `from` on where an entry verifies.
    fn resync(&mut self, from: u64) -> io::Result<Option<u64>> {
        for pos in from..self.file_len {
            if self.entry_at(pos)?.is_some() {
                return Ok(Some(pos));
            }
        }
        Ok(None)
    }

    /// The file's bytes `pos..pos + want`, fewer where the file ends first.
    fn bytes(&mut self, pos: u64, want: usize) -> io::Result<&[u8]> {
        let end = min(pos.saturating_add(want as u64), self.file_len);
        let buffered = self.start + self.buf.len() as u64;
        if pos < self.start || end > buffered {
            // At most max(WINDOW_BYTES, one entry): `want` is bounded by the length check.
            let n = min(max(want as u64, WINDOW_BYTES), self.file_len - pos) as usize;
            self.buf.resize(n, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.start = pos;
        }
        let from = (pos - self.start) as usize;
        Ok(&self.buf[from..from + (end - pos) as usize])
    }
}

/// Bytes the scan reads at a time.
const WINDOW_BYTES: u64 = 1 << 20;
