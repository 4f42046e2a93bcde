//! The decoder against fake devices and memory: every field hostile.

use super::*;
use crate::machine::MemError;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    PioR(u16, u8),
    PioW(u16, u8, u32),
    MmioR(u64, u8),
    MmioW(u64, u8, u64),
    CfgR(u8, u8, u16, u8),
    CfgW(u8, u8, u16, u8, u32),
}

#[derive(Default)]
struct FakeMachine {
    log: Vec<Access>,
    next_read: u64,
    hold: bool,
    /// For each request_done call, how many accesses had been made.
    done_after: Vec<usize>,
}

impl FakeMachine {
    fn value(&mut self) -> u64 {
        self.next_read += 1;
        0x1122_3344_5566_7700 + self.next_read
    }
}

impl IoHandler for FakeMachine {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        self.log.push(Access::PioR(port, size));
        self.value() as u32 & size_mask32(size)
    }
    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        self.log.push(Access::PioW(port, size, value));
    }
    fn mmio_read(&mut self, addr: u64, size: u8) -> u64 {
        self.log.push(Access::MmioR(addr, size));
        self.value() & size_mask64(size)
    }
    fn mmio_write(&mut self, addr: u64, size: u8, value: u64) {
        self.log.push(Access::MmioW(addr, size, value));
    }
    fn pci_config_read(&mut self, bus: u8, devfn: u8, reg: u16, size: u8) -> u32 {
        self.log.push(Access::CfgR(bus, devfn, reg, size));
        0xabcd_1234 & size_mask32(size)
    }
    fn pci_config_write(&mut self, bus: u8, devfn: u8, reg: u16, size: u8, value: u32) {
        self.log.push(Access::CfgW(bus, devfn, reg, size, value));
    }
    fn hold_request(&mut self) -> bool {
        self.hold
    }
    fn request_done(&mut self) {
        self.done_after.push(self.log.len());
    }
}

/// Guest RAM of `pages` pages from gpa 0; pages listed in `holes` are
/// unmappable (like ballooned-out frames).
struct FakeMemory {
    ram: Mutex<Vec<u8>>,
    holes: Vec<u64>,
    invalidations: AtomicUsize,
}

impl FakeMemory {
    fn new(pages: usize, holes: &[u64]) -> Self {
        FakeMemory { ram: Mutex::new(vec![0; pages * 4096]), holes: holes.to_vec(), invalidations: AtomicUsize::new(0) }
    }
    fn check(&self, gpa: u64, len: usize) -> Result<std::ops::Range<usize>, MemError> {
        let ram_len = self.ram.lock().unwrap().len() as u64;
        let end = gpa.checked_add(len as u64).filter(|&e| e <= ram_len).ok_or(MemError::OutOfRange { gpa, len })?;
        if let Some(&gfn) = self.holes.iter().find(|&&g| g >= gpa >> 12 && g <= (end.max(1) - 1) >> 12) {
            return Err(MemError::Unmappable { gfn, errno: 22 });
        }
        Ok(gpa as usize..end as usize)
    }
    fn bytes(&self, gpa: usize, len: usize) -> Vec<u8> {
        self.ram.lock().unwrap()[gpa..gpa + len].to_vec()
    }
}

impl GuestMemory for FakeMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.check(gpa, buf.len())?;
        buf.copy_from_slice(&self.ram.lock().unwrap()[r]);
        Ok(())
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let r = self.check(gpa, data.len())?;
        self.ram.lock().unwrap()[r].copy_from_slice(data);
        Ok(())
    }
}

impl GuestMappings for FakeMemory {
    fn invalidate(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
    }
}

struct Req {
    type_: u8,
    dir: u8,
    addr: u64,
    data: u64,
    size: u32,
    count: u32,
    ptr: bool,
    df: bool,
}

fn req(type_: u8, dir: u8, addr: u64, size: u32) -> Req {
    Req { type_, dir, addr, data: 0, size, count: 1, ptr: false, df: false }
}

fn post(r: &Req) -> AtomicIoreq {
    let slot = AtomicIoreq::default();
    let mut plain = Ioreq { addr: r.addr, data: r.data, count: r.count, size: r.size, vp_eport: 77, _pad0: 0, flags: 0, type_: r.type_ };
    plain.set_dir(r.dir);
    plain.set_data_is_ptr(r.ptr);
    plain.set_df(r.df);
    plain.set_state(STATE_IOREQ_READY);
    slot.addr.store(plain.addr, Ordering::Relaxed);
    slot.data.store(plain.data, Ordering::Relaxed);
    slot.count.store(plain.count, Ordering::Relaxed);
    slot.size.store(plain.size, Ordering::Relaxed);
    slot.vp_eport.store(plain.vp_eport, Ordering::Relaxed);
    slot.type_.store(plain.type_, Ordering::Relaxed);
    slot.flags.store(plain.flags, Ordering::Release);
    slot
}

fn run(r: &Req, m: &mut FakeMachine, mem: &FakeMemory) -> (SlotOutcome, AtomicIoreq, IoreqDecoder) {
    let slot = post(r);
    let mut d = IoreqDecoder::new();
    let out = d.service_slot(&slot, m, mem);
    (out, slot, d)
}

fn state(slot: &AtomicIoreq) -> u8 {
    state_of_flags(slot.flags.load(Ordering::Acquire))
}

#[test]
fn pio_read_returns_the_device_value_and_keeps_the_other_flag_bits() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    let (out, slot, _) = run(&req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f7, 1), &mut m, &mem);
    assert_eq!(out, SlotOutcome::Completed);
    assert_eq!(m.log, vec![Access::PioR(0x1f7, 1)]);
    assert_eq!(slot.data.load(Ordering::Relaxed), 0x01);
    assert_eq!(state(&slot), STATE_IORESP_READY);
    assert_eq!(slot.flags.load(Ordering::Relaxed) & 0xf0, 0x20, "dir bit must survive");
    assert_eq!(slot.vp_eport.load(Ordering::Relaxed), 77, "vp_eport is Xen's and is never written");
}

#[test]
fn pio_write_masks_data_to_the_access_size() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    let mut r = req(IOREQ_TYPE_PIO, IOREQ_WRITE, 0x1f0, 2);
    r.data = 0xdead_beef_cafe_f00d;
    let (out, slot, _) = run(&r, &mut m, &mem);
    assert_eq!(out, SlotOutcome::Completed);
    assert_eq!(m.log, vec![Access::PioW(0x1f0, 2, 0xf00d)]);
    assert_eq!(slot.data.load(Ordering::Relaxed), 0xdead_beef_cafe_f00d, "a write leaves data alone");
}

#[test]
fn pio_bad_sizes_complete_with_all_ones_without_touching_devices() {
    for size in [0u32, 3, 8, 16, u32::MAX] {
        let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
        let (out, slot, d) = run(&req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f0, size), &mut m, &mem);
        assert_eq!(out, SlotOutcome::Completed, "size {size}");
        assert_eq!(slot.data.load(Ordering::Relaxed), u64::MAX);
        assert!(m.log.is_empty());
        assert_eq!(d.complaint_count(Complaint::PioSize), 1);
        let (_, _, _) = run(&req(IOREQ_TYPE_PIO, IOREQ_WRITE, 0x1f0, size), &mut m, &mem);
        assert!(m.log.is_empty(), "bad-size write reached a device");
    }
}

#[test]
fn rep_ins_writes_each_element_forward_and_backward() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(2, &[]));
    let mut r = req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f0, 2);
    (r.ptr, r.count, r.data) = (true, 3, 0x100);
    run(&r, &mut m, &mem);
    assert_eq!(m.log, vec![Access::PioR(0x1f0, 2); 3]);
    assert_eq!(mem.bytes(0x100, 6), vec![0x01, 0x77, 0x02, 0x77, 0x03, 0x77]);

    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(2, &[]));
    (r.df, r.data) = (true, 0x104);
    run(&r, &mut m, &mem);
    assert_eq!(mem.bytes(0x100, 6), vec![0x03, 0x77, 0x02, 0x77, 0x01, 0x77], "df=1 walks down");
}

#[test]
fn rep_outs_reads_elements_from_guest_memory() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    mem.write(0x200, &[1, 0, 0, 0, 2, 0, 0, 0]).unwrap();
    let mut r = req(IOREQ_TYPE_PIO, IOREQ_WRITE, 0x1f0, 4);
    (r.ptr, r.count, r.data) = (true, 2, 0x200);
    run(&r, &mut m, &mem);
    assert_eq!(m.log, vec![Access::PioW(0x1f0, 4, 1), Access::PioW(0x1f0, 4, 2)]);
}

#[test]
fn a_rep_of_command_bytes_is_one_request_for_the_handler() {
    // 32 command bytes by `rep outsb`: the handler hears of the end of
    // the request once, after the last byte, so no device completion
    // can land between two of them.
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    mem.write(0x300, &[0xc8; 32]).unwrap();
    let mut r = req(IOREQ_TYPE_PIO, IOREQ_WRITE, 0x1f7, 1);
    (r.ptr, r.count, r.data) = (true, 32, 0x300);
    run(&r, &mut m, &mem);
    assert_eq!(m.log.len(), 32);
    assert_eq!(m.done_after, vec![32]);
    let mut held = FakeMachine { hold: true, ..Default::default() };
    run(&r, &mut held, &mem);
    assert!(held.log.is_empty() && held.done_after.is_empty(), "a held request reaches no device");
}

#[test]
fn rep_with_a_bad_pointer_stops_at_the_first_unmappable_element() {
    // Page 1 is a hole: elements 0..=1 are on page 0, element 2 on page 1.
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(2, &[1]));
    let mut r = req(IOREQ_TYPE_PIO, IOREQ_WRITE, 0x1f0, 2);
    (r.ptr, r.count, r.data) = (true, 4, 0xffc);
    let (out, slot, d) = run(&r, &mut m, &mem);
    assert_eq!(out, SlotOutcome::Completed);
    assert_eq!(state(&slot), STATE_IORESP_READY);
    assert_eq!(m.log.len(), 2, "only the readable elements reach the port");
    assert_eq!(d.complaint_count(Complaint::BadPointer), 1);

    // rep ins past the end of RAM: the port is read, the store is dropped.
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    let mut r = req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f0, 1);
    (r.ptr, r.count, r.data) = (true, 10, 0x1_0000_0000);
    let (out, _, _) = run(&r, &mut m, &mem);
    assert_eq!(out, SlotOutcome::Completed);
    assert_eq!(m.log, vec![Access::PioR(0x1f0, 1)]);
}

#[test]
fn pointer_arithmetic_that_wraps_is_stopped() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    let mut r = req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f0, 4);
    (r.ptr, r.count, r.data, r.df) = (true, 3, 2, true);
    let (out, _, d) = run(&r, &mut m, &mem);
    assert_eq!(out, SlotOutcome::Completed);
    assert_eq!(m.log.len(), 1, "element 1 would be at 2-4 < 0");
    assert_eq!(d.complaint_count(Complaint::PointerOverflow), 1);
    let mut r = req(IOREQ_TYPE_COPY, IOREQ_WRITE, u64::MAX - 3, 4);
    r.count = 5;
    run(&r, &mut m, &mem);
    assert_eq!(m.log.iter().filter(|a| matches!(a, Access::MmioW(..))).count(), 1);
}

#[test]
fn huge_counts_are_capped_at_xens_limit() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(8, &[]));
    let mut r = req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f0, 1);
    (r.ptr, r.count, r.data) = (true, u32::MAX, 0);
    let (out, _, d) = run(&r, &mut m, &mem);
    assert_eq!(out, SlotOutcome::Completed);
    assert_eq!(m.log.len(), MAX_REPS as usize);
    assert_eq!(d.complaint_count(Complaint::RepsCapped), 1);
    let mut r = req(IOREQ_TYPE_COPY, IOREQ_WRITE, 0xfebf_0000, 8);
    (r.count, r.data) = (1 << 31, 5);
    let mut m = FakeMachine::default();
    run(&r, &mut m, &mem);
    assert_eq!(m.log.len(), MAX_REPS as usize);
}

#[test]
fn mmio_sizes_one_to_eight_and_rep_stos_repeats_the_value() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    let (_, slot, _) = run(&req(IOREQ_TYPE_COPY, IOREQ_READ, 0xfebf_0010, 8), &mut m, &mem);
    assert_eq!(slot.data.load(Ordering::Relaxed), 0x1122_3344_5566_7701);
    let mut r = req(IOREQ_TYPE_COPY, IOREQ_WRITE, 0xfebf_0000, 4);
    (r.count, r.data) = (3, 0xffff_ffff_0000_0042);
    let mut m = FakeMachine::default();
    run(&r, &mut m, &mem);
    assert_eq!(m.log, vec![
        Access::MmioW(0xfebf_0000, 4, 0x42),
        Access::MmioW(0xfebf_0004, 4, 0x42),
        Access::MmioW(0xfebf_0008, 4, 0x42),
    ]);
    for size in [0u32, 9, 16, 1 << 20] {
        let mut m = FakeMachine::default();
        let (out, slot, d) = run(&req(IOREQ_TYPE_COPY, IOREQ_READ, 0xfebf_0000, size), &mut m, &mem);
        assert_eq!((out, slot.data.load(Ordering::Relaxed)), (SlotOutcome::Completed, u64::MAX));
        assert!(m.log.is_empty());
        assert_eq!(d.complaint_count(Complaint::MmioSize), 1);
    }
}

#[test]
fn mmio_rep_movs_between_device_and_memory() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    let mut r = req(IOREQ_TYPE_COPY, IOREQ_READ, 0xfebf_0000, 2);
    (r.ptr, r.count, r.data) = (true, 2, 0x40);
    run(&r, &mut m, &mem);
    assert_eq!(m.log, vec![Access::MmioR(0xfebf_0000, 2), Access::MmioR(0xfebf_0002, 2)]);
    assert_eq!(mem.bytes(0x40, 4), vec![0x01, 0x77, 0x02, 0x77]);
    let mut m = FakeMachine::default();
    r.dir = IOREQ_WRITE;
    run(&r, &mut m, &mem);
    assert_eq!(m.log, vec![Access::MmioW(0xfebf_0000, 2, 0x7701), Access::MmioW(0xfebf_0002, 2, 0x7702)]);
}

#[test]
fn pci_config_address_is_decoded_from_the_sbdf_bits() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    // bus 0, dev 1, fn 1 (PIIX3 IDE), reg 0x0e, 1 byte.
    let addr = (1u64 << 35) | (1u64 << 32) | 0x0e; // segment 0, bus 0
    let (_, slot, _) = run(&req(IOREQ_TYPE_PCI_CONFIG, IOREQ_READ, addr, 1), &mut m, &mem);
    assert_eq!(m.log, vec![Access::CfgR(0, 0x09, 0x0e, 1)]);
    assert_eq!(slot.data.load(Ordering::Relaxed), 0x34);
    let addr = (0x12u64 << 40) | (0x1fu64 << 35) | (7u64 << 32) | 0x104;
    let mut r = req(IOREQ_TYPE_PCI_CONFIG, IOREQ_WRITE, addr, 2);
    r.data = 0x1_2345;
    let mut m = FakeMachine::default();
    run(&r, &mut m, &mem);
    assert_eq!(m.log, vec![Access::CfgW(0x12, 0xff, 0x104, 2, 0x2345)]);
}

#[test]
fn pci_config_hostile_values_are_refused() {
    let mem = FakeMemory::new(1, &[]);
    let cases = [
        (1u64 << 48 | 0x10, 4u32, "segment 1"),
        (0xfff, 2, "crosses 4 KiB"),
        (0xffff_fff0, 4, "register beyond config space"),
        (0xffff_ffff, 4, "register + size overflows 32 bits"),
        (0x10, 3, "size 3"),
        (0x10, 8, "size 8"),
    ];
    for (addr, size, why) in cases {
        let mut m = FakeMachine::default();
        let (out, slot, _) = run(&req(IOREQ_TYPE_PCI_CONFIG, IOREQ_READ, addr, size), &mut m, &mem);
        assert_eq!((out, slot.data.load(Ordering::Relaxed)), (SlotOutcome::Completed, u64::MAX), "{why}");
        assert!(m.log.is_empty(), "{why}");
    }
    let mut r = req(IOREQ_TYPE_PCI_CONFIG, IOREQ_WRITE, 0x10, 4);
    r.ptr = true;
    let mut m = FakeMachine::default();
    let (out, _, _) = run(&r, &mut m, &mem);
    assert_eq!(out, SlotOutcome::Completed);
    assert!(m.log.is_empty(), "a data pointer is never a PCI config value");
}

#[test]
fn invalidate_drops_mappings_and_completes_even_while_held() {
    let (mut m, mem) = (FakeMachine { hold: true, ..Default::default() }, FakeMemory::new(1, &[]));
    let (out, slot, _) = run(&req(IOREQ_TYPE_INVALIDATE, IOREQ_WRITE, 0, 0), &mut m, &mem);
    assert_eq!(out, SlotOutcome::Completed);
    assert_eq!(state(&slot), STATE_IORESP_READY);
    assert_eq!(mem.invalidations.load(Ordering::SeqCst), 1);
    let (out, _, _) = run(&req(IOREQ_TYPE_TIMEOFFSET, IOREQ_WRITE, 0, 8), &mut m, &mem);
    assert_eq!(out, SlotOutcome::Completed);
}

#[test]
fn held_requests_stay_ready_and_untouched_until_released() {
    let (mut m, mem) = (FakeMachine { hold: true, ..Default::default() }, FakeMemory::new(1, &[]));
    let slot = post(&req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f7, 1));
    let mut d = IoreqDecoder::new();
    assert_eq!(d.service_slot(&slot, &mut m, &mem), SlotOutcome::Held);
    assert_eq!(state(&slot), STATE_IOREQ_READY);
    assert!(m.log.is_empty());
    m.hold = false;
    assert_eq!(d.service_slot(&slot, &mut m, &mem), SlotOutcome::Completed);
    assert_eq!(m.log, vec![Access::PioR(0x1f7, 1)]);
    assert_eq!(d.service_slot(&slot, &mut m, &mem), SlotOutcome::Idle, "a completed slot is not serviced twice");
}

#[test]
fn non_ready_states_are_ignored() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    for st in [STATE_IOREQ_NONE, STATE_IOREQ_INPROCESS, STATE_IORESP_READY, 0xf] {
        let slot = post(&req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f7, 1));
        slot.flags.store(with_state(slot.flags.load(Ordering::Relaxed), st), Ordering::Relaxed);
        assert_eq!(IoreqDecoder::new().service_slot(&slot, &mut m, &mem), SlotOutcome::Idle);
    }
    assert!(m.log.is_empty());
}

#[test]
fn unknown_types_complete_with_all_ones_and_log_once() {
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    let mut d = IoreqDecoder::new();
    for t in [3u8, 4, 9, 0xff, 3] {
        let slot = post(&req(t, IOREQ_READ, 0x1f7, 4));
        assert_eq!(d.service_slot(&slot, &mut m, &mem), SlotOutcome::Completed);
        assert_eq!(slot.data.load(Ordering::Relaxed), u64::MAX);
    }
    assert!(m.log.is_empty());
    assert_eq!(d.unknown_types_seen.iter().filter(|&&s| s).count(), 4);
}

#[test]
fn complaints_are_rate_limited_per_interval() {
    use crate::logging::ratelimit::{Clock, RateLimiter, GUEST_BURST, DEFAULT_INTERVAL};
    let clock = Clock::manual();
    let mut d = IoreqDecoder::new();
    d.limiter = RateLimiter::for_guest_lines_with(clock.clone());
    let (mut m, mem) = (FakeMachine::default(), FakeMemory::new(1, &[]));
    let bad = req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f0, 3);
    let ((), lines) = crate::logging::testlog::capture(|| {
        for _ in 0..10_000 {
            d.service_slot(&post(&bad), &mut m, &mem);
        }
        clock.advance(DEFAULT_INTERVAL);
        d.service_slot(&post(&bad), &mut m, &mem);
    });
    assert_eq!(d.complaint_count(Complaint::PioSize), 10_001, "every complaint is counted");
    let refused = lines.iter().filter(|(_, l)| l.contains("refused")).count();
    assert_eq!(refused, GUEST_BURST as usize + 1);
    assert!(lines.iter().any(|(_, l)| l == &format!("{} similar messages suppressed (ioreq-pio-size)", 10_000 - GUEST_BURST)));
    assert_eq!(lines.len(), GUEST_BURST as usize + 2);
}


/// The other side rewrites the slot while the device is working on it.
struct Tamperer {
    slot: std::sync::Arc<AtomicIoreq>,
    inner: FakeMachine,
}

impl IoHandler for Tamperer {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        self.slot.size.store(0x1000, Ordering::Relaxed);
        self.slot.count.store(u32::MAX, Ordering::Relaxed);
        self.slot.addr.store(0xdead, Ordering::Relaxed);
        // data_is_ptr + write direction, state still INPROCESS.
        self.slot.flags.store(with_state(0x10, STATE_IOREQ_INPROCESS), Ordering::Relaxed);
        self.inner.pio_read(port, size)
    }
    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        self.inner.pio_write(port, size, value)
    }
    fn mmio_read(&mut self, addr: u64, size: u8) -> u64 {
        self.inner.mmio_read(addr, size)
    }
    fn mmio_write(&mut self, addr: u64, size: u8, value: u64) {
        self.inner.mmio_write(addr, size, value)
    }
    fn pci_config_read(&mut self, bus: u8, devfn: u8, reg: u16, size: u8) -> u32 {
        self.inner.pci_config_read(bus, devfn, reg, size)
    }
    fn pci_config_write(&mut self, bus: u8, devfn: u8, reg: u16, size: u8, value: u32) {
        self.inner.pci_config_write(bus, devfn, reg, size, value)
    }
    fn hold_request(&mut self) -> bool {
        false
    }
}

#[test]
fn a_request_is_read_once_and_later_slot_changes_are_ignored() {
    let slot = std::sync::Arc::new(post(&req(IOREQ_TYPE_PIO, IOREQ_READ, 0x1f7, 1)));
    let mem = FakeMemory::new(1, &[]);
    let mut h = Tamperer { slot: slot.clone(), inner: FakeMachine::default() };
    assert_eq!(IoreqDecoder::new().service_slot(&slot, &mut h, &mem), SlotOutcome::Completed);
    assert_eq!(h.inner.log, vec![Access::PioR(0x1f7, 1)], "one access, as first requested");
    assert_eq!(slot.data.load(Ordering::Relaxed), 0x01, "the read result goes inline, per the original flags");
    assert_eq!(slot.flags.load(Ordering::Relaxed), with_state(0x20, STATE_IORESP_READY), "response flags come from the copy");
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any slot contents Xen (or a guest steering it) could produce:
        /// never a panic, always completed, bounded work, state
        /// IORESP_READY with the other flag bits untouched.
        #[test]
        fn any_request_is_completed_with_bounded_work(
            type_ in prop_oneof![0u8..=2, Just(7u8), Just(8u8), any::<u8>()],
            flags in any::<u8>(),
            addr in prop_oneof![any::<u64>(), 0u64..0x10000, 0xfebf_0000u64..0xfebf_1000],
            data in prop_oneof![any::<u64>(), 0u64..0x3000, (u64::MAX - 64)..=u64::MAX],
            count in prop_oneof![any::<u32>(), 0u32..8],
            size in prop_oneof![any::<u32>(), 0u32..=16],
        ) {
            let slot = AtomicIoreq::default();
            slot.addr.store(addr, Ordering::Relaxed);
            slot.data.store(data, Ordering::Relaxed);
            slot.count.store(count, Ordering::Relaxed);
            slot.size.store(size, Ordering::Relaxed);
            slot.type_.store(type_, Ordering::Relaxed);
            slot.flags.store(with_state(flags, STATE_IOREQ_READY), Ordering::Release);
            let mut m = FakeMachine::default();
            let mem = FakeMemory::new(2, &[1]);
            let out = IoreqDecoder::new().service_slot(&slot, &mut m, &mem);
            prop_assert_eq!(out, SlotOutcome::Completed);
            prop_assert_eq!(slot.flags.load(Ordering::Relaxed), with_state(flags, STATE_IORESP_READY));
            prop_assert!(m.log.len() <= MAX_REPS as usize);
            for access in &m.log {
                match *access {
                    Access::PioR(_, s) | Access::PioW(_, s, _) | Access::CfgR(_, _, _, s) | Access::CfgW(_, _, _, s, _) => {
                        prop_assert!(matches!(s, 1 | 2 | 4))
                    }
                    Access::MmioR(_, s) | Access::MmioW(_, s, _) => prop_assert!((1..=8).contains(&s)),
                }
            }
        }

        /// Any ring contents and pointers: no panic, bounded consumption.
        #[test]
        fn any_buffered_ring_is_drained_safely(
            read in any::<u32>(),
            ahead in prop_oneof![0u32..=511, any::<u32>()],
            words in proptest::collection::vec(any::<u64>(), IOREQ_BUFFER_SLOT_NUM),
            budget in 0usize..600,
        ) {
            let page = AtomicBufferedIopage::new_zeroed();
            for (slot, w) in page.slots.iter().zip(&words) {
                slot.store(*w, Ordering::Relaxed);
            }
            page.read_pointer.store(read, Ordering::Relaxed);
            page.write_pointer.store(read.wrapping_add(ahead), Ordering::Relaxed);
            let mut m = FakeMachine::default();
            let consumed = IoreqDecoder::new().drain_buffered(&page, &mut m, budget);
            prop_assert!(consumed <= budget + 1);
            prop_assert!(m.log.len() <= consumed);
            prop_assert!(m.log.iter().all(|a| matches!(a, Access::PioW(..) | Access::MmioW(..))));
        }
    }
}

mod buffered;
