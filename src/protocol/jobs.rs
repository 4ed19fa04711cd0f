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

use std::sync::Arc;

use super::author_keys::AuthorKeys;
use crate::store;
use crate::wire::messages::{GossipMessage, MutableRecord};

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
    /// Append entries to the log, in order; done once `write` returned (and, with `sync =
    /// batch` or `always`, once an fdatasync covered them).
    Persist(Vec<PersistEntry>),
    /// Read an entry's payload back from the log (a cold value).
    Read(PersistKind, [u8; 32], [u8; 32]),
    /// Drop expired entries from the log's index and compact it if its garbage ratio says
    /// so (live entries rewritten to a new file; reads and appends go on meanwhile).
    Housekeep,
    /// Check gossip messages: each author's signature, then, where `validate` says so, the
    /// application's validator for the topic. One verdict per message, in order.
    CheckMessages {
        /// The messages (shared with the protocol's pending set, not copied).
        messages: Vec<Arc<GossipMessage>>,
        /// Per message: run the topic's validator after the signature verified.
        validate: Vec<bool>,
    },
}

/// What a check found of one gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Verified, and accepted by the validator (or there is none): deliver and forward.
    Accept,
    /// The signature does not verify: drop, and score the sender down.
    BadSignature,
    /// The validator rejected it: drop, and score the sender down.
    Reject,
    /// The validator ignored it, or the check did not run: drop silently.
    Ignore,
}

/// The application's judgement of messages of a topic, run on a worker after the signature
/// verified (`Handle::set_validator`).
pub trait Validator: Send + Sync {
    /// The verdict on `message`: `Accept`, `Reject` or `Ignore`.
    fn validate(&self, message: &GossipMessage) -> Verdict;
}

impl<F> Validator for F
where
    F: Fn(&GossipMessage) -> Verdict + Send + Sync,
{
    fn validate(&self, message: &GossipMessage) -> Verdict {
        self(message)
    }
}

/// Finds the validator of a topic, if one is registered.
pub type Validators<'a> = &'a (dyn Fn(&str) -> Option<Arc<dyn Validator>> + Sync);

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
    /// Delete the entry under `(kind, key, sub)` instead (a tombstone); `seq`, `ttl` and
    /// `payload` are unused. In the same queue as the writes, so it cannot overtake one.
    pub forget: bool,
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
    /// One verdict per checked message, in order.
    MessagesChecked(Vec<Verdict>),
}

/// Runs `job`, writing to `log` if it is a log job. Without a log, a write succeeds at once.
/// Gossip messages are checked without validators (every verified one is accepted).
pub fn run(job: Job, log: Option<&store::Log>) -> JobResult {
    run_with(job, log, &|_| None, None)
}

/// [`run`], with the application's gossip validators and the workers' cache of decoded author
/// keys (none: every check decodes its author's key).
pub fn run_with(
    job: Job,
    log: Option<&store::Log>,
    validators: Validators<'_>,
    keys: Option<&AuthorKeys>,
) -> JobResult {
    match job {
        Job::CheckMessages { messages, validate } => {
            JobResult::MessagesChecked(check_messages(&messages, &validate, validators, keys))
        }
        Job::VerifyRecord(record) => JobResult::RecordVerified(record.verify()),
        Job::Persist(entries) => {
            let Some(log) = log else { return JobResult::Persisted(Ok(())) };
            JobResult::Persisted(persist(log, entries))
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

/// Verifies each message's signature, then runs its topic's validator where asked. A
/// validator that panics counts as Ignore (the worker catches the panic for the whole job
/// otherwise, and every message of the batch would be lost).
fn check_messages(
    messages: &[Arc<GossipMessage>],
    validate: &[bool],
    validators: Validators<'_>,
    keys: Option<&AuthorKeys>,
) -> Vec<Verdict> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let verified = match keys {
                Some(keys) => keys.get(&m.author.0).is_ok_and(|key| m.verify_with(&key)),
                None => m.verify(),
            };
            if !verified {
                return Verdict::BadSignature;
            }
            if !validate.get(i).copied().unwrap_or(false) {
                return Verdict::Accept;
            }
            let Some(v) = validators(&m.topic) else { return Verdict::Accept };
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.validate(m)))
                .unwrap_or(Verdict::Ignore)
        })
        .collect()
}

/// Appends `entries` in order: runs of writes as one append each, a forget as a tombstone.
fn persist(log: &store::Log, entries: Vec<PersistEntry>) -> Result<(), PersistError> {
    let error = |e: store::StoreError| match e {
        store::StoreError::Full => PersistError::Full,
        _ => PersistError::Io,
    };
    let now = unix_ms();
    let mut run = Vec::new();
    for e in entries {
        if !e.forget {
            run.push(entry(e, now));
            continue;
        }
        if !run.is_empty() {
            log.append(&std::mem::take(&mut run)).map_err(error)?;
        }
        log.remove(&store::EntryKey { kind: store_kind(e.kind), key: e.key, sub: e.sub })
            .map_err(error)?;
    }
    if run.is_empty() {
        return Ok(());
    }
    log.append(&run).map_err(error)
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

    #[test]
    fn a_persist_job_writes_and_forgets_in_order_on_a_real_log() {
        let dir = std::env::temp_dir().join(format!("petrel-jobs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (log, _) = store::Log::open(store::LogConfig::new(&dir), unix_ms()).unwrap();
        let entry = |key: u8, forget: bool| PersistEntry {
            kind: PersistKind::Record,
            key: [key; 32],
            sub: [0; 32],
            seq: 1,
            ttl: Some(Duration::from_secs(60)),
            payload: vec![key; 4],
            forget,
        };
        // 1 written then forgotten, 2 forgotten (never there) then written.
        let job =
            Job::Persist(vec![entry(1, false), entry(1, true), entry(2, true), entry(2, false)]);
        assert_eq!(run(job, Some(&log)), JobResult::Persisted(Ok(())));
        let id =
            |key: u8| store::EntryKey { kind: store::Kind::Record, key: [key; 32], sub: [0; 32] };
        assert_eq!(log.get(&id(1)).unwrap(), None);
        let two = log.get(&id(2)).unwrap().unwrap();
        assert_eq!((two.seq, two.payload), (1, vec![2; 4]));
        assert!(two.expires_ms > unix_ms(), "expiry stamped from the ttl");
        let read = run(Job::Read(PersistKind::Record, [2; 32], [0; 32]), Some(&log));
        assert_eq!(read, JobResult::Read(Ok(Some(vec![2; 4]))));
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
