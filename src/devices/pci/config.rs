//! A 256-byte type-0 configuration header with per-byte write masks.

pub const VENDOR_ID: usize = 0x00;
pub const DEVICE_ID: usize = 0x02;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION: usize = 0x08;
pub const CLASS_PROG: usize = 0x09;
pub const HEADER_TYPE: usize = 0x0e;
pub const BAR0: usize = 0x10;
pub const CACHE_LINE_SIZE: usize = 0x0c;
pub const ROM_BAR: usize = 0x30;
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
pub const SUBSYSTEM_ID: usize = 0x2e;
pub const INTERRUPT_LINE: usize = 0x3c;
pub const INTERRUPT_PIN: usize = 0x3d;

pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_MASTER: u16 = 1 << 2;

#[derive(Clone)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    /// Bits the guest may change.
    writable: [u8; 256],
    /// Bits that a guest write of 1 clears (status register style).
    write1_clear: [u8; 256],
}

impl ConfigSpace {
    /// A header with vendor/device/class set, COMMAND io|memory|master and
    /// the interrupt line writable, everything else read-only.
    pub fn new(vendor: u16, device: u16, class_code: u32, revision: u8) -> Self {
        let mut c = ConfigSpace { bytes: [0; 256], writable: [0; 256], write1_clear: [0; 256] };
        c.set_u16(VENDOR_ID, vendor);
        c.set_u16(DEVICE_ID, device);
        c.bytes[REVISION] = revision;
        c.bytes[CLASS_PROG] = class_code as u8;
        c.bytes[CLASS_PROG + 1] = (class_code >> 8) as u8;
        c.bytes[CLASS_PROG + 2] = (class_code >> 16) as u8;
        c.set_writable_u16(COMMAND, COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER | (1 << 10));
        c.writable[INTERRUPT_LINE] = 0xff;
        c
    }

    pub fn bytes(&self) -> &[u8; 256] {
        &self.bytes
    }

    pub fn byte(&self, offset: usize) -> u8 {
        self.bytes[offset & 0xff]
    }

    pub fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.byte(offset), self.byte(offset + 1)])
    }

    pub fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes([self.byte(offset), self.byte(offset + 1), self.byte(offset + 2), self.byte(offset + 3)])
    }

    pub fn set_byte(&mut self, offset: usize, v: u8) {
        self.bytes[offset & 0xff] = v;
    }

    pub fn set_u16(&mut self, offset: usize, v: u16) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set_byte(offset + i, b);
        }
    }

    pub fn set_u32(&mut self, offset: usize, v: u32) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set_byte(offset + i, b);
        }
    }

    pub fn set_writable(&mut self, offset: usize, mask: u8) {
        self.writable[offset & 0xff] = mask;
    }

    pub fn set_writable_u16(&mut self, offset: usize, mask: u16) {
        for (i, b) in mask.to_le_bytes().into_iter().enumerate() {
            self.set_writable(offset + i, b);
        }
    }

    pub fn set_writable_u32(&mut self, offset: usize, mask: u32) {
        for (i, b) in mask.to_le_bytes().into_iter().enumerate() {
            self.set_writable(offset + i, b);
        }
    }

    pub fn set_write1_clear(&mut self, offset: usize, mask: u8) {
        self.write1_clear[offset & 0xff] = mask;
    }

    pub fn command(&self) -> u16 {
        self.u16_at(COMMAND)
    }

    /// Read with any size at any offset; bytes past 0xff read as zero.
    pub fn read(&self, offset: u8, size: u8) -> u32 {
        let mut v = 0u32;
        for i in 0..size.min(4) as usize {
            let at = offset as usize + i;
            let b = if at < 256 { self.bytes[at] } else { 0 };
            v |= (b as u32) << (8 * i);
        }
        v
    }

    /// Masked write; bytes past 0xff are dropped.
    pub fn write(&mut self, offset: u8, size: u8, value: u32) {
        for i in 0..size.min(4) as usize {
            let at = offset as usize + i;
            if at >= 256 {
                break;
            }
            let new = (value >> (8 * i)) as u8;
            let w = self.writable[at];
            let w1c = self.write1_clear[at];
            let mut b = (self.bytes[at] & !w) | (new & w);
            b &= !(new & w1c);
            self.bytes[at] = b;
        }
    }

    /// Program an I/O BAR of `len` bytes (a power of two >= 4) at `index`.
    pub fn init_io_bar(&mut self, index: usize, len: u32) {
        let off = BAR0 + 4 * index;
        self.set_u32(off, 1);
        self.set_writable_u32(off, !(len - 1) & 0xffff_fffc);
    }

    /// The base of an I/O BAR if I/O decoding is on and the base is set.
    pub fn io_bar_base(&self, index: usize) -> Option<u16> {
        let raw = self.u32_at(BAR0 + 4 * index);
        let base = raw & 0xffff_fffc;
        if self.command() & COMMAND_IO != 0 && base != 0 && base <= 0xffff {
            Some(base as u16)
        } else {
            None
        }
    }
}

/// The standard-header registers a PCI reset puts back (QEMU's
/// `pci_do_device_reset`: COMMAND, STATUS, the cache line size, the
/// interrupt line, every BAR and the ROM BAR). Everything else, the
/// function-specific bytes from 0x40 on in particular, keeps what the
/// guest wrote unless the function's own reset restores it.
const RESET_HEADER_BYTES: [std::ops::Range<usize>; 5] = [
    COMMAND..STATUS + 2,
    CACHE_LINE_SIZE..CACHE_LINE_SIZE + 1,
    BAR0..BAR0 + 24,
    ROM_BAR..ROM_BAR + 4,
    INTERRUPT_LINE..INTERRUPT_LINE + 1,
];

impl ConfigSpace {
    /// A PCI reset: the standard header registers listed in
    /// [`RESET_HEADER_BYTES`] take their values from `power_on` (the
    /// function's configuration as built, which is QEMU's state after its
    /// own power-on reset). Function-specific bytes are left alone.
    pub fn reset_header(&mut self, power_on: &ConfigSpace) {
        for range in RESET_HEADER_BYTES {
            self.bytes[range.clone()].copy_from_slice(&power_on.bytes[range]);
        }
    }

    /// Function-specific registers that the function's reset handler puts
    /// back (QEMU's `piix3_reset`, `piix4_pm_reset`): their power-on bytes.
    pub fn restore(&mut self, power_on: &ConfigSpace, offsets: &[usize]) {
        for &at in offsets {
            self.bytes[at & 0xff] = power_on.bytes[at & 0xff];
        }
    }
}

/// A configuration space as saved: its 256 bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigState {
    pub bytes: Vec<u8>,
}

impl ConfigSpace {
    pub fn save(&self) -> ConfigState {
        ConfigState { bytes: self.bytes.to_vec() }
    }

    /// Take over the bits the guest (or a write-1-to-clear) can change;
    /// the read-only bits (IDs, class, BAR type and size bits) stay as
    /// this function was built, whatever the loaded bytes say, so a loaded
    /// state cannot turn the function into another device or a BAR into
    /// one of another size.
    pub fn load(&mut self, device: &'static str, state: &ConfigState) -> Result<(), crate::devices::state::StateError> {
        let saved: &[u8; 256] = state
            .bytes
            .as_slice()
            .try_into()
            .map_err(|_| crate::devices::state::StateError::invalid(device, format!("config space of {} bytes, not 256", state.bytes.len())))?;
        for (at, byte) in saved.iter().enumerate() {
            let mask = self.writable[at] | self.write1_clear[at];
            self.bytes[at] = (self.bytes[at] & !mask) | (byte & mask);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_config_space_changes_only_the_writable_bits() {
        let mut c = ConfigSpace::new(0x8086, 0x7010, 0x010180, 0);
        c.init_io_bar(4, 16);
        let mut other = c.clone();
        other.write(BAR0 as u8 + 16, 4, 0xc001);
        other.write(COMMAND as u8, 2, 0x5);
        let mut hostile = other.save();
        hostile.bytes[VENDOR_ID] = 0x34;
        c.load("test", &hostile).unwrap();
        assert_eq!(c.u16_at(VENDOR_ID), 0x8086);
        assert_eq!(c.u32_at(BAR0 + 16), 0xc001);
        assert_eq!(c.command(), 0x5);
        assert!(c.load("test", &ConfigState { bytes: vec![0; 255] }).is_err());
    }

    #[test]
    fn reset_header_restores_the_header_and_keeps_function_bytes() {
        let mut c = crate::devices::pci::qemu_header::qemu_config_space(0x8086, 0x7010, 0x010180, 0);
        c.init_io_bar(4, 16);
        c.set_writable(0x40, 0xff);
        let power_on = c.clone();
        c.write(COMMAND as u8, 2, 0x0007);
        c.write(0x20, 4, 0xc001);
        c.write(CACHE_LINE_SIZE as u8, 1, 0x10);
        c.write(INTERRUPT_LINE as u8, 1, 0x0e);
        c.write(0x40, 4, 0xa307_a307);
        c.reset_header(&power_on);
        assert_eq!(c.read(COMMAND as u8, 2), 0);
        assert_eq!(c.read(0x20, 4), 0x1, "BAR4 unassigned, the I/O type bit kept");
        assert_eq!(c.read(CACHE_LINE_SIZE as u8, 1), 0);
        assert_eq!(c.read(INTERRUPT_LINE as u8, 1), 0);
        assert_eq!(c.read(0x40, 4), 0xa307_a307, "function-specific bytes survive");
        assert_eq!(c.read(0, 4), 0x7010_8086);
        c.restore(&power_on, &[0x41, 0x43]);
        assert_eq!(c.read(0x40, 4), 0x0007_0007);
    }

    #[test]
    fn io_bar_sizing_and_masks() {
        let mut c = ConfigSpace::new(0x8086, 0x7010, 0x010180, 0);
        c.init_io_bar(4, 16);
        c.write(0x20, 4, 0xffff_ffff);
        assert_eq!(c.read(0x20, 4), 0xffff_fff1);
        c.write(0x20, 4, 0xc001);
        assert_eq!(c.io_bar_base(4), None);
        c.write(COMMAND as u8, 2, 0x0005);
        assert_eq!(c.io_bar_base(4), Some(0xc000));
        c.write(0x00, 4, 0);
        assert_eq!(c.read(0, 4), 0x7010_8086);
        assert_eq!(c.read(0xfe, 4), c.read(0xfe, 2));
    }
}
