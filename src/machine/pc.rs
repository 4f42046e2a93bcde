//! The PC as a device model sees it: a port bus, PCI functions on bus 0 and
//! the run state. Both fronts drive it through the same calls. The PCI
//! configuration mechanism (0xcf8 address latch, 0xcfc data) is decoded
//! here for both: qtest sends raw port accesses, and Xen, although it turns
//! 0xcfc accesses to our functions into PCI_CONFIG requests, forwards the
//! 0xcf8 accesses themselves, and guests read the latch back (Linux's
//! pci_check_type1 finds no PCI at all otherwise).
//!
//! Every write and the reset return their [`BusEffects`] (ports claimed or
//! released, PCI links routed, a power request) for the front to act on.

use super::VmControl;
use crate::devices::bus::{Bus, BusDevice, BusRange};
use crate::devices::pci::{IoBar, PciFunction};
use crate::vm::{PowerControl, PowerRequest};
use super::savestate::{MachineState, SaveStateError, SavedRunState};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

pub use crate::devices::bus::{BusEffects, PirqRoute, PortRangeChange};

const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;

/// The power line the machine hands its devices (i8042, 0x92, 0xcf9, PIIX4
/// PM). A device asks for a power transition in the middle of a port
/// write, with its own lock and the machine's held, where neither a reset
/// of the machine nor a hypercall is the device's business; the request
/// is taken when the write returns and comes back in its [`BusEffects`].
#[derive(Default)]
struct PowerLatch(Mutex<Option<PowerRequest>>);

impl PowerControl for PowerLatch {
    fn request(&self, what: PowerRequest) {
        let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A power-off outranks a reboot (QEMU looks at shutdown first).
        if what == PowerRequest::Poweroff || pending.is_none() {
            *pending = Some(what);
        }
    }
}

impl PowerLatch {
    fn take(&self) -> Option<PowerRequest> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

enum NamedDevice {
    Pci(Arc<Mutex<dyn PciFunction>>),
    Port(Arc<Mutex<dyn BusDevice>>),
}

struct PciSlot {
    function: Arc<Mutex<dyn PciFunction>>,
    bar_device: Option<Arc<Mutex<dyn BusDevice>>>,
    mapped_bars: Vec<IoBar>,
}

/// Something the machine runs when the VM continues (held requests).
pub trait ResumeHook: Send {
    /// Re-issue what is held, then set `vm` running, both under the lock
    /// the device completes requests under: a request re-issued here can
    /// fail and hold the VM again only after the state said Running, so
    /// the hold is never overwritten and no guest request is served
    /// between the state change and the re-issue.
    fn resume(&mut self, vm: &VmControl);
}

pub struct PcMachine {
    ports: Bus,
    pci: BTreeMap<u8, PciSlot>,
    config_address: u32,
    vm: VmControl,
    resume_hooks: Vec<Box<dyn ResumeHook>>,
    power: Arc<PowerLatch>,
    /// Every config write re-tries a BAR that overlaps, and the guest picks
    /// the BARs: its warnings are rate limited.
    log_limiter: crate::logging::RateLimiter,
}

fn read_le(data: &[u8]) -> u32 {
    data.iter().enumerate().fold(0u32, |v, (i, b)| v | (*b as u32) << (8 * i))
}

fn size_mask(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

impl PcMachine {
    pub fn new(vm: VmControl) -> Self {
        PcMachine {
            ports: Bus::new(),
            pci: BTreeMap::new(),
            config_address: 0,
            vm,
            resume_hooks: Vec::new(),
            power: Arc::new(PowerLatch::default()),
            log_limiter: crate::logging::RateLimiter::for_guest_lines(),
        }
    }

    pub fn vm(&self) -> &VmControl {
        &self.vm
    }

    /// The power line for the machine's devices: what they request comes
    /// back in the effects of the write that made the request.
    pub fn power_control(&self) -> Arc<dyn PowerControl> {
        self.power.clone()
    }

    pub fn add_port_device(&mut self, device: Arc<Mutex<dyn BusDevice>>, base: u16, len: u16) -> Result<(), crate::devices::bus::BusError> {
        self.ports.insert(device, base as u64, len as u64)
    }

    /// Put a function at `devfn` (device << 3 | function) on bus 0.
    /// `bar_device` receives the accesses to its I/O BARs. BARs that
    /// decode from the start are on the port bus at once and so among the
    /// [`claim_ranges`](Self::claim_ranges).
    pub fn add_pci_function(&mut self, devfn: u8, function: Arc<Mutex<dyn PciFunction>>, bar_device: Option<Arc<Mutex<dyn BusDevice>>>) {
        self.pci.insert(devfn, PciSlot { function, bar_device, mapped_bars: Vec::new() });
        let _ = self.sync_bars(devfn);
    }

    pub fn add_resume_hook(&mut self, hook: Box<dyn ResumeHook>) {
        self.resume_hooks.push(hook);
    }

    pub fn pci_devfns(&self) -> Vec<u8> {
        self.pci.keys().copied().collect()
    }

    /// The port ranges to claim from a hypervisor: the devices' ranges and
    /// the configuration mechanism's 0xcf8-0xcff, merged so that no two
    /// overlap (0xcf9, the reset control register, sits inside it).
    pub fn claim_ranges(&self) -> Vec<BusRange> {
        let mut spans: Vec<(u64, u64)> = self.ports.ranges().map(|r| (r.base, r.last())).collect();
        spans.push((PCI_CONFIG_ADDRESS as u64, PCI_CONFIG_DATA as u64 + 3));
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (first, last) in spans {
            match merged.last_mut() {
                Some((_, end)) if first <= *end + 1 => *end = (*end).max(last),
                _ => merged.push((first, last)),
            }
        }
        merged.into_iter().map(|(first, last)| BusRange { base: first, len: last - first + 1 }).collect()
    }

    pub fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        let size = size.clamp(1, 4);
        if port == PCI_CONFIG_ADDRESS && size == 4 {
            return self.config_address;
        }
        if (PCI_CONFIG_DATA..PCI_CONFIG_DATA + 4).contains(&port) {
            return self.config_data_read(port, size);
        }
        let mut data = [0u8; 4];
        self.ports.read(port as u64, &mut data[..size as usize]);
        read_le(&data[..size as usize])
    }

    pub fn pio_write(&mut self, port: u16, size: u8, value: u32) -> BusEffects {
        let size = size.clamp(1, 4);
        if port == PCI_CONFIG_ADDRESS && size == 4 {
            self.config_address = value;
            return BusEffects::default();
        }
        if (PCI_CONFIG_DATA..PCI_CONFIG_DATA + 4).contains(&port) {
            return self.config_data_write(port, size, value);
        }
        let bytes = value.to_le_bytes();
        self.ports.write(port as u64, &bytes[..size as usize]);
        BusEffects { power: self.power.take(), ..Default::default() }
    }

    /// The target of the latched 0xcf8 address plus the data port's lane.
    fn latched_target(&self, port: u16) -> Option<(u8, u8, u16)> {
        let a = self.config_address;
        if a & 0x8000_0000 == 0 {
            return None;
        }
        let bus = (a >> 16) as u8;
        let devfn = (a >> 8) as u8;
        let reg = (a & 0xfc) as u16 + (port & 3);
        Some((bus, devfn, reg))
    }

    fn config_data_read(&mut self, port: u16, size: u8) -> u32 {
        match self.latched_target(port) {
            Some((bus, devfn, reg)) => self.pci_config_read(bus, devfn, reg, size),
            None => size_mask(size),
        }
    }

    fn config_data_write(&mut self, port: u16, size: u8, value: u32) -> BusEffects {
        match self.latched_target(port) {
            Some((bus, devfn, reg)) => self.pci_config_write(bus, devfn, reg, size, value),
            None => BusEffects::default(),
        }
    }

    /// A config read; absent functions read all-ones. `reg` beyond the
    /// 256-byte header reads all-ones too (no extended config space).
    pub fn pci_config_read(&mut self, bus: u8, devfn: u8, reg: u16, size: u8) -> u32 {
        let size = match size {
            1 | 2 | 4 => size,
            _ => return 0xffff_ffff,
        };
        if bus != 0 || reg as u32 + size as u32 > 256 {
            return size_mask(size);
        }
        match self.pci.get(&devfn) {
            Some(slot) => slot.function.lock().unwrap_or_else(|e| e.into_inner()).config_read(reg as u8, size) & size_mask(size),
            None => size_mask(size),
        }
    }

    pub fn pci_config_write(&mut self, bus: u8, devfn: u8, reg: u16, size: u8, value: u32) -> BusEffects {
        if bus != 0 || !matches!(size, 1 | 2 | 4) || reg as u32 + size as u32 > 256 {
            return BusEffects::default();
        }
        let Some(slot) = self.pci.get(&devfn) else { return BusEffects::default() };
        let result =
            slot.function.lock().unwrap_or_else(|e| e.into_inner()).config_write(reg as u8, size, value & size_mask(size));
        BusEffects { ports: self.sync_bars(devfn), pirq_routes: result.pirq_routes, power: self.power.take() }
    }

    /// Follow the function's I/O BARs on the port bus after a config write
    /// or a reset; returns what changed on the bus.
    fn sync_bars(&mut self, devfn: u8) -> Vec<PortRangeChange> {
        let mut changes = Vec::new();
        let Some(slot) = self.pci.get_mut(&devfn) else { return changes };
        let Some(device) = slot.bar_device.clone() else { return changes };
        let now = slot.function.lock().unwrap_or_else(|e| e.into_inner()).io_bars();
        if now == slot.mapped_bars {
            return changes;
        }
        let old = std::mem::take(&mut slot.mapped_bars);
        for bar in &old {
            if self.ports.remove(bar.base as u64) {
                changes.push(PortRangeChange::Removed(BusRange { base: bar.base as u64, len: bar.len as u64 }));
            }
        }
        let mut mapped = Vec::new();
        for bar in now {
            match self.ports.insert(device.clone(), bar.base as u64, bar.len as u64) {
                Ok(()) => {
                    changes.push(PortRangeChange::Added(BusRange { base: bar.base as u64, len: bar.len as u64 }));
                    mapped.push(bar);
                }
                Err(e) => self.log_limiter.log(
                    log::Level::Warn,
                    "pci-bar-not-decoded",
                    format_args!("PCI {devfn:#04x} BAR{} at {:#x}: {e}; not decoded", bar.index, bar.base),
                ),
            }
        }
        if let Some(slot) = self.pci.get_mut(&devfn) {
            slot.mapped_bars = mapped;
        }
        changes
    }

    /// A machine reset (QMP `system_reset`, the guest's 0xcf9, 0x92 or
    /// i8042 reset): every device on the port bus and every PCI function
    /// goes back to its power-on state, once each however many ranges and
    /// roles it has, and the BARs are followed. The 0xcf8 latch is the
    /// host bridge's, which QEMU does not reset either.
    pub fn reset(&mut self) -> BusEffects {
        // The data address identifies a device behind either trait object.
        let mut done = HashSet::new();
        for device in self.ports.devices() {
            if done.insert(Arc::as_ptr(device).cast::<u8>() as usize) {
                device.lock().unwrap_or_else(|e| e.into_inner()).reset();
            }
        }
        for slot in self.pci.values() {
            if done.insert(Arc::as_ptr(&slot.function).cast::<u8>() as usize) {
                slot.function.lock().unwrap_or_else(|e| e.into_inner()).reset();
            }
        }
        let mut effects = BusEffects::default();
        for devfn in self.pci_devfns() {
            effects.ports.extend(self.sync_bars(devfn));
        }
        // A request made before the reset was served by it.
        let _ = self.power.take();
        effects
    }

    /// Every device once, under its name in a saved state: PCI functions
    /// by devfn, the other port devices by their lowest port.
    fn named_devices(&self) -> Vec<(String, NamedDevice)> {
        let mut seen = HashSet::new();
        let mut list = Vec::new();
        for (devfn, slot) in &self.pci {
            if seen.insert(Arc::as_ptr(&slot.function).cast::<u8>() as usize) {
                list.push((format!("pci-{devfn:02x}"), NamedDevice::Pci(slot.function.clone())));
            }
        }
        let ranges: Vec<BusRange> = self.ports.ranges().collect();
        for (range, device) in ranges.iter().zip(self.ports.devices()) {
            if seen.insert(Arc::as_ptr(device).cast::<u8>() as usize) {
                list.push((format!("port-{:04x}", range.base), NamedDevice::Port(device.clone())));
            }
        }
        list
    }

    /// The state of every device, for `xen-save-devices-state`. Host I/O
    /// must have been drained (the front does that: it knows the IDE).
    pub fn save_state(&self) -> MachineState {
        let devices = self
            .named_devices()
            .into_iter()
            .map(|(name, device)| {
                let state = match device {
                    NamedDevice::Pci(f) => f.lock().unwrap_or_else(|e| e.into_inner()).snapshot(),
                    NamedDevice::Port(d) => d.lock().unwrap_or_else(|e| e.into_inner()).snapshot(),
                };
                (name, state)
            })
            .collect();
        MachineState { run_state: SavedRunState::of(self.vm.state()), config_address: self.config_address, devices }
    }

    /// Load a saved state into this machine, built from the same command
    /// line. The device set must be the same, name for name. Returns what
    /// the front must tell the hypervisor: every BAR now decoded (the port
    /// claims follow) and every PCI link route. The run state is the
    /// caller's to apply (`-S` decides between paused and running).
    ///
    /// Each device checks its whole state before taking it; a refusal
    /// part-way leaves earlier devices loaded, so the caller must not run
    /// the guest after an error (the launcher exits).
    pub fn load_state(&mut self, state: &MachineState) -> Result<BusEffects, SaveStateError> {
        let named = self.named_devices();
        for (name, _) in &state.devices {
            if !named.iter().any(|(n, _)| n == name) {
                return Err(SaveStateError::UnknownDevice(name.clone()));
            }
        }
        for (name, device) in &named {
            let Some((_, saved)) = state.devices.iter().find(|(n, _)| n == name) else {
                return Err(SaveStateError::MissingDevice(name.clone()));
            };
            match device {
                NamedDevice::Pci(f) => f.lock().unwrap_or_else(|e| e.into_inner()).restore(saved)?,
                NamedDevice::Port(d) => d.lock().unwrap_or_else(|e| e.into_inner()).restore(saved)?,
            }
        }
        self.config_address = state.config_address;
        let mut effects = BusEffects::default();
        for devfn in self.pci_devfns() {
            effects.ports.extend(self.sync_bars(devfn));
        }
        for slot in self.pci.values() {
            effects.pirq_routes.extend(slot.function.lock().unwrap_or_else(|e| e.into_inner()).pirq_routes());
        }
        // A latch the loaded state set is not a guest request.
        let _ = self.power.take();
        Ok(effects)
    }

    /// QMP `cont`: run again and re-issue held requests.
    pub fn cont(&mut self) {
        if self.resume_hooks.is_empty() {
            self.vm.set_running();
        }
        for hook in &mut self.resume_hooks {
            hook.resume(&self.vm);
        }
    }

    /// QMP `stop`.
    pub fn stop(&mut self) {
        self.vm.stop(super::RunState::Paused);
    }
}

#[cfg(test)]
#[path = "pc_tests.rs"]
mod tests;
