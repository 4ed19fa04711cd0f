//! What a node reads back from its log at start (issue: persistent records): records and
//! provider entries go back into the DHT's store, with the life they have left and the
//! store's caps and quotas applied again; saved routing-table peers become peers to dial,
//! most recently saved first, because an address is a claim again until we reach it.

use std::time::{Duration, Instant};

use crate::core::NodeCore;
use crate::identity::NodeId;
use crate::kad::persist;
use crate::protocol::jobs::unix_ms;
use crate::store::{Kind, Log, Recovery, StoreError};
use crate::wire::messages::Key;
use crate::PeerAddr;

/// What a restart restored, for the log line and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Records back in the store.
    pub records: u64,
    /// Provider entries back in the store.
    pub providers: u64,
    /// Entries not restored: undecodable, refused by the store, or expired since.
    pub skipped: u64,
    /// Saved peers to dial.
    pub peers: Vec<PeerAddr>,
    /// What opening the log found and repaired (torn tail cut, corrupt entries skipped).
    pub recovery: Option<Recovery>,
}

/// Restores `log` into `core` at `now`, and names at most `max_peers` saved peers to dial.
pub fn restore(
    core: &mut NodeCore,
    log: &Log,
    now: Instant,
    max_peers: usize,
) -> Result<Restored, StoreError> {
    let now_ms = unix_ms();
    let mut out = Restored::default();
    let ttl_left = |expires_ms: u64| match expires_ms {
        0 => Some(Duration::MAX),
        e if e > now_ms => Some(Duration::from_millis(e - now_ms)),
        _ => None,
    };
    let dht = core.dht_mut();
    for e in log.scan(Kind::Record)? {
        let restored = ttl_left(e.expires_ms)
            .map(|ttl| dht.restore_record(now, &e.payload, ttl).is_ok())
            .unwrap_or(false);
        match restored {
            true => out.records += 1,
            false => out.skipped += 1,
        }
    }
    for e in log.scan(Kind::Provider)? {
        let restored = ttl_left(e.expires_ms)
            .map(|ttl| {
                dht.restore_provider(now, Key::from_bytes(e.id.key), &e.payload, ttl).is_ok()
            })
            .unwrap_or(false);
        match restored {
            true => out.providers += 1,
            false => out.skipped += 1,
        }
    }
    let mut peers: Vec<(u64, PeerAddr)> = log
        .scan(Kind::Peer)?
        .into_iter()
        .filter(|e| ttl_left(e.expires_ms).is_some())
        .filter_map(|e| {
            let info = persist::decode_peer(&e.payload)?;
            let addr = *info.addrs.first()?;
            (info.id == NodeId::from_bytes(e.id.key))
                .then_some((e.expires_ms, PeerAddr { id: info.id, addr }))
        })
        .collect();
    // Latest save first.
    peers.sort_by_key(|(expires, _)| std::cmp::Reverse(*expires));
    out.peers = peers.into_iter().take(max_peers).map(|(_, p)| p).collect();
    Ok(out)
}
