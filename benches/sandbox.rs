//! What the seccomp filter adds to a system call: the same calls timed in
//! one thread before and after it installs the ioreq thread's filter.
//! `pread` on a bad descriptor is allowed for any arguments (the kernel's
//! per-syscall cache can skip the BPF program); `ioctl` with the DM_OP
//! number is allowed by argument, so the program runs. Both fail at once
//! with EBADF: what is timed is the kernel entry and the filter.
//! BENCH_CALLS (default 2 000 000) calls per row, median of BENCH_REPEAT (5).

use std::time::Instant;
use xen_ioemu::sandbox::{self, ThreadKind};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ns_per_call(calls: u64, repeat: u64, call: impl Fn()) -> f64 {
    let mut runs: Vec<f64> = (0..repeat)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                call();
            }
            start.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let calls = env_or("BENCH_CALLS", 2_000_000);
    let repeat = env_or("BENCH_REPEAT", 5).max(1);
    let pread = || {
        // SAFETY: a zero-byte read; fd -1 fails (EBADF).
        unsafe { libc::pread(-1, std::ptr::null_mut(), 0, 0) };
    };
    let ioctl = || {
        // SAFETY: fd -1 fails (EBADF) before the argument is looked at.
        unsafe { libc::ioctl(-1, xen_sys::IOCTL_PRIVCMD_DM_OP as _, std::ptr::null::<u8>()) };
    };
    let rows = [("pread (allowed for any arguments)", true), ("ioctl DM_OP (allowed by request number)", false)];
    let before: Vec<f64> = rows.iter().map(|&(_, p)| if p { ns_per_call(calls, repeat, pread) } else { ns_per_call(calls, repeat, ioctl) }).collect();
    sandbox::enable().expect("SIGSYS handler");
    sandbox::install(ThreadKind::Ioreq).expect("ioreq filter");
    let after: Vec<f64> = rows.iter().map(|&(_, p)| if p { ns_per_call(calls, repeat, pread) } else { ns_per_call(calls, repeat, ioctl) }).collect();
    println!("{:<42} {:>12} {:>12} {:>10}", "call (ioreq thread's filter)", "ns unfiltered", "ns filtered", "added ns");
    for (i, (name, _)) in rows.iter().enumerate() {
        println!("{name:<42} {:>12.1} {:>12.1} {:>10.1}", before[i], after[i], after[i] - before[i]);
    }
}
