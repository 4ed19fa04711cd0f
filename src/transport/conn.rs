//! One connection, sans-IO: a rustls session, a frame decoder and the post-TLS Hello exchange
//! (proto-spec/transport.md, framing.md, handshake.md).
//!
//! Bytes in ([`Connection::handle_input`]), TLS bytes out ([`Connection::write_tls`]),
//! events out ([`Connection::poll_event`]). No socket, no clock and no timer: every deadline
//! of a connection (connect, TLS, Hello, idle) belongs to the core's connection table, which
//! closes the connection through its driver when one passes.
//!
//! Driving contract: after `handle_input`, `send_*` or `close`, drain `poll_event` until `None`,
//! then write out while `wants_write()`. Once `error()` is `Some`, the connection is finished:
//! flush what it still wants to write (a Goodbye or TLS alert) and drop it.
//!
//! One write per frame: a frame's header and payload go to rustls in one vectored write, which
//! rustls seals as one stream of plaintext, so each frame costs one TLS record (or more for a
//! frame over 16 KiB), never an extra one for its header, and the payload is not copied to
//! prepend it. The driver encodes payloads into its pooled buffers
//! ([`Connection::send_payload`]); the Hello and Goodbye this type sends itself take the same
//! path. Reads take rustls's plaintext buffer in place (`BufRead`), and a frame that lies whole
//! in it is decoded without being copied.
//!
//! The write queue is bounded: a frame that would take the TLS output waiting for the socket
//! over `max_write_queue_bytes` is refused whole with [`SendError::WriteQueueFull`], and the
//! stream stays intact; the driver reports it to the core, which decides what happens to the
//! peer.
//!
//! States (each entered only through `set_state`):
//! - `Handshaking`: TLS in progress.
//! - `AwaitingHello`: TLS done and our Hello sent; the peer's Hello must come first. A
//!   dialler may already send ([`ConnEvent::Authenticated`]): its requests ride in the flight
//!   of its TLS Finished, so a cold request costs no extra round trip (handshake.md §2.1).
//! - `Established`: messages flow.
//! - `Closed`: an error or a Goodbye ended it; sticky.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, IoSlice, Write};

use super::tls::{peer_identity, PeerIdentity};
use super::CloseCause;
use crate::wire::codec::{self, DecodeError, EncodeError};
use crate::wire::frame::{FrameDecoder, FrameError, HEADER_BYTES};
use crate::wire::messages::{Goodbye, GoodbyeReason, Hello, Message, PROTOCOL_VERSION};

/// Per-connection settings; defaults live in `config`.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Maximum frame payload, both directions.
    pub max_frame_bytes: usize,
    /// Bytes of TLS output that may wait for the socket; a frame beyond it is refused.
    pub max_write_queue_bytes: usize,
    /// Our network name; a peer must send the same.
    pub network: String,
    /// Our id-PoW difficulty; a peer must send the same.
    pub id_pow_bits: u8,
}

/// What a connection reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    /// A connection we dialled: TLS authenticated the peer and our Hello is written. Requests
    /// may follow it now, in the flight of our TLS Finished, before the peer's Hello
    /// (handshake.md §2.1); [`Established`](Self::Established) comes with the peer's Hello.
    Authenticated {
        /// Who the peer is (verified by TLS).
        peer: PeerIdentity,
    },
    /// TLS authenticated the peer and its Hello passed the checks.
    Established {
        /// Who the peer is (verified by TLS).
        peer: PeerIdentity,
        /// What it announced.
        hello: Hello,
    },
    /// A message after the Hello.
    Message {
        /// The message.
        msg: Message,
        /// Its frame payload length, for rate limiting.
        frame_bytes: usize,
    },
    /// The peer said goodbye; the connection is closed.
    Goodbye(GoodbyeReason),
    /// A dial-back ([`Connection::probe_only`]) authenticated the peer: it listens at the
    /// dialled address. The connection then closes with `Goodbye{DuplicateConnection}`.
    Probed {
        /// Who answered (verified by TLS).
        peer: PeerIdentity,
    },
}

/// Why a connection ended. Sticky: the first one stays. `name()` is the metric label.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnError {
    /// TLS failed (includes a peer key other than the one dialled).
    Tls(rustls::Error),
    /// TLS finished without agreeing on ALPN `petrel/1` or without a usable peer key.
    NoProtocol,
    /// The peer violated framing.
    Frame(FrameError),
    /// A frame did not decode.
    Decode(DecodeError),
    /// A frame other than Hello arrived before the peer's Hello, or a second Hello.
    UnexpectedMessage,
    /// The peer's Hello does not match us; the Goodbye reason we sent says how.
    HelloMismatch(GoodbyeReason),
    /// rustls refused output mid-frame: the stream is no longer usable.
    WriteQueueFull,
    /// We could not encode a message (a local bug or oversized value).
    Encode(EncodeError),
    /// The peer said goodbye, sent close_notify, or the stream ended.
    PeerClosed,
    /// The TCP connection failed or broke (refused, reset, unreachable).
    TcpFailed,
    /// We closed it (Goodbye sent).
    LocalClose(GoodbyeReason),
}

/// Why a frame was not queued.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// The connection is not established, or has ended (its error, if any).
    NotOpen(Option<ConnError>),
    /// The frame would take the write queue over its bound; nothing was queued.
    WriteQueueFull,
    /// The message did not encode.
    Encode(EncodeError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    AwaitingHello,
    Established,
    Closed,
}

/// A connection's protocol state. See the module doc for the driving contract.
pub struct Connection {
    tls: rustls::Connection,
    decoder: FrameDecoder,
    config: ConnConfig,
    state: State,
    local_hello: Hello,
    peer: Option<PeerIdentity>,
    /// Plaintext handed to rustls minus TLS bytes written out: the write queue, to within the
    /// TLS record overhead (which makes it an overestimate of the plaintext still queued).
    queued_bytes: usize,
    events: VecDeque<ConnEvent>,
    error: Option<ConnError>,
    /// A dial-back: no Hello, closed as soon as TLS has authenticated the peer.
    probe: bool,
    /// Once TLS is done, send this Goodbye instead of a Hello and close.
    refusal: Option<GoodbyeReason>,
}

impl Connection {
    /// Wraps a fresh rustls session (from `TlsConfig::dial` or `accept`). `local_hello` is
    /// sent as soon as TLS completes.
    pub fn new(mut tls: rustls::Connection, local_hello: Hello, config: ConnConfig) -> Connection {
        // rustls's own bound is a backstop with room for record overhead and the Goodbye; the
        // write queue check in `send_frame` binds first and never cuts a frame.
        tls.set_buffer_limit(Some(config.max_write_queue_bytes + TLS_LIMIT_SLACK_BYTES));
        Connection {
            tls,
            decoder: FrameDecoder::new(config.max_frame_bytes),
            config,
            state: State::Handshaking,
            local_hello,
            peer: None,
            queued_bytes: 0,
            events: VecDeque::new(),
            error: None,
            probe: false,
            refusal: None,
        }
    }

    /// Makes a fresh dialled connection a dial-back (handshake.md §7): once TLS has
    /// authenticated the peer it reports [`ConnEvent::Probed`] and, instead of a Hello, sends
    /// `Goodbye{DuplicateConnection}` and closes. The peer never sees it established, so the
    /// connection it already has with us is left alone.
    pub fn probe_only(&mut self) {
        self.probe = true;
        self.refusal = Some(GoodbyeReason::DuplicateConnection);
    }

    /// Refuses the peer with a Goodbye that says why: at once if TLS is done, else as soon as
    /// it is, instead of a Hello (a peer must hear `TooManyConnections`, handshake.md §5, and
    /// a Goodbye can only travel inside TLS). The owner bounds how long it waits for TLS.
    pub fn refuse(&mut self, reason: GoodbyeReason) {
        match self.state {
            State::Handshaking => self.refusal = Some(reason),
            _ => self.close(reason),
        }
    }

    /// Feeds bytes received from the socket. An empty slice means end of stream.
    pub fn handle_input(&mut self, mut input: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if input.is_empty() {
            return self.fail(ConnError::PeerClosed);
        }
        while !input.is_empty() && self.error.is_none() {
            // rustls refuses input only when its buffers are full, which draining after
            // every read prevents; if it happens anyway the peer's stream is unusable.
            if self.tls.read_tls(&mut input).is_err() {
                return self.fail(ConnError::Tls(rustls::Error::General("read_tls".into())));
            }
            self.process();
        }
    }

    /// Writes pending TLS bytes to `out` (the socket, or a buffer in tests).
    pub fn write_tls(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        let n = self.tls.write_tls(out)?;
        self.queued_bytes = self.queued_bytes.saturating_sub(n);
        Ok(n)
    }

    /// Encodes `msg` and queues it. For tests and tools; the reactor encodes into pooled
    /// buffers and calls [`Connection::send_payload`].
    pub fn send(&mut self, msg: &Message) -> Result<(), SendError> {
        let mut payload = Vec::new();
        codec::encode_payload(msg, self.config.max_frame_bytes, &mut payload)
            .map_err(SendError::Encode)?;
        self.send_payload(&payload)
    }

    /// Queues one frame for an encoded payload (`codec::encode_payload`), header and payload
    /// in one write. Once established, or on a dialled connection once TLS is done (the
    /// owner sends only requests then, handshake.md §2.1); refused whole when the write queue
    /// has no room.
    pub fn send_payload(&mut self, payload: &[u8]) -> Result<(), SendError> {
        if self.error.is_some() || !self.may_send() {
            return Err(SendError::NotOpen(self.error.clone()));
        }
        if self.queued_bytes + HEADER_BYTES + payload.len() > self.config.max_write_queue_bytes {
            return Err(SendError::WriteQueueFull);
        }
        self.write_payload(payload).map_err(|e| SendError::NotOpen(Some(e)))
    }

    /// Sends Goodbye and close_notify, then the connection is closed once flushed.
    pub fn close(&mut self, reason: GoodbyeReason) {
        if self.error.is_some() {
            return;
        }
        if matches!(self.state, State::AwaitingHello | State::Established) {
            let _ = self.write_message(&Message::Goodbye(Goodbye { reason }));
        }
        self.tls.send_close_notify();
        self.set_state(State::Closed);
        self.error = Some(ConnError::LocalClose(reason));
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        let event = self.events.pop_front();
        // An event is 200 bytes and most connections sit idle: after a burst, give back all
        // but one slot (a node holds hundreds of connections).
        if self.events.is_empty() && self.events.capacity() > 1 {
            self.events.shrink_to(1);
        }
        event
    }

    /// Whether TLS bytes wait to be written.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// Whether the connection wants more input (false once closed).
    pub fn wants_read(&self) -> bool {
        self.error.is_none() && self.tls.wants_read()
    }

    /// The error that ended the connection, if it has ended.
    pub fn error(&self) -> Option<&ConnError> {
        self.error.as_ref()
    }

    /// The authenticated peer, once TLS is done.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// Whether frames may be queued: established, or a dial that TLS authenticated.
    fn may_send(&self) -> bool {
        match self.state {
            State::Established => true,
            State::AwaitingHello => self.is_dialler() && self.refusal.is_none(),
            State::Handshaking | State::Closed => false,
        }
    }

    fn is_dialler(&self) -> bool {
        matches!(self.tls, rustls::Connection::Client(_))
    }

    /// Whether the Hello exchange completed and the connection is open.
    pub fn is_established(&self) -> bool {
        self.state == State::Established && self.error.is_none()
    }

    /// The frame partly received, if any: its number on this connection and the bytes held
    /// for it (see `FrameDecoder::partial`).
    pub fn partial_frame(&self) -> Option<(u64, usize)> {
        self.decoder.partial()
    }

    /// Whether decoded events wait for [`poll_event`](Self::poll_event).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Bytes queued for the peer and not yet written to the socket (see `queued_bytes`).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    fn process(&mut self) {
        if let Err(e) = self.tls.process_new_packets() {
            return self.fail(ConnError::Tls(e));
        }
        if self.state == State::Handshaking && !self.tls.is_handshaking() {
            self.on_handshake_done();
        }
        self.read_plaintext();
    }

    fn on_handshake_done(&mut self) {
        let Some(peer) = peer_identity(&self.tls) else {
            return self.fail(ConnError::NoProtocol);
        };
        self.peer = Some(peer);
        self.set_state(State::AwaitingHello);
        if self.probe {
            self.events.push_back(ConnEvent::Probed { peer });
        }
        if let Some(reason) = self.refusal {
            return self.close(reason);
        }
        let hello = Message::Hello(self.local_hello.clone());
        if let Err(e) = self.write_message(&hello) {
            return self.fail(e);
        }
        if self.is_dialler() {
            self.events.push_back(ConnEvent::Authenticated { peer });
        }
    }

    /// Decodes frames straight out of rustls's plaintext buffer and handles each.
    fn read_plaintext(&mut self) {
        while self.error.is_none() {
            let mut reader = self.tls.reader();
            let mut input = match reader.fill_buf() {
                Ok([]) => return self.fail(ConnError::PeerClosed),
                Ok(buf) => buf,
                // WouldBlock: no plaintext buffered right now.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.fail(ConnError::PeerClosed),
            };
            let available = input.len();
            let mut frames = Vec::new();
            let mut failed = None;
            loop {
                match self.decoder.next_frame(&mut input) {
                    Ok(Some(frame)) => frames.push(decode_frame(&frame, &self.config)),
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(ConnError::Frame(e));
                        break;
                    }
                }
                // A decode error ends the connection: later frames do not count.
                if matches!(frames.last(), Some((Err(_), _))) {
                    break;
                }
            }
            let used = available - input.len();
            reader.consume(used);
            for (msg, frame_bytes) in frames {
                match msg {
                    Ok(msg) => self.on_message(msg, frame_bytes),
                    Err(e) => self.fail(ConnError::Decode(e)),
                }
            }
            if let Some(e) = failed {
                self.fail(e);
            }
        }
    }

    fn on_message(&mut self, msg: Message, frame_bytes: usize) {
        if self.error.is_some() {
            return;
        }
        match (self.state, msg) {
            // handshake.md §3: a Goodbye may come at any time after TLS.
            (_, Message::Goodbye(g)) => {
                self.events.push_back(ConnEvent::Goodbye(g.reason));
                self.set_state(State::Closed);
                self.error = Some(ConnError::PeerClosed);
            }
            // handshake.md §2: the first frame is the peer's Hello.
            (State::AwaitingHello, Message::Hello(h)) => self.on_hello(h),
            (State::Established, Message::Hello(_)) | (State::AwaitingHello, _) => {
                self.fail(ConnError::UnexpectedMessage)
            }
            (State::Established, msg) => {
                self.events.push_back(ConnEvent::Message { msg, frame_bytes });
            }
            // No frames can be decoded while handshaking or after close.
            (State::Handshaking | State::Closed, _) => {}
        }
    }

    /// handshake.md §3: version must be the ALPN-selected one; network and difficulty equal.
    fn on_hello(&mut self, hello: Hello) {
        let mismatch = if hello.version != PROTOCOL_VERSION {
            Some(GoodbyeReason::IncompatibleVersion)
        } else if hello.network != self.config.network
            || hello.id_pow_bits != self.config.id_pow_bits
        {
            Some(GoodbyeReason::NetworkMismatch)
        } else {
            None
        };
        if let Some(reason) = mismatch {
            self.close(reason);
            self.error = Some(ConnError::HelloMismatch(reason));
            return;
        }
        let Some(peer) = self.peer else {
            return self.fail(ConnError::NoProtocol);
        };
        self.set_state(State::Established);
        self.events.push_back(ConnEvent::Established { peer, hello });
    }

    /// Hello and Goodbye: small frames this type sends itself, on the one frame path.
    fn write_message(&mut self, msg: &Message) -> Result<(), ConnError> {
        let mut payload = Vec::new();
        codec::encode_payload(msg, self.config.max_frame_bytes, &mut payload)
            .map_err(ConnError::Encode)?;
        self.write_payload(&payload)
    }

    /// The one place frames enter rustls: header and payload in a single vectored write.
    fn write_payload(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        let too_large =
            FrameError::TooLarge { len: payload.len(), max: self.config.max_frame_bytes };
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&n| n as usize <= self.config.max_frame_bytes)
            .ok_or(ConnError::Encode(EncodeError::Frame(too_large)))?;
        let header = len.to_be_bytes();
        let frame = [IoSlice::new(&header), IoSlice::new(payload)];
        let total = HEADER_BYTES + payload.len();
        // rustls accepts all or part of it up to its buffer limit; a partial write means the
        // stream is cut mid-frame and no longer usable, so the connection ends.
        match self.tls.writer().write_vectored(&frame) {
            Ok(n) if n == total => {
                self.queued_bytes += n;
                Ok(())
            }
            _ => {
                self.fail(ConnError::WriteQueueFull);
                Err(ConnError::WriteQueueFull)
            }
        }
    }

    /// Records a fatal error. Protocol violations get a Goodbye so the peer learns why;
    /// rustls has already queued an alert for TLS errors.
    fn fail(&mut self, error: ConnError) {
        if self.error.is_some() {
            return;
        }
        let tell_peer = matches!(
            error,
            ConnError::Frame(_) | ConnError::Decode(_) | ConnError::UnexpectedMessage
        );
        if tell_peer && self.state != State::Handshaking {
            let reason = GoodbyeReason::ProtocolViolation;
            let _ = self.write_message(&Message::Goodbye(Goodbye { reason }));
            self.tls.send_close_notify();
        }
        self.set_state(State::Closed);
        self.error = Some(error);
    }

    fn set_state(&mut self, new: State) {
        self.state = new;
    }
}

/// Decodes one frame payload; with its length, for rate limiting.
fn decode_frame(frame: &[u8], config: &ConnConfig) -> (Result<Message, DecodeError>, usize) {
    (codec::decode(frame, config.max_frame_bytes), frame.len())
}

/// Room above the write queue bound in rustls's own buffer limit: TLS record overhead for a
/// full queue (22 bytes per 16 KiB record) and a Goodbye.
const TLS_LIMIT_SLACK_BYTES: usize = 16 * 1024;

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("peer", &self.peer.map(|p| p.node_id))
            .field("error", &self.error)
            .finish()
    }
}

impl ConnError {
    /// Stable snake_case name for metric labels and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tls(_) => "tls",
            Self::NoProtocol => "no_protocol",
            Self::Frame(e) => e.name(),
            Self::Decode(e) => e.name(),
            Self::UnexpectedMessage => "unexpected_message",
            Self::HelloMismatch(_) => "hello_mismatch",
            Self::WriteQueueFull => "write_queue_full",
            Self::Encode(_) => "encode",
            Self::PeerClosed => "peer_closed",
            Self::TcpFailed => "tcp_failed",
            Self::LocalClose(_) => "local_close",
        }
    }

    /// Whether the peer broke the protocol (as opposed to closing or failing).
    pub fn is_peer_misbehaviour(&self) -> bool {
        self.cause().is_misbehaviour()
    }

    /// What the core hears: the failure without its TLS library detail. A key other than the
    /// one dialled is `WrongKey`; every other TLS failure is misbehaviour named `tls`.
    pub fn cause(&self) -> CloseCause {
        match self {
            Self::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            )) => CloseCause::WrongKey,
            Self::Tls(_) | Self::NoProtocol | Self::Frame(_) | Self::Decode(_) => {
                CloseCause::Misbehaved(self.name())
            }
            Self::UnexpectedMessage => CloseCause::Misbehaved(self.name()),
            Self::HelloMismatch(reason) => CloseCause::HelloMismatch(*reason),
            Self::WriteQueueFull => CloseCause::WriteQueueFull,
            Self::Encode(_) => CloseCause::EncodeFailed,
            Self::PeerClosed => CloseCause::PeerClosed,
            Self::TcpFailed => CloseCause::TcpFailed,
            Self::LocalClose(reason) => CloseCause::LocalClose(*reason),
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::NoProtocol => f.write_str("TLS ended without ALPN petrel/1 or a peer key"),
            Self::Frame(e) => e.fmt(f),
            Self::Decode(e) => write!(f, "bad message: {e}"),
            Self::UnexpectedMessage => f.write_str("message out of order (Hello must be first)"),
            Self::HelloMismatch(r) => write!(f, "peer's Hello does not match ours ({r:?})"),
            Self::WriteQueueFull => f.write_str("write queue full: peer is not reading"),
            Self::Encode(e) => e.fmt(f),
            Self::PeerClosed => f.write_str("peer closed the connection"),
            Self::TcpFailed => f.write_str("TCP connection failed"),
            Self::LocalClose(r) => write!(f, "closed locally ({r:?})"),
        }
    }
}

impl std::error::Error for ConnError {}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOpen(Some(e)) => write!(f, "connection ended: {e}"),
            Self::NotOpen(None) => f.write_str("connection not established"),
            Self::WriteQueueFull => f.write_str("write queue full: peer is not reading"),
            Self::Encode(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::transport::tls::TlsConfig;
    use crate::wire::messages::{Request, Response};

    fn conn_config() -> ConnConfig {
        ConnConfig {
            max_frame_bytes: 1 << 20,
            max_write_queue_bytes: 1 << 20,
            network: "test".into(),
            id_pow_bits: 0,
        }
    }

    fn hello() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            network: "test".into(),
            id_pow_bits: 0,
            features: 0,
            agent: "petrel-test".into(),
            listen_addrs: vec![],
        }
    }

    struct Pair {
        client: Connection,
        server: Connection,
        client_events: Vec<ConnEvent>,
        server_events: Vec<ConnEvent>,
    }

    impl Pair {
        fn new(server_hello: Hello) -> Pair {
            let ck = Keypair::from_seed([1; 32]);
            let sk = Keypair::from_seed([2; 32]);
            let ctls = TlsConfig::new(&ck, 0).unwrap().dial(sk.node_id()).unwrap();
            let stls = TlsConfig::new(&sk, 0).unwrap().accept().unwrap();
            Pair {
                client: Connection::new(ctls.into(), hello(), conn_config()),
                server: Connection::new(stls.into(), server_hello, conn_config()),
                client_events: vec![],
                server_events: vec![],
            }
        }

        /// Shuttles bytes until quiet, collecting events.
        fn drive(&mut self) {
            for _ in 0..64 {
                let a = shuttle(&mut self.client, &mut self.server);
                let b = shuttle(&mut self.server, &mut self.client);
                while let Some(e) = self.client.poll_event() {
                    self.client_events.push(e);
                }
                while let Some(e) = self.server.poll_event() {
                    self.server_events.push(e);
                }
                if !a && !b {
                    return;
                }
            }
            panic!("did not settle");
        }
    }

    fn shuttle(from: &mut Connection, to: &mut Connection) -> bool {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            to.handle_input(&buf);
        }
        !buf.is_empty()
    }

    /// `conn`'s pending events are exactly: established by the peer's Hello, then `msg`.
    fn assert_established_then(conn: &mut Connection, msg: &Message) {
        let events: Vec<_> = std::iter::from_fn(|| conn.poll_event()).collect();
        assert!(
            matches!(&events[..], [ConnEvent::Established { .. }, ConnEvent::Message { msg: m, .. }]
                if m == msg),
            "{events:?}"
        );
    }

    /// Sends raw plaintext bytes from the client, bypassing framing checks, as an attacker.
    fn inject_plaintext(pair: &mut Pair, bytes: &[u8]) {
        pair.client.tls.writer().write_all(bytes).unwrap();
        pair.drive();
    }

    #[test]
    fn a_dial_back_proves_the_key_and_closes_before_any_hello() {
        let mut p = Pair::new(hello());
        p.client.probe_only();
        p.drive();
        let server = Keypair::from_seed([2; 32]).node_id();
        assert!(matches!(&p.client_events[..], [ConnEvent::Probed { peer }]
            if peer.node_id == server));
        let reason = GoodbyeReason::DuplicateConnection;
        assert_eq!(p.client.error(), Some(&ConnError::LocalClose(reason)));
        // The acceptor hears the Goodbye first: closed, never established, no violation.
        assert_eq!(p.server_events, vec![ConnEvent::Goodbye(reason)]);
        assert!(!p.server.is_established());
        assert_eq!(p.server.error(), Some(&ConnError::PeerClosed));
    }

    #[test]
    fn a_dialler_sends_its_first_request_in_the_flight_of_its_tls_finished_and_hello() {
        let mut p = Pair::new(hello());
        let server_id = Keypair::from_seed([2; 32]).node_id();
        let ping = Message::Request { id: 7, body: Request::Ping };
        assert!(matches!(p.client.send(&ping), Err(SendError::NotOpen(None))), "not before TLS");
        assert!(shuttle(&mut p.client, &mut p.server)); // ClientHello
        assert!(shuttle(&mut p.server, &mut p.client)); // the server's flight, to Finished
        assert!(matches!(p.client.poll_event(), Some(ConnEvent::Authenticated { peer })
            if peer.node_id == server_id));
        assert!(!p.client.is_established());
        p.client.send(&ping).unwrap();
        // One flight: our Finished, Hello and request; the server is established by the
        // Hello and then reads the request.
        assert!(shuttle(&mut p.client, &mut p.server));
        assert_established_then(&mut p.server, &ping);
        // Its answer comes behind its Hello: established first, then the message.
        let pong = Message::Response {
            id: 7,
            body: Response::Pong { observed: "192.0.2.1:1".parse().unwrap() },
        };
        p.server.send(&pong).unwrap();
        assert!(shuttle(&mut p.server, &mut p.client));
        assert_established_then(&mut p.client, &pong);
    }

    #[test]
    fn only_a_dialler_reports_authenticated_and_a_dial_back_does_not() {
        let mut p = Pair::new(hello());
        p.drive();
        assert!(
            matches!(
                &p.client_events[..],
                [ConnEvent::Authenticated { .. }, ConnEvent::Established { .. }]
            ),
            "{:?}",
            p.client_events
        );
        assert!(
            matches!(&p.server_events[..], [ConnEvent::Established { .. }]),
            "{:?}",
            p.server_events
        );
        let mut p = Pair::new(hello());
        p.client.probe_only();
        p.drive();
        assert!(
            matches!(&p.client_events[..], [ConnEvent::Probed { .. }]),
            "{:?}",
            p.client_events
        );
    }

    #[test]
    fn hello_exchange_establishes_both_sides() {
        let mut p = Pair::new(hello());
        p.drive();
        assert!(p.client.is_established() && p.server.is_established());
        assert!(
            matches!(&p.client_events[..], [ConnEvent::Authenticated { .. }, ConnEvent::Established { peer, .. }]
            if peer.node_id == Keypair::from_seed([2; 32]).node_id())
        );
        assert!(matches!(&p.server_events[..], [ConnEvent::Established { hello, .. }]
            if hello.agent == "petrel-test"));
    }

    #[test]
    fn messages_flow_after_establishment() {
        let mut p = Pair::new(hello());
        p.drive();
        let ping = Message::Request { id: 7, body: Request::Ping };
        p.client.send(&ping).unwrap();
        p.drive();
        assert_eq!(
            p.server_events.last(),
            Some(&ConnEvent::Message { msg: ping, frame_bytes: 16 })
        );
    }

    #[test]
    fn network_mismatch_closes_with_goodbye() {
        let mut p = Pair::new(Hello { network: "other".into(), ..hello() });
        p.drive();
        assert_eq!(
            p.client.error(),
            Some(&ConnError::HelloMismatch(GoodbyeReason::NetworkMismatch))
        );
        // The server hears our Goodbye before establishing.
        assert!(p.server_events.contains(&ConnEvent::Goodbye(GoodbyeReason::NetworkMismatch)));
        assert!(!p.server.is_established());
    }

    #[test]
    fn version_mismatch_is_reported() {
        let mut p = Pair::new(Hello { version: 2, ..hello() });
        p.drive();
        assert_eq!(
            p.client.error(),
            Some(&ConnError::HelloMismatch(GoodbyeReason::IncompatibleVersion))
        );
    }

    #[test]
    fn malformed_frame_after_hello_closes_with_protocol_violation() {
        let mut p = Pair::new(hello());
        p.drive();
        inject_plaintext(&mut p, &[0, 0, 0, 4, 9, 0, 0, 0]); // unknown Message tag 9
        assert_eq!(p.server.error(), Some(&ConnError::Decode(DecodeError::UnknownTag)));
        assert!(p.client_events.contains(&ConnEvent::Goodbye(GoodbyeReason::ProtocolViolation)));
    }

    #[test]
    fn oversized_frame_length_closes_connection() {
        let mut p = Pair::new(hello());
        p.drive();
        inject_plaintext(&mut p, &[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(p.server.error(), Some(ConnError::Frame(FrameError::TooLarge { .. }))));
    }

    #[test]
    fn second_hello_is_a_violation() {
        let mut p = Pair::new(hello());
        p.drive();
        let mut bytes = Vec::new();
        codec::encode_frame(&Message::Hello(hello()), 1 << 20, &mut bytes).unwrap();
        inject_plaintext(&mut p, &bytes);
        assert_eq!(p.server.error(), Some(&ConnError::UnexpectedMessage));
    }

    #[test]
    fn closing_for_idleness_tells_the_peer_why() {
        // The idle deadline itself is the core's (core/node_tests.rs); the connection carries
        // out the close with the reason it is given.
        let mut p = Pair::new(hello());
        p.drive();
        p.server.close(GoodbyeReason::IdleTimeout);
        assert_eq!(p.server.error(), Some(&ConnError::LocalClose(GoodbyeReason::IdleTimeout)));
        p.drive();
        assert!(p.client_events.contains(&ConnEvent::Goodbye(GoodbyeReason::IdleTimeout)));
        assert_eq!(p.client.error(), Some(&ConnError::PeerClosed));
    }

    #[test]
    fn each_frame_is_one_tls_record_header_included() {
        let mut p = Pair::new(hello());
        p.drive();
        let mut out = Vec::new();
        while p.client.wants_write() {
            p.client.write_tls(&mut out).unwrap();
        }
        let ping = Message::Request { id: 1, body: Request::Ping };
        p.client.send(&ping).unwrap();
        p.client.send(&ping).unwrap();
        let mut wire = Vec::new();
        while p.client.wants_write() {
            p.client.write_tls(&mut wire).unwrap();
        }
        // Two 20-byte frames: two application-data records of 5 + 20 + 1 + 16 bytes.
        let records = tls_record_lengths(&wire);
        assert_eq!(records, vec![20 + 1 + 16, 20 + 1 + 16]);
        assert_eq!(p.client.queued_bytes(), 0);
    }

    /// The payload lengths of the TLS records in `wire`.
    fn tls_record_lengths(mut wire: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        while wire.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
            out.push(len);
            wire = &wire[5 + len..];
        }
        out
    }

    #[test]
    fn garbage_instead_of_tls_fails_the_handshake() {
        let sk = Keypair::from_seed([2; 32]);
        let stls = TlsConfig::new(&sk, 0).unwrap().accept().unwrap();
        let mut server = Connection::new(stls.into(), hello(), conn_config());
        server.handle_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(server.error(), Some(ConnError::Tls(_))));
        assert!(server.error().is_some_and(ConnError::is_peer_misbehaviour));
    }

    #[test]
    fn errors_are_sticky_and_send_refuses() {
        let mut p = Pair::new(hello());
        p.drive();
        p.server.close(GoodbyeReason::Shutdown);
        let err = p.server.send(&Message::Request { id: 1, body: Request::Ping }).unwrap_err();
        assert_eq!(err, SendError::NotOpen(Some(ConnError::LocalClose(GoodbyeReason::Shutdown))));
        p.drive();
        assert!(p.client_events.contains(&ConnEvent::Goodbye(GoodbyeReason::Shutdown)));
    }

    #[test]
    fn a_frame_beyond_the_write_queue_bound_is_refused_whole() {
        let mut p = Pair::new(hello());
        p.drive();
        p.server.config.max_write_queue_bytes = 64 * 1024;
        let big = Message::Request {
            id: 1,
            body: Request::Store {
                record: crate::wire::messages::Record::Immutable {
                    value: crate::bytes::ByteBuf::from(vec![0; 60_000]),
                },
                ttl_secs: 1,
                expected_seq: None,
            },
        };
        // The peer never reads: the first 60 kB frame fits, the second does not.
        assert_eq!(p.server.send(&big), Ok(()));
        assert_eq!(p.server.send(&big), Err(SendError::WriteQueueFull));
        // Nothing of it was queued: the stream is intact and a small frame still fits.
        assert!(p.server.error().is_none());
        assert_eq!(p.server.send(&Message::Request { id: 2, body: Request::Ping }), Ok(()));
        p.drive();
        let received: Vec<_> = p
            .client_events
            .iter()
            .filter_map(|e| match e {
                ConnEvent::Message { msg: Message::Request { id, .. }, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(received, vec![1, 2]);
    }
}
