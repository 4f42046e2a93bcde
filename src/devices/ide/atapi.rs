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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
struct PendingEvents {
    new_media: bool,
    eject_request: bool,
}

/// Where the drive is in reporting a host-side medium change: QEMU answers
/// the next non-ALLOW_UA command with NOT READY/0x3A, the one after with
/// UNIT ATTENTION/0x28, so that guests see the old medium go and the new
/// one come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone)]
pub struct AtapiState {
    sense: Sense,
    medium_change: MediumChange,
    events: PendingEvents,
    locked: bool,
    tray_open: bool,
    serial: String,
    /// Bytes per block of the last `Read` result (2048, or 2352 for READ CD
    /// raw sectors reached through `execute`).
    read_sector_size: usize,
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

    fn fail(&mut self, key: u8, asc: u8) -> PacketOutcome {
        self.sense = Sense::new(key, asc);
        PacketOutcome::Atapi(PacketResult::Error(self.sense))
    }

    fn request_sense(&mut self, cdb: &[u8; 12]) -> PacketOutcome {
        let mut data = vec![0u8; 18];
        data[0] = 0xf0; // valid, current error, fixed format
        data[2] = self.sense.key;
        data[7] = 10;
        data[12] = self.sense.asc;
        data[13] = self.sense.ascq;
        // Reading a unit attention consumes it; QEMU keeps the ASC.
        if self.sense.key == sense_key::UNIT_ATTENTION {
            self.sense.key = sense_key::NO_SENSE;
        }
        reply(data, usize::from(cdb[4]))
    }

    fn inquiry(&mut self, cdb: &[u8; 12]) -> PacketOutcome {
        let allocation = usize::from(cdb[4]);
        let vital_product_data = cdb[1] & 1 != 0;
        if !vital_product_data {
            let mut data = vec![0x05, 0x80, 0x00, 0x21, 31, 0, 0, 0];
            data.extend(padded(Self::VENDOR, 8));
            data.extend(padded(Self::PRODUCT, 16));
            data.extend(padded(Self::REVISION, 4));
            return reply(data, allocation);
        }
        let page = cdb[2];
        let mut data = vec![0x05, page, 0x00, 0x00];
        match page {
            0x00 => data.extend_from_slice(&[0x00, 0x83]),
            0x83 => {
                // QEMU leaves out descriptors that do not fit the allocation
                // length, and fails when not even the serial fits.
                if data.len() + 24 > allocation {
                    return self.fail(sense_key::ILLEGAL_REQUEST, asc::DATA_PHASE_ERROR);
                }
                data.extend_from_slice(&[0x02, 0x00, 0x00, 20]);
                data.extend(padded(&self.serial, 20));
                if data.len() + 72 <= allocation {
                    data.extend_from_slice(&[0x02, 0x01, 0x00, 68]);
                    data.extend(padded("ATA", 8));
                    data.extend(padded(Self::PRODUCT, 40));
                    data.extend(padded(&self.serial, 20));
                }
            }
            _ => return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        }
        data[3] = (data.len() - 4) as u8;
        reply(data, allocation)
    }

    fn start_stop_unit(&mut self, cdb: &[u8; 12], inserted: bool) -> PacketOutcome {
        let start = cdb[4] & 1 != 0;
        let load_eject = cdb[4] & 2 != 0;
        let power_condition = cdb[4] & 0xf0;
        // A power-condition change never moves the tray.
        if power_condition != 0 || !load_eject {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        let open = !start;
        if open && !self.tray_open && self.locked {
            let key = if inserted {
                sense_key::NOT_READY
            } else {
                sense_key::ILLEGAL_REQUEST
            };
            return self.fail(key, asc::MEDIUM_REMOVAL_PREVENTED);
        }
        if self.tray_open == open {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        self.tray_open = open;
        PacketOutcome::Atapi(PacketResult::TrayMoved { open })
    }

    fn read(&mut self, lba: u32, count: u32, medium: Medium) -> PacketOutcome {
        if count == 0 {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        if !medium.holds(lba, count) {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_OUT_OF_RANGE);
        }
        PacketOutcome::Atapi(PacketResult::Read { lba, count })
    }

    fn read_cd(
        &mut self,
        cdb: &[u8; 12],
        medium: Medium,
        byte_count_limit_usable: bool,
    ) -> PacketOutcome {
        let count = u32::from_be_bytes([0, cdb[6], cdb[7], cdb[8]]);
        let lba = be32(&cdb[2..6]);
        if count == 0 {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        if !medium.holds(lba, count) {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_OUT_OF_RANGE);
        }
        // Byte 9 selects the sector fields; QEMU implements "none", "user
        // data" and "everything".
        let fields = cdb[9] & 0xf8;
        if fields == 0 {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        if !byte_count_limit_usable {
            return PacketOutcome::AbortByteCountLimit;
        }
        match fields {
            0x10 => PacketOutcome::Atapi(PacketResult::Read { lba, count }),
            0xf8 => PacketOutcome::ReadRaw { lba, count },
            _ => self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        }
    }

    fn read_toc(&mut self, cdb: &[u8; 12], medium: Medium) -> PacketOutcome {
        let allocation = usize::from(be16(&cdb[7..9]));
        let msf = cdb[1] & 2 != 0;
        let start_track = cdb[6];
        // QEMU takes the format from the old location (byte 9, bits 6-7).
        match cdb[9] >> 6 {
            0 => {
                if start_track > 1 && start_track != 0xaa {
                    return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                }
                let mut data = vec![0, 0, 1, 1];
                if start_track <= 1 {
                    data.extend_from_slice(&[0, 0x14, 1, 0]);
                    push_address(&mut data, 0, msf);
                }
                data.extend_from_slice(&[0, 0x16, 0xaa, 0]);
                push_address(&mut data, medium.blocks, msf);
                set_length_header(&mut data);
                reply(data, allocation)
            }
            1 => {
                let data = vec![0x00, 0x0a, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
                reply(data, allocation)
            }
            2 => {
                let mut data = vec![0, 0, 1, 1];
                data.extend_from_slice(&[1, 0x14, 0, 0xa0, 0, 0, 0, 0, 1, 0, 0]);
                data.extend_from_slice(&[1, 0x14, 0, 0xa1, 0, 0, 0, 0, 1, 0, 0]);
                data.extend_from_slice(&[1, 0x14, 0, 0xa2, 0, 0, 0]);
                push_address(&mut data, medium.blocks, msf);
                data.extend_from_slice(&[1, 0x14, 0, 1, 0, 0, 0]);
                push_address(&mut data, 0, msf);
                set_length_header(&mut data);
                reply(data, allocation)
            }
            _ => self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        }
    }

    fn get_configuration(&mut self, cdb: &[u8; 12], medium: Medium) -> PacketOutcome {
        // Only a listing from feature 0 is implemented.
        if cdb[2] != 0 || cdb[3] != 0 {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
        }
        // QEMU never answers more than one 512-byte sector.
        let allocation = usize::from(be16(&cdb[7..9])).min(512);
        let current = medium.profile();
        let mut data = vec![0u8; 8];
        data[6..8].copy_from_slice(&current.to_be_bytes());
        // Feature 0 (profile list): persistent and current, two profiles.
        data.extend_from_slice(&[0x00, 0x00, 0x03, 8]);
        for profile in [PROFILE_DVD_ROM, PROFILE_CD_ROM] {
            data.extend_from_slice(&profile.to_be_bytes());
            data.push(u8::from(profile == current));
            data.push(0);
        }
        let following = (data.len() - 4) as u32;
        data[0..4].copy_from_slice(&following.to_be_bytes());
        reply(data, allocation)
    }

    fn get_event_status(&mut self, cdb: &[u8; 12], inserted: bool) -> PacketOutcome {
        const MEDIA_CLASS: u8 = 4;
        const MEDIA_CLASS_MASK: u8 = 1 << MEDIA_CLASS;
        let allocation = usize::from(be16(&cdb[7..9]));
        // Only polled operation: asynchronous notification is optional in MMC.
        if cdb[1] & 1 == 0 {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
        }
        if cdb[4] & MEDIA_CLASS_MASK == 0 {
            // No event available from the classes asked for.
            return reply(vec![0, 0, 0x80, MEDIA_CLASS_MASK], allocation);
        }
        let media_status = if self.tray_open {
            1
        } else if inserted {
            2
        } else {
            0
        };
        let mut event = 0;
        if !self.tray_open {
            if self.events.new_media {
                event = 2;
                self.events.new_media = false;
            } else if self.events.eject_request {
                event = 1;
                self.events.eject_request = false;
            }
        }
        reply(
            vec![
                0,
                4,
                MEDIA_CLASS,
                MEDIA_CLASS_MASK,
                event,
                media_status,
                0,
                0,
            ],
            allocation,
        )
    }

    fn read_disc_information(&mut self, cdb: &[u8; 12]) -> PacketOutcome {
        // Data types 1 and 2 exist only for Blu-ray.
        if cdb[1] & 7 != 0 {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
        }
        let mut data = vec![0u8; 34];
        // 32 more bytes; finalized disc, last session complete; one session
        // with one track; unrestricted use; CD-ROM or DVD-ROM.
        data[..8].copy_from_slice(&[0, 32, 0x0e, 1, 1, 1, 1, 0x20]);
        reply(data, usize::from(be16(&cdb[7..9])))
    }

    fn mode_sense(&mut self, cdb: &[u8; 12]) -> PacketOutcome {
        let allocation = usize::from(be16(&cdb[7..9]));
        let page_control = cdb[2] >> 6;
        let page = cdb[2] & 0x3f;
        match page_control {
            0 => {}
            // QEMU offers no changeable or default values.
            1 | 2 => return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
            _ => {
                return self.fail(
                    sense_key::ILLEGAL_REQUEST,
                    asc::SAVING_PARAMETERS_NOT_SUPPORTED,
                )
            }
        }
        // Mode parameter header (8 bytes, medium type 0x70 = no disc / door
        // closed as QEMU reports it always) followed by the page.
        let page_bytes: Vec<u8> = match page {
            // Read/write error recovery: read retry count 5.
            0x01 => vec![0x01, 0x06, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00],
            // CD audio control. QEMU answers with stale buffer bytes in the
            // volume fields; here they are zero.
            0x0e => {
                let mut bytes = vec![0u8; 16];
                bytes[0] = 0x0e;
                bytes[1] = 0x0e;
                bytes
            }
            0x2a => {
                let mut caps = vec![0u8; 22];
                caps[0] = 0x2a;
                caps[1] = 0x14;
                caps[2] = 0x3b; // reads CD-R, CD-RW, DVD-ROM, DVD-R, DVD-RAM
                                // Audio play is claimed because Linux automounts only then.
                caps[4] = 0x71;
                caps[5] = 0x60;
                // Lock supported, eject, tray loading; bit 1 shows the lock.
                caps[6] = 0x29 | if self.locked { 0x02 } else { 0 };
                caps[8..10].copy_from_slice(&704u16.to_be_bytes()); // 4x
                caps[11] = 2; // volume levels
                caps[12..14].copy_from_slice(&512u16.to_be_bytes()); // KiB buffer
                caps[14..16].copy_from_slice(&704u16.to_be_bytes());
                caps
            }
            _ => return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        };
        let mut data = vec![0, 0, 0x70, 0, 0, 0, 0, 0];
        data.extend_from_slice(&page_bytes);
        set_length_header(&mut data);
        reply(data, allocation)
    }

    fn read_dvd_structure(&mut self, cdb: &[u8; 12], medium: Medium) -> PacketOutcome {
        let media_type = cdb[1];
        let format = cdb[7];
        let allocation = usize::from(be16(&cdb[8..10]));
        if format != 0xff {
            if medium.is_cd() {
                return self.fail(sense_key::ILLEGAL_REQUEST, asc::INCOMPATIBLE_FORMAT);
            }
            if !medium.present() {
                return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
            }
        }
        if media_type != 0 || !(format <= 0x7f || format == 0xff) {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
        }
        let data = match format {
            0x00 => {
                // QEMU clears its buffer, which still holds the CDB, before
                // it reads the layer byte; so the layer is only checked when
                // the allocation length leaves byte 6 alone.
                let layer = if allocation > 6 { 0 } else { cdb[6] };
                if layer != 0 {
                    return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                }
                if medium.blocks == 0 {
                    return self.fail(sense_key::ILLEGAL_REQUEST, asc::MEDIUM_NOT_PRESENT);
                }
                let last = (medium.blocks - 1) as u32;
                let mut data = vec![0u8; 2048 + 4];
                data[0..2].copy_from_slice(&(2048u16 + 2).to_be_bytes());
                // DVD-ROM part version 1, 120 mm, one layer read-only.
                data[4..8].copy_from_slice(&[0x01, 0x0f, 0x01, 0x00]);
                data[12..16].copy_from_slice(&last.to_be_bytes());
                data[16..20].copy_from_slice(&last.to_be_bytes());
                data
            }
            0x01 => vec![0x00, 0x06, 0, 0, 0, 0, 0, 0], // no copy protection, no region
            0x04 => {
                let mut data = vec![0u8; 2048 + 4];
                data[0..2].copy_from_slice(&(2048u16 + 2).to_be_bytes());
                data
            }
            0xff => {
                let mut data = vec![0x00, 0x12, 0, 0];
                for (structure, length) in [
                    (0x00u8, 2048u16 + 4),
                    (0x01, 4 + 4),
                    (0x03, 188 + 4),
                    (0x04, 2048 + 4),
                ] {
                    data.extend_from_slice(&[structure, 0x40]); // readable, not writable
                    data.extend_from_slice(&length.to_be_bytes());
                }
                data
            }
            _ => return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        };
        reply(data, allocation)
    }
}

const PROFILE_CD_ROM: u16 = 0x0008;
const PROFILE_DVD_ROM: u16 = 0x0010;

/// The medium as the command handlers see it.
#[derive(Debug, Clone, Copy)]
struct Medium {
    /// 2048-byte blocks; 0 when there is no readable medium.
    blocks: u64,
}

impl Medium {
    fn new(medium_sectors: Option<u64>, tray_open: bool) -> Self {
        let blocks = if tray_open {
            0
        } else {
            medium_sectors.unwrap_or(0)
        };
        Medium { blocks }
    }

    fn present(self) -> bool {
        self.blocks > 0
    }

    fn is_cd(self) -> bool {
        self.present() && self.blocks <= CD_MAX_BLOCKS
    }

    fn profile(self) -> u16 {
        match self.blocks {
            0 => 0,
            blocks if blocks <= CD_MAX_BLOCKS => PROFILE_CD_ROM,
            _ => PROFILE_DVD_ROM,
        }
    }

    /// Whether blocks lba..lba+count all lie on the medium.
    fn holds(self, lba: u32, count: u32) -> bool {
        u64::from(lba) + u64::from(count) <= self.blocks
    }
}

fn push_address(data: &mut Vec<u8>, lba: u64, msf: bool) {
    if msf {
        data.push(0);
        data.extend_from_slice(&lba_to_msf(lba));
    } else {
        data.extend_from_slice(&(lba as u32).to_be_bytes());
    }
}

/// Store the count of the bytes that follow the 2-byte length field.
fn set_length_header(data: &mut [u8]) {
    let following = (data.len() - 2) as u16;
    data[0..2].copy_from_slice(&following.to_be_bytes());
}

fn reply(mut data: Vec<u8>, allocation_length: usize) -> PacketOutcome {
    data.truncate(allocation_length);
    PacketOutcome::Atapi(PacketResult::DataIn(data))
}

#[cfg(test)]
mod tests {
    //! Expected bytes are QEMU 7.2's, recorded with
    //! tools/research/atapi_probe.py (PIO over qtest, secondary master).
    use super::*;
    use proptest::prelude::*;

    /// The probe's default image: 1 MiB, 512 blocks, a CD.
    const CD: Option<u64> = Some(512);
    /// The probe's 800 000 000-byte image, a DVD.
    const DVD: Option<u64> = Some(390_625);

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn cdb(bytes: &[u8]) -> [u8; 12] {
        let mut packet = [0u8; 12];
        packet[..bytes.len()].copy_from_slice(bytes);
        packet
    }

    fn run(state: &mut AtapiState, bytes: &[u8], medium: Option<u64>) -> PacketOutcome {
        state.execute_packet(&cdb(bytes), medium, true)
    }

    fn data(state: &mut AtapiState, bytes: &[u8], medium: Option<u64>) -> Vec<u8> {
        match run(state, bytes, medium) {
            PacketOutcome::Atapi(PacketResult::DataIn(data)) => data,
            other => panic!("expected data for {bytes:02x?}, got {other:?}"),
        }
    }

    fn error(key: u8, asc: u8) -> PacketOutcome {
        PacketOutcome::Atapi(PacketResult::Error(Sense::new(key, asc)))
    }

    const DONE: PacketOutcome = PacketOutcome::Atapi(PacketResult::Done);

    fn sense_bytes(state: &mut AtapiState) -> String {
        data(state, &[0x03, 0, 0, 0, 18], CD)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn test_unit_ready_needs_a_medium() {
        let mut state = AtapiState::new();
        assert_eq!(run(&mut state, &[0x00], CD), DONE);
        assert_eq!(run(&mut state, &[0x00], None), error(2, 0x3a));
        assert_eq!(run(&mut state, &[0x00], Some(0)), error(2, 0x3a));
    }

    #[test]
    fn request_sense_is_fixed_format_and_sticky_across_successes() {
        let mut state = AtapiState::new();
        assert_eq!(
            sense_bytes(&mut state),
            "f00000000000000a00000000000000000000"
        );
        assert_eq!(run(&mut state, &[0x55], CD), error(5, 0x20));
        assert_eq!(run(&mut state, &[0x00], CD), DONE);
        // QEMU only overwrites sense on the next error.
        assert_eq!(
            sense_bytes(&mut state),
            "f00005000000000a00000000200000000000"
        );
        assert_eq!(
            data(&mut state, &[0x03, 0, 0, 0, 252], CD),
            hex("f00005000000000a00000000200000000000")
        );
        assert_eq!(data(&mut state, &[0x03, 0, 0, 0, 3], CD), hex("f00005"));
        assert_eq!(data(&mut state, &[0x03, 0, 0, 0, 0], CD), Vec::<u8>::new());
    }

    #[test]
    fn inquiry_standard_data() {
        let mut state = AtapiState::new();
        let full = hex("058000211f00000051454d552020202051454d55204456442d524f4d20202020322e352b");
        assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 96], CD), full);
        assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 8], CD), full[..8]);
        // INQUIRY works without a medium too.
        assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 36], None), full);
    }

    #[test]
    fn inquiry_vital_product_data() {
        let mut state = AtapiState::new();
        assert_eq!(
            data(&mut state, &[0x12, 1, 0, 0, 96], CD),
            hex("050000020083")
        );
        assert_eq!(
            data(&mut state, &[0x12, 1, 0x83, 0, 96], CD),
            hex("0583001802000014514d303030303320202020202020202020202020")
        );
        assert_eq!(run(&mut state, &[0x12, 1, 0x83, 0, 10], CD), error(5, 0x4b));
        assert_eq!(run(&mut state, &[0x12, 1, 0x80, 0, 96], CD), error(5, 0x24));
        // With room for it, the model descriptor follows the serial.
        let long = data(&mut state, &[0x12, 1, 0x83, 0, 255], CD);
        assert_eq!(long.len(), 100);
        assert_eq!(long[3], 96);
        assert_eq!(&long[28..32], &[0x02, 0x01, 0x00, 68]);
        assert_eq!(&long[32..40], b"ATA     ");
        assert_eq!(&long[40..52], b"QEMU DVD-ROM");
        assert_eq!(&long[80..87], b"QM00003");
        state.set_serial("QM00001");
        assert_eq!(
            &data(&mut state, &[0x12, 1, 0x83, 0, 96], CD)[8..15],
            b"QM00001"
        );
    }

    #[test]
    fn read_capacity_reports_the_last_block() {
        let mut state = AtapiState::new();
        assert_eq!(data(&mut state, &[0x25], CD), hex("000001ff00000800"));
        assert_eq!(data(&mut state, &[0x25], DVD), hex("0005f5e000000800"));
        assert_eq!(run(&mut state, &[0x25], None), error(2, 0x3a));
    }

    #[test]
    fn reads_are_checked_against_the_medium() {
        let mut state = AtapiState::new();
        let read = |lba, count| PacketOutcome::Atapi(PacketResult::Read { lba, count });
        assert_eq!(
            run(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1], CD),
            read(0, 1)
        );
        assert_eq!(run(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 0], CD), DONE);
        assert_eq!(
            run(&mut state, &[0x28, 0, 0, 0, 2, 0, 0, 0, 1], CD),
            error(5, 0x21)
        );
        assert_eq!(
            run(&mut state, &[0x28, 0, 0, 0, 1, 0xff, 0, 0, 2], CD),
            error(5, 0x21)
        );
        assert_eq!(
            run(&mut state, &[0x28, 0, 0, 0, 1, 0xff, 0, 0, 1], CD),
            read(511, 1)
        );
        assert_eq!(
            run(&mut state, &[0xa8, 0, 0, 0, 0, 1, 0, 0, 0, 1], CD),
            read(1, 1)
        );
        assert_eq!(
            run(
                &mut state,
                &[0xa8, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2],
                CD
            ),
            error(5, 0x21)
        );
        // QEMU's 32-bit sum wraps here and lets the read through; we refuse.
        assert_eq!(
            run(
                &mut state,
                &[0xa8, 0, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff],
                CD
            ),
            error(5, 0x21)
        );
        assert_eq!(
            run(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1], None),
            error(2, 0x3a)
        );
    }

    #[test]
    fn seek_checks_the_address() {
        let mut state = AtapiState::new();
        assert_eq!(run(&mut state, &[0x2b, 0, 0, 0, 0, 5], CD), DONE);
        assert_eq!(run(&mut state, &[0x2b, 0, 0, 0, 2, 0], CD), error(5, 0x21));
    }

    #[test]
    fn read_toc_formats() {
        let mut state = AtapiState::new();
        let toc = |state: &mut AtapiState, msf: u8, track: u8, alloc: u8, format: u8, medium| {
            run(
                state,
                &[0x43, msf, 0, 0, 0, 0, track, 0, alloc, format],
                medium,
            )
        };
        let ok = |text: &str| PacketOutcome::Atapi(PacketResult::DataIn(hex(text)));
        assert_eq!(
            toc(&mut state, 0, 0, 100, 0, CD),
            ok("0012010100140100000000000016aa0000000200")
        );
        assert_eq!(
            toc(&mut state, 2, 0, 100, 0, CD),
            ok("0012010100140100000002000016aa000000083e")
        );
        assert_eq!(
            toc(&mut state, 0, 0xaa, 100, 0, CD),
            ok("000a01010016aa0000000200")
        );
        assert_eq!(toc(&mut state, 0, 2, 100, 0, CD), error(5, 0x24));
        assert_eq!(toc(&mut state, 0, 0, 6, 0, CD), ok("001201010014"));
        assert_eq!(
            toc(&mut state, 0, 0, 100, 0x40, CD),
            ok("000a01010000000000000000")
        );
        assert_eq!(
            toc(&mut state, 0, 0, 100, 0x80, CD),
            ok("002e0101011400a000000000010000011400a100000000010000011400a2000000000002000114000100000000000000")
        );
        assert_eq!(
            toc(&mut state, 2, 0, 100, 0x80, CD),
            ok("002e0101011400a000000000010000011400a100000000010000011400a20000000000083e0114000100000000000200")
        );
        assert_eq!(toc(&mut state, 0, 0, 100, 0xc0, CD), error(5, 0x24));
        assert_eq!(
            toc(&mut state, 0, 0, 100, 0, DVD),
            ok("0012010100140100000000000016aa000005f5e1")
        );
        assert_eq!(
            toc(&mut state, 2, 0, 100, 0, DVD),
            ok("0012010100140100000002000016aa0000563219")
        );
        assert_eq!(
            toc(&mut state, 2, 0, 100, 0x80, DVD),
            ok("002e0101011400a000000000010000011400a100000000010000011400a2000000005632190114000100000000000200")
        );
        // The MMC format field in byte 2 is ignored, as QEMU does.
        assert_eq!(
            run(&mut state, &[0x43, 0, 2, 0, 0, 0, 0, 0, 100], CD),
            ok("0012010100140100000000000016aa0000000200")
        );
        assert_eq!(toc(&mut state, 0, 0, 100, 0, None), error(2, 0x3a));
    }

    #[test]
    fn mode_sense_pages() {
        let mut state = AtapiState::new();
        let sense = |state: &mut AtapiState, page: u8, alloc: u8| {
            run(state, &[0x5a, 0, page, 0, 0, 0, 0, 0, alloc], CD)
        };
        let ok = |text: &str| PacketOutcome::Atapi(PacketResult::DataIn(hex(text)));
        assert_eq!(
            sense(&mut state, 0x01, 100),
            ok("000e7000000000000106000500000000")
        );
        let capabilities = "001c7000000000002a143b007160290002c00002020002c0000000000000";
        assert_eq!(sense(&mut state, 0x2a, 100), ok(capabilities));
        assert_eq!(sense(&mut state, 0x2a, 10), ok(&capabilities[..20]));
        // Page 0x0e: length and header as QEMU; QEMU's volume bytes are stale
        // buffer contents, ours are zero.
        let audio = data(&mut state, &[0x5a, 0, 0x0e, 0, 0, 0, 0, 0, 100], CD);
        assert_eq!(audio.len(), 24);
        assert_eq!(&audio[..10], &hex("00167000000000000e0e")[..]);
        assert_eq!(sense(&mut state, 0x3f, 100), error(5, 0x24));
        assert_eq!(sense(&mut state, 0x08, 100), error(5, 0x24));
        assert_eq!(sense(&mut state, 0x6a, 100), error(5, 0x24));
        assert_eq!(sense(&mut state, 0xaa, 100), error(5, 0x24));
        assert_eq!(sense(&mut state, 0xea, 100), error(5, 0x39));
        assert_eq!(
            run(&mut state, &[0x1a, 0, 0x2a, 0, 100], CD),
            error(5, 0x20)
        );
        // No medium needed.
        assert_eq!(
            run(&mut state, &[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 100], None),
            ok(capabilities)
        );
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), DONE);
        assert_eq!(
            sense(&mut state, 0x2a, 100),
            ok("001c7000000000002a143b0071602b0002c00002020002c0000000000000")
        );
    }

    #[test]
    fn get_configuration_profiles_follow_the_medium() {
        let mut state = AtapiState::new();
        let conf = [0x46, 0, 0, 0, 0, 0, 0, 0, 100];
        assert_eq!(
            data(&mut state, &conf, CD),
            hex("0000001000000008000003080010000000080100")
        );
        assert_eq!(
            data(&mut state, &conf, DVD),
            hex("0000001000000010000003080010010000080000")
        );
        assert_eq!(
            data(&mut state, &conf, None),
            hex("0000001000000000000003080010000000080000")
        );
        assert_eq!(
            data(&mut state, &[0x46, 1, 0, 0, 0, 0, 0, 0, 100], CD),
            hex("0000001000000008000003080010000000080100")
        );
        assert_eq!(
            run(&mut state, &[0x46, 0, 0, 1, 0, 0, 0, 0, 100], CD),
            error(5, 0x24)
        );
        assert_eq!(
            data(&mut state, &[0x46, 0, 0, 0, 0, 0, 0, 0x10, 0], CD).len(),
            20
        );
        assert_eq!(
            data(&mut state, &[0x46, 0, 0, 0, 0, 0, 0, 0, 9], CD),
            hex("000000100000000800")
        );
        // Exactly at the 80-minute CD size the medium is still a CD.
        assert_eq!(data(&mut state, &conf, Some(CD_MAX_BLOCKS))[7], 0x08);
        assert_eq!(data(&mut state, &conf, Some(CD_MAX_BLOCKS + 1))[7], 0x10);
        state.set_tray_open(true);
        assert_eq!(
            data(&mut state, &conf, CD),
            hex("0000001000000000000003080010000000080000")
        );
    }

    #[test]
    fn event_status_notification_is_polled_only() {
        let mut state = AtapiState::new();
        let gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100];
        assert_eq!(data(&mut state, &gesn, CD), hex("0004041000020000"));
        assert_eq!(data(&mut state, &gesn, None), hex("0004041000000000"));
        assert_eq!(
            run(&mut state, &[0x4a, 0, 0, 0, 0x10, 0, 0, 0, 100], CD),
            error(5, 0x24)
        );
        assert_eq!(
            data(&mut state, &[0x4a, 1, 0, 0, 0x02, 0, 0, 0, 100], CD),
            hex("00008010")
        );
        assert_eq!(
            data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 5], CD),
            hex("0004041000")
        );
    }

    #[test]
    fn disc_information_mechanism_status_and_speed() {
        let mut state = AtapiState::new();
        assert_eq!(
            data(&mut state, &[0x51, 0, 0, 0, 0, 0, 0, 0, 100], CD),
            hex("00200e01010101200000000000000000000000000000000000000000000000000000")
        );
        assert_eq!(
            data(&mut state, &[0x51, 0, 0, 0, 0, 0, 0, 0, 4], CD),
            hex("00200e01")
        );
        assert_eq!(
            run(&mut state, &[0x51, 1, 0, 0, 0, 0, 0, 0, 100], CD),
            error(5, 0x24)
        );
        assert_eq!(
            run(&mut state, &[0x51, 0, 0, 0, 0, 0, 0, 0, 100], None),
            error(2, 0x3a)
        );
        assert_eq!(
            data(&mut state, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 100], CD),
            hex("0000000000010000")
        );
        assert_eq!(
            data(&mut state, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 100], None),
            hex("0000000000010000")
        );
        assert_eq!(
            data(&mut state, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 2], CD),
            hex("0000")
        );
        assert_eq!(run(&mut state, &[0xbb, 0, 0xff, 0xff], CD), DONE);
        assert_eq!(run(&mut state, &[0xbb, 0, 0xff, 0xff], None), DONE);
    }

    #[test]
    fn read_cd_transfer_types() {
        let mut state = AtapiState::new();
        let read_cd = |state: &mut AtapiState, lba: u8, count: u8, fields: u8| {
            run(state, &[0xbe, 0, 0, 0, 0, lba, 0, 0, count, fields], CD)
        };
        assert_eq!(
            read_cd(&mut state, 1, 1, 0x10),
            PacketOutcome::Atapi(PacketResult::Read { lba: 1, count: 1 })
        );
        assert_eq!(
            read_cd(&mut state, 1, 1, 0xf8),
            PacketOutcome::ReadRaw { lba: 1, count: 1 }
        );
        assert_eq!(read_cd(&mut state, 1, 1, 0x00), DONE);
        assert_eq!(read_cd(&mut state, 1, 1, 0x20), error(5, 0x24));
        assert_eq!(
            run(&mut state, &[0xbe, 0, 0, 0, 2, 0, 0, 0, 1, 0x10], CD),
            error(5, 0x21)
        );
        assert_eq!(
            run(&mut state, &[0xbe, 0, 0xff, 0, 0, 1, 0, 0, 0, 0x10], CD),
            DONE
        );
        // Through the contract's execute, a raw read is a Read of 2352-byte blocks.
        assert_eq!(
            state.execute(&cdb(&[0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0xf8]), CD),
            PacketResult::Read { lba: 1, count: 1 }
        );
        assert_eq!(state.read_sector_size(), CD_RAW_SECTOR_SIZE);
        assert_eq!(
            state.execute(&cdb(&[0x28, 0, 0, 0, 0, 1, 0, 0, 1]), CD),
            PacketResult::Read { lba: 1, count: 1 }
        );
        assert_eq!(state.read_sector_size(), CD_SECTOR_SIZE);
    }

    #[test]
    fn raw_sector_layout_matches_qemu() {
        let user: [u8; CD_SECTOR_SIZE] = std::array::from_fn(|i| i as u8);
        let sector = raw_sector(1, &user);
        assert_eq!(&sector[..16], &hex("00ffffffffffffffffffff0000020101")[..]);
        assert_eq!(&sector[16..16 + CD_SECTOR_SIZE], &user[..]);
        assert!(sector[16 + CD_SECTOR_SIZE..].iter().all(|&b| b == 0));
        assert_eq!(&raw_sector(0, &user)[12..16], &[0, 2, 0, 1]);
    }

    #[test]
    fn dvd_structure() {
        let mut state = AtapiState::new();
        let structure =
            |state: &mut AtapiState, media: u8, layer: u8, format: u8, alloc: u8, medium| {
                run(
                    state,
                    &[0xad, media, 0, 0, 0, 0, layer, format, 0, alloc],
                    medium,
                )
            };
        let physical = data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 0, 0, 100], DVD);
        assert_eq!(
            physical[..20],
            hex("08020000010f0100000000000005f5e00005f5e0")
        );
        assert!(physical[20..].iter().all(|&b| b == 0));
        assert_eq!(physical.len(), 100);
        assert_eq!(
            data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 0, 0x10, 0], DVD).len(),
            2052
        );
        // QEMU's layer check only sees the CDB when the allocation length
        // keeps byte 6 from being cleared.
        assert_eq!(
            data(&mut state, &[0xad, 0, 0, 0, 0, 0, 1, 0, 0, 100], DVD).len(),
            100
        );
        assert_eq!(structure(&mut state, 0, 1, 0, 6, DVD), error(5, 0x24));
        assert_eq!(
            data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 1, 0, 100], DVD),
            hex("0006000000000000")
        );
        assert_eq!(structure(&mut state, 0, 0, 3, 100, DVD), error(5, 0x24));
        let manufacturing = data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 4, 0, 100], DVD);
        assert_eq!(manufacturing[..4], hex("08020000"));
        assert!(manufacturing[4..].iter().all(|&b| b == 0));
        assert_eq!(
            data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 4, 0, 10], DVD),
            hex("08020000000000000000")
        );
        let listing = hex("001200000040080401400008034000c004400804");
        assert_eq!(
            data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 100], DVD),
            listing
        );
        assert_eq!(
            data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 100], CD),
            listing
        );
        assert_eq!(structure(&mut state, 0, 0, 0x80, 100, DVD), error(5, 0x24));
        assert_eq!(structure(&mut state, 1, 0, 0, 100, DVD), error(5, 0x24));
        assert_eq!(structure(&mut state, 0, 0, 0, 100, CD), error(5, 0x30));
        assert_eq!(structure(&mut state, 0, 0, 0xff, 100, None), error(2, 0x3a));
    }

    #[test]
    fn unknown_opcodes_are_illegal_requests() {
        let mut state = AtapiState::new();
        for op in [0x55, 0xff, 0x1a, 0x42, 0xb9] {
            assert_eq!(run(&mut state, &[op], CD), error(5, 0x20), "opcode {op:#x}");
            assert_eq!(
                run(&mut state, &[op], None),
                error(5, 0x20),
                "opcode {op:#x}"
            );
        }
    }

    #[test]
    fn byte_count_limit_zero_aborts_data_commands_only() {
        let mut state = AtapiState::new();
        let no_limit =
            |state: &mut AtapiState, bytes: &[u8]| state.execute_packet(&cdb(bytes), CD, false);
        assert_eq!(
            no_limit(&mut state, &[0x12, 0, 0, 0, 36]),
            PacketOutcome::AbortByteCountLimit
        );
        assert_eq!(no_limit(&mut state, &[0x00]), DONE);
        assert_eq!(
            no_limit(&mut state, &[0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0x00]),
            DONE
        );
        assert_eq!(
            no_limit(&mut state, &[0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0x10]),
            PacketOutcome::AbortByteCountLimit
        );
        assert_eq!(
            no_limit(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 0]),
            PacketOutcome::AbortByteCountLimit
        );
        assert_eq!(no_limit(&mut state, &[0x1e, 0, 0, 0, 1]), DONE);
        // The abort leaves the sense alone.
        assert_eq!(state.sense(), Sense::default());
    }

    #[test]
    fn lock_and_eject_with_a_medium() {
        let mut state = AtapiState::new();
        let eject = [0x1b, 0, 0, 0, 2];
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), DONE);
        assert!(state.locked());
        assert_eq!(run(&mut state, &eject, CD), error(2, 0x53));
        assert_eq!(
            error(2, 0x53),
            PacketOutcome::Atapi(PacketResult::Error(state.sense()))
        );
        assert!(!state.tray_open());
        assert_eq!(run(&mut state, &[0x1b, 0, 0, 0, 0x12], CD), DONE);
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 0], CD), DONE);
        assert_eq!(
            run(&mut state, &eject, CD),
            PacketOutcome::Atapi(PacketResult::TrayMoved { open: true })
        );
        assert!(state.tray_open());
        assert_eq!(run(&mut state, &eject, CD), DONE);
        assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
        assert_eq!(run(&mut state, &[0x25], CD), error(2, 0x3a));
        assert_eq!(
            data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], CD),
            hex("0004041000010000")
        );
        // Locking an open tray is allowed, and ejecting it again is no move.
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), DONE);
        assert_eq!(run(&mut state, &eject, CD), DONE);
        assert_eq!(
            run(&mut state, &[0x1b, 0, 0, 0, 3], CD),
            PacketOutcome::Atapi(PacketResult::TrayMoved { open: false })
        );
        // A guest-side reload is no medium change.
        assert_eq!(run(&mut state, &[0x00], CD), DONE);
        assert_eq!(
            data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], CD),
            hex("0004041000020000")
        );
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 0], CD), DONE);
        assert_eq!(run(&mut state, &[0x1b, 0, 0, 0, 0], CD), DONE);
        assert_eq!(run(&mut state, &[0x1b, 0, 0, 0, 1], CD), DONE);
    }

    #[test]
    fn lock_and_eject_without_a_medium() {
        let mut state = AtapiState::new();
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], None), DONE);
        assert_eq!(run(&mut state, &[0x1b, 0, 0, 0, 2], None), error(5, 0x53));
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 0], None), DONE);
        assert_eq!(
            run(&mut state, &[0x1b, 0, 0, 0, 2], None),
            PacketOutcome::Atapi(PacketResult::TrayMoved { open: true })
        );
        assert_eq!(
            data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], None),
            hex("0004041000010000")
        );
        assert_eq!(
            run(&mut state, &[0x1b, 0, 0, 0, 3], None),
            PacketOutcome::Atapi(PacketResult::TrayMoved { open: false })
        );
        assert_eq!(
            data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], None),
            hex("0004041000000000")
        );
    }

    #[test]
    fn medium_change_reports_not_ready_then_unit_attention() {
        // The probe's "ua" script: blockdev-change-medium, then commands
        // without REQUEST SENSE in between.
        let new_medium = Some(2048);
        let mut state = AtapiState::new();
        state.medium_changed();
        let inquiry =
            hex("058000211f00000051454d552020202051454d55204456442d524f4d20202020322e352b");
        assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 36], new_medium), inquiry);
        assert_eq!(
            data(&mut state, &[0x46, 0, 0, 0, 0, 0, 0, 0, 100], new_medium).len(),
            20
        );
        assert_eq!(run(&mut state, &[0x00], new_medium), error(2, 0x3a));
        assert_eq!(run(&mut state, &[0x00], new_medium), error(6, 0x28));
        assert_eq!(
            run(&mut state, &[0x00], new_medium),
            PacketOutcome::UnitAttentionPending
        );
        assert_eq!(
            run(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1], new_medium),
            PacketOutcome::UnitAttentionPending
        );
        assert_eq!(
            run(&mut state, &[0x55], new_medium),
            PacketOutcome::UnitAttentionPending
        );
        // The contract's execute reports the pending attention as its sense.
        assert_eq!(
            state.execute(&cdb(&[0x00]), new_medium),
            PacketResult::Error(Sense::new(6, 0x28))
        );
        assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 36], new_medium), inquiry);
        assert_eq!(
            data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], new_medium),
            hex("0004041002020000")
        );
        assert_eq!(
            data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], new_medium),
            hex("0004041000020000")
        );
        assert_eq!(
            data(&mut state, &[0x03, 0, 0, 0, 18], new_medium),
            hex("f00006000000000a00000000280000000000")
        );
        assert_eq!(
            data(&mut state, &[0x03, 0, 0, 0, 18], new_medium),
            hex("f00000000000000a00000000280000000000")
        );
        assert_eq!(run(&mut state, &[0x00], new_medium), DONE);
        assert_eq!(
            data(&mut state, &[0x25], new_medium),
            hex("000007ff00000800")
        );
    }

    #[test]
    fn request_sense_right_after_a_change_does_not_consume_it() {
        let mut state = AtapiState::new();
        state.medium_changed();
        assert_eq!(
            data(&mut state, &[0x03, 0, 0, 0, 18], CD),
            hex("f00000000000000a00000000000000000000")
        );
        assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
        assert_eq!(run(&mut state, &[0x00], CD), error(6, 0x28));
    }

    #[test]
    fn host_tray_open_and_close() {
        // The probe's "change" script: blockdev-open-tray, blockdev-close-tray.
        let mut state = AtapiState::new();
        let gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100];
        state.set_tray_open(true);
        state.medium_changed();
        assert_eq!(data(&mut state, &gesn, CD), hex("0004041000010000"));
        assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
        state.set_tray_open(false);
        state.medium_changed();
        assert_eq!(data(&mut state, &gesn, CD), hex("0004041002020000"));
        assert_eq!(data(&mut state, &gesn, CD), hex("0004041000020000"));
        assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
        assert_eq!(run(&mut state, &[0x00], CD), error(6, 0x28));
        assert_eq!(
            sense_bytes(&mut state),
            "f00006000000000a00000000280000000000"
        );
        assert_eq!(run(&mut state, &[0x00], CD), DONE);
    }

    #[test]
    fn host_eject_request_and_forced_eject() {
        let mut state = AtapiState::new();
        let gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100];
        state.medium_changed();
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), error(2, 0x3a));
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), error(6, 0x28));
        assert_eq!(
            sense_bytes(&mut state),
            "f00006000000000a00000000280000000000"
        );
        assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), DONE);
        state.eject_requested(false);
        assert!(state.locked());
        // A pending new-media event is reported first.
        assert_eq!(data(&mut state, &gesn, CD), hex("0004041002020000"));
        assert_eq!(data(&mut state, &gesn, CD), hex("0004041001020000"));
        state.eject_requested(true);
        assert!(!state.locked());
        state.set_tray_open(true);
        state.medium_changed();
        assert_eq!(data(&mut state, &gesn, CD), hex("0004041000010000"));
        assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
    }

    #[test]
    fn host_errors_map_as_qemu() {
        let mut state = AtapiState::new();
        assert_eq!(state.host_error(libc::EIO), Sense::new(5, 0x21));
        assert_eq!(state.sense(), Sense::new(5, 0x21));
        assert_eq!(state.host_error(libc::ENOSPC), Sense::new(5, 0x21));
        assert_eq!(state.host_error(libc::ENOMEDIUM), Sense::new(2, 0x3a));
        assert_eq!(
            sense_bytes(&mut state),
            "f00002000000000a000000003a0000000000"
        );
    }

    #[test]
    fn error_register_values_match_qemu() {
        // Observed error registers: 0x20 NOT READY, 0x50 ILLEGAL REQUEST,
        // 0x60 UNIT ATTENTION, all with status 0x41.
        assert_eq!(Sense::new(2, 0x3a).ata_error_register(), 0x20);
        assert_eq!(Sense::new(5, 0x21).ata_error_register(), 0x50);
        assert_eq!(Sense::new(6, 0x28).ata_error_register(), 0x60);
        assert_eq!(CHECK_CONDITION_STATUS, 0x41);
        assert_eq!(UNIT_ATTENTION_PENDING_STATUS, 0x01);
        assert_eq!(UNIT_ATTENTION_PENDING_ERROR, 0x60);
    }

    #[test]
    fn reset_forgets_sense_lock_tray_and_pending_change() {
        let mut state = AtapiState::new();
        state.medium_changed();
        run(&mut state, &[0x1e, 0, 0, 0, 1], CD);
        run(&mut state, &[0x55], CD);
        state.set_tray_open(true);
        state.reset();
        assert_eq!(state.sense(), Sense::default());
        assert!(!state.locked());
        assert!(!state.tray_open());
        assert_eq!(run(&mut state, &[0x00], CD), DONE);
        // Unreported events survive, as in QEMU.
        assert_eq!(
            data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], CD),
            hex("0004041002020000")
        );
    }

    /// Largest reply any command builds: a DVD structure of 2048 + 4 bytes.
    const LARGEST_REPLY: usize = 2052;

    fn allocation_length(packet: &[u8; 12]) -> usize {
        match packet[0] {
            0x03 | 0x12 => usize::from(packet[4]),
            0x25 => 8,
            0x46 => usize::from(be16(&packet[7..9])).min(512),
            0xad | 0xbd => usize::from(be16(&packet[8..10])),
            _ => usize::from(be16(&packet[7..9])),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn hostile_packets_never_panic_or_overrun(
            packets in proptest::collection::vec(any::<[u8; 12]>(), 1..8),
            medium in proptest::option::of(prop_oneof![Just(0u64), 1u64..4096, Just(u64::MAX), any::<u64>()]),
            tray_open in any::<bool>(),
            changed in any::<bool>(),
            limit_usable in any::<bool>(),
        ) {
            let mut state = AtapiState::new();
            state.set_tray_open(tray_open);
            if changed {
                state.medium_changed();
            }
            for packet in packets {
                match state.execute_packet(&packet, medium, limit_usable) {
                    PacketOutcome::Atapi(PacketResult::DataIn(data)) => {
                        prop_assert!(data.len() <= LARGEST_REPLY);
                        prop_assert!(data.len() <= allocation_length(&packet));
                    }
                    PacketOutcome::Atapi(PacketResult::Read { lba, count })
                    | PacketOutcome::ReadRaw { lba, count } => {
                        let blocks = if state.tray_open() { 0 } else { medium.unwrap_or(0) };
                        prop_assert!(count > 0);
                        prop_assert!(u64::from(lba) + u64::from(count) <= blocks);
                        prop_assert!(limit_usable);
                    }
                    PacketOutcome::Atapi(PacketResult::Error(sense)) => {
                        prop_assert_eq!(sense, state.sense());
                        prop_assert!(sense.key != 0);
                    }
                    PacketOutcome::AbortByteCountLimit => prop_assert!(!limit_usable),
                    PacketOutcome::UnitAttentionPending => {
                        prop_assert_eq!(state.sense().key, sense_key::UNIT_ATTENTION)
                    }
                    PacketOutcome::Atapi(PacketResult::Done)
                    | PacketOutcome::Atapi(PacketResult::TrayMoved { .. }) => {}
                }
            }
        }
    }
}
