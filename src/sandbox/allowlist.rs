//! What each thread kind may do after start-up: the one place to edit when
//! a thread gains work. Every group says why its calls are there; a kind is
//! the union of its groups.
//!
//! A thread spawned by a filtered thread keeps its parent's filter under
//! its own, so a spawner's list must hold everything its children need
//! (`ThreadKind::QmpListener` includes the session's groups).

use super::ThreadKind;

/// One syscall, allowed for any arguments or only when an argument equals
/// one of a few values.
#[derive(Clone, Copy, Debug)]
pub struct Allow {
    pub nr: i64,
    /// `(argument index, allowed values)`; `None`: any arguments.
    pub only: Option<(u8, &'static [u64])>,
}

const fn any(nr: i64) -> Allow {
    Allow { nr, only: None }
}

const fn when(nr: i64, arg: u8, values: &'static [u64]) -> Allow {
    Allow {
        nr,
        only: Some((arg, values)),
    }
}

/// A named set of calls, with the reason it exists.
#[derive(Debug)]
pub struct Group {
    pub name: &'static str,
    pub calls: &'static [Allow],
}

// ioctl request numbers (the low 32 bits are compared).
const BLKGETSIZE64: u64 = 0x8008_1272;
const BLKSSZGET: u64 = 0x1268;
const BLKDISCARD: u64 = 0x1277;
const LOOP_GET_STATUS64: u64 = 0x4c05;
const FIONBIO: u64 = 0x5421;
const PRIVCMD_DM_OP: u64 = xen_sys::IOCTL_PRIVCMD_DM_OP as u64;
const PRIVCMD_HYPERCALL: u64 = xen_sys::domctl::IOCTL_PRIVCMD_HYPERCALL as u64;
const PRIVCMD_MMAPBATCH_V2: u64 = xen_sys::IOCTL_PRIVCMD_MMAPBATCH_V2 as u64;
const PRIVCMD_MMAP_RESOURCE: u64 = xen_sys::IOCTL_PRIVCMD_MMAP_RESOURCE as u64;
const EVTCHN_NOTIFY: u64 = xen_sys::IOCTL_EVTCHN_NOTIFY as u64;
const EVTCHN_UNBIND: u64 = xen_sys::IOCTL_EVTCHN_UNBIND as u64;
const EVTCHN_BIND_INTERDOMAIN: u64 = xen_sys::IOCTL_EVTCHN_BIND_INTERDOMAIN as u64;
const EVTCHN_RESET: u64 = xen_sys::IOCTL_EVTCHN_RESET as u64;
const GNTDEV_MAP_GRANT_REF: u64 = xen_sys::IOCTL_GNTDEV_MAP_GRANT_REF as u64;
const GNTDEV_UNMAP_GRANT_REF: u64 = xen_sys::IOCTL_GNTDEV_UNMAP_GRANT_REF as u64;
const GNTDEV_GRANT_COPY: u64 = xen_sys::IOCTL_GNTDEV_GRANT_COPY as u64;

/// Every thread: the Rust runtime (allocation, locks, sleeps, clocks,
/// thread exit), logging (stderr, and `send` on the already connected
/// syslog socket: no destination address), and the SIGSYS handler's own
/// re-raise. glibc runs setuid/setgid/setgroups in every thread (its
/// SIGSETXID broadcast) when `-runas` switches users after some threads
/// already run their filter; without them `-runas` would trap.
pub const RUNTIME: Group = Group {
    name: "runtime",
    calls: &[
        any(libc::SYS_brk),
        any(libc::SYS_mmap),
        any(libc::SYS_munmap),
        any(libc::SYS_mremap),
        any(libc::SYS_madvise),
        any(libc::SYS_mprotect),
        any(libc::SYS_futex),
        any(libc::SYS_sched_yield),
        any(libc::SYS_nanosleep),
        any(libc::SYS_clock_nanosleep),
        any(libc::SYS_clock_gettime),
        any(libc::SYS_gettimeofday),
        any(libc::SYS_getrandom),
        any(libc::SYS_rt_sigprocmask),
        any(libc::SYS_rt_sigreturn),
        any(libc::SYS_sigaltstack),
        any(libc::SYS_restart_syscall),
        any(libc::SYS_exit),
        any(libc::SYS_exit_group),
        any(libc::SYS_close),
        any(libc::SYS_getpid),
        any(libc::SYS_gettid),
        any(libc::SYS_write),
        any(libc::SYS_writev),
        when(libc::SYS_sendto, 4, &[0]),
        when(libc::SYS_tgkill, 2, &[libc::SIGSYS as u64]),
        any(libc::SYS_setuid),
        any(libc::SYS_setgid),
        any(libc::SYS_setresuid),
        any(libc::SYS_setresgid),
        any(libc::SYS_setgroups),
    ],
};

/// Threads that run device code: an access, a completion or a QMP command
/// can raise an interrupt (DM_OP), map guest pages for DMA or `rep` I/O
/// (MMAPBATCH_V2, MMAP_RESOURCE), pause the domain for a hold (HYPERCALL:
/// domctl), notify an event channel, wake the ioreq loop (a pipe), and do
/// the block layer's I/O on images already open (positioned and vectored
/// reads and writes, flushes, TRIM as fallocate or BLKDISCARD, a qcow2
/// file grown by ftruncate).
pub const DEVICES: Group = Group {
    name: "devices",
    calls: &[
        when(
            libc::SYS_ioctl,
            1,
            &[
                PRIVCMD_DM_OP,
                PRIVCMD_HYPERCALL,
                PRIVCMD_MMAPBATCH_V2,
                PRIVCMD_MMAP_RESOURCE,
                EVTCHN_NOTIFY,
                BLKDISCARD,
            ],
        ),
        any(libc::SYS_read),
        any(libc::SYS_pread64),
        any(libc::SYS_pwrite64),
        any(libc::SYS_preadv),
        any(libc::SYS_pwritev),
        any(libc::SYS_preadv2),
        any(libc::SYS_pwritev2),
        any(libc::SYS_lseek),
        any(libc::SYS_fsync),
        any(libc::SYS_fdatasync),
        any(libc::SYS_fallocate),
        // A qcow2 cluster allocated for a partial write is completed with
        // zeroes past the end of the file, which imago grows by ftruncate
        // (found on real Xen: ext4 on a qcow2 qdisk disk).
        any(libc::SYS_ftruncate),
        any(libc::SYS_fstat),
        // The domctl buffer of a hold's pause/unpause is locked for the
        // hypercall (xen/privcmd.rs), as libxencall's buffers are; the
        // run-state thread pauses and unpauses (seen on real Xen: mlock
        // trapped at the first hold).
        any(libc::SYS_mlock),
        any(libc::SYS_munlock),
    ],
};

/// Changing a CD (QMP blockdev-change-medium, change, xl cd-insert) opens
/// a new image and sizes it: as at start-up, but never creates a socket.
pub const OPEN_IMAGES: Group = Group {
    name: "open-images",
    calls: &[
        any(libc::SYS_openat),
        any(libc::SYS_newfstatat),
        any(libc::SYS_statx),
        any(libc::SYS_fcntl),
        any(libc::SYS_readlink),
        any(libc::SYS_readlinkat),
        any(libc::SYS_fadvise64),
        when(
            libc::SYS_ioctl,
            1,
            &[BLKGETSIZE64, BLKSSZGET, LOOP_GET_STATUS64],
        ),
        // Reading RLIMIT_FSIZE (block::file_size_limit: dm_restrict's cap
        // decides how a loop device is served); new_limit NULL, so a read.
        when(libc::SYS_prlimit64, 2, &[0]),
    ],
};

/// Threads that start threads (std::thread::Builder): clone3 (clone as
/// glibc's fallback), the new thread's robust list, rseq and name, and the
/// child's own, narrower, filter (no-new-privs and seccomp can only add
/// restrictions).
pub const SPAWN: Group = Group {
    name: "spawn",
    calls: &[
        any(libc::SYS_clone3),
        any(libc::SYS_clone),
        any(libc::SYS_set_robust_list),
        any(libc::SYS_rseq),
        any(libc::SYS_sched_getaffinity),
        when(
            libc::SYS_prctl,
            0,
            &[libc::PR_SET_NAME as u64, libc::PR_SET_NO_NEW_PRIVS as u64],
        ),
        any(libc::SYS_seccomp),
    ],
};

/// The QMP listener accepts on the socket bound at start-up (never a new
/// socket, bind or connect) and makes the connection blocking.
pub const QMP_ACCEPT: Group = Group {
    name: "qmp-accept",
    calls: &[
        any(libc::SYS_accept4),
        any(libc::SYS_accept),
        when(libc::SYS_ioctl, 1, &[FIONBIO]),
    ],
};

/// A QMP session reads commands and passed descriptors (SCM_RIGHTS, getfd
/// and add-fd), sets its write timeout, duplicates the stream for its
/// writer and shuts it down at the end.
pub const QMP_SESSION: Group = Group {
    name: "qmp-session",
    calls: &[
        any(libc::SYS_read),
        any(libc::SYS_recvmsg),
        any(libc::SYS_recvfrom),
        any(libc::SYS_poll),
        any(libc::SYS_ppoll),
        when(libc::SYS_setsockopt, 1, &[libc::SOL_SOCKET as u64]),
        any(libc::SYS_fcntl),
        any(libc::SYS_shutdown),
        any(libc::SYS_dup),
    ],
};

/// The QMP writer: replies and events with a send timeout.
pub const QMP_WRITE: Group = Group {
    name: "qmp-write",
    calls: &[
        any(libc::SYS_sendmsg),
        any(libc::SYS_poll),
        any(libc::SYS_shutdown),
    ],
};

/// The ioreq loop waits on the event channel and the waker pipe, drains
/// and unmasks ports (read/write on /dev/xen/evtchn), and unbinds them at
/// exit.
pub const IOREQ: Group = Group {
    name: "ioreq",
    calls: &[
        any(libc::SYS_poll),
        any(libc::SYS_ppoll),
        when(libc::SYS_ioctl, 1, &[EVTCHN_UNBIND]),
    ],
};

/// The signal thread waits for SIGHUP/SIGTERM/SIGINT.
pub const SIGNALS: Group = Group {
    name: "signals",
    calls: &[any(libc::SYS_rt_sigtimedwait)],
};

/// The traditional flavour's xenstore command watcher reads and writes the
/// xenstore connection opened at start-up (a unix socket: std reads it
/// with recv).
pub const XENSTORE: Group = Group {
    name: "xenstore",
    calls: &[any(libc::SYS_read), any(libc::SYS_recvfrom), any(libc::SYS_poll)],
};

/// The serial console's pty reader polls and reads the pty master.
pub const PTY: Group = Group {
    name: "pty",
    calls: &[
        any(libc::SYS_read),
        any(libc::SYS_poll),
        any(libc::SYS_ppoll),
    ],
};

/// The qtest session reads its commands from stdio or a unix socket.
pub const QTEST: Group = Group { name: "qtest", calls: &[any(libc::SYS_read), any(libc::SYS_recvfrom), any(libc::SYS_poll)] };

/// The main thread's way out: dropping the QMP servers shuts their
/// listening sockets down (which wakes accept), joins the listeners and
/// unlinks the socket paths it bound.
pub const QMP_CLOSE: Group = Group {
    name: "qmp-close",
    calls: &[any(libc::SYS_shutdown), any(libc::SYS_unlink), any(libc::SYS_unlinkat)],
};

/// A qdisk disk's data path: request data moved between the frontend's
/// grants and our buffers by the hypervisor's grant copy (gntdev, opened
/// at start-up). The worker copies read data in on completion; the device
/// thread copies write data out before submitting.
pub const GRANT_COPY: Group = Group {
    name: "grant-copy",
    calls: &[when(libc::SYS_ioctl, 1, &[GNTDEV_GRANT_COPY])],
};

/// A qdisk disk's connection to its frontend: the ring pages mapped and
/// unmapped through gntdev (the ioctl, then mmap/munmap of the device),
/// the frontend's event channel bound, unbound, reset after an overflow
/// and waited on (poll; pending ports read, unmasked by write), on
/// descriptors opened before the thread started.
pub const QDISK_RING: Group = Group {
    name: "qdisk-ring",
    calls: &[
        when(
            libc::SYS_ioctl,
            1,
            &[
                GNTDEV_MAP_GRANT_REF,
                GNTDEV_UNMAP_GRANT_REF,
                EVTCHN_BIND_INTERDOMAIN,
                EVTCHN_UNBIND,
                EVTCHN_RESET,
            ],
        ),
        any(libc::SYS_poll),
        any(libc::SYS_ppoll),
    ],
};

/// A PV console's host end: the pty master read and written, or a client
/// accepted (non-blocking) on the socket bound at start-up, read and
/// written; the frontend kicked through its event channel.
pub const CONSOLE_HOST: Group = Group {
    name: "console-host",
    calls: &[
        any(libc::SYS_read),
        any(libc::SYS_recvfrom),
        any(libc::SYS_accept4),
        any(libc::SYS_accept),
        when(libc::SYS_ioctl, 1, &[FIONBIO, EVTCHN_NOTIFY]),
    ],
};

/// The groups a kind of thread is allowed.
pub fn groups(kind: ThreadKind) -> &'static [&'static Group] {
    match kind {
        ThreadKind::Ioreq => &[&RUNTIME, &DEVICES, &IOREQ, &QMP_CLOSE],
        ThreadKind::Qtest => &[&RUNTIME, &DEVICES, &QTEST, &QMP_CLOSE],
        // libxl's option probe only waits for QMP's quit.
        ThreadKind::Probe => &[&RUNTIME, &QMP_CLOSE],
        // Waits, then joins the qdisk threads (which flush their images).
        ThreadKind::PvMain => &[&RUNTIME, &QMP_CLOSE],
        ThreadKind::BlockWorker => &[&RUNTIME, &DEVICES],
        ThreadKind::QmpListener => &[
            &RUNTIME,
            &SPAWN,
            &QMP_ACCEPT,
            &QMP_SESSION,
            &QMP_WRITE,
            &DEVICES,
            &OPEN_IMAGES,
        ],
        ThreadKind::QmpSession => &[
            &RUNTIME,
            &SPAWN,
            &QMP_SESSION,
            &QMP_WRITE,
            &DEVICES,
            &OPEN_IMAGES,
        ],
        ThreadKind::QmpWriter => &[&RUNTIME, &QMP_WRITE],
        ThreadKind::Signals => &[&RUNTIME, &SIGNALS],
        ThreadKind::RunState => &[&RUNTIME, &DEVICES],
        ThreadKind::XsCommand => &[&RUNTIME, &DEVICES, &XENSTORE],
        ThreadKind::SerialPty => &[&RUNTIME, &DEVICES, &PTY],
        // The supervisor's filter stays under its device threads' own (and
        // theirs under their workers'): it holds everything they do, plus
        // opening a new disk's image and event channel (a disk libxl adds
        // later, xl block-attach) and starting its thread. The xenstore
        // connection and gntdev are opened before it, so no socket.
        ThreadKind::QdiskSupervisor => &[
            &RUNTIME,
            &SPAWN,
            &XENSTORE,
            &OPEN_IMAGES,
            &DEVICES,
            &QDISK_RING,
            &GRANT_COPY,
        ],
        // Opens nothing: it starts a block engine worker per connection.
        ThreadKind::QdiskDevice => &[&RUNTIME, &SPAWN, &XENSTORE, &DEVICES, &QDISK_RING, &GRANT_COPY],
        ThreadKind::QdiskWorker => &[&RUNTIME, &DEVICES, &GRANT_COPY],
        // The ring is mapped and the channel bound as a qdisk disk's are.
        ThreadKind::ConsoleDevice => &[&RUNTIME, &XENSTORE, &QDISK_RING, &CONSOLE_HOST],
    }
}
