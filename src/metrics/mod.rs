//! Prometheus metrics: the node's [`Snapshot`](crate::Snapshot) in the text exposition format,
//! served over HTTP at `/metrics` (DESIGN.md, "Operation").
//!
//! - [`render`] turns a snapshot into exposition text, through the `prometheus` crate's data
//!   model and `TextEncoder` (default features off: no protobuf). Every name and label is
//!   listed there and in README.md, "Metrics".
//! - [`serve`] runs the responder thread ([`http`]) that answers `GET /metrics` with a fresh
//!   snapshot per scrape.
//!
//! This is the only module that names the `prometheus` crate (`tests/layers.rs` checks it): the
//! sans-IO cores only count, in plain structs the snapshot gathers.

mod families;
pub mod http;
mod render;

pub use http::{serve, serve_with, MetricsServer, ServerConfig, CONTENT_TYPE};
pub use render::{render, RenderError};
