//! The commands against a running node (`petrel status`, `put`, `get`, `subscribe`, ...): each
//! sends one request over the node's control socket, `DIR/control.sock`
//! (proto-spec/control.md), and prints the answer.
//!
//! Output is for people by default and one JSON value with `--json` (an object, or an array
//! for lists; `subscribe` prints one object per line), byte strings in hex. `get` writes the
//! value's bytes exactly as stored. A failure is one line on stderr and a non-zero status:
//! [`CtlError::Usage`] (2) for a command line that cannot be sent, [`CtlError::Failed`] (1)
//! for anything after that.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::addr::PeerAddr;
use crate::bytes::hex_encode;
use crate::cli::usage::{self, Checked, Parsed};
use crate::control::protocol::{Delivered, PeerDirection, PeerEntry, Status};
use crate::control::{Client, ClientError, ControlErrorCode, ControlRequest, ControlResponse};
use crate::identity::{Keypair, NodeId};
use crate::text::quote;
use crate::wire::messages::{
    MutableRecord, PeerInfo, Record, MAX_PAYLOAD_BYTES, MAX_SALT_BYTES, MAX_TOPIC_BYTES,
    MAX_VALUE_BYTES,
};

/// The commands of this module, as typed after `petrel`.
pub const COMMANDS: [&str; 11] = [
    "status",
    "peers",
    "connect",
    "put",
    "put-mutable",
    "get",
    "provide",
    "providers",
    "publish",
    "subscribe",
    "shutdown",
];

/// How long a command waits for the node's answer: above the node's own call timeout, which
/// bounds every DHT and gossip operation.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `shutdown` waits for the node to be down.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `name` is one of [`COMMANDS`].
pub fn is_command(name: &str) -> bool {
    COMMANDS.contains(&name)
}

/// Runs `petrel COMMAND ARGS...`.
pub fn main(command: &str, args: &[String]) -> Result<(), CtlError> {
    if usage::check(command, args).map_err(CtlError::Usage)? == Checked::Helped {
        return Ok(());
    }
    let spec = usage::command(command).ok_or_else(|| CtlError::Usage(command.into()))?;
    let parsed = usage::parse(spec, args).map_err(CtlError::Usage)?;
    let dir =
        parsed.flag("--data-dir").ok_or(CtlError::Usage("--data-dir DIR is required".into()))?;
    let request = request(command, &parsed)?;
    let failed = |e: ClientError| match e {
        ClientError::Unreachable { .. } => {
            CtlError::Failed(format!("{e} (is `petrel run --data-dir {dir}` running?)"))
        }
        e => CtlError::Failed(format!("{command}: {e}")),
    };
    let mut client = Client::connect(Path::new(dir)).map_err(failed)?;
    let out = Output { command, json: parsed.switch("--json") };
    if let ControlRequest::Subscribe { topic } = &request {
        return out.subscribe(&mut client, topic).or_else(|e| e.or_client(failed));
    }
    let answer = client.call(&request, ANSWER_TIMEOUT).map_err(failed)?;
    if answer == ControlResponse::ShuttingDown {
        return out.shutdown(&mut client).or_else(|e| e.or_client(failed));
    }
    out.answer(&request, answer).or_else(|e| e.or_client(failed))
}

/// Why a command failed; `Display` is the line printed after `petrel: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlError {
    /// The command line is wrong; nothing was sent.
    Usage(String),
    /// The node could not be reached, refused, or the operation failed.
    Failed(String),
}

impl CtlError {
    /// The process exit status for it.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) => 1,
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(s) | Self::Failed(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for CtlError {}

// ---------------------------------------------------------------------------------------------
// Building the request
// ---------------------------------------------------------------------------------------------

/// The request for `command` from its arguments; a usage error when they do not make one.
fn request(command: &str, p: &Parsed<'_>) -> Result<ControlRequest, CtlError> {
    let arg = |i: usize, name: &str| {
        p.positional.get(i).copied().ok_or_else(|| usage(format!("{name} is required")))
    };
    Ok(match command {
        "status" => ControlRequest::Status,
        "peers" => ControlRequest::Peers,
        "connect" => {
            let text = arg(0, "NODEID@HOST:PORT")?;
            let peer: PeerAddr = text.parse().map_err(|e| usage(format!("{text:?}: {e}")))?;
            ControlRequest::Connect { id: peer.id, addr: peer.addr }
        }
        "put" => ControlRequest::Put { value: bytes_arg(p, 0, "VALUE", MAX_VALUE_BYTES)?.into() },
        "put-mutable" => ControlRequest::PutMutable { record: mutable_record(p)? },
        "get" => ControlRequest::Get { key: key_arg(arg(0, "KEY")?)? },
        "provide" => ControlRequest::Provide { key: key_arg(arg(0, "KEY")?)? },
        "providers" => ControlRequest::Providers { key: key_arg(arg(0, "KEY")?)? },
        "publish" => ControlRequest::Publish {
            topic: topic_arg(arg(0, "TOPIC")?)?,
            payload: bytes_arg(p, 1, "MESSAGE", MAX_PAYLOAD_BYTES)?.into(),
        },
        "subscribe" => ControlRequest::Subscribe { topic: topic_arg(arg(0, "TOPIC")?)? },
        "shutdown" => ControlRequest::Shutdown,
        other => return Err(usage(format!("unknown command {other:?}"))),
    })
}

fn usage(text: String) -> CtlError {
    CtlError::Usage(text)
}

/// The mutable record `put-mutable` signs with the key file's key.
fn mutable_record(p: &Parsed<'_>) -> Result<MutableRecord, CtlError> {
    let required = |name: &str| p.flag(name).ok_or_else(|| usage(format!("{name} is required")));
    let keypair = Keypair::load(Path::new(required("--key-file")?))
        .map_err(|e| CtlError::Failed(format!("put-mutable: {e}")))?;
    let salt = required("--salt")?.as_bytes().to_vec();
    if salt.len() > MAX_SALT_BYTES {
        return Err(usage(format!("--salt: {} bytes, at most {MAX_SALT_BYTES}", salt.len())));
    }
    let seq = required("--seq")?;
    let seq: u64 = seq.parse().map_err(|e| usage(format!("--seq {seq:?}: {e}")))?;
    let value = bytes_arg(p, 0, "VALUE", MAX_VALUE_BYTES)?;
    Ok(MutableRecord::sign(&keypair, salt, seq, value))
}

/// The bytes given either as the positional argument `index` or by `--file F` (`-`: stdin),
/// at most `max` of them.
fn bytes_arg(p: &Parsed<'_>, index: usize, name: &str, max: usize) -> Result<Vec<u8>, CtlError> {
    match (p.flag("--file"), p.positional.get(index)) {
        (Some(_), Some(_)) => Err(usage(format!("give --file F or {name}, not both"))),
        (None, None) => Err(usage(format!("{name} or --file F is required"))),
        (None, Some(text)) if text.len() > max => {
            Err(usage(format!("{name}: {} bytes, at most {max}", text.len())))
        }
        (None, Some(text)) => Ok(text.as_bytes().to_vec()),
        (Some(path), None) => match read_bounded(path, max) {
            Ok(bytes) if bytes.len() > max => {
                Err(CtlError::Failed(format!("{path}: more than {max} bytes")))
            }
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(CtlError::Failed(format!("{path}: {e}"))),
        },
    }
}

/// The contents of `path` (`-`: stdin), reading at most one byte more than `max`: enough to
/// tell that it is too long without holding more.
fn read_bounded(path: &str, max: usize) -> io::Result<Vec<u8>> {
    let limit = max as u64 + 1;
    let mut bytes = Vec::new();
    if path == "-" {
        io::stdin().lock().take(limit).read_to_end(&mut bytes)?;
    } else {
        File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

fn key_arg(text: &str) -> Result<NodeId, CtlError> {
    text.parse().map_err(|_| usage(format!("KEY {text:?}: expected 64 hex digits")))
}

fn topic_arg(topic: &str) -> Result<String, CtlError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(usage(format!("TOPIC must be 1 to {MAX_TOPIC_BYTES} bytes")));
    }
    Ok(topic.to_string())
}

// ---------------------------------------------------------------------------------------------
// Printing the answer
// ---------------------------------------------------------------------------------------------

/// Where and how a command prints.
struct Output<'a> {
    command: &'a str,
    json: bool,
}

/// Why printing stopped: the node's refusal or a broken stdout, the socket, or a reader that
/// went away (a closed pipe, which ends the command quietly).
enum PrintError {
    Ctl(CtlError),
    Client(ClientError),
    StdoutClosed,
}

impl PrintError {
    /// The command's outcome.
    fn or_client(self, f: impl FnOnce(ClientError) -> CtlError) -> Result<(), CtlError> {
        match self {
            Self::Ctl(e) => Err(e),
            Self::Client(e) => Err(f(e)),
            Self::StdoutClosed => Ok(()),
        }
    }
}

impl From<io::Error> for PrintError {
    fn from(e: io::Error) -> PrintError {
        PrintError::Ctl(CtlError::Failed(format!("stdout: {e}")))
    }
}

impl From<ClientError> for PrintError {
    fn from(e: ClientError) -> PrintError {
        PrintError::Client(e)
    }
}

impl Output<'_> {
    /// Prints the answer to a one-answer request.
    fn answer(&self, request: &ControlRequest, answer: ControlResponse) -> Result<(), PrintError> {
        let text = match (request, answer) {
            (_, ControlResponse::Error { code, text }) => return Err(self.refused(code, &text)),
            (_, ControlResponse::Status(s)) => self.status(&s),
            (_, ControlResponse::Peers { peers }) => self.peers(&peers),
            (_, ControlResponse::Connected { id }) => match self.json {
                true => format!("{{\"id\":\"{id:#}\"}}\n"),
                false => format!("connected to {id:#}\n"),
            },
            (req, ControlResponse::Stored { key, stored, attempted }) => match self.json {
                true => format!(
                    "{{\"key\":\"{key:#}\",\"stored\":{stored},\"attempted\":{attempted}}}\n"
                ),
                false if matches!(req, ControlRequest::Provide { .. }) => {
                    format!("announced to {stored} of {attempted} peers\n")
                }
                false => format!("{key:#}\n"),
            },
            (_, ControlResponse::Value { record, local }) => {
                if !self.json {
                    return write_stdout(record.value());
                }
                value_json(&record, local)
            }
            (_, ControlResponse::Providers { providers }) => self.providers(&providers),
            (_, ControlResponse::Published { id, peers }) => match self.json {
                true => format!("{{\"id\":\"{}\",\"peers\":{peers}}}\n", hex_encode(&id.0)),
                false => format!("published {} to {peers} peers\n", hex_encode(&id.0)),
            },
            (_, other) => return Err(self.unexpected(&other)),
        };
        write_stdout(text.as_bytes())
    }

    /// Streams `topic`'s messages, one line each, until the node or stdout goes away.
    fn subscribe(&self, client: &mut Client, topic: &str) -> Result<(), PrintError> {
        let request = ControlRequest::Subscribe { topic: topic.to_string() };
        match client.call(&request, ANSWER_TIMEOUT)? {
            ControlResponse::Subscribed => eprintln!("petrel: subscribed to {topic:?}"),
            ControlResponse::Error { code, text } => return Err(self.refused(code, &text)),
            other => return Err(self.unexpected(&other)),
        }
        let mut lost = 0;
        loop {
            match client.recv(None) {
                Ok(ControlResponse::Message(d)) => {
                    if d.lost > lost {
                        eprintln!("petrel: subscribe: {} messages lost", d.lost - lost);
                        lost = d.lost;
                    }
                    let line = if self.json { delivered_json(&d) } else { escape_line(&d) };
                    write_stdout(line.as_bytes())?;
                }
                Ok(ControlResponse::Error { code, text }) => return Err(self.refused(code, &text)),
                Ok(other) => return Err(self.unexpected(&other)),
                Err(ClientError::Closed) => {
                    return Err(self.failed("the node closed the subscription (stopped?)"))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// After `ShuttingDown`: waits until the node closes the socket, which it does once down.
    fn shutdown(&self, client: &mut Client) -> Result<(), PrintError> {
        match client.recv(Some(Instant::now() + SHUTDOWN_TIMEOUT)) {
            Err(ClientError::Closed) => write_stdout(b"node stopped\n"),
            Err(ClientError::TimedOut) => Err(self.failed("the node did not stop within 30 s")),
            Err(e) => Err(e.into()),
            Ok(other) => Err(self.unexpected(&other)),
        }
    }

    fn status(&self, s: &Status) -> String {
        let dial = PeerAddr { id: s.id, addr: s.listen_addr };
        if self.json {
            let topics: Vec<String> = s
                .topics
                .iter()
                .map(|t| {
                    format!("{{\"topic\":{},\"mesh_peers\":{}}}", quote(&t.topic), t.mesh_peers)
                })
                .collect();
            return format!(
                "{{\"id\":\"{:#}\",\"listen_addr\":\"{}\",\"uptime_secs\":{},\"peers\":{},\
                 \"connections_inbound\":{},\"connections_outbound\":{},\"routing_entries\":{},\
                 \"records\":{},\"provider_records\":{},\"topics\":[{}]}}\n",
                s.id,
                s.listen_addr,
                s.uptime_secs,
                s.peers,
                s.connections_inbound,
                s.connections_outbound,
                s.routing_entries,
                s.records,
                s.provider_records,
                topics.join(",")
            );
        }
        let topics: Vec<String> = s
            .topics
            .iter()
            .map(|t| format!("{} (mesh {})", escape(t.topic.as_bytes()), t.mesh_peers))
            .collect();
        format!(
            "id       {:#}\nlisten   {} (dial it as {dial})\nuptime   {} s\n\
             peers    {} ({} inbound, {} outbound connections)\nrouting  {} entries\n\
             records  {} ({} provider entries)\ntopics   {}\n",
            s.id,
            s.listen_addr,
            s.uptime_secs,
            s.peers,
            s.connections_inbound,
            s.connections_outbound,
            s.routing_entries,
            s.records,
            s.provider_records,
            if topics.is_empty() { "none".to_string() } else { topics.join(", ") }
        )
    }

    fn peers(&self, peers: &[PeerEntry]) -> String {
        let direction = |d: PeerDirection| match d {
            PeerDirection::Inbound => "inbound",
            PeerDirection::Outbound => "outbound",
        };
        if self.json {
            let items: Vec<String> = peers
                .iter()
                .map(|p| {
                    let listen: Vec<String> =
                        p.listen_addrs.iter().map(|a| format!("\"{a}\"")).collect();
                    format!(
                        "{{\"id\":\"{:#}\",\"addr\":\"{}\",\"direction\":\"{}\",\"agent\":{},\
                         \"listen_addrs\":[{}]}}",
                        p.id,
                        p.addr,
                        direction(p.direction),
                        quote(&p.agent),
                        listen.join(",")
                    )
                })
                .collect();
            return format!("[{}]\n", items.join(","));
        }
        peers
            .iter()
            .map(|p| {
                let agent = escape(p.agent.as_bytes());
                format!("{:#}@{} {} {agent}\n", p.id, p.addr, direction(p.direction))
            })
            .collect()
    }

    fn providers(&self, providers: &[PeerInfo]) -> String {
        if self.json {
            let items: Vec<String> = providers
                .iter()
                .map(|p| {
                    let addrs: Vec<String> = p.addrs.iter().map(|a| format!("\"{a}\"")).collect();
                    format!("{{\"id\":\"{:#}\",\"addrs\":[{}]}}", p.id, addrs.join(","))
                })
                .collect();
            return format!("[{}]\n", items.join(","));
        }
        providers
            .iter()
            .map(|p| {
                let mut addrs = p.addrs.iter();
                let first = addrs.next().map(|a| format!("@{a}")).unwrap_or_default();
                let more: String = addrs.map(|a| format!(" {a}")).collect();
                format!("{:#}{first}{more}\n", p.id)
            })
            .collect()
    }

    fn refused(&self, code: ControlErrorCode, text: &str) -> PrintError {
        match code {
            ControlErrorCode::NotFound => self.failed("not found"),
            code => self.failed(&format!("{} ({code})", escape(text.as_bytes()))),
        }
    }

    fn unexpected(&self, answer: &ControlResponse) -> PrintError {
        self.failed(&format!("unexpected answer from the node: {answer:?}"))
    }

    fn failed(&self, why: &str) -> PrintError {
        PrintError::Ctl(CtlError::Failed(format!("{}: {why}", self.command)))
    }
}

/// Writes to stdout and flushes.
fn write_stdout(bytes: &[u8]) -> Result<(), PrintError> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(PrintError::StdoutClosed),
        r => r.map_err(PrintError::from),
    }
}

fn value_json(record: &Record, local: bool) -> String {
    let (seq, public_key) = match record {
        Record::Immutable { .. } => ("null".to_string(), "null".to_string()),
        Record::Mutable(m) => (m.seq.to_string(), format!("\"{}\"", hex_encode(&m.public_key.0))),
    };
    format!(
        "{{\"value\":\"{}\",\"local\":{local},\"seq\":{seq},\"public_key\":{public_key}}}\n",
        hex_encode(record.value())
    )
}

fn delivered_json(d: &Delivered) -> String {
    let m = &d.message;
    format!(
        "{{\"topic\":{},\"id\":\"{}\",\"author\":\"{}\",\"seqno\":{},\"from\":\"{:#}\",\
         \"lost\":{},\"payload\":\"{}\"}}\n",
        quote(&m.topic),
        hex_encode(&m.id().0),
        hex_encode(&m.author.0),
        m.seqno,
        d.from,
        d.lost,
        hex_encode(m.payload.as_slice())
    )
}

/// The payload of `d` as one line of text.
fn escape_line(d: &Delivered) -> String {
    let mut line = escape(d.message.payload.as_slice());
    line.push('\n');
    line
}

/// `bytes` as text on one line: UTF-8 as it is, except `\` as `\\`, newline, carriage
/// return and tab as `\n`, `\r`, `\t`, other control characters as `\u{..}`, and bytes that
/// are not UTF-8 as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::ByteBuf;

    #[test]
    fn a_message_is_one_line_whatever_its_bytes() {
        assert_eq!(escape(b"hi\nthere\\ \xff\x00ok"), "hi\\nthere\\\\ \\xff\\u{0}ok");
        assert_eq!(escape("héllo".as_bytes()), "héllo");
    }

    #[test]
    fn command_lines_that_cannot_be_sent_are_usage_errors() {
        let parse = |command: &str, args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let spec = usage::command(command).unwrap();
            let parsed = usage::parse(spec, &args).unwrap();
            request(command, &parsed)
        };
        assert!(matches!(parse("get", &["abc"]), Err(CtlError::Usage(_))));
        assert!(matches!(parse("put", &[]), Err(CtlError::Usage(_))));
        assert!(matches!(parse("put", &["v", "--file", "f"]), Err(CtlError::Usage(_))));
        assert!(matches!(parse("publish", &["", "m"]), Err(CtlError::Usage(_))));
        assert!(matches!(parse("connect", &["127.0.0.1:1"]), Err(CtlError::Usage(_))));
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        assert!(matches!(parse("put", &[&long]), Err(CtlError::Usage(_))));
        assert_eq!(
            parse("publish", &["news", "hello"]),
            Ok(ControlRequest::Publish {
                topic: "news".into(),
                payload: ByteBuf::from(b"hello".to_vec())
            })
        );
    }
}
