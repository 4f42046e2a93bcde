//! The machine as QMP sees it.

use crate::block;
use crate::control::{MachineError, MachineOps};
use crate::devices::ide::IdeController;
use crate::machine::pc::PcMachine;
use crate::machine::{DriveInfo, Event, RunState, VmControl};
use std::sync::{Arc, Mutex};

pub struct PcOps {
    machine: Arc<Mutex<PcMachine>>,
    ide: Arc<Mutex<IdeController>>,
    vm: VmControl,
    chardevs: Vec<(String, String)>,
    on_quit: Box<dyn Fn() + Send + Sync>,
    on_reset: Box<dyn Fn() + Send + Sync>,
}

impl PcOps {
    pub fn new(
        machine: Arc<Mutex<PcMachine>>,
        ide: Arc<Mutex<IdeController>>,
        vm: VmControl,
        chardevs: Vec<(String, String)>,
        on_quit: Box<dyn Fn() + Send + Sync>,
        on_reset: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        PcOps { machine, ide, vm, chardevs, on_quit, on_reset }
    }

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

    fn stop(&self) {
        self.machine.lock().unwrap_or_else(|e| e.into_inner()).stop();
    }

    fn cont(&self) -> Result<(), MachineError> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner()).cont();
        Ok(())
    }

    fn block_info(&self) -> Vec<DriveInfo> {
        self.ide.lock().unwrap_or_else(|e| e.into_inner()).drives_info()
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

/// The QMP of libxl's probe run (`-machine none`): no devices at all.
pub struct ProbeOps {
    vm: VmControl,
    on_quit: Box<dyn Fn() + Send + Sync>,
}

impl ProbeOps {
    pub fn new(vm: VmControl, on_quit: Box<dyn Fn() + Send + Sync>) -> Self {
        ProbeOps { vm, on_quit }
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
        Vec::new()
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
