//! Registers, signatures, reset and diagnostics, PCI configuration, and
//! the platform unplug.

use super::*;

#[test]
fn power_on_signatures_and_absent_devices() {
    let img = SharedImage::new(16 * MIB);
    let cd = SharedImage::new(2048 * 16);
    let mut rig = Rig::new([Some(disk(&img, ErrorPolicy::Report, ErrorPolicy::Report)), None, Some(cdrom(Some(&cd))), None]);
    let regs: Vec<u8> = (1..=7).map(|r| rig.inb(0x1f0 + r)).collect();
    assert_eq!(regs, vec![0x00, 1, 1, 0, 0, 0xa0, 0x50]);
    let cd_regs: Vec<u8> = (1..=7).map(|r| rig.inb(0x170 + r)).collect();
    assert_eq!(cd_regs, vec![0x00, 1, 1, 0x14, 0xeb, 0xa0, 0x50]);
    rig.outb(0x1f6, 0xb0);
    assert_eq!(rig.inb(0x1f7), 0, "absent slave reads status 0");
    assert_eq!(rig.inb(0x1f1), 0);
    assert_eq!(rig.altstatus(), 0);
    rig.outb(0x1f7, 0xec);
    assert_eq!(rig.irq_raises(0), 0, "commands to an absent slave are ignored");

    let mut empty = Rig::new([None, None, None, None]);
    let regs: Vec<u8> = (1..=7).map(|r| empty.inb(0x1f0 + r)).collect();
    assert_eq!(regs, vec![0; 7]);
    assert_eq!(empty.inw(0x1f0), 0);
    empty.outb(0x1f7, 0xe7);
    assert!(empty.irq_high(0), "FLUSH CACHE without a drive completes");
}

#[test]
fn pci_config_matches_piix3_ide() {
    let img = SharedImage::new(MIB);
    let rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.ide().reset();
    assert_eq!(rig.ide().config_read(0, 4), 0x7010_8086);
    assert_eq!(rig.ide().config_read(0x08, 4) >> 8, 0x010180);
    assert_eq!(rig.ide().config_read(0x04, 2), 0);
    assert_eq!(rig.ide().config_read(0x06, 2), 0x0280);
    assert_eq!(rig.ide().config_read(0x20, 4), 1);
    assert_eq!(rig.ide().io_bars(), vec![]);
    rig.ide().config_write(0x20, 4, 0xffff_ffff);
    assert_eq!(rig.ide().config_read(0x20, 4), 0xffff_fff1);
    rig.ide().config_write(0x20, 4, 0xc041);
    rig.ide().config_write(0x04, 2, 1);
    assert_eq!(rig.ide().io_bars(), vec![IoBar { index: 4, base: 0xc040, len: 16 }]);
    rig.ide().config_write(0x40, 4, 0x8000_8000);
    rig.ide().config_write(0x44, 1, 0x11);
    assert_eq!(rig.ide().config_read(0x40, 4), 0x8000_8000);
    assert_eq!(rig.ide().config_read(0x44, 1), 0x11);
    assert_eq!(rig.ide().config_read(0x10, 4), 0, "legacy mode: BAR0-3 unused");
    rig.ide().config_write(0x10, 4, 0xffff_ffff);
    assert_eq!(rig.ide().config_read(0x10, 4), 0);
    rig.ide().config_write(0x3c, 1, 0x0e);
    // A machine reset (QEMU 7.2, tests/differential/reset.rs): the header
    // goes back, the timing registers keep what the guest wrote.
    rig.ide().reset();
    assert_eq!(rig.ide().config_read(0x04, 2), 0);
    assert_eq!(rig.ide().config_read(0x20, 4), 1);
    assert_eq!(rig.ide().config_read(0x3c, 1), 0);
    assert_eq!(rig.ide().io_bars(), vec![]);
    assert_eq!(rig.ide().config_read(0x40, 4), 0x8000_8000);
    assert_eq!(rig.ide().config_read(0x44, 1), 0x11);
}

#[test]
fn writes_ignored_while_drq_and_hob_readback() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.outb(0x1f7, 0xec);
    assert_eq!(rig.altstatus(), 0x58);
    rig.outb(0x1f2, 0x77);
    rig.outb(0x1f7, 0xe5);
    assert_eq!(rig.inb(0x1f2), 1, "taskfile write ignored while DRQ");
    assert_eq!(rig.altstatus(), 0x58, "command ignored while DRQ");
    rig.read_block(512);
    assert_eq!(rig.altstatus(), 0x50);
    rig.outb(0x1f2, 0x12);
    rig.outb(0x1f2, 0x34);
    assert_eq!(rig.inb(0x1f2), 0x34);
    rig.outb(0x3f6, 0x80);
    assert_eq!(rig.inb(0x1f2), 0x12, "HOB reads the previous value");
    rig.outb(0x1f3, 0);
    assert_eq!(rig.inb(0x1f2), 0x34, "a taskfile write clears HOB");
    assert_eq!(rig.inw(BM), 0xffff, "word access to BM command reads all ones");
}

#[test]
fn identify_device_words_and_phases() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.outb(0x1f7, 0xec);
    assert!(rig.irq_high(0));
    assert_eq!(rig.inb(0x1f7), 0x58);
    assert!(!rig.irq_high(0), "status read lowers INTRQ");
    let data = rig.read_block(512);
    let w: Vec<u16> = data.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    assert_eq!(rig.altstatus(), 0x50);
    assert_eq!((w[0], w[1], w[3], w[6], w[47], w[49], w[59], w[60]), (0x40, 32, 16, 63, 0x8010, 0x0b00, 0x0110, 32768));
    let serial: String = w[10..20].iter().flat_map(|x| x.to_be_bytes()).map(|b| b as char).collect();
    assert_eq!(serial.trim_end(), "QM00001");
    let model: String = w[27..47].iter().flat_map(|x| x.to_be_bytes()).map(|b| b as char).collect();
    assert_eq!(model.trim_end(), "QEMU HARDDISK");
    assert_eq!(rig.inw(0x1f0), 0, "idle data port reads 0");
}

#[test]
fn identity_strings_can_be_changed_per_drive() {
    let img = SharedImage::new(MIB);
    let mut cfg = disk(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    cfg.serial = Some("SER-42".into());
    cfg.model = Some("Xen Disk".into());
    cfg.version = Some("1.0".into());
    let mut rig = Rig::new([Some(cfg), None, None, None]);
    rig.outb(0x1f7, 0xec);
    let data = rig.read_block(512);
    assert_eq!(&data[20..26], b"ES-R24", "byte-swapped pairs");
    assert_eq!(&data[46..50], b".1 0");
    assert_eq!(&data[54..62], b"eX niDks");
}

#[test]
fn srst_runs_diagnostic_and_nien_masks_irq() {
    let img = SharedImage::new(MIB);
    let cd = SharedImage::new(2048 * 4);
    let mut rig = Rig::new([Some(disk(&img, ErrorPolicy::Report, ErrorPolicy::Report)), Some(cdrom(Some(&cd))), None, None]);
    rig.outb(0x1f6, 0xe0);
    rig.outb(0x3f6, 0x04);
    assert_eq!(rig.altstatus(), 0x50, "reset done by the next access");
    assert!(rig.irq_high(0));
    rig.outb(0x3f6, 0x00);
    assert_eq!((rig.inb(0x1f1), rig.inb(0x1f6), rig.inb(0x1f2), rig.inb(0x1f3)), (0x01, 0xa0, 1, 1));
    rig.outb(0x1f6, 0xb0);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f4), rig.inb(0x1f5)), (0x00, 0x14, 0xeb), "ATAPI: no DRDY after reset");
    rig.outb(0x1f6, 0xa0);
    let before = rig.irq_raises(0);
    rig.outb(BM + 2, 0x04);
    rig.outb(0x3f6, 0x02);
    rig.outb(0x1f7, 0xe5);
    assert_eq!(rig.irq_raises(0), before, "nIEN: no interrupt");
    assert_eq!((rig.altstatus(), rig.inb(0x1f2)), (0x50, 0xff));
    assert_eq!(rig.bm_status() & 0x04, 0, "no IRQ, no BM INTR");
}

#[test]
fn small_commands_match_qemu() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    let run = |rig: &mut Rig, cmd: u8, count: u8| {
        rig.command_lba28(cmd, 0, count);
        let irq = rig.irq_high(0);
        (rig.inb(0x1f7), rig.inb(0x1f1), irq)
    };
    assert_eq!(run(&mut rig, 0x00, 0), (0x41, 0x04, true), "NOP aborts");
    assert_eq!(run(&mut rig, 0x08, 0), (0x41, 0x04, true), "DEVICE RESET on a disk aborts");
    assert_eq!(run(&mut rig, 0xa1, 0), (0x41, 0x04, true));
    assert_eq!(run(&mut rig, 0x22, 0), (0x41, 0x04, true), "READ LONG not implemented");
    assert_eq!(run(&mut rig, 0x10, 0), (0x50, 0, true));
    assert_eq!(run(&mut rig, 0x70, 0), (0x50, 0, true));
    assert_eq!(run(&mut rig, 0x40, 4), (0x50, 0, true));
    for idle in [0x94u8, 0x95, 0x96, 0x97, 0x99, 0xe0, 0xe1, 0xe2, 0xe3, 0xe6] {
        assert_eq!(run(&mut rig, idle, 0), (0x40, 0, true), "{idle:#x} has no DSC");
    }
    assert_eq!(run(&mut rig, 0xe5, 0), (0x50, 0, true));
    assert_eq!(rig.inb(0x1f2), 0xff);
    assert_eq!(run(&mut rig, 0xc6, 3), (0x41, 0x04, true));
    assert_eq!(run(&mut rig, 0xc6, 8), (0x50, 0, true));
    assert_eq!(run(&mut rig, 0xf8, 0), (0x50, 0, true));
    assert_eq!((rig.inb(0x1f3), rig.inb(0x1f4), rig.inb(0x1f5)), (0xff, 0x7f, 0), "16 MiB: last LBA 0x7fff");
    assert_eq!(run(&mut rig, 0x90, 0), (0x50, 0x01, true));
    rig.outb(0x1f6, 0xe0);
    rig.outb(0x1f7, 0x90);
    assert_eq!(rig.inb(0x1f6), 0xa0, "DIAGNOSTIC clears LBA and DEV");
    rig.outb(0x1f6, 0xa3);
    rig.outb(0x1f2, 32);
    rig.outb(0x1f7, 0x91);
    assert_eq!(rig.inb(0x1f7), 0x50, "INITIALIZE DEVICE PARAMETERS");
}

#[test]
fn set_features_write_cache_and_transfer_mode() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    let set = |rig: &mut Rig, feature: u8, count: u8| {
        rig.outb(0x1f1, feature);
        rig.outb(0x1f2, count);
        rig.outb(0x1f7, 0xef);
        (rig.inb(0x1f7), rig.inb(0x1f1))
    };
    let identify = |rig: &mut Rig| -> Vec<u16> {
        rig.outb(0x1f7, 0xec);
        rig.read_block(512).chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
    };
    assert_eq!(identify(&mut rig)[85], 0x4021);
    let flushes = img.flushes();
    assert_eq!(set(&mut rig, 0x82, 0), (0x50, 0));
    assert!(!img.guest_write_cache());
    assert_eq!(img.flushes(), flushes + 1, "cache off flushes");
    assert_eq!(identify(&mut rig)[85], 0x4001);
    assert_eq!(set(&mut rig, 0x02, 0), (0x50, 0));
    assert!(img.guest_write_cache());
    assert_eq!(set(&mut rig, 0x03, 0x22), (0x50, 0), "MWDMA2");
    let w = identify(&mut rig);
    assert_eq!((w[62], w[63], w[88]), (0x07, 0x0407, 0x3f));
    assert_eq!(set(&mut rig, 0x03, 0x44), (0x50, 0), "UDMA4");
    assert_eq!(set(&mut rig, 0x03, 0x18), (0x41, 0x04));
    assert_eq!(set(&mut rig, 0x77, 0), (0x41, 0x04));
    assert_eq!(set(&mut rig, 0xaa, 0), (0x50, 0));
}

#[test]
fn access_widths_as_measured_on_qemu() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    assert_eq!((rig.inb(0x1f0), rig.inw(0x1f2), rig.inl(0x1f4)), (0x00, 0x0101, 0xffff_ffff));
    rig.outb(0x1f7, 0xec);
    rig.inb(0x1f7);
    assert_eq!(rig.inb(0x1f0), 0x40, "byte read consumes word 0");
    assert_eq!(rig.inw(0x1f0), 0x0020, "word 1");
    assert_eq!(rig.inl(0x1f0), 0x0010_0000, "words 2 and 3");
    assert_eq!((rig.inw(0x3f6), rig.inw(0x1f7), rig.inl(0x1f1)), (0xff58, 0xff58, 0xffff_ffff));
    rig.outb(0x1f0, 0x55);
    assert_eq!(rig.inw(0x1f0), 0x7e00, "byte write ignored during a read phase");
}

#[test]
fn polling_status_does_not_touch_the_interrupt_line_again() {
    let img = SharedImage::new(MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.outb(0x1f7, 0xec);
    let calls = rig.irqs[0].calls.load(Ordering::SeqCst);
    for _ in 0..100 {
        rig.inb(0x1f7);
    }
    assert_eq!(rig.irqs[0].calls.load(Ordering::SeqCst), calls + 1, "one lowering, then nothing");
    assert!(!rig.irq_high(0));
}

#[test]
fn zero_sectors_per_track_is_accepted_but_chs_access_aborts() {
    let img = SharedImage::new(16 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.outb(0x1f6, 0xa3);
    rig.outb(0x1f2, 0);
    rig.outb(0x1f7, 0x91);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x50, 0));
    rig.outb(0x1f6, 0xa0);
    rig.outb(0x1f2, 1);
    rig.outb(0x1f3, 1);
    rig.outb(0x1f7, 0x20);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x04), "QEMU 7.2 crashes here (SIGFPE)");
    rig.command_lba28(0x20, 0, 1);
    assert_eq!(rig.inb(0x1f7), 0x58, "LBA addressing still works");
}

/// The Xen platform unplug takes the hard disks off the bus (they then read
/// as absent, status 0) and leaves the CD-ROM, as QEMU's PIIX unplug does.
#[test]
fn platform_unplug_removes_disks_and_keeps_the_cdrom() {
    let image = SharedImage::new(MIB);
    let cd = SharedImage::new(64 * 2048);
    let mut rig = Rig::new([Some(disk(&image, ErrorPolicy::Report, ErrorPolicy::Report)), None, Some(cdrom(Some(&cd))), None]);
    rig.outb(0x1f6, 0xa0);
    assert_eq!(rig.inb(0x1f7), 0x50);
    assert_eq!(rig.ide().unplug_disks(false), vec!["ide0-hd0".to_string()]);
    rig.outb(0x1f6, 0xa0);
    assert_eq!(rig.inb(0x1f7), 0x00, "no drive on the primary channel any more");
    assert_eq!(rig.ide().drives_info().iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec!["ide1-cd0"]);
    assert!(rig.ide().unplug_disks(false).is_empty());
}
