//! Indirect requests (BLKIF_OP_INDIRECT): segment lists in granted
//! descriptor pages, the answers' operation, hostile descriptors, and the
//! in-flight budget that bounds our buffers.

use super::*;

impl Front {
    /// An indirect request whose descriptors go into fake grant pages
    /// from `desc_gref` on (512 per page).
    fn indirect(&mut self, grants: &FakeGrants, op: u8, id: u64, sector: u64, segs: &[(u32, u8, u8)], desc_gref: u32) {
        let l = self.layout;
        let pages = segs.len().div_ceil(512).max(1);
        let mut b = vec![0u8; l.request_size];
        b[l.req_operation] = BLKIF_OP_INDIRECT;
        b[l.indirect_op] = op;
        b[l.indirect_nr_segments..l.indirect_nr_segments + 2].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        b[l.indirect_id..l.indirect_id + 8].copy_from_slice(&id.to_le_bytes());
        b[l.indirect_sector_number..l.indirect_sector_number + 8].copy_from_slice(&sector.to_le_bytes());
        for p in 0..pages {
            let gref = desc_gref + p as u32;
            let at = l.indirect_grefs + 4 * p;
            b[at..at + 4].copy_from_slice(&gref.to_le_bytes());
            let mut page = vec![0u8; 4096];
            for (i, seg) in segs.iter().skip(p * 512).take(512).enumerate() {
                put_segment(&mut page, i * SEGMENT_SIZE, *seg);
            }
            grants.0.lock().unwrap().insert(gref, page);
        }
        self.put_raw(&b);
    }

    /// Rewrite the segment count of the request put last.
    fn recount_last(&mut self, nr: u16) {
        let at = self.slot(self.req_prod - 1) + self.layout.indirect_nr_segments;
        self.mem.write(at, &nr.to_le_bytes());
    }
}

#[test]
fn indirect_write_and_read_round_trip_and_are_answered_with_the_indirect_op() {
    for layout in BOTH {
        let mut r = rig(layout);
        // 40 segments (more than a direct request's 11): whole pages of
        // grefs 1..=16 in turn, then one half page (sectors 4-7 of gref 5).
        let mut segs: Vec<(u32, u8, u8)> = (0..39).map(|i| (1 + i % 16, 0, 7)).collect();
        segs.push((5, 4, 7));
        r.front.indirect(&r.grants, BLKIF_OP_WRITE, 0xabcd, 8, &segs, 100);
        assert_eq!(r.answers(1), vec![(0xabcd, BLKIF_OP_WRITE, BLKIF_RSP_OKAY)], "{}", layout.protocol);
        for i in 0..39usize {
            assert_eq!(r.image(4096 + i * 4096, 4096), vec![(1 + i % 16) as u8; 4096], "{} page {i}", layout.protocol);
        }
        assert_eq!(r.image(4096 + 39 * 4096, 2048), vec![5; 2048]);
        assert_eq!(r.image(4096 + 39 * 4096 + 2048, 512), vec![0; 512], "nothing past the request");
        // Read 39.5 pages back into fresh pages 200.. (sector 8 on).
        for g in 200..240u32 {
            r.grants.0.lock().unwrap().insert(g, vec![0; 4096]);
        }
        let back: Vec<(u32, u8, u8)> = (0..40u32).map(|i| (200 + i, 0, if i == 39 { 3 } else { 7 })).collect();
        r.front.indirect(&r.grants, BLKIF_OP_READ, 0xef, 8, &back, 150);
        assert_eq!(r.answers(1), vec![(0xef, BLKIF_OP_READ, BLKIF_RSP_OKAY)]);
        for i in 0..39u32 {
            assert_eq!(r.grants.page(200 + i), vec![(1 + i % 16) as u8; 4096], "{} read page {i}", layout.protocol);
        }
        assert_eq!(&r.grants.page(239)[..2048], &[5; 2048][..]);
        let s = r.disk.stats();
        assert_eq!((s.wr_operations, s.wr_bytes, s.rd_operations, s.rd_bytes), (1, 39 * 4096 + 2048, 1, 39 * 4096 + 2048));
    }
}

#[test]
fn the_largest_indirect_request_we_offer_moves_a_whole_mebibyte() {
    let mut r = rig(BLKIF_X86_64);
    let segs: Vec<(u32, u8, u8)> = (0..MAX_INDIRECT_SEGMENTS as u32).map(|i| (1 + i % 16, 0, 7)).collect();
    r.front.indirect(&r.grants, BLKIF_OP_WRITE, 1, 0, &segs, 100);
    assert_eq!(r.answers(1), vec![(1, BLKIF_OP_WRITE, BLKIF_RSP_OKAY)]);
    assert_eq!(r.image(DISK_BYTES - 4096, 4096), vec![16; 4096]);
}

#[test]
fn hostile_indirect_requests_are_refused_without_touching_the_image() {
    for layout in BOTH {
        let mut r = rig(layout);
        let last = (DISK_BYTES / 512) as u64;
        let one = [(1u32, 0u8, 7u8)];
        let w = BLKIF_OP_WRITE;
        r.front.indirect(&r.grants, w, 1, 0, &one, 100);
        r.front.recount_last(0); // no segments
        r.front.indirect(&r.grants, w, 2, 0, &one, 101);
        r.front.recount_last(MAX_INDIRECT_SEGMENTS + 1); // over our maximum
        r.front.indirect(&r.grants, w, 3, 0, &one, 102);
        r.front.recount_last(u16::MAX); // would need 128 descriptor pages
        r.front.indirect(&r.grants, w, 4, 0, &[(1, 5, 4)], 103); // first > last
        r.front.indirect(&r.grants, w, 5, 0, &[(1, 0, 7), (1, 0, 8)], 104); // past the page
        r.front.indirect(&r.grants, w, 6, last - 7, &[(1, 0, 7), (1, 0, 0)], 105); // past the disk
        r.front.indirect(&r.grants, w, 7, u64::MAX - 3, &one, 106); // overflowing range
        r.front.indirect(&r.grants, w, 8, 0, &[(999, 0, 7)], 107); // unknown data grant
        r.front.indirect(&r.grants, BLKIF_OP_FLUSH_DISKCACHE, 9, 0, &one, 108);
        r.front.indirect(&r.grants, BLKIF_OP_INDIRECT, 10, 0, &one, 109);
        r.front.indirect(&r.grants, w, 11, 0, &one, 110);
        r.grants.0.lock().unwrap().remove(&110); // its descriptor page is not granted
        let mut got = r.answers(11);
        got.sort();
        let e = BLKIF_RSP_ERROR;
        let n = BLKIF_RSP_EOPNOTSUPP;
        assert_eq!(
            got,
            vec![
                (1, w, e),
                (2, w, e),
                (3, w, e),
                (4, w, e),
                (5, w, e),
                (6, w, e),
                (7, w, e),
                (8, w, e),
                (9, BLKIF_OP_FLUSH_DISKCACHE, n),
                (10, BLKIF_OP_INDIRECT, n),
                (11, w, e),
            ],
            "{}",
            layout.protocol
        );
        assert!(r.image(0, DISK_BYTES).iter().all(|&b| b == 0), "{}: nothing written", layout.protocol);
        assert_eq!(r.disk.stats().invalid_operations, 10, "the bad data grant is a failed write, not an invalid request");
    }
}

#[test]
fn indirect_is_an_unsupported_operation_where_it_is_not_offered() {
    let front = Front::new(BLKIF_X86_64);
    let grants = Arc::new(FakeGrants::default());
    let ring = BackRing::attach(front.mem.clone(), BLKIF_X86_64).unwrap();
    let limits = DiskLimits { sectors: (DISK_BYTES / 512) as u64, read_only: false, discard: true, max_indirect_segments: 0 };
    let opts = QdiskOptions { drive: "xvdb".into(), werror: ErrorPolicy::Report, rerror: ErrorPolicy::Report, retry_interval: Duration::ZERO, audit: None };
    let disk = Qdisk::new(ring, share(Box::new(MemBackend::new(DISK_BYTES))), limits, grants.clone(), Arc::new(CountingNotifier::default()), opts).unwrap();
    let mut front = front;
    front.indirect(&grants, BLKIF_OP_WRITE, 5, 0, &[(1, 0, 7)], 100);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        disk.process();
        got = front.responses();
    }
    assert_eq!(got, vec![(5, BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP)]);
}

#[test]
fn requests_wait_in_the_ring_while_the_in_flight_budget_is_spent() {
    let mut r = rig(BLKIF_X86_64);
    let segs: Vec<(u32, u8, u8)> = (0..MAX_INDIRECT_SEGMENTS as u32).map(|i| (1 + i % 16, 0, 7)).collect();
    // The host is stuck (its lock held): nothing completes meanwhile.
    let image = r.backend.clone();
    let stuck = image.lock().unwrap();
    for id in 0..32u64 {
        r.front.indirect(&r.grants, BLKIF_OP_READ, id, 0, &segs, 100 + id as u32);
    }
    let taken = r.disk.process();
    let fit = backend::INFLIGHT_BUDGET / request::MAX_REQUEST_BYTES;
    assert_eq!(taken, fit, "1 MiB reads taken against a {} MiB budget", backend::INFLIGHT_BUDGET >> 20);
    assert_eq!(r.disk.in_flight(), fit);
    assert!(r.disk.backlogged(), "the rest wait in the ring");
    assert_eq!(r.disk.process(), 0, "nothing more while the budget is spent");
    drop(stuck);
    let got = r.answers(32);
    assert!(got.iter().all(|&(_, op, st)| op == BLKIF_OP_READ && st == BLKIF_RSP_OKAY));
    assert!(!r.disk.backlogged());
}
