//! PIIX3 IDE: ATA disks, ATAPI CD-ROM, bus-master DMA.
//!
//! The controller is one PCI function (8086:7010) with two legacy channels
//! (0x1f0/0x3f6 on IRQ 14, 0x170/0x376 on IRQ 15) and a 16-byte bus-master
//! block behind BAR4. Guest-visible values follow QEMU 7.2 as measured in
//! ide-behaviour.md; host errors go through each drive's werror/rerror.

pub mod atapi;
pub mod bmdma;
mod atapi_transport;
mod channel;
mod commands;
mod dma;
mod drive;
mod host_io;
mod info;
pub use host_io::wait_idle;
pub mod identify;
mod requests;
mod pio;
mod policy;
mod regs;
mod savestate;
pub use savestate::IdeState;
mod unplug;

use crate::block::{BlockBackend, BlockError, CacheMode, ErrorPolicy};
use crate::devices::bus::BusDevice;
use crate::devices::pci::config::{self, ConfigSpace};
use crate::devices::pci::{ConfigWriteResult, IoBar, PciFunction};
pub use info::{BlockStats, DriveInfo, InsertedMedium};
use crate::vm::{Event, GuestMemory, IrqLine, VmControl};
use crate::block::engine::Medium;
use channel::{Channel, Ctx};
use requests::CompletionQueue;
use drive::Drive;
use identify::{guess_geometry, Identity, MAX_MULT_SECTORS};
use std::sync::Arc;
use thiserror::Error;

pub const PRIMARY_CMD_BASE: u64 = 0x1f0;
pub const PRIMARY_CTRL_BASE: u64 = 0x3f6;
pub const SECONDARY_CMD_BASE: u64 = 0x170;
pub const SECONDARY_CTRL_BASE: u64 = 0x376;
pub const BMDMA_BAR: usize = 4;
pub const BMDMA_LEN: u16 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Disk,
    Cdrom,
}

pub struct DriveConfig {
    /// "ide0-hd0" or -drive id=.
    pub id: String,
    pub media: MediaKind,
    /// None = empty CD-ROM drive.
    pub backend: Option<Box<dyn BlockBackend>>,
    /// For query-block.
    pub filename: String,
    pub cache: CacheMode,
    pub werror: ErrorPolicy,
    pub rerror: ErrorPolicy,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdeError {
    #[error("Device '{0}' not found")]
    NoSuchDevice(String),
    #[error("Device '{0}' is not removable")]
    NotRemovable(String),
    #[error("Device '{0}' is locked and force was not specified, wait for tray to open and try again")]
    Locked(String),
}

pub struct IdeController {
    config: ConfigSpace,
    channels: [Channel; 2],
    mem: Arc<dyn GuestMemory>,
    vm: VmControl,
    /// Completions of every drive's requests, applied in arrival order.
    completions: Arc<CompletionQueue>,
    /// Between `begin_guest_request` and `end_guest_request`: completions
    /// wait, so no command finishes in the middle of one guest request.
    serving_guest_request: bool,
    /// The host pauses the whole guest for an I/O-error hold (the Xen
    /// front's domain pause): requests that still reach us were issued
    /// before the pause took hold and are served instead of left waiting.
    serve_while_held: bool,
    /// Disks the guest unplugged whose flush failed under a `stop` policy:
    /// off the bus, kept until a flush succeeds (unplug.rs).
    unplug_held: Vec<Drive>,
}

fn build_drive(position: usize, cfg: DriveConfig) -> Drive {
    let cdrom = cfg.media == MediaKind::Cdrom;
    let mut identity = Identity::default_for(position, cdrom);
    if let Some(s) = cfg.serial {
        identity.serial = s;
    }
    if let Some(m) = cfg.model {
        identity.model = m;
    }
    if let Some(v) = cfg.version {
        identity.firmware = v;
    }
    let mut backend = cfg.backend;
    let write_cache = backend.as_ref().is_some_and(|b| b.guest_write_cache());
    let geometry = match backend.as_mut() {
        Some(b) if !cdrom => {
            let nb = b.size() / 512;
            let mut first = [0u8; 512];
            let mbr = (nb > 0 && b.read_at(0, &mut first).is_ok()).then_some(&first);
            guess_geometry(nb, mbr)
        }
        _ => guess_geometry(0, None),
    };
    let mut atapi = atapi::AtapiState::new();
    atapi.set_serial(&identity.serial);
    Drive {
        id: cfg.id,
        media: cfg.media,
        medium: backend.map(Medium::new),
        queue: None,
        filename: cfg.filename,
        cache: cfg.cache,
        werror: cfg.werror,
        rerror: cfg.rerror,
        identity,
        default_geometry: geometry,
        geometry,
        mult_sectors: MAX_MULT_SECTORS,
        identify: None,
        atapi,
        stats: Default::default(),
        io_status: "ok",
        smart_enabled: true,
        smart_autosave: true,
        write_cache,
        failed_permanently: false,
    }
}

fn piix3_config() -> ConfigSpace {
    // QEMU's generic header: every device-specific byte is writable
    // (ata_piix needs the IDE timing registers 0x40-0x43, decode enable in
    // bit 7 of 0x41/0x43, and 0x44) and the subsystem is QEMU's 1af4:1100.
    let mut c = crate::devices::pci::qemu_header::qemu_config_space(0x8086, 0x7010, 0x010180, 0);
    c.init_io_bar(BMDMA_BAR, BMDMA_LEN as u32);
    // QEMU's piix_ide_reset: COMMAND 0 (the PIIX3/4 default), STATUS
    // DEVSEL medium | fast back-to-back, BMIBA unassigned.
    c.set_u16(config::COMMAND, 0);
    c.set_u16(config::STATUS, 0x0280);
    c.set_u32(config::BAR0 + 4 * BMDMA_BAR, 1);
    c
}

impl IdeController {
    /// drives[i]: i = channel*2 + unit (0 = primary master .. 3 = secondary slave)
    pub fn new(drives: [Option<DriveConfig>; 4], mem: Arc<dyn GuestMemory>, irqs: [Arc<dyn IrqLine>; 2], vm: VmControl) -> Self {
        let [d0, d1, d2, d3] = drives;
        let [irq14, irq15] = irqs;
        let mk = |pos: usize, d: Option<DriveConfig>| d.map(|cfg| build_drive(pos, cfg));
        let completions = Arc::new(CompletionQueue::default());
        IdeController {
            config: piix3_config(),
            channels: [
                Channel::new(0, [mk(0, d0), mk(1, d1)], irq14, completions.clone()),
                Channel::new(1, [mk(2, d2), mk(3, d3)], irq15, completions.clone()),
            ],
            mem,
            vm,
            completions,
            serving_guest_request: false,
            serve_while_held: false,
            unplug_held: Vec::new(),
        }
    }

    /// The per-access context and the channels, borrowed side by side (a
    /// port access is the hot path: no reference counts are touched).
    fn ctx_and_channels(&mut self) -> (Ctx<'_>, &mut [Channel; 2]) {
        let bus_master = self.config.command() & config::COMMAND_MASTER != 0;
        (Ctx { mem: &*self.mem, vm: &self.vm, bus_master }, &mut self.channels)
    }


    pub fn has_held_request(&self) -> bool {
        self.channels.iter().any(Channel::has_held_request) || !self.unplug_held.is_empty()
    }

    /// Ids of the drives whose requests a `stop` policy holds (one per
    /// channel at most), so a retry can follow the holding drive's options.
    pub fn held_drive_ids(&self) -> Vec<String> {
        let on_bus = self.channels.iter().filter_map(|ch| ch.drive(ch.held_unit()?)).map(|d| d.id.as_str());
        on_bus.chain(self.unplug_held_ids()).map(str::to_string).collect()
    }

    pub fn drives_info(&self) -> Vec<DriveInfo> {
        let mut out = Vec::new();
        for ch in &self.channels {
            for unit in 0..2 {
                let Some(d) = ch.drive(unit) else { continue };
                out.push(DriveInfo {
                    id: d.id.clone(),
                    qdev: d.id.clone(),
                    cdrom: d.is_cdrom(),
                    removable: d.is_cdrom(),
                    tray_open: d.atapi.tray_open(),
                    locked: d.atapi.locked(),
                    io_status: d.keeps_io_status().then_some(d.io_status),
                    inserted: d.medium.as_ref().map(|m| InsertedMedium {
                        file: d.filename.clone(),
                        read_only: m.read_only(),
                        size: m.size(),
                        cache: d.cache,
                    }),
                    stats: d.stats.clone(),
                });
            }
        }
        out
    }

    fn find_drive(&mut self, id: &str) -> Result<&mut Drive, IdeError> {
        self.channels
            .iter_mut()
            .flat_map(|ch| ch.drives_mut())
            .find(|d| d.id == id)
            .ok_or_else(|| IdeError::NoSuchDevice(id.to_string()))
    }

    /// A host-side tray move: QEMU runs its change-media callback for each
    /// one, which the command set turns into NOT READY / UNIT ATTENTION and
    /// a media event for the guest.
    fn move_tray(events: &crate::vm::EventSink, drive: &mut Drive, open: bool) {
        if drive.atapi.tray_open() != open {
            drive.atapi.set_tray_open(open);
            drive.atapi.medium_changed();
            events.emit(Event::DeviceTrayMoved { device: drive.id.clone(), id: drive.id.clone(), tray_open: open });
        }
    }

    pub fn eject(&mut self, id: &str, force: bool) -> Result<(), IdeError> {
        let vm = self.vm.clone();
        let drive = self.find_drive(id)?;
        if !drive.is_cdrom() {
            return Err(IdeError::NotRemovable(id.to_string()));
        }
        // The guest learns of the request through GET EVENT STATUS
        // NOTIFICATION; force also drops its removal lock.
        drive.atapi.eject_requested(force);
        if drive.atapi.locked() {
            return Err(IdeError::Locked(id.to_string()));
        }
        Self::move_tray(vm.events(), drive, true);
        drive.medium = None;
        drive.filename.clear();
        Ok(())
    }

    pub fn change_medium(&mut self, id: &str, backend: Box<dyn BlockBackend>, filename: String) -> Result<(), IdeError> {
        let vm = self.vm.clone();
        let drive = self.find_drive(id)?;
        if !drive.is_cdrom() {
            return Err(IdeError::NotRemovable(id.to_string()));
        }
        if drive.atapi.locked() && !drive.atapi.tray_open() {
            return Err(IdeError::Locked(id.to_string()));
        }
        Self::move_tray(vm.events(), drive, true);
        drive.medium = Some(Medium::new(backend));
        drive.filename = filename;
        Self::move_tray(vm.events(), drive, false);
        Ok(())
    }

    /// Flush every image (at exit), the unplugged disks whose flush is held
    /// among them; the first error is returned after all drives were tried.
    pub fn flush_all(&mut self) -> Result<(), BlockError> {
        let mut first = Ok(());
        let unplugged = self.unplug_held.iter_mut();
        for d in self.channels.iter_mut().flat_map(|ch| ch.drives_mut()).chain(unplugged) {
            if let Some(m) = d.medium.as_ref() {
                if let Err(e) = m.lock().flush() {
                    log::error!("flush of {} at exit failed: {e}", d.id);
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }

    /// A machine reset: the standard header back to power-on (COMMAND 0,
    /// STATUS 0x0280, BAR4 unassigned, interrupt line 0), both channels
    /// reset. The timing registers from 0x40 on keep what the guest wrote,
    /// as QEMU's piix_ide_reset leaves them (measured on QEMU 7.2).
    pub fn reset(&mut self) {
        self.config.reset_header(&piix3_config());
        for ch in &mut self.channels {
            ch.reset();
        }
    }

    fn legacy_channel(base: u64) -> Option<(usize, bool)> {
        match base {
            PRIMARY_CMD_BASE => Some((0, false)),
            PRIMARY_CTRL_BASE => Some((0, true)),
            SECONDARY_CMD_BASE => Some((1, false)),
            SECONDARY_CTRL_BASE => Some((1, true)),
            _ => None,
        }
    }
}

fn put_le(data: &mut [u8], v: u32) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = if i < 4 { (v >> (8 * i)) as u8 } else { 0xff };
    }
}

fn get_le(data: &[u8]) -> u32 {
    data.iter().take(4).enumerate().fold(0, |v, (i, b)| v | ((*b as u32) << (8 * i)))
}

impl BusDevice for IdeController {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let (ctx, channels) = self.ctx_and_channels();
        let size = data.len();
        match Self::legacy_channel(base) {
            Some((c, false)) => {
                let ch = &mut channels[c];
                // Measured on QEMU 7.2: a byte access to the data port is a
                // word access cut to its low byte, word accesses to the
                // other registers split into bytes, dword accesses to them
                // read all ones.
                if offset == 0 {
                    put_le(data, ch.read_data(&ctx, size.clamp(2, 4)));
                    return;
                }
                if size > 2 {
                    data.fill(0xff);
                    return;
                }
                for (i, b) in data.iter_mut().enumerate() {
                    let reg = offset + i as u64;
                    *b = if reg > 7 { 0xff } else { ch.read_reg(reg) };
                }
            }
            Some((c, true)) => {
                let status = channels[c].read_altstatus();
                data.fill(0xff);
                if offset == 0 && size <= 2 {
                    if let Some(b) = data.first_mut() {
                        *b = status;
                    }
                }
            }
            None => {
                let c = ((offset / 8) as usize).min(1);
                let off = offset % 8;
                let v = channels[c].bm.read(off, size.min(4).min(8 - off as usize));
                put_le(data, v);
                if off as usize + size > 8 {
                    data[8 - off as usize..].fill(0xff);
                }
            }
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let (ctx, channels) = self.ctx_and_channels();
        let size = data.len();
        let v = get_le(data);
        match Self::legacy_channel(base) {
            Some((c, false)) => {
                let ch = &mut channels[c];
                if offset == 0 {
                    // A byte write to the data port reaches no register in
                    // QEMU's PIIX (its byte handler has no data case).
                    if size >= 2 {
                        ch.write_data(&ctx, size.min(4), v);
                    }
                    return;
                }
                if size > 2 {
                    return;
                }
                for (i, b) in data.iter().enumerate() {
                    let reg = offset + i as u64;
                    if (1..=7).contains(&reg) {
                        ch.write_reg(&ctx, reg, *b);
                    }
                }
            }
            Some((c, true)) => {
                if offset == 0 {
                    if let Some(b) = data.first() {
                        channels[c].write_ctrl(&ctx, *b);
                    }
                }
            }
            None => {
                let c = ((offset / 8) as usize).min(1);
                let off = offset % 8;
                channels[c].bm_write(&ctx, off, size.min(4).min(8 - off as usize), v);
            }
        }
    }
}

impl crate::devices::bus::Reset for IdeController {
    fn reset(&mut self) {
        IdeController::reset(self);
    }
}

impl PciFunction for IdeController {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.config.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) -> ConfigWriteResult {
        self.config.write(offset, size, value);
        ConfigWriteResult::default()
    }

    fn io_bars(&self) -> Vec<IoBar> {
        self.config
            .io_bar_base(BMDMA_BAR)
            .map(|base| IoBar { index: BMDMA_BAR, base, len: BMDMA_LEN })
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod inflight_tests;
