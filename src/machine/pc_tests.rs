//! The board's tests: config mechanism, BAR following, bus effects, reset.

use super::*;
use crate::devices::bus::Reset;
use crate::devices::pci::{ConfigSpace, ConfigWriteResult};
use crate::machine::{EventSink, RunState};

struct BarFunction {
    config: ConfigSpace,
    power_on: ConfigSpace,
    accesses: Vec<(u64, u64)>,
    resets: usize,
}

impl Reset for BarFunction {
    fn reset(&mut self) {
        self.config = self.power_on.clone();
        self.resets += 1;
    }
}

crate::devices::state::stateless_for_tests!(BarFunction);
impl PciFunction for BarFunction {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.config.read(offset, size)
    }
    fn config_write(&mut self, offset: u8, size: u8, value: u32) -> ConfigWriteResult {
        self.config.write(offset, size, value);
        ConfigWriteResult::default()
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
    let f = Arc::new(Mutex::new(BarFunction { power_on: config.clone(), config, accesses: vec![], resets: 0 }));
    m.add_pci_function(0x09, f.clone(), Some(f.clone()));
    (m, f)
}

#[test]
fn config_mechanism_one_reaches_the_function_and_absent_slots_float() {
    let (mut m, _) = machine_with_function();
    let _ = m.pio_write(0xcf8, 4, 0x8000_0900);
    assert_eq!(m.pio_read(0xcfc, 4), 0x7010_8086);
    assert_eq!(m.pio_read(0xcfe, 2), 0x7010);
    let _ = m.pio_write(0xcf8, 4, 0x8000_1000);
    assert_eq!(m.pio_read(0xcfc, 4), 0xffff_ffff);
    let _ = m.pio_write(0xcf8, 4, 0x0000_0900);
    assert_eq!(m.pio_read(0xcfc, 2), 0xffff);
    assert_eq!(m.pci_config_read(1, 0x09, 0, 4), 0xffff_ffff);
    assert_eq!(m.pci_config_read(0, 0x09, 0xfe, 4), 0xffff_ffff);
}

#[test]
fn bar_moves_follow_on_the_port_bus_and_are_reported() {
    let (mut m, f) = machine_with_function();
    assert!(m.pci_config_write(0, 0x09, 0x20, 4, 0xc001).is_empty());
    assert_eq!(m.pio_read(0xc002, 1), 0xff, "not decoded before COMMAND.IO");
    let enabled = m.pci_config_write(0, 0x09, 0x04, 2, 0x0005);
    assert_eq!(enabled.ports, vec![PortRangeChange::Added(BusRange { base: 0xc000, len: 16 })]);
    assert_eq!(m.pio_read(0xc002, 1), 0x5a);
    // Through the configuration mechanism, as qtest and the guest's 0xcfc
    // writes go: the effects come back from the port write.
    let _ = m.pio_write(0xcf8, 4, 0x8000_0920);
    let moved = m.pio_write(0xcfc, 4, 0xd001);
    assert_eq!(
        moved.ports,
        vec![
            PortRangeChange::Removed(BusRange { base: 0xc000, len: 16 }),
            PortRangeChange::Added(BusRange { base: 0xd000, len: 16 }),
        ]
    );
    assert_eq!(m.pio_read(0xc002, 1), 0xff);
    assert_eq!(m.pio_read(0xd00a, 1), 0x5a);
    assert_eq!(f.lock().unwrap().accesses, vec![(0xc000, 2), (0xd000, 10)]);
}

#[test]
fn claimed_ranges_cover_the_config_mechanism_without_overlaps() {
    struct Fixed;
    impl Reset for Fixed {
        fn reset(&mut self) {}
    }
    crate::devices::state::stateless_for_tests!(Fixed);
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
    let _ = m.pio_write(0xcf8, 4, 0x8000_0000);
    assert_eq!(m.pio_read(0xcf8, 4), 0x8000_0000, "the latch reads back (Linux probes it)");
}

#[test]
fn a_bar_over_another_device_is_not_decoded() {
    struct Fixed;
    impl Reset for Fixed {
        fn reset(&mut self) {}
    }
    crate::devices::state::stateless_for_tests!(Fixed);
    impl BusDevice for Fixed {
        fn read(&mut self, _: u64, _: u64, data: &mut [u8]) {
            data.fill(0x11)
        }
        fn write(&mut self, _: u64, _: u64, _: &[u8]) {}
    }
    let (mut m, _) = machine_with_function();
    m.add_port_device(Arc::new(Mutex::new(Fixed)), 0x1f0, 8).unwrap();
    let _ = m.pci_config_write(0, 0x09, 0x20, 4, 0x01f1);
    assert!(m.pci_config_write(0, 0x09, 0x04, 2, 0x0001).ports.is_empty(), "nothing to claim");
    assert_eq!(m.pio_read(0x1f0, 1), 0x11);
}

#[test]
fn config_writes_while_a_bar_overlaps_log_a_bounded_number_of_warnings() {
    use crate::logging::ratelimit::{Clock, RateLimiter, GUEST_BURST, DEFAULT_INTERVAL};
    struct Fixed;
    impl Reset for Fixed {
        fn reset(&mut self) {}
    }
    crate::devices::state::stateless_for_tests!(Fixed);
    impl BusDevice for Fixed {
        fn read(&mut self, _: u64, _: u64, data: &mut [u8]) {
            data.fill(0x11)
        }
        fn write(&mut self, _: u64, _: u64, _: &[u8]) {}
    }
    let (mut m, _) = machine_with_function();
    let clock = Clock::manual();
    m.log_limiter = RateLimiter::for_guest_lines_with(clock.clone());
    m.add_port_device(Arc::new(Mutex::new(Fixed)), 0x1f0, 8).unwrap();
    let _ = m.pci_config_write(0, 0x09, 0x20, 4, 0x01f1);
    let ((), lines) = crate::logging::testlog::capture(|| {
        for _ in 0..10_000 {
            let _ = m.pci_config_write(0, 0x09, 0x04, 2, 0x0001);
        }
        clock.advance(DEFAULT_INTERVAL);
        let _ = m.pci_config_write(0, 0x09, 0x04, 2, 0x0001);
    });
    let warnings: Vec<_> = lines.iter().filter(|(_, l)| l.contains("not decoded")).collect();
    assert_eq!(warnings.len(), GUEST_BURST as usize + 1, "a burst, then one in the next interval");
    let summary: Vec<_> = lines.iter().filter(|(_, l)| l.contains("suppressed")).collect();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].1, format!("{} similar messages suppressed (pci-bar-not-decoded)", 10_000 - GUEST_BURST));
    assert_eq!(lines.len(), GUEST_BURST as usize + 2);
}

/// A port device that counts its resets and, on a write, asks for the
/// power transition it was built with.
struct PowerButton {
    power: Arc<dyn PowerControl>,
    press: PowerRequest,
    resets: usize,
}

impl Reset for PowerButton {
    fn reset(&mut self) {
        self.resets += 1;
    }
}

crate::devices::state::stateless_for_tests!(PowerButton);
impl BusDevice for PowerButton {
    fn read(&mut self, _: u64, _: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _: u64, _: u64, _: &[u8]) {
        self.power.request(self.press);
    }
}

fn button(m: &PcMachine, press: PowerRequest) -> Arc<Mutex<PowerButton>> {
    Arc::new(Mutex::new(PowerButton { power: m.power_control(), press, resets: 0 }))
}

#[test]
fn a_power_request_comes_back_from_the_write_that_made_it() {
    let (mut m, _) = machine_with_function();
    let reboot = button(&m, PowerRequest::Reboot);
    let off = button(&m, PowerRequest::Poweroff);
    m.add_port_device(reboot, 0xcf9, 1).unwrap();
    m.add_port_device(off, 0xb004, 2).unwrap();
    assert_eq!(m.pio_write(0xcf9, 1, 0x06).power, Some(PowerRequest::Reboot));
    assert_eq!(m.pio_write(0x80, 1, 0).power, None, "taken once");
    assert_eq!(m.pio_write(0xb004, 2, 0x2000).power, Some(PowerRequest::Poweroff));
    m.power_control().request(PowerRequest::Reboot);
    let _ = m.reset();
    assert_eq!(m.pio_write(0x80, 1, 0).power, None, "a reset serves a pending reboot");
}

#[test]
fn pirq_routes_come_back_from_config_writes() {
    let vm = VmControl::new(RunState::Running, EventSink::new());
    let mut m = PcMachine::new(vm);
    m.add_pci_function(0x08, Arc::new(Mutex::new(crate::devices::pci::piix3_isa::Piix3Isa::new())), None);
    let direct = m.pci_config_write(0, 0x08, 0x60, 2, 0x0b0a);
    assert_eq!(direct.pirq_routes, vec![PirqRoute { link: 0, irq: Some(10) }, PirqRoute { link: 1, irq: Some(11) }]);
    let _ = m.pio_write(0xcf8, 4, 0x8000_0860);
    let by_port = m.pio_write(0xcff, 1, 0x80);
    assert_eq!(by_port.pirq_routes, vec![PirqRoute { link: 3, irq: None }]);
    assert!(by_port.ports.is_empty() && by_port.power.is_none());
}

#[test]
fn reset_puts_every_device_back_once_and_reports_the_released_bar() {
    let (mut m, f) = machine_with_function();
    let b = button(&m, PowerRequest::Reboot);
    // One device at two port ranges, as the IDE controller and the PIIX4
    // PM function are: still one reset.
    m.add_port_device(b.clone(), 0x92, 1).unwrap();
    m.add_port_device(b.clone(), 0xcf9, 1).unwrap();
    let _ = m.pci_config_write(0, 0x09, 0x20, 4, 0xc001);
    let _ = m.pci_config_write(0, 0x09, 0x04, 2, 0x0005);
    assert_eq!(m.pio_read(0xc002, 1), 0x5a);
    let effects = m.reset();
    assert_eq!(f.lock().unwrap().resets, 1, "PCI function and BAR device are one object");
    assert_eq!(b.lock().unwrap().resets, 1);
    assert_eq!(effects.ports, vec![PortRangeChange::Removed(BusRange { base: 0xc000, len: 16 })]);
    assert_eq!(m.pci_config_read(0, 0x09, 0x20, 4), 0x0000_0001);
    assert_eq!(m.pio_read(0xc002, 1), 0xff, "the BAR no longer decodes");
    assert!(m.reset().ports.is_empty(), "nothing left to release");
}
