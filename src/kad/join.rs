//! The join, and joining again: the contacts a node was given to enter the network (its
//! bootstrap list, the peers its last run saved) are dialled at once, and again, backing off,
//! for as long as the routing table stays empty.
//!
//! Without it a node that every contact turned away (their inbound slots full, the contact not
//! up yet, the network down at boot) stays alone for good, and so does a node whose table
//! emptied later (every peer gone). The first peer that enters the empty table starts the
//! self-lookup (`join_on_first_contact`), as it does for the first join.
//!
//! Each dial is an [`Action::Connect`] that is not `ahead`: the router skips a contact already
//! connected or being dialled, prunes nothing to make room, and keeps the connection like any
//! other (a contact is a peer we mean to talk to, not a guess).
//!
//! Timing: the first retry comes [`JOIN_RETRY_FIRST`] after the join, each further one twice as
//! late, up to [`JOIN_RETRY_MAX`]; a table found non-empty stops the retries and resets the
//! delay. The maintenance tick notices a table that emptied and starts again.
//!
//! Bounds: at most [`MAX_JOIN_CONTACTS`] (128) contacts (the first ones given; a later `Join`
//! replaces them), one timer, and at most that many dials per retry.

use std::time::{Duration, Instant};

use super::dht::{Dht, DhtReply, Timer};
use super::routing::{InsertOutcome, Source};
use crate::protocol::{Action, CommandId};
use crate::wire::messages::PeerInfo;

/// Contacts kept for joining again; a longer list is cut to its first ones. Room for a
/// bootstrap list and the 64 saved peers a restart dials (`crate::restart`).
pub const MAX_JOIN_CONTACTS: usize = 128;
/// Delay from the join to the first retry while the table is empty.
pub const JOIN_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest delay between two retries.
pub const JOIN_RETRY_MAX: Duration = Duration::from_secs(60);

/// The contacts to join through, and the delay before the next retry.
#[derive(Debug, Clone)]
pub(super) struct JoinContacts {
    contacts: Vec<PeerInfo>,
    retry: Duration,
}

impl Default for JoinContacts {
    fn default() -> JoinContacts {
        JoinContacts { contacts: Vec::new(), retry: JOIN_RETRY_FIRST }
    }
}

impl Dht {
    /// `DhtCommand::Join`: keeps up to [`MAX_JOIN_CONTACTS`] usable contacts (an address, not
    /// ourselves, each id once), dials them, and answers with how many it kept.
    pub(super) fn join(&mut self, now: Instant, command: CommandId, contacts: Vec<PeerInfo>) {
        let mut kept: Vec<PeerInfo> = Vec::new();
        for peer in contacts {
            if kept.len() == MAX_JOIN_CONTACTS {
                break;
            }
            if peer.id != self.local
                && !peer.addrs.is_empty()
                && kept.iter().all(|k| k.id != peer.id)
            {
                kept.push(peer);
            }
        }
        let n = kept.len();
        self.join = JoinContacts { contacts: kept, retry: JOIN_RETRY_FIRST };
        self.dial_contacts();
        if n > 0 {
            self.timers.set(Timer::Rejoin, now + JOIN_RETRY_FIRST);
        } else {
            self.timers.clear(Timer::Rejoin);
        }
        self.reply(command, DhtReply::Join(n));
    }

    /// The retry timer: dials the contacts again while the table is empty, else stops.
    pub(super) fn on_rejoin_timer(&mut self, now: Instant) {
        if !self.routing.is_empty() {
            self.join.retry = JOIN_RETRY_FIRST;
            return;
        }
        // Whoever enters the empty table first starts a self-lookup again.
        self.joined = false;
        self.stats.rejoins += 1;
        self.dial_contacts();
        self.join.retry = (self.join.retry * 2).min(JOIN_RETRY_MAX);
        self.timers.set(Timer::Rejoin, now + self.join.retry);
    }

    /// Puts `peers` in the routing table as verified entries last heard from at `now`, counts
    /// its buckets (empty ones below the nearest entry too) as refreshed at `now` and the node
    /// as joined, and arms the maintenance tick: the state of a node that has been part of a
    /// settled network for a while. Returns how many entries the table took; its bucket and
    /// subnet limits apply as to any contact, and a full bucket pings nobody.
    ///
    /// Only the simulator calls it, to start a network of 100,000 nodes without replaying
    /// every join (`crate::sim::dht`, `Start::Settled`). Neither the wire nor the node's
    /// commands reach it: outside a simulation an address is a claim until we dial it.
    pub(crate) fn start_settled(
        &mut self,
        now: Instant,
        peers: impl IntoIterator<Item = PeerInfo>,
    ) -> usize {
        self.joined = true;
        self.arm_tick(now);
        let mut added = 0;
        for peer in peers {
            // A full bucket would leave a PING pending that nobody sends.
            let k = self.routing.config().k;
            let room = self
                .routing
                .bucket_index(&peer.id)
                .is_some_and(|b| self.routing.bucket_entries(b).len() < k);
            if room && self.routing.observe(now, peer, Source::Verified) == InsertOutcome::Added {
                added += 1;
            }
        }
        // A bucket whose range holds nobody stays empty: without this, every node of a large
        // network would refresh one at its first tick, all at once.
        for b in 0..self.routing.bucket_count() {
            self.routing.mark_refreshed(b, now);
        }
        added
    }

    /// On the maintenance tick: a table that emptied since the join starts the retries again.
    pub(super) fn watch_join(&mut self, now: Instant) {
        let idle = self.timers.get(Timer::Rejoin).is_none();
        if idle && self.routing.is_empty() && !self.join.contacts.is_empty() {
            self.timers.set(Timer::Rejoin, now);
        }
    }

    fn dial_contacts(&mut self) {
        self.stats.join_dials += self.join.contacts.len() as u64;
        let dials =
            self.join.contacts.iter().map(|to| Action::Connect { to: to.clone(), ahead: false });
        self.outputs.extend(dials);
    }
}
