//! Bus-master DMA: reads, writes, PRD tables, TRIM.

use super::*;

#[test]
fn dma_write_then_read_back() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    let data = pattern(8 * 512, 11);
    rig.mem_write(BUF, &data[..1024]);
    rig.mem_write(BUF + 0x10000, &data[1024..]);
    rig.set_prdt(&[(BUF as u32, 1024), (BUF as u32 + 0x10000, 3072)]);
    rig.dma(0xca, 500, 8, false);
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    assert_eq!(img.bytes(500 * 512, 4096), data);
    assert_eq!(rig.inb(0x1f3), (508 & 0xff) as u8, "LBA advanced after success");

    rig.mem_write(BUF, &[0xcc; 4096]);
    rig.mem_write(BUF + 0x10000, &[0xcc; 4096]);
    rig.outb(BM, 0);
    rig.dma(0xc8, 500, 8, true);
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    let mut got = rig.mem_read(BUF, 1024);
    got.extend(rig.mem_read(BUF + 0x10000, 3072));
    assert_eq!(got, data);
    let info = &rig.ide().drives_info()[0];
    assert_eq!((info.stats.rd_bytes, info.stats.wr_bytes, info.stats.rd_operations), (4096, 4096, 1));

    // START before the command (QEMU starts the transfer at once).
    rig.outb(BM, 0);
    rig.outb(BM + 2, 0x06);
    rig.outb(BM, 0x09);
    assert_eq!(rig.bm_status(), 0x01);
    rig.command_lba48(0x25, 500, 8);
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
}

#[test]
fn prd_table_shorter_equal_longer_than_transfer() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    for (prd_bytes, status, bm, irq) in [(512u32, 0x50u8, 0x00u8, false), (1024, 0x50, 0x04, true), (4096, 0x50, 0x05, true)] {
        rig.outb(BM, 0);
        rig.inb(0x1f7);
        rig.set_prdt(&[(BUF as u32, prd_bytes)]);
        let before = rig.irq_raises(0);
        rig.dma(0xc8, 0, 2, true);
        assert_eq!(rig.bm_status(), bm, "PRD {prd_bytes}");
        assert_eq!(rig.irq_raises(0) > before, irq, "PRD {prd_bytes}");
        assert_eq!(rig.inb(0x1f7), status, "PRD {prd_bytes}");
        rig.outb(BM, 0);
        assert_eq!(rig.bm_status() & 0x01, 0, "stopping clears ACTIVE");
    }
}

#[test]
fn no_busmaster_garbage_prd_table_does_not_crash() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.ide().config_write(0x04, 2, 0x0001);
    let garbage: Vec<u8> = (0..4096 * 8).map(|i| if i % 8 == 4 || i % 8 == 5 { 0 } else { 0x5a }).collect();
    rig.mem_write(PRD_TABLE, &garbage);
    rig.outl(BM + 4, PRD_TABLE as u32);
    rig.dma(0xc8, 0, 1, true);
    assert_eq!(rig.bm_status(), 0x05, "ACTIVE|INTR, never ERROR");
}

#[test]
fn dma_to_addresses_outside_guest_ram_is_a_dma_error() {
    let img = SharedImage::new(16 * MIB);
    img.fill(0, &pattern(512, 1));
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.set_prdt(&[(0xffff_f000, 512)]);
    rig.dma(0xc8, 0, 1, true);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.bm_status()), (0x41, 0x04, 0x04));
    rig.outb(BM, 0);
    rig.dma(0xca, 0, 1, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.bm_status()), (0x41, 0x04, 0x04));
    assert_eq!(img.bytes(0, 512), pattern(512, 1), "nothing written from a failed gather");
    rig.outb(BM, 0);
    rig.outl(BM + 4, 0xffff_fff0);
    rig.dma(0xc8, 0, 1, true);
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x41, 0x04), "PRD table outside RAM");
}

#[test]
fn trim_discards_ranges_and_refuses_bad_ones() {
    let img = SharedImage::new(16 * MIB);
    img.fill(0, &[0xee; 16 * 512]);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    let mut ranges = vec![0u8; 512];
    ranges[..8].copy_from_slice(&((2u64 << 48) | 1).to_le_bytes());
    ranges[8..16].copy_from_slice(&((1u64 << 48) | 10).to_le_bytes());
    rig.mem_write(BUF, &ranges);
    rig.set_prdt(&[(BUF as u32, 512)]);
    rig.outb(0x1f1, 0x01);
    rig.dma(0x06, 0, 1, false);
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    assert_eq!(img.bytes(0, 512), vec![0xee; 512]);
    assert_eq!(img.bytes(512, 1024), vec![0; 1024]);
    assert_eq!(img.bytes(10 * 512, 512), vec![0; 512]);
    assert_eq!(img.bytes(11 * 512, 512), vec![0xee; 512]);
    ranges[..8].copy_from_slice(&((8u64 << 48) | (16 * 2048 - 4)).to_le_bytes());
    rig.mem_write(BUF, &ranges);
    rig.outb(BM, 0);
    rig.outb(0x1f1, 0x01);
    rig.dma(0x06, 0, 1, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.bm_status()), (0x41, 0x04, 0x04));
    rig.outb(0x1f1, 0x00);
    rig.outb(0x1f7, 0x06);
    assert_eq!(rig.inb(0x1f7), 0x41, "DSM without the TRIM bit aborts");
}
