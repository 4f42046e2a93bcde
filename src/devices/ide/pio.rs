//! The PIO data phase: data port reads and writes, what runs at the end
//! of each DRQ block, and the PIO sector reads, writes and cache flushes
//! that go to the host.

use super::channel::{Channel, Ctx};
use super::identify::MAX_MULT_SECTORS;
use super::policy::Retry;
use super::regs::*;
use super::requests::Pending;
use crate::block::engine::{Completion, IoDone, IoFailure, IoOp};
use crate::block::{BlockError, BlockOp, ErrorAction};

/// What runs when the guest has moved the last byte of a DRQ block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) enum EndAction {
    Stop,
    SectorRead,
    SectorWrite,
    AtapiCommand,
    AtapiReply,
}

impl EndAction {
    /// Device-to-host data phases.
    fn is_data_in(self) -> bool {
        !matches!(self, EndAction::SectorWrite | EndAction::AtapiCommand)
    }
}

pub(super) struct Pio {
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    pub(super) end: usize,
    pub(super) action: EndAction,
}

impl Channel {
    /// Data port read of 2 or 4 bytes.
    pub fn read_data(&mut self, ctx: &Ctx, size: usize) -> u32 {
        let u = self.selected;
        let unit = &mut self.units[u];
        if unit.regs.status & DRQ_STAT == 0 || !unit.pio.action.is_data_in() {
            return 0;
        }
        let p = unit.pio.pos;
        if p + size > unit.pio.end {
            return 0;
        }
        let mut v = 0u32;
        for i in 0..size {
            v |= (unit.pio.buf[p + i] as u32) << (8 * i);
        }
        unit.pio.pos = p + size;
        if unit.pio.pos >= unit.pio.end {
            unit.regs.status &= !DRQ_STAT;
            self.end_transfer(ctx, u);
        }
        v
    }

    pub fn write_data(&mut self, ctx: &Ctx, size: usize, val: u32) {
        let u = self.selected;
        let unit = &mut self.units[u];
        if unit.regs.status & DRQ_STAT == 0 || unit.pio.action.is_data_in() {
            return;
        }
        let p = unit.pio.pos;
        if p + size > unit.pio.end {
            return;
        }
        for i in 0..size {
            unit.pio.buf[p + i] = (val >> (8 * i)) as u8;
        }
        unit.pio.pos = p + size;
        if unit.pio.pos >= unit.pio.end {
            unit.regs.status &= !DRQ_STAT;
            self.end_transfer(ctx, u);
        }
    }

    fn end_transfer(&mut self, ctx: &Ctx, u: usize) {
        let action = self.units[u].pio.action;
        self.units[u].pio.action = EndAction::Stop;
        match action {
            EndAction::Stop => self.units[u].transfer_stop(),
            EndAction::SectorRead => self.sector_read(ctx, u),
            EndAction::SectorWrite => self.sector_write(ctx, u),
            EndAction::AtapiCommand => self.atapi_command(ctx, u),
            EndAction::AtapiReply => self.atapi_reply_end(ctx, u),
        }
    }

    // ---- PIO sectors ------------------------------------------------------

    /// The next PIO block of a read command goes to the host; BSY until it
    /// is back.
    pub(super) fn sector_read(&mut self, _ctx: &Ctx, u: usize) {
        let unit = &mut self.units[u];
        unit.regs.status = READY_STAT | SEEK_STAT;
        unit.regs.error = 0;
        let sector = unit.get_sector();
        let remaining = unit.regs.nsector;
        if remaining == 0 {
            unit.transfer_stop();
            return;
        }
        let n = remaining.min(unit.req_nb_sectors).min(MAX_MULT_SECTORS as u32);
        if !unit.sect_range_ok(sector, n as u64) {
            self.rw_error(u);
            return;
        }
        unit.regs.status |= BUSY_STAT;
        let op = IoOp::Read { offset: sector as u64 * SECTOR_SIZE as u64, len: n as usize * SECTOR_SIZE };
        if !self.submit(u, op, Pending::PioRead { lba: sector, n, remaining }) {
            self.rw_error(u);
        }
    }

    pub(super) fn sector_read_done(&mut self, ctx: &Ctx, u: usize, lba: i64, n: u32, remaining: u32, done: Completion) {
        let bytes = n as usize * SECTOR_SIZE;
        match done.result {
            Ok(IoDone::Data(data)) if data.len() == bytes => self.units[u].pio.buf[..bytes].copy_from_slice(&data),
            Ok(_) => return self.rw_error(u),
            Err(failure) => {
                let retry = Retry::Pio { write: false, lba, nsector: remaining };
                match self.host_failure(ctx, u, &failure, BlockOp::Read, lba as u64, n as u64, retry) {
                    ErrorAction::Report => return self.rw_error(u),
                    ErrorAction::Stop => return,
                    // QEMU hands the guest what the buffer held before.
                    ErrorAction::Ignore => {}
                }
            }
        }
        let unit = &mut self.units[u];
        if let Some(d) = unit.drive.as_mut() {
            d.account(BlockOp::Read, bytes as u64, done.elapsed);
        }
        unit.regs.status = READY_STAT | SEEK_STAT;
        unit.set_sector(lba + n as i64);
        unit.regs.nsector = remaining - n;
        unit.transfer_start(bytes, EndAction::SectorRead);
        self.set_irq();
    }

    /// A PIO block the guest has written goes to the host; BSY until the
    /// host has it (an error is reported or held before anything says the
    /// block was taken).
    pub(super) fn sector_write(&mut self, _ctx: &Ctx, u: usize) {
        let unit = &mut self.units[u];
        unit.regs.status = READY_STAT | SEEK_STAT | BUSY_STAT;
        let sector = unit.get_sector();
        let remaining = unit.regs.nsector;
        let n = remaining.min(unit.req_nb_sectors).min(MAX_MULT_SECTORS as u32);
        if !unit.sect_range_ok(sector, n as u64) {
            self.rw_error(u);
            return;
        }
        let bytes = n as usize * SECTOR_SIZE;
        let op = IoOp::Write { offset: sector as u64 * SECTOR_SIZE as u64, data: unit.pio.buf[..bytes].to_vec() };
        if !self.submit(u, op, Pending::PioWrite { lba: sector, n, remaining }) {
            self.rw_error(u);
        }
    }

    pub(super) fn sector_write_done(&mut self, ctx: &Ctx, u: usize, lba: i64, n: u32, remaining: u32, done: Completion) {
        if let Err(failure) = &done.result {
            let retry = Retry::Pio { write: true, lba, nsector: remaining };
            match self.host_failure(ctx, u, failure, BlockOp::Write, lba as u64, n as u64, retry) {
                ErrorAction::Report => return self.rw_error(u),
                ErrorAction::Stop => return,
                ErrorAction::Ignore => {}
            }
        }
        let unit = &mut self.units[u];
        if let Some(d) = unit.drive.as_mut() {
            d.account(BlockOp::Write, n as u64 * SECTOR_SIZE as u64, done.elapsed);
        }
        unit.regs.status = READY_STAT | SEEK_STAT;
        unit.regs.nsector = remaining - n;
        unit.set_sector(lba + n as i64);
        if unit.regs.nsector == 0 {
            unit.transfer_stop();
        } else {
            let next = unit.regs.nsector.min(unit.req_nb_sectors) as usize;
            unit.transfer_start(next * SECTOR_SIZE, EndAction::SectorWrite);
        }
        self.set_irq();
    }

    pub(super) fn flush(&mut self, ctx: &Ctx, u: usize) {
        let unit = &mut self.units[u];
        if unit.drive.as_ref().is_some_and(|d| d.medium.is_none()) {
            // A drive without a medium: QEMU's flush of an empty block
            // backend fails with ENOMEDIUM and goes through the policy.
            let failure = IoFailure::Host { err: BlockError::NoMedium, done: 0, permanent: false };
            match self.host_failure(ctx, u, &failure, BlockOp::Flush, 0, 0, Retry::Flush) {
                ErrorAction::Report => return self.rw_error(u),
                ErrorAction::Stop => return,
                ErrorAction::Ignore => {}
            }
        } else if unit.drive.is_some() {
            unit.regs.status |= BUSY_STAT;
            if self.submit(u, IoOp::Flush, Pending::Flush) {
                return;
            }
        }
        self.units[u].regs.status = READY_STAT | SEEK_STAT;
        self.set_irq();
    }

    pub(super) fn flush_done(&mut self, ctx: &Ctx, u: usize, done: Completion) {
        if let Err(failure) = &done.result {
            match self.host_failure(ctx, u, failure, BlockOp::Flush, 0, 0, Retry::Flush) {
                ErrorAction::Report => return self.rw_error(u),
                ErrorAction::Stop => return,
                ErrorAction::Ignore => {}
            }
        } else if let Some(d) = self.units[u].drive.as_mut() {
            d.account(BlockOp::Flush, 0, done.elapsed);
        }
        self.units[u].regs.status = READY_STAT | SEEK_STAT;
        self.set_irq();
    }
}
