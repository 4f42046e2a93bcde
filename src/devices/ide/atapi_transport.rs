//! The ATA side of ATAPI: the PACKET command's CDB phase, the reply by
//! PIO in byte-count-limit chunks, completion and sense, and reads of the
//! CD medium. The MMC command set itself is `atapi`.

use super::atapi::{
    raw_sector, PacketOutcome, PacketResult, Sense, CD_RAW_SECTOR_SIZE, CD_SECTOR_SIZE,
    UNIT_ATTENTION_PENDING_ERROR, UNIT_ATTENTION_PENDING_STATUS,
};
use super::channel::{Channel, Ctx};
use super::dma::DmaJob;
use super::pio::EndAction;
use super::regs::{ATAPI_INT_REASON_CD, ATAPI_INT_REASON_IO, BUSY_STAT, DRQ_STAT, ERR_STAT, READY_STAT, SEEK_STAT};
use super::dma::failure_errno;
use super::requests::Pending;
use crate::block::engine::{Completion, IoDone, IoFailure, IoOp};
use crate::block::{BlockError, BlockOp};
use crate::vm::Event;

#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) enum AtapiSource {
    Data(Vec<u8>),
    /// Bytes from the medium starting at block `lba`; `raw` hands each
    /// block to the guest as a 2352-byte Mode 1 sector (READ CD).
    Medium { lba: u64, raw: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct AtapiTransfer {
    pub(super) source: AtapiSource,
    pub(super) offset: u64,
    pub(super) remaining: u64,
}

/// The image bytes (offset, length) holding `len` bytes of the guest's
/// view of a CD read from block `lba`, at byte `offset` into it: whole
/// 2048-byte blocks, so O_DIRECT images work.
pub(super) fn medium_extent(lba: u64, raw: bool, offset: u64, len: usize) -> (u64, usize) {
    let user = CD_SECTOR_SIZE as u64;
    let guest = if raw { CD_RAW_SECTOR_SIZE as u64 } else { user };
    let first = offset / guest;
    let last = (offset + len as u64).div_ceil(guest);
    ((lba + first) * user, ((last - first) * user) as usize)
}

/// The guest's view of the blocks `medium_extent` named: `len` bytes,
/// with each block as a 2352-byte Mode 1 sector for READ CD (`raw`).
pub(super) fn medium_view(blocks: &[u8], lba: u64, raw: bool, offset: u64, len: usize) -> Vec<u8> {
    let guest = if raw { CD_RAW_SECTOR_SIZE as u64 } else { CD_SECTOR_SIZE as u64 };
    let first = offset / guest;
    let mut view = if raw {
        let mut out = Vec::with_capacity(blocks.len() / CD_SECTOR_SIZE * CD_RAW_SECTOR_SIZE);
        for (i, block) in blocks.chunks_exact(CD_SECTOR_SIZE).enumerate() {
            let mut user_data = [0u8; CD_SECTOR_SIZE];
            user_data.copy_from_slice(block);
            out.extend_from_slice(&raw_sector((lba + first) as u32 + i as u32, &user_data));
        }
        out
    } else {
        blocks.to_vec()
    };
    let skip = ((offset - first * guest) as usize).min(view.len());
    view.drain(..skip);
    view.resize(len, 0);
    view
}

impl Channel {
    // ---- ATAPI transport --------------------------------------------------

    pub(super) fn atapi_ok(&mut self, u: usize) {
        let unit = &mut self.units[u];
        unit.atapi_xfer = None;
        unit.regs.error = 0;
        unit.regs.status = READY_STAT | SEEK_STAT;
        unit.regs.nsector = (unit.regs.nsector & !7) | ATAPI_INT_REASON_IO | ATAPI_INT_REASON_CD;
        unit.transfer_stop();
        self.set_irq();
    }

    fn atapi_error(&mut self, u: usize, sense: Sense) {
        let unit = &mut self.units[u];
        unit.atapi_xfer = None;
        unit.regs.error = sense.key << 4;
        unit.regs.status = READY_STAT | ERR_STAT;
        unit.regs.nsector = (unit.regs.nsector & !7) | ATAPI_INT_REASON_IO | ATAPI_INT_REASON_CD;
        unit.transfer_stop();
        self.set_irq();
    }

    pub(super) fn atapi_io_error(&mut self, u: usize, errno: i32) {
        let sense = match self.units[u].drive.as_mut() {
            Some(d) => d.atapi.host_error(errno),
            None => Sense { key: 5, asc: 0x21, ascq: 0 },
        };
        self.atapi_error(u, sense);
    }

    pub(super) fn atapi_command(&mut self, ctx: &Ctx, u: usize) {
        let mut cdb = [0u8; 12];
        cdb.copy_from_slice(&self.units[u].pio.buf[..12]);
        self.units[u].cdb0 = cdb[0];
        let bcl_usable = self.units[u].atapi_dma || self.units[u].byte_count_limit() != 0;
        let Some(drive) = self.units[u].drive.as_mut() else { return };
        let medium = drive.cd_sectors();
        let result = match drive.atapi.execute_packet(&cdb, medium, bcl_usable) {
            PacketOutcome::Atapi(result) => result,
            PacketOutcome::ReadRaw { count: 0, .. } => PacketResult::Done,
            PacketOutcome::ReadRaw { lba, count } => {
                let xfer = AtapiTransfer {
                    source: AtapiSource::Medium { lba: lba as u64, raw: true },
                    offset: 0,
                    remaining: count as u64 * CD_RAW_SECTOR_SIZE as u64,
                };
                return self.atapi_start_reply(ctx, u, xfer);
            }
            PacketOutcome::UnitAttentionPending => {
                let unit = &mut self.units[u];
                unit.atapi_xfer = None;
                unit.regs.error = UNIT_ATTENTION_PENDING_ERROR;
                unit.regs.status = UNIT_ATTENTION_PENDING_STATUS;
                unit.regs.nsector = 0;
                unit.transfer_stop();
                self.set_irq();
                return;
            }
            PacketOutcome::AbortByteCountLimit => {
                // Measured on QEMU 7.2 (INQUIRY with limit 0): 0x41/0x04 and
                // no interrupt.
                self.units[u].abort();
                return;
            }
        };
        let xfer = match result {
            PacketResult::Error(sense) => return self.atapi_error(u, sense),
            PacketResult::Done => return self.atapi_ok(u),
            PacketResult::TrayMoved { open } => {
                // Idempotent if the command set already moved its tray.
                drive.atapi.set_tray_open(open);
                let id = drive.id.clone();
                ctx.vm.events().emit(Event::DeviceTrayMoved { device: id.clone(), id, tray_open: open });
                return self.atapi_ok(u);
            }
            PacketResult::DataIn(data) => {
                let len = data.len() as u64;
                AtapiTransfer { source: AtapiSource::Data(data), offset: 0, remaining: len }
            }
            PacketResult::Read { count: 0, .. } => return self.atapi_ok(u),
            PacketResult::Read { lba, count } => AtapiTransfer {
                source: AtapiSource::Medium { lba: lba as u64, raw: false },
                offset: 0,
                remaining: count as u64 * CD_SECTOR_SIZE as u64,
            },
        };
        self.atapi_start_reply(ctx, u, xfer);
    }

    fn atapi_start_reply(&mut self, ctx: &Ctx, u: usize, xfer: AtapiTransfer) {
        let unit = &mut self.units[u];
        let is_read = matches!(xfer.source, AtapiSource::Medium { .. });
        if !unit.atapi_dma && xfer.remaining > 0 && unit.byte_count_limit() == 0 {
            // A data command by PIO with no byte count limit is refused at
            // the ATA level, as QEMU does (no interrupt).
            unit.abort();
            return;
        }
        unit.atapi_xfer = Some(xfer);
        if unit.atapi_dma {
            unit.regs.status = READY_STAT | SEEK_STAT | DRQ_STAT | if is_read { BUSY_STAT } else { 0 };
            self.start_dma(ctx, DmaJob::Atapi { unit: u });
        } else {
            unit.regs.status = READY_STAT | SEEK_STAT;
            self.atapi_reply_end(ctx, u);
        }
    }

    pub(super) fn atapi_reply_end(&mut self, _ctx: &Ctx, u: usize) {
        let Some(xfer) = self.units[u].atapi_xfer.clone() else {
            return self.atapi_ok(u);
        };
        if xfer.remaining == 0 {
            return self.atapi_ok(u);
        }
        let mut bcl = self.units[u].byte_count_limit();
        let mut size = xfer.remaining;
        if size > bcl {
            if bcl & 1 != 0 {
                bcl -= 1;
            }
            size = bcl;
        }
        let size = size as usize;
        match &xfer.source {
            AtapiSource::Data(data) => {
                let data = slice_at(data, xfer.offset, size);
                self.units[u].pio.buf[..size].copy_from_slice(&data);
                self.atapi_chunk_ready(u, size);
            }
            AtapiSource::Medium { lba, raw } => {
                // A chunk of the medium (at most 64 KiB, the byte count
                // limit) is read on the engine, BSY until it is back, as
                // QEMU's cd_read_sector is asynchronous too.
                let (offset, len) = medium_extent(*lba, *raw, xfer.offset, size);
                self.units[u].regs.status = READY_STAT | SEEK_STAT | BUSY_STAT;
                if !self.submit(u, IoOp::Read { offset, len }, Pending::AtapiPio { size }) {
                    self.atapi_pio_failed(u, &xfer, size, &BlockError::NoMedium);
                }
            }
        }
    }

    pub(super) fn atapi_pio_done(&mut self, u: usize, size: usize, done: Completion) {
        let Some(xfer) = self.units[u].atapi_xfer.clone() else {
            return self.atapi_ok(u);
        };
        let AtapiSource::Medium { lba, raw } = xfer.source else { return self.atapi_ok(u) };
        match done.result {
            Ok(IoDone::Data(blocks)) => {
                let view = medium_view(&blocks, lba, raw, xfer.offset, size);
                self.units[u].pio.buf[..size].copy_from_slice(&view);
                self.units[u].regs.status = READY_STAT | SEEK_STAT;
                if let Some(d) = self.units[u].drive.as_mut() {
                    d.account(BlockOp::Read, size as u64, done.elapsed);
                }
                self.atapi_chunk_ready(u, size);
            }
            Err(IoFailure::Host { err, .. }) => self.atapi_pio_failed(u, &xfer, size, &err),
            // Not what a read returns; refused like a host error.
            other => {
                let errno = other.err().map_or(libc::EIO, |f| failure_errno(&f));
                let err = BlockError::Io { op: BlockOp::Read, offset: 0, len: size as u64, errno };
                self.atapi_pio_failed(u, &xfer, size, &err);
            }
        }
    }

    /// QEMU 7.2 reports a CD-ROM PIO read error straight to the guest
    /// (sense data), without rerror or a QMP event; we do the same and
    /// still audit it.
    fn atapi_pio_failed(&mut self, u: usize, xfer: &AtapiTransfer, size: usize, err: &BlockError) {
        let (lba, blocks) = atapi_extent(xfer, size);
        self.audit_reported_error(u, err, lba, blocks);
        self.atapi_io_error(u, err.errno());
    }

    /// `size` bytes of the reply are in the PIO buffer: hand them out.
    fn atapi_chunk_ready(&mut self, u: usize, size: usize) {
        let unit = &mut self.units[u];
        if let Some(x) = unit.atapi_xfer.as_mut() {
            x.offset += size as u64;
            x.remaining -= size as u64;
        }
        unit.regs.nsector = (unit.regs.nsector & !7) | ATAPI_INT_REASON_IO;
        unit.regs.lcyl = size as u8;
        unit.regs.hcyl = (size >> 8) as u8;
        self.set_irq();
        self.units[u].transfer_start(size, EndAction::AtapiReply);
    }
}

/// `len` bytes of a reply from `offset`, zero-filled past its end (the
/// transfer bookkeeping never asks for that, but a guest cannot make it
/// panic either).
pub(super) fn slice_at(data: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let start = (offset as usize).min(data.len());
    let avail = (data.len() - start).min(len);
    out[..avail].copy_from_slice(&data[start..start + avail]);
    out
}

/// The CD blocks a transfer step touches, for the audit line.
pub(super) fn atapi_extent(xfer: &AtapiTransfer, size: usize) -> (u64, u64) {
    match xfer.source {
        AtapiSource::Medium { lba, raw } => {
            let bs = if raw { CD_RAW_SECTOR_SIZE } else { CD_SECTOR_SIZE } as u64;
            let first = lba + xfer.offset / bs;
            let last = lba + (xfer.offset + size as u64).div_ceil(bs);
            (first, last - first)
        }
        AtapiSource::Data(_) => (0, 0),
    }
}
