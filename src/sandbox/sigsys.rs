//! The SIGSYS handler: one line for a forbidden call, then SIGSYS's default
//! action ends the process. Everything here is async-signal-safe: no
//! allocation, no locks, only raw write/send/tgkill, which every thread
//! kind allows (see `allowlist::RUNTIME`).

use std::cell::Cell;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

thread_local! {
    /// Const-initialised, no destructor: reading it in a handler touches
    /// only the thread's TLS block.
    static KIND: Cell<&'static str> = const { Cell::new("unfiltered") };
}

/// The syslog socket, connected to /dev/log at start-up (-1: none).
static SYSLOG_FD: AtomicI32 = AtomicI32::new(-1);
static PID: AtomicI32 = AtomicI32::new(0);

pub(super) fn set_thread_kind(kind: &'static str) {
    KIND.with(|k| k.set(kind));
}

/// The SIGSYS fields of x86-64/aarch64 `siginfo_t` (see sigaction(2)):
/// after signo, errno, code and padding, the call address, the syscall
/// number and the audit arch.
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: *mut libc::c_void,
    syscall: i32,
    arch: u32,
}

pub(super) fn install() -> std::io::Result<()> {
    PID.store(std::process::id() as i32, Ordering::SeqCst);
    if SYSLOG_FD.load(Ordering::SeqCst) < 0 {
        if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
            if sock.connect("/dev/log").is_ok() {
                SYSLOG_FD.store(sock.into_raw_fd(), Ordering::SeqCst);
            }
        }
    }
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
    // handler only does async-signal-safe work (see the module doc).
    // SA_RESETHAND puts SIGSYS back to its default (kill) on entry, so the
    // handler's re-raise ends the process.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            on_sigsys;
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A fixed buffer that formats without allocating.
struct Line {
    buf: [u8; 320],
    len: usize,
}

impl Line {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_num(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers,
    // and for SIGSYS its union holds the fields of `SigsysInfo`.
    let nr = unsafe { (*(info as *const SigsysInfo)).syscall };
    let kind = KIND.with(|k| k.get());
    let mut text = Line {
        buf: [0; 320],
        len: 0,
    };
    text.push(b"seccomp: the ");
    text.push(kind.as_bytes());
    text.push(b" thread made a forbidden system call ");
    text.push_num(nr as u64);
    if let Some(name) = syscall_name(nr as libc::c_long) {
        text.push(b" (");
        text.push(name.as_bytes());
        text.push(b")");
    }
    text.push(b"; ending the device model (-sandbox off disables the filter)");
    let mut line = Line {
        buf: [0; 320],
        len: 0,
    };
    line.push(b"xen-ioemu: error: ");
    line.push(&text.buf[..text.len]);
    line.push(b"\n");
    // SAFETY: write(2) of our own stack buffer to stderr.
    unsafe { libc::write(2, line.buf.as_ptr().cast(), line.len) };
    let fd = SYSLOG_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let mut msg = Line {
            buf: [0; 320],
            len: 0,
        };
        // daemon.crit, as syslog(3) would tag it.
        msg.push(b"<26>xen-ioemu[");
        msg.push_num(PID.load(Ordering::Relaxed) as u64);
        msg.push(b"]: ");
        msg.push(&text.buf[..text.len]);
        // SAFETY: send(2) of our own stack buffer on a connected socket.
        unsafe { libc::send(fd, msg.buf.as_ptr().cast(), msg.len, libc::MSG_DONTWAIT) };
    }
    // SAFETY: raw getpid/gettid/tgkill; SIGSYS is back to its default and
    // blocked until this handler returns, then it ends the process.
    unsafe {
        let pid = libc::syscall(libc::SYS_getpid);
        let tid = libc::syscall(libc::SYS_gettid);
        libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGSYS);
    }
}

/// Names for the calls an intruder or a missed list entry most likely
/// makes; others are logged by number (see `ausyscall NUMBER`).
fn syscall_name(nr: libc::c_long) -> Option<&'static str> {
    Some(match nr {
        libc::SYS_execve => "execve",
        libc::SYS_execveat => "execveat",
        libc::SYS_socket => "socket",
        libc::SYS_connect => "connect",
        libc::SYS_bind => "bind",
        libc::SYS_listen => "listen",
        libc::SYS_fork => "fork",
        libc::SYS_vfork => "vfork",
        libc::SYS_clone => "clone",
        libc::SYS_clone3 => "clone3",
        libc::SYS_open => "open",
        libc::SYS_openat => "openat",
        libc::SYS_ioctl => "ioctl",
        libc::SYS_ptrace => "ptrace",
        libc::SYS_mount => "mount",
        libc::SYS_kill => "kill",
        libc::SYS_read => "read",
        libc::SYS_readv => "readv",
        libc::SYS_poll => "poll",
        libc::SYS_ppoll => "ppoll",
        libc::SYS_recvmsg => "recvmsg",
        libc::SYS_recvfrom => "recvfrom",
        libc::SYS_sendmsg => "sendmsg",
        libc::SYS_sendto => "sendto",
        libc::SYS_accept4 => "accept4",
        libc::SYS_fcntl => "fcntl",
        libc::SYS_prctl => "prctl",
        libc::SYS_mlock => "mlock",
        libc::SYS_munlock => "munlock",
        libc::SYS_prlimit64 => "prlimit64",
        libc::SYS_statx => "statx",
        libc::SYS_newfstatat => "newfstatat",
        libc::SYS_unlink => "unlink",
        libc::SYS_unlinkat => "unlinkat",
        libc::SYS_rt_sigaction => "rt_sigaction",
        libc::SYS_rt_sigtimedwait => "rt_sigtimedwait",
        libc::SYS_sched_getaffinity => "sched_getaffinity",
        libc::SYS_setsockopt => "setsockopt",
        libc::SYS_getsockopt => "getsockopt",
        libc::SYS_epoll_wait => "epoll_wait",
        libc::SYS_io_uring_setup => "io_uring_setup",
        libc::SYS_memfd_create => "memfd_create",
        libc::SYS_mkdirat => "mkdirat",
        libc::SYS_ftruncate => "ftruncate",
        libc::SYS_shutdown => "shutdown",
        _ => return None,
    })
}

/// Two things glibc's malloc does once per process open a file, and a
/// filtered thread that happened to be the one to do them would be killed
/// (both found on real Xen, in a PVH guest's qdisk worker):
/// - past 8 arenas (one per thread that allocates) it reads
///   /sys/devices/system/cpu/online to learn its limit, 8 per CPU: the same
///   limit is set up front, so it never needs to ask;
/// - the first time a thread's arena shrinks, free() reads
///   /proc/sys/vm/overcommit_memory and keeps the answer: a short-lived
///   thread here grows and frees its arena, so the answer is in before any
///   filter.
pub(super) fn prepare_malloc() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limit = libc::c_int::try_from(cpus.saturating_mul(8)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets a malloc tunable; it takes no pointers.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, limit) };
    // 1 MiB in chunks below the mmap threshold (128 KiB), so they come from
    // the thread's own arena and their free shrinks it.
    let shrink = std::thread::spawn(|| {
        let chunks: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 16 << 10]).collect();
        chunks.len()
    });
    if shrink.join().is_err() {
        log::warn!("sandbox: the malloc set-up thread failed");
    }
}
