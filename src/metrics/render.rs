//! Every exported metric: a [`Snapshot`] in, the Prometheus text exposition format out.
//!
//! Naming follows Prometheus's rules: the `petrel_` prefix, base units in the name
//! (`_bytes`, `_seconds`), `_total` on every counter and on nothing else. Labels take their
//! values from small fixed sets named here or in the stats they come from (query kinds, close
//! causes, record-error names); never a peer id, an address or a topic name. A label set is
//! exported even when its count is 0, so a rate over it exists from the first scrape.
//!
//! Gossip families appear only when gossip is on, `petrel_log_*` only with a data directory.
//! README.md, "Metrics", lists every family; a test keeps that list complete.

use super::families::Families;
use crate::kad::dht::QUERY_KINDS;
use crate::kad::records::RecordError;
use crate::kad::routing::RejectReason;
use crate::transport::CloseCause;
use crate::Snapshot;

/// Why a snapshot could not be encoded (a bug: every family is built with samples).
#[derive(Debug)]
pub struct RenderError(prometheus::Error);

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "encoding the metrics failed: {}", self.0)
    }
}

impl std::error::Error for RenderError {}

/// `s` in the text exposition format, version 0.0.4.
pub fn render(s: &Snapshot) -> Result<String, RenderError> {
    families(s).encode().map_err(RenderError)
}

/// Every family of `s`, in the order of README.md's table.
pub(super) fn families(s: &Snapshot) -> Families {
    let mut f = Families::default();
    connections(&mut f, s);
    traffic(&mut f, s);
    resources(&mut f, s);
    dht(&mut f, s);
    store(&mut f, s);
    if let Some(log) = &s.log {
        log_families(&mut f, log);
    }
    gossip(&mut f, s);
    f
}

fn connections(f: &mut Families, s: &Snapshot) {
    let p = &s.peers;
    f.gauges(
        "petrel_connections_active",
        "Connections now, connecting or established, by direction.",
        [
            ([("direction", "inbound")], p.connections_inbound as u64),
            ([("direction", "outbound")], p.connections_outbound as u64),
        ],
    );
    f.gauge(
        "petrel_connections_limit",
        "Most connections of both directions together.",
        p.max_connections as u64,
    );
    f.gauges(
        "petrel_connections_direction_limit",
        "Most connections in each direction (its share of the limit).",
        [
            ([("direction", "inbound")], p.max_inbound as u64),
            ([("direction", "outbound")], p.max_outbound as u64),
        ],
    );
    f.gauge("petrel_peers", "Peers with an established connection now.", p.peers as u64);
    f.counter(
        "petrel_connections_established_total",
        "Connections that authenticated their peer and were kept.",
        p.established,
    );
    f.counter(
        "petrel_connections_accepted_total",
        "Inbound connections admitted by the connection table.",
        p.admitted_inbound,
    );
    f.counter("petrel_dials_total", "Dials started.", p.dials_started);
    f.counter(
        "petrel_dials_failed_total",
        "Dials that failed (refused, unreachable, timed out, wrong key).",
        p.dial_failures,
    );
    f.counters(
        "petrel_connections_closed_total",
        "Connections that ended (failed dials included), by cause.",
        CloseCause::KINDS.iter().zip(s.core.closed).map(|(&k, n)| ([("cause", k)], n)),
    );
    let dropped = [
        ("connect_timeout", p.connect_timeouts),
        ("idle_timeout", p.idle_timeouts),
        ("unused", p.unused_closed),
        ("duplicate", p.duplicates_closed),
        ("rate_limited", s.core.closed_rate_limited),
        ("slow_reader", s.core.closed_slow_reader),
        ("frame_timeout", s.core.closed_frame_timeout),
        ("pruned", s.core.connections_pruned),
        ("self", s.core.self_connections),
    ];
    f.counters(
        "petrel_connections_dropped_total",
        "Connections the node itself closed, by reason.",
        dropped.map(|(r, n)| ([("reason", r)], n)),
    );
    let refused = [
        ("inbound_limit", p.refused_inbound_limit),
        ("per_source", p.refused_inbound_per_source),
        ("per_peer", p.refused_per_peer_limit),
        ("rate_global", s.limiter.global_refusals),
        ("rate_per_source", s.limiter.per_ip_refusals),
        ("no_entry", s.reactor.refused_entries),
    ];
    f.counters(
        "petrel_connections_refused_total",
        "Connections refused, by the limit that refused them (per_peer: after authentication).",
        refused.map(|(r, n)| ([("reason", r)], n)),
    );
    let dials_refused = [
        ("limit", p.dial_refused_limit),
        ("backoff", p.dial_refused_backoff),
        ("circuit_open", p.dial_refused_circuit_open),
        ("already_connected", p.dial_refused_already_connected),
        ("shutdown", s.reactor.dials_refused_shutdown),
    ];
    f.counters(
        "petrel_dials_refused_total",
        "Dials refused before starting, by reason.",
        dials_refused.map(|(r, n)| ([("reason", r)], n)),
    );
    let transitions = [
        ("open", p.circuits_opened),
        ("half_open", p.circuits_half_opened),
        ("closed", p.circuits_closed),
    ];
    f.counters(
        "petrel_circuit_breaker_transitions_total",
        "Per-address circuit-breaker transitions, by the state entered (half_open: a trial dial).",
        transitions.map(|(t, n)| ([("to", t)], n)),
    );
    f.gauge(
        "petrel_dial_book_addresses",
        "Addresses whose dial history (backoff, breaker) is kept.",
        p.tracked_addrs as u64,
    );
}

fn traffic(f: &mut Families, s: &Snapshot) {
    let r = &s.reactor;
    f.counter(
        "petrel_received_bytes_total",
        "Bytes read from peers' sockets (TLS records).",
        r.bytes_received,
    );
    f.counter(
        "petrel_sent_bytes_total",
        "Bytes written to peers' sockets (TLS records).",
        r.bytes_sent,
    );
    f.counter(
        "petrel_received_frames_total",
        "Protocol frames received from established peers.",
        r.frames_received,
    );
    f.counter("petrel_sent_frames_total", "Protocol frames queued for sending.", r.frames_sent);
    let unsent = [
        ("pool", r.frames_refused_pool),
        ("unencodable", r.frames_unencodable),
        ("queue_full", r.frames_refused_queue),
    ];
    f.counters(
        "petrel_frames_unsent_total",
        "Frames not sent: no buffer, failed to encode, or the peer's write queue was full.",
        unsent.map(|(r, n)| ([("reason", r)], n)),
    );
    let verdicts =
        [("allow", r.rate_allowed), ("slow", r.rate_slowed), ("unpayable", r.rate_unpayable)];
    f.counters(
        "petrel_rate_limit_verdicts_total",
        "Per-peer rate-limiter verdicts on received frames (slow: reads paused).",
        verdicts.map(|(v, n)| ([("verdict", v)], n)),
    );
    let debts =
        [("inbound", s.limiter.inbound_refusals), ("outbound", s.limiter.outbound_refusals)];
    f.counters(
        "petrel_global_budget_debts_total",
        "Times the node-wide byte budget went into debt, pausing every socket in that direction.",
        debts.map(|(d, n)| ([("direction", d)], n)),
    );
    f.gauge(
        "petrel_rate_limit_sources",
        "Source addresses tracked by the new-connection rate limiter.",
        s.limiter.tracked_ips as u64,
    );
    f.gauge(
        "petrel_pending_output_bytes",
        "Output queued on all connections together.",
        r.pending_output_bytes as u64,
    );
    f.gauge(
        "petrel_partial_frame_bytes",
        "Bytes of partly received frames held on all connections together.",
        r.partial_frame_bytes as u64,
    );
    f.counter(
        "petrel_backlogs_total",
        "Times a connection's output went over its high-water mark, so it was not read.",
        r.backlogs,
    );
    f.counter("petrel_requests_served_total", "Peers' requests answered.", s.core.requests_served);
    f.counter(
        "petrel_requests_timed_out_total",
        "Our requests that timed out.",
        s.core.requests_timed_out,
    );
    f.counter(
        "petrel_requests_pipelined_total",
        "Our requests sent on a dial behind our Hello, before the peer's (a round trip saved).",
        s.core.requests_pipelined,
    );
    let preconnects = [("dialled", s.core.preconnects), ("refused", s.core.preconnects_refused)];
    f.counters(
        "petrel_preconnects_total",
        "Dials a lookup asked for ahead of its request to the peer (refused: no free slot \
         outside the 16 kept for requests, backoff or open circuit; nothing is closed).",
        preconnects.map(|(o, n)| ([("outcome", o)], n)),
    );
    f.gauge(
        "petrel_requests_in_flight",
        "Our requests waiting for their response.",
        s.requests_in_flight as u64,
    );
    f.gauge("petrel_answers_owed", "Answers owed to peers' requests.", s.answers_owed as u64);
}

fn resources(f: &mut Families, s: &Snapshot) {
    let b = &s.buffers;
    f.gauge(
        "petrel_buffer_pool_in_use_bytes",
        "Pooled buffer bytes lent out now.",
        b.in_use_bytes as u64,
    );
    f.gauge("petrel_buffer_pool_free_bytes", "Pooled buffer bytes held free.", b.free_bytes as u64);
    f.gauge(
        "petrel_buffer_pool_cap_bytes",
        "Cap on pooled buffer bytes, in use plus free.",
        b.cap_bytes as u64,
    );
    f.gauge(
        "petrel_buffer_pool_high_water_bytes",
        "Most pooled buffer bytes ever in use at once.",
        b.high_water_bytes as u64,
    );
    f.counter("petrel_buffer_pool_acquires_total", "Buffers lent.", b.acquires);
    f.counter(
        "petrel_buffer_pool_refusals_total",
        "Buffer requests refused (cap reached or too large).",
        b.refusals,
    );
    let w = &s.workers;
    f.gauge("petrel_worker_queue_depth", "Jobs waiting for a worker.", w.queue_depth as u64);
    f.gauge(
        "petrel_worker_queue_capacity",
        "Most jobs that may wait for a worker.",
        w.queue_capacity as u64,
    );
    f.counter("petrel_worker_jobs_submitted_total", "Jobs given to the worker pool.", w.submitted);
    f.counter("petrel_worker_jobs_completed_total", "Jobs the workers finished.", w.completed);
    f.counter(
        "petrel_worker_jobs_dropped_total",
        "Jobs refused because the worker queue was full.",
        w.rejected_full,
    );
    let k = &s.author_keys;
    f.counter(
        "petrel_worker_author_key_hits_total",
        "Gossip signature checks that found their author's key decoded.",
        k.hits,
    );
    f.counter(
        "petrel_worker_author_key_misses_total",
        "Gossip signature checks that decoded their author's key.",
        k.misses,
    );
    f.gauge(
        "petrel_worker_author_key_slots",
        "Decoded author keys the workers may keep.",
        k.slots as u64,
    );
    f.counter(
        "petrel_worker_jobs_panicked_total",
        "Jobs whose handler panicked (a bug).",
        w.panicked,
    );
    f.counter(
        "petrel_events_dropped_total",
        "Node events dropped because a subscriber did not take them in time.",
        s.reactor.events_dropped,
    );
    f.counter(
        "petrel_subscription_messages_lost_total",
        "Delivered gossip messages dropped from subscriptions that did not keep up.",
        s.subscriptions_lost,
    );
}

fn dht(f: &mut Families, s: &Snapshot) {
    let d = &s.dht;
    let kinds = || QUERY_KINDS.iter().zip(&d.queries);
    f.counters(
        "petrel_dht_queries_started_total",
        "DHT queries started, by kind.",
        kinds().map(|(&k, q)| ([("kind", k)], q.started)),
    );
    let ended = kinds().flat_map(|(&k, q)| {
        [
            ([("kind", k), ("outcome", "succeeded")], q.succeeded),
            ([("kind", k), ("outcome", "failed")], q.failed),
        ]
    });
    f.counters("petrel_dht_queries_total", "DHT queries ended, by kind and outcome.", ended);
    f.counters(
        "petrel_dht_query_requests_total",
        "Requests sent by finished DHT queries, by kind.",
        kinds().map(|(&k, q)| ([("kind", k)], q.rpcs)),
    );
    f.counter(
        "petrel_dht_queries_refused_total",
        "DHT commands refused because too many queries were running.",
        d.refused_busy,
    );
    f.histograms(
        "petrel_dht_lookup_duration_seconds",
        "How long the lookups of finished DHT queries took, by kind.",
        1e6,
        QUERY_KINDS.iter().zip(&d.lookups.duration_us).map(|(&k, h)| ([("kind", k)], h)),
    );
    f.histograms(
        "petrel_dht_lookup_rounds",
        "Sequential request rounds of the lookups of finished DHT queries, by kind.",
        1.0,
        QUERY_KINDS.iter().zip(&d.lookups.rounds).map(|(&k, h)| ([("kind", k)], h)),
    );
    f.counter(
        "petrel_dht_requests_served_total",
        "Kademlia requests from peers answered.",
        d.requests_served,
    );
    f.counters(
        "petrel_dht_rejections_total",
        "STOREs and ADD_PROVIDERs from peers refused, by reason.",
        RecordError::ALL
            .iter()
            .map(|e| ([("reason", e.name())], d.rejections.get(e.name()).copied().unwrap_or(0))),
    );
    f.counter(
        "petrel_dht_invalid_records_received_total",
        "Records in responses that failed validation.",
        d.invalid_records_received,
    );
    f.counter(
        "petrel_dht_replications_total",
        "STOREs sent to replicate held records.",
        d.replications,
    );
    f.counter(
        "petrel_dht_join_dials_total",
        "Dials of the join contacts: at the join and again while the routing table was empty.",
        d.join_dials,
    );
    f.counter(
        "petrel_dht_rejoins_total",
        "Times the routing table was still or again empty and the join contacts were dialled again.",
        d.rejoins,
    );
    f.counter(
        "petrel_dht_keepalive_pings_total",
        "PINGs sent to keep the connections to each bucket's cheapest entries up.",
        d.keepalive_pings,
    );
    f.counter(
        "petrel_dht_early_stores_total",
        "STOREs and ADD_PROVIDERs sent with a converging lookup's requests, not after it.",
        d.early_stores,
    );
    f.counter(
        "petrel_dht_wide_lookups_total",
        "Lookups with a wider first round and connecting ahead: round trips measured long, or none yet.",
        d.wide_lookups,
    );
    let q = &d.quality;
    f.gauge(
        "petrel_dht_measured_peers",
        "Peers whose round trip and success ratio are remembered.",
        q.peers as u64,
    );
    f.counter(
        "petrel_dht_handshake_rtt_samples_total",
        "Round trips measured from our dials' TCP and TLS handshakes (before any answer).",
        q.handshakes,
    );
    f.gauge(
        "petrel_dht_unreliable_peers",
        "Remembered peers whose decayed success ratio is below one half.",
        q.unreliable as u64,
    );
    f.counter(
        "petrel_dht_peer_figures_evicted_total",
        "Peers' figures forgotten: the table was full, or no news for the retention period.",
        q.evicted_full + q.expired,
    );
    let cache = [("hit", d.get_cache.hits), ("miss", d.get_cache.misses)];
    f.counters(
        "petrel_dht_get_cache_lookups_total",
        "GETs looked up in the cache of fetched records, by result.",
        cache.map(|(r, n)| ([("result", r)], n)),
    );
    let r = &s.routing;
    f.gauge("petrel_dht_routing_entries", "Routing-table entries.", r.entries as u64);
    f.gauge(
        "petrel_dht_routing_verified_entries",
        "Routing-table entries at an address we reached ourselves.",
        r.verified as u64,
    );
    f.gauge(
        "petrel_dht_routing_replacements",
        "Replacement candidates waiting for a slot.",
        r.replacements as u64,
    );
    f.counter(
        "petrel_dht_routing_evictions_total",
        "Routing-table entries evicted as dead.",
        r.evicted,
    );
    f.counters(
        "petrel_dht_routing_rejections_total",
        "Peers refused a routing-table entry, by reason.",
        RejectReason::ALL
            .iter()
            .zip(r.rejected)
            .map(|(reason, n)| ([("reason", reason.name())], n)),
    );
}

fn store(f: &mut Families, s: &Snapshot) {
    let st = &s.store;
    f.gauge("petrel_store_records", "Records held.", st.records as u64);
    f.gauge(
        "petrel_store_record_bytes",
        "Bytes of the records held (value and salt).",
        st.bytes as u64,
    );
    f.gauge("petrel_store_provider_records", "Provider entries held.", st.provider_records as u64);
    f.gauge(
        "petrel_store_hot_bytes",
        "Value bytes held in memory (the hot tier).",
        st.hot_bytes as u64,
    );
    f.gauge(
        "petrel_store_cold_records",
        "Records whose value is only in the log (the cold tier).",
        st.cold_records as u64,
    );
    let puts = [("stored", st.stored), ("replaced", st.replaced), ("refreshed", st.refreshed)];
    f.counters(
        "petrel_store_puts_total",
        "Records put in the store, by effect: new, replacing an older version, or refreshed.",
        puts.map(|(r, n)| ([("result", r)], n)),
    );
    f.counter("petrel_store_expired_total", "Records deleted because they expired.", st.expired);
    let d = &s.dht;
    let lookups =
        [("hot", d.values_served_hot), ("cold", d.values_served_cold), ("miss", d.values_missed)];
    f.counters(
        "petrel_store_lookups_total",
        "FIND_VALUEs by where the value was: memory (hot), the log only (cold), or not held (miss).",
        lookups.map(|(r, n)| ([("result", r)], n)),
    );
    let reads =
        [("ok", d.cold_reads), ("failed", d.cold_reads_failed), ("refused", d.cold_reads_refused)];
    f.counters(
        "petrel_store_cold_reads_total",
        "Values read back from the log into memory, by result.",
        reads.map(|(r, n)| ([("result", r)], n)),
    );
}

fn log_families(f: &mut Families, log: &crate::store::LogStats) {
    f.gauge("petrel_log_file_bytes", "Size of the record log on disk.", log.file_bytes);
    f.gauge(
        "petrel_log_live_bytes",
        "Bytes of the log's live entries; the rest is garbage.",
        log.live_bytes,
    );
    f.gauge("petrel_log_entries", "Live entries in the log.", log.live_entries);
    f.counter("petrel_log_appends_total", "Entries appended to the log.", log.appends);
    f.counter(
        "petrel_log_written_bytes_total",
        "Bytes written to the log, compactions included.",
        log.bytes_written,
    );
    f.counter("petrel_log_fsyncs_total", "fdatasyncs of the log.", log.syncs);
    f.counter("petrel_log_compactions_total", "Log compactions completed.", log.compactions);
    f.counter("petrel_log_reads_total", "Entries read back from the log.", log.reads);
    f.counter(
        "petrel_log_errors_total",
        "Log operations that failed (I/O or corruption).",
        log.errors,
    );
}

fn gossip(f: &mut Families, s: &Snapshot) {
    let Some(g) = &s.gossip else { return };
    f.counter("petrel_gossip_published_total", "Messages we published.", g.published);
    f.counter("petrel_gossip_received_total", "Gossip message copies received.", g.received);
    f.counter(
        "petrel_gossip_delivered_total",
        "Messages delivered to the application (first valid copy).",
        g.delivered,
    );
    f.counter("petrel_gossip_duplicates_total", "Copies of messages already seen.", g.duplicates);
    f.counter("petrel_gossip_forwarded_total", "Messages forwarded (one per peer).", g.forwarded);
    let invalid = [("bad_signature", g.invalid_signature), ("rejected", g.rejected)];
    f.counters(
        "petrel_gossip_invalid_total",
        "Invalid messages: a signature that did not verify, or a validator's rejection.",
        invalid.map(|(r, n)| ([("reason", r)], n)),
    );
    let ignored = [
        ("unsubscribed_topic", g.unsubscribed_topic),
        ("validator_ignored", g.ignored),
        ("validation_budget", g.validation_dropped),
    ];
    f.counters(
        "petrel_gossip_ignored_total",
        "Messages dropped without blame, by reason.",
        ignored.map(|(r, n)| ([("reason", r)], n)),
    );
    let sent = [
        ("ihave", g.ihave_sent),
        ("iwant", g.iwant_sent),
        ("idontwant", g.idontwant_sent),
        ("graft", g.grafts_sent),
        ("prune", g.prunes_sent),
    ];
    f.counters(
        "petrel_gossip_control_sent_total",
        "Gossip control frames sent, by kind.",
        sent.map(|(k, n)| ([("kind", k)], n)),
    );
    let received = [
        ("ihave", g.ihave_received),
        ("iwant", g.iwant_received),
        ("idontwant", g.idontwant_received),
    ];
    f.counters(
        "petrel_gossip_control_received_total",
        "Gossip control frames received, by kind.",
        received.map(|(k, n)| ([("kind", k)], n)),
    );
    let dropped = [("queue_full", g.dropped_sends), ("expired", g.expired_forwards)];
    f.counters(
        "petrel_gossip_dropped_sends_total",
        "Frames dropped from peers' outbound queues: full, or a forward past its deadline.",
        dropped.map(|(r, n)| ([("reason", r)], n)),
    );
    let staggered = [
        ("held", g.staggered),
        ("cancelled", g.staggered_cancelled),
        ("not_held_full", g.staggered_full),
    ];
    f.counters(
        "petrel_gossip_staggered_forwards_total",
        "Large messages' forwards held back (held), of those not sent because the peer had the \
         message meanwhile (cancelled), and messages forwarded to all at once because too many \
         were held (not_held_full).",
        staggered.map(|(r, n)| ([("outcome", r)], n)),
    );
    f.gauge(
        "petrel_gossip_staggered_messages",
        "Large messages whose forwards are held now.",
        g.staggered_held,
    );
    let ids = [
        ("kept", g.idontwant_kept),
        ("settled", g.idontwant_settled),
        ("over_cap", g.idontwant_over_cap),
    ];
    f.counters(
        "petrel_gossip_idontwant_ids_total",
        "IDONTWANT ids received: kept while a forward to that peer may still be decided (kept), \
         for messages already forwarded or judged (settled), refused at the peer's cap (over_cap).",
        ids.map(|(r, n)| ([("outcome", r)], n)),
    );
    f.gauge("petrel_gossip_idontwant_ids", "IDONTWANT ids in force, all peers.", g.dont_want_ids);
    f.counter(
        "petrel_gossip_broken_promises_total",
        "IWANTs whose announced message never came.",
        g.broken_promises,
    );
    f.gauge("petrel_gossip_peers", "Gossip peers connected.", g.peers);
    f.gauge("petrel_gossip_mesh_peers", "Mesh peers, all topics together.", g.mesh_peers);
    f.gauge("petrel_gossip_topics", "Topics subscribed.", g.topics);
    f.gauge(
        "petrel_gossip_queued_bytes",
        "Bytes in gossip outbound queues, all peers.",
        g.queued_bytes,
    );
    if let Some(scores) = &s.gossip_scores {
        let b = &scores.buckets;
        let bands = [
            ("graylisted", b.graylisted),
            ("below_publish", b.below_publish),
            ("below_gossip", b.below_gossip),
            ("negative", b.negative),
            ("non_negative", b.non_negative),
        ];
        f.gauges(
            "petrel_gossip_peers_by_score",
            "Connected gossip peers by score band (the thresholds of the score configuration).",
            bands.map(|(band, n)| ([("band", band)], n as u64)),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prometheus::proto::MetricType;

    use super::*;
    use crate::gossip::score::ScoreStats;
    use crate::gossip::GossipStats;
    use crate::store::LogStats;

    /// A snapshot with every optional part present, so every family is rendered.
    fn full() -> Snapshot {
        Snapshot {
            gossip: Some(GossipStats::default()),
            gossip_scores: Some(ScoreStats::default()),
            log: Some(LogStats::default()),
            ..Snapshot::default()
        }
    }

    /// Every sample line of `text` as (series, value).
    fn samples(text: &str) -> Vec<(&str, &str)> {
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.rsplit_once(' ')).collect()
    }

    fn value<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        samples(text).into_iter().find(|(s, _)| *s == series).map(|(_, v)| v)
    }

    #[test]
    fn names_follow_the_prometheus_rules_and_every_family_has_help() {
        let families = families(&full());
        let mut seen = BTreeSet::new();
        for family in families.list() {
            let name = family.name();
            assert!(seen.insert(name.to_string()), "{name} twice");
            let rest = name.strip_prefix("petrel_").unwrap_or_else(|| panic!("{name}: no prefix"));
            let snake = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
            assert!(!rest.is_empty() && rest.chars().all(snake), "{name}: not [a-z0-9_]");
            let counter = family.get_field_type() == MetricType::COUNTER;
            assert_eq!(counter, name.ends_with("_total"), "{name}: _total iff a counter");
            assert!(!family.help().is_empty() && family.help().ends_with('.'), "{name}: help");
            // The crate's own checks: a valid metric name, valid label names, some help.
            let labels: Vec<String> =
                family.get_metric()[0].get_label().iter().map(|l| l.name().to_string()).collect();
            let desc = prometheus::core::Desc::new(
                name.to_string(),
                family.help().to_string(),
                labels.clone(),
                Default::default(),
            );
            assert!(desc.is_ok(), "{name}: {desc:?}");
            // Every sample of a family has the same label names, and a distinct label set.
            let mut sets = BTreeSet::new();
            for m in family.get_metric() {
                let names: Vec<String> = m.get_label().iter().map(|l| l.name().into()).collect();
                assert_eq!(names, labels, "{name}");
                let values: Vec<String> = m.get_label().iter().map(|l| l.value().into()).collect();
                assert!(sets.insert(values), "{name}: a label set twice");
            }
        }
        assert!(seen.len() > 80, "only {} families", seen.len());
    }

    #[test]
    fn the_series_are_the_same_whatever_the_values() {
        // No label value comes from the data: a busy node exports exactly the series an idle
        // one does.
        let idle = full();
        let mut busy = full();
        busy.dht.rejections.insert("bad_signature", 4);
        busy.dht.queries[3].started = 9;
        busy.core.closed[2] = 1;
        busy.peers.connections_inbound = 7;
        let series = |s: &Snapshot| -> Vec<String> {
            let text = render(s).unwrap();
            samples(&text).into_iter().map(|(series, _)| series.to_string()).collect()
        };
        assert_eq!(series(&idle), series(&busy));
    }

    #[test]
    fn snapshot_values_show_up_as_their_samples() {
        let mut s = full();
        s.peers.connections_inbound = 3;
        s.peers.connections_outbound = 2;
        s.peers.max_connections = 256;
        s.core.closed[CloseCause::PeerClosed.kind_index()] = 7;
        s.dht.rejections.insert(RecordError::BadSignature.name(), 2);
        s.dht.queries[3].succeeded = 5;
        s.dht.lookups.duration_us[3].observe(30_000);
        s.dht.lookups.rounds[3].observe(2);
        s.reactor.bytes_received = 1 << 40;
        s.workers.queue_depth = 11;
        s.log.as_mut().unwrap().file_bytes = 12_345;
        s.log.as_mut().unwrap().syncs = 6;
        if let Some(g) = s.gossip.as_mut() {
            g.idontwant_sent = 9;
            g.mesh_peers = 8;
        }
        s.gossip_scores.as_mut().unwrap().buckets.graylisted = 1;
        let text = render(&s).unwrap();
        for (series, expected) in [
            ("petrel_connections_active{direction=\"inbound\"}", "3"),
            ("petrel_connections_active{direction=\"outbound\"}", "2"),
            ("petrel_connections_limit", "256"),
            ("petrel_connections_closed_total{cause=\"peer_closed\"}", "7"),
            ("petrel_connections_closed_total{cause=\"tcp_failed\"}", "0"),
            ("petrel_dht_rejections_total{reason=\"bad_signature\"}", "2"),
            ("petrel_dht_queries_total{kind=\"get\",outcome=\"succeeded\"}", "5"),
            ("petrel_dht_lookup_duration_seconds_bucket{kind=\"get\",le=\"0.025\"}", "0"),
            ("petrel_dht_lookup_duration_seconds_bucket{kind=\"get\",le=\"0.05\"}", "1"),
            ("petrel_dht_lookup_duration_seconds_bucket{kind=\"get\",le=\"+Inf\"}", "1"),
            ("petrel_dht_lookup_duration_seconds_sum{kind=\"get\"}", "0.03"),
            ("petrel_dht_lookup_rounds_bucket{kind=\"get\",le=\"2\"}", "1"),
            ("petrel_received_bytes_total", "1099511627776"),
            ("petrel_worker_queue_depth", "11"),
            ("petrel_log_file_bytes", "12345"),
            ("petrel_log_fsyncs_total", "6"),
            ("petrel_gossip_control_sent_total{kind=\"idontwant\"}", "9"),
            ("petrel_gossip_mesh_peers", "8"),
            ("petrel_gossip_peers_by_score{band=\"graylisted\"}", "1"),
        ] {
            assert_eq!(value(&text, series), Some(expected), "{series}");
        }
    }

    #[test]
    fn gossip_and_log_families_appear_only_when_present() {
        let text = render(&Snapshot::default()).unwrap();
        assert!(!text.contains("petrel_gossip_") && !text.contains("petrel_log_"), "{text}");
        assert!(text.contains("# TYPE petrel_peers gauge"));
    }

    #[test]
    fn the_readme_lists_every_family() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md is readable");
        let section = readme.split("\n## Metrics").nth(1).expect("README has a Metrics section");
        for family in families(&full()).list() {
            let row = format!("| `{}` |", family.name());
            assert!(section.contains(&row), "README.md, Metrics: no row for {}", family.name());
        }
    }
}
