//! Cost of the I/O engine's thread hop: submit -> completion round trips
//! through a drive's worker, against the same operation called inline;
//! then DMA throughput through the engine between a raw image file and
//! guest RAM (qtest's AnonRam), 1 MiB and 32 MiB requests in 64 KiB PRD
//! segments, with the page cache (cache=writeback) and with O_DIRECT
//! (cache=none, segments aligned).
//!
//! The DMA rows compare, in the same run, the raw image's zero-copy path
//! with the bounce through the worker's buffer that every DMA took before
//! (`Bounced`), as throughput and as process CPU time per GiB moved (the
//! better figure on a shared host: it does not count time spent waiting).
//!
//! `cargo bench --bench block_engine` (BENCH_SECONDS=<f> per DMA row,
//! default 0.5; BENCH_REPEAT=<n> interleaved rounds, best shown, default
//! 3). Prints numbers; asserts nothing about speed, but every DMA read
//! checks the bytes it moved.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use xen_ioemu::block::engine::{share, BlockQueue, GuestSegment, IoOp, SharedBackend};
use xen_ioemu::block::mem::MemBackend;
use xen_ioemu::block::{BlockBackend, BlockError, CacheMode, RawImage};
use xen_ioemu::machine::{GuestMemory, MemError};
use xen_ioemu::qtest::AnonRam;

struct NoRam;
impl GuestMemory for NoRam {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        Err(MemError::OutOfRange { gpa, len: buf.len() })
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        Err(MemError::OutOfRange { gpa, len: data.len() })
    }
}

fn main() {
    let rounds = 20_000u32;
    let done = Arc::new((Mutex::new(0u64), Condvar::new()));
    let sink = done.clone();
    let backend = share(Box::new(MemBackend::new(1 << 20)));
    let mut q = BlockQueue::spawn(
        "bench",
        Arc::new(NoRam),
        Arc::new(move |_c| {
            *sink.0.lock().unwrap() += 1;
            sink.1.notify_all();
        }),
    )
    .unwrap();
    for (label, make) in [
        ("barrier", Box::new(|| IoOp::Barrier) as Box<dyn Fn() -> IoOp>),
        ("4 KiB read", Box::new(|| IoOp::Read { offset: 8192, len: 4096 })),
    ] {
        let start = Instant::now();
        for i in 1..=rounds as u64 {
            q.submit(&backend, make());
            let mut n = done.0.lock().unwrap();
            while *n < i {
                n = done.1.wait_timeout(n, Duration::from_secs(5)).unwrap().0;
            }
        }
        let per = start.elapsed() / rounds;
        *done.0.lock().unwrap() = 0;
        println!("engine round trip, {label}: {:.2} us", per.as_secs_f64() * 1e6);
    }
    let mut inline = MemBackend::new(1 << 20);
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    for _ in 0..rounds {
        inline.read_at(8192, &mut buf).unwrap();
    }
    println!("inline 4 KiB read: {:.2} us", (start.elapsed() / rounds).as_secs_f64() * 1e6);
    dma_rows();
}

const MIB: usize = 1 << 20;
const IMAGE_BYTES: usize = 256 * MIB;
const SEGMENT: usize = 64 << 10;

/// The same raw image without its preadv/pwritev path: the trait's default
/// bounce through the worker's scratch buffer, i.e. the engine's DMA before
/// zero copy (image -> buffer -> volatile copy into guest RAM), measured in
/// the same run under the same load.
struct Bounced(RawImage);
impl BlockBackend for Bounced {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_only(&self) -> bool {
        self.0.read_only()
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<(), BlockError> {
        self.0.read_at(o, b)
    }
    fn write_at(&mut self, o: u64, d: &[u8]) -> Result<(), BlockError> {
        self.0.write_at(o, d)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.0.flush()
    }
    fn discard(&mut self, o: u64, l: u64) -> Result<(), BlockError> {
        self.0.discard(o, l)
    }
    fn set_guest_write_cache(&mut self, e: bool) {
        self.0.set_guest_write_cache(e)
    }
    fn guest_write_cache(&self) -> bool {
        self.0.guest_write_cache()
    }
}

/// CPU time of the whole process (the worker does the I/O), user + system.
fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given a pointer to; a zeroed
    // rusage is a valid value of it either way.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Submit one request and wait for its completion; panics on failure.
fn run_one(q: &mut BlockQueue, backend: &SharedBackend, op: IoOp, done: &Arc<(Mutex<Vec<bool>>, Condvar)>) {
    q.submit(backend, op);
    let mut results = done.0.lock().unwrap();
    while results.is_empty() {
        results = done.1.wait_timeout(results, Duration::from_secs(30)).unwrap().0;
    }
    assert!(results.pop().unwrap(), "DMA request failed");
}

fn dma_rows() {
    let secs = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.5);
    let repeat = std::env::var("BENCH_REPEAT").ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(3).max(1);
    let budget = Duration::from_secs_f64(secs);
    // The image lives where the build does (a real filesystem; /tmp may be
    // tmpfs, which refuses O_DIRECT on older kernels).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("dma.img");
    let pattern: Vec<u8> = (0..IMAGE_BYTES).map(|i| (i / 4096 % 251) as u8).collect();
    std::fs::write(&path, &pattern).unwrap();
    let ram = Arc::new(AnonRam::new(64 * MIB).unwrap());
    let done = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let sink = done.clone();
    let mut q = BlockQueue::spawn(
        "dma",
        ram.clone(),
        Arc::new(move |c| {
            sink.0.lock().unwrap().push(c.result.is_ok());
            sink.1.notify_all();
        }),
    )
    .unwrap();
    println!("\nDMA through the engine, raw file <-> guest RAM, 64 KiB segments; best of {repeat}");
    println!("  {:34} {:>11} {:>13} {:>11} {:>13}", "", "read GB/s", "CPU ms/GiB", "write GB/s", "CPU ms/GiB");
    for cache in [CacheMode::Writeback, CacheMode::None] {
        let zero_copy = share(Box::new(RawImage::open(&path, cache, false).unwrap()));
        let bounced = share(Box::new(Bounced(RawImage::open(&path, cache, false).unwrap())));
        for size in [MIB, 32 * MIB] {
            // Segments alternate between two halves of guest RAM so they
            // are not one contiguous run.
            let segments: Vec<GuestSegment> = (0..size / SEGMENT)
                .map(|i| GuestSegment { gpa: ((i % 2) * 32 * MIB + (i / 2) * SEGMENT) as u64, len: SEGMENT })
                .collect();
            let slots = (IMAGE_BYTES / size) as u64;
            // [path][read/write] = (best GB/s, least CPU ms per GiB)
            let mut best = [[(0f64, f64::MAX); 2]; 2];
            for _ in 0..repeat {
                for (row, backend) in [&bounced, &zero_copy].into_iter().enumerate() {
                    for (col, write) in [false, true].into_iter().enumerate() {
                        let (start, cpu) = (Instant::now(), cpu_time());
                        let mut n = 0u64;
                        while start.elapsed() < budget || n == 0 {
                            let offset = (n % slots) * size as u64;
                            let segments = segments.clone();
                            let op = if write { IoOp::WriteFromGuest { offset, segments } } else { IoOp::ReadToGuest { offset, segments } };
                            run_one(&mut q, backend, op, &done);
                            n += 1;
                        }
                        let bytes = n as f64 * size as f64;
                        let rate = bytes / start.elapsed().as_secs_f64();
                        let cpu_ms = (cpu_time() - cpu).as_secs_f64() * 1e3 / (bytes / (1u64 << 30) as f64);
                        let b = &mut best[row][col];
                        *b = (b.0.max(rate), b.1.min(cpu_ms));
                        if !write {
                            // The last read's second segment holds those image bytes.
                            let offset = ((n - 1) % slots) * size as u64 + SEGMENT as u64;
                            let (mut seen, mut want) = (vec![0u8; SEGMENT], vec![0u8; SEGMENT]);
                            ram.read(32 * MIB as u64, &mut seen).unwrap();
                            std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&path).unwrap(), &mut want, offset).unwrap();
                            assert_eq!(seen, want, "read landed in guest RAM");
                        }
                    }
                }
            }
            for (row, name) in ["bounce (before)", "zero copy"].into_iter().enumerate() {
                let [(r, rc), (w, wc)] = best[row];
                let label = format!("{cache:?}, {} MiB, {name}", size / MIB);
                println!("  {label:34} {:11.2} {rc:13.0} {:11.2} {wc:13.0}", r / 1e9, w / 1e9);
            }
        }
    }
}
