//! The wire format (proto-spec/framing.md and messages.md), in two layers as in smoltcp:
//! [`frame`] finds frame boundaries and enforces the maximum length; [`codec`] turns one frame
//! payload into one [`messages::Message`] and back, checking every documented bound.
//!
//! Both layers are sans-IO: bytes in, values out. Neither panics on any input.

mod bounds;
pub mod codec;
pub mod frame;
pub(crate) mod list;
pub mod messages;
pub mod signing;

pub use codec::{decode, encode, encode_frame, DecodeError, EncodeError};
pub use frame::{FrameDecoder, FrameError, DEFAULT_MAX_FRAME_BYTES};
pub use messages::Message;
