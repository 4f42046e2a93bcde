//! `-machine xenpv`: the device model libxl starts for a PV or PVH domain
//! that has disks only a device model serves (qcow2, `backendtype=qdisk`).
//! There is no emulated hardware, so no ioreq server: the qdisk backend,
//! QMP (libxl's query-status; query-block and query-blockstats answer an
//! empty list for now: the qdisk connections keep no per-drive figures
//! yet) and the exit signals, until `xl destroy` (SIGHUP) or QMP `quit`.

use super::xen::{block_exit_signals, spawn_signal_thread};
use super::LaunchError;
use crate::control::{MachineConfig, MachineError, MachineOps, QmpInfo, QmpServer, XenstoreRead};
use crate::machine::{DriveInfo, EventSink, RunState, VmControl};
use crate::xen::XenStore;
use nix::sys::signal::Signal;
use std::sync::{Arc, Condvar, Mutex};

/// What QMP can do to a PV domain's device model. The domain's vCPUs are
/// Xen's, not ours: `stop`/`cont` only change the state query-status shows
/// (libxl pauses and unpauses the domain itself).
pub struct PvOps {
    vm: VmControl,
    drives: Box<dyn Fn() -> Vec<DriveInfo> + Send + Sync>,
    on_quit: Box<dyn Fn() + Send + Sync>,
}

impl MachineOps for PvOps {
    fn run_state(&self) -> RunState {
        self.vm.state()
    }
    fn stop(&self) {
        self.vm.stop(RunState::Paused);
    }
    fn cont(&self) -> Result<(), MachineError> {
        self.vm.set_running();
        Ok(())
    }
    fn block_info(&self) -> Vec<DriveInfo> {
        (self.drives)()
    }
    fn eject(&self, device: &str, _force: bool) -> Result<(), MachineError> {
        Err(MachineError::NoSuchDevice(device.to_string()))
    }
    fn change_medium(&self, device: &str, _filename: &str, _read_only: Option<bool>) -> Result<(), MachineError> {
        Err(MachineError::NoSuchDevice(device.to_string()))
    }
    fn chardevs(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn system_reset(&self) -> Result<(), MachineError> {
        Err(MachineError::NoMachine)
    }
    fn quit(&self) {
        (self.on_quit)();
    }
}

/// The PV devices libxl left to the device model that this one does not
/// serve (the framebuffer, keyboard, secondary consoles, PV USB), as
/// "kind/devid": the guest's frontends would wait for them, so each is
/// said in the log.
pub fn unserved_pv_devices(xs: &dyn XenstoreRead, domid: u16) -> Vec<String> {
    let mut unserved = Vec::new();
    for kind in ["vfb", "vkbd", "console", "qusb"] {
        let base = format!("/local/domain/0/backend/{kind}/{domid}");
        for devid in xs.directory(&base) {
            // xenconsoled serves the consoles whose type says so.
            if kind == "console" && xs.read(&format!("{base}/{devid}/type")).as_deref() != Some("ioemu") {
                continue;
            }
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
    let ops = Arc::new(PvOps {
        vm: vm.clone(),
        drives: Box::new(Vec::new),
        on_quit: Box::new({
            let done = done.clone();
            move || finish(&done)
        }),
    });
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
    let pv = config.pv_disk_policy;
    let qdisks = crate::xen::qdisk::QdiskService::start(
        domid16,
        crate::xen::qdisk::QdiskPolicy { werror: pv.werror, rerror: pv.rerror, retry_interval: pv.retry_interval },
    );
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
    crate::logging::ratelimit::flush_global();
    log::info!("device model for domain {domid} exiting");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct FakeXenstore(BTreeMap<String, String>);

    impl XenstoreRead for FakeXenstore {
        fn read(&self, path: &str) -> Option<String> {
            self.0.get(path).cloned()
        }
        fn directory(&self, path: &str) -> Vec<String> {
            let prefix = format!("{path}/");
            let mut children: Vec<String> = self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or_default().to_string())
                .collect();
            children.dedup();
            children
        }
    }

    #[test]
    fn only_the_devices_meant_for_a_device_model_are_reported_unserved() {
        let nodes = [
            ("/local/domain/0/backend/console/3/0/type", "xenconsoled"),
            ("/local/domain/0/backend/console/3/1/type", "ioemu"),
            ("/local/domain/0/backend/vfb/3/0/vnc", "1"),
            ("/local/domain/0/backend/vkbd/3/0/state", "1"),
            ("/local/domain/0/backend/qdisk/3/51712/params", "qcow2:/x.qcow2"),
            // Another domain's devices are not ours.
            ("/local/domain/0/backend/vfb/4/0/vnc", "1"),
        ];
        let xs = FakeXenstore(nodes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        assert_eq!(unserved_pv_devices(&xs, 3), vec!["vfb/0", "vkbd/0", "console/1"]);
        assert!(unserved_pv_devices(&xs, 5).is_empty());
    }
}
