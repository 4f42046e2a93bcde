//! The buffered ring: draining, wrapping, hostile slots, bounded work.

use super::*;

fn push(page: &AtomicBufferedIopage, b: BufIoreq) {
    let w = page.write_pointer.load(Ordering::Relaxed);
    page.slots[(w % IOREQ_BUFFER_SLOT_NUM as u32) as usize].store(u64::from(b.word0) | (u64::from(b.data) << 32), Ordering::Relaxed);
    page.write_pointer.store(w.wrapping_add(1), Ordering::Release);
}

#[test]
fn buffered_ring_drains_pio_mmio_and_eight_byte_pairs() {
    let page = AtomicBufferedIopage::new_zeroed();
    push(&page, BufIoreq::new(IOREQ_TYPE_PIO, IOREQ_WRITE, 0, 0x3c4, 0x0102_0304));
    push(&page, BufIoreq::new(IOREQ_TYPE_COPY, IOREQ_WRITE, 3, 0xa0000, 0x1111_2222));
    push(&page, BufIoreq::new(IOREQ_TYPE_COPY, IOREQ_WRITE, 3, 0xa0000, 0x3333_4444));
    push(&page, BufIoreq::new(IOREQ_TYPE_TIMEOFFSET, IOREQ_WRITE, 2, 0, 3600));
    let mut m = FakeMachine::default();
    let mut d = IoreqDecoder::new();
    assert_eq!(d.drain_buffered(&page, &mut m, BUFFERED_BUDGET), 4);
    assert_eq!(m.log, vec![Access::PioW(0x3c4, 1, 0x0102_0304), Access::MmioW(0xa0000, 8, 0x3333_4444_1111_2222)]);
    assert_eq!(page.read_pointer.load(Ordering::Relaxed), 4);
    assert_eq!(d.drain_buffered(&page, &mut m, BUFFERED_BUDGET), 0);
}

#[test]
fn buffered_ring_wraps_and_survives_pointer_rebasing() {
    let page = AtomicBufferedIopage::new_zeroed();
    let n = IOREQ_BUFFER_SLOT_NUM as u32;
    // Xen rebases both pointers by multiples of the slot count.
    page.read_pointer.store(5 * n - 2, Ordering::Relaxed);
    page.write_pointer.store(5 * n - 2, Ordering::Relaxed);
    for port in 0..4u32 {
        push(&page, BufIoreq::new(IOREQ_TYPE_PIO, IOREQ_WRITE, 1, 0x100 + port, port));
    }
    let mut m = FakeMachine::default();
    assert_eq!(IoreqDecoder::new().drain_buffered(&page, &mut m, BUFFERED_BUDGET), 4);
    assert_eq!(m.log, (0..4u32).map(|p| Access::PioW(0x100 + p as u16, 2, p)).collect::<Vec<_>>());
}

#[test]
fn buffered_ring_hostile_contents_are_bounded() {
    let mut m = FakeMachine::default();
    let mut d = IoreqDecoder::new();
    // Pointers further apart than the ring: discarded, not looped over.
    let page = AtomicBufferedIopage::new_zeroed();
    page.write_pointer.store(100_000, Ordering::Relaxed);
    assert_eq!(d.drain_buffered(&page, &mut m, BUFFERED_BUDGET), 0);
    assert_eq!(page.read_pointer.load(Ordering::Relaxed), 100_000);
    assert!(m.log.is_empty());
    // An 8-byte PIO, a read and an unknown type are ignored.
    let page = AtomicBufferedIopage::new_zeroed();
    push(&page, BufIoreq::new(IOREQ_TYPE_PIO, IOREQ_WRITE, 3, 0x1f0, 1));
    push(&page, BufIoreq::new(IOREQ_TYPE_PIO, IOREQ_WRITE, 3, 0x1f0, 2));
    push(&page, BufIoreq::new(IOREQ_TYPE_PIO, IOREQ_READ, 0, 0x1f0, 1));
    push(&page, BufIoreq::new(0x42, IOREQ_WRITE, 0, 0x1f0, 1));
    assert_eq!(d.drain_buffered(&page, &mut m, BUFFERED_BUDGET), 4);
    assert!(m.log.is_empty());
    // The first half of a pair without its second half waits.
    let page = AtomicBufferedIopage::new_zeroed();
    push(&page, BufIoreq::new(IOREQ_TYPE_COPY, IOREQ_WRITE, 3, 0xa0000, 1));
    assert_eq!(d.drain_buffered(&page, &mut m, BUFFERED_BUDGET), 0);
    assert_eq!(page.read_pointer.load(Ordering::Relaxed), 0);
}

#[test]
fn buffered_ring_work_per_wakeup_is_bounded() {
    let page = AtomicBufferedIopage::new_zeroed();
    for _ in 0..100 {
        push(&page, BufIoreq::new(IOREQ_TYPE_PIO, IOREQ_WRITE, 0, 0x80, 0));
    }
    let mut m = FakeMachine::default();
    let mut d = IoreqDecoder::new();
    assert_eq!(d.drain_buffered(&page, &mut m, 30), 30);
    assert_eq!(m.log.len(), 30);
    assert_eq!(d.drain_buffered(&page, &mut m, BUFFERED_BUDGET), 70, "the rest waits for the next wake-up");
}
