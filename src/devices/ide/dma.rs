//! Bus-master DMA jobs: ATA READ/WRITE DMA and DATA SET MANAGEMENT
//! (TRIM), and the data phase of an ATAPI command in DMA mode. A job waits
//! in `Channel::pending` until both the command and the engine's start bit
//! are there, in either order.

use super::atapi_transport::{atapi_extent, slice_at, AtapiSource};
use super::bmdma::BM_STATUS_ACTIVE;
use super::channel::{Channel, Ctx};
use super::policy::Retry;
use super::regs::{ATAPI_INT_REASON_CD, ATAPI_INT_REASON_IO, DRQ_STAT, MAX_REQUEST_SECTORS, READY_STAT, SECTOR_SIZE, SEEK_STAT};
use crate::block::{BlockOp, ErrorAction};
use std::time::Instant;

/// The sector-moving ATA DMA commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AtaDma {
    Read,
    Write,
    Trim,
}

/// A DMA command waiting for the engine, or running on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        let retry = Retry::Dma { kind, lba: sector, count };
        let started = Instant::now();
        let mut buf = vec![0u8; bytes];
        match kind {
            AtaDma::Read => {
                let Some(backend) = self.units[u].drive.as_mut().and_then(|d| d.backend.as_mut()) else {
                    return self.dma_error(u);
                };
                let mut deliver = true;
                if let Err(e) = backend.read_at(sector as u64 * SECTOR_SIZE as u64, &mut buf) {
                    match self.host_error(ctx, u, &e, BlockOp::Read, sector as u64, count as u64, retry) {
                        ErrorAction::Report => return self.dma_error(u),
                        ErrorAction::Stop => return,
                        ErrorAction::Ignore => deliver = false,
                    }
                }
                if deliver && ctx.bus_master && prd.scatter(ctx.mem, &buf).is_err() {
                    return self.dma_error(u);
                }
                if let Some(d) = self.units[u].drive.as_mut() {
                    d.account(BlockOp::Read, bytes as u64, started);
                }
            }
            AtaDma::Write => {
                if !ctx.bus_master || prd.gather(ctx.mem, &mut buf).is_err() {
                    return self.dma_error(u);
                }
                let Some(backend) = self.units[u].drive.as_mut().and_then(|d| d.backend.as_mut()) else {
                    return self.dma_error(u);
                };
                if let Err(e) = backend.write_at(sector as u64 * SECTOR_SIZE as u64, &buf) {
                    match self.host_error(ctx, u, &e, BlockOp::Write, sector as u64, count as u64, retry) {
                        ErrorAction::Report => return self.dma_error(u),
                        ErrorAction::Stop => return,
                        ErrorAction::Ignore => {}
                    }
                }
                if let Some(d) = self.units[u].drive.as_mut() {
                    d.account(BlockOp::Write, bytes as u64, started);
                }
            }
            AtaDma::Trim => {
                if !ctx.bus_master || prd.gather(ctx.mem, &mut buf).is_err() {
                    return self.dma_error(u);
                }
                for entry in buf.chunks_exact(8) {
                    let raw = u64::from_le_bytes(entry.try_into().unwrap_or([0; 8]));
                    let start = (raw & 0x0000_ffff_ffff_ffff) as i64;
                    let len = raw >> 48;
                    if len == 0 {
                        continue;
                    }
                    if !self.units[u].sect_range_ok(start, len) {
                        return self.dma_error(u);
                    }
                    let Some(backend) = self.units[u].drive.as_mut().and_then(|d| d.backend.as_mut()) else {
                        return self.dma_error(u);
                    };
                    if let Err(e) = backend.discard(start as u64 * SECTOR_SIZE as u64, len * SECTOR_SIZE as u64) {
                        match self.host_error(ctx, u, &e, BlockOp::Discard, start as u64, len, retry) {
                            ErrorAction::Report => return self.dma_error(u),
                            ErrorAction::Stop => return,
                            ErrorAction::Ignore => continue,
                        }
                    }
                    if let Some(d) = self.units[u].drive.as_mut() {
                        d.account(BlockOp::Discard, len * SECTOR_SIZE as u64, started);
                    }
                }
            }
        }
        let unit = &mut self.units[u];
        unit.set_sector(sector + count as i64);
        unit.regs.nsector = 0;
        unit.regs.status = READY_STAT | SEEK_STAT;
        self.set_irq();
        self.set_inactive(stay_active);
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
        let started = Instant::now();
        let data = match &xfer.source {
            AtapiSource::Data(data) => Ok(slice_at(data, xfer.offset, size)),
            AtapiSource::Medium { lba, raw } => self.units[u].read_medium(*lba, *raw, xfer.offset, size),
        };
        match data {
            Ok(data) => {
                if ctx.bus_master && prd.scatter(ctx.mem, &data).is_err() {
                    return self.dma_error(u);
                }
                if let (Some(d), AtapiSource::Medium { .. }) = (self.units[u].drive.as_mut(), &xfer.source) {
                    d.account(BlockOp::Read, size as u64, started);
                }
            }
            Err(e) => {
                let (lba, blocks) = atapi_extent(&xfer, size);
                match self.host_error(ctx, u, &e, BlockOp::Read, lba, blocks, Retry::AtapiDma) {
                    ErrorAction::Report => {
                        self.atapi_io_error(u, e.errno());
                        self.set_inactive(false);
                        return;
                    }
                    ErrorAction::Stop => return,
                    ErrorAction::Ignore => {}
                }
            }
        }
        if (size as u64) < xfer.remaining {
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
