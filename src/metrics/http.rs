//! The HTTP responder: `GET /metrics` on one small thread, one request at a time.
//!
//! Hand-written because the whole protocol it needs is one request line and one response: a
//! server library would bring more code than this file. The rules that keep it harmless on a
//! reachable address:
//!
//! - A request (line and headers) is at most `max_request_bytes`; past it the client gets
//!   431 and the connection is closed. A body is never read.
//! - Reading the request has one deadline (`read_timeout`) for all of it, so a client that
//!   sends nothing, or a byte at a time, holds the thread for at most that long; writing the
//!   response has another (`write_timeout`). Clients wait in the kernel's accept queue
//!   meanwhile.
//! - Only `GET` (and `HEAD`) of `/metrics` is served; any other path is 404, another method
//!   405, a malformed request 400. Every response closes the connection.
//!
//! The thread sleeps in a `mio` poll on the listener and a waker, so it costs nothing while
//! idle, and [`MetricsServer::shutdown`] wakes it at once.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::render;
use crate::node::Handle;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Default cap on a request's line and headers (Prometheus sends about 300 bytes).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Default deadline for reading a whole request, and for writing a whole response.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The responder's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Cap on the request line and headers together.
    pub max_request_bytes: usize,
    /// Deadline for the whole request, from accept.
    pub read_timeout: Duration,
    /// Deadline for the whole response.
    pub write_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            read_timeout: DEFAULT_IO_TIMEOUT,
            write_timeout: DEFAULT_IO_TIMEOUT,
        }
    }
}

/// A running responder. Dropping it stops it too.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// Serves `handle`'s [`Snapshot`](crate::Snapshot) at `http://addr/metrics`, with the default
/// limits. Fails if `addr` cannot be bound.
pub fn serve(addr: SocketAddr, handle: Handle) -> io::Result<MetricsServer> {
    serve_with(addr, ServerConfig::default(), move || {
        let snapshot = handle.snapshot().map_err(|e| e.to_string())?;
        render(&snapshot).map_err(|e| e.to_string())
    })
}

/// Serves whatever `body` returns at `/metrics`; an `Err` is answered 503 with its text. The
/// responder behind [`serve`], open to tests and to programs exporting their own text.
pub fn serve_with<F>(addr: SocketAddr, config: ServerConfig, body: F) -> io::Result<MetricsServer>
where
    F: FnMut() -> Result<String, String> + Send + 'static,
{
    let mut listener = TcpListener::bind(addr)?;
    let local_addr = listener.local_addr()?;
    let poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let stop = Arc::new(AtomicBool::new(false));
    let responder = Responder { poll, listener, config, body, stop: Arc::clone(&stop) };
    let thread =
        std::thread::Builder::new().name("petrel-metrics".into()).spawn(move || responder.run())?;
    Ok(MetricsServer { local_addr, stop, waker, thread: Some(thread) })
}

impl MetricsServer {
    /// The address it listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the thread and waits for it: at once when idle, else after the request in hand,
    /// which its read and write deadlines bound.
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.waker.wake();
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// How soon an accept that failed for want of resources (descriptors) is tried again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// After an error response, what is left of the request is read and dropped for at most this
/// long and this many bytes, so closing does not reset the connection before the client has
/// read the response.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(100);
const DRAIN_BYTES: usize = 64 * 1024;

struct Responder<F> {
    poll: Poll,
    listener: TcpListener,
    config: ServerConfig,
    body: F,
    stop: Arc<AtomicBool>,
}

impl<F: FnMut() -> Result<String, String>> Responder<F> {
    fn run(mut self) {
        let mut events = Events::with_capacity(4);
        let mut retry = None;
        loop {
            if let Err(e) = self.poll.poll(&mut events, retry) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return; // the poll itself failed: nothing sensible is left to do
            }
            retry = None;
            // Edge-triggered: take every waiting connection, one after the other.
            loop {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                match self.listener.accept() {
                    Ok((stream, _)) => self.answer(stream.into()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // Out of descriptors or buffers: the connections stay queued and raise no
                    // new event, so look again shortly.
                    Err(_) => {
                        retry = Some(ACCEPT_RETRY);
                        break;
                    }
                }
            }
        }
    }

    /// Reads one request from `stream` and answers it; every failure just closes it.
    fn answer(&mut self, mut stream: TcpStream) {
        if stream.set_nonblocking(false).is_err() {
            return;
        }
        let read_deadline = Instant::now() + self.config.read_timeout;
        let response = match read_head(&mut stream, read_deadline, self.config.max_request_bytes) {
            Ok(head) => self.respond(&head),
            Err(ReadError::TooLarge) => Response::error(431, "request too large"),
            Err(ReadError::TimedOut) => Response::error(408, "request timed out"),
            Err(ReadError::Closed) => return,
        };
        let write_deadline = Instant::now() + self.config.write_timeout;
        if write_all(&mut stream, &response.bytes(), write_deadline).is_ok()
            && response.status != 200
        {
            drain(&mut stream);
        }
    }

    fn respond(&mut self, head: &[u8]) -> Response {
        let Some(request) = parse_request_line(head) else {
            return Response::error(400, "malformed request");
        };
        let head_only = request.method == "HEAD";
        if request.method != "GET" && !head_only {
            return Response::error(405, "only GET is served");
        }
        if request.path != "/metrics" {
            return Response::error(404, "not found: the metrics are at /metrics");
        }
        match (self.body)() {
            Ok(text) => Response { status: 200, content_type: CONTENT_TYPE, body: text, head_only },
            Err(why) => Response::error(503, &format!("metrics unavailable: {why}")),
        }
    }
}

/// What `read_head` ran into instead of a whole request head.
#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    /// More than the cap without the blank line that ends the headers.
    TooLarge,
    /// The read deadline passed first.
    TimedOut,
    /// The client closed or reset the connection first.
    Closed,
}

/// Reads up to the blank line that ends the headers, within `max` bytes and by `deadline`.
fn read_head(stream: &mut TcpStream, deadline: Instant, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::TimedOut);
        }
        stream.set_read_timeout(Some(left)).map_err(|_| ReadError::Closed)?;
        // One byte past the cap is enough to know it is over.
        let room = (max + 1).saturating_sub(head.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ReadError::TimedOut)
            }
            Err(_) => return Err(ReadError::Closed),
        }
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > max {
            return Err(ReadError::TooLarge);
        }
    }
}

/// Where the head ends (after its blank line): CRLF as HTTP says, or bare LF as some
/// hand-typed requests have it.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    crlf.into_iter().chain(lf).min()
}

/// The parts of a request line the responder looks at.
#[derive(Debug, PartialEq, Eq)]
struct RequestLine<'a> {
    method: &'a str,
    /// Without its query string.
    path: &'a str,
}

/// `METHOD TARGET HTTP/x.y`; `None` if it is not that.
fn parse_request_line(head: &[u8]) -> Option<RequestLine<'_>> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some(RequestLine { method, path })
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn error(status: u16, text: &str) -> Response {
        let body = format!("{text}\n");
        Response { status, content_type: "text/plain; charset=utf-8", body, head_only: false }
    }

    fn bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let allow = if self.status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}\
             Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// Writes all of `bytes` by `deadline`, then ends our side of the connection.
fn write_all(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.shutdown(Shutdown::Write)
}

/// Reads and drops what the client still sends, bounded in time and bytes: closing with
/// unread bytes would reset the connection, and the client could lose the response.
fn drain(stream: &mut TcpStream) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut chunk = [0u8; 4096];
    let mut read = 0;
    while read < DRAIN_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Longest a test waits for an answer: a broken responder fails the test, never hangs it.
    const WAIT: Duration = Duration::from_secs(10);
    const BODY: &str = "# HELP petrel_up Up.\n# TYPE petrel_up gauge\npetrel_up 1\n";

    fn server(config: ServerConfig) -> MetricsServer {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        serve_with(addr, config, || Ok(BODY.to_string())).unwrap()
    }

    fn connect(server: &MetricsServer) -> TcpStream {
        let stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream
    }

    /// Everything the server sends until it closes.
    fn response(stream: &mut TcpStream) -> String {
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("a response before the test's deadline");
        text
    }

    fn exchange(server: &MetricsServer, request: &str) -> String {
        let mut stream = connect(server);
        stream.write_all(request.as_bytes()).unwrap();
        response(&mut stream)
    }

    fn status(response: &str) -> &str {
        response.lines().next().unwrap_or_default()
    }

    #[test]
    fn get_metrics_is_answered_with_the_exposition_text_and_its_content_type() {
        let s = server(ServerConfig::default());
        let r = exchange(&s, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
        assert!(r.contains(&format!("\r\nContent-Type: {CONTENT_TYPE}\r\n")), "{r}");
        assert!(r.contains(&format!("\r\nContent-Length: {}\r\n", BODY.len())), "{r}");
        assert!(r.ends_with(&format!("\r\n\r\n{BODY}")), "{r}");
        // A query string is no other resource; HEAD gets the headers only.
        assert_eq!(status(&exchange(&s, "GET /metrics?x=1 HTTP/1.0\r\n\r\n")), "HTTP/1.1 200 OK");
        let head = exchange(&s, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn other_paths_methods_and_garbage_get_404_405_and_400() {
        let s = server(ServerConfig::default());
        for (request, expected) in [
            ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            ("GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (
                "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            ("hello\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            ("GET /metrics SPDY/3\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            ("\u{0}\u{1}\u{2}\n\n", "HTTP/1.1 400 Bad Request"),
        ] {
            assert_eq!(status(&exchange(&s, request)), expected, "{request:?}");
        }
    }

    #[test]
    fn an_oversized_request_is_refused_and_the_next_client_is_served() {
        let s = server(ServerConfig::default());
        let mut big = connect(&s);
        let header = format!(
            "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n",
            "a".repeat(DEFAULT_MAX_REQUEST_BYTES)
        );
        big.write_all(header.as_bytes()).unwrap();
        assert_eq!(status(&response(&mut big)), "HTTP/1.1 431 Request Header Fields Too Large");
        let r = exchange(&s, "GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
    }

    #[test]
    fn a_silent_client_holds_the_next_one_back_no_longer_than_the_read_timeout() {
        let timeout = Duration::from_millis(300);
        let s = server(ServerConfig { read_timeout: timeout, ..ServerConfig::default() });
        let mut silent = connect(&s);
        // A trickle of bytes does not extend the deadline either.
        silent.write_all(b"GET /me").unwrap();
        let started = Instant::now();
        let r = exchange(&s, "GET /metrics HTTP/1.1\r\n\r\n");
        let waited = started.elapsed();
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
        assert!(waited < timeout + Duration::from_secs(2), "the second client waited {waited:?}");
        assert_eq!(status(&response(&mut silent)), "HTTP/1.1 408 Request Timeout");
    }

    #[test]
    fn a_failing_body_is_503_and_shutdown_closes_the_port_at_once() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let s = serve_with(addr, ServerConfig::default(), || Err("node stopped".into())).unwrap();
        let r = exchange(&s, "GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status(&r), "HTTP/1.1 503 Service Unavailable");
        assert!(r.ends_with("metrics unavailable: node stopped\n"), "{r}");
        let local = s.local_addr();
        let started = Instant::now();
        s.shutdown();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "shutdown took {:?}",
            started.elapsed()
        );
        assert!(TcpStream::connect(local).is_err(), "the listener is closed");
    }

    #[test]
    fn request_lines_are_parsed_strictly() {
        let ok = parse_request_line(b"GET /metrics?a=b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(ok, Some(RequestLine { method: "GET", path: "/metrics" }));
        for bad in [
            &b"GET /metrics\r\n"[..],
            b"GET  /metrics HTTP/1.1",
            b"get /metrics HTTP/1.1",
            b"GET metrics HTTP/1.1",
            b"",
        ] {
            assert_eq!(parse_request_line(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
