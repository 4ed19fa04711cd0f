//! Compaction (proto-spec/store.md §5): the live, unexpired entries are copied to
//! `records.log.tmp`, which is synced and renamed over `records.log`, and the directory
//! synced. A crash before the rename leaves the old file (and a `.tmp` that open deletes), a
//! crash after it the new one; both are complete logs.
//!
//! Appends and reads go on during the copy: the lock is held to take the snapshot, then
//! again to swap. At the swap, the new file gets a tombstone for every copied entry that was
//! removed or replaced meanwhile (else a reopen would bring it back), then every entry
//! written since the snapshot that is still live (its slot lies past the snapshot's end);
//! the index is pointed at the new offsets.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::entry::{self, HEADER};
use super::log::{open_rw, sync_dir, Inner, Log};
use super::recovery::{is_expired, Index, Slot};
use super::{EntryKey, StoreError, LOG_FILE, TMP_FILE};

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// File size before.
    pub before_bytes: u64,
    /// File size after.
    pub after_bytes: u64,
    /// Entries in the new file.
    pub entries: u64,
    /// Entries left out because they had expired.
    pub expired: u64,
    /// Entries written during the copy and carried over at the swap.
    pub carried_over: u64,
    /// Indexed entries that no longer read back (bad CRC), dropped.
    pub corrupt_dropped: u64,
    /// Time the whole compaction took.
    pub elapsed: Duration,
}

impl Log {
    /// Rewrites the log with only its live entries unexpired at `now_ms`; appends and gets
    /// keep working meanwhile. Concurrent calls run one after the other. On error the log
    /// goes on with the old file.
    pub fn compact(&self, now_ms: u64) -> Result<CompactReport, StoreError> {
        self.compact_with(now_ms, || {})
    }

    /// [`Log::compact`], calling `during_copy` between the copy and the swap (tests append
    /// there to see what the swap carries over).
    pub(super) fn compact_with(
        &self,
        now_ms: u64,
        during_copy: impl FnOnce(),
    ) -> Result<CompactReport, StoreError> {
        let _one = self.compacting.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let tmp_path = self.cfg.dir.join(TMP_FILE);
        let result = self.copy_and_swap(now_ms, during_copy);
        if result.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        let mut report = result.map_err(|e| self.failed(e))?;
        report.elapsed = started.elapsed();
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_written.fetch_add(report.after_bytes, Ordering::Relaxed);
        Ok(report)
    }

    fn copy_and_swap(
        &self,
        now_ms: u64,
        during_copy: impl FnOnce(),
    ) -> Result<CompactReport, StoreError> {
        let (mut live, old, snapshot_end) = {
            let inner = self.lock();
            let live: Vec<(EntryKey, Slot)> = inner.index.iter().map(|(id, s)| (*id, *s)).collect();
            (live, Arc::clone(&inner.file), inner.end)
        };
        let mut report = CompactReport { before_bytes: snapshot_end, ..CompactReport::default() };
        live.sort_unstable_by_key(|(_, s)| s.offset);
        let tmp = open_rw(&self.cfg.dir.join(TMP_FILE), true)?;
        let mut copy = Copy { out: Vec::from(HEADER), written: 0, moved: HashMap::new() };
        for (id, slot) in live {
            if is_expired(slot.expires_ms, now_ms) {
                report.expired += 1;
            } else if !copy.entry(&old, id, slot)? {
                report.corrupt_dropped += 1;
            }
            copy.flush_if_full(&tmp)?;
        }
        copy.flush(&tmp)?;
        tmp.sync_data()?;
        during_copy();

        let mut inner = self.lock();
        report.carried_over = copy.tail(&inner, snapshot_end)?;
        copy.flush(&tmp)?;
        tmp.sync_data()?;
        fs::rename(self.cfg.dir.join(TMP_FILE), self.cfg.dir.join(LOG_FILE))?;
        // From here the new file is the log on disk: swap even if the directory sync fails.
        let index = rebase(&inner.index, &copy.moved);
        inner.live_bytes = index.values().map(|s| u64::from(s.bytes)).sum();
        inner.index = index;
        inner.end = copy.written;
        inner.file = Arc::new(tmp);
        report.entries = inner.index.len() as u64;
        report.after_bytes = copy.written;
        drop(inner);
        sync_dir(&self.cfg.dir)?;
        Ok(report)
    }
}

/// The new file being written: bytes buffered, bytes flushed, and where each entry went.
struct Copy {
    out: Vec<u8>,
    /// Bytes already in the file.
    written: u64,
    /// Every entry copied: its offset in the old file, and its new slot.
    moved: HashMap<EntryKey, (u64, Slot)>,
}

impl Copy {
    /// Copies the entry `id` at `slot` of `old` if it reads back intact; false if not.
    fn entry(&mut self, old: &File, id: EntryKey, slot: Slot) -> Result<bool, StoreError> {
        let start = self.out.len();
        self.out.resize(start + slot.bytes as usize, 0);
        old.read_exact_at(&mut self.out[start..], slot.offset)?;
        let intact = entry::decode(&self.out[start..]).is_ok_and(|(e, _)| {
            (e.kind, e.key, e.sub) == (entry::kind_byte(id.kind), id.key, id.sub)
        });
        if !intact {
            self.out.truncate(start);
            return Ok(false);
        }
        let offset = self.written + start as u64;
        self.moved.insert(id, (slot.offset, Slot { offset, ..slot }));
        Ok(true)
    }

    /// Writes a tombstone for every copied entry no longer indexed where it was, then copies
    /// the entries indexed past `snapshot_end` (written during the copy). Returns how many
    /// were carried over.
    fn tail(&mut self, inner: &Inner, snapshot_end: u64) -> Result<u64, StoreError> {
        let moved = &self.moved;
        let stale: Vec<(EntryKey, u64)> = moved
            .iter()
            .filter(|(id, (old, _))| inner.index.get(id).map(|s| s.offset) != Some(*old))
            .map(|(id, (_, slot))| (*id, slot.seq))
            .collect();
        for (id, seq) in stale {
            entry::encode_tombstone(&id, seq, &mut self.out);
            self.moved.remove(&id);
        }
        let mut tail: Vec<(EntryKey, Slot)> = inner.index.iter().map(|(id, s)| (*id, *s)).collect();
        tail.retain(|(_, s)| s.offset >= snapshot_end);
        tail.sort_unstable_by_key(|(_, s)| s.offset);
        let mut carried = 0;
        for (id, slot) in tail {
            // Written under this lock moments ago: a bad read here is an I/O fault, and
            // keeping the entry matters more than the compaction.
            if !self.entry(&inner.file, id, slot)? {
                return Err(StoreError::Corrupt { offset: slot.offset });
            }
            carried += 1;
        }
        Ok(carried)
    }

    fn flush_if_full(&mut self, file: &File) -> Result<(), StoreError> {
        if self.out.len() >= FLUSH_BYTES {
            self.flush(file)?;
        }
        Ok(())
    }

    fn flush(&mut self, mut file: &File) -> Result<(), StoreError> {
        file.write_all(&self.out)?;
        self.written += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }
}

/// The index after the swap: every key still indexed that was copied, at its new slot. A
/// key indexed but not copied expired or was corrupt, and is dropped.
fn rebase(index: &Index, moved: &HashMap<EntryKey, (u64, Slot)>) -> Index {
    index.keys().filter_map(|id| moved.get(id).map(|(_, slot)| (*id, *slot))).collect()
}

/// Bytes buffered before a write to the new file.
const FLUSH_BYTES: usize = 1 << 20;
