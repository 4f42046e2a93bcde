//! Each case runs in a child process (this test binary re-run on one
//! test): the child installs a real filter and makes one call; the parent
//! checks how the child ended and what it logged.

use super::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CHILD_ENV: &str = "XEN_IOEMU_SANDBOX_CHILD";
/// The image a child's block call works on.
const IMAGE_ENV: &str = "XEN_IOEMU_SANDBOX_IMAGE";
/// What a child exits with when its call came back (was allowed).
const RETURNED: i32 = 42;
/// More threads than glibc's first arena count check (8 on 64-bit).
const MANY_THREADS: usize = 24;

/// The child's side: does nothing unless run by `run_child`.
#[test]
fn sandbox_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (kind, call) = spec.split_once(':').expect("KIND:CALL");
    let kind = ThreadKind::ALL
        .into_iter()
        .find(|k| k.name() == kind)
        .expect("known kind");
    // Images are opened before the filter, as the supervisors do.
    let mut qcow2 = (call == "qcow2-partial-cluster-write").then(|| {
        let path = std::env::var(IMAGE_ENV).expect("image path");
        crate::block::qcow2::ImagoImage::open(
            std::path::Path::new(&path),
            crate::block::ImageFormat::Qcow2,
            crate::block::CacheMode::Writeback,
            false,
        )
        .expect("qcow2 opens")
    });
    enable().expect("SIGSYS handler installs");
    install(kind).expect("filter installs");
    // SAFETY: each call is made with valid (or deliberately bad, but
    // harmless) arguments; the process exits right after.
    unsafe {
        match call {
            "execve" => {
                let path = c"/bin/true".as_ptr();
                let argv = [path, std::ptr::null()];
                libc::execve(path, argv.as_ptr(), std::ptr::null());
            }
            "socket-inet" => {
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            }
            "socket-unix" => {
                libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
            }
            // TIOCSTI: types into a terminal; no thread needs it.
            "ioctl-tiocsti" => {
                libc::ioctl(-1, libc::TIOCSTI, std::ptr::null::<u8>());
            }
            // An allowed request number on a bad descriptor: EBADF, alive.
            "ioctl-dm-op" => {
                libc::ioctl(
                    -1,
                    xen_sys::IOCTL_PRIVCMD_DM_OP as _,
                    std::ptr::null::<u8>(),
                );
            }
            // The qdisk data path's ioctl, on a bad descriptor.
            "ioctl-grant-copy" => {
                libc::ioctl(
                    -1,
                    xen_sys::IOCTL_GNTDEV_GRANT_COPY as _,
                    std::ptr::null::<u8>(),
                );
            }
            "ioctl-gntdev-map" => {
                libc::ioctl(
                    -1,
                    xen_sys::IOCTL_GNTDEV_MAP_GRANT_REF as _,
                    std::ptr::null::<u8>(),
                );
            }
            // A console thread taking a client on its socket, on a bad descriptor.
            "accept4" => {
                libc::accept4(-1, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK);
            }
            "ioctl-evtchn-notify" => {
                libc::ioctl(-1, xen_sys::IOCTL_EVTCHN_NOTIFY as _, std::ptr::null::<u8>());
            }
            "sendto-connected" => {
                libc::sendto(-1, [0u8].as_ptr().cast(), 1, 0, std::ptr::null(), 0);
            }
            "sendto-address" => {
                let addr: libc::sockaddr_un = std::mem::zeroed();
                let len = std::mem::size_of_val(&addr) as libc::socklen_t;
                libc::sendto(
                    -1,
                    [0u8].as_ptr().cast(),
                    1,
                    0,
                    (&addr as *const libc::sockaddr_un).cast(),
                    len,
                );
            }
            "openat" => {
                libc::openat(libc::AT_FDCWD, c"/dev/null".as_ptr(), libc::O_RDONLY);
            }
            // A 4 KiB guest write into an unallocated 64 KiB cluster: imago
            // writes the rest of the new cluster as zeroes, which grows the
            // file by ftruncate (found on real Xen: ext4 on a qcow2 qdisk
            // disk killed the DM at its first such write).
            "qcow2-partial-cluster-write" => {
                use crate::block::BlockBackend;
                let img = qcow2.as_mut().expect("opened above");
                img.write_at(0, &[0x5a; 4096]).expect("write");
                img.flush().expect("flush");
            }
            "pread" => {
                let mut b = [0u8; 1];
                libc::pread(-1, b.as_mut_ptr().cast(), 1, 0);
            }
            // What a hold's pause does around its domctl hypercall.
            "mlock" => {
                let b = [0u8; 64];
                libc::mlock(b.as_ptr().cast(), b.len());
                libc::munlock(b.as_ptr().cast(), b.len());
            }
            "spawn" => {
                std::thread::spawn(|| ()).join().expect("thread ran");
            }
            // A thread's arena grows by 1 MiB, then shrinks: glibc reads
            // /proc/sys/vm/overcommit_memory at the first shrink.
            "arena-shrink" => {
                std::thread::spawn(|| {
                    let chunks: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 16 << 10]).collect();
                    chunks.len()
                })
                .join()
                .expect("thread ran");
            }
            // Many threads allocating at once: glibc gives each a malloc
            // arena, and past 8 of them asks how many CPUs there are.
            "many-arenas" => {
                let all = std::sync::Arc::new(std::sync::Barrier::new(MANY_THREADS));
                let threads: Vec<_> = (0..MANY_THREADS)
                    .map(|_| {
                        let all = all.clone();
                        std::thread::spawn(move || {
                            all.wait();
                            let held = vec![1u8; 64 << 10];
                            all.wait();
                            held.len()
                        })
                    })
                    .collect();
                for t in threads {
                    t.join().expect("thread ran");
                }
            }
            other => panic!("unknown call {other}"),
        }
        libc::_exit(RETURNED);
    }
}

struct Ended {
    signal: Option<i32>,
    code: Option<i32>,
    stderr: String,
}

fn run_child(kind: ThreadKind, call: &str) -> Ended {
    run_child_with(kind, call, &[])
}

fn run_child_with(kind: ThreadKind, call: &str, env: &[(&str, &std::path::Path)]) -> Ended {
    let out = Command::new(std::env::current_exe().unwrap())
        .envs(env.iter().copied())
        .args([
            "--exact",
            "sandbox::tests::sandbox_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}:{call}", kind.name()))
        .output()
        .expect("child runs");
    Ended {
        signal: out.status.signal(),
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_killed(kind: ThreadKind, call: &str, logged: &str) {
    let ended = run_child(kind, call);
    assert_eq!(
        ended.signal,
        Some(libc::SIGSYS),
        "{} {call}: {:?} {}",
        kind.name(),
        ended.code,
        ended.stderr
    );
    let line = format!(
        "xen-ioemu: error: seccomp: the {} thread made a forbidden system call {logged}; ending",
        kind.name()
    );
    assert!(
        ended.stderr.contains(&line),
        "{} {call}: wanted «{line}» in {}",
        kind.name(),
        ended.stderr
    );
}

fn assert_returned(kind: ThreadKind, call: &str) {
    let ended = run_child(kind, call);
    assert_eq!(
        (ended.signal, ended.code),
        (None, Some(RETURNED)),
        "{} {call}: {}",
        kind.name(),
        ended.stderr
    );
}

#[test]
fn every_kind_compiles() {
    for kind in ThreadKind::ALL {
        let program = compile(kind).unwrap();
        assert!(!program.is_empty(), "{}", kind.name());
    }
}

#[test]
fn no_thread_may_exec_or_open_an_inet_socket() {
    for kind in ThreadKind::ALL {
        assert_killed(kind, "execve", &format!("{} (execve)", libc::SYS_execve));
        assert_killed(
            kind,
            "socket-inet",
            &format!("{} (socket)", libc::SYS_socket),
        );
    }
}

#[test]
fn no_socket_of_any_family_after_start_up() {
    assert_killed(
        ThreadKind::QmpListener,
        "socket-unix",
        &format!("{} (socket)", libc::SYS_socket),
    );
}

#[test]
fn ioctl_is_allowed_by_request_number() {
    assert_returned(ThreadKind::Ioreq, "ioctl-dm-op");
    assert_killed(
        ThreadKind::Ioreq,
        "ioctl-tiocsti",
        &format!("{} (ioctl)", libc::SYS_ioctl),
    );
    // The writer touches no device at all.
    assert_killed(
        ThreadKind::QmpWriter,
        "ioctl-dm-op",
        &format!("{} (ioctl)", libc::SYS_ioctl),
    );
}

#[test]
fn logging_may_send_on_a_connected_socket_only() {
    assert_returned(ThreadKind::Signals, "sendto-connected");
    assert_killed(
        ThreadKind::Signals,
        "sendto-address",
        &format!("{} (sendto)", libc::SYS_sendto),
    );
}

#[test]
fn only_threads_that_change_media_open_files() {
    assert_returned(ThreadKind::QmpSession, "openat");
    assert_killed(
        ThreadKind::BlockWorker,
        "openat",
        &format!("{} (openat)", libc::SYS_openat),
    );
    assert_killed(
        ThreadKind::Ioreq,
        "openat",
        &format!("{} (openat)", libc::SYS_openat),
    );
}

#[test]
fn the_allowed_set_lets_the_real_work_happen() {
    assert_returned(ThreadKind::BlockWorker, "pread");
    // A session starts its writer; the listener starts sessions.
    assert_returned(ThreadKind::QmpSession, "spawn");
    assert_returned(ThreadKind::QmpListener, "spawn");
    // glibc blocks every signal around clone3, so the kernel kills the
    // process with SIGSYS before our handler can write its line.
    let ended = run_child(ThreadKind::Ioreq, "spawn");
    assert_eq!(ended.signal, Some(libc::SIGSYS), "ioreq spawn: {:?} {}", ended.code, ended.stderr);
}

#[test]
fn many_threads_allocating_at_once_open_no_file() {
    // Found on real Xen (a PVH guest's qdisk): past 8 malloc arenas glibc
    // reads /sys/devices/system/cpu/online (openat) unless M_ARENA_MAX is
    // set, and a qdisk worker may not open files. `enable` sets it.
    assert_returned(ThreadKind::QdiskDevice, "many-arenas");
}

#[test]
fn a_thread_freeing_much_memory_opens_no_file() {
    // Found on real Xen (the same qdisk worker, once M_ARENA_MAX was set):
    // the first time a thread's arena shrinks, glibc's free() opens
    // /proc/sys/vm/overcommit_memory; `enable` has it done before any
    // filter.
    assert_returned(ThreadKind::QdiskDevice, "arena-shrink");
}

#[test]
fn the_threads_that_pause_the_domain_for_a_hold_may_lock_the_domctl_buffer() {
    // The run-state thread pauses and unpauses the domain for a hold
    // (xen/privcmd.rs locks the domctl buffer around the hypercall): found
    // on real Xen, where the first hold trapped on mlock.
    assert_returned(ThreadKind::RunState, "mlock");
    assert_returned(ThreadKind::Ioreq, "mlock");
    assert_killed(ThreadKind::QmpWriter, "mlock", &format!("{} (mlock)", libc::SYS_mlock));
}

#[test]
fn qdisk_threads_may_do_their_own_work_only() {
    let ioctl = format!("{} (ioctl)", libc::SYS_ioctl);
    // Read data goes into the grants on the worker, on completion (found on
    // real Xen: an IDE worker's list killed the first qdisk read).
    assert_returned(ThreadKind::QdiskWorker, "ioctl-grant-copy");
    assert_returned(ThreadKind::QdiskWorker, "pread");
    assert_killed(ThreadKind::BlockWorker, "ioctl-grant-copy", &ioctl);
    // The worker maps no ring and starts nothing.
    assert_killed(ThreadKind::QdiskWorker, "ioctl-gntdev-map", &ioctl);
    // The device thread maps its ring, copies write data and starts its
    // worker at each connection, but opens nothing: the supervisor opened
    // its image and event channel.
    assert_returned(ThreadKind::QdiskDevice, "ioctl-gntdev-map");
    assert_returned(ThreadKind::QdiskDevice, "ioctl-grant-copy");
    assert_returned(ThreadKind::QdiskDevice, "spawn");
    assert_killed(ThreadKind::QdiskDevice, "openat", &format!("{} (openat)", libc::SYS_openat));
    // The supervisor opens the images of disks libxl adds later, and
    // starts their threads, but creates no socket (xenstore is connected
    // before its filter).
    assert_returned(ThreadKind::QdiskSupervisor, "openat");
    assert_returned(ThreadKind::QdiskSupervisor, "spawn");
    assert_killed(ThreadKind::QdiskSupervisor, "socket-unix", &format!("{} (socket)", libc::SYS_socket));
}

#[test]
fn block_threads_may_grow_a_qcow2_image_for_a_partial_cluster_write() {
    for kind in [ThreadKind::BlockWorker, ThreadKind::QdiskWorker] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.qcow2");
        crate::block::testimg::create(&path, "qcow2", "16M", &[]);
        let ended = run_child_with(kind, "qcow2-partial-cluster-write", &[(IMAGE_ENV, &path)]);
        assert_eq!((ended.signal, ended.code), (None, Some(RETURNED)), "{}: {}", kind.name(), ended.stderr);
        assert_eq!(crate::block::testimg::check(&path).errors, 0, "{}", kind.name());
    }
}

#[test]
fn console_threads_move_bytes_and_open_nothing() {
    // The page is mapped and the channel bound at each connection; a
    // socket client is accepted on the socket bound at start-up.
    assert_returned(ThreadKind::ConsoleDevice, "ioctl-gntdev-map");
    assert_returned(ThreadKind::ConsoleDevice, "ioctl-evtchn-notify");
    assert_returned(ThreadKind::ConsoleDevice, "accept4");
    // Its pty or socket was opened before the filter: nothing new is
    // opened or created, nothing executed, no grant copies.
    assert_killed(ThreadKind::ConsoleDevice, "openat", &format!("{} (openat)", libc::SYS_openat));
    assert_killed(ThreadKind::ConsoleDevice, "socket-unix", &format!("{} (socket)", libc::SYS_socket));
    assert_killed(ThreadKind::ConsoleDevice, "execve", &format!("{} (execve)", libc::SYS_execve));
    assert_killed(ThreadKind::ConsoleDevice, "ioctl-grant-copy", &format!("{} (ioctl)", libc::SYS_ioctl));
    // And the qdisk threads may not accept.
    assert_killed(ThreadKind::QdiskDevice, "accept4", &format!("{} (accept4)", libc::SYS_accept4));
}
