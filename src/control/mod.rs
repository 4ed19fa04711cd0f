//! The control socket: how the `petrel` commands talk to a running node
//! (proto-spec/control.md).
//!
//! [`server::ControlServer`] serves `DIR/control.sock` for a node's [`crate::Handle`] on
//! threads of its own; the node knows nothing of it (`petrel run` starts it). [`client::Client`]
//! is the other end. [`protocol`] holds the requests and responses, encoded with the wire's
//! framing and bincode options; [`frames`] reads and writes frames on a blocking stream under
//! deadlines; `session` serves one client.

pub mod client;
pub mod frames;
pub mod protocol;
pub mod server;
mod session;

pub use client::{Client, ClientError};
pub use protocol::{ControlErrorCode, ControlRequest, ControlResponse};
pub use server::{ControlConfig, ControlServer, NodeInfo, ServerError};
