//! The medium and tray state: lock and eject, medium changes, host tray
//! and errors, reset; and random packets against every state.

use super::*;
use proptest::prelude::*;

#[test]
fn lock_and_eject_with_a_medium() {
    let mut state = AtapiState::new();
    let eject = [0x1b, 0, 0, 0, 2];
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), DONE);
    assert!(state.locked());
    assert_eq!(run(&mut state, &eject, CD), error(2, 0x53));
    assert_eq!(
        error(2, 0x53),
        PacketOutcome::Atapi(PacketResult::Error(state.sense()))
    );
    assert!(!state.tray_open());
    assert_eq!(run(&mut state, &[0x1b, 0, 0, 0, 0x12], CD), DONE);
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 0], CD), DONE);
    assert_eq!(
        run(&mut state, &eject, CD),
        PacketOutcome::Atapi(PacketResult::TrayMoved { open: true })
    );
    assert!(state.tray_open());
    assert_eq!(run(&mut state, &eject, CD), DONE);
    assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
    assert_eq!(run(&mut state, &[0x25], CD), error(2, 0x3a));
    assert_eq!(
        data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], CD),
        hex("0004041000010000")
    );
    // Locking an open tray is allowed, and ejecting it again is no move.
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), DONE);
    assert_eq!(run(&mut state, &eject, CD), DONE);
    assert_eq!(
        run(&mut state, &[0x1b, 0, 0, 0, 3], CD),
        PacketOutcome::Atapi(PacketResult::TrayMoved { open: false })
    );
    // A guest-side reload is no medium change.
    assert_eq!(run(&mut state, &[0x00], CD), DONE);
    assert_eq!(
        data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], CD),
        hex("0004041000020000")
    );
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 0], CD), DONE);
    assert_eq!(run(&mut state, &[0x1b, 0, 0, 0, 0], CD), DONE);
    assert_eq!(run(&mut state, &[0x1b, 0, 0, 0, 1], CD), DONE);
}

#[test]
fn lock_and_eject_without_a_medium() {
    let mut state = AtapiState::new();
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], None), DONE);
    assert_eq!(run(&mut state, &[0x1b, 0, 0, 0, 2], None), error(5, 0x53));
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 0], None), DONE);
    assert_eq!(
        run(&mut state, &[0x1b, 0, 0, 0, 2], None),
        PacketOutcome::Atapi(PacketResult::TrayMoved { open: true })
    );
    assert_eq!(
        data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], None),
        hex("0004041000010000")
    );
    assert_eq!(
        run(&mut state, &[0x1b, 0, 0, 0, 3], None),
        PacketOutcome::Atapi(PacketResult::TrayMoved { open: false })
    );
    assert_eq!(
        data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], None),
        hex("0004041000000000")
    );
}

#[test]
fn medium_change_reports_not_ready_then_unit_attention() {
    // The probe's "ua" script: blockdev-change-medium, then commands
    // without REQUEST SENSE in between.
    let new_medium = Some(2048);
    let mut state = AtapiState::new();
    state.medium_changed();
    let inquiry =
        hex("058000211f00000051454d552020202051454d55204456442d524f4d20202020322e352b");
    assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 36], new_medium), inquiry);
    assert_eq!(
        data(&mut state, &[0x46, 0, 0, 0, 0, 0, 0, 0, 100], new_medium).len(),
        20
    );
    assert_eq!(run(&mut state, &[0x00], new_medium), error(2, 0x3a));
    assert_eq!(run(&mut state, &[0x00], new_medium), error(6, 0x28));
    assert_eq!(
        run(&mut state, &[0x00], new_medium),
        PacketOutcome::UnitAttentionPending
    );
    assert_eq!(
        run(&mut state, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1], new_medium),
        PacketOutcome::UnitAttentionPending
    );
    assert_eq!(
        run(&mut state, &[0x55], new_medium),
        PacketOutcome::UnitAttentionPending
    );
    // The contract's execute reports the pending attention as its sense.
    assert_eq!(
        state.execute(&cdb(&[0x00]), new_medium),
        PacketResult::Error(Sense::new(6, 0x28))
    );
    assert_eq!(data(&mut state, &[0x12, 0, 0, 0, 36], new_medium), inquiry);
    assert_eq!(
        data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], new_medium),
        hex("0004041002020000")
    );
    assert_eq!(
        data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], new_medium),
        hex("0004041000020000")
    );
    assert_eq!(
        data(&mut state, &[0x03, 0, 0, 0, 18], new_medium),
        hex("f00006000000000a00000000280000000000")
    );
    assert_eq!(
        data(&mut state, &[0x03, 0, 0, 0, 18], new_medium),
        hex("f00000000000000a00000000280000000000")
    );
    assert_eq!(run(&mut state, &[0x00], new_medium), DONE);
    assert_eq!(
        data(&mut state, &[0x25], new_medium),
        hex("000007ff00000800")
    );
}

#[test]
fn request_sense_right_after_a_change_does_not_consume_it() {
    let mut state = AtapiState::new();
    state.medium_changed();
    assert_eq!(
        data(&mut state, &[0x03, 0, 0, 0, 18], CD),
        hex("f00000000000000a00000000000000000000")
    );
    assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
    assert_eq!(run(&mut state, &[0x00], CD), error(6, 0x28));
}

#[test]
fn host_tray_open_and_close() {
    // The probe's "change" script: blockdev-open-tray, blockdev-close-tray.
    let mut state = AtapiState::new();
    let gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100];
    state.set_tray_open(true);
    state.medium_changed();
    assert_eq!(data(&mut state, &gesn, CD), hex("0004041000010000"));
    assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
    state.set_tray_open(false);
    state.medium_changed();
    assert_eq!(data(&mut state, &gesn, CD), hex("0004041002020000"));
    assert_eq!(data(&mut state, &gesn, CD), hex("0004041000020000"));
    assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
    assert_eq!(run(&mut state, &[0x00], CD), error(6, 0x28));
    assert_eq!(
        sense_bytes(&mut state),
        "f00006000000000a00000000280000000000"
    );
    assert_eq!(run(&mut state, &[0x00], CD), DONE);
}

#[test]
fn host_eject_request_and_forced_eject() {
    let mut state = AtapiState::new();
    let gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100];
    state.medium_changed();
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), error(2, 0x3a));
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), error(6, 0x28));
    assert_eq!(
        sense_bytes(&mut state),
        "f00006000000000a00000000280000000000"
    );
    assert_eq!(run(&mut state, &[0x1e, 0, 0, 0, 1], CD), DONE);
    state.eject_requested(false);
    assert!(state.locked());
    // A pending new-media event is reported first.
    assert_eq!(data(&mut state, &gesn, CD), hex("0004041002020000"));
    assert_eq!(data(&mut state, &gesn, CD), hex("0004041001020000"));
    state.eject_requested(true);
    assert!(!state.locked());
    state.set_tray_open(true);
    state.medium_changed();
    assert_eq!(data(&mut state, &gesn, CD), hex("0004041000010000"));
    assert_eq!(run(&mut state, &[0x00], CD), error(2, 0x3a));
}

#[test]
fn host_errors_map_as_qemu() {
    let mut state = AtapiState::new();
    assert_eq!(state.host_error(libc::EIO), Sense::new(5, 0x21));
    assert_eq!(state.sense(), Sense::new(5, 0x21));
    assert_eq!(state.host_error(libc::ENOSPC), Sense::new(5, 0x21));
    assert_eq!(state.host_error(libc::ENOMEDIUM), Sense::new(2, 0x3a));
    assert_eq!(
        sense_bytes(&mut state),
        "f00002000000000a000000003a0000000000"
    );
}

#[test]
fn error_register_values_match_qemu() {
    // Observed error registers: 0x20 NOT READY, 0x50 ILLEGAL REQUEST,
    // 0x60 UNIT ATTENTION, all with status 0x41.
    assert_eq!(Sense::new(2, 0x3a).ata_error_register(), 0x20);
    assert_eq!(Sense::new(5, 0x21).ata_error_register(), 0x50);
    assert_eq!(Sense::new(6, 0x28).ata_error_register(), 0x60);
    assert_eq!(CHECK_CONDITION_STATUS, 0x41);
    assert_eq!(UNIT_ATTENTION_PENDING_STATUS, 0x01);
    assert_eq!(UNIT_ATTENTION_PENDING_ERROR, 0x60);
}

#[test]
fn reset_forgets_sense_lock_tray_and_pending_change() {
    let mut state = AtapiState::new();
    state.medium_changed();
    run(&mut state, &[0x1e, 0, 0, 0, 1], CD);
    run(&mut state, &[0x55], CD);
    state.set_tray_open(true);
    state.reset();
    assert_eq!(state.sense(), Sense::default());
    assert!(!state.locked());
    assert!(!state.tray_open());
    assert_eq!(run(&mut state, &[0x00], CD), DONE);
    // Unreported events survive, as in QEMU.
    assert_eq!(
        data(&mut state, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100], CD),
        hex("0004041002020000")
    );
}

/// Largest reply any command builds: a DVD structure of 2048 + 4 bytes.
const LARGEST_REPLY: usize = 2052;

fn allocation_length(packet: &[u8; 12]) -> usize {
    match packet[0] {
        0x03 | 0x12 => usize::from(packet[4]),
        0x25 => 8,
        0x46 => usize::from(be16(&packet[7..9])).min(512),
        0xad | 0xbd => usize::from(be16(&packet[8..10])),
        _ => usize::from(be16(&packet[7..9])),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]
    #[test]
    fn hostile_packets_never_panic_or_overrun(
        packets in proptest::collection::vec(any::<[u8; 12]>(), 1..8),
        medium in proptest::option::of(prop_oneof![Just(0u64), 1u64..4096, Just(u64::MAX), any::<u64>()]),
        tray_open in any::<bool>(),
        changed in any::<bool>(),
        limit_usable in any::<bool>(),
    ) {
        let mut state = AtapiState::new();
        state.set_tray_open(tray_open);
        if changed {
            state.medium_changed();
        }
        for packet in packets {
            match state.execute_packet(&packet, medium, limit_usable) {
                PacketOutcome::Atapi(PacketResult::DataIn(data)) => {
                    prop_assert!(data.len() <= LARGEST_REPLY);
                    prop_assert!(data.len() <= allocation_length(&packet));
                }
                PacketOutcome::Atapi(PacketResult::Read { lba, count })
                | PacketOutcome::ReadRaw { lba, count } => {
                    let blocks = if state.tray_open() { 0 } else { medium.unwrap_or(0) };
                    prop_assert!(count > 0);
                    prop_assert!(u64::from(lba) + u64::from(count) <= blocks);
                    prop_assert!(limit_usable);
                }
                PacketOutcome::Atapi(PacketResult::Error(sense)) => {
                    prop_assert_eq!(sense, state.sense());
                    prop_assert!(sense.key != 0);
                }
                PacketOutcome::AbortByteCountLimit => prop_assert!(!limit_usable),
                PacketOutcome::UnitAttentionPending => {
                    prop_assert_eq!(state.sense().key, sense_key::UNIT_ATTENTION)
                }
                PacketOutcome::Atapi(PacketResult::Done)
                | PacketOutcome::Atapi(PacketResult::TrayMoved { .. }) => {}
            }
        }
    }
}
