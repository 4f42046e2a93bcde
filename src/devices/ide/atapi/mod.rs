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
//!
//! Additions beyond the contract (all additive):
//! * [`AtapiState::execute_packet`] gives the transport the two outcomes the
//!   contract's `execute` cannot express: QEMU's "unit attention pending"
//!   check status (status 0x01, error 0x60, sector count 0, no sense change)
//!   and the ATA-level abort for a data command with byte-count limit 0 in
//!   PIO mode; and READ CD with raw (2352-byte) sectors.
//! * [`Sense::ata_error_register`] and the `*_STATUS`/`*_ERROR` constants give
//!   the register values of each error outcome.
//! * [`raw_sector`] builds the 2352-byte Mode 1 sector READ CD returns.
//! * [`AtapiState::eject_requested`], [`AtapiState::set_serial`].
//!
//! Every value below was compared with Debian's QEMU 7.2 over qtest
//! (tools/research/atapi_probe.py); where QEMU returns stale buffer bytes
//! this module returns zeros instead (noted at the place).

mod mmc;
#[cfg(test)]
mod tests;

use mmc::{reply, Medium};

/// Size of a CD/DVD logical block as READ(10)/READ(12) transfer it.
pub const CD_SECTOR_SIZE: usize = 2048;
/// Size of a whole CD sector as READ CD with "all data" (0xF8) transfers it.
pub const CD_RAW_SECTOR_SIZE: usize = 2352;

/// QEMU calls a medium a DVD once it holds more 2048-byte blocks than an
/// 80-minute CD (80 * 60 * 75 blocks).
pub const CD_MAX_BLOCKS: u64 = 80 * 60 * 75;

/// ATA status after CHECK CONDITION: DRDY|ERR.
pub const CHECK_CONDITION_STATUS: u8 = 0x41;
/// ATA interrupt reason (sector count bits 0..2) at command completion: I/O|C/D.
pub const INTERRUPT_REASON_COMPLETE: u8 = 0x03;
/// ATA status while a unit attention blocks a command: ERR only, without DRDY.
pub const UNIT_ATTENTION_PENDING_STATUS: u8 = 0x01;
/// ATA error register then: 0x60. QEMU ORs MC (media changed, 0x20) into
/// the UNIT ATTENTION key nibble, which already holds that bit.
pub const UNIT_ATTENTION_PENDING_ERROR: u8 = (sense_key::UNIT_ATTENTION << 4) | 0x20;

/// SCSI sense keys the drive reports.
pub mod sense_key {
    pub const NO_SENSE: u8 = 0x00;
    pub const NOT_READY: u8 = 0x02;
    pub const ILLEGAL_REQUEST: u8 = 0x05;
    pub const UNIT_ATTENTION: u8 = 0x06;
}

/// Additional sense codes the drive reports.
pub mod asc {
    pub const ILLEGAL_OPCODE: u8 = 0x20;
    pub const LOGICAL_BLOCK_OUT_OF_RANGE: u8 = 0x21;
    pub const INVALID_FIELD_IN_CDB: u8 = 0x24;
    pub const MEDIUM_MAY_HAVE_CHANGED: u8 = 0x28;
    pub const INCOMPATIBLE_FORMAT: u8 = 0x30;
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: u8 = 0x39;
    pub const MEDIUM_NOT_PRESENT: u8 = 0x3a;
    pub const DATA_PHASE_ERROR: u8 = 0x4b;
    pub const MEDIUM_REMOVAL_PREVENTED: u8 = 0x53;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    pub const fn new(key: u8, asc: u8) -> Self {
        Sense { key, asc, ascq: 0 }
    }

    /// The ATA error register after a CHECK CONDITION with this sense: the
    /// key in the high nibble and no ABRT bit (QEMU's ide_atapi_cmd_error).
    pub const fn ata_error_register(self) -> u8 {
        self.key << 4
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketResult {
    /// Already cut to the CDB's allocation length; may be empty, which the
    /// transport completes like `Done`.
    DataIn(Vec<u8>),
    /// 2048-byte blocks, already checked against the medium; the core does
    /// the host I/O.
    Read {
        lba: u32,
        count: u32,
    },
    Done,
    /// The guest moved the tray; the core emits DEVICE_TRAY_MOVED.
    TrayMoved {
        open: bool,
    },
    /// CHECK CONDITION; the state keeps the sense.
    Error(Sense),
}

/// Everything a packet command can end in, for a transport that implements
/// all of QEMU's register behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketOutcome {
    /// Complete as the contract says (Error: status 0x41, error
    /// `sense.ata_error_register()`, interrupt reason 3, IRQ).
    Atapi(PacketResult),
    /// READ CD asking for whole sectors: read `count` 2048-byte blocks from
    /// `lba` and hand each to the guest as `raw_sector(lba + i, block)`,
    /// 2352 bytes per block.
    ReadRaw { lba: u32, count: u32 },
    /// A unit attention is pending and the command may not run: status
    /// [`UNIT_ATTENTION_PENDING_STATUS`], error [`UNIT_ATTENTION_PENDING_ERROR`],
    /// sector count 0, IRQ. The sense stays as it is.
    UnitAttentionPending,
    /// A data-transferring command in PIO mode with byte-count limit 0:
    /// QEMU aborts it at the ATA level (status 0x41, error 0x04 ABRT, the
    /// interrupt reason left alone, IRQ). The sense stays as it is.
    AbortByteCountLimit,
}

/// The removable-medium event the guest has not yet seen through GET EVENT
/// STATUS NOTIFICATION.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingEvents {
    new_media: bool,
    eject_request: bool,
}

/// Where the drive is in reporting a host-side medium change: QEMU answers
/// the next non-ALLOW_UA command with NOT READY/0x3A, the one after with
/// UNIT ATTENTION/0x28, so that guests see the old medium go and the new
/// one come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
enum MediumChange {
    #[default]
    Reported,
    ReportNotReady,
    ReportUnitAttention,
}

#[derive(Debug, Clone, Copy)]
struct CommandFlags {
    allowed_during_unit_attention: bool,
    needs_medium: bool,
    /// Never transfers data, so byte-count limit 0 is fine.
    no_data: bool,
    /// Transfers data only for some CDB fields; the handler checks the
    /// byte-count limit itself.
    conditional_data: bool,
}

const fn flags(
    allow_ua: bool,
    check_ready: bool,
    no_data: bool,
    conditional_data: bool,
) -> CommandFlags {
    CommandFlags {
        allowed_during_unit_attention: allow_ua,
        needs_medium: check_ready,
        no_data,
        conditional_data,
    }
}

mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const INQUIRY: u8 = 0x12;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1e;
    pub const READ_CAPACITY: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const SEEK_10: u8 = 0x2b;
    pub const READ_TOC_PMA_ATIP: u8 = 0x43;
    pub const GET_CONFIGURATION: u8 = 0x46;
    pub const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4a;
    pub const READ_DISC_INFORMATION: u8 = 0x51;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const READ_12: u8 = 0xa8;
    pub const READ_DVD_STRUCTURE: u8 = 0xad;
    pub const SET_CD_SPEED: u8 = 0xbb;
    pub const MECHANISM_STATUS: u8 = 0xbd;
    pub const READ_CD: u8 = 0xbe;
}

/// QEMU's atapi_cmd_table flags; `None` for opcodes it does not implement.
fn command_flags(op: u8) -> Option<CommandFlags> {
    use opcode::*;
    Some(match op {
        TEST_UNIT_READY => flags(false, true, true, false),
        REQUEST_SENSE | INQUIRY | GET_CONFIGURATION | GET_EVENT_STATUS_NOTIFICATION => {
            flags(true, false, false, false)
        }
        START_STOP_UNIT | PREVENT_ALLOW_MEDIUM_REMOVAL | SET_CD_SPEED => {
            flags(false, false, true, false)
        }
        READ_CAPACITY
        | READ_10
        | READ_TOC_PMA_ATIP
        | READ_DISC_INFORMATION
        | READ_12
        | READ_DVD_STRUCTURE => flags(false, true, false, false),
        SEEK_10 => flags(false, true, true, false),
        MODE_SENSE_10 | MECHANISM_STATUS => flags(false, false, false, false),
        READ_CD => flags(false, true, false, true),
        _ => return None,
    })
}

fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Space-padded, truncated ASCII field as SCSI identification strings are.
fn padded(text: &str, width: usize) -> impl Iterator<Item = u8> + '_ {
    text.bytes().chain(std::iter::repeat(b' ')).take(width)
}

/// Minutes, seconds, frames of a block address (2 s lead-in); QEMU keeps
/// each field in a byte, so huge addresses wrap the same way.
fn lba_to_msf(lba: u64) -> [u8; 3] {
    let frames = lba.wrapping_add(150);
    [
        ((frames / 75) / 60) as u8,
        ((frames / 75) % 60) as u8,
        (frames % 75) as u8,
    ]
}

/// A 2352-byte Mode 1 CD sector around 2048 bytes of user data: sync
/// pattern, MSF header, mode byte, the data, and 288 bytes of EDC/ECC that
/// QEMU leaves as zeros.
pub fn raw_sector(lba: u32, user_data: &[u8; CD_SECTOR_SIZE]) -> [u8; CD_RAW_SECTOR_SIZE] {
    let mut sector = [0u8; CD_RAW_SECTOR_SIZE];
    sector[1..11].fill(0xff);
    sector[12..15].copy_from_slice(&lba_to_msf(u64::from(lba)));
    sector[15] = 0x01;
    sector[16..16 + CD_SECTOR_SIZE].copy_from_slice(user_data);
    sector
}

/// The guest-visible state of the ATAPI CD-ROM command set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AtapiState {
    sense: Sense,
    medium_change: MediumChange,
    events: PendingEvents,
    locked: bool,
    tray_open: bool,
    /// The drive's configuration, not its state: never saved.
    #[serde(skip)]
    serial: String,
    /// Bytes per block of the last `Read` result (2048, or 2352 for READ CD
    /// raw sectors reached through `execute`).
    read_sector_size: usize,
}

impl AtapiState {
    /// Take a loaded ATAPI state (sense, media change reporting, lock,
    /// tray), keeping this drive's serial.
    pub fn load(&mut self, loaded: &AtapiState) -> Result<(), crate::devices::state::StateError> {
        if ![CD_SECTOR_SIZE, CD_RAW_SECTOR_SIZE].contains(&loaded.read_sector_size) {
            return Err(crate::devices::state::StateError::invalid("ide", format!("ATAPI block size {}", loaded.read_sector_size)));
        }
        let serial = std::mem::take(&mut self.serial);
        *self = loaded.clone();
        self.serial = serial;
        Ok(())
    }
}

impl Default for AtapiState {
    fn default() -> Self {
        Self::new()
    }
}

impl AtapiState {
    /// QEMU numbers drive serials by IDE position; a CD-ROM usually sits at
    /// secondary master (hdc), which QEMU calls QM00003.
    pub const DEFAULT_SERIAL: &'static str = "QM00003";
    pub const VENDOR: &'static str = "QEMU";
    pub const PRODUCT: &'static str = "QEMU DVD-ROM";
    pub const REVISION: &'static str = "2.5+";

    pub fn new() -> Self {
        AtapiState {
            sense: Sense::default(),
            medium_change: MediumChange::Reported,
            events: PendingEvents::default(),
            locked: false,
            tray_open: false,
            serial: Self::DEFAULT_SERIAL.to_string(),
            read_sector_size: CD_SECTOR_SIZE,
        }
    }

    /// The serial number INQUIRY's device identification page reports (the
    /// same string IDENTIFY PACKET DEVICE carries); at most 20 characters
    /// are used.
    pub fn set_serial(&mut self, serial: &str) {
        self.serial = serial.chars().filter(char::is_ascii).take(20).collect();
    }

    /// Run one packet command for a transport that cannot express QEMU's
    /// unit-attention check status or byte-count-limit abort: those become
    /// `Error(sense)`, and READ CD raw reads become `Read` with
    /// [`Self::read_sector_size`] 2352.
    pub fn execute(&mut self, cdb: &[u8; 12], medium_sectors: Option<u64>) -> PacketResult {
        self.read_sector_size = CD_SECTOR_SIZE;
        match self.execute_packet(cdb, medium_sectors, true) {
            PacketOutcome::Atapi(result) => result,
            PacketOutcome::ReadRaw { lba, count } => {
                self.read_sector_size = CD_RAW_SECTOR_SIZE;
                PacketResult::Read { lba, count }
            }
            // The abort cannot happen with a usable byte-count limit.
            PacketOutcome::UnitAttentionPending | PacketOutcome::AbortByteCountLimit => {
                PacketResult::Error(self.sense)
            }
        }
    }

    /// Bytes per block the guest expects for the last `Read` that
    /// [`Self::execute`] returned.
    pub fn read_sector_size(&self) -> usize {
        self.read_sector_size
    }

    /// Run one packet command. `byte_count_limit_usable` is false only for a
    /// PIO command whose byte-count limit (cylinder registers) is 0; DMA
    /// commands pass true.
    pub fn execute_packet(
        &mut self,
        cdb: &[u8; 12],
        medium_sectors: Option<u64>,
        byte_count_limit_usable: bool,
    ) -> PacketOutcome {
        let op = cdb[0];
        let flags = command_flags(op).unwrap_or(flags(false, false, false, false));

        if self.sense.key == sense_key::UNIT_ATTENTION && !flags.allowed_during_unit_attention {
            return PacketOutcome::UnitAttentionPending;
        }
        if !flags.allowed_during_unit_attention && !self.tray_open && medium_sectors.is_some() {
            match self.medium_change {
                MediumChange::ReportNotReady => {
                    self.medium_change = MediumChange::ReportUnitAttention;
                    return self.fail(sense_key::NOT_READY, asc::MEDIUM_NOT_PRESENT);
                }
                MediumChange::ReportUnitAttention => {
                    self.medium_change = MediumChange::Reported;
                    return self.fail(sense_key::UNIT_ATTENTION, asc::MEDIUM_MAY_HAVE_CHANGED);
                }
                MediumChange::Reported => {}
            }
        }
        let medium = Medium::new(medium_sectors, self.tray_open);
        if flags.needs_medium && !medium.present() {
            return self.fail(sense_key::NOT_READY, asc::MEDIUM_NOT_PRESENT);
        }
        if command_flags(op).is_none() {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::ILLEGAL_OPCODE);
        }
        if !flags.no_data && !flags.conditional_data && !byte_count_limit_usable {
            return PacketOutcome::AbortByteCountLimit;
        }

        use opcode::*;
        match op {
            TEST_UNIT_READY | SET_CD_SPEED => PacketOutcome::Atapi(PacketResult::Done),
            REQUEST_SENSE => self.request_sense(cdb),
            INQUIRY => self.inquiry(cdb),
            START_STOP_UNIT => self.start_stop_unit(cdb, medium_sectors.is_some()),
            PREVENT_ALLOW_MEDIUM_REMOVAL => {
                self.locked = cdb[4] & 1 != 0;
                PacketOutcome::Atapi(PacketResult::Done)
            }
            READ_CAPACITY => {
                let mut data = Vec::with_capacity(8);
                data.extend_from_slice(&(medium.blocks.wrapping_sub(1) as u32).to_be_bytes());
                data.extend_from_slice(&(CD_SECTOR_SIZE as u32).to_be_bytes());
                reply(data, 8)
            }
            READ_10 | READ_12 => {
                let count = if op == READ_10 {
                    u32::from(be16(&cdb[7..9]))
                } else {
                    be32(&cdb[6..10])
                };
                self.read(be32(&cdb[2..6]), count, medium)
            }
            SEEK_10 => {
                if u64::from(be32(&cdb[2..6])) >= medium.blocks {
                    self.fail(sense_key::ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_OUT_OF_RANGE)
                } else {
                    PacketOutcome::Atapi(PacketResult::Done)
                }
            }
            READ_TOC_PMA_ATIP => self.read_toc(cdb, medium),
            GET_CONFIGURATION => self.get_configuration(cdb, medium),
            GET_EVENT_STATUS_NOTIFICATION => self.get_event_status(cdb, medium_sectors.is_some()),
            READ_DISC_INFORMATION => self.read_disc_information(cdb),
            MODE_SENSE_10 => self.mode_sense(cdb),
            READ_DVD_STRUCTURE => self.read_dvd_structure(cdb, medium),
            MECHANISM_STATUS => reply(vec![0, 0, 0, 0, 0, 1, 0, 0], usize::from(be16(&cdb[8..10]))),
            READ_CD => self.read_cd(cdb, medium, byte_count_limit_usable),
            _ => self.fail(sense_key::ILLEGAL_REQUEST, asc::ILLEGAL_OPCODE),
        }
    }

    /// After the host inserted, changed or removed the medium, or opened or
    /// closed the tray (QEMU calls its change-media callback for each; for
    /// a tray move call [`Self::set_tray_open`] first): once the tray is
    /// closed on a medium, the guest's next commands see NOT READY/0x3A,
    /// then UNIT ATTENTION/0x28, and GET EVENT STATUS NOTIFICATION reports
    /// new media. Commands the guest itself uses to move the tray do not
    /// count as a change, as in QEMU.
    pub fn medium_changed(&mut self) {
        self.medium_change = MediumChange::ReportNotReady;
        self.events.new_media = true;
        self.events.eject_request = false;
    }

    /// The host asked to eject (QMP eject); a forced request also drops the
    /// guest's removal lock. The guest learns it through GET EVENT STATUS
    /// NOTIFICATION.
    pub fn eject_requested(&mut self, force: bool) {
        self.events.eject_request = true;
        if force {
            self.locked = false;
        }
    }

    /// Map a failed host read to sense as QEMU's ide_atapi_io_error does
    /// (anything but ENOMEDIUM reads as a block out of range), and keep it
    /// for REQUEST SENSE.
    pub fn host_error(&mut self, errno: i32) -> Sense {
        self.sense = if errno == libc::ENOMEDIUM {
            Sense::new(sense_key::NOT_READY, asc::MEDIUM_NOT_PRESENT)
        } else {
            Sense::new(sense_key::ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_OUT_OF_RANGE)
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

    /// PREVENT ALLOW MEDIUM REMOVAL's lock.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Device reset as QEMU's ide_reset: sense, pending change report, lock
    /// and tray state go; unreported media events stay.
    pub fn reset(&mut self) {
        self.sense = Sense::default();
        self.medium_change = MediumChange::Reported;
        self.locked = false;
        self.tray_open = false;
        self.read_sector_size = CD_SECTOR_SIZE;
    }
}
