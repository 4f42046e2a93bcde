//! The QMP server libxl (and qtest suites) talk to: QEMU 7.2's greeting,
//! capabilities negotiation, the commands libxl sends to an HVM device
//! model, and the asynchronous events in QEMU's shapes.
//!
//! Here: the listeners and one thread pair per connection. The pieces:
//! `outbox` (the ordered output of a connection), `reader` (requests off
//! the socket, with passed descriptors), `session` (the commands),
//! `args`, `error` (typed errors and their QMP classes) and `json` (the
//! shapes of replies and events).

mod args;
mod error;
mod json;
mod outbox;
mod reader;
mod session;

pub use error::{CommandError, ErrorClass, MachineError};
pub use json::{event_json, greeting, monitor_chardevs, node_name};

use super::cmdline::QmpEndpoint;
use crate::machine::{DriveInfo, EventSink, RunState};
use outbox::{write_outbox, Outbox};
use reader::{read_commands, FdStream};
use session::Session;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;

/// Connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest accepted command line; libxl's largest command is well under 4 KiB.
pub const MAX_LINE: usize = 64 * 1024;
/// Descriptors received with SCM_RIGHTS and not yet claimed by add-fd,
/// fd sets, and descriptors per set, per connection.
pub(super) const MAX_PENDING_FDS: usize = 8;
pub(super) const MAX_FDSETS: usize = 16;
pub(super) const MAX_FDS_PER_SET: usize = 8;
/// A client that stops reading is cut off after this long, so events
/// queued for it cannot pile up for longer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What QMP commands do to the machine; the launcher implements it.
pub trait MachineOps: Send + Sync {
    fn run_state(&self) -> RunState;
    fn stop(&self);
    fn cont(&self) -> Result<(), MachineError>;
    fn block_info(&self) -> Vec<DriveInfo>;
    fn eject(&self, device: &str, force: bool) -> Result<(), MachineError>;
    fn change_medium(&self, device: &str, filename: &str, read_only: Option<bool>) -> Result<(), MachineError>;
    /// (label, filename), e.g. ("serial0", "pty:/dev/pts/3").
    fn chardevs(&self) -> Vec<(String, String)>;
    fn quit(&self);
    /// QMP `system_reset`: reset the machine (under Xen: reboot the domain).
    fn system_reset(&self) -> Result<(), MachineError>;
    /// A medium libxl opened itself and passed with add-fd (`xl cd-insert`
    /// names it "/dev/fdset/N"). The default re-opens it through procfs,
    /// which a chrooted device model (dm_restrict) may not have; override
    /// to use the descriptor directly.
    fn change_medium_fd(&self, device: &str, fd: OwnedFd, read_only: Option<bool>) -> Result<(), MachineError> {
        self.change_medium(device, &format!("/proc/self/fd/{}", fd.as_raw_fd()), read_only)
    }
    /// `xen-set-global-dirty-log`: report every page the device model
    /// writes into guest RAM while on.
    fn set_dirty_logging(&self, _on: bool) -> Result<(), MachineError> {
        Err(MachineError::NoDirtyLog)
    }
    /// `xen-save-devices-state`: the blob, after host I/O was drained and
    /// every image flushed.
    fn save_devices_state(&self) -> Result<Vec<u8>, MachineError> {
        Err(MachineError::NoMachine)
    }
    /// `xen-load-devices-state` (after `-incoming defer`).
    fn load_devices_state(&self, _blob: &[u8]) -> Result<(), MachineError> {
        Err(MachineError::NotIncoming)
    }
}

#[derive(Debug, Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("QMP socket {path}: a non-socket file is in the way")]
    NotASocket { path: PathBuf },
    #[error("QMP fd={fd}: {reason}")]
    BadFd { fd: i32, reason: BadFd },
    #[error("QMP listener thread: {0}")]
    Spawn(std::io::Error),
}

/// Why a descriptor given with `fd=` cannot be the monitor's listener.
#[derive(Debug, Error)]
pub enum BadFd {
    #[error("{0}")]
    NotOpen(std::io::Error),
    #[error("not a socket: {0}")]
    NotASocket(nix::Error),
    #[error("the socket is not listening")]
    NotListening,
    #[error("{0}")]
    SocketType(nix::Error),
    #[error("not a stream socket")]
    NotAStream,
    #[error("cannot set close-on-exec: {0}")]
    CloseOnExec(nix::Error),
    #[error("cannot make it blocking: {0}")]
    Blocking(std::io::Error),
}

/// Identity the server reports.
#[derive(Debug, Clone, Default)]
pub struct QmpInfo {
    /// `-name`, for query-name.
    pub name: Option<String>,
}

struct Shared {
    label: String,
    ops: Arc<dyn MachineOps>,
    events: EventSink,
    info: QmpInfo,
    stopping: AtomicBool,
    active: Mutex<usize>,
    slot_freed: Condvar,
}

/// One listening QMP monitor. Dropping it stops accepting; connections
/// already open are served until their client goes away.
pub struct QmpServer {
    shared: Arc<Shared>,
    /// Kept here too so the fd stays valid for shutdown() even after the
    /// accept thread has ended. None for a monitor we connected out.
    listener: Option<Arc<UnixListener>>,
    path: Option<PathBuf>,
    accept_thread: Option<JoinHandle<()>>,
}

impl QmpServer {
    /// Listens on the endpoint (a stale socket file at a path is replaced,
    /// as QEMU does with server=on) and starts accepting in a thread.
    pub fn start(
        endpoint: &QmpEndpoint,
        ops: Arc<dyn MachineOps>,
        events: EventSink,
        info: QmpInfo,
    ) -> Result<QmpServer, QmpError> {
        let (label, listener, path) = match endpoint {
            QmpEndpoint::UnixPath { label, path } => (label.clone(), bind_path(path)?, Some(path.clone())),
            QmpEndpoint::Fd { label, fd } => (label.clone(), adopt_listening_fd(*fd)?, None),
            QmpEndpoint::Connect { label, path } => return Self::connect(label, path, ops, events, info),
        };
        let shared = Arc::new(Shared {
            label,
            ops,
            events,
            info,
            stopping: AtomicBool::new(false),
            active: Mutex::new(0),
            slot_freed: Condvar::new(),
        });
        let listener = Arc::new(listener);
        let (thread_listener, thread_shared) = (listener.clone(), shared.clone());
        let accept_thread = std::thread::Builder::new()
            .name(format!("qmp-{}", shared.label))
            .spawn(move || accept_loop(&thread_listener, thread_shared))
            .map_err(QmpError::Spawn)?;
        Ok(QmpServer { shared, listener: Some(listener), path, accept_thread: Some(accept_thread) })
    }

    /// The client side of a socket someone else listens on: one session,
    /// served in a thread until the peer goes away.
    fn connect(
        label: &str,
        path: &Path,
        ops: Arc<dyn MachineOps>,
        events: EventSink,
        info: QmpInfo,
    ) -> Result<QmpServer, QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Bind { path: path.to_path_buf(), source })?;
        let shared = Arc::new(Shared {
            label: label.to_string(),
            ops,
            events,
            info,
            stopping: AtomicBool::new(false),
            active: Mutex::new(1),
            slot_freed: Condvar::new(),
        });
        let conn_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("qmp-{label}-conn"))
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &conn_shared) {
                    log::debug!("QMP {}: connection ended: {e}", conn_shared.label);
                }
            })
            .map_err(QmpError::Spawn)?;
        Ok(QmpServer { shared, listener: None, path: None, accept_thread: None })
    }

    /// One server per endpoint of the command line (libxl gives two:
    /// libxl-cmd and libxenstat-cmd).
    pub fn start_all(
        endpoints: &[QmpEndpoint],
        ops: Arc<dyn MachineOps>,
        events: &EventSink,
        info: &QmpInfo,
    ) -> Result<Vec<QmpServer>, QmpError> {
        endpoints
            .iter()
            .map(|endpoint| QmpServer::start(endpoint, ops.clone(), events.clone(), info.clone()))
            .collect()
    }

    pub fn label(&self) -> &str {
        &self.shared.label
    }

    /// The filename query-chardev shows for this monitor.
    pub fn chardev_filename(&self) -> String {
        match &self.path {
            Some(path) => format!("unix:{},server=on", path.display()),
            None => "disconnected:unix".to_string(),
        }
    }

    /// Stops accepting new connections and waits for the accept thread.
    pub fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.slot_freed.notify_all();
        // Linux wakes a thread blocked in accept() on a listening socket
        // that is shut down; the fd stays owned by the listener.
        if let Some(listener) = &self.listener {
            let _ = nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for QmpServer {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind_path(path: &Path) -> Result<UnixListener, QmpError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(QmpError::NotASocket { path: path.to_path_buf() });
        }
        std::fs::remove_file(path).map_err(|source| QmpError::Bind { path: path.to_path_buf(), source })?;
    }
    UnixListener::bind(path).map_err(|source| QmpError::Bind { path: path.to_path_buf(), source })
}

fn adopt_listening_fd(fd: i32) -> Result<UnixListener, QmpError> {
    let bad = |reason: BadFd| QmpError::BadFd { fd, reason };
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor table entry.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad(BadFd::NotOpen(std::io::Error::last_os_error())));
    }
    use nix::sys::socket::{getsockopt, sockopt};
    // SAFETY: fd is open (checked above) and was handed to us by libxl on
    // the command line for our exclusive use; nothing else in this process
    // owns it, so taking ownership cannot double-close.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let accepting = getsockopt(&owned, sockopt::AcceptConn).map_err(|e| bad(BadFd::NotASocket(e)))?;
    if !accepting {
        return Err(bad(BadFd::NotListening));
    }
    let domain = getsockopt(&owned, sockopt::SockType).map_err(|e| bad(BadFd::SocketType(e)))?;
    if domain != nix::sys::socket::SockType::Stream {
        return Err(bad(BadFd::NotAStream));
    }
    // Keep the descriptor from leaking into anything we might exec.
    nix::fcntl::fcntl(owned.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(|e| bad(BadFd::CloseOnExec(e)))?;
    let listener = UnixListener::from(owned);
    // The accept thread blocks; the creator may have left O_NONBLOCK set.
    listener.set_nonblocking(false).map_err(|e| bad(BadFd::Blocking(e)))?;
    Ok(listener)
}

fn accept_loop(listener: &UnixListener, shared: Arc<Shared>) {
    loop {
        {
            let mut active = shared.active.lock().unwrap_or_else(|e| e.into_inner());
            while *active >= MAX_CONNECTIONS && !shared.stopping.load(Ordering::SeqCst) {
                active = shared.slot_freed.wait(active).unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return,
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                // Out of descriptors or memory: transient, and libxl retries.
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EAGAIN) => {
                    log::warn!("QMP {}: accept failed, retrying: {e}", shared.label);
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                _ => {
                    log::error!("QMP {}: accept failed, monitor closed: {e}", shared.label);
                    return;
                }
            },
        };
        // The reader relies on blocking reads.
        if let Err(e) = stream.set_nonblocking(false) {
            log::warn!("QMP {}: dropping a connection: {e}", shared.label);
            continue;
        }
        *shared.active.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let conn_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("qmp-{}-conn", shared.label))
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &conn_shared) {
                    log::debug!("QMP {}: connection ended: {e}", conn_shared.label);
                }
                *conn_shared.active.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                conn_shared.slot_freed.notify_all();
            });
        if let Err(e) = spawned {
            log::error!("QMP {}: cannot start a connection thread: {e}", shared.label);
            *shared.active.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
    }
}

/// One client's session on `stream`, served in the calling thread until the
/// peer stops sending: what the accept loop runs per connection, without a
/// listener. The fuzz target (fuzz/fuzz_targets/qmp.rs) drives the
/// dispatcher, fd passing included, through this over a socketpair.
pub fn serve_stream(stream: UnixStream, ops: Arc<dyn MachineOps>, events: EventSink, info: QmpInfo) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        label: "stream".into(),
        ops,
        events,
        info,
        stopping: AtomicBool::new(false),
        active: Mutex::new(0),
        slot_freed: Condvar::new(),
    });
    serve_connection(stream, &shared)
}

fn serve_connection(stream: UnixStream, shared: &Arc<Shared>) -> std::io::Result<()> {
    // A client that stops reading must not hold its queue forever.
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let outbox = Arc::new(Outbox::new());
    outbox.reply(&greeting(), false)?;
    // Subscribed after the greeting is queued; events are only wanted
    // after negotiation anyway.
    shared.events.add_subscriber(outbox.clone());
    let writer = {
        let (stream, outbox) = (stream.try_clone()?, outbox.clone());
        std::thread::Builder::new().name("qmp-writer".into()).spawn(move || write_outbox(stream, &outbox))?
    };
    let received_fds = Arc::new(Mutex::new(VecDeque::new()));
    let mut session = Session::new(shared.clone(), received_fds.clone());
    let result = read_commands(FdStream { stream, received: received_fds }, &outbox, &mut session);
    // Whatever was queued (quit's reply in particular) is sent before the
    // machine is asked to quit.
    outbox.close();
    let _ = writer.join();
    if session.quit_requested {
        shared.ops.quit();
    }
    result
}
