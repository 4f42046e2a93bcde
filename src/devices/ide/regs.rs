//! The taskfile of one device position: its register file, the LBA and
//! CHS views of the addressed sector, the signature, and the DRQ window
//! that the data port moves through.

use super::atapi_transport::AtapiTransfer;
use super::drive::Drive;
use super::identify::MAX_MULT_SECTORS;
use super::pio::{EndAction, Pio};

pub(super) const ERR_STAT: u8 = 0x01;
pub(super) const DRQ_STAT: u8 = 0x08;
pub(super) const SEEK_STAT: u8 = 0x10;
pub(super) const READY_STAT: u8 = 0x40;
pub(super) const BUSY_STAT: u8 = 0x80;
const ABRT_ERR: u8 = 0x04;

pub(super) const DEV_HS: u8 = 0x0f;
pub(super) const DEV_SELECT: u8 = 0x10;
pub(super) const DEV_LBA: u8 = 0x40;
pub(super) const DEV_ALWAYS_ON: u8 = 0xa0;

pub(super) const ATAPI_INT_REASON_CD: u32 = 0x01;
pub(super) const ATAPI_INT_REASON_IO: u32 = 0x02;

pub(super) const SECTOR_SIZE: usize = 512;
/// Largest PIO data block: 16 sectors (multiple mode), an ATAPI chunk of
/// at most 0xfffe bytes, IDENTIFY data or a CDB all fit.
pub(super) const PIO_BUFFER_SIZE: usize = 0x10000;
/// READ/WRITE DMA EXT with count 0 means 65536 sectors: 32 MiB.
pub(super) const MAX_REQUEST_SECTORS: u32 = 65536;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Regs {
    pub(super) feature: u8,
    pub(super) hob_feature: u8,
    /// Wider than the register: the remaining sector count of a command.
    pub(super) nsector: u32,
    pub(super) hob_nsector: u8,
    pub(super) sector: u8,
    pub(super) hob_sector: u8,
    pub(super) lcyl: u8,
    pub(super) hob_lcyl: u8,
    pub(super) hcyl: u8,
    pub(super) hob_hcyl: u8,
    pub(super) select: u8,
    pub(super) status: u8,
    pub(super) error: u8,
    lba48: bool,
}

pub(super) struct Unit {
    pub(super) regs: Regs,
    pub(super) pio: Pio,
    pub(super) drive: Option<Drive>,
    pub(super) req_nb_sectors: u32,
    pub(super) command: u8,
    pub(super) cdb0: u8,
    pub(super) atapi_dma: bool,
    pub(super) atapi_xfer: Option<AtapiTransfer>,
}

impl Unit {
    pub(super) fn new(drive: Option<Drive>) -> Self {
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

    pub(super) fn is_cdrom(&self) -> bool {
        self.drive.as_ref().is_some_and(Drive::is_cdrom)
    }

    pub(super) fn has_disk_medium(&self) -> bool {
        self.drive.as_ref().is_some_and(|d| !d.is_cdrom() && d.medium.is_some())
    }

    pub(super) fn nb_sectors(&self) -> u64 {
        self.drive.as_ref().map_or(0, Drive::nb_sectors)
    }

    fn geometry(&self) -> (u64, u64) {
        self.drive.as_ref().map_or((0, 0), |d| (d.geometry.heads as u64, d.geometry.sectors as u64))
    }

    pub(super) fn set_signature(&mut self) {
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

    pub(super) fn transfer_start(&mut self, len: usize, action: EndAction) {
        self.pio.pos = 0;
        self.pio.end = len.min(PIO_BUFFER_SIZE);
        self.pio.action = action;
        if self.regs.status & ERR_STAT == 0 {
            self.regs.status |= DRQ_STAT;
        }
    }

    pub(super) fn transfer_stop(&mut self) {
        self.pio.pos = 0;
        self.pio.end = 0;
        self.pio.action = EndAction::Stop;
        self.regs.status &= !DRQ_STAT;
    }

    pub(super) fn abort(&mut self) {
        self.transfer_stop();
        self.regs.status = READY_STAT | ERR_STAT;
        self.regs.error = ABRT_ERR;
    }

    /// QEMU's ide_reset for one position.
    pub(super) fn reset(&mut self) {
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

    pub(super) fn lba48_transform(&mut self, lba48: bool) {
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
    pub(super) fn get_sector(&self) -> i64 {
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

    pub(super) fn set_sector(&mut self, sector_num: i64) {
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

    pub(super) fn sect_range_ok(&self, sector: i64, count: u64) -> bool {
        let total = self.nb_sectors();
        sector >= 0 && (sector as u64) <= total && count <= total - sector as u64
    }

    pub(super) fn byte_count_limit(&self) -> u64 {
        let bcl = self.regs.lcyl as u64 | ((self.regs.hcyl as u64) << 8);
        if bcl == 0xffff {
            0xfffe
        } else {
            bcl
        }
    }
}
