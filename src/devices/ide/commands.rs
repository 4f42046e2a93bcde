//! ATA command dispatch and the commands that move no sector data
//! through the host: SET FEATURES, SMART, EXECUTE DEVICE DIAGNOSTIC,
//! IDENTIFY and the register-only ones.

use super::channel::{Channel, Ctx};
use super::dma::AtaDma;
use super::identify::{self, MAX_MULT_SECTORS};
use super::pio::EndAction;
use super::regs::*;

/// SMART attributes QEMU reports: id, flags, value, worst, raw (6 bytes),
/// threshold (read back from QEMU 7.2 with SMART READ DATA / THRESHOLDS).
pub(super) const SMART_ATTRIBUTES: [(u8, u8, u8, u8, [u8; 6], u8); 7] = [
    (0x01, 0x03, 0x64, 0x64, [0; 6], 0x06),
    (0x03, 0x03, 0x64, 0x64, [0x10, 0, 0, 0, 0, 0], 0x00),
    (0x04, 0x02, 0x64, 0x64, [0x64, 0, 0, 0, 0, 0], 0x14),
    (0x05, 0x03, 0x64, 0x64, [0; 6], 0x24),
    (0x09, 0x03, 0x64, 0x64, [0x01, 0, 0, 0, 0, 0], 0x00),
    (0x0c, 0x03, 0x64, 0x64, [0; 6], 0x00),
    (190, 0x03, 0x45, 0x45, [0x1f, 0x00, 0x1f, 0x1f, 0, 0], 0x32),
];

pub(super) fn smart_block(thresholds: bool, autosave: bool) -> [u8; 512] {
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

impl Unit {
    fn identify_data(&mut self) -> Option<[u16; 256]> {
        let d = self.drive.as_mut()?;
        if d.identify.is_none() {
            let words = if d.is_cdrom() {
                identify::atapi_identify(&d.identity)
            } else {
                let nb = d.nb_sectors();
                let write_cache = d.medium.is_some() && d.write_cache;
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
}

impl Channel {
    pub(super) fn exec_cmd(&mut self, ctx: &Ctx, cmd: u8) {
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
                    Some(d) if !d.is_cdrom() && d.medium.is_some() => {
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
                drive.write_cache = enable;
                if let Some(m) = drive.medium.as_ref() {
                    m.lock().set_guest_write_cache(enable);
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

    pub(super) fn exec_diagnostic(&mut self, u: usize) {
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
}

pub(super) fn ata_command_name(cmd: u8) -> &'static str {
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

/// QEMU's ide_cmd_table permissions: which opcodes a disk or a CD takes.
pub(super) fn command_permitted(cmd: u8, cdrom: bool) -> bool {
    const BOTH: &[u8] = &[0x20, 0x90, 0xe7, 0xec, 0xef];
    const CD_ONLY: &[u8] = &[0x08, 0xa0, 0xa1];
    const HD_ONLY: &[u8] = &[
        0x06, 0x10, 0x21, 0x24, 0x25, 0x27, 0x29, 0x30, 0x31, 0x34, 0x35, 0x39, 0x3c, 0x40, 0x41, 0x42, 0x70, 0x91,
        0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0xb0, 0xc4, 0xc5, 0xc6, 0xc8, 0xc9, 0xca, 0xcb, 0xe0, 0xe1, 0xe2, 0xe3, 0xe5,
        0xe6, 0xea, 0xf5, 0xf8,
    ];
    BOTH.contains(&cmd) || if cdrom { CD_ONLY.contains(&cmd) } else { HD_ONLY.contains(&cmd) }
}

pub(super) fn sets_dsc(cmd: u8) -> bool {
    matches!(cmd, 0x10 | 0x27 | 0x40 | 0x41 | 0x42 | 0x70 | 0x91 | 0x98 | 0xb0 | 0xc6 | 0xe5 | 0xef | 0xf5 | 0xf8)
}
