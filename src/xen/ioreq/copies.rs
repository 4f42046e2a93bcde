//! The port and MMIO requests, with their `data_is_ptr` repetitions:
//! each element copied to or from guest memory through the mapping cache,
//! every pointer step checked, stopped at the first one that fails.

use super::{inline_read, size_mask32, size_mask64, Complaint, GuestMappings, IoHandler, IoreqDecoder};
use crate::machine::MemError;
use log::warn;
use xen_sys::*;

impl IoreqDecoder {
    pub(super) fn pio(&mut self, req: &Ioreq, handler: &mut dyn IoHandler, mem: &dyn GuestMappings) -> Option<u64> {
        let size = match req.size {
            1 | 2 | 4 => req.size as u8,
            bad => {
                if self.should_log(Complaint::PioSize) {
                    warn!("port I/O of size {bad} at port {:#x} refused (sizes 1/2/4 only)", req.addr);
                }
                return inline_read(req).then_some(u64::MAX);
            }
        };
        // Xen only sends 16-bit ports; the upper bits are ignored like the
        // CPU's address decoder would.
        let port = req.addr as u16;
        if !req.data_is_ptr() {
            return if req.dir() == IOREQ_READ {
                Some(u64::from(handler.pio_read(port, size)))
            } else {
                handler.pio_write(port, size, req.data as u32 & size_mask32(size));
                None
            };
        }
        for i in 0..self.reps(req) {
            let Some(gpa) = self.element_addr(req.data, i, size, req.df()) else { break };
            if req.dir() == IOREQ_READ {
                let value = handler.pio_read(port, size);
                if let Err(e) = mem.write(gpa, &value.to_le_bytes()[..usize::from(size)]) {
                    self.bad_pointer("rep ins", port.into(), e);
                    break;
                }
            } else {
                let mut buf = [0u8; 4];
                if let Err(e) = mem.read(gpa, &mut buf[..usize::from(size)]) {
                    self.bad_pointer("rep outs", port.into(), e);
                    break;
                }
                handler.pio_write(port, size, u32::from_le_bytes(buf));
            }
        }
        None
    }

    pub(super) fn mmio(&mut self, req: &Ioreq, handler: &mut dyn IoHandler, mem: &dyn GuestMappings) -> Option<u64> {
        let size = match req.size {
            1..=8 => req.size as u8,
            bad => {
                if self.should_log(Complaint::MmioSize) {
                    warn!("MMIO access of size {bad} at {:#x} refused (1..8 bytes only)", req.addr);
                }
                return inline_read(req).then_some(u64::MAX);
            }
        };
        let reps = self.reps(req);
        let mut inline = req.data & size_mask64(size);
        for i in 0..reps {
            // As QEMU's cpu_ioreq_move: rep movs/stos step the MMIO address too.
            let Some(mmio) = self.element_addr(req.addr, i, size, req.df()) else { break };
            if !req.data_is_ptr() {
                if req.dir() == IOREQ_READ {
                    inline = handler.mmio_read(mmio, size);
                } else {
                    handler.mmio_write(mmio, size, inline);
                }
                continue;
            }
            let Some(gpa) = self.element_addr(req.data, i, size, req.df()) else { break };
            let n = usize::from(size);
            if req.dir() == IOREQ_READ {
                let value = handler.mmio_read(mmio, size);
                if let Err(e) = mem.write(gpa, &value.to_le_bytes()[..n]) {
                    self.bad_pointer("MMIO read to memory", mmio, e);
                    break;
                }
            } else {
                let mut buf = [0u8; 8];
                if let Err(e) = mem.read(gpa, &mut buf[..n]) {
                    self.bad_pointer("MMIO write from memory", mmio, e);
                    break;
                }
                handler.mmio_write(mmio, size, u64::from_le_bytes(buf));
            }
        }
        (inline_read(req)).then_some(inline)
    }

    /// `base ± i*size`, or None (logged) when it leaves the 64-bit space.
    pub(super) fn element_addr(&mut self, base: u64, i: u32, size: u8, df: bool) -> Option<u64> {
        let offset = u64::from(i) * u64::from(size);
        let addr = if df { base.checked_sub(offset) } else { base.checked_add(offset) };
        if addr.is_none() && self.should_log(Complaint::PointerOverflow) {
            warn!("ioreq buffer {base:#x} element {i} wraps the address space; remaining elements skipped");
        }
        addr
    }

    pub(super) fn bad_pointer(&mut self, what: &str, target: u64, err: MemError) {
        if self.should_log(Complaint::BadPointer) {
            warn!("{what} at {target:#x}: {err}; remaining elements skipped");
        }
    }
}
