//! Every setting a configuration file may hold: its key, its documentation, and how it is read
//! from and written to a [`Config`]. One table, so the file `petrel init` writes and the keys
//! `petrel run --config` accepts cannot drift apart.

use super::value::{Raw, Value};
use super::Config;
use crate::core::DiscoveryConfig;
use crate::gossip::GossipConfig;

/// A [`Config`] with its optional parts unfolded, so every setting has a place even while its
/// part is off (`gossip.enabled = false` keeps `gossip.d` where the file put it).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Everything but the optional parts.
    pub config: Config,
    /// Gossip's settings, used when `gossip_on`.
    pub gossip: GossipConfig,
    /// Whether gossip runs.
    pub gossip_on: bool,
    /// Topic discovery's settings, used when `discovery_on`.
    pub discovery: DiscoveryConfig,
    /// Whether topic discovery runs.
    pub discovery_on: bool,
}

impl Settings {
    /// Unfolds `config`; an optional part that is off takes its defaults.
    pub fn from_config(config: Config) -> Settings {
        Settings {
            gossip: config.gossip.clone().unwrap_or_default(),
            gossip_on: config.gossip.is_some(),
            discovery: config.discovery.unwrap_or_default(),
            discovery_on: config.discovery.is_some(),
            config,
        }
    }

    /// Folds the optional parts back.
    pub fn into_config(self) -> Config {
        let mut config = self.config;
        config.gossip = self.gossip_on.then_some(self.gossip);
        config.discovery = self.discovery_on.then_some(self.discovery);
        config
    }
}

/// One setting.
pub struct Setting {
    /// Its dotted key: `limits.idle_timeout` is `idle_timeout` in the file's `[limits]` table.
    pub key: &'static str,
    /// What it does, written above it in the file.
    pub doc: &'static str,
    /// Its value as a TOML literal.
    pub render: fn(&Settings) -> String,
    /// Sets it from TOML, or says what it allows.
    pub apply: fn(&mut Settings, &Raw) -> Result<(), String>,
}

impl Setting {
    /// The table the key lives in (`""` for the top level) and its name there.
    pub fn split(&self) -> (&'static str, &'static str) {
        self.key.rsplit_once('.').unwrap_or(("", self.key))
    }
}

macro_rules! s {
    ($key:literal, $($field:ident).+, $doc:literal) => {
        Setting {
            key: $key,
            doc: $doc,
            render: |s| Value::render(&s.$($field).+),
            apply: |s, raw| {
                s.$($field).+ = Value::parse(raw)?;
                Ok(())
            },
        }
    };
}

/// Every setting, top-level keys first and then table by table, in the order the file lists
/// them. Not here: the key (`node.key`), the data directory (`--data-dir`), and seeds.
pub const SETTINGS: &[Setting] = &[
    s!("listen", config.listen, r#"Where to listen."#),
    s!(
        "announce",
        config.announce,
        r#"Where peers reach us, announced in Hello and in provider records. Empty: the listen address; if that is unspecified (`0.0.0.0`), the address of the interface that routes to the first bootstrap peer, with the listen port (see `Node::start`)."#
    ),
    s!("bootstrap", config.bootstrap, r#"Peers to connect to at start."#),
    s!("network", config.network, r#"Network name (Hello); peers of other networks are refused."#),
    s!(
        "id_pow_bits",
        config.id_pow_bits,
        r#"Id proof-of-work difficulty required of every peer (and of us)."#
    ),
    s!("agent", config.agent, r#"Agent string sent in Hello."#),
    s!("max_frame_bytes", config.max_frame_bytes, r#"Maximum frame payload."#),
    s!(
        "max_write_queue_bytes",
        config.max_write_queue_bytes,
        r#"Per-connection write queue bound. A connection with more than this less one largest frame queued is not read until its output drains (its high-water mark)."#
    ),
    s!(
        "max_pending_output_bytes",
        config.max_pending_output_bytes,
        r#"Output queued on all connections together above which every connection with output queued is not read until it drains."#
    ),
    s!(
        "stall_timeout",
        config.stall_timeout,
        r#"How long a connection over its high-water mark may go without its output draining before the core closes it as a peer that does not read."#
    ),
    s!(
        "max_partial_frame_bytes",
        config.max_partial_frame_bytes,
        r#"Bytes of partly received frames held on all connections together above which connections part-way through a frame are not read until it drops."#
    ),
    s!(
        "frame_timeout",
        config.frame_timeout,
        r#"How long a started frame may take to arrive whole before the connection is closed."#
    ),
    s!(
        "buffer_pool_bytes",
        config.buffer_pool_bytes,
        r#"Cap on the reactor's buffer pool (read and encode buffers); at least the largest frame plus 64 KiB."#
    ),
    s!("request_timeout", config.request_timeout, r#"Request timeout."#),
    s!(
        "answer_timeout",
        config.answer_timeout,
        r#"How long a peer's request waits for an answer a protocol gives later."#
    ),
    s!("max_pending_requests", config.max_pending_requests, r#"Requests in flight."#),
    s!("command_queue", config.command_queue, r#"Application commands queued toward the reactor."#),
    s!(
        "event_queue",
        config.event_queue,
        r#"Events queued for each subscriber (`Handle::events`)."#
    ),
    s!("call_timeout", config.call_timeout, r#"Default timeout of blocking `Handle` calls."#),
    s!("shutdown_timeout", config.shutdown_timeout, r#"Bound on `Node::shutdown`."#),
    s!(
        "sync",
        config.sync,
        r#"Durability of an acknowledged write: `None` (handed to the OS: survives a crash of the process), `Batch` (also one fdatasync per batch: survives power loss; the default), `Always` (an fdatasync per write)."#
    ),
    s!(
        "sync_batch_interval",
        config.sync_batch_interval,
        r#"With `sync = batch`, the least time between two fdatasyncs. 0 (the default): a sync starts as soon as the last one ends, and every write that arrived meanwhile shares it (a lone writer pays one sync, not the interval)."#
    ),
    s!(
        "store_max_bytes",
        config.store_max_bytes,
        r#"Cap on the log file; beyond it writes are refused `StorageFull`."#
    ),
    s!(
        "max_restored_peers",
        config.max_restored_peers,
        r#"Saved routing-table peers dialled at start (most recently saved first), and again while the routing table is empty; with the bootstrap list, at most 128 are kept."#
    ),
    s!(
        "store_hot_bytes",
        config.store_hot_bytes,
        r#"With a data directory: value bytes kept in memory (the hot tier); the rest is read back from the log when asked for. Without one every value stays in memory."#
    ),
    s!(
        "metrics_listen",
        config.metrics_listen,
        r#"Where `petrel run` serves Prometheus metrics (`GET /metrics`); \"\" turns it off."#
    ),
    s!(
        "log_level",
        config.log_level,
        r#"What `petrel run` logs on stderr: off, error, warn, info (connections, status) or debug. `PETREL_LOG` and `--log` override it."#
    ),
    s!(
        "limits.max_connections",
        config.limits.max_connections,
        r#"Connections of both directions together."#
    ),
    s!(
        "limits.max_inbound",
        config.limits.max_inbound,
        r#"Inbound connections: the inbound share of `max_connections`."#
    ),
    s!(
        "limits.max_outbound",
        config.limits.max_outbound,
        r#"Outbound connections: the outbound share of `max_connections`."#
    ),
    s!(
        "limits.max_per_peer",
        config.limits.max_per_peer,
        r#"Authenticated connections to one `NodeId`."#
    ),
    s!(
        "limits.connect_timeout",
        config.limits.connect_timeout,
        r#"From accept or dial to authentication: TCP connect, TLS and hello."#
    ),
    s!(
        "limits.idle_timeout",
        config.limits.idle_timeout,
        r#"An established connection with no activity for this long is closed."#
    ),
    s!(
        "limits.backoff_base_interval",
        config.limits.backoff_base_interval,
        r#"Backoff after the first dial failure; it doubles with each further one."#
    ),
    s!(
        "limits.backoff_max_interval",
        config.limits.backoff_max_interval,
        r#"The longest backoff, jitter included."#
    ),
    s!(
        "limits.backoff_jitter_percent",
        config.limits.backoff_jitter_percent,
        r#"Each backoff is spread uniformly over ± this percentage."#
    ),
    s!(
        "limits.breaker_failure_threshold",
        config.limits.breaker_failure_threshold,
        r#"Consecutive dial failures that open an address's circuit breaker."#
    ),
    s!(
        "limits.breaker_open_interval",
        config.limits.breaker_open_interval,
        r#"Shortest time a breaker stays open before one trial dial; longer when the backoff for the failure count is longer."#
    ),
    s!(
        "limits.max_tracked_addrs",
        config.limits.max_tracked_addrs,
        r#"Addresses whose dial history is kept."#
    ),
    s!(
        "limits.inbound_prune_idle",
        config.limits.inbound_prune_idle,
        r#"When every inbound slot is taken, a new inbound connection closes the inbound connection idle the longest, if it has been idle at least this long. Active peers are never displaced."#
    ),
    s!(
        "limits.max_probes",
        config.limits.max_probes,
        r#"Dial-backs running at once. They take no outbound slot, only room under `max_connections`, so verifying addresses never starves the requests."#
    ),
    s!(
        "limits.max_inbound_per_ip",
        config.limits.max_inbound_per_ip,
        r#"Inbound connections from one address (an IPv6 /64 counts as one) at once."#
    ),
    s!(
        "limits.max_inbound_per_subnet",
        config.limits.max_inbound_per_subnet,
        r#"Inbound connections from one IPv4 /24 or IPv6 /48 at once."#
    ),
    s!(
        "limiter.peer_frames_per_sec",
        config.limiter.peer_frames_per_sec,
        r#"Frames a peer may send per second, sustained."#
    ),
    s!(
        "limiter.peer_frames_burst",
        config.limiter.peer_frames_burst,
        r#"Frames a peer may send at once."#
    ),
    s!(
        "limiter.peer_bytes_per_sec",
        config.limiter.peer_bytes_per_sec,
        r#"Bytes a peer may send per second, sustained."#
    ),
    s!(
        "limiter.peer_bytes_burst",
        config.limiter.peer_bytes_burst,
        r#"Bytes a peer may send at once."#
    ),
    s!(
        "limiter.global_inbound_bytes_per_sec",
        config.limiter.global_inbound_bytes_per_sec,
        r#"Bytes read from all sockets per second, sustained."#
    ),
    s!(
        "limiter.global_inbound_bytes_burst",
        config.limiter.global_inbound_bytes_burst,
        r#"Bytes read from all sockets at once."#
    ),
    s!(
        "limiter.global_outbound_bytes_per_sec",
        config.limiter.global_outbound_bytes_per_sec,
        r#"Bytes written to all sockets per second, sustained."#
    ),
    s!(
        "limiter.global_outbound_bytes_burst",
        config.limiter.global_outbound_bytes_burst,
        r#"Bytes written to all sockets at once."#
    ),
    s!(
        "limiter.new_conns_per_sec",
        config.limiter.new_conns_per_sec,
        r#"New inbound connections accepted per second, node-wide, sustained."#
    ),
    s!(
        "limiter.new_conns_burst",
        config.limiter.new_conns_burst,
        r#"New inbound connections accepted at once, node-wide."#
    ),
    s!(
        "limiter.per_ip_conns_per_sec",
        config.limiter.per_ip_conns_per_sec,
        r#"New inbound connections per second from one source, sustained."#
    ),
    s!(
        "limiter.per_ip_conns_burst",
        config.limiter.per_ip_conns_burst,
        r#"New inbound connections at once from one source."#
    ),
    s!(
        "limiter.max_tracked_ips",
        config.limiter.max_tracked_ips,
        r#"Sources tracked for the per-source limit; see the module doc for eviction."#
    ),
    s!(
        "limiter.max_strikes",
        config.limiter.max_strikes,
        r#"Slow-downs a peer may earn before the next over-budget frame disconnects it (the core's policy: `CoreConfig::max_strikes` is set from this)."#
    ),
    s!(
        "limiter.strike_window",
        config.limiter.strike_window,
        r#"Good behaviour that forgives one strike, and so the longest gap between slow-downs that still counts them as consecutive."#
    ),
    s!(
        "limiter.limiter_retention",
        config.limiter.limiter_retention,
        r#"How long a closed connection's budget is remembered for its address and id."#
    ),
    s!(
        "limiter.max_remembered",
        config.limiter.max_remembered,
        r#"Budgets remembered at most; past it the oldest is forgotten."#
    ),
    s!("workers.threads", config.workers.threads, r#"Number of worker threads."#),
    s!(
        "workers.queue_capacity",
        config.workers.queue_capacity,
        r#"Jobs that may wait for a worker; results are bounded at `queue_capacity + threads`."#
    ),
    s!(
        "dht.record_ttl",
        config.dht.record_ttl,
        r#"Lifetime asked of holders for records we publish."#
    ),
    s!(
        "dht.provider_ttl",
        config.dht.provider_ttl,
        r#"Lifetime asked of holders for our provider announcements."#
    ),
    s!(
        "dht.republish_interval",
        config.dht.republish_interval,
        r#"How often we publish our own records again (well inside `record_ttl`)."#
    ),
    s!(
        "dht.maintenance_interval",
        config.dht.maintenance_interval,
        r#"How often expiry, bucket refresh, republishing and replication run. Zero turns the periodic tick off (for tests that drive a core by hand)."#
    ),
    s!(
        "dht.join_on_first_contact",
        config.dht.join_on_first_contact,
        r#"Run a self-lookup when the first peer enters an empty routing table (the join)."#
    ),
    s!(
        "dht.keep_warm",
        config.dht.keep_warm,
        r#"Entries per bucket whose connection is kept up: the cheapest by measured round trip, success and connection (0: none). A lookup's first round then skips a dial."#
    ),
    s!(
        "dht.keepalive_interval",
        config.dht.keepalive_interval,
        r#"A kept entry not heard from for this long gets a PING, at the next maintenance tick. Keep it plus `dht.maintenance_interval` below `limits.idle_timeout`, or kept connections close and reopen."#
    ),
    s!(
        "dht.early_stores",
        config.dht.early_stores,
        r#"A PUT or PROVIDE whose lookup has converged (its nearest peer answered with no one nearer) sends its STORE along with the FIND_NODE to each peer asked from then on, and to those that answered, at most k: no round trip after the lookup. A peer the lookup then finds outside the k closest keeps an extra copy."#
    ),
    s!(
        "dht.max_queries",
        config.dht.max_queries,
        r#"Queries running at once; a command beyond this is refused with `Busy`."#
    ),
    s!(
        "dht.max_requests_in_flight",
        config.dht.max_requests_in_flight,
        r#"Requests in flight, all purposes together; maintenance waits when it is reached."#
    ),
    s!(
        "dht.max_originated",
        config.dht.max_originated,
        r#"Own records remembered for republishing."#
    ),
    s!(
        "dht.max_replication_queue",
        config.dht.max_replication_queue,
        r#"Newly learned peers waiting for replication."#
    ),
    s!(
        "dht.max_replications_per_tick",
        config.dht.max_replications_per_tick,
        r#"STOREs sent for replication per maintenance tick."#
    ),
    s!(
        "dht.max_replication_checks_per_tick",
        config.dht.max_replication_checks_per_tick,
        r#"Held keys checked against newly learned peers per maintenance tick; the rest waits for the next tick, so a full store never stalls the event loop."#
    ),
    s!(
        "dht.max_records_per_get",
        config.dht.max_records_per_get,
        r#"Distinct valid records one GET collects before it stops listening for more."#
    ),
    s!(
        "dht.verify_in_workers",
        config.dht.verify_in_workers,
        r#"Verify the signature of a mutable record a peer asks us to store on the worker pool (`Action::Job`) rather than inline; its answer waits for the result."#
    ),
    s!(
        "dht.max_deferred",
        config.dht.max_deferred,
        r#"STORE requests waiting for a worker; beyond this one is answered `Overloaded`. The router bounds how long the requester waits (`CoreConfig::answer_timeout`)."#
    ),
    s!(
        "dht.max_deferred_per_source",
        config.dht.max_deferred_per_source,
        r#"Of those, STOREs one peer, or one address (loopback excepted), may have waiting: its fair share, so one sender's flood of bad signatures does not get everyone `Overloaded`."#
    ),
    s!(
        "dht.max_forgeries",
        config.dht.max_forgeries,
        r#"STOREs with a bad signature one peer may send within `forgery_window` before it is dropped with `Goodbye(LowScore)`: an honest node stores and republishes only records it has validated."#
    ),
    s!("dht.forgery_window", config.dht.forgery_window, r#"See `max_forgeries`."#),
    s!(
        "dht.local_network",
        config.dht.local_network,
        r#"Accept loopback and private addresses from any peer (a LAN or a test bed); otherwise a claim may be no more local than the peer that makes it (`super::claims`)."#
    ),
    s!(
        "dht.max_probes",
        config.dht.max_probes,
        r#"Dial-backs of inbound peers' claims in flight at once (the router has its own bound, `PeerLimits::max_probes`)."#
    ),
    s!(
        "dht.max_probe_queue",
        config.dht.max_probe_queue,
        r#"Dial-backs waiting for a slot; beyond it the oldest is dropped and counted."#
    ),
    s!(
        "dht.max_pending_writes",
        config.dht.max_pending_writes,
        r#"Writes in flight at once; beyond it a STORE is answered `Overloaded`."#
    ),
    s!(
        "dht.routing_save_interval",
        config.dht.routing_save_interval,
        r#"How often the verified routing entries are written (zero: never)."#
    ),
    s!("dht.routing.k", config.dht.routing.k, r#"Entries per bucket."#),
    s!(
        "dht.routing.replacement_cache",
        config.dht.routing.replacement_cache,
        r#"Replacement candidates kept per bucket."#
    ),
    s!(
        "dht.routing.ip_limits",
        config.dht.routing.ip_limits,
        r#"Whether the IP-diversity limits apply."#
    ),
    s!(
        "dht.routing.max_per_subnet_bucket",
        config.dht.routing.max_per_subnet_bucket,
        r#"Entries of one /24 (IPv4) or /64 (IPv6) in one bucket."#
    ),
    s!(
        "dht.routing.max_per_subnet_table",
        config.dht.routing.max_per_subnet_table,
        r#"Entries of one /24 or /64 in the whole table."#
    ),
    s!(
        "dht.routing.refresh_interval",
        config.dht.routing.refresh_interval,
        r#"A bucket not touched for this long is due for refresh."#
    ),
    s!(
        "dht.routing.max_failures",
        config.dht.routing.max_failures,
        r#"Consecutive failed requests before an entry is evicted."#
    ),
    s!(
        "dht.lookup.alpha",
        config.dht.lookup.alpha,
        r#"Requests in flight per path, slow ones excluded (α, default 3)."#
    ),
    s!(
        "dht.lookup.k",
        config.dht.lookup.k,
        r#"Peers the lookup must hear from to finish, and the size of its result."#
    ),
    s!(
        "dht.lookup.request_timeout",
        config.dht.lookup.request_timeout,
        r#"Hard deadline of one request: past it the peer has failed."#
    ),
    s!(
        "dht.lookup.slow_timeout",
        config.dht.lookup.slow_timeout,
        r#"Past this a request no longer holds its α slot, but its answer is still used until `request_timeout`."#
    ),
    s!(
        "dht.lookup.disjoint_paths",
        config.dht.lookup.disjoint_paths,
        r#"Number of disjoint paths (S/Kademlia); 0 = off, which is one path."#
    ),
    s!(
        "dht.lookup.max_candidates",
        config.dht.lookup.max_candidates,
        r#"Candidates that have not failed tracked per path; past it the farthest not contacted is dropped."#
    ),
    s!(
        "dht.lookup.converge",
        config.dht.lookup.converge,
        r#"Ask all of the `k` nearest not yet asked at once when an answer brings nothing nearer (module doc, "Converging"; default on)."#
    ),
    s!(
        "dht.lookup.band",
        config.dht.lookup.band,
        r#"For GETs: how many buckets farther than the nearest candidate not yet asked a candidate may sit and still count as equally placed when ordering by cost (0: the same bucket only). Other lookups, which must hear from all of the k nearest, order within the bucket."#
    ),
    s!(
        "dht.lookup.first_round",
        config.dht.lookup.first_round,
        r#"Requests in flight per path until its first answer, failure or slow request (default 6; `alpha` or below turns it off); those past `alpha` go to seeds that need no dial, wherever they are placed. Used, with `dht.lookup.preconnect`, only while the mean measured round trip is at least `dht.lookup.wide_min_rtt`: it shortens lookups where round trips are long and costs requests and CPU where they are short. Value lookups (GET) keep to `alpha`."#
    ),
    s!(
        "dht.lookup.preconnect",
        config.dht.lookup.preconnect,
        r#"The nearest not yet asked that a lookup connects to ahead of their request, so it then costs one round trip (default 8; 0 = off). Only while the mean measured round trip is at least `dht.lookup.wide_min_rtt`. Never closes a connection to make room nor takes one of the last 16 outbound slots. Value lookups (GET) do not."#
    ),
    s!(
        "dht.lookup.wide_min_rtt",
        config.dht.lookup.wide_min_rtt,
        r#"Lookups use `dht.lookup.first_round` and `dht.lookup.preconnect` only while the mean measured round trip to the node's peers is at least this long, or none is measured yet (a dial's handshake is a measure until the first answer; default 20 ms; 0: always)."#
    ),
    s!(
        "dht.quality.max_peers",
        config.dht.quality.max_peers,
        r#"Peers whose round trip and success ratio are remembered (0: none); past it the record updated longest ago goes."#
    ),
    s!(
        "dht.quality.retention",
        config.dht.quality.retention,
        r#"How long a disconnected peer's figures are kept without news, so a reconnect keeps them."#
    ),
    s!(
        "dht.quality.adaptive",
        config.dht.quality.adaptive,
        r#"Lookups ask the cheapest of the equally placed candidates first (same bucket of the target, or within `dht.lookup.band`). Off: nearest first."#
    ),
    s!("dht.store.max_records", config.dht.store.max_records, r#"Records held in all."#),
    s!(
        "dht.store.max_bytes",
        config.dht.store.max_bytes,
        r#"Record bytes (value + salt) held in all."#
    ),
    s!(
        "dht.store.per_peer_records",
        config.dht.store.per_peer_records,
        r#"Records one peer may have stored here."#
    ),
    s!(
        "dht.store.per_peer_bytes",
        config.dht.store.per_peer_bytes,
        r#"Record bytes (value + salt) one peer may have stored here."#
    ),
    s!(
        "dht.store.per_subnet_records",
        config.dht.store.per_subnet_records,
        r#"Records the peers of one /24 (IPv6 /64) may have stored here, all ids together (loopback is exempt, so a one-host devnet works)."#
    ),
    s!(
        "dht.store.per_subnet_bytes",
        config.dht.store.per_subnet_bytes,
        r#"Record bytes the peers of one /24 (IPv6 /64) may have stored here."#
    ),
    s!(
        "dht.store.max_providers_per_key_per_subnet",
        config.dht.store.max_providers_per_key_per_subnet,
        r#"Provider entries of one key from the peers of one /24 (IPv6 /64): a subnet cannot fill a key's provider list with ids of its own."#
    ),
    s!(
        "dht.store.max_value_bytes",
        config.dht.store.max_value_bytes,
        r#"Largest value accepted (records.md §3 step 6); values above `MAX_VALUE_BYTES` are refused whatever this says."#
    ),
    s!(
        "dht.store.max_ttl",
        config.dht.store.max_ttl,
        r#"Longest record lifetime granted; longer requests are shortened to it."#
    ),
    s!(
        "dht.store.max_providers_per_key",
        config.dht.store.max_providers_per_key,
        r#"Providers kept per key; a new provider for a full key is refused (`StorageFull`)."#
    ),
    s!(
        "dht.store.max_provider_records",
        config.dht.store.max_provider_records,
        r#"Provider entries held in all."#
    ),
    s!(
        "dht.store.per_peer_provider_records",
        config.dht.store.per_peer_provider_records,
        r#"Provider entries one provider may have here (the provider is the sender, records.md §5)."#
    ),
    s!(
        "dht.store.max_provider_ttl",
        config.dht.store.max_provider_ttl,
        r#"Longest provider lifetime granted."#
    ),
    s!(
        "dht.cache.max_bytes",
        config.dht.cache.max_bytes,
        r#"Value and salt bytes held at most (0 turns the cache off)."#
    ),
    s!("dht.cache.max_entries", config.dht.cache.max_entries, r#"Records held at most."#),
    s!("dht.cache.ttl", config.dht.cache.ttl, r#"How long a fetched copy is kept."#),
    s!(
        "gossip.enabled",
        gossip_on,
        r#"Run gossip (publish/subscribe); off, the node neither announces nor serves it."#
    ),
    s!(
        "gossip.d",
        gossip.d,
        r#"Target mesh degree D: a heartbeat grafts up to it and prunes down to it."#
    ),
    s!("gossip.d_low", gossip.d_low, r#"Below this many mesh peers a heartbeat grafts (D_low)."#),
    s!("gossip.d_high", gossip.d_high, r#"Above this many a heartbeat prunes (D_high)."#),
    s!(
        "gossip.d_out",
        gossip.d_out,
        r#"Outbound mesh peers a heartbeat keeps (D_out): peers we dialled, which an attacker flooding us with inbound connections cannot displace. Must be below `d_low` and at most `d / 2`."#
    ),
    s!(
        "gossip.d_score",
        gossip.d_score,
        r#"Mesh peers kept by score when pruning an oversubscribed mesh (D_score); the rest of D is chosen at random, so a peer cannot buy its way into every mesh by score alone."#
    ),
    s!(
        "gossip.d_lazy",
        gossip.d_lazy,
        r#"Peers (outside the mesh) each heartbeat sends IHAVE to, at least (D_lazy)."#
    ),
    s!(
        "gossip.gossip_factor",
        gossip.gossip_factor,
        r#"Fraction of the eligible non-mesh peers sent IHAVE when that is more than `d_lazy`."#
    ),
    s!("gossip.heartbeat", gossip.heartbeat, r#"The mesh maintenance period."#),
    s!(
        "gossip.fanout_ttl",
        gossip.fanout_ttl,
        r#"A topic we publish to without subscribing keeps its fanout peers this long after our last publish."#
    ),
    s!(
        "gossip.history_length",
        gossip.history_length,
        r#"Heartbeat windows of messages kept to answer IWANT."#
    ),
    s!(
        "gossip.history_gossip",
        gossip.history_gossip,
        r#"Of those, the most recent windows announced in IHAVE."#
    ),
    s!(
        "gossip.seen_ttl",
        gossip.seen_ttl,
        r#"How long a message id is remembered as seen: a copy arriving within it is a duplicate, costs no signature check and is not delivered again."#
    ),
    s!(
        "gossip.max_seen",
        gossip.max_seen,
        r#"Message ids remembered as seen; past it the oldest are forgotten early (counted)."#
    ),
    s!(
        "gossip.prune_backoff",
        gossip.prune_backoff,
        r#"Backoff we ask of a peer we prune, and observe after it prunes us (at least)."#
    ),
    s!(
        "gossip.unsubscribe_backoff",
        gossip.unsubscribe_backoff,
        r#"Backoff after we leave a topic (shorter: rejoining soon is normal)."#
    ),
    s!(
        "gossip.graft_flood_threshold",
        gossip.graft_flood_threshold,
        r#"A GRAFT this soon after our PRUNE is penalised twice (a flood of GRAFTs), later ones in the backoff once."#
    ),
    s!(
        "gossip.px_peers",
        gossip.px_peers,
        r#"Peers offered for exchange in a PRUNE (at most `MAX_PX_PEERS`)."#
    ),
    s!(
        "gossip.px_dials",
        gossip.px_dials,
        r#"Peer-exchange candidates dialled per PRUNE received."#
    ),
    s!(
        "gossip.max_ihave_length",
        gossip.max_ihave_length,
        r#"Message ids announced in one IHAVE."#
    ),
    s!(
        "gossip.max_ihave_messages",
        gossip.max_ihave_messages,
        r#"IHAVE frames accepted from one peer per heartbeat; more are ignored (counted)."#
    ),
    s!(
        "gossip.max_graft_prune_per_heartbeat",
        gossip.max_graft_prune_per_heartbeat,
        r#"GRAFT and PRUNE frames taken from one peer per heartbeat; more are ignored (counted)."#
    ),
    s!(
        "gossip.max_iwant_per_heartbeat",
        gossip.max_iwant_per_heartbeat,
        r#"Message ids asked of one peer per heartbeat with IWANT."#
    ),
    s!(
        "gossip.max_promises_per_peer",
        gossip.max_promises_per_peer,
        r#"Ids asked of one peer and not delivered yet: a peer announcing ids it never delivers cannot fill the table of requests in flight that every peer shares."#
    ),
    s!(
        "gossip.iwant_followup",
        gossip.iwant_followup,
        r#"How long a peer has to deliver a message it announced in IHAVE and we asked for; past it the promise is broken and penalised, and the id may be asked of another peer."#
    ),
    s!(
        "gossip.gossip_retransmission",
        gossip.gossip_retransmission,
        r#"Times one peer gets the same message through IWANT; more asks are ignored."#
    ),
    s!(
        "gossip.idontwant_min_bytes",
        gossip.idontwant_min_bytes,
        r#"Messages this large or larger get an IDONTWANT to our mesh peers on first receipt, before their check."#
    ),
    s!(
        "gossip.stagger_min_bytes",
        gossip.stagger_min_bytes,
        r#"Messages this large or larger are forwarded to eager_forwards mesh peers at once and to the others stagger_delay later, if they still need them (neither an IDONTWANT nor a copy came from them meanwhile)."#
    ),
    s!(
        "gossip.eager_forwards",
        gossip.eager_forwards,
        r#"Mesh peers a large message is forwarded to at once, chosen at random (at least 1)."#
    ),
    s!(
        "gossip.stagger_delay",
        gossip.stagger_delay,
        r#"How long a large message's other forwards are held; 0 turns staggering off."#
    ),
    s!(
        "gossip.max_staggered",
        gossip.max_staggered,
        r#"Messages whose forwards may be held at once; past it, a message is forwarded to all at once (counted)."#
    ),
    s!(
        "gossip.max_dont_want_per_peer",
        gossip.max_dont_want_per_peer,
        r#"IDONTWANT ids remembered per peer; the older generation is forgotten first, then new ones are refused (counted)."#
    ),
    s!(
        "gossip.dont_want_ttl",
        gossip.dont_want_ttl,
        r#"How long an IDONTWANT is honoured at least (at most twice that: ids are kept in two generations)."#
    ),
    s!(
        "gossip.flood_publish",
        gossip.flood_publish,
        r#"Send our own messages to every subscribed peer above the publish threshold, not only the mesh."#
    ),
    s!(
        "gossip.opportunistic_graft_ticks",
        gossip.opportunistic_graft_ticks,
        r#"Every this many heartbeats, a mesh whose median score is below the opportunistic-graft threshold grafts better-scored peers."#
    ),
    s!(
        "gossip.opportunistic_graft_peers",
        gossip.opportunistic_graft_peers,
        r#"Peers grafted by one opportunistic graft."#
    ),
    s!("gossip.max_topics", gossip.max_topics, r#"Topics this node subscribes to at once."#),
    s!(
        "gossip.max_topics_per_peer",
        gossip.max_topics_per_peer,
        r#"Topics one peer may announce; further subscriptions are ignored (counted)."#
    ),
    s!(
        "gossip.max_known_topics",
        gossip.max_known_topics,
        r#"Distinct topic names remembered from all peers' subscriptions."#
    ),
    s!(
        "gossip.max_queue_bytes",
        gossip.max_queue_bytes,
        r#"Bytes queued for one peer beyond what its connection holds; a frame that does not fit makes room by dropping lower-priority frames, or is dropped (counted)."#
    ),
    s!(
        "gossip.forward_deadline",
        gossip.forward_deadline,
        r#"A forwarded message still queued this long after it was queued is dropped: late, it helps no one, and the peer will have had it from elsewhere."#
    ),
    s!(
        "gossip.max_pending_per_topic",
        gossip.max_pending_per_topic,
        r#"Messages awaiting their signature check per topic: the validation budget of a topic, so one hot topic cannot starve the others. Past it new messages are dropped (counted)."#
    ),
    s!(
        "gossip.max_pending_bytes",
        gossip.max_pending_bytes,
        r#"Bytes of messages awaiting their check, all topics together."#
    ),
    s!(
        "gossip.verify_batch",
        gossip.verify_batch,
        r#"Messages checked by one worker job (one batch)."#
    ),
    s!(
        "gossip.max_verify_jobs",
        gossip.max_verify_jobs,
        r#"Check jobs in flight at once; more messages wait in their topic's queue and go in the next batch."#
    ),
    s!(
        "gossip.validation_timeout",
        gossip.validation_timeout,
        r#"A check (signature and validator) that has not answered after this counts as Ignore."#
    ),
    s!(
        "gossip.subscription_queue",
        gossip.subscription_queue,
        r#"Delivered messages queued for the application per topic (the subscription channel); the runtime drops the oldest when it is full."#
    ),
    s!(
        "gossip.score.max_peers",
        gossip.score.max_peers,
        r#"Entries in total, connected or retained (8192): well above the connection limit, so the scores of thousands of departed peers survive churn."#
    ),
    s!(
        "gossip.score.max_topics_per_peer",
        gossip.score.max_topics_per_peer,
        r#"Topic entries per peer (64); further topics are ignored and counted."#
    ),
    s!(
        "gossip.score.max_topics",
        gossip.score.max_topics,
        r#"Topics whose traffic is counted for the P₃ gate (256); a topic past it never opens the gate, so P₃ fails towards leniency there."#
    ),
    s!(
        "gossip.score.decay_interval",
        gossip.score.decay_interval,
        r#"One decay step per interval (1 s): the heartbeat, so counters age in whole steps."#
    ),
    s!(
        "gossip.score.decay_to_zero",
        gossip.score.decay_to_zero,
        r#"A decayed counter below this is 0 (0.01), so idle entries can be dropped."#
    ),
    s!(
        "gossip.score.retain_score",
        gossip.score.retain_score,
        r#"How long a disconnected peer's score is kept (10 min): longer than one invalid message takes to decay away (~7.6 min), so waiting offline clears no more than waiting online."#
    ),
    s!(
        "gossip.score.mesh_delivery_window",
        gossip.score.mesh_delivery_window,
        r#"A duplicate this soon after the first copy is a near-first delivery (10 ms): short, so a mesh peer cannot earn P₃ by echoing what we just sent it. The caller applies it."#
    ),
    s!(
        "gossip.score.topic_score_cap",
        gossip.score.topic_score_cap,
        r#"Bound on the rewards summed over topics (15, one topic's P₁ + P₂ at their caps); `0.0` for none. Keeps a penalty's cost the same whatever else a peer does."#
    ),
    s!(
        "gossip.score.app_weight",
        gossip.score.app_weight,
        r#"w₅ (1.0): the application's verdict counts as it gives it."#
    ),
    s!(
        "gossip.score.ip_colocation_weight",
        gossip.score.ip_colocation_weight,
        r#"w₆ (−5.0): two peers past the threshold on one address cost each −20 (below `gossip`), five cost −125 (graylisted)."#
    ),
    s!(
        "gossip.score.ip_colocation_threshold",
        gossip.score.ip_colocation_threshold,
        r#"Connected peers one address may have before P₆ applies (3): a NAT or a host running a few nodes is normal; a Sybil farm on few addresses is not."#
    ),
    s!(
        "gossip.score.behaviour_penalty_weight",
        gossip.score.behaviour_penalty_weight,
        r#"w₇ (−10.0): three penalties past the threshold reach −90 (graylisted)."#
    ),
    s!(
        "gossip.score.behaviour_penalty_threshold",
        gossip.score.behaviour_penalty_threshold,
        r#"Penalties tolerated (2.0): an honest peer breaks an IWANT promise now and then."#
    ),
    s!(
        "gossip.score.behaviour_penalty_decay",
        gossip.score.behaviour_penalty_decay,
        r#"P₇ decay per interval (0.99): one penalty fades to zero in ~7.6 min."#
    ),
    s!(
        "gossip.score.thresholds.gossip",
        gossip.score.thresholds.gossip,
        r#"Below it (−10), no gossip to or from the peer: a mesh peer that stopped delivering."#
    ),
    s!(
        "gossip.score.thresholds.publish",
        gossip.score.thresholds.publish,
        r#"Below it (−50), our own publishes skip the peer: one invalid message."#
    ),
    s!(
        "gossip.score.thresholds.graylist",
        gossip.score.thresholds.graylist,
        r#"Below it (−80), every RPC from the peer is ignored: repeated or combined offences."#
    ),
    s!(
        "gossip.score.thresholds.accept_px",
        gossip.score.thresholds.accept_px,
        r#"At or above it (10), PRUNE peer exchange from the peer is accepted: a proven member."#
    ),
    s!(
        "gossip.score.thresholds.opportunistic_graft",
        gossip.score.thresholds.opportunistic_graft,
        r#"A mesh median below it (5) lets the core graft better-scored peers."#
    ),
    s!(
        "gossip.score.topic.topic_weight",
        gossip.score.topic.topic_weight,
        r#"Multiplies each topic's terms (1.0)."#
    ),
    s!(
        "gossip.score.topic.time_in_mesh_weight",
        gossip.score.topic.time_in_mesh_weight,
        r#"w₁ (0.01 per quantum): a small edge for mesh incumbents against churn."#
    ),
    s!(
        "gossip.score.topic.time_in_mesh_quantum",
        gossip.score.topic.time_in_mesh_quantum,
        r#"P₁ counts whole quanta in the mesh (1 s)."#
    ),
    s!(
        "gossip.score.topic.time_in_mesh_cap",
        gossip.score.topic.time_in_mesh_cap,
        r#"P₁ cap in quanta (500): at most +5, reached after ~8 min."#
    ),
    s!(
        "gossip.score.topic.first_deliveries_weight",
        gossip.score.topic.first_deliveries_weight,
        r#"w₂ (1.0): a first delivery is worth a point while it lasts."#
    ),
    s!(
        "gossip.score.topic.first_deliveries_decay",
        gossip.score.topic.first_deliveries_decay,
        r#"P₂ decay per interval (0.9): rewards recent usefulness, not history."#
    ),
    s!(
        "gossip.score.topic.first_deliveries_cap",
        gossip.score.topic.first_deliveries_cap,
        r#"P₂ cap, applied at increment (10): at most +10, one first delivery a second."#
    ),
    s!(
        "gossip.score.topic.mesh_deliveries_weight",
        gossip.score.topic.mesh_deliveries_weight,
        r#"w₃ (−20.0): a full deficit (threshold 1, squared) puts a mesh peer below `gossip`."#
    ),
    s!(
        "gossip.score.topic.mesh_deliveries_decay",
        gossip.score.topic.mesh_deliveries_decay,
        r#"P₃ decay per interval (0.9): the counter holds ~10 s of deliveries."#
    ),
    s!(
        "gossip.score.topic.mesh_deliveries_cap",
        gossip.score.topic.mesh_deliveries_cap,
        r#"P₃ cap, applied at increment (10): a mesh peer that stops delivering drops below 0 ~30 s later and below `gossip` ~42 s later, even with P₁ and P₂ at their caps."#
    ),
    s!(
        "gossip.score.topic.mesh_deliveries_threshold",
        gossip.score.topic.mesh_deliveries_threshold,
        r#"Deliveries expected of a mesh peer (1.0, about one per ~10 s window)."#
    ),
    s!(
        "gossip.score.topic.mesh_deliveries_activation",
        gossip.score.topic.mesh_deliveries_activation,
        r#"Time in the mesh before a deficit counts (10 s): one counter memory, so a new member has had time to deliver."#
    ),
    s!(
        "gossip.score.topic.mesh_deliveries_min_traffic",
        gossip.score.topic.mesh_deliveries_min_traffic,
        r#"Topic first deliveries (decayed like P₃) needed before P₃ counts (16 ≈ 1.6 msg/s): then a fair 1/8 share of the traffic (D = 8) is twice the threshold."#
    ),
    s!(
        "gossip.score.topic.mesh_failure_weight",
        gossip.score.topic.mesh_failure_weight,
        r#"w₃b (−10.0): a peer pruned in deficit is negative for minutes, so not regrafted soon."#
    ),
    s!(
        "gossip.score.topic.mesh_failure_decay",
        gossip.score.topic.mesh_failure_decay,
        r#"P₃b decay per interval (0.99): sticky, as the spec wants."#
    ),
    s!(
        "gossip.score.topic.invalid_weight",
        gossip.score.topic.invalid_weight,
        r#"w₄ (−70.0): one invalid message (squared: 70) lands below `publish` even with every reward (+15) and above `graylist`; two (280) land below `graylist`."#
    ),
    s!(
        "gossip.score.topic.invalid_decay",
        gossip.score.topic.invalid_decay,
        r#"P₄ decay per interval (0.99): one invalid message is forgotten in ~7.6 min."#
    ),
    s!(
        "discovery.enabled",
        discovery_on,
        r#"Find the subscribers of our topics through the DHT (with gossip on); off, gossip meets only the peers the node connects to otherwise."#
    ),
    s!(
        "discovery.provide_interval",
        discovery.provide_interval,
        r#"How often we announce ourselves again as a provider of each topic we subscribe to (well inside the DHT's provider TTL)."#
    ),
    s!(
        "discovery.search_interval",
        discovery.search_interval,
        r#"How often a topic whose mesh is thin (below D_low, and too few connected subscribers to fill it) looks for more subscribers."#
    ),
    s!(
        "discovery.retry_interval",
        discovery.retry_interval,
        r#"How soon a search or announcement that failed (an empty routing table at start) is tried again."#
    ),
    s!(
        "discovery.dials_per_search",
        discovery.dials_per_search,
        r#"Most new subscribers dialled per search; a search dials only as many as the mesh lacks (D less the mesh and the connected subscribers it could graft)."#
    ),
    s!(
        "control.max_clients",
        config.control.max_clients,
        r#"Control-socket clients served at once; one more is answered `busy` and closed."#
    ),
    s!(
        "control.request_timeout",
        config.control.request_timeout,
        r#"From a control connection, or from the previous answer, until the next request is whole; a client that misses it is answered `timeout` and closed."#
    ),
    s!(
        "control.write_timeout",
        config.control.write_timeout,
        r#"How long an answer (or a streamed message) may wait for the control client to read it; a client that misses it is closed."#
    ),
];
