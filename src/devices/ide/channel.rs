//! One IDE channel: two device positions sharing a taskfile bus, the
//! device-control register, an interrupt line and a bus-master engine.
//! This file has the port access dispatch and the interrupt line; the
//! commands, the PIO and DMA data paths and the host error policy are in
//! the sibling modules.
//!
//! Host I/O never runs inside a port access: a command that needs the
//! image submits a request to its drive's queue (`requests`) and the
//! access returns with BSY (or DRQ and the bus master ACTIVE) showing; the
//! completion updates the registers and raises the interrupt.

use super::bmdma::{BmDma, CmdEffect, BM_STATUS_INTR};
use super::dma::DmaJob;
use super::drive::Drive;
use super::policy::Held;
use super::regs::*;
use super::requests::{CompletionQueue, InFlight};
use crate::block::engine::GuestSegment;
use crate::vm::{GuestMemory, IrqLine, VmControl};
use std::sync::Arc;

const CTRL_NIEN: u8 = 0x02;
const CTRL_SRST: u8 = 0x04;
const CTRL_HOB: u8 = 0x80;

/// What a channel needs from the controller for one access.
pub(super) struct Ctx<'a> {
    pub mem: &'a dyn GuestMemory,
    pub vm: &'a VmControl,
    pub bus_master: bool,
}

pub(super) struct Channel {
    pub(super) units: [Unit; 2],
    pub(super) selected: usize,
    pub(super) ctrl: u8,
    pub(super) irq: Arc<dyn IrqLine>,
    /// None until the first change, so reset always drives the line low.
    pub(super) irq_level: Option<bool>,
    pub bm: BmDma,
    pub(super) pending: Option<DmaJob>,
    pub(super) held: Option<Held>,
    /// 0 = primary, 1 = secondary: how completions name this channel.
    pub(super) index: usize,
    pub(super) completions: Arc<CompletionQueue>,
    pub(super) inflight: Option<InFlight>,
    /// Where an ATAPI DMA reply goes once the medium was read.
    pub(super) atapi_segments: Vec<GuestSegment>,
}

impl Channel {
    pub fn new(index: usize, drives: [Option<Drive>; 2], irq: Arc<dyn IrqLine>, completions: Arc<CompletionQueue>) -> Self {
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
            index,
            completions,
            inflight: None,
            atapi_segments: Vec::new(),
        };
        ch.reset();
        ch
    }

    pub fn reset(&mut self) {
        self.drain_and_drop();
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

    pub fn drives(&self) -> impl Iterator<Item = &Drive> {
        self.units.iter().filter_map(|u| u.drive.as_ref())
    }

    /// The drives with their position on the channel (0 master, 1 slave).
    pub fn drives_mut_indexed(&mut self) -> impl Iterator<Item = (usize, &mut Drive)> {
        self.units.iter_mut().enumerate().filter_map(|(i, u)| u.drive.as_mut().map(|d| (i, d)))
    }

    pub fn has_held_request(&self) -> bool {
        self.held.is_some()
    }

    /// Take the hard disk at `unit` off the bus (Xen platform unplug): the
    /// slot then reads as an absent device. Returns the drive so the caller
    /// can flush it. CD-ROMs stay.
    pub fn unplug_disk(&mut self, unit: usize) -> Option<Drive> {
        if self.units.get(unit)?.drive.as_ref().is_none_or(|d| d.is_cdrom()) {
            return None;
        }
        if self.held.is_some() {
            log::warn!("unplugging a disk while a request is held on its channel; the held request is dropped");
            self.held = None;
        }
        if self.inflight.as_ref().is_some_and(|f| f.unit == unit) {
            self.drain_and_drop();
        }
        let slot = &mut self.units[unit];
        let drive = slot.drive.take();
        *slot = Unit::new(None);
        drive
    }

    pub(super) fn set_irq(&mut self) {
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

    pub(super) fn rw_error(&mut self, u: usize) {
        self.units[u].abort();
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
            // by the next access, so it completes here; like QEMU's
            // blk_aio_cancel it first waits for the request on the host.
            self.drain_and_drop();
            self.pending = None;
            self.held = None;
            for u in 0..2 {
                self.units[u].reset();
                self.exec_diagnostic(u);
            }
            let _ = ctx;
        }
    }

    pub fn bm_write(&mut self, ctx: &Ctx, offset: u64, size: usize, val: u32) {
        match offset {
            0..=3 if size != 1 => {}
            0 => match self.bm.write_cmd(val as u8) {
                CmdEffect::Started => self.run_pending(ctx),
                CmdEffect::Stopped if self.inflight.is_some() => {
                    // QEMU drains the DMA before the stop takes effect: the
                    // command completes as it would have, then the engine
                    // is inactive.
                    self.drain_and_finish(ctx);
                    self.bm.status &= !super::bmdma::BM_STATUS_ACTIVE;
                }
                _ => {}
            },
            2 => self.bm.write_status(val as u8),
            4..=7 => self.bm.write_prd(offset, size.min(8 - offset as usize), val),
            _ => {}
        }
    }
}

impl Channel {
    /// The unit whose request a `stop` policy holds, if any.
    pub fn held_unit(&self) -> Option<usize> {
        self.held.as_ref().map(|h| h.unit)
    }
}
