//! Runs blkif requests on the block I/O engine and answers them.
//!
//! Every request taken from the ring is checked ([`super::request`]),
//! then submitted to the drive's [`BlockQueue`] (requests in flight: as
//! many as the ring has slots and [`INFLIGHT_BUDGET`] allows; the worker
//! runs them in ring order, so a flush follows the writes taken before
//! it). Write data is copied out of
//! the frontend's grants before submission (a bad grant fails the request
//! and writes nothing); read data is copied into the grants on
//! completion, before the response is published.
//!
//! Host errors go through `werror` (writes, flushes, discards) and
//! `rerror` (reads) as for IDE, with the same audit line (`drive=` is the
//! vdev): report and ignore answer at once (BLKIF_RSP_ERROR, or OKAY for
//! ignore); stop holds the request unanswered and takes nothing more from
//! the ring until a retry (every `retry_interval`, from the owner's loop)
//! has completed it, so the guest sees no error and nothing is reordered
//! around it.

use super::request::{self, BlkRequest, DiskLimits, RequestKind};
use super::ring::{BackRing, RawRequest, RingError};
use super::{GrantCopier, Notifier};
use crate::block::engine::{BlockQueue, Completion, EngineError, IoDone, IoFailure, IoOp, SharedBackend};
use crate::block::{ErrorAction, ErrorPolicy};
use crate::logging::audit::{audit_io_error, IoErrorAudit};
use crate::vm::{GuestMemory, MemError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use xen_sys::blkif::*;

/// Request data held in our buffers at once, per disk: requests are taken
/// from the ring only while less is in flight, so the buffers stay under
/// this plus one request whatever the ring size and segment counts (a
/// 16-page ring of 1 MiB indirect requests would otherwise be 512 MiB).
/// Linux's defaults (32 slots of at most 128 KiB) stay below it.
pub const INFLIGHT_BUDGET: usize = 16 << 20;

/// Where audit lines go: syslog through the rate limiter by default;
/// tests collect them (the engine's worker thread writes them).
pub type AuditSink = Arc<dyn Fn(&IoErrorAudit) + Send + Sync>;

#[derive(Clone)]
pub struct QdiskOptions {
    /// The vdev ("xvdb"), used in logs and the audit line.
    pub drive: String,
    pub werror: ErrorPolicy,
    pub rerror: ErrorPolicy,
    /// How often a held request is retried (zero: never by itself).
    pub retry_interval: Duration,
    /// None: [`audit_io_error`].
    pub audit: Option<AuditSink>,
}

/// Counters for query-blockstats (QEMU's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QdiskStats {
    pub rd_operations: u64,
    pub wr_operations: u64,
    pub flush_operations: u64,
    pub unmap_operations: u64,
    pub rd_bytes: u64,
    pub wr_bytes: u64,
    pub rd_total_time_ns: u64,
    pub wr_total_time_ns: u64,
    pub flush_total_time_ns: u64,
    pub failed_rd_operations: u64,
    pub failed_wr_operations: u64,
    pub failed_flush_operations: u64,
    pub invalid_operations: u64,
}

/// The engine is only given byte buffers (grant copies), never guest
/// physical addresses: this memory refuses everything.
struct NoGuestMemory;

impl GuestMemory for NoGuestMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        Err(MemError::OutOfRange { gpa, len: buf.len() })
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        Err(MemError::OutOfRange { gpa, len: data.len() })
    }
}

struct Pending {
    req: BlkRequest,
    /// The write data, kept so that a held request can be re-run.
    data: Vec<u8>,
    parts_left: usize,
    failure: Option<Failure>,
    started: Instant,
}

#[derive(Debug, Clone)]
struct Failure {
    errno: i32,
    action: ErrorAction,
    /// A guest fault (bad grant), answered with an error and no audit.
    grant: bool,
}

struct State {
    ring: BackRing,
    /// Engine tag -> request key.
    parts: HashMap<u64, u64>,
    pending: HashMap<u64, Pending>,
    next_key: u64,
    held: Vec<Pending>,
    held_since: Option<Instant>,
    stats: QdiskStats,
    ring_error_logged: bool,
    /// Data bytes of the requests taken and not yet answered.
    inflight_bytes: usize,
}

struct Shared {
    state: Mutex<State>,
    grants: Arc<dyn GrantCopier>,
    notifier: Arc<dyn Notifier>,
    opts: QdiskOptions,
}

pub struct Qdisk {
    /// Before `shared` (fields drop in order): dropping the queue joins the
    /// worker, whose completion closure holds the other reference to
    /// `shared`, so the ring and the grant copier are released on the
    /// thread that drops the Qdisk, never on the worker (on Xen, unmapping
    /// the ring is an ioctl the worker's seccomp list does not have: seen
    /// on real Xen, the first disconnect killed the device model).
    queue: Mutex<BlockQueue>,
    shared: Arc<Shared>,
    backend: SharedBackend,
    limits: DiskLimits,
}

fn command_name(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Read => "READ",
        RequestKind::Write => "WRITE",
        RequestKind::Flush => "FLUSH_DISKCACHE",
        RequestKind::Barrier => "WRITE_BARRIER",
        RequestKind::Discard => "DISCARD",
    }
}

impl Qdisk {
    /// Serve `ring` from `backend`. `limits` is what the backend advertised
    /// in xenstore (size, read-only, discard).
    pub fn new(
        ring: BackRing,
        backend: SharedBackend,
        limits: DiskLimits,
        grants: Arc<dyn GrantCopier>,
        notifier: Arc<dyn Notifier>,
        opts: QdiskOptions,
    ) -> Result<Self, EngineError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ring,
                parts: HashMap::new(),
                pending: HashMap::new(),
                next_key: 1,
                held: Vec::new(),
                held_since: None,
                stats: QdiskStats::default(),
                ring_error_logged: false,
                inflight_bytes: 0,
            }),
            grants,
            notifier,
            opts,
        });
        let on_done = shared.clone();
        let queue = BlockQueue::spawn_as(
            &shared.opts.drive,
            crate::sandbox::ThreadKind::QdiskWorker,
            Arc::new(NoGuestMemory),
            Arc::new(move |c: Completion| on_done.complete(c)),
        )?;
        Ok(Qdisk { queue: Mutex::new(queue), shared, backend, limits })
    }

    fn queue(&self) -> MutexGuard<'_, BlockQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take what the frontend has produced (at most two ring's worth per
    /// call: bounded work per notification), submit it, answer rejected
    /// requests. Nothing is taken while a request is held, or while
    /// [`INFLIGHT_BUDGET`] bytes are in flight (see [`Self::backlogged`]).
    /// Returns the number of requests taken.
    pub fn process(&self) -> usize {
        let mut st = self.shared.lock();
        let mut taken = 0;
        let most = 2 * st.ring.entries() as usize;
        let mut raw: Vec<RawRequest> = Vec::with_capacity(1);
        while taken < most && st.held.is_empty() && st.inflight_bytes < INFLIGHT_BUDGET {
            raw.clear();
            if let Err(e) = st.ring.take_requests(1, &mut raw) {
                self.shared.ring_broken(&mut st, &e);
                break;
            }
            match raw.first() {
                Some(r) => {
                    taken += 1;
                    self.start(&mut st, r);
                }
                None => {
                    self.shared.publish(&mut st);
                    if !st.ring.final_check_for_requests() {
                        break;
                    }
                }
            }
        }
        self.shared.publish(&mut st);
        taken
    }

    /// Requests wait in the ring that `process` left for lack of budget or
    /// work bound: the owner should call it again soon rather than wait for
    /// the frontend's next notification, which may never come (the
    /// frontend notifies only past `req_event`).
    pub fn backlogged(&self) -> bool {
        let st = self.shared.lock();
        st.held.is_empty() && st.ring.has_unconsumed()
    }

    fn start(&self, st: &mut State, raw: &RawRequest) {
        let layout = *st.ring.layout();
        let req = match request::parse(raw, &layout, &self.limits, &*self.shared.grants) {
            Ok(req) => req,
            Err(rejection) => {
                let (id, op) = request::id_and_operation(raw, &layout);
                st.stats.invalid_operations += 1;
                let mut limiter = crate::logging::ratelimit::global().lock().unwrap_or_else(|e| e.into_inner());
                limiter.log_keyed(
                    log::Level::Warn,
                    "qdisk-bad-request",
                    &self.shared.opts.drive,
                    "rejected",
                    format_args!("qdisk {}: request id {id:#x} operation {op} rejected: {rejection}", self.shared.opts.drive),
                );
                drop(limiter);
                st.ring.push_response(id, op, rejection.status());
                return;
            }
        };
        let mut data = Vec::new();
        if req.writes_data() {
            data = vec![0u8; req.data_len()];
            if let Err(e) = self.shared.grants.copy_from_grants(&req.segments, &mut data) {
                self.shared.log_grant_error(&req, &e);
                st.stats.failed_wr_operations += 1;
                st.ring.push_response(req.id, req.operation, BLKIF_RSP_ERROR);
                return;
            }
        }
        let key = st.next_key;
        st.next_key += 1;
        st.inflight_bytes += req.data_len();
        let pending = Pending { req, data, parts_left: 0, failure: None, started: Instant::now() };
        self.submit(st, key, pending);
    }

    /// Submit every part of a request (while holding the state lock, so no
    /// completion can look for a tag before it is recorded).
    fn submit(&self, st: &mut State, key: u64, mut p: Pending) {
        let offset = p.req.byte_offset();
        let ops: Vec<IoOp> = match p.req.kind {
            RequestKind::Read => vec![IoOp::Read { offset, len: p.req.data_len() }],
            RequestKind::Write => vec![IoOp::Write { offset, data: p.data.clone() }],
            RequestKind::Flush | RequestKind::Barrier if p.data.is_empty() => vec![IoOp::Flush],
            RequestKind::Flush | RequestKind::Barrier => {
                vec![IoOp::Flush, IoOp::Write { offset, data: p.data.clone() }, IoOp::Flush]
            }
            RequestKind::Discard if p.req.sectors == 0 => Vec::new(),
            RequestKind::Discard => vec![IoOp::Discard { ranges: vec![(offset, p.req.sectors << BLKIF_SECTOR_SHIFT)] }],
        };
        if ops.is_empty() {
            self.shared.finish(st, p);
            return;
        }
        p.parts_left = ops.len();
        p.failure = None;
        st.pending.insert(key, p);
        let mut queue = self.queue();
        for op in ops {
            let tag = queue.submit(&self.backend, op);
            st.parts.insert(tag, key);
        }
    }

    /// Whether a held request is due for its automatic retry.
    pub fn retry_due(&self) -> bool {
        let st = self.shared.lock();
        let interval = self.shared.opts.retry_interval;
        match st.held_since {
            Some(since) if !interval.is_zero() => since.elapsed() >= interval,
            _ => false,
        }
    }

    pub fn held(&self) -> usize {
        self.shared.lock().held.len()
    }

    /// Re-run every held request (in the order they were taken).
    pub fn retry_held(&self) {
        let mut st = self.shared.lock();
        let mut held = std::mem::take(&mut st.held);
        st.held_since = None;
        held.sort_by_key(|p| p.started);
        for p in held {
            let key = st.next_key;
            st.next_key += 1;
            self.submit(&mut st, key, p);
        }
    }

    pub fn stats(&self) -> QdiskStats {
        self.shared.lock().stats
    }

    /// Requests submitted to the engine and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().pending.len()
    }

    pub fn ring_error(&self) -> Option<RingError> {
        self.shared.lock().ring.broken().cloned()
    }

    /// Wait until everything submitted has completed (teardown).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let waiter = self.queue().idle_waiter();
        waiter.wait(timeout)
    }

    /// Flush the image (teardown, exit).
    pub fn flush(&self) -> Result<(), crate::block::BlockError> {
        self.backend.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ring_broken(&self, st: &mut State, e: &RingError) {
        if !st.ring_error_logged {
            st.ring_error_logged = true;
            log::error!("qdisk {}: {e}; no more requests are taken from this ring", self.opts.drive);
        }
    }

    fn log_grant_error(&self, req: &BlkRequest, e: &super::GrantError) {
        let mut limiter = crate::logging::ratelimit::global().lock().unwrap_or_else(|e| e.into_inner());
        limiter.log_keyed(
            log::Level::Warn,
            "qdisk-grant",
            &self.opts.drive,
            "grant",
            format_args!("qdisk {}: request id {:#x} ({}): {e}", self.opts.drive, req.id, command_name(req.kind)),
        );
    }

    fn publish(&self, st: &mut State) {
        if st.ring.publish() {
            self.notifier.notify();
        }
    }

    fn complete(&self, c: Completion) {
        let mut st = self.lock();
        let Some(key) = st.parts.remove(&c.tag) else { return };
        let Some(mut p) = st.pending.remove(&key) else { return };
        match c.result {
            Ok(IoDone::Data(buf)) => {
                if let Err(e) = self.grants.copy_to_grants(&p.req.segments, &buf) {
                    self.log_grant_error(&p.req, &e);
                    p.failure.get_or_insert(Failure { errno: libc::EFAULT, action: ErrorAction::Report, grant: true });
                }
            }
            Ok(IoDone::Moved(_)) => {}
            Err(failure) => {
                let (errno, permanent) = match &failure {
                    IoFailure::Host { err, permanent, .. } => (err.errno(), *permanent),
                    IoFailure::Memory(_) | IoFailure::TooLarge(_) => (libc::EIO, true),
                };
                let policy = if p.req.kind == RequestKind::Read { self.opts.rerror } else { self.opts.werror };
                let mut action = policy.action_for(errno);
                if action == ErrorAction::Stop && permanent {
                    log::error!("qdisk {}: the image can no longer make data durable; reporting instead of holding", self.opts.drive);
                    action = ErrorAction::Report;
                }
                // The first failing part decides; a stop wins over a report
                // so that the whole request is re-run.
                match &mut p.failure {
                    Some(f) if f.action == ErrorAction::Stop || f.grant => {}
                    slot => *slot = Some(Failure { errno, action, grant: false }),
                }
            }
        }
        p.parts_left = p.parts_left.saturating_sub(1);
        if p.parts_left > 0 {
            st.pending.insert(key, p);
            return;
        }
        self.finish(&mut st, p);
        self.publish(&mut st);
    }

    /// Every part is done: answer, or hold.
    fn finish(&self, st: &mut State, p: Pending) {
        let kind = p.req.kind;
        if let Some(f) = &p.failure {
            if !f.grant {
                let rec = IoErrorAudit {
                    drive: &self.opts.drive,
                    command: command_name(kind),
                    lba: p.req.sector,
                    sectors: if matches!(kind, RequestKind::Flush | RequestKind::Barrier) && p.data.is_empty() { 0 } else { p.req.sectors },
                    errno: f.errno,
                    action: f.action.as_qmp(),
                };
                match &self.opts.audit {
                    Some(sink) => sink(&rec),
                    None => audit_io_error(&rec),
                }
            }
            if f.action == ErrorAction::Stop {
                if st.held.is_empty() {
                    st.held_since = Some(Instant::now());
                }
                st.held.push(p);
                return;
            }
        }
        st.inflight_bytes = st.inflight_bytes.saturating_sub(p.req.data_len());
        let ok = p.failure.as_ref().is_none_or(|f| f.action == ErrorAction::Ignore);
        let ns = p.started.elapsed().as_nanos() as u64;
        let s = &mut st.stats;
        match kind {
            RequestKind::Read => {
                s.rd_operations += 1;
                s.rd_total_time_ns += ns;
                if ok {
                    s.rd_bytes += p.data_len_read();
                } else {
                    s.failed_rd_operations += 1;
                }
            }
            RequestKind::Write => {
                s.wr_operations += 1;
                s.wr_total_time_ns += ns;
                if ok {
                    s.wr_bytes += p.data.len() as u64;
                } else {
                    s.failed_wr_operations += 1;
                }
            }
            RequestKind::Flush | RequestKind::Barrier => {
                s.flush_operations += 1;
                s.flush_total_time_ns += ns;
                if !p.data.is_empty() {
                    s.wr_operations += 1;
                    if ok {
                        s.wr_bytes += p.data.len() as u64;
                    }
                }
                if !ok {
                    s.failed_flush_operations += 1;
                }
            }
            RequestKind::Discard => s.unmap_operations += 1,
        }
        st.ring.push_response(p.req.id, p.req.operation, if ok { BLKIF_RSP_OKAY } else { BLKIF_RSP_ERROR });
    }
}

impl Pending {
    fn data_len_read(&self) -> u64 {
        self.req.data_len() as u64
    }
}
