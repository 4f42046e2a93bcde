//! The Xen platform PCI device (5853:0001) and the emulated-device unplug
//! protocol on fixed ports 0x10-0x1f (Xen docs/misc/hvm-emulated-unplug).
//!
//! PV drivers find the device by its ids, map the grant table into BAR1 and
//! ask, through port 0x10, for the emulated disks and NICs to go away so a
//! disk is never reachable through two paths. The machine decides what an
//! unplug means; this device only decodes the request and calls back.

use super::config::{BAR0, INTERRUPT_PIN};
use super::qemu_header::qemu_config_space;
use super::{ConfigSpace, ConfigWriteResult, IoBar, PciFunction};
use crate::devices::bus::{BusDevice, Reset};
use std::sync::Arc;

pub const VENDOR_XEN: u16 = 0x5853;
pub const DEVICE_PLATFORM: u16 = 0x0001;
pub const CLASS_OTHER_BRIDGE_FF80: u32 = 0xff8000;
pub const REVISION: u8 = 0x01;

pub const FIXED_PORT_BASE: u16 = 0x10;
pub const FIXED_PORT_LEN: u16 = 0x10;
pub const IO_BAR_LEN: u32 = 0x100;
pub const MMIO_BAR_LEN: u32 = 16 << 20;
const BAR1: usize = BAR0 + 4;
const BAR_MEM_PREFETCHABLE: u32 = 0x08;

pub const MAGIC: u16 = 0x49d2;
/// The magic byte-swapped: what a blacklisted driver reads back.
pub const MAGIC_BLACKLISTED: u16 = 0xd249;
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes a guest log line may grow to before it is flushed anyway.
pub const LOG_LINE_MAX: usize = 4096;

/// Bit 0 of the platform flags byte: ROM lock (kept for read-back only).
const PLATFORM_FLAG_ROM_LOCK: u8 = 0x01;

/// A guest's unplug request (the two-byte write to port 0x10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnplugMask(pub u16);

impl UnplugMask {
    /// All emulated IDE and SCSI disks, CD-ROMs excepted.
    pub const ALL_IDE_DISKS: u16 = 1 << 0;
    pub const ALL_NICS: u16 = 1 << 1;
    /// All IDE disks except the primary master, CD-ROMs excepted.
    pub const AUX_IDE_DISKS: u16 = 1 << 2;
    pub const NVME_DISKS: u16 = 1 << 3;

    pub fn all_ide_disks(self) -> bool {
        self.0 & Self::ALL_IDE_DISKS != 0
    }
    pub fn all_nics(self) -> bool {
        self.0 & Self::ALL_NICS != 0
    }
    /// True only when the aux request is not overridden by bit 0.
    pub fn aux_ide_disks_only(self) -> bool {
        self.0 & Self::AUX_IDE_DISKS != 0 && !self.all_ide_disks()
    }
    pub fn nvme_disks(self) -> bool {
        self.0 & Self::NVME_DISKS != 0
    }
    /// Whether the IDE disk at `channel`/`unit` (0/0 = primary master) goes.
    pub fn unplugs_ide_disk(self, channel: u8, unit: u8) -> bool {
        self.all_ide_disks() || (self.aux_ide_disks_only() && (channel, unit) != (0, 0))
    }
}

pub type UnplugFn = Arc<dyn Fn(UnplugMask) + Send + Sync>;

pub struct XenPlatform {
    config: ConfigSpace,
    power_on: ConfigSpace,
    on_unplug: UnplugFn,
    flags: u8,
    blacklisted: bool,
    product: Option<u16>,
    build: Option<u32>,
    log_line: Vec<u8>,
    /// Every unplug mask the guest wrote, or'ed: kept across a save (the
    /// IDE's own state says which disks went).
    unplugged: u16,
    /// The guest writes the unplug, log and identity ports as often as it
    /// likes; each is a line in dom0's log, so they are rate limited.
    log_limiter: crate::logging::RateLimiter,
}

impl XenPlatform {
    pub fn new(on_unplug: UnplugFn) -> Self {
        let mut config = qemu_config_space(VENDOR_XEN, DEVICE_PLATFORM, CLASS_OTHER_BRIDGE_FF80, REVISION);
        config.set_u16(super::config::SUBSYSTEM_VENDOR_ID, VENDOR_XEN);
        config.set_u16(super::config::SUBSYSTEM_ID, DEVICE_PLATFORM);
        config.set_byte(INTERRUPT_PIN, 0x01);
        // QEMU turns I/O and memory decoding on from the start.
        config.set_u16(
            super::config::COMMAND,
            super::config::COMMAND_IO | super::config::COMMAND_MEMORY,
        );
        config.init_io_bar(0, IO_BAR_LEN);
        config.set_u32(BAR1, BAR_MEM_PREFETCHABLE);
        config.set_writable_u32(BAR1, !(MMIO_BAR_LEN - 1));
        XenPlatform {
            power_on: config.clone(),
            config,
            on_unplug,
            flags: 0,
            blacklisted: false,
            product: None,
            build: None,
            log_line: Vec::new(),
            unplugged: 0,
            log_limiter: crate::logging::RateLimiter::for_guest_lines(),
        }
    }

    /// Make drivers that check the magic after announcing themselves back
    /// off (the protocol's blacklist answer).
    pub fn set_blacklisted(&mut self, blacklisted: bool) {
        self.blacklisted = blacklisted;
    }

    /// Product number and build number the guest's PV drivers announced.
    pub fn driver_identity(&self) -> (Option<u16>, Option<u32>) {
        (self.product, self.build)
    }

    /// BAR1 as programmed, if memory decoding is on: (base, length).
    pub fn mmio_bar(&self) -> Option<(u64, u64)> {
        let base = self.config.u32_at(BAR1) & !(MMIO_BAR_LEN - 1);
        let decoding = self.config.command() & super::config::COMMAND_MEMORY != 0;
        (decoding && base != 0).then_some((base as u64, MMIO_BAR_LEN as u64))
    }

    fn magic(&self) -> u16 {
        if self.blacklisted {
            MAGIC_BLACKLISTED
        } else {
            MAGIC
        }
    }

    fn unplug(&mut self, mask: u16) {
        self.unplugged |= mask;
        let mask = UnplugMask(mask);
        self.log_limiter.log(
            log::Level::Info,
            "xen-platform-unplug",
            format_args!("xen-platform: guest asked to unplug emulated devices, mask {:#06x}", mask.0),
        );
        (self.on_unplug)(mask);
    }

    fn log_byte(&mut self, byte: u8) {
        if byte == b'\n' || self.log_line.len() >= LOG_LINE_MAX {
            let line = String::from_utf8_lossy(&self.log_line).into_owned();
            self.log_limiter.log(log::Level::Info, "xen-platform-log", format_args!("xen-platform: guest PV driver: {line}"));
            self.log_line.clear();
        }
        if byte != b'\n' {
            self.log_line.push(byte);
        }
    }

    /// Only the access sizes QEMU answers: a word at 0x10 (magic), bytes
    /// at 0x10 (flags) and 0x12 (protocol version); the rest floats high.
    fn fixed_read(&self, offset: u64, len: usize) -> u32 {
        match (offset, len) {
            (0, 2) => self.magic() as u32,
            (0, 1) => self.flags as u32,
            (2, 1) => PROTOCOL_VERSION as u32,
            _ => u32::MAX,
        }
    }

    fn fixed_write(&mut self, offset: u64, len: usize, value: u32) {
        match (offset, len) {
            (0, 2) => self.unplug(value as u16),
            (0, 4) => {
                self.log_limiter.log(
                    log::Level::Info,
                    "xen-platform-identity",
                    format_args!("xen-platform: guest PV driver build {value:#x}"),
                );
                self.build = Some(value);
            }
            (0, 1) => self.flags = value as u8 & PLATFORM_FLAG_ROM_LOCK,
            (2, 2) => {
                self.log_limiter.log(
                    log::Level::Info,
                    "xen-platform-identity",
                    format_args!("xen-platform: guest PV driver product {}", value as u16),
                );
                self.product = Some(value as u16);
            }
            (2, 1) => self.log_byte(value as u8),
            _ => {}
        }
    }

    /// BAR0 decodes byte by byte (wider accesses are split, as in QEMU).
    fn bar_read_byte(&self, offset: u64) -> u8 {
        if offset == 0 {
            self.flags
        } else {
            0xff
        }
    }

    fn bar_write_byte(&mut self, offset: u64, value: u8) {
        match (offset, value) {
            (0, _) => self.flags = value & PLATFORM_FLAG_ROM_LOCK,
            // Older PV drivers' unplug interfaces (SUSE xen-kmp, VMDP).
            (4, 1) => self.unplug(UnplugMask::ALL_IDE_DISKS | UnplugMask::ALL_NICS),
            (8, 1) => self.unplug(UnplugMask::ALL_IDE_DISKS),
            (8, 2) => self.unplug(UnplugMask::ALL_NICS),
            (8, _) => self.log_byte(value),
            _ => {}
        }
    }
}

fn to_u32(data: &[u8]) -> u32 {
    data.iter()
        .take(4)
        .enumerate()
        .fold(0, |v, (i, b)| v | (*b as u32) << (8 * i))
}

fn fill(data: &mut [u8], value: u32) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = if i < 4 { (value >> (8 * i)) as u8 } else { 0xff };
    }
}

impl PciFunction for XenPlatform {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.config.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) -> ConfigWriteResult {
        self.config.write(offset, size, value);
        ConfigWriteResult::default()
    }

    fn io_bars(&self) -> Vec<IoBar> {
        self.config
            .io_bar_base(0)
            .map(|base| IoBar {
                index: 0,
                base,
                len: IO_BAR_LEN as u16,
            })
            .into_iter()
            .collect()
    }
}

/// The Xen platform device as saved. The unplug is not run again on
/// load: the IDE controller's state has the disks that went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct XenPlatformState {
    pub config: super::config::ConfigState,
    pub flags: u8,
    pub unplugged: u16,
    pub product: Option<u16>,
    pub build: Option<u32>,
}

impl XenPlatform {
    /// The unplug masks the guest wrote, or'ed (0: no unplug yet).
    pub fn unplugged(&self) -> u16 {
        self.unplugged
    }
}

impl crate::devices::state::Snapshot for XenPlatform {
    fn snapshot(&self) -> crate::devices::state::DeviceState {
        crate::devices::state::DeviceState::XenPlatform(XenPlatformState {
            config: self.config.save(),
            flags: self.flags,
            unplugged: self.unplugged,
            product: self.product,
            build: self.build,
        })
    }

    fn restore(&mut self, state: &crate::devices::state::DeviceState) -> Result<(), crate::devices::state::StateError> {
        let crate::devices::state::DeviceState::XenPlatform(s) = state else {
            return Err(crate::devices::state::StateError::wrong_kind("xen-platform", state));
        };
        self.config.load("xen-platform", &s.config)?;
        self.flags = s.flags & PLATFORM_FLAG_ROM_LOCK;
        self.unplugged = s.unplugged;
        self.product = s.product;
        self.build = s.build;
        Ok(())
    }
}

impl crate::devices::state::Snapshot for XenPlatformMmio {
    fn snapshot(&self) -> crate::devices::state::DeviceState {
        crate::devices::state::DeviceState::Stateless
    }

    fn restore(&mut self, state: &crate::devices::state::DeviceState) -> Result<(), crate::devices::state::StateError> {
        match state {
            crate::devices::state::DeviceState::Stateless => Ok(()),
            other => Err(crate::devices::state::StateError::wrong_kind("xen-platform-mmio", other)),
        }
    }
}

/// QEMU's `platform_reset` writes 0 to the flags byte (the ROM lock goes);
/// the header goes back to power-on (BARs unassigned, decoding as built).
/// What the guest unplugged stays unplugged: QEMU deleted those devices.
impl Reset for XenPlatform {
    fn reset(&mut self) {
        self.config.reset_header(&self.power_on);
        self.flags = 0;
    }
}

/// Registered at [`FIXED_PORT_BASE`] and at the BAR0 base; the base of the
/// matched range tells which of the two the access is for.
impl BusDevice for XenPlatform {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        if base == FIXED_PORT_BASE as u64 {
            fill(data, self.fixed_read(offset, data.len()));
        } else {
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = self.bar_read_byte(offset.saturating_add(i as u64));
            }
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        if base == FIXED_PORT_BASE as u64 {
            self.fixed_write(offset, data.len(), to_u32(data));
        } else {
            for (i, &byte) in data.iter().enumerate() {
                self.bar_write_byte(offset.saturating_add(i as u64), byte);
            }
        }
    }
}

/// BAR1: memory that PV drivers use only as guest-physical address space to
/// map Xen pages over. Reads return 0 and writes are dropped, as in QEMU.
#[derive(Debug, Default)]
pub struct XenPlatformMmio;

impl Reset for XenPlatformMmio {
    fn reset(&mut self) {}
}

impl BusDevice for XenPlatformMmio {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Mutex;

    fn platform() -> (XenPlatform, Arc<Mutex<Vec<UnplugMask>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        (XenPlatform::new(Arc::new(move |m| sink.lock().unwrap().push(m))), seen)
    }

    fn inw(p: &mut XenPlatform, port: u64) -> u16 {
        let mut b = [0u8; 2];
        p.read(0x10, port - 0x10, &mut b);
        u16::from_le_bytes(b)
    }

    fn inb(p: &mut XenPlatform, port: u64) -> u8 {
        let mut b = [0u8; 1];
        p.read(0x10, port - 0x10, &mut b);
        b[0]
    }

    #[test]
    fn config_identity_and_bars() {
        let (mut p, _) = platform();
        assert_eq!(p.config_read(0x00, 4), 0x0001_5853);
        assert_eq!(p.config_read(0x08, 4), 0xff80_0001);
        assert_eq!(p.config_read(0x2c, 4), 0x0001_5853);
        assert_eq!(p.config_read(0x3d, 1), 1);
        p.config_write(0x10, 4, 0xffff_ffff);
        assert_eq!(p.config_read(0x10, 4), 0xffff_ff01, "256-byte I/O BAR");
        p.config_write(0x14, 4, 0xffff_ffff);
        assert_eq!(p.config_read(0x14, 4), 0xff00_0008, "16 MiB prefetchable memory BAR");
        assert_eq!(p.config_read(0x04, 2), 0x0003, "decoding on from reset");
        p.config_write(0x10, 4, 0xc100);
        p.config_write(0x14, 4, 0xf200_0000);
        assert_eq!(
            p.io_bars(),
            vec![IoBar {
                index: 0,
                base: 0xc100,
                len: 256
            }]
        );
        assert_eq!(p.mmio_bar(), Some((0xf200_0000, 16 << 20)));
        p.config_write(0x04, 2, 0x0000);
        assert!(p.io_bars().is_empty());
        assert_eq!(p.mmio_bar(), None);
    }

    #[test]
    fn reset_clears_the_rom_lock_and_bars_but_not_the_unplug() {
        let (mut p, seen) = platform();
        let _ = p.config_write(0x10, 4, 0xc100);
        let _ = p.config_write(0x14, 4, 0xf200_0000);
        let _ = p.config_write(0x04, 2, 0x0000);
        let _ = p.config_write(0x3c, 1, 0x1c);
        p.write(0x10, 0, &[0x01]);
        assert_eq!(inb(&mut p, 0x10), 0x01);
        p.write(0x10, 0, &UnplugMask::ALL_IDE_DISKS.to_le_bytes());
        p.reset();
        assert_eq!(inb(&mut p, 0x10), 0x00, "ROM lock cleared");
        assert_eq!(p.config_read(0x04, 2), 0x0003, "decoding as at power-on");
        assert_eq!(p.config_read(0x10, 4), 0x0000_0001);
        assert_eq!(p.config_read(0x14, 4), 0x0000_0008);
        assert_eq!(p.config_read(0x3c, 1), 0);
        assert_eq!(seen.lock().unwrap().len(), 1, "reset replays no unplug");
    }

    #[test]
    fn linux_driver_handshake_then_unplug() {
        let (mut p, seen) = platform();
        assert_eq!(inw(&mut p, 0x10), MAGIC);
        assert_eq!(inb(&mut p, 0x12), PROTOCOL_VERSION);
        p.write(0x10, 2, &3u16.to_le_bytes());
        p.write(0x10, 0, &0x0102_0304u32.to_le_bytes());
        assert_eq!(p.driver_identity(), (Some(3), Some(0x0102_0304)));
        assert_eq!(inw(&mut p, 0x10), MAGIC);
        p.write(0x10, 0, &0x0003u16.to_le_bytes());
        assert_eq!(*seen.lock().unwrap(), vec![UnplugMask(3)]);
    }

    #[test]
    fn only_qemus_access_sizes_answer() {
        let (mut p, _) = platform();
        let mut w = [0u8; 2];
        p.read(0x10, 2, &mut w);
        assert_eq!(w, [0xff, 0xff], "word read at 0x12");
        let mut l = [0u8; 4];
        p.read(0x10, 0, &mut l);
        assert_eq!(l, [0xff; 4], "dword read at 0x10");
        assert_eq!(inb(&mut p, 0x11), 0xff);
    }

    #[test]
    fn blacklisted_drivers_read_swapped_magic() {
        let (mut p, _) = platform();
        p.set_blacklisted(true);
        assert_eq!(inw(&mut p, 0x10), MAGIC_BLACKLISTED);
    }

    #[test]
    fn unplug_mask_semantics() {
        let aux = UnplugMask(UnplugMask::AUX_IDE_DISKS);
        assert!(!aux.unplugs_ide_disk(0, 0));
        assert!(aux.unplugs_ide_disk(0, 1));
        assert!(aux.unplugs_ide_disk(1, 0));
        let all = UnplugMask(UnplugMask::ALL_IDE_DISKS | UnplugMask::AUX_IDE_DISKS);
        assert!(all.unplugs_ide_disk(0, 0));
        assert!(!all.aux_ide_disks_only());
        let nics = UnplugMask(UnplugMask::ALL_NICS | UnplugMask::NVME_DISKS);
        assert!(nics.all_nics() && nics.nvme_disks() && !nics.unplugs_ide_disk(1, 1));
    }

    #[test]
    fn flags_byte_and_bar0_interface() {
        let (mut p, seen) = platform();
        p.write(0x10, 0, &[0xff]);
        assert_eq!(inb(&mut p, 0x10), 0x01);
        let mut b = [0u8; 1];
        p.read(0xc100, 0, &mut b);
        assert_eq!(b[0], 0x01);
        p.read(0xc100, 5, &mut b);
        assert_eq!(b[0], 0xff);
        p.write(0xc100, 4, &[2]);
        assert!(seen.lock().unwrap().is_empty());
        p.write(0xc100, 4, &1u32.to_le_bytes());
        p.write(0xc100, 8, &[1]);
        p.write(0xc100, 8, &[2]);
        assert_eq!(*seen.lock().unwrap(), vec![UnplugMask(3), UnplugMask(1), UnplugMask(2)]);
        let mut w = [0u8; 2];
        p.read(0xc100, 0, &mut w);
        assert_eq!(w, [0x01, 0xff]);
    }

    #[test]
    fn log_lines_are_bounded() {
        let (mut p, _) = platform();
        for _ in 0..3 * LOG_LINE_MAX {
            p.write(0x10, 2, b"x");
            assert!(p.log_line.len() <= LOG_LINE_MAX);
        }
        p.write(0x10, 2, b"\n");
        assert!(p.log_line.is_empty());
        p.write(0xc100, 8, b"y");
        assert_eq!(p.log_line, b"y");
    }

    #[test]
    fn mmio_bar_reads_zero() {
        let mut mmio = XenPlatformMmio;
        let mut b = [0xaau8; 8];
        mmio.write(0xf200_0000, 0, &[1, 2, 3, 4]);
        mmio.read(0xf200_0000, 0x10, &mut b);
        assert_eq!(b, [0; 8]);
    }

    proptest! {
        #[test]
        fn random_port_accesses_never_panic(
            ops in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u64..0x100, 0usize..9, any::<u64>()), 1..80)
        ) {
            let (mut p, seen) = platform();
            for (fixed, write, offset, len, value) in ops {
                let base = if fixed { 0x10 } else { 0xc100 };
                if write {
                    p.write(base, offset, &value.to_le_bytes()[..len.min(8)]);
                } else {
                    let mut buf = vec![0u8; len];
                    p.read(base, offset, &mut buf);
                }
            }
            prop_assert!(p.log_line.len() <= LOG_LINE_MAX);
            prop_assert!(seen.lock().unwrap().len() <= 80);
        }
    }

    #[test]
    fn unplug_and_log_port_floods_write_a_bounded_number_of_lines() {
        use crate::logging::ratelimit::{Clock, RateLimiter, GUEST_BURST};
        let (mut p, seen) = platform();
        p.log_limiter = RateLimiter::for_guest_lines_with(Clock::manual());
        let ((), lines) = crate::logging::testlog::capture(|| {
            for _ in 0..10_000 {
                p.write(0x10, 0, &1u16.to_le_bytes());
                p.write(0x10, 2, b"x");
                p.write(0x10, 2, b"\n");
            }
        });
        assert_eq!(seen.lock().unwrap().len(), 10_000, "every unplug still takes effect");
        let unplug = lines.iter().filter(|(_, l)| l.contains("unplug")).count();
        let driver = lines.iter().filter(|(_, l)| l.contains("guest PV driver: x")).count();
        assert_eq!(unplug, GUEST_BURST as usize);
        assert_eq!(driver, GUEST_BURST as usize);
        assert_eq!(lines.len(), 2 * GUEST_BURST as usize);
    }
}
