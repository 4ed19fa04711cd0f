//! Rate limits: token buckets, the per-peer budget with its strike policy, the global byte
//! budgets, and new-connection admission, globally and per source address (DESIGN.md, "Limits
//! and resources").
//!
//! Everything here is pure: no clock, no thread, no I/O. `now` is an argument to every call; the
//! runtime reads the clock once per wake-up and hands it down (STYLE.md §2). Answers are exact
//! and deterministic, so tests build instants as `t0 + d` and never sleep.
//!
//! # Token accounting
//!
//! A [`TokenBucket`] counts *nanotokens* (10⁻⁹ of a token) in an integer. At `r` tokens per
//! second a bucket gains exactly `r` nanotokens per elapsed nanosecond, so refill is exact
//! whatever the spacing of calls: no float, no remainder dropped between calls. A bucket
//! refills lazily when used and never holds more than its burst. A retry instant is the first
//! nanosecond at which the tokens are there: taking at it succeeds, one nanosecond before fails.
//!
//! If `now` is earlier than the bucket's last refill (a caller handing down a stale instant),
//! no time has elapsed: nothing is credited and the reference instant does not move back.
//!
//! # Per-peer policy ([`PeerLimiter`])
//!
//! Each frame a peer sends costs one token from its frame bucket and one token per byte from
//! its byte bucket. The bytes have already been read, so the charge is always taken: a bucket
//! that is short goes into *debt*, holding nothing until refill has paid the debt back (its
//! repaid instant). Then, for each frame:
//!
//! - [`Verdict::Allow`]: both buckets covered the frame and the peer is not being slowed.
//! - [`Verdict::Slow`]: the runtime stops reading the peer's socket until `until`, the later of
//!   the two repaid instants, which holds the peer to exactly its rate.
//!   - A frame over budget at or after the end of the previous slow-down starts a new slow-down
//!     and earns a *strike*; the verdict carries the count of recent strikes, which the runtime
//!     reports to the core (`Input::OverBudget`).
//!   - A frame charged while a slow-down is in progress (decoded from bytes read before it
//!     began) is over budget by construction; it extends the slow-down but earns no strike.
//! - [`Verdict::Unpayable`]: a frame's cost is too large to ever be paid back.
//! - Strikes decay while the peer behaves: one strike is forgiven for each whole
//!   `strike_window` between the end of a slow-down and the next over-budget frame, so a peer
//!   that stays in budget for `n` windows has `n` strikes fewer.
//!
//! The limiter only counts. The policy is the core's: a peer over budget again after
//! `max_strikes` slow-downs that each began within `strike_window` of the end of the one
//! before, or with an unpayable frame, is disconnected with `Goodbye(RateLimited)`.
//!
//! # Connection admission ([`GlobalLimiter`])
//!
//! An inbound connection needs one token from the global connection bucket and one from the
//! bucket of its source. A source is an IPv4 address, or the /64 prefix of an IPv6 address (one
//! host is routinely given a whole /64); an IPv4-mapped IPv6 address counts as its IPv4
//! address. A refusal by the source's bucket consumes no global token.
//!
//! At most `max_tracked_ips` sources are tracked. To track a new one when full, the limiter
//! evicts an idle source (a full bucket, which forgets nothing, since a new entry starts full),
//! and otherwise the least recently seen one; every eviction is counted in [`LimiterStats`].
//! Choosing the entry scans the map, which is bounded and happens at most once per admitted
//! connection, itself bounded by the global rate.
//!
//! # Memory across reconnects ([`LimiterMemory`])
//!
//! A peer's budget outlives its connection: when a connection closes, a budget that is not
//! full, or has strikes, is remembered under the source address and the peer's id for
//! `limiter_retention`, and a new connection from either starts from the stricter of a fresh
//! budget and what is remembered. Reconnecting buys no burst and clears no strike.
//!
//! # Files
//!
//! One concept per file: `bucket.rs` holds the token bucket and its nanotoken arithmetic,
//! `peer.rs` the per-peer policy, `memory.rs` budgets kept across reconnects, `admission.rs`
//! new-connection admission and the tracked sources, and `global.rs` the node-wide byte
//! budgets behind [`GlobalLimiter`], which admits connections through `admission.rs`. This
//! file holds the configuration, its defaults and the counters.

mod admission;
mod bucket;
mod global;
mod memory;
mod peer;

pub use admission::{AdmitError, IpKey};
pub use bucket::{TakeError, TokenBucket};
pub use global::GlobalLimiter;
pub use memory::{LimiterMemory, Source};
pub use peer::{PeerLimiter, Verdict};

use std::time::Duration;

/// Counters of a [`GlobalLimiter`], for export as metrics. Refusal counters only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// `try_inbound` calls refused, and `charge_inbound` calls that put the budget in debt.
    pub inbound_refusals: u64,
    /// `try_outbound` calls refused, and `charge_outbound` calls that put the budget in debt.
    pub outbound_refusals: u64,
    /// Connections refused by the global new-connection budget.
    pub global_refusals: u64,
    /// Connections refused by their source's new-connection budget.
    pub per_ip_refusals: u64,
    /// Sources currently tracked (at most `max_tracked_ips`).
    pub tracked_ips: usize,
    /// Sources evicted to make room for another, idle or not.
    pub ip_evictions: u64,
}

/// Every limit, in one place. Rates are per second; bursts are bucket capacities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Frames a peer may send per second, sustained.
    pub peer_frames_per_sec: u64,
    /// Frames a peer may send at once.
    pub peer_frames_burst: u64,
    /// Bytes a peer may send per second, sustained.
    pub peer_bytes_per_sec: u64,
    /// Bytes a peer may send at once.
    pub peer_bytes_burst: u64,
    /// Bytes read from all sockets per second, sustained.
    pub global_inbound_bytes_per_sec: u64,
    /// Bytes read from all sockets at once.
    pub global_inbound_bytes_burst: u64,
    /// Bytes written to all sockets per second, sustained.
    pub global_outbound_bytes_per_sec: u64,
    /// Bytes written to all sockets at once.
    pub global_outbound_bytes_burst: u64,
    /// New inbound connections accepted per second, node-wide, sustained.
    pub new_conns_per_sec: u64,
    /// New inbound connections accepted at once, node-wide.
    pub new_conns_burst: u64,
    /// New inbound connections per second from one source, sustained.
    pub per_ip_conns_per_sec: u64,
    /// New inbound connections at once from one source.
    pub per_ip_conns_burst: u64,
    /// Sources tracked for the per-source limit; see the module doc for eviction.
    pub max_tracked_ips: usize,
    /// Slow-downs a peer may earn before the next over-budget frame disconnects it (the
    /// core's policy: `CoreConfig::max_strikes` is set from this).
    pub max_strikes: u32,
    /// Good behaviour that forgives one strike, and so the longest gap between slow-downs
    /// that still counts them as consecutive.
    pub strike_window: Duration,
    /// How long a closed connection's budget is remembered for its address and id.
    pub limiter_retention: Duration,
    /// Budgets remembered at most; past it the oldest is forgotten.
    pub max_remembered: usize,
}

impl LimiterConfig {
    /// The defaults, as a constant (usable as a `..LimiterConfig::DEFAULT` template).
    pub const DEFAULT: LimiterConfig = LimiterConfig {
        peer_frames_per_sec: DEFAULT_PEER_FRAMES_PER_SEC,
        peer_frames_burst: DEFAULT_PEER_FRAMES_BURST,
        peer_bytes_per_sec: DEFAULT_PEER_BYTES_PER_SEC,
        peer_bytes_burst: DEFAULT_PEER_BYTES_BURST,
        global_inbound_bytes_per_sec: DEFAULT_GLOBAL_BYTES_PER_SEC,
        global_inbound_bytes_burst: DEFAULT_GLOBAL_BYTES_BURST,
        global_outbound_bytes_per_sec: DEFAULT_GLOBAL_BYTES_PER_SEC,
        global_outbound_bytes_burst: DEFAULT_GLOBAL_BYTES_BURST,
        new_conns_per_sec: DEFAULT_NEW_CONNS_PER_SEC,
        new_conns_burst: DEFAULT_NEW_CONNS_BURST,
        per_ip_conns_per_sec: DEFAULT_PER_IP_CONNS_PER_SEC,
        per_ip_conns_burst: DEFAULT_PER_IP_CONNS_BURST,
        max_tracked_ips: DEFAULT_MAX_TRACKED_IPS,
        max_strikes: DEFAULT_MAX_STRIKES,
        strike_window: DEFAULT_STRIKE_WINDOW,
        limiter_retention: DEFAULT_LIMITER_RETENTION,
        max_remembered: DEFAULT_MAX_TRACKED_IPS,
    };
}

impl Default for LimiterConfig {
    fn default() -> LimiterConfig {
        LimiterConfig::DEFAULT
    }
}

const MIB: u64 = 1 << 20;

/// Default frames a peer may send per second.
pub const DEFAULT_PEER_FRAMES_PER_SEC: u64 = 1_000;
/// Default frame burst per peer.
pub const DEFAULT_PEER_FRAMES_BURST: u64 = 2_000;
/// Default bytes a peer may send per second: 8 MiB.
pub const DEFAULT_PEER_BYTES_PER_SEC: u64 = 8 * MIB;
/// Default byte burst per peer: 16 MiB.
pub const DEFAULT_PEER_BYTES_BURST: u64 = 16 * MIB;
/// Default global inbound and outbound rate, each: 64 MiB/s.
pub const DEFAULT_GLOBAL_BYTES_PER_SEC: u64 = 64 * MIB;
/// Default global inbound and outbound burst, each: one second's worth.
pub const DEFAULT_GLOBAL_BYTES_BURST: u64 = DEFAULT_GLOBAL_BYTES_PER_SEC;
/// Default new inbound connections per second, node-wide.
pub const DEFAULT_NEW_CONNS_PER_SEC: u64 = 200;
/// Default new inbound connection burst, node-wide.
pub const DEFAULT_NEW_CONNS_BURST: u64 = 400;
/// Default new inbound connections per second from one source.
pub const DEFAULT_PER_IP_CONNS_PER_SEC: u64 = 10;
/// Default new inbound connection burst from one source.
pub const DEFAULT_PER_IP_CONNS_BURST: u64 = 20;
/// Default number of sources tracked for the per-source limit.
pub const DEFAULT_MAX_TRACKED_IPS: usize = 4_096;
/// Default slow-downs before a disconnect.
pub const DEFAULT_MAX_STRIKES: u32 = 3;
/// Default strike window.
pub const DEFAULT_STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// Default time a closed connection's budget is remembered: long enough for every default
/// bucket to refill and every strike to decay, so forgetting it gives nothing away.
pub const DEFAULT_LIMITER_RETENTION: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    // Helpers shared with the tests of the submodules.

    pub(super) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    pub(super) const NS: Duration = Duration::from_nanos(1);

    #[test]
    fn defaults_are_the_documented_limits() {
        let c = LimiterConfig::default();
        assert_eq!((c.peer_frames_per_sec, c.peer_frames_burst), (1_000, 2_000));
        assert_eq!((c.peer_bytes_per_sec, c.peer_bytes_burst), (8 << 20, 16 << 20));
        assert_eq!(c.global_inbound_bytes_per_sec, 64 << 20);
        assert_eq!(c.global_outbound_bytes_per_sec, 64 << 20);
        assert_eq!((c.new_conns_per_sec, c.new_conns_burst), (200, 400));
        assert_eq!((c.per_ip_conns_per_sec, c.per_ip_conns_burst), (10, 20));
        assert_eq!(c.max_tracked_ips, 4_096);
        assert_eq!((c.max_strikes, c.strike_window), (3, Duration::from_secs(10)));
    }
}
