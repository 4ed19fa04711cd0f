//! The control server over a real Unix socket in front of a real node: bad and oversized
//! requests, stalled and surplus clients, the socket's mode and directory checks, a stale
//! socket, `Shutdown`, and a `Subscribe` stream that ends when its client leaves. Every wait
//! is bounded.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, start, wait_for};
use petrel::control::frames::FrameReader;
use petrel::control::protocol::{decode_response, encode_request, MAX_CONTROL_FRAME_BYTES};
use petrel::control::{
    Client, ClientError, ControlConfig, ControlErrorCode, ControlRequest, ControlResponse,
    ControlServer, NodeInfo, ServerError,
};
use petrel::Node;

/// A generous answer timeout: the assertions on promptness are separate.
const CALL: Duration = Duration::from_secs(10);

/// A fresh data directory with mode 0700.
fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("petrel-control-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    dir
}

fn serve(dir: &Path, node: &Node, config: ControlConfig) -> (ControlServer, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let info = NodeInfo { id: node.id(), listen_addr: node.local_addr() };
    let server = ControlServer::start(dir, node.handle(), info, Arc::clone(&stop), config)
        .expect("the control server starts");
    (server, stop)
}

fn quick() -> ControlConfig {
    ControlConfig {
        max_clients: 2,
        request_timeout: Duration::from_millis(1500),
        write_timeout: Duration::from_secs(2),
    }
}

fn call(dir: &Path, request: &ControlRequest) -> ControlResponse {
    Client::connect(dir).unwrap().call(request, CALL).unwrap()
}

fn error_code(response: &ControlResponse) -> Option<ControlErrorCode> {
    match response {
        ControlResponse::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// Sends raw bytes and reads one answer frame.
fn raw_exchange(stream: &mut UnixStream, bytes: &[u8]) -> ControlResponse {
    stream.write_all(bytes).unwrap();
    let payload = FrameReader::new(MAX_CONTROL_FRAME_BYTES)
        .read_frame(stream, Some(Instant::now() + CALL))
        .unwrap();
    decode_response(&payload).unwrap()
}

/// Whether the server closed `stream` (EOF or reset) within `CALL`.
fn closed_by_server(stream: &mut UnixStream) -> bool {
    stream.set_read_timeout(Some(CALL)).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn bad_bytes_get_bad_request_change_nothing_and_leave_the_connection_usable() {
    let dir = data_dir("bad");
    let node = start(config(1));
    let (_server, stop) = serve(&dir, &node, quick());
    let mut stream = UnixStream::connect(dir.join("control.sock")).unwrap();
    // A request tag beyond the table, a truncated Put, a Put with trailing bytes, and a Put of
    // one byte over the value bound: each refused.
    let mut over = vec![3, 0, 0, 0];
    over.extend_from_slice(&65_537u64.to_le_bytes());
    over.resize(over.len() + 65_537, 7);
    for payload in [
        &[99, 0, 0, 0][..],
        &[3, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 2],
        &[3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2],
        &over,
        &[],
    ] {
        let answer = raw_exchange(&mut stream, &frame(payload));
        assert_eq!(error_code(&answer), Some(ControlErrorCode::BadRequest), "{answer:?}");
    }
    // Nothing was stored or published, the node was not told to stop, and the same
    // connection still serves.
    let snapshot = node.handle().snapshot().unwrap();
    assert_eq!(snapshot.store.records, 0);
    assert!(!stop.load(Ordering::SeqCst));
    let mut status = Vec::new();
    encode_request(&ControlRequest::Status, &mut status).unwrap();
    match raw_exchange(&mut stream, &status) {
        ControlResponse::Status(s) => assert_eq!(s.id, node.id()),
        other => panic!("not a status: {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_oversized_length_prefix_is_refused_closed_and_the_next_client_served() {
    let dir = data_dir("oversized");
    let node = start(config(2));
    let (_server, _) = serve(&dir, &node, quick());
    let mut stream = UnixStream::connect(dir.join("control.sock")).unwrap();
    let header = ((MAX_CONTROL_FRAME_BYTES + 1) as u32).to_be_bytes();
    let answer = raw_exchange(&mut stream, &header);
    assert_eq!(error_code(&answer), Some(ControlErrorCode::TooLarge), "{answer:?}");
    assert!(closed_by_server(&mut stream), "the connection stays open after too_large");
    assert!(matches!(call(&dir, &ControlRequest::Status), ControlResponse::Status(_)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stalled_client_blocks_no_other_and_is_cut_at_the_request_timeout() {
    let dir = data_dir("stalled");
    let node = start(config(3));
    let config = quick();
    let timeout = config.request_timeout;
    let (_server, _) = serve(&dir, &node, config);
    // Half a request, then nothing.
    let mut stalled = UnixStream::connect(dir.join("control.sock")).unwrap();
    let connected = Instant::now();
    stalled.write_all(&[0, 0, 0, 4, 0]).unwrap();
    let asked = Instant::now();
    assert!(matches!(call(&dir, &ControlRequest::Status), ControlResponse::Status(_)));
    let took = asked.elapsed();
    assert!(took < timeout, "another client waited {took:?} behind a stalled one");
    // The stalled client hears `timeout` no earlier than the timeout, and is closed.
    let answer = decode_response(
        &FrameReader::new(MAX_CONTROL_FRAME_BYTES)
            .read_frame(&mut stalled, Some(Instant::now() + CALL))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(error_code(&answer), Some(ControlErrorCode::Timeout), "{answer:?}");
    assert!(connected.elapsed() >= timeout);
    assert!(closed_by_server(&mut stalled));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_client_beyond_the_maximum_is_told_busy_until_a_slot_frees() {
    let dir = data_dir("busy");
    let node = start(config(4));
    let config = ControlConfig { request_timeout: Duration::from_secs(30), ..quick() };
    let (_server, _) = serve(&dir, &node, config);
    let path = dir.join("control.sock");
    // Two idle clients fill the table (max_clients 2); they are accepted in connect order.
    let first = UnixStream::connect(&path).unwrap();
    let _second = UnixStream::connect(&path).unwrap();
    let mut third = Client::connect(&dir).unwrap();
    let answer = third.call(&ControlRequest::Status, CALL).unwrap();
    assert_eq!(error_code(&answer), Some(ControlErrorCode::Busy), "{answer:?}");
    assert!(matches!(third.recv(Some(Instant::now() + CALL)), Err(ClientError::Closed)));
    // One leaves; its slot serves the next client.
    drop(first);
    wait_for("a freed slot", || {
        matches!(call(&dir, &ControlRequest::Status), ControlResponse::Status(_))
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_socket_has_mode_0600_and_is_removed_at_stop() {
    let dir = data_dir("mode");
    let node = start(config(5));
    let (server, _) = serve(&dir, &node, quick());
    let path = dir.join("control.sock");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    // Nothing of the private directory it was bound in is left.
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["control.sock"], "{names:?}");
    server.stop();
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_writable_by_group_or_others_is_refused() {
    let node = start(config(6));
    for mode in [0o770, 0o702, 0o777] {
        let dir = data_dir(&format!("unsafe-{mode:o}"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let info = NodeInfo { id: node.id(), listen_addr: node.local_addr() };
        let stop = Arc::new(AtomicBool::new(false));
        let started =
            ControlServer::start(&dir, node.handle(), info, stop, ControlConfig::default());
        match started {
            Err(ServerError::UnsafeDir { mode: m, .. }) => assert_eq!(m, mode),
            other => panic!("mode {mode:o}: {other:?}"),
        }
        assert!(!dir.join("control.sock").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_live_node_keeps_its_socket_and_a_dead_ones_socket_is_replaced() {
    let dir = data_dir("stale");
    // A socket file nobody listens on, as a killed node leaves it.
    drop(UnixListener::bind(dir.join("control.sock")).unwrap());
    let node = start(config(7));
    // Room for every connection here: a client that just left (and the second server's probe)
    // holds its slot until its session thread reads the end, which a loaded machine delays.
    let roomy = ControlConfig { max_clients: 8, ..quick() };
    let (server, _) = serve(&dir, &node, roomy.clone());
    assert!(matches!(call(&dir, &ControlRequest::Status), ControlResponse::Status(_)));
    // A second server for the same directory meets the live one.
    let info = NodeInfo { id: node.id(), listen_addr: node.local_addr() };
    let second = ControlServer::start(
        &dir,
        node.handle(),
        info,
        Arc::new(AtomicBool::new(false)),
        roomy.clone(),
    );
    assert!(matches!(second, Err(ServerError::InUse { .. })), "{second:?}");
    assert!(matches!(call(&dir, &ControlRequest::Status), ControlResponse::Status(_)));
    drop(server);
    // A regular file in the socket's place is not removed.
    std::fs::write(dir.join("control.sock"), b"x").unwrap();
    let third = ControlServer::start(
        &dir,
        node.handle(),
        info,
        Arc::new(AtomicBool::new(false)),
        roomy.clone(),
    );
    assert!(matches!(third, Err(ServerError::NotASocket { .. })), "{third:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shutdown_sets_the_owners_flag_and_the_connection_ends_with_the_server() {
    let dir = data_dir("shutdown");
    let node = start(config(8));
    let (server, stop) = serve(&dir, &node, quick());
    let mut client = Client::connect(&dir).unwrap();
    assert_eq!(
        client.call(&ControlRequest::Shutdown, CALL).unwrap(),
        ControlResponse::ShuttingDown
    );
    assert!(stop.load(Ordering::SeqCst));
    // The connection stays open past the request timeout, until the owner stops the server
    // (after the node): its end tells the client the node is down.
    let open_for = Instant::now() + quick().request_timeout + Duration::from_millis(300);
    assert!(matches!(client.recv(Some(open_for)), Err(ClientError::TimedOut)));
    server.stop();
    assert!(matches!(client.recv(Some(Instant::now() + CALL)), Err(ClientError::Closed)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn put_and_get_through_the_socket_and_not_found_is_its_own_code() {
    let dir = data_dir("putget");
    let (a, b) = (start(config(9)), start(config(10)));
    b.handle().connect(a.peer_addr()).unwrap();
    let (_server, _) = serve(&dir, &b, quick());
    let value = b"through the control socket".to_vec();
    let key = match call(&dir, &ControlRequest::Put { value: value.clone().into() }) {
        ControlResponse::Stored { key, stored, .. } => {
            assert!(stored >= 1);
            key
        }
        other => panic!("not stored: {other:?}"),
    };
    assert_eq!(a.handle().get(key).unwrap().unwrap().record.value(), &value[..]);
    match call(&dir, &ControlRequest::Get { key }) {
        ControlResponse::Value { record, .. } => assert_eq!(record.value(), &value[..]),
        other => panic!("not a value: {other:?}"),
    }
    let missing = petrel::identity::NodeId::from_bytes([0x42; 32]);
    let answer = call(&dir, &ControlRequest::Get { key: missing });
    assert_eq!(error_code(&answer), Some(ControlErrorCode::NotFound), "{answer:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_subscription_streams_deliveries_and_ends_when_its_client_leaves() {
    const TOPIC: &str = "control-news";
    let dir = data_dir("subscribe");
    let (a, b) = (start(config(11)), start(config(12)));
    b.handle().connect(a.peer_addr()).unwrap();
    let _a_sub = a.handle().subscribe(TOPIC).unwrap();
    let (_server, _) = serve(&dir, &b, quick());
    let mut client = Client::connect(&dir).unwrap();
    let topic = TOPIC.to_string();
    assert_eq!(
        client.call(&ControlRequest::Subscribe { topic: topic.clone() }, CALL).unwrap(),
        ControlResponse::Subscribed
    );
    wait_for("b's mesh in the topic", || {
        b.handle().meshes().unwrap().iter().any(|(t, n)| t == TOPIC && *n > 0)
    });
    let published = a.handle().publish(TOPIC, b"over the socket".to_vec()).unwrap();
    match client.recv(Some(Instant::now() + CALL)).unwrap() {
        ControlResponse::Message(d) => {
            assert_eq!(d.message.id(), published.id);
            assert_eq!(d.message.payload.as_slice(), b"over the socket");
            assert_eq!((d.from, d.lost), (a.id(), 0));
        }
        other => panic!("not a message: {other:?}"),
    }
    // The client leaves: the server notices without a message to write, and the node, with no
    // other control subscriber, leaves the topic.
    drop(client);
    wait_for("b to leave the topic", || {
        b.handle().meshes().unwrap().iter().all(|(t, _)| t != TOPIC)
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
