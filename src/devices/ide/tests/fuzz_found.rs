//! Inputs the cargo-fuzz targets (fuzz/, see README "Fuzzing") found, kept
//! as regression tests of the behaviour they pinned down.

use super::*;

fn byte_count(rig: &mut Rig) -> u16 {
    rig.inb(0x1f4) as u16 | (rig.inb(0x1f5) as u16) << 8
}

/// atapi target: REQUEST SENSE with an allocation length of 1 offers a
/// one-byte PIO phase; a word read of it finds less than a word left and,
/// as in QEMU 7.2 (ide_data_readw: `p + 2 > data_end` returns 0 without
/// moving; from QEMU's source, not measured), does not advance, so DRQ
/// stays. Meanwhile writes to the
/// command block are ignored (QEMU: "ignore writes to command block while
/// busy with previous command") and so is a new PACKET; the byte count
/// the guest then reads is still the old phase's, not the limit it just
/// tried to write. DEVICE RESET, the one command ATAPI takes during DRQ,
/// ends it.
#[test]
fn a_one_byte_atapi_reply_read_by_words_keeps_drq_until_device_reset() {
    let (mut rig, _cd) = cd_rig(64);
    let mut sense = [0u8; 12];
    sense[0] = 0x03;
    sense[4] = 1;
    send_packet(&mut rig, &sense, 12287, false);
    assert_eq!((rig.altstatus(), byte_count(&mut rig), rig.inb(0x1f2)), (0x58, 1, 2), "a one-byte data-in phase");
    rig.inw(0x1f0);
    assert_eq!((rig.altstatus(), byte_count(&mut rig)), (0x58, 1), "a word read does not consume one byte");
    rig.outb(0x1f4, 0);
    rig.outb(0x1f5, 0);
    rig.outb(0x1f7, 0xa0);
    assert_eq!((rig.altstatus(), byte_count(&mut rig), rig.inb(0x1f2)), (0x58, 1, 2), "PACKET and limit ignored during DRQ");
    rig.outb(0x1f7, 0x08);
    assert_eq!(rig.altstatus() & 0x88, 0, "DEVICE RESET ends the phase");
}
