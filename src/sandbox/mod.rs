//! The seccomp sandbox (`-sandbox on`, the default): after start-up every
//! thread may make only the system calls its kind needs.
//!
//! # How
//! Each thread installs its own filter (seccompiler, Firecracker's BPF
//! compiler) when it enters its loop: `enter(ThreadKind::…)`. Start-up
//! work (opening images, Xen set-up, binding sockets, `-runas`) happens
//! before the main thread's `enter`, and the threads started before it
//! need none of it again. The lists live in `allowlist.rs`, grouped by
//! purpose, one comment per group.
//!
//! # What a forbidden call does
//! The filter answers SECCOMP_RET_TRAP: the kernel sends SIGSYS to the
//! thread, and our handler (`sigsys.rs`) writes one line naming the call
//! and the thread kind to stderr (libxl's qemu-dm log) and to syslog, then
//! lets SIGSYS end the process (default action). We chose this over
//! SECCOMP_RET_KILL_PROCESS, whose only trace is an audit record in the
//! kernel log: an administrator reading the device model's log would see
//! the guest die with no reason given. The handler uses only calls every
//! kind allows (write, send on the connected syslog socket, tgkill).
//! One exception: glibc blocks all signals around clone3, so a thread not
//! allowed to spawn is killed by SIGSYS without the line (the kernel's
//! audit record, or the exit status, names it).
//!
//! # Switch
//! `-sandbox off` (QEMU's option; libxl never passes it, so it goes in
//! `device_model_args`) leaves every thread unfiltered. Sub-options of
//! QEMU's `-sandbox on,...` are accepted and ignored: ours is always the
//! strictest set. The library itself starts disabled, so unit tests that
//! build engines or QMP servers in-process stay unfiltered; `launch::run`
//! turns it on.

mod allowlist;
mod sigsys;

pub use allowlist::{groups, Allow, Group};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use thiserror::Error;

/// Every kind of thread the device model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// The Xen flavours' main thread: the ioreq server loop.
    Ioreq,
    /// The qtest flavour's main thread: the qtest protocol session.
    Qtest,
    /// libxl 4.20+'s `-machine none` option probe: waits for quit.
    Probe,
    /// `-machine xenpv`'s main thread (a PV or PVH domain's qdisk-only
    /// device model): waits for quit or a signal, then stops the backends.
    PvMain,
    /// One block engine worker per drive.
    BlockWorker,
    /// A QMP monitor's accept loop; it spawns the sessions.
    QmpListener,
    /// One QMP connection's command reader and dispatcher.
    QmpSession,
    /// One QMP connection's reply and event writer.
    QmpWriter,
    /// The exit-signal thread (SIGHUP from `xl destroy`).
    Signals,
    /// The run-state watcher: wakes the ioreq loop, retries held I/O,
    /// pauses the domain for a hold.
    RunState,
    /// The traditional flavour's device-model command watcher (xenstore).
    XsCommand,
    /// The serial console's pty reader.
    SerialPty,
    /// The qdisk supervisor: finds the PV disks libxl adds in xenstore,
    /// opens each image and event channel, starts its device thread.
    QdiskSupervisor,
    /// One qdisk disk's xenbus state machine and ring: maps the ring,
    /// binds the event channel, copies write data from the grants.
    QdiskDevice,
    /// A qdisk disk's block engine worker: the host I/O, and read data
    /// copied into the frontend's grants on completion.
    QdiskWorker,
    /// One PV console's xenbus state machine and ring: maps the page,
    /// binds the event channel, moves bytes to and from its pty or socket.
    ConsoleDevice,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 16] = [
        ThreadKind::Ioreq,
        ThreadKind::Qtest,
        ThreadKind::Probe,
        ThreadKind::PvMain,
        ThreadKind::BlockWorker,
        ThreadKind::QmpListener,
        ThreadKind::QmpSession,
        ThreadKind::QmpWriter,
        ThreadKind::Signals,
        ThreadKind::RunState,
        ThreadKind::XsCommand,
        ThreadKind::SerialPty,
        ThreadKind::QdiskSupervisor,
        ThreadKind::QdiskDevice,
        ThreadKind::QdiskWorker,
        ThreadKind::ConsoleDevice,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Ioreq => "ioreq",
            ThreadKind::Qtest => "qtest",
            ThreadKind::Probe => "probe",
            ThreadKind::PvMain => "xenpv",
            ThreadKind::BlockWorker => "block-worker",
            ThreadKind::QmpListener => "qmp-listener",
            ThreadKind::QmpSession => "qmp-session",
            ThreadKind::QmpWriter => "qmp-writer",
            ThreadKind::Signals => "signals",
            ThreadKind::RunState => "runstate",
            ThreadKind::XsCommand => "xs-command",
            ThreadKind::SerialPty => "serial-pty",
            ThreadKind::QdiskSupervisor => "qdisk",
            ThreadKind::QdiskDevice => "qdisk-device",
            ThreadKind::QdiskWorker => "qdisk-worker",
            ThreadKind::ConsoleDevice => "console",
        }
    }
}

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("-sandbox: building the {kind} filter: {source}")]
    Build {
        kind: &'static str,
        source: seccompiler::BackendError,
    },
    #[error("-sandbox: installing the {kind} filter: {source} (-sandbox off runs without it)")]
    Install {
        kind: &'static str,
        source: seccompiler::Error,
    },
    #[error("-sandbox: installing the SIGSYS handler: {0}")]
    Handler(std::io::Error),
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turn the sandbox on for every later `enter`, with the SIGSYS handler
/// that reports a forbidden call. Called once, by the launcher, before it
/// starts any thread.
pub fn enable() -> Result<(), SandboxError> {
    sigsys::install().map_err(SandboxError::Handler)?;
    sigsys::prepare_malloc();
    ENABLED.store(true, Ordering::SeqCst);
    Ok(())
}

pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// Restrict the calling thread to its kind's calls, if the sandbox is on.
pub fn enter(kind: ThreadKind) -> Result<(), SandboxError> {
    if !is_enabled() {
        return Ok(());
    }
    install(kind)
}

/// For threads whose loop has no error path: a filter that cannot be
/// installed ends the process (running unfiltered would be silent).
pub fn enter_or_exit(kind: ThreadKind) {
    if let Err(e) = enter(kind) {
        log::error!("{e}");
        std::process::exit(1);
    }
}

/// Install `kind`'s filter on the calling thread, whatever the switch says
/// (the tests' children use it directly).
pub fn install(kind: ThreadKind) -> Result<(), SandboxError> {
    let program = compile(kind)?;
    sigsys::set_thread_kind(kind.name());
    seccompiler::apply_filter(&program).map_err(|source| SandboxError::Install {
        kind: kind.name(),
        source,
    })
}

/// The BPF program for `kind`: its groups merged per syscall; a call any
/// group allows unconditionally is allowed unconditionally.
pub fn compile(kind: ThreadKind) -> Result<BpfProgram, SandboxError> {
    let build = |source| SandboxError::Build {
        kind: kind.name(),
        source,
    };
    // None: any arguments; Some(list): one of these (arg, value) pairs.
    let mut merged: BTreeMap<i64, Option<Vec<(u8, u64)>>> = BTreeMap::new();
    for group in groups(kind) {
        for call in group.calls {
            let entry = merged
                .entry(call.nr)
                .or_insert_with(|| Some(Vec::new()));
            match (call.only, entry.as_mut()) {
                (None, _) => *entry = None,
                (Some((arg, values)), Some(list)) => list.extend(values.iter().map(|v| (arg, *v))),
                (Some(_), None) => {}
            }
        }
    }
    let mut rules = BTreeMap::new();
    for (nr, only) in merged {
        let list = match only {
            None => Vec::new(),
            Some(pairs) => pairs
                .into_iter()
                .map(|(arg, value)| {
                    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
                        .and_then(|c| SeccompRule::new(vec![c]))
                        .map_err(build)
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        rules.insert(nr, list);
    }
    let arch = std::env::consts::ARCH.try_into().map_err(build)?;
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, arch)
        .map_err(build)?;
    filter.try_into().map_err(build)
}

#[cfg(test)]
mod tests;
