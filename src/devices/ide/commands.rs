//! ATA command dispatch and the commands that move no sector data
//! through the host: SET FEATURES, SMART, EXECUTE DEVICE DIAGNOSTIC,
//! IDENTIFY and the register-only ones.

use super::channel::{Channel, Ctx};
use super::dma::AtaDma;
use super::identify::{self, MAX_MULT_SECTORS};
use super::pio::EndAction;
use super::regs::{ATAPI_INT_REASON_CD, BUSY_STAT, DEV_HS, DEV_LBA, DEV_SELECT, DRQ_STAT, READY_STAT, SECTOR_SIZE, SEEK_STAT, Unit};

/// DEVICE RESET is the one command a busy device takes (CD-ROM only).
const DEVICE_RESET: u8 = 0x08;
/// PACKET: the ATAPI command is in the CDB, not in the opcode.
pub(super) const PACKET: u8 = 0xa0;

/// How `run_command` carries out an opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    /// TRIM ranges by DMA (feature 0x01 only).
    DataSetManagement,
    DeviceReset,
    /// Accepted and completed with nothing to do (RECALIBRATE, SEEK, the
    /// power management commands).
    Nop,
    ReadPio { lba48: bool, multiple: bool },
    WritePio { lba48: bool, multiple: bool },
    Dma { kind: AtaDma, lba48: bool },
    ReadNativeMaxAddress { lba48: bool },
    /// Nothing is read: the sector check QEMU skips is skipped here too.
    VerifySectors { lba48: bool },
    ExecuteDeviceDiagnostic,
    InitializeDeviceParameters,
    /// The drive is always active or idle.
    CheckPowerMode,
    Packet,
    IdentifyPacketDevice,
    Smart,
    SetMultipleMode,
    FlushCache,
    IdentifyDevice,
    SetFeatures,
    /// 0xf5: the sector count reads back as 0.
    ClearSectorCount,
}

/// One ATA opcode as QEMU 7.2's ide_cmd_table treats it.
struct AtaCommand {
    opcode: u8,
    /// As audit lines print it.
    name: &'static str,
    disk: bool,
    cdrom: bool,
    /// DSC (SEEK_STAT) goes on when the command completes without error.
    sets_dsc: bool,
    handler: Handler,
}

impl AtaCommand {
    fn permitted(&self, cdrom: bool) -> bool {
        if cdrom {
            self.cdrom
        } else {
            self.disk
        }
    }
}

/// What `ata_command_name` gives for the commands that never do host I/O,
/// and so never appear in an audit line.
const UNNAMED: &str = "ATA COMMAND";

const DISK: (bool, bool) = (true, false);
const CD: (bool, bool) = (false, true);
const BOTH: (bool, bool) = (true, true);
const SET_DSC: bool = true;
const NO_DSC: bool = false;

const fn row(opcode: u8, name: &'static str, (disk, cdrom): (bool, bool), sets_dsc: bool, handler: Handler) -> AtaCommand {
    AtaCommand { opcode, name, disk, cdrom, sets_dsc, handler }
}

const fn read_pio(lba48: bool, multiple: bool) -> Handler {
    Handler::ReadPio { lba48, multiple }
}

const fn write_pio(lba48: bool, multiple: bool) -> Handler {
    Handler::WritePio { lba48, multiple }
}

const fn dma(kind: AtaDma, lba48: bool) -> Handler {
    Handler::Dma { kind, lba48 }
}

/// Every opcode we handle, sorted; any other one aborts.
const ATA_COMMANDS: &[AtaCommand] = &[
    row(0x06, "DATA SET MANAGEMENT", DISK, NO_DSC, Handler::DataSetManagement),
    row(DEVICE_RESET, UNNAMED, CD, NO_DSC, Handler::DeviceReset),
    row(0x10, UNNAMED, DISK, SET_DSC, Handler::Nop), // RECALIBRATE
    row(0x20, "READ SECTORS", BOTH, NO_DSC, read_pio(false, false)),
    row(0x21, "READ SECTORS", DISK, NO_DSC, read_pio(false, false)), // without retries
    row(0x24, "READ SECTORS EXT", DISK, NO_DSC, read_pio(true, false)),
    row(0x25, "READ DMA EXT", DISK, NO_DSC, dma(AtaDma::Read, true)),
    row(0x27, UNNAMED, DISK, SET_DSC, Handler::ReadNativeMaxAddress { lba48: true }),
    row(0x29, "READ MULTIPLE EXT", DISK, NO_DSC, read_pio(true, true)),
    row(0x30, "WRITE SECTORS", DISK, NO_DSC, write_pio(false, false)),
    row(0x31, "WRITE SECTORS", DISK, NO_DSC, write_pio(false, false)), // without retries
    row(0x34, "WRITE SECTORS EXT", DISK, NO_DSC, write_pio(true, false)),
    row(0x35, "WRITE DMA EXT", DISK, NO_DSC, dma(AtaDma::Write, true)),
    row(0x39, "WRITE MULTIPLE EXT", DISK, NO_DSC, write_pio(true, true)),
    row(0x3c, "WRITE VERIFY", DISK, NO_DSC, write_pio(false, false)),
    row(0x40, UNNAMED, DISK, SET_DSC, Handler::VerifySectors { lba48: false }),
    row(0x41, UNNAMED, DISK, SET_DSC, Handler::VerifySectors { lba48: false }), // without retries
    row(0x42, UNNAMED, DISK, SET_DSC, Handler::VerifySectors { lba48: true }),
    row(0x70, UNNAMED, DISK, SET_DSC, Handler::Nop), // SEEK
    row(0x90, UNNAMED, BOTH, NO_DSC, Handler::ExecuteDeviceDiagnostic),
    row(0x91, UNNAMED, DISK, SET_DSC, Handler::InitializeDeviceParameters),
    row(0x94, UNNAMED, DISK, NO_DSC, Handler::Nop), // STANDBY IMMEDIATE (ATA-1 opcode)
    row(0x95, UNNAMED, DISK, NO_DSC, Handler::Nop), // IDLE IMMEDIATE (ATA-1)
    row(0x96, UNNAMED, DISK, NO_DSC, Handler::Nop), // STANDBY (ATA-1)
    row(0x97, UNNAMED, DISK, NO_DSC, Handler::Nop), // IDLE (ATA-1)
    row(0x98, UNNAMED, DISK, SET_DSC, Handler::CheckPowerMode), // ATA-1 opcode
    row(0x99, UNNAMED, DISK, NO_DSC, Handler::Nop), // SLEEP (ATA-1)
    row(PACKET, "PACKET", CD, NO_DSC, Handler::Packet),
    row(0xa1, UNNAMED, CD, NO_DSC, Handler::IdentifyPacketDevice),
    row(0xb0, UNNAMED, DISK, SET_DSC, Handler::Smart),
    row(0xc4, "READ MULTIPLE", DISK, NO_DSC, read_pio(false, true)),
    row(0xc5, "WRITE MULTIPLE", DISK, NO_DSC, write_pio(false, true)),
    row(0xc6, UNNAMED, DISK, SET_DSC, Handler::SetMultipleMode),
    row(0xc8, "READ DMA", DISK, NO_DSC, dma(AtaDma::Read, false)),
    row(0xc9, "READ DMA", DISK, NO_DSC, dma(AtaDma::Read, false)), // without retries
    row(0xca, "WRITE DMA", DISK, NO_DSC, dma(AtaDma::Write, false)),
    row(0xcb, "WRITE DMA", DISK, NO_DSC, dma(AtaDma::Write, false)), // without retries
    row(0xe0, UNNAMED, DISK, NO_DSC, Handler::Nop), // STANDBY IMMEDIATE
    row(0xe1, UNNAMED, DISK, NO_DSC, Handler::Nop), // IDLE IMMEDIATE
    row(0xe2, UNNAMED, DISK, NO_DSC, Handler::Nop), // STANDBY
    row(0xe3, UNNAMED, DISK, NO_DSC, Handler::Nop), // IDLE
    row(0xe5, UNNAMED, DISK, SET_DSC, Handler::CheckPowerMode),
    row(0xe6, UNNAMED, DISK, NO_DSC, Handler::Nop), // SLEEP
    row(0xe7, "FLUSH CACHE", BOTH, NO_DSC, Handler::FlushCache),
    row(0xea, "FLUSH CACHE EXT", DISK, NO_DSC, Handler::FlushCache),
    row(0xec, UNNAMED, BOTH, NO_DSC, Handler::IdentifyDevice),
    row(0xef, "SET FEATURES", BOTH, SET_DSC, Handler::SetFeatures),
    row(0xf5, UNNAMED, DISK, SET_DSC, Handler::ClearSectorCount),
    row(0xf8, UNNAMED, DISK, SET_DSC, Handler::ReadNativeMaxAddress { lba48: false }),
];

fn lookup(cmd: u8) -> Option<&'static AtaCommand> {
    ATA_COMMANDS.binary_search_by_key(&cmd, |c| c.opcode).ok().map(|i| &ATA_COMMANDS[i])
}

pub(super) fn ata_command_name(cmd: u8) -> &'static str {
    lookup(cmd).map_or(UNNAMED, |c| c.name)
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
        if self.units[u].regs.status & (BUSY_STAT | DRQ_STAT) != 0 && !(cmd == DEVICE_RESET && cd) {
            return;
        }
        if let Some(held) = self.held.take() {
            // Only reachable when the guest keeps running while "stopped"
            // (a Xen domain the machine could not pause). The held request
            // never signalled completion, so dropping it loses nothing the
            // guest was told was done.
            log::warn!("IDE channel: command {cmd:#04x} replaces a request held by the error policy ({held:?})");
        }
        let Some(command) = lookup(cmd).filter(|c| c.permitted(cd)) else {
            self.rw_error(u);
            return;
        };
        self.units[u].command = cmd;
        self.units[u].regs.status = READY_STAT | BUSY_STAT;
        self.units[u].regs.error = 0;
        let complete = self.run_command(ctx, u, command.handler);
        if complete {
            let r = &mut self.units[u].regs;
            r.status &= !BUSY_STAT;
            if command.sets_dsc && r.error == 0 {
                r.status |= SEEK_STAT;
            }
            self.set_irq();
        }
    }

    /// Returns true when the command completed synchronously and the
    /// generic completion (BSY off, DSC, IRQ) applies.
    fn run_command(&mut self, ctx: &Ctx, u: usize, handler: Handler) -> bool {
        match handler {
            Handler::DataSetManagement => {
                if self.units[u].regs.feature == 0x01 && self.units[u].has_disk_medium() {
                    self.start_dma_command(ctx, u, AtaDma::Trim);
                    return false;
                }
                self.units[u].abort();
                true
            }
            Handler::DeviceReset => {
                self.units[u].transfer_stop();
                self.cancel_dma(u);
                self.units[u].reset();
                self.units[u].regs.status = 0;
                false
            }
            Handler::Nop => true,
            Handler::ReadPio { lba48, multiple } => {
                if self.units[u].is_cdrom() {
                    self.units[u].set_signature();
                    self.units[u].abort();
                    return true;
                }
                let mult = self.units[u].drive.as_ref().map_or(0, |d| d.mult_sectors);
                if !self.units[u].has_disk_medium() || (multiple && mult == 0) {
                    self.units[u].abort();
                    return true;
                }
                self.units[u].lba48_transform(lba48);
                self.units[u].req_nb_sectors = if multiple { mult as u32 } else { 1 };
                self.sector_read(ctx, u);
                false
            }
            Handler::WritePio { lba48, multiple } => {
                let mult = self.units[u].drive.as_ref().map_or(0, |d| d.mult_sectors);
                if !self.units[u].has_disk_medium() || (multiple && mult == 0) {
                    self.units[u].abort();
                    return true;
                }
                let unit = &mut self.units[u];
                unit.lba48_transform(lba48);
                unit.req_nb_sectors = if multiple { mult as u32 } else { 1 };
                let n = unit.regs.nsector.min(unit.req_nb_sectors) as usize;
                unit.regs.status = SEEK_STAT | READY_STAT;
                unit.transfer_start(n * SECTOR_SIZE, EndAction::SectorWrite);
                false
            }
            Handler::Dma { kind, lba48 } => {
                if !self.units[u].has_disk_medium() {
                    self.units[u].abort();
                    return true;
                }
                self.units[u].lba48_transform(lba48);
                self.start_dma_command(ctx, u, kind);
                false
            }
            Handler::ReadNativeMaxAddress { lba48 } => {
                let nb = self.units[u].nb_sectors();
                if nb == 0 {
                    self.units[u].abort();
                    return true;
                }
                self.units[u].lba48_transform(lba48);
                self.units[u].set_sector(nb as i64 - 1);
                true
            }
            Handler::VerifySectors { lba48 } => {
                self.units[u].lba48_transform(lba48);
                true
            }
            Handler::ExecuteDeviceDiagnostic => {
                self.exec_diagnostic(u);
                false
            }
            Handler::InitializeDeviceParameters => {
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
            Handler::CheckPowerMode => {
                self.units[u].regs.nsector = 0xff;
                true
            }
            Handler::Packet => {
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
            Handler::IdentifyPacketDevice => {
                self.units[u].load_identify();
                self.units[u].regs.status = READY_STAT | SEEK_STAT;
                self.units[u].transfer_start(512, EndAction::Stop);
                self.set_irq();
                false
            }
            Handler::Smart => self.smart(u),
            Handler::SetMultipleMode => {
                let unit = &mut self.units[u];
                let n = (unit.regs.nsector & 0xff) as u16;
                match unit.drive.as_mut() {
                    Some(d) if n == 0 || (n <= MAX_MULT_SECTORS && n.is_power_of_two()) => d.mult_sectors = n,
                    _ => unit.abort(),
                }
                true
            }
            Handler::FlushCache => {
                self.flush(ctx, u);
                false
            }
            Handler::IdentifyDevice => {
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
            Handler::SetFeatures => self.set_features(ctx, u),
            Handler::ClearSectorCount => {
                self.units[u].regs.nsector = 0;
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

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        for pair in ATA_COMMANDS.windows(2) {
            assert!(pair[0].opcode < pair[1].opcode, "{:#04x} before {:#04x}", pair[0].opcode, pair[1].opcode);
        }
    }
}
