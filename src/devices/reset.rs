//! The two chipset reset paths a PC guest uses besides the keyboard
//! controller: System Control Port A (0x92: fast A20 and fast reset) and
//! the PIIX3 Reset Control Register (0xcf9, the FADT reset register that
//! Xen's ACPI tables point at with value 6).

use crate::devices::bus::{BusDevice, Reset};
use crate::devices::state::{DeviceState, Snapshot, StateError};
use crate::vm::{PowerControl, PowerRequest};
use std::sync::Arc;

pub const PORT_A: u16 = 0x92;
pub const RESET_CONTROL: u16 = 0xcf9;

const PORT_A_FAST_RESET: u8 = 1 << 0;
const PORT_A_A20: u8 = 1 << 1;

const RCR_SYSTEM_RESET: u8 = 1 << 1;
const RCR_RESET_CPU: u8 = 1 << 2;

/// Port 0x92. A rising edge on bit 0 resets the machine; bit 1 gates A20.
/// The register reads back what was written, as under QEMU.
pub struct PortA {
    value: u8,
    power: Arc<dyn PowerControl>,
}

impl PortA {
    pub fn new(power: Arc<dyn PowerControl>) -> Self {
        PortA { value: 0, power }
    }

    pub fn a20_enabled(&self) -> bool {
        self.value & PORT_A_A20 != 0
    }

}

/// QEMU's `port92_reset`: the reset bit does not survive a reset, so the
/// next rising edge works again; A20 does (measured on QEMU 7.2).
impl Reset for PortA {
    fn reset(&mut self) {
        self.value &= !PORT_A_FAST_RESET;
    }
}

impl BusDevice for PortA {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset == 0 {
            if let Some(first) = data.first_mut() {
                *first = self.value;
            }
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let (0, Some(&value)) = (offset, data.first()) else {
            return;
        };
        let old = self.value;
        self.value = value;
        if value & PORT_A_FAST_RESET != 0 && old & PORT_A_FAST_RESET == 0 {
            log::info!("port 0x92: guest requested a fast reset");
            self.power.request(PowerRequest::Reboot);
        }
    }
}

/// The latch as written; a loaded value never triggers a reset (only a
/// guest's rising edge does).
impl Snapshot for PortA {
    fn snapshot(&self) -> DeviceState {
        DeviceState::Latch(self.value)
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), StateError> {
        match state {
            DeviceState::Latch(v) => {
                self.value = *v;
                Ok(())
            }
            other => Err(StateError::wrong_kind("port 0x92", other)),
        }
    }
}

/// Port 0xcf9 (one byte; 0xcf8 stays the PCI config address register).
/// Bit 2 resets at once, whatever bits 1 and 3 say (QEMU's behaviour);
/// otherwise only bit 1 (system vs. CPU reset) is kept and read back.
pub struct ResetControl {
    value: u8,
    power: Arc<dyn PowerControl>,
}

impl ResetControl {
    pub fn new(power: Arc<dyn PowerControl>) -> Self {
        ResetControl { value: 0, power }
    }
}

/// `piix3_reset` clears the register.
impl Reset for ResetControl {
    fn reset(&mut self) {
        self.value = 0;
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset == 0 {
            if let Some(first) = data.first_mut() {
                *first = self.value;
            }
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let (0, Some(&value)) = (offset, data.first()) else {
            return;
        };
        if value & RCR_RESET_CPU != 0 {
            log::info!("port 0xcf9: guest requested a reset ({value:#04x})");
            self.power.request(PowerRequest::Reboot);
            return;
        }
        self.value = value & RCR_SYSTEM_RESET;
    }
}

impl Snapshot for ResetControl {
    fn snapshot(&self) -> DeviceState {
        DeviceState::Latch(self.value)
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), StateError> {
        match state {
            DeviceState::Latch(v) => {
                self.value = *v & RCR_SYSTEM_RESET;
                Ok(())
            }
            other => Err(StateError::wrong_kind("port 0xcf9", other)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub(crate) struct RecordingPower(pub Mutex<Vec<PowerRequest>>);
    impl PowerControl for RecordingPower {
        fn request(&self, what: PowerRequest) {
            self.0.lock().unwrap().push(what);
        }
    }
    impl RecordingPower {
        pub(crate) fn taken(&self) -> Vec<PowerRequest> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    fn inb(dev: &mut dyn BusDevice) -> u8 {
        let mut b = [0u8];
        dev.read(0, 0, &mut b);
        b[0]
    }

    /// Read-back values measured on QEMU 7.2 over qtest.
    #[test]
    fn port_a_reads_back_and_gates_a20() {
        let power = Arc::new(RecordingPower::default());
        let mut port = PortA::new(power.clone());
        assert_eq!(inb(&mut port), 0x00);
        port.write(0x92, 0, &[0x02]);
        assert_eq!(inb(&mut port), 0x02);
        assert!(port.a20_enabled());
        port.write(0x92, 0, &[0x00]);
        assert!(!port.a20_enabled());
        assert!(power.taken().is_empty());
    }

    #[test]
    fn port_a_resets_on_rising_edge_only() {
        let power = Arc::new(RecordingPower::default());
        let mut port = PortA::new(power.clone());
        port.write(0x92, 0, &[0x03]);
        port.write(0x92, 0, &[0x03]);
        assert_eq!(power.taken(), vec![PowerRequest::Reboot]);
        port.reset();
        assert_eq!(inb(&mut port), 0x02);
        port.write(0x92, 0, &[0x01]);
        assert_eq!(power.taken(), vec![PowerRequest::Reboot]);
    }

    #[test]
    fn reset_control_values() {
        let power = Arc::new(RecordingPower::default());
        let mut rcr = ResetControl::new(power.clone());
        assert_eq!(inb(&mut rcr), 0);
        rcr.write(0xcf9, 0, &[0xf3]);
        assert_eq!(inb(&mut rcr), 0x02);
        assert!(power.taken().is_empty());
        rcr.reset();
        assert_eq!(inb(&mut rcr), 0, "a machine reset clears it");
        rcr.write(0xcf9, 0, &[0x06]);
        rcr.write(0xcf9, 0, &[0x0e]);
        rcr.write(0xcf9, 0, &[0x04]);
        assert_eq!(power.taken(), vec![PowerRequest::Reboot; 3]);
    }

    #[test]
    fn wide_and_offset_accesses_are_harmless() {
        let power = Arc::new(RecordingPower::default());
        let mut rcr = ResetControl::new(power.clone());
        rcr.write(0xcf9, 1, &[0x06]);
        rcr.write(0xcf9, 0, &[]);
        let mut w = [0u8; 4];
        rcr.read(0xcf9, 0, &mut w);
        assert_eq!(w, [0, 0xff, 0xff, 0xff]);
        assert!(power.taken().is_empty());
    }

    proptest! {
        #[test]
        fn reset_requests_match_the_bits(values in proptest::collection::vec(any::<u8>(), 1..50)) {
            let power = Arc::new(RecordingPower::default());
            let mut rcr = ResetControl::new(power.clone());
            let mut port = PortA::new(power.clone());
            let mut expected = 0;
            let mut previous = 0u8;
            for v in &values {
                rcr.write(0xcf9, 0, &[*v]);
                expected += (v & 4 != 0) as usize;
                port.write(0x92, 0, &[*v]);
                expected += (v & 1 != 0 && previous & 1 == 0) as usize;
                previous = *v;
            }
            prop_assert_eq!(power.taken().len(), expected);
        }
    }
}
