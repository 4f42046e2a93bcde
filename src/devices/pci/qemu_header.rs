//! The header conventions QEMU applies to every PCI function it creates, so
//! that our functions read back exactly what a guest sees under QEMU.

use super::config::{ConfigSpace, COMMAND, INTERRUPT_LINE, STATUS, SUBSYSTEM_ID, SUBSYSTEM_VENDOR_ID};

pub const CACHE_LINE_SIZE: usize = 0x0c;
/// QEMU's default subsystem ids (Red Hat / QEMU) for functions that do not
/// set their own.
pub const QEMU_SUBSYSTEM_VENDOR: u16 = 0x1af4;
pub const QEMU_SUBSYSTEM: u16 = 0x1100;

const COMMAND_SERR: u16 = 1 << 8;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status bits a guest clears by writing 1 (error reporting bits).
const STATUS_WRITE1_CLEAR: u16 = 0x0100 | 0x0800 | 0x1000 | 0x2000 | 0x4000 | 0x8000;

/// A header with QEMU's write masks: COMMAND io/mem/master/serr/intx-disable,
/// cache line size, interrupt line, and the whole device-specific area
/// 0x40..0xff writable unless the device narrows it afterwards.
pub fn qemu_config_space(vendor: u16, device: u16, class_code: u32, revision: u8) -> ConfigSpace {
    let mut c = ConfigSpace::new(vendor, device, class_code, revision);
    c.set_writable_u16(
        COMMAND,
        super::config::COMMAND_IO
            | super::config::COMMAND_MEMORY
            | super::config::COMMAND_MASTER
            | COMMAND_SERR
            | COMMAND_INTX_DISABLE,
    );
    c.set_writable(CACHE_LINE_SIZE, 0xff);
    c.set_writable(INTERRUPT_LINE, 0xff);
    for (i, b) in STATUS_WRITE1_CLEAR.to_le_bytes().into_iter().enumerate() {
        c.set_write1_clear(STATUS + i, b);
    }
    for offset in 0x40..0x100 {
        c.set_writable(offset, 0xff);
    }
    c.set_u16(SUBSYSTEM_VENDOR_ID, QEMU_SUBSYSTEM_VENDOR);
    c.set_u16(SUBSYSTEM_ID, QEMU_SUBSYSTEM);
    c
}

/// Yields the config offsets `[offset, offset + size)` that fall inside the
/// 256-byte space, paired with the byte of `value` written there; lets a
/// function react to side-effect registers under any access size.
pub fn written_bytes(offset: u8, size: u8, value: u32) -> impl Iterator<Item = (usize, u8)> {
    (0..size.min(4) as usize)
        .map(move |i| (offset as usize + i, (value >> (8 * i)) as u8))
        .filter(|(at, _)| *at < 256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_masks_device_area_writable_and_header_read_only() {
        let mut c = qemu_config_space(0x8086, 0x1237, 0x060000, 2);
        c.write(0x40, 4, 0xdead_beef);
        assert_eq!(c.read(0x40, 4), 0xdead_beef);
        c.write(0x00, 4, 0);
        assert_eq!(c.read(0x00, 4), 0x1237_8086);
        c.write(COMMAND as u8, 2, 0xffff);
        assert_eq!(c.read(COMMAND as u8, 2), 0x0507);
        assert_eq!(c.read(SUBSYSTEM_VENDOR_ID as u8, 4), 0x1100_1af4);
    }

    #[test]
    fn written_bytes_clips_at_end_of_space() {
        let got: Vec<_> = written_bytes(0xfe, 4, 0x4433_2211).collect();
        assert_eq!(got, vec![(0xfe, 0x11), (0xff, 0x22)]);
    }
}
