//! The control server: the socket `DIR/control.sock` (proto-spec/control.md §2), its accept
//! thread, and a bounded table of client threads that serve requests through a node's
//! [`Handle`] (`session.rs`).
//!
//! Bounds: at most `max_clients` clients at once (one more is answered `busy` and closed); a
//! request must arrive whole within `request_timeout` of the connection or of the previous
//! answer, and an answer must be taken whole within `write_timeout`, so a client that connects
//! and stalls holds one slot for at most that long and never blocks the node or another
//! client. Requests are decoded under `MAX_CONTROL_FRAME_BYTES`.
//!
//! The socket is created with mode 0600 in a private directory and then renamed into place,
//! so it is never reachable with a wider mode; the server refuses a data directory that group
//! or others may write (they could replace the socket), and a socket on which a live node
//! answers. A socket file left by a dead node is replaced.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::frames::write_all_by;
use super::protocol::{encode_response, ControlErrorCode, ControlResponse};
use super::session;
pub use crate::config::ControlConfig;
use crate::identity::NodeId;
use crate::node::Handle;

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "control.sock";
/// What the server says about the node besides what its handle answers.
#[derive(Debug, Clone, Copy)]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// The address it listens on.
    pub listen_addr: SocketAddr,
}

/// A running control server. Dropping it stops it.
#[derive(Debug)]
pub struct ControlServer {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    accept: Option<JoinHandle<()>>,
    path: PathBuf,
}

/// What the accept thread and the client threads share.
pub(super) struct Shared {
    pub(super) handle: Handle,
    pub(super) node: NodeInfo,
    pub(super) started: Instant,
    pub(super) config: ControlConfig,
    /// Set when the server stops: client threads end at their next check.
    pub(super) stopping: AtomicBool,
    /// Set by a `Shutdown` request: the owner's stop flag.
    pub(super) shutdown: Arc<AtomicBool>,
    /// A clone of each client's stream, so that stopping can cut a client blocked in a read.
    clients: Mutex<Slab<UnixStream>>,
    /// Control subscribers per topic: the last to leave unsubscribes the node.
    pub(super) topics: Mutex<BTreeMap<String, usize>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("node", &self.node.id).finish()
    }
}

impl ControlServer {
    /// Creates `dir/control.sock` and serves it on threads of its own with `handle`. A
    /// `Shutdown` request sets `shutdown`; its owner then stops the node and this server.
    pub fn start(
        dir: &Path,
        handle: Handle,
        node: NodeInfo,
        shutdown: Arc<AtomicBool>,
        config: ControlConfig,
    ) -> Result<ControlServer, ServerError> {
        let path = dir.join(SOCKET_NAME);
        let listener = bind(dir, &path)?;
        let io_err = |source| ServerError::Io { path: path.clone(), source };
        listener.set_nonblocking(true).map_err(io_err)?;
        let mut listener = mio::net::UnixListener::from_std(listener);
        let poll = Poll::new().map_err(io_err)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io_err)?);
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE).map_err(io_err)?;
        let shared = Arc::new(Shared {
            handle,
            node,
            started: Instant::now(),
            config,
            stopping: AtomicBool::new(false),
            shutdown,
            clients: Mutex::new(Slab::new()),
            topics: Mutex::new(BTreeMap::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("petrel-control".into())
            .spawn(move || accept_loop(poll, listener, &accept_shared))
            .map_err(io_err)?;
        Ok(ControlServer { shared, waker, accept: Some(accept), path })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, cuts every client, waits for their threads (a client in the middle
    /// of a node call waits for its answer, bounded by the node's call timeout) and removes
    /// the socket file.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(accept) = self.accept.take() else { return };
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        let _ = accept.join();
        let _ = fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// How long the accept thread waits to hand a `busy` answer to the socket (a few dozen bytes,
/// which fit its buffer: only a client that filled it waits).
const BUSY_WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// Accepts clients until the server stops, then cuts and joins them.
fn accept_loop(mut poll: Poll, listener: mio::net::UnixListener, shared: &Arc<Shared>) {
    let mut events = Events::with_capacity(8);
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping.load(Ordering::SeqCst) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        // The listener is edge-triggered: accept until it would block.
        loop {
            match listener.accept() {
                Ok((stream, _)) => threads.extend(admit(shared, stream.into())),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // WouldBlock, or an error (out of descriptors) that the next client retries.
                Err(_) => break,
            }
        }
        threads.retain(|t| !t.is_finished());
    }
    if let Ok(clients) = shared.clients.lock() {
        for (_, stream) in clients.iter() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// Gives `stream` a slot and a thread, or answers `busy` and closes it.
fn admit(shared: &Arc<Shared>, stream: UnixStream) -> Option<JoinHandle<()>> {
    // Accepted sockets do not inherit the listener's non-blocking mode on Linux; make sure.
    stream.set_nonblocking(false).ok()?;
    let slot = {
        let mut clients = shared.clients.lock().ok()?;
        if clients.len() >= shared.config.max_clients {
            None
        } else {
            Some(clients.insert(stream.try_clone().ok()?))
        }
    };
    let Some(slot) = slot else {
        busy(stream, shared.config.max_clients);
        return None;
    };
    let client_shared = Arc::clone(shared);
    let spawned =
        std::thread::Builder::new().name(format!("petrel-control-{slot}")).spawn(move || {
            session::serve(&client_shared, stream);
            if let Ok(mut clients) = client_shared.clients.lock() {
                clients.try_remove(slot);
            }
        });
    match spawned {
        Ok(thread) => Some(thread),
        Err(_) => {
            if let Ok(mut clients) = shared.clients.lock() {
                clients.try_remove(slot);
            }
            None
        }
    }
}

/// Answers `busy` to a client there is no slot for.
fn busy(mut stream: UnixStream, max: usize) {
    let response =
        ControlResponse::error(ControlErrorCode::Busy, format!("{max} clients are served already"));
    let mut frame = Vec::new();
    if encode_response(&response, &mut frame).is_ok() {
        let _ = write_all_by(&mut stream, &frame, Instant::now() + BUSY_WRITE_TIMEOUT);
    }
}

/// Checks the directory, clears a stale socket, and binds the new one with mode 0600.
fn bind(dir: &Path, path: &Path) -> Result<UnixListener, ServerError> {
    let meta = fs::metadata(dir).map_err(|source| ServerError::Io { path: dir.into(), source })?;
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() || mode & 0o022 != 0 {
        return Err(ServerError::UnsafeDir { dir: dir.into(), mode });
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse { path: path.into() });
            }
            // Nobody answers: left by a node that died. The rename below replaces it.
        }
        Ok(_) => return Err(ServerError::NotASocket { path: path.into() }),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => return Err(ServerError::Io { path: path.into(), source }),
    }
    // Bound in a directory only we can enter, chmod-ed there, then moved into place: the
    // socket is never reachable with the mode the umask gave it.
    let private = dir.join(format!(".control.{}.tmp", std::process::id()));
    let io_err = |source| ServerError::Io { path: private.clone(), source };
    let _ = fs::remove_dir_all(&private);
    fs::DirBuilder::new().mode(0o700).create(&private).map_err(io_err)?;
    let tmp = private.join(SOCKET_NAME);
    let bound = UnixListener::bind(&tmp).and_then(|listener| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, path)?;
        Ok(listener)
    });
    let _ = fs::remove_dir_all(&private);
    bound.map_err(|source| ServerError::Io { path: path.into(), source })
}

/// Why the control server did not start.
#[derive(Debug)]
pub enum ServerError {
    /// The data directory is not a directory, or group or others may write it.
    UnsafeDir {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A live node answers on the socket already.
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something other than a socket has the socket's name.
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Creating, binding or serving the socket failed.
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsafeDir { dir, mode } => write!(
                f,
                "{}: not a directory that only its owner may write (mode {mode:o}); \
                 chmod go-w it",
                dir.display()
            ),
            Self::InUse { path } => {
                write!(f, "{}: a running node answers on it already", path.display())
            }
            Self::NotASocket { path } => {
                write!(f, "{}: exists and is not a socket", path.display())
            }
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ServerError {}
