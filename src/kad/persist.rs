//! What the DHT keeps on disk, and the answers that wait for it (issue: persistent records).
//!
//! The DHT stays sans-IO: it names entries to write (`Job::Persist`) and the driver's worker
//! appends them to the node's log (`crate::store`). An answer that promises the record is
//! held — `Stored` to a STORE, `ProviderAdded` to an ADD_PROVIDER, the reply to our own
//! `put` — goes out only when that job comes back done, so a crash of the process loses no
//! acknowledged record (the log's `sync` setting adds power-loss durability). A write that
//! fails is a typed refusal (`StorageFull` when the disk or the log's cap is full, else
//! `Overloaded`) and the record it carried is taken back out of memory, the version held
//! before restored: the node keeps serving what it had.
//!
//! The routing table's verified peers are written every `routing_save_interval`; on start
//! the node dials the most recently saved ones (their addresses are claims again until
//! dialled). Payload formats are in proto-spec/store.md §4.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bincode::Options;
use serde::{Deserialize, Serialize};

use super::dht::{Dht, DhtError, DhtReply};
use super::memstore::{Origin, RecordStore, StoredRecord};
use super::routing::{Source, Subnet};
use crate::identity::NodeId;
use crate::protocol::{
    Action, CommandId, Job, JobKey, PersistEntry, PersistError, PersistKind, ReplyTicket,
};
use crate::wire::messages::{ErrorCode, Key, PeerInfo, Record, Response};

/// How long a saved routing-table peer is worth dialling after its last save.
pub const PEER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Largest payload decoded at restore: a record's value bound plus its envelope.
const MAX_PAYLOAD_BYTES: u64 = 1 << 21;

/// A record as written to the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPayload {
    /// The record itself.
    pub record: Record,
    /// The peer it is charged to (`None`: ours).
    pub origin: Option<NodeId>,
    /// The subnet that peer stored it from (`None`: loopback or ours).
    pub subnet: Option<Subnet>,
    /// We published it ourselves and republish it.
    pub originated: bool,
}

/// A provider as written to the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderPayload {
    /// The provider and its addresses.
    pub provider: PeerInfo,
    /// The subnet it announced from (`None`: loopback or ours).
    pub subnet: Option<Subnet>,
}

/// Why a payload read back from the log was not restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreError {
    /// It does not decode (a format change, or damage the CRC did not catch).
    Malformed,
    /// It decoded but the store refused it (invalid now, or over a cap).
    Refused(super::records::RecordError),
}

/// Who waits for a write.
#[derive(Debug, Clone)]
pub(super) enum Waiter {
    /// A peer's STORE or ADD_PROVIDER: this answer, once written.
    Peer { ticket: ReplyTicket, response: Response },
    /// Our own put of `key`: its command's reply is held until then.
    Local { key: Key },
    /// Nobody (a routing-table save, a provide of ours).
    Nobody,
    /// A `Flush` command: answered when this write, and so every one before it, is done.
    Flush { command: CommandId },
}

/// A write in flight.
#[derive(Debug, Clone)]
pub(super) struct Write {
    waiter: Waiter,
    /// For a record: what to undo if the write fails.
    undo: Option<Undo>,
}

/// The record a failed write carried, and the version held before it.
#[derive(Debug, Clone)]
pub(super) struct Undo {
    key: Key,
    written: Record,
    before: Option<StoredRecord>,
}

/// The DHT's side of persistence: writes in flight and replies held for them.
///
/// Group commit happens here: one write job is in flight at a time, and the entries asked
/// for meanwhile wait and go together in the next one. Under load a batch grows to what
/// arrived during one write (and its fdatasync, with `sync = batch`), so the disk sees one
/// write and one sync per batch, and only one worker ever waits on the disk.
#[derive(Debug, Default)]
pub(super) struct Persistence {
    /// The write job in flight and the writes it carries.
    in_flight: Option<(JobKey, Vec<Write>)>,
    /// Entries waiting for the next job, and who waits for each.
    queued: Vec<(Vec<PersistEntry>, Write)>,
    /// Writes queued or in flight (the bound `max_pending_writes` applies to it).
    pending: usize,
    /// Our own puts' local writes in flight, by key.
    local_pending: BTreeMap<Key, usize>,
    /// Put replies waiting for their local write, and whether one failed.
    held: Vec<(Key, CommandId, DhtReply)>,
    local_failed: BTreeMap<Key, PersistError>,
    next_routing_save: Option<Instant>,
    /// The housekeeping job in flight.
    housekeeping: Option<JobKey>,
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(MAX_PAYLOAD_BYTES)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Every payload type here is a plain struct of bounded wire types: encoding cannot fail.
    options().serialize(value).unwrap_or_default()
}

/// A record's log payload, as the DHT writes it (the store bench writes the same).
pub fn encode_record_payload(payload: &RecordPayload) -> Vec<u8> {
    encode(payload)
}

/// Decodes a record's log payload; `None` if it does not decode.
pub fn decode_record_payload(payload: &[u8]) -> Option<RecordPayload> {
    options().deserialize(payload).ok()
}

/// Decodes a routing-table peer saved in the log.
pub fn decode_peer(payload: &[u8]) -> Option<PeerInfo> {
    options().deserialize(payload).ok()
}

fn seq_of(record: &Record) -> u64 {
    match record {
        Record::Immutable { .. } => 0,
        Record::Mutable(m) => m.seq,
    }
}

fn origin_parts(origin: &Origin) -> (Option<NodeId>, Option<Subnet>) {
    match origin {
        Origin::Local => (None, None),
        Origin::Peer(id, net) => (Some(*id), *net),
    }
}

impl Dht {
    /// Whether answers wait for the log.
    pub(super) fn persisting(&self) -> bool {
        self.config.persist
    }

    /// Writes the record held under `key` (just stored or refreshed), and has `waiter` wait
    /// for it. `before` is the version held before, restored if the write fails. With
    /// `max_pending_writes` in flight the write is refused at once (`Overloaded`).
    pub(super) fn persist_record(
        &mut self,
        now: Instant,
        key: Key,
        before: Option<StoredRecord>,
        waiter: Waiter,
    ) {
        let Some(held) = self.store.get(now, &key).cloned() else {
            return self.release(waiter, Ok(()));
        };
        if self.persistence.pending >= self.config.max_pending_writes {
            self.stats.persist_refused += 1;
            self.store.written(&key); // the put's pin: no write is coming
            self.undo(now, Undo { key, written: held.record, before });
            return self.release(waiter, Err(PersistError::Io));
        }
        let (origin, subnet) = origin_parts(&held.origin);
        let originated = self.originated.contains_key(&key);
        let payload =
            encode(&RecordPayload { record: held.record.clone(), origin, subnet, originated });
        let entry = PersistEntry {
            kind: PersistKind::Record,
            key: *key.as_bytes(),
            sub: [0; 32],
            seq: seq_of(&held.record),
            ttl: Some(held.expires_at.saturating_duration_since(now)),
            payload,
            forget: false,
        };
        if let Waiter::Local { key } = &waiter {
            *self.persistence.local_pending.entry(*key).or_default() += 1;
        }
        let undo = Some(Undo { key, written: held.record, before });
        self.submit(vec![entry], Write { waiter, undo });
    }

    /// Writes a provider entry we just accepted; `waiter` waits for it.
    pub(super) fn persist_provider(
        &mut self,
        key: Key,
        provider: PeerInfo,
        subnet: Option<Subnet>,
        ttl: Duration,
        waiter: Waiter,
    ) {
        if self.persistence.pending >= self.config.max_pending_writes {
            self.stats.persist_refused += 1;
            return self.release(waiter, Err(PersistError::Io));
        }
        let sub = *provider.id.as_bytes();
        let entry = PersistEntry {
            kind: PersistKind::Provider,
            key: *key.as_bytes(),
            sub,
            seq: 0,
            ttl: Some(ttl.min(self.config.store.max_provider_ttl)),
            payload: encode(&ProviderPayload { provider, subnet }),
            forget: false,
        };
        self.submit(vec![entry], Write { waiter, undo: None });
    }

    /// Queues `entries` for the next write job, and starts one if none is in flight.
    fn submit(&mut self, entries: Vec<PersistEntry>, write: Write) {
        self.stats.persist_writes += 1;
        self.persistence.pending += 1;
        self.persistence.queued.push((entries, write));
        if self.persistence.in_flight.is_none() {
            self.flush_writes();
        }
    }

    /// Everything queued, as one job.
    fn flush_writes(&mut self) {
        if self.persistence.queued.is_empty() {
            return;
        }
        let queued = std::mem::take(&mut self.persistence.queued);
        let mut entries = Vec::new();
        let mut writes = Vec::with_capacity(queued.len());
        for (e, w) in queued {
            entries.extend(e);
            writes.push(w);
        }
        let key = self.job_key();
        self.stats.persist_batches += 1;
        self.persistence.in_flight = Some((key, writes));
        self.outputs.push_back(Action::Job { key, job: Job::Persist(entries) });
    }

    fn job_key(&mut self) -> JobKey {
        let key = JobKey(self.next_job);
        self.next_job += 1;
        key
    }

    /// Deletes from the log the records the store evicted to make room (nearer keys came):
    /// left there, a restart would bring them back. Nobody waits; the deletes go in the
    /// write queue, so one cannot overtake a later write of the same key.
    pub(super) fn forget_evicted(&mut self) {
        let evicted = self.store.take_evicted();
        if evicted.is_empty() || !self.persisting() {
            return;
        }
        let entries = evicted
            .into_iter()
            .map(|key| PersistEntry {
                kind: PersistKind::Record,
                key: *key.as_bytes(),
                sub: [0; 32],
                seq: 0,
                ttl: None,
                payload: Vec::new(),
                forget: true,
            })
            .collect();
        self.submit(entries, Write { waiter: Waiter::Nobody, undo: None });
    }

    /// Whether job `key` is one of ours (then it is handled).
    pub(super) fn on_persisted(
        &mut self,
        now: Instant,
        key: JobKey,
        result: Option<Result<(), PersistError>>,
    ) -> bool {
        if self.persistence.housekeeping == Some(key) {
            self.persistence.housekeeping = None;
            return true;
        }
        let Some((_, writes)) = self.persistence.in_flight.take_if(|(k, _)| *k == key) else {
            return false;
        };
        // A job the pool refused or lost did not write.
        let result = result.unwrap_or(Err(PersistError::Io));
        for write in writes {
            self.persistence.pending = self.persistence.pending.saturating_sub(1);
            if let Err(e) = result {
                self.stats.persist_failed += 1;
                if e == PersistError::Full {
                    self.stats.persist_full += 1;
                }
                if let Some(undo) = &write.undo {
                    self.undo(now, undo.clone());
                }
            }
            if let Some(undo) = &write.undo {
                // Written (or not): the value may leave memory now.
                self.store.written(&undo.key);
            }
            self.release(write.waiter, result);
        }
        self.flush_writes();
        true
    }

    /// Hands `waiter` its answer for a write that ended with `result`.
    fn release(&mut self, waiter: Waiter, result: Result<(), PersistError>) {
        match waiter {
            Waiter::Nobody => {}
            Waiter::Flush { command } => self.reply(command, DhtReply::Flushed(result.is_ok())),
            Waiter::Peer { ticket, response } => {
                let response = match result {
                    Ok(()) => response,
                    Err(e) => refusal(e),
                };
                self.outputs.push_back(Action::Respond { ticket, response });
            }
            Waiter::Local { key } => {
                if let Err(e) = result {
                    self.persistence.local_failed.insert(key, e);
                }
                let pending = self.persistence.local_pending.entry(key).or_default();
                *pending = pending.saturating_sub(1);
                if *pending == 0 {
                    self.persistence.local_pending.remove(&key);
                    self.flush_held(key);
                }
            }
        }
    }

    /// Sends `reply` now, or holds it while our own write of `key` is in flight.
    pub(super) fn reply_after_write(&mut self, key: Key, command: CommandId, reply: DhtReply) {
        if self.persistence.local_pending.contains_key(&key) {
            self.persistence.held.push((key, command, reply));
            return;
        }
        let reply = self.with_local_failure(key, reply);
        self.reply(command, reply);
    }

    fn flush_held(&mut self, key: Key) {
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.persistence.held).into_iter().partition(|h| h.0 == key);
        self.persistence.held = waiting;
        for (key, command, reply) in ready {
            let reply = self.with_local_failure(key, reply);
            self.reply(command, reply);
        }
        self.persistence.local_failed.remove(&key);
    }

    /// A put whose own copy did not reach the disk reports it, whatever the network did.
    fn with_local_failure(&self, key: Key, reply: DhtReply) -> DhtReply {
        match (self.persistence.local_failed.get(&key), reply) {
            (Some(e), DhtReply::Put(_)) => DhtReply::Put(Err(DhtError::LocalStorage(*e))),
            (_, reply) => reply,
        }
    }

    /// Takes back a record whose write failed, if it is still the one held, and puts back
    /// the version held before it.
    fn undo(&mut self, now: Instant, undo: Undo) {
        let still_held = self.store.get(now, &undo.key).is_some_and(|s| s.record == undo.written);
        if !still_held {
            return; // a later write replaced it: that one decides
        }
        self.store.remove(&undo.key);
        if let Some(before) = undo.before {
            let ttl = before.expires_at.saturating_duration_since(now);
            if !ttl.is_zero()
                && self.store.put_verified(now, before.origin, before.record, ttl, None).is_ok()
            {
                self.store.written(&undo.key); // it is the version the log has: no write comes
            }
        }
    }

    /// The `Flush` command: the verified routing entries now, answered once written. Writes
    /// go one job at a time, in order, so every write asked for before is done by then.
    pub(super) fn flush(&mut self, command: CommandId) {
        if !self.persisting() {
            return self.reply(command, DhtReply::Flushed(true));
        }
        let entries = self.routing_entries();
        self.stats.routing_saves += 1;
        self.submit(entries, Write { waiter: Waiter::Flush { command }, undo: None });
    }

    fn routing_entries(&self) -> Vec<PersistEntry> {
        self.routing
            .iter()
            .filter(|e| e.source == Source::Verified)
            .map(|e| PersistEntry {
                kind: PersistKind::Peer,
                key: *e.peer.id.as_bytes(),
                sub: [0; 32],
                seq: 0,
                ttl: Some(PEER_RETENTION),
                payload: encode(&e.peer),
                forget: false,
            })
            .collect()
    }

    /// On the maintenance tick: every `routing_save_interval`, writes the verified routing
    /// entries (superseding the last save), and asks the log to expire and compact.
    pub(super) fn maybe_save_routing(&mut self, now: Instant) {
        if !self.persisting() || self.config.routing_save_interval.is_zero() {
            return;
        }
        let due = *self.persistence.next_routing_save.get_or_insert(now);
        if now < due {
            return;
        }
        self.persistence.next_routing_save = Some(now + self.config.routing_save_interval);
        let entries = self.routing_entries();
        self.stats.routing_saves += 1;
        if !entries.is_empty() {
            self.submit(entries, Write { waiter: Waiter::Nobody, undo: None });
        }
        // Expiry and compaction beside the writes (the log lets them overlap), one at a time.
        if self.persistence.housekeeping.is_none() {
            let key = self.job_key();
            self.persistence.housekeeping = Some(key);
            self.outputs.push_back(Action::Job { key, job: Job::Housekeep });
        }
    }

    /// Restores a record read back from the log, with `ttl` of its life left. Its signature
    /// was checked when it was first stored and the log's CRC covers it since; the store's
    /// caps and quotas apply again.
    pub fn restore_record(
        &mut self,
        now: Instant,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<Key, RestoreError> {
        let p = decode_record_payload(payload).ok_or(RestoreError::Malformed)?;
        let origin = match p.origin {
            None => Origin::Local,
            Some(id) => Origin::Peer(id, p.subnet),
        };
        let (key, _) = self
            .store
            .put_verified(now, origin, p.record.clone(), ttl, None)
            .map_err(RestoreError::Refused)?;
        self.store.written(&key); // it is in the log: it may go cold
        self.forget_evicted();
        if p.originated {
            self.remember_originated(now, key, p.record);
        }
        self.stats.restored_records += 1;
        Ok(key)
    }

    /// Restores a provider entry read back from the log, with `ttl` of its life left.
    pub fn restore_provider(
        &mut self,
        now: Instant,
        key: Key,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<(), RestoreError> {
        let p: ProviderPayload =
            options().deserialize(payload).map_err(|_| RestoreError::Malformed)?;
        self.store
            .add_provider_from(now, key, p.provider, p.subnet, ttl)
            .map_err(RestoreError::Refused)?;
        self.stats.restored_providers += 1;
        Ok(())
    }
}

/// The refusal a peer hears when its record did not reach our disk.
fn refusal(e: PersistError) -> Response {
    match e {
        PersistError::Full => {
            Response::Error { code: ErrorCode::StorageFull, text: "disk full".into() }
        }
        PersistError::Io => {
            Response::Error { code: ErrorCode::Overloaded, text: "storage unavailable".into() }
        }
    }
}
