//! Kademlia DHT (DESIGN.md, "Kademlia"), sans-IO like the rest of the core.
//!
//! - [`routing`]: the routing table: k-buckets, ping-before-evict, replacement cache,
//!   IP-diversity limits, bucket refresh.
//! - [`lookup`]: the iterative lookup state machine: α in flight, straggler timeout,
//!   termination on the k closest, optional disjoint paths.
//! - [`records`]: record validation (keys, signatures, sequence numbers, compare-and-swap).
//! - [`store`]: the `Store` trait and the in-memory store with TTLs, quotas and caps.
//! - [`serve`]: answers to inbound Kademlia requests.
//! - [`dht`]: `Dht`, which runs queries and maintenance over the pieces above.

pub mod dht;
pub mod lookup;
pub mod records;
pub mod routing;
pub mod serve;
pub mod store;
