//! Connections between simulated nodes: the link table, dials, in-order delivery and closes
//! (the model is in the parent module's doc).
//!
//! A link joins a dialer end and an acceptor end. Each end is open while its node holds the
//! connection; the link is dropped when both ends are closed. Latency is fixed per link and
//! direction when the dial starts.

use std::net::SocketAddr;
use std::time::Duration;

use super::net::unresolved_endpoint;
use super::{NodeIdx, Role, Sim, SimEvent, ZERO};
use crate::core::ConnId;
use crate::identity::NodeId;
use crate::transport::CloseCause;
use crate::wire::codec;
use crate::wire::frame::HEADER_BYTES;
use crate::wire::messages::Message;

/// Index of a link, issued in order and never reused.
pub(super) type LinkId = u64;

impl Sim {
    /// Starts a dial from `idx` (`conn` is `None` for an adversary) to `addr`, expecting
    /// `peer` there; a `probe` ends once TLS has authenticated the peer.
    pub(super) fn dial(
        &mut self,
        idx: NodeIdx,
        conn: Option<ConnId>,
        peer: NodeId,
        addr: SocketAddr,
        probe: bool,
    ) {
        self.stats.dials += 1;
        let target = self.node_at(addr);
        let far = target.map_or_else(|| unresolved_endpoint(&addr), |t| t.0 as u64);
        let (seed, near) = (self.config.seed, idx.0 as u64);
        let latency = [
            self.config.latency.one_way(seed, near, far),
            self.config.latency.one_way(seed, far, near),
        ];
        let link = self.next_link;
        self.next_link += 1;
        let closed = End::new(target);
        let ends = [End::new(Some(idx)), closed];
        let state = LinkState::Dialing;
        let (last_at, one_way) = ([0; 2], latency.map(nanos));
        let l = Link { ends, probe, state, latency: one_way, last_at };
        self.links.insert(link, l);
        self.open_end(link, Side::Dialer, conn);
        match target {
            Some(t) if self.is_alive(t) && self.is_partitioned(idx, t) => {
                self.stats.dials_stalled += 1;
            }
            Some(t) if self.is_alive(t) => {
                let at = self.time.saturating_add(latency[0]);
                self.try_schedule(at, SimEvent::Arrive { link, expected: peer });
            }
            _ => {
                self.stats.dials_failed += 1;
                let rtt = latency[0].saturating_add(latency[1]);
                self.schedule_closed(link, Side::Dialer, CloseWhy::TcpFailed, rtt);
            }
        }
    }

    pub(super) fn send(&mut self, link: LinkId, from: Side, msg: Message) {
        self.stats.messages_sent += 1;
        let bytes = codec::payload_len(&msg).map_or(0, |n| n + HEADER_BYTES);
        self.stats.bytes_sent += bytes as u64;
        let Some(l) = self.links.get(&link) else {
            self.stats.messages_undeliverable += 1;
            return;
        };
        let (a, b) = (l.ends[from as usize].node(), l.ends[from.other() as usize].node());
        if let (Some(a), Some(b)) = (a, b) {
            if self.is_partitioned(a, b) {
                self.stats.messages_partitioned += 1;
                return;
            }
        }
        if self.config.loss > 0.0 && self.rng.chance(self.config.loss) {
            self.stats.messages_lost += 1;
            return;
        }
        let sent = self.uplink(a, bytes);
        let at = self.in_order_after(link, from, sent);
        self.try_schedule(at, SimEvent::Deliver { link, to: from.other(), msg });
    }

    /// When the last byte of `bytes` leaves node `node`, sent now: its uplink sends one
    /// message after another at `bandwidth` bytes per second (now, without a bandwidth).
    fn uplink(&mut self, node: Option<NodeIdx>, bytes: usize) -> Duration {
        let now = self.time;
        let (Some(bw), Some(n)) =
            (self.config.bandwidth, node.and_then(|i| self.nodes.get_mut(i.0)))
        else {
            return now;
        };
        let tx = Duration::from_secs_f64(bytes as f64 / bw.max(1) as f64);
        let start = now.max(n.uplink_free);
        n.uplink_free = start.saturating_add(tx);
        n.uplink_free
    }

    /// When something sent now from `from` arrives: after the latency, and never before
    /// anything sent earlier in the same direction.
    pub(super) fn in_order(&mut self, link: LinkId, from: Side) -> Duration {
        self.in_order_after(link, from, self.time)
    }

    /// [`Sim::in_order`] for a message whose last byte leaves at `sent`.
    fn in_order_after(&mut self, link: LinkId, from: Side, sent: Duration) -> Duration {
        let Some(l) = self.links.get_mut(&link) else { return sent };
        let (latency, last) = (l.latency(from), Duration::from_nanos(l.last_at[from as usize]));
        let at = sent.saturating_add(latency).max(last);
        l.last_at[from as usize] = nanos(at);
        at
    }

    pub(super) fn latency(&self, link: LinkId, from: Side) -> Duration {
        self.links.get(&link).map_or(ZERO, |l| l.latency(from))
    }

    pub(super) fn link_of(&self, idx: NodeIdx, conn: ConnId) -> Option<(LinkId, Side)> {
        self.nodes.get(idx.0)?.conns.get(&conn).copied()
    }

    pub(super) fn open_end(&mut self, link: LinkId, side: Side, conn: Option<ConnId>) {
        let Some(l) = self.links.get_mut(&link) else { return };
        let end = &mut l.ends[side as usize];
        end.open = true;
        end.conn = conn;
        let Some(node) = end.node().and_then(|n| self.nodes.get_mut(n.0)) else { return };
        match conn {
            Some(conn) => node.conns.insert(conn, (link, side)),
            None => node.links.insert(link, side).map(|s| (link, s)),
        };
    }

    /// Closes one end; the link goes when both ends are closed. Returns the end's core
    /// connection, if it was open and had one.
    pub(super) fn close_end(&mut self, link: LinkId, side: Side) -> Option<ConnId> {
        let l = self.links.get_mut(&link)?;
        let end = &mut l.ends[side as usize];
        if !end.open {
            return None;
        }
        end.open = false;
        let (node, conn) = (end.node(), end.conn);
        if !l.ends[0].open && !l.ends[1].open {
            self.links.remove(&link);
        }
        self.stats.closes += 1;
        if let Some(n) = node.and_then(|n| self.nodes.get_mut(n.0)) {
            match conn {
                Some(c) => n.conns.remove(&c),
                None => n.links.remove(&link).map(|s| (link, s)),
            };
        }
        conn
    }

    /// Tells the end opposite `closed` that the connection is gone: after the latency for a
    /// core, at once for an adversary.
    pub(super) fn notify_other(&mut self, link: LinkId, closed: Side, why: CloseWhy) {
        let other = closed.other();
        let Some(end) = self.links.get(&link).map(|l| l.ends[other as usize]) else { return };
        let Some(node) = end.node().filter(|_| end.open) else { return };
        if matches!(self.nodes.get(node.0).map(|n| &n.role), Some(Role::Adversary(_))) {
            self.close_end(link, other);
            return;
        }
        let at = self.in_order(link, closed);
        self.schedule(at, SimEvent::Closed { link, to: other, why, remote: true });
    }

    /// A close decided at the dialer's end of the network (no route, refusal), after `delay`.
    pub(super) fn schedule_closed(
        &mut self,
        link: LinkId,
        to: Side,
        why: CloseWhy,
        delay: Duration,
    ) {
        let at = self.time.saturating_add(delay);
        self.schedule(at, SimEvent::Closed { link, to, why, remote: false });
    }

    /// Closes every link of `idx`, telling the other ends `why`; returns the node's core
    /// connections that were open.
    pub(super) fn close_all(&mut self, idx: NodeIdx, why: CloseWhy) -> Vec<ConnId> {
        let mut links: Vec<(LinkId, Side)> = match self.nodes.get(idx.0) {
            Some(node) => node
                .links
                .iter()
                .map(|(&l, &s)| (l, s))
                .chain(node.conns.values().copied())
                .collect(),
            None => return Vec::new(),
        };
        links.sort_unstable_by_key(|&(link, _)| link);
        let mut conns = Vec::new();
        for (link, side) in links {
            conns.extend(self.close_end(link, side));
            self.notify_other(link, side, why);
        }
        conns
    }
}

/// Which end of a link: index into `Link::ends`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Dialer = 0,
    Acceptor = 1,
}

impl Side {
    pub(super) fn other(self) -> Side {
        match self {
            Side::Dialer => Side::Acceptor,
            Side::Acceptor => Side::Dialer,
        }
    }
}

/// Where a link is: a dial in flight moves to `Handshaking` when the target admits it, and to
/// `Established` when both cores have been told. Closing is per end (`End::open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkState {
    Dialing,
    Handshaking,
    Established,
}

/// One connection between two nodes (or a dial to an address nobody has). Every open
/// connection of a run has one, so it is kept small: node indexes in 32 bits, times in
/// nanoseconds, and the id the dialer expects carried by the dial's events, which alone read
/// it (104 bytes; 184 with `usize` indexes, `Duration`s and the id).
#[derive(Debug)]
pub(super) struct Link {
    pub(super) ends: [End; 2],
    /// A dial-back: it closes once TLS has authenticated the acceptor.
    pub(super) probe: bool,
    pub(super) state: LinkState,
    /// One-way latency from `ends[i]` to the other end, nanoseconds ([`nanos`]).
    latency: [u64; 2],
    /// Latest arrival scheduled from `ends[i]`, nanoseconds of virtual time: later sends
    /// never arrive earlier.
    last_at: [u64; 2],
}

impl Link {
    pub(super) fn latency(&self, from: Side) -> Duration {
        Duration::from_nanos(self.latency[from as usize])
    }
}

/// `d` in nanoseconds, at most `u64::MAX` (584 years): exact for every instant up to
/// [`MAX_VIRTUAL_TIME`](super::MAX_VIRTUAL_TIME), and a longer time stays past that horizon,
/// so nothing scheduled changes.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy)]
pub(super) struct End {
    /// The node's index; `None`: the address resolved to no node. 32 bits: see [`Link`].
    slot: Option<u32>,
    /// The core's id for it; `None` for an adversary.
    pub(super) conn: Option<ConnId>,
    pub(super) open: bool,
}

impl End {
    fn new(node: Option<NodeIdx>) -> End {
        // A simulation of more than 4 Gi nodes does not fit in memory; its index saturates.
        let slot = node.map(|n| u32::try_from(n.0).unwrap_or(u32::MAX));
        End { slot, conn: None, open: false }
    }

    pub(super) fn node(&self) -> Option<NodeIdx> {
        self.slot.map(|s| NodeIdx(s as usize))
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum CloseWhy {
    PeerClosed,
    TcpFailed,
}

impl CloseWhy {
    pub(super) fn cause(self) -> CloseCause {
        match self {
            Self::PeerClosed => CloseCause::PeerClosed,
            Self::TcpFailed => CloseCause::TcpFailed,
        }
    }
}
