//! Work a protocol hands to the worker pool (DESIGN.md, "The shape", item 3): CPU-heavy steps
//! that must not stall the reactor, such as verifying the signature of a mutable record a
//! peer asks us to store.
//!
//! A protocol emits `Action::Job { key, job }`; the router names it with a [`JobId`] that
//! carries the protocol as its owner and emits `Output::Job`. The driver runs [`run`] on a
//! worker thread (the simulator runs it inline) and reports `Input::JobDone`, or
//! `Input::JobRefused` when the pool's queue is full or the job was lost; the router hands the
//! result back to the owner by its key. [`run`] is a pure function of the job, so where it runs
//! changes nothing but timing.
//!
//! Writes to the node's log (`Job::Persist`, `Job::Forget`) are the exception: they run
//! against the [`store::Log`] the driver passes in, and a driver without one (the simulator,
//! a node with no data directory) reports them done. The protocol names what to write and
//! for how long; the wall-clock expiry is stamped here, at the boundary, so the protocol
//! core never reads a clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store;
use crate::wire::messages::MutableRecord;

/// Names a job across the router and the driver: the protocol that asked for it, and the
/// protocol's own key for it. Copy it back unchanged with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId {
    /// The protocol the result goes back to.
    pub owner: super::ProtocolId,
    /// The owner's name for the job.
    pub key: JobKey,
}

/// A protocol's own name for one of its jobs; the router hands it back with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobKey(pub u64);

/// A job for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Verify a mutable record's Ed25519 signature (boxed: the record holds its value).
    VerifyRecord(Box<MutableRecord>),
    /// Append entries to the log; done once `write` returned (and, with `sync = batch` or
    /// `always`, once an fdatasync covered them).
    Persist(Vec<PersistEntry>),
    /// Delete entries from the log (tombstones); nobody waits on the answer.
    Forget(Vec<(PersistKind, [u8; 32], [u8; 32])>),
    /// Read an entry's payload back from the log (a cold value).
    Read(PersistKind, [u8; 32], [u8; 32]),
    /// Drop expired entries from the log's index and compact it if its garbage ratio says
    /// so (live entries rewritten to a new file; reads and appends go on meanwhile).
    Housekeep,
}

/// What a log entry holds, as the protocol names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistKind {
    /// A record: key = record key, sub = zeros.
    Record,
    /// A provider: key = content key, sub = provider id.
    Provider,
    /// A routing-table peer: key = its id, sub = zeros.
    Peer,
}

/// One entry to append (proto-spec/store.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistEntry {
    /// What it is.
    pub kind: PersistKind,
    /// Its key.
    pub key: [u8; 32],
    /// Its sub-key (a provider id), zeros when unused.
    pub sub: [u8; 32],
    /// A later entry with a lower `seq` does not replace this one.
    pub seq: u64,
    /// How long it lives from the write; `None`: until replaced or forgotten.
    pub ttl: Option<Duration>,
    /// The encoded entry (`kad::persist`).
    pub payload: Vec<u8>,
}

/// Why a write to the log failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistError {
    /// The disk (or the log's size cap) is full: refuse with `StorageFull`.
    Full,
    /// Any other I/O error: refuse with `Overloaded`, and keep serving what we hold.
    Io,
}

/// What a job found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// Whether the record's signature verified.
    RecordVerified(bool),
    /// Whether the entries reached the log.
    Persisted(Result<(), PersistError>),
    /// The payload read back, if the log holds the entry.
    Read(Result<Option<Vec<u8>>, PersistError>),
}

/// Runs `job`, writing to `log` if it is a log job. Without a log, a write succeeds at once.
pub fn run(job: Job, log: Option<&store::Log>) -> JobResult {
    match job {
        Job::VerifyRecord(record) => JobResult::RecordVerified(record.verify()),
        Job::Persist(entries) => {
            let Some(log) = log else { return JobResult::Persisted(Ok(())) };
            let now = unix_ms();
            let entries: Vec<store::Entry> = entries.into_iter().map(|e| entry(e, now)).collect();
            JobResult::Persisted(log.append(&entries).map_err(|e| match e {
                store::StoreError::Full => PersistError::Full,
                _ => PersistError::Io,
            }))
        }
        Job::Forget(ids) => {
            let Some(log) = log else { return JobResult::Persisted(Ok(())) };
            let mut result = Ok(());
            for (kind, key, sub) in ids {
                if log.remove(&store::EntryKey { kind: store_kind(kind), key, sub }).is_err() {
                    result = Err(PersistError::Io);
                }
            }
            JobResult::Persisted(result)
        }
        Job::Read(kind, key, sub) => {
            let Some(log) = log else { return JobResult::Read(Ok(None)) };
            let id = store::EntryKey { kind: store_kind(kind), key, sub };
            JobResult::Read(
                log.get(&id).map(|e| e.map(|e| e.payload)).map_err(|_| PersistError::Io),
            )
        }
        Job::Housekeep => {
            let Some(log) = log else { return JobResult::Persisted(Ok(())) };
            let now = unix_ms();
            log.expire(now);
            if log.needs_compaction() && log.compact(now).is_err() {
                return JobResult::Persisted(Err(PersistError::Io));
            }
            JobResult::Persisted(Ok(()))
        }
    }
}

/// Milliseconds since the Unix epoch, by the wall clock (0 before 1970).
pub fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn store_kind(kind: PersistKind) -> store::Kind {
    match kind {
        PersistKind::Record => store::Kind::Record,
        PersistKind::Provider => store::Kind::Provider,
        PersistKind::Peer => store::Kind::Peer,
    }
}

fn entry(e: PersistEntry, now_ms: u64) -> store::Entry {
    let ttl_ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
    store::Entry {
        id: store::EntryKey { kind: store_kind(e.kind), key: e.key, sub: e.sub },
        seq: e.seq,
        // At least 1: 0 means "never expires" on disk.
        expires_ms: e.ttl.map_or(0, |t| now_ms.saturating_add(ttl_ms(t)).max(1)),
        payload: e.payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn verify_record_reports_good_and_forged_signatures() {
        let kp = Keypair::from_seed([5; 32]);
        let good = MutableRecord::sign(&kp, b"s".to_vec(), 1, b"v".to_vec());
        assert_eq!(
            run(Job::VerifyRecord(Box::new(good.clone())), None),
            JobResult::RecordVerified(true)
        );
        let mut forged = good;
        let mut value = forged.value.as_slice().to_vec();
        value.push(1);
        forged.value = value.into();
        assert_eq!(
            run(Job::VerifyRecord(Box::new(forged)), None),
            JobResult::RecordVerified(false)
        );
    }
}
