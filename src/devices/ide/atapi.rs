//! The SCSI/MMC command set of the ATAPI CD-ROM, without the ATA transport:
//! the IDE core hands over a 12-byte CDB and moves the bytes this module
//! returns (PIO with byte-count limits, or bus-master DMA).
//!
//! INTERFACE CONTRACT (kept by the ATAPI work, consumed by the IDE core):
//! ```ignore
//! pub const CD_SECTOR_SIZE: usize = 2048;
//! #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
//! pub struct Sense { pub key: u8, pub asc: u8, pub ascq: u8 }
//! pub enum PacketResult {
//!     DataIn(Vec<u8>),               // already cut to the CDB's allocation length
//!     Read { lba: u32, count: u32 }, // 2048-byte blocks; the core does the host I/O
//!     Done,                          // success, no data
//!     TrayMoved { open: bool },      // success; the core emits DEVICE_TRAY_MOVED
//!     Error(Sense),                  // CHECK CONDITION; the state keeps the sense
//! }
//! pub struct AtapiState { .. }       // sense, unit attention, lock, tray, media events
//! impl AtapiState {
//!     pub fn new() -> Self;
//!     /// medium_sectors: None = no medium (or tray open); Some(n) = n 2048-byte blocks
//!     pub fn execute(&mut self, cdb: &[u8; 12], medium_sectors: Option<u64>) -> PacketResult;
//!     pub fn medium_changed(&mut self);      // after insert/change: NOT READY, then UNIT ATTENTION
//!     pub fn host_error(&mut self, errno: i32) -> Sense; // QEMU's ide_atapi_io_error mapping, stored as sense
//!     pub fn sense(&self) -> Sense;
//!     pub fn tray_open(&self) -> bool; pub fn set_tray_open(&mut self, open: bool);
//!     pub fn locked(&self) -> bool;
//!     pub fn reset(&mut self);
//! }
//! ```
