//! Drives one `NodeCore` (the router, its connection table and request matching, and the
//! Kademlia DHT it hosts) with a fuzz-chosen script of `Input`s: peers connect and leave, send
//! requests, answer the core's own requests with any response, dials succeed or fail, peers
//! go over budget, worker jobs finish or are refused, commands arrive, time jumps. The core is
//! sans-IO, so this reaches deep lookup and store states in microseconds.
//!
//! Checked on every step: no panic; after `handle_timeout(now)` the next deadline is later
//! than `now` (a deadline that stays due would spin the reactor); queries and the store stay
//! within their bounds.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use petrel::bytes::{ByteBuf, Bytes32, Bytes64};
use petrel::core::{Budget, Command, CommandId, ConnId, CoreConfig, Input, NodeCore, Output};
use petrel::core::PeerLimits;
use petrel::identity::{Keypair, NodeId};
use petrel::kad::dht::{DhtCommand, DhtConfig};
use petrel::kad::lookup::LookupConfig;
use petrel::protocol::jobs::{self, JobId};
use petrel::transport::CloseCause;
use petrel::wire::messages::{
    ErrorCode, Hello, Message, MutableRecord, PeerInfo, Record, Request, Response,
    PROTOCOL_VERSION,
};

/// Reads the script; every read past the end gives zeros, so any input is a valid script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }

    fn id(&mut self) -> NodeId {
        // A few distinct ids (so peers recur) with a tail that moves them around the space.
        let mut b = [0u8; 32];
        b[0] = self.byte();
        b[31] = self.byte() % 8;
        NodeId::from_bytes(b)
    }

    fn addr(&mut self) -> SocketAddr {
        SocketAddr::from(([10, self.byte() % 4, self.byte(), 1], 4000))
    }

    fn peers(&mut self) -> Vec<PeerInfo> {
        let n = usize::from(self.byte() % 24);
        (0..n).map(|_| PeerInfo { id: self.id(), addrs: vec![self.addr()] }).collect()
    }

    fn record(&mut self) -> Record {
        if self.byte() % 2 == 0 {
            let len = usize::from(self.byte());
            return Record::Immutable { value: ByteBuf::from(self.bytes(len)) };
        }
        let kp = Keypair::from_seed([self.byte(); 32]);
        let len = usize::from(self.byte());
        let value = self.bytes(len);
        let mut r = MutableRecord::sign(&kp, vec![self.byte()], u64::from(self.byte()), value);
        if self.byte() % 4 == 0 {
            r.signature = Bytes64([self.byte(); 64]);
        }
        if self.byte() % 8 == 0 {
            r.public_key = Bytes32([self.byte(); 32]);
        }
        Record::Mutable(r)
    }

    fn request(&mut self) -> Request {
        match self.byte() % 7 {
            0 => Request::Ping,
            1 => Request::FindNode { target: self.id() },
            2 => Request::FindValue { key: self.id() },
            3 => Request::GetProviders { key: self.id() },
            4 => {
                let provider = PeerInfo { id: self.id(), addrs: vec![self.addr()] };
                Request::AddProvider { key: self.id(), provider, ttl_secs: u32::from(self.byte()) }
            }
            _ => Request::Store {
                record: self.record(),
                ttl_secs: u32::from(self.byte()),
                expected_seq: (self.byte() % 3 == 0).then(|| u64::from(self.byte())),
            },
        }
    }

    fn response(&mut self) -> Response {
        match self.byte() % 7 {
            0 => Response::Pong { observed: self.addr() },
            1 => Response::Nodes { closer: self.peers() },
            2 => {
                let record = (self.byte() % 2 == 0).then(|| self.record());
                Response::Value { record, closer: self.peers() }
            }
            3 => Response::Stored,
            4 => Response::ProviderAdded,
            5 => Response::Providers { providers: self.peers(), closer: self.peers() },
            _ => Response::Error { code: ErrorCode::Overloaded, text: String::new() },
        }
    }
}

fn hello(addrs: Vec<SocketAddr>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        network: "petrel".into(),
        id_pow_bits: 0,
        features: 0,
        agent: String::new(),
        listen_addrs: addrs,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    // Half the inputs run lookups without the wider first round and connecting ahead (on by
    // default until round trips are measured short, which scripted answers rarely do), so
    // the plain α paths are reached too.
    let lookup = if s.byte() & 1 == 1 {
        LookupConfig { first_round: 0, preconnect: 0, ..LookupConfig::DEFAULT }
    } else {
        LookupConfig::DEFAULT
    };
    let config = CoreConfig {
        limits: PeerLimits { max_outbound: 4, max_inbound: 4, max_connections: 8, ..PeerLimits::DEFAULT },
        request_timeout: Duration::from_secs(10),
        max_pending_requests: 64,
        max_waiting_commands: 16,
        rng_seed: 1,
        dht: DhtConfig { max_queries: 8, max_deferred: 4, lookup, ..DhtConfig::default() },
        ..CoreConfig::default()
    };
    let mut core = NodeCore::new(NodeId::from_bytes([0x80; 32]), config);
    let mut now = Instant::now();
    // What the core has asked for and the script may answer.
    let mut conns: Vec<ConnId> = Vec::new();
    let mut dials: Vec<(ConnId, NodeId)> = Vec::new();
    let mut requests: Vec<(ConnId, u64)> = Vec::new();
    let mut jobs_waiting: Vec<(JobId, petrel::protocol::jobs::Job)> = Vec::new();
    let mut next_command = 0;
    let mut next_inbound = 0;
    // Dials TLS authenticated whose peer's Hello has not come: only requests may go out.
    let mut awaiting_hello: Vec<ConnId> = Vec::new();

    for _ in 0..256 {
        if s.0.is_empty() {
            break;
        }
        match s.byte() % 10 {
            0 => {
                now += Duration::from_millis(u64::from(s.byte()) * 250);
                core.handle_timeout(now);
                if let Some(next) = core.next_deadline() {
                    assert!(next > now, "a deadline stays due after handle_timeout");
                }
            }
            1 => {
                next_inbound += 1;
                let conn = ConnId::inbound(next_inbound);
                core.handle(now, Input::Accepted { conn, addr: s.addr() });
                let addrs = if s.byte() % 2 == 0 { vec![s.addr()] } else { vec![] };
                core.handle(now, Input::Established { conn, peer: s.id(), hello: hello(addrs).into() });
                conns.push(conn);
            }
            2 if !conns.is_empty() => {
                let conn = conns[usize::from(s.byte()) % conns.len()];
                let msg = Message::Request { id: u64::from(s.byte()), body: s.request() };
                core.handle(now, Input::Frame { conn, msg });
            }
            3 if !requests.is_empty() => {
                let (conn, id) = requests.swap_remove(usize::from(s.byte()) % requests.len());
                let msg = Message::Response { id, body: s.response() };
                core.handle(now, Input::Frame { conn, msg });
            }
            4 if !dials.is_empty() => {
                let i = usize::from(s.byte()) % dials.len();
                let (conn, peer) = dials[i];
                match s.byte() % 4 {
                    0 => {
                        dials.swap_remove(i);
                        awaiting_hello.retain(|c| *c != conn);
                        core.handle(now, Input::Closed { conn, cause: CloseCause::TcpFailed });
                    }
                    // TLS done: requests may go out before the peer's Hello, which comes
                    // later or never. Now and then a driver names another peer.
                    1 => {
                        let who = if s.byte() % 4 == 0 { s.id() } else { peer };
                        core.handle(now, Input::Authenticated { conn, peer: who });
                        awaiting_hello.push(conn);
                    }
                    _ => {
                        dials.swap_remove(i);
                        awaiting_hello.retain(|c| *c != conn);
                        let hello = hello(vec![s.addr()]).into();
                        core.handle(now, Input::Established { conn, peer, hello });
                        conns.push(conn);
                    }
                }
            }
            5 if !conns.is_empty() => {
                let conn = conns.swap_remove(usize::from(s.byte()) % conns.len());
                let budget = match s.byte() % 4 {
                    0 => Some(Budget::WriteQueue),
                    1 => Some(Budget::Inbound { strikes: u32::from(s.byte() % 6) }),
                    _ => None,
                };
                match budget {
                    Some(budget) => {
                        core.handle(now, Input::OverBudget { conn, budget });
                        conns.push(conn);
                    }
                    None => core.handle(now, Input::Closed { conn, cause: CloseCause::PeerClosed }),
                }
            }
            6 if !jobs_waiting.is_empty() => {
                let (id, job) = jobs_waiting.swap_remove(usize::from(s.byte()) % jobs_waiting.len());
                if s.byte() % 4 == 0 {
                    core.handle(now, Input::JobRefused { id });
                } else {
                    core.handle(now, Input::JobDone { id, result: jobs::run(job, None) });
                }
            }
            7 => {
                let cmd = match s.byte() % 6 {
                    0 => DhtCommand::FindNode { target: s.id() },
                    1 => DhtCommand::Bootstrap,
                    2 => DhtCommand::Get { key: s.id() },
                    3 => DhtCommand::Put { record: s.record(), expected_seq: None },
                    4 => {
                        let n = s.byte() % 4;
                        let contacts = (0..n)
                            .map(|_| PeerInfo { id: s.id(), addrs: vec![s.addr()] })
                            .collect();
                        DhtCommand::Join { contacts }
                    }
                    _ => DhtCommand::Providers { key: s.id() },
                };
                next_command += 1;
                let id = CommandId(next_command);
                core.handle(now, Input::Command { id, cmd: Command::Dht(cmd) });
            }
            8 => {
                next_command += 1;
                let cmd = Command::Connect { peer: s.id(), addr: s.addr() };
                core.handle(now, Input::Command { id: CommandId(next_command), cmd });
            }
            _ => {
                // An unsolicited response or a duplicate: must be ignored and counted.
                if let Some(&conn) = conns.first() {
                    let msg = Message::Response { id: u64::from(s.byte()), body: s.response() };
                    core.handle(now, Input::Frame { conn, msg });
                }
            }
        }
        while let Some(out) = core.poll_output() {
            match out {
                Output::Dial { conn, peer, .. } => dials.push((conn, peer)),
                Output::Send { conn, msg: Message::Request { id, .. } } => requests.push((conn, id)),
                Output::Send { conn, msg } => {
                    assert!(!awaiting_hello.contains(&conn), "{msg:?} before the peer's Hello");
                }
                Output::Disconnect { conn, reason } => {
                    conns.retain(|c| *c != conn);
                    dials.retain(|(c, _)| *c != conn);
                    awaiting_hello.retain(|c| *c != conn);
                    let cause = CloseCause::LocalClose(reason);
                    core.handle(now, Input::Closed { conn, cause });
                }
                Output::Job { id, job } => jobs_waiting.push((id, job)),
                _ => {}
            }
        }
        assert!(core.dht().queries_running() <= 8, "max_queries exceeded");
        assert!(core.dht().store().len() <= DhtConfig::default().store.max_records);
    }
});
