//! CMOS NVRAM behind ports 0x70 (index) / 0x71 (data), filled the way
//! QEMU's pc_cmos_init fills it: memory sizes, boot order, equipment and
//! IDE disk geometry, which SeaBIOS and hvmloader read.
//!
//! Under Xen the hypervisor's vRTC owns indexes 0-13 (the clock) and only
//! forwards accesses to indexes 14 and up, so [`CmosScope::NvramOnly`]
//! serves just those. The qtest machine has no vRTC, so
//! [`CmosScope::Full`] also serves the clock registers, as a static clock
//! read from the host at start.

use crate::devices::bus::{BusDevice, Reset};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

pub const INDEX_PORT: u16 = 0x70;
pub const DATA_PORT: u16 = 0x71;
pub const CMOS_SIZE: usize = 128;
/// First index the Xen vRTC forwards to the device model.
pub const FIRST_NVRAM_INDEX: u8 = 0x0e;

/// Bit 7 of the index port masks NMIs; it is not part of the index.
const INDEX_MASK: u8 = 0x7f;

const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;
const REG_A_DIVIDER_32KHZ_1024HZ: u8 = 0x26;
const REG_B_24H: u8 = 0x02;
const REG_B_SQWE: u8 = 0x08;
const REG_B_AIE: u8 = 0x20;
const REG_B_PIE: u8 = 0x40;
const REG_C_UF: u8 = 0x10;
const REG_C_AF: u8 = 0x20;
const REG_C_PF: u8 = 0x40;
const REG_C_IRQF: u8 = 0x80;
/// The shutdown status byte the BIOS reads after a reset.
const SHUTDOWN_STATUS: usize = 0x0f;
/// A guest that suspends itself leaves this there; it survives a reset.
const SHUTDOWN_STATUS_SUSPEND: u8 = 0xfe;
const REG_D_VALID_RAM: u8 = 0x80;

const EQUIPMENT: usize = 0x14;
const EQUIPMENT_FPU: u8 = 0x02;
const EQUIPMENT_PS2_MOUSE: u8 = 0x04;
const BASE_MEMORY_LO: usize = 0x15;
const EXTENDED_MEMORY_LO: usize = 0x17;
const EXTENDED_MEMORY_COPY_LO: usize = 0x30;
const MEMORY_ABOVE_16M_LO: usize = 0x34;
const MEMORY_ABOVE_4G: usize = 0x5b;
const CENTURY: usize = 0x32;
const CENTURY_IBM: usize = 0x37;
const BOOT_THIRD_AND_FLOPPY_CHECK: usize = 0x38;
const BOOT_FIRST_AND_SECOND: usize = 0x3d;
const HARD_DISK_TYPES: usize = 0x12;
const DISK_TRANSLATION: usize = 0x39;
/// "User defined" drive type: geometry in the info block.
const DISK_TYPE_USER: u8 = 47;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const BASE_MEMORY_KIB: u16 = 640;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmosScope {
    /// Xen machine: indexes >= 0x0e only; the rest belongs to Xen's vRTC.
    NvramOnly,
    /// qtest machine: all 128 bytes, with a static clock.
    Full,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BootOrderError {
    #[error("-boot order={order}: invalid boot device '{device}' for a PC (use a, b, c, d or n)")]
    InvalidDevice { order: String, device: char },
    #[error("-boot order={order}: boot device '{device}' given twice")]
    Duplicate { order: String, device: char },
    #[error("-boot order={order}: too many boot devices for a PC (at most 3)")]
    TooMany { order: String },
}

/// The BIOS boot order, as the CMOS nibbles encode it: floppy 1, hard
/// disk 2, CD-ROM 3, network 4, 0 for an unused slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootOrder {
    slots: [u8; 3],
}

impl BootOrder {
    /// QEMU's default for a PC when `-boot` is not given.
    pub const DEFAULT: &'static str = "cad";

    /// Parse a QEMU `-boot order=` string such as "cda".
    pub fn parse(order: &str) -> Result<Self, BootOrderError> {
        let mut slots = [0u8; 3];
        let mut seen = Vec::new();
        for (i, device) in order.chars().enumerate() {
            let code = match device {
                'a' | 'b' => 1,
                'c' => 2,
                'd' => 3,
                'n' => 4,
                _ => {
                    return Err(BootOrderError::InvalidDevice {
                        order: order.to_string(),
                        device,
                    })
                }
            };
            if seen.contains(&device) {
                return Err(BootOrderError::Duplicate {
                    order: order.to_string(),
                    device,
                });
            }
            seen.push(device);
            if i >= slots.len() {
                return Err(BootOrderError::TooMany {
                    order: order.to_string(),
                });
            }
            slots[i] = code;
        }
        Ok(BootOrder { slots })
    }

    pub fn slots(&self) -> [u8; 3] {
        self.slots
    }
}

impl Default for BootOrder {
    fn default() -> Self {
        BootOrder::parse(Self::DEFAULT).expect("the default boot order is valid")
    }
}

/// Guest RAM split around the PCI hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLayout {
    pub below_4g: u64,
    pub above_4g: u64,
}

impl MemoryLayout {
    /// The split QEMU's pc-i440fx machine makes for `-m`: RAM stays below
    /// 3.5 GiB unless it does not fit, in which case only 3 GiB stays low
    /// (gigabyte alignment) and the rest goes above 4 GiB.
    pub fn qemu_pc(ram_size: u64) -> Self {
        const MAX_BELOW_4G: u64 = 0xe000_0000;
        const ALIGNED_BELOW_4G: u64 = 0xc000_0000;
        let low = if ram_size >= MAX_BELOW_4G {
            ALIGNED_BELOW_4G
        } else {
            MAX_BELOW_4G
        };
        if ram_size >= low {
            MemoryLayout {
                below_4g: low,
                above_4g: ram_size - low,
            }
        } else {
            MemoryLayout {
                below_4g: ram_size,
                above_4g: 0,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BiosTranslation {
    None = 0,
    Lba = 1,
    Large = 2,
    Rechs = 3,
}

/// BIOS geometry of an IDE hard disk as QEMU reports it in CMOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardDiskGeometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors: u8,
    pub translation: BiosTranslation,
}

impl HardDiskGeometry {
    /// QEMU's guess for a disk without a partition table to take a geometry
    /// from: 16 heads, 63 sectors, cylinders clamped to 2..=16383, and LBA
    /// translation once the geometry no longer fits the BIOS CHS limits.
    pub fn guess_for_sectors(total_sectors: u64) -> Self {
        let cylinders = (total_sectors / (16 * 63)).clamp(2, 16383) as u16;
        let translation = if cylinders <= 1024 {
            BiosTranslation::None
        } else {
            BiosTranslation::Lba
        };
        HardDiskGeometry {
            cylinders,
            heads: 16,
            sectors: 63,
            translation,
        }
    }
}

/// What the machine knows at start-up that the firmware reads from CMOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmosSetup {
    pub scope: CmosScope,
    pub memory: MemoryLayout,
    pub boot_order: BootOrder,
    /// QEMU's `-boot strict`-independent floppy boot signature check
    /// (`fd_bootchk`, on by default).
    pub floppy_boot_check: bool,
    /// Up to four IDE units (primary master, primary slave, secondary
    /// master, secondary slave); None for absent units and CD-ROMs.
    pub hard_disks: [Option<HardDiskGeometry>; 4],
}

pub struct Cmos {
    scope: CmosScope,
    bytes: [u8; CMOS_SIZE],
    index: u8,
}

fn to_bcd(v: u32) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

/// (year, month, day, weekday with Sunday = 1) for days since 1970-01-01.
fn civil_date(days: i64) -> (i64, u32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ((days + 4).rem_euclid(7) + 1) as u32;
    (year, month, day, weekday)
}

impl Cmos {
    pub fn new(setup: &CmosSetup) -> Self {
        let mut cmos = Cmos {
            scope: setup.scope,
            bytes: [0; CMOS_SIZE],
            index: 0,
        };
        cmos.fill_clock(SystemTime::now());
        cmos.fill_memory(setup.memory);
        let [first, second, third] = setup.boot_order.slots();
        cmos.bytes[BOOT_FIRST_AND_SECOND] = second << 4 | first;
        cmos.bytes[BOOT_THIRD_AND_FLOPPY_CHECK] = third << 4 | u8::from(!setup.floppy_boot_check);
        cmos.bytes[EQUIPMENT] = EQUIPMENT_FPU | EQUIPMENT_PS2_MOUSE;
        cmos.fill_hard_disks(&setup.hard_disks);
        cmos
    }

    fn fill_clock(&mut self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
        let (year, month, day, weekday) = civil_date(secs.div_euclid(86_400));
        let of_day = secs.rem_euclid(86_400) as u32;
        self.bytes[0x00] = to_bcd(of_day % 60);
        self.bytes[0x02] = to_bcd(of_day / 60 % 60);
        self.bytes[0x04] = to_bcd(of_day / 3600);
        self.bytes[0x06] = to_bcd(weekday);
        self.bytes[0x07] = to_bcd(day);
        self.bytes[0x08] = to_bcd(month);
        self.bytes[0x09] = to_bcd(year.rem_euclid(100) as u32);
        self.bytes[REG_A] = REG_A_DIVIDER_32KHZ_1024HZ;
        self.bytes[REG_B] = REG_B_24H;
        self.bytes[REG_C] = 0;
        self.bytes[REG_D] = REG_D_VALID_RAM;
        let century = to_bcd(year.div_euclid(100).rem_euclid(100) as u32);
        self.bytes[CENTURY] = century;
        self.bytes[CENTURY_IBM] = century;
    }

    fn set_u16(&mut self, at: usize, v: u16) {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn fill_memory(&mut self, memory: MemoryLayout) {
        self.set_u16(BASE_MEMORY_LO, BASE_MEMORY_KIB);
        let extended_kib = (memory.below_4g / KIB).saturating_sub(1024).min(0xffff) as u16;
        self.set_u16(EXTENDED_MEMORY_LO, extended_kib);
        self.set_u16(EXTENDED_MEMORY_COPY_LO, extended_kib);
        let above_16m = if memory.below_4g > 16 * MIB {
            ((memory.below_4g - 16 * MIB) / (64 * KIB)).min(0xffff) as u16
        } else {
            0
        };
        self.set_u16(MEMORY_ABOVE_16M_LO, above_16m);
        let above_4g = (memory.above_4g / (64 * KIB)).min(0xff_ffff) as u32;
        self.bytes[MEMORY_ABOVE_4G..MEMORY_ABOVE_4G + 3].copy_from_slice(&above_4g.to_le_bytes()[..3]);
    }

    fn fill_hard_disks(&mut self, disks: &[Option<HardDiskGeometry>; 4]) {
        let mut types = 0u8;
        // Only the primary channel has CMOS type/geometry slots.
        for (unit, (type_at, info_at, type_bits)) in [(0x19, 0x1b, 0xf0), (0x1a, 0x24, 0x0f)].into_iter().enumerate() {
            let Some(geometry) = disks[unit] else { continue };
            types |= type_bits;
            self.bytes[type_at] = DISK_TYPE_USER;
            let [cyl_lo, cyl_hi] = geometry.cylinders.to_le_bytes();
            let info = [
                cyl_lo,
                cyl_hi,
                geometry.heads,
                0xff,
                0xff,
                0xc0 | u8::from(geometry.heads > 8) << 3,
                cyl_lo,
                cyl_hi,
                geometry.sectors,
            ];
            self.bytes[info_at..info_at + info.len()].copy_from_slice(&info);
        }
        self.bytes[HARD_DISK_TYPES] = types;
        let translation = disks
            .iter()
            .enumerate()
            .filter_map(|(unit, d)| d.map(|g| (g.translation as u8) << (2 * unit)))
            .fold(0, |acc, bits| acc | bits);
        self.bytes[DISK_TRANSLATION] = translation;
    }

    /// The byte at `index` (0..128), for the machine and tests.
    pub fn byte(&self, index: u8) -> u8 {
        self.bytes[(index & INDEX_MASK) as usize]
    }

    fn serves(&self, index: u8) -> bool {
        self.scope == CmosScope::Full || index >= FIRST_NVRAM_INDEX
    }

    fn read_data(&mut self) -> u8 {
        if !self.serves(self.index) {
            return 0xff;
        }
        let value = self.bytes[self.index as usize];
        // Reading register C acknowledges the (never raised) RTC interrupt.
        if self.index as usize == REG_C {
            self.bytes[REG_C] = 0;
        }
        value
    }

    fn write_data(&mut self, value: u8) {
        if !self.serves(self.index) {
            return;
        }
        match self.index as usize {
            REG_C | REG_D => {}
            REG_A => self.bytes[REG_A] = value & 0x7f,
            at => self.bytes[at] = value,
        }
    }
}

/// QEMU's RTC reset: the NVRAM keeps its contents, the shutdown status
/// byte clears (unless it says "suspended"), the interrupt enables and
/// flags of registers B and C clear. The index register is not reset, in
/// QEMU either. Under Xen registers B and C belong to the vRTC; clearing
/// our unserved copy is harmless.
impl Reset for Cmos {
    fn reset(&mut self) {
        if self.bytes[SHUTDOWN_STATUS] != SHUTDOWN_STATUS_SUSPEND {
            self.bytes[SHUTDOWN_STATUS] = 0;
        }
        self.bytes[REG_B] &= !(REG_B_PIE | REG_B_AIE | REG_B_SQWE);
        self.bytes[REG_C] &= !(REG_C_UF | REG_C_IRQF | REG_C_PF | REG_C_AF);
    }
}

/// The CMOS as saved: its 128 bytes (NVRAM, and the RTC registers as we
/// keep them) and the index latch. Under Xen the clock itself is Xen's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CmosState {
    pub bytes: Vec<u8>,
    pub index: u8,
}

impl crate::devices::state::Snapshot for Cmos {
    fn snapshot(&self) -> crate::devices::state::DeviceState {
        crate::devices::state::DeviceState::Cmos(CmosState { bytes: self.bytes.to_vec(), index: self.index })
    }

    /// The loaded bytes replace the defaults this CMOS was built with
    /// (memory sizes, boot order, disk geometry): the guest may have
    /// changed them, and a restored guest must see what it left.
    fn restore(&mut self, state: &crate::devices::state::DeviceState) -> Result<(), crate::devices::state::StateError> {
        let crate::devices::state::DeviceState::Cmos(s) = state else {
            return Err(crate::devices::state::StateError::wrong_kind("cmos", state));
        };
        let bytes: [u8; CMOS_SIZE] = s.bytes.as_slice().try_into().map_err(|_| {
            crate::devices::state::StateError::invalid("cmos", format!("{} bytes, not {CMOS_SIZE}", s.bytes.len()))
        })?;
        self.bytes = bytes;
        self.index = s.index & INDEX_MASK;
        Ok(())
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some(first) = data.first_mut() else { return };
        // The index port is write-only, as in QEMU.
        if base + offset == DATA_PORT as u64 {
            *first = self.read_data();
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match base + offset {
            p if p == INDEX_PORT as u64 => self.index = value & INDEX_MASK,
            p if p == DATA_PORT as u64 => self.write_data(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
