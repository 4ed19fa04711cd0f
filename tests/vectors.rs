//! The protocol test vectors in proto-spec/vectors/, and the generator that writes them.
//!
//! Every `valid/*.json` vector must:
//! - arrive through a `FrameDecoder` fed one byte at a time as exactly one frame, with every
//!   byte consumed;
//! - decode with `wire::decode` under the default 1 MiB limit;
//! - render through serde_json as exactly its `"message"` (so every field is checked);
//! - parse back from that `"message"` to the same `Message`;
//! - re-encode with `wire::encode_frame` to its `"frame"`, byte for byte;
//! - carry a `"record_key"` equal to the derived key of any record it holds, and a
//!   `"message_id"` equal to the id of any gossip message it publishes, and every signature in
//!   it must verify.
//!
//! Every `invalid/*.json` vector must fail with exactly its `"error"`: `frame_too_large` from
//! the frame layer, any other name from `DecodeError::name()` of its (complete) payload.
//!
//! Coverage: the valid set must hold exactly the kinds in `REQUIRED_KINDS`, derived from the
//! decoded messages by an exhaustive match (a new message variant does not compile until it has
//! a kind); every rule of messages.md §8 in `RULES` must have its vectors, and every decode
//! error (held to the list of §8) one vector at least; every `Bound` (a table
//! that cannot miss a variant, checked against messages.md §7) must be reached by a valid vector
//! and exceeded by one in `invalid_over_bound_<field>`.
//!
//! The files are written by the `regenerate_vectors` test at the end of this file (ignored; it
//! writes only with `PETREL_REGENERATE_VECTORS=1`), and `vectors_match_generator` fails when the
//! files and the generator disagree.

#[path = "vectors/identity.rs"]
mod identity;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use petrel::bytes::Bytes32;
use petrel::bytes::{hex_decode, hex_encode};
use petrel::identity::{Keypair, NodeId};
use petrel::wire::messages::{
    Bound, BoundError, ErrorCode, Goodbye, GoodbyeReason, Gossip, GossipMessage, Hello,
    MutableRecord, PeerInfo, Record, Request, Response, FEATURE_GOSSIP, FEATURE_KAD,
    MAX_AGENT_BYTES, MAX_ERROR_TEXT_BYTES, MAX_IDS_PER_CONTROL, MAX_NETWORK_BYTES,
    MAX_PAYLOAD_BYTES, MAX_PEERS_PER_RESPONSE, MAX_SALT_BYTES, MAX_TOPIC_BYTES, MAX_VALUE_BYTES,
    PROTOCOL_VERSION,
};
use petrel::wire::signing::immutable_key;
use petrel::wire::{
    decode, encode, encode_frame, DecodeError, FrameDecoder, FrameError, Message,
    DEFAULT_MAX_FRAME_BYTES,
};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The frame limit every vector uses unless it says otherwise.
const MAX: usize = DEFAULT_MAX_FRAME_BYTES;
/// The `error` of vectors the frame layer must refuse.
const FRAME_TOO_LARGE: &str = "frame_too_large";
/// The environment variable that lets `regenerate_vectors` write.
const REGENERATE_ENV: &str = "PETREL_REGENERATE_VECTORS";
/// The command that regenerates the vectors.
const REGENERATE_CMD: &str =
    "PETREL_REGENERATE_VECTORS=1 cargo test --test vectors -- --ignored regenerate_vectors";

/// Fields a valid vector may have.
const VALID_FIELDS: &[&str] =
    &["name", "description", "frame", "max_frame_bytes", "message", "record_key", "message_id"];
/// Fields an invalid vector may have (exactly one of `frame` and `payload`).
const INVALID_FIELDS: &[&str] =
    &["name", "description", "frame", "payload", "error", "max_frame_bytes"];
/// Shortest run of one repeated byte (in a frame or a byte field) that the generator writes in
/// compact form (proto-spec/vectors/README.md).
const RUN_MIN_BYTES: usize = 256;
/// Shortest run of equal list elements that the generator writes in compact form.
const RUN_MIN_ELEMENTS: usize = 32;

/// Every kind (see [`coverage_kind`]) the valid set must hold, and no other, besides one
/// `Response/Error/<code>` per error code and one `Goodbye/<reason>` per reason
/// ([`required_kinds`]).
const REQUIRED_KINDS: &[&str] = &[
    "Hello",
    "Hello/ReservedFeatures",
    "Request/Ping",
    "Request/FindNode",
    "Request/FindValue",
    "Request/Store/Immutable",
    "Request/Store/Mutable",
    "Request/Store/Mutable/ExpectedSeq",
    "Request/AddProvider",
    "Request/GetProviders",
    "Response/Pong/Ipv4",
    "Response/Pong/Ipv6",
    "Response/Pong/Ipv4MappedIpv6",
    "Response/Nodes",
    "Response/Nodes/SeveralWithIpv6",
    "Response/Value/Record/Immutable",
    "Response/Value/Record/Mutable",
    "Response/Value/CloserOnly",
    "Response/Stored",
    "Response/ProviderAdded",
    "Response/Providers",
    "Gossip/Subscribe",
    "Gossip/Unsubscribe",
    "Gossip/Publish",
    "Gossip/IHave",
    "Gossip/IWant",
    "Gossip/Graft",
    "Gossip/Prune",
    "Gossip/Prune/PeerExchange",
    "Gossip/IDontWant",
];

/// Every rule of framing.md §2 and messages.md §8, including the orderings §8 spells out, with
/// the invalid vectors that pin it; each vector must fail with the rule's error. The bounds
/// (§8 step 5) are covered per bound by `invalid_over_bound_<field>` instead. Every other
/// invalid vector must be listed here: a vector added without a rule, or a rule without a
/// vector, fails `every_decode_rule_has_its_vectors`.
const RULES: &[(&str, &str, &[&str])] = &[
    (
        "framing.md §2: a header above the limit",
        FRAME_TOO_LARGE,
        &[
            "invalid_frame_too_large",
            "invalid_frame_too_large_u32_max",
            "invalid_frame_too_large_custom_limit",
        ],
    ),
    (
        "§8 step 1: a payload longer than the limit",
        "length_over_limit",
        &["invalid_length_over_limit_payload"],
    ),
    (
        "§8 step 2: a read that would end past the limit",
        "length_over_limit",
        &["invalid_length_over_limit_topic", "invalid_length_over_limit_value"],
    ),
    (
        "§8 step 2: at the limit, a payload that ends early passes the limit too",
        "length_over_limit",
        &["invalid_length_over_limit_at_limit_cut_short"],
    ),
    (
        "§8 step 2: a read that would end past the payload, within the limit",
        "truncated",
        &[
            "invalid_truncated_empty_payload",
            "invalid_truncated_message_tag",
            "invalid_truncated_hello",
            "invalid_truncated_find_node",
            "invalid_truncated_publish",
            "invalid_truncated_list",
        ],
    ),
    (
        "§8 step 2 and §1.3: each byte of a fixed array or an address is a read of 1 byte",
        "truncated",
        &[
            "invalid_truncated_find_node_near_limit",
            "invalid_truncated_pong_ipv4_near_limit",
            "invalid_truncated_pong_ipv6_near_limit",
        ],
    ),
    (
        "§8 step 2: a list count of 2^32 or more is read but not checked",
        "truncated",
        &["invalid_truncated_list_count_2_32"],
    ),
    (
        "§8 step 2: ... and its elements run into the limit like any other",
        "length_over_limit",
        &["invalid_length_over_limit_list_count_2_32"],
    ),
    (
        "§8 step 2: a string or bytes length of 2^32 or more is over any limit",
        "length_over_limit",
        &["invalid_length_over_limit_string_2_32"],
    ),
    (
        "§8 step 3: a tag outside its table, in every enumeration and option",
        "unknown_tag",
        &[
            "invalid_unknown_tag_message",
            "invalid_unknown_tag_message_wide",
            "invalid_unknown_tag_request",
            "invalid_unknown_tag_response",
            "invalid_unknown_tag_gossip",
            "invalid_unknown_tag_record",
            "invalid_unknown_tag_option",
            "invalid_unknown_tag_option_value_record",
            "invalid_unknown_tag_error_code",
            "invalid_unknown_tag_socket_addr",
            "invalid_unknown_tag_goodbye_reason",
        ],
    ),
    (
        "§8 step 3: a string that is not UTF-8",
        "invalid_utf8",
        &["invalid_utf8_topic", "invalid_utf8_surrogate_topic", "invalid_utf8_overlong_network"],
    ),
    (
        "§8 step 4: bytes after the message",
        "trailing_bytes",
        &["invalid_trailing_bytes_ping", "invalid_trailing_bytes_two_messages"],
    ),
    (
        "§8: a list announcing more than its bound but carrying fewer is truncated",
        "truncated",
        &["invalid_truncated_over_bound_list"],
    ),
    (
        "§8: trailing bytes win over a broken bound",
        "trailing_bytes",
        &["invalid_trailing_bytes_over_bound"],
    ),
    (
        "§8: invalid UTF-8 wins over a broken bound",
        "invalid_utf8",
        &["invalid_utf8_over_bound_topic"],
    ),
    (
        "§8: an unknown tag after a broken bound wins over it",
        "unknown_tag",
        &["invalid_unknown_tag_after_over_bound"],
    ),
];

/// One value of every `DecodeError` variant; `must_have_a_vector` decides each, and
/// `every_decode_error_is_in_the_spec_and_has_a_vector` holds the list to messages.md §8.
const ALL_DECODE_ERRORS: &[DecodeError] = &[
    DecodeError::Truncated,
    DecodeError::TrailingBytes { count: 1 },
    DecodeError::UnknownTag,
    DecodeError::InvalidUtf8,
    DecodeError::LengthOverLimit,
    DecodeError::OverBound(BoundError { field: "", len: 1, max: 0 }),
    DecodeError::Malformed,
];

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_vectors_decode_render_and_reencode_exactly() {
    valid_vectors();
}

#[test]
fn a_valid_frame_is_exactly_at_its_limit() {
    let at_limit = load("valid").iter().any(|v| {
        let max = v.json.get("max_frame_bytes").and_then(Value::as_u64);
        let frame = hex_field(&v.json, "frame").unwrap_or_default();
        max.is_some_and(|max| frame.len() == 4 + max as usize)
    });
    assert!(at_limit, "no valid vector has a payload of exactly its max_frame_bytes");
}

#[test]
fn invalid_vectors_fail_with_their_error() {
    invalid_vectors();
}

#[test]
fn valid_vectors_cover_every_message_kind() {
    let decoded = valid_vectors();
    let present: BTreeSet<String> = decoded.iter().map(|(_, msg)| coverage_kind(msg)).collect();
    let required = required_kinds();
    let missing: Vec<_> = required.difference(&present).collect();
    let unlisted: Vec<_> = present.difference(&required).collect();
    assert!(missing.is_empty(), "no valid vector for these kinds: {missing:?}");
    assert!(unlisted.is_empty(), "vectors of these kinds are not in REQUIRED_KINDS: {unlisted:?}");
}

#[test]
fn every_error_code_and_goodbye_reason_is_listed() {
    // The tables are complete when exactly their tags decode: a variant added to ErrorCode or
    // GoodbyeReason without a row here makes its tag decode and this test fail.
    for tag in 0..64u32 {
        let error = Payload::default().u32(2).u64(1).u32(6).u32(tag).bytes(b"").0;
        let code = match decode(&error, MAX) {
            Ok(Message::Response { body: Response::Error { code, .. }, .. }) => Some(code),
            Ok(other) => panic!("error code {tag} decodes as {other:?}"),
            Err(_) => None,
        };
        assert_eq!(code, ALL_ERROR_CODES.get(tag as usize).copied(), "error code {tag}");
        let goodbye = Payload::default().u32(4).u32(tag).0;
        let reason = match decode(&goodbye, MAX) {
            Ok(Message::Goodbye(Goodbye { reason })) => Some(reason),
            Ok(other) => panic!("goodbye reason {tag} decodes as {other:?}"),
            Err(_) => None,
        };
        assert_eq!(reason, ALL_GOODBYE_REASONS.get(tag as usize).copied(), "reason {tag}");
    }
}

#[test]
fn every_decode_rule_has_its_vectors() {
    let failures: BTreeMap<String, Failure> =
        invalid_vectors().iter().map(|(n, f)| (n.clone(), *f)).collect();
    let mut problems = Vec::new();
    let mut listed = BTreeSet::new();
    for (rule, error, names) in RULES {
        for name in names.iter() {
            listed.insert(*name);
            match failures.get(*name) {
                Some(f) if f.name() == *error => {}
                Some(f) => problems.push(format!("{rule}: {name} fails with {}", f.name())),
                None => problems.push(format!("{rule}: no vector {name}")),
            }
        }
    }
    for name in failures.keys() {
        if !listed.contains(name.as_str()) && !name.starts_with("invalid_over_bound_") {
            problems.push(format!("{name} is in no rule of RULES"));
        }
    }
    assert!(problems.is_empty(), "decode rules and vectors disagree:\n{}", problems.join("\n"));
}

#[test]
fn every_decode_error_is_in_the_spec_and_has_a_vector() {
    // messages.md §8 lists the error names as `- \`name\`: ...`.
    let spec = fs::read_to_string(vectors_dir().join("../messages.md")).expect("messages.md");
    let section = spec
        .split("## 8. Decode errors")
        .nth(1)
        .and_then(|s| s.split("Which error a payload yields").next())
        .expect("messages.md §8 lists the errors");
    let in_spec: BTreeSet<&str> =
        section.lines().filter_map(|l| l.strip_prefix("- `")?.split('`').next()).collect();
    let in_code: BTreeSet<&str> = ALL_DECODE_ERRORS.iter().map(DecodeError::name).collect();
    assert_eq!(in_spec, in_code, "messages.md §8 and ALL_DECODE_ERRORS list other errors");

    let failures = invalid_vectors();
    let failed: BTreeSet<&str> = failures.iter().map(|(_, f)| f.name()).collect();
    for e in ALL_DECODE_ERRORS.iter().filter(|e| must_have_a_vector(e)) {
        assert!(failed.contains(e.name()), "no invalid vector fails with {}", e.name());
    }
    assert!(failed.contains(FRAME_TOO_LARGE), "no invalid vector fails with {FRAME_TOO_LARGE}");
}

/// Whether the invalid vectors must show `e`: every decode error but `malformed`, which no
/// payload produces (messages.md §8). Exhaustive, so a new variant does not compile until it is
/// decided here (and listed in `ALL_DECODE_ERRORS`).
fn must_have_a_vector(e: &DecodeError) -> bool {
    match e {
        DecodeError::Truncated
        | DecodeError::TrailingBytes { .. }
        | DecodeError::UnknownTag
        | DecodeError::InvalidUtf8
        | DecodeError::LengthOverLimit
        | DecodeError::OverBound(_) => true,
        DecodeError::Malformed => false,
    }
}

#[test]
fn every_bound_has_a_vector_at_it_and_one_over_it() {
    // At: the longest value of each bounded field over the valid vectors is its bound.
    let decoded = valid_vectors();
    let mut longest: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, msg) in decoded {
        for (bound, len) in bounded_lengths(msg) {
            let entry = longest.entry(bound.field()).or_default();
            *entry = (*entry).max(len);
        }
    }
    // Over: `invalid_over_bound_<field>` fails on that field, one over.
    let failures: BTreeMap<String, Failure> =
        invalid_vectors().iter().map(|(n, f)| (n.clone(), *f)).collect();
    let mut problems = Vec::new();
    for bound in Bound::ALL {
        let field = bound.field();
        match longest.get(field) {
            Some(&len) if len == bound.max() => {}
            Some(&len) => {
                problems.push(format!("{field}: longest valid value {len}, not the bound"))
            }
            None => problems.push(format!("{field}: in no valid vector")),
        }
        let name = format!("invalid_over_bound_{}", field.replace('.', "_"));
        match failures.get(&name) {
            Some(Failure::Decode(DecodeError::OverBound(e)))
                if e.field == field && e.len == bound.max() + 1 => {}
            Some(f) => problems.push(format!("{name} fails otherwise: {f:?}")),
            None => problems.push(format!("{field}: no vector {name}")),
        }
    }
    assert!(problems.is_empty(), "bounds without their vectors:\n{}", problems.join("\n"));
}

#[test]
fn the_spec_lists_every_bound_with_its_value() {
    // messages.md §7: each row names a constant, its value and the fields it bounds.
    let spec = fs::read_to_string(vectors_dir().join("../messages.md")).expect("messages.md");
    let section = spec
        .split("## 7. Bounds")
        .nth(1)
        .and_then(|s| s.split("## 8.").next())
        .expect("messages.md has a §7 before a §8");
    let mut listed = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `MAX_")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let value: usize = cells[2].replace(' ', "").parse().expect("a bound's value");
        // The names are the backquoted `message.field` paths; other backquoted words are types.
        let names = cells[3].split('`').skip(1).step_by(2).filter(|w| {
            w.contains('.') && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
        });
        for field in names {
            listed.insert(field.to_owned(), value);
        }
    }
    let code: BTreeMap<String, usize> =
        Bound::ALL.iter().map(|b| (b.field().to_owned(), b.max())).collect();
    assert_eq!(listed, code, "messages.md §7 and petrel's Bound table differ");
}

#[test]
fn signatures_record_keys_and_message_ids_verify() {
    let loaded = load("valid");
    let decoded = valid_vectors();
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for (v, (_, msg)) in loaded.iter().zip(decoded) {
        if let Err(e) = check_derived(v, msg, &mut tally) {
            failures.push(format!("{}: {e}", v.name));
        }
    }
    assert!(failures.is_empty(), "derived values do not check:\n{}", failures.join("\n"));
    assert!(tally.mutable_records > 0, "no valid vector carries a mutable record");
    assert!(tally.publishes > 0, "no valid vector carries a gossip Publish");
    assert!(tally.store_keys > 0, "no Store vector had its record key checked");
}

#[test]
fn hand_encoder_agrees_with_the_codec() {
    // The invalid vectors are written by `Payload`; this pins it to the codec's own layout on
    // every valid message, so each invalid vector differs from a valid message only where its
    // description says.
    for spec in valid_specs() {
        let hand = Payload::default().message(&spec.message).0;
        let codec = encode(&spec.message, MAX).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert!(
            hand == codec,
            "{}: the hand encoder {}",
            spec.name,
            first_difference(&hand, &codec)
        );
    }
}

#[test]
fn vectors_match_generator() {
    let files = generate_files().unwrap_or_else(|e| panic!("the generator failed: {e}"));
    let dir = vectors_dir();
    let mut problems = Vec::new();
    for (rel, text) in &files {
        match fs::read_to_string(dir.join(rel)) {
            Ok(disk) if disk == *text => {}
            Ok(_) => problems.push(format!("{rel} differs from the generator's output")),
            Err(e) => problems.push(format!("{rel}: {e}")),
        }
    }
    for rel in json_files_on_disk() {
        if !files.contains_key(&rel) {
            problems.push(format!("{rel} is not produced by the generator"));
        }
    }
    assert!(
        problems.is_empty(),
        "proto-spec/vectors/ is out of date with tests/vectors.rs; regenerate with \
         `{REGENERATE_CMD}`:\n{}",
        problems.join("\n")
    );
    let total: usize = files.values().map(String::len).sum();
    assert!(total < 1 << 20, "the vectors total {total} bytes; keep them under 1 MiB");
}

/// Writes proto-spec/vectors/ from the generator below: every vector file, the README, and the
/// removal of vector files the generator no longer produces.
#[test]
#[ignore = "writes proto-spec/vectors/; run with PETREL_REGENERATE_VECTORS=1"]
fn regenerate_vectors() {
    if std::env::var(REGENERATE_ENV).as_deref() != Ok("1") {
        eprintln!("{REGENERATE_ENV} is not 1: nothing written");
        return;
    }
    let files = generate_files().unwrap_or_else(|e| panic!("the generator failed: {e}"));
    write_files(&files).unwrap_or_else(|e| panic!("writing the vectors failed: {e}"));
}

// ---------------------------------------------------------------------------------------------
// Reading and checking vectors
// ---------------------------------------------------------------------------------------------

/// One vector file: its name (the file stem) and contents.
struct Loaded {
    name: String,
    json: Value,
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("proto-spec/vectors")
}

/// The `*.json` files of `set` ("valid" or "invalid"), sorted by name.
fn json_paths(set: &str) -> Vec<PathBuf> {
    let dir = vectors_dir().join(set);
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
}

/// Vector files on disk, as paths relative to the vectors directory.
fn json_files_on_disk() -> Vec<String> {
    ["valid", "invalid"]
        .iter()
        .chain(identity::SETS)
        .filter(|set| vectors_dir().join(set).is_dir())
        .flat_map(|set| json_paths(set).into_iter().map(move |p| relative(set, &p)))
        .collect()
}

fn relative(set: &str, path: &Path) -> String {
    format!("{set}/{}", path.file_name().unwrap_or_default().to_string_lossy())
}

/// Reads every vector of `set`.
fn load(set: &str) -> Vec<Loaded> {
    let paths = json_paths(set);
    assert!(!paths.is_empty(), "no vectors in proto-spec/vectors/{set}/");
    paths
        .iter()
        .map(|path| {
            let text = fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            let json = expand(json)
                .unwrap_or_else(|e| panic!("{}: bad compact form: {e}", path.display()));
            let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            Loaded { name, json }
        })
        .collect()
}

/// Expands the compact form of proto-spec/vectors/README.md: a run `{"repeat": x, "count": n}`
/// inside an array stands for `n` elements equal to `x`; anywhere else it stands for the
/// string `x` written `n` times.
fn expand(json: Value) -> Result<Value, String> {
    match json {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item.as_object().map(run).transpose()?.flatten() {
                    Some((x, n)) => out.extend(std::iter::repeat(expand(x.clone())?).take(n)),
                    None => out.push(expand(item)?),
                }
            }
            Ok(Value::Array(out))
        }
        Value::Object(map) => {
            if let Some((x, n)) = run(&map)? {
                let x = x.as_str().ok_or("a run outside an array repeats a string")?;
                return Ok(Value::String(x.repeat(n)));
            }
            map.into_iter().map(|(k, v)| Ok((k, expand(v)?))).collect::<Result<_, String>>()
        }
        other => Ok(other),
    }
}

/// `Some((x, n))` if `map` is a run `{"repeat": x, "count": n}`.
fn run(map: &Map<String, Value>) -> Result<Option<(&Value, usize)>, String> {
    if map.len() != 2 || !map.contains_key("repeat") || !map.contains_key("count") {
        return Ok(None);
    }
    let count = map["count"].as_u64().ok_or("a run's count is not an unsigned integer")?;
    Ok(Some((&map["repeat"], usize::try_from(count).map_err(|e| e.to_string())?)))
}

/// The valid vectors, checked and decoded once for all the tests of this file.
fn valid_vectors() -> &'static [(String, Message)] {
    static CHECKED: OnceLock<Vec<(String, Message)>> = OnceLock::new();
    CHECKED.get_or_init(|| check_all(&load("valid"), check_valid))
}

/// The invalid vectors, checked once, with how each failed.
fn invalid_vectors() -> &'static [(String, Failure)] {
    static CHECKED: OnceLock<Vec<(String, Failure)>> = OnceLock::new();
    CHECKED.get_or_init(|| check_all(&load("invalid"), check_invalid))
}

/// Runs `check` on every vector and fails naming every vector that did not pass; returns the
/// results of those that did (all of them, when it returns).
fn check_all<T>(
    vectors: &[Loaded],
    check: impl Fn(&Loaded) -> Result<T, String>,
) -> Vec<(String, T)> {
    let mut passed = Vec::new();
    let mut failures = Vec::new();
    for v in vectors {
        match check(v) {
            Ok(t) => passed.push((v.name.clone(), t)),
            Err(e) => failures.push(format!("{}: {e}", v.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
    passed
}

/// The checks of a valid vector (see the top of the file); returns the decoded message.
fn check_valid(v: &Loaded) -> Result<Message, String> {
    check_common(v, VALID_FIELDS)?;
    let frame = hex_field(&v.json, "frame")?;
    let max = max_frame_bytes(v)?;
    let payload = one_frame(&frame, max)?;
    let decoded = decode(&payload, max)
        .map_err(|e| format!("the payload does not decode: {} ({e})", e.name()))?;

    let expected = v.json.get("message").ok_or("no \"message\"")?;
    let rendered = serde_json::to_value(&decoded)
        .map_err(|e| format!("cannot render the decoded message as JSON: {e}"))?;
    if rendered != *expected {
        return Err(format!(
            "the decoded message differs from \"message\"\n  decoded: {rendered}\n  vector:  \
             {expected}"
        ));
    }
    let parsed: Message = serde_json::from_value(expected.clone())
        .map_err(|e| format!("\"message\" does not parse as a Message: {e}"))?;
    if parsed != decoded {
        return Err("\"message\" parses to another Message than the frame decodes to".into());
    }

    let mut reencoded = Vec::new();
    encode_frame(&decoded, max, &mut reencoded).map_err(|e| format!("re-encoding failed: {e}"))?;
    if reencoded != frame {
        return Err(format!(
            "the re-encoded frame differs {}",
            first_difference(&reencoded, &frame)
        ));
    }
    Ok(decoded)
}

/// How an invalid vector failed.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Frame(FrameError),
    Decode(DecodeError),
}

impl Failure {
    fn name(&self) -> &'static str {
        match self {
            Failure::Frame(FrameError::TooLarge { .. }) => FRAME_TOO_LARGE,
            Failure::Decode(e) => e.name(),
        }
    }
}

/// The checks of an invalid vector (see the top of the file); returns how it failed.
fn check_invalid(v: &Loaded) -> Result<Failure, String> {
    check_common(v, INVALID_FIELDS)?;
    let expected = str_field(&v.json, "error")?;
    let max = max_frame_bytes(v)?;
    if v.json.get("payload").is_some() {
        return check_invalid_payload(v, expected, max);
    }
    let frame = hex_field(&v.json, "frame")?;
    let announced = announced_len(&frame)?;

    if expected == FRAME_TOO_LARGE {
        let fed = feed_bytewise(&frame, max)?;
        return match fed.error {
            Some(e @ FrameError::TooLarge { len, max: m }) if len == announced && m == max => {
                Ok(Failure::Frame(e))
            }
            Some(e) => Err(format!("the frame layer failed otherwise than expected: {e}")),
            None => Err(format!(
                "the frame layer accepted a {announced}-byte frame under a {max}-byte limit"
            )),
        };
    }

    if announced != frame.len() - 4 {
        return Err(format!(
            "the header announces {announced} bytes but {} follow",
            frame.len() - 4
        ));
    }
    let payload = one_frame(&frame, max)?;
    match decode(&payload, max) {
        Ok(msg) => Err(format!("decoded as a valid {} message, expected {expected}", msg.kind())),
        Err(e) if e.name() == expected => Ok(Failure::Decode(e)),
        Err(e) => Err(format!("failed with {} ({e}), expected {expected}", e.name())),
    }
}

/// An invalid vector given as a bare `payload`: for the message decoder alone (messages.md §8
/// rule 1), since framing refuses a payload above the limit before the decoder sees it.
fn check_invalid_payload(v: &Loaded, expected: &str, max: usize) -> Result<Failure, String> {
    if v.json.get("frame").is_some() {
        return Err("has both \"frame\" and \"payload\"".into());
    }
    let payload = hex_field(&v.json, "payload")?;
    if payload.len() <= max {
        return Err("a payload vector must be longer than its limit; give the frame instead".into());
    }
    match decode(&payload, max) {
        Ok(msg) => Err(format!("decoded as a valid {} message, expected {expected}", msg.kind())),
        Err(e) if e.name() == expected => Ok(Failure::Decode(e)),
        Err(e) => Err(format!("failed with {} ({e}), expected {expected}", e.name())),
    }
}

/// The vector's `max_frame_bytes`, or the default.
fn max_frame_bytes(v: &Loaded) -> Result<usize, String> {
    match v.json.get("max_frame_bytes") {
        None => Ok(MAX),
        Some(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| "\"max_frame_bytes\" is not an unsigned integer".into()),
    }
}

/// Checks what every vector has: known fields only, a snake_case `name` equal to the file
/// name, and a description.
fn check_common(v: &Loaded, allowed: &[&str]) -> Result<(), String> {
    let object = v.json.as_object().ok_or("not a JSON object")?;
    if let Some(field) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown field {field:?}"));
    }
    let name = str_field(&v.json, "name")?;
    if name != v.name {
        return Err(format!("\"name\" is {name:?}, not the file name"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err("\"name\" is not snake_case".into());
    }
    if str_field(&v.json, "description")?.is_empty() {
        return Err("empty \"description\"".into());
    }
    Ok(())
}

fn str_field<'a>(json: &'a Value, field: &str) -> Result<&'a str, String> {
    json.get(field).and_then(Value::as_str).ok_or_else(|| format!("no string \"{field}\""))
}

/// A hex field: one string, or an array of strings to concatenate (the compact form).
fn hex_field(json: &Value, field: &str) -> Result<Vec<u8>, String> {
    let text = match json.get(field) {
        Some(Value::Array(pieces)) => pieces
            .iter()
            .map(|p| p.as_str().ok_or_else(|| format!("\"{field}\" holds a non-string piece")))
            .collect::<Result<String, _>>()?,
        _ => str_field(json, field)?.to_owned(),
    };
    hex_decode(&text).ok_or_else(|| format!("\"{field}\" is not hex"))
}

/// The payload length a frame's header announces.
fn announced_len(frame: &[u8]) -> Result<usize, String> {
    let header: [u8; 4] = frame
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or("the frame is shorter than its 4-byte header")?;
    Ok(u32::from_be_bytes(header) as usize)
}

/// What a `FrameDecoder` made of bytes fed to it one at a time.
struct Fed {
    frames: Vec<Vec<u8>>,
    /// The error it stopped at, if any.
    error: Option<FrameError>,
    /// Bytes of an unfinished frame left in it.
    buffered: usize,
}

fn feed_bytewise(bytes: &[u8], max: usize) -> Result<Fed, String> {
    let mut decoder = FrameDecoder::new(max);
    let mut frames = Vec::new();
    for (offset, byte) in bytes.iter().enumerate() {
        let mut input = std::slice::from_ref(byte);
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return Ok(Fed { frames, error: Some(e), buffered: 0 }),
            }
        }
        if !input.is_empty() {
            return Err(format!("FrameDecoder returned without consuming byte {offset}"));
        }
    }
    Ok(Fed { frames, error: None, buffered: decoder.buffered_bytes() })
}

/// The payload of `bytes`, which must be exactly one whole frame.
fn one_frame(bytes: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let fed = feed_bytewise(bytes, max)?;
    if let Some(e) = fed.error {
        return Err(format!("the frame layer refused the frame: {e}"));
    }
    if fed.buffered != 0 {
        return Err(format!("{} bytes of an unfinished frame are left over", fed.buffered));
    }
    match <[Vec<u8>; 1]>::try_from(fed.frames) {
        Ok([payload]) => Ok(payload),
        Err(frames) => Err(format!("expected exactly one frame, got {}", frames.len())),
    }
}

fn first_difference(actual: &[u8], expected: &[u8]) -> String {
    match actual.iter().zip(expected).position(|(a, e)| a != e) {
        Some(i) => format!("at byte {i}: {:#04x} instead of {:#04x}", actual[i], expected[i]),
        None => format!("in length: {} bytes instead of {}", actual.len(), expected.len()),
    }
}

// ---------------------------------------------------------------------------------------------
// Coverage kinds
// ---------------------------------------------------------------------------------------------

/// `REQUIRED_KINDS`, one kind per error code and one per goodbye reason.
fn required_kinds() -> BTreeSet<String> {
    let codes = ALL_ERROR_CODES.iter().map(|c| format!("Response/Error/{c:?}"));
    let reasons = ALL_GOODBYE_REASONS.iter().map(|r| format!("Goodbye/{r:?}"));
    REQUIRED_KINDS.iter().map(|k| k.to_string()).chain(codes).chain(reasons).collect()
}

/// The coverage kind of a message, e.g. "Request/Store/Immutable" or "Response/Pong/Ipv6".
///
/// The matches are exhaustive on purpose: a new message variant is a compile error here. Give
/// it a kind, add a vector for it to the generator, and add the kind to `REQUIRED_KINDS`.
fn coverage_kind(msg: &Message) -> String {
    match msg {
        Message::Hello(h) if h.features & !(FEATURE_KAD | FEATURE_GOSSIP) != 0 => {
            "Hello/ReservedFeatures".to_owned()
        }
        Message::Hello(_) => "Hello".to_owned(),
        Message::Request { body, .. } => format!("Request/{}", request_kind(body)),
        Message::Response { body, .. } => format!("Response/{}", response_kind(body)),
        Message::Gossip(gossip) => format!("Gossip/{}", gossip_kind(gossip)),
        Message::Goodbye(Goodbye { reason }) => format!("Goodbye/{reason:?}"),
    }
}

fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Ping => "Ping",
        Request::FindNode { .. } => "FindNode",
        Request::FindValue { .. } => "FindValue",
        Request::Store { record, expected_seq, .. } => match (record, expected_seq) {
            (Record::Immutable { .. }, None) => "Store/Immutable",
            (Record::Immutable { .. }, Some(_)) => "Store/Immutable/ExpectedSeq",
            (Record::Mutable(_), None) => "Store/Mutable",
            (Record::Mutable(_), Some(_)) => "Store/Mutable/ExpectedSeq",
        },
        Request::AddProvider { .. } => "AddProvider",
        Request::GetProviders { .. } => "GetProviders",
    }
}

fn response_kind(response: &Response) -> String {
    let kind = match response {
        Response::Pong { observed: SocketAddr::V4(_) } => "Pong/Ipv4",
        Response::Pong { observed: SocketAddr::V6(a) } if a.ip().to_ipv4_mapped().is_some() => {
            "Pong/Ipv4MappedIpv6"
        }
        Response::Pong { observed: SocketAddr::V6(_) } => "Pong/Ipv6",
        Response::Nodes { closer } if closer.len() > 1 && has_ipv6(closer) => {
            "Nodes/SeveralWithIpv6"
        }
        Response::Nodes { .. } => "Nodes",
        Response::Value { record: Some(Record::Immutable { .. }), .. } => "Value/Record/Immutable",
        Response::Value { record: Some(Record::Mutable(_)), .. } => "Value/Record/Mutable",
        Response::Value { record: None, .. } => "Value/CloserOnly",
        Response::Stored => "Stored",
        Response::ProviderAdded => "ProviderAdded",
        Response::Providers { .. } => "Providers",
        Response::Error { code, .. } => return format!("Error/{code:?}"),
    };
    kind.to_owned()
}

fn gossip_kind(gossip: &Gossip) -> &'static str {
    match gossip {
        Gossip::Subscribe { .. } => "Subscribe",
        Gossip::Unsubscribe { .. } => "Unsubscribe",
        Gossip::Publish(_) => "Publish",
        Gossip::IHave { .. } => "IHave",
        Gossip::IWant { .. } => "IWant",
        Gossip::Graft { .. } => "Graft",
        Gossip::Prune { peers, .. } if peers.is_empty() => "Prune",
        Gossip::Prune { .. } => "Prune/PeerExchange",
        Gossip::IDontWant { .. } => "IDontWant",
    }
}

fn has_ipv6(peers: &[PeerInfo]) -> bool {
    peers.iter().flat_map(|p| &p.addrs).any(SocketAddr::is_ipv6)
}

// ---------------------------------------------------------------------------------------------
// Signatures, record keys and message ids
// ---------------------------------------------------------------------------------------------

/// What `check_derived` verified, summed over the vectors.
#[derive(Default)]
struct Tally {
    mutable_records: usize,
    publishes: usize,
    store_keys: usize,
}

/// The record a message carries: in a `Store` request or a `Value` response.
fn carried_record(msg: &Message) -> Option<&Record> {
    match msg {
        Message::Request { body: Request::Store { record, .. }, .. } => Some(record),
        Message::Response { body: Response::Value { record, .. }, .. } => record.as_ref(),
        _ => None,
    }
}

/// The gossip message a message publishes.
fn published(msg: &Message) -> Option<&GossipMessage> {
    match msg {
        Message::Gossip(Gossip::Publish(m)) => Some(m),
        _ => None,
    }
}

/// Checks signatures, the `record_key` and the `message_id` of one valid vector against the
/// library and against hashes computed here from the spec's definitions.
fn check_derived(v: &Loaded, msg: &Message, tally: &mut Tally) -> Result<(), String> {
    let record_key = v.json.get("record_key").and_then(Value::as_str);
    match (carried_record(msg), record_key) {
        (Some(record), Some(key)) => {
            if record.key().to_hex() != key || spec_record_key(record) != key {
                return Err(format!("\"record_key\" {key} is not the record's key"));
            }
            if let Record::Mutable(m) = record {
                if !m.verify() {
                    return Err("the mutable record's signature does not verify".into());
                }
                tally.mutable_records += 1;
            }
            if matches!(msg, Message::Request { body: Request::Store { .. }, .. }) {
                tally.store_keys += 1;
            }
        }
        (Some(_), None) => return Err("carries a record but has no \"record_key\"".into()),
        (None, Some(_)) => return Err("has a \"record_key\" but carries no record".into()),
        (None, None) => {}
    }

    let message_id = v.json.get("message_id").and_then(Value::as_str);
    match (published(msg), message_id) {
        (Some(m), Some(id)) => {
            if hex_encode(&m.id().0) != id || spec_message_id(m) != id {
                return Err(format!("\"message_id\" {id} is not the message's id"));
            }
            if !m.verify() {
                return Err("the gossip message's signature does not verify".into());
            }
            tally.publishes += 1;
        }
        (Some(_), None) => return Err("publishes but has no \"message_id\"".into()),
        (None, Some(_)) => return Err("has a \"message_id\" but publishes nothing".into()),
        (None, None) => {}
    }
    Ok(())
}

/// proto-spec/records.md: SHA-256(value), or SHA-256(public key ‖ salt).
fn spec_record_key(record: &Record) -> String {
    let digest = match record {
        Record::Immutable { value } => Sha256::digest(&value.0),
        Record::Mutable(m) => {
            Sha256::new().chain_update(m.public_key.0).chain_update(&m.salt.0).finalize()
        }
    };
    hex_encode(&digest)
}

/// proto-spec/messages.md §5.1: SHA-256("petrel/v1/message-id" ‖ author ‖ u64le(seqno)).
fn spec_message_id(m: &GossipMessage) -> String {
    let digest = Sha256::new()
        .chain_update(b"petrel/v1/message-id")
        .chain_update(m.author.0)
        .chain_update(m.seqno.to_le_bytes())
        .finalize();
    hex_encode(&digest)
}

// ---------------------------------------------------------------------------------------------
// Generator: fixed data
// ---------------------------------------------------------------------------------------------

/// The topic most gossip vectors use.
const TOPIC: &str = "petrel/announce";
/// The immutable value stored, looked up and provided across the vectors.
const IMMUTABLE_VALUE: &[u8] = b"hello petrel";

/// Key pair `n`: secret seed `[n; 32]`.
fn keypair(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

/// 192.0.2.`host` (TEST-NET-1).
fn ipv4(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(192, 0, 2, host), port))
}

/// 2001:db8::`host` (the IPv6 documentation prefix).
fn ipv6(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host)), port))
}

/// The node of key pair `n`, at `addrs`.
fn peer(n: u8, addrs: &[SocketAddr]) -> PeerInfo {
    PeerInfo { id: keypair(n).node_id(), addrs: addrs.to_vec() }
}

fn request(id: u64, body: Request) -> Message {
    Message::Request { id, body }
}

fn response(id: u64, body: Response) -> Message {
    Message::Response { id, body }
}

fn gossip(g: Gossip) -> Message {
    Message::Gossip(g)
}

fn goodbye(reason: GoodbyeReason) -> Message {
    Message::Goodbye(Goodbye { reason })
}

/// A hello of protocol version 1, id-PoW 0, features KAD and GOSSIP, without listen addresses.
fn hello_message(network: &str, agent: &str) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        network: network.into(),
        id_pow_bits: 0,
        features: FEATURE_KAD | FEATURE_GOSSIP,
        agent: agent.into(),
        listen_addrs: vec![],
    }
}

/// Alice's signed profile record: salt "profile", sequence 7.
fn profile_record() -> MutableRecord {
    MutableRecord::sign(&keypair(1), b"profile".to_vec(), 7, b"{\"nick\":\"alice\"}".to_vec())
}

/// Alice's message `seqno` on [`TOPIC`].
fn announcement(seqno: u64) -> GossipMessage {
    GossipMessage::sign(&keypair(1), seqno, TOPIC.into(), format!("hello, mesh #{seqno}").into())
}

fn announcement_ids(seqnos: &[u64]) -> Vec<Bytes32> {
    seqnos.iter().map(|&s| announcement(s).id()).collect()
}

// ---------------------------------------------------------------------------------------------
// Generator: valid vectors
// ---------------------------------------------------------------------------------------------

/// A valid vector before rendering.
struct ValidSpec {
    name: String,
    description: String,
    message: Message,
    /// The frame limit it is valid under, if not the default.
    max_frame_bytes: Option<usize>,
}

fn valid(name: &str, description: &str, message: Message) -> ValidSpec {
    ValidSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        message,
        max_frame_bytes: None,
    }
}

fn valid_specs() -> Vec<ValidSpec> {
    let mut specs = hello_specs();
    specs.extend(request_specs());
    specs.extend(response_specs());
    specs.extend(gossip_specs());
    specs.extend(at_bound_specs());
    specs.extend(error_code_specs());
    specs.extend(goodbye_specs());
    specs
}

/// One Error response per code that `response_specs` does not show in context.
fn error_code_specs() -> Vec<ValidSpec> {
    let shown = [ErrorCode::BadRequest, ErrorCode::CasMismatch, ErrorCode::Overloaded];
    (0u64..)
        .zip(ALL_ERROR_CODES)
        .filter(|(_, code)| !shown.contains(code))
        .map(|(n, &code)| {
            let (text, meaning) = error_code_text(code);
            valid(
                &format!("response_error_{}", snake_case(&format!("{code:?}"))),
                &format!("Error with code {code:?} ({n}): {meaning}."),
                response(30 + n, Response::Error { code, text: text.into() }),
            )
        })
        .collect()
}

/// A text a responder may send with `code`, and when it sends the code (messages.md §3.3).
/// Exhaustive: a new code does not compile until it has its vector.
fn error_code_text(code: ErrorCode) -> (&'static str, &'static str) {
    match code {
        ErrorCode::BadRequest => ("ttl_secs is 0", "a well-formed but meaningless request"),
        ErrorCode::KeyMismatch => (
            "key_mismatch",
            "a Store whose record has the key of the held record but other contents (a SHA-256 \
             collision, records.md §3 step 2)",
        ),
        ErrorCode::BadSignature => ("bad_signature", "a mutable record's signature fails"),
        ErrorCode::StaleSequence => ("held seq is 9", "a mutable record's seq below the held one"),
        ErrorCode::SequenceConflict => ("same seq, other value", "same seq, different value"),
        ErrorCode::CasMismatch => ("held seq is 8, not 6", "expected_seq does not match"),
        ErrorCode::ValueTooLarge => ("limit is 4096 bytes", "a value above this holder's limit"),
        ErrorCode::QuotaExceeded => ("quota_exceeded", "the peer's storage quota is used"),
        ErrorCode::StorageFull => ("storage_full", "the holder's storage cap is reached"),
        ErrorCode::ProviderMismatch => ("provider is not the sender", "AddProvider for another id"),
        ErrorCode::RateLimited => ("rate_limited", "the peer exceeds its request rate"),
        ErrorCode::Unsupported => ("no DHT service", "a service the responder does not offer"),
        ErrorCode::Overloaded => ("", "temporarily overloaded, retry elsewhere"),
    }
}

/// One Goodbye per reason.
fn goodbye_specs() -> Vec<ValidSpec> {
    (0..)
        .zip(ALL_GOODBYE_REASONS)
        .map(|(n, &reason)| {
            valid(
                &format!("goodbye_{}", snake_case(&format!("{reason:?}"))),
                &format!("Goodbye with reason {reason:?} (code {n}): {}.", goodbye_meaning(reason)),
                goodbye(reason),
            )
        })
        .collect()
}

/// When a node sends `reason` (messages.md §6). Exhaustive: a new reason does not compile until
/// it has its vector.
fn goodbye_meaning(reason: GoodbyeReason) -> &'static str {
    match reason {
        GoodbyeReason::Shutdown => "the node is shutting down",
        GoodbyeReason::IdleTimeout => "no traffic for the idle timeout",
        GoodbyeReason::TooManyConnections => "a connection limit is reached",
        GoodbyeReason::DuplicateConnection => "another connection to the same peer is kept",
        GoodbyeReason::ProtocolViolation => "the peer broke the protocol",
        GoodbyeReason::IncompatibleVersion => "Hello.version differs from the ALPN version",
        GoodbyeReason::NetworkMismatch => "another network name or id difficulty",
        GoodbyeReason::RateLimited => "the peer persistently exceeded its rate limits",
        GoodbyeReason::LowScore => "the peer's score fell below the threshold",
    }
}

/// `CamelCase` to `snake_case`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn hello_specs() -> Vec<ValidSpec> {
    vec![
        valid(
            "hello",
            "Hello from a DHT server that speaks gossip: version 1, network \"petrel-test\", \
             id-PoW 8 bits, features KAD and GOSSIP (3), agent \"petrel/0.1.0\", one IPv4 and \
             one IPv6 listen address.",
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                network: "petrel-test".into(),
                id_pow_bits: 8,
                features: FEATURE_KAD | FEATURE_GOSSIP,
                agent: "petrel/0.1.0".into(),
                listen_addrs: vec![ipv4(1, 4001), ipv6(1, 4001)],
            }),
        ),
        valid(
            "hello_ipv6_text_forms",
            "Hello whose listen addresses pin the text form of IPv6 (proto-spec/README.md §4): \
             of two equal zero runs the first is compressed, a longer later run wins, a single \
             zero group stays 0, hex is lower case, an IPv4-compatible address stays in hex, an \
             IPv4-mapped one is dotted, a trailing run is compressed too.",
            Message::Hello(Hello {
                listen_addrs: [
                    "[2001:db8::1:0:0:1]:4001",
                    "[2001:db8:0:1::1]:4001",
                    "[2001:db8:1:0:1:1:1:1]:4001",
                    "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:4001",
                    "[::c000:201]:4001",
                    "[::ffff:192.0.2.1]:4001",
                    "[2001:db8::]:4001",
                ]
                .iter()
                .map(|a| a.parse().expect("a literal address"))
                .collect(),
                ..hello_message("petrel-test", "petrel/0.1.0")
            }),
        ),
        valid(
            "hello_reserved_features",
            "Hello with all 64 feature bits set (18446744073709551615, above 2^53), the 62 \
             reserved ones included: it decodes and re-encodes like any other Hello, and a \
             receiver uses bits 0 and 1 and ignores the rest (handshake.md §2).",
            Message::Hello(Hello {
                features: u64::MAX,
                ..hello_message("petrel-test", "future/2.0")
            }),
        ),
        valid(
            "hello_minimal",
            "Hello from a client-only node: network \"petrel\", no id-PoW, no feature bits, \
             empty agent, no listen addresses.",
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                network: "petrel".into(),
                id_pow_bits: 0,
                features: 0,
                agent: String::new(),
                listen_addrs: vec![],
            }),
        ),
    ]
}

fn request_specs() -> Vec<ValidSpec> {
    let target = NodeId::from_bytes(std::array::from_fn(|i| i as u8));
    let alice = peer(1, &[ipv4(1, 4001), ipv6(1, 4001)]);
    vec![
        valid(
            "request_ping",
            "Ping with request id 0x0011223344556677, which pins the little-endian byte order \
             of the u64 id.",
            request(0x0011_2233_4455_6677, Request::Ping),
        ),
        valid(
            "request_find_node",
            "FindNode for the target 000102...1f.",
            request(2, Request::FindNode { target }),
        ),
        valid(
            "request_find_value",
            "FindValue for the key of the mutable record in request_store_mutable_cas.",
            request(3, Request::FindValue { key: profile_record().key() }),
        ),
        valid(
            "request_store_immutable",
            "Store of the immutable value \"hello petrel\" for one hour, unconditionally; its \
             key is SHA-256 of the value (record_key).",
            request(
                4,
                Request::Store {
                    record: Record::Immutable { value: IMMUTABLE_VALUE.to_vec().into() },
                    ttl_secs: 3600,
                    expected_seq: None,
                },
            ),
        ),
        valid(
            "request_store_mutable",
            "Store of a mutable record with an empty salt and sequence 0, signed by key pair 2, \
             unconditionally (expected_seq None).",
            request(
                5,
                Request::Store {
                    record: Record::Mutable(MutableRecord::sign(
                        &keypair(2),
                        vec![],
                        0,
                        b"first".to_vec(),
                    )),
                    ttl_secs: 3600,
                    expected_seq: None,
                },
            ),
        ),
        valid(
            "request_store_mutable_cas",
            "Compare-and-swap Store of key pair 1's record (salt \"profile\", sequence 7) for a \
             day, only if the held record has sequence 6.",
            request(
                6,
                Request::Store {
                    record: Record::Mutable(profile_record()),
                    ttl_secs: 86_400,
                    expected_seq: Some(6),
                },
            ),
        ),
        valid(
            "request_add_provider",
            "AddProvider: key pair 1, at one IPv4 and one IPv6 address, provides the key of \
             \"hello petrel\" for two hours.",
            request(
                7,
                Request::AddProvider {
                    key: immutable_key(IMMUTABLE_VALUE),
                    provider: alice,
                    ttl_secs: 7200,
                },
            ),
        ),
        valid(
            "request_get_providers",
            "GetProviders for the key of \"hello petrel\".",
            request(8, Request::GetProviders { key: immutable_key(IMMUTABLE_VALUE) }),
        ),
    ]
}

fn response_specs() -> Vec<ValidSpec> {
    let bob = peer(2, &[ipv4(2, 4001)]);
    let carol = peer(3, &[ipv4(3, 4001), ipv6(3, 4001)]);
    let dave = peer(4, &[ipv6(4, 4002)]);
    let full: Vec<PeerInfo> = (0..MAX_PEERS_PER_RESPONSE as u8)
        .map(|i| 20 + i)
        .map(|n| peer(n, &[ipv4(n, 4001), ipv4(n, 4002), ipv6(n, 4001), ipv6(n, 4002)]))
        .collect();
    let error = |id, code, text: &str| response(id, Response::Error { code, text: text.into() });
    vec![
        valid(
            "response_pong_ipv4",
            "Pong answering request_ping: the requester was seen at 198.51.100.7:50123.",
            response(
                0x0011_2233_4455_6677,
                Response::Pong { observed: SocketAddr::from(([198, 51, 100, 7], 50123)) },
            ),
        ),
        valid(
            "response_pong_ipv6",
            "Pong: the requester was seen at [2001:db8::7]:50123.",
            response(9, Response::Pong { observed: ipv6(7, 50123) }),
        ),
        valid(
            "response_pong_ipv4_mapped",
            "Pong: the requester was seen at the IPv4-mapped IPv6 address ::ffff:192.0.2.1, \
             port 4001. It travels as IPv6 (tag 1), is written in mixed notation, and is not \
             the IPv4 address 192.0.2.1.",
            response(
                17,
                Response::Pong {
                    observed: SocketAddr::from((
                        Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped(),
                        4001,
                    )),
                },
            ),
        ),
        valid(
            "response_nodes",
            "Nodes answering request_find_node: three peers, IPv4 only, dual-stack and IPv6 only.",
            response(2, Response::Nodes { closer: vec![bob.clone(), carol.clone(), dave.clone()] }),
        ),
        valid(
            "response_nodes_max",
            "Nodes at its bounds: 20 peers (k) with 4 addresses each, two IPv4 and two IPv6.",
            response(10, Response::Nodes { closer: full }),
        ),
        valid(
            "response_nodes_empty",
            "Nodes with no peers: the responder knows none closer.",
            response(11, Response::Nodes { closer: vec![] }),
        ),
        valid(
            "response_value_record",
            "Value answering request_find_value with the signed mutable record and no closer \
             peers.",
            response(
                3,
                Response::Value { record: Some(Record::Mutable(profile_record())), closer: vec![] },
            ),
        ),
        valid(
            "response_value_immutable",
            "Value answering a FindValue for the key of \"hello petrel\" with the immutable \
             record and one closer peer.",
            response(
                16,
                Response::Value {
                    record: Some(Record::Immutable { value: IMMUTABLE_VALUE.to_vec().into() }),
                    closer: vec![carol.clone()],
                },
            ),
        ),
        valid(
            "response_value_closer",
            "Value without a record (None): closer peers only.",
            response(12, Response::Value { record: None, closer: vec![bob.clone(), dave.clone()] }),
        ),
        valid(
            "response_stored",
            "Stored answering request_store_immutable.",
            response(4, Response::Stored),
        ),
        valid(
            "response_provider_added",
            "ProviderAdded answering request_add_provider.",
            response(7, Response::ProviderAdded),
        ),
        valid(
            "response_providers",
            "Providers answering request_get_providers: one provider and two closer peers.",
            response(8, Response::Providers { providers: vec![bob], closer: vec![carol, dave] }),
        ),
        valid(
            "response_error_bad_request",
            "Error with code BadRequest (0) and a text.",
            error(13, ErrorCode::BadRequest, "expected_seq is only for mutable records"),
        ),
        valid(
            "response_error_cas_mismatch",
            "Error answering request_store_mutable_cas with code CasMismatch (5).",
            error(6, ErrorCode::CasMismatch, "held sequence is 8, not 6"),
        ),
        valid(
            "response_error_overloaded",
            "Error with code Overloaded (12, the highest defined) and an empty text.",
            error(14, ErrorCode::Overloaded, ""),
        ),
    ]
}

fn gossip_specs() -> Vec<ValidSpec> {
    let px = vec![peer(2, &[ipv4(2, 4001)]), peer(3, &[ipv6(3, 4001)])];
    vec![
        valid(
            "gossip_subscribe",
            "Subscribe to \"petrel/announce\".",
            gossip(Gossip::Subscribe { topic: TOPIC.into() }),
        ),
        valid(
            "gossip_subscribe_topic_at_bound",
            "Subscribe to a topic of 128 'é' characters: 256 bytes, exactly the bound, which \
             counts bytes, not characters.",
            gossip(Gossip::Subscribe { topic: "é".repeat(MAX_TOPIC_BYTES / 2) }),
        ),
        valid(
            "gossip_unsubscribe",
            "Unsubscribe from \"news/météo\" (non-ASCII UTF-8; the length prefix counts bytes).",
            gossip(Gossip::Unsubscribe { topic: "news/météo".into() }),
        ),
        valid(
            "gossip_publish",
            "Publish: message 1 of key pair 1 on \"petrel/announce\", signed; message_id is its \
             id.",
            gossip(Gossip::Publish(announcement(1))),
        ),
        valid(
            "gossip_ihave",
            "IHAVE for \"petrel/announce\" with the ids of key pair 1's messages 1, 2 and 3.",
            gossip(Gossip::IHave { topic: TOPIC.into(), ids: announcement_ids(&[1, 2, 3]) }),
        ),
        valid(
            "gossip_iwant",
            "IWANT for key pair 1's messages 2 and 3.",
            gossip(Gossip::IWant { ids: announcement_ids(&[2, 3]) }),
        ),
        valid(
            "gossip_graft",
            "GRAFT for \"petrel/announce\".",
            gossip(Gossip::Graft { topic: TOPIC.into() }),
        ),
        valid(
            "gossip_prune",
            "PRUNE for \"petrel/announce\" with a 60 s backoff and two peers for peer exchange.",
            gossip(Gossip::Prune { topic: TOPIC.into(), backoff_secs: 60, peers: px }),
        ),
        valid(
            "gossip_prune_no_px",
            "PRUNE for \"petrel/announce\" with no backoff and no peer exchange.",
            gossip(Gossip::Prune { topic: TOPIC.into(), backoff_secs: 0, peers: vec![] }),
        ),
        valid(
            "gossip_idontwant",
            "IDONTWANT for the message in gossip_publish.",
            gossip(Gossip::IDontWant { ids: announcement_ids(&[1]) }),
        ),
        ValidSpec {
            max_frame_bytes: Some(64),
            ..valid(
                "gossip_graft_frame_at_limit",
                "GRAFT whose payload (a 48-byte topic) is 64 bytes, exactly the 64-byte frame \
                 limit of this vector: a length equal to the limit is allowed. One byte more is \
                 invalid_frame_too_large_custom_limit.",
                gossip(Gossip::Graft { topic: "t".repeat(48) }),
            )
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Generator: bounds
// ---------------------------------------------------------------------------------------------

/// Valid vectors with fields exactly at their bounds (messages.md §7). With `response_nodes_max`
/// and `gossip_subscribe_topic_at_bound` they reach every [`Bound`]; [`over_bound_specs`] grows
/// each bound of them by one.
fn at_bound_specs() -> Vec<ValidSpec> {
    let alice = keypair(1);
    let full_peer = |n: u8| peer(n, &[ipv4(n, 4001), ipv4(n, 4002), ipv6(n, 4001), ipv6(n, 4002)]);
    let full_peers = |first: u8, count: usize| -> Vec<PeerInfo> {
        (0..count).map(|i| full_peer(first + i as u8)).collect()
    };
    let immutable = || Record::Immutable { value: vec![0xa5; MAX_VALUE_BYTES].into() };
    let mutable = || {
        let salt = padded("salt", MAX_SALT_BYTES).into_bytes();
        Record::Mutable(MutableRecord::sign(&alice, salt, 1, vec![0xa5; MAX_VALUE_BYTES]))
    };
    let topic = || padded("petrel/long-topic/", MAX_TOPIC_BYTES);
    let ids = || vec![Bytes32([0x11; 32]); MAX_IDS_PER_CONTROL];
    let store = |record| Request::Store { record, ttl_secs: 3600, expected_seq: None };
    vec![
        valid(
            "hello_at_bounds",
            "Hello with every field at its bound: a 32-byte network name, a 64-byte agent and 8 \
             listen addresses.",
            Message::Hello(Hello {
                listen_addrs: (1..=4)
                    .flat_map(|i| [ipv4(1, 4000 + i), ipv6(1, 4000 + i)])
                    .collect(),
                ..hello_message(
                    &padded("petrel-test", MAX_NETWORK_BYTES),
                    &padded("petrel/0.1.0+", MAX_AGENT_BYTES),
                )
            }),
        ),
        valid(
            "request_store_immutable_at_bound",
            "Store of an immutable value of 65536 bytes a5, its bound.",
            request(20, store(immutable())),
        ),
        valid(
            "request_store_mutable_at_bounds",
            "Store of key pair 1's mutable record with a 64-byte salt and a 65536-byte value, \
             both at their bounds.",
            request(21, store(mutable())),
        ),
        valid(
            "request_add_provider_at_bound",
            "AddProvider whose provider (key pair 1) has 4 addresses, its bound.",
            request(
                22,
                Request::AddProvider {
                    key: immutable_key(IMMUTABLE_VALUE),
                    provider: full_peer(1),
                    ttl_secs: 7200,
                },
            ),
        ),
        valid(
            "response_value_immutable_at_bounds",
            "Value with an immutable record of 65536 bytes and 20 closer peers of 4 addresses \
             each, all at their bounds.",
            response(23, Response::Value { record: Some(immutable()), closer: full_peers(20, 20) }),
        ),
        valid(
            "response_value_mutable_at_bounds",
            "Value with key pair 1's mutable record, its salt (64 bytes) and value (65536 bytes) \
             at their bounds, and no closer peers.",
            response(24, Response::Value { record: Some(mutable()), closer: vec![] }),
        ),
        valid(
            "response_providers_max",
            "Providers at its bounds: 20 providers and 20 closer peers, 4 addresses each.",
            response(
                25,
                Response::Providers { providers: full_peers(20, 20), closer: full_peers(40, 20) },
            ),
        ),
        valid(
            "response_error_text_at_bound",
            "Error BadRequest with a text of 128 bytes, its bound.",
            response(
                26,
                Response::Error {
                    code: ErrorCode::BadRequest,
                    text: padded("ttl_secs is 0", MAX_ERROR_TEXT_BYTES),
                },
            ),
        ),
        valid(
            "gossip_unsubscribe_topic_at_bound",
            "Unsubscribe from a 256-byte topic, its bound.",
            gossip(Gossip::Unsubscribe { topic: topic() }),
        ),
        valid(
            "gossip_publish_at_bounds",
            "Publish of key pair 1's message 2 with a 256-byte topic and a payload of 1047552 \
             bytes 5a, both at their bounds: 1047936 bytes, the largest message of version 1.",
            gossip(Gossip::Publish(GossipMessage::sign(
                &alice,
                2,
                topic(),
                vec![0x5a; MAX_PAYLOAD_BYTES],
            ))),
        ),
        valid(
            "gossip_ihave_at_bounds",
            "IHAVE with a 256-byte topic and 5000 ids (all 11...11), both at their bounds.",
            gossip(Gossip::IHave { topic: topic(), ids: ids() }),
        ),
        valid(
            "gossip_iwant_at_bound",
            "IWANT with 5000 ids (all 11...11), its bound.",
            gossip(Gossip::IWant { ids: ids() }),
        ),
        valid(
            "gossip_graft_topic_at_bound",
            "GRAFT for a 256-byte topic, its bound.",
            gossip(Gossip::Graft { topic: topic() }),
        ),
        valid(
            "gossip_prune_at_bounds",
            "PRUNE with a 256-byte topic and 16 peers of 4 addresses each, all at their bounds.",
            gossip(Gossip::Prune { topic: topic(), backoff_secs: 60, peers: full_peers(60, 16) }),
        ),
        valid(
            "gossip_idontwant_at_bound",
            "IDONTWANT with 5000 ids (all 11...11), its bound.",
            gossip(Gossip::IDontWant { ids: ids() }),
        ),
    ]
}

/// `prefix` followed by '-' up to `len` bytes.
fn padded(prefix: &str, len: usize) -> String {
    format!("{prefix:-<len$}")
}

/// One over-bound vector per [`Bound`]: the first valid vector that has the field at its bound,
/// with the field one longer. Named `invalid_over_bound_<field>`.
fn over_bound_specs(valid: &[ValidSpec]) -> Result<Vec<InvalidSpec>, String> {
    Bound::ALL
        .iter()
        .map(|&bound| {
            let at = valid
                .iter()
                .find(|spec| bounded_lengths(&spec.message).contains(&(bound, bound.max())))
                .ok_or_else(|| format!("no valid vector has {} at its bound", bound.field()))?;
            let (message, unit) = grow(at.message.clone(), bound)?;
            let description = format!(
                "The valid vector {} with {} one over its bound: {} {unit} where {} are allowed.",
                at.name,
                bound.field(),
                bound.max() + 1,
                bound.max()
            );
            let name = format!("invalid_over_bound_{}", bound.field().replace('.', "_"));
            Ok(invalid(&name, &description, Payload::default().message(&message), "over_bound"))
        })
        .collect()
}

/// Every bounded field of `msg` with its length.
fn bounded_lengths(msg: &Message) -> Vec<(Bound, usize)> {
    let mut out = Vec::new();
    let _ = msg.visit_bounded(&mut |bound, len| {
        out.push((bound, len));
        Ok(())
    });
    out
}

/// `msg` with the field of `bound` (at its bound) one byte or element longer, re-signed where a
/// signature covers it, and the unit of the field. The match is exhaustive: a new bound does not
/// compile until it has its over-bound vector here.
fn grow(mut msg: Message, bound: Bound) -> Result<(Message, &'static str), String> {
    use Bound::*;
    let wrong = || format!("{} is not in this message", bound.field());
    let unit = match bound {
        HelloNetwork | HelloAgent | HelloListenAddrs => {
            let Message::Hello(h) = &mut msg else { return Err(wrong()) };
            match bound {
                HelloNetwork => h.network.push('-'),
                HelloAgent => h.agent.push('-'),
                _ => h.listen_addrs.push(ipv4(1, 4009)),
            }
            if bound == HelloListenAddrs {
                "addresses"
            } else {
                "bytes"
            }
        }
        StoreImmutableValue | StoreMutableSalt | StoreMutableValue => {
            let Message::Request { body: Request::Store { record, .. }, .. } = &mut msg else {
                return Err(wrong());
            };
            grow_record(record, bound)?
        }
        AddProviderAddrs => {
            let Message::Request { body: Request::AddProvider { provider, .. }, .. } = &mut msg
            else {
                return Err(wrong());
            };
            grow_list(&mut provider.addrs)?;
            "addresses"
        }
        NodesCloser | NodesCloserAddrs => {
            let Message::Response { body: Response::Nodes { closer }, .. } = &mut msg else {
                return Err(wrong());
            };
            grow_peers(closer, bound == NodesCloserAddrs)?
        }
        ValueImmutableValue | ValueMutableSalt | ValueMutableValue => {
            let Message::Response { body: Response::Value { record: Some(record), .. }, .. } =
                &mut msg
            else {
                return Err(wrong());
            };
            grow_record(record, bound)?
        }
        ValueCloser | ValueCloserAddrs => {
            let Message::Response { body: Response::Value { closer, .. }, .. } = &mut msg else {
                return Err(wrong());
            };
            grow_peers(closer, bound == ValueCloserAddrs)?
        }
        ProvidersProviders | ProvidersProvidersAddrs | ProvidersCloser | ProvidersCloserAddrs => {
            let Message::Response { body: Response::Providers { providers, closer }, .. } =
                &mut msg
            else {
                return Err(wrong());
            };
            match bound {
                ProvidersProviders => grow_peers(providers, false)?,
                ProvidersProvidersAddrs => grow_peers(providers, true)?,
                ProvidersCloser => grow_peers(closer, false)?,
                _ => grow_peers(closer, true)?,
            }
        }
        ErrorText => {
            let Message::Response { body: Response::Error { text, .. }, .. } = &mut msg else {
                return Err(wrong());
            };
            text.push('-');
            "bytes"
        }
        SubscribeTopic | UnsubscribeTopic | GraftTopic => {
            let (Message::Gossip(Gossip::Subscribe { topic })
            | Message::Gossip(Gossip::Unsubscribe { topic })
            | Message::Gossip(Gossip::Graft { topic })) = &mut msg
            else {
                return Err(wrong());
            };
            topic.push('-');
            "bytes"
        }
        PublishTopic | PublishPayload => {
            let Message::Gossip(Gossip::Publish(m)) = &mut msg else { return Err(wrong()) };
            let (mut topic, mut payload) = (m.topic.clone(), m.payload.0.clone());
            match bound {
                PublishTopic => topic.push('-'),
                _ => payload.push(0x5a),
            }
            *m = resign_publish(m, topic, payload)?;
            "bytes"
        }
        IHaveTopic | IHaveIds | IWantIds | IDontWantIds => {
            let (topic, ids) = match &mut msg {
                Message::Gossip(Gossip::IHave { topic, ids }) => (Some(topic), ids),
                Message::Gossip(Gossip::IWant { ids } | Gossip::IDontWant { ids }) => (None, ids),
                _ => return Err(wrong()),
            };
            match (bound, topic) {
                (IHaveTopic, Some(topic)) => {
                    topic.push('-');
                    "bytes"
                }
                (IHaveTopic, None) => return Err(wrong()),
                _ => {
                    grow_list(ids)?;
                    "ids"
                }
            }
        }
        PruneTopic | PrunePeers | PrunePeersAddrs => {
            let Message::Gossip(Gossip::Prune { topic, peers, .. }) = &mut msg else {
                return Err(wrong());
            };
            match bound {
                PruneTopic => {
                    topic.push('-');
                    "bytes"
                }
                _ => grow_peers(peers, bound == PrunePeersAddrs)?,
            }
        }
    };
    Ok((msg, unit))
}

/// Grows a record's value or salt by one byte and signs it again (a mutable record is key pair
/// 1's).
fn grow_record(record: &mut Record, bound: Bound) -> Result<&'static str, String> {
    match (record, bound) {
        (Record::Immutable { value }, Bound::StoreImmutableValue | Bound::ValueImmutableValue) => {
            value.0.push(0xa5);
        }
        (Record::Mutable(m), Bound::StoreMutableSalt | Bound::ValueMutableSalt) => {
            let salt = [m.salt.0.as_slice(), b"-"].concat();
            *m = resign_record(m, salt, m.value.0.clone())?;
        }
        (Record::Mutable(m), _) => {
            let value = [m.value.0.as_slice(), &[0xa5]].concat();
            *m = resign_record(m, m.salt.0.clone(), value)?;
        }
        (Record::Immutable { .. }, _) => {
            return Err(format!("{} needs a mutable record", bound.field()))
        }
    }
    Ok("bytes")
}

fn resign_record(
    m: &MutableRecord,
    salt: Vec<u8>,
    value: Vec<u8>,
) -> Result<MutableRecord, String> {
    let author = keypair(1);
    if m.public_key.0 != author.public_key() {
        return Err("the record to grow is not key pair 1's".into());
    }
    Ok(MutableRecord::sign(&author, salt, m.seq, value))
}

fn resign_publish(
    m: &GossipMessage,
    topic: String,
    payload: Vec<u8>,
) -> Result<GossipMessage, String> {
    let author = keypair(1);
    if m.author.0 != author.public_key() {
        return Err("the message to grow is not key pair 1's".into());
    }
    Ok(GossipMessage::sign(&author, m.seqno, topic, payload))
}

/// One more element: a copy of the last.
fn grow_list<T: Clone>(list: &mut Vec<T>) -> Result<(), String> {
    let last = list.last().ok_or("cannot grow an empty list")?.clone();
    list.push(last);
    Ok(())
}

/// One more peer (a new one, key pair 99), or one more address for the first peer.
fn grow_peers(peers: &mut Vec<PeerInfo>, addrs: bool) -> Result<&'static str, String> {
    if !addrs {
        peers.push(peer(99, &[ipv4(99, 4001)]));
        return Ok("peers");
    }
    grow_list(&mut peers.first_mut().ok_or("no peer to grow")?.addrs)?;
    Ok("addresses")
}

// ---------------------------------------------------------------------------------------------
// Generator: invalid vectors
// ---------------------------------------------------------------------------------------------

/// An invalid vector before rendering.
struct InvalidSpec {
    name: String,
    description: String,
    frame: Vec<u8>,
    error: &'static str,
    max_frame_bytes: Option<usize>,
    /// Rendered as the bare `payload` (no header), for the message decoder alone.
    payload_only: bool,
}

/// An invalid vector whose frame header matches its payload.
fn invalid(name: &str, description: &str, payload: Payload, error: &'static str) -> InvalidSpec {
    let mut frame = (payload.0.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload.0);
    InvalidSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        frame,
        error,
        max_frame_bytes: None,
        payload_only: false,
    }
}

/// `spec` under a frame limit of `max_frame_bytes` instead of the default.
fn with_limit(mut spec: InvalidSpec, max_frame_bytes: usize) -> InvalidSpec {
    spec.max_frame_bytes = Some(max_frame_bytes);
    spec
}

/// The payload of the valid vector `name`.
fn valid_payload(valid: &[ValidSpec], name: &str) -> Result<Payload, String> {
    let spec =
        valid.iter().find(|s| s.name == name).ok_or_else(|| format!("no valid vector {name}"))?;
    encode(&spec.message, MAX).map(Payload).map_err(|e| format!("{name}: {e}"))
}

fn invalid_specs(valid: &[ValidSpec]) -> Result<Vec<InvalidSpec>, String> {
    let mut specs = truncated_specs(valid)?;
    specs.extend(frame_too_large_specs());
    specs.extend(trailing_specs(valid)?);
    specs.extend(unknown_tag_specs(valid)?);
    specs.extend(invalid_utf8_specs());
    specs.extend(over_bound_specs(valid)?);
    specs.extend(length_over_limit_specs());
    Ok(specs)
}

fn truncated_specs(valid: &[ValidSpec]) -> Result<Vec<InvalidSpec>, String> {
    let hello = valid_payload(valid, "hello")?.0;
    // Tag, version, network, id_pow_bits, features, agent length, then 3 agent bytes.
    let in_agent = 4 + 4 + (8 + "petrel-test".len()) + 1 + 8 + 8 + 3;
    let find_node = valid_payload(valid, "request_find_node")?.0;
    let publish = valid_payload(valid, "gossip_publish")?.0;
    Ok(vec![
        invalid(
            "invalid_truncated_empty_payload",
            "A zero-length frame: the payload ends before the Message tag.",
            Payload::default(),
            "truncated",
        ),
        invalid(
            "invalid_truncated_message_tag",
            "A 2-byte payload: half of the 4-byte Message tag.",
            Payload::default().raw(&[1, 0]),
            "truncated",
        ),
        invalid(
            "invalid_truncated_hello",
            "The payload of the hello vector cut 3 bytes into its agent string.",
            Payload(hello[..in_agent].to_vec()),
            "truncated",
        ),
        invalid(
            "invalid_truncated_find_node",
            "The payload of request_find_node cut after 20 of the 32 target bytes.",
            Payload(find_node[..find_node.len() - 12].to_vec()),
            "truncated",
        ),
        invalid(
            "invalid_truncated_publish",
            "The payload of gossip_publish without the last byte of its signature.",
            Payload(publish[..publish.len() - 1].to_vec()),
            "truncated",
        ),
        with_limit(
            invalid(
                "invalid_truncated_find_node_near_limit",
                "The payload of request_find_node cut after 20 of the 32 target bytes (36 bytes) \
                 under a 40-byte limit: each byte of a [32] is a 1-byte read, so the read of the \
                 37th byte ends within the limit and past the payload. One 32-byte read would \
                 end at 48, past the limit (length_over_limit).",
                Payload(find_node[..find_node.len() - 12].to_vec()),
                "truncated",
            ),
            40,
        ),
        with_limit(
            invalid(
                "invalid_truncated_pong_ipv4_near_limit",
                "A Pong cut after 2 of its 4 IPv4 address bytes (22 bytes) under a 23-byte \
                 limit: address bytes are 1-byte reads too, so this is truncated; one 4-byte \
                 read would end at 24, past the limit.",
                response_header(18, 0).u32(0).raw(&[192, 0]),
                "truncated",
            ),
            23,
        ),
        with_limit(
            invalid(
                "invalid_truncated_pong_ipv6_near_limit",
                "A Pong cut after 5 of its 16 IPv6 address bytes (25 bytes) under a 30-byte \
                 limit: truncated, where one 16-byte read would end at 36, past the limit.",
                response_header(19, 0).u32(1).raw(&[0x20, 0x01, 0x0d, 0xb8, 0]),
                "truncated",
            ),
            30,
        ),
        invalid(
            "invalid_truncated_list",
            "IWANT whose list length says 3 ids but only 2 follow.",
            gossip_header(4).u64(3).raw(&[0x11; 32]).raw(&[0x22; 32]),
            "truncated",
        ),
        invalid(
            "invalid_truncated_over_bound_list",
            "IWANT whose list count says 5001 ids (bound 5000) but only 2 follow: truncated, \
             since the count is not checked against the bound before the list is read.",
            gossip_header(4).u64(5001).raw(&[0x11; 32]).raw(&[0x22; 32]),
            "truncated",
        ),
        invalid(
            "invalid_truncated_list_count_2_32",
            "IWANT whose list count is 2^32 (00000000 01000000) with two ids: the count is a \
             u64, read and not checked, on every host; the third id is missing.",
            gossip_header(4).u64(1 << 32).raw(&[0x11; 32]).raw(&[0x22; 32]),
            "truncated",
        ),
    ])
}

fn frame_too_large_specs() -> Vec<InvalidSpec> {
    let header_only = |name: &str, description: &str, len: u32| InvalidSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        frame: len.to_be_bytes().to_vec(),
        error: FRAME_TOO_LARGE,
        max_frame_bytes: None,
        payload_only: false,
    };
    // A 65-byte Graft payload: 16 bytes of tags and topic length, then a 49-byte topic.
    let mut custom = invalid(
        "invalid_frame_too_large_custom_limit",
        "A well-formed GRAFT with a 65-byte payload under a 64-byte limit: refused from its \
         header. Under the default limit it is valid.",
        gossip_header(5).bytes("t".repeat(49).as_bytes()),
        FRAME_TOO_LARGE,
    );
    custom.max_frame_bytes = Some(64);
    vec![
        header_only(
            "invalid_frame_too_large",
            "A header announcing 1048577 bytes, one above the 1 MiB limit, and no payload: \
             refused from the header alone.",
            (MAX + 1) as u32,
        ),
        header_only(
            "invalid_frame_too_large_u32_max",
            "A header announcing 4294967295 bytes (ff ff ff ff) and no payload.",
            u32::MAX,
        ),
        custom,
    ]
}

fn trailing_specs(valid: &[ValidSpec]) -> Result<Vec<InvalidSpec>, String> {
    let ping = valid_payload(valid, "request_ping")?;
    let goodbye = valid_payload(valid, "goodbye_shutdown")?;
    Ok(vec![
        invalid(
            "invalid_trailing_bytes_ping",
            "The payload of request_ping followed by two zero bytes.",
            ping.clone().raw(&[0, 0]),
            "trailing_bytes",
        ),
        invalid(
            "invalid_trailing_bytes_over_bound",
            "Subscribe to a 257-byte topic (bound 256), followed by one byte 00: \
             trailing_bytes wins over the bound, which is checked after it.",
            gossip_header(0).bytes(&[b't'; 257]).u8(0),
            "trailing_bytes",
        ),
        invalid(
            "invalid_trailing_bytes_two_messages",
            "Two complete messages in one frame: goodbye_shutdown, then request_ping.",
            goodbye.raw(&ping.0),
            "trailing_bytes",
        ),
    ])
}

fn unknown_tag_specs(valid: &[ValidSpec]) -> Result<Vec<InvalidSpec>, String> {
    let hello = valid_payload(valid, "hello")?.0;
    let store = |record_tag: u32, option_tag: u8| {
        request_header(4, 3).u32(record_tag).bytes(IMMUTABLE_VALUE).u32(3600).u8(option_tag)
    };
    Ok(vec![
        invalid(
            "invalid_unknown_tag_message",
            "Message tag 5 (tags 0 to 4 are defined).",
            Payload::default().u32(5),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_message_wide",
            "Message tag 256 (bytes 00 01 00 00) followed by the body of the hello vector: a \
             decoder reading a 1-byte tag would see Hello.",
            Payload::default().u32(256).raw(&hello[4..]),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_request",
            "Request id 1 with Request tag 6 (tags 0 to 5 are defined).",
            request_header(1, 6),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_response",
            "Response id 1 with Response tag 7 (tags 0 to 6 are defined).",
            response_header(1, 7),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_gossip",
            "Gossip tag 8 (tags 0 to 7 are defined), followed by a topic.",
            gossip_header(8).bytes(TOPIC.as_bytes()),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_record",
            "Store whose Record tag is 2 (0 Immutable and 1 Mutable are defined).",
            store(2, 0),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_option",
            "Store of an immutable record whose expected_seq Option tag is 2 (0 None and 1 Some \
             are defined), followed by 8 bytes as if it were Some.",
            store(0, 2).u64(6),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_option_value_record",
            "Value whose record Option tag is 2 (0 None and 1 Some are defined), followed by an \
             immutable record and no closer peers as if it were Some.",
            response_header(16, 2).u8(2).u32(0).bytes(IMMUTABLE_VALUE).u64(0),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_after_over_bound",
            "Store of an immutable value of 65537 bytes (bound 65536) whose expected_seq Option \
             tag is 2: the unknown tag, met while decoding, wins over the bound, checked after.",
            request_header(4, 3).u32(0).bytes(&[0xa5; MAX_VALUE_BYTES + 1]).u32(3600).u8(2),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_error_code",
            "Error response with ErrorCode 13 (codes 0 to 12 are defined).",
            response_header(14, 6).u32(13).bytes(b""),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_socket_addr",
            "Pong whose observed address has tag 2 (0 IPv4 and 1 IPv6 are defined), followed \
             by 4 address bytes and a port as if it were IPv4.",
            response_header(15, 0).u32(2).raw(&[192, 0, 2, 1]).u16(4001),
            "unknown_tag",
        ),
        invalid(
            "invalid_unknown_tag_goodbye_reason",
            "Goodbye with reason 9 (reasons 0 to 8 are defined).",
            Payload::default().u32(4).u32(9),
            "unknown_tag",
        ),
    ])
}

fn invalid_utf8_specs() -> Vec<InvalidSpec> {
    vec![
        invalid(
            "invalid_utf8_topic",
            "Subscribe to the topic \"news/\" followed by byte ff, which is never UTF-8.",
            gossip_header(0).bytes(b"news/\xff"),
            "invalid_utf8",
        ),
        invalid(
            "invalid_utf8_surrogate_topic",
            "GRAFT for a topic ending in ed a0 80, an encoded UTF-16 surrogate (not UTF-8).",
            gossip_header(5).bytes(b"news/\xed\xa0\x80"),
            "invalid_utf8",
        ),
        invalid(
            "invalid_utf8_over_bound_topic",
            "Subscribe to a 257-byte topic (bound 256) whose last byte is ff: invalid_utf8, \
             found when the string is read, wins over the bound, checked after the message.",
            gossip_header(0).bytes(&[b"t".repeat(256).as_slice(), b"\xff"].concat()),
            "invalid_utf8",
        ),
        invalid(
            "invalid_utf8_overlong_network",
            "Hello whose network name is c0 ae, an overlong encoding of '.' (not UTF-8).",
            hello_payload(b"\xc0\xae", b"petrel/0.1.0", &[]),
            "invalid_utf8",
        ),
    ]
}

fn length_over_limit_specs() -> Vec<InvalidSpec> {
    vec![
        invalid(
            "invalid_length_over_limit_topic",
            "GRAFT whose topic length prefix is 2^63 in a 16-byte payload: refused from the \
             prefix, before any allocation.",
            gossip_header(5).u64(1 << 63),
            "length_over_limit",
        ),
        invalid(
            "invalid_length_over_limit_value",
            "Store whose immutable value length prefix is 2^64-1, followed by 3 bytes.",
            request_header(4, 3).u32(0).u64(u64::MAX).raw(b"abc"),
            "length_over_limit",
        ),
        invalid(
            "invalid_length_over_limit_string_2_32",
            "GRAFT whose topic length prefix is 2^32, followed by 3 bytes: a length that needs \
             more than 32 bits is over any frame limit, on every host.",
            gossip_header(5).u64(1 << 32).raw(b"abc"),
            "length_over_limit",
        ),
        with_limit(
            invalid(
                "invalid_length_over_limit_at_limit_cut_short",
                "GRAFT whose topic length prefix says 49 bytes but 48 follow, in a 64-byte \
                 payload under a 64-byte limit: at the limit, the read that would pass the end of \
                 the payload passes the limit too, so the error is length_over_limit, not \
                 truncated.",
                gossip_header(5).u64(49).raw(&[b't'; 48]),
                "length_over_limit",
            ),
            64,
        ),
        InvalidSpec {
            payload_only: true,
            ..with_limit(
                invalid(
                    "invalid_length_over_limit_payload",
                    "A well-formed 65-byte GRAFT payload given to the decoder under a 64-byte \
                     limit: a payload longer than the limit is length_over_limit before any field \
                     is read. Framing would have refused its header (frame_too_large).",
                    gossip_header(5).bytes("t".repeat(49).as_bytes()),
                    "length_over_limit",
                ),
                64,
            )
        },
        with_limit(
            invalid(
                "invalid_length_over_limit_list_count_2_32",
                "IWANT whose list count is 2^32, in a 64-byte payload under a 64-byte limit: \
                 the 48 id bytes present are read one by one, and the next read would end past \
                 the limit.",
                gossip_header(4).u64(1 << 32).raw(&[0x11; 48]),
                "length_over_limit",
            ),
            64,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Generator: a hand-written encoder for invalid payloads
// ---------------------------------------------------------------------------------------------

/// Writes the wire layout (proto-spec/messages.md §1) by hand, without serde: invalid vectors
/// need bytes that petrel's encoder refuses to produce. Integers are little-endian; enum tags
/// are u32; lengths are u64; an Option is a one-byte tag.
#[derive(Clone, Default)]
struct Payload(Vec<u8>);

impl Payload {
    fn raw(mut self, bytes: &[u8]) -> Payload {
        self.0.extend_from_slice(bytes);
        self
    }

    fn u8(self, v: u8) -> Payload {
        self.raw(&[v])
    }

    fn u16(self, v: u16) -> Payload {
        self.raw(&v.to_le_bytes())
    }

    fn u32(self, v: u32) -> Payload {
        self.raw(&v.to_le_bytes())
    }

    fn u64(self, v: u64) -> Payload {
        self.raw(&v.to_le_bytes())
    }

    /// A string or byte string: u64 length, then the bytes.
    fn bytes(self, bytes: &[u8]) -> Payload {
        self.u64(bytes.len() as u64).raw(bytes)
    }

    fn addr(self, addr: &SocketAddr) -> Payload {
        match addr {
            SocketAddr::V4(a) => self.u32(0).raw(&a.ip().octets()).u16(a.port()),
            SocketAddr::V6(a) => self.u32(1).raw(&a.ip().octets()).u16(a.port()),
        }
    }

    fn addrs(self, addrs: &[SocketAddr]) -> Payload {
        addrs.iter().fold(self.u64(addrs.len() as u64), Payload::addr)
    }

    fn peer(self, peer: &PeerInfo) -> Payload {
        self.raw(peer.id.as_bytes()).addrs(&peer.addrs)
    }

    fn peers(self, peers: &[PeerInfo]) -> Payload {
        peers.iter().fold(self.u64(peers.len() as u64), Payload::peer)
    }

    /// `Record::Mutable`, tag included.
    fn mutable_record(self, m: &MutableRecord) -> Payload {
        self.u32(1)
            .raw(&m.public_key.0)
            .bytes(&m.salt.0)
            .u64(m.seq)
            .bytes(&m.value.0)
            .raw(&m.signature.0)
    }

    /// Any message, by the layout of messages.md §2 to §6 and without checking a bound: the
    /// test `hand_encoder_agrees_with_the_codec` holds it to the codec on every valid vector.
    fn message(self, msg: &Message) -> Payload {
        match msg {
            Message::Hello(h) => self
                .u32(0)
                .u32(h.version)
                .bytes(h.network.as_bytes())
                .u8(h.id_pow_bits)
                .u64(h.features)
                .bytes(h.agent.as_bytes())
                .addrs(&h.listen_addrs),
            Message::Request { id, body } => self.u32(1).u64(*id).request(body),
            Message::Response { id, body } => self.u32(2).u64(*id).response(body),
            Message::Gossip(g) => self.u32(3).gossip(g),
            Message::Goodbye(Goodbye { reason }) => {
                self.u32(4).u32(tag(ALL_GOODBYE_REASONS, reason))
            }
        }
    }

    fn request(self, body: &Request) -> Payload {
        match body {
            Request::Ping => self.u32(0),
            Request::FindNode { target } => self.u32(1).raw(target.as_bytes()),
            Request::FindValue { key } => self.u32(2).raw(key.as_bytes()),
            Request::Store { record, ttl_secs, expected_seq } => {
                let p = self.u32(3).record(record).u32(*ttl_secs);
                match expected_seq {
                    None => p.u8(0),
                    Some(seq) => p.u8(1).u64(*seq),
                }
            }
            Request::AddProvider { key, provider, ttl_secs } => {
                self.u32(4).raw(key.as_bytes()).peer(provider).u32(*ttl_secs)
            }
            Request::GetProviders { key } => self.u32(5).raw(key.as_bytes()),
        }
    }

    fn response(self, body: &Response) -> Payload {
        match body {
            Response::Pong { observed } => self.u32(0).addr(observed),
            Response::Nodes { closer } => self.u32(1).peers(closer),
            Response::Value { record: None, closer } => self.u32(2).u8(0).peers(closer),
            Response::Value { record: Some(r), closer } => {
                self.u32(2).u8(1).record(r).peers(closer)
            }
            Response::Stored => self.u32(3),
            Response::ProviderAdded => self.u32(4),
            Response::Providers { providers, closer } => self.u32(5).peers(providers).peers(closer),
            Response::Error { code, text } => {
                self.u32(6).u32(tag(ALL_ERROR_CODES, code)).bytes(text.as_bytes())
            }
        }
    }

    fn gossip(self, g: &Gossip) -> Payload {
        match g {
            Gossip::Subscribe { topic } => self.u32(0).bytes(topic.as_bytes()),
            Gossip::Unsubscribe { topic } => self.u32(1).bytes(topic.as_bytes()),
            Gossip::Publish(m) => self
                .u32(2)
                .raw(&m.author.0)
                .u64(m.seqno)
                .bytes(m.topic.as_bytes())
                .bytes(&m.payload.0)
                .raw(&m.signature.0),
            Gossip::IHave { topic, ids } => self.u32(3).bytes(topic.as_bytes()).ids(ids),
            Gossip::IWant { ids } => self.u32(4).ids(ids),
            Gossip::Graft { topic } => self.u32(5).bytes(topic.as_bytes()),
            Gossip::Prune { topic, backoff_secs, peers } => {
                self.u32(6).bytes(topic.as_bytes()).u32(*backoff_secs).peers(peers)
            }
            Gossip::IDontWant { ids } => self.u32(7).ids(ids),
        }
    }

    /// A `Record`, tag included.
    fn record(self, record: &Record) -> Payload {
        match record {
            Record::Immutable { value } => self.u32(0).bytes(&value.0),
            Record::Mutable(m) => self.mutable_record(m),
        }
    }

    fn ids(self, ids: &[Bytes32]) -> Payload {
        ids.iter().fold(self.u64(ids.len() as u64), |p, id| p.raw(&id.0))
    }
}

/// The tag of `value`: its position in `all`, a table written from the spec.
fn tag<T: PartialEq>(all: &[T], value: &T) -> u32 {
    // Every value is in its table: `every_error_code_and_goodbye_reason_is_listed` checks it.
    all.iter().position(|v| v == value).expect("listed in its table") as u32
}

/// Every `ErrorCode`, in the order of messages.md §3.3 (the position is the code).
const ALL_ERROR_CODES: &[ErrorCode] = &[
    ErrorCode::BadRequest,
    ErrorCode::KeyMismatch,
    ErrorCode::BadSignature,
    ErrorCode::StaleSequence,
    ErrorCode::SequenceConflict,
    ErrorCode::CasMismatch,
    ErrorCode::ValueTooLarge,
    ErrorCode::QuotaExceeded,
    ErrorCode::StorageFull,
    ErrorCode::ProviderMismatch,
    ErrorCode::RateLimited,
    ErrorCode::Unsupported,
    ErrorCode::Overloaded,
];

/// Every `GoodbyeReason`, in the order of messages.md §6 (the position is the code).
const ALL_GOODBYE_REASONS: &[GoodbyeReason] = &[
    GoodbyeReason::Shutdown,
    GoodbyeReason::IdleTimeout,
    GoodbyeReason::TooManyConnections,
    GoodbyeReason::DuplicateConnection,
    GoodbyeReason::ProtocolViolation,
    GoodbyeReason::IncompatibleVersion,
    GoodbyeReason::NetworkMismatch,
    GoodbyeReason::RateLimited,
    GoodbyeReason::LowScore,
];

/// Message tag 1 (Request), the request id, then the Request tag.
fn request_header(id: u64, tag: u32) -> Payload {
    Payload::default().u32(1).u64(id).u32(tag)
}

/// Message tag 2 (Response), the request id, then the Response tag.
fn response_header(id: u64, tag: u32) -> Payload {
    Payload::default().u32(2).u64(id).u32(tag)
}

/// Message tag 3 (Gossip), then the Gossip tag.
fn gossip_header(tag: u32) -> Payload {
    Payload::default().u32(3).u32(tag)
}

/// The layout of [`hello`].
fn hello_payload(network: &[u8], agent: &[u8], listen_addrs: &[SocketAddr]) -> Payload {
    Payload::default()
        .u32(0)
        .u32(PROTOCOL_VERSION)
        .bytes(network)
        .u8(0)
        .u64(FEATURE_KAD | FEATURE_GOSSIP)
        .bytes(agent)
        .addrs(listen_addrs)
}

// ---------------------------------------------------------------------------------------------
// Generator: rendering and writing
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ValidFile<'a> {
    name: &'a str,
    description: &'a str,
    frame: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_frame_bytes: Option<usize>,
    message: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
}

#[derive(Serialize)]
struct InvalidFile<'a> {
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Json>,
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_frame_bytes: Option<usize>,
}

/// Every file of proto-spec/vectors/, by path relative to it, with its contents.
fn generate_files() -> Result<BTreeMap<String, String>, String> {
    let valid = valid_specs();
    let invalid = invalid_specs(&valid)?;
    let mut files = BTreeMap::new();
    for spec in &valid {
        files.insert(format!("valid/{}.json", spec.name), render_valid(spec)?);
    }
    for spec in &invalid {
        files.insert(format!("invalid/{}.json", spec.name), render_invalid(spec)?);
    }
    if files.len() != valid.len() + invalid.len() {
        return Err("two vectors share a name".into());
    }
    let others = identity::generate(&mut files)?;
    if files.len() != valid.len() + invalid.len() + others.len() {
        return Err("two vectors share a name".into());
    }
    let readme = readme(&valid, &invalid, &others, &files)?;
    files.insert("README.md".into(), readme);
    Ok(files)
}

fn render_valid(spec: &ValidSpec) -> Result<String, String> {
    let max = spec.max_frame_bytes.unwrap_or(MAX);
    let mut frame = Vec::new();
    encode_frame(&spec.message, max, &mut frame).map_err(|e| format!("{}: {e}", spec.name))?;
    let message = Json::of(&spec.message)?;
    pretty_json(&ValidFile {
        name: &spec.name,
        description: &spec.description,
        frame: compact_hex(&frame),
        max_frame_bytes: spec.max_frame_bytes,
        message: compact(message),
        record_key: carried_record(&spec.message).map(|r| r.key().to_hex()),
        message_id: published(&spec.message).map(|m| hex_encode(&m.id().0)),
    })
}

fn render_invalid(spec: &InvalidSpec) -> Result<String, String> {
    let (frame, payload) = match spec.payload_only {
        false => (Some(compact_hex(&spec.frame)), None),
        true => (None, Some(compact_hex(spec.frame.get(4..).unwrap_or_default()))),
    };
    pretty_json(&InvalidFile {
        name: &spec.name,
        description: &spec.description,
        frame,
        payload,
        error: spec.error,
        max_frame_bytes: spec.max_frame_bytes,
    })
}

/// Hex of `bytes`, with every run of at least `RUN_MIN_BYTES` equal bytes in compact form: an
/// array of pieces then, plain hex strings and runs of one byte.
fn compact_hex(bytes: &[u8]) -> Json {
    let mut pieces = Vec::new();
    let mut plain_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let len = bytes[i..].iter().take_while(|&&b| b == bytes[i]).count();
        if len >= RUN_MIN_BYTES {
            if plain_from < i {
                pieces.push(Json::Str(hex_encode(&bytes[plain_from..i])));
            }
            pieces.push(Json::run(Json::Str(hex_encode(&bytes[i..=i])), len));
            plain_from = i + len;
        }
        i += len;
    }
    if pieces.is_empty() {
        return Json::Str(hex_encode(bytes));
    }
    if plain_from < bytes.len() {
        pieces.push(Json::Str(hex_encode(&bytes[plain_from..])));
    }
    Json::Arr(pieces)
}

/// `json` with long repetitions in compact form: a string that is one byte's hex written at
/// least `RUN_MIN_BYTES` times, and at least `RUN_MIN_ELEMENTS` equal consecutive elements of
/// an array. [`expand`] undoes it.
fn compact(json: Json) -> Json {
    match json {
        Json::Str(text) => {
            let unit = text.get(..2).unwrap_or_default();
            let count = text.len() / 2;
            if count >= RUN_MIN_BYTES && unit.repeat(count) == text {
                return Json::run(Json::Str(unit.to_owned()), count);
            }
            Json::Str(text)
        }
        Json::Arr(items) => {
            let mut out = Vec::new();
            let mut rest = items.into_iter().map(compact).peekable();
            while let Some(item) = rest.next() {
                let mut count = 1;
                while rest.next_if_eq(&item).is_some() {
                    count += 1;
                }
                if count >= RUN_MIN_ELEMENTS {
                    out.push(Json::run(item, count));
                } else {
                    out.extend(std::iter::repeat(item).take(count));
                }
            }
            Json::Arr(out)
        }
        Json::Obj(fields) => Json::Obj(fields.into_iter().map(|(k, v)| (k, compact(v))).collect()),
        other => other,
    }
}

/// JSON as the generator writes it. Unlike serde_json's `Value`, whose objects sort their keys,
/// objects keep their keys in order, so a message's fields stay in wire order in the files.
#[derive(Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// `value` as serde_json renders it, keys in serialization order.
    fn of(value: &impl Serialize) -> Result<Json, String> {
        let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// A run of the compact form: `count` times `repeat`.
    fn run(repeat: Json, count: usize) -> Json {
        Json::Obj(vec![("repeat".into(), repeat), ("count".into(), Json::U64(count as u64))])
    }
}

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::U64(n) => s.serialize_u64(*n),
            Json::I64(n) => s.serialize_i64(*n),
            Json::Str(text) => s.serialize_str(text),
            Json::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                items.iter().try_for_each(|item| seq.serialize_element(item))?;
                seq.end()
            }
            Json::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                fields.iter().try_for_each(|(k, v)| map.serialize_entry(k, v))?;
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON without fractional numbers")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
        Ok(Json::U64(n))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
        Ok(Json::I64(n))
    }

    fn visit_str<E>(self, text: &str) -> Result<Json, E> {
        Ok(Json::Str(text.to_owned()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut fields = Vec::new();
        while let Some(entry) = map.next_entry()? {
            fields.push(entry);
        }
        Ok(Json::Obj(fields))
    }
}

/// JSON with 2-space indentation and a trailing newline.
fn pretty_json(value: &impl Serialize) -> Result<String, String> {
    serde_json::to_string_pretty(value).map(|s| s + "\n").map_err(|e| e.to_string())
}

/// Writes `files` and removes vector files not among them.
fn write_files(files: &BTreeMap<String, String>) -> Result<(), String> {
    let dir = vectors_dir();
    for set in ["valid", "invalid"].iter().chain(identity::SETS) {
        let sub = dir.join(set);
        fs::create_dir_all(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
    }
    for rel in json_files_on_disk() {
        if !files.contains_key(&rel) {
            fs::remove_file(dir.join(&rel)).map_err(|e| format!("{rel}: {e}"))?;
        }
    }
    for (rel, text) in files {
        fs::write(dir.join(rel), text).map_err(|e| format!("{rel}: {e}"))?;
    }
    Ok(())
}

/// The README's text before the tables. `@@path@@` is replaced by the generated file at
/// `path`, so the examples are always real vectors.
const README_HEAD: &str = r#"# petrel protocol test vectors

Byte-exact examples of the wire format of proto-spec/framing.md and proto-spec/messages.md,
for petrel and for any other implementation. `tests/vectors.rs` checks them all on every
`cargo test`. The file formats are normative (proto-spec/README.md §4); the examples on this
page are files of this directory, copied here by the generator.

## Valid vectors: `valid/*.json`

```json
@@valid/request_ping.json@@```

| key | value |
|---|---|
| `name` | the file name without `.json` |
| `description` | what the vector shows |
| `frame` | hex of the whole frame: 4-byte big-endian payload length, then the payload |
| `max_frame_bytes` | optional: the frame limit of both ends under which the vector is valid (default 1048576) |
| `message` | the decoded message, in serde's externally tagged JSON form |
| `record_key` | present exactly when the message carries a record (Store, Value): its key |
| `message_id` | present exactly when the message publishes a gossip message: its id |

`message` uses serde's externally tagged enums (`{"Request": {"id": 1, "body": "Ping"}}`),
lower-case hex strings for byte fields, `null`/value for `Option`, and `"ip:port"` or
`"[ipv6]:port"` for socket addresses (text form and comparison: proto-spec/README.md §4). A
conforming decoder must split `frame` into exactly one frame under `max_frame_bytes`, decode its
payload to `message`, and encode `message` back to `frame` byte for byte. Every signature in a
valid vector verifies.

No version 1 message reaches the default limit of 1 MiB (the largest, a Publish with a
256-byte topic and a 1 047 552-byte payload, is 1 047 936 bytes), so the vector of a frame
exactly at its limit, `gossip_graft_frame_at_limit`, states a smaller `max_frame_bytes`.

## Invalid vectors: `invalid/*.json`

```json
@@invalid/invalid_frame_too_large_custom_limit.json@@```

| key | value |
|---|---|
| `name`, `description` | as above |
| `frame` | hex of the bytes as received: a 4-byte header and a payload |
| `payload` | instead of `frame`: a payload for the message decoder alone (below) |
| `error` | the error the receiver reports |
| `max_frame_bytes` | optional: the receiver's frame limit (default 1048576) |

`error` is `frame_too_large` when the frame layer must refuse the header (the header may then
announce more bytes than follow); otherwise the header matches the payload length and `error`
names the decode error of that payload (messages.md §8): `truncated`, `trailing_bytes`,
`unknown_tag`, `invalid_utf8`, `length_over_limit` or `over_bound` (petrel's
`DecodeError::name()`). Each invalid vector has exactly one defect, or exactly the defects that
an ordering rule of messages.md §8 ranks (its description says which).

A vector with `payload` instead of `frame` exercises messages.md §8 rule 1, a payload longer
than `max_frame_bytes`: framing would refuse its header first (`frame_too_large`), so only a
decoder handed the payload directly (a fuzzer, a store) can see it. Its payload is always
longer than its limit.

## Compact form

A few vectors would otherwise be megabytes of hex (a 1 MiB Publish, 5 000 message ids). They
use *runs*:

- A run is a JSON object with exactly two keys, `"repeat"` and `"count"` (a non-negative
  integer). No message has a field named `repeat` or `count`, so a run is never part of a
  message's own JSON form.
- A run that is an element of an array stands for `count` consecutive elements, each equal to
  `repeat` (itself expanded).
- A run anywhere else stands for the string `repeat` written `count` times.
- `frame` and `payload` may be an array of strings, concatenated in order (after expansion).

Expand every run first, then read the vector as usual. The generator writes a run for every
repetition of one byte at least 256 bytes long (in a frame, a payload or a byte field) and for
every 32 or more equal consecutive list elements, and nowhere else. An example, 5 001 ids of
`11`×32:

```json
@@invalid/invalid_over_bound_iwant_ids.json@@```

## Signature vectors: `signature/*.json`

```json
@@signature/signature_key_small_order.json@@```

Strict Ed25519 verification (proto-spec/identity.md §1) of `signature` (64 bytes, hex) by
`public_key` (32 bytes) over `message` (hex, any length). Without `error` the signature
verifies; with it, the verifier refuses it, and `error` names the first check of identity.md §1
that fails: `key_non_canonical`, `key_not_on_curve`, `key_small_order`, `r_non_canonical`,
`r_not_on_curve`, `r_small_order`, `s_non_canonical` or `equation_fails`.

## Identity vectors: `identity/*.json`

```json
@@identity/identity_pow_8_meets_8.json@@```

From the 32-byte Ed25519 `seed`: its `public_key`, `node_id` (SHA-256 of the key, identity.md
§2), `id_pow_hash` and `id_pow_bits` (identity.md §3), whether the key meets the network
`difficulty` (`meets_difficulty`), the 68 bytes of its `key_file` (identity.md §4) and the 44
bytes of the DER SubjectPublicKeyInfo its TLS Certificate entry carries (`spki`, transport.md
§2).

## Key file and SubjectPublicKeyInfo vectors: `key_file/*.json`, `spki/*.json`

```json
@@key_file/key_file_key_mismatch.json@@```

Contents a loader refuses (identity.md §4), with the first check that fails: `truncated`,
`trailing_bytes`, `bad_magic` or `key_mismatch`; and certificate entries (`spki`) a TLS peer
refuses (transport.md §2), all with `error` `bad_certificate`, the alert petrel sends.

## Regenerating

The files are written by the generator in `tests/vectors.rs` (and `tests/vectors/identity.rs`
for the four sets above), not by hand:

```sh
PETREL_REGENERATE_VECTORS=1 cargo test --test vectors -- --ignored regenerate_vectors
```

It is deterministic (keys from fixed seeds, Ed25519 signatures are deterministic, addresses
in 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32), and the test `vectors_match_generator`
fails when the files differ from its output.

**Rule:** a change to the wire format updates the spec (proto-spec/*.md), the generator and
these vectors in the same commit. A vector that changes without a spec change is a bug.

"#;

fn readme(
    valid: &[ValidSpec],
    invalid: &[InvalidSpec],
    others: &[identity::Entry],
    files: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    for (i, part) in README_HEAD.split("@@").enumerate() {
        match i % 2 {
            0 => out.push_str(part),
            _ => out.push_str(files.get(part).ok_or_else(|| format!("README: no file {part}"))?),
        }
    }
    out.push_str(&format!(
        "## Valid vectors ({})\n\n| Vector | Description |\n|---|---|\n",
        valid.len()
    ));
    for spec in valid {
        out.push_str(&format!("| `{}` | {} |\n", spec.name, table_cell(&spec.description)));
    }
    out.push_str(&format!(
        "\n## Invalid vectors ({})\n\n| Vector | Error | Description |\n|---|---|---|\n",
        invalid.len()
    ));
    for spec in invalid {
        out.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            spec.name,
            spec.error,
            table_cell(&spec.description)
        ));
    }
    for (set, title) in identity::SETS.iter().zip(OTHER_TITLES) {
        let entries: Vec<_> = others.iter().filter(|e| e.set == *set).collect();
        out.push_str(&format!(
            "\n## {title} ({})\n\n| Vector | Error | Description |\n|---|---|---|\n",
            entries.len()
        ));
        for e in entries {
            let error = e.error.map_or("(verifies)".to_owned(), |e| format!("`{e}`"));
            out.push_str(&format!("| `{}` | {error} | {} |\n", e.name, table_cell(&e.description)));
        }
    }
    Ok(out)
}

/// The README titles of `identity::SETS`.
const OTHER_TITLES: [&str; 4] =
    ["Signature vectors", "Identity vectors", "Key file vectors", "SubjectPublicKeyInfo vectors"];

fn table_cell(text: &str) -> String {
    text.replace('|', "\\|")
}
