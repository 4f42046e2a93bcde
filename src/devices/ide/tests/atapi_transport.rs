//! The ATAPI transport: CDB phase, byte-count-limit chunks, READ CD raw
//! sectors, DMA replies.

use super::*;

fn read_cd(lba: u32, count: u32, flags: u8) -> [u8; 12] {
    let mut cdb = [0u8; 12];
    cdb[0] = 0xbe;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[6..9].copy_from_slice(&count.to_be_bytes()[1..]);
    cdb[9] = flags;
    cdb
}

#[test]
fn read_cd_raw_sectors_by_pio_and_dma() {
    let (mut rig, cd) = cd_rig(8);
    send_packet(&mut rig, &read_cd(2, 2, 0xf8), 0xfffe, false);
    let len = rig.inb(0x1f4) as usize | (rig.inb(0x1f5) as usize) << 8;
    assert_eq!(len, 2 * 2352);
    let data = rig.read_block(len);
    assert_eq!(rig.inb(0x1f7), 0x50);
    assert_eq!(&data[0..12], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    assert_eq!(&data[12..16], &[0, 2, 152 % 75, 1], "MSF of LBA 2 + 150 frames, mode 1");
    assert_eq!(&data[16..16 + 2048], &cd.bytes(2 * 2048, 2048)[..]);
    assert_eq!(&data[2352 + 16..2352 + 16 + 2048], &cd.bytes(3 * 2048, 2048)[..]);

    rig.set_prdt(&[(BUF as u32, 2352)]);
    rig.outb(BM, 0x08);
    send_packet(&mut rig, &read_cd(5, 1, 0xf8), 0, true);
    rig.outb(BM, 0x09);
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    assert_eq!(rig.mem_read(BUF + 16, 2048), cd.bytes(5 * 2048, 2048));
}

#[test]
fn byte_count_limit_zero_aborts_without_interrupt() {
    let (mut rig, _cd) = cd_rig(4);
    let mut inquiry = [0u8; 12];
    inquiry[0] = 0x12;
    inquiry[4] = 36;
    rig.inb(0x1f7);
    let raises = rig.irq_raises(0);
    send_packet(&mut rig, &inquiry, 0, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.inb(0x1f2)), (0x41, 0x04, 0x01), "QEMU 7.2 measured");
    assert_eq!(rig.irq_raises(0), raises);
}

#[test]
fn medium_change_reports_not_ready_then_unit_attention_then_check_status() {
    let mut rig = Rig::new([Some(cdrom(None)), None, None, None]);
    rig.ide().change_medium("ide1-cd0", Box::new(SharedImage::new(2048 * 4)), "a.iso".into()).unwrap();
    let tur = [0u8; 12];
    send_packet(&mut rig, &tur, 0, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x20), "NOT READY");
    send_packet(&mut rig, &tur, 0, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x60), "UNIT ATTENTION");
    send_packet(&mut rig, &tur, 0, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.inb(0x1f2)), (0x01, 0x60, 0), "check status while UA pending");
    let mut sense = [0u8; 12];
    sense[0] = 0x03;
    sense[4] = 18;
    send_packet(&mut rig, &sense, 18, false);
    assert_eq!(rig.read_block(18)[2], 6);
    send_packet(&mut rig, &tur, 0, false);
    assert_eq!(rig.inb(0x1f7), 0x50);
}

#[test]
fn host_eject_of_a_locked_tray_needs_force() {
    let (mut rig, _cd) = cd_rig(4);
    let mut prevent = [0u8; 12];
    prevent[0] = 0x1e;
    prevent[4] = 1;
    send_packet(&mut rig, &prevent, 0, false);
    assert!(rig.ide().drives_info()[0].locked);
    assert_eq!(rig.ide().eject("ide1-cd0", false), Err(IdeError::Locked("ide1-cd0".into())));
    assert!(rig.ide().drives_info()[0].inserted.is_some());
    rig.ide().eject("ide1-cd0", true).unwrap();
    assert!(rig.ide().drives_info()[0].inserted.is_none());
}
