//! A loaded device state is hostile input: a saved state of a machine in
//! the middle of a command, with bytes of its body overwritten (the frame
//! re-sealed so the checksum lets it through to the devices' checks), or
//! raw bytes as the whole file. Whatever loads must leave a machine that
//! serves port accesses without panicking, and saves again to a state
//! that decodes.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use xen_ioemu::block::ErrorPolicy;
use xen_ioemu::devices::ide::MediaKind;
use xen_ioemu::machine::savestate::{MachineState, HEADER_LEN};
use xen_ioemu_fuzz::machine::{drive, Machine};
use xen_ioemu_fuzz::{FaultyImage, HostCounters};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Accesses before the save (a command half done).
    before: Vec<(u16, u8, Option<u32>)>,
    /// (offset into the body, byte) overwrites.
    pokes: Vec<(u16, u8)>,
    /// Used whole instead of the mutated state when set.
    raw: Option<Vec<u8>>,
    after: Vec<(u16, u8, Option<u32>)>,
}

fn machine() -> Machine {
    let host = Arc::new(HostCounters::default());
    let disk = FaultyImage::new(vec![0x5a; 1 << 16], false, host.clone());
    let cd = FaultyImage::new(vec![0xc3; 1 << 16], true, host.clone());
    Machine::new(
        [
            Some(drive("ide0-hd0", MediaKind::Disk, Some(&disk), ErrorPolicy::Enospc, ErrorPolicy::Report)),
            None,
            Some(drive("ide1-cd0", MediaKind::Cdrom, Some(&cd), ErrorPolicy::Report, ErrorPolicy::Report)),
            None,
        ],
        host,
    )
}

fuzz_target!(|input: Input| {
    let mut old = machine();
    for &(port, size, value) in input.before.iter().take(64) {
        old.access(port, size, value);
    }
    old.settle();
    old.ide.lock().unwrap().drain_for_save();
    let blob = match input.raw {
        Some(raw) => raw,
        None => {
            let saved = old.pc.save_state().encode();
            let mut body = saved[HEADER_LEN..].to_vec();
            for &(at, byte) in input.pokes.iter().take(16) {
                if !body.is_empty() {
                    let i = at as usize % body.len();
                    body[i] = byte;
                }
            }
            MachineState::frame_body(&body)
        }
    };
    let Ok(state) = MachineState::decode(&blob) else { return };
    let mut new = machine();
    if new.pc.load_state(&state).is_err() {
        return;
    }
    for &(port, size, value) in input.after.iter().take(64) {
        new.access(port, size, value);
    }
    new.settle();
    new.ide.lock().unwrap().drain_for_save();
    let again = new.pc.save_state().encode();
    assert!(MachineState::decode(&again).is_ok(), "a loaded machine saves a state that decodes");
});
