//! The ATAPI CD-ROM through the ports: signature, PIO chunks, DMA, sense
//! after host errors, tray and medium events.

use super::*;

#[test]
fn atapi_signature_on_ata_commands_and_identify_packet() {
    let (mut rig, _cd) = cd_rig(4);
    rig.outb(0x1f7, 0xec);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.inb(0x1f4), rig.inb(0x1f5)), (0x41, 0x04, 0x14, 0xeb));
    rig.command_lba28(0x20, 0, 1);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f4), rig.inb(0x1f5)), (0x41, 0x14, 0xeb));
    rig.outb(0x1f7, 0xa1);
    assert_eq!(rig.inb(0x1f7), 0x58);
    let w: Vec<u16> = rig.read_block(512).chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    assert_eq!(w[0], 0x85c0);
    let model: String = w[27..47].iter().flat_map(|x| x.to_be_bytes()).map(|b| b as char).collect();
    assert_eq!(model.trim_end(), "QEMU DVD-ROM");
    assert_eq!(rig.altstatus(), 0x50);
}

#[test]
fn atapi_pio_read_in_byte_count_chunks() {
    let (mut rig, cd) = cd_rig(16);
    let raises = rig.irq_raises(0);
    send_packet(&mut rig, &read10(2, 3), 5120, false);
    let mut got = Vec::new();
    let mut chunks = Vec::new();
    for _ in 0..10 {
        let st = rig.inb(0x1f7);
        if st & 0x08 == 0 {
            break;
        }
        let len = rig.inb(0x1f4) as usize | (rig.inb(0x1f5) as usize) << 8;
        assert_eq!(rig.inb(0x1f2) & 3, 2, "ireason I/O");
        chunks.push(len);
        got.extend(rig.read_block(len));
    }
    assert_eq!(chunks, vec![5120, 1024]);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f2) & 3), (0x50, 3));
    assert_eq!(got, cd.bytes(2 * 2048, 3 * 2048));
    assert_eq!(rig.irq_raises(0) - raises, 3);
}

#[test]
fn atapi_inquiry_and_dma_read() {
    let (mut rig, cd) = cd_rig(8);
    let mut inquiry = [0u8; 12];
    inquiry[0] = 0x12;
    inquiry[4] = 36;
    send_packet(&mut rig, &inquiry, 0xffff, false);
    assert_eq!(rig.inb(0x1f4), 36);
    let data = rig.read_block(36);
    assert_eq!(&data[16..28], b"QEMU DVD-ROM");
    assert_eq!(rig.inb(0x1f7), 0x50);

    rig.set_prdt(&[(BUF as u32, 4096)]);
    rig.outb(BM, 0x08);
    send_packet(&mut rig, &read10(3, 2), 0, true);
    assert_eq!(rig.altstatus(), 0xd8, "ATAPI DMA read waits with BSY|DRQ");
    rig.outb(BM, 0x09);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f2) & 3, rig.bm_status()), (0x50, 3, 0x04));
    assert_eq!(rig.mem_read(BUF, 4096), cd.bytes(3 * 2048, 4096));
}

#[test]
fn atapi_host_error_maps_to_sense() {
    let (mut rig, cd) = cd_rig(8);
    cd.inject(BlockOp::Read, None, libc::EIO, false);
    send_packet(&mut rig, &read10(0, 1), 2048, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.inb(0x1f2) & 3), (0x41, 0x50, 3));
    let mut sense = [0u8; 12];
    sense[0] = 0x03;
    sense[4] = 18;
    send_packet(&mut rig, &sense, 18, false);
    let data = rig.read_block(18);
    assert_eq!((data[2], data[12]), (5, 0x21));
    assert!(io_errors(&rig.events()).is_empty(), "QEMU 7.2 sends no BLOCK_IO_ERROR for CD-ROM PIO reads");
    assert_eq!(rig.ide().drives_info()[0].stats.failed_rd_operations, 1);
}

#[test]
fn atapi_without_medium_and_tray_events() {
    let mut rig = Rig::new([None, None, Some(cdrom(None)), None]);
    rig.outb(0x176, 0xa0);
    rig.outb(0x174, 0x00);
    rig.outb(0x175, 0x08);
    rig.outb(0x177, 0xa0);
    for w in read10(0, 1).chunks(2) {
        rig.outw(0x170, u16::from_le_bytes([w[0], w[1]]));
    }
    assert_eq!((rig.inb(0x177), rig.inb(0x171)), (0x41, 0x20), "NOT READY");
    assert!(rig.irq_raises(1) > 0 && rig.irq_raises(0) == 0, "secondary channel uses IRQ 15");
    let iso = SharedImage::new(2048 * 10);
    rig.ide().change_medium("ide1-cd0", Box::new(iso), "/tmp/x.iso".into()).unwrap();
    let ev = rig.events();
    let trays: Vec<bool> = ev
        .iter()
        .filter_map(|e| match e {
            Event::DeviceTrayMoved { tray_open, .. } => Some(*tray_open),
            _ => None,
        })
        .collect();
    assert_eq!(trays, vec![true, false]);
    let info = rig.ide().drives_info();
    assert_eq!(info[0].inserted.as_ref().map(|m| m.size), Some(20480));
    assert!(info[0].removable);
    rig.ide().eject("ide1-cd0", false).unwrap();
    assert!(rig.ide().drives_info()[0].inserted.is_none());
    assert!(rig.ide().drives_info()[0].tray_open);
    assert_eq!(rig.ide().eject("nope", false), Err(IdeError::NoSuchDevice("nope".into())));
}

#[test]
fn eject_refuses_disks_and_flush_all_reports_errors() {
    let img = SharedImage::new(MIB);
    let rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    assert_eq!(rig.ide().eject("ide0-hd0", true), Err(IdeError::NotRemovable("ide0-hd0".into())));
    assert!(rig.ide().flush_all().is_ok());
    img.inject(BlockOp::Flush, None, libc::EIO, true);
    assert_eq!(rig.ide().flush_all().map_err(|e| e.errno()), Err(libc::EIO));
}

#[test]
fn guest_eject_moves_the_tray_and_reports_it() {
    let (mut rig, _cd) = cd_rig(4);
    let mut start_stop = [0u8; 12];
    start_stop[0] = 0x1b;
    start_stop[4] = 0x02;
    send_packet(&mut rig, &start_stop, 0, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f2) & 3), (0x50, 3));
    assert!(rig.events().contains(&Event::DeviceTrayMoved { device: "ide1-cd0".into(), id: "ide1-cd0".into(), tray_open: true }));
    assert!(rig.ide().drives_info()[0].tray_open);
    send_packet(&mut rig, &read10(0, 1), 2048, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x20), "NOT READY with the tray open");
}

/// An ATAPI DMA read of whole blocks goes into guest memory on the
/// engine; a PRD outside guest RAM is a DMA error (ABRT, the engine
/// stopped with an interrupt), not a medium error with sense data.
#[test]
fn atapi_dma_read_into_bad_memory_is_a_dma_error() {
    let (mut rig, cd) = cd_rig(8);
    rig.set_prdt(&[(BUF as u32, 2048), (BUF as u32 + 0x3000, 2048)]);
    rig.outb(BM, 0x08);
    send_packet(&mut rig, &read10(5, 2), 0, true);
    rig.outb(BM, 0x09);
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    assert_eq!(rig.mem_read(BUF, 2048), cd.bytes(5 * 2048, 2048));
    assert_eq!(rig.mem_read(BUF + 0x3000, 2048), cd.bytes(6 * 2048, 2048));
    rig.outb(BM, 0x08);
    rig.set_prdt(&[(0xffff_f000, 4096)]);
    send_packet(&mut rig, &read10(0, 2), 0, true);
    rig.outb(BM, 0x09);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.bm_status()), (0x41, 0x04, 0x04));
}
