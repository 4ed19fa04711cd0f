//! One connection, sans-IO: a rustls session, a frame decoder, the post-TLS Hello exchange
//! and the connection's timers (proto-spec/transport.md, framing.md, handshake.md).
//!
//! Bytes in ([`Connection::handle_input`]), TLS bytes out ([`Connection::write_tls`]),
//! events out ([`Connection::poll_event`]). No socket and no clock: `now` is an argument.
//!
//! Driving contract: after `handle_input`, `send`, `close` or `handle_timeout`, drain
//! `poll_event` until `None`, write out while `wants_write()`, then wait for readability or
//! `next_deadline()`. Once `error()` is `Some`, the connection is finished: flush what it
//! still wants to write (a Goodbye or TLS alert) and drop it.
//!
//! States (each entered only through `set_state`):
//! - `Handshaking`: TLS in progress; ends at the handshake deadline.
//! - `AwaitingHello`: TLS done and our Hello sent; the peer's Hello must come first, before
//!   the hello deadline.
//! - `Established`: messages flow; the idle deadline moves with every frame received.
//! - `Closed`: an error or a Goodbye ended it; sticky.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::transport::tls::{peer_identity, PeerIdentity};
use crate::wire::codec::{self, DecodeError, EncodeError};
use crate::wire::frame::{FrameDecoder, FrameError};
use crate::wire::messages::{Goodbye, GoodbyeReason, Hello, Message, PROTOCOL_VERSION};

/// Per-connection settings; defaults live in `config`.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Maximum frame payload, both directions.
    pub max_frame_bytes: usize,
    /// Bytes of TLS output that may wait for the socket; a peer that does not read is
    /// disconnected rather than buffered for.
    pub max_write_queue_bytes: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed between the end of TLS and the peer's Hello.
    pub hello_timeout: Duration,
    /// Time without a received frame after which the connection closes.
    pub idle_timeout: Duration,
    /// Our network name; a peer must send the same.
    pub network: String,
    /// Our id-PoW difficulty; a peer must send the same.
    pub id_pow_bits: u8,
}

/// What a connection reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
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
    /// The TLS handshake did not finish in time.
    HandshakeTimeout,
    /// The peer's Hello did not arrive in time.
    HelloTimeout,
    /// Nothing was received for the idle timeout.
    IdleTimeout,
    /// The write queue is full: the peer does not read.
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
    /// Deadline of the current state (handshake, hello or idle).
    deadline_at: Instant,
    events: VecDeque<ConnEvent>,
    error: Option<ConnError>,
}

impl Connection {
    /// Wraps a fresh rustls session (from `TlsConfig::dial` or `accept`). `local_hello` is
    /// sent as soon as TLS completes.
    pub fn new(
        now: Instant,
        mut tls: rustls::Connection,
        local_hello: Hello,
        config: ConnConfig,
    ) -> Connection {
        tls.set_buffer_limit(Some(config.max_write_queue_bytes));
        Connection {
            tls,
            decoder: FrameDecoder::new(config.max_frame_bytes),
            deadline_at: now + config.handshake_timeout,
            config,
            state: State::Handshaking,
            local_hello,
            peer: None,
            events: VecDeque::new(),
            error: None,
        }
    }

    /// Feeds bytes received from the socket. An empty slice means end of stream.
    pub fn handle_input(&mut self, now: Instant, mut input: &[u8]) {
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
            self.process(now);
        }
    }

    /// Writes pending TLS bytes to `out` (the socket, or a buffer in tests).
    pub fn write_tls(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        self.tls.write_tls(out)
    }

    /// Queues `msg` for the peer. Only valid once established; errors are also sticky.
    pub fn send(&mut self, msg: &Message) -> Result<(), ConnError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.state != State::Established {
            return Err(ConnError::UnexpectedMessage);
        }
        self.write_frame(msg)
    }

    /// Queues an already encoded frame payload (see `codec::encode_payload`); the header is
    /// added here. Same rules as [`Connection::send`].
    pub fn send_payload(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.state != State::Established {
            return Err(ConnError::UnexpectedMessage);
        }
        self.write_payload(payload)
    }

    /// Sends Goodbye and close_notify, then the connection is closed once flushed.
    pub fn close(&mut self, reason: GoodbyeReason) {
        if self.error.is_some() {
            return;
        }
        if matches!(self.state, State::AwaitingHello | State::Established) {
            let _ = self.write_frame(&Message::Goodbye(Goodbye { reason }));
        }
        self.tls.send_close_notify();
        self.set_state(State::Closed);
        self.error = Some(ConnError::LocalClose(reason));
    }

    /// Fires the current state's deadline if it has passed. Cheap when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.error.is_some() || now < self.deadline_at {
            return;
        }
        match self.state {
            State::Handshaking => self.fail(ConnError::HandshakeTimeout),
            State::AwaitingHello => self.fail(ConnError::HelloTimeout),
            State::Established => {
                self.close(GoodbyeReason::IdleTimeout);
                self.error = Some(ConnError::IdleTimeout);
            }
            State::Closed => {}
        }
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

    /// When `handle_timeout` must next be called; `None` once closed.
    pub fn next_deadline(&self) -> Option<Instant> {
        (self.error.is_none()).then_some(self.deadline_at)
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

    /// Whether the Hello exchange completed and the connection is open.
    pub fn is_established(&self) -> bool {
        self.state == State::Established && self.error.is_none()
    }

    fn process(&mut self, now: Instant) {
        if let Err(e) = self.tls.process_new_packets() {
            return self.fail(ConnError::Tls(e));
        }
        if self.state == State::Handshaking && !self.tls.is_handshaking() {
            self.on_handshake_done(now);
        }
        self.read_plaintext(now);
    }

    fn on_handshake_done(&mut self, now: Instant) {
        let Some(peer) = peer_identity(&self.tls) else {
            return self.fail(ConnError::NoProtocol);
        };
        self.peer = Some(peer);
        self.set_state(State::AwaitingHello);
        self.deadline_at = now + self.config.hello_timeout;
        let hello = Message::Hello(self.local_hello.clone());
        if let Err(e) = self.write_frame(&hello) {
            self.fail(e);
        }
    }

    /// Moves decrypted bytes into the frame decoder and handles each whole frame.
    fn read_plaintext(&mut self, now: Instant) {
        let mut buf = [0u8; 4096];
        while self.error.is_none() {
            let n = match self.tls.reader().read(&mut buf) {
                Ok(0) => return self.fail(ConnError::PeerClosed),
                Ok(n) => n,
                // WouldBlock: no plaintext buffered right now.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.fail(ConnError::PeerClosed),
            };
            let mut chunk = &buf[..n];
            while self.error.is_none() {
                match self.decoder.decode(&mut chunk) {
                    Ok(Some(frame)) => self.on_frame(now, &frame),
                    Ok(None) => break,
                    Err(e) => return self.fail(ConnError::Frame(e)),
                }
            }
        }
    }

    fn on_frame(&mut self, now: Instant, frame: &[u8]) {
        let msg = match codec::decode(frame, self.config.max_frame_bytes) {
            Ok(m) => m,
            Err(e) => return self.fail(ConnError::Decode(e)),
        };
        match (self.state, msg) {
            // handshake.md §3: a Goodbye may come at any time after TLS.
            (_, Message::Goodbye(g)) => {
                self.events.push_back(ConnEvent::Goodbye(g.reason));
                self.set_state(State::Closed);
                self.error = Some(ConnError::PeerClosed);
            }
            // handshake.md §2: the first frame is the peer's Hello.
            (State::AwaitingHello, Message::Hello(h)) => self.on_hello(now, h),
            (State::Established, Message::Hello(_)) | (State::AwaitingHello, _) => {
                self.fail(ConnError::UnexpectedMessage)
            }
            (State::Established, other) => {
                self.deadline_at = now + self.config.idle_timeout;
                let frame_bytes = frame.len();
                self.events.push_back(ConnEvent::Message { msg: other, frame_bytes });
            }
            // No frames can be decoded while handshaking or after close.
            (State::Handshaking | State::Closed, _) => {}
        }
    }

    /// handshake.md §3: version must be the ALPN-selected one; network and difficulty equal.
    fn on_hello(&mut self, now: Instant, hello: Hello) {
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
        self.deadline_at = now + self.config.idle_timeout;
        self.events.push_back(ConnEvent::Established { peer, hello });
    }

    fn write_frame(&mut self, msg: &Message) -> Result<(), ConnError> {
        // Only Goodbye and callers of `send` come here; the reactor encodes into pooled
        // buffers and calls `send_payload`, so no connection keeps a frame-sized buffer.
        let mut payload = Vec::new();
        codec::encode_payload(msg, self.config.max_frame_bytes, &mut payload)
            .map_err(ConnError::Encode)?;
        self.write_payload(&payload)
    }

    fn write_payload(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&n| n as usize <= self.config.max_frame_bytes)
            .ok_or(ConnError::Encode(EncodeError::Frame(FrameError::TooLarge {
                len: payload.len(),
                max: self.config.max_frame_bytes,
            })))?;
        // rustls accepts all or part of it up to the buffer limit; a partial write means the
        // queue is full and the stream is no longer usable, so the connection ends.
        let mut writer = self.tls.writer();
        let header_ok = matches!(writer.write(&len.to_be_bytes()), Ok(4));
        if header_ok && matches!(writer.write(payload), Ok(n) if n == payload.len()) {
            return Ok(());
        }
        self.fail(ConnError::WriteQueueFull);
        Err(ConnError::WriteQueueFull)
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
            let _ = self.write_frame(&Message::Goodbye(Goodbye { reason }));
            self.tls.send_close_notify();
        }
        self.set_state(State::Closed);
        self.error = Some(error);
    }

    fn set_state(&mut self, new: State) {
        self.state = new;
    }
}

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
            Self::HandshakeTimeout => "handshake_timeout",
            Self::HelloTimeout => "hello_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::WriteQueueFull => "write_queue_full",
            Self::Encode(_) => "encode",
            Self::PeerClosed => "peer_closed",
            Self::TcpFailed => "tcp_failed",
            Self::LocalClose(_) => "local_close",
        }
    }

    /// Whether the peer broke the protocol (as opposed to timing out or closing).
    pub fn is_peer_misbehaviour(&self) -> bool {
        matches!(
            self,
            Self::Tls(_)
                | Self::NoProtocol
                | Self::Frame(_)
                | Self::Decode(_)
                | Self::UnexpectedMessage
        )
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
            Self::HandshakeTimeout => f.write_str("TLS handshake timed out"),
            Self::HelloTimeout => f.write_str("peer's Hello timed out"),
            Self::IdleTimeout => f.write_str("connection idle"),
            Self::WriteQueueFull => f.write_str("write queue full: peer is not reading"),
            Self::Encode(e) => e.fmt(f),
            Self::PeerClosed => f.write_str("peer closed the connection"),
            Self::TcpFailed => f.write_str("TCP connection failed"),
            Self::LocalClose(r) => write!(f, "closed locally ({r:?})"),
        }
    }
}

impl std::error::Error for ConnError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::transport::tls::TlsConfig;
    use crate::wire::messages::Request;

    const SECOND: Duration = Duration::from_secs(1);

    fn conn_config() -> ConnConfig {
        ConnConfig {
            max_frame_bytes: 1 << 20,
            max_write_queue_bytes: 1 << 20,
            handshake_timeout: 10 * SECOND,
            hello_timeout: 10 * SECOND,
            idle_timeout: 60 * SECOND,
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
        now: Instant,
        client: Connection,
        server: Connection,
        client_events: Vec<ConnEvent>,
        server_events: Vec<ConnEvent>,
    }

    impl Pair {
        fn new(server_hello: Hello) -> Pair {
            let now = Instant::now();
            let ck = Keypair::from_seed([1; 32]);
            let sk = Keypair::from_seed([2; 32]);
            let ctls = TlsConfig::new(&ck, 0).unwrap().dial(sk.node_id()).unwrap();
            let stls = TlsConfig::new(&sk, 0).unwrap().accept().unwrap();
            Pair {
                now,
                client: Connection::new(now, ctls.into(), hello(), conn_config()),
                server: Connection::new(now, stls.into(), server_hello, conn_config()),
                client_events: vec![],
                server_events: vec![],
            }
        }

        /// Shuttles bytes until quiet, collecting events.
        fn drive(&mut self) {
            for _ in 0..64 {
                let a = shuttle(self.now, &mut self.client, &mut self.server);
                let b = shuttle(self.now, &mut self.server, &mut self.client);
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

    fn shuttle(now: Instant, from: &mut Connection, to: &mut Connection) -> bool {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            to.handle_input(now, &buf);
        }
        !buf.is_empty()
    }

    /// Sends raw plaintext bytes from the client, bypassing framing checks, as an attacker.
    fn inject_plaintext(pair: &mut Pair, bytes: &[u8]) {
        pair.client.tls.writer().write_all(bytes).unwrap();
        pair.drive();
    }

    #[test]
    fn hello_exchange_establishes_both_sides() {
        let mut p = Pair::new(hello());
        p.drive();
        assert!(p.client.is_established() && p.server.is_established());
        assert!(matches!(&p.client_events[..], [ConnEvent::Established { peer, .. }]
            if peer.node_id == Keypair::from_seed([2; 32]).node_id()));
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
    fn handshake_deadline_fires_exactly_at_deadline() {
        let now = Instant::now();
        let sk = Keypair::from_seed([2; 32]);
        let stls = TlsConfig::new(&sk, 0).unwrap().accept().unwrap();
        let mut server = Connection::new(now, stls.into(), hello(), conn_config());
        assert_eq!(server.next_deadline(), Some(now + 10 * SECOND));
        server.handle_timeout(now + 10 * SECOND - Duration::from_millis(1));
        assert!(server.error().is_none());
        server.handle_timeout(now + 10 * SECOND);
        assert_eq!(server.error(), Some(&ConnError::HandshakeTimeout));
        assert_eq!(server.next_deadline(), None);
    }

    #[test]
    fn idle_deadline_moves_with_traffic_and_closes_with_goodbye() {
        let mut p = Pair::new(hello());
        p.drive();
        let t0 = p.now;
        p.now = t0 + 30 * SECOND;
        p.client.send(&Message::Request { id: 1, body: Request::Ping }).unwrap();
        p.drive();
        assert_eq!(p.server.next_deadline(), Some(t0 + 90 * SECOND));
        p.server.handle_timeout(t0 + 60 * SECOND);
        assert!(p.server.is_established());
        p.server.handle_timeout(t0 + 90 * SECOND);
        assert_eq!(p.server.error(), Some(&ConnError::IdleTimeout));
        p.drive();
        assert!(p.client_events.contains(&ConnEvent::Goodbye(GoodbyeReason::IdleTimeout)));
    }

    #[test]
    fn garbage_instead_of_tls_fails_the_handshake() {
        let now = Instant::now();
        let sk = Keypair::from_seed([2; 32]);
        let stls = TlsConfig::new(&sk, 0).unwrap().accept().unwrap();
        let mut server = Connection::new(now, stls.into(), hello(), conn_config());
        server.handle_input(now, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(server.error(), Some(ConnError::Tls(_))));
        assert!(server.error().is_some_and(ConnError::is_peer_misbehaviour));
    }

    #[test]
    fn errors_are_sticky_and_send_refuses() {
        let mut p = Pair::new(hello());
        p.drive();
        p.server.close(GoodbyeReason::Shutdown);
        let err = p.server.send(&Message::Request { id: 1, body: Request::Ping }).unwrap_err();
        assert_eq!(err, ConnError::LocalClose(GoodbyeReason::Shutdown));
        p.drive();
        assert!(p.client_events.contains(&ConnEvent::Goodbye(GoodbyeReason::Shutdown)));
    }

    #[test]
    fn peer_that_never_reads_fills_the_write_queue() {
        let mut p = Pair::new(hello());
        p.drive();
        p.server.config.max_write_queue_bytes = 64 * 1024;
        p.server.tls.set_buffer_limit(Some(64 * 1024));
        let big = Message::Request {
            id: 1,
            body: Request::Store {
                record: crate::wire::messages::Record::Immutable {
                    value: crate::bytes::ByteBuf(vec![0; 60_000]),
                },
                ttl_secs: 1,
                expected_seq: None,
            },
        };
        let mut result = Ok(());
        for _ in 0..4 {
            result = p.server.send(&big);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ConnError::WriteQueueFull));
    }
}
