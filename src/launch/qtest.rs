//! The qtest flavour: QEMU's qtest protocol on stdio or a unix socket.

use super::ops::PcOps;
use super::{assemble_pc, open_drives, LaunchError};
use crate::block::engine::QueueKind;
use crate::control::{MachineConfig, QmpInfo, QmpServer, QtestEndpoint};
use crate::machine::pc::PcMachine;
use crate::devices::cmos::CmosScope;
use crate::machine::{EventSink, RunState, VmControl};
use crate::qtest::{AnonRam, QtestIrqs, QtestSession, QtestStream};
use std::io::BufReader;
use std::sync::{Arc, Mutex};

pub(super) fn run_qtest(config: MachineConfig) -> Result<i32, LaunchError> {
    let drives = open_drives(&config.drives)?;
    let events = EventSink::new();
    let initial = match config.incoming {
        Some(_) => RunState::InMigrate,
        None if config.start_paused => RunState::Prelaunch,
        None => RunState::Running,
    };
    let vm = VmControl::new(initial, events);
    let ram = Arc::new(AnonRam::new((config.ram_mib as usize) << 20).map_err(|e| LaunchError::Ram(config.ram_mib, e))?);

    let (input, output): (Box<dyn std::io::Read + Send>, Box<dyn std::io::Write + Send>) = match &config.qtest {
        Some(QtestEndpoint::Unix(path)) => {
            let sock = std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| LaunchError::Qtest(format!("unix:{}", path.display()), e))?;
            let out = sock.try_clone().map_err(|e| LaunchError::Qtest("unix".into(), e))?;
            (Box::new(sock), Box::new(out))
        }
        _ => (Box::new(std::io::stdin()), Box::new(std::io::stdout())),
    };
    let log: Option<Box<dyn std::io::Write + Send>> = match &config.qtest_log {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(Box::new(
            std::fs::File::create(p).map_err(|e| LaunchError::Qtest(format!("-qtest-log {}", p.display()), e))?,
        )),
        None => None,
    };
    let stream = QtestStream::new(output, log);
    let irqs = QtestIrqs::new(stream.clone());

    let mut machine = PcMachine::new(vm.clone());
    let ide = assemble_pc(&mut machine, drives, ram.clone(), irqs.line(14), irqs.line(15), QueueKind::Threaded)?;
    let line = |n: u8| irqs.line(n as usize);
    let platform = super::platform::add_platform(
        &mut machine,
        &config,
        &ide,
        super::platform::PlatformWiring {
            irq: &line,
            cmos_scope: CmosScope::Full,
            xen_platform: false,
            smm: true,
        },
    )?;
    let fw_cfg = super::kernel_boot::prepare_fw_cfg(&config, true)?;
    super::kernel_boot::attach_fw_cfg(&mut machine, fw_cfg, ram.clone());
    let machine = Arc::new(Mutex::new(machine));

    let chardevs = super::chardevs(&config, &platform);
    let reset_machine = machine.clone();
    let ops = Arc::new(PcOps::new(
        machine.clone(),
        ide.clone(),
        vm.clone(),
        chardevs,
        Box::new(|| std::process::exit(0)),
        Box::new(move || PcOps::reset_devices(&reset_machine)),
    )
    // No hypervisor claims our ports here: the loaded BARs need no one told.
    .with_state_loaded(Box::new(|_| {}), config.start_paused)
    // qtest RAM is ours, not a Xen guest's: nothing to report, but the
    // libxl save sequence runs unchanged against this front.
    .with_dirty_log(Box::new(|_| {}), Box::new(|| {})));
    if let Some(crate::control::Incoming::Fd(fd)) = config.incoming {
        use std::os::fd::FromRawFd;
        // SAFETY: F_GETFD only looks the descriptor up.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(LaunchError::Incoming(format!("-incoming fd:{fd}: {}", std::io::Error::last_os_error())));
        }
        // SAFETY: the descriptor is open (checked above) and was given to
        // us on the command line for this alone; nothing else owns it.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let blob = crate::machine::savestate::read_state_file(file).map_err(|e| LaunchError::Incoming(format!("-incoming fd:{fd}: {e}")))?;
        ops.load_state_blob(&blob).map_err(|e| LaunchError::Incoming(e.to_string()))?;
    }
    let _qmp = QmpServer::start_all(&config.qmp, ops, vm.events(), &QmpInfo { name: config.name.clone(), vcpus: config.vcpus })
        .map_err(|source| LaunchError::Qmp { label: "-qmp", source })?;

    crate::sandbox::enter(crate::sandbox::ThreadKind::Qtest)?;
    let mut session = QtestSession::new(machine.clone(), ram, irqs, stream);
    let mut reader = BufReader::new(input);
    let served = session.serve(&mut reader);
    if let Err(e) = ide.lock().unwrap_or_else(|e| e.into_inner()).flush_all() {
        log::error!("flushing images at exit: {e}");
    }
    served.map_err(|e| LaunchError::Qtest("stdio".into(), e))?;
    Ok(0)
}
