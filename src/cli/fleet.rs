//! Many nodes in one process (`petrel devnet`, `petrel bench dht`): each connection between
//! two of them holds two descriptors of the process, one per end, so N nodes with the default
//! 256 connections each would need far more than a usual descriptor limit. [`limits`] raises
//! the soft limit to the hard one, then sizes each node's connection limits to its share, or
//! fails at once saying how many descriptors the nodes need.

use std::time::Duration;

use crate::core::PeerLimits;
use crate::runtime::descriptors;

/// Fewest connections a node may be given: the k = 20 closest peers of its own id, twice.
pub const MIN_CONNECTIONS: u64 = 40;
/// Connections beyond one per peer that a node may hold while duplicates resolve.
const DUPLICATE_SLACK: u64 = 16;

/// The connection limits of each of `nodes` nodes of this process, and how many connections
/// each may hold. With fewer slots than the default, a node with every inbound slot taken
/// closes its idlest inbound connection (with nothing in flight) at once for a newcomer,
/// instead of only one idle for 30 s: here the slots are scarce by construction, not because
/// peers are busy.
pub fn limits(nodes: usize) -> Result<(PeerLimits, u64), String> {
    let limit = descriptors::raise_limit().map_err(|e| format!("descriptor limit: {e}"))?;
    let n = nodes as u64;
    // A node has at most N − 1 peers; a few more cover duplicate connections while they
    // resolve. Within that, the default limits never bind.
    let default = PeerLimits::DEFAULT.max_connections as u64;
    let wanted = default.min(n.saturating_sub(1) + DUPLICATE_SLACK);
    let connections = descriptors::budget(n, limit, wanted, MIN_CONNECTIONS.min(wanted))
        .map_err(|e| e.to_string())?;
    if connections >= wanted {
        return Ok((PeerLimits::DEFAULT, connections));
    }
    let slots = usize::try_from(connections).unwrap_or(usize::MAX);
    let limits = PeerLimits {
        max_connections: slots,
        max_inbound: slots / 2,
        max_outbound: slots / 2,
        inbound_prune_idle: Duration::ZERO,
        ..PeerLimits::DEFAULT
    };
    Ok((limits, connections))
}
