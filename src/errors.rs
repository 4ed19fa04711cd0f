//! Every public error type, in one place.

pub use crate::config::ConfigError;
pub use crate::control::{ClientError, ServerError};
pub use crate::core::{AddError, ConnectError, DialError, LimitError, RequestError};
pub use crate::identity::{IdentityError, KeyFileError, ParseIdError, SignatureError};
pub use crate::metrics::RenderError;
pub use crate::runtime::buffers::PoolError;
pub use crate::runtime::limiter::{AdmitError, TakeError};
pub use crate::runtime::workers::{Backpressure, StartError};
pub use crate::transport::conn::{ConnError, SendError};
pub use crate::transport::tls::TlsSetupError;
pub use crate::wire::codec::{DecodeError, EncodeError};
pub use crate::wire::frame::FrameError;
pub use crate::wire::messages::BoundError;
