//! The PC as a device model sees it: a port bus, PCI functions on bus 0 and
//! the run state. Both fronts drive it through the same calls. The PCI
//! configuration mechanism (0xcf8 address latch, 0xcfc data) is decoded
//! here for both: qtest sends raw port accesses, and Xen, although it turns
//! 0xcfc accesses to our functions into PCI_CONFIG requests, forwards the
//! 0xcf8 accesses themselves, and guests read the latch back (Linux's
//! pci_check_type1 finds no PCI at all otherwise).

use super::VmControl;
use crate::devices::bus::{Bus, BusDevice, BusRange};
use crate::devices::pci::{IoBar, PciFunction};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;

/// A port range that appeared or went away because the guest moved a BAR.
/// The Xen front claims and releases these with the ioreq server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRangeChange {
    Added(BusRange),
    Removed(BusRange),
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
    range_changes: Vec<PortRangeChange>,
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
            range_changes: Vec::new(),
            log_limiter: crate::logging::RateLimiter::default(),
        }
    }

    pub fn vm(&self) -> &VmControl {
        &self.vm
    }

    pub fn add_port_device(&mut self, device: Arc<Mutex<dyn BusDevice>>, base: u16, len: u16) -> Result<(), crate::devices::bus::BusError> {
        self.ports.insert(device, base as u64, len as u64)
    }

    /// Put a function at `devfn` (device << 3 | function) on bus 0.
    /// `bar_device` receives the accesses to its I/O BARs.
    pub fn add_pci_function(&mut self, devfn: u8, function: Arc<Mutex<dyn PciFunction>>, bar_device: Option<Arc<Mutex<dyn BusDevice>>>) {
        self.pci.insert(devfn, PciSlot { function, bar_device, mapped_bars: Vec::new() });
        self.sync_bars(devfn);
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

    pub fn take_range_changes(&mut self) -> Vec<PortRangeChange> {
        std::mem::take(&mut self.range_changes)
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

    pub fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        let size = size.clamp(1, 4);
        if port == PCI_CONFIG_ADDRESS && size == 4 {
            self.config_address = value;
            return;
        }
        if (PCI_CONFIG_DATA..PCI_CONFIG_DATA + 4).contains(&port) {
            self.config_data_write(port, size, value);
            return;
        }
        let bytes = value.to_le_bytes();
        self.ports.write(port as u64, &bytes[..size as usize]);
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

    fn config_data_write(&mut self, port: u16, size: u8, value: u32) {
        if let Some((bus, devfn, reg)) = self.latched_target(port) {
            self.pci_config_write(bus, devfn, reg, size, value);
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

    pub fn pci_config_write(&mut self, bus: u8, devfn: u8, reg: u16, size: u8, value: u32) {
        if bus != 0 || !matches!(size, 1 | 2 | 4) || reg as u32 + size as u32 > 256 {
            return;
        }
        let Some(slot) = self.pci.get(&devfn) else { return };
        slot.function.lock().unwrap_or_else(|e| e.into_inner()).config_write(reg as u8, size, value & size_mask(size));
        self.sync_bars(devfn);
    }

    /// Follow the function's I/O BARs on the port bus after a config write.
    fn sync_bars(&mut self, devfn: u8) {
        let Some(slot) = self.pci.get_mut(&devfn) else { return };
        let Some(device) = slot.bar_device.clone() else { return };
        let now = slot.function.lock().unwrap_or_else(|e| e.into_inner()).io_bars();
        if now == slot.mapped_bars {
            return;
        }
        let old = std::mem::take(&mut slot.mapped_bars);
        for bar in &old {
            if self.ports.remove(bar.base as u64) {
                self.range_changes.push(PortRangeChange::Removed(BusRange { base: bar.base as u64, len: bar.len as u64 }));
            }
        }
        let mut mapped = Vec::new();
        for bar in now {
            match self.ports.insert(device.clone(), bar.base as u64, bar.len as u64) {
                Ok(()) => {
                    self.range_changes.push(PortRangeChange::Added(BusRange { base: bar.base as u64, len: bar.len as u64 }));
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
    }

    /// After a machine reset: every function's BARs are read again.
    pub fn sync_all_bars(&mut self) {
        for devfn in self.pci_devfns() {
            self.sync_bars(devfn);
        }
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
mod tests {
    use super::*;
    use crate::devices::pci::ConfigSpace;
    use crate::machine::{EventSink, RunState};

    struct BarFunction {
        config: ConfigSpace,
        accesses: Vec<(u64, u64)>,
    }

    impl PciFunction for BarFunction {
        fn config_read(&mut self, offset: u8, size: u8) -> u32 {
            self.config.read(offset, size)
        }
        fn config_write(&mut self, offset: u8, size: u8, value: u32) {
            self.config.write(offset, size, value)
        }
        fn io_bars(&self) -> Vec<IoBar> {
            self.config.io_bar_base(4).map(|base| IoBar { index: 4, base, len: 16 }).into_iter().collect()
        }
    }

    impl BusDevice for BarFunction {
        fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
            self.accesses.push((base, offset));
            data.fill(0x5a);
        }
        fn write(&mut self, base: u64, offset: u64, _data: &[u8]) {
            self.accesses.push((base, offset));
        }
    }

    fn machine_with_function() -> (PcMachine, Arc<Mutex<BarFunction>>) {
        let vm = VmControl::new(RunState::Running, EventSink::new());
        let mut m = PcMachine::new(vm);
        let mut config = ConfigSpace::new(0x8086, 0x7010, 0x010180, 0);
        config.init_io_bar(4, 16);
        let f = Arc::new(Mutex::new(BarFunction { config, accesses: vec![] }));
        m.add_pci_function(0x09, f.clone(), Some(f.clone()));
        (m, f)
    }

    #[test]
    fn config_mechanism_one_reaches_the_function_and_absent_slots_float() {
        let (mut m, _) = machine_with_function();
        m.pio_write(0xcf8, 4, 0x8000_0900);
        assert_eq!(m.pio_read(0xcfc, 4), 0x7010_8086);
        assert_eq!(m.pio_read(0xcfe, 2), 0x7010);
        m.pio_write(0xcf8, 4, 0x8000_1000);
        assert_eq!(m.pio_read(0xcfc, 4), 0xffff_ffff);
        m.pio_write(0xcf8, 4, 0x0000_0900);
        assert_eq!(m.pio_read(0xcfc, 2), 0xffff);
        assert_eq!(m.pci_config_read(1, 0x09, 0, 4), 0xffff_ffff);
        assert_eq!(m.pci_config_read(0, 0x09, 0xfe, 4), 0xffff_ffff);
    }

    #[test]
    fn bar_moves_follow_on_the_port_bus_and_are_reported() {
        let (mut m, f) = machine_with_function();
        m.pci_config_write(0, 0x09, 0x20, 4, 0xc001);
        assert_eq!(m.pio_read(0xc002, 1), 0xff, "not decoded before COMMAND.IO");
        m.pci_config_write(0, 0x09, 0x04, 2, 0x0005);
        assert_eq!(m.pio_read(0xc002, 1), 0x5a);
        m.pci_config_write(0, 0x09, 0x20, 4, 0xd001);
        assert_eq!(m.pio_read(0xc002, 1), 0xff);
        assert_eq!(m.pio_read(0xd00a, 1), 0x5a);
        let changes = m.take_range_changes();
        assert_eq!(
            changes,
            vec![
                PortRangeChange::Added(BusRange { base: 0xc000, len: 16 }),
                PortRangeChange::Removed(BusRange { base: 0xc000, len: 16 }),
                PortRangeChange::Added(BusRange { base: 0xd000, len: 16 }),
            ]
        );
        assert_eq!(f.lock().unwrap().accesses, vec![(0xc000, 2), (0xd000, 10)]);
    }

    #[test]
    fn claimed_ranges_cover_the_config_mechanism_without_overlaps() {
        struct Fixed;
        impl BusDevice for Fixed {
            fn read(&mut self, _: u64, _: u64, data: &mut [u8]) {
                data.fill(0)
            }
            fn write(&mut self, _: u64, _: u64, _: &[u8]) {}
        }
        let (mut m, _) = machine_with_function();
        let dev = Arc::new(Mutex::new(Fixed));
        m.add_port_device(dev.clone(), 0xcf9, 1).unwrap();
        m.add_port_device(dev.clone(), 0x1f0, 8).unwrap();
        m.add_port_device(dev, 0x1f8, 1).unwrap();
        assert_eq!(
            m.claim_ranges(),
            vec![BusRange { base: 0x1f0, len: 9 }, BusRange { base: 0xcf8, len: 8 }]
        );
        m.pio_write(0xcf8, 4, 0x8000_0000);
        assert_eq!(m.pio_read(0xcf8, 4), 0x8000_0000, "the latch reads back (Linux probes it)");
    }

    #[test]
    fn a_bar_over_another_device_is_not_decoded() {
        struct Fixed;
        impl BusDevice for Fixed {
            fn read(&mut self, _: u64, _: u64, data: &mut [u8]) {
                data.fill(0x11)
            }
            fn write(&mut self, _: u64, _: u64, _: &[u8]) {}
        }
        let (mut m, _) = machine_with_function();
        m.add_port_device(Arc::new(Mutex::new(Fixed)), 0x1f0, 8).unwrap();
        m.pci_config_write(0, 0x09, 0x20, 4, 0x01f1);
        m.pci_config_write(0, 0x09, 0x04, 2, 0x0001);
        assert_eq!(m.pio_read(0x1f0, 1), 0x11);
        assert!(m.take_range_changes().is_empty());
    }

    #[test]
    fn config_writes_while_a_bar_overlaps_log_a_bounded_number_of_warnings() {
        use crate::logging::ratelimit::{Clock, RateLimiter, DEFAULT_BURST, DEFAULT_INTERVAL};
        struct Fixed;
        impl BusDevice for Fixed {
            fn read(&mut self, _: u64, _: u64, data: &mut [u8]) {
                data.fill(0x11)
            }
            fn write(&mut self, _: u64, _: u64, _: &[u8]) {}
        }
        let (mut m, _) = machine_with_function();
        let clock = Clock::manual();
        m.log_limiter = RateLimiter::new(DEFAULT_BURST, DEFAULT_INTERVAL, clock.clone());
        m.add_port_device(Arc::new(Mutex::new(Fixed)), 0x1f0, 8).unwrap();
        m.pci_config_write(0, 0x09, 0x20, 4, 0x01f1);
        let ((), lines) = crate::logging::testlog::capture(|| {
            for _ in 0..10_000 {
                m.pci_config_write(0, 0x09, 0x04, 2, 0x0001);
            }
            clock.advance(DEFAULT_INTERVAL);
            m.pci_config_write(0, 0x09, 0x04, 2, 0x0001);
        });
        let warnings: Vec<_> = lines.iter().filter(|(_, l)| l.contains("not decoded")).collect();
        assert_eq!(warnings.len(), DEFAULT_BURST as usize + 1, "a burst, then one in the next interval");
        let summary: Vec<_> = lines.iter().filter(|(_, l)| l.contains("suppressed")).collect();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].1, format!("{} similar messages suppressed (pci-bar-not-decoded)", 10_000 - DEFAULT_BURST));
        assert_eq!(lines.len(), DEFAULT_BURST as usize + 2);
    }
}
