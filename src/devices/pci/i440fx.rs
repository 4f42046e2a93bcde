//! The i440FX host bridge at 00:00.0 (8086:1237), with the config bytes a
//! guest sees under QEMU 7.2. Guest RAM is mapped by Xen, so the PAM and
//! SMRAM registers are state only: they read back what was written, as they
//! do under QEMU (whose whole 0x40..0xff area is writable).

use super::qemu_header::qemu_config_space;
use super::{ConfigSpace, ConfigWriteResult, PciFunction};
use crate::devices::bus::Reset;

pub const VENDOR_INTEL: u16 = 0x8086;
pub const DEVICE_I440FX: u16 = 0x1237;
pub const CLASS_HOST_BRIDGE: u32 = 0x060000;
pub const REVISION: u8 = 0x02;

/// RAM size in 8 MiB units, saturating at 255 (QEMU's coreboot hint).
pub const RAM_SIZE_REG: usize = 0x57;
/// PAM0..PAM6 (BIOS shadow attributes).
pub const PAM_FIRST: usize = 0x59;
pub const PAM_LAST: usize = 0x5f;
pub const SMRAM: usize = 0x72;
/// SMRAM reset value: C_BASE_SEG = 010b (A-segment).
pub const SMRAM_RESET: u8 = 0x02;

pub struct I440fx {
    config: ConfigSpace,
    power_on: ConfigSpace,
}

impl I440fx {
    /// `ram_size` is the guest RAM in bytes (for the 0x57 hint).
    pub fn new(ram_size: u64) -> Self {
        let mut config = qemu_config_space(VENDOR_INTEL, DEVICE_I440FX, CLASS_HOST_BRIDGE, REVISION);
        config.set_byte(RAM_SIZE_REG, (ram_size >> 23).min(255) as u8);
        config.set_byte(SMRAM, SMRAM_RESET);
        I440fx { power_on: config.clone(), config }
    }

    pub fn pam(&self, index: usize) -> Option<u8> {
        (index <= PAM_LAST - PAM_FIRST).then(|| self.config.byte(PAM_FIRST + index))
    }

    pub fn smram(&self) -> u8 {
        self.config.byte(SMRAM)
    }
}

impl PciFunction for I440fx {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.config.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) -> ConfigWriteResult {
        self.config.write(offset, size, value);
        ConfigWriteResult::default()
    }
}

impl crate::devices::state::Snapshot for I440fx {
    fn snapshot(&self) -> crate::devices::state::DeviceState {
        crate::devices::state::DeviceState::PciConfig(self.config.save())
    }

    fn restore(&mut self, state: &crate::devices::state::DeviceState) -> Result<(), crate::devices::state::StateError> {
        match state {
            crate::devices::state::DeviceState::PciConfig(c) => self.config.load("i440fx", c),
            other => Err(crate::devices::state::StateError::wrong_kind("i440fx", other)),
        }
    }
}

/// QEMU 7.2's i440FX has no reset handler of its own: PAM and SMRAM keep
/// what the firmware wrote (measured over qtest), only the standard
/// header is reset.
impl Reset for I440fx {
    fn reset(&mut self) {
        self.config.reset_header(&self.power_on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Values read from QEMU 7.2 `-machine pc -m 5000` over qtest.
    #[test]
    fn header_matches_qemu() {
        let mut host = I440fx::new(5000 << 20);
        assert_eq!(host.config_read(0x00, 4), 0x1237_8086);
        assert_eq!(host.config_read(0x04, 4), 0x0000_0000);
        assert_eq!(host.config_read(0x08, 4), 0x0600_0002);
        assert_eq!(host.config_read(0x0c, 4), 0x0000_0000);
        assert_eq!(host.config_read(0x2c, 4), 0x1100_1af4);
        assert_eq!(host.config_read(0x54, 4), 0xff00_0000);
        assert_eq!(host.config_read(0x70, 4), 0x0002_0000);
        assert_eq!(I440fx::new(128 << 20).config_read(0x57, 1), 16);
    }

    #[test]
    fn pam_and_smram_read_back() {
        let mut host = I440fx::new(128 << 20);
        host.config_write(0x59, 1, 0x30);
        host.config_write(0x5a, 4, 0x3333_3333);
        host.config_write(0x5e, 2, 0x1111);
        assert_eq!(host.pam(0), Some(0x30));
        assert_eq!(host.pam(1), Some(0x33));
        assert_eq!(host.pam(6), Some(0x11));
        assert_eq!(host.pam(7), None);
        assert_eq!(host.config_read(0x5c, 4), 0x1111_3333);
        host.config_write(0x72, 1, 0x4a);
        assert_eq!(host.smram(), 0x4a);
        assert_eq!(host.config_read(0x72, 1), 0x4a);
    }

    proptest! {
        #[test]
        fn identity_survives_any_write(offset in any::<u8>(), size in 0u8..8, value in any::<u32>()) {
            let mut host = I440fx::new(1 << 30);
            host.config_write(offset, size, value);
            let _ = host.config_read(offset, size);
            prop_assert_eq!(host.config_read(0, 4), 0x1237_8086);
            prop_assert_eq!(host.config_read(8, 4), 0x0600_0002);
        }
    }
}
