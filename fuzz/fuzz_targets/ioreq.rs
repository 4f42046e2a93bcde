//! The ioreq decoder on whatever Xen (or a guest steering it) can leave in
//! the shared pages: a run of synchronous slots with any field values,
//! the VM held or not, then the buffered ring with any contents and
//! pointers. Invariants: every READY slot is answered (or held, touching
//! nothing), the answer keeps the flag bits but the state, one slot makes
//! at most MAX_REPS device accesses of legal widths and bounded guest
//! memory traffic, `request_done` follows exactly the requests that went
//! to the devices, and the ring is drained within its budget.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::Ordering;
use xen_ioemu::xen::ioreq::{AtomicBufferedIopage, AtomicIoreq, IoHandler, IoreqDecoder, SlotOutcome, MAX_REPS};
use xen_ioemu_fuzz::RecordingMemory;
use xen_sys::*;

#[derive(Debug, Arbitrary)]
struct Slot {
    addr: u64,
    data: u64,
    count: u32,
    size: u32,
    flags: u8,
    type_: u8,
    /// Keep the fields small so more requests decode to real work.
    small: bool,
    hold: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    slots: Vec<Slot>,
    ring: Vec<u64>,
    read_pointer: u32,
    ahead: u16,
    budget: u16,
}

#[derive(Default)]
struct Counting {
    hold: bool,
    accesses: usize,
    holds_asked: usize,
    done: usize,
    reads: u64,
    /// Only buffered writes are legal on the ring.
    reads_seen: bool,
}

impl Counting {
    fn value(&mut self) -> u64 {
        self.reads += 1;
        0x0123_4567_89ab_cdefu64.rotate_left(self.reads as u32)
    }
    /// Port and config accesses are 1, 2 or 4 bytes; MMIO any of 1..=8
    /// (the decoder passes Xen's MMIO sizes through).
    fn sized(&mut self, size: u8, max: u8) {
        self.accesses += 1;
        let legal = if max == 8 { (1..=8).contains(&size) } else { matches!(size, 1 | 2 | 4) };
        assert!(legal, "a device access of width {size}");
    }
}

impl IoHandler for Counting {
    fn pio_read(&mut self, _port: u16, size: u8) -> u32 {
        self.sized(size, 4);
        self.reads_seen = true;
        self.value() as u32
    }
    fn pio_write(&mut self, _port: u16, size: u8, _value: u32) {
        self.sized(size, 4);
    }
    fn mmio_read(&mut self, _addr: u64, size: u8) -> u64 {
        self.sized(size, 8);
        self.reads_seen = true;
        self.value()
    }
    fn mmio_write(&mut self, _addr: u64, size: u8, _value: u64) {
        self.sized(size, 8);
    }
    fn pci_config_read(&mut self, _bus: u8, _devfn: u8, _reg: u16, size: u8) -> u32 {
        self.sized(size, 4);
        self.reads_seen = true;
        self.value() as u32
    }
    fn pci_config_write(&mut self, _bus: u8, _devfn: u8, _reg: u16, size: u8, _value: u32) {
        self.sized(size, 4);
    }
    fn hold_request(&mut self) -> bool {
        self.holds_asked += 1;
        self.hold
    }
    fn request_done(&mut self) {
        self.done += 1;
    }
}

fuzz_target!(|input: Input| {
    if input.slots.len() > 64 {
        return;
    }
    let mem = RecordingMemory::new(64 << 10);
    let mut decoder = IoreqDecoder::new();
    for s in &input.slots {
        let slot = AtomicIoreq::default();
        let (addr, data, count, size) =
            if s.small { (s.addr % 0x2_0000, s.data % 0x2_0000, s.count % 8192, s.size % 9) } else { (s.addr, s.data, s.count, s.size) };
        slot.addr.store(addr, Ordering::Relaxed);
        slot.data.store(data, Ordering::Relaxed);
        slot.count.store(count, Ordering::Relaxed);
        slot.size.store(size, Ordering::Relaxed);
        slot.type_.store(s.type_, Ordering::Relaxed);
        slot.flags.store(s.flags, Ordering::Release);
        let mut h = Counting { hold: s.hold, ..Counting::default() };
        let mem_before = mem.bytes.load(Ordering::Relaxed);
        let out = decoder.service_slot(&slot, &mut h, &mem);
        let after = slot.flags.load(Ordering::Relaxed);
        let moved = mem.bytes.load(Ordering::Relaxed) - mem_before;
        match out {
            SlotOutcome::Idle => {
                assert_ne!(state_of_flags(s.flags), STATE_IOREQ_READY, "a READY slot left idle");
                assert_eq!((h.accesses, after, moved), (0, s.flags, 0), "an idle slot touched something");
            }
            SlotOutcome::Held => {
                assert!(s.hold, "held while the VM runs");
                assert_eq!((h.accesses, h.done, after, moved), (0, 0, s.flags, 0), "a held request touched something");
            }
            SlotOutcome::Completed => {
                assert_eq!(state_of_flags(s.flags), STATE_IOREQ_READY);
                assert_eq!(after, with_state(s.flags, STATE_IORESP_READY), "response flags");
                assert!(h.accesses <= MAX_REPS as usize, "{} device accesses for one slot", h.accesses);
                assert!(moved <= 2 * 8 * MAX_REPS as u64, "{moved} guest-memory bytes for one slot");
                assert!(h.done <= 1 && h.done == h.holds_asked, "request_done {} times after {} holds asked", h.done, h.holds_asked);
            }
        }
    }
    let page = AtomicBufferedIopage::new_zeroed();
    for (slot, w) in page.slots.iter().zip(&input.ring) {
        slot.store(*w, Ordering::Relaxed);
    }
    page.read_pointer.store(input.read_pointer, Ordering::Relaxed);
    page.write_pointer.store(input.read_pointer.wrapping_add(input.ahead as u32), Ordering::Relaxed);
    let budget = input.budget as usize % 2048;
    let mut h = Counting::default();
    let consumed = decoder.drain_buffered(&page, &mut h, budget);
    assert!(consumed <= budget + 1, "{consumed} slots consumed with a budget of {budget}");
    assert!(h.accesses <= consumed, "{} accesses for {consumed} slots", h.accesses);
    assert!(!h.reads_seen, "a read from the buffered ring");
    assert_eq!(h.done, 0, "request_done for a buffered write");
});
