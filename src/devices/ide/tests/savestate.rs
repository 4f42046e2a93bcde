//! Save in the middle of things, load into a fresh controller on the same
//! image, go on, and compare with what an uninterrupted controller shows.

use super::*;
use crate::devices::state::{DeviceState, Snapshot};

/// A second controller on the same image, loaded with `rig`'s state
/// (host I/O drained first, as `stop` does).
fn moved(rig: &Rig, drives: [Option<DriveConfig>; 4]) -> Rig {
    rig.ide().drain_for_save();
    let state = rig.ide().snapshot();
    let fresh = Rig::new(drives);
    fresh.ide().restore(&state).expect("state loads");
    assert_eq!(fresh.ide().snapshot(), state, "what was loaded saves the same");
    fresh
}

#[test]
fn a_pio_read_goes_on_after_the_move_mid_block() {
    let img = SharedImage::new(MIB);
    let data: Vec<u8> = (0..2048u32).map(|i| (i * 7 + 3) as u8).collect();
    img.0.lock().unwrap().write_at(8 * 512, &data).unwrap();
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.command_lba28(0x20, 8, 4);
    let first = rig.read_block(700);
    let mut after = moved(&rig, [Some(disk(&img, ErrorPolicy::Report, ErrorPolicy::Report)), None, None, None]);
    let mut rest = after.read_block(2048 - 700);
    let mut whole = first;
    whole.append(&mut rest);
    assert_eq!(whole, data);
    assert_eq!(after.inb(0x1f7), 0x50);
}

#[test]
fn a_pio_write_half_given_lands_once_after_the_move() {
    let img = SharedImage::new(MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.command_lba28(0x30, 20, 1);
    for _ in 0..100 {
        rig.outw(0x1f0, 0xa55a);
    }
    let mut after = moved(&rig, [Some(disk(&img, ErrorPolicy::Report, ErrorPolicy::Report)), None, None, None]);
    for _ in 100..256 {
        after.outw(0x1f0, 0xa55a);
    }
    after.settle();
    assert_eq!(after.inb(0x1f7), 0x50);
    assert_eq!(img.bytes(20 * 512, 512), [0x5a, 0xa5].repeat(256));
}

#[test]
fn a_dma_in_flight_completes_into_the_saved_state() {
    let img = SharedImage::new(MIB);
    img.0.lock().unwrap().write_at(0, &[0x3c; 4096]).unwrap();
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.set_prdt(&[(BUF as u32, 4096)]);
    // Started without waiting: the drain must finish it before the save.
    rig.outb(0x1f6, 0xe0);
    rig.outb(0x1f2, 8);
    for p in [0x1f3, 0x1f4, 0x1f5] {
        rig.outb(p, 0);
    }
    rig.outb(0x1f7, 0xc8);
    rig.outb_nowait(BM, 0x09);
    let mut after = moved(&rig, [Some(disk(&img, ErrorPolicy::Report, ErrorPolicy::Report)), None, None, None]);
    assert_eq!(rig.mem_read(BUF, 4096), vec![0x3c; 4096], "the read reached guest memory before the save");
    assert!(after.irq_high(0), "the loaded IRQ level is driven");
    assert_eq!((after.inb(0x1f7), after.bm_status()), (0x50, 0x04), "done, INTR, not active");
}

#[test]
fn a_held_write_is_saved_held_and_runs_after_the_load() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Write, None, libc::ENOSPC, false);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Enospc, ErrorPolicy::Report);
    rig.command_lba28(0x30, 5, 1);
    rig.write_block(&[0xee; 512]);
    assert_eq!(rig.vm.state(), RunState::IoError);
    assert!(rig.ide().has_held_request());
    rig.ide().drain_for_save();
    let DeviceState::Ide(state) = rig.ide().snapshot() else { panic!("not an IDE state") };
    assert!(state.channels[0].held.is_some(), "saved as held");
    // The new host has room.
    img.clear_faults();
    let after = Rig::disk_only(&img, ErrorPolicy::Enospc, ErrorPolicy::Report);
    after.ide().restore(&DeviceState::Ide(state)).unwrap();
    assert!(after.ide().has_held_request());
    assert_eq!(img.bytes(5 * 512, 512), vec![0; 512], "not written before the re-run");
    after.restart_held();
    assert_eq!(img.bytes(5 * 512, 512), vec![0xee; 512]);
    let mut after = after;
    assert_eq!(after.inb(0x1f7), 0x50);
    assert!(!after.ide().has_held_request());
}

#[test]
fn a_hostile_state_is_refused_whole() {
    let img = SharedImage::new(MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.command_lba28(0x20, 0, 1);
    let DeviceState::Ide(good) = rig.ide().snapshot() else { panic!() };
    let before = rig.ide().snapshot();
    let mut past_end = good.clone();
    past_end.channels[0].units[0].pio_pos = 513;
    let mut too_long = good.clone();
    too_long.channels[0].units[0].pio_data = vec![0; 0x10001];
    let mut no_drive = good.clone();
    no_drive.channels[1].held = Some(super::super::policy::Held::for_tests(0));
    let mut channels = good.clone();
    channels.channels.pop();
    let mut geometry = good.clone();
    if let Some(d) = geometry.channels[0].units[0].drive.as_mut() {
        d.geometry.heads = 0;
    }
    let mut extra_drive = good.clone();
    extra_drive.channels[1].units[0].drive = good.channels[0].units[0].drive.clone();
    for (what, bad) in [
        ("position past the window", past_end),
        ("window past the buffer", too_long),
        ("held on an empty unit", no_drive),
        ("one channel", channels),
        ("zero heads", geometry),
        ("a drive this machine lacks", extra_drive),
    ] {
        assert!(rig.ide().restore(&DeviceState::Ide(bad)).is_err(), "{what} was accepted");
        assert_eq!(rig.ide().snapshot(), before, "{what}: the controller changed");
    }
    assert!(rig.ide().restore(&DeviceState::Cmos(crate::devices::cmos::CmosState { bytes: vec![0; 128], index: 0 })).is_err());
}

#[test]
fn a_disk_the_guest_unplugged_stays_unplugged() {
    let img = SharedImage::new(MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    assert_eq!(rig.ide().unplug_disks(false), vec!["ide0-hd0".to_string()]);
    let mut after = moved(&rig, [Some(disk(&img, ErrorPolicy::Report, ErrorPolicy::Report)), None, None, None]);
    assert_eq!(after.ide().drives_info().len(), rig.ide().drives_info().len());
    assert_eq!(after.inb(0x1f7), rig.inb(0x1f7));
}
