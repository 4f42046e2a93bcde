//! CMOS contents against QEMU 7.2's, the Xen scope, reset, hostile ports.

use super::*;
use proptest::prelude::*;

fn setup(scope: CmosScope, ram: u64, order: &str) -> CmosSetup {
    CmosSetup {
        scope,
        memory: MemoryLayout::qemu_pc(ram),
        boot_order: BootOrder::parse(order).unwrap(),
        floppy_boot_check: true,
        hard_disks: [None; 4],
    }
}

fn peek(cmos: &mut Cmos, index: u8) -> u8 {
    cmos.write(0x70, 0, &[index]);
    let mut b = [0u8];
    cmos.read(0x70, 1, &mut b);
    b[0]
}

/// Non-zero bytes 0x0e..0x7f of QEMU 7.2 `-machine pc -nodefaults
/// -boot order=cda -m 5000`, read over qtest.
#[test]
fn memory_boot_and_equipment_bytes_match_qemu() {
    let mut cmos = Cmos::new(&setup(CmosScope::Full, 5000 * MIB, "cda"));
    let qemu: &[(u8, u8)] = &[
        (0x14, 0x06),
        (0x15, 0x80),
        (0x16, 0x02),
        (0x17, 0xff),
        (0x18, 0xff),
        (0x30, 0xff),
        (0x31, 0xff),
        (0x35, 0xbf),
        (0x38, 0x10),
        (0x3d, 0x32),
        (0x5b, 0x80),
        (0x5c, 0x78),
    ];
    for index in 0x0e..0x80u8 {
        let expected = qemu.iter().find(|(i, _)| *i == index).map_or(0, |(_, v)| *v);
        if index == 0x32 || index == 0x37 {
            continue;
        }
        assert_eq!(peek(&mut cmos, index), expected, "index {index:#x}");
    }
    assert_eq!(peek(&mut cmos, 0x32), peek(&mut cmos, 0x37));
    assert!(peek(&mut cmos, 0x32) >= 0x20, "BCD century");
}

#[test]
fn small_memory_layout() {
    let mut cmos = Cmos::new(&setup(CmosScope::NvramOnly, 128 * MIB, "c"));
    assert_eq!(
        peek(&mut cmos, 0x17) as u16 | (peek(&mut cmos, 0x18) as u16) << 8,
        0xffff,
        "capped"
    );
    let mut small = Cmos::new(&setup(CmosScope::NvramOnly, 32 * MIB, "c"));
    assert_eq!(
        peek(&mut small, 0x30) as u16 | (peek(&mut small, 0x31) as u16) << 8,
        31 * 1024
    );
    assert_eq!(
        peek(&mut small, 0x34) as u16 | (peek(&mut small, 0x35) as u16) << 8,
        16 * 16
    );
    assert_eq!(
        peek(&mut cmos, 0x34) as u16 | (peek(&mut cmos, 0x35) as u16) << 8,
        112 * 16
    );
    assert_eq!(peek(&mut cmos, 0x5b), 0);
    assert_eq!(peek(&mut cmos, 0x3d), 0x02);
    assert_eq!(peek(&mut cmos, 0x38), 0x00);
    assert_eq!(
        MemoryLayout::qemu_pc(0xe000_0000),
        MemoryLayout {
            below_4g: 0xc000_0000,
            above_4g: 0x2000_0000
        }
    );
    assert_eq!(MemoryLayout::qemu_pc(0xdfff_0000).above_4g, 0);
}

/// Default boot order and IDE disks as QEMU 7.2 reports them: 1 GiB at
/// 0/0, 100 MiB at 0/1, 20 GiB at 1/0 (raw images, no partition table).
#[test]
fn disk_geometry_and_default_boot_order_match_qemu() {
    let mut s = setup(CmosScope::Full, 128 * MIB, BootOrder::DEFAULT);
    s.hard_disks = [
        Some(HardDiskGeometry::guess_for_sectors((1 << 30) / 512)),
        Some(HardDiskGeometry::guess_for_sectors((100 << 20) / 512)),
        Some(HardDiskGeometry::guess_for_sectors((20u64 << 30) / 512)),
        None,
    ];
    let mut cmos = Cmos::new(&s);
    let qemu = [
        0x20, 0x08, 0x10, 0xff, 0xff, 0xc8, 0x20, 0x08, 0x3f, 0xcb, 0x00, 0x10, 0xff, 0xff, 0xc8, 0xcb, 0x00, 0x3f,
    ];
    for (i, expected) in qemu.iter().enumerate() {
        assert_eq!(peek(&mut cmos, 0x1b + i as u8), *expected, "index {:#x}", 0x1b + i);
    }
    assert_eq!(peek(&mut cmos, 0x12), 0xff);
    assert_eq!(peek(&mut cmos, 0x19), 0x2f);
    assert_eq!(peek(&mut cmos, 0x1a), 0x2f);
    assert_eq!(peek(&mut cmos, 0x39), 0x11);
    assert_eq!(peek(&mut cmos, 0x3d), 0x12);
    assert_eq!(peek(&mut cmos, 0x38), 0x30);
    assert_eq!(
        HardDiskGeometry::guess_for_sectors((20u64 << 30) / 512).cylinders,
        16383
    );
}

#[test]
fn boot_order_errors_name_the_option() {
    assert_eq!(BootOrder::parse("dc").unwrap().slots(), [3, 2, 0]);
    assert_eq!(BootOrder::parse("").unwrap().slots(), [0, 0, 0]);
    let err = BootOrder::parse("cx").unwrap_err();
    assert_eq!(
        err.to_string(),
        "-boot order=cx: invalid boot device 'x' for a PC (use a, b, c, d or n)"
    );
    assert!(matches!(
        BootOrder::parse("cdc"),
        Err(BootOrderError::Duplicate { device: 'c', .. })
    ));
    assert!(matches!(BootOrder::parse("cdan"), Err(BootOrderError::TooMany { .. })));
    let mut s = setup(CmosScope::Full, 128 * MIB, "n");
    s.floppy_boot_check = false;
    let mut cmos = Cmos::new(&s);
    assert_eq!(peek(&mut cmos, 0x3d), 0x04);
    assert_eq!(peek(&mut cmos, 0x38), 0x01);
}

#[test]
fn nvram_only_leaves_the_clock_to_xen() {
    let mut cmos = Cmos::new(&setup(CmosScope::NvramOnly, 128 * MIB, "c"));
    assert_eq!(peek(&mut cmos, 0x0a), 0xff);
    cmos.write(0x70, 0, &[0x0b]);
    cmos.write(0x70, 1, &[0x00]);
    assert_eq!(peek(&mut cmos, 0x0b), 0xff);
    // NMI-mask bit on the index, as Linux's CMOS accessors use it.
    cmos.write(0x70, 0, &[0x80 | 0x40]);
    cmos.write(0x70, 1, &[0x5a]);
    assert_eq!(peek(&mut cmos, 0x40), 0x5a);
    assert_eq!(cmos.byte(0x40), 0x5a);
    let mut b = [0u8; 2];
    cmos.read(0x70, 0, &mut b);
    assert_eq!(b, [0xff, 0xff], "index port reads float");
}

#[test]
fn full_scope_serves_a_plausible_static_clock() {
    let mut cmos = Cmos::new(&setup(CmosScope::Full, 128 * MIB, "c"));
    assert_eq!(peek(&mut cmos, 0x0a), 0x26);
    assert_eq!(peek(&mut cmos, 0x0b), 0x02);
    assert_eq!(peek(&mut cmos, 0x0d), 0x80);
    let month = peek(&mut cmos, 0x08);
    assert!((0x01..=0x12).contains(&month), "BCD month {month:#x}");
    let hours = peek(&mut cmos, 0x04);
    assert!(hours >> 4 <= 2 && hours & 0xf <= 9);
    cmos.write(0x70, 0, &[0x0d]);
    cmos.write(0x70, 1, &[0x00]);
    assert_eq!(peek(&mut cmos, 0x0d), 0x80, "register D is read-only");
    cmos.write(0x70, 0, &[0x01]);
    cmos.write(0x70, 1, &[0x33]);
    assert_eq!(peek(&mut cmos, 0x01), 0x33);
}

/// QEMU 7.2 over qtest (tests/differential/reset.rs).
#[test]
fn reset_keeps_nvram_and_index_clears_shutdown_status_and_rtc_enables() {
    let mut cmos = Cmos::new(&setup(CmosScope::Full, 128 << 20, "cad"));
    let poke = |cmos: &mut Cmos, index: u8, value: u8| {
        cmos.write(0x70, 0, &[index]);
        cmos.write(0x70, 1, &[value]);
    };
    poke(&mut cmos, 0x0f, 0x05);
    poke(&mut cmos, 0x0b, REG_B_24H | REG_B_SQWE | REG_B_PIE | REG_B_AIE);
    poke(&mut cmos, 0x40, 0x5a);
    poke(&mut cmos, 0x7f, 0xa5);
    let boot = peek(&mut cmos, 0x3d);
    cmos.bytes[REG_C] = REG_C_IRQF | REG_C_PF | 0x01;
    cmos.write(0x70, 0, &[0x40]);
    cmos.reset();
    let mut b = [0u8];
    cmos.read(0x70, 1, &mut b);
    assert_eq!(b[0], 0x5a, "the index survives the reset");
    assert_eq!(peek(&mut cmos, 0x0f), 0);
    assert_eq!(peek(&mut cmos, 0x0b), REG_B_24H);
    assert_eq!(cmos.byte(0x0c), 0x01, "only the flag bits clear");
    assert_eq!(peek(&mut cmos, 0x7f), 0xa5);
    assert_eq!(peek(&mut cmos, 0x3d), boot);
    poke(&mut cmos, 0x0f, SHUTDOWN_STATUS_SUSPEND);
    cmos.reset();
    assert_eq!(peek(&mut cmos, 0x0f), SHUTDOWN_STATUS_SUSPEND, "a self-suspended guest's mark stays");
}

#[test]
fn civil_date_known_days() {
    assert_eq!(civil_date(0), (1970, 1, 1, 5));
    assert_eq!(civil_date(19_723), (2024, 1, 1, 2));
    assert_eq!(civil_date(11_016), (2000, 2, 29, 3));
}

proptest! {
    #[test]
    fn random_port_accesses_never_panic(
        ops in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<u8>(), 0usize..5, 0u64..3), 1..100),
        full in any::<bool>()
    ) {
        let scope = if full { CmosScope::Full } else { CmosScope::NvramOnly };
        let mut cmos = Cmos::new(&setup(scope, 1 << 30, "cd"));
        for (data_port, write, value, len, offset) in ops {
            let port_offset = u64::from(data_port) + offset;
            if write {
                cmos.write(0x70, port_offset, &[value; 4][..len.min(4)]);
            } else {
                let mut buf = vec![0u8; len];
                cmos.read(0x70, port_offset, &mut buf);
            }
        }
        if !full {
            prop_assert_eq!(peek(&mut cmos, 0x05), 0xff);
        }
    }

    #[test]
    fn boot_order_parse_never_panics(order in "[a-z]{0,6}") {
        if let Ok(parsed) = BootOrder::parse(&order) {
            prop_assert!(parsed.slots().iter().all(|s| *s <= 4));
        }
    }
}
