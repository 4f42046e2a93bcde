//! The buffered ioreq ring: writes Xen has already completed to the guest,
//! drained in bounded batches.

use super::{AtomicBufferedIopage, Complaint, IoHandler, IoreqDecoder};
use log::{debug, warn};
use std::sync::atomic::{fence, Ordering};
use xen_sys::*;

impl IoreqDecoder {
    /// Drain the buffered ring: writes Xen already acknowledged to the guest
    /// (so they are applied even while requests are held). Returns the number
    /// of slots consumed.
    /// At most `budget` slots (plus the second half of a pair) are consumed.
    pub fn drain_buffered(&mut self, page: &AtomicBufferedIopage, handler: &mut dyn IoHandler, budget: usize) -> usize {
        let slot_num = IOREQ_BUFFER_SLOT_NUM as u32;
        let mut consumed = 0usize;
        while consumed < budget {
            let read = page.read_pointer.load(Ordering::Acquire);
            let write = page.write_pointer.load(Ordering::Acquire);
            // Slot contents written before write_pointer moved are visible now.
            fence(Ordering::Acquire);
            if read == write {
                break;
            }
            let pending = write.wrapping_sub(read);
            if pending > slot_num {
                if self.should_log(Complaint::BufferedCorrupt) {
                    warn!("buffered ioreq ring pointers read={read} write={write} are inconsistent; discarding");
                }
                page.read_pointer.fetch_add(pending, Ordering::AcqRel);
                break;
            }
            let first = BufIoreq::from_word(page.slots[(read % slot_num) as usize].load(Ordering::Relaxed));
            let mut used = 1u32;
            let mut value = u64::from(first.data);
            if first.size_code() == 3 {
                if pending < 2 {
                    // The high half is not published yet: wait for it.
                    break;
                }
                let second = BufIoreq::from_word(page.slots[(read.wrapping_add(1) % slot_num) as usize].load(Ordering::Relaxed));
                value |= u64::from(second.data) << 32;
                used = 2;
            }
            self.buffered_one(&first, value, handler);
            fence(Ordering::Release);
            // Atomic add, not a store: in ATOMIC mode Xen may rebase both
            // pointers with one 64-bit cmpxchg at any time.
            page.read_pointer.fetch_add(used, Ordering::AcqRel);
            consumed += used as usize;
        }
        consumed
    }

    fn buffered_one(&mut self, req: &BufIoreq, value: u64, handler: &mut dyn IoHandler) {
        if req.dir() == IOREQ_READ {
            if self.should_log(Complaint::BufferedRead) {
                warn!("buffered ioreq with read direction at {:#x} ignored", req.addr());
            }
            return;
        }
        let size = req.size_bytes();
        match req.type_() {
            IOREQ_TYPE_PIO if size <= 4 => handler.pio_write(req.addr() as u16, size, value as u32),
            IOREQ_TYPE_COPY => handler.mmio_write(u64::from(req.addr()), size, value),
            IOREQ_TYPE_TIMEOFFSET => debug!("guest RTC offset changed: {} s", value as i64),
            IOREQ_TYPE_INVALIDATE => {}
            other => {
                if self.should_log(Complaint::BufferedSize) {
                    warn!("buffered ioreq type {other} size {size} at {:#x} ignored", req.addr());
                }
            }
        }
    }
}

trait FromWord {
    fn from_word(word: u64) -> Self;
}
impl FromWord for BufIoreq {
    fn from_word(word: u64) -> Self {
        BufIoreq { word0: word as u32, data: (word >> 32) as u32 }
    }
}
