//! The Xen platform device's unplug: the guest's PV drivers take the hard
//! disks over, so the emulated ones leave the bus, each flushed first.
//!
//! QEMU (`pci_xen_ide_unplug`) drains, flushes, ignores the flush's result
//! and drops the image. Here the flush goes through the drive's werror, as
//! a failed FLUSH CACHE does, except that the guest cannot be told: the
//! unplug port has no status to carry an error.
//! - report, ignore: the audit line and BLOCK_IO_ERROR say it, and the disk
//!   is dropped (keeping it on the bus would give the image two writers,
//!   the emulated path and blkback).
//! - stop (and enospc for ENOSPC): the disk is off the bus but its image is
//!   kept and the VM held in io-error, as for any held request, so the
//!   guest goes no further with its PV disks until the data it wrote
//!   through the emulated disk is durable. `cont` and the retry timer flush
//!   again; the image is dropped once a flush succeeds.

use super::drive::Drive;
use super::policy::{drive_policy, FailedRequest};
use super::IdeController;
use crate::block::{BlockOp, ErrorAction};
use crate::vm::RunState;

/// The audit line's command for a flush no ATA command asked for.
pub(super) const UNPLUG_FLUSH: &str = "FLUSH (Xen PV unplug)";

impl IdeController {
    /// The Xen platform device's unplug protocol: remove the emulated hard
    /// disks (all of them, or with `aux_only` all but the primary master)
    /// so PV drivers never share an image with the emulated path. Each
    /// removed disk is flushed under its werror policy (module doc).
    /// Returns the ids removed from the bus.
    pub fn unplug_disks(&mut self, aux_only: bool) -> Vec<String> {
        let mut removed = Vec::new();
        for c in 0..self.channels.len() {
            for unit in 0..2 {
                if aux_only && c == 0 && unit == 0 {
                    continue;
                }
                if let Some(drive) = self.channels[c].unplug_disk(unit) {
                    removed.push(drive.id.clone());
                    self.flush_unplugged(drive);
                }
            }
        }
        removed
    }

    /// Flush a disk that has left the bus; under `stop` keep it (and hold
    /// the VM) when the flush fails. The flush runs here, synchronously:
    /// the drive's queue completes into a bus slot the disk no longer has,
    /// and an unplug happens once per boot.
    fn flush_unplugged(&mut self, mut drive: Drive) {
        let Some(medium) = drive.medium.as_ref() else { return };
        let result = medium.lock().flush();
        let Err(err) = result else { return };
        let permanent = medium.lock().failed_permanently();
        let failed = FailedRequest { command: UNPLUG_FLUSH, err: &err, op: BlockOp::Flush, lba: 0, count: 0, permanent };
        if drive_policy(&mut drive, &self.vm, &failed) == ErrorAction::Stop {
            self.unplug_held.push(drive);
            self.vm.stop(RunState::IoError);
        }
    }

    /// Flush again every unplugged disk a `stop` policy kept; the ones that
    /// succeed are dropped, the others held again. Runs after the VM was
    /// set running, under the controller lock, so a new hold is not
    /// overwritten and no guest request comes in between.
    pub(super) fn retry_unplug_flushes(&mut self) {
        for drive in std::mem::take(&mut self.unplug_held) {
            log::info!("{}: flushing again before the unplug completes", drive.id);
            self.flush_unplugged(drive);
        }
    }

    /// Ids of the unplugged disks whose flush is held.
    pub(super) fn unplug_held_ids(&self) -> impl Iterator<Item = &str> {
        self.unplug_held.iter().map(|d| d.id.as_str())
    }
}
