//! `Log::open` on a `records.log` holding arbitrary bytes (proto-spec/store.md §3).
//!
//! Input: the whole file. Checked: open never panics and fails only with `BadMagic` or
//! `UnsupportedVersion`, leaving the file untouched; every indexed entry reads back with its
//! seq; after removing one entry and appending a new one, a reopen finds nothing cut or
//! skipped past what the first open fixed, and gives back exactly the state before, less the
//! removed entry, plus the appended one.
//!
//! This holds also after a corrupt stretch, because open compacts it away: left in place, an
//! offset inside it whose length ran past the end of the file could verify over the appended
//! bytes (a fuzzer can forge the CRC; see `a_corrupt_stretch_cannot_swallow_later_appends`).
//!
//! The log lives in `/dev/shm` when there is one, so the fsyncs of open cost little.

#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use petrel::store::{Entry, EntryKey, Kind, Log, LogConfig, StoreError, SyncMode, LOG_FILE};

/// The clock both opens read: entries expiring at or before it are dead.
const NOW_MS: u64 = 1_700_000_000_000;
const KINDS: [Kind; 3] = [Kind::Record, Kind::Provider, Kind::Peer];

fuzz_target!(|data: &[u8]| {
    let dir = scratch_dir();
    let path = dir.join(LOG_FILE);
    fs::write(&path, data).expect("write the log file");
    let cfg = LogConfig { sync: SyncMode::None, ..LogConfig::new(dir) };
    let (log, first) = match Log::open(cfg.clone(), NOW_MS) {
        Ok(opened) => opened,
        Err(StoreError::BadMagic | StoreError::UnsupportedVersion(_)) => {
            assert_eq!(fs::read(&path).expect("read back"), data, "a refused file was changed");
            return;
        }
        Err(e) => panic!("open failed with {e:?}"),
    };
    let mut expected = state(&log);
    assert_eq!(expected.len() as u64, first.entries);
    assert_eq!(log.stats().compactions, u64::from(first.corrupt_skipped > 0));
    for kind in KINDS {
        for (id, seq, expires_ms) in log.live(kind) {
            let e = log.get(&id).expect("an indexed entry reads back").expect("present");
            assert_eq!((e.seq, e.expires_ms), (seq, expires_ms));
        }
    }

    let probe = Entry {
        id: EntryKey { kind: Kind::Peer, key: [0xfe; 32], sub: [0x01; 32] },
        seq: u64::MAX, // at least any seq the file holds for this key
        expires_ms: 0,
        payload: data.iter().take(64).copied().collect(),
    };
    if let Some(victim) = expected.iter().position(|e| e.id != probe.id) {
        log.remove(&expected[victim].id).expect("remove");
        expected.remove(victim);
    }
    log.append(std::slice::from_ref(&probe)).expect("append");
    expected.retain(|e| e.id != probe.id);
    expected.push(probe.clone());
    expected.sort_by_key(|e| e.id);
    drop(log);

    let (log, second) = Log::open(cfg, NOW_MS).expect("reopen");
    assert_eq!((second.truncated_bytes, second.corrupt_skipped), (0, 0));
    assert_eq!(state(&log), expected);
});

/// Every live entry, sorted by key.
fn state(log: &Log) -> Vec<Entry> {
    let mut all: Vec<Entry> =
        KINDS.into_iter().flat_map(|k| log.scan(k).expect("indexed entries read back")).collect();
    all.sort_by_key(|e| e.id);
    all
}

/// A directory of this process's own, emptied of everything but the log file each run.
fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("petrel-fuzz-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    })
}
