//! Tests of the log against real files in a temporary directory: durability rules, recovery
//! from torn and corrupt files, compaction, group commit, and the spec's vectors.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::entry::{self, RawEntry, HEADER_BYTES};
use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("petrel-store-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn cfg(&self) -> LogConfig {
        LogConfig { sync: SyncMode::None, ..LogConfig::new(&self.0) }
    }

    fn log_path(&self) -> PathBuf {
        self.0.join(LOG_FILE)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const NOW: u64 = 1_700_000_000_000;

fn id(kind: Kind, n: u8) -> EntryKey {
    EntryKey { kind, key: [n; 32], sub: [0; 32] }
}

/// A record entry `n` with a payload of `n` repeated `10 + n` times.
fn rec(n: u8, seq: u64) -> Entry {
    Entry { id: id(Kind::Record, n), seq, expires_ms: 0, payload: vec![n; 10 + usize::from(n)] }
}

fn open(cfg: LogConfig) -> (Log, Recovery) {
    Log::open(cfg, NOW).unwrap()
}

/// Every live entry of every kind, sorted: the log's whole visible state.
fn state(log: &Log) -> Vec<Entry> {
    let mut all: Vec<Entry> = [Kind::Record, Kind::Provider, Kind::Peer]
        .into_iter()
        .flat_map(|k| log.scan(k).unwrap())
        .collect();
    all.sort_by_key(|e| e.id);
    all
}

// ---- Appends, reads and the index ----

#[test]
fn log_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Log>();
}

#[test]
fn append_then_get_returns_the_entry_and_absent_keys_are_none() {
    let dir = TempDir::new("roundtrip");
    let (log, rec0) = open(dir.cfg());
    assert_eq!(rec0, Recovery { elapsed: rec0.elapsed, ..Recovery::default() });
    let provider = Entry {
        id: EntryKey { kind: Kind::Provider, key: [1; 32], sub: [9; 32] },
        seq: 0,
        expires_ms: NOW + 1000,
        payload: Vec::new(),
    };
    log.append(&[rec(1, 5), provider.clone()]).unwrap();
    assert_eq!(log.get(&id(Kind::Record, 1)).unwrap(), Some(rec(1, 5)));
    assert_eq!(log.get(&provider.id).unwrap(), Some(provider.clone()));
    // Same key bytes, other kind or other sub: other entries.
    assert_eq!(log.get(&id(Kind::Provider, 1)).unwrap(), None);
    assert_eq!(log.get(&id(Kind::Peer, 1)).unwrap(), None);
    assert_eq!(log.live(Kind::Provider), vec![(provider.id, 0, NOW + 1000)]);
    let s = log.stats();
    let bytes = (entry::encoded_len(11) + entry::encoded_len(0)) as u64;
    assert_eq!((s.appends, s.live_entries, s.live_bytes), (2, 2, bytes));
    assert_eq!(s.file_bytes, HEADER_BYTES + bytes);
    assert_eq!(s.reads, 2);
}

#[test]
fn index_and_payloads_survive_reopen() {
    let dir = TempDir::new("reopen");
    let before = {
        let (log, _) = open(dir.cfg());
        log.append(&[rec(1, 1), rec(2, 1)]).unwrap();
        let peer =
            Entry { id: id(Kind::Peer, 3), seq: 4, expires_ms: 0, payload: b"addr".to_vec() };
        log.append(&[peer]).unwrap();
        state(&log)
    };
    let (log, recovery) = open(dir.cfg());
    assert_eq!(recovery.entries, 3);
    assert_eq!(state(&log), before);
    assert_eq!(log.scan(Kind::Peer).unwrap()[0].payload, b"addr");
}

#[test]
fn lower_seq_is_ignored_and_equal_seq_refreshes_expiry_also_across_reopen() {
    let dir = TempDir::new("supersede");
    let (log, _) = open(dir.cfg());
    log.append(&[rec(1, 5)]).unwrap();
    let bytes = log.stats().file_bytes;
    log.append(&[Entry { payload: b"older".to_vec(), ..rec(1, 4) }]).unwrap();
    assert_eq!(log.stats().file_bytes, bytes, "a lower seq is not even written");
    assert_eq!(log.get(&id(Kind::Record, 1)).unwrap(), Some(rec(1, 5)));
    let refreshed = Entry { expires_ms: NOW + 60_000, ..rec(1, 5) };
    log.append(std::slice::from_ref(&refreshed)).unwrap();
    assert_eq!(log.get(&id(Kind::Record, 1)).unwrap(), Some(refreshed.clone()));
    // Within one batch the same rule holds, in order.
    log.append(&[rec(2, 3), rec(2, 1), Entry { payload: b"new".to_vec(), ..rec(2, 3) }]).unwrap();
    let two = log.get(&id(Kind::Record, 2)).unwrap().unwrap();
    assert_eq!(two.payload, b"new");
    assert_eq!(log.stats().live_entries, 2);
    drop(log);
    let (log, recovery) = open(dir.cfg());
    assert_eq!(log.get(&id(Kind::Record, 1)).unwrap(), Some(refreshed));
    assert_eq!(log.get(&id(Kind::Record, 2)).unwrap().unwrap().payload, b"new");
    assert_eq!((recovery.entries, recovery.superseded), (2, 2));
}

#[test]
fn tombstones_survive_reopen_and_the_key_can_come_back() {
    let dir = TempDir::new("tombstone");
    {
        let (log, _) = open(dir.cfg());
        log.append(&[rec(1, 9), rec(2, 1)]).unwrap();
        log.remove(&id(Kind::Record, 1)).unwrap();
        log.remove(&id(Kind::Peer, 2)).unwrap(); // absent: harmless
        assert_eq!(log.get(&id(Kind::Record, 1)).unwrap(), None);
        assert_eq!(log.stats().live_bytes, entry::encoded_len(12) as u64);
    }
    let (log, recovery) = open(dir.cfg());
    assert_eq!(log.get(&id(Kind::Record, 1)).unwrap(), None);
    assert_eq!(state(&log), vec![rec(2, 1)]);
    assert_eq!((recovery.entries, recovery.superseded), (1, 1));
    // After a removal a lower seq is accepted: nothing is indexed to compare with.
    log.append(&[rec(1, 2)]).unwrap();
    drop(log);
    let (log, _) = open(dir.cfg());
    assert_eq!(log.get(&id(Kind::Record, 1)).unwrap(), Some(rec(1, 2)));
}

#[test]
fn expired_entries_are_dropped_on_open_and_by_expire() {
    let dir = TempDir::new("expiry");
    {
        let (log, _) = open(dir.cfg());
        let soon = Entry { expires_ms: NOW + 10, ..rec(1, 1) };
        let later = Entry { expires_ms: NOW + 20, ..rec(2, 1) };
        log.append(&[soon, later, rec(3, 1)]).unwrap();
        // Expired but not yet expired by `expire`: still returned, the caller decides.
        assert!(log.get(&id(Kind::Record, 1)).unwrap().is_some());
        assert_eq!(log.expire(NOW + 10), 1);
        assert_eq!(log.get(&id(Kind::Record, 1)).unwrap(), None);
        assert_eq!(log.expire(NOW + 10), 0);
        assert_eq!(log.stats().live_entries, 2);
    }
    let (log, recovery) = Log::open(dir.cfg(), NOW + 20).unwrap();
    assert_eq!((recovery.entries, recovery.expired), (1, 2));
    assert_eq!(state(&log), vec![rec(3, 1)]);
}

#[test]
fn an_expired_newer_version_deletes_the_older_one_on_open() {
    let dir = TempDir::new("expired-newer");
    {
        let (log, _) = open(dir.cfg());
        log.append(&[rec(1, 1)]).unwrap();
        log.append(&[Entry { expires_ms: NOW + 5, ..rec(1, 2) }]).unwrap();
    }
    let (log, recovery) = Log::open(dir.cfg(), NOW + 5).unwrap();
    assert_eq!(log.get(&id(Kind::Record, 1)).unwrap(), None, "the old version came back");
    assert_eq!((recovery.expired, recovery.superseded), (1, 1));
}

// ---- Bounds and errors ----

#[test]
fn max_bytes_refuses_with_full_and_leaves_index_and_file_unchanged() {
    let dir = TempDir::new("max-bytes");
    let one = entry::encoded_len(11) as u64;
    let cfg = LogConfig { max_bytes: HEADER_BYTES + one + 1, ..dir.cfg() };
    let (log, _) = open(cfg);
    log.append(&[rec(1, 1)]).unwrap();
    let before = log.stats();
    assert_eq!(log.append(&[rec(2, 1)]), Err(StoreError::Full));
    // A batch is refused whole, its first entry included.
    assert_eq!(log.append(&[rec(1, 2), rec(2, 1)]), Err(StoreError::Full));
    assert_eq!(log.remove(&id(Kind::Record, 1)), Err(StoreError::Full));
    assert_eq!(log.stats(), before);
    assert_eq!(state(&log), vec![rec(1, 1)]);
    assert_eq!(fs::metadata(dir.log_path()).unwrap().len(), HEADER_BYTES + one);
}

#[test]
fn max_entries_caps_the_index_on_append_and_on_open() {
    let dir = TempDir::new("max-entries");
    {
        let (log, _) = open(LogConfig { max_entries: 3, ..dir.cfg() });
        log.append(&[rec(1, 1), rec(2, 1), rec(3, 1)]).unwrap();
        assert_eq!(log.append(&[rec(4, 1)]), Err(StoreError::Full));
        log.append(&[rec(3, 2)]).unwrap(); // an existing key is no new entry
        assert_eq!(log.stats().live_entries, 3);
    }
    let (log, recovery) = open(LogConfig { max_entries: 2, ..dir.cfg() });
    assert_eq!((recovery.entries, recovery.over_cap), (2, 2)); // key 3, twice
    assert_eq!(state(&log), vec![rec(1, 1), rec(2, 1)]);
}

#[test]
fn payload_over_the_bound_is_too_large() {
    let dir = TempDir::new("too-large");
    let (log, _) = open(dir.cfg());
    let big = Entry { payload: vec![0; entry::MAX_PAYLOAD_BYTES + 1], ..rec(1, 1) };
    assert_eq!(log.append(&[rec(2, 1), big]), Err(StoreError::TooLarge));
    assert_eq!(log.stats().live_entries, 0);
    let max = Entry { payload: vec![7; entry::MAX_PAYLOAD_BYTES], ..rec(1, 1) };
    log.append(std::slice::from_ref(&max)).unwrap();
    assert_eq!(log.get(&max.id).unwrap(), Some(max));
}

#[test]
fn a_full_device_is_full() {
    let dir = TempDir::new("dev-full");
    std::os::unix::fs::symlink("/dev/full", dir.log_path()).unwrap();
    // Open writes the header to the new (empty) "file": the kernel says ENOSPC.
    assert_eq!(Log::open(dir.cfg(), NOW).err(), Some(StoreError::Full));
    let quota = std::io::Error::from_raw_os_error(122);
    assert_eq!(StoreError::from(quota), StoreError::Full);
    let other = StoreError::from(std::io::Error::from_raw_os_error(5));
    assert!(matches!(other, StoreError::Io(_, _)), "{other:?}");
}

#[test]
fn a_failed_write_is_cut_back_and_leaves_the_index_unchanged() {
    let dir = TempDir::new("enospc");
    let (log, _) = open(dir.cfg());
    log.append(&[rec(1, 1)]).unwrap();
    let before = log.stats();
    log.lock().fail_next_write = Some(28); // ENOSPC after half the bytes
    assert_eq!(log.append(&[rec(1, 2), rec(2, 1)]), Err(StoreError::Full));
    assert_eq!(log.stats().errors, 1);
    assert_eq!(state(&log), vec![rec(1, 1)]);
    assert_eq!(fs::metadata(dir.log_path()).unwrap().len(), before.file_bytes);
    log.append(&[rec(3, 1)]).unwrap();
    drop(log);
    let (log, recovery) = open(dir.cfg());
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(state(&log), vec![rec(1, 1), rec(3, 1)]);
}

#[test]
fn bad_magic_and_unknown_version_are_typed_errors_and_the_file_is_untouched() {
    let dir = TempDir::new("magic");
    let cases: [(&[u8], StoreError); 4] = [
        (b"SQLite format 3\0", StoreError::BadMagic),
        (b"PTRLLOG\x02rest", StoreError::UnsupportedVersion(2)),
        (b"PTRLLOG\x00", StoreError::UnsupportedVersion(0)),
        (b"PTX", StoreError::BadMagic),
    ];
    for (bytes, error) in cases {
        fs::write(dir.log_path(), bytes).unwrap();
        assert_eq!(Log::open(dir.cfg(), NOW).err(), Some(error));
        assert_eq!(fs::read(dir.log_path()).unwrap(), bytes);
    }
}

#[test]
fn a_header_cut_short_at_creation_is_completed() {
    let dir = TempDir::new("short-header");
    fs::write(dir.log_path(), b"PTRL").unwrap();
    let (log, _) = open(dir.cfg());
    log.append(&[rec(1, 1)]).unwrap();
    drop(log);
    assert_eq!(state(&open(dir.cfg()).0), vec![rec(1, 1)]);
}

// ---- Recovery ----

/// A log with entries 1, 2 and 3 (one append each); returns the file's bytes and the offset
/// of each entry.
fn three_entries(dir: &TempDir) -> (Vec<u8>, [u64; 3]) {
    let (log, _) = open(dir.cfg());
    let mut offsets = [0; 3];
    for (n, offset) in (1..=3).zip(&mut offsets) {
        *offset = log.stats().file_bytes;
        log.append(&[rec(n, 1)]).unwrap();
    }
    (fs::read(dir.log_path()).unwrap(), offsets)
}

#[test]
fn a_torn_last_entry_is_cut_at_every_byte_and_the_next_append_works() {
    let source = TempDir::new("torn-source");
    let (bytes, [_, _, last]) = three_entries(&source);
    for cut in last..bytes.len() as u64 {
        let dir = TempDir::new("torn");
        fs::write(dir.log_path(), &bytes[..cut as usize]).unwrap();
        let (log, recovery) = open(dir.cfg());
        assert_eq!(recovery.truncated_bytes, cut - last, "cut at {cut}");
        assert_eq!((recovery.entries, recovery.corrupt_skipped), (2, 0), "cut at {cut}");
        assert_eq!(fs::metadata(dir.log_path()).unwrap().len(), last);
        log.append(&[rec(4, 1)]).unwrap();
        drop(log);
        let (log, recovery) = open(dir.cfg());
        assert_eq!(recovery.truncated_bytes, 0);
        assert_eq!(state(&log), vec![rec(1, 1), rec(2, 1), rec(4, 1)], "cut at {cut}");
    }
}

#[test]
fn a_corrupt_middle_entry_is_skipped_whichever_byte_is_hit() {
    let source = TempDir::new("middle-source");
    let (bytes, [_, second, third]) = three_entries(&source);
    let dir = TempDir::new("middle");
    for at in second..third {
        let mut bad = bytes.clone();
        bad[at as usize] ^= 0x5a;
        fs::write(dir.log_path(), &bad).unwrap();
        let (log, recovery) = open(dir.cfg());
        assert_eq!(state(&log), vec![rec(1, 1), rec(3, 1)], "byte {at}");
        assert_eq!((recovery.corrupt_skipped, recovery.truncated_bytes), (1, 0), "byte {at}");
        // The stretch is compacted away at once: nothing of entry 2 is left.
        let len = bytes.len() as u64 - (third - second);
        assert_eq!(fs::metadata(dir.log_path()).unwrap().len(), len, "byte {at}");
        assert_eq!(log.stats().compactions, 1);
    }
}

#[test]
fn a_corrupt_stretch_cannot_swallow_later_appends() {
    // Entry 2's length is forged to run past the end of the file, exactly over the append
    // that will follow, and 4 bytes of its body are forged so that its CRC will then match:
    // the first open skips it (it runs past the end) and resyncs at entry 3. Without the
    // compaction at open, the append lands right after entry 3 and the reopen takes the
    // forged entry for good, losing entries 3 and 4.
    let dir = TempDir::new("swallow");
    let (mut bytes, [_, second, _]) = three_entries(&dir);
    let mut append = Vec::new();
    let r = rec(4, 1);
    entry::encode(&entry::raw(&r.id, r.seq, r.expires_ms, &r.payload), &mut append).unwrap();
    let x = second as usize;
    let fake_len = bytes.len() - (x + 4) + append.len();
    bytes[x..x + 4].copy_from_slice(&(fake_len as u32).to_le_bytes());
    let mut covered = bytes[x + 4..].to_vec();
    covered.extend_from_slice(&append[..append.len() - 4]);
    let target = u32::from_le_bytes(append[append.len() - 4..].try_into().unwrap());
    force_crc(&mut covered, 81, target); // entry 2's first payload bytes
    bytes[x + 4 + 81..x + 4 + 85].copy_from_slice(&covered[81..85]);
    fs::write(dir.log_path(), &bytes).unwrap();

    let (log, recovery) = open(dir.cfg());
    assert_eq!((recovery.corrupt_skipped, log.stats().compactions), (1, 1));
    log.append(&[rec(4, 1)]).unwrap();
    drop(log);
    let (log, recovery) = open(dir.cfg());
    assert_eq!(state(&log), vec![rec(1, 1), rec(3, 1), rec(4, 1)]);
    assert_eq!(recovery.corrupt_skipped, 0);
}

/// Sets the 4 bytes of `data` at `at` so that its CRC32C is `target`. CRC is affine over
/// GF(2), so the 32 bits are found by elimination over the effect of flipping each one.
fn force_crc(data: &mut [u8], at: usize, target: u32) {
    use super::crc32c::crc32c;
    data[at..at + 4].fill(0);
    let base = crc32c(data);
    // basis[b]: (effect, bits flipped) with highest set bit b.
    let mut basis: [Option<(u32, u32)>; 32] = [None; 32];
    for bit in 0..32 {
        data[at + bit / 8] ^= 1 << (bit % 8);
        let (mut v, mut m) = (crc32c(data) ^ base, 1u32 << bit);
        data[at + bit / 8] ^= 1 << (bit % 8);
        while v != 0 {
            let top = 31 - v.leading_zeros() as usize;
            match basis[top] {
                Some((bv, bm)) => (v, m) = (v ^ bv, m ^ bm),
                None => {
                    basis[top] = Some((v, m));
                    break;
                }
            }
        }
    }
    let (mut want, mut flips) = (target ^ base, 0u32);
    while want != 0 {
        let (bv, bm) = basis[31 - want.leading_zeros() as usize].expect("full rank");
        (want, flips) = (want ^ bv, flips ^ bm);
    }
    for bit in (0..32).filter(|b| flips >> b & 1 == 1) {
        data[at + bit / 8] ^= 1 << (bit % 8);
    }
    assert_eq!(crc32c(data), target);
}

#[test]
fn a_corrupt_last_entry_is_a_torn_tail() {
    let dir = TempDir::new("bad-crc-tail");
    let (mut bytes, [_, _, third]) = three_entries(&dir);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(dir.log_path(), &bytes).unwrap();
    let (_, recovery) = open(dir.cfg());
    assert_eq!((recovery.entries, recovery.truncated_bytes), (2, bytes.len() as u64 - third));
}

#[test]
fn a_huge_length_field_is_refused_without_allocating() {
    let dir = TempDir::new("huge-len");
    let mut bytes = entry::HEADER.to_vec();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0; 16]);
    fs::write(dir.log_path(), &bytes).unwrap();
    let (log, recovery) = open(dir.cfg());
    assert_eq!((recovery.entries, recovery.truncated_bytes), (0, 20));
    // A length just inside the bound but past the end of the file: torn, not read.
    let mut bytes = entry::HEADER.to_vec();
    bytes.extend_from_slice(&entry::MAX_LEN.to_le_bytes());
    fs::write(dir.log_path(), &bytes).unwrap();
    drop(log);
    let (_, recovery) = open(dir.cfg());
    assert_eq!(recovery.truncated_bytes, 4);
}

#[test]
fn an_entry_over_the_length_bound_is_refused_even_with_a_good_crc() {
    let dir = TempDir::new("over-bound");
    let mut body = vec![entry::KIND_RECORD];
    body.extend_from_slice(&[0; 80]); // key, sub, seq, expires_ms
    body.resize(body.len() + entry::MAX_PAYLOAD_BYTES + 1, 0xab);
    let crc = super::crc32c::crc32c(&body);
    let mut bytes = entry::HEADER.to_vec();
    bytes.extend_from_slice(&(body.len() as u32 + 4).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&crc.to_le_bytes());
    fs::write(dir.log_path(), &bytes).unwrap();
    let (_, recovery) = open(dir.cfg());
    assert_eq!(recovery.entries, 0);
    assert_eq!(recovery.truncated_bytes, bytes.len() as u64 - HEADER_BYTES);
}

#[test]
fn unknown_kinds_are_skipped_and_counted() {
    let dir = TempDir::new("unknown");
    drop(open(dir.cfg()));
    let mut tail = Vec::new();
    let raw =
        RawEntry { kind: 9, key: [1; 32], sub: [0; 32], seq: 1, expires_ms: 0, payload: b"x" };
    entry::encode(&raw, &mut tail).unwrap();
    // A tombstone naming an unknown kind is unknown too.
    entry::encode(&RawEntry { kind: entry::KIND_TOMBSTONE, payload: &[7], ..raw }, &mut tail)
        .unwrap();
    let r = rec(2, 1);
    entry::encode(&entry::raw(&r.id, r.seq, r.expires_ms, &r.payload), &mut tail).unwrap();
    OpenOptions::new()
        .write(true)
        .open(dir.log_path())
        .unwrap()
        .write_all_at(&tail, HEADER_BYTES)
        .unwrap();
    let (log, recovery) = open(dir.cfg());
    assert_eq!((recovery.unknown_skipped, recovery.entries), (2, 1));
    assert_eq!(state(&log), vec![rec(2, 1)]);
}

#[test]
fn a_stale_compaction_file_is_deleted_on_open() {
    let dir = TempDir::new("stale-tmp");
    let tmp = dir.0.join(TMP_FILE);
    fs::write(&tmp, b"half a compaction").unwrap();
    drop(open(dir.cfg()));
    assert!(!tmp.exists());
}

// ---- Compaction ----

/// A log of 40 entries, of which: 10 superseded, 10 removed, 10 expiring at NOW + 1.
fn with_garbage(log: &Log) {
    for n in 0..40 {
        log.append(&[rec(n, 1)]).unwrap();
    }
    for n in 0..10 {
        log.append(&[rec(n, 2)]).unwrap();
        log.remove(&id(Kind::Record, 10 + n)).unwrap();
        log.append(&[Entry { expires_ms: NOW + 1, ..rec(20 + n, 2) }]).unwrap();
    }
}

#[test]
fn compaction_keeps_exactly_the_live_set_and_shrinks_the_file() {
    let dir = TempDir::new("compact");
    let (log, _) = open(LogConfig { compact_min_bytes: 0, ..dir.cfg() });
    with_garbage(&log);
    assert!(log.needs_compaction());
    let before = log.stats();
    let expected: Vec<Entry> =
        (0..10).map(|n| rec(n, 2)).chain((30..40).map(|n| rec(n, 1))).collect();
    let report = log.compact(NOW + 1).unwrap();
    assert_eq!((report.entries, report.expired, report.carried_over), (20, 10, 0));
    assert_eq!(report.before_bytes, before.file_bytes);
    assert!(report.after_bytes < before.file_bytes / 2, "{report:?}");
    assert_eq!(state(&log), expected);
    let after = log.stats();
    assert_eq!(after.file_bytes, report.after_bytes);
    assert_eq!(after.file_bytes, HEADER_BYTES + after.live_bytes, "no garbage left");
    assert_eq!(fs::metadata(dir.log_path()).unwrap().len(), after.file_bytes);
    assert!(!log.needs_compaction());
    assert!(!dir.0.join(TMP_FILE).exists());
    // The log goes on after the swap, and a reopen sees the same state.
    log.append(&[rec(50, 1)]).unwrap();
    let now = state(&log);
    drop(log);
    let (log, recovery) = open(dir.cfg());
    assert_eq!(state(&log), now);
    assert_eq!(
        (recovery.superseded, recovery.truncated_bytes, recovery.corrupt_skipped),
        (0, 0, 0)
    );
}

#[test]
fn needs_compaction_follows_the_garbage_ratio_and_the_minimum_size() {
    let dir = TempDir::new("needs");
    let (log, _) = open(LogConfig { compact_min_bytes: 0, ..dir.cfg() });
    log.append(&[rec(1, 1), rec(2, 1)]).unwrap();
    assert!(!log.needs_compaction());
    log.append(&[rec(1, 2), rec(2, 2)]).unwrap(); // just under half is garbage (header)
    assert!(!log.needs_compaction());
    log.append(&[rec(1, 3)]).unwrap();
    assert!(log.needs_compaction());
    drop(log);
    let (log, _) = open(dir.cfg()); // default minimum: 1 MiB
    assert!(!log.needs_compaction());
}

#[test]
fn writes_during_the_copy_are_carried_over_at_the_swap() {
    let dir = TempDir::new("carry");
    let (log, _) = open(dir.cfg());
    with_garbage(&log);
    let report = log
        .compact_with(NOW + 1, || {
            log.append(&[rec(0, 3)]).unwrap(); // supersedes a copied entry
            log.remove(&id(Kind::Record, 30)).unwrap(); // removes a copied entry
            log.append(&[rec(60, 1), rec(61, 1)]).unwrap(); // new keys
            log.remove(&id(Kind::Record, 61)).unwrap(); // new and gone again
            log.append(&[rec(20, 5)]).unwrap(); // revives a key the copy dropped as expired
            log.remove(&id(Kind::Record, 32)).unwrap(); // removed, then back with a lower seq
            log.append(&[rec(32, 0)]).unwrap();
            assert_eq!(log.get(&id(Kind::Record, 31)).unwrap(), Some(rec(31, 1)));
        })
        .unwrap();
    assert_eq!(report.carried_over, 4);
    let mut expected: Vec<Entry> =
        (1..10).map(|n| rec(n, 2)).chain((33..40).map(|n| rec(n, 1))).collect();
    expected.extend([rec(0, 3), rec(20, 5), rec(31, 1), rec(32, 0), rec(60, 1)]);
    expected.sort_by_key(|e| e.id);
    assert_eq!(state(&log), expected);
    // The new file holds the stale copies (0, 30, 32) and their tombstones as garbage.
    let s = log.stats();
    let stale = entry::encoded_len(10) + entry::encoded_len(40) + entry::encoded_len(42);
    let stale = stale + 3 * entry::encoded_len(1);
    assert_eq!(s.file_bytes, HEADER_BYTES + s.live_bytes + stale as u64);
    drop(log);
    let (log, recovery) = open(dir.cfg());
    assert_eq!(state(&log), expected);
    assert_eq!(recovery.superseded, 3);
}

#[test]
fn appends_from_threads_during_compactions_are_not_lost() {
    let dir = TempDir::new("concurrent");
    let (log, _) = open(dir.cfg());
    let log = Arc::new(log);
    with_garbage(&log);
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u8)
        .map(|t| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for i in 0..200u64 {
                    let key = EntryKey { kind: Kind::Peer, key: [t; 32], sub: [i as u8; 32] };
                    log.append(&[Entry { id: key, seq: i, expires_ms: 0, payload: vec![t; 40] }])
                        .unwrap();
                    if i % 3 == 0 {
                        log.remove(&key).unwrap();
                    }
                }
            })
        })
        .collect();
    let waiter = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            for w in writers {
                w.join().unwrap();
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut compactions = 0;
    while !done.load(Ordering::Acquire) || compactions == 0 {
        log.compact(NOW + 1).unwrap();
        compactions += 1;
    }
    waiter.join().unwrap();
    let peers = log.live(Kind::Peer);
    assert_eq!(peers.len(), 3 * 133, "after {compactions} compactions");
    let now = state(&log);
    drop(log);
    assert_eq!(state(&open(dir.cfg()).0), now);
}

// ---- Durability modes ----

#[test]
fn batch_mode_shares_syncs_between_concurrent_appenders() {
    let dir = TempDir::new("group-commit");
    let (log, _) = open(LogConfig { sync: SyncMode::Batch, ..dir.cfg() });
    let log = Arc::new(log);
    let (threads, each) = (8u8, 25u8);
    let start = Arc::new(Barrier::new(usize::from(threads)));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (log, start) = (Arc::clone(&log), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for i in 0..each {
                    let key = EntryKey { kind: Kind::Record, key: [t; 32], sub: [i; 32] };
                    log.append(&[Entry { id: key, seq: 0, expires_ms: 0, payload: vec![i; 64] }])
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = log.stats();
    assert_eq!(s.appends, u64::from(threads) * u64::from(each));
    assert!(s.syncs >= 1 && s.syncs < s.appends, "{} syncs for {} appends", s.syncs, s.appends);
}

#[test]
fn always_mode_syncs_every_call() {
    let dir = TempDir::new("always");
    let (log, _) = open(LogConfig { sync: SyncMode::Always, ..dir.cfg() });
    for n in 0..5 {
        log.append(&[rec(n, 1), rec(n + 10, 1)]).unwrap();
    }
    log.remove(&id(Kind::Record, 1)).unwrap();
    assert_eq!((log.stats().syncs, log.stats().appends), (6, 11));
}

/// Rough cost of an append (one 100-byte entry) per sync mode, and of a get; printed with
/// `cargo nextest run --lib store:: --no-capture`. Not an assertion: timings vary by disk.
#[test]
fn timing_of_append_and_get() {
    for sync in [SyncMode::None, SyncMode::Batch, SyncMode::Always] {
        let dir = TempDir::new("timing");
        let (log, _) = open(LogConfig { sync, ..dir.cfg() });
        let n = if sync == SyncMode::None { 2000 } else { 200 };
        let entry = |i: u32| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            Entry {
                id: EntryKey { kind: Kind::Record, key, sub: [0; 32] },
                seq: 0,
                expires_ms: 0,
                payload: vec![1; 100],
            }
        };
        let started = Instant::now();
        for i in 0..n {
            log.append(&[entry(i)]).unwrap();
        }
        let append = started.elapsed() / n;
        let started = Instant::now();
        for i in 0..n {
            assert!(log.get(&entry(i).id).unwrap().is_some());
        }
        let get = started.elapsed() / n;
        println!("store timing: {sync:?}: append {append:?}/entry (1 thread), get {get:?}");
        assert!(append < Duration::from_secs(1));
    }
}

// ---- proto-spec/store.md vectors ----

/// The vectors of store.md §6: every ```` ```hex ```` block preceded by a `vector:` line.
fn spec_vectors() -> Vec<(String, Vec<u8>)> {
    let spec = include_str!("../../proto-spec/store.md");
    let mut out = Vec::new();
    let mut name = None;
    let mut lines = spec.lines();
    while let Some(line) = lines.next() {
        if let Some(n) = line.strip_prefix("vector: ") {
            name = Some(n.trim_matches('`').to_string());
        } else if line.trim() == "```hex" {
            let mut hex = String::new();
            for l in lines.by_ref().take_while(|l| l.trim() != "```") {
                hex.extend(
                    l.split('#').next().unwrap_or("").chars().filter(|c| c.is_ascii_hexdigit()),
                );
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            out.push((name.take().expect("a vector: line before each hex block"), bytes));
        }
    }
    out
}

/// The entries the vectors hold, encoded by this code.
fn vector_entries(name: &str) -> Vec<u8> {
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let mut out = entry::HEADER.to_vec();
    let mut add = |e: RawEntry<'_>| entry::encode(&e, &mut out).unwrap();
    match name {
        "record" => {
            add(RawEntry { kind: 1, key, sub: [0; 32], seq: 1, expires_ms: 0, payload: b"hello" });
        }
        "provider-then-tombstone" => {
            let sub = [0xaa; 32];
            add(RawEntry {
                kind: 2,
                key,
                sub,
                seq: 0x0102,
                expires_ms: 1_700_000_000_000,
                payload: &[],
            });
            add(RawEntry { kind: 4, key, sub, seq: 0x0102, expires_ms: 0, payload: &[2] });
        }
        other => panic!("unknown vector {other}"),
    }
    out
}

#[test]
fn spec_vectors_match_byte_for_byte_and_open_as_specified() {
    let vectors = spec_vectors();
    let names: Vec<&str> = vectors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["record", "provider-then-tombstone"]);
    for (name, bytes) in &vectors {
        assert_eq!(hex(bytes), hex(&vector_entries(name)), "vector {name}");
        let dir = TempDir::new("vector");
        fs::write(dir.log_path(), bytes).unwrap();
        let (log, recovery) = Log::open(dir.cfg(), 1000).unwrap(); // before any expiry
        let entries = state(&log);
        match name.as_str() {
            "record" => {
                assert_eq!(entries.len(), 1);
                assert_eq!((entries[0].seq, entries[0].payload.as_slice()), (1, &b"hello"[..]));
            }
            _ => assert_eq!((entries.len(), recovery.superseded), (0, 1)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_holds_it() {
    let dir = TempDir::new("lock");
    let (first, _) = open(dir.cfg());
    let second = Log::open(dir.cfg(), 0);
    assert!(matches!(second, Err(StoreError::Locked)), "{:?}", second.err());
    // Released with the first (and by the kernel if its process dies).
    drop(first);
    let (again, _) = open(dir.cfg());
    // Compaction renames a new log over the old one: the lock is on LOCK, so it holds.
    again.compact(0).unwrap();
    assert!(matches!(Log::open(dir.cfg(), 0), Err(StoreError::Locked)));
}
