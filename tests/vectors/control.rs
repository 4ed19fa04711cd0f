//! The vectors of proto-spec/control.md, `control/*.json`, and their generator.
//!
//! A valid vector holds a `frame` and the `request` or `response` it carries: the frame must
//! come out of a `FrameDecoder` fed one byte at a time as exactly one frame, decode to that
//! value (rendered through serde_json, and parsed back), and re-encode to the same bytes. An
//! invalid vector holds a `frame`, what it is decoded as (`kind`) and the `error` it fails
//! with. Coverage is exhaustive over the code: every request and response variant, every
//! error code (held to control.md §7), and every decode error but `malformed`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use petrel::bytes::ByteBuf;
use petrel::control::protocol::{
    decode_request, decode_response, encode_request, encode_response, Delivered, PeerDirection,
    PeerEntry, Status, TopicMesh, MAX_CONTROL_FRAME_BYTES, MAX_CONTROL_TEXT_BYTES,
};
use petrel::control::{ControlErrorCode, ControlRequest, ControlResponse};
use petrel::wire::messages::{
    GossipMessage, MutableRecord, Record, MAX_AGENT_BYTES, MAX_PAYLOAD_BYTES, MAX_TOPIC_BYTES,
    MAX_VALUE_BYTES,
};
use petrel::wire::DecodeError;
use serde::Serialize;
use serde_json::Value;

use super::identity::Entry;
use super::{
    check_all, check_common, compact, compact_hex, feed_bytewise, first_difference, hex_field,
    ipv4, ipv6, keypair, load, one_frame, peer, pretty_json, str_field, Json, FRAME_TOO_LARGE,
    IMMUTABLE_VALUE,
};

/// The vector set of this module.
pub const SETS: &[&str] = &["control"];

/// Fields a control vector may have.
const FIELDS: &[&str] = &["name", "description", "frame", "request", "response", "kind", "error"];

/// Every error code, in tag order.
const ALL_CODES: &[ControlErrorCode] = &[
    ControlErrorCode::BadRequest,
    ControlErrorCode::TooLarge,
    ControlErrorCode::Busy,
    ControlErrorCode::Timeout,
    ControlErrorCode::NotFound,
    ControlErrorCode::Failed,
    ControlErrorCode::Stopping,
    ControlErrorCode::Unsupported,
];

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// What a control vector decoded to, or how it failed.
#[derive(Debug)]
enum Checked {
    Request(ControlRequest),
    Response(ControlResponse),
    Failed(&'static str),
}

fn checked() -> Vec<(String, Checked)> {
    check_all(&load("control"), check_vector)
}

#[test]
fn control_vectors_decode_and_reencode_exactly_or_fail_with_their_error() {
    checked();
}

#[test]
fn control_vectors_cover_every_request_response_error_code_and_decode_error() {
    let mut kinds = BTreeSet::new();
    let mut errors = BTreeSet::new();
    for (_, c) in checked() {
        match c {
            Checked::Request(r) => kinds.insert(request_kind(&r).to_string()),
            Checked::Response(r) => kinds.insert(response_kind(&r)),
            Checked::Failed(e) => errors.insert(e),
        };
    }
    let mut required: BTreeSet<String> = REQUIRED_KINDS.iter().map(|k| k.to_string()).collect();
    required.extend(ALL_CODES.iter().map(|c| format!("Response/Error/{c:?}")));
    assert_eq!(kinds, required, "the valid control vectors and the required kinds differ");
    let expected: BTreeSet<&str> = [
        FRAME_TOO_LARGE,
        "truncated",
        "trailing_bytes",
        "unknown_tag",
        "invalid_utf8",
        "length_over_limit",
        "over_bound",
    ]
    .into();
    assert_eq!(errors, expected, "the invalid control vectors and the decode errors differ");
}

#[test]
fn every_control_error_code_is_in_the_spec_and_decodes_exactly_as_listed() {
    // control.md §7 lists the codes as `| N | \`name\` | ...` rows.
    let spec = fs::read_to_string(super::vectors_dir().join("../control.md")).expect("control.md");
    let section = spec
        .split("## 7. Error codes")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("control.md has a §7");
    let rows: Vec<(u32, &str)> = section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse().ok()?;
            Some((code, cells.get(2)?.trim_matches('`')))
        })
        .collect();
    let listed: Vec<(u32, &str)> =
        ALL_CODES.iter().enumerate().map(|(i, c)| (i as u32, c.name())).collect();
    assert_eq!(rows, listed, "control.md §7 and ControlErrorCode differ");
    // Exactly the listed tags decode: a variant added without a row makes its tag decode.
    for tag in 0..32u32 {
        let mut payload = vec![0, 0, 0, 0];
        payload.extend_from_slice(&tag.to_le_bytes());
        payload.extend_from_slice(&0u64.to_le_bytes());
        let code = match decode_response(&payload) {
            Ok(ControlResponse::Error { code, .. }) => Some(code),
            Ok(other) => panic!("code {tag} decodes as {other:?}"),
            Err(_) => None,
        };
        assert_eq!(code, ALL_CODES.get(tag as usize).copied(), "code {tag}");
    }
}

fn check_vector(v: &super::Loaded) -> Result<Checked, String> {
    check_common(v, FIELDS)?;
    let frame = hex_field(&v.json, "frame")?;
    if v.json.get("error").is_some() {
        return check_invalid(v, &frame);
    }
    let (field, expected) = match (v.json.get("request"), v.json.get("response")) {
        (Some(r), None) => ("request", r),
        (None, Some(r)) => ("response", r),
        _ => return Err("a valid vector has exactly one of \"request\" and \"response\"".into()),
    };
    let payload = one_frame(&frame, MAX_CONTROL_FRAME_BYTES)?;
    let (rendered, checked, reencoded) = match field {
        "request" => {
            let r = decode_request(&payload).map_err(|e| format!("does not decode: {e}"))?;
            let parsed: ControlRequest = serde_json::from_value(expected.clone())
                .map_err(|e| format!("\"request\" does not parse: {e}"))?;
            if parsed != r {
                return Err("\"request\" parses to another value than the frame holds".into());
            }
            let mut out = Vec::new();
            encode_request(&r, &mut out).map_err(|e| e.to_string())?;
            (to_value(&r)?, Checked::Request(r), out)
        }
        _ => {
            let r = decode_response(&payload).map_err(|e| format!("does not decode: {e}"))?;
            let parsed: ControlResponse = serde_json::from_value(expected.clone())
                .map_err(|e| format!("\"response\" does not parse: {e}"))?;
            if parsed != r {
                return Err("\"response\" parses to another value than the frame holds".into());
            }
            let mut out = Vec::new();
            encode_response(&r, &mut out).map_err(|e| e.to_string())?;
            (to_value(&r)?, Checked::Response(r), out)
        }
    };
    if rendered != *expected {
        return Err(format!("decoded {rendered}, the vector says {expected}"));
    }
    if reencoded != frame {
        return Err(format!("re-encoded frame differs {}", first_difference(&reencoded, &frame)));
    }
    Ok(checked)
}

fn to_value(value: &impl Serialize) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

fn check_invalid(v: &super::Loaded, frame: &[u8]) -> Result<Checked, String> {
    let expected = str_field(&v.json, "error")?;
    let kind = str_field(&v.json, "kind")?;
    if expected == FRAME_TOO_LARGE {
        let fed = feed_bytewise(frame, MAX_CONTROL_FRAME_BYTES)?;
        return match fed.error {
            Some(_) => Ok(Checked::Failed(FRAME_TOO_LARGE)),
            None => Err("the frame layer accepted it".into()),
        };
    }
    let payload = one_frame(frame, MAX_CONTROL_FRAME_BYTES)?;
    let result: Result<(), DecodeError> = match kind {
        "request" => decode_request(&payload).map(|_| ()),
        "response" => decode_response(&payload).map(|_| ()),
        other => return Err(format!("\"kind\" is {other:?}, not request or response")),
    };
    match result {
        Ok(()) => Err(format!("decodes as a valid {kind}, expected {expected}")),
        Err(e) if e.name() == expected => Ok(Checked::Failed(e.name())),
        Err(e) => Err(format!("fails with {}, expected {expected}", e.name())),
    }
}

/// The kinds the valid control vectors must hold, besides one `Response/Error/<code>` per code.
const REQUIRED_KINDS: &[&str] = &[
    "Request/Status",
    "Request/Peers",
    "Request/Connect",
    "Request/Put",
    "Request/PutMutable",
    "Request/Get",
    "Request/Provide",
    "Request/Providers",
    "Request/Publish",
    "Request/Subscribe",
    "Request/Shutdown",
    "Response/Status",
    "Response/Peers",
    "Response/Connected",
    "Response/Stored",
    "Response/Value/Immutable",
    "Response/Value/Mutable",
    "Response/Providers",
    "Response/Published",
    "Response/Subscribed",
    "Response/Message",
    "Response/ShuttingDown",
];

/// Exhaustive: a new request is a compile error here until it has a kind and a vector.
fn request_kind(r: &ControlRequest) -> &'static str {
    match r {
        ControlRequest::Status => "Request/Status",
        ControlRequest::Peers => "Request/Peers",
        ControlRequest::Connect { .. } => "Request/Connect",
        ControlRequest::Put { .. } => "Request/Put",
        ControlRequest::PutMutable { .. } => "Request/PutMutable",
        ControlRequest::Get { .. } => "Request/Get",
        ControlRequest::Provide { .. } => "Request/Provide",
        ControlRequest::Providers { .. } => "Request/Providers",
        ControlRequest::Publish { .. } => "Request/Publish",
        ControlRequest::Subscribe { .. } => "Request/Subscribe",
        ControlRequest::Shutdown => "Request/Shutdown",
    }
}

/// Exhaustive, as [`request_kind`].
fn response_kind(r: &ControlResponse) -> String {
    let kind = match r {
        ControlResponse::Error { code, .. } => return format!("Response/Error/{code:?}"),
        ControlResponse::Status(_) => "Response/Status",
        ControlResponse::Peers { .. } => "Response/Peers",
        ControlResponse::Connected { .. } => "Response/Connected",
        ControlResponse::Stored { .. } => "Response/Stored",
        ControlResponse::Value { record: Record::Immutable { .. }, .. } => {
            "Response/Value/Immutable"
        }
        ControlResponse::Value { record: Record::Mutable(_), .. } => "Response/Value/Mutable",
        ControlResponse::Providers { .. } => "Response/Providers",
        ControlResponse::Published { .. } => "Response/Published",
        ControlResponse::Subscribed => "Response/Subscribed",
        ControlResponse::Message(_) => "Response/Message",
        ControlResponse::ShuttingDown => "Response/ShuttingDown",
    };
    kind.to_string()
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ControlFile<'a> {
    name: &'a str,
    description: &'a str,
    frame: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

/// One vector before rendering.
enum Spec {
    Request(ControlRequest),
    Response(ControlResponse),
    /// A frame that fails as `kind` with `error`.
    Invalid {
        kind: &'static str,
        frame: Vec<u8>,
        error: &'static str,
    },
}

/// Writes every control vector into `files` and returns them in order, for the README.
pub fn generate(files: &mut BTreeMap<String, String>) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for (name, description, spec) in specs() {
        let name = format!("control_{name}");
        let mut file = ControlFile {
            name: &name,
            description,
            frame: Json::Null,
            request: None,
            response: None,
            kind: None,
            error: None,
        };
        let mut frame = Vec::new();
        match &spec {
            Spec::Request(r) => {
                encode_request(r, &mut frame).map_err(|e| format!("{name}: {e}"))?;
                file.request = Some(compact(Json::of(r)?));
            }
            Spec::Response(r) => {
                encode_response(r, &mut frame).map_err(|e| format!("{name}: {e}"))?;
                file.response = Some(compact(Json::of(r)?));
            }
            Spec::Invalid { kind, frame: bytes, error } => {
                frame.clone_from(bytes);
                (file.kind, file.error) = (Some(*kind), Some(*error));
            }
        }
        file.frame = compact_hex(&frame);
        files.insert(format!("control/{name}.json"), pretty_json(&file)?);
        let error = file.error;
        entries.push(Entry { set: "control", name, description: description.into(), error });
    }
    Ok(entries)
}

/// The README's section on these vectors: the form, an example, and the table.
pub fn readme(entries: &[Entry], files: &BTreeMap<String, String>) -> Result<String, String> {
    let example = "control/control_response_stored.json";
    let example = files.get(example).ok_or_else(|| format!("README: no {example}"))?;
    let mut out = format!(
        "\n## Control socket vectors: `control/*.json`\n\n```json\n{example}```\n\n\
         The requests and responses of the control socket (proto-spec/control.md), in the frame \
         form of\nframing.md under a 1 MiB limit. A valid vector has `frame` and the decoded \
         `request` or `response`\n(in the JSON form of the valid vectors above); a \
         conforming implementation decodes the frame\nto it and encodes it back to the frame \
         byte for byte. An invalid vector has `frame`, `kind`\n(`request` or `response`: what \
         the frame is decoded as) and `error`, named as for the\ninvalid vectors above.\n\n\
         | Vector | Error | Description |\n|---|---|---|\n"
    );
    for e in entries {
        let error = e.error.map_or("(valid)".to_owned(), |e| format!("`{e}`"));
        out.push_str(&format!(
            "| `{}` | {error} | {} |\n",
            e.name,
            super::table_cell(&e.description)
        ));
    }
    Ok(out)
}

fn specs() -> Vec<(&'static str, &'static str, Spec)> {
    let mut specs = request_specs();
    specs.extend(response_specs());
    specs.extend(error_specs());
    specs.extend(invalid_specs());
    specs
}

fn request_specs() -> Vec<(&'static str, &'static str, Spec)> {
    use ControlRequest as R;
    let key = petrel::wire::signing::immutable_key(IMMUTABLE_VALUE);
    let record = MutableRecord::sign(&keypair(1), b"profile".to_vec(), 7, b"v7".to_vec());
    let publish_at_bounds = R::Publish {
        topic: "t".repeat(MAX_TOPIC_BYTES),
        payload: ByteBuf::from(vec![0xaa; MAX_PAYLOAD_BYTES]),
    };
    vec![
        ("request_status", "Status: the tag alone.", Spec::Request(R::Status)),
        ("request_peers", "Peers: the tag alone.", Spec::Request(R::Peers)),
        (
            "request_connect",
            "Connect to key pair 2's node at an IPv6 address.",
            Spec::Request(R::Connect { id: keypair(2).node_id(), addr: ipv6(2, 4001) }),
        ),
        (
            "request_put",
            "Put the immutable value \"hello petrel\".",
            Spec::Request(R::Put { value: IMMUTABLE_VALUE.to_vec().into() }),
        ),
        (
            "request_put_mutable",
            "PutMutable of key pair 1's record, salt \"profile\", sequence 7, value \"v7\", signed \
             by the client.",
            Spec::Request(R::PutMutable { record }),
        ),
        ("request_get", "Get the key of \"hello petrel\".", Spec::Request(R::Get { key })),
        ("request_provide", "Provide the same key.", Spec::Request(R::Provide { key })),
        ("request_providers", "Providers of the same key.", Spec::Request(R::Providers { key })),
        (
            "request_publish",
            "Publish \"hi\" on topic \"news\".",
            Spec::Request(R::Publish { topic: "news".into(), payload: b"hi".to_vec().into() }),
        ),
        (
            "request_publish_at_bounds",
            "Publish with a 256-byte topic and a 1 047 552-byte payload: the largest request, \
             1 047 828 bytes, within the 1 MiB frame limit.",
            Spec::Request(publish_at_bounds),
        ),
        (
            "request_subscribe",
            "Subscribe to topic \"news\".",
            Spec::Request(R::Subscribe { topic: "news".into() }),
        ),
        ("request_shutdown", "Shutdown: the tag alone.", Spec::Request(R::Shutdown)),
    ]
}

fn response_specs() -> Vec<(&'static str, &'static str, Spec)> {
    use ControlResponse as R;
    let key = petrel::wire::signing::immutable_key(IMMUTABLE_VALUE);
    let status = Status {
        id: keypair(1).node_id(),
        listen_addr: ipv4(1, 4001),
        uptime_secs: 3600,
        peers: 2,
        connections_inbound: 1,
        connections_outbound: 1,
        routing_entries: 5,
        records: 3,
        provider_records: 1,
        topics: vec![TopicMesh { topic: "news".into(), mesh_peers: 2 }],
    };
    let peers = vec![
        PeerEntry {
            id: keypair(2).node_id(),
            addr: ipv4(2, 50000),
            direction: PeerDirection::Inbound,
            agent: "petrel/0.1.0".into(),
            listen_addrs: vec![ipv4(2, 4001)],
        },
        PeerEntry {
            id: keypair(3).node_id(),
            addr: ipv6(3, 4001),
            direction: PeerDirection::Outbound,
            agent: "a".repeat(MAX_AGENT_BYTES),
            listen_addrs: vec![ipv6(3, 4001)],
        },
    ];
    let mutable = MutableRecord::sign(&keypair(1), b"profile".to_vec(), 7, b"v7".to_vec());
    let message = GossipMessage::sign(&keypair(2), 7, "news".into(), b"hi".to_vec());
    vec![
        (
            "response_status",
            "Status of key pair 1's node, in one topic.",
            Spec::Response(R::Status(status)),
        ),
        (
            "response_peers",
            "Peers: one inbound, one outbound with an agent at its 64-byte bound.",
            Spec::Response(R::Peers { peers }),
        ),
        (
            "response_connected",
            "Connected to key pair 2's node.",
            Spec::Response(R::Connected { id: keypair(2).node_id() }),
        ),
        (
            "response_stored",
            "Stored \"hello petrel\" on 3 of the 4 peers asked.",
            Spec::Response(R::Stored { key, stored: 3, attempted: 4 }),
        ),
        (
            "response_value_immutable",
            "Value: the immutable record \"hello petrel\", found in the node's own store.",
            Spec::Response(R::Value {
                record: Record::Immutable { value: IMMUTABLE_VALUE.to_vec().into() },
                local: true,
            }),
        ),
        (
            "response_value_mutable",
            "Value: key pair 1's mutable record, found by a lookup.",
            Spec::Response(R::Value { record: Record::Mutable(mutable), local: false }),
        ),
        (
            "response_providers",
            "Providers: key pair 2's node at two addresses.",
            Spec::Response(R::Providers {
                providers: vec![peer(2, &[ipv4(2, 4001), ipv6(2, 4001)])],
            }),
        ),
        (
            "response_published",
            "Published: the id of key pair 2's message 7 on \"news\", sent to 6 peers.",
            Spec::Response(R::Published { id: message.id(), peers: 6 }),
        ),
        ("response_subscribed", "Subscribed: the tag alone.", Spec::Response(R::Subscribed)),
        (
            "response_message",
            "Message: key pair 2's message \"hi\" on \"news\", first received from key pair 3's \
             node, after 1 lost message.",
            Spec::Response(R::Message(Delivered { from: keypair(3).node_id(), lost: 1, message })),
        ),
        ("response_shutting_down", "ShuttingDown: the tag alone.", Spec::Response(R::ShuttingDown)),
    ]
}

fn error_specs() -> Vec<(&'static str, &'static str, Spec)> {
    let texts: [(&str, &str); 8] = [
        ("response_error_bad_request", "unknown_tag: unknown enum, option or bool tag"),
        ("response_error_too_large", "frame of 2097152 bytes exceeds the 1048576-byte limit"),
        ("response_error_busy", "8 clients are served already"),
        ("response_error_timeout", "no whole request within 5s"),
        ("response_error_not_found", "no record found"),
        ("response_error_failed", "the routing table is empty"),
        ("response_error_stopping", "node stopped"),
        ("response_error_unsupported", "the node does not run this protocol"),
    ];
    let descriptions: [&str; 8] = [
        "Error bad_request (0), with the decode error in its text.",
        "Error too_large (1): the header announced 2 MiB.",
        "Error busy (2): the client table is full.",
        "Error timeout (3): the request did not arrive whole in time.",
        "Error not_found (4): Get found no record.",
        "Error failed (5): the operation failed; the text says why.",
        "Error stopping (6): the node is stopping.",
        "Error unsupported (7): gossip is off.",
    ];
    ALL_CODES
        .iter()
        .zip(texts)
        .zip(descriptions)
        .map(|((code, (name, text)), description)| {
            (
                name,
                description,
                Spec::Response(ControlResponse::Error { code: *code, text: text.into() }),
            )
        })
        .collect()
}

/// `payload` in a frame.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn u64le(n: usize) -> [u8; 8] {
    (n as u64).to_le_bytes()
}

fn invalid_specs() -> Vec<(&'static str, &'static str, Spec)> {
    let invalid =
        |kind, payload: Vec<u8>, error| Spec::Invalid { kind, frame: frame(&payload), error };
    let topic = |tag: u8, topic: &[u8]| [&[tag, 0, 0, 0][..], &u64le(topic.len()), topic].concat();
    // Get with half a key.
    let get_cut = [&[5, 0, 0, 0][..], &[0x11; 16]].concat();
    // Value (tag 5) of an immutable record "x", then `local` as 2.
    let value_bool = [&[5, 0, 0, 0, 0, 0, 0, 0][..], &u64le(1), b"x", &[2]].concat();
    // Peers (tag 2) with one entry whose direction is 2.
    let id = keypair(2).node_id();
    let peers_direction = [
        &[2, 0, 0, 0][..],
        &u64le(1),
        id.as_bytes(),
        &[0, 0, 0, 0, 192, 0, 2, 2, 0x41, 0x1f],
        &[2, 0, 0, 0],
        &u64le(0),
        &u64le(0),
    ]
    .concat();
    let put_over =
        [&[3, 0, 0, 0][..], &u64le(MAX_VALUE_BYTES + 1), &vec![0x11; MAX_VALUE_BYTES + 1]].concat();
    let text_over = [
        &[0, 0, 0, 0, 5, 0, 0, 0][..],
        &u64le(MAX_CONTROL_TEXT_BYTES + 1),
        &vec![b'x'; MAX_CONTROL_TEXT_BYTES + 1],
    ]
    .concat();
    let mut too_large = ((MAX_CONTROL_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
    too_large.extend_from_slice(&[0, 0, 0, 0]);
    vec![
        (
            "invalid_frame_too_large",
            "A request header announcing 1 MiB + 1 bytes: refused from the header; the node \
             answers too_large and closes.",
            Spec::Invalid { kind: "request", frame: too_large, error: FRAME_TOO_LARGE },
        ),
        (
            "invalid_truncated_empty",
            "An empty request payload.",
            invalid("request", vec![], "truncated"),
        ),
        (
            "invalid_truncated_get",
            "Get with 16 of the key's 32 bytes.",
            invalid("request", get_cut, "truncated"),
        ),
        (
            "invalid_trailing_bytes_status",
            "Status followed by one zero byte.",
            invalid("request", vec![0, 0, 0, 0, 0], "trailing_bytes"),
        ),
        (
            "invalid_unknown_tag_request",
            "Request tag 11, past Shutdown.",
            invalid("request", vec![11, 0, 0, 0], "unknown_tag"),
        ),
        (
            "invalid_unknown_tag_response",
            "Response tag 11, past ShuttingDown.",
            invalid("response", vec![11, 0, 0, 0], "unknown_tag"),
        ),
        (
            "invalid_unknown_tag_error_code",
            "Error with code 8, past unsupported, and an empty text.",
            invalid("response", [&[0, 0, 0, 0, 8, 0, 0, 0][..], &u64le(0)].concat(), "unknown_tag"),
        ),
        (
            "invalid_unknown_tag_bool",
            "Value of the immutable record \"x\" with `local` 02: a bool is 00 or 01.",
            invalid("response", value_bool, "unknown_tag"),
        ),
        (
            "invalid_unknown_tag_direction",
            "Peers with one entry whose direction is 2, past Outbound.",
            invalid("response", peers_direction, "unknown_tag"),
        ),
        (
            "invalid_utf8_subscribe_topic",
            "Subscribe to a topic of the bytes c3 28, not UTF-8.",
            invalid("request", topic(9, &[0xc3, 0x28]), "invalid_utf8"),
        ),
        (
            "invalid_length_over_limit_put_value",
            "Put whose value length prefix is 2^63: refused from the prefix, before any \
             allocation.",
            invalid(
                "request",
                [&[3, 0, 0, 0][..], &(1u64 << 63).to_le_bytes()].concat(),
                "length_over_limit",
            ),
        ),
        (
            "invalid_over_bound_subscribe_topic",
            "Subscribe to a 257-byte topic, one over its bound.",
            invalid("request", topic(9, &[b't'; MAX_TOPIC_BYTES + 1]), "over_bound"),
        ),
        (
            "invalid_over_bound_put_value",
            "Put of a 65 537-byte value, one over its bound.",
            invalid("request", put_over, "over_bound"),
        ),
        (
            "invalid_over_bound_error_text",
            "Error failed (5) with a 257-byte text, one over its bound.",
            invalid("response", text_over, "over_bound"),
        ),
    ]
}
