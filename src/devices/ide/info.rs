//! What QMP query-block / query-blockstats show of a drive. Produced by
//! the IDE controller, read by the QMP layer (through `machine`), so it
//! lives with the devices rather than in `vm`, which must not depend on
//! the block layer.

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
