use super::*;
use crate::devices::cmos::CmosState;

fn sample() -> MachineState {
    MachineState {
        run_state: SavedRunState::Paused,
        config_address: 0x8000_0800,
        devices: vec![
            ("port-0070".into(), DeviceState::Cmos(CmosState { bytes: (0..128).collect(), index: 0x0f })),
            ("port-0092".into(), DeviceState::Latch(2)),
        ],
    }
}

#[test]
fn a_state_round_trips() {
    let blob = sample().encode();
    assert_eq!(&blob[..8], b"XIOEMUDS");
    assert_eq!(MachineState::decode(&blob), Ok(sample()));
}

#[test]
fn qemu_foreign_truncated_corrupt_and_future_blobs_are_refused_with_one_line() {
    let blob = sample().encode();
    let mut qemu = b"QEVM\0\0\0\x03".to_vec();
    qemu.extend([0u8; 64]);
    let mut future = blob.clone();
    future[8..12].copy_from_slice(&2u32.to_le_bytes());
    let mut flipped = blob.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let mut huge = blob.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, SaveStateError)> = vec![
        ("qemu", qemu, SaveStateError::Qemu),
        ("foreign", b"hello world, this is not a state".to_vec(), SaveStateError::NotOurs),
        ("empty", Vec::new(), SaveStateError::Truncated(0)),
        ("header only", blob[..20].to_vec(), SaveStateError::Truncated(20)),
        ("short body", blob[..blob.len() - 3].to_vec(), SaveStateError::Truncated(blob.len() - 3)),
        ("future", future, SaveStateError::FutureVersion(2)),
        ("corrupt", flipped, SaveStateError::Checksum),
        ("huge", huge, SaveStateError::TooLarge(u32::MAX as usize)),
    ];
    for (what, bytes, expected) in cases {
        let err = MachineState::decode(&bytes).expect_err(what);
        assert_eq!(err, expected, "{what}");
        assert!(!err.to_string().contains('\n'), "{what}: {err}");
    }
}

#[test]
fn a_body_that_checks_out_but_does_not_decode_is_refused() {
    // A correct header and checksum over bytes that are no MachineState.
    let body = [0xffu8; 9];
    let mut blob = MAGIC.to_vec();
    blob.extend(VERSION.to_le_bytes());
    blob.extend((body.len() as u32).to_le_bytes());
    blob.extend(fnv1a64(&body).to_le_bytes());
    blob.extend(body);
    assert!(matches!(MachineState::decode(&blob), Err(SaveStateError::Decode(_))));
}
