//! From a parsed command line to a running machine behind its front end.
//!
//! Order matters for libxl: everything that can fail (options, images, Xen
//! set-up) happens before "running" is written, so a bad configuration ends
//! with a one-line error and a non-zero exit before the guest runs.

mod kernel_boot;
mod ops;
pub mod platform;
mod qtest;
mod xen;
mod xenpv;

use crate::block::engine::QueueKind;
use crate::block::{self, BlockBackend};
use crate::control::cmdline::{self, Command, DriveSpec, Flavour, MachineConfig};
use crate::devices::ide::{DriveConfig, IdeController, MediaKind};
use crate::machine::pc::{PcMachine, ResumeHook};
use crate::machine::{GuestMemory, IrqLine, VmControl};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Why start-up ended: one line, naming the option or the step, before
/// the guest runs (see the module doc). Each cause keeps its type.
#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("{0}")]
    Config(#[from] cmdline::ConfigError),
    #[error("-drive file={file}: {source}")]
    Image { file: String, source: block::BlockError },
    #[error("-m {0}: cannot map guest RAM: {1}")]
    Ram(u64, std::io::Error),
    #[error("-qtest {0}: {1}")]
    Qtest(String, std::io::Error),
    /// `label`: the monitor's chardev id, or "-qmp".
    #[error("-qmp/-chardev {label}: {source}")]
    Qmp { label: &'static str, source: crate::control::QmpError },
    #[error("xen: {0}")]
    Xen(#[from] crate::xen::XenError),
    #[error("xen: no domain given (-xen-domid or -d)")]
    NoDomain,
    #[error("xen: domain id {0} is out of range")]
    DomidOutOfRange(u32),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Boot(#[from] crate::devices::cmos::BootOrderError),
    #[error("-serial pty: {0}")]
    SerialPty(#[from] crate::devices::uart::pty::PtyError),
    #[error("-serial pty: reader thread: {0}")]
    SerialReader(std::io::Error),
    /// `-incoming`: the saved device state was refused.
    #[error("-incoming: {0}")]
    Incoming(String),
    #[error("{0}")]
    Engine(#[from] crate::block::engine::EngineError),
    /// Without these threads we could not be stopped (signals) or would
    /// hold I/O forever: start-up ends instead of running crippled.
    #[error(transparent)]
    KernelBoot(#[from] kernel_boot::KernelBootError),
    #[error("cannot start the {name} thread: {source}")]
    Thread { name: &'static str, source: std::io::Error },
}

/// Why `-runas`/`-chroot` (dm_restrict) could not be applied.
#[derive(Debug, Error)]
pub enum PrivilegeError {
    #[error("-runas {0}: no such user")]
    NoSuchUser(String),
    #[error("-runas {0}: no such group")]
    NoSuchGroup(String),
    #[error("-runas {0}: give a group for a numeric user")]
    NoGroup(String),
    #[error("-chroot {}: {source}", dir.display())]
    Chroot { dir: std::path::PathBuf, source: nix::Error },
    #[error("-runas: {0}")]
    Switch(nix::Error),
}

/// Spawn a thread the device model cannot do without.
pub(crate) fn spawn_essential<F>(name: &'static str, f: F) -> Result<std::thread::JoinHandle<()>, LaunchError>
where
    F: FnOnce() + Send + 'static,
{
    spawn_essential_with(std::thread::Builder::new().name(name.into()), name, f)
}

fn spawn_essential_with<F>(builder: std::thread::Builder, name: &'static str, f: F) -> Result<std::thread::JoinHandle<()>, LaunchError>
where
    F: FnOnce() + Send + 'static,
{
    builder.spawn(f).map_err(|source| LaunchError::Thread { name, source })
}

pub fn run(args: Vec<String>) -> i32 {
    let command = match cmdline::parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xen-ioemu: {e}");
            return 1;
        }
    };
    let config = match command {
        Command::PrintAndExit { text } => {
            print!("{text}");
            return 0;
        }
        Command::Run(config) => config,
    };
    for w in &config.warnings {
        log::warn!("{w}");
    }
    if config.sandbox {
        if let Err(e) = crate::sandbox::enable() {
            eprintln!("xen-ioemu: {e}");
            return 1;
        }
    }
    if let Err(e) = platform::boot_order(&config) {
        eprintln!("xen-ioemu: {e}");
        return 1;
    }
    let result = match config.flavour {
        Flavour::Qtest => qtest::run_qtest(config),
        Flavour::QemuXen | Flavour::Traditional | Flavour::Probe => xen::run_xen(config),
        Flavour::XenPv => xenpv::run_xenpv(config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

/// Open every drive's image; an empty CD-ROM drive has no backend.
pub fn open_drives(specs: &[DriveSpec]) -> Result<[Option<DriveConfig>; 4], LaunchError> {
    let mut drives: [Option<DriveConfig>; 4] = Default::default();
    for spec in specs {
        let backend: Option<Box<dyn BlockBackend>> = match &spec.file {
            Some(file) => Some(
                block::open::open_image(&block::open::ImageSpec {
                    file: file.clone(),
                    format: spec.format.clone(),
                    cache: spec.cache,
                    read_only: spec.read_only,
                })
                .map_err(|source| LaunchError::Image { file: file.clone(), source })?,
            ),
            None => None,
        };
        let slot = spec.slot as usize;
        drives[slot] = Some(DriveConfig {
            id: spec.id.clone(),
            media: if spec.cdrom { MediaKind::Cdrom } else { MediaKind::Disk },
            backend,
            filename: spec.file.clone().unwrap_or_default(),
            cache: spec.cache,
            werror: spec.werror,
            rerror: spec.rerror,
            serial: spec.serial.clone(),
            model: spec.model.clone(),
            version: None,
        });
    }
    Ok(drives)
}

/// Re-issues the IDE's held requests when the VM continues.
struct IdeResume(Arc<Mutex<IdeController>>);

impl ResumeHook for IdeResume {
    fn resume(&mut self, vm: &VmControl) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).restart_held_requests_and_run(vm);
    }
}

/// The PIIX3 IDE function both fronts share: legacy ports, 00:01.1 with
/// its BAR4, and the re-run of held requests on `cont`. The platform
/// functions around it come from `platform::add_platform`. The fronts run
/// the drives' queues `QueueKind::Threaded`; the fuzz targets inline.
pub fn assemble_pc(
    machine: &mut PcMachine,
    drives: [Option<DriveConfig>; 4],
    mem: Arc<dyn GuestMemory>,
    irq14: Arc<dyn IrqLine>,
    irq15: Arc<dyn IrqLine>,
    kind: QueueKind,
) -> Result<Arc<Mutex<IdeController>>, LaunchError> {
    let vm = machine.vm().clone();
    let ide = Arc::new(Mutex::new(IdeController::new(drives, mem, [irq14, irq15], vm)));
    IdeController::start_engine_as(&ide, kind)?;
    for (base, len) in [(0x1f0u16, 8u16), (0x3f6, 1), (0x170, 8), (0x376, 1)] {
        if let Err(e) = machine.add_port_device(ide.clone(), base, len) {
            log::error!("IDE ports {base:#x}: {e}");
        }
    }
    machine.add_pci_function(0x09, ide.clone(), Some(ide.clone()));
    machine.add_resume_hook(Box::new(IdeResume(ide.clone())));
    Ok(ide)
}

/// Ignore a signal for the whole process.
pub(crate) fn ignore_signal(sig: nix::sys::signal::Signal) {
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety
    // question arises.
    if let Err(e) = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) } {
        log::warn!("ignoring {sig}: {e}");
    }
}

/// Start the qdisk backend with the `-global xen-block.*` policy; the
/// disks it serves go into `disks` for QMP.
fn start_qdisks(config: &MachineConfig, domid: u16, disks: crate::pvblock::PvDiskTable) -> crate::xen::qdisk::QdiskService {
    let pv = config.pv_disk_policy;
    crate::xen::qdisk::QdiskService::start(
        domid,
        crate::xen::qdisk::QdiskPolicy { werror: pv.werror, rerror: pv.rerror, retry_interval: pv.retry_interval },
        disks,
    )
}

/// `-chroot DIR` and `-runas USER[:GROUP]` (or `UID:GID`), applied after
/// every privileged set-up step, as QEMU does for dm_restrict.
pub(crate) fn drop_privileges(config: &MachineConfig) -> Result<(), LaunchError> {
    use nix::unistd::{chdir, chroot, setgid, setgroups, setuid, Gid, Group, Uid, User};
    let target = match &config.runas {
        None => None,
        Some(spec) => {
            let (user, group) = match spec.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (spec.as_str(), None),
            };
            let (uid, mut gid) = match user.parse::<u32>() {
                Ok(uid) => (Uid::from_raw(uid), None),
                Err(_) => match User::from_name(user) {
                    Ok(Some(u)) => (u.uid, Some(u.gid)),
                    _ => return Err(PrivilegeError::NoSuchUser(spec.clone()).into()),
                },
            };
            if let Some(g) = group {
                gid = Some(match g.parse::<u32>() {
                    Ok(gid) => Gid::from_raw(gid),
                    Err(_) => match Group::from_name(g) {
                        Ok(Some(g)) => g.gid,
                        _ => return Err(PrivilegeError::NoSuchGroup(spec.clone()).into()),
                    },
                });
            }
            let gid = gid.ok_or_else(|| PrivilegeError::NoGroup(spec.clone()))?;
            Some((uid, gid))
        }
    };
    if let Some(dir) = &config.chroot {
        chroot(dir).and_then(|_| chdir("/")).map_err(|source| PrivilegeError::Chroot { dir: dir.clone(), source })?;
    }
    if let Some((uid, gid)) = target {
        setgroups(&[gid])
            .and_then(|_| setgid(gid))
            .and_then(|_| setuid(uid))
            .map_err(PrivilegeError::Switch)?;
        log::info!("running as uid {uid} gid {gid}");
    }
    Ok(())
}

/// What query-chardev lists: the serial ports and the QMP monitors.
pub(crate) fn chardevs(config: &MachineConfig, platform: &platform::PlatformHandles) -> Vec<(String, String)> {
    let mut list = Vec::new();
    if let Some(tty) = &platform.serial_tty {
        list.push(("serial0".to_string(), format!("pty:{tty}")));
    }
    list.extend(crate::control::qmp::monitor_chardevs(&config.qmp));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_cannot_be_spawned_is_a_one_line_launch_error() {
        // No address space holds this stack, so the spawn itself fails.
        let builder = std::thread::Builder::new().stack_size(usize::MAX / 2);
        let err = spawn_essential_with(builder, "signals", || {}).expect_err("spawn must fail");
        assert!(matches!(err, LaunchError::Thread { name: "signals", .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with("cannot start the signals thread: "), "{text}");
        assert!(!text.contains('\n'));
    }
}
