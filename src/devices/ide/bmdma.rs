//! The bus-master DMA register block of one channel (BAR4 + 0 or + 8) and
//! the PRD table walk.

use crate::block::engine::GuestSegment;
use crate::vm::{GuestMemory, MemError};

pub const BM_CMD_START: u8 = 0x01;
pub const BM_CMD_READ: u8 = 0x08;
pub const BM_STATUS_ACTIVE: u8 = 0x01;
pub const BM_STATUS_ERROR: u8 = 0x02;
pub const BM_STATUS_INTR: u8 = 0x04;
const BM_STATUS_GUEST_BITS: u8 = 0x60;

/// The table walk ends here even without an EOT bit, as on QEMU, so a
/// garbage table costs at most 512 entries.
pub const PRD_TABLE_LIMIT: u64 = 4096;
const PRD_EOT: u32 = 0x8000_0000;

#[derive(Debug, Default, Clone)]
pub struct BmDma {
    pub cmd: u8,
    pub status: u8,
    pub prd_table: u32,
}

/// What a START/STOP write asks the channel to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdEffect {
    None,
    Started,
    Stopped,
}

/// One PRD entry: a guest buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrdRegion {
    pub addr: u64,
    pub len: u64,
}

/// The PRD table as the engine sees it for one request.
#[derive(Debug, Default)]
pub struct PrdList {
    pub regions: Vec<PrdRegion>,
    /// Bytes the whole table describes (may exceed the request).
    pub capacity: u64,
}

impl BmDma {
    pub fn reset(&mut self) {
        *self = BmDma::default();
    }

    /// Register read for offsets 0..8 of this channel's block.
    pub fn read(&self, offset: u64, size: usize) -> u32 {
        let all_ones = if size >= 4 { u32::MAX } else { (1u32 << (size * 8)) - 1 };
        match offset {
            0..=3 if size != 1 => all_ones,
            0 => self.cmd as u32,
            2 => self.status as u32,
            1 | 3 => 0xff,
            4..=7 => {
                let shift = (offset - 4) * 8;
                (self.prd_table >> shift) & all_ones
            }
            _ => all_ones,
        }
    }

    /// Command register write; the caller starts or cancels transfers.
    pub fn write_cmd(&mut self, val: u8) -> CmdEffect {
        let mut effect = CmdEffect::None;
        if (val ^ self.cmd) & BM_CMD_START != 0 {
            if val & BM_CMD_START == 0 {
                self.status &= !BM_STATUS_ACTIVE;
                effect = CmdEffect::Stopped;
            } else if self.status & BM_STATUS_ACTIVE == 0 {
                self.status |= BM_STATUS_ACTIVE;
                effect = CmdEffect::Started;
            }
        }
        self.cmd = val & (BM_CMD_START | BM_CMD_READ);
        effect
    }

    pub fn write_status(&mut self, val: u8) {
        self.status = (val & BM_STATUS_GUEST_BITS)
            | (self.status & BM_STATUS_ACTIVE)
            | (self.status & !val & (BM_STATUS_ERROR | BM_STATUS_INTR));
    }

    pub fn write_prd(&mut self, offset: u64, size: usize, val: u32) {
        let shift = (offset - 4) * 8;
        let mask: u32 = if size >= 4 { u32::MAX } else { (1u32 << (size * 8)) - 1 };
        let mask = mask.checked_shl(shift as u32).unwrap_or(0);
        let val = val.checked_shl(shift as u32).unwrap_or(0);
        self.prd_table = ((self.prd_table & !mask) | (val & mask)) & !3;
    }

    pub fn active(&self) -> bool {
        self.status & BM_STATUS_ACTIVE != 0
    }

    /// Walk the table from its start. With bus mastering off, the table
    /// reads as zeros (64 KiB entries at address 0, no EOT) like a master
    /// whose cycles are not claimed.
    pub fn walk(&self, mem: &dyn GuestMemory, master_enabled: bool) -> Result<PrdList, MemError> {
        let mut list = PrdList::default();
        let base = self.prd_table as u64;
        let mut at = 0u64;
        while at < PRD_TABLE_LIMIT {
            let mut entry = [0u8; 8];
            if master_enabled {
                mem.read(base + at, &mut entry)?;
            }
            at += 8;
            let addr = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]) as u64;
            let count = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
            let len = match count & 0xfffe {
                0 => 0x10000,
                n => n as u64,
            };
            list.regions.push(PrdRegion { addr, len });
            list.capacity += len;
            if count & PRD_EOT != 0 {
                break;
            }
        }
        Ok(list)
    }
}

impl PrdList {
    /// The guest extents the first `bytes` of a transfer move through, in
    /// order (the caller has checked `bytes <= capacity`).
    pub fn segments(&self, bytes: usize) -> Vec<GuestSegment> {
        let mut left = bytes as u64;
        let mut out = Vec::new();
        for r in &self.regions {
            if left == 0 {
                break;
            }
            let n = r.len.min(left);
            out.push(GuestSegment { gpa: r.addr, len: n as usize });
            left -= n;
        }
        out
    }

    /// Copy `data` into guest memory along the regions (device to memory).
    pub fn scatter(&self, mem: &dyn GuestMemory, mut data: &[u8]) -> Result<(), MemError> {
        for r in &self.regions {
            if data.is_empty() {
                break;
            }
            let n = (r.len as usize).min(data.len());
            mem.write(r.addr, &data[..n])?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Fill `buf` from guest memory along the regions (memory to device).
    pub fn gather(&self, mem: &dyn GuestMemory, mut buf: &mut [u8]) -> Result<(), MemError> {
        for r in &self.regions {
            if buf.is_empty() {
                break;
            }
            let n = (r.len as usize).min(buf.len());
            let (head, rest) = buf.split_at_mut(n);
            mem.read(r.addr, head)?;
            buf = rest;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Ram(Mutex<Vec<u8>>);
    impl GuestMemory for Ram {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
            let m = self.0.lock().unwrap();
            let end = gpa.checked_add(buf.len() as u64).filter(|e| *e <= m.len() as u64);
            match end {
                Some(end) => {
                    buf.copy_from_slice(&m[gpa as usize..end as usize]);
                    Ok(())
                }
                None => Err(MemError::OutOfRange { gpa, len: buf.len() }),
            }
        }
        fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
            let mut m = self.0.lock().unwrap();
            let end = gpa.checked_add(data.len() as u64).filter(|e| *e <= m.len() as u64);
            match end {
                Some(end) => {
                    m[gpa as usize..end as usize].copy_from_slice(data);
                    Ok(())
                }
                None => Err(MemError::OutOfRange { gpa, len: data.len() }),
            }
        }
    }

    #[test]
    fn register_masks_match_piix() {
        let mut bm = BmDma::default();
        assert_eq!(bm.write_cmd(0xff), CmdEffect::Started);
        assert_eq!(bm.read(0, 1), 0x09);
        assert_eq!(bm.read(0, 2), 0xffff);
        assert_eq!(bm.read(1, 1), 0xff);
        bm.write_status(0xff);
        assert_eq!(bm.read(2, 1), 0x61, "ACTIVE is read-only, INTR/ERROR write-1-clear");
        assert_eq!(bm.write_cmd(0x00), CmdEffect::Stopped);
        assert_eq!(bm.read(2, 1), 0x60);
        bm.write_prd(4, 4, 0x1234_5677);
        assert_eq!(bm.read(4, 4), 0x1234_5674);
        bm.write_prd(6, 1, 0xab);
        assert_eq!(bm.read(4, 4), 0x12ab_5674);
        assert_eq!(bm.read(7, 1), 0x12);
    }

    #[test]
    fn walk_stops_at_eot_or_one_page_and_counts_zero_as_64k() {
        let ram = Ram(Mutex::new(vec![0; 0x3000]));
        let mut table = Vec::new();
        table.extend_from_slice(&0x100u32.to_le_bytes());
        table.extend_from_slice(&0x0201u32.to_le_bytes());
        table.extend_from_slice(&0x400u32.to_le_bytes());
        table.extend_from_slice(&0x8000_0000u32.to_le_bytes());
        ram.write(0x1000, &table).unwrap();
        let bm = BmDma { prd_table: 0x1000, ..Default::default() };
        let list = bm.walk(&ram, true).unwrap();
        assert_eq!(list.regions, vec![PrdRegion { addr: 0x100, len: 0x200 }, PrdRegion { addr: 0x400, len: 0x10000 }]);
        assert_eq!(list.capacity, 0x10200);
        let garbage = BmDma { prd_table: 0x2000, ..Default::default() };
        let list = garbage.walk(&ram, true).unwrap();
        assert_eq!(list.regions.len(), 512);
        assert_eq!(list.capacity, 512 * 0x10000);
        let outside = BmDma { prd_table: 0x2ffc, ..Default::default() };
        assert!(outside.walk(&ram, true).is_err());
    }
}
