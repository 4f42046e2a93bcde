//! The SCSI/MMC command set of the ATAPI CD-ROM, without the ATA transport:
//! the IDE core hands over a 12-byte CDB and moves the bytes this module
//! returns (PIO with byte-count limits, or bus-master DMA).
//!
//! TEMPORARY stand-in written on the `ide` branch so the transport compiles
//! and can be tested; the ATAPI helper's full version replaces it at merge.
//! It covers TEST UNIT READY, REQUEST SENSE, INQUIRY, READ CAPACITY,
//! READ(10), START STOP UNIT, PREVENT/ALLOW and a minimal READ CD, to the
//! contract below plus the extensions the ATAPI branch added on top of it
//! (`execute_packet`/`PacketOutcome`, `raw_sector`, `eject_requested`,
//! `set_serial`), which the transport uses.
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

pub const CD_SECTOR_SIZE: usize = 2048;
pub const CD_RAW_SECTOR_SIZE: usize = 2352;
/// Status and error QEMU shows when a unit attention blocks a command.
pub const UNIT_ATTENTION_PENDING_STATUS: u8 = 0x01;
pub const UNIT_ATTENTION_PENDING_ERROR: u8 = (UNIT_ATTENTION << 4) | 0x20;

const NOT_READY: u8 = 2;
const ILLEGAL_REQUEST: u8 = 5;
const UNIT_ATTENTION: u8 = 6;
const ASC_INV_FIELD_IN_CMD_PACKET: u8 = 0x24;
const ASC_ILLEGAL_OPCODE: u8 = 0x20;
const ASC_LOGICAL_BLOCK_OOR: u8 = 0x21;
const ASC_MEDIUM_NOT_PRESENT: u8 = 0x3a;
const ASC_MEDIUM_MAY_HAVE_CHANGED: u8 = 0x28;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketResult {
    DataIn(Vec<u8>),
    Read { lba: u32, count: u32 },
    Done,
    TrayMoved { open: bool },
    Error(Sense),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketOutcome {
    Atapi(PacketResult),
    /// READ CD of whole sectors: `count` blocks from `lba`, each handed to
    /// the guest as `raw_sector(lba + i, block)`.
    ReadRaw { lba: u32, count: u32 },
    UnitAttentionPending,
    AbortByteCountLimit,
}

/// A Mode 1 sector around 2048 bytes of user data: sync, MSF header, mode.
pub fn raw_sector(lba: u32, user_data: &[u8; CD_SECTOR_SIZE]) -> [u8; CD_RAW_SECTOR_SIZE] {
    let mut sector = [0u8; CD_RAW_SECTOR_SIZE];
    sector[1..11].fill(0xff);
    let frames = lba as u64 + 150;
    sector[12] = (frames / 75 / 60) as u8;
    sector[13] = (frames / 75 % 60) as u8;
    sector[14] = (frames % 75) as u8;
    sector[15] = 0x01;
    sector[16..16 + CD_SECTOR_SIZE].copy_from_slice(user_data);
    sector
}

#[derive(Debug, Default)]
enum ChangeState {
    #[default]
    Settled,
    /// A new medium was inserted: report NOT READY once, then UNIT ATTENTION.
    NotReadyPending,
    AttentionPending,
}

#[derive(Debug, Default)]
pub struct AtapiState {
    sense: Sense,
    change: ChangeState,
    tray_open: bool,
    locked: bool,
}

impl AtapiState {
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(&mut self, key: u8, asc: u8) -> PacketResult {
        self.sense = Sense { key, asc, ascq: 0 };
        PacketResult::Error(self.sense)
    }

    pub fn set_serial(&mut self, _serial: &str) {}

    pub fn eject_requested(&mut self, force: bool) {
        if force {
            self.locked = false;
        }
    }

    pub fn execute_packet(&mut self, cdb: &[u8; 12], medium_sectors: Option<u64>, byte_count_limit_usable: bool) -> PacketOutcome {
        let opcode = cdb[0];
        if self.sense.key == UNIT_ATTENTION && !matches!(opcode, 0x03 | 0x12) {
            return PacketOutcome::UnitAttentionPending;
        }
        let data_command = matches!(opcode, 0x03 | 0x12 | 0x25 | 0x28 | 0xbe);
        if data_command && !byte_count_limit_usable && !matches!(self.change, ChangeState::NotReadyPending) {
            return PacketOutcome::AbortByteCountLimit;
        }
        if opcode == 0xbe && medium_sectors.is_some() && matches!(self.change, ChangeState::Settled) {
            let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]);
            let count = u32::from_be_bytes([0, cdb[6], cdb[7], cdb[8]]);
            if lba as u64 + count as u64 > medium_sectors.unwrap_or(0) {
                return PacketOutcome::Atapi(self.fail(ILLEGAL_REQUEST, ASC_LOGICAL_BLOCK_OOR));
            }
            return match cdb[9] {
                0x10 if count > 0 => PacketOutcome::Atapi(PacketResult::Read { lba, count }),
                0xf8 if count > 0 => PacketOutcome::ReadRaw { lba, count },
                _ => PacketOutcome::Atapi(PacketResult::Done),
            };
        }
        PacketOutcome::Atapi(self.execute(cdb, medium_sectors))
    }

    pub fn execute(&mut self, cdb: &[u8; 12], medium_sectors: Option<u64>) -> PacketResult {
        let opcode = cdb[0];
        let allows_unit_attention = matches!(opcode, 0x03 | 0x12);
        if !allows_unit_attention {
            match self.change {
                ChangeState::NotReadyPending => {
                    self.change = ChangeState::AttentionPending;
                    return self.fail(NOT_READY, ASC_MEDIUM_NOT_PRESENT);
                }
                ChangeState::AttentionPending => {
                    self.change = ChangeState::Settled;
                    return self.fail(UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
                }
                ChangeState::Settled => {}
            }
        }
        let needs_medium = matches!(opcode, 0x00 | 0x25 | 0x28);
        let sectors = match medium_sectors {
            Some(n) => n,
            None if needs_medium => return self.fail(NOT_READY, ASC_MEDIUM_NOT_PRESENT),
            None => 0,
        };
        match opcode {
            0x00 => {
                self.sense = Sense::default();
                PacketResult::Done
            }
            0x03 => {
                let alloc = cdb[4] as usize;
                let mut buf = vec![0u8; 18];
                buf[0] = 0x70;
                buf[2] = self.sense.key;
                buf[7] = 10;
                buf[12] = self.sense.asc;
                buf[13] = self.sense.ascq;
                self.sense = Sense::default();
                buf.truncate(alloc.min(18));
                PacketResult::DataIn(buf)
            }
            0x12 => {
                let alloc = u16::from_be_bytes([cdb[3], cdb[4]]) as usize;
                let mut buf = vec![0u8; 36];
                buf[0] = 0x05;
                buf[1] = 0x80;
                buf[2] = 0x00;
                buf[3] = 0x21;
                buf[4] = 31;
                buf[8..16].copy_from_slice(b"QEMU    ");
                buf[16..32].copy_from_slice(b"QEMU DVD-ROM    ");
                buf[32..36].copy_from_slice(b"2.5+");
                buf.truncate(alloc.min(36));
                PacketResult::DataIn(buf)
            }
            0x25 => {
                let last = sectors.saturating_sub(1).min(u32::MAX as u64) as u32;
                let mut buf = last.to_be_bytes().to_vec();
                buf.extend_from_slice(&(CD_SECTOR_SIZE as u32).to_be_bytes());
                PacketResult::DataIn(buf)
            }
            0x28 => {
                let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]);
                let count = u16::from_be_bytes([cdb[7], cdb[8]]) as u32;
                if lba as u64 + count as u64 > sectors {
                    return self.fail(ILLEGAL_REQUEST, ASC_LOGICAL_BLOCK_OOR);
                }
                if count == 0 {
                    return PacketResult::Done;
                }
                PacketResult::Read { lba, count }
            }
            0x1b => {
                let load_eject = cdb[4] & 2 != 0;
                let start = cdb[4] & 1 != 0;
                if !load_eject {
                    return PacketResult::Done;
                }
                if !start && self.locked {
                    return self.fail(ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
                }
                self.tray_open = !start;
                PacketResult::TrayMoved { open: !start }
            }
            0x1e => {
                self.locked = cdb[4] & 1 != 0;
                PacketResult::Done
            }
            _ => self.fail(ILLEGAL_REQUEST, ASC_ILLEGAL_OPCODE),
        }
    }

    pub fn medium_changed(&mut self) {
        self.change = ChangeState::NotReadyPending;
    }

    pub fn host_error(&mut self, errno: i32) -> Sense {
        self.sense = if errno == libc::ENOMEDIUM {
            Sense { key: NOT_READY, asc: ASC_MEDIUM_NOT_PRESENT, ascq: 0 }
        } else {
            Sense { key: ILLEGAL_REQUEST, asc: ASC_LOGICAL_BLOCK_OOR, ascq: 0 }
        };
        self.sense
    }

    pub fn sense(&self) -> Sense {
        self.sense
    }

    pub fn tray_open(&self) -> bool {
        self.tray_open
    }

    pub fn set_tray_open(&mut self, open: bool) {
        self.tray_open = open;
    }

    pub fn locked(&self) -> bool {
        self.locked
    }

    pub fn reset(&mut self) {
        self.sense = Sense::default();
        self.locked = false;
        self.tray_open = false;
    }
}
