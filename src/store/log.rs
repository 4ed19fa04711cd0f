//! [`Log`]: appends, tombstones and positional reads over `records.log`, with the index in
//! memory and group commit (proto-spec/store.md §3, §4).
//!
//! Locking. One mutex holds the writer state and the index (`Inner`); appends write under
//! it, so the file's order is the index's order. Reads take the slot and an `Arc<File>`
//! under it and read outside it, so a compaction swapping the file under a reader leaves the
//! reader on the old, still open, file. Group commit has its own mutex and condvar
//! (`SyncState`); it is never held while taking `Inner`, and `Inner` is never held while
//! waiting for a sync.
//!
//! Failure. A failed write is cut back off the file and leaves the index unchanged. A failed
//! fdatasync makes the log refuse every later write until it is reopened: the kernel may
//! have dropped the dirty pages, so nothing written since could be promised durable.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::entry::{self, HEADER_BYTES, MAX_PAYLOAD_BYTES};
use super::recovery::{self, is_expired, Index, Slot};
use super::{Entry, EntryKey, Kind, LogConfig, LogStats, Recovery, StoreError, SyncMode};
use super::{LOCK_FILE, LOG_FILE, TMP_FILE};

/// The append-only log of one node's data directory. Share it as `Arc<Log>`: every method
/// takes `&self` and is safe to call from any thread.
#[derive(Debug)]
pub struct Log {
    /// `DIR/LOCK`, locked for as long as the log is open.
    _lock: fs::File,
    pub(super) cfg: LogConfig,
    pub(super) inner: Mutex<Inner>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// Serialises compactions; appends and reads never take it.
    pub(super) compacting: Mutex<()>,
    pub(super) counters: Counters,
}

/// The writer state and the index, under `Log::inner`.
#[derive(Debug)]
pub(super) struct Inner {
    pub file: Arc<File>,
    /// Where the next entry goes.
    pub end: u64,
    pub index: Index,
    /// Sum of the indexed slots' bytes.
    pub live_bytes: u64,
    /// Appends written so far: the ticket of the latest, which group commit syncs up to.
    pub written: u64,
    /// Set when a write cannot be promised any more (see the module doc); sticky.
    pub broken: Option<StoreError>,
    /// Test seam: the next write writes half its bytes and fails with this OS error.
    #[cfg(test)]
    pub fail_next_write: Option<i32>,
}

/// Group commit: which tickets are durable, and who is syncing.
#[derive(Debug, Default)]
struct SyncState {
    /// Every ticket up to this one is on disk.
    synced: u64,
    /// A leader is syncing (or waiting out the interval) for everyone.
    leading: bool,
    last_sync_at: Option<Instant>,
    /// The last failed sync: the tickets up to it get its error.
    failed: Option<(u64, StoreError)>,
}

/// Counters kept outside the lock.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub appends: AtomicU64,
    pub syncs: AtomicU64,
    pub compactions: AtomicU64,
    pub bytes_written: AtomicU64,
    pub reads: AtomicU64,
    pub errors: AtomicU64,
}

impl Log {
    /// Opens (creating if absent) `cfg.dir/records.log`, recovers it (recovery.rs) and
    /// deletes a compaction's leftover `.tmp`. `now_ms` (unix ms) decides what has expired.
    /// A file that is not a version-1 log is refused and left untouched; one with a corrupt
    /// stretch inside is compacted at once.
    pub fn open(cfg: LogConfig, now_ms: u64) -> Result<(Log, Recovery), StoreError> {
        fs::create_dir_all(&cfg.dir)?;
        // One process per directory: two writers would interleave appends and each compact
        // the other's entries away. A lock file, not the log itself, since compaction
        // renames a new file over the log. The kernel drops the lock when the process dies.
        let lock = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(cfg.dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked),
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let file = open_rw(&cfg.dir.join(LOG_FILE), false)?;
        let scanned = recovery::recover(&file, now_ms, cfg.max_entries)?;
        match fs::remove_file(cfg.dir.join(TMP_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        // The file's name (if just created) and a removed .tmp reach the disk.
        sync_dir(&cfg.dir)?;
        let live_bytes = scanned.index.values().map(|s| u64::from(s.bytes)).sum();
        let inner = Inner {
            file: Arc::new(file),
            end: scanned.end,
            index: scanned.index,
            live_bytes,
            written: 0,
            broken: None,
            #[cfg(test)]
            fail_next_write: None,
        };
        let log = Log {
            _lock: lock,
            cfg,
            inner: Mutex::new(inner),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
            compacting: Mutex::new(()),
            counters: Counters::default(),
        };
        if scanned.recovery.corrupt_skipped > 0 {
            // A corrupt stretch must not stay in front of new entries: an offset inside it
            // whose length ran past the old end of file might verify once the file grows,
            // and a reopen would read the appends differently (store.md §3 rule 3). A
            // failure leaves that small risk and the node running.
            let _ = log.compact(now_ms);
        }
        Ok((log, scanned.recovery))
    }

    /// Appends `entries` in order, as one write. Returns once the write returned (and, per
    /// [`SyncMode`], an fdatasync covering it). An entry with a lower `seq` than the one
    /// indexed under its key is ignored (not written); an equal or higher one replaces it.
    /// On error nothing is indexed and the file is as before.
    pub fn append(&self, entries: &[Entry]) -> Result<(), StoreError> {
        if entries.iter().any(|e| e.payload.len() > MAX_PAYLOAD_BYTES) {
            return Err(StoreError::TooLarge);
        }
        let (ticket, file) = {
            let mut inner = self.lock();
            let mut buf = Vec::new();
            let mut plan: Vec<(EntryKey, Slot)> = Vec::with_capacity(entries.len());
            let mut in_batch: HashMap<EntryKey, u64> = HashMap::new();
            let mut new_keys = 0;
            for e in entries {
                let current = in_batch.get(&e.id).or(inner.index.get(&e.id).map(|s| &s.seq));
                match current {
                    Some(&seq) if e.seq < seq => continue,
                    Some(_) => {}
                    None => new_keys += 1,
                }
                let offset = inner.end + buf.len() as u64;
                let before = buf.len();
                entry::encode(&entry::raw(&e.id, e.seq, e.expires_ms, &e.payload), &mut buf)?;
                let bytes = (buf.len() - before) as u32;
                plan.push((e.id, Slot { offset, bytes, seq: e.seq, expires_ms: e.expires_ms }));
                in_batch.insert(e.id, e.seq);
            }
            if plan.is_empty() {
                return Ok(());
            }
            if inner.index.len() + new_keys > self.cfg.max_entries {
                return Err(StoreError::Full);
            }
            let written = self.write(&mut inner, &buf, plan.len())?;
            for (id, slot) in plan {
                let old = inner.index.insert(id, slot).map_or(0, |s| u64::from(s.bytes));
                inner.live_bytes = inner.live_bytes - old + u64::from(slot.bytes);
            }
            written
        };
        self.durable(ticket, &file)
    }

    /// Deletes the entry under `id` with a tombstone, durable as an append is. Removing an
    /// absent key still writes the tombstone, so no older copy can come back on reopen.
    pub fn remove(&self, id: &EntryKey) -> Result<(), StoreError> {
        let (ticket, file) = {
            let mut inner = self.lock();
            let seq = inner.index.get(id).map_or(0, |s| s.seq);
            let mut buf = Vec::with_capacity(entry::encoded_len(1));
            entry::encode_tombstone(id, seq, &mut buf);
            let written = self.write(&mut inner, &buf, 1)?;
            if let Some(old) = inner.index.remove(id) {
                inner.live_bytes -= u64::from(old.bytes);
            }
            written
        };
        self.durable(ticket, &file)
    }

    /// The entry indexed under `id`, read from disk and CRC-checked; expired entries not yet
    /// dropped by [`Log::expire`] are returned too, the caller decides.
    pub fn get(&self, id: &EntryKey) -> Result<Option<Entry>, StoreError> {
        let (slot, file) = {
            let inner = self.lock();
            match inner.index.get(id) {
                Some(slot) => (*slot, Arc::clone(&inner.file)),
                None => return Ok(None),
            }
        };
        self.read(&file, id, slot).map(Some)
    }

    /// A snapshot of the index for `kind`: key, seq and expiry of every live entry, in no
    /// particular order.
    pub fn live(&self, kind: Kind) -> Vec<(EntryKey, u64, u64)> {
        let inner = self.lock();
        let of_kind = inner.index.iter().filter(|(id, _)| id.kind == kind);
        of_kind.map(|(id, s)| (*id, s.seq, s.expires_ms)).collect()
    }

    /// Every live entry of `kind` with its payload, in file order (oldest write first);
    /// meant for start-up, it holds them all in memory.
    pub fn scan(&self, kind: Kind) -> Result<Vec<Entry>, StoreError> {
        let (mut slots, file) = {
            let inner = self.lock();
            let of_kind = inner.index.iter().filter(|(id, _)| id.kind == kind);
            (of_kind.map(|(id, s)| (*id, *s)).collect::<Vec<_>>(), Arc::clone(&inner.file))
        };
        slots.sort_unstable_by_key(|(_, s)| s.offset);
        slots.iter().map(|(id, slot)| self.read(&file, id, *slot)).collect()
    }

    /// Drops from the index every entry expired at `now_ms` (their bytes become garbage for
    /// compaction); returns how many.
    pub fn expire(&self, now_ms: u64) -> u64 {
        let mut inner = self.lock();
        let (before, mut freed) = (inner.index.len(), 0);
        inner.index.retain(|_, s| {
            let dead = is_expired(s.expires_ms, now_ms);
            freed += if dead { u64::from(s.bytes) } else { 0 };
            !dead
        });
        inner.live_bytes -= freed;
        (before - inner.index.len()) as u64
    }

    /// Whether [`Log::compact`] is worth its rewrite: the file is at least
    /// `compact_min_bytes` and its garbage share at least `compact_garbage_ratio`.
    pub fn needs_compaction(&self) -> bool {
        let inner = self.lock();
        let garbage = inner.end.saturating_sub(HEADER_BYTES + inner.live_bytes);
        inner.end >= self.cfg.compact_min_bytes
            && garbage as f64 >= self.cfg.compact_garbage_ratio * inner.end as f64
    }

    /// Counters since open, and the file's current sizes.
    pub fn stats(&self) -> LogStats {
        let (file_bytes, live_bytes, live_entries) = {
            let inner = self.lock();
            (inner.end, inner.live_bytes, inner.index.len() as u64)
        };
        let c = &self.counters;
        LogStats {
            file_bytes,
            live_bytes,
            live_entries,
            appends: c.appends.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            reads: c.reads.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// The writer state. A panic while holding it cannot leave it half-changed (every
    /// update is made after the fallible steps), so a poisoned lock is still usable.
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an I/O or corruption error and passes it on.
    pub(super) fn failed(&self, e: impl Into<StoreError>) -> StoreError {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        e.into()
    }

    /// Writes `buf` (`entries` entries) at the end; on failure cuts the file back. Returns
    /// the append's ticket and the file to sync.
    fn write(
        &self,
        inner: &mut Inner,
        buf: &[u8],
        entries: usize,
    ) -> Result<(u64, Arc<File>), StoreError> {
        if let Some(e) = &inner.broken {
            return Err(e.clone());
        }
        if inner.end + buf.len() as u64 > self.cfg.max_bytes {
            return Err(StoreError::Full);
        }
        if let Err(e) = write_at(inner, buf) {
            if inner.file.set_len(inner.end).is_err() {
                let why = "a failed write could not be cut back off the log".into();
                inner.broken = Some(StoreError::Io(io::ErrorKind::Other, why));
            }
            return Err(self.failed(e));
        }
        inner.end += buf.len() as u64;
        inner.written += 1;
        self.counters.appends.fetch_add(entries as u64, Ordering::Relaxed);
        self.counters.bytes_written.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok((inner.written, Arc::clone(&inner.file)))
    }

    /// Waits until append `ticket`, written to `file`, is as durable as the mode asks.
    fn durable(&self, ticket: u64, file: &File) -> Result<(), StoreError> {
        match self.cfg.sync {
            SyncMode::None => Ok(()),
            SyncMode::Always => {
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                file.sync_data().map_err(|e| self.sync_failed(e))
            }
            SyncMode::Batch => self.group_commit(ticket),
        }
    }

    /// Group commit: the first waiter becomes the leader, waits until `batch_interval` has
    /// passed since the last sync (more appenders join meanwhile), and syncs once up to the
    /// latest ticket written; the others wait for it.
    fn group_commit(&self, ticket: u64) -> Result<(), StoreError> {
        let mut s = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if s.synced >= ticket {
                return Ok(());
            }
            if let Some((upto, e)) = &s.failed {
                if ticket <= *upto {
                    return Err(e.clone());
                }
            }
            if s.leading {
                s = self.synced.wait(s).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            s.leading = true;
            if let Some(due) = s.last_sync_at.map(|at| at + self.cfg.batch_interval) {
                while let Some(left) = due.checked_duration_since(Instant::now()) {
                    let waited = self.synced.wait_timeout(s, left);
                    s = waited.unwrap_or_else(PoisonError::into_inner).0;
                }
            }
            drop(s);
            let (upto, file) = {
                let inner = self.lock();
                (inner.written, Arc::clone(&inner.file))
            };
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            let result = file.sync_data().map_err(|e| self.sync_failed(e));
            s = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
            s.leading = false;
            s.last_sync_at = Some(Instant::now());
            match result {
                Ok(()) => s.synced = s.synced.max(upto),
                Err(e) => s.failed = Some((upto, e)),
            }
            self.synced.notify_all();
        }
    }

    /// A failed fdatasync: counted, and the log refuses writes from now on.
    fn sync_failed(&self, e: io::Error) -> StoreError {
        let e = self.failed(e);
        self.lock().broken = Some(e.clone());
        e
    }

    /// Reads and checks the entry `id` at `slot` of `file`.
    fn read(&self, file: &File, id: &EntryKey, slot: Slot) -> Result<Entry, StoreError> {
        let mut buf = vec![0u8; slot.bytes as usize];
        file.read_exact_at(&mut buf, slot.offset).map_err(|e| self.failed(e))?;
        let corrupt = || self.failed(StoreError::Corrupt { offset: slot.offset });
        let (e, _) = entry::decode(&buf).map_err(|_| corrupt())?;
        if (e.kind, e.key, e.sub) != (entry::kind_byte(id.kind), id.key, id.sub) {
            return Err(corrupt());
        }
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        Ok(Entry { id: *id, seq: e.seq, expires_ms: e.expires_ms, payload: e.payload.to_vec() })
    }
}

/// Opens `path` for reading and writing, mode 0600; `truncate` empties it.
pub(super) fn open_rw(path: &Path, truncate: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(truncate).mode(0o600).open(path)
}

/// Makes the directory's entries (a new file, a rename, a removal) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `buf` written at the end of the log.
#[cfg(not(test))]
fn write_at(inner: &mut Inner, buf: &[u8]) -> io::Result<()> {
    inner.file.write_all_at(buf, inner.end)
}

/// `buf` written at the end of the log, or half of it and the injected error.
#[cfg(test)]
fn write_at(inner: &mut Inner, buf: &[u8]) -> io::Result<()> {
    match inner.fail_next_write.take() {
        Some(errno) => {
            inner.file.write_all_at(&buf[..buf.len() / 2], inner.end)?;
            Err(io::Error::from_raw_os_error(errno))
        }
        None => inner.file.write_all_at(buf, inner.end),
    }
}
