//! Worker threads (the engine) against io_uring for one drive's DMA: what
//! the submitting thread pays (on the vCPU path that is the ioreq thread)
//! and the submit -> completion round trip, for reads from a raw image
//! straight into guest RAM (qtest's AnonRam), through the page cache and
//! with O_DIRECT.
//!
//! * threads: `BlockQueue::submit` of a ReadToGuest; the worker preadv()s
//!   and runs the completion callback, which wakes the submitter.
//! * io_uring: a READV SQE over the same iovecs, `submit()` timed alone,
//!   then the submitter reaps the CQE itself (`submit_and_wait`), so its
//!   round trip has no thread hop at all: a lower bound for a ring, whose
//!   completions would in the device model still have to reach a thread
//!   that takes the controller lock.
//! * io_uring + IOSQE_ASYNC: the same, forced to the kernel's io-wq
//!   workers so that a page-cache hit is not copied on the submitting
//!   thread.
//!
//! `cargo bench --bench uring_vs_threads` (BENCH_ROUNDS=<n>, default 2000).
//! Prints medians in microseconds; asserts nothing about speed, but checks
//! every request's result and the bytes of the last one.

use io_uring::{opcode, squeue, types, IoUring};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use xen_ioemu::block::engine::{share, BlockQueue, GuestSegment, IoOp};
use xen_ioemu::block::guest_io::GuestBuffers;
use xen_ioemu::block::{CacheMode, RawImage};
use xen_ioemu::machine::{DmaDirection, GuestMemory};
use xen_ioemu::qtest::AnonRam;

const MIB: usize = 1 << 20;
const IMAGE_BYTES: usize = 64 * MIB;

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn segments(size: usize) -> Vec<GuestSegment> {
    let seg = size.min(64 << 10);
    (0..size / seg).map(|i| GuestSegment { gpa: (i * 2 * seg) as u64, len: seg }).collect()
}

fn threads(path: &std::path::Path, cache: CacheMode, ram: &Arc<AnonRam>, size: usize, rounds: usize) -> (f64, f64) {
    let done = Arc::new((Mutex::new(0usize), Condvar::new()));
    let sink = done.clone();
    let mut q = BlockQueue::spawn(
        "bench",
        ram.clone(),
        Arc::new(move |c| {
            assert!(c.result.is_ok(), "{:?}", c.result.err());
            *sink.0.lock().unwrap() += 1;
            sink.1.notify_all();
        }),
    )
    .unwrap();
    let backend = share(Box::new(RawImage::open(path, cache, false).unwrap()));
    let (mut submit, mut trip) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let op = IoOp::ReadToGuest { offset: ((i * size) % IMAGE_BYTES) as u64, segments: segments(size) };
        let start = Instant::now();
        q.submit(&backend, op);
        submit.push(start.elapsed());
        let mut n = done.0.lock().unwrap();
        while *n <= i {
            n = done.1.wait(n).unwrap();
        }
        trip.push(start.elapsed());
    }
    (median(submit), median(trip))
}

fn uring(path: &std::path::Path, direct: bool, flags: squeue::Flags, ram: &AnonRam, size: usize, rounds: usize) -> (f64, f64) {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    if direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    let file = opts.open(path).unwrap();
    let mut ring = IoUring::new(8).unwrap();
    let bufs = GuestBuffers::map(ram, &segments(size), DmaDirection::FromDevice).unwrap();
    let iov = bufs.iovecs(0, usize::MAX);
    let (mut submit, mut trip) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let sqe = opcode::Readv::new(types::Fd(file.as_raw_fd()), iov.as_ptr(), iov.len() as u32)
            .offset(((i * size) % IMAGE_BYTES) as u64)
            .build()
            .flags(flags)
            .user_data(i as u64);
        let start = Instant::now();
        // SAFETY: the iovecs point into guest RAM mapped by `bufs`, which
        // lives until after the completion is reaped below, as does `iov`;
        // the ring has room (one request at a time).
        unsafe { ring.submission().push(&sqe).unwrap() };
        ring.submit().unwrap();
        submit.push(start.elapsed());
        loop {
            if let Some(cqe) = ring.completion().next() {
                assert_eq!((cqe.user_data(), cqe.result()), (i as u64, size as i32));
                break;
            }
            ring.submit_and_wait(1).unwrap();
        }
        trip.push(start.elapsed());
    }
    (median(submit), median(trip))
}

fn main() {
    let rounds = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000usize);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("uring.img");
    let pattern: Vec<u8> = (0..IMAGE_BYTES).map(|i| (i / 512 % 253) as u8).collect();
    std::fs::write(&path, &pattern).unwrap();
    let ram = Arc::new(AnonRam::new(4 * MIB).unwrap());
    println!("median us over {rounds} reads, image -> guest RAM          submit   round trip");
    for (cache, direct) in [(CacheMode::Writeback, false), (CacheMode::None, true)] {
        for size in [4096, MIB] {
            let label = format!("{}, {}", if direct { "O_DIRECT" } else { "page cache" }, if size == MIB { "1 MiB" } else { "4 KiB" });
            let rows = [
                ("threads (engine)", threads(&path, cache, &ram, size, rounds)),
                ("io_uring", uring(&path, direct, squeue::Flags::empty(), &ram, size, rounds)),
                ("io_uring + ASYNC", uring(&path, direct, squeue::Flags::ASYNC, &ram, size, rounds)),
            ];
            for (name, (s, t)) in rows {
                println!("  {label:18} {name:22} {s:9.1} {t:12.1}");
            }
            // The last request (of the last row) read the last offset.
            let last = ((rounds - 1) * size) % IMAGE_BYTES;
            let mut seen = vec![0u8; 4096];
            ram.read(0, &mut seen).unwrap();
            assert_eq!(seen, pattern[last..last + 4096], "the data reached guest RAM");
        }
    }
}
