//! The machine as QMP sees it.

use crate::block;
use crate::control::{MachineError, MachineOps};
use crate::devices::ide::IdeController;
use crate::machine::pc::{BusEffects, PcMachine};
use crate::machine::savestate::MachineState;
use crate::machine::{DriveInfo, Event, RunState, VmControl};
use crate::pvblock::{drive_infos, PvDiskTable};
use std::sync::{Arc, Mutex};

pub struct PcOps {
    machine: Arc<Mutex<PcMachine>>,
    ide: Arc<Mutex<IdeController>>,
    vm: VmControl,
    chardevs: Vec<(String, String)>,
    on_quit: Box<dyn Fn() + Send + Sync>,
    on_reset: Box<dyn Fn() + Send + Sync>,
    /// The front's dirty logging (Xen's modified_memory); None in qtest.
    dirty_log: Option<Box<dyn Fn(bool) + Send + Sync>>,
    /// Sends the batched dirty pages (after `stop` drained the requests,
    /// whose DMA may have written guest memory).
    dirty_flush: Box<dyn Fn() + Send + Sync>,
    /// What a loaded state changed on the buses, for the front to tell
    /// its hypervisor (port claims, PCI link routes).
    on_state_loaded: Box<dyn Fn(BusEffects) + Send + Sync>,
    /// `-S`: a loaded state leaves the VM paused for `cont`; without it the
    /// VM runs (and held requests re-run) as soon as the state is in.
    start_paused: bool,
    /// The qdisk disks (a PVHVM guest's), listed after the IDE drives.
    pv_disks: Option<PvDiskTable>,
}

/// How long `stop` and a save wait for requests on the host.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl PcOps {
    pub fn new(
        machine: Arc<Mutex<PcMachine>>,
        ide: Arc<Mutex<IdeController>>,
        vm: VmControl,
        chardevs: Vec<(String, String)>,
        on_quit: Box<dyn Fn() + Send + Sync>,
        on_reset: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        PcOps {
            machine,
            ide,
            vm,
            chardevs,
            on_quit,
            on_reset,
            dirty_log: None,
            dirty_flush: Box::new(|| {}),
            on_state_loaded: Box::new(|_| {}),
            start_paused: false,
            pv_disks: None,
        }
    }

    pub fn with_pv_disks(mut self, disks: PvDiskTable) -> Self {
        self.pv_disks = Some(disks);
        self
    }

    pub fn with_dirty_log(mut self, dirty_log: Box<dyn Fn(bool) + Send + Sync>, flush: Box<dyn Fn() + Send + Sync>) -> Self {
        self.dirty_log = Some(dirty_log);
        self.dirty_flush = flush;
        self
    }

    pub fn with_state_loaded(mut self, on_state_loaded: Box<dyn Fn(BusEffects) + Send + Sync>, start_paused: bool) -> Self {
        self.on_state_loaded = on_state_loaded;
        self.start_paused = start_paused;
        self
    }

    /// Wait (unlocked) for the requests on the host, then complete them
    /// into the registers: after this the IDE state is whole.
    fn drain(&self) {
        if !crate::devices::ide::wait_idle(&self.ide, DRAIN_TIMEOUT) {
            log::warn!("requests still on the host after {} s", DRAIN_TIMEOUT.as_secs());
        }
        self.ide.lock().unwrap_or_else(|e| e.into_inner()).drain_for_save();
        (self.dirty_flush)();
    }

    /// The device state as `xen-save-devices-state` writes it. The VM is
    /// stopped for it (libxl has stopped it already) and runs again after
    /// if it was running, as QEMU's qmp_xen_save_devices_state does.
    pub fn save_state_blob(&self) -> Result<Vec<u8>, MachineError> {
        let was_running = self.vm.is_running();
        let run_state = self.vm.state();
        if was_running {
            self.machine.lock().unwrap_or_else(|e| e.into_inner()).stop();
        }
        let result = self.save_stopped(run_state);
        if was_running {
            self.machine.lock().unwrap_or_else(|e| e.into_inner()).cont();
        }
        result
    }

    fn save_stopped(&self, run_state: RunState) -> Result<Vec<u8>, MachineError> {
        self.drain();
        {
            let mut ide = self.ide.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = ide.unsaveable() {
                return Err(MachineError::NotQuiet(why));
            }
            // The destination opens the images once this answer is in.
            ide.flush_all().map_err(MachineError::Flush)?;
        }
        let machine = self.machine.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = machine.save_state();
        // A completion drained above may have held a request (IoError).
        state.run_state = match self.vm.state() {
            RunState::IoError => crate::machine::savestate::SavedRunState::IoError,
            _ => crate::machine::savestate::SavedRunState::of(run_state),
        };
        Ok(state.encode())
    }

    /// Load a device state into the machine (`-incoming`), tell the front
    /// what changed on the buses, and leave the VM paused (`-S`) or run
    /// it, which re-runs a request that was held when it was saved.
    pub fn load_state_blob(&self, blob: &[u8]) -> Result<(), MachineError> {
        let state = MachineState::decode(blob)?;
        let effects = self.machine.lock().unwrap_or_else(|e| e.into_inner()).load_state(&state)?;
        (self.on_state_loaded)(effects);
        let held = self.ide.lock().unwrap_or_else(|e| e.into_inner()).has_held_request();
        log::info!(
            "device state loaded: {} bytes, {} devices, saved {:?}{}",
            blob.len(),
            state.devices.len(),
            state.run_state,
            if held { ", a held request re-runs on cont" } else { "" }
        );
        if self.start_paused {
            self.vm.stop(RunState::Paused);
        } else {
            self.machine.lock().unwrap_or_else(|e| e.into_inner()).cont();
        }
        Ok(())
    }
}

impl PcOps {

    /// The qtest machine's QMP reset: every device to its power-on state
    /// and QEMU's RESET event. No hypervisor claims our ports there, so the
    /// released BARs need no one told.
    pub fn reset_devices(machine: &Arc<Mutex<PcMachine>>) {
        let mut m = machine.lock().unwrap_or_else(|e| e.into_inner());
        let _ = m.reset();
        m.vm().events().emit(Event::Reset { guest: false, reason: "host-qmp-system-reset" });
    }
}

impl MachineOps for PcOps {
    fn run_state(&self) -> RunState {
        self.vm.state()
    }

    /// libxl sends this before it saves: the VM stops and the requests
    /// on the host complete into device state.
    fn stop(&self) {
        self.machine.lock().unwrap_or_else(|e| e.into_inner()).stop();
        self.drain();
    }

    fn set_dirty_logging(&self, on: bool) -> Result<(), MachineError> {
        let Some(dirty_log) = &self.dirty_log else { return Err(MachineError::NoDirtyLog) };
        dirty_log(on);
        log::info!("dirty logging {}", if on { "on" } else { "off" });
        Ok(())
    }

    fn save_devices_state(&self) -> Result<Vec<u8>, MachineError> {
        self.save_state_blob()
    }

    fn load_devices_state(&self, blob: &[u8]) -> Result<(), MachineError> {
        if self.vm.state() != RunState::InMigrate {
            return Err(MachineError::NotIncoming);
        }
        self.load_state_blob(blob)
    }

    fn cont(&self) -> Result<(), MachineError> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner()).cont();
        Ok(())
    }

    fn block_info(&self) -> Vec<DriveInfo> {
        let mut drives = self.ide.lock().unwrap_or_else(|e| e.into_inner()).drives_info();
        if let Some(disks) = &self.pv_disks {
            drives.extend(drive_infos(disks));
        }
        drives
    }

    fn eject(&self, device: &str, force: bool) -> Result<(), MachineError> {
        Ok(self.ide.lock().unwrap_or_else(|e| e.into_inner()).eject(device, force)?)
    }

    fn change_medium(&self, device: &str, filename: &str, read_only: Option<bool>) -> Result<(), MachineError> {
        let backend = block::open_image(&block::ImageSpec {
            file: filename.to_string(),
            format: "raw".into(),
            cache: block::CacheMode::Writeback,
            read_only: read_only.unwrap_or(true),
        })
        .map_err(|source| MachineError::Open { file: filename.to_string(), source })?;
        Ok(self.ide.lock().unwrap_or_else(|e| e.into_inner()).change_medium(device, backend, filename.to_string())?)
    }

    fn chardevs(&self) -> Vec<(String, String)> {
        self.chardevs.clone()
    }

    fn system_reset(&self) -> Result<(), MachineError> {
        (self.on_reset)();
        Ok(())
    }

    fn quit(&self) {
        if let Err(e) = self.ide.lock().unwrap_or_else(|e| e.into_inner()).flush_all() {
            log::error!("flushing images before quit: {e}");
        }
        self.vm.events().emit(Event::Shutdown { guest: false, reason: "host-qmp-quit" });
        (self.on_quit)();
    }
}

/// The QMP of a machine without devices: libxl's probe run (`-machine
/// none`) and a PV domain's device model (`-machine xenpv`).
pub struct ProbeOps {
    vm: VmControl,
    on_quit: Box<dyn Fn() + Send + Sync>,
    /// A PV domain's qdisk disks.
    pv_disks: PvDiskTable,
}

impl ProbeOps {
    pub fn new(vm: VmControl, on_quit: Box<dyn Fn() + Send + Sync>) -> Self {
        ProbeOps { vm, on_quit, pv_disks: PvDiskTable::default() }
    }

    pub fn with_pv_disks(mut self, disks: PvDiskTable) -> Self {
        self.pv_disks = disks;
        self
    }
}

impl MachineOps for ProbeOps {
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
        drive_infos(&self.pv_disks)
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
