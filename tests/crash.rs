//! Acknowledged means kept (issue: persistent records): a child process appends records to a
//! log and prints each acknowledgement the moment `append` returns; the test kills it with
//! SIGKILL at a random moment, reopens the log, and checks that every acknowledged record is
//! there with its sequence number (or a later one) and the value that goes with it. Repeated
//! on the same log, so each recovery starts from the last one's torn tail.
//!
//! The child is this test binary run again with `PETREL_CRASH_CHILD` set, which makes
//! `child_writer` the writer instead of a no-op. `PETREL_CRASH_CYCLES` overrides the number
//! of cycles (the closing figure used 100).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use petrel::store::{Entry, EntryKey, Kind, Log, LogConfig, SyncMode};

const KEYS: u8 = 64;
const CHILD_ENV: &str = "PETREL_CRASH_CHILD";

fn log_config(dir: &Path) -> LogConfig {
    // Process crashes only: `write` returning is the promise (sync = none).
    LogConfig { sync: SyncMode::None, ..LogConfig::new(dir.to_path_buf()) }
}

fn key(n: u8) -> EntryKey {
    EntryKey { kind: Kind::Record, key: [n; 32], sub: [0; 32] }
}

/// The value written with `seq` under key `n`: checkable after recovery.
fn value(n: u8, seq: u64) -> Vec<u8> {
    let len = 100 + (seq % 900) as usize;
    (0..len).map(|i| (i as u64 ^ seq ^ u64::from(n)) as u8).collect()
}

#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let start_seq: u64 = std::env::var("PETREL_CRASH_START").unwrap().parse().unwrap();
    let (log, _) = Log::open(log_config(Path::new(&dir)), 1).unwrap();
    let mut out = std::io::stdout().lock();
    for seq in start_seq.. {
        let n = (seq % u64::from(KEYS)) as u8;
        let entry = Entry { id: key(n), seq, expires_ms: 0, payload: value(n, seq) };
        log.append(&[entry]).unwrap();
        std::io::Write::write_all(&mut out, format!("{n} {seq}\n").as_bytes()).unwrap();
        std::io::Write::flush(&mut out).unwrap();
    }
}

/// A small deterministic generator (xorshift), so a failure names its cycle.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn no_acknowledged_record_is_lost_when_the_writer_is_killed() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let cycles: u64 =
        std::env::var("PETREL_CRASH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let dir: PathBuf = std::env::temp_dir().join(format!("petrel-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<u8, u64> = BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_seq = 1u64;
    let deadline = Instant::now() + Duration::from_secs(60 + cycles);
    let mut total_acks = 0u64;
    for cycle in 0..cycles {
        assert!(Instant::now() < deadline, "cycle {cycle}: out of time");
        let mut child = Command::new(&exe)
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env("PETREL_CRASH_START", next_seq.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a random number of acknowledgements: somewhere in the middle of a write,
        // an acknowledgement, or between the two.
        let kill_after = 1 + next(&mut rng) % 400;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < kill_after {
            let Some(Ok(line)) = lines.next() else { break };
            let Some((n, seq)) = line.split_once(' ') else { continue }; // harness output
            let (Ok(n), Ok(seq)) = (n.parse::<u8>(), seq.parse::<u64>()) else { continue };
            acked.insert(n, seq);
            next_seq = seq + 1;
            seen += 1;
        }
        child.kill().unwrap(); // SIGKILL
                               // Acknowledgements already in the pipe count too: the child promised them.
        for line in lines.map_while(Result::ok) {
            if let Some((n, seq)) = line.split_once(' ') {
                if let (Ok(n), Ok(seq)) = (n.parse::<u8>(), seq.parse::<u64>()) {
                    acked.insert(n, seq);
                    next_seq = seq + 1;
                }
            }
        }
        let _ = child.wait();
        total_acks += seen;

        let (log, recovery) = Log::open(log_config(&dir), 1).unwrap();
        for (&n, &seq) in &acked {
            let got = log.get(&key(n)).unwrap().unwrap_or_else(|| {
                panic!("cycle {cycle}: key {n} acknowledged at seq {seq} is gone ({recovery:?})")
            });
            assert!(got.seq >= seq, "cycle {cycle}: key {n} went back from {seq} to {}", got.seq);
            assert_eq!(got.payload, value(n, got.seq), "cycle {cycle}: key {n} seq {}", got.seq);
        }
        // Later sequence numbers (written but not acknowledged before the kill) are fine.
        next_seq += 1000;
    }
    assert!(total_acks >= cycles, "the writer acknowledged almost nothing: {total_acks}");
    eprintln!("{cycles} SIGKILL cycles, {total_acks} acknowledged writes, 0 lost");
    let _ = std::fs::remove_dir_all(&dir);
}
