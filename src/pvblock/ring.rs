//! The backend side of a blkif shared ring (`xen/io/ring.h` semantics).
//!
//! The frontend owns `req_prod` and `rsp_event`; we own `rsp_prod` and
//! `req_event`. Each request is copied out of its slot once and parsed
//! from our copy, so a frontend rewriting a slot after we read it changes
//! nothing. A `req_prod` that claims more unanswered requests than the
//! ring has slots is a broken or hostile frontend: the ring is marked
//! broken and no further request is taken (Linux's blkback does the same),
//! so nothing loops or reads a slot twice.

use super::SharedRing;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use xen_sys::blkif::*;

/// The largest request slot of either ABI.
pub const MAX_REQUEST_SIZE: usize = BLKIF_X86_64.request_size;

/// One request as copied out of its slot.
pub type RawRequest = [u8; MAX_REQUEST_SIZE];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("shared ring of {bytes} bytes has no room for a single {entry}-byte entry")]
    TooSmall { bytes: usize, entry: usize },
    #[error("frontend moved req_prod to {req_prod} with responses produced up to {rsp_prod}: more than the {entries} slots of the ring")]
    Overflow { req_prod: u32, rsp_prod: u32, entries: u32 },
}

pub struct BackRing {
    mem: Arc<dyn SharedRing>,
    layout: BlkifLayout,
    entries: u32,
    req_cons: u32,
    rsp_prod_pvt: u32,
    /// The rsp_prod we last published (our own copy: the frontend can
    /// write the shared one).
    published: u32,
    broken: Option<RingError>,
}

impl BackRing {
    /// A ring whose frontend has just initialised it (indexes at zero, as
    /// `SHARED_RING_INIT` leaves them); our view starts at the frontend's
    /// current `rsp_prod`, as `BACK_RING_ATTACH` does.
    pub fn attach(mem: Arc<dyn SharedRing>, layout: BlkifLayout) -> Result<Self, RingError> {
        let entries = ring_entries(mem.len(), layout.entry_size());
        if entries == 0 {
            return Err(RingError::TooSmall { bytes: mem.len(), entry: layout.entry_size() });
        }
        let start = mem.load_u32(SRING_RSP_PROD);
        Ok(BackRing { mem, layout, entries, req_cons: start, rsp_prod_pvt: start, published: start, broken: None })
    }

    pub fn entries(&self) -> u32 {
        self.entries
    }

    pub fn layout(&self) -> &BlkifLayout {
        &self.layout
    }

    pub fn broken(&self) -> Option<&RingError> {
        self.broken.as_ref()
    }

    /// Requests taken and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    fn slot_offset(&self, index: u32) -> usize {
        SRING_ENTRIES + (index & (self.entries - 1)) as usize * self.layout.entry_size()
    }

    /// Requests the frontend has produced that we may take now: never more
    /// than the slots free of unanswered requests. Checks `req_prod`.
    fn available(&mut self) -> u32 {
        if self.broken.is_some() {
            return 0;
        }
        let req_prod = self.mem.load_u32(SRING_REQ_PROD);
        // Read the slots only after req_prod (xen_rmb in RING_COPY_REQUEST).
        fence(Ordering::Acquire);
        if req_prod.wrapping_sub(self.rsp_prod_pvt) > self.entries {
            self.broken = Some(RingError::Overflow { req_prod, rsp_prod: self.rsp_prod_pvt, entries: self.entries });
            return 0;
        }
        let produced = req_prod.wrapping_sub(self.req_cons);
        let free = self.entries - self.outstanding();
        produced.min(free)
    }

    /// Whether the frontend has produced requests we have not taken (a
    /// plain look: nothing is checked or recorded).
    pub fn has_unconsumed(&self) -> bool {
        self.broken.is_none() && self.mem.load_u32(SRING_REQ_PROD) != self.req_cons
    }

    /// Copy out at most `max` requests. Bounded work: a frontend that keeps
    /// producing cannot keep us here longer than `max` slots.
    pub fn take_requests(&mut self, max: usize, out: &mut Vec<RawRequest>) -> Result<usize, RingError> {
        let n = (self.available() as usize).min(max);
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        for _ in 0..n {
            let mut raw = [0u8; MAX_REQUEST_SIZE];
            let at = self.slot_offset(self.req_cons);
            self.mem.read(at, &mut raw[..self.layout.request_size]);
            out.push(raw);
            self.req_cons = self.req_cons.wrapping_add(1);
        }
        Ok(n)
    }

    /// Write one response into the next response slot (not yet visible to
    /// the frontend: see [`publish`](Self::publish)). Returns false, writing
    /// nothing, if no request is outstanding.
    pub fn push_response(&mut self, id: u64, operation: u8, status: i16) -> bool {
        if self.outstanding() == 0 {
            return false;
        }
        let l = self.layout;
        let mut rsp = [0u8; 16];
        rsp[l.rsp_id..l.rsp_id + 8].copy_from_slice(&id.to_le_bytes());
        rsp[l.rsp_operation] = operation;
        rsp[l.rsp_status..l.rsp_status + 2].copy_from_slice(&status.to_le_bytes());
        let at = self.slot_offset(self.rsp_prod_pvt);
        self.mem.write(at, &rsp[..l.response_size]);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        true
    }

    /// Make pushed responses visible (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`);
    /// true if the frontend asked to be notified for them.
    pub fn publish(&mut self) -> bool {
        let old = self.published;
        let new = self.rsp_prod_pvt;
        if old == new {
            return false;
        }
        // Responses before the index (xen_wmb), the index before reading
        // rsp_event (xen_mb).
        fence(Ordering::Release);
        self.mem.store_u32(SRING_RSP_PROD, new);
        self.published = new;
        fence(Ordering::SeqCst);
        let event = self.mem.load_u32(SRING_RSP_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: true if requests are waiting; if
    /// none are, ask the frontend to notify us for the next one first and
    /// look again, so a request produced in between is not missed.
    pub fn final_check_for_requests(&mut self) -> bool {
        if self.available() > 0 {
            return true;
        }
        if self.broken.is_some() {
            return false;
        }
        self.mem.store_u32(SRING_REQ_EVENT, self.req_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        self.available() > 0
    }
}
