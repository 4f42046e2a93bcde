//! Decoding and completing ioreqs: the synchronous per-vCPU slots and the
//! buffered ring. Safe code over atomic views of the shared pages, so the
//! same logic runs against Xen's pages and against plain memory in tests.
//!
//! Every field comes from the guest's side of the fence (the guest chose
//! the port, size, count and pointer; a hostile or buggy Xen could too), so
//! each request is copied out of the slot exactly once (XSA-197: re-reading
//! a field after validating it lets the other side change it in between)
//! and every value is checked before it is used.
//!
//! Here: the shared-page views, the decoder and its synchronous slot
//! handling; `copies` has the port/MMIO requests with their `data_is_ptr`
//! element copies, `buffered` the buffered ring.

use crate::machine::GuestMemory;
use log::{debug, warn};
use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use xen_sys::*;

/// The machine's side of the front: what a decoded request is dispatched to.
pub trait IoHandler {
    fn pio_read(&mut self, port: u16, size: u8) -> u32;
    fn pio_write(&mut self, port: u16, size: u8, value: u32);
    fn mmio_read(&mut self, addr: u64, size: u8) -> u64;
    fn mmio_write(&mut self, addr: u64, size: u8, value: u64);
    fn pci_config_read(&mut self, bus: u8, devfn: u8, reg: u16, size: u8) -> u32;
    fn pci_config_write(&mut self, bus: u8, devfn: u8, reg: u16, size: u8, value: u32);
    /// Called before a synchronous request reaches the devices. true while
    /// the VM is held (io-error, QMP stop): the request is left pending
    /// (the vCPU stays blocked) and re-examined on wake-up. When it returns
    /// false, [`IoHandler::request_done`] follows once the whole request
    /// (every repetition of a `rep` string access) was served, so a handler
    /// can keep device completions out of the middle of one request, as
    /// QEMU's main loop does.
    fn hold_request(&mut self) -> bool;
    fn request_done(&mut self) {}
}

/// Guest memory that caches mappings: an INVALIDATE request (the guest's
/// p2m changed, e.g. ballooning) must drop them.
pub trait GuestMappings: GuestMemory {
    fn invalidate(&self);
    /// Send the pages written since the last call to dirty logging (the
    /// server calls it once per pass, so a `rep insw` is one report).
    fn flush_dirty(&self) {}
}

/// Xen's limit on repetitions per request (`hvmemul_do_io` caps reps at 4096).
pub const MAX_REPS: u32 = 4096;
/// Buffered slots handled per wake-up, so a flooding guest cannot starve
/// the synchronous slots (the ring holds 511; leftovers wait for the next
/// notification or the idle re-scan).
pub const BUFFERED_BUDGET: usize = 1024;

/// A synchronous slot as shared with Xen: same layout as `ioreq_t`, every
/// field accessed atomically because Xen writes it concurrently.
#[repr(C)]
#[derive(Default)]
pub struct AtomicIoreq {
    pub addr: AtomicU64,
    pub data: AtomicU64,
    pub count: AtomicU32,
    pub size: AtomicU32,
    pub vp_eport: AtomicU32,
    pub pad0: AtomicU16,
    pub flags: AtomicU8,
    pub type_: AtomicU8,
}

/// The buffered page (`buffered_iopage_t`); each slot read as one 64-bit
/// word: low half the packed type/dir/size/addr word, high half the data.
#[repr(C)]
pub struct AtomicBufferedIopage {
    pub read_pointer: AtomicU32,
    pub write_pointer: AtomicU32,
    pub slots: [AtomicU64; IOREQ_BUFFER_SLOT_NUM],
}

const _: () = assert!(std::mem::size_of::<AtomicIoreq>() == std::mem::size_of::<Ioreq>());
const _: () = assert!(std::mem::offset_of!(AtomicIoreq, flags) == IOREQ_FLAGS_OFFSET);
const _: () = assert!(std::mem::offset_of!(AtomicIoreq, type_) == std::mem::offset_of!(Ioreq, type_));
const _: () = assert!(std::mem::offset_of!(AtomicIoreq, vp_eport) == std::mem::offset_of!(Ioreq, vp_eport));
const _: () = assert!(std::mem::size_of::<AtomicBufferedIopage>() == std::mem::size_of::<BufferedIopage>());
const _: () = assert!(std::mem::offset_of!(AtomicBufferedIopage, slots) == std::mem::offset_of!(BufferedIopage, buf_ioreq));

impl AtomicIoreq {
    /// The slot's state (STATE_IOREQ_NONE once the vCPU took the response back).
    pub fn state(&self) -> u8 {
        state_of_flags(self.flags.load(Ordering::Acquire))
    }

    /// The Xen-owned event channel of this vCPU (filled once the server is enabled).
    pub fn vp_eport(&self) -> u32 {
        self.vp_eport.load(Ordering::Acquire)
    }

    /// Copy the request out; called once per request, after READY was seen.
    /// `flags` is the byte already read to see READY: reading it again
    /// could give different dir/data_is_ptr bits than the ones checked.
    fn snapshot(&self, flags: u8) -> Ioreq {
        Ioreq {
            addr: self.addr.load(Ordering::Relaxed),
            data: self.data.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
            size: self.size.load(Ordering::Relaxed),
            vp_eport: 0,
            _pad0: 0,
            flags,
            type_: self.type_.load(Ordering::Relaxed),
        }
    }
}

impl AtomicBufferedIopage {
    pub fn new_zeroed() -> Box<Self> {
        Box::new(AtomicBufferedIopage {
            read_pointer: AtomicU32::new(0),
            write_pointer: AtomicU32::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }
}

/// What servicing one slot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOutcome {
    /// No request waiting.
    Idle,
    /// Answered: the caller notifies the vCPU's event channel.
    Completed,
    /// Left pending because the VM is held; re-examined on wake-up.
    Held,
}

#[derive(Clone, Copy)]
enum Complaint {
    PioSize,
    MmioSize,
    PciSize,
    PciSegment,
    PciPointer,
    BadPointer,
    PointerOverflow,
    RepsCapped,
    BufferedCorrupt,
    BufferedRead,
    BufferedSize,
}
const COMPLAINT_KINDS: usize = 11;

impl Complaint {
    /// The rate limiter's kind: one budget per kind of misbehaviour.
    fn name(self) -> &'static str {
        match self {
            Complaint::PioSize => "ioreq-pio-size",
            Complaint::MmioSize => "ioreq-mmio-size",
            Complaint::PciSize => "ioreq-pci-size",
            Complaint::PciSegment => "ioreq-pci-segment",
            Complaint::PciPointer => "ioreq-pci-pointer",
            Complaint::BadPointer => "ioreq-bad-pointer",
            Complaint::PointerOverflow => "ioreq-pointer-overflow",
            Complaint::RepsCapped => "ioreq-reps-capped",
            Complaint::BufferedCorrupt => "ioreq-buffered-corrupt",
            Complaint::BufferedRead => "ioreq-buffered-read",
            Complaint::BufferedSize => "ioreq-buffered-size",
        }
    }
}

/// The decoder state that outlives one request: counts and log limits.
pub struct IoreqDecoder {
    complaints: [u64; COMPLAINT_KINDS],
    // Each unknown type is logged once, so at most 256 lines ever.
    unknown_types_seen: [bool; 256],
    // A burst per kind per interval: a count-based limit ("every 4096th")
    // still let a guest looping at millions of requests a second write
    // hundreds of lines a second.
    limiter: crate::logging::RateLimiter,
}

impl Default for IoreqDecoder {
    fn default() -> Self {
        IoreqDecoder {
            complaints: [0; COMPLAINT_KINDS],
            unknown_types_seen: [false; 256],
            limiter: crate::logging::RateLimiter::for_guest_lines(),
        }
    }
}

impl IoreqDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count the complaint; true when its line may be written now (after
    /// any summary of lines suppressed in the previous interval).
    fn should_log(&mut self, kind: Complaint) -> bool {
        self.complaints[kind as usize] += 1;
        let a = self.limiter.admit(log::Level::Warn, kind.name(), "", "");
        for s in &a.summaries {
            log::log!(s.level, "{s}");
        }
        a.log
    }

    /// How often a kind of bad request was seen.
    #[cfg(test)]
    fn complaint_count(&self, kind: Complaint) -> u64 {
        self.complaints[kind as usize]
    }

    /// Service one synchronous slot: if it holds a READY request, copy it,
    /// mark it INPROCESS, dispatch, write the result and mark IORESP_READY.
    pub fn service_slot(
        &mut self,
        slot: &AtomicIoreq,
        handler: &mut dyn IoHandler,
        mem: &dyn GuestMappings,
    ) -> SlotOutcome {
        let flags = slot.flags.load(Ordering::Acquire);
        if state_of_flags(flags) != STATE_IOREQ_READY {
            return SlotOutcome::Idle;
        }
        // Pairs with Xen's barrier before it set READY: the fields written
        // before READY are visible to the snapshot below.
        fence(Ordering::Acquire);
        let req = slot.snapshot(flags);
        let always_completed = matches!(req.type_, IOREQ_TYPE_INVALIDATE | IOREQ_TYPE_TIMEOFFSET);
        if !always_completed && handler.hold_request() {
            return SlotOutcome::Held;
        }
        slot.flags.store(with_state(req.flags, STATE_IOREQ_INPROCESS), Ordering::Relaxed);
        if let Some(data) = self.dispatch(&req, handler, mem) {
            slot.data.store(data, Ordering::Relaxed);
        }
        if !always_completed {
            handler.request_done();
        }
        // Everything written above must be visible before Xen sees the response.
        fence(Ordering::Release);
        slot.flags.store(with_state(req.flags, STATE_IORESP_READY), Ordering::Release);
        SlotOutcome::Completed
    }

    /// Run one request; returns the new `data` for reads that carry their
    /// value inline.
    fn dispatch(&mut self, req: &Ioreq, handler: &mut dyn IoHandler, mem: &dyn GuestMappings) -> Option<u64> {
        match req.type_ {
            IOREQ_TYPE_PIO => self.pio(req, handler, mem),
            IOREQ_TYPE_COPY => self.mmio(req, handler, mem),
            IOREQ_TYPE_PCI_CONFIG => self.pci_config(req, handler),
            IOREQ_TYPE_INVALIDATE => {
                mem.invalidate();
                None
            }
            IOREQ_TYPE_TIMEOFFSET => {
                debug!("guest RTC offset changed: {} s", req.data as i64);
                None
            }
            other => {
                if !self.unknown_types_seen[usize::from(other)] {
                    self.unknown_types_seen[usize::from(other)] = true;
                    warn!("ioreq type {other} is not handled; completing it (reads return all-ones)");
                }
                inline_read(req).then_some(u64::MAX)
            }
        }
    }

    fn reps(&mut self, req: &Ioreq) -> u32 {
        if req.count > MAX_REPS {
            if self.should_log(Complaint::RepsCapped) {
                warn!("ioreq with {} repetitions capped at {MAX_REPS} (addr {:#x})", req.count, req.addr);
            }
            MAX_REPS
        } else {
            req.count
        }
    }

    fn pci_config(&mut self, req: &Ioreq, handler: &mut dyn IoHandler) -> Option<u64> {
        let segment = (req.addr >> 48) as u16;
        let bus = (req.addr >> 40) as u8;
        let devfn = ((req.addr >> 32) & 0xff) as u8;
        let reg = req.addr as u32;
        let size = match req.size {
            1 | 2 | 4 => req.size as u8,
            bad => {
                if self.should_log(Complaint::PciSize) {
                    warn!("PCI config access of size {bad} to {bus:02x}:{devfn:02x} reg {reg:#x} refused");
                }
                return inline_read(req).then_some(u64::MAX);
            }
        };
        if req.data_is_ptr() {
            if self.should_log(Complaint::PciPointer) {
                warn!("PCI config access with a data pointer to {bus:02x}:{devfn:02x} reg {reg:#x} ignored");
            }
            return None;
        }
        // Extended config space ends at 4 KiB; an access must not cross it.
        // `reg` is the whole low 32 bits of addr, so the sum is done in u64.
        if segment != 0 || u64::from(reg) + u64::from(size) > 0x1000 {
            if self.should_log(Complaint::PciSegment) {
                warn!("PCI config access to {segment:04x}:{bus:02x}:{devfn:02x} reg {reg:#x} is outside config space");
            }
            return inline_read(req).then_some(u64::MAX);
        }
        let reg = reg as u16;
        if req.dir() == IOREQ_READ {
            Some(u64::from(handler.pci_config_read(bus, devfn, reg, size)))
        } else {
            handler.pci_config_write(bus, devfn, reg, size, req.data as u32 & size_mask32(size));
            None
        }
    }
}

fn inline_read(req: &Ioreq) -> bool {
    req.dir() == IOREQ_READ && !req.data_is_ptr()
}

fn size_mask32(size: u8) -> u32 {
    if size >= 4 { u32::MAX } else { (1u32 << (8 * u32::from(size))) - 1 }
}

fn size_mask64(size: u8) -> u64 {
    if size >= 8 { u64::MAX } else { (1u64 << (8 * u32::from(size))) - 1 }
}

mod buffered;
mod copies;

#[cfg(test)]
mod tests;
