//! The client end of the control socket: what `petrel status`, `petrel get` and the other
//! commands against a running node use (proto-spec/control.md).

use std::fmt;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::frames::{write_all_by, FrameReader, ReadError};
use super::protocol::{
    decode_response, encode_request, ControlRequest, ControlResponse, MAX_CONTROL_FRAME_BYTES,
};
use super::server::SOCKET_NAME;
use crate::wire::codec::{DecodeError, EncodeError};

/// How long a request may take to be written: the node reads it at once.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed send, how long to wait for the answer the node may have written before it
/// closed (`busy`, `too_large`).
const LAST_WORD_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection to a running node's control socket.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    reader: FrameReader,
}

impl Client {
    /// Connects to `dir/control.sock`.
    pub fn connect(dir: &Path) -> Result<Client, ClientError> {
        let path = dir.join(SOCKET_NAME);
        let stream = UnixStream::connect(&path)
            .map_err(|source| ClientError::Unreachable { path, source })?;
        Ok(Client { stream, reader: FrameReader::new(MAX_CONTROL_FRAME_BYTES) })
    }

    /// Sends `request` and waits at most `timeout` for its answer.
    pub fn call(
        &mut self,
        request: &ControlRequest,
        timeout: Duration,
    ) -> Result<ControlResponse, ClientError> {
        if let Err(e) = self.send(request) {
            // The node may have answered and closed before taking the whole request.
            return self.recv(Some(Instant::now() + LAST_WORD_TIMEOUT)).map_err(|_| e);
        }
        self.recv(Some(Instant::now() + timeout))
    }

    /// Sends one request.
    pub fn send(&mut self, request: &ControlRequest) -> Result<(), ClientError> {
        let mut frame = Vec::new();
        encode_request(request, &mut frame).map_err(ClientError::Encode)?;
        write_all_by(&mut self.stream, &frame, Instant::now() + SEND_TIMEOUT)
            .map_err(ClientError::Io)
    }

    /// The next answer; `deadline` `None` waits as long as it takes (a subscription).
    pub fn recv(&mut self, deadline: Option<Instant>) -> Result<ControlResponse, ClientError> {
        let payload = self.reader.read_frame(&mut self.stream, deadline).map_err(|e| match e {
            ReadError::Closed | ReadError::Cut => ClientError::Closed,
            ReadError::TimedOut => ClientError::TimedOut,
            ReadError::TooLarge(e) => ClientError::Io(io::Error::other(e)),
            ReadError::Io(e) => ClientError::Io(e),
        })?;
        decode_response(&payload).map_err(ClientError::Decode)
    }
}

/// Why a call over the control socket failed (the node's own refusals are `Error` answers).
#[derive(Debug)]
pub enum ClientError {
    /// No node answers on the socket.
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why connecting failed.
        source: io::Error,
    },
    /// The node closed the connection.
    Closed,
    /// No answer in time.
    TimedOut,
    /// The request is over a bound of control.md; nothing was sent.
    Encode(EncodeError),
    /// The answer does not decode: the node speaks another version of the protocol.
    Decode(DecodeError),
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { path, source } => {
                write!(f, "cannot reach node at {}: {source}", path.display())
            }
            Self::Closed => f.write_str("the node closed the connection"),
            Self::TimedOut => f.write_str("no answer from the node in time"),
            Self::Encode(e) => e.fmt(f),
            Self::Decode(e) => write!(f, "the node's answer does not decode: {e}"),
            Self::Io(e) => write!(f, "control socket: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}
