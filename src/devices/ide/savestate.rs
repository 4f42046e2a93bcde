//! The controller's saved state: the PCI function, per channel the
//! device control, bus master, a DMA command waiting and a request held by
//! a `stop` policy, per position the taskfile, the PIO window (only the
//! valid part of the buffer) and the drive's guest-set state (geometry,
//! multiple count, IDENTIFY edits, write cache, ATAPI sense, tray, lock).
//!
//! Host I/O is not saved: the caller drains it first (a completion lands
//! in the registers before they are saved), and a state with a request
//! still on the host is refused. A held request is saved as held and runs
//! again on the next `cont` (or the retry timer) after the load.

use super::atapi::AtapiState;
use super::atapi_transport::{AtapiSource, AtapiTransfer};
use super::dma::DmaJob;
use super::identify::{Geometry, MAX_MULT_SECTORS};
use super::pio::EndAction;
use super::policy::Held;
use super::regs::{Regs, PIO_BUFFER_SIZE};
use super::IdeController;
use crate::devices::pci::config::ConfigState;
use crate::devices::state::{DeviceState, Snapshot, StateError};
use serde::{Deserialize, Serialize};

const DEVICE: &str = "ide";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdeState {
    pub(super) config: ConfigState,
    pub(super) channels: Vec<ChannelState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ChannelState {
    pub(super) selected: u8,
    pub(super) ctrl: u8,
    pub(super) irq_level: bool,
    pub(super) bm_cmd: u8,
    pub(super) bm_status: u8,
    pub(super) bm_prd_table: u32,
    pub(super) pending: Option<DmaJob>,
    pub(super) held: Option<Held>,
    pub(super) units: Vec<UnitState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UnitState {
    pub(super) regs: Regs,
    /// `buf[..end]` of the PIO window: what is past `end` is never read.
    pub(super) pio_data: Vec<u8>,
    pub(super) pio_pos: u32,
    pub(super) pio_action: EndAction,
    pub(super) req_nb_sectors: u32,
    pub(super) command: u8,
    cdb0: u8,
    pub(super) atapi_dma: bool,
    pub(super) atapi_xfer: Option<AtapiTransfer>,
    /// None: no drive at this position (never one, or unplugged by the
    /// guest's PV drivers).
    pub(super) drive: Option<DriveState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DriveState {
    pub(super) cdrom: bool,
    pub(super) geometry: Geometry,
    pub(super) mult_sectors: u16,
    pub(super) identify: Option<Vec<u16>>,
    pub(super) write_cache: bool,
    pub(super) smart_enabled: bool,
    pub(super) smart_autosave: bool,
    pub(super) io_status: IoStatus,
    pub(super) atapi: AtapiState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum IoStatus {
    Ok,
    Failed,
    Nospace,
}

impl IoStatus {
    fn of(s: &str) -> Self {
        match s {
            "nospace" => IoStatus::Nospace,
            "failed" => IoStatus::Failed,
            _ => IoStatus::Ok,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            IoStatus::Ok => "ok",
            IoStatus::Failed => "failed",
            IoStatus::Nospace => "nospace",
        }
    }
}

fn invalid(what: impl Into<String>) -> StateError {
    StateError::invalid(DEVICE, what)
}

impl IdeController {
    /// Why this controller's state cannot be saved now: a request still on
    /// the host (drain first) or a PV-unplug flush held.
    pub fn unsaveable(&self) -> Option<&'static str> {
        if self.has_request_in_flight() || !self.completions.is_empty() {
            return Some("a request is still on the host");
        }
        if !self.unplug_held.is_empty() {
            return Some("the flush of an unplugged disk is held");
        }
        None
    }

    /// On `stop` and before a save: every request on the host completes
    /// into the registers (and raises its interrupt) as it would have, so
    /// nothing the guest was promised is lost; a failure under a `stop`
    /// policy is held (and saved as held). Waits with this lock held, as a
    /// bus-master stop does. A completion can start the next piece of the
    /// same command, so this repeats, a bounded number of times.
    pub fn drain_for_save(&mut self) {
        for _ in 0..64 {
            let (ctx, channels) = self.ctx_and_channels();
            for ch in channels.iter_mut() {
                ch.drain_and_finish(&ctx);
            }
            if !self.serving_guest_request {
                self.deliver_completions();
            }
            if !self.has_request_in_flight() {
                return;
            }
        }
    }

    fn check(&self, s: &IdeState) -> Result<(), StateError> {
        if s.channels.len() != 2 {
            return Err(invalid(format!("{} channels, not 2", s.channels.len())));
        }
        for (c, (ch, saved)) in self.channels.iter().zip(&s.channels).enumerate() {
            if saved.units.len() != 2 || saved.selected > 1 {
                return Err(invalid(format!("channel {c}: {} units, unit {} selected", saved.units.len(), saved.selected)));
            }
            let unit_of = |j: &DmaJob| match j {
                DmaJob::Ata { unit, .. } | DmaJob::Atapi { unit } => *unit,
            };
            if let Some(u) = saved.pending.as_ref().map(unit_of) {
                if saved.units.get(u).is_none_or(|x| x.drive.is_none()) {
                    return Err(invalid(format!("channel {c}: a DMA command waits on unit {u}, which has no drive")));
                }
            }
            if let Some(h) = &saved.held {
                if saved.units.get(h.unit).is_none_or(|x| x.drive.is_none()) {
                    return Err(invalid(format!("channel {c}: a request is held on unit {}, which has no drive", h.unit)));
                }
            }
            for (u, (unit, su)) in ch.units.iter().zip(&saved.units).enumerate() {
                let at = format!("channel {c} unit {u}");
                match (&unit.drive, &su.drive) {
                    (None, Some(_)) => return Err(invalid(format!("{at}: the saved machine has a drive there, this one has none"))),
                    (Some(d), None) if d.is_cdrom() => {
                        return Err(invalid(format!("{at}: a CD-ROM cannot have been unplugged")));
                    }
                    (Some(d), Some(sd)) if d.is_cdrom() != sd.cdrom => {
                        return Err(invalid(format!("{at}: the saved drive is of another kind")));
                    }
                    _ => {}
                }
                let end = su.pio_data.len();
                if end > PIO_BUFFER_SIZE || su.pio_pos as usize > end {
                    return Err(invalid(format!("{at}: PIO position {} in a window of {end} bytes", su.pio_pos)));
                }
                if su.req_nb_sectors == 0 || su.req_nb_sectors > MAX_MULT_SECTORS as u32 {
                    return Err(invalid(format!("{at}: {} sectors per DRQ block", su.req_nb_sectors)));
                }
                if let Some(AtapiTransfer { source: AtapiSource::Data(data), .. }) = &su.atapi_xfer {
                    crate::devices::state::check_len(DEVICE, "ATAPI reply", data.len(), PIO_BUFFER_SIZE)?;
                }
                if let Some(sd) = &su.drive {
                    let g = sd.geometry;
                    if !(1..=16).contains(&g.heads) || !(1..=63).contains(&g.sectors) || g.cylinders == 0 {
                        return Err(invalid(format!("{at}: geometry {}/{}/{}", g.cylinders, g.heads, g.sectors)));
                    }
                    if sd.mult_sectors > MAX_MULT_SECTORS {
                        return Err(invalid(format!("{at}: multiple count {}", sd.mult_sectors)));
                    }
                    if sd.identify.as_ref().is_some_and(|w| w.len() != 256) {
                        return Err(invalid(format!("{at}: IDENTIFY data is not 256 words")));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Snapshot for IdeController {
    fn snapshot(&self) -> DeviceState {
        let channels = self
            .channels
            .iter()
            .map(|ch| ChannelState {
                selected: ch.selected as u8,
                ctrl: ch.ctrl,
                irq_level: ch.irq_level.unwrap_or(false),
                bm_cmd: ch.bm.cmd,
                bm_status: ch.bm.status,
                bm_prd_table: ch.bm.prd_table,
                pending: ch.pending,
                held: ch.held,
                units: ch
                    .units
                    .iter()
                    .map(|u| UnitState {
                        regs: u.regs.clone(),
                        pio_data: u.pio.buf[..u.pio.end.min(u.pio.buf.len())].to_vec(),
                        pio_pos: u.pio.pos as u32,
                        pio_action: u.pio.action,
                        req_nb_sectors: u.req_nb_sectors,
                        command: u.command,
                        cdb0: u.cdb0,
                        atapi_dma: u.atapi_dma,
                        atapi_xfer: u.atapi_xfer.clone(),
                        drive: u.drive.as_ref().map(|d| DriveState {
                            cdrom: d.is_cdrom(),
                            geometry: d.geometry,
                            mult_sectors: d.mult_sectors,
                            identify: d.identify.map(|w| w.to_vec()),
                            write_cache: d.write_cache,
                            smart_enabled: d.smart_enabled,
                            smart_autosave: d.smart_autosave,
                            io_status: IoStatus::of(d.io_status),
                            atapi: d.atapi.clone(),
                        }),
                    })
                    .collect(),
            })
            .collect();
        DeviceState::Ide(Box::new(IdeState { config: self.config.save(), channels }))
    }

    /// Everything is checked before anything changes. A disk the saved
    /// guest had unplugged leaves the bus here too (it was flushed on the
    /// old host before the save).
    fn restore(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let DeviceState::Ide(s) = state else { return Err(StateError::wrong_kind(DEVICE, state)) };
        if let Some(why) = self.unsaveable() {
            return Err(invalid(format!("cannot load while {why}")));
        }
        self.check(s)?;
        for d in &s.channels.iter().flat_map(|c| &c.units).filter_map(|u| u.drive.as_ref()).collect::<Vec<_>>() {
            AtapiState::new().load(&d.atapi)?;
        }
        let mut config = self.config.clone();
        config.load(DEVICE, &s.config)?;
        self.config = config;
        for (ch, saved) in self.channels.iter_mut().zip(&s.channels) {
            for (u, su) in saved.units.iter().enumerate() {
                if su.drive.is_none() && ch.units[u].drive.is_some() {
                    // The old host flushed it before the save.
                    let _ = ch.unplug_disk(u);
                }
            }
            ch.selected = saved.selected as usize;
            ch.ctrl = saved.ctrl;
            ch.bm.cmd = saved.bm_cmd;
            ch.bm.status = saved.bm_status;
            ch.bm.prd_table = saved.bm_prd_table;
            ch.pending = saved.pending;
            ch.held = saved.held;
            ch.atapi_segments.clear();
            for (unit, su) in ch.units.iter_mut().zip(&saved.units) {
                unit.regs = su.regs.clone();
                unit.pio.buf[..su.pio_data.len()].copy_from_slice(&su.pio_data);
                unit.pio.end = su.pio_data.len();
                unit.pio.pos = su.pio_pos as usize;
                unit.pio.action = su.pio_action;
                unit.req_nb_sectors = su.req_nb_sectors;
                unit.command = su.command;
                unit.cdb0 = su.cdb0;
                unit.atapi_dma = su.atapi_dma;
                unit.atapi_xfer = su.atapi_xfer.clone();
                if let (Some(d), Some(sd)) = (unit.drive.as_mut(), su.drive.as_ref()) {
                    d.geometry = sd.geometry;
                    d.mult_sectors = sd.mult_sectors;
                    d.identify = sd.identify.as_ref().and_then(|w| w.as_slice().try_into().ok());
                    d.write_cache = sd.write_cache;
                    if let Some(m) = d.medium.as_ref() {
                        m.lock().set_guest_write_cache(sd.write_cache);
                    }
                    d.smart_enabled = sd.smart_enabled;
                    d.smart_autosave = sd.smart_autosave;
                    d.io_status = sd.io_status.as_str();
                    d.atapi.load(&sd.atapi)?;
                }
            }
            // Driven to the loaded level, changed or not: the interrupt
            // controller on the new host must see it.
            ch.irq_level = Some(saved.irq_level);
            ch.irq.set_level(saved.irq_level);
        }
        Ok(())
    }
}
