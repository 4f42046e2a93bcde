//! `-machine xenpv`: the device model libxl starts for a PV or PVH domain
//! that has disks only a device model serves (qcow2, `backendtype=qdisk`).
//! There is no emulated hardware, so no ioreq server: the qdisk backend,
//! QMP (libxl's query-status; query-block and query-blockstats list the
//! qdisk disks, for libxenstat and so xentop) and the exit signals, until
//! `xl destroy` (SIGHUP) or QMP `quit`.

use super::xen::{block_exit_signals, spawn_signal_thread};
use super::LaunchError;
use crate::control::{MachineConfig, QmpInfo, QmpServer, XenstoreRead};
use crate::machine::{EventSink, RunState, VmControl};
use crate::xen::XenStore;
use nix::sys::signal::Signal;
use std::sync::{Arc, Condvar, Mutex};

/// The PV devices libxl left to the device model that this one does not
/// serve (the framebuffer, keyboard, PV USB), as "kind/devid": the
/// guest's frontends would wait for them, so each is said in the log.
/// (Consoles are served: `crate::xen::console`.)
pub fn unserved_pv_devices(xs: &dyn XenstoreRead, domid: u16) -> Vec<String> {
    let mut unserved = Vec::new();
    for kind in ["vfb", "vkbd", "qusb"] {
        let base = format!("/local/domain/0/backend/{kind}/{domid}");
        for devid in xs.directory(&base) {
            unserved.push(format!("{kind}/{devid}"));
        }
    }
    unserved
}

pub fn run_xenpv(config: MachineConfig) -> Result<i32, LaunchError> {
    let started = std::time::Instant::now();
    let exit_signals = block_exit_signals();
    super::ignore_signal(Signal::SIGPIPE);
    super::ignore_signal(Signal::SIGXFSZ);
    let domid = config.domid.ok_or(LaunchError::NoDomain)?;
    let domid16 = u16::try_from(domid).map_err(|_| LaunchError::DomidOutOfRange(domid))?;
    crate::logging::set_domid(domid);
    let xenstore = XenStore::open().map_err(LaunchError::Xen)?;
    for device in unserved_pv_devices(&xenstore, domid16) {
        log::error!("PV device {device} of domain {domid} is left to the device model, which serves qdisk disks only: its frontend will wait");
    }

    let events = EventSink::new();
    let vm = VmControl::new(if config.start_paused { RunState::Prelaunch } else { RunState::Running }, events.clone());
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let finish = |done: &Arc<(Mutex<bool>, Condvar)>| {
        *done.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        done.1.notify_all();
    };
    // No emulated devices: the probe's QMP (the domain's vCPUs are Xen's;
    // stop/cont only change what query-status shows, libxl pauses and
    // unpauses the domain itself).
    let pv_disks = crate::pvblock::PvDiskTable::default();
    let ops = Arc::new(
        super::ops::ProbeOps::new(
            vm.clone(),
            Box::new({
                let done = done.clone();
                move || finish(&done)
            }),
        )
        .with_pv_disks(pv_disks.clone()),
    );
    let _qmp = QmpServer::start_all(&config.qmp, ops, &events, &QmpInfo { name: config.name.clone(), vcpus: config.vcpus })
        .map_err(|source| LaunchError::Qmp { label: "libxl-cmd", source })?;
    spawn_signal_thread(exit_signals, {
        let done = done.clone();
        move |sig| {
            log::info!("got {sig}; flushing and stopping");
            finish(&done)
        }
    })?;

    // libxl wrote the disks' backend nodes before it started us; they are
    // opened here, before privileges are dropped.
    let qdisks = super::start_qdisks(&config, domid16, pv_disks);
    // The PV consoles libxl left to us (xl channel=), opened here too.
    let consoles = crate::xen::console::ConsoleService::start(domid16, &config.channel_sockets);
    // Under dm_restrict libxl asks QMP query-status instead.
    if !config.domid_restrict {
        xenstore.report_state(domid16, "running").map_err(LaunchError::Xen)?;
        log::info!("reported running {} ms after start", started.elapsed().as_millis());
    }
    super::drop_privileges(&config)?;
    log::info!("serving the PV disks of domain {domid} (-machine xenpv)");
    crate::sandbox::enter(crate::sandbox::ThreadKind::PvMain)?;
    {
        let mut g = done.0.lock().unwrap_or_else(|e| e.into_inner());
        while !*g {
            g = done.1.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
    vm.shutdown();
    qdisks.shutdown();
    consoles.shutdown();
    crate::logging::ratelimit::flush_global();
    log::info!("device model for domain {domid} exiting");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::cmdline::tests::FakeStore;

    #[test]
    fn only_the_devices_meant_for_a_device_model_are_reported_unserved() {
        let nodes = [
            // Consoles are served (xen::console), whatever their type.
            ("/local/domain/3/device/console/1/type", "ioemu"),
            ("/local/domain/0/backend/console/3/1/frontend", "/local/domain/3/device/console/1"),
            ("/local/domain/0/backend/vfb/3/0/vnc", "1"),
            ("/local/domain/0/backend/vkbd/3/0/state", "1"),
            ("/local/domain/0/backend/qdisk/3/51712/params", "qcow2:/x.qcow2"),
            // Another domain's devices are not ours.
            ("/local/domain/0/backend/vfb/4/0/vnc", "1"),
        ];
        let mut xs = FakeStore::default();
        for (path, value) in nodes {
            xs.set(path, value);
        }
        assert_eq!(unserved_pv_devices(&xs, 3), vec!["vfb/0", "vkbd/0"]);
        assert!(unserved_pv_devices(&xs, 5).is_empty());
    }
}
