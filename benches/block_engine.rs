//! Cost of the I/O engine's thread hop: submit -> completion round trips
//! through a drive's worker, against the same operation called inline.
//! Prints numbers; asserts nothing about speed.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use xen_ioemu::block::engine::{share, BlockQueue, IoOp};
use xen_ioemu::block::mem::MemBackend;
use xen_ioemu::block::BlockBackend;
use xen_ioemu::machine::{GuestMemory, MemError};

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
}
