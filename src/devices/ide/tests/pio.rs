//! PIO sector reads and writes: LBA28, LBA48, CHS, multiple mode.

use super::*;

#[test]
fn pio_write_then_read_sectors_lba28_lba48_chs() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    let data = pattern(1024, 3);
    rig.command_lba28(0x30, 100, 2);
    assert_eq!(rig.altstatus(), 0x58);
    assert_eq!(rig.irq_raises(0), 0, "no IRQ before the first block");
    rig.write_block(&data[..512]);
    assert_eq!((rig.inb(0x1f7), rig.irq_raises(0)), (0x58, 1));
    rig.write_block(&data[512..]);
    assert_eq!((rig.inb(0x1f7), rig.irq_raises(0)), (0x50, 2));
    assert_eq!(img.bytes(100 * 512, 1024), data);
    assert_eq!((rig.inb(0x1f3), rig.inb(0x1f2)), (102, 0));

    rig.command_lba28(0x20, 100, 2);
    assert_eq!(rig.inb(0x1f7), 0x58);
    assert_eq!((rig.inb(0x1f3), rig.inb(0x1f2)), (101, 1), "registers already past the block");
    let mut got = rig.read_block(512);
    assert_eq!(rig.inb(0x1f7), 0x58);
    got.extend(rig.read_block(512));
    assert_eq!(rig.inb(0x1f7), 0x50);
    assert_eq!(got, data);

    let high = (16 * MIB / 512 - 3) as u64;
    img.fill(high as usize * 512, &pattern(512, 9));
    rig.command_lba48(0x24, high, 1);
    assert_eq!(rig.read_block(512), pattern(512, 9));
    assert_eq!(rig.altstatus(), 0x50);

    // CHS 32/16/63: cylinder 1, head 2, sector 5 = (1*16 + 2)*63 + 4.
    let lba = (16 + 2) * 63 + 4;
    img.fill(lba * 512, &pattern(512, 1));
    rig.outb(0x1f6, 0xa2);
    rig.outb(0x1f2, 1);
    rig.outb(0x1f3, 5);
    rig.outb(0x1f4, 1);
    rig.outb(0x1f5, 0);
    rig.outb(0x1f7, 0x20);
    assert_eq!(rig.read_block(512), pattern(512, 1));
    assert_eq!((rig.inb(0x1f3), rig.inb(0x1f6)), (6, 0xa2), "CHS registers advance");

    // 32-bit data port accesses move four bytes.
    rig.command_lba28(0x20, 100, 1);
    let first = rig.inl(0x1f0);
    assert_eq!(first.to_le_bytes().to_vec(), data[..4].to_vec());
}

#[test]
fn read_and_write_multiple_use_blocks_of_the_multiple_count() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.outb(0x1f2, 8);
    rig.outb(0x1f7, 0xc6);
    let data = pattern(16 * 512, 5);
    rig.command_lba28(0xc5, 10, 16);
    rig.write_block(&data[..8 * 512]);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f2)), (0x58, 8));
    rig.write_block(&data[8 * 512..]);
    assert_eq!(rig.inb(0x1f7), 0x50);
    assert_eq!(img.bytes(10 * 512, 16 * 512), data);
    let raises = rig.irq_raises(0);
    rig.command_lba28(0xc4, 10, 16);
    assert_eq!(rig.inb(0x1f7), 0x58, "acknowledge the first block's interrupt");
    let mut got = rig.read_block(8 * 512);
    assert_eq!(rig.inb(0x1f7), 0x58);
    got.extend(rig.read_block(8 * 512));
    assert_eq!(got, data);
    assert_eq!(rig.irq_raises(0) - raises, 2, "two DRQ blocks");
    rig.outb(0x1f2, 0);
    rig.outb(0x1f7, 0xc6);
    rig.command_lba28(0xc4, 10, 1);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x04), "multiple mode off aborts");
}

#[test]
fn out_of_range_lba_aborts_without_host_io() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Read, None, libc::EIO, false);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Stop, ErrorPolicy::Stop);
    rig.command_lba28(0x20, 2048, 1);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x04));
    assert!(rig.irq_raises(0) > 0);
    rig.set_prdt(&[(BUF as u32, 1024)]);
    rig.dma(0xc8, 2047, 2, true);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.bm_status()), (0x41, 0x04, 0x04));
    assert!(rig.events().is_empty(), "no policy, no event");
    assert_eq!(rig.vm.state(), RunState::Running);
}
