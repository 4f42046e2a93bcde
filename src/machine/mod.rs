//! What every front end (Xen ioreq server, qtest) and every device share:
//! guest memory for DMA, interrupt lines, the VM run state and the event
//! stream that QMP clients and the audit log read.

pub mod events;
pub mod runstate;

pub use events::{Event, EventSink, IoOperation};
pub use runstate::{RunState, VmControl};

use thiserror::Error;

/// A guest-physical access that could not be done. Devices turn this into
/// a DMA error for the guest; it never aborts the device model.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MemError {
    #[error("guest physical range {gpa:#x}+{len:#x} is outside guest RAM")]
    OutOfRange { gpa: u64, len: usize },
    #[error("guest page {gfn:#x} could not be mapped (errno {errno})")]
    Unmappable { gfn: u64, errno: i32 },
}

/// Guest-physical memory as a bus master sees it. Implementations check
/// every range; callers may pass any guest-controlled address and length.
pub trait GuestMemory: Send + Sync {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError>;
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError>;
}

/// One interrupt line as the device drives it (level semantics).
pub trait IrqLine: Send + Sync {
    fn set_level(&self, high: bool);
}
