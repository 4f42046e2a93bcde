//! The qdisk backend on whatever a hostile frontend can leave in the
//! shared ring: any slot contents, in either ABI, with `req_prod` moved by
//! any amount between rounds, over a RAM image and a grant table that
//! knows only some references. Invariants: no panic, each `process` takes
//! at most two rings' worth of requests, every response answers a request
//! that was taken (rsp_prod never passes req_cons), and a broken ring
//! takes nothing more.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xen_ioemu::block::engine::share;
use xen_ioemu::block::mem::MemBackend;
use xen_ioemu::block::ErrorPolicy;
use xen_ioemu::pvblock::request::{DiskLimits, MAX_INDIRECT_SEGMENTS};
use xen_ioemu::pvblock::*;
use xen_sys::blkif::*;

struct Ring(Mutex<Vec<u8>>);

impl SharedRing for Ring {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn load_u32(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.0.lock().unwrap()[o..o + 4].try_into().unwrap())
    }
    fn store_u32(&self, o: usize, v: u32) {
        self.0.lock().unwrap()[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn read(&self, o: usize, dst: &mut [u8]) {
        dst.copy_from_slice(&self.0.lock().unwrap()[o..o + dst.len()]);
    }
    fn write(&self, o: usize, src: &[u8]) {
        self.0.lock().unwrap()[o..o + src.len()].copy_from_slice(src);
    }
}

/// Grant refs below 8 exist; others fail like a bad grant. Page 7 reads
/// as indirect descriptors (grefs 0-6, whole pages), so that an indirect
/// request naming it reaches the data path; other pages read as their
/// gref's byte, which as descriptors name grants that do not exist.
struct Grants;

const DESCRIPTOR_PAGE: u32 = 7;

impl GrantCopier for Grants {
    fn copy_from_grants(&self, segments: &[Segment], dst: &mut [u8]) -> Result<(), GrantError> {
        let mut at = 0;
        for s in segments {
            if s.gref >= 8 || usize::from(s.offset) + usize::from(s.len) > 4096 {
                return Err(GrantError { gref: s.gref, status: -4 });
            }
            let part = &mut dst[at..at + usize::from(s.len)];
            if s.gref == DESCRIPTOR_PAGE {
                for (i, d) in part.chunks_mut(SEGMENT_SIZE).enumerate() {
                    d.fill(0);
                    d[SEGMENT_GREF] = (i % 7) as u8;
                    if let Some(last) = d.get_mut(SEGMENT_LAST_SECT) {
                        *last = 7;
                    }
                }
            } else {
                part.fill(s.gref as u8);
            }
            at += usize::from(s.len);
        }
        assert_eq!(at, dst.len());
        Ok(())
    }
    fn copy_to_grants(&self, segments: &[Segment], src: &[u8]) -> Result<(), GrantError> {
        let total: usize = segments.iter().map(|s| usize::from(s.len)).sum();
        assert_eq!(total, src.len());
        match segments.iter().find(|s| s.gref >= 8) {
            Some(s) => Err(GrantError { gref: s.gref, status: -4 }),
            None => Ok(()),
        }
    }
}

struct Quiet;
impl Notifier for Quiet {
    fn notify(&self) {}
}

#[derive(Debug, Arbitrary)]
struct Input {
    x86_32: bool,
    read_only: bool,
    slots: Vec<u8>,
    /// req_prod advances per round.
    rounds: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let layout = if input.x86_32 { BLKIF_X86_32 } else { BLKIF_X86_64 };
    let mut page = vec![0u8; 4096];
    let n = input.slots.len().min(4096 - SRING_ENTRIES);
    page[SRING_ENTRIES..SRING_ENTRIES + n].copy_from_slice(&input.slots[..n]);
    let mem = Arc::new(Ring(Mutex::new(page)));
    let ring = BackRing::attach(mem.clone(), layout).unwrap();
    let entries = ring.entries();
    let limits = DiskLimits { sectors: 128, read_only: input.read_only, discard: true, max_indirect_segments: MAX_INDIRECT_SEGMENTS };
    let opts = QdiskOptions {
        drive: "xvdf".into(),
        werror: ErrorPolicy::Report,
        rerror: ErrorPolicy::Report,
        retry_interval: Duration::ZERO,
        audit: Some(Arc::new(|_| {})),
    };
    let disk = Qdisk::new(ring, share(Box::new(MemBackend::new(128 * 512))), limits, Arc::new(Grants), Arc::new(Quiet), opts).unwrap();
    let mut req_prod = 0u32;
    let mut taken_total = 0u64;
    for step in input.rounds.iter().take(16) {
        // Mostly small steps; 0xff jumps far (past the ring).
        req_prod = req_prod.wrapping_add(if *step == 0xff { 0x8000_0000 } else { u32::from(*step % 40) });
        mem.store_u32(SRING_REQ_PROD, req_prod);
        let broken_before = disk.ring_error().is_some();
        let taken = disk.process();
        assert!(taken <= 2 * entries as usize);
        if broken_before {
            assert_eq!(taken, 0);
        }
        taken_total += taken as u64;
    }
    // Woken by the worker's last completion, not polled: a 1 ms sleep here
    // held the target under 1,000 inputs a second.
    assert!(disk.wait_idle(Duration::from_secs(5)), "a request stayed on the host for 5 s");
    assert_eq!(disk.in_flight(), 0, "the engine is idle but a request was never answered");
    let rsp_prod = mem.load_u32(SRING_RSP_PROD);
    assert!(u64::from(rsp_prod) <= taken_total, "rsp_prod {rsp_prod} > {taken_total} requests taken");
});
