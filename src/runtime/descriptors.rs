//! File descriptors: every connection holds one, and a process that runs out fails accepts and
//! dials (EMFILE) in ways its peers only see as timeouts. [`raise_limit`] lifts the soft limit
//! to the hard one at start; [`budget`] says how many connections each of N nodes in one
//! process can hold within the limit, or how many descriptors they would need.

use std::fmt;
use std::io;

/// Descriptors each node holds besides its connections: the listener, the poll instance, the
/// waker, and room for a dial in progress.
pub const PER_NODE_OVERHEAD: u64 = 8;
/// Descriptors the process keeps for itself: standard streams, files, the control socket.
pub const PROCESS_RESERVE: u64 = 256;

/// Raises the soft limit on open files to the hard limit and returns the limit now in force.
pub fn raise_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The connections each of `nodes` nodes in one process may hold so that together they stay
/// within `limit` descriptors: at most `wanted`, and an error (saying how many descriptors the
/// nodes need) below `minimum`.
pub fn budget(nodes: u64, limit: u64, wanted: u64, minimum: u64) -> Result<u64, Shortage> {
    let per_node = limit.saturating_sub(PROCESS_RESERVE) / nodes.max(1);
    let connections = per_node.saturating_sub(PER_NODE_OVERHEAD).min(wanted);
    if connections < minimum {
        let needed = nodes.saturating_mul(minimum + PER_NODE_OVERHEAD) + PROCESS_RESERVE;
        return Err(Shortage { nodes, needed, limit });
    }
    Ok(connections)
}

/// Too few descriptors for the nodes asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortage {
    /// Nodes asked for.
    pub nodes: u64,
    /// Descriptors they need at the least.
    pub needed: u64,
    /// The limit in force.
    pub limit: u64,
}

impl fmt::Display for Shortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nodes need at least {} file descriptors, and the limit is {} (raise the hard \
             limit, e.g. `ulimit -Hn`, or run fewer nodes)",
            self.nodes, self.needed, self.limit
        )
    }
}

impl std::error::Error for Shortage {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_divides_the_limit_and_caps_at_what_is_wanted() {
        // 300 nodes in 20,000 descriptors: 65 each, 57 of them for connections.
        assert_eq!(budget(300, 20_000, 256, 40), Ok(57));
        // One node: all it wants.
        assert_eq!(budget(1, 20_000, 256, 40), Ok(256));
        // 1,000 nodes do not fit: the error says what they need.
        let short = budget(1000, 20_000, 256, 40).unwrap_err();
        assert_eq!(short, Shortage { nodes: 1000, needed: 48_256, limit: 20_000 });
        assert!(short.to_string().contains("48256"));
    }

    #[test]
    fn raising_the_limit_never_lowers_it() {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0;
        let raised = raise_limit().unwrap();
        assert!(raised >= before);
    }
}
