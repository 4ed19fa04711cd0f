//! Answers to inbound Kademlia requests (proto-spec/messages.md §3).
//!
//! Pure functions over the routing table and the record store: the caller has already
//! authenticated `from` (the TLS key), so a provider announcement can be checked against it.
//! Every answer is bounded by `MAX_PEERS_PER_RESPONSE`, and a refusal carries the spec's
//! error code.

use std::time::{Duration, Instant};

use super::records::RecordError;
use super::routing::RoutingTable;
use super::store::{Origin, Store};
use crate::identity::NodeId;
use crate::wire::messages::{
    ErrorCode, PeerInfo, Request, Response, MAX_ADDRS_PER_PEER, MAX_PEERS_PER_RESPONSE,
};

/// What serving a request did, for the caller's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Answered with data or success.
    Ok,
    /// Refused a STORE or ADD_PROVIDER, for this reason.
    Rejected(RecordError),
    /// Not a Kademlia request this module serves (PING is the connection layer's).
    NotKad,
}

/// The answer to `request` from `from`. `k` bounds every peer list.
pub fn answer(
    now: Instant,
    from: &NodeId,
    request: Request,
    routing: &RoutingTable,
    store: &mut dyn Store,
    k: usize,
) -> (Response, Served) {
    let k = k.min(MAX_PEERS_PER_RESPONSE);
    let closer = |target: &NodeId| -> Vec<PeerInfo> {
        // One more than k, so dropping the requester still leaves k.
        let mut peers = routing.closest(target, k + 1);
        peers.retain(|p| p.id != *from);
        peers.truncate(k);
        peers
    };
    match request {
        Request::FindNode { target } => (Response::Nodes { closer: closer(&target) }, Served::Ok),
        Request::FindValue { key } => {
            let record = store.get(now, &key).map(|s| s.record.clone());
            (Response::Value { record, closer: closer(&key) }, Served::Ok)
        }
        Request::GetProviders { key } => {
            let mut providers = store.providers(now, &key);
            providers.truncate(MAX_PEERS_PER_RESPONSE);
            (Response::Providers { providers, closer: closer(&key) }, Served::Ok)
        }
        Request::Store { record, ttl_secs, expected_seq } => {
            let ttl = Duration::from_secs(u64::from(ttl_secs));
            match store.put(now, Origin::Peer(*from), record, ttl, expected_seq) {
                Ok(_) => (Response::Stored, Served::Ok),
                Err(e) => (error(e.code(), e.name()), Served::Rejected(e)),
            }
        }
        Request::AddProvider { key, provider, ttl_secs } => {
            if provider.id != *from {
                let e = RecordError::ProviderMismatch;
                return (error(e.code(), e.name()), Served::Rejected(e));
            }
            let mut provider = provider;
            provider.addrs.truncate(MAX_ADDRS_PER_PEER);
            let ttl = Duration::from_secs(u64::from(ttl_secs));
            match store.add_provider(now, key, provider, ttl) {
                Ok(()) => (Response::ProviderAdded, Served::Ok),
                Err(e) => (error(e.code(), e.name()), Served::Rejected(e)),
            }
        }
        Request::Ping => (error(ErrorCode::BadRequest, "ping"), Served::NotKad),
    }
}

fn error(code: ErrorCode, text: &str) -> Response {
    Response::Error { code, text: text.into() }
}
