//! Kademlia DHT (DESIGN.md, "Kademlia"), sans-IO like the rest of the core.
//!
//! - [`claims`]: which addresses a peer names are plausible, given where it spoke from.
//! - `contacts`: what each contact proves about a peer (reached, inbound, named by a third
//!   party), and the dial-backs that turn an inbound peer's claim into a proven address.
//! - [`routing`]: the routing table: k-buckets, ping-before-evict, replacement cache,
//!   IP-diversity limits, bucket refresh.
//! - [`lookup`]: the iterative lookup state machine: α in flight, straggler timeout,
//!   termination on the k closest, optional disjoint paths.
//! - [`quality`]: each peer's measured RTT and success ratio, which order a lookup's waiting.
//! - [`records`]: record validation (keys, signatures, sequence numbers, compare-and-swap).
//! - [`memstore`]: the `RecordStore` trait and the in-memory store with TTLs, quotas and caps.
//! - [`cache`]: records our GETs fetched, so a repeated GET answers from the node itself.
//! - `lru`: the recency order the store's hot tier and the GET cache share.
//! - `cold`: values read back from the log when they left memory (the hot tier's misses).
//! - [`serve`]: answers to inbound Kademlia requests, and STOREs that wait for a worker.
//! - [`dht`]: `Dht`, the protocol the router hosts: its inputs, commands and counters.
//! - [`persist`]: what the DHT writes to the node's log, and the answers that wait for it.
//! - [`join`]: the contacts a node joins through, dialled again while the table is empty.
//! - `query` and `maintenance`: a query's life, and the periodic upkeep (refresh, republish,
//!   replication).

pub mod cache;
pub mod claims;
mod cold;
mod contacts;
pub mod dht;
pub mod join;
pub mod lookup;
mod lru;
mod maintenance;
pub mod memstore;
pub mod persist;
pub mod quality;
mod query;
pub mod records;
pub mod routing;
pub mod serve;

#[cfg(test)]
mod dht_tests;
#[cfg(test)]
mod persist_tests;
