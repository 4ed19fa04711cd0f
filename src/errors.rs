//! Every public error type, in one place.

pub use crate::identity::{IdentityError, ParseIdError};
pub use crate::wire::codec::{DecodeError, EncodeError};
pub use crate::wire::frame::FrameError;
pub use crate::wire::messages::BoundError;
