//! Expected bytes are QEMU 7.2's, recorded with
//! tools/research/atapi_probe.py (PIO over qtest, secondary master).

use super::*;

mod media;

/// The probe's default image: 1 MiB, 512 blocks, a CD.
const CD: Option<u64> = Some(512);
/// The probe's 800 000 000-byte image, a DVD.
const DVD: Option<u64> = Some(390_625);

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn cdb(bytes: &[u8]) -> [u8; 12] {
    let mut packet = [0u8; 12];
    packet[..bytes.len()].copy_from_slice(bytes);
    packet
}

fn run(state: &mut AtapiState, bytes: &[u8], medium: Option<u64>) -> PacketOutcome {
    state.execute_packet(&cdb(bytes), medium, true)
}

fn data(state: &mut AtapiState, bytes: &[u8], medium: Option<u64>) -> Vec<u8> {
    match run(state, bytes, medium) {
        PacketOutcome::Atapi(PacketResult::DataIn(data)) => data,
        other => panic!("expected data for {bytes:02x?}, got {other:?}"),
    }
}

fn error(key: u8, asc: u8) -> PacketOutcome {
    PacketOutcome::Atapi(PacketResult::Error(Sense::new(key, asc)))
}

const DONE: PacketOutcome = PacketOutcome::Atapi(PacketResult::Done);

fn sense_bytes(state: &mut AtapiState) -> String {
    data(state, &[0x03, 0, 0, 0, 18], CD)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn test_unit_ready_needs_a_medium() {
    let mut state = AtapiState::new();
    assert_eq!(run(&mut state, &[0x00], CD), DONE);
    assert_eq!(run(&mut state, &[0x00], None), error(2, 0x3a));
    assert_eq!(run(&mut state, &[0x00], Some(0)), error(2, 0x3a));
}

#[test]
fn request_sense_is_fixed_format_and_sticky_across_successes() {
    let mut state = AtapiState::new();
    assert_eq!(
        sense_bytes(&mut state),
        "f00000000000000a00000000000000000000"
    );
    assert_eq!(run(&mut state, &[0x55], CD), error(5, 0x20));
    assert_eq!(run(&mut state, &[0x00], CD), DONE);
    // QEMU only overwrites sense on the next error.
    assert_eq!(
        sense_bytes(&mut state),
        "f00005000000000a00000000200000000000"
    );
    assert_eq!(
        data(&mut state, &[0x03, 0, 0, 0, 252], CD),
        hex("f00005000000000a00000000200000000000")
    );
    assert_eq!(data(&mut state, &[0x03, 0, 0, 0, 3], CD), hex("f00005"));
    assert_eq!(data(&mut state, &[0x03, 0, 0, 0, 0], CD), Vec::<u8>::new());
}

#[test]
fn inquiry_standard_data() {
    let mut state = AtapiState::new();
    let full = hex("058000211f00000051454d552020202051454d55204456442d524f4d20202020322e352b");
    assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 96], CD), full);
    assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 8], CD), full[..8]);
    // INQUIRY works without a medium too.
    assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 36], None), full);
}

#[test]
fn inquiry_vital_product_data() {
    let mut state = AtapiState::new();
    assert_eq!(
        data(&mut state, &[0x12, 1, 0, 0, 96], CD),
        hex("050000020083")
    );
    assert_eq!(
        data(&mut state, &[0x12, 1, 0x83, 0, 96], CD),
        hex("0583001802000014514d303030303320202020202020202020202020")
    );
    assert_eq!(run(&mut state, &[0x12, 1, 0x83, 0, 10], CD), error(5, 0x4b));
    assert_eq!(run(&mut state, &[0x12, 1, 0x80, 0, 96], CD), error(5, 0x24));
    // With room for it, the model descriptor follows the serial.
    let long = data(&mut state, &[0x12, 1, 0x83, 0, 255], CD);
    assert_eq!(long.len(), 100);
    assert_eq!(long[3], 96);
    assert_eq!(&long[28..32], &[0x02, 0x01, 0x00, 68]);
    assert_eq!(&long[32..40], b"ATA     ");
    assert_eq!(&long[40..52], b"QEMU DVD-ROM");
    assert_eq!(&long[80..87], b"QM00003");
    state.set_serial("QM00001");
    assert_eq!(
        &data(&mut state, &[0x12, 1, 0x83, 0, 96], CD)[8..15],
        b"QM00001"
    );
}

#[test]
fn read_capacity_reports_the_last_block() {
    let mut state = AtapiState::new();
    assert_eq!(data(&mut state, &[0x25], CD), hex("000001ff00000800"));
    assert_eq!(data(&mut state, &[0x25], DVD), hex("0005f5e000000800"));
    assert_eq!(run(&mut state, &[0x25], None), error(2, 0x3a));
}

#[test]
fn reads_are_checked_against_the_medium() {
    let mut state = AtapiState::new();
    let read = |lba, count| PacketOutcome::Atapi(PacketResult::Read { lba, count });
    assert_eq!(
        run(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1], CD),
        read(0, 1)
    );
    assert_eq!(run(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 0], CD), DONE);
    assert_eq!(
        run(&mut state, &[0x28, 0, 0, 0, 2, 0, 0, 0, 1], CD),
        error(5, 0x21)
    );
    assert_eq!(
        run(&mut state, &[0x28, 0, 0, 0, 1, 0xff, 0, 0, 2], CD),
        error(5, 0x21)
    );
    assert_eq!(
        run(&mut state, &[0x28, 0, 0, 0, 1, 0xff, 0, 0, 1], CD),
        read(511, 1)
    );
    assert_eq!(
        run(&mut state, &[0xa8, 0, 0, 0, 0, 1, 0, 0, 0, 1], CD),
        read(1, 1)
    );
    assert_eq!(
        run(
            &mut state,
            &[0xa8, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2],
            CD
        ),
        error(5, 0x21)
    );
    // QEMU's 32-bit sum wraps here and lets the read through; we refuse.
    assert_eq!(
        run(
            &mut state,
            &[0xa8, 0, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff],
            CD
        ),
        error(5, 0x21)
    );
    assert_eq!(
        run(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1], None),
        error(2, 0x3a)
    );
}

#[test]
fn seek_checks_the_address() {
    let mut state = AtapiState::new();
    assert_eq!(run(&mut state, &[0x2b, 0, 0, 0, 0, 5], CD), DONE);
    assert_eq!(run(&mut state, &[0x2b, 0, 0, 0, 2, 0], CD), error(5, 0x21));
}

#[test]
fn read_toc_formats() {
    let mut state = AtapiState::new();
    let toc = |state: &mut AtapiState, msf: u8, track: u8, alloc: u8, format: u8, medium| {
        run(
            state,
            &[0x43, msf, 0, 0, 0, 0, track, 0, alloc, format],
            medium,
        )
    };
    let ok = |text: &str| PacketOutcome::Atapi(PacketResult::DataIn(hex(text)));
    assert_eq!(
        toc(&mut state, 0, 0, 100, 0, CD),
        ok("0012010100140100000000000016aa0000000200")
    );
    assert_eq!(
        toc(&mut state, 2, 0, 100, 0, CD),
        ok("0012010100140100000002000016aa000000083e")
    );
    assert_eq!(
        toc(&mut state, 0, 0xaa, 100, 0, CD),
        ok("000a01010016aa0000000200")
    );
    assert_eq!(toc(&mut state, 0, 2, 100, 0, CD), error(5, 0x24));
    assert_eq!(toc(&mut state, 0, 0, 6, 0, CD), ok("001201010014"));
    assert_eq!(
        toc(&mut state, 0, 0, 100, 0x40, CD),
        ok("000a01010000000000000000")
    );
    assert_eq!(
        toc(&mut state, 0, 0, 100, 0x80, CD),
        ok("002e0101011400a000000000010000011400a100000000010000011400a2000000000002000114000100000000000000")
    );
    assert_eq!(
        toc(&mut state, 2, 0, 100, 0x80, CD),
        ok("002e0101011400a000000000010000011400a100000000010000011400a20000000000083e0114000100000000000200")
    );
    assert_eq!(toc(&mut state, 0, 0, 100, 0xc0, CD), error(5, 0x24));
    assert_eq!(
        toc(&mut state, 0, 0, 100, 0, DVD),
        ok("0012010100140100000000000016aa000005f5e1")
    );
    assert_eq!(
        toc(&mut state, 2, 0, 100, 0, DVD),
        ok("0012010100140100000002000016aa0000563219")
    );
    assert_eq!(
        toc(&mut state, 2, 0, 100, 0x80, DVD),
        ok("002e0101011400a000000000010000011400a100000000010000011400a2000000005632190114000100000000000200")
    );
    // The MMC format field in byte 2 is ignored, as QEMU does.
    assert_eq!(
        run(&mut state, &[0x43, 0, 2, 0, 0, 0, 0, 0, 100], CD),
        ok("0012010100140100000000000016aa0000000200")
    );
    assert_eq!(toc(&mut state, 0, 0, 100, 0, None), error(2, 0x3a));
}

#[test]
fn mode_sense_pages() {
    let mut state = AtapiState::new();
    let sense = |state: &mut AtapiState, page: u8, alloc: u8| {
        run(state, &[0x5a, 0, page, 0, 0, 0, 0, 0, alloc], CD)
    };
    let ok = |text: &str| PacketOutcome::Atapi(PacketResult::DataIn(hex(text)));
    assert_eq!(
        sense(&mut state, 0x01, 100),
        ok("000e7000000000000106000500000000")
    );
    let capabilities = "001c7000000000002a143b007160290002c00002020002c0000000000000";
    assert_eq!(sense(&mut state, 0x2a, 100), ok(capabilities));
    assert_eq!(sense(&mut state, 0x2a, 10), ok(&capabilities[..20]));
    // Page 0x0e: length and header as QEMU; QEMU's volume bytes are stale
    // buffer contents, ours are zero.
    let audio = data(&mut state, &[0x5a, 0, 0x0e, 0, 0, 0, 0, 0, 100], CD);
    assert_eq!(audio.len(), 24);
    assert_eq!(&audio[..10], &hex("00167000000000000e0e")[..]);
    assert_eq!(sense(&mut state, 0x3f, 100), error(5, 0x24));
    assert_eq!(sense(&mut state, 0x08, 100), error(5, 0x24));
    assert_eq!(sense(&mut state, 0x6a, 100), error(5, 0x24));
    assert_eq!(sense(&mut state, 0xaa, 100), error(5, 0x24));
    assert_eq!(sense(&mut state, 0xea, 100), error(5, 0x39));
    assert_eq!(
        run(&mut state, &[0x1a, 0, 0x2a, 0, 100], CD),
        error(5, 0x20)
    );
    // No medium needed.
    assert_eq!(
        run(&mut state, &[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 100], None),
        ok(capabilities)
    );
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), DONE);
    assert_eq!(
        sense(&mut state, 0x2a, 100),
        ok("001c7000000000002a143b0071602b0002c00002020002c0000000000000")
    );
}

#[test]
fn get_configuration_profiles_follow_the_medium() {
    let mut state = AtapiState::new();
    let conf = [0x46, 0, 0, 0, 0, 0, 0, 0, 100];
    assert_eq!(
        data(&mut state, &conf, CD),
        hex("0000001000000008000003080010000000080100")
    );
    assert_eq!(
        data(&mut state, &conf, DVD),
        hex("0000001000000010000003080010010000080000")
    );
    assert_eq!(
        data(&mut state, &conf, None),
        hex("0000001000000000000003080010000000080000")
    );
    assert_eq!(
        data(&mut state, &[0x46, 1, 0, 0, 0, 0, 0, 0, 100], CD),
        hex("0000001000000008000003080010000000080100")
    );
    assert_eq!(
        run(&mut state, &[0x46, 0, 0, 1, 0, 0, 0, 0, 100], CD),
        error(5, 0x24)
    );
    assert_eq!(
        data(&mut state, &[0x46, 0, 0, 0, 0, 0, 0, 0x10, 0], CD).len(),
        20
    );
    assert_eq!(
        data(&mut state, &[0x46, 0, 0, 0, 0, 0, 0, 0, 9], CD),
        hex("000000100000000800")
    );
    // Exactly at the 80-minute CD size the medium is still a CD.
    assert_eq!(data(&mut state, &conf, Some(CD_MAX_BLOCKS))[7], 0x08);
    assert_eq!(data(&mut state, &conf, Some(CD_MAX_BLOCKS + 1))[7], 0x10);
    state.set_tray_open(true);
    assert_eq!(
        data(&mut state, &conf, CD),
        hex("0000001000000000000003080010000000080000")
    );
}

#[test]
fn event_status_notification_is_polled_only() {
    let mut state = AtapiState::new();
    let gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100];
    assert_eq!(data(&mut state, &gesn, CD), hex("0004041000020000"));
    assert_eq!(data(&mut state, &gesn, None), hex("0004041000000000"));
    assert_eq!(
        run(&mut state, &[0x4a, 0, 0, 0, 0x10, 0, 0, 0, 100], CD),
        error(5, 0x24)
    );
    assert_eq!(
        data(&mut state, &[0x4a, 1, 0, 0, 0x02, 0, 0, 0, 100], CD),
        hex("00008010")
    );
    assert_eq!(
        data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 5], CD),
        hex("0004041000")
    );
}

#[test]
fn disc_information_mechanism_status_and_speed() {
    let mut state = AtapiState::new();
    assert_eq!(
        data(&mut state, &[0x51, 0, 0, 0, 0, 0, 0, 0, 100], CD),
        hex("00200e01010101200000000000000000000000000000000000000000000000000000")
    );
    assert_eq!(
        data(&mut state, &[0x51, 0, 0, 0, 0, 0, 0, 0, 4], CD),
        hex("00200e01")
    );
    assert_eq!(
        run(&mut state, &[0x51, 1, 0, 0, 0, 0, 0, 0, 100], CD),
        error(5, 0x24)
    );
    assert_eq!(
        run(&mut state, &[0x51, 0, 0, 0, 0, 0, 0, 0, 100], None),
        error(2, 0x3a)
    );
    assert_eq!(
        data(&mut state, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 100], CD),
        hex("0000000000010000")
    );
    assert_eq!(
        data(&mut state, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 100], None),
        hex("0000000000010000")
    );
    assert_eq!(
        data(&mut state, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 2], CD),
        hex("0000")
    );
    assert_eq!(run(&mut state, &[0xbb, 0, 0xff, 0xff], CD), DONE);
    assert_eq!(run(&mut state, &[0xbb, 0, 0xff, 0xff], None), DONE);
}

#[test]
fn read_cd_transfer_types() {
    let mut state = AtapiState::new();
    let read_cd = |state: &mut AtapiState, lba: u8, count: u8, fields: u8| {
        run(state, &[0xbe, 0, 0, 0, 0, lba, 0, 0, count, fields], CD)
    };
    assert_eq!(
        read_cd(&mut state, 1, 1, 0x10),
        PacketOutcome::Atapi(PacketResult::Read { lba: 1, count: 1 })
    );
    assert_eq!(
        read_cd(&mut state, 1, 1, 0xf8),
        PacketOutcome::ReadRaw { lba: 1, count: 1 }
    );
    assert_eq!(read_cd(&mut state, 1, 1, 0x00), DONE);
    assert_eq!(read_cd(&mut state, 1, 1, 0x20), error(5, 0x24));
    assert_eq!(
        run(&mut state, &[0xbe, 0, 0, 0, 2, 0, 0, 0, 1, 0x10], CD),
        error(5, 0x21)
    );
    assert_eq!(
        run(&mut state, &[0xbe, 0, 0xff, 0, 0, 1, 0, 0, 0, 0x10], CD),
        DONE
    );
    // Through the contract's execute, a raw read is a Read of 2352-byte blocks.
    assert_eq!(
        state.execute(&cdb(&[0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0xf8]), CD),
        PacketResult::Read { lba: 1, count: 1 }
    );
    assert_eq!(state.read_sector_size(), CD_RAW_SECTOR_SIZE);
    assert_eq!(
        state.execute(&cdb(&[0x28, 0, 0, 0, 0, 1, 0, 0, 1]), CD),
        PacketResult::Read { lba: 1, count: 1 }
    );
    assert_eq!(state.read_sector_size(), CD_SECTOR_SIZE);
}

#[test]
fn raw_sector_layout_matches_qemu() {
    let user: [u8; CD_SECTOR_SIZE] = std::array::from_fn(|i| i as u8);
    let sector = raw_sector(1, &user);
    assert_eq!(&sector[..16], &hex("00ffffffffffffffffffff0000020101")[..]);
    assert_eq!(&sector[16..16 + CD_SECTOR_SIZE], &user[..]);
    assert!(sector[16 + CD_SECTOR_SIZE..].iter().all(|&b| b == 0));
    assert_eq!(&raw_sector(0, &user)[12..16], &[0, 2, 0, 1]);
}

#[test]
fn dvd_structure() {
    let mut state = AtapiState::new();
    let structure =
        |state: &mut AtapiState, media: u8, layer: u8, format: u8, alloc: u8, medium| {
            run(
                state,
                &[0xad, media, 0, 0, 0, 0, layer, format, 0, alloc],
                medium,
            )
        };
    let physical = data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 0, 0, 100], DVD);
    assert_eq!(
        physical[..20],
        hex("08020000010f0100000000000005f5e00005f5e0")
    );
    assert!(physical[20..].iter().all(|&b| b == 0));
    assert_eq!(physical.len(), 100);
    assert_eq!(
        data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 0, 0x10, 0], DVD).len(),
        2052
    );
    // QEMU's layer check only sees the CDB when the allocation length
    // keeps byte 6 from being cleared.
    assert_eq!(
        data(&mut state, &[0xad, 0, 0, 0, 0, 0, 1, 0, 0, 100], DVD).len(),
        100
    );
    assert_eq!(structure(&mut state, 0, 1, 0, 6, DVD), error(5, 0x24));
    assert_eq!(
        data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 1, 0, 100], DVD),
        hex("0006000000000000")
    );
    assert_eq!(structure(&mut state, 0, 0, 3, 100, DVD), error(5, 0x24));
    let manufacturing = data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 4, 0, 100], DVD);
    assert_eq!(manufacturing[..4], hex("08020000"));
    assert!(manufacturing[4..].iter().all(|&b| b == 0));
    assert_eq!(
        data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 4, 0, 10], DVD),
        hex("08020000000000000000")
    );
    let listing = hex("001200000040080401400008034000c004400804");
    assert_eq!(
        data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 100], DVD),
        listing
    );
    assert_eq!(
        data(&mut state, &[0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 100], CD),
        listing
    );
    assert_eq!(structure(&mut state, 0, 0, 0x80, 100, DVD), error(5, 0x24));
    assert_eq!(structure(&mut state, 1, 0, 0, 100, DVD), error(5, 0x24));
    assert_eq!(structure(&mut state, 0, 0, 0, 100, CD), error(5, 0x30));
    assert_eq!(structure(&mut state, 0, 0, 0xff, 100, None), error(2, 0x3a));
}

#[test]
fn unknown_opcodes_are_illegal_requests() {
    let mut state = AtapiState::new();
    for op in [0x55, 0xff, 0x1a, 0x42, 0xb9] {
        assert_eq!(run(&mut state, &[op], CD), error(5, 0x20), "opcode {op:#x}");
        assert_eq!(
            run(&mut state, &[op], None),
            error(5, 0x20),
            "opcode {op:#x}"
        );
    }
}

#[test]
fn byte_count_limit_zero_aborts_data_commands_only() {
    let mut state = AtapiState::new();
    let no_limit =
        |state: &mut AtapiState, bytes: &[u8]| state.execute_packet(&cdb(bytes), CD, false);
    assert_eq!(
        no_limit(&mut state, &[0x12, 0, 0, 0, 36]),
        PacketOutcome::AbortByteCountLimit
    );
    assert_eq!(no_limit(&mut state, &[0x00]), DONE);
    assert_eq!(
        no_limit(&mut state, &[0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0x00]),
        DONE
    );
    assert_eq!(
        no_limit(&mut state, &[0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0x10]),
        PacketOutcome::AbortByteCountLimit
    );
    assert_eq!(
        no_limit(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 0]),
        PacketOutcome::AbortByteCountLimit
    );
    assert_eq!(no_limit(&mut state, &[0x1e, 0, 0, 0, 1]), DONE);
    // The abort leaves the sense alone.
    assert_eq!(state.sense(), Sense::default());
}
