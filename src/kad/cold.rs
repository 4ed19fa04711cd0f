//! Cold values (issue: persistent records, "hot tier"): a record whose value left memory is
//! read back from the log by a worker (`Job::Read`) when a peer's FIND_VALUE, our own GET or
//! replication needs it. Reads of one key are shared: the first asks the worker, the others
//! wait on it. At most `MAX_READS` keys are read at once and `MAX_WAITERS_PER_READ` wait on
//! one; beyond that a peer is answered `Overloaded` and our own GET `Busy`.
//!
//! What comes back is put in memory only if it is the record held (same key, length and, for
//! a mutable record, sequence number and signature: `MemoryStore::warm`); the log's CRC has
//! checked its bytes.

use std::collections::BTreeMap;
use std::time::Instant;

use super::dht::{Dht, DhtError, DhtReply, Purpose};
use super::persist;
use crate::protocol::{Action, CommandId, Job, JobKey, PersistError, PersistKind, ReplyTicket};
use crate::wire::messages::{ErrorCode, Key, PeerInfo, Request, Response};

/// Keys read from the log at once.
pub const MAX_READS: usize = 256;
/// Requests waiting on one read.
pub const MAX_WAITERS_PER_READ: usize = 64;

/// Who waits for a cold value.
#[derive(Debug, Clone)]
pub(super) enum ReadWaiter {
    /// A peer's FIND_VALUE: the answer, with these closer peers.
    Peer { ticket: ReplyTicket, closer: Vec<PeerInfo> },
    /// Our own GET.
    Get { command: CommandId },
    /// A STORE to send to this newly learned peer (replication).
    Replicate { peer: PeerInfo },
}

/// Reads in flight and their waiters.
#[derive(Debug, Default)]
pub(super) struct ColdReads {
    by_key: BTreeMap<Key, (JobKey, Vec<ReadWaiter>)>,
    by_job: BTreeMap<JobKey, Key>,
}

impl Dht {
    /// Whether the record under `key` is held, alive and cold.
    pub(super) fn is_cold(&self, now: Instant, key: &Key) -> bool {
        use super::memstore::RecordStore;
        self.store.get(now, key).is_some_and(|s| s.cold)
    }

    /// Has `waiter` wait for the value of `key` from the log.
    pub(super) fn read_cold(&mut self, key: Key, waiter: ReadWaiter) {
        if let Some((_, waiters)) = self.cold_reads.by_key.get_mut(&key) {
            if waiters.len() < MAX_WAITERS_PER_READ {
                waiters.push(waiter);
            } else {
                self.refuse_read(waiter);
            }
            return;
        }
        if self.cold_reads.by_key.len() >= MAX_READS {
            return self.refuse_read(waiter);
        }
        let job = JobKey(self.next_job);
        self.next_job += 1;
        self.cold_reads.by_key.insert(key, (job, vec![waiter]));
        self.cold_reads.by_job.insert(job, key);
        let read = Job::Read(PersistKind::Record, *key.as_bytes(), [0; 32]);
        self.outputs.push_back(Action::Job { key: job, job: read });
    }

    fn refuse_read(&mut self, waiter: ReadWaiter) {
        self.stats.cold_reads_refused += 1;
        match waiter {
            ReadWaiter::Peer { ticket, .. } => {
                let text = "too many reads waiting".into();
                let response = Response::Error { code: ErrorCode::Overloaded, text };
                self.outputs.push_back(Action::Respond { ticket, response });
            }
            ReadWaiter::Get { command } => self.reply(command, DhtReply::Get(Err(DhtError::Busy))),
            ReadWaiter::Replicate { .. } => {}
        }
    }

    /// The result of read job `job`; whether it was one.
    pub(super) fn on_read(
        &mut self,
        now: Instant,
        job: JobKey,
        result: Option<Result<Option<Vec<u8>>, PersistError>>,
    ) -> bool {
        use super::memstore::RecordStore;
        let Some(key) = self.cold_reads.by_job.remove(&job) else { return false };
        let waiters = self.cold_reads.by_key.remove(&key).map(|(_, w)| w).unwrap_or_default();
        let payload = match result {
            Some(Ok(Some(payload))) => Some(payload),
            _ => None,
        };
        let record = payload.and_then(|p| persist::decode_record_payload(&p));
        // Only the record held, checked by `warm`; it may go cold again at once (a full
        // tier), so the waiters are answered with the copy read, not from the store.
        let record = record.map(|p| p.record).filter(|r| self.store.warm(&key, r.clone()));
        match record {
            Some(_) => self.stats.cold_reads += 1,
            None => self.stats.cold_reads_failed += 1,
        }
        let ttl_secs = self.store.get(now, &key).map_or(0, |s| s.remaining_ttl_secs(now));
        for waiter in waiters {
            match waiter {
                ReadWaiter::Peer { ticket, closer } => {
                    let response = Response::Value { record: record.clone(), closer };
                    self.outputs.push_back(Action::Respond { ticket, response });
                }
                // Unreadable here (`None`): the network may still have it.
                ReadWaiter::Get { command } => self.get_from(now, command, key, record.clone()),
                ReadWaiter::Replicate { peer } => {
                    if let (Some(record), true) = (&record, ttl_secs > 0) {
                        let request =
                            Request::Store { record: record.clone(), ttl_secs, expected_seq: None };
                        self.send(peer, request, Purpose::Replicate);
                        self.stats.replications += 1;
                    }
                }
            }
        }
        true
    }
}
