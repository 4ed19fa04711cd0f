//! Tests of [`PubSub`] driven by hand: peers come up, frames go in, the actions that come out
//! are checked. Time is an argument; checks run inline ([`crate::protocol::jobs::run`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::identity::{Keypair, NodeId};
use crate::protocol::{jobs, Action, Direction, Job, JobKey, JobResult, Peer, Protocol, Verdict};
use crate::wire::messages::{Gossip, GossipMessage, Hello, FEATURE_GOSSIP, PROTOCOL_VERSION};

const T: &str = "t";
const S: Duration = Duration::from_secs(1);

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        network: String::new(),
        id_pow_bits: 0,
        features: FEATURE_GOSSIP,
        agent: String::new(),
        listen_addrs: Vec::new(),
    }
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 4000))
}

type Out = Vec<Action<GossipReply, GossipEvent>>;

fn drain(g: &mut PubSub) -> Out {
    std::iter::from_fn(|| g.poll_output()).collect()
}

fn up(g: &mut PubSub, now: Instant, n: u8, direction: Direction) {
    let h = hello();
    let peer = Peer { id: id(n), addr: addr(n), direction, hello: &h };
    g.handle_peer_up(now, &peer);
}

fn frame(g: &mut PubSub, now: Instant, n: u8, msg: Gossip) {
    let h = hello();
    let peer = Peer { id: id(n), addr: addr(n), direction: Direction::Inbound, hello: &h };
    g.handle_gossip(now, &peer, msg);
}

/// A node with peers 1..=n up and subscribed to `T`, itself not subscribed.
fn with_peers(now: Instant, n: u8) -> PubSub {
    let mut g = PubSub::new(id(200), GossipConfig::default());
    for p in 1..=n {
        up(&mut g, now, p, if p % 2 == 0 { Direction::Outbound } else { Direction::Inbound });
        frame(&mut g, now, p, Gossip::Subscribe { topic: T.into() });
    }
    drain(&mut g);
    g
}

fn subscribe(g: &mut PubSub, now: Instant) -> Out {
    g.handle_command(now, crate::protocol::CommandId(1), GossipCommand::Subscribe(T.into()));
    drain(g)
}

fn sends_to(out: &Out, pred: impl Fn(&Gossip) -> bool) -> Vec<NodeId> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send { to, msg } if pred(msg) => Some(*to),
            _ => None,
        })
        .collect()
}

fn is_graft(m: &Gossip) -> bool {
    matches!(m, Gossip::Graft { .. })
}

fn is_prune(m: &Gossip) -> bool {
    matches!(m, Gossip::Prune { .. })
}

fn message(seqno: u64, size: usize) -> GossipMessage {
    GossipMessage::sign(&Keypair::from_seed([9; 32]), seqno, T.into(), vec![1; size])
}

/// Runs every check job in `out` and feeds the result back; returns what followed.
fn run_checks(g: &mut PubSub, now: Instant, out: &Out) -> Out {
    let mut next = Vec::new();
    for a in out {
        if let Action::Job { key, job } = a {
            let result = jobs::run(job.clone(), None);
            g.handle_job_done(now, *key, Some(result));
            next.extend(drain(g));
        }
    }
    next
}

#[test]
fn subscribing_announces_it_to_every_peer_and_grafts_d_of_the_subscribers() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 12);
    let out = subscribe(&mut g, t0);
    assert_eq!(sends_to(&out, |m| matches!(m, Gossip::Subscribe { .. })).len(), 12);
    let grafted = sends_to(&out, is_graft);
    assert_eq!(grafted.len(), 8, "D = 8");
    assert_eq!(g.mesh_peers(T).len(), 8);
    assert!(matches!(
        out.last(),
        Some(Action::Reply { reply: GossipReply::Subscribed(Ok(())), .. })
    ));
}

#[test]
fn the_heartbeat_tops_a_thin_mesh_up_and_cuts_a_fat_one_down_to_d() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 3);
    subscribe(&mut g, t0);
    assert_eq!(g.mesh_peers(T).len(), 3);
    for p in 4..=20 {
        up(&mut g, t0, p, Direction::Inbound);
        frame(&mut g, t0, p, Gossip::Subscribe { topic: T.into() });
    }
    drain(&mut g);
    g.handle_timeout(t0 + S);
    let out = drain(&mut g);
    assert_eq!(sends_to(&out, is_graft).len(), 5, "below D_low (6): grafted up to D (8)");
    // Everyone grafts us: 20 in the mesh, above D_high (12).
    for p in 1..=20 {
        frame(&mut g, t0 + S, p, Gossip::Graft { topic: T.into() });
    }
    assert_eq!(g.mesh_peers(T).len(), 20);
    g.handle_timeout(t0 + 2 * S);
    let out = drain(&mut g);
    assert_eq!(sends_to(&out, is_prune).len(), 12);
    assert_eq!(g.mesh_peers(T).len(), 8);
    let outbound = g.mesh_peers(T).iter().filter(|p| p.as_bytes()[0] % 2 == 0).count();
    assert!(outbound >= 2, "D_out outbound peers are kept");
}

#[test]
fn discovery_is_asked_for_only_the_subscribers_the_mesh_lacks() {
    let t0 = Instant::now();
    let mut g = PubSub::new(id(200), GossipConfig::default());
    assert_eq!(g.peers_wanted(t0, T), 0, "not subscribed: nobody");
    subscribe(&mut g, t0);
    assert_eq!(g.peers_wanted(t0, T), 8, "no peers: all of D");
    // Three connected subscribers: the heartbeat grafts them, so five more fill the mesh.
    for p in 1..=3 {
        up(&mut g, t0, p, Direction::Outbound);
        frame(&mut g, t0, p, Gossip::Subscribe { topic: T.into() });
    }
    assert_eq!(g.peers_wanted(t0, T), 5);
    // A peer connected but not subscribed counts for nothing; one in backoff neither.
    up(&mut g, t0, 4, Direction::Inbound);
    frame(&mut g, t0, 1, Gossip::Prune { topic: T.into(), backoff_secs: 60, peers: Vec::new() });
    assert_eq!(g.peers_wanted(t0, T), 6);
    g.handle_timeout(t0 + S);
    assert_eq!(g.mesh_peers(T).len(), 2, "grafted the two it could");
    assert_eq!(g.peers_wanted(t0 + S, T), 6);
    // Six more subscribers connect: the heartbeat fills the mesh, and at D_low discovery
    // is asked for nobody even though the mesh is below D.
    for p in 5..=10 {
        up(&mut g, t0 + S, p, Direction::Inbound);
        frame(&mut g, t0 + S, p, Gossip::Subscribe { topic: T.into() });
    }
    assert_eq!(g.peers_wanted(t0 + S, T), 0, "2 in the mesh + 6 graftable = D");
    g.handle_timeout(t0 + 2 * S);
    assert!(g.mesh_peers(T).len() >= 6);
    assert_eq!(g.peers_wanted(t0 + 2 * S, T), 0);
}

#[test]
fn a_graft_during_backoff_is_refused_and_penalised() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 1);
    subscribe(&mut g, t0);
    frame(&mut g, t0, 1, Gossip::Prune { topic: T.into(), backoff_secs: 60, peers: Vec::new() });
    assert!(g.mesh_peers(T).is_empty());
    drain(&mut g);
    // Its PRUNE set a backoff; its GRAFTs come at once, three times (a flood: 2 points each,
    // and the penalty counts past its threshold of 2).
    for _ in 0..3 {
        frame(&mut g, t0 + S, 1, Gossip::Graft { topic: T.into() });
    }
    let out = drain(&mut g);
    assert_eq!(sends_to(&out, is_prune), vec![id(1); 3], "each answered with PRUNE");
    assert!(g.mesh_peers(T).is_empty());
    assert_eq!(g.stats().grafts_refused, 3);
    g.handle_timeout(t0 + 2 * S);
    assert!(g.scores().score(t0 + 2 * S, &id(1)) < 0.0, "the behaviour penalty shows");
}

#[test]
fn ihave_asks_once_for_unseen_ids_and_a_broken_promise_costs_the_peer() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 2);
    subscribe(&mut g, t0);
    let m = message(1, 10);
    let ids = vec![m.id(), message(2, 10).id()];
    frame(&mut g, t0, 1, Gossip::IHave { topic: T.into(), ids: ids.clone() });
    let out = drain(&mut g);
    assert!(out.iter().any(|a| matches!(a, Action::Send { to, msg: Gossip::IWant { ids: asked } }
        if *to == id(1) && *asked == ids)));
    // Peer 2 announces the same ids: already asked, not asked again.
    frame(&mut g, t0, 2, Gossip::IHave { topic: T.into(), ids: ids.clone() });
    assert!(sends_to(&drain(&mut g), |m| matches!(m, Gossip::IWant { .. })).is_empty());
    // Peer 1 delivers one of the two; the other promise breaks after the follow-up time.
    frame(&mut g, t0, 1, Gossip::Publish(m));
    let out = drain(&mut g);
    run_checks(&mut g, t0, &out);
    for s in 1..=4 {
        g.handle_timeout(t0 + s * S);
        drain(&mut g);
    }
    assert_eq!(g.stats().broken_promises, 1);
    assert_eq!(g.stats().delivered, 1);
}

#[test]
fn a_verified_message_is_delivered_once_forwarded_to_the_mesh_and_idontwant_is_honoured() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 4);
    subscribe(&mut g, t0);
    let m = message(1, 2048);
    // Peer 3 says it has the message already: no forward to it.
    frame(&mut g, t0, 3, Gossip::IDontWant { ids: vec![m.id()] });
    frame(&mut g, t0, 1, Gossip::Publish(m.clone()));
    let out = drain(&mut g);
    // A large message: IDONTWANT to the other mesh peers at once, before the check.
    let idontwant = sends_to(&out, |x| matches!(x, Gossip::IDontWant { .. }));
    assert_eq!(idontwant, vec![id(2), id(3), id(4)]);
    assert!(
        matches!(out.last(), Some(Action::Job { job: Job::CheckMessages { .. }, .. })),
        "{out:?}"
    );
    // A second copy while the first waits: no second check, no second IDONTWANT.
    frame(&mut g, t0, 2, Gossip::Publish(m.clone()));
    assert!(drain(&mut g).is_empty());
    let after = run_checks(&mut g, t0, &out);
    let forwarded = sends_to(&after, |x| matches!(x, Gossip::Publish(_)));
    assert_eq!(forwarded, vec![id(4)], "not back to 1 or 2, who sent it, nor to 3");
    let delivered: Vec<_> =
        after.iter().filter(|a| matches!(a, Action::Event(GossipEvent::Message(_)))).collect();
    assert_eq!(delivered.len(), 1);
    frame(&mut g, t0, 4, Gossip::Publish(m.clone()));
    assert!(drain(&mut g).is_empty(), "seen: no check, no delivery");
    assert_eq!(g.stats().duplicates, 2);
    // An IWANT overrides an IDONTWANT (the peer's copy may have been forged).
    frame(&mut g, t0, 3, Gossip::IWant { ids: vec![m.id()] });
    assert_eq!(sends_to(&drain(&mut g), |x| matches!(x, Gossip::Publish(_))), vec![id(3)]);
    // Peer 3's IDONTWANT came before the message: kept until the forward was decided.
    assert_eq!((g.stats().idontwant_kept, g.stats().idontwant_settled), (1, 0));
}

#[test]
fn an_idontwant_is_kept_only_while_a_forward_may_still_be_decided() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 4);
    subscribe(&mut g, t0);
    let m = message(1, 2048);
    frame(&mut g, t0, 1, Gossip::Publish(m.clone()));
    let out = drain(&mut g);
    // Being checked: peer 2's IDONTWANT is kept, and the forward skips it.
    frame(&mut g, t0, 2, Gossip::IDontWant { ids: vec![m.id()] });
    assert_eq!(g.stats().dont_want_ids, 1);
    let after = run_checks(&mut g, t0, &out);
    assert_eq!(sends_to(&after, |x| matches!(x, Gossip::Publish(_))), vec![id(3), id(4)]);
    // Forwarded already: peers 3 and 4 saying IDONTWANT now changes nothing, so nothing is
    // kept for them.
    frame(&mut g, t0, 3, Gossip::IDontWant { ids: vec![m.id()] });
    frame(&mut g, t0, 4, Gossip::IDontWant { ids: vec![m.id()] });
    let s = g.stats();
    assert_eq!((s.idontwant_kept, s.idontwant_settled, s.dont_want_ids), (1, 2, 1));
    // A message not seen yet is kept, and the kept ids go within twice the TTL.
    let later = message(2, 2048);
    frame(&mut g, t0, 3, Gossip::IDontWant { ids: vec![later.id()] });
    assert_eq!(g.stats().dont_want_ids, 2);
    let ttl = GossipConfig::default().dont_want_ttl;
    g.handle_timeout(t0 + 2 * ttl);
    assert_eq!(g.stats().dont_want_ids, 0);
}

#[test]
fn a_peer_over_its_idontwant_cap_is_refused_and_counted() {
    let t0 = Instant::now();
    let config = GossipConfig { max_dont_want_per_peer: 3, ..GossipConfig::default() };
    let mut g = PubSub::new(id(200), config);
    up(&mut g, t0, 1, Direction::Inbound);
    let ids: Vec<MessageId> = (0..5).map(|n| message(n, 10).id()).collect();
    frame(&mut g, t0, 1, Gossip::IDontWant { ids });
    let s = g.stats();
    assert_eq!((s.idontwant_kept, s.idontwant_over_cap, s.dont_want_ids), (3, 0, 3));
    let more: Vec<MessageId> = (5..7).map(|n| message(n, 10).id()).collect();
    frame(&mut g, t0, 1, Gossip::IDontWant { ids: more });
    let s = g.stats();
    assert_eq!((s.idontwant_kept, s.idontwant_over_cap, s.dont_want_ids), (3, 2, 3));
}

#[test]
fn a_large_message_goes_to_two_mesh_peers_at_once_and_to_the_rest_only_if_still_needed() {
    let t0 = Instant::now();
    let ms = Duration::from_millis(1);
    let mut g = with_peers(t0, 8);
    subscribe(&mut g, t0);
    let mesh: Vec<NodeId> = g.mesh_peers(T);
    assert_eq!(mesh.len(), 8);
    let m = message(1, 16 * 1024);
    let from = mesh[0];
    let from_n = from.as_bytes()[0];
    frame(&mut g, t0, from_n, Gossip::Publish(m.clone()));
    let out = drain(&mut g);
    let after = run_checks(&mut g, t0, &out);
    let eager = sends_to(&after, |x| matches!(x, Gossip::Publish(_)));
    assert_eq!(eager.len(), 2, "eager_forwards");
    let held: Vec<NodeId> =
        mesh.iter().copied().filter(|p| *p != from && !eager.contains(p)).collect();
    assert_eq!(held.len(), 5);
    assert_eq!(g.next_deadline(), Some(t0 + 150 * ms), "stagger_delay");
    // Meanwhile one held peer says it has the message, another sends us a copy.
    frame(&mut g, t0 + 10 * ms, held[0].as_bytes()[0], Gossip::IDontWant { ids: vec![m.id()] });
    frame(&mut g, t0 + 20 * ms, held[1].as_bytes()[0], Gossip::Publish(m.clone()));
    // And a third leaves the topic (so the mesh).
    frame(&mut g, t0 + 30 * ms, held[2].as_bytes()[0], Gossip::Unsubscribe { topic: T.into() });
    drain(&mut g);
    g.handle_timeout(t0 + 149 * ms);
    assert!(sends_to(&drain(&mut g), |x| matches!(x, Gossip::Publish(_))).is_empty());
    g.handle_timeout(t0 + 150 * ms);
    let mut late = sends_to(&drain(&mut g), |x| matches!(x, Gossip::Publish(_)));
    late.sort();
    assert_eq!(late, held[3..].to_vec());
    let s = g.stats();
    assert_eq!((s.staggered, s.staggered_cancelled, s.staggered_held), (5, 3, 0));
    assert_eq!(s.forwarded, 2 + 2);
    // A message below the threshold goes to every mesh peer at once.
    frame(&mut g, t0 + S, from_n, Gossip::Publish(message(2, 2048)));
    let out = drain(&mut g);
    let after = run_checks(&mut g, t0 + S, &out);
    assert_eq!(sends_to(&after, |x| matches!(x, Gossip::Publish(_))).len(), 6);
}

#[test]
fn when_too_many_messages_are_held_the_next_one_is_forwarded_to_all_at_once() {
    let t0 = Instant::now();
    let config = GossipConfig { max_staggered: 1, ..GossipConfig::default() };
    let mut g = PubSub::new(id(200), config);
    for p in 1..=8 {
        up(&mut g, t0, p, Direction::Inbound);
        frame(&mut g, t0, p, Gossip::Subscribe { topic: T.into() });
    }
    subscribe(&mut g, t0);
    let from_n = g.mesh_peers(T)[0].as_bytes()[0];
    let mut forwards = Vec::new();
    for seqno in 1..=2 {
        frame(&mut g, t0, from_n, Gossip::Publish(message(seqno, 16 * 1024)));
        let out = drain(&mut g);
        let after = run_checks(&mut g, t0, &out);
        forwards.push(sends_to(&after, |x| matches!(x, Gossip::Publish(_))).len());
    }
    assert_eq!(forwards, [2, 7]);
    let s = g.stats();
    assert_eq!((s.staggered, s.staggered_full, s.staggered_held), (5, 1, 1));
}

#[test]
fn no_idontwant_is_sent_for_a_small_message_or_a_copy_from_a_negative_peer() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 3);
    subscribe(&mut g, t0);
    frame(&mut g, t0, 1, Gossip::Publish(message(1, 100)));
    assert!(sends_to(&drain(&mut g), |x| matches!(x, Gossip::IDontWant { .. })).is_empty());
    // Peer 2 sends a forgery (scored down), then a large message: no IDONTWANT for its copy.
    let mut forged = message(2, 10);
    forged.payload = b"x".to_vec().into();
    frame(&mut g, t0, 2, Gossip::Publish(forged));
    let out = drain(&mut g);
    run_checks(&mut g, t0, &out);
    assert!(g.scores().score(t0, &id(2)) < 0.0);
    frame(&mut g, t0, 2, Gossip::Publish(message(3, 4096)));
    assert!(sends_to(&drain(&mut g), |x| matches!(x, Gossip::IDontWant { .. })).is_empty());
}

#[test]
fn a_forged_copy_is_refused_and_the_genuine_alternate_is_checked_next() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 2);
    subscribe(&mut g, t0);
    let m = message(1, 10);
    let mut forged = m.clone();
    forged.payload = b"evil".to_vec().into();
    frame(&mut g, t0, 1, Gossip::Publish(forged));
    let out = drain(&mut g);
    frame(&mut g, t0, 2, Gossip::Publish(m));
    let next = run_checks(&mut g, t0, &out);
    assert_eq!(g.stats().invalid_signature, 1);
    assert!(matches!(&next[..], [Action::Job { .. }]), "the alternate goes to a check: {next:?}");
    let last = run_checks(&mut g, t0, &next);
    assert!(last.iter().any(|a| matches!(a, Action::Event(GossipEvent::Message(d))
        if d.from == id(2))));
}

#[test]
fn a_check_that_never_answers_is_given_up_as_ignore() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 1);
    subscribe(&mut g, t0);
    frame(&mut g, t0, 1, Gossip::Publish(message(1, 10)));
    let out = drain(&mut g);
    let Some(Action::Job { key, .. }) = out.first() else { panic!("{out:?}") };
    let key: JobKey = *key;
    let late = t0 + GossipConfig::default().validation_timeout;
    g.handle_timeout(late);
    drain(&mut g);
    assert_eq!(g.stats().ignored, 1);
    g.handle_job_done(late, key, None);
    assert!(drain(&mut g).is_empty(), "the late answer changes nothing");
    assert_eq!(g.stats().delivered, 0);
    // Never checked, so not seen: a later copy is checked anew.
    frame(&mut g, late, 1, Gossip::Publish(message(1, 10)));
    assert!(matches!(&drain(&mut g)[..], [Action::Job { .. }]));
}

#[test]
fn a_message_the_validator_ignored_or_rejected_is_seen_and_its_copies_cost_nothing() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 2);
    subscribe(&mut g, t0);
    for (seqno, verdict) in [(1, Verdict::Ignore), (2, Verdict::Reject)] {
        frame(&mut g, t0, 1, Gossip::Publish(message(seqno, 10)));
        let out = drain(&mut g);
        let Some(Action::Job { key, .. }) = out.last() else { panic!("{out:?}") };
        g.handle_job_done(t0, *key, Some(JobResult::MessagesChecked(vec![verdict])));
        assert!(drain(&mut g).is_empty(), "neither delivered nor forwarded");
        frame(&mut g, t0, 2, Gossip::Publish(message(seqno, 10)));
        assert!(drain(&mut g).is_empty(), "a copy is a duplicate: no second check");
    }
    assert_eq!((g.stats().ignored, g.stats().rejected, g.stats().duplicates), (1, 1, 2));
    assert!(g.scores().score(t0, &id(1)) < 0.0, "a Reject costs the sender");
}

#[test]
fn a_congested_peer_gets_control_first_and_stale_forwards_are_dropped() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 2);
    subscribe(&mut g, t0);
    g.handle_congestion(t0, id(2), true);
    for s in 1..=3 {
        frame(&mut g, t0, 1, Gossip::Publish(message(s, 10)));
        let out = drain(&mut g);
        run_checks(&mut g, t0, &out);
    }
    g.handle_command(t0, crate::protocol::CommandId(2), GossipCommand::Unsubscribe(T.into()));
    drain(&mut g);
    assert!(g.stats().queued_bytes > 0);
    // Drained after the forward deadline: the PRUNE and UNSUBSCRIBE go, the forwards do not.
    let late = t0 + GossipConfig::default().forward_deadline;
    g.handle_congestion(late, id(2), false);
    let out = drain(&mut g);
    let kinds: Vec<&str> = out
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, msg } if *to == id(2) => Some(msg.kind()),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["prune", "unsubscribe"]);
    assert_eq!(g.stats().expired_forwards, 3);
}

#[test]
fn frames_from_a_peer_over_its_topic_cap_are_refused_and_counted() {
    let t0 = Instant::now();
    let mut g =
        PubSub::new(id(200), GossipConfig { max_topics_per_peer: 2, ..GossipConfig::default() });
    up(&mut g, t0, 1, Direction::Inbound);
    for t in ["a", "b", "c", "d"] {
        frame(&mut g, t0, 1, Gossip::Subscribe { topic: t.into() });
    }
    assert_eq!(g.stats().subscriptions_refused, 2);
}

#[test]
fn graft_and_prune_past_the_per_heartbeat_allowance_are_ignored() {
    let t0 = Instant::now();
    let config = GossipConfig { max_graft_prune_per_heartbeat: 4, ..GossipConfig::default() };
    let mut g = PubSub::new(id(200), config);
    up(&mut g, t0, 1, Direction::Inbound);
    subscribe(&mut g, t0);
    for _ in 0..10 {
        frame(&mut g, t0, 1, Gossip::Prune { topic: T.into(), backoff_secs: 1, peers: Vec::new() });
    }
    assert_eq!(g.stats().ignored_frames, 6);
    g.handle_timeout(t0 + S);
    frame(&mut g, t0 + S, 1, Gossip::Prune { topic: T.into(), backoff_secs: 1, peers: Vec::new() });
    assert_eq!(g.stats().ignored_frames, 6, "a new heartbeat, a new allowance");
}

#[test]
fn a_message_is_neither_forwarded_nor_idontwanted_to_its_authors_node() {
    let t0 = Instant::now();
    let mut g = with_peers(t0, 2);
    let author = Keypair::from_seed([77; 32]);
    let author_node = author.node_id();
    let h = hello();
    let peer = Peer { id: author_node, addr: addr(9), direction: Direction::Inbound, hello: &h };
    g.handle_peer_up(t0, &peer);
    g.handle_gossip(t0, &peer, Gossip::Subscribe { topic: T.into() });
    subscribe(&mut g, t0);
    assert!(g.mesh_peers(T).contains(&author_node));
    let m = GossipMessage::sign(&author, 1, T.into(), vec![0; 2048]);
    frame(&mut g, t0, 1, Gossip::Publish(m));
    let out = drain(&mut g);
    assert_eq!(sends_to(&out, |x| matches!(x, Gossip::IDontWant { .. })), vec![id(2)]);
    let after = run_checks(&mut g, t0, &out);
    assert_eq!(sends_to(&after, |x| matches!(x, Gossip::Publish(_))), vec![id(2)]);
}
