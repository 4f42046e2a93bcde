//! Bus-master DMA jobs: ATA READ/WRITE DMA and DATA SET MANAGEMENT
//! (TRIM), and the data phase of an ATAPI command in DMA mode. A job waits
//! in `Channel::pending` until both the command and the engine's start bit
//! are there, in either order.

use super::atapi_transport::{atapi_extent, medium_extent, medium_view, slice_at, AtapiSource};
use super::bmdma::BM_STATUS_ACTIVE;
use super::channel::{Channel, Ctx};
use super::policy::Retry;
use super::regs::*;
use super::requests::Pending;
use crate::block::engine::{Completion, IoDone, IoFailure, IoOp};
use crate::block::{BlockOp, ErrorAction};

/// The sector-moving ATA DMA commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) enum AtaDma {
    Read,
    Write,
    Trim,
}

/// A DMA command waiting for the engine, or running on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) enum DmaJob {
    Ata { unit: usize, kind: AtaDma },
    Atapi { unit: usize },
}

impl Channel {
    fn set_inactive(&mut self, stay_active: bool) {
        self.pending = None;
        if stay_active {
            self.bm.status |= BM_STATUS_ACTIVE;
        } else {
            self.bm.status &= !BM_STATUS_ACTIVE;
        }
    }

    fn dma_error(&mut self, u: usize) {
        self.units[u].abort();
        self.set_inactive(false);
        self.set_irq();
    }

    pub(super) fn cancel_dma(&mut self, u: usize) {
        let ours = match self.pending {
            Some(DmaJob::Ata { unit, .. }) | Some(DmaJob::Atapi { unit }) => unit == u,
            None => false,
        };
        if ours {
            self.pending = None;
        }
        if self.inflight.as_ref().is_some_and(|f| f.unit == u) {
            self.drain_and_drop();
        }
        if self.held.is_some_and(|h| h.unit == u) {
            self.held = None;
        }
    }

    pub(super) fn start_dma_command(&mut self, ctx: &Ctx, u: usize, kind: AtaDma) {
        self.units[u].regs.status = READY_STAT | SEEK_STAT | DRQ_STAT;
        self.start_dma(ctx, DmaJob::Ata { unit: u, kind });
    }

    pub(super) fn start_dma(&mut self, ctx: &Ctx, job: DmaJob) {
        self.pending = Some(job);
        if self.bm.active() {
            self.run_pending(ctx);
        }
    }

    pub(super) fn run_pending(&mut self, ctx: &Ctx) {
        match self.pending.take() {
            Some(DmaJob::Ata { unit, kind }) => self.run_ata_dma(ctx, unit, kind),
            Some(DmaJob::Atapi { unit }) => self.run_atapi_dma(ctx, unit),
            None => {}
        }
    }

    fn run_ata_dma(&mut self, ctx: &Ctx, u: usize, kind: AtaDma) {
        let sector = self.units[u].get_sector();
        let count = match kind {
            // DATA SET MANAGEMENT takes the count register as written (no
            // LBA48 transform, as QEMU); keeping it to 8 bits bounds one
            // command to 255 blocks = 16320 ranges.
            AtaDma::Trim => self.units[u].regs.nsector & 0xff,
            _ => self.units[u].regs.nsector.min(MAX_REQUEST_SECTORS),
        };
        if count == 0 {
            self.units[u].regs.status = READY_STAT | SEEK_STAT;
            self.set_irq();
            self.set_inactive(false);
            return;
        }
        let bytes = count as usize * SECTOR_SIZE;
        let prd = match self.bm.walk(ctx.mem, ctx.bus_master) {
            Ok(prd) => prd,
            Err(_) => return self.dma_error(u),
        };
        if prd.capacity < bytes as u64 {
            // QEMU: PRDs too short is an error the guest only sees as a
            // stopped engine without an interrupt.
            self.units[u].regs.status = READY_STAT | SEEK_STAT;
            self.set_inactive(false);
            return;
        }
        let stay_active = prd.capacity > bytes as u64;
        if kind != AtaDma::Trim && !self.units[u].sect_range_ok(sector, count as u64) {
            return self.dma_error(u);
        }
        let offset = sector as u64 * SECTOR_SIZE as u64;
        let op = match kind {
            // With bus mastering off the data reaches no guest memory but
            // the read still runs (and can fail), as before.
            AtaDma::Read if !ctx.bus_master => IoOp::Read { offset, len: bytes },
            AtaDma::Read => IoOp::ReadToGuest { offset, segments: prd.segments(bytes) },
            AtaDma::Write if !ctx.bus_master => return self.dma_error(u),
            AtaDma::Write => IoOp::WriteFromGuest { offset, segments: prd.segments(bytes) },
            AtaDma::Trim => {
                // The range list is at most 255 x 512 bytes: read here.
                let mut list = vec![0u8; bytes];
                if !ctx.bus_master || prd.gather(ctx.mem, &mut list).is_err() {
                    return self.dma_error(u);
                }
                let ranges: Vec<(u64, u64)> = list
                    .chunks_exact(8)
                    .map(|e| u64::from_le_bytes(e.try_into().unwrap_or([0; 8])))
                    .map(|raw| (raw & 0x0000_ffff_ffff_ffff, raw >> 48))
                    .filter(|r| r.1 != 0)
                    .collect();
                return self.submit_trim(u, sector, count, ranges, 0, stay_active);
            }
        };
        if !self.submit(u, op, Pending::AtaDma { kind, lba: sector, count, stay_active }) {
            self.dma_error(u);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn ata_dma_done(&mut self, ctx: &Ctx, u: usize, kind: AtaDma, lba: i64, count: u32, stay_active: bool, done: Completion) {
        let (op, retry) = (if kind == AtaDma::Read { BlockOp::Read } else { BlockOp::Write }, Retry::Dma { kind, lba, count });
        match &done.result {
            Ok(_) => {}
            Err(IoFailure::Memory(_)) | Err(IoFailure::TooLarge(_)) => return self.dma_error(u),
            Err(failure) => match self.host_failure(ctx, u, failure, op, lba as u64, count as u64, retry) {
                ErrorAction::Report => return self.dma_error(u),
                ErrorAction::Stop => return,
                ErrorAction::Ignore => {}
            },
        }
        if let Some(d) = self.units[u].drive.as_mut() {
            d.account(op, count as u64 * SECTOR_SIZE as u64, done.elapsed);
        }
        self.dma_finished(u, lba, count, stay_active);
    }

    fn dma_finished(&mut self, u: usize, lba: i64, count: u32, stay_active: bool) {
        let unit = &mut self.units[u];
        unit.set_sector(lba + count as i64);
        unit.regs.nsector = 0;
        unit.regs.status = READY_STAT | SEEK_STAT;
        self.set_irq();
        self.set_inactive(stay_active);
    }

    /// The ranges from `first` on go to the host in one request; every
    /// range is checked against the disk before any is discarded.
    fn submit_trim(&mut self, u: usize, lba: i64, count: u32, ranges: Vec<(u64, u64)>, first: usize, stay_active: bool) {
        let rest = &ranges[first.min(ranges.len())..];
        if rest.iter().any(|&(start, len)| !self.units[u].sect_range_ok(start as i64, len)) {
            return self.dma_error(u);
        }
        if rest.is_empty() {
            return self.dma_finished(u, lba, count, stay_active);
        }
        let bytes: Vec<(u64, u64)> = rest.iter().map(|&(s, l)| (s * SECTOR_SIZE as u64, l * SECTOR_SIZE as u64)).collect();
        if !self.submit(u, IoOp::Discard { ranges: bytes }, Pending::Trim { lba, count, ranges, first, stay_active }) {
            self.dma_error(u);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn trim_done(&mut self, ctx: &Ctx, u: usize, lba: i64, count: u32, ranges: Vec<(u64, u64)>, first: usize, stay_active: bool, done: Completion) {
        let failed_at = match &done.result {
            Ok(_) => None,
            Err(IoFailure::Host { done, .. }) => Some(first + done),
            Err(_) => return self.dma_error(u),
        };
        let ok_upto = failed_at.unwrap_or(ranges.len());
        if let Some(d) = self.units[u].drive.as_mut() {
            for &(_, len) in &ranges[first..ok_upto] {
                d.account(BlockOp::Discard, len * SECTOR_SIZE as u64, done.elapsed);
            }
        }
        let (Some(at), Err(failure)) = (failed_at, &done.result) else {
            return self.dma_finished(u, lba, count, stay_active);
        };
        let (start, len) = ranges[at];
        match self.host_failure(ctx, u, failure, BlockOp::Discard, start, len, Retry::Dma { kind: AtaDma::Trim, lba, count }) {
            ErrorAction::Report => self.dma_error(u),
            ErrorAction::Stop => {}
            ErrorAction::Ignore => self.submit_trim(u, lba, count, ranges, at + 1, stay_active),
        }
    }

    fn run_atapi_dma(&mut self, ctx: &Ctx, u: usize) {
        let Some(xfer) = self.units[u].atapi_xfer.clone() else {
            return self.atapi_ok(u);
        };
        let prd = match self.bm.walk(ctx.mem, ctx.bus_master) {
            Ok(prd) => prd,
            Err(_) => return self.dma_error(u),
        };
        // The PRD table bounds one DMA transfer to 512 x 64 KiB = 32 MiB.
        let size = xfer.remaining.min(prd.capacity) as usize;
        let short = (size as u64) < xfer.remaining;
        match &xfer.source {
            AtapiSource::Data(data) => {
                // A reply the command set built: no host I/O.
                let data = slice_at(data, xfer.offset, size);
                if ctx.bus_master && prd.scatter(ctx.mem, &data).is_err() {
                    return self.dma_error(u);
                }
                self.atapi_dma_finished(u, short);
            }
            AtapiSource::Medium { lba, raw } => {
                let (offset, len) = medium_extent(*lba, *raw, xfer.offset, size);
                let segments = if ctx.bus_master { prd.segments(size) } else { Vec::new() };
                // User blocks from a block boundary are the guest's view
                // as they are: straight into guest memory on the engine,
                // not copied under the controller lock at completion.
                let op = if !*raw && len == size && !segments.is_empty() {
                    self.atapi_segments.clear();
                    IoOp::ReadToGuest { offset, segments }
                } else {
                    self.atapi_segments = segments;
                    IoOp::Read { offset, len }
                };
                if !self.submit(u, op, Pending::AtapiDma { size, short }) {
                    self.atapi_io_error(u, libc::ENOMEDIUM);
                    self.set_inactive(false);
                }
            }
        }
    }

    pub(super) fn atapi_dma_done(&mut self, ctx: &Ctx, u: usize, size: usize, short: bool, done: Completion) {
        let Some(xfer) = self.units[u].atapi_xfer.clone() else {
            return self.atapi_ok(u);
        };
        let AtapiSource::Medium { lba, raw } = xfer.source else { return self.atapi_ok(u) };
        match done.result {
            Ok(IoDone::Data(blocks)) => {
                let view = medium_view(&blocks, lba, raw, xfer.offset, size);
                let segments = std::mem::take(&mut self.atapi_segments);
                let mut at = 0;
                for s in &segments {
                    let end = (at + s.len).min(view.len());
                    if ctx.mem.write(s.gpa, &view[at..end]).is_err() {
                        return self.dma_error(u);
                    }
                    at = end;
                }
                if let Some(d) = self.units[u].drive.as_mut() {
                    d.account(BlockOp::Read, size as u64, done.elapsed);
                }
            }
            Ok(IoDone::Moved(_)) => {
                if let Some(d) = self.units[u].drive.as_mut() {
                    d.account(BlockOp::Read, size as u64, done.elapsed);
                }
            }
            Err(IoFailure::Memory(_)) => return self.dma_error(u),
            Err(failure) => {
                let (lba, blocks) = atapi_extent(&xfer, size);
                match self.host_failure(ctx, u, &failure, BlockOp::Read, lba, blocks, Retry::AtapiDma) {
                    ErrorAction::Report => {
                        self.atapi_io_error(u, failure_errno(&failure));
                        self.set_inactive(false);
                        return;
                    }
                    ErrorAction::Stop => return,
                    ErrorAction::Ignore => {}
                }
            }
        }
        self.atapi_dma_finished(u, short);
    }

    fn atapi_dma_finished(&mut self, u: usize, short: bool) {
        if short {
            // PRDs shorter than the reply: the engine stops without an
            // interrupt and the guest times out, as on QEMU.
            self.units[u].atapi_xfer = None;
            self.set_inactive(false);
            return;
        }
        let unit = &mut self.units[u];
        unit.atapi_xfer = None;
        unit.regs.status = READY_STAT | SEEK_STAT;
        unit.regs.nsector = (unit.regs.nsector & !7) | ATAPI_INT_REASON_IO | ATAPI_INT_REASON_CD;
        self.set_irq();
        self.set_inactive(false);
    }
}

pub(super) fn failure_errno(failure: &IoFailure) -> i32 {
    match failure {
        IoFailure::Host { err, .. } => err.errno(),
        IoFailure::Memory(_) | IoFailure::TooLarge(_) => libc::EIO,
    }
}
