//! One IDE channel: two device positions sharing a taskfile bus, the
//! device-control register, an interrupt line and a bus-master engine.
//!
//! Host I/O runs synchronously inside the port write that starts it (the
//! vCPU waits on the ioreq anyway), so BSY is only ever visible while a
//! request is held by a `stop` error policy.

use super::atapi::{
    raw_sector, AtapiState, PacketOutcome, PacketResult, Sense, CD_RAW_SECTOR_SIZE, CD_SECTOR_SIZE,
    UNIT_ATTENTION_PENDING_ERROR, UNIT_ATTENTION_PENDING_STATUS,
};
use super::bmdma::{BmDma, CmdEffect, BM_STATUS_ACTIVE, BM_STATUS_INTR};
use super::identify::{self, Geometry, Identity, MAX_MULT_SECTORS};
use super::MediaKind;
use crate::block::{BlockBackend, BlockError, BlockOp, CacheMode, ErrorAction, ErrorPolicy};
use crate::logging::{audit_io_error, IoErrorAudit};
use crate::machine::{BlockStats, Event, GuestMemory, IoOperation, IrqLine, RunState, VmControl};
use std::sync::Arc;
use std::time::Instant;

pub const ERR_STAT: u8 = 0x01;
pub const DRQ_STAT: u8 = 0x08;
pub const SEEK_STAT: u8 = 0x10;
pub const READY_STAT: u8 = 0x40;
pub const BUSY_STAT: u8 = 0x80;
pub const ABRT_ERR: u8 = 0x04;

const CTRL_NIEN: u8 = 0x02;
const CTRL_SRST: u8 = 0x04;
const CTRL_HOB: u8 = 0x80;

const DEV_HS: u8 = 0x0f;
const DEV_SELECT: u8 = 0x10;
const DEV_LBA: u8 = 0x40;
const DEV_ALWAYS_ON: u8 = 0xa0;

const ATAPI_INT_REASON_CD: u32 = 0x01;
const ATAPI_INT_REASON_IO: u32 = 0x02;

const SECTOR_SIZE: usize = 512;
/// Largest PIO data block: 16 sectors (multiple mode), an ATAPI chunk of
/// at most 0xfffe bytes, IDENTIFY data or a CDB all fit.
const PIO_BUFFER_SIZE: usize = 0x10000;
/// READ/WRITE DMA EXT with count 0 means 65536 sectors: 32 MiB.
pub const MAX_REQUEST_SECTORS: u32 = 65536;

/// A drive and its host side.
pub(crate) struct Drive {
    pub id: String,
    pub media: MediaKind,
    pub backend: Option<Box<dyn BlockBackend>>,
    pub filename: String,
    pub cache: CacheMode,
    pub werror: ErrorPolicy,
    pub rerror: ErrorPolicy,
    pub identity: Identity,
    pub default_geometry: Geometry,
    pub geometry: Geometry,
    pub mult_sectors: u16,
    /// QEMU's identify_set: SET FEATURES edits the data once it exists.
    pub identify: Option<[u16; 256]>,
    pub atapi: AtapiState,
    pub stats: BlockStats,
    pub io_status: &'static str,
    pub smart_enabled: bool,
    pub smart_autosave: bool,
}

/// SMART attributes QEMU reports: id, flags, value, worst, raw (6 bytes),
/// threshold (read back from QEMU 7.2 with SMART READ DATA / THRESHOLDS).
const SMART_ATTRIBUTES: [(u8, u8, u8, u8, [u8; 6], u8); 7] = [
    (0x01, 0x03, 0x64, 0x64, [0; 6], 0x06),
    (0x03, 0x03, 0x64, 0x64, [0x10, 0, 0, 0, 0, 0], 0x00),
    (0x04, 0x02, 0x64, 0x64, [0x64, 0, 0, 0, 0, 0], 0x14),
    (0x05, 0x03, 0x64, 0x64, [0; 6], 0x24),
    (0x09, 0x03, 0x64, 0x64, [0x01, 0, 0, 0, 0, 0], 0x00),
    (0x0c, 0x03, 0x64, 0x64, [0; 6], 0x00),
    (190, 0x03, 0x45, 0x45, [0x1f, 0x00, 0x1f, 0x1f, 0, 0], 0x32),
];

fn smart_block(thresholds: bool, autosave: bool) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0] = 0x01;
    for (n, (id, flags, value, worst, raw, threshold)) in SMART_ATTRIBUTES.iter().enumerate() {
        let e = &mut b[2 + n * 12..2 + n * 12 + 12];
        e[0] = *id;
        if thresholds {
            e[1] = *threshold;
        } else {
            e[1] = *flags;
            e[3] = *value;
            e[4] = *worst;
            e[5..11].copy_from_slice(raw);
        }
    }
    if !thresholds {
        b[362] = 0x02 | if autosave { 0x80 } else { 0 };
        b[364] = 0x20;
        b[365] = 0x01;
        b[367] = (1 << 4) | (1 << 3) | 1;
        b[368] = 0x03;
        b[370] = 0x01;
        b[372] = 0x02;
        b[373] = 0x36;
        b[374] = 0x01;
    }
    let sum = b[..511].iter().fold(0u8, |a, x| a.wrapping_add(*x));
    b[511] = 0u8.wrapping_sub(sum);
    b
}

impl Drive {
    /// query-blockstats counters for a request that completed.
    fn account(&mut self, op: BlockOp, bytes: u64, started: Instant) {
        let ns = started.elapsed().as_nanos() as u64;
        let s = &mut self.stats;
        match op {
            BlockOp::Read => {
                s.rd_bytes += bytes;
                s.rd_operations += 1;
                s.rd_total_time_ns += ns;
            }
            BlockOp::Write => {
                s.wr_bytes += bytes;
                s.wr_operations += 1;
                s.wr_total_time_ns += ns;
            }
            BlockOp::Flush => {
                s.flush_operations += 1;
                s.flush_total_time_ns += ns;
            }
            BlockOp::Discard => {
                s.unmap_operations += 1;
                s.unmap_bytes += bytes;
            }
        }
    }

    pub fn is_cdrom(&self) -> bool {
        self.media == MediaKind::Cdrom
    }

    /// QEMU keeps an I/O status (and reports `nospace`) only for drives
    /// whose policy can stop the VM.
    pub fn keeps_io_status(&self) -> bool {
        let stops = |p: ErrorPolicy| matches!(p, ErrorPolicy::Stop | ErrorPolicy::Enospc);
        stops(self.werror) || stops(self.rerror)
    }

    fn nb_sectors(&self) -> u64 {
        self.backend.as_ref().map_or(0, |b| b.size() / SECTOR_SIZE as u64)
    }

    fn cd_sectors(&self) -> Option<u64> {
        if self.atapi.tray_open() {
            return None;
        }
        self.backend.as_ref().map(|b| b.size() / CD_SECTOR_SIZE as u64)
    }
}

#[derive(Debug, Default, Clone)]
struct Regs {
    feature: u8,
    hob_feature: u8,
    /// Wider than the register: the remaining sector count of a command.
    nsector: u32,
    hob_nsector: u8,
    sector: u8,
    hob_sector: u8,
    lcyl: u8,
    hob_lcyl: u8,
    hcyl: u8,
    hob_hcyl: u8,
    select: u8,
    status: u8,
    error: u8,
    lba48: bool,
}

/// What runs when the guest has moved the last byte of a DRQ block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndAction {
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

struct Pio {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    action: EndAction,
}

#[derive(Debug, Clone)]
enum AtapiSource {
    Data(Vec<u8>),
    /// Bytes from the medium starting at block `lba`; `raw` hands each
    /// block to the guest as a 2352-byte Mode 1 sector (READ CD).
    Medium { lba: u64, raw: bool },
}

#[derive(Debug, Clone)]
struct AtapiTransfer {
    source: AtapiSource,
    offset: u64,
    remaining: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtaDma {
    Read,
    Write,
    Trim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DmaJob {
    Ata { unit: usize, kind: AtaDma },
    Atapi { unit: usize },
}

/// A request a `stop` policy holds until the VM runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The PIO block at `lba` with `nsector` left; for a write its data is
    /// still in the unit's buffer.
    Pio { write: bool, lba: i64, nsector: u32 },
    Dma { kind: AtaDma, lba: i64, count: u32 },
    Flush,
    AtapiDma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    unit: usize,
    retry: Retry,
}

struct Unit {
    regs: Regs,
    pio: Pio,
    drive: Option<Drive>,
    req_nb_sectors: u32,
    command: u8,
    cdb0: u8,
    atapi_dma: bool,
    atapi_xfer: Option<AtapiTransfer>,
}

/// What a channel needs from the controller for one access.
pub(crate) struct Ctx<'a> {
    pub mem: &'a dyn GuestMemory,
    pub vm: &'a VmControl,
    pub bus_master: bool,
}

pub(crate) struct Channel {
    units: [Unit; 2],
    selected: usize,
    ctrl: u8,
    irq: Arc<dyn IrqLine>,
    /// None until the first change, so reset always drives the line low.
    irq_level: Option<bool>,
    pub bm: BmDma,
    pending: Option<DmaJob>,
    held: Option<Held>,
}

fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

pub(crate) fn ata_command_name(cmd: u8) -> &'static str {
    match cmd {
        0x06 => "DATA SET MANAGEMENT",
        0x20 | 0x21 => "READ SECTORS",
        0x24 => "READ SECTORS EXT",
        0x25 => "READ DMA EXT",
        0x29 => "READ MULTIPLE EXT",
        0x30 | 0x31 => "WRITE SECTORS",
        0x34 => "WRITE SECTORS EXT",
        0x35 => "WRITE DMA EXT",
        0x39 => "WRITE MULTIPLE EXT",
        0x3c => "WRITE VERIFY",
        0xa0 => "PACKET",
        0xc4 => "READ MULTIPLE",
        0xc5 => "WRITE MULTIPLE",
        0xc8 | 0xc9 => "READ DMA",
        0xca | 0xcb => "WRITE DMA",
        0xe7 => "FLUSH CACHE",
        0xea => "FLUSH CACHE EXT",
        0xef => "SET FEATURES",
        _ => "ATA COMMAND",
    }
}

fn atapi_command_name(cdb0: u8) -> &'static str {
    match cdb0 {
        0x28 => "READ(10)",
        0xa8 => "READ(12)",
        0xbe => "READ CD",
        _ => "PACKET",
    }
}

impl Unit {
    fn new(drive: Option<Drive>) -> Self {
        Unit {
            regs: Regs::default(),
            pio: Pio { buf: vec![0; PIO_BUFFER_SIZE], pos: 0, end: 0, action: EndAction::Stop },
            drive,
            req_nb_sectors: 1,
            command: 0,
            cdb0: 0,
            atapi_dma: false,
            atapi_xfer: None,
        }
    }

    fn is_cdrom(&self) -> bool {
        self.drive.as_ref().is_some_and(Drive::is_cdrom)
    }

    fn has_disk_medium(&self) -> bool {
        self.drive.as_ref().is_some_and(|d| !d.is_cdrom() && d.backend.is_some())
    }

    fn nb_sectors(&self) -> u64 {
        self.drive.as_ref().map_or(0, Drive::nb_sectors)
    }

    fn geometry(&self) -> (u64, u64) {
        self.drive.as_ref().map_or((0, 0), |d| (d.geometry.heads as u64, d.geometry.sectors as u64))
    }

    fn set_signature(&mut self) {
        let r = &mut self.regs;
        r.select &= !DEV_HS;
        r.nsector = 1;
        r.sector = 1;
        let (l, h) = match &self.drive {
            Some(d) if d.is_cdrom() => (0x14, 0xeb),
            Some(_) => (0, 0),
            None => (0xff, 0xff),
        };
        r.lcyl = l;
        r.hcyl = h;
    }

    fn transfer_start(&mut self, len: usize, action: EndAction) {
        self.pio.pos = 0;
        self.pio.end = len.min(PIO_BUFFER_SIZE);
        self.pio.action = action;
        if self.regs.status & ERR_STAT == 0 {
            self.regs.status |= DRQ_STAT;
        }
    }

    fn transfer_stop(&mut self) {
        self.pio.pos = 0;
        self.pio.end = 0;
        self.pio.action = EndAction::Stop;
        self.regs.status &= !DRQ_STAT;
    }

    fn abort(&mut self) {
        self.transfer_stop();
        self.regs.status = READY_STAT | ERR_STAT;
        self.regs.error = ABRT_ERR;
    }

    /// QEMU's ide_reset for one position.
    fn reset(&mut self) {
        let r = &mut self.regs;
        *r = Regs { select: DEV_ALWAYS_ON, status: READY_STAT | SEEK_STAT, ..Regs::default() };
        self.req_nb_sectors = 1;
        self.atapi_dma = false;
        self.atapi_xfer = None;
        if let Some(d) = &mut self.drive {
            d.mult_sectors = MAX_MULT_SECTORS;
            d.atapi.reset();
        }
        self.set_signature();
        self.transfer_stop();
    }

    fn lba48_transform(&mut self, lba48: bool) {
        let r = &mut self.regs;
        r.lba48 = lba48;
        let lo = r.nsector & 0xff;
        r.nsector = if !lba48 {
            if lo == 0 {
                256
            } else {
                lo
            }
        } else if lo == 0 && r.hob_nsector == 0 {
            MAX_REQUEST_SECTORS
        } else {
            ((r.hob_nsector as u32) << 8) | lo
        };
    }

    /// The addressed sector; negative for CHS sector 0 or an unusable
    /// geometry, which the range check then refuses.
    fn get_sector(&self) -> i64 {
        let r = &self.regs;
        if r.select & DEV_LBA != 0 {
            if r.lba48 {
                ((r.hob_hcyl as i64) << 40)
                    | ((r.hob_lcyl as i64) << 32)
                    | ((r.hob_sector as i64) << 24)
                    | ((r.hcyl as i64) << 16)
                    | ((r.lcyl as i64) << 8)
                    | r.sector as i64
            } else {
                (((r.select & DEV_HS) as i64) << 24) | ((r.hcyl as i64) << 16) | ((r.lcyl as i64) << 8) | r.sector as i64
            }
        } else {
            let (heads, sectors) = self.geometry();
            if heads == 0 || sectors == 0 {
                return -1;
            }
            let cyl = ((r.hcyl as i64) << 8) | r.lcyl as i64;
            cyl * (heads * sectors) as i64 + (r.select & DEV_HS) as i64 * sectors as i64 + r.sector as i64 - 1
        }
    }

    fn set_sector(&mut self, sector_num: i64) {
        let n = sector_num.max(0) as u64;
        let (heads, sectors) = self.geometry();
        let r = &mut self.regs;
        if r.select & DEV_LBA != 0 {
            r.sector = n as u8;
            r.lcyl = (n >> 8) as u8;
            r.hcyl = (n >> 16) as u8;
            if r.lba48 {
                r.hob_sector = (n >> 24) as u8;
                r.hob_lcyl = (n >> 32) as u8;
                r.hob_hcyl = (n >> 40) as u8;
            } else {
                r.select = (r.select & !DEV_HS) | ((n >> 24) as u8 & DEV_HS);
            }
        } else if heads != 0 && sectors != 0 {
            let cyl = n / (heads * sectors);
            let rem = n % (heads * sectors);
            r.hcyl = (cyl >> 8) as u8;
            r.lcyl = cyl as u8;
            r.select = (r.select & !DEV_HS) | ((rem / sectors) as u8 & DEV_HS);
            r.sector = (rem % sectors + 1) as u8;
        }
    }

    fn sect_range_ok(&self, sector: i64, count: u64) -> bool {
        let total = self.nb_sectors();
        sector >= 0 && (sector as u64) <= total && count <= total - sector as u64
    }

    fn byte_count_limit(&self) -> u64 {
        let bcl = self.regs.lcyl as u64 | ((self.regs.hcyl as u64) << 8);
        if bcl == 0xffff {
            0xfffe
        } else {
            bcl
        }
    }

    fn identify_data(&mut self) -> Option<[u16; 256]> {
        let d = self.drive.as_mut()?;
        if d.identify.is_none() {
            let words = if d.is_cdrom() {
                identify::atapi_identify(&d.identity)
            } else {
                let nb = d.nb_sectors();
                let write_cache = d.backend.as_ref().is_some_and(|b| b.guest_write_cache());
                identify::disk_identify(&identify::DiskParams {
                    identity: &d.identity,
                    default_geometry: d.default_geometry,
                    current_geometry: d.geometry,
                    nb_sectors: nb,
                    mult_sectors: d.mult_sectors,
                    write_cache,
                })
            };
            d.identify = Some(words);
        }
        d.identify
    }

    fn load_identify(&mut self) -> bool {
        match self.identify_data() {
            Some(words) => {
                for (i, w) in words.iter().enumerate() {
                    self.pio.buf[2 * i..2 * i + 2].copy_from_slice(&w.to_le_bytes());
                }
                true
            }
            None => false,
        }
    }

    /// `len` bytes of the guest's view of a CD read from block `lba`, at
    /// byte `offset` into it. The image is read in whole 2048-byte blocks
    /// so O_DIRECT images work.
    fn read_medium(&mut self, lba: u64, raw: bool, offset: u64, len: usize) -> Result<Vec<u8>, BlockError> {
        let backend = self.drive.as_mut().and_then(|d| d.backend.as_mut()).ok_or(BlockError::NoMedium)?;
        let user = CD_SECTOR_SIZE as u64;
        let guest = if raw { CD_RAW_SECTOR_SIZE as u64 } else { user };
        let first = offset / guest;
        let last = (offset + len as u64).div_ceil(guest);
        let mut blocks = vec![0u8; ((last - first) * user) as usize];
        backend.read_at((lba + first) * user, &mut blocks)?;
        let view = if raw {
            let mut out = Vec::with_capacity(((last - first) * guest) as usize);
            for (i, block) in blocks.chunks_exact(CD_SECTOR_SIZE).enumerate() {
                let user_data: &[u8; CD_SECTOR_SIZE] = block.try_into().map_err(|_| BlockError::NoMedium)?;
                out.extend_from_slice(&raw_sector((lba + first) as u32 + i as u32, user_data));
            }
            out
        } else {
            blocks
        };
        let skip = (offset - first * guest) as usize;
        Ok(view[skip..skip + len].to_vec())
    }
}

impl Channel {
    pub fn new(drives: [Option<Drive>; 2], irq: Arc<dyn IrqLine>) -> Self {
        let [d0, d1] = drives;
        let mut ch = Channel {
            units: [Unit::new(d0), Unit::new(d1)],
            selected: 0,
            ctrl: 0,
            irq,
            irq_level: None,
            bm: BmDma::default(),
            pending: None,
            held: None,
        };
        ch.reset();
        ch
    }

    pub fn reset(&mut self) {
        self.selected = 0;
        self.ctrl = 0;
        self.pending = None;
        self.held = None;
        self.bm.reset();
        for u in &mut self.units {
            u.reset();
        }
        self.lower_irq();
    }

    pub fn drive(&self, unit: usize) -> Option<&Drive> {
        self.units[unit].drive.as_ref()
    }

    pub fn drives_mut(&mut self) -> impl Iterator<Item = &mut Drive> {
        self.units.iter_mut().filter_map(|u| u.drive.as_mut())
    }

    pub fn has_held_request(&self) -> bool {
        self.held.is_some()
    }

    /// Take the hard disk at `unit` off the bus (Xen platform unplug): the
    /// slot then reads as an absent device. Returns the drive so the caller
    /// can flush it. CD-ROMs stay.
    pub fn unplug_disk(&mut self, unit: usize) -> Option<Drive> {
        let slot = self.units.get_mut(unit)?;
        if slot.drive.as_ref().is_none_or(|d| d.is_cdrom()) {
            return None;
        }
        if self.held.is_some() {
            log::warn!("unplugging a disk while a request is held on its channel; the held request is dropped");
            self.held = None;
        }
        let drive = slot.drive.take();
        *slot = Unit::new(None);
        drive
    }

    fn set_irq(&mut self) {
        if self.ctrl & CTRL_NIEN == 0 {
            self.bm.status |= BM_STATUS_INTR;
            self.drive_irq(true);
        }
    }

    fn lower_irq(&mut self) {
        self.drive_irq(false);
    }

    /// The line is level-triggered; only changes go out, so a guest polling
    /// the status register does not cost an interrupt-controller call
    /// (a hypercall on Xen) per read.
    fn drive_irq(&mut self, high: bool) {
        if self.irq_level != Some(high) {
            self.irq_level = Some(high);
            self.irq.set_level(high);
        }
    }

    fn rw_error(&mut self, u: usize) {
        self.units[u].abort();
        self.set_irq();
    }

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

    fn no_drive_registers(&self) -> bool {
        self.units[0].drive.is_none() && self.units[1].drive.is_none()
    }

    fn selected_absent(&self) -> bool {
        self.no_drive_registers() || (self.selected == 1 && self.units[1].drive.is_none())
    }

    // ---- port access ----------------------------------------------------

    /// Command block register read, offsets 1..=7 (byte wide).
    pub fn read_reg(&mut self, reg: u64) -> u8 {
        let none = self.no_drive_registers();
        let hob = self.ctrl & CTRL_HOB != 0;
        let absent = self.selected_absent();
        let r = &self.units[self.selected].regs;
        match reg {
            1 if absent => 0,
            1 => {
                if hob {
                    r.hob_feature
                } else {
                    r.error
                }
            }
            2..=5 if none => 0,
            2 => {
                if hob {
                    r.hob_nsector
                } else {
                    r.nsector as u8
                }
            }
            3 => {
                if hob {
                    r.hob_sector
                } else {
                    r.sector
                }
            }
            4 => {
                if hob {
                    r.hob_lcyl
                } else {
                    r.lcyl
                }
            }
            5 => {
                if hob {
                    r.hob_hcyl
                } else {
                    r.hcyl
                }
            }
            6 if none => 0,
            6 => r.select,
            7 => {
                let status = if absent { 0 } else { r.status };
                self.lower_irq();
                status
            }
            _ => 0xff,
        }
    }

    pub fn read_altstatus(&self) -> u8 {
        if self.selected_absent() {
            0
        } else {
            self.units[self.selected].regs.status
        }
    }

    pub fn write_reg(&mut self, ctx: &Ctx, reg: u64, val: u8) {
        if reg != 7 && self.units[self.selected].regs.status & (BUSY_STAT | DRQ_STAT) != 0 {
            return;
        }
        match reg {
            1..=5 => {
                self.ctrl &= !CTRL_HOB;
                for u in &mut self.units {
                    let r = &mut u.regs;
                    match reg {
                        1 => {
                            r.hob_feature = r.feature;
                            r.feature = val;
                        }
                        2 => {
                            r.hob_nsector = r.nsector as u8;
                            r.nsector = val as u32;
                        }
                        3 => {
                            r.hob_sector = r.sector;
                            r.sector = val;
                        }
                        4 => {
                            r.hob_lcyl = r.lcyl;
                            r.lcyl = val;
                        }
                        _ => {
                            r.hob_hcyl = r.hcyl;
                            r.hcyl = val;
                        }
                    }
                }
            }
            6 => {
                self.ctrl &= !CTRL_HOB;
                for u in &mut self.units {
                    u.regs.select = val | DEV_ALWAYS_ON;
                }
                self.selected = usize::from(val & DEV_SELECT != 0);
            }
            7 => {
                self.ctrl &= !CTRL_HOB;
                self.lower_irq();
                self.exec_cmd(ctx, val);
            }
            _ => {}
        }
    }

    pub fn write_ctrl(&mut self, ctx: &Ctx, val: u8) {
        let srst_rising = self.ctrl & CTRL_SRST == 0 && val & CTRL_SRST != 0;
        self.ctrl = val;
        if srst_rising {
            for u in 0..2 {
                self.units[u].regs.status = BUSY_STAT | SEEK_STAT;
                self.units[u].regs.error = 0x01;
            }
            // QEMU finishes the reset in a bottom half that has always run
            // by the next access, so it completes here.
            self.pending = None;
            self.held = None;
            for u in 0..2 {
                self.units[u].reset();
                self.exec_diagnostic(u);
            }
            let _ = ctx;
        }
    }

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

    pub fn bm_write(&mut self, ctx: &Ctx, offset: u64, size: usize, val: u32) {
        match offset {
            0..=3 if size != 1 => {}
            0 if self.bm.write_cmd(val as u8) == CmdEffect::Started => self.run_pending(ctx),
            0 => {}
            2 => self.bm.write_status(val as u8),
            4..=7 => self.bm.write_prd(offset, size.min(8 - offset as usize), val),
            _ => {}
        }
    }

    // ---- host errors ----------------------------------------------------

    /// Apply the drive's policy to a failed host request: audit, event,
    /// statistics, and for `stop` the held request and the VM stop.
    #[allow(clippy::too_many_arguments)]
    fn host_error(&mut self, ctx: &Ctx, u: usize, err: &BlockError, op: BlockOp, lba: u64, count: u64, retry: Retry) -> ErrorAction {
        let command = if self.units[u].command == 0xa0 {
            atapi_command_name(self.units[u].cdb0)
        } else {
            ata_command_name(self.units[u].command)
        };
        let Some(drive) = self.units[u].drive.as_mut() else {
            return ErrorAction::Report;
        };
        let errno = err.errno();
        let is_read = op == BlockOp::Read;
        let action = if is_read { drive.rerror } else { drive.werror }.action_for(errno);
        audit_io_error(&IoErrorAudit { drive: &drive.id, command, lba, sectors: count, errno, action: action.as_qmp() });
        ctx.vm.events().emit(Event::BlockIoError {
            device: drive.id.clone(),
            node_name: drive.id.clone(),
            operation: if is_read { IoOperation::Read } else { IoOperation::Write },
            action: action.as_qmp(),
            nospace: drive.keeps_io_status().then_some(errno == libc::ENOSPC),
            reason: strerror(errno),
        });
        match action {
            ErrorAction::Report => match op {
                BlockOp::Read => drive.stats.failed_rd_operations += 1,
                BlockOp::Write => drive.stats.failed_wr_operations += 1,
                BlockOp::Flush => drive.stats.failed_flush_operations += 1,
                BlockOp::Discard => drive.stats.failed_unmap_operations += 1,
            },
            ErrorAction::Stop => {
                drive.io_status = if errno == libc::ENOSPC { "nospace" } else { "failed" };
                self.held = Some(Held { unit: u, retry });
                ctx.vm.stop(RunState::IoError);
            }
            ErrorAction::Ignore => {}
        }
        action
    }

    /// A host read error that bypasses the policy: audit line and failed
    /// read count only.
    fn audit_reported_error(&mut self, u: usize, err: &BlockError, lba: u64, count: u64) {
        let command = atapi_command_name(self.units[u].cdb0);
        if let Some(drive) = self.units[u].drive.as_mut() {
            audit_io_error(&IoErrorAudit { drive: &drive.id, command, lba, sectors: count, errno: err.errno(), action: "report" });
            drive.stats.failed_rd_operations += 1;
        }
    }

    /// Re-run a held request (after `cont`). It may fail and be held again.
    pub fn restart_held(&mut self, ctx: &Ctx) {
        let Some(held) = self.held.take() else { return };
        for d in self.drives_mut() {
            d.io_status = "ok";
        }
        let u = held.unit;
        match held.retry {
            Retry::Pio { write, lba, nsector } => {
                // The registers are not trusted: a guest that kept running
                // may have rewritten them, and the buffered data belongs here.
                self.units[u].set_sector(lba);
                self.units[u].regs.nsector = nsector;
                if write {
                    self.sector_write(ctx, u)
                } else {
                    self.sector_read(ctx, u)
                }
            }
            Retry::Flush => self.flush(ctx, u),
            Retry::Dma { kind, lba, count } => {
                self.selected = u;
                self.units[u].set_sector(lba);
                self.units[u].regs.nsector = count;
                self.start_dma(ctx, DmaJob::Ata { unit: u, kind });
            }
            Retry::AtapiDma => {
                self.selected = u;
                self.start_dma(ctx, DmaJob::Atapi { unit: u });
            }
        }
    }

    // ---- command dispatch -----------------------------------------------

    fn exec_cmd(&mut self, ctx: &Ctx, cmd: u8) {
        let u = self.selected;
        if u == 1 && self.units[1].drive.is_none() {
            return;
        }
        let cd = self.units[u].is_cdrom();
        if self.units[u].regs.status & (BUSY_STAT | DRQ_STAT) != 0 && !(cmd == 0x08 && cd) {
            return;
        }
        if let Some(held) = self.held.take() {
            // Only reachable when the guest keeps running while "stopped"
            // (a Xen domain the machine could not pause). The held request
            // never signalled completion, so dropping it loses nothing the
            // guest was told was done.
            log::warn!("IDE channel: command {cmd:#04x} replaces a request held by the error policy ({held:?})");
        }
        if !command_permitted(cmd, cd) {
            self.rw_error(u);
            return;
        }
        self.units[u].command = cmd;
        self.units[u].regs.status = READY_STAT | BUSY_STAT;
        self.units[u].regs.error = 0;
        let complete = self.run_command(ctx, u, cmd);
        if complete {
            let r = &mut self.units[u].regs;
            r.status &= !BUSY_STAT;
            if sets_dsc(cmd) && r.error == 0 {
                r.status |= SEEK_STAT;
            }
            self.set_irq();
        }
    }

    /// Returns true when the command completed synchronously and the
    /// generic completion (BSY off, DSC, IRQ) applies.
    fn run_command(&mut self, ctx: &Ctx, u: usize, cmd: u8) -> bool {
        match cmd {
            0x06 => {
                if self.units[u].regs.feature == 0x01 && self.units[u].has_disk_medium() {
                    self.start_dma_command(ctx, u, AtaDma::Trim);
                    return false;
                }
                self.units[u].abort();
                true
            }
            0x08 => {
                self.units[u].transfer_stop();
                self.cancel_dma(u);
                self.units[u].reset();
                self.units[u].regs.status = 0;
                false
            }
            0x10 | 0x70 => true,
            0x20 | 0x21 | 0x24 | 0x29 | 0xc4 => {
                if self.units[u].is_cdrom() {
                    self.units[u].set_signature();
                    self.units[u].abort();
                    return true;
                }
                let multiple = matches!(cmd, 0x29 | 0xc4);
                let mult = self.units[u].drive.as_ref().map_or(0, |d| d.mult_sectors);
                if !self.units[u].has_disk_medium() || (multiple && mult == 0) {
                    self.units[u].abort();
                    return true;
                }
                self.units[u].lba48_transform(matches!(cmd, 0x24 | 0x29));
                self.units[u].req_nb_sectors = if multiple { mult as u32 } else { 1 };
                self.sector_read(ctx, u);
                false
            }
            0x30 | 0x31 | 0x34 | 0x3c | 0x39 | 0xc5 => {
                let multiple = matches!(cmd, 0x39 | 0xc5);
                let mult = self.units[u].drive.as_ref().map_or(0, |d| d.mult_sectors);
                if !self.units[u].has_disk_medium() || (multiple && mult == 0) {
                    self.units[u].abort();
                    return true;
                }
                let unit = &mut self.units[u];
                unit.lba48_transform(matches!(cmd, 0x34 | 0x39));
                unit.req_nb_sectors = if multiple { mult as u32 } else { 1 };
                let n = unit.regs.nsector.min(unit.req_nb_sectors) as usize;
                unit.regs.status = SEEK_STAT | READY_STAT;
                unit.transfer_start(n * SECTOR_SIZE, EndAction::SectorWrite);
                false
            }
            0x25 | 0xc8 | 0xc9 | 0x35 | 0xca | 0xcb => {
                if !self.units[u].has_disk_medium() {
                    self.units[u].abort();
                    return true;
                }
                self.units[u].lba48_transform(matches!(cmd, 0x25 | 0x35));
                let kind = if matches!(cmd, 0x25 | 0xc8 | 0xc9) { AtaDma::Read } else { AtaDma::Write };
                self.start_dma_command(ctx, u, kind);
                false
            }
            0x27 | 0xf8 => {
                let nb = self.units[u].nb_sectors();
                if nb == 0 {
                    self.units[u].abort();
                    return true;
                }
                self.units[u].lba48_transform(cmd == 0x27);
                self.units[u].set_sector(nb as i64 - 1);
                true
            }
            0x40..=0x42 => {
                self.units[u].lba48_transform(cmd == 0x42);
                true
            }
            0x90 => {
                self.exec_diagnostic(u);
                false
            }
            0x91 => {
                let unit = &mut self.units[u];
                match unit.drive.as_mut() {
                    // A sector count of 0 is accepted as on QEMU 7.2 (which
                    // then divides by zero on CHS access); CHS addressing
                    // refuses the unusable geometry here instead.
                    Some(d) if !d.is_cdrom() && d.backend.is_some() => {
                        d.geometry.heads = (unit.regs.select & DEV_HS) as u16 + 1;
                        d.geometry.sectors = (unit.regs.nsector & 0xff) as u16;
                    }
                    _ => unit.abort(),
                }
                true
            }
            0x94..=0x97 | 0x99 | 0xe0..=0xe3 | 0xe6 => true,
            0x98 | 0xe5 => {
                self.units[u].regs.nsector = 0xff;
                true
            }
            0xa0 => {
                let unit = &mut self.units[u];
                if unit.regs.feature & 0x02 != 0 {
                    unit.abort();
                    return true;
                }
                unit.regs.status = READY_STAT | SEEK_STAT;
                unit.atapi_dma = unit.regs.feature & 1 != 0;
                unit.regs.nsector = ATAPI_INT_REASON_CD;
                unit.transfer_start(12, EndAction::AtapiCommand);
                false
            }
            0xa1 => {
                self.units[u].load_identify();
                self.units[u].regs.status = READY_STAT | SEEK_STAT;
                self.units[u].transfer_start(512, EndAction::Stop);
                self.set_irq();
                false
            }
            0xb0 => self.smart(u),
            0xc6 => {
                let unit = &mut self.units[u];
                let n = (unit.regs.nsector & 0xff) as u16;
                match unit.drive.as_mut() {
                    Some(d) if n == 0 || (n <= MAX_MULT_SECTORS && n.is_power_of_two()) => d.mult_sectors = n,
                    _ => unit.abort(),
                }
                true
            }
            0xe7 | 0xea => {
                self.flush(ctx, u);
                false
            }
            0xec => {
                if self.units[u].drive.as_ref().is_some_and(|d| !d.is_cdrom()) && self.units[u].load_identify() {
                    self.units[u].regs.status = READY_STAT | SEEK_STAT;
                    self.units[u].transfer_start(512, EndAction::Stop);
                    self.set_irq();
                    return false;
                }
                if self.units[u].is_cdrom() {
                    self.units[u].set_signature();
                }
                self.units[u].abort();
                true
            }
            0xef => self.set_features(ctx, u),
            0xf5 => {
                self.units[u].regs.nsector = 0;
                true
            }
            _ => {
                self.units[u].abort();
                true
            }
        }
    }

    fn set_features(&mut self, ctx: &Ctx, u: usize) -> bool {
        let unit = &mut self.units[u];
        let Some(drive) = unit.drive.as_mut() else {
            unit.abort();
            return true;
        };
        let nsector = unit.regs.nsector;
        match unit.regs.feature {
            0x02 | 0x82 => {
                let enable = unit.regs.feature == 0x02;
                if let Some(b) = drive.backend.as_mut() {
                    b.set_guest_write_cache(enable);
                }
                if let Some(words) = drive.identify.as_mut() {
                    words[85] = if enable { (1 << 14) | (1 << 5) | 1 } else { (1 << 14) | 1 };
                }
                if enable {
                    return true;
                }
                self.flush(ctx, u);
                false
            }
            0xcc | 0x66 | 0xaa | 0x55 | 0x05 | 0x85 | 0x69 | 0x67 | 0x96 | 0x9a | 0x42 | 0xc2 => true,
            0x03 => {
                let val = (nsector & 7) as u16;
                let (w62, w63, w88) = match (nsector & 0xff) >> 3 {
                    0 | 1 => (0x07, 0x07, 0x3f),
                    2 => (0x07 | (1 << (val + 8)), 0x07, 0x3f),
                    4 => (0x07, 0x07 | (1 << (val + 8)), 0x3f),
                    8 => (0x07, 0x07, 0x3f | (1 << (val + 8))),
                    _ => {
                        unit.abort();
                        return true;
                    }
                };
                if let Some(words) = drive.identify.as_mut() {
                    words[62] = w62;
                    words[63] = w63;
                    words[88] = w88;
                }
                true
            }
            _ => {
                unit.abort();
                true
            }
        }
    }

    /// SMART as QEMU: ENABLE/DISABLE, STATUS (never failing), AUTOSAVE,
    /// READ DATA, READ THRESHOLDS and EXECUTE OFF-LINE. The self-test log
    /// is not emulated and aborts.
    fn smart(&mut self, u: usize) -> bool {
        let unit = &mut self.units[u];
        let r = &mut unit.regs;
        let Some(d) = unit.drive.as_mut() else {
            unit.abort();
            return true;
        };
        if r.hcyl != 0xc2 || r.lcyl != 0x4f || (!d.smart_enabled && r.feature != 0xd8) {
            unit.abort();
            return true;
        }
        match r.feature {
            0xd8 => d.smart_enabled = true,
            0xd9 => d.smart_enabled = false,
            0xd2 if r.sector == 0x00 => d.smart_autosave = false,
            0xd2 if r.sector == 0xf1 => d.smart_autosave = true,
            0xda => {}
            // Off-line data collection, short and extended self-test: QEMU
            // accepts them at once (the drive never fails a test).
            0xd4 if r.sector <= 2 => {}
            0xd0 | 0xd1 => {
                let block = smart_block(r.feature == 0xd1, d.smart_autosave);
                unit.pio.buf[..512].copy_from_slice(&block);
                unit.regs.status = READY_STAT | SEEK_STAT;
                unit.transfer_start(512, EndAction::Stop);
                self.set_irq();
                return false;
            }
            _ => unit.abort(),
        }
        true
    }

    fn exec_diagnostic(&mut self, u: usize) {
        let unit = &mut self.units[u];
        unit.set_signature();
        let cd = unit.is_cdrom();
        unit.regs.error = 0x01;
        unit.regs.select &= !(DEV_SELECT | DEV_LBA);
        if cd {
            unit.regs.status = 0;
        } else {
            unit.regs.status = READY_STAT | SEEK_STAT;
            self.set_irq();
        }
    }

    fn cancel_dma(&mut self, u: usize) {
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

    // ---- PIO sectors ------------------------------------------------------

    fn sector_read(&mut self, ctx: &Ctx, u: usize) {
        let unit = &mut self.units[u];
        unit.regs.status = READY_STAT | SEEK_STAT;
        unit.regs.error = 0;
        let sector = unit.get_sector();
        let remaining = unit.regs.nsector;
        if remaining == 0 {
            unit.transfer_stop();
            return;
        }
        let n = remaining.min(unit.req_nb_sectors).min(MAX_MULT_SECTORS as u32) as usize;
        if !unit.sect_range_ok(sector, n as u64) {
            self.rw_error(u);
            return;
        }
        let bytes = n * SECTOR_SIZE;
        let Some(backend) = unit.drive.as_mut().and_then(|d| d.backend.as_mut()) else {
            self.rw_error(u);
            return;
        };
        let started = Instant::now();
        if let Err(e) = backend.read_at(sector as u64 * SECTOR_SIZE as u64, &mut unit.pio.buf[..bytes]) {
            let retry = Retry::Pio { write: false, lba: sector, nsector: remaining };
            match self.host_error(ctx, u, &e, BlockOp::Read, sector as u64, n as u64, retry) {
                ErrorAction::Report => return self.rw_error(u),
                ErrorAction::Stop => return,
                ErrorAction::Ignore => {}
            }
        }
        let unit = &mut self.units[u];
        if let Some(d) = unit.drive.as_mut() {
            d.account(BlockOp::Read, bytes as u64, started);
        }
        unit.set_sector(sector + n as i64);
        unit.regs.nsector -= n as u32;
        unit.transfer_start(bytes, EndAction::SectorRead);
        self.set_irq();
    }

    fn sector_write(&mut self, ctx: &Ctx, u: usize) {
        let unit = &mut self.units[u];
        unit.regs.status = READY_STAT | SEEK_STAT | BUSY_STAT;
        let sector = unit.get_sector();
        let remaining = unit.regs.nsector;
        let n = remaining.min(unit.req_nb_sectors).min(MAX_MULT_SECTORS as u32) as usize;
        if !unit.sect_range_ok(sector, n as u64) {
            self.rw_error(u);
            return;
        }
        let bytes = n * SECTOR_SIZE;
        let Some(backend) = unit.drive.as_mut().and_then(|d| d.backend.as_mut()) else {
            self.rw_error(u);
            return;
        };
        let started = Instant::now();
        let result = backend.write_at(sector as u64 * SECTOR_SIZE as u64, &unit.pio.buf[..bytes]);
        unit.regs.status &= !BUSY_STAT;
        if let Err(e) = result {
            let retry = Retry::Pio { write: true, lba: sector, nsector: remaining };
            match self.host_error(ctx, u, &e, BlockOp::Write, sector as u64, n as u64, retry) {
                ErrorAction::Report => return self.rw_error(u),
                ErrorAction::Stop => return,
                ErrorAction::Ignore => {}
            }
        }
        let unit = &mut self.units[u];
        if let Some(d) = unit.drive.as_mut() {
            d.account(BlockOp::Write, bytes as u64, started);
        }
        unit.regs.nsector -= n as u32;
        unit.set_sector(sector + n as i64);
        if unit.regs.nsector == 0 {
            unit.transfer_stop();
        } else {
            let next = unit.regs.nsector.min(unit.req_nb_sectors) as usize;
            unit.transfer_start(next * SECTOR_SIZE, EndAction::SectorWrite);
        }
        self.set_irq();
    }

    fn flush(&mut self, ctx: &Ctx, u: usize) {
        let unit = &mut self.units[u];
        if unit.drive.as_ref().is_some_and(|d| d.backend.is_none()) {
            // A drive without a medium: QEMU's flush of an empty block
            // backend fails with ENOMEDIUM and goes through the policy.
            let err = BlockError::NoMedium;
            match self.host_error(ctx, u, &err, BlockOp::Flush, 0, 0, Retry::Flush) {
                ErrorAction::Report => return self.rw_error(u),
                ErrorAction::Stop => return,
                ErrorAction::Ignore => {}
            }
        } else if let Some(backend) = unit.drive.as_mut().and_then(|d| d.backend.as_mut()) {
            unit.regs.status |= BUSY_STAT;
            let started = Instant::now();
            if let Err(e) = backend.flush() {
                match self.host_error(ctx, u, &e, BlockOp::Flush, 0, 0, Retry::Flush) {
                    ErrorAction::Report => return self.rw_error(u),
                    ErrorAction::Stop => return,
                    ErrorAction::Ignore => {}
                }
            }
            if let Some(d) = self.units[u].drive.as_mut() {
                d.account(BlockOp::Flush, 0, started);
            }
        }
        self.units[u].regs.status = READY_STAT | SEEK_STAT;
        self.set_irq();
    }

    // ---- bus-master DMA -------------------------------------------------

    fn start_dma_command(&mut self, ctx: &Ctx, u: usize, kind: AtaDma) {
        self.units[u].regs.status = READY_STAT | SEEK_STAT | DRQ_STAT;
        self.start_dma(ctx, DmaJob::Ata { unit: u, kind });
    }

    fn start_dma(&mut self, ctx: &Ctx, job: DmaJob) {
        self.pending = Some(job);
        if self.bm.active() {
            self.run_pending(ctx);
        }
    }

    fn run_pending(&mut self, ctx: &Ctx) {
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

    // ---- ATAPI transport --------------------------------------------------

    fn atapi_ok(&mut self, u: usize) {
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

    fn atapi_io_error(&mut self, u: usize, errno: i32) {
        let sense = match self.units[u].drive.as_mut() {
            Some(d) => d.atapi.host_error(errno),
            None => Sense { key: 5, asc: 0x21, ascq: 0 },
        };
        self.atapi_error(u, sense);
    }

    fn atapi_command(&mut self, ctx: &Ctx, u: usize) {
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

    fn atapi_reply_end(&mut self, _ctx: &Ctx, u: usize) {
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
        let started = Instant::now();
        let data = match &xfer.source {
            AtapiSource::Data(data) => Ok(slice_at(data, xfer.offset, size)),
            AtapiSource::Medium { lba, raw } => self.units[u].read_medium(*lba, *raw, xfer.offset, size),
        };
        match data {
            Ok(data) => self.units[u].pio.buf[..size].copy_from_slice(&data),
            Err(e) => {
                // QEMU 7.2 reports a CD-ROM PIO read error straight to the
                // guest (sense data), without rerror or a QMP event; we do
                // the same and still audit it.
                let (lba, blocks) = atapi_extent(&xfer, size);
                self.audit_reported_error(u, &e, lba, blocks);
                return self.atapi_io_error(u, e.errno());
            }
        }
        let unit = &mut self.units[u];
        if let (Some(d), AtapiSource::Medium { .. }) = (unit.drive.as_mut(), &xfer.source) {
            d.account(BlockOp::Read, size as u64, started);
        }
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

/// `len` bytes of a reply from `offset`, zero-filled past its end (the
/// transfer bookkeeping never asks for that, but a guest cannot make it
/// panic either).
fn slice_at(data: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let start = (offset as usize).min(data.len());
    let avail = (data.len() - start).min(len);
    out[..avail].copy_from_slice(&data[start..start + avail]);
    out
}

/// The CD blocks a transfer step touches, for the audit line.
fn atapi_extent(xfer: &AtapiTransfer, size: usize) -> (u64, u64) {
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

/// QEMU's ide_cmd_table permissions: which opcodes a disk or a CD takes.
fn command_permitted(cmd: u8, cdrom: bool) -> bool {
    const BOTH: &[u8] = &[0x20, 0x90, 0xe7, 0xec, 0xef];
    const CD_ONLY: &[u8] = &[0x08, 0xa0, 0xa1];
    const HD_ONLY: &[u8] = &[
        0x06, 0x10, 0x21, 0x24, 0x25, 0x27, 0x29, 0x30, 0x31, 0x34, 0x35, 0x39, 0x3c, 0x40, 0x41, 0x42, 0x70, 0x91,
        0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0xb0, 0xc4, 0xc5, 0xc6, 0xc8, 0xc9, 0xca, 0xcb, 0xe0, 0xe1, 0xe2, 0xe3, 0xe5,
        0xe6, 0xea, 0xf5, 0xf8,
    ];
    BOTH.contains(&cmd) || if cdrom { CD_ONLY.contains(&cmd) } else { HD_ONLY.contains(&cmd) }
}

fn sets_dsc(cmd: u8) -> bool {
    matches!(cmd, 0x10 | 0x27 | 0x40 | 0x41 | 0x42 | 0x70 | 0x91 | 0x98 | 0xb0 | 0xc6 | 0xe5 | 0xef | 0xf5 | 0xf8)
}

impl Channel {
    /// The unit whose request a `stop` policy holds, if any.
    pub fn held_unit(&self) -> Option<usize> {
        self.held.as_ref().map(|h| h.unit)
    }
}
