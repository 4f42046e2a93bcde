//! The DMA interface: the guest writes the guest-physical address of a
//! 16-byte descriptor (big-endian control, length, address) to 0x514/0x518;
//! the transfer runs at once and its result is written back into the
//! descriptor's control word (0 done, bit 0 error), as QEMU 7.2's
//! `fw_cfg_dma_transfer` does.

use super::FwCfg;

pub const CTL_ERROR: u32 = 0x01;
pub const CTL_READ: u32 = 0x02;
pub const CTL_SKIP: u32 = 0x04;
pub const CTL_SELECT: u32 = 0x08;
pub const CTL_WRITE: u32 = 0x10;
pub const DESCRIPTOR_LEN: usize = 16;
/// Zero fill past an item's end goes out in pieces of this size, so a
/// guest-chosen 4 GiB length costs no allocation, and stops at the first
/// piece that is not guest RAM.
const ZERO_CHUNK: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
    Skip,
}

impl FwCfg {
    pub(super) fn dma_transfer(&mut self, descriptor: u64) {
        let mut raw = [0u8; DESCRIPTOR_LEN];
        if self.mem.read(descriptor, &mut raw).is_err() {
            self.finish(descriptor, CTL_ERROR);
            return;
        }
        let word = |i: usize| u32::from_be_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        let control = word(0);
        let mut length = word(4);
        let mut address = u64::from_be_bytes([raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]]);
        if control & CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let direction = if control & CTL_READ != 0 {
            Direction::Read
        } else if control & CTL_WRITE != 0 {
            Direction::Write
        } else if control & CTL_SKIP != 0 {
            Direction::Skip
        } else {
            length = 0;
            Direction::Skip
        };
        let mut status = 0;
        while length > 0 && status & CTL_ERROR == 0 {
            let offset = self.offset as usize;
            let available = self.current().map_or(0, |d| d.len().saturating_sub(offset));
            let step = if available == 0 {
                // Past the end (or nothing selected): reads give zeros,
                // writes fail, skips just move on.
                let step = length as usize;
                match direction {
                    Direction::Read => {
                        if self.zero_fill(address, step).is_err() {
                            status |= CTL_ERROR;
                        }
                    }
                    Direction::Write => status |= CTL_ERROR,
                    Direction::Skip => {}
                }
                step
            } else {
                let step = available.min(length as usize);
                match direction {
                    Direction::Read => {
                        let data = self.current().cloned().unwrap_or_else(|| std::sync::Arc::from(&[][..]));
                        if self.mem.write(address, &data[offset..offset + step]).is_err() {
                            status |= CTL_ERROR;
                        }
                    }
                    // Every item is read-only.
                    Direction::Write => status |= CTL_ERROR,
                    Direction::Skip => {}
                }
                self.offset = self.offset.saturating_add(step as u32);
                step
            };
            address = address.wrapping_add(step as u64);
            length -= step as u32;
        }
        self.finish(descriptor, status);
    }

    fn zero_fill(&self, mut address: u64, mut len: usize) -> Result<(), crate::vm::MemError> {
        let zeros = [0u8; ZERO_CHUNK];
        while len > 0 {
            let n = len.min(ZERO_CHUNK);
            self.mem.write(address, &zeros[..n])?;
            address = address.wrapping_add(n as u64);
            len -= n;
        }
        Ok(())
    }

    /// The control word goes back big-endian; if even that is not RAM the
    /// guest gave a bad descriptor address and sees nothing.
    fn finish(&self, descriptor: u64, status: u32) {
        let _ = self.mem.write(descriptor, &status.to_be_bytes());
    }
}
