//! The engine's tests: ordering, DMA paths, failures, shutdown.

use super::*;
use crate::block::mem::{InjectedFault, MemBackend};
use crate::block::BlockOp;

/// Flat guest RAM for the tests.
struct Ram(Mutex<Vec<u8>>);

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let ram = self.0.lock().unwrap();
        let end = (gpa as usize).checked_add(buf.len()).filter(|e| *e <= ram.len());
        let Some(end) = end else { return Err(MemError::OutOfRange { gpa, len: buf.len() }) };
        buf.copy_from_slice(&ram[gpa as usize..end]);
        Ok(())
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let mut ram = self.0.lock().unwrap();
        let end = (gpa as usize).checked_add(data.len()).filter(|e| *e <= ram.len());
        let Some(end) = end else { return Err(MemError::OutOfRange { gpa, len: data.len() }) };
        ram[gpa as usize..end].copy_from_slice(data);
        Ok(())
    }
}

fn collecting() -> (CompletionFn, Arc<Mutex<Vec<Completion>>>) {
    let done = Arc::new(Mutex::new(Vec::new()));
    let sink = done.clone();
    (Arc::new(move |c| sink.lock().unwrap().push(c)), done)
}

fn setup(image: Vec<u8>) -> (BlockQueue, SharedBackend, Arc<Ram>, Arc<Mutex<Vec<Completion>>>) {
    let backend = share(Box::new(MemBackend::with_data(image, false)));
    let ram = Arc::new(Ram(Mutex::new(vec![0u8; 1 << 20])));
    let (sink, done) = collecting();
    let q = BlockQueue::spawn("t", ram.clone(), sink).unwrap();
    (q, backend, ram, done)
}

#[test]
fn dma_round_trip_through_guest_segments_in_order() {
    let (mut q, backend, ram, done) = setup(vec![0u8; 64 << 10]);
    ram.write(0x1000, &[0xab; 512]).unwrap();
    ram.write(0x8000, &[0xcd; 512]).unwrap();
    let segs = vec![GuestSegment { gpa: 0x1000, len: 512 }, GuestSegment { gpa: 0x8000, len: 512 }];
    let w = q.submit(&backend, IoOp::WriteFromGuest { offset: 4096, segments: segs });
    let r = q.submit(&backend, IoOp::ReadToGuest { offset: 4096 + 512, segments: vec![GuestSegment { gpa: 0x20000, len: 512 }] });
    assert!(q.idle_waiter().wait(Duration::from_secs(5)));
    let done = done.lock().unwrap();
    assert_eq!(done.iter().map(|c| c.tag).collect::<Vec<_>>(), vec![w, r]);
    assert!(done.iter().all(|c| c.result.is_ok()));
    let mut img = vec![0u8; 1024];
    lock(&backend).read_at(4096, &mut img).unwrap();
    assert!(img[..512].iter().all(|b| *b == 0xab) && img[512..].iter().all(|b| *b == 0xcd));
    let mut back = [0u8; 512];
    ram.read(0x20000, &mut back).unwrap();
    assert!(back.iter().all(|b| *b == 0xcd));
}

#[test]
fn a_bad_segment_writes_nothing_to_the_image() {
    let (mut q, backend, _ram, done) = setup(vec![0x11u8; 8192]);
    let segs = vec![GuestSegment { gpa: 0, len: 512 }, GuestSegment { gpa: u64::MAX - 10, len: 512 }];
    q.submit(&backend, IoOp::WriteFromGuest { offset: 0, segments: segs });
    assert!(q.idle_waiter().wait(Duration::from_secs(5)));
    assert!(matches!(done.lock().unwrap()[0].result, Err(IoFailure::Memory(_))));
    let mut img = vec![0u8; 1024];
    lock(&backend).read_at(0, &mut img).unwrap();
    assert!(img.iter().all(|b| *b == 0x11));
}

/// A RAM image that says which DMA path the engine took.
struct Recording(MemBackend, Arc<Mutex<Vec<&'static str>>>);
impl BlockBackend for Recording {
    fn size(&self) -> u64 { self.0.size() }
    fn read_only(&self) -> bool { false }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<(), BlockError> { self.1.lock().unwrap().push("read_at"); self.0.read_at(o, b) }
    fn write_at(&mut self, o: u64, d: &[u8]) -> Result<(), BlockError> { self.1.lock().unwrap().push("write_at"); self.0.write_at(o, d) }
    fn read_to_guest(&mut self, o: u64, dst: &GuestBuffers, _s: &mut Vec<u8>) -> Result<(), BlockError> {
        self.1.lock().unwrap().push("read_to_guest");
        assert_eq!(dst.copy_from(&self.0.data()[o as usize..o as usize + dst.len()]), dst.len());
        Ok(())
    }
    fn write_from_guest(&mut self, o: u64, src: &GuestBuffers, s: &mut Vec<u8>) -> Result<(), BlockError> {
        self.1.lock().unwrap().push("write_from_guest");
        super::super::guest_io::bounce_write(&mut self.0, o, src, s)
    }
    fn flush(&mut self) -> Result<(), BlockError> { Ok(()) }
    fn discard(&mut self, _o: u64, _l: u64) -> Result<(), BlockError> { Ok(()) }
    fn set_guest_write_cache(&mut self, _e: bool) {}
    fn guest_write_cache(&self) -> bool { true }
}

/// With mappable guest memory the segments go to the backend mapped
/// (odd sizes, page-crossing, out of order); a bad segment still
/// writes nothing; memory without a host view takes the copy.
#[test]
fn mappable_memory_goes_to_the_backend_as_mapped_segments() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let image: Vec<u8> = (0..65536u32).map(|i| (i % 241) as u8).collect();
    let backend = share(Box::new(Recording(MemBackend::with_data(image.clone(), false), calls.clone())));
    let anon = Arc::new(crate::qtest::AnonRam::new(1 << 20).unwrap());
    let (sink, done) = collecting();
    let mut q = BlockQueue::spawn("t", anon.clone(), sink).unwrap();
    let segs = vec![GuestSegment { gpa: 0x2ffe, len: 0x1006 }, GuestSegment { gpa: 0x100, len: 0x1fa }];
    q.submit(&backend, IoOp::ReadToGuest { offset: 1000, segments: segs.clone() });
    q.submit(&backend, IoOp::WriteFromGuest { offset: 30000, segments: segs.clone() });
    let bad = vec![GuestSegment { gpa: 0x100, len: 512 }, GuestSegment { gpa: (1 << 20) - 2, len: 4 }];
    q.submit(&backend, IoOp::WriteFromGuest { offset: 0, segments: bad });
    assert!(q.idle_waiter().wait(Duration::from_secs(5)));
    assert_eq!(*calls.lock().unwrap(), ["read_to_guest", "write_from_guest"], "the bad write reached no backend");
    let mut seen = vec![0u8; 0x1200];
    anon.read(0x2ffe, &mut seen[..0x1006]).unwrap();
    anon.read(0x100, &mut seen[0x1006..]).unwrap();
    assert_eq!(seen, image[1000..1000 + 0x1200]);
    let mut written = vec![0u8; 0x1200];
    lock(&backend).read_at(30000, &mut written).unwrap();
    assert_eq!(written, seen);
    let results: Vec<_> = done.lock().unwrap().iter().map(|c| c.result.as_ref().map(|_| ()).map_err(|e| e.clone())).collect();
    assert!(matches!(results[..], [Ok(()), Ok(()), Err(IoFailure::Memory(_))]), "{results:?}");
    let mut head = vec![0u8; 512];
    lock(&backend).read_at(0, &mut head).unwrap();
    assert_eq!(head, image[..512], "the bad write wrote nothing");

    // Guest memory that cannot be mapped: the engine copies.
    calls.lock().unwrap().clear();
    let (sink, _) = collecting();
    let mut q = BlockQueue::spawn("t", Arc::new(Ram(Mutex::new(vec![0u8; 1 << 16]))), sink).unwrap();
    q.submit(&backend, IoOp::ReadToGuest { offset: 0, segments: segs.clone() });
    q.submit(&backend, IoOp::WriteFromGuest { offset: 0, segments: segs });
    assert!(q.idle_waiter().wait(Duration::from_secs(5)));
    assert_eq!(*calls.lock().unwrap(), ["read_at", "write_at"]);
}

#[test]
fn oversized_requests_are_refused_without_io() {
    let (mut q, backend, _ram, done) = setup(vec![0u8; 4096]);
    let segs = vec![GuestSegment { gpa: 0, len: MAX_DMA_BYTES }, GuestSegment { gpa: 0, len: 1 }];
    q.submit(&backend, IoOp::ReadToGuest { offset: 0, segments: segs });
    q.submit(&backend, IoOp::Read { offset: 0, len: MAX_DMA_BYTES + 1 });
    assert!(q.idle_waiter().wait(Duration::from_secs(5)));
    let done = done.lock().unwrap();
    assert!(done.iter().all(|c| matches!(c.result, Err(IoFailure::TooLarge(_)))));
}

#[test]
fn host_errors_come_back_with_their_errno_and_discard_progress() {
    let mut image = MemBackend::new(1 << 20);
    image.inject(InjectedFault { op: Some(BlockOp::Write), errno: libc::ENOSPC, ..Default::default() });
    image.inject(InjectedFault { op: Some(BlockOp::Discard), at_byte: Some(4096), errno: libc::EIO, ..Default::default() });
    let backend: SharedBackend = share(Box::new(image));
    let ram: Arc<dyn GuestMemory> = Arc::new(Ram(Mutex::new(vec![0u8; 4096])));
    let (sink, done) = collecting();
    let mut q = BlockQueue::spawn("t", ram, sink).unwrap();
    q.submit(&backend, IoOp::Write { offset: 0, data: vec![1; 512] });
    q.submit(&backend, IoOp::Discard { ranges: vec![(0, 512), (4096, 512)] });
    assert!(q.idle_waiter().wait(Duration::from_secs(5)));
    let done = done.lock().unwrap();
    match &done[0].result {
        Err(IoFailure::Host { err, .. }) => assert_eq!(err.errno(), libc::ENOSPC),
        other => panic!("write: {other:?}"),
    }
    match &done[1].result {
        Err(IoFailure::Host { done, .. }) => assert_eq!(*done, 1),
        other => panic!("discard: {other:?}"),
    }
}

#[test]
fn dropping_the_queue_runs_what_was_accepted() {
    let (mut q, backend, _ram, done) = setup(vec![0u8; 1 << 20]);
    for i in 0..64u64 {
        q.submit(&backend, IoOp::Write { offset: i * 512, data: vec![i as u8 + 1; 512] });
    }
    drop(q);
    assert_eq!(done.lock().unwrap().len(), 64);
    let mut img = vec![0u8; 512];
    lock(&backend).read_at(63 * 512, &mut img).unwrap();
    assert!(img.iter().all(|b| *b == 64));
}

#[test]
fn the_submitter_never_waits_for_the_host() {
    // A backend that blocks until released: submit must return while
    // the worker is stuck in it.
    struct Gate(Arc<(Mutex<bool>, Condvar)>);
    impl BlockBackend for Gate {
        fn size(&self) -> u64 { 1 << 20 }
        fn read_only(&self) -> bool { false }
        fn read_at(&mut self, _o: u64, _b: &mut [u8]) -> Result<(), BlockError> { Ok(()) }
        fn write_at(&mut self, _o: u64, _d: &[u8]) -> Result<(), BlockError> { Ok(()) }
        fn flush(&mut self) -> Result<(), BlockError> {
            let (m, c) = &*self.0;
            let mut open = m.lock().unwrap();
            while !*open {
                open = c.wait(open).unwrap();
            }
            Ok(())
        }
        fn discard(&mut self, _o: u64, _l: u64) -> Result<(), BlockError> { Ok(()) }
        fn set_guest_write_cache(&mut self, _e: bool) {}
        fn guest_write_cache(&self) -> bool { true }
    }
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let ram: Arc<dyn GuestMemory> = Arc::new(Ram(Mutex::new(vec![0u8; 4096])));
    let (sink, done) = collecting();
    let backend = share(Box::new(Gate(gate.clone())));
    let mut q = BlockQueue::spawn("t", ram, sink).unwrap();
    q.submit(&backend, IoOp::Flush);
    q.submit(&backend, IoOp::Barrier);
    let waiter = q.idle_waiter();
    assert!(!waiter.wait(Duration::from_millis(50)), "the flush cannot have finished");
    assert!(done.lock().unwrap().is_empty());
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    assert!(waiter.wait(Duration::from_secs(5)));
    assert_eq!(done.lock().unwrap().len(), 2);
}

#[test]
fn an_inline_queue_runs_each_request_and_its_callback_inside_submit_on_the_callers_thread() {
    let backend = share(Box::new(MemBackend::with_data(vec![0u8; 64 << 10], false)));
    let ram = Arc::new(Ram(Mutex::new(vec![0u8; 1 << 16])));
    let caller = std::thread::current().id();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let on_complete: CompletionFn = Arc::new(move |c: Completion| {
        sink.lock().unwrap().push((c.tag, c.result.is_ok(), std::thread::current().id()));
    });
    let mut q = BlockQueue::inline(ram.clone(), on_complete);
    ram.write(0x100, &[0x77; 512]).unwrap();
    let w = q.submit(&backend, IoOp::WriteFromGuest { offset: 512, segments: vec![GuestSegment { gpa: 0x100, len: 512 }] });
    // Done before submit returned: the image holds it, the callback ran.
    assert_eq!(*seen.lock().unwrap(), vec![(w, true, caller)]);
    let mut img = [0u8; 512];
    lock(&backend).read_at(512, &mut img).unwrap();
    assert!(img.iter().all(|b| *b == 0x77));
    let r = q.submit(&backend, IoOp::Read { offset: 1 << 20, len: 512 });
    assert_eq!(seen.lock().unwrap().last(), Some(&(r, false, caller)), "a read past the end fails, inline too");
    assert!(q.idle_waiter().is_idle());
    assert_eq!(q.submitted(), 2);
}
