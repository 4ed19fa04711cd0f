//! Unit tests of [`super::persist`]: answers that wait for the log, failed writes taken
//! back, our own puts held, the bound on writes in flight, restore, the routing-table save.
//! The test plays the router and the worker: it reads the `Job`s and reports their results.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bincode::Options;

use super::dht::{Dht, DhtAction, DhtCommand, DhtConfig, DhtError, DhtReply};
use super::persist::{RecordPayload, RestoreError};
use crate::identity::{Keypair, NodeId};
use crate::protocol::{
    Action, CommandId, Direction, Job, JobKey, JobResult, Peer, PersistError, PersistKind,
    Protocol, ReplyTicket,
};
use crate::wire::messages::{
    ErrorCode, Hello, Key, MutableRecord, Record, Request, Response, FEATURE_KAD, PROTOCOL_VERSION,
};

const LOCAL: NodeId = NodeId::from_bytes([0x80; 32]);
/// A round trip, for answers in the scenarios.
const MS: Duration = Duration::from_millis(1);

fn persisting() -> Dht {
    let config = DhtConfig {
        join_on_first_contact: false,
        maintenance_interval: Duration::ZERO,
        // The signature check inline, so a STORE's only job is its write.
        verify_in_workers: false,
        persist: true,
        ..DhtConfig::default()
    };
    Dht::new(LOCAL, config)
}

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, n, 0, 1], 4000))
}

fn hello(n: u8) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        network: String::new(),
        id_pow_bits: 0,
        features: FEATURE_KAD,
        agent: String::new(),
        listen_addrs: vec![addr(n)],
    }
}

fn drain(d: &mut Dht) -> Vec<DhtAction> {
    std::iter::from_fn(|| d.poll_output()).collect()
}

/// The write jobs in `out`.
fn writes(out: &[DhtAction]) -> Vec<(JobKey, Job)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Job { key, job: job @ (Job::Persist(_) | Job::Housekeep) } => {
                Some((*key, job.clone()))
            }
            _ => None,
        })
        .collect()
}

fn responses(out: &[DhtAction]) -> Vec<(ReplyTicket, Response)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Respond { ticket, response } => Some((*ticket, response.clone())),
            _ => None,
        })
        .collect()
}

/// Peer `n` (dialled by us, so no dial-back) asks us to store `record`.
fn store_from(d: &mut Dht, now: Instant, n: u8, record: Record, ticket: u64) -> Option<Response> {
    let h = hello(n);
    let peer = Peer { id: id(n), addr: addr(n), direction: Direction::Outbound, hello: &h };
    d.handle_peer_up(now, &peer);
    let request = Request::Store { record, ttl_secs: 600, expected_seq: None };
    d.handle_request(now, &peer, request, ReplyTicket(ticket))
}

fn mutable(seq: u64, value: &[u8]) -> Record {
    Record::Mutable(MutableRecord::sign(
        &Keypair::from_seed([9; 32]),
        b"s".to_vec(),
        seq,
        value.to_vec(),
    ))
}

fn decode(payload: &[u8]) -> RecordPayload {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .deserialize(payload)
        .unwrap()
}

#[test]
fn a_store_is_answered_only_once_its_entry_is_written() {
    let t0 = Instant::now();
    let mut d = persisting();
    let record = Record::Immutable { value: b"v".to_vec().into() };
    assert_eq!(store_from(&mut d, t0, 1, record.clone(), 5), None, "answered later");
    let out = drain(&mut d);
    assert!(responses(&out).is_empty(), "{out:?}");
    let [(job, Job::Persist(entries))] = &writes(&out)[..] else { panic!("{out:?}") };
    let [entry] = &entries[..] else { panic!("{entries:?}") };
    assert_eq!(entry.kind, PersistKind::Record);
    assert_eq!(entry.key, *record.key().as_bytes());
    assert_eq!(entry.ttl, Some(Duration::from_secs(600)));
    let payload = decode(&entry.payload);
    assert_eq!((payload.record, payload.origin, payload.originated), (record, Some(id(1)), false));

    d.handle_job_done(t0, *job, Some(JobResult::Persisted(Ok(()))));
    assert_eq!(responses(&drain(&mut d)), vec![(ReplyTicket(5), Response::Stored)]);
    assert_eq!(d.stats().persist_writes, 1);
}

#[test]
fn a_write_that_fails_is_refused_and_the_version_held_before_comes_back() {
    let t0 = Instant::now();
    let mut d = persisting();
    let (first, second) = (mutable(1, b"one"), mutable(2, b"two"));
    let key = first.key();
    store_from(&mut d, t0, 1, first.clone(), 1);
    let (job, _) = writes(&drain(&mut d))[0].clone();
    d.handle_job_done(t0, job, Some(JobResult::Persisted(Ok(()))));
    drain(&mut d);

    // The disk is full when seq 2 arrives: the peer hears StorageFull and seq 1 is served.
    store_from(&mut d, t0, 2, second, 2);
    let (job, _) = writes(&drain(&mut d))[0].clone();
    assert_eq!(d.store().get(t0, &key).map(|s| s.record.clone()), Some(mutable(2, b"two")));
    d.handle_job_done(t0, job, Some(JobResult::Persisted(Err(PersistError::Full))));
    let [(ticket, Response::Error { code, .. })] = &responses(&drain(&mut d))[..] else { panic!() };
    assert_eq!((*ticket, *code), (ReplyTicket(2), ErrorCode::StorageFull));
    assert_eq!(d.store().get(t0, &key).map(|s| s.record.clone()), Some(first));
    assert_eq!((d.stats().persist_failed, d.stats().persist_full), (1, 1));

    // Any other I/O error, or a job the pool lost: Overloaded, and nothing is held.
    let other = Record::Immutable { value: b"x".to_vec().into() };
    store_from(&mut d, t0, 3, other.clone(), 3);
    let (job, _) = writes(&drain(&mut d))[0].clone();
    d.handle_job_done(t0, job, None);
    let [(_, Response::Error { code, .. })] = &responses(&drain(&mut d))[..] else { panic!() };
    assert_eq!(*code, ErrorCode::Overloaded);
    assert!(d.store().get(t0, &other.key()).is_none());
}

#[test]
fn writes_asked_for_while_one_is_in_flight_go_together_in_the_next() {
    let t0 = Instant::now();
    let mut d = persisting();
    store_from(&mut d, t0, 1, mutable(1, b"one"), 1);
    let [(first_job, _)] = &writes(&drain(&mut d))[..] else { panic!() };
    // Two more arrive while the first is on the disk: they wait, then go as one job.
    store_from(&mut d, t0, 2, mutable(2, b"two"), 2);
    store_from(&mut d, t0, 3, Record::Immutable { value: b"x".to_vec().into() }, 3);
    assert!(writes(&drain(&mut d)).is_empty(), "one write in flight at a time");

    // The first write fails: its STORE is refused, but the newer seq 2 it would have been
    // replaced by is not taken back.
    d.handle_job_done(t0, *first_job, Some(JobResult::Persisted(Err(PersistError::Io))));
    let out = drain(&mut d);
    let [(ReplyTicket(1), Response::Error { code: ErrorCode::Overloaded, .. })] =
        &responses(&out)[..]
    else {
        panic!("{out:?}")
    };
    let key = mutable(1, b"one").key();
    assert_eq!(d.store().get(t0, &key).map(|s| s.record.clone()), Some(mutable(2, b"two")));
    let [(batch, Job::Persist(entries))] = &writes(&out)[..] else { panic!("{out:?}") };
    assert_eq!(entries.len(), 2);
    d.handle_job_done(t0, *batch, Some(JobResult::Persisted(Ok(()))));
    let mut answered = responses(&drain(&mut d));
    answered.sort_by_key(|(t, _)| t.0);
    let stored = vec![(ReplyTicket(2), Response::Stored), (ReplyTicket(3), Response::Stored)];
    assert_eq!(answered, stored);
    assert_eq!((d.stats().persist_writes, d.stats().persist_batches), (3, 2));
}

#[test]
fn writes_in_flight_are_bounded_and_the_next_store_is_refused_at_once() {
    let t0 = Instant::now();
    let mut d = Dht::new(LOCAL, DhtConfig { max_pending_writes: 1, ..persisting_config() });
    store_from(&mut d, t0, 1, Record::Immutable { value: b"a".to_vec().into() }, 1);
    assert_eq!(writes(&drain(&mut d)).len(), 1);
    let late = Record::Immutable { value: b"b".to_vec().into() };
    store_from(&mut d, t0, 2, late.clone(), 2);
    let out = drain(&mut d);
    assert!(writes(&out).is_empty());
    let [(ReplyTicket(2), Response::Error { code: ErrorCode::Overloaded, .. })] =
        &responses(&out)[..]
    else {
        panic!("{out:?}")
    };
    assert!(d.store().get(t0, &late.key()).is_none(), "not held when not written");
    assert_eq!(d.stats().persist_refused, 1);
}

fn persisting_config() -> DhtConfig {
    DhtConfig {
        join_on_first_contact: false,
        maintenance_interval: Duration::ZERO,
        verify_in_workers: false,
        persist: true,
        ..DhtConfig::default()
    }
}

/// Runs our own put of `record` with one peer that accepts: the write job, what else came
/// out, and the payload written.
fn put_with_one_peer(
    d: &mut Dht,
    t0: Instant,
    record: Record,
) -> (JobKey, Vec<DhtAction>, Vec<u8>) {
    let h = hello(1);
    let peer = Peer { id: id(1), addr: addr(1), direction: Direction::Outbound, hello: &h };
    d.handle_peer_up(t0, &peer);
    d.handle_command(t0, CommandId(7), DhtCommand::Put { record, expected_seq: None });
    let mut job = None;
    let mut out = drain(d);
    let mut rest = Vec::new();
    while !out.is_empty() {
        for a in out {
            match a {
                Action::Request { to, request, key } => {
                    let response = match request {
                        Request::FindNode { .. } => Response::Nodes { closer: Vec::new() },
                        _ => Response::Stored,
                    };
                    let via = to.addrs.first().copied();
                    d.handle_outcome(t0, key, to, via, Some(MS), Ok(response));
                }
                Action::Job { key, job: Job::Persist(entries) } => {
                    job = Some((key, entries[0].payload.clone()));
                }
                other => rest.push(other),
            }
        }
        out = drain(d);
    }
    let (job, payload) = job.expect("our own copy is written");
    (job, rest, payload)
}

fn put_replies(out: &[DhtAction]) -> Vec<DhtReply> {
    out.iter()
        .filter_map(|a| match a {
            Action::Reply { reply, .. } => Some(reply.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn our_own_put_is_acknowledged_only_once_our_copy_is_written() {
    let t0 = Instant::now();
    let mut d = persisting();
    let record = Record::Immutable { value: b"mine".to_vec().into() };
    let (job, out, _) = put_with_one_peer(&mut d, t0, record.clone());
    assert!(put_replies(&out).is_empty(), "held for the write: {out:?}");
    d.handle_job_done(t0, job, Some(JobResult::Persisted(Ok(()))));
    let [DhtReply::Put(Ok(p))] = &put_replies(&drain(&mut d))[..] else { panic!() };
    assert_eq!((p.key, p.stored), (record.key(), 1));
}

#[test]
fn our_own_put_whose_copy_is_not_written_says_so() {
    let t0 = Instant::now();
    let mut d = persisting();
    let record = Record::Immutable { value: b"mine".to_vec().into() };
    let (job, _, _) = put_with_one_peer(&mut d, t0, record);
    d.handle_job_done(t0, job, Some(JobResult::Persisted(Err(PersistError::Full))));
    let expected = DhtReply::Put(Err(DhtError::LocalStorage(PersistError::Full)));
    assert_eq!(put_replies(&drain(&mut d)), vec![expected]);
}

#[test]
fn a_written_record_is_restored_with_its_origin_and_a_bad_payload_is_refused() {
    let t0 = Instant::now();
    let mut d = persisting();
    let record = Record::Immutable { value: b"mine".to_vec().into() };
    let (_, _, payload) = put_with_one_peer(&mut d, t0, record.clone());
    assert!(decode(&payload).originated, "our own record: republished after a restart");

    let mut restarted = persisting();
    let key = restarted.restore_record(t0, &payload, Duration::from_secs(30)).unwrap();
    assert_eq!(key, record.key());
    let held = restarted.store().get(t0, &key).unwrap();
    assert_eq!(held.record, record);
    assert_eq!(held.expires_at, t0 + Duration::from_secs(30));
    assert_eq!(restarted.stats().restored_records, 1);

    assert_eq!(
        restarted.restore_record(t0, &[0xff; 7], Duration::from_secs(30)),
        Err(RestoreError::Malformed)
    );
}

#[test]
fn the_tick_writes_the_verified_peers_and_asks_the_log_to_tidy_up() {
    let t0 = Instant::now();
    let mut d = Dht::new(
        LOCAL,
        DhtConfig { maintenance_interval: Duration::from_secs(1), ..persisting_config() },
    );
    for n in [1, 2] {
        let h = hello(n);
        let peer = Peer { id: id(n), addr: addr(n), direction: Direction::Outbound, hello: &h };
        d.handle_peer_up(t0, &peer);
    }
    drain(&mut d);
    d.handle_timeout(t0 + Duration::from_secs(1));
    let jobs = writes(&drain(&mut d));
    let [(_, Job::Persist(peers)), (_, Job::Housekeep)] = &jobs[..] else { panic!("{jobs:?}") };
    let mut ids: Vec<[u8; 32]> = peers.iter().map(|e| e.key).collect();
    ids.sort();
    assert_eq!(ids, vec![*id(1).as_bytes(), *id(2).as_bytes()]);
    assert!(peers.iter().all(|e| e.kind == PersistKind::Peer));
    let info = super::persist::decode_peer(&peers[0].payload).unwrap();
    assert_eq!(info.addrs.len(), 1);
    // Not again before the save interval.
    d.handle_timeout(t0 + Duration::from_secs(2));
    assert!(writes(&drain(&mut d)).is_empty());
}

#[test]
fn payload_encodings_match_the_store_spec_vectors() {
    use super::persist::{encode_record_payload, ProviderPayload};
    use super::routing::Subnet;
    use crate::wire::messages::PeerInfo;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    // proto-spec/store.md §4.2, vector P1.
    let p = RecordPayload {
        record: Record::Immutable { value: b"v".to_vec().into() },
        origin: Some(id(1)),
        subnet: Some(Subnet::V4([192, 0, 2])),
        originated: false,
    };
    let expected = concat!(
        "00000000",         // Record::Immutable
        "0100000000000000", // value length
        "76",               // "v"
        "01",               // origin: Some
        "0101010101010101010101010101010101010101010101010101010101010101",
        "01",       // subnet: Some
        "00000000", // Subnet::V4
        "c00002",   // 192.0.2
        "00",       // originated: false
    );
    assert_eq!(hex(&encode_record_payload(&p)), expected);
    // Vector P2: a peer.
    let peer = PeerInfo { id: id(2), addrs: vec![SocketAddr::from(([192, 0, 2, 1], 4001))] };
    let encoded = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .serialize(&peer)
        .unwrap();
    let expected = concat!(
        "0202020202020202020202020202020202020202020202020202020202020202", // id
        "0100000000000000",                                                 // one address
        "00000000",                                                         // SocketAddr::V4
        "c0000201",                                                         // 192.0.2.1
        "a10f",                                                             // port 4001
    );
    assert_eq!(hex(&encoded), expected);
    assert_eq!(super::persist::decode_peer(&encoded), Some(peer));
    // Vector P3: a provider with no address, announced from loopback.
    let provider =
        ProviderPayload { provider: PeerInfo { id: id(3), addrs: Vec::new() }, subnet: None };
    let encoded = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .serialize(&provider)
        .unwrap();
    let expected = concat!(
        "0303030303030303030303030303030303030303030303030303030303030303", // id
        "0000000000000000",                                                 // no addresses
        "00",                                                               // subnet: None
    );
    assert_eq!(hex(&encoded), expected);
}

// ---- The cold tier ----

/// A persisting DHT whose hot tier holds nothing once written.
fn all_cold() -> Dht {
    let mut config = persisting_config();
    config.store.hot_max_bytes = 0;
    config.store.pin_writes = true;
    Dht::new(LOCAL, config)
}

/// Stores `record` from peer 1 and completes its write; the payload written.
fn stored_and_written(d: &mut Dht, now: Instant, record: Record) -> Vec<u8> {
    store_from(d, now, 1, record, 1);
    let [(job, Job::Persist(entries))] = &writes(&drain(d))[..] else { panic!() };
    let payload = entries[0].payload.clone();
    d.handle_job_done(now, *job, Some(JobResult::Persisted(Ok(()))));
    drain(d);
    payload
}

fn find_value(d: &mut Dht, now: Instant, n: u8, key: Key, ticket: u64) -> Option<Response> {
    let h = hello(n);
    let peer = Peer { id: id(n), addr: addr(n), direction: Direction::Outbound, hello: &h };
    d.handle_peer_up(now, &peer);
    d.handle_request(now, &peer, Request::FindValue { key }, ReplyTicket(ticket))
}

fn reads(out: &[DhtAction]) -> Vec<JobKey> {
    out.iter()
        .filter_map(|a| match a {
            Action::Job { key, job: Job::Read(PersistKind::Record, _, _) } => Some(*key),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cold_value_is_read_back_once_for_every_peer_waiting_on_it() {
    let t0 = Instant::now();
    let mut d = all_cold();
    let record = Record::Immutable { value: vec![7; 64].into() };
    let key = record.key();
    let payload = stored_and_written(&mut d, t0, record.clone());
    assert!(d.store().get(t0, &key).unwrap().cold);

    assert_eq!(find_value(&mut d, t0, 2, key, 10), None, "answered once read");
    assert_eq!(find_value(&mut d, t0, 3, key, 11), None);
    let out = drain(&mut d);
    let [read] = reads(&out)[..] else { panic!("one read for both: {out:?}") };
    d.handle_job_done(t0, read, Some(JobResult::Read(Ok(Some(payload)))));
    let answered = responses(&drain(&mut d));
    assert_eq!(answered.len(), 2);
    for (_, response) in answered {
        let Response::Value { record: Some(r), .. } = response else { panic!("{response:?}") };
        assert_eq!(r, record);
    }
    let s = d.stats();
    assert_eq!((s.values_served_cold, s.cold_reads, s.cold_reads_failed), (2, 1, 0));
}

#[test]
fn a_cold_read_that_fails_answers_without_the_value_and_changes_nothing() {
    let t0 = Instant::now();
    let mut d = all_cold();
    let record = Record::Immutable { value: vec![7; 64].into() };
    let key = record.key();
    stored_and_written(&mut d, t0, record);
    find_value(&mut d, t0, 2, key, 10);
    let [read] = reads(&drain(&mut d))[..] else { panic!() };
    d.handle_job_done(t0, read, Some(JobResult::Read(Err(PersistError::Io))));
    let [(ReplyTicket(10), Response::Value { record: None, .. })] = &responses(&drain(&mut d))[..]
    else {
        panic!()
    };
    // Still held, still cold; a bad payload is refused the same way.
    assert!(d.store().get(t0, &key).unwrap().cold);
    find_value(&mut d, t0, 2, key, 11);
    let [read] = reads(&drain(&mut d))[..] else { panic!() };
    d.handle_job_done(t0, read, Some(JobResult::Read(Ok(Some(vec![0xff; 9])))));
    let [(_, Response::Value { record: None, .. })] = &responses(&drain(&mut d))[..] else {
        panic!()
    };
    assert_eq!(d.stats().cold_reads_failed, 2);
}

#[test]
fn our_own_get_of_a_cold_record_reads_it_back_and_answers_locally() {
    let t0 = Instant::now();
    let mut d = all_cold();
    let record = Record::Immutable { value: vec![9; 64].into() };
    let key = record.key();
    let payload = stored_and_written(&mut d, t0, record.clone());
    d.handle_command(t0, CommandId(4), DhtCommand::Get { key });
    let out = drain(&mut d);
    let [read] = reads(&out)[..] else { panic!("{out:?}") };
    d.handle_job_done(t0, read, Some(JobResult::Read(Ok(Some(payload)))));
    let out = drain(&mut d);
    let [Action::Reply { reply: DhtReply::Get(Ok(found)), .. }] = &out[..] else {
        panic!("{out:?}")
    };
    assert!(found.local);
    assert_eq!(found.record, record);
}

#[test]
fn a_record_evicted_for_a_nearer_one_is_deleted_from_the_log_too() {
    let t0 = Instant::now();
    let mut config = persisting_config();
    config.store.max_records = 1;
    config.store.pin_writes = true;
    let mut d = Dht::new(LOCAL, config);
    // Two records, the first farther from our id than the second.
    let mut records: Vec<Record> =
        (0..2u8).map(|n| Record::Immutable { value: vec![n; 8].into() }).collect();
    records.sort_by_key(|r| std::cmp::Reverse(r.key().distance(&LOCAL)));
    let (far, near) = (records[0].clone(), records[1].clone());
    stored_and_written_from(&mut d, t0, 1, far.clone());
    store_from(&mut d, t0, 2, near.clone(), 2);
    // The delete goes first, then the new record: one write job at a time, in order.
    let out = drain(&mut d);
    let [(job, Job::Persist(entries))] = &writes(&out)[..] else { panic!("{out:?}") };
    let ops: Vec<([u8; 32], bool)> = entries.iter().map(|e| (e.key, e.forget)).collect();
    assert_eq!(ops, vec![(*far.key().as_bytes(), true)]);
    d.handle_job_done(t0, *job, Some(JobResult::Persisted(Ok(()))));
    let out = drain(&mut d);
    let [(_, Job::Persist(entries))] = &writes(&out)[..] else { panic!("{out:?}") };
    let ops: Vec<([u8; 32], bool)> = entries.iter().map(|e| (e.key, e.forget)).collect();
    assert_eq!(ops, vec![(*near.key().as_bytes(), false)]);
    assert!(d.store().get(t0, &far.key()).is_none());
}

/// Stores `record` from peer `n` and completes its write.
fn stored_and_written_from(d: &mut Dht, now: Instant, n: u8, record: Record) {
    store_from(d, now, n, record, 100 + u64::from(n));
    let [(job, _)] = &writes(&drain(d))[..] else { panic!() };
    d.handle_job_done(now, *job, Some(JobResult::Persisted(Ok(()))));
    drain(d);
}

#[test]
fn a_flush_writes_the_routing_table_and_answers_after_every_earlier_write() {
    let t0 = Instant::now();
    let mut d = persisting();
    store_from(&mut d, t0, 1, Record::Immutable { value: b"a".to_vec().into() }, 1);
    let [(first, _)] = &writes(&drain(&mut d))[..] else { panic!() };
    d.handle_command(t0, CommandId(9), DhtCommand::Flush);
    assert!(drain(&mut d).is_empty(), "queued behind the write in flight");
    d.handle_job_done(t0, *first, Some(JobResult::Persisted(Ok(()))));
    let out = drain(&mut d);
    let [(flush, Job::Persist(peers))] = &writes(&out)[..] else { panic!("{out:?}") };
    assert_eq!(peers.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![PersistKind::Peer]);
    assert_eq!(peers[0].key, *id(1).as_bytes());
    d.handle_job_done(t0, *flush, Some(JobResult::Persisted(Ok(()))));
    let out = drain(&mut d);
    assert_eq!(out, vec![Action::Reply { command: CommandId(9), reply: DhtReply::Flushed(true) }]);

    // Without a log there is nothing to wait for.
    let mut memory = Dht::new(LOCAL, DhtConfig { persist: false, ..persisting_config() });
    memory.handle_command(t0, CommandId(1), DhtCommand::Flush);
    let out = drain(&mut memory);
    assert_eq!(out, vec![Action::Reply { command: CommandId(1), reply: DhtReply::Flushed(true) }]);
}

#[test]
fn peers_piling_onto_one_cold_read_past_its_bound_are_refused_not_queued() {
    use super::cold::MAX_WAITERS_PER_READ;
    let t0 = Instant::now();
    let mut d = all_cold();
    let record = Record::Immutable { value: vec![5; 64].into() };
    let key = record.key();
    let payload = stored_and_written(&mut d, t0, record.clone());
    // One read, however many ask; past the bound the rest hear Overloaded at once.
    for ticket in 0..=MAX_WAITERS_PER_READ as u64 {
        assert_eq!(find_value(&mut d, t0, 2, key, 1000 + ticket), None);
    }
    let out = drain(&mut d);
    let [read] = reads(&out)[..] else { panic!("one read: {out:?}") };
    let refused = responses(&out);
    let [(ReplyTicket(t), Response::Error { code: ErrorCode::Overloaded, .. })] = &refused[..]
    else {
        panic!("{refused:?}")
    };
    assert_eq!(*t, 1000 + MAX_WAITERS_PER_READ as u64);
    assert_eq!(d.stats().cold_reads_refused, 1);
    // The ones that waited get the value.
    d.handle_job_done(t0, read, Some(JobResult::Read(Ok(Some(payload)))));
    let answered = responses(&drain(&mut d));
    assert_eq!(answered.len(), MAX_WAITERS_PER_READ);
    assert!(answered.iter().all(|(_, r)| matches!(r, Response::Value { record: Some(_), .. })));
}
