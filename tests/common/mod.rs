//! Helpers shared by the socket tests: starting nodes, bounded waits, and a raw TLS peer that
//! speaks frames directly (for behaviour a well-behaved node never shows).

#![allow(dead_code)] // each test binary uses some of these

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use petrel::identity::Keypair;
use petrel::transport::tls::TlsConfig;
use petrel::wire::codec;
use petrel::wire::frame::DEFAULT_MAX_FRAME_BYTES;
use petrel::wire::messages::{Hello, Message, PROTOCOL_VERSION};
use petrel::{Config, Node};

pub const WAIT: Duration = Duration::from_secs(10);

pub fn config(seed: u8) -> Config {
    Config { keypair: Some(Keypair::from_seed([seed; 32])), ..Config::default() }
}

pub fn start(config: Config) -> Node {
    Node::start(config).expect("node starts")
}

pub fn node(seed: u8) -> Node {
    start(config(seed))
}

/// Polls `cond` until it holds or `WAIT` passes.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- A test-side client speaking TLS and frames directly ----

/// A petrel connection driven by hand: rustls over a blocking `TcpStream`.
pub struct RawPeer {
    pub tls: rustls::ClientConnection,
    pub sock: TcpStream,
}

/// What a read of one frame found.
#[derive(Debug, PartialEq)]
pub enum Read1 {
    Frame(Message),
    /// The node closed: close_notify, EOF or reset.
    Closed,
}

impl RawPeer {
    /// Connects, completes TLS as `seed`'s key expecting `target`, and exchanges Hellos.
    pub fn connect(seed: u8, target: &Node) -> RawPeer {
        RawPeer::connect_to(seed, target.id(), target.local_addr())
    }

    /// Completes TLS as `seed`'s key and sends a Hello, without reading the node's first
    /// frame (a Hello, or a Goodbye that refuses us). It sends no Hello either.
    pub fn handshake(seed: u8, target: &Node) -> RawPeer {
        let tls_config = TlsConfig::new(&Keypair::from_seed([seed; 32]), 0).unwrap();
        let tls = tls_config.dial(target.id()).unwrap();
        let sock = TcpStream::connect(target.local_addr()).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        sock.set_write_timeout(Some(WAIT)).unwrap();
        let mut peer = RawPeer { tls, sock };
        while peer.tls.is_handshaking() {
            peer.tls.complete_io(&mut peer.sock).expect("TLS handshake");
        }
        peer
    }

    /// Like [`RawPeer::connect`], for a node known by its id and address.
    pub fn connect_to(
        seed: u8,
        id: petrel::identity::NodeId,
        addr: std::net::SocketAddr,
    ) -> RawPeer {
        RawPeer::connect_with(seed, id, addr, 0)
    }

    /// Like [`RawPeer::connect`], announcing gossip in its Hello.
    pub fn connect_gossip(seed: u8, target: &Node) -> RawPeer {
        let features = petrel::wire::messages::FEATURE_GOSSIP;
        RawPeer::connect_with(seed, target.id(), target.local_addr(), features)
    }

    /// Like [`RawPeer::connect_to`], with these Hello feature bits.
    pub fn connect_with(
        seed: u8,
        id: petrel::identity::NodeId,
        addr: std::net::SocketAddr,
        features: u64,
    ) -> RawPeer {
        let tls_config = TlsConfig::new(&Keypair::from_seed([seed; 32]), 0).unwrap();
        let tls = tls_config.dial(id).unwrap();
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        sock.set_write_timeout(Some(WAIT)).unwrap();
        let mut peer = RawPeer { tls, sock };
        while peer.tls.is_handshaking() {
            peer.tls.complete_io(&mut peer.sock).expect("TLS handshake");
        }
        assert_eq!(peer.tls.alpn_protocol(), Some(&b"petrel/1"[..]));
        let hello = Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            network: "petrel".into(),
            id_pow_bits: 0,
            features,
            agent: "limits-test".into(),
            listen_addrs: vec![],
        });
        let mut frame = Vec::new();
        codec::encode_frame(&hello, DEFAULT_MAX_FRAME_BYTES, &mut frame).unwrap();
        peer.send_raw(&frame);
        match peer.read_frame() {
            Read1::Frame(Message::Hello(h)) => {
                assert_eq!(h.network, "petrel");
                assert_eq!(h.version, PROTOCOL_VERSION);
            }
            other => panic!("expected the node's Hello, got {other:?}"),
        }
        peer
    }

    /// Sends `msg` as one frame.
    pub fn send_msg(&mut self, msg: &Message) {
        let mut frame = Vec::new();
        codec::encode_frame(msg, DEFAULT_MAX_FRAME_BYTES, &mut frame).unwrap();
        self.send_raw(&frame);
    }

    /// Sends `bytes` as application data, flushed to the socket.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        // rustls buffers at most 64 KiB of plaintext: write in pieces, flushing each.
        for piece in bytes.chunks(16 << 10) {
            self.tls.writer().write_all(piece).unwrap();
            while self.tls.wants_write() {
                self.tls.write_tls(&mut self.sock).unwrap();
            }
        }
    }

    /// Like [`RawPeer::send_raw`], but an error (the node closed, or stopped reading for the
    /// write timeout) ends the sending instead of failing the test.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        for piece in bytes.chunks(16 << 10) {
            self.tls.writer().write_all(piece)?;
            while self.tls.wants_write() {
                self.tls.write_tls(&mut self.sock)?;
            }
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` plaintext bytes; false if the node closed first.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> bool {
        let mut stream = rustls::Stream::new(&mut self.tls, &mut self.sock);
        match stream.read_exact(buf) {
            Ok(()) => true,
            Err(e) => {
                // A blocking read timing out is a failed bound, not a close.
                assert!(
                    !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
                    "node neither answered nor closed within {WAIT:?}"
                );
                false
            }
        }
    }

    pub fn read_frame(&mut self) -> Read1 {
        let mut header = [0u8; 4];
        if !self.read_exact(&mut header) {
            return Read1::Closed;
        }
        let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
        if !self.read_exact(&mut payload) {
            return Read1::Closed;
        }
        Read1::Frame(
            codec::decode(&payload, DEFAULT_MAX_FRAME_BYTES).expect("node sends valid frames"),
        )
    }

    /// Everything the node sends until it closes, bounded by the read timeout.
    pub fn read_until_closed(&mut self) -> Vec<Message> {
        let mut got = Vec::new();
        loop {
            match self.read_frame() {
                Read1::Frame(m) => got.push(m),
                Read1::Closed => return got,
            }
            assert!(got.len() < 16, "node keeps talking instead of closing: {got:?}");
        }
    }
}
