//! What every front end (Xen ioreq server, qtest) and every device share:
//! guest memory for DMA, interrupt lines, the VM run state and the event
//! stream that QMP clients and the audit log read.

// Only the guest-memory layers (io_region, volatile) have unsafe code.
#[forbid(unsafe_code)]
pub mod events;
#[forbid(unsafe_code)]
pub mod hold;
pub mod io_region;
#[forbid(unsafe_code)]
pub mod pc;
#[forbid(unsafe_code)]
pub mod runstate;
pub mod volatile;

pub use events::{Delivery, Event, EventSink, EventSubscriber, IoOperation};
pub use io_region::{DmaDirection, GuestIoRegion};
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
    /// This guest memory cannot hand out host addresses (`map_for_io`);
    /// copy with `read`/`write` instead.
    #[error("guest memory cannot be mapped for direct host I/O")]
    NotMappable,
    /// A `map_for_io` range longer than the implementation keeps mapped at
    /// once; split the transfer.
    #[error("{len:#x} bytes cannot be mapped at once (at most {max:#x})")]
    TooLarge { len: usize, max: usize },
}

/// Guest-physical memory as a bus master sees it. Implementations check
/// every range; callers may pass any guest-controlled address and length.
pub trait GuestMemory: Send + Sync {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError>;
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError>;

    /// Host addresses for `gpa..gpa+len`, for zero-copy host I/O
    /// (preadv/pwritev straight into or out of guest memory).
    ///
    /// The range is checked like `read`/`write` (overflow, outside RAM,
    /// unmappable pages). A zero `len` gives an empty region wherever an
    /// empty `read` would succeed. The region keeps every mapping it points
    /// into alive until it is dropped, even across an INVALIDATE or a cache
    /// eviction; see [`GuestIoRegion`] for what the pointers may be used
    /// for. With [`DmaDirection::FromDevice`] the pages are reported as
    /// written (dirty logging) when the region drops, as QEMU's
    /// `address_space_unmap` does, so write through it before dropping it.
    ///
    /// The default refuses with [`MemError::NotMappable`]; callers then fall
    /// back to `read`/`write` through a bounce buffer.
    fn map_for_io(&self, gpa: u64, len: usize, direction: DmaDirection) -> Result<GuestIoRegion, MemError> {
        let _ = (gpa, len, direction);
        Err(MemError::NotMappable)
    }
}

/// One interrupt line as the device drives it (level semantics).
pub trait IrqLine: Send + Sync {
    fn set_level(&self, high: bool);
}

/// Counters behind QMP query-blockstats (QEMU's BlockDeviceStats names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub rd_bytes: u64,
    pub wr_bytes: u64,
    pub rd_operations: u64,
    pub wr_operations: u64,
    pub flush_operations: u64,
    pub unmap_operations: u64,
    pub unmap_bytes: u64,
    pub failed_rd_operations: u64,
    pub failed_wr_operations: u64,
    pub failed_flush_operations: u64,
    pub failed_unmap_operations: u64,
    pub rd_total_time_ns: u64,
    pub wr_total_time_ns: u64,
    pub flush_total_time_ns: u64,
}

/// A medium in a drive, as QMP query-block shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertedMedium {
    pub file: String,
    pub read_only: bool,
    /// Bytes.
    pub size: u64,
    pub cache: crate::block::CacheMode,
}

/// One drive as QMP query-block / query-blockstats show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveInfo {
    /// Drive id ("ide0-hd0", or the -drive id=).
    pub id: String,
    /// qdev path of the device ("/machine/unattached/device[N]" in QEMU; we
    /// use the -device id or the drive id).
    pub qdev: String,
    pub cdrom: bool,
    pub removable: bool,
    pub tray_open: bool,
    pub locked: bool,
    /// "ok", "failed" or "nospace"; None when the drive keeps no I/O
    /// status (QEMU: no stop-type error policy), so QMP leaves it out.
    pub io_status: Option<&'static str>,
    pub inserted: Option<InsertedMedium>,
    pub stats: BlockStats,
}

/// Guest-initiated power transitions (PIIX4 PM S5, 0xcf9, i8042 reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    Poweroff,
    Reboot,
}

pub trait PowerControl: Send + Sync {
    fn request(&self, what: PowerRequest);
}
