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
//!     and earns a *strike*.
//!   - A frame charged while a slow-down is in progress (decoded from bytes read before it
//!     began) is over budget by construction; it extends the slow-down but earns no strike.
//! - [`Verdict::Disconnect`]: a new slow-down would be strike `max_strikes + 1`, that is the
//!   peer is over budget again after `max_strikes` slow-downs that each began within
//!   `strike_window` of the end of the one before. Also when a frame's cost is too large to
//!   ever be paid back. Disconnect is sticky: every later frame gets it too.
//! - Strikes decay while the peer behaves: one strike is forgiven for each whole
//!   `strike_window` between the end of a slow-down and the next over-budget frame, so a peer
//!   that stays in budget for `max_strikes` windows is back to a clean record.
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

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens at most, refilled at `rate_per_sec`.
///
/// Pure: every method takes `now`, and the bucket never reads a clock. See the module doc for
/// the exact accounting.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u64,
    burst: u64,
    /// Tokens held, in nanotokens; at most `burst * NANOTOKENS_PER_TOKEN`.
    nanotokens: u128,
    /// Refill reference: tokens are credited for time after this instant. Ahead of the caller's
    /// `now` while the bucket is in debt (see [`TokenBucket::charge`]).
    last_refill_at: Instant,
}

impl TokenBucket {
    /// A full bucket holding `burst` tokens, refilled at `rate_per_sec` from `now`.
    ///
    /// A zero rate is raised to one token per second: a bucket that never refills would refuse
    /// forever, which is not a rate limit.
    pub fn new(rate_per_sec: u64, burst: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate_per_sec: rate_per_sec.max(1),
            burst,
            nanotokens: nanotokens(burst),
            last_refill_at: now,
        }
    }

    /// Takes `n` tokens if the bucket holds them at `now`.
    ///
    /// Otherwise takes nothing and returns [`TakeError::RetryAt`] with the first instant at which
    /// `n` tokens will be there if nothing else takes from the bucket, or [`TakeError::Never`]
    /// when `n` exceeds the burst. Taking zero tokens always succeeds (and refills).
    pub fn try_take(&mut self, now: Instant, n: u64) -> Result<(), TakeError> {
        if n > self.burst {
            return Err(TakeError::Never);
        }
        self.refill(now);
        let need = nanotokens(n);
        if self.nanotokens >= need {
            self.nanotokens -= need;
            return Ok(());
        }
        match self.repaid_at(need - self.nanotokens) {
            Some(at) => Err(TakeError::RetryAt(at)),
            None => Err(TakeError::Never),
        }
    }

    /// Takes `n` tokens even if the bucket is short, for a cost already incurred (bytes already
    /// read).
    ///
    /// - `Ok(None)`: the bucket covered the cost.
    /// - `Ok(Some(at))`: the bucket went into debt. It holds nothing until `at`, when the debt
    ///   is repaid, and refills from there; further charges before `at` push `at` later.
    /// - `Err(TakeError::Never)`: the debt would end beyond what an `Instant` can represent
    ///   (only an absurd `n` can cause this). Nothing was taken.
    pub fn charge(&mut self, now: Instant, n: u64) -> Result<Option<Instant>, TakeError> {
        self.refill(now);
        let need = nanotokens(n);
        if self.nanotokens >= need {
            self.nanotokens -= need;
            return Ok(None);
        }
        let repaid_at = self.repaid_at(need - self.nanotokens).ok_or(TakeError::Never)?;
        self.nanotokens = 0;
        self.last_refill_at = repaid_at;
        Ok(Some(repaid_at))
    }

    /// Whole tokens held at `now` (zero while in debt). Does not change the bucket.
    pub fn available(&self, now: Instant) -> u64 {
        let whole = self.nanotokens_at(now) / NANOTOKENS_PER_TOKEN;
        // Never above `burst`, which is a u64, so the conversion cannot fail.
        u64::try_from(whole).unwrap_or(self.burst)
    }

    /// Whether the bucket holds its whole burst at `now`: it is idle, and indistinguishable
    /// from a new bucket.
    pub fn is_full(&self, now: Instant) -> bool {
        self.nanotokens_at(now) >= nanotokens(self.burst)
    }

    /// The burst capacity, in tokens.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The refill rate, in tokens per second.
    pub fn rate_per_sec(&self) -> u64 {
        self.rate_per_sec
    }

    /// Credits the time elapsed since the last refill; never moves the reference back.
    fn refill(&mut self, now: Instant) {
        self.nanotokens = self.nanotokens_at(now);
        self.last_refill_at = self.last_refill_at.max(now);
    }

    fn nanotokens_at(&self, now: Instant) -> u128 {
        let elapsed_nanos = now.saturating_duration_since(self.last_refill_at).as_nanos();
        let gained = u128::from(self.rate_per_sec).saturating_mul(elapsed_nanos);
        self.nanotokens.saturating_add(gained).min(nanotokens(self.burst))
    }

    /// The first instant at which `deficit` more nanotokens will have accrued, counting from
    /// the refill reference. `None` if that is beyond what an `Instant` can hold.
    fn repaid_at(&self, deficit: u128) -> Option<Instant> {
        // `rate_per_sec` nanotokens accrue per nanosecond; round up to a whole nanosecond.
        let wait_nanos = u64::try_from(deficit.div_ceil(u128::from(self.rate_per_sec))).ok()?;
        self.last_refill_at.checked_add(Duration::from_nanos(wait_nanos))
    }
}

/// Why a bucket could not give tokens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeError {
    /// Not enough tokens yet; they will be there at this instant if nothing else takes first.
    RetryAt(Instant),
    /// Waiting cannot help: the request exceeds the bucket's burst capacity.
    Never,
}

impl TakeError {
    /// The instant to retry at, if waiting helps.
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            Self::RetryAt(at) => Some(*at),
            Self::Never => None,
        }
    }
}

impl fmt::Display for TakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RetryAt(_) => f.write_str("rate limited: not enough tokens yet"),
            Self::Never => f.write_str("request exceeds the token bucket's burst capacity"),
        }
    }
}

impl std::error::Error for TakeError {}

/// What the runtime does with a peer after a frame, per the policy in the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within budget: keep reading.
    Allow,
    /// Over budget: stop reading the peer's socket until `until`, then resume.
    Slow {
        /// When the peer's budget is repaid and reading may resume.
        until: Instant,
    },
    /// Over budget again after `max_strikes` slow-downs: close the connection.
    Disconnect,
}

/// One peer's frame and byte budgets and its strike record.
///
/// Driving contract: call [`PeerLimiter::on_frame`] for every frame decoded from the peer and
/// act on the verdict; while [`PeerLimiter::slowed_until`] is `Some`, do not read the socket
/// and include that instant in the poll timeout.
#[derive(Debug, Clone)]
pub struct PeerLimiter {
    frames: TokenBucket,
    bytes: TokenBucket,
    max_strikes: u32,
    strike_window: Duration,
    /// Strikes as of the end of the last slow-down (decay is applied lazily).
    strikes: u32,
    /// End of the current or last slow-down.
    slowed_until: Option<Instant>,
    disconnected: bool,
}

impl PeerLimiter {
    /// A peer with full budgets and a clean record, per `config`.
    pub fn new(config: &LimiterConfig, now: Instant) -> PeerLimiter {
        PeerLimiter {
            frames: TokenBucket::new(config.peer_frames_per_sec, config.peer_frames_burst, now),
            bytes: TokenBucket::new(config.peer_bytes_per_sec, config.peer_bytes_burst, now),
            max_strikes: config.max_strikes,
            strike_window: config.strike_window,
            strikes: 0,
            slowed_until: None,
            disconnected: false,
        }
    }

    /// Charges one frame of `frame_bytes` bytes received at `now` and returns the verdict.
    pub fn on_frame(&mut self, now: Instant, frame_bytes: usize) -> Verdict {
        if self.disconnected {
            return Verdict::Disconnect;
        }
        let Ok(debt_until) = self.charge(now, frame_bytes) else {
            return self.disconnect();
        };
        match (debt_until, self.slowed_until(now)) {
            (None, None) => Verdict::Allow,
            // A slow-down is in progress: the frame was read before it began. Extend, no strike.
            (debt_until, Some(current)) => {
                let until = debt_until.map_or(current, |at| at.max(current));
                self.slowed_until = Some(until);
                Verdict::Slow { until }
            }
            (Some(until), None) => self.start_slow_down(now, until),
        }
    }

    /// The end of the slow-down in progress at `now`, if any: the runtime must not read the
    /// peer's socket before it.
    pub fn slowed_until(&self, now: Instant) -> Option<Instant> {
        self.slowed_until.filter(|&until| now < until)
    }

    /// Strikes on record at `now`, after decay.
    pub fn strikes(&self, now: Instant) -> u32 {
        let Some(last_end) = self.slowed_until else {
            return self.strikes;
        };
        let clean = now.saturating_duration_since(last_end).as_nanos();
        // A zero window forgives any gap at all.
        let windows = clean / self.strike_window.as_nanos().max(1);
        self.strikes.saturating_sub(u32::try_from(windows).unwrap_or(u32::MAX))
    }

    /// Whether the peer has been told to disconnect.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    /// Charges both buckets; the later repaid instant if either went into debt.
    fn charge(&mut self, now: Instant, frame_bytes: usize) -> Result<Option<Instant>, TakeError> {
        let frame_bytes = u64::try_from(frame_bytes).unwrap_or(u64::MAX);
        let frames = self.frames.charge(now, 1)?;
        let bytes = self.bytes.charge(now, frame_bytes)?;
        // `None < Some(_)`, so this is the later instant, or `None` when neither is in debt.
        Ok(frames.max(bytes))
    }

    fn start_slow_down(&mut self, now: Instant, until: Instant) -> Verdict {
        let strikes = self.strikes(now).saturating_add(1);
        if strikes > self.max_strikes {
            return self.disconnect();
        }
        self.strikes = strikes;
        self.slowed_until = Some(until);
        Verdict::Slow { until }
    }

    fn disconnect(&mut self) -> Verdict {
        self.disconnected = true;
        Verdict::Disconnect
    }
}

/// The node-wide budgets: inbound and outbound bytes, and new inbound connections, globally
/// and per source address.
#[derive(Debug, Clone)]
pub struct GlobalLimiter {
    inbound_bytes: TokenBucket,
    outbound_bytes: TokenBucket,
    new_conns: TokenBucket,
    per_ip: HashMap<IpKey, IpEntry>,
    per_ip_conns_per_sec: u64,
    per_ip_conns_burst: u64,
    max_tracked_ips: usize,
    stats: LimiterStats,
}

impl GlobalLimiter {
    /// Full budgets per `config`, tracking no source yet. A `max_tracked_ips` of zero is
    /// treated as one.
    pub fn new(config: &LimiterConfig, now: Instant) -> GlobalLimiter {
        let bucket = |rate, burst| TokenBucket::new(rate, burst, now);
        GlobalLimiter {
            inbound_bytes: bucket(
                config.global_inbound_bytes_per_sec,
                config.global_inbound_bytes_burst,
            ),
            outbound_bytes: bucket(
                config.global_outbound_bytes_per_sec,
                config.global_outbound_bytes_burst,
            ),
            new_conns: bucket(config.new_conns_per_sec, config.new_conns_burst),
            per_ip: HashMap::new(),
            per_ip_conns_per_sec: config.per_ip_conns_per_sec,
            per_ip_conns_burst: config.per_ip_conns_burst,
            max_tracked_ips: config.max_tracked_ips.max(1),
            stats: LimiterStats::default(),
        }
    }

    /// Takes `n` bytes of the global inbound budget, or says when to retry (see
    /// [`TokenBucket::try_take`]). Call before reading `n` bytes from any socket.
    pub fn try_inbound(&mut self, now: Instant, n: u64) -> Result<(), TakeError> {
        let result = self.inbound_bytes.try_take(now, n);
        if result.is_err() {
            self.stats.inbound_refusals += 1;
        }
        result
    }

    /// Takes `n` bytes of the global outbound budget, or says when to retry (see
    /// [`TokenBucket::try_take`]). Call before writing `n` bytes to any socket.
    pub fn try_outbound(&mut self, now: Instant, n: u64) -> Result<(), TakeError> {
        let result = self.outbound_bytes.try_take(now, n);
        if result.is_err() {
            self.stats.outbound_refusals += 1;
        }
        result
    }

    /// Charges `n` bytes already read to the global inbound budget. `Some(at)`: the budget is
    /// in debt and no socket may be read before `at` (see [`TokenBucket::charge`]).
    pub fn charge_inbound(&mut self, now: Instant, n: u64) -> Option<Instant> {
        let paused = self.inbound_bytes.charge(now, n).unwrap_or(None);
        if paused.is_some() {
            self.stats.inbound_refusals += 1;
        }
        paused
    }

    /// Charges `n` bytes already written to the global outbound budget. `Some(at)`: no socket
    /// may be written before `at`.
    pub fn charge_outbound(&mut self, now: Instant, n: u64) -> Option<Instant> {
        let paused = self.outbound_bytes.charge(now, n).unwrap_or(None);
        if paused.is_some() {
            self.stats.outbound_refusals += 1;
        }
        paused
    }

    /// Admits a new inbound connection from `ip`, or says which budget refused it. Call once
    /// per accepted socket, before the TLS handshake; close the socket on `Err`.
    pub fn admit_connection(&mut self, now: Instant, ip: IpAddr) -> Result<(), AdmitError> {
        let key = IpKey::of(ip);
        let entry = self.track(now, key);
        entry.last_seen_at = entry.last_seen_at.max(now);
        if entry.bucket.available(now) == 0 {
            self.stats.per_ip_refusals += 1;
            return Err(AdmitError::PerIpRate);
        }
        if self.new_conns.try_take(now, 1).is_err() {
            self.stats.global_refusals += 1;
            return Err(AdmitError::GlobalRate);
        }
        if let Some(entry) = self.per_ip.get_mut(&key) {
            // The entry held a token (checked above) and nothing took it since: this succeeds.
            let _ = entry.bucket.try_take(now, 1);
        }
        Ok(())
    }

    /// Counters for the metrics layer.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats { tracked_ips: self.per_ip.len(), ..self.stats }
    }

    /// The entry for `key`, created full (after making room) if it is not tracked.
    fn track(&mut self, now: Instant, key: IpKey) -> &mut IpEntry {
        if !self.per_ip.contains_key(&key) && self.per_ip.len() >= self.max_tracked_ips {
            self.evict_one(now);
        }
        let (rate, burst) = (self.per_ip_conns_per_sec, self.per_ip_conns_burst);
        self.per_ip.entry(key).or_insert_with(|| IpEntry {
            bucket: TokenBucket::new(rate, burst, now),
            last_seen_at: now,
        })
    }

    /// Evicts an idle entry if there is one, else the least recently seen; ties go to the
    /// lowest key, so the choice is deterministic.
    fn evict_one(&mut self, now: Instant) {
        let victim = self
            .per_ip
            .iter()
            .min_by_key(|(key, entry)| (!entry.bucket.is_full(now), entry.last_seen_at, **key))
            .map(|(key, _)| *key);
        if let Some(key) = victim {
            self.per_ip.remove(&key);
            self.stats.ip_evictions += 1;
        }
    }
}

/// Why an inbound connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// The node-wide new-connection budget is spent.
    GlobalRate,
    /// The source address (IPv4 address or IPv6 /64) has spent its new-connection budget.
    PerIpRate,
}

impl fmt::Display for AdmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GlobalRate => f.write_str("too many new inbound connections"),
            Self::PerIpRate => f.write_str("too many new inbound connections from this address"),
        }
    }
}

impl std::error::Error for AdmitError {}

/// Counters of a [`GlobalLimiter`], for export as metrics. Refusal counters only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// `try_inbound` calls refused.
    pub inbound_refusals: u64,
    /// `try_outbound` calls refused.
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
    /// Slow-downs a peer may earn before the next over-budget frame disconnects it.
    pub max_strikes: u32,
    /// Good behaviour that forgives one strike, and so the longest gap between slow-downs
    /// that still counts them as consecutive.
    pub strike_window: Duration,
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
    };
}

impl Default for LimiterConfig {
    fn default() -> LimiterConfig {
        LimiterConfig::DEFAULT
    }
}

/// One tracked source.
#[derive(Debug, Clone)]
struct IpEntry {
    bucket: TokenBucket,
    last_seen_at: Instant,
}

/// A connection source: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum IpKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl IpKey {
    fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    IpKey::V6Prefix(prefix)
                }
            },
        }
    }
}

fn nanotokens(tokens: u64) -> u128 {
    u128::from(tokens) * NANOTOKENS_PER_TOKEN
}

/// Nanotokens in a token: one token per second accrues one nanotoken per nanosecond.
const NANOTOKENS_PER_TOKEN: u128 = 1_000_000_000;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const NS: Duration = Duration::from_nanos(1);

    /// Small numbers so that tests read as arithmetic.
    const PEER_TEMPLATE: LimiterConfig = LimiterConfig {
        peer_frames_per_sec: 10,
        peer_frames_burst: 10,
        peer_bytes_per_sec: 1_000,
        peer_bytes_burst: 1_000,
        max_strikes: 3,
        strike_window: Duration::from_secs(10),
        ..LimiterConfig::DEFAULT
    };

    const ADMIT_TEMPLATE: LimiterConfig = LimiterConfig {
        new_conns_per_sec: 100,
        new_conns_burst: 100,
        per_ip_conns_per_sec: 1,
        per_ip_conns_burst: 2,
        max_tracked_ips: 16,
        ..LimiterConfig::DEFAULT
    };

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    // Token buckets.

    #[test]
    fn starts_full_and_caps_at_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, 20, t0);
        assert_eq!(b.available(t0), 20);
        assert!(b.is_full(t0));
        assert_eq!(b.available(t0 + Duration::from_secs(3600)), 20);
        b.try_take(t0, 20).unwrap();
        assert_eq!(b.available(t0 + Duration::from_secs(3600)), 20);
        assert!(b.try_take(t0 + Duration::from_secs(3600), 21).is_err());
    }

    #[test]
    fn refill_is_exact_to_the_nanosecond() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 10, t0);
        b.try_take(t0, 10).unwrap();
        // One token takes 1/3 s: 333_333_333.33.. ns, so it is there at the 333_333_334th.
        assert_eq!(b.available(t0 + Duration::from_nanos(333_333_333)), 0);
        assert_eq!(b.available(t0 + Duration::from_nanos(333_333_334)), 1);
        assert_eq!(b.available(t0 + Duration::from_secs(1)), 3);
        assert_eq!(b.available(t0 + Duration::from_secs(3)), 9);
    }

    #[test]
    fn many_small_refills_equal_one_large_refill() {
        let t0 = Instant::now();
        let mut stepped = TokenBucket::new(7, 100, t0);
        let mut once = stepped.clone();
        stepped.try_take(t0, 100).unwrap();
        once.try_take(t0, 100).unwrap();
        let mut t = t0;
        for _ in 0..1_000 {
            t += Duration::from_nanos(999_983); // a prime: no step lands on a token boundary
            stepped.try_take(t, 0).unwrap();
        }
        once.try_take(t, 0).unwrap();
        assert_eq!(stepped.nanotokens, once.nanotokens);
        assert_eq!(stepped.try_take(t, 7), once.try_take(t, 7));
    }

    #[test]
    fn retry_instant_is_the_first_at_which_the_take_succeeds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 10, t0);
        b.try_take(t0, 9).unwrap();
        let now = t0 + ms(100); // 1 + 0.3 tokens held; 5 wanted: 3.7 tokens short.
        let retry_at = b.try_take(now, 5).unwrap_err().retry_at().unwrap();
        assert_eq!(retry_at, now + Duration::from_nanos(1_233_333_334));
        let mut early = b.clone();
        assert_eq!(early.try_take(retry_at - NS, 5), Err(TakeError::RetryAt(retry_at)));
        assert_eq!(b.try_take(retry_at, 5), Ok(()));
        assert_eq!(b.available(retry_at), 0);
    }

    #[test]
    fn refused_take_takes_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 10, t0);
        assert!(b.try_take(t0, 11).is_err());
        assert!(b.try_take(t0, 9).is_ok());
        assert!(b.try_take(t0, 2).is_err());
        assert_eq!(b.available(t0), 1);
    }

    #[test]
    fn request_above_burst_is_never_even_for_huge_n() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(u64::MAX, 10, t0);
        assert_eq!(b.try_take(t0, 11), Err(TakeError::Never));
        assert_eq!(b.try_take(t0, u64::MAX), Err(TakeError::Never));
        assert_eq!(b.available(t0), 10);
        let mut huge = TokenBucket::new(u64::MAX, u64::MAX, t0);
        assert_eq!(huge.try_take(t0, u64::MAX), Ok(()));
        assert_eq!(huge.available(t0 + Duration::from_secs(1)), u64::MAX);
    }

    #[test]
    fn time_going_backwards_credits_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 10, t0);
        let t10 = t0 + Duration::from_secs(10);
        b.try_take(t10, 10).unwrap();
        // An earlier instant: no time has passed since t10, and t10 stays the reference.
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.try_take(t0 + ms(5_000), 1), Err(TakeError::RetryAt(t10 + ms(100))));
        assert_eq!(b.available(t10 + ms(500)), 5);
    }

    #[test]
    fn zero_rate_is_raised_to_one_per_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 1, t0);
        b.try_take(t0, 1).unwrap();
        assert_eq!(b.try_take(t0, 1), Err(TakeError::RetryAt(t0 + Duration::from_secs(1))));
    }

    #[test]
    fn charge_runs_into_debt_and_repays_exactly() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 10, t0);
        assert_eq!(b.charge(t0, 4), Ok(None));
        // 6 held, 16 charged: 10 short, one second of refill.
        let repaid_at = t0 + Duration::from_secs(1);
        assert_eq!(b.charge(t0, 16), Ok(Some(repaid_at)));
        assert_eq!(b.available(repaid_at - NS), 0);
        // More charges during the debt push it later.
        assert_eq!(b.charge(t0 + ms(500), 5), Ok(Some(repaid_at + ms(500))));
        assert_eq!(b.available(repaid_at + ms(600)), 1);
        assert_eq!(b.charge(repaid_at + ms(600), 1), Ok(None));
    }

    #[test]
    fn unrepresentable_debt_is_never_and_takes_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 10, t0);
        assert_eq!(b.charge(t0, u64::MAX), Err(TakeError::Never));
        assert_eq!(b.available(t0), 10);
    }

    // Per-peer policy.

    #[test]
    fn allows_frames_within_budget() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        for i in 0..10 {
            assert_eq!(peer.on_frame(t0 + ms(i), 100), Verdict::Allow);
        }
        assert_eq!(peer.strikes(t0 + ms(10)), 0);
        assert_eq!(peer.slowed_until(t0 + ms(10)), None);
    }

    #[test]
    fn over_budget_frame_slows_until_the_debt_is_repaid() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        assert_eq!(peer.on_frame(t0, 900), Verdict::Allow);
        // 100 bytes left, 300 charged: 200 short at 1000 B/s.
        let until = t0 + ms(200);
        assert_eq!(peer.on_frame(t0, 300), Verdict::Slow { until });
        assert_eq!(peer.slowed_until(t0 + ms(199)), Some(until));
        assert_eq!(peer.slowed_until(until), None);
        assert_eq!(peer.strikes(t0), 1);
    }

    #[test]
    fn frame_budget_alone_slows() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        for _ in 0..10 {
            assert_eq!(peer.on_frame(t0, 0), Verdict::Allow);
        }
        assert_eq!(peer.on_frame(t0, 0), Verdict::Slow { until: t0 + ms(100) });
    }

    #[test]
    fn frames_during_a_slow_down_extend_it_without_a_strike() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        assert_eq!(peer.on_frame(t0, 1_100), Verdict::Slow { until: t0 + ms(100) });
        assert_eq!(peer.on_frame(t0, 100), Verdict::Slow { until: t0 + ms(200) });
        assert_eq!(peer.on_frame(t0 + ms(50), 0), Verdict::Slow { until: t0 + ms(200) });
        assert_eq!(peer.strikes(t0 + ms(50)), 1);
    }

    #[test]
    fn slows_then_disconnects_persistent_abuser() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        let mut now = t0;
        for strike in 1..=3 {
            // Resumes exactly when allowed, and at once sends twice its byte budget.
            let Verdict::Slow { until } = peer.on_frame(now, 2_000) else {
                panic!("strike {strike} should slow");
            };
            assert_eq!(peer.strikes(now), strike);
            now = until;
        }
        assert_eq!(peer.on_frame(now, 2_000), Verdict::Disconnect);
        assert!(peer.is_disconnected());
        // Sticky, even once the budget has long refilled.
        assert_eq!(peer.on_frame(now + Duration::from_secs(3600), 1), Verdict::Disconnect);
    }

    #[test]
    fn strikes_decay_one_per_clean_window() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        let mut now = t0;
        for _ in 0..3 {
            let Verdict::Slow { until } = peer.on_frame(now, 2_000) else { panic!() };
            now = until;
        }
        assert_eq!(peer.strikes(now + Duration::from_secs(10) - NS), 3);
        assert_eq!(peer.strikes(now + Duration::from_secs(10)), 2);
        assert_eq!(peer.strikes(now + Duration::from_secs(25)), 1);
        // One clean window was enough to survive another slow-down.
        let later = now + Duration::from_secs(10);
        assert!(matches!(peer.on_frame(later, 2_000), Verdict::Slow { .. }));
        assert_eq!(peer.strikes(later), 3);
    }

    #[test]
    fn strikes_reset_after_good_behaviour() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        let mut now = t0;
        for _ in 0..3 {
            let Verdict::Slow { until } = peer.on_frame(now, 2_000) else { panic!() };
            now = until;
        }
        // Behaves for three windows: in-budget traffic, no strikes.
        for _ in 0..30 {
            now += Duration::from_secs(1);
            assert_eq!(peer.on_frame(now, 500), Verdict::Allow);
        }
        assert_eq!(peer.strikes(now), 0);
        for _ in 0..3 {
            let Verdict::Slow { until } = peer.on_frame(now, 2_000) else { panic!() };
            now = until;
        }
        assert_eq!(peer.on_frame(now, 2_000), Verdict::Disconnect);
    }

    #[test]
    fn zero_max_strikes_disconnects_on_first_excess() {
        let t0 = Instant::now();
        let config = LimiterConfig { max_strikes: 0, ..PEER_TEMPLATE };
        let mut peer = PeerLimiter::new(&config, t0);
        assert_eq!(peer.on_frame(t0, 1_000), Verdict::Allow);
        assert_eq!(peer.on_frame(t0, 1), Verdict::Disconnect);
    }

    #[test]
    fn unpayable_frame_disconnects() {
        let t0 = Instant::now();
        let config = LimiterConfig { peer_bytes_per_sec: 1, ..PEER_TEMPLATE };
        let mut peer = PeerLimiter::new(&config, t0);
        assert_eq!(peer.on_frame(t0, usize::MAX), Verdict::Disconnect);
    }

    // Global byte budgets.

    #[test]
    fn inbound_and_outbound_budgets_are_separate() {
        let t0 = Instant::now();
        let config = LimiterConfig {
            global_inbound_bytes_per_sec: 100,
            global_inbound_bytes_burst: 100,
            global_outbound_bytes_per_sec: 50,
            global_outbound_bytes_burst: 50,
            ..LimiterConfig::DEFAULT
        };
        let mut global = GlobalLimiter::new(&config, t0);
        assert_eq!(global.try_inbound(t0, 100), Ok(()));
        assert_eq!(global.try_outbound(t0, 50), Ok(()));
        assert_eq!(global.try_inbound(t0, 10), Err(TakeError::RetryAt(t0 + ms(100))));
        assert_eq!(global.try_outbound(t0, 10), Err(TakeError::RetryAt(t0 + ms(200))));
        assert_eq!(global.try_outbound(t0, 51), Err(TakeError::Never));
        let stats = global.stats();
        assert_eq!((stats.inbound_refusals, stats.outbound_refusals), (1, 2));
    }

    // Connection admission.

    #[test]
    fn admission_is_limited_globally() {
        let t0 = Instant::now();
        let config = LimiterConfig { new_conns_per_sec: 2, new_conns_burst: 3, ..ADMIT_TEMPLATE };
        let mut global = GlobalLimiter::new(&config, t0);
        for i in 0..3 {
            assert_eq!(global.admit_connection(t0, v4(i)), Ok(()));
        }
        assert_eq!(global.admit_connection(t0, v4(3)), Err(AdmitError::GlobalRate));
        assert_eq!(global.admit_connection(t0 + ms(499), v4(3)), Err(AdmitError::GlobalRate));
        assert_eq!(global.admit_connection(t0 + ms(500), v4(3)), Ok(()));
        assert_eq!(global.stats().global_refusals, 2);
    }

    #[test]
    fn per_ip_limit_is_independent_across_ips() {
        let t0 = Instant::now();
        let mut global = GlobalLimiter::new(&ADMIT_TEMPLATE, t0);
        assert_eq!(global.admit_connection(t0, v4(1)), Ok(()));
        assert_eq!(global.admit_connection(t0, v4(1)), Ok(()));
        assert_eq!(global.admit_connection(t0, v4(1)), Err(AdmitError::PerIpRate));
        assert_eq!(global.admit_connection(t0, v4(2)), Ok(()));
        assert_eq!(global.admit_connection(t0 + Duration::from_secs(1), v4(1)), Ok(()));
        assert_eq!(global.stats().per_ip_refusals, 1);
    }

    #[test]
    fn per_ip_refusal_spends_no_global_token() {
        let t0 = Instant::now();
        let config = LimiterConfig { new_conns_per_sec: 1, new_conns_burst: 3, ..ADMIT_TEMPLATE };
        let mut global = GlobalLimiter::new(&config, t0);
        for _ in 0..10 {
            let _ = global.admit_connection(t0, v4(1));
        }
        assert_eq!(global.admit_connection(t0, v4(2)), Ok(()));
        assert_eq!(global.stats().per_ip_refusals, 8);
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_bucket() {
        let t0 = Instant::now();
        let mut global = GlobalLimiter::new(&ADMIT_TEMPLATE, t0);
        let host = |low: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, low));
        assert_eq!(global.admit_connection(t0, host(1)), Ok(()));
        assert_eq!(global.admit_connection(t0, host(2)), Ok(()));
        assert_eq!(global.admit_connection(t0, host(3)), Err(AdmitError::PerIpRate));
        let next_prefix = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert_eq!(global.admit_connection(t0, next_prefix), Ok(()));
        assert_eq!(global.stats().tracked_ips, 2);
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_the_ipv4_address() {
        let t0 = Instant::now();
        let mut global = GlobalLimiter::new(&ADMIT_TEMPLATE, t0);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(global.admit_connection(t0, v4(1)), Ok(()));
        assert_eq!(global.admit_connection(t0, mapped), Ok(()));
        assert_eq!(global.admit_connection(t0, v4(1)), Err(AdmitError::PerIpRate));
        assert_eq!(global.stats().tracked_ips, 1);
    }

    #[test]
    fn ip_map_is_bounded_and_evicts_idle_sources_first() {
        let t0 = Instant::now();
        let config = LimiterConfig { max_tracked_ips: 3, ..ADMIT_TEMPLATE };
        let mut global = GlobalLimiter::new(&config, t0);
        global.admit_connection(t0, v4(1)).unwrap(); // idle again after one second
        global.admit_connection(t0 + ms(500), v4(2)).unwrap();
        global.admit_connection(t0 + ms(500), v4(2)).unwrap(); // spent: busy
        global.admit_connection(t0 + ms(900), v4(3)).unwrap(); // busy until t0 + 1.9 s
        global.admit_connection(t0 + ms(1_500), v4(4)).unwrap();
        // v4(1), the only idle source, was evicted; v4(2) (least recently seen) kept its state.
        assert_eq!(global.stats().ip_evictions, 1);
        assert_eq!(global.stats().tracked_ips, 3);
        assert_eq!(global.admit_connection(t0 + ms(1_500), v4(2)), Ok(()));
        assert_eq!(global.admit_connection(t0 + ms(1_500), v4(2)), Err(AdmitError::PerIpRate));
    }

    #[test]
    fn ip_map_evicts_least_recently_seen_when_none_is_idle() {
        let t0 = Instant::now();
        let config = LimiterConfig { max_tracked_ips: 2, ..ADMIT_TEMPLATE };
        let mut global = GlobalLimiter::new(&config, t0);
        global.admit_connection(t0, v4(1)).unwrap();
        global.admit_connection(t0 + ms(1), v4(2)).unwrap();
        global.admit_connection(t0 + ms(2), v4(1)).unwrap(); // v4(1) now most recent
        global.admit_connection(t0 + ms(3), v4(3)).unwrap();
        assert_eq!(global.stats().ip_evictions, 1);
        // v4(1) is still tracked with its bucket spent; v4(2) was forgotten and starts full.
        assert_eq!(global.admit_connection(t0 + ms(4), v4(1)), Err(AdmitError::PerIpRate));
        assert_eq!(global.stats().ip_evictions, 1);
        assert_eq!(global.admit_connection(t0 + ms(5), v4(2)), Ok(()));
        assert_eq!(global.stats().ip_evictions, 2);
        assert_eq!(global.stats().tracked_ips, 2);
    }

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
