//! The QMP server libxl (and qtest suites) talk to: QEMU 7.2's greeting,
//! capabilities negotiation, the commands libxl sends to an HVM device
//! model, and the asynchronous events in QEMU's shapes.

use super::cmdline::QmpEndpoint;
use crate::block::CacheMode;
use crate::machine::{DriveInfo, Event, EventSink, RunState};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// Connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest accepted command line; libxl's largest command is well under 4 KiB.
pub const MAX_LINE: usize = 64 * 1024;
/// Descriptors received with SCM_RIGHTS and not yet claimed by add-fd,
/// fd sets, and descriptors per set, per connection.
const MAX_PENDING_FDS: usize = 8;
const MAX_FDSETS: usize = 16;
const MAX_FDS_PER_SET: usize = 8;
/// A client that stops reading is cut off after this long, so events
/// queued for it cannot pile up for longer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What QMP commands do to the machine; the launcher implements it.
pub trait MachineOps: Send + Sync {
    fn run_state(&self) -> RunState;
    fn stop(&self);
    fn cont(&self) -> Result<(), String>;
    fn block_info(&self) -> Vec<DriveInfo>;
    fn eject(&self, device: &str, force: bool) -> Result<(), String>;
    fn change_medium(&self, device: &str, filename: &str, read_only: Option<bool>) -> Result<(), String>;
    /// (label, filename), e.g. ("serial0", "pty:/dev/pts/3").
    fn chardevs(&self) -> Vec<(String, String)>;
    fn quit(&self);
    /// QMP `system_reset`: reset the machine (under Xen: reboot the domain).
    fn system_reset(&self) -> Result<(), String>;
    /// A medium libxl opened itself and passed with add-fd (`xl cd-insert`
    /// names it "/dev/fdset/N"). The default re-opens it through procfs,
    /// which a chrooted device model (dm_restrict) may not have; override
    /// to use the descriptor directly.
    fn change_medium_fd(&self, device: &str, fd: OwnedFd, read_only: Option<bool>) -> Result<(), String> {
        self.change_medium(device, &format!("/proc/self/fd/{}", fd.as_raw_fd()), read_only)
    }
}

#[derive(Debug, Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("QMP socket {path}: a non-socket file is in the way")]
    NotASocket { path: PathBuf },
    #[error("QMP fd={fd}: {reason}")]
    BadFd { fd: i32, reason: String },
    #[error("QMP listener thread: {0}")]
    Spawn(std::io::Error),
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
    let bad = |reason: String| QmpError::BadFd { fd, reason };
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor table entry.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad(std::io::Error::last_os_error().to_string()));
    }
    use nix::sys::socket::{getsockopt, sockopt};
    // SAFETY: fd is open (checked above) and was handed to us by libxl on
    // the command line for our exclusive use; nothing else in this process
    // owns it, so taking ownership cannot double-close.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let accepting = getsockopt(&owned, sockopt::AcceptConn).map_err(|e| bad(format!("not a socket: {e}")))?;
    if !accepting {
        return Err(bad("the socket is not listening".into()));
    }
    let domain = getsockopt(&owned, sockopt::SockType).map_err(|e| bad(e.to_string()))?;
    if domain != nix::sys::socket::SockType::Stream {
        return Err(bad("not a stream socket".into()));
    }
    // Keep the descriptor from leaking into anything we might exec.
    nix::fcntl::fcntl(owned.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(|e| bad(e.to_string()))?;
    let listener = UnixListener::from(owned);
    // The accept thread blocks; the creator may have left O_NONBLOCK set.
    listener.set_nonblocking(false).map_err(|e| bad(e.to_string()))?;
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

/// Replies a client may have unread before the command reader waits for
/// the writer: a client that sends without reading can't make us allocate
/// without bound either.
const MAX_QUEUED_REPLIES: usize = 64;

/// One connection's outgoing lines, in the order they must reach the
/// client. Events are queued by `EventSink::emit` on the emitting thread
/// (see `EventSubscriber`) and replies by the command reader once the
/// command completed, both under this one lock, and a single writer thread
/// sends the queue front to back. So an event whose emit() returned before
/// a command's reply was queued is written before that reply: the ordering
/// QEMU gives, which clients (the differential harness among them) use to
/// know that an event "has had time" to arrive.
struct Outbox {
    state: Mutex<OutboxState>,
    /// Signalled when lines are queued (the writer waits for work) and when
    /// they are taken or the connection ends (the reader waits for room).
    changed: Condvar,
}

#[derive(Default)]
struct OutboxState {
    lines: VecDeque<Queued>,
    events_queued: usize,
    replies_queued: usize,
    /// QEMU only sends events once capabilities are negotiated.
    events_wanted: bool,
    /// The reader is done; the writer sends what is queued, then ends.
    closing: bool,
    /// Writing failed; nothing more is queued or sent.
    broken: bool,
}

enum Queued {
    Event(String),
    Reply(String),
}

impl Queued {
    fn line(&self) -> &str {
        match self {
            Queued::Event(line) | Queued::Reply(line) => line,
        }
    }
}

fn json_line(message: &Value) -> String {
    let mut line = message.to_string();
    line.push_str("\r\n");
    line
}

/// Why a reply could not be queued.
#[derive(Debug, Error)]
enum OutboxError {
    #[error("the client stopped accepting output")]
    Broken,
}

impl From<OutboxError> for std::io::Error {
    fn from(e: OutboxError) -> Self {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, e)
    }
}

impl Outbox {
    fn new() -> Self {
        Outbox { state: Mutex::new(OutboxState::default()), changed: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a reply (or the greeting) behind everything emitted so far.
    /// `then_events`: capabilities negotiation just completed, so events
    /// emitted from now on are wanted; switched in the same critical
    /// section so none can slip in ahead of the negotiation's reply.
    fn reply(&self, message: &Value, then_events: bool) -> Result<(), OutboxError> {
        let line = json_line(message);
        let mut state = self.lock();
        while state.replies_queued >= MAX_QUEUED_REPLIES && !state.broken {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.broken {
            return Err(OutboxError::Broken);
        }
        state.lines.push_back(Queued::Reply(line));
        state.replies_queued += 1;
        state.events_wanted |= then_events;
        self.changed.notify_all();
        Ok(())
    }

    /// The reader is done: the writer drains the queue and ends.
    fn close(&self) {
        self.lock().closing = true;
        self.changed.notify_all();
    }

    /// Takes everything queued, waiting for some; None once closed (or
    /// broken) and drained.
    fn take(&self) -> Option<String> {
        let mut state = self.lock();
        while state.lines.is_empty() && !state.closing && !state.broken {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.broken || state.lines.is_empty() {
            return None;
        }
        let mut batch = String::new();
        for queued in state.lines.drain(..) {
            batch.push_str(queued.line());
        }
        state.events_queued = 0;
        state.replies_queued = 0;
        self.changed.notify_all();
        Some(batch)
    }

    fn mark_broken(&self) {
        let mut state = self.lock();
        state.broken = true;
        state.lines.clear();
        self.changed.notify_all();
    }
}

impl crate::machine::EventSubscriber for Outbox {
    fn deliver(&self, event: &Event) -> crate::machine::Delivery {
        use crate::machine::{events::SUBSCRIBER_BACKLOG, Delivery};
        let mut state = self.lock();
        if state.broken || state.closing {
            return Delivery::Gone;
        }
        if !state.events_wanted {
            return Delivery::Taken;
        }
        if state.events_queued >= SUBSCRIBER_BACKLOG {
            return Delivery::Full;
        }
        // Stamped now, at emission, as QEMU stamps its events.
        state.lines.push_back(Queued::Event(json_line(&event_json(event, SystemTime::now()))));
        state.events_queued += 1;
        self.changed.notify_all();
        Delivery::Taken
    }
}

/// The connection's only writer: sends the outbox in order. A failed or
/// timed-out write shuts the socket down, which also ends the reader.
fn write_outbox(mut stream: UnixStream, outbox: &Outbox) {
    while let Some(batch) = outbox.take() {
        if stream.write_all(batch.as_bytes()).is_err() {
            outbox.mark_broken();
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
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
    let mut session = Session {
        shared: shared.clone(),
        negotiated: false,
        quit_requested: false,
        received_fds: received_fds.clone(),
        fdsets: BTreeMap::new(),
    };
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

/// Requests are JSON objects, normally one per line as libxl sends them;
/// an object may also span lines or share one with the next, as QEMU's
/// streaming parser allows. Unfinished input is bounded by MAX_LINE.
fn read_commands(stream: FdStream, outbox: &Outbox, session: &mut Session) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut pending = String::new();
    // After an overflow the rest of that message is skipped up to the next
    // line that starts a new object, instead of answering each fragment.
    let mut discarding = false;
    let too_long = || {
        error_reply("GenericError", &format!("JSON message too long (limit {MAX_LINE} bytes)"), None)
    };
    loop {
        let line = match read_bounded_line(&mut reader, MAX_LINE)? {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                pending.clear();
                if !discarding {
                    outbox.reply(&too_long(), false)?;
                }
                discarding = true;
                continue;
            }
            Line::Text(text) => text,
        };
        if discarding {
            if line.trim_ascii_start().first() != Some(&b'{') {
                continue;
            }
            discarding = false;
        }
        if pending.len() + line.len() > MAX_LINE {
            pending.clear();
            outbox.reply(&too_long(), false)?;
            discarding = true;
            continue;
        }
        pending.push_str(&String::from_utf8_lossy(&line));
        pending.push('\n');
        let mut stream = serde_json::Deserializer::from_str(&pending).into_iter::<Value>();
        let mut consumed = 0;
        loop {
            match stream.next() {
                None => {
                    consumed = pending.len();
                    break;
                }
                Some(Ok(request)) => {
                    consumed = stream.byte_offset();
                    let was_negotiated = session.negotiated;
                    let reply = session.handle_request(request);
                    outbox.reply(&reply, session.negotiated && !was_negotiated)?;
                    if session.quit_requested {
                        return Ok(());
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    consumed = pending.len();
                    outbox.reply(&error_reply("GenericError", &format!("JSON parse error, {e}"), None), false)?;
                    break;
                }
            }
        }
        pending.drain(..consumed);
        if pending.trim().is_empty() {
            pending.clear();
        }
    }
}

enum Line {
    Text(Vec<u8>),
    TooLong,
    Eof,
}

/// Reads up to '\n'; a longer line is consumed and dropped in pieces so it
/// never occupies more than `limit` bytes of memory.
fn read_bounded_line<R: Read>(reader: &mut BufReader<R>, limit: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if too_long {
                Line::TooLong
            } else if line.is_empty() {
                Line::Eof
            } else {
                Line::Text(line)
            });
        }
        let (chunk, found_newline) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], Some(at)),
            None => (available, None),
        };
        if !too_long {
            if line.len() + chunk.len() > limit {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = found_newline.map(|at| at + 1).unwrap_or(available.len());
        reader.consume(consumed);
        if found_newline.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Text(line) });
        }
    }
}

pub fn greeting() -> Value {
    json!({"QMP": {"version": version_json(), "capabilities": ["oob"]}})
}

fn version_json() -> Value {
    json!({"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": format!("xen-ioemu {}", env!("CARGO_PKG_VERSION"))})
}

fn error_reply(class: &str, desc: &str, id: Option<&Value>) -> Value {
    let mut reply = json!({"error": {"class": class, "desc": desc}});
    if let Some(id) = id {
        reply["id"] = id.clone();
    }
    reply
}

/// A failed command: QEMU's error class and text.
struct CommandError {
    class: &'static str,
    desc: String,
}

fn generic(desc: impl Into<String>) -> CommandError {
    CommandError { class: "GenericError", desc: desc.into() }
}

struct Session {
    shared: Arc<Shared>,
    /// Events start once the reply saying so is queued (read_commands).
    negotiated: bool,
    quit_requested: bool,
    received_fds: Arc<Mutex<VecDeque<OwnedFd>>>,
    /// add-fd's fd sets. QEMU keeps them per process; libxl adds and uses
    /// one within a single connection, so they live as long as it.
    fdsets: BTreeMap<u64, Vec<PassedFd>>,
}

struct PassedFd {
    fd: OwnedFd,
    opaque: Option<String>,
}

/// The command stream, read with recvmsg so descriptors passed along with a
/// command (SCM_RIGHTS, for add-fd) are kept instead of discarded.
struct FdStream {
    stream: UnixStream,
    received: Arc<Mutex<VecDeque<OwnedFd>>>,
}

impl Read for FdStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; MAX_PENDING_FDS]);
        let msg = recvmsg::<()>(self.stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(std::io::Error::from)?;
        let mut received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        for message in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = message {
                for raw in fds {
                    // SAFETY: the kernel has just installed `raw` in our
                    // descriptor table for this message; nothing else owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                    if received.len() < MAX_PENDING_FDS {
                        received.push_back(fd);
                    } else {
                        log::warn!("QMP: closing a passed descriptor, {MAX_PENDING_FDS} are already unclaimed");
                    }
                }
            }
        }
        Ok(msg.bytes)
    }
}

impl Session {
    fn handle_request(&mut self, request: Value) -> Value {
        let Value::Object(request) = request else {
            return error_reply("GenericError", "QMP input must be a JSON object", None);
        };
        let id = request.get("id");
        let command = match request.get("execute").or_else(|| request.get("exec-oob")) {
            Some(Value::String(name)) => name.as_str(),
            Some(_) => return error_reply("GenericError", "QMP input member 'execute' must be a string", id),
            None => return error_reply("GenericError", "QMP input lacks member 'execute'", id),
        };
        for key in request.keys() {
            if !matches!(key.as_str(), "execute" | "exec-oob" | "arguments" | "id" | "control") {
                return error_reply("GenericError", &format!("QMP input member '{key}' is unexpected"), id);
            }
        }
        let empty = Map::new();
        let arguments = match request.get("arguments") {
            None => &empty,
            Some(Value::Object(map)) => map,
            Some(_) => return error_reply("GenericError", "QMP input member 'arguments' must be an object", id),
        };
        let result = if !self.negotiated && command != "qmp_capabilities" {
            Err(CommandError {
                class: "CommandNotFound",
                desc: "Expecting capabilities negotiation with 'qmp_capabilities'".into(),
            })
        } else {
            self.dispatch(command, Args(arguments))
        };
        match result {
            Ok(value) => {
                let mut reply = json!({"return": value});
                if let Some(id) = id {
                    reply["id"] = id.clone();
                }
                reply
            }
            Err(e) => error_reply(e.class, &e.desc, id),
        }
    }

    fn dispatch(&mut self, command: &str, args: Args) -> Result<Value, CommandError> {
        let ops = &self.shared.ops;
        match command {
            "qmp_capabilities" => {
                args.only(&["enable"])?;
                if self.negotiated {
                    return Err(CommandError {
                        class: "CommandNotFound",
                        desc: "Capabilities negotiation is already complete, command ignored".into(),
                    });
                }
                if let Some(enable) = args.0.get("enable") {
                    let Value::Array(list) = enable else {
                        return Err(generic("Invalid parameter type for 'enable', expected: array"));
                    };
                    for cap in list {
                        if cap != "oob" {
                            return Err(generic(format!("Capability '{}' not available", cap.as_str().unwrap_or("?"))));
                        }
                    }
                }
                self.negotiated = true;
                Ok(json!({}))
            }
            "query-status" => {
                args.only(&[])?;
                let state = ops.run_state();
                Ok(json!({"status": state.as_qmp(), "singlestep": false, "running": state == RunState::Running}))
            }
            "stop" => {
                args.only(&[])?;
                ops.stop();
                Ok(json!({}))
            }
            "cont" => {
                args.only(&[])?;
                ops.cont().map_err(generic)?;
                Ok(json!({}))
            }
            "system_reset" => {
                args.only(&[])?;
                ops.system_reset().map_err(generic)?;
                Ok(json!({}))
            }
            "query-version" => {
                args.only(&[])?;
                Ok(version_json())
            }
            "query-name" => {
                args.only(&[])?;
                Ok(match &self.shared.info.name {
                    Some(name) => json!({"name": name}),
                    None => json!({}),
                })
            }
            "query-chardev" => {
                args.only(&[])?;
                let list: Vec<Value> = ops
                    .chardevs()
                    .into_iter()
                    .map(|(label, filename)| json!({"frontend-open": true, "filename": filename, "label": label}))
                    .collect();
                Ok(Value::Array(list))
            }
            "query-block" => {
                args.only(&["flat"])?;
                Ok(Value::Array(ops.block_info().iter().enumerate().map(|(i, d)| block_json(i, d)).collect()))
            }
            "query-blockstats" => {
                args.only(&["query-nodes"])?;
                Ok(Value::Array(
                    ops.block_info().iter().enumerate().map(|(i, d)| blockstats_json(i, d)).collect(),
                ))
            }
            "eject" => {
                args.only(&["device", "id", "force"])?;
                let device = self.find_drive(&args)?;
                let force = args.bool("force")?.unwrap_or(false);
                ops.eject(&device.id, force).map_err(generic)?;
                Ok(json!({}))
            }
            "add-fd" => {
                args.only(&["fdset-id", "opaque"])?;
                let wanted_set = args.uint("fdset-id")?;
                let opaque = args.str("opaque")?.map(str::to_string);
                let fd = self
                    .received_fds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front()
                    .ok_or_else(|| generic("No file descriptor supplied via SCM_RIGHTS"))?;
                let set_id = match wanted_set {
                    Some(id) => id,
                    None => (0..).find(|id| !self.fdsets.contains_key(id)).unwrap_or(0),
                };
                if !self.fdsets.contains_key(&set_id) && self.fdsets.len() >= MAX_FDSETS {
                    return Err(generic(format!("Too many fd sets (limit {MAX_FDSETS})")));
                }
                let set = self.fdsets.entry(set_id).or_default();
                if set.len() >= MAX_FDS_PER_SET {
                    return Err(generic(format!("Too many descriptors in fd set {set_id} (limit {MAX_FDS_PER_SET})")));
                }
                let number = fd.as_raw_fd();
                set.push(PassedFd { fd, opaque });
                Ok(json!({"fdset-id": set_id, "fd": number}))
            }
            "remove-fd" => {
                args.only(&["fdset-id", "fd"])?;
                let set_id = args.uint("fdset-id")?.ok_or_else(|| generic("Parameter 'fdset-id' is missing"))?;
                let fd = args.uint("fd")?;
                let missing = || match fd {
                    Some(fd) => generic(format!("File descriptor named 'fdset-id:{set_id}, fd:{fd}' not found")),
                    None => generic(format!("File descriptor named 'fdset-id:{set_id}' not found")),
                };
                let set = self.fdsets.get_mut(&set_id).ok_or_else(missing)?;
                match fd {
                    None => set.clear(),
                    Some(number) => {
                        let at = set.iter().position(|p| p.fd.as_raw_fd() as u64 == number).ok_or_else(missing)?;
                        set.remove(at);
                    }
                }
                if set.is_empty() {
                    self.fdsets.remove(&set_id);
                }
                Ok(json!({}))
            }
            "query-fdsets" => {
                args.only(&[])?;
                let sets: Vec<Value> = self
                    .fdsets
                    .iter()
                    .map(|(id, fds)| {
                        let fds: Vec<Value> = fds
                            .iter()
                            .map(|p| {
                                let mut entry = json!({"fd": p.fd.as_raw_fd()});
                                if let Some(opaque) = &p.opaque {
                                    entry["opaque"] = json!(opaque);
                                }
                                entry
                            })
                            .collect();
                        json!({"fdset-id": id, "fds": fds})
                    })
                    .collect();
                Ok(Value::Array(sets))
            }
            "blockdev-change-medium" => {
                args.only(&["device", "id", "filename", "format", "force", "read-only-mode"])?;
                let device = self.find_drive(&args)?;
                let filename = args.required_str("filename")?;
                if let Some(format) = args.str("format")? {
                    if format != "raw" {
                        return Err(generic(format!("Unknown driver '{format}' (only raw images are supported)")));
                    }
                }
                let read_only = match args.str("read-only-mode")? {
                    None | Some("retain") => None,
                    Some("read-only") => Some(true),
                    Some("read-write") => Some(false),
                    Some(other) => {
                        return Err(generic(format!("Parameter 'read-only-mode' does not accept value '{other}'")))
                    }
                };
                self.change_medium(&device.id, filename, read_only)?;
                Ok(json!({}))
            }
            // Removed from QEMU in 6.0; libxl only sends it to QEMU < 2.8.
            "change" => {
                args.only(&["device", "target", "arg"])?;
                let name = args.required_str("device")?;
                let target = args.required_str("target")?;
                let device = lookup(ops.block_info(), Some(name), None)?;
                self.change_medium(&device.id, target, None)?;
                Ok(json!({}))
            }
            "query-command-line-options" => {
                args.only(&["option"])?;
                command_line_options(args.str("option")?)
            }
            // libxl asks after every start when the config has VNC on (the
            // xl default); an error there fails domain creation. There is no
            // VNC server here, which is what QEMU says for -vnc none.
            "query-vnc" => {
                args.only(&[])?;
                Ok(json!({"enabled": false}))
            }
            "change-vnc-password" => {
                args.only(&["password"])?;
                args.required_str("password")?;
                log::warn!("QMP {}: change-vnc-password ignored, no VNC server is provided", self.shared.label);
                Ok(json!({}))
            }
            "human-monitor-command" => {
                args.only(&["command-line", "cpu-index"])?;
                args.required_str("command-line")?;
                Ok(json!(""))
            }
            "quit" => {
                args.only(&[])?;
                self.quit_requested = true;
                Ok(json!({}))
            }
            other => Err(CommandError {
                class: "CommandNotFound",
                desc: format!("The command {other} has not been found"),
            }),
        }
    }

    /// A path, or "/dev/fdset/N" for a descriptor passed with add-fd.
    fn change_medium(&self, device: &str, filename: &str, read_only: Option<bool>) -> Result<(), CommandError> {
        let ops = &self.shared.ops;
        let Some(set) = filename.strip_prefix("/dev/fdset/") else {
            return ops.change_medium(device, filename, read_only).map_err(generic);
        };
        let fd = set
            .parse::<u64>()
            .ok()
            .and_then(|id| self.fdsets.get(&id))
            .and_then(|fds| fds.first())
            .ok_or_else(|| {
                // QEMU's wording, with the open(2) access mode it would have used.
                let flags = if read_only == Some(false) { libc::O_RDWR } else { libc::O_RDONLY };
                generic(format!("Could not dup FD for {filename} flags {flags:x}: No such file or directory"))
            })?;
        // The set keeps its descriptor, as in QEMU; the medium gets a duplicate.
        let medium = fd.fd.try_clone().map_err(|e| generic(format!("Could not open '{filename}': {e}")))?;
        ops.change_medium_fd(device, medium, read_only).map_err(generic)
    }

    fn find_drive(&self, args: &Args) -> Result<DriveInfo, CommandError> {
        let device = args.str("device")?;
        let id = args.str("id")?;
        if device.is_some() == id.is_some() {
            return Err(generic("Need exactly one of 'device' and 'id'"));
        }
        lookup(self.shared.ops.block_info(), device, id)
    }
}

fn lookup(drives: Vec<DriveInfo>, device: Option<&str>, id: Option<&str>) -> Result<DriveInfo, CommandError> {
    let wanted = device.or(id).unwrap_or("");
    drives
        .into_iter()
        .find(|d| match (device, id) {
            (Some(name), _) => d.id == name,
            (_, Some(qdev)) => d.qdev == qdev,
            _ => false,
        })
        .ok_or_else(|| CommandError { class: "DeviceNotFound", desc: format!("Device '{wanted}' not found") })
}

struct Args<'a>(&'a Map<String, Value>);

impl Args<'_> {
    fn only(&self, allowed: &[&str]) -> Result<(), CommandError> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(key) => Err(generic(format!("Parameter '{key}' is unexpected"))),
            None => Ok(()),
        }
    }

    fn str(&self, key: &str) -> Result<Option<&str>, CommandError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(generic(format!("Invalid parameter type for '{key}', expected: string"))),
        }
    }

    fn required_str(&self, key: &str) -> Result<&str, CommandError> {
        self.str(key)?.ok_or_else(|| generic(format!("Parameter '{key}' is missing")))
    }

    fn uint(&self, key: &str) -> Result<Option<u64>, CommandError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| generic(format!("Invalid parameter type for '{key}', expected: integer"))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, CommandError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(generic(format!("Invalid parameter type for '{key}', expected: boolean"))),
        }
    }
}

/// QEMU names block nodes "#blockNNN"; ours only need to be stable and unique.
pub fn node_name(index: usize) -> String {
    format!("#block{:03}", index + 1)
}

fn cache_json(cache: CacheMode) -> Value {
    let (writeback, direct, no_flush) = match cache {
        CacheMode::Writeback => (true, false, false),
        CacheMode::Writethrough => (false, false, false),
        CacheMode::None => (true, true, false),
        CacheMode::Directsync => (false, true, false),
        CacheMode::Unsafe => (true, false, true),
    };
    json!({"no-flush": no_flush, "direct": direct, "writeback": writeback})
}

fn block_json(index: usize, drive: &DriveInfo) -> Value {
    let mut entry = json!({
        "device": drive.id,
        "locked": drive.locked,
        "removable": drive.removable,
        "qdev": drive.qdev,
        "type": "unknown",
    });
    if let Some(status) = drive.io_status {
        entry["io-status"] = json!(status);
    }
    if drive.removable {
        entry["tray_open"] = json!(drive.tray_open);
    }
    if let Some(medium) = &drive.inserted {
        let mut image = json!({
            "virtual-size": medium.size,
            "filename": medium.file,
            "format": "raw",
            "dirty-flag": false,
        });
        // Allocated bytes on the host, as QEMU's raw driver reports them.
        if let Ok(meta) = std::fs::metadata(&medium.file) {
            image["actual-size"] = json!(meta.blocks() * 512);
        }
        entry["inserted"] = json!({
            "iops_rd": 0, "detect_zeroes": "off", "image": image, "iops_wr": 0,
            "ro": medium.read_only, "node-name": node_name(index), "backing_file_depth": 0,
            "drv": "raw", "iops": 0, "bps_wr": 0, "write_threshold": 0, "encrypted": false,
            "bps": 0, "bps_rd": 0, "cache": cache_json(medium.cache), "file": medium.file,
        });
    }
    entry
}

fn blockstats_json(index: usize, drive: &DriveInfo) -> Value {
    let s = &drive.stats;
    let mut entry = json!({
        "device": drive.id,
        "qdev": drive.qdev,
        "stats": {
            "unmap_operations": s.unmap_operations, "unmap_merged": 0,
            "flush_total_time_ns": s.flush_total_time_ns, "wr_highest_offset": 0,
            "wr_total_time_ns": s.wr_total_time_ns, "failed_wr_operations": s.failed_wr_operations,
            "failed_rd_operations": s.failed_rd_operations, "wr_merged": 0, "wr_bytes": s.wr_bytes,
            "timed_stats": [], "failed_unmap_operations": s.failed_unmap_operations,
            "failed_flush_operations": s.failed_flush_operations, "account_invalid": true,
            "rd_total_time_ns": s.rd_total_time_ns, "invalid_unmap_operations": 0,
            "flush_operations": s.flush_operations, "wr_operations": s.wr_operations,
            "unmap_bytes": s.unmap_bytes, "rd_merged": 0, "rd_bytes": s.rd_bytes,
            "unmap_total_time_ns": 0, "invalid_flush_operations": 0, "account_failed": true,
            "rd_operations": s.rd_operations, "invalid_wr_operations": 0, "invalid_rd_operations": 0,
        },
    });
    if drive.inserted.is_some() {
        entry["node-name"] = json!(node_name(index));
    }
    entry
}

/// The options and parameters this binary understands, in the shape of
/// QEMU's query-command-line-options. libxl 4.20+ asks in its probe run
/// whether `-run-with` exists; it does not here, so libxl keeps using
/// `-chroot` and `-runas`.
fn command_line_options(only: Option<&str>) -> Result<Value, CommandError> {
    let table: &[(&str, &[(&str, &str)])] = &[
        ("machine", &[("type", "string"), ("accel", "string"), ("suppress-vmdesc", "boolean"), ("max-ram-below-4g", "size")]),
        ("drive", &[
            ("file", "string"), ("if", "string"), ("index", "number"), ("bus", "number"), ("unit", "number"),
            ("media", "string"), ("format", "string"), ("cache", "string"), ("readonly", "boolean"),
            ("werror", "string"), ("rerror", "string"), ("retry-interval", "number"), ("id", "string"),
        ]),
        ("chardev", &[("id", "string"), ("backend", "string"), ("path", "string"), ("fd", "string"), ("server", "boolean"), ("wait", "boolean")]),
        ("mon", &[("chardev", "string"), ("mode", "string")]),
        ("boot-opts", &[("order", "string"), ("once", "string")]),
        ("smp-opts", &[("cpus", "number"), ("maxcpus", "number")]),
        ("global", &[("driver", "string"), ("property", "string"), ("value", "string")]),
        ("accel", &[("accel", "string")]),
    ];
    let render = |(name, params): &(&str, &[(&str, &str)])| {
        let parameters: Vec<Value> = params.iter().map(|(p, t)| json!({"name": p, "type": t})).collect();
        json!({"parameters": parameters, "option": name})
    };
    match only {
        None => Ok(Value::Array(table.iter().map(render).collect())),
        Some(wanted) => match table.iter().find(|(name, _)| *name == wanted) {
            Some(entry) => Ok(json!([render(entry)])),
            None => Err(generic("Invalid parameter 'option'")),
        },
    }
}

/// An event as QEMU 7.2 puts it on the wire.
pub fn event_json(event: &Event, now: SystemTime) -> Value {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (name, data) = match event {
        Event::BlockIoError { device, node_name, operation, action, nospace, reason } => {
            let mut data = json!({
                "device": device, "node-name": node_name, "operation": operation.as_qmp(),
                "action": action, "reason": reason,
            });
            if let Some(nospace) = nospace {
                data["nospace"] = json!(nospace);
            }
            ("BLOCK_IO_ERROR", Some(data))
        }
        Event::Stop => ("STOP", None),
        Event::Resume => ("RESUME", None),
        Event::Shutdown { guest, reason } => ("SHUTDOWN", Some(json!({"guest": guest, "reason": reason}))),
        Event::Reset { guest, reason } => ("RESET", Some(json!({"guest": guest, "reason": reason}))),
        Event::DeviceTrayMoved { device, id, tray_open } => {
            ("DEVICE_TRAY_MOVED", Some(json!({"device": device, "tray-open": tray_open, "id": id})))
        }
    };
    let mut message = json!({
        "timestamp": {"seconds": since_epoch.as_secs(), "microseconds": since_epoch.subsec_micros()},
        "event": name,
    });
    if let Some(data) = data {
        message["data"] = data;
    }
    message
}

/// The query-chardev entries of the QMP monitors on the command line, in
/// QEMU's filename format, for the launcher's `MachineOps::chardevs`.
pub fn monitor_chardevs(endpoints: &[QmpEndpoint]) -> Vec<(String, String)> {
    endpoints
        .iter()
        .map(|e| match e {
            QmpEndpoint::UnixPath { label, path } => (label.clone(), format!("unix:{},server=on", path.display())),
            QmpEndpoint::Fd { label, .. } => (label.clone(), "disconnected:unix".to_string()),
            QmpEndpoint::Connect { label, path } => (label.clone(), format!("unix:{}", path.display())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::IoOperation;
    use std::io::Cursor;

    #[test]
    fn bounded_line_reader_drops_oversized_lines_and_keeps_going() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\nshort\nlast");
        let mut reader = BufReader::with_capacity(16, Cursor::new(input));
        assert!(matches!(read_bounded_line(&mut reader, 50).unwrap(), Line::TooLong));
        assert!(matches!(read_bounded_line(&mut reader, 50).unwrap(), Line::Text(t) if t == b"short"));
        assert!(matches!(read_bounded_line(&mut reader, 50).unwrap(), Line::Text(t) if t == b"last"));
        assert!(matches!(read_bounded_line(&mut reader, 50).unwrap(), Line::Eof));
    }

    #[test]
    fn block_io_error_event_shape() {
        let event = Event::BlockIoError {
            device: "ide0-hd0".into(),
            node_name: "#block121".into(),
            operation: IoOperation::Write,
            action: "stop",
            nospace: Some(true),
            reason: "No space left on device".into(),
        };
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(
            event_json(&event, at),
            json!({"timestamp": {"seconds": 1_700_000_000u64, "microseconds": 123_456},
                   "event": "BLOCK_IO_ERROR",
                   "data": {"device": "ide0-hd0", "node-name": "#block121", "operation": "write",
                            "action": "stop", "nospace": true, "reason": "No space left on device"}})
        );
        let stop = event_json(&Event::Stop, at);
        assert_eq!(stop["event"], "STOP");
        assert!(stop.get("data").is_none());
        let tray = event_json(&Event::DeviceTrayMoved { device: "ide1-cd0".into(), id: "cd".into(), tray_open: true }, at);
        assert_eq!(tray["data"], json!({"device": "ide1-cd0", "tray-open": true, "id": "cd"}));
    }

    #[test]
    fn cache_modes_map_to_qemu_flags() {
        assert_eq!(cache_json(CacheMode::None), json!({"no-flush": false, "direct": true, "writeback": true}));
        assert_eq!(cache_json(CacheMode::Unsafe), json!({"no-flush": true, "direct": false, "writeback": true}));
        assert_eq!(cache_json(CacheMode::Writethrough)["writeback"], false);
    }

    #[test]
    fn command_line_options_filter() {
        let all = command_line_options(None).ok().unwrap();
        assert!(all.as_array().unwrap().iter().all(|o| o["option"] != "run-with"));
        let drive = command_line_options(Some("drive")).ok().unwrap();
        assert_eq!(drive[0]["option"], "drive");
        assert_eq!(command_line_options(Some("run-with")).err().unwrap().desc, "Invalid parameter 'option'");
    }
}
