//! Host I/O errors: the drive's werror/rerror policy, the audit line and
//! QMP event, and the request a `stop` policy holds until `cont`.

use super::channel::{Channel, Ctx};
use super::commands::{ata_command_name, PACKET};
use super::dma::{AtaDma, DmaJob};
use crate::block::engine::IoFailure;
use crate::block::{BlockError, BlockOp, ErrorAction};
use crate::logging::{audit_io_error, IoErrorAudit};
use super::drive::Drive;
use crate::vm::{Event, IoOperation, RunState, VmControl};

/// A request a `stop` policy holds until the VM runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) enum Retry {
    /// The PIO block at `lba` with `nsector` left; for a write its data is
    /// still in the unit's buffer.
    Pio { write: bool, lba: i64, nsector: u32 },
    Dma { kind: AtaDma, lba: i64, count: u32 },
    Flush,
    AtapiDma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Held {
    pub(super) unit: usize,
    retry: Retry,
}

#[cfg(test)]
impl Held {
    /// A held flush on `unit`, for tests of loaded states.
    pub(super) fn for_tests(unit: usize) -> Self {
        Held { unit, retry: Retry::Flush }
    }
}

fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

/// A request the host refused, as the policy and the audit line see it.
pub(super) struct FailedRequest<'a> {
    pub command: &'a str,
    pub err: &'a BlockError,
    pub op: BlockOp,
    pub lba: u64,
    pub count: u64,
    /// The backend can never succeed again (see `IoFailure::Host`).
    pub permanent: bool,
}

/// The drive's werror/rerror decision for a failed request, with what every
/// decision owes the admin and QMP: the audit line, BLOCK_IO_ERROR, the
/// failure counters, and for `stop` the drive's I/O status. Holding the
/// request (and stopping the VM) is the caller's, since what is held
/// differs: a channel's command, or a disk the guest unplugged.
pub(super) fn drive_policy(drive: &mut Drive, vm: &VmControl, req: &FailedRequest) -> ErrorAction {
    let errno = req.err.errno();
    let is_read = req.op == BlockOp::Read;
    let mut action = if is_read { drive.rerror } else { drive.werror }.action_for(errno);
    if req.permanent && action == ErrorAction::Stop {
        // Said once per drive: the audit line below carries the action.
        if !drive.failed_permanently {
            log::error!("{}: the image can no longer make data durable (an earlier fdatasync failed); errors are reported from now on instead of holding the guest", drive.id);
        }
        drive.failed_permanently = true;
        action = ErrorAction::Report;
    }
    audit_io_error(&IoErrorAudit { drive: &drive.id, command: req.command, lba: req.lba, sectors: req.count, errno, action: action.as_qmp() });
    vm.events().emit(Event::BlockIoError {
        device: drive.id.clone(),
        node_name: drive.id.clone(),
        operation: if is_read { IoOperation::Read } else { IoOperation::Write },
        action: action.as_qmp(),
        nospace: drive.keeps_io_status().then_some(errno == libc::ENOSPC),
        reason: strerror(errno),
    });
    match action {
        ErrorAction::Report => match req.op {
            BlockOp::Read => drive.stats.failed_rd_operations += 1,
            BlockOp::Write => drive.stats.failed_wr_operations += 1,
            BlockOp::Flush => drive.stats.failed_flush_operations += 1,
            BlockOp::Discard => drive.stats.failed_unmap_operations += 1,
        },
        ErrorAction::Stop => drive.io_status = if errno == libc::ENOSPC { "nospace" } else { "failed" },
        ErrorAction::Ignore => {}
    }
    action
}

fn atapi_command_name(cdb0: u8) -> &'static str {
    match cdb0 {
        0x28 => "READ(10)",
        0xa8 => "READ(12)",
        0xbe => "READ CD",
        _ => "PACKET",
    }
}

impl Channel {
    // ---- host errors ----------------------------------------------------

    /// [`Channel::host_error`] for a request that came back from the host.
    /// A guest-memory failure never gets here (it is the guest's fault, a
    /// DMA error); a failure the backend can never recover from is reported
    /// even under a `stop` policy, since every retry would fail at once and
    /// the guest would stay frozen until destroyed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn host_failure(&mut self, ctx: &Ctx, u: usize, failure: &IoFailure, op: BlockOp, lba: u64, count: u64, retry: Retry) -> ErrorAction {
        let (err, permanent) = match failure {
            IoFailure::Host { err, permanent, .. } => (err.clone(), *permanent),
            IoFailure::Memory(_) | IoFailure::TooLarge(_) => (BlockError::Io { op, offset: lba, len: count, errno: libc::EFAULT }, false),
        };
        self.apply_policy(ctx, u, &err, op, lba, count, retry, permanent)
    }

    /// Apply the drive's policy to a failed host request: audit, event,
    /// statistics, and for `stop` the held request and the VM stop.
    #[allow(clippy::too_many_arguments)]
    fn apply_policy(&mut self, ctx: &Ctx, u: usize, err: &BlockError, op: BlockOp, lba: u64, count: u64, retry: Retry, permanent: bool) -> ErrorAction {
        let command = if self.units[u].command == PACKET {
            atapi_command_name(self.units[u].cdb0)
        } else {
            ata_command_name(self.units[u].command)
        };
        let Some(drive) = self.units[u].drive.as_mut() else {
            return ErrorAction::Report;
        };
        let failed = FailedRequest { command, err, op, lba, count, permanent };
        let action = drive_policy(drive, ctx.vm, &failed);
        if action == ErrorAction::Stop {
            self.held = Some(Held { unit: u, retry });
            ctx.vm.stop(RunState::IoError);
        }
        action
    }

    /// A host read error that bypasses the policy: audit line and failed
    /// read count only.
    pub(super) fn audit_reported_error(&mut self, u: usize, err: &BlockError, lba: u64, count: u64) {
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
}
