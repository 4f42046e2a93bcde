//! The Xen flavours: an ioreq server for the domain libxl created.

use super::ops::PcOps;
use super::{assemble_pc, open_drives, LaunchError};
use crate::block::engine::QueueKind;
use crate::control::{drives_from_xenstore, Flavour, MachineConfig, QmpInfo, QmpServer};
use crate::devices::cmos::CmosScope;
use crate::devices::ide::IdeController;
use crate::machine::hold::HoldGate;
use crate::machine::pc::{BusEffects, PcMachine, PortRangeChange};
use crate::machine::{EventSink, IrqLine, PowerControl, RunState, VmControl};
use crate::xen::{
    DeviceModelHandle, DomainPauser, IoHandler, IoRangeKind, IoreqServer, IsaIrq, ServerWaker, XenGuestMemory, XenPowerControl,
    XenStore,
};
use nix::sys::signal::{SigSet, Signal};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn xen_err(e: crate::xen::XenError) -> LaunchError {
    LaunchError::Xen(e)
}

/// Routes the guest's requests into the machine and acts on their bus
/// effects: the ioreq server's claimed port ranges follow the BARs the
/// guest moves, PIIX3 PIRQ routes go to Xen's virtual PCI links, power
/// requests become domain shutdowns.
struct MachineIo {
    machine: Arc<Mutex<PcMachine>>,
    ide: Arc<Mutex<IdeController>>,
    dm: Arc<DeviceModelHandle>,
    server_id: u16,
    power: XenPowerControl,
    /// Xen refusing a range is reported per BAR move, and the guest moves
    /// BARs as often as it likes.
    log_limiter: crate::logging::RateLimiter,
}

impl MachineIo {
    fn apply(&mut self, effects: BusEffects) {
        apply_bus_effects(&self.dm, self.server_id, &self.power, &mut self.log_limiter, effects);
    }
}

/// What a guest access (or a loaded state) changed on the buses, told to
/// Xen: port claims follow the BARs, PIIX3 routes go to the virtual PCI
/// links, power requests become domain shutdowns.
fn apply_bus_effects(
    dm: &DeviceModelHandle,
    server_id: u16,
    power: &XenPowerControl,
    log_limiter: &mut crate::logging::RateLimiter,
    effects: BusEffects,
) {
    for change in effects.ports {
        let result = match change {
            PortRangeChange::Added(r) => dm.map_io_range_to_ioreq_server(server_id, IoRangeKind::Port, r.base, r.last()),
            PortRangeChange::Removed(r) => dm.unmap_io_range_from_ioreq_server(server_id, IoRangeKind::Port, r.base, r.last()),
        };
        if let Err(e) = result {
            log_limiter.log(log::Level::Error, "bar-move-rejected", format_args!("following a BAR move ({change:?}): {e}"));
        }
    }
    // As QEMU's xen_piix_pci_write_config_client: the link goes to Xen
    // (0 = off) on every route register write.
    for route in effects.pirq_routes {
        if let Err(e) = dm.set_pci_link_route(route.link, route.irq.unwrap_or(0)) {
            log_limiter.log(
                log::Level::Warn,
                "pci-link-route",
                format_args!("set_pci_link_route({}, {:?}): {e}", route.link, route.irq),
            );
        }
    }
    if let Some(request) = effects.power {
        power.request(request);
    }
}

impl IoHandler for MachineIo {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        self.machine.lock().unwrap_or_else(|e| e.into_inner()).pio_read(port, size)
    }

    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        let effects = self.machine.lock().unwrap_or_else(|e| e.into_inner()).pio_write(port, size, value);
        self.apply(effects);
    }

    fn mmio_read(&mut self, _addr: u64, size: u8) -> u64 {
        // We claim no MMIO ranges; Xen only sends what we claimed.
        if size >= 8 { u64::MAX } else { (1u64 << (8 * size as u32)) - 1 }
    }

    fn mmio_write(&mut self, _addr: u64, _size: u8, _value: u64) {}

    fn pci_config_read(&mut self, bus: u8, devfn: u8, reg: u16, size: u8) -> u32 {
        self.machine.lock().unwrap_or_else(|e| e.into_inner()).pci_config_read(bus, devfn, reg, size)
    }

    fn pci_config_write(&mut self, bus: u8, devfn: u8, reg: u16, size: u8, value: u32) {
        let effects = self.machine.lock().unwrap_or_else(|e| e.into_inner()).pci_config_write(bus, devfn, reg, size, value);
        self.apply(effects);
    }

    /// While the VM is not running (io-error hold, QMP stop) every vCPU
    /// that touches one of our devices waits: nothing it does can be lost
    /// or answered with a stale value. Decided under the IDE lock, the one
    /// its completions (and so its holds) take; from here to
    /// `request_done` completions wait, so one request (a whole `rep`)
    /// never sees a command finish in its middle.
    fn hold_request(&mut self) -> bool {
        self.ide.lock().unwrap_or_else(|e| e.into_inner()).begin_guest_request()
    }

    fn request_done(&mut self) {
        self.ide.lock().unwrap_or_else(|e| e.into_inner()).end_guest_request();
    }
}

/// Signals that end the device model: libxl sends SIGHUP on `xl destroy`.
pub(super) fn block_exit_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        log::warn!("blocking exit signals: {e}");
    }
    set
}

/// Exit signals stay blocked in every thread, so without this thread
/// `xl destroy` (SIGHUP) could never end us: failing to start it is fatal.
pub(super) fn spawn_signal_thread(set: SigSet, on_signal: impl Fn(Signal) + Send + 'static) -> Result<(), LaunchError> {
    super::spawn_essential("signals", move || {
        crate::sandbox::enter_or_exit(crate::sandbox::ThreadKind::Signals);
        loop {
            match set.wait() {
                Ok(sig) => on_signal(sig),
                Err(e) => {
                    log::error!("sigwait: {e}");
                    return;
                }
            }
        }
    })?;
    Ok(())
}

/// How long a held request waits before the watcher retries it by itself.
/// A zero `retry-interval` means "only on `cont`", and `cont` re-runs every
/// held request, so the watcher retries only when every holding drive asked
/// for retries, and never sooner than any of them asked.
fn auto_retry_interval(held: &[String], drives: &[crate::control::DriveSpec]) -> Option<Duration> {
    let mut interval: Option<Duration> = None;
    for id in held {
        let d = drives.iter().find(|d| &d.id == id)?.retry_interval;
        if d.is_zero() {
            return None;
        }
        interval = Some(interval.map_or(d, |i| i.max(d)));
    }
    interval
}

/// Wake the ioreq loop on every run-state change (so held requests are
/// re-examined after `cont`), retry held requests by themselves, at the
/// holding drive's `retry-interval`, while the VM is stopped by an I/O error,
/// and pause the domain for the hold (`machine::hold`).
/// Essential: without it a `cont` would not reach vCPUs waiting in the loop.
fn spawn_run_state_watcher(
    machine: Arc<Mutex<PcMachine>>,
    ide: Arc<Mutex<crate::devices::ide::IdeController>>,
    vm: VmControl,
    waker: Arc<ServerWaker>,
    drives: Vec<crate::control::DriveSpec>,
    gate: Arc<Mutex<HoldGate>>,
) -> Result<(), LaunchError> {
    super::spawn_essential("runstate", move || {
        crate::sandbox::enter_or_exit(crate::sandbox::ThreadKind::RunState);
        let mut seen = vm.generation();
        let mut stopped_since = std::time::Instant::now();
        loop {
            // While the guest is paused by us and the VM runs again, the
            // release waits only for the retried request's completion,
            // which changes no run state: look often.
            let releasing = gate.lock().unwrap_or_else(|e| e.into_inner()).wants_release(vm.state());
            let now = vm.wait_change(seen, Duration::from_millis(if releasing { 2 } else { 250 }));
            if now != seen {
                seen = now;
                stopped_since = std::time::Instant::now();
                waker.wake();
            }
            let state = vm.state();
            step_hold(&gate, &ide, state);
            match state {
                RunState::Shutdown => return,
                RunState::IoError => {
                    let held = ide.lock().unwrap_or_else(|e| e.into_inner()).held_drive_ids();
                    if let Some(interval) = auto_retry_interval(&held, &drives) {
                        if stopped_since.elapsed() >= interval {
                            log::info!("retrying held I/O of {held:?} after {} s", interval.as_secs_f32());
                            machine.lock().unwrap_or_else(|e| e.into_inner()).cont();
                            stopped_since = std::time::Instant::now();
                        }
                    }
                }
                _ => {}
            }
        }
    })?;
    Ok(())
}

/// One step of the domain hold. "Settled" is read under the IDE lock, the
/// one completions run under: no request on the host and none held means
/// the retried request's completion, and the interrupt it raises, are done.
fn step_hold(gate: &Mutex<HoldGate>, ide: &Mutex<crate::devices::ide::IdeController>, state: RunState) {
    let mut gate = gate.lock().unwrap_or_else(|e| e.into_inner());
    let settled = !gate.is_paused() || {
        let ide = ide.lock().unwrap_or_else(|e| e.into_inner());
        !ide.has_request_in_flight() && ide.held_drive_ids().is_empty()
    };
    gate.step(state, settled);
}

pub fn run_xen(config: MachineConfig) -> Result<i32, LaunchError> {
    // libxl gives a device model 60 s to report; how much of that we use is
    // worth seeing in the log.
    let started = std::time::Instant::now();
    let exit_signals = block_exit_signals();
    super::ignore_signal(Signal::SIGPIPE);
    // dm_restrict makes libxl cap RLIMIT_FSIZE; a write past it must come
    // back as EFBIG (reported to the guest), not kill us.
    super::ignore_signal(Signal::SIGXFSZ);
    if config.flavour == Flavour::Probe {
        return run_probe(config, exit_signals);
    }
    let domid = config.domid.ok_or(LaunchError::NoDomain)?;
    let domid16 = u16::try_from(domid).map_err(|_| LaunchError::DomidOutOfRange(domid))?;
    crate::logging::set_domid(domid);
    // Under Xen only with -kernel, as qemu-xen; its files are read and
    // checked before anything of Xen's is opened.
    let fw_cfg = super::kernel_boot::prepare_fw_cfg(&config, false)?;

    // A restore's state is read whole, and checked, before any image is
    // opened: the images are the old host's until it answered the save.
    let incoming_blob = match config.incoming {
        Some(crate::control::Incoming::Fd(fd)) => Some(read_incoming_fd(fd)?),
        _ => None,
    };
    if let Some(blob) = &incoming_blob {
        crate::machine::savestate::MachineState::decode(blob).map_err(|e| LaunchError::Incoming(e.to_string()))?;
    }
    let dm = Arc::new(DeviceModelHandle::open(domid16).map_err(xen_err)?);
    let xenstore = XenStore::open().map_err(xen_err)?;
    let drive_specs = if config.flavour == Flavour::Traditional {
        drives_from_xenstore(&xenstore, domid)?
    } else {
        config.drives.clone()
    };
    for d in &drive_specs {
        log::info!("drive {} slot {} file {:?} werror={} rerror={}", d.id, d.slot, d.file, d.werror.as_str(), d.rerror.as_str());
    }
    let drives = open_drives(&drive_specs)?;
    let platform_device = if config.flavour == Flavour::Traditional {
        !xenstore.platform_device_disabled(domid16)
    } else {
        config.xen_platform_device
    };

    let events = EventSink::new();
    let initial = match config.incoming {
        Some(_) => RunState::InMigrate,
        None if config.start_paused => RunState::Prelaunch,
        None => RunState::Running,
    };
    let vm = VmControl::new(initial, events.clone());
    let mut server = IoreqServer::create(dm.clone(), true).map_err(xen_err)?;
    let memory = Arc::new(XenGuestMemory::sized_for_guest(dm.clone(), config.ram_mib << 20));
    let irq = |n: u8| -> Arc<dyn IrqLine> { Arc::new(IsaIrq::new(dm.clone(), n)) };

    let mut machine = PcMachine::new(vm.clone());
    let ide = assemble_pc(&mut machine, drives, memory.clone(), irq(14), irq(15), QueueKind::Threaded)?;
    let platform = super::platform::add_platform(
        &mut machine,
        &config,
        &ide,
        super::platform::PlatformWiring {
            irq: &irq,
            cmos_scope: CmosScope::NvramOnly,
            xen_platform: platform_device,
            smm: false,
        },
    )?;
    super::kernel_boot::attach_fw_cfg(&mut machine, fw_cfg, memory.clone());

    // A state from -incoming fd:N goes in before the ports are claimed,
    // so the claims follow the loaded BARs. The PCI link routes are Xen's
    // and were saved with the domain; they are sent again all the same.
    let machine = Arc::new(Mutex::new(machine));
    let route_links = {
        let dm = dm.clone();
        move |effects: BusEffects| {
            for route in effects.pirq_routes {
                if let Err(e) = dm.set_pci_link_route(route.link, route.irq.unwrap_or(0)) {
                    log::warn!("restoring PCI link route {}: {e}", route.link);
                }
            }
        }
    };
    let loader = PcOps::new(machine.clone(), ide.clone(), vm.clone(), Vec::new(), Box::new(|| {}), Box::new(|| {}))
        .with_state_loaded(Box::new(route_links), config.start_paused);
    if let Some(blob) = &incoming_blob {
        loader.load_state_blob(blob).map_err(|e| LaunchError::Incoming(e.to_string()))?;
    }
    drop(loader);
    let (claim_ranges, devfns) = {
        let m = machine.lock().unwrap_or_else(|e| e.into_inner());
        (m.claim_ranges(), m.pci_devfns())
    };
    let claimed: Vec<_> = claim_ranges.iter().map(|r| r.base as u16..=r.last() as u16).collect();
    server.claim_ports(&claimed).map_err(xen_err)?;
    for devfn in devfns {
        server.claim_pci(0, devfn).map_err(xen_err)?;
    }
    let waker = server.waker();

    let chardevs = super::chardevs(&config, &platform);
    let stop_on_quit = waker.clone();
    // A reset of a Xen guest is a reboot of the domain, as with QEMU.
    let reboot = XenPowerControl::new(dm.clone());
    let dirty_memory = memory.clone();
    // `-incoming defer`: the state comes by QMP with the ports claimed
    // already; what the loaded BARs changed goes to Xen as a BAR move does.
    let deferred_effects = {
        let (dm, server_id) = (dm.clone(), server.id());
        let power = XenPowerControl::new(dm.clone());
        let limiter = Mutex::new(crate::logging::RateLimiter::for_guest_lines());
        move |effects: BusEffects| {
            let mut limiter = limiter.lock().unwrap_or_else(|e| e.into_inner());
            apply_bus_effects(&dm, server_id, &power, &mut limiter, effects);
        }
    };
    let pv_disks = crate::pvblock::PvDiskTable::default();
    let ops = Arc::new(
        PcOps::new(
            machine.clone(),
            ide.clone(),
            vm.clone(),
            chardevs,
            Box::new(move || stop_on_quit.stop()),
            Box::new(move || crate::machine::PowerControl::request(&reboot, crate::machine::PowerRequest::Reboot)),
        )
        .with_dirty_log(Box::new(move |on| dirty_memory.set_dirty_logging(on)), {
            let memory = memory.clone();
            Box::new(move || memory.flush_dirty_log())
        })
        .with_state_loaded(Box::new(deferred_effects), config.start_paused)
        .with_pv_disks(pv_disks.clone()),
    );
    let _qmp = QmpServer::start_all(&config.qmp, ops, &events, &QmpInfo { name: config.name.clone(), vcpus: config.vcpus })
        .map_err(|source| LaunchError::Qmp { label: "libxl-cmd", source })?;

    if let Some(tty) = &platform.serial_tty {
        if let Err(e) = xenstore.publish_serial_tty(domid16, 0, tty) {
            log::warn!("publishing serial/0/tty: {e}");
        }
    }
    // It shares the ioreq server's privcmd descriptor: under dm_restrict
    // that is restricted below, the first hold's domctl is refused (EPERM)
    // and the hold falls back to blocking vCPUs at our ports (logged once).
    let gate = {
        let open = server.open_request_probe();
        let (ide, waker) = (ide.clone(), waker.clone());
        let serve = move |on: bool| {
            ide.lock().unwrap_or_else(|e| e.into_inner()).set_serve_while_held(on);
            if on {
                waker.wake();
            }
        };
        let pauser = pause::PauseWhenNoneOpen::new(
            Box::new(DomainPauser::new(dm.privcmd().clone(), domid16)),
            Box::new(move || open.any_open()),
            Box::new(serve),
        );
        Arc::new(Mutex::new(HoldGate::new(Box::new(pauser))))
    };
    spawn_run_state_watcher(machine.clone(), ide.clone(), vm.clone(), waker.clone(), drive_specs.clone(), gate.clone())?;
    let signal_waker = waker.clone();
    spawn_signal_thread(exit_signals, move |sig| {
        log::info!("got {sig}; flushing and stopping");
        signal_waker.stop();
    })?;

    // Before "running": libxl has written the qdisk backend nodes already
    // and does not wait for them, the guest's frontend will.
    let qdisks = super::start_qdisks(&config, domid16, pv_disks);
    // The PV consoles libxl left to us (xl channel=), opened here too.
    let consoles = crate::xen::console::ConsoleService::start(domid16, &config.channel_sockets);
    if config.domid_restrict {
        server.restrict().map_err(xen_err)?;
    } else {
        xenstore.report_state(domid16, "running").map_err(xen_err)?;
        log::info!("reported running {} ms after start", started.elapsed().as_millis());
    }
    super::drop_privileges(&config)?;
    if config.flavour == Flavour::Traditional {
        spawn_traditional_command_watcher(xenstore, domid16, machine.clone())?;
    }
    log::info!("serving domain {domid}");

    let mut io = MachineIo {
        machine: machine.clone(),
        ide: ide.clone(),
        dm: dm.clone(),
        server_id: server.id(),
        power: XenPowerControl::new(dm.clone()),
        log_limiter: crate::logging::RateLimiter::for_guest_lines(),
    };
    // Start-up is over: images open, the ioreq server set up, sockets
    // bound, privileges dropped.
    crate::sandbox::enter(crate::sandbox::ThreadKind::Ioreq)?;
    let served = server.run(&mut io, &*memory);
    vm.shutdown();
    // Not left to the watcher: the process may end before it looks again,
    // and a domain we paused must not stay paused behind us.
    step_hold(&gate, &ide, RunState::Shutdown);
    let flushed = ide.lock().unwrap_or_else(|e| e.into_inner()).flush_all();
    qdisks.shutdown();
    consoles.shutdown();
    drop(server);
    served.map_err(xen_err)?;
    // Counts still held by the limiter would die with the process.
    crate::logging::ratelimit::flush_global();
    if let Err(e) = flushed {
        log::error!("flushing images at exit: {e}");
        return Ok(1);
    }
    log::info!("device model for domain {domid} exiting");
    Ok(0)
}

/// The file libxl opened for `-incoming fd:N` (qemu-resume.<domid>), read
/// whole (bounded) and closed.
fn read_incoming_fd(fd: i32) -> Result<Vec<u8>, LaunchError> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only looks the descriptor up.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(LaunchError::Incoming(format!("-incoming fd:{fd}: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: the descriptor is open (checked above) and was handed to us
    // by libxl for this purpose alone; nothing else here owns it.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    crate::machine::savestate::read_state_file(file).map_err(|e| LaunchError::Incoming(format!("-incoming fd:{fd}: {e}")))
}

/// libxl 4.20+ starts the device model once with `-machine none` to ask
/// QMP which options it has, then quits it.
fn run_probe(config: MachineConfig, exit_signals: SigSet) -> Result<i32, LaunchError> {
    let events = EventSink::new();
    let vm = VmControl::new(RunState::Prelaunch, events.clone());
    let done = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let quit = done.clone();
    let ops = Arc::new(super::ops::ProbeOps::new(vm, Box::new(move || {
        *quit.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        quit.1.notify_all();
    })));
    let _qmp = QmpServer::start_all(&config.qmp, ops, &events, &QmpInfo { name: config.name.clone(), vcpus: config.vcpus })
        .map_err(|source| LaunchError::Qmp { label: "libxl-cmd", source })?;
    let on_signal = done.clone();
    spawn_signal_thread(exit_signals, move |_| {
        *on_signal.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        on_signal.1.notify_all();
    })?;
    crate::sandbox::enter(crate::sandbox::ThreadKind::Probe)?;
    let mut g = done.0.lock().unwrap_or_else(|e| e.into_inner());
    while !*g {
        g = done.1.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    Ok(0)
}

/// qemu-xen-traditional's control node: libxl writes `continue` (after a
/// pause) or `save` to device-model/<domid>/command and waits for state.
/// Essential: without it a guest started paused would never run.
fn spawn_traditional_command_watcher(xenstore: XenStore, domid: u16, machine: Arc<Mutex<PcMachine>>) -> Result<(), LaunchError> {
    super::spawn_essential("xs-command", move || {
        crate::sandbox::enter_or_exit(crate::sandbox::ThreadKind::XsCommand);
        loop {
            std::thread::sleep(Duration::from_millis(500));
            match xenstore.take_command(domid).as_deref() {
                None => {}
                Some("continue") => {
                    machine.lock().unwrap_or_else(|e| e.into_inner()).cont();
                    if let Err(e) = xenstore.report_state(domid, "running") {
                        log::warn!("reporting running: {e}");
                    }
                }
                Some(other) => log::warn!("device-model command '{other}' is not supported (save/restore is not implemented)"),
            }
        }
    })?;
    Ok(())
}

#[path = "xen_pause.rs"]
mod pause;

#[cfg(test)]
#[path = "xen_hold_tests.rs"]
mod hold_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::mem::{InjectedFault, MemBackend};
    use crate::block::{BlockOp, CacheMode, ErrorPolicy};
    use crate::control::DriveSpec;
    use crate::devices::bus::BusDevice;
    use crate::devices::ide::tests::disk_on;
    use crate::devices::ide::{DriveConfig, IdeController};

    fn spec(id: &str, slot: u8, retry: u64) -> DriveSpec {
        DriveSpec {
            id: id.into(),
            slot,
            cdrom: false,
            file: Some("/images/x.img".into()),
            format: "raw".into(),
            cache: CacheMode::Writeback,
            read_only: false,
            werror: ErrorPolicy::Enospc,
            rerror: ErrorPolicy::Report,
            retry_interval: Duration::from_secs(retry),
            serial: None,
            model: None,
            device_id: None,
        }
    }

    #[test]
    fn only_the_holding_drives_interval_decides_an_automatic_retry() {
        let drives = [spec("ide0-hd0", 0, 0), spec("ide0-hd1", 1, 5), spec("ide1-hd0", 2, 9)];
        let held = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // hd0 said "only on cont": another drive's interval must not retry it.
        assert_eq!(auto_retry_interval(&held(&["ide0-hd0"]), &drives), None);
        assert_eq!(auto_retry_interval(&held(&["ide0-hd1"]), &drives), Some(Duration::from_secs(5)));
        assert_eq!(auto_retry_interval(&held(&["ide1-hd0"]), &drives), Some(Duration::from_secs(9)));
        // `cont` re-runs both channels: never sooner than either asked, and
        // not at all when one of them waits for `cont`.
        assert_eq!(auto_retry_interval(&held(&["ide0-hd1", "ide1-hd0"]), &drives), Some(Duration::from_secs(9)));
        assert_eq!(auto_retry_interval(&held(&["ide0-hd0", "ide1-hd0"]), &drives), None);
        assert_eq!(auto_retry_interval(&held(&[]), &drives), None);
        assert_eq!(auto_retry_interval(&held(&["unknown"]), &drives), None);
    }

    struct NoMemory;
    impl crate::machine::GuestMemory for NoMemory {
        fn read(&self, gpa: u64, _: &mut [u8]) -> Result<(), crate::machine::MemError> {
            Err(crate::machine::MemError::OutOfRange { gpa, len: 0 })
        }
        fn write(&self, gpa: u64, _: &[u8]) -> Result<(), crate::machine::MemError> {
            Err(crate::machine::MemError::OutOfRange { gpa, len: 0 })
        }
    }

    struct NoIrq;
    impl IrqLine for NoIrq {
        fn set_level(&self, _: bool) {}
    }

    #[test]
    fn the_controller_names_the_drive_whose_request_is_held() {
        let disk = |id: &str, fail: bool| {
            let mut b = MemBackend::new(1 << 20);
            if fail {
                b.inject(InjectedFault { op: Some(BlockOp::Write), at_byte: None, errno: libc::ENOSPC, once: false });
            }
            DriveConfig { id: id.into(), ..disk_on(Box::new(b), ErrorPolicy::Enospc, ErrorPolicy::Report) }
        };
        let vm = VmControl::new(RunState::Running, EventSink::new());
        let irq = || -> Arc<dyn IrqLine> { Arc::new(NoIrq) };
        let ide = Arc::new(Mutex::new(IdeController::new(
            [Some(disk("ide0-hd0", false)), Some(disk("ide0-hd1", true)), None, None],
            Arc::new(NoMemory),
            [irq(), irq()],
            vm.clone(),
        )));
        IdeController::start_engine(&ide).unwrap();
        assert!(ide.lock().unwrap().held_drive_ids().is_empty());
        // PIO WRITE SECTORS, one sector at LBA 0 on the slave (hd1).
        for (off, v) in [(6u64, 0xf0u8), (2, 1), (3, 0), (4, 0), (5, 0), (7, 0x30)] {
            ide.lock().unwrap().write(0x1f0, off, &[v]);
        }
        for _ in 0..256 {
            ide.lock().unwrap().write(0x1f0, 0, &[0, 0]);
        }
        assert!(crate::devices::ide::wait_idle(&ide, Duration::from_secs(10)));
        assert_eq!(vm.state(), RunState::IoError);
        assert_eq!(ide.lock().unwrap().held_drive_ids(), vec!["ide0-hd1".to_string()]);
    }
}
