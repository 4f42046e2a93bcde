//! The i8042 keyboard controller at 0x60/0x64, without keyboard or mouse:
//! what firmware and kernels need from it is the self-test, the command
//! byte, the output port (A20) and the reset line (command 0xfe).
//!
//! Values and status transitions follow QEMU 7.2 as measured over qtest.

use crate::devices::bus::{BusDevice, Reset};
use crate::vm::{IrqLine, PowerControl, PowerRequest};
use std::sync::Arc;

pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;

const STATUS_OBF: u8 = 0x01;
const STATUS_SYSTEM: u8 = 0x04;
/// "Last write was a command". QEMU sets it at reset and never changes it;
/// we do the same so the two read alike.
const STATUS_CMD: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;
const STATUS_AUX_OBF: u8 = 0x20;

const MODE_KBD_INT: u8 = 0x01;
const MODE_AUX_INT: u8 = 0x02;
const MODE_DISABLE_KBD: u8 = 0x10;
const MODE_DISABLE_AUX: u8 = 0x20;

const OUTPORT_RESET: u8 = 0x01;
const OUTPORT_A20: u8 = 0x02;
const OUTPORT_OBF: u8 = 0x10;
const OUTPORT_AUX_OBF: u8 = 0x20;
const OUTPORT_RESET_VALUE: u8 = 0xcf;

const SELF_TEST_PASSED: u8 = 0x55;
const INTERFACE_TEST_PASSED: u8 = 0x00;
const INPUT_PORT_VALUE: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
enum PendingData {
    None,
    CommandByte,
    OutputPort,
    KeyboardOutput,
    AuxOutput,
    AuxDevice,
}

pub struct I8042 {
    /// Everything the guest can change; saved and loaded whole.
    regs: I8042State,
    power: Arc<dyn PowerControl>,
    keyboard_irq: Option<Arc<dyn IrqLine>>,
    aux_irq: Option<Arc<dyn IrqLine>>,
}

impl I8042 {
    /// `keyboard_irq` is ISA IRQ 1 and `aux_irq` IRQ 12; either may be left
    /// out when the machine polls only.
    pub fn new(
        power: Arc<dyn PowerControl>,
        keyboard_irq: Option<Arc<dyn IrqLine>>,
        aux_irq: Option<Arc<dyn IrqLine>>,
    ) -> Self {
        I8042 {
            regs: I8042State {
                status: STATUS_CMD | STATUS_UNLOCKED,
                mode: MODE_KBD_INT | MODE_AUX_INT,
                outport: OUTPORT_RESET_VALUE,
                output: 0,
                output_is_aux: false,
                pending: PendingData::None,
            },
            power,
            keyboard_irq,
            aux_irq,
        }
    }

    pub fn a20_enabled(&self) -> bool {
        self.regs.outport & OUTPORT_A20 != 0
    }

    pub fn command_byte(&self) -> u8 {
        self.regs.mode
    }

    fn update_lines(&mut self) {
        let full = self.regs.status & STATUS_OBF != 0;
        self.regs.outport &= !(OUTPORT_OBF | OUTPORT_AUX_OBF);
        if full {
            self.regs.outport |= if self.regs.output_is_aux {
                OUTPORT_AUX_OBF
            } else {
                OUTPORT_OBF
            };
        }
        let kbd_level = full && !self.regs.output_is_aux && self.regs.mode & MODE_KBD_INT != 0;
        let aux_level = full && self.regs.output_is_aux && self.regs.mode & MODE_AUX_INT != 0;
        if let Some(irq) = &self.keyboard_irq {
            irq.set_level(kbd_level);
        }
        if let Some(irq) = &self.aux_irq {
            irq.set_level(aux_level);
        }
    }

    fn queue(&mut self, byte: u8, aux: bool) {
        self.regs.output = byte;
        self.regs.output_is_aux = aux;
        self.regs.status |= STATUS_OBF;
        if aux {
            self.regs.status |= STATUS_AUX_OBF;
        } else {
            self.regs.status &= !STATUS_AUX_OBF;
        }
        self.update_lines();
    }

    fn write_outport(&mut self, value: u8) {
        self.regs.outport = value;
        if value & OUTPORT_RESET == 0 {
            log::info!("i8042: guest pulled the reset line through the output port");
            self.power.request(PowerRequest::Reboot);
        }
    }

    fn command(&mut self, command: u8) {
        self.regs.pending = PendingData::None;
        match command {
            0x20 => self.queue(self.regs.mode, false),
            0x60 => self.regs.pending = PendingData::CommandByte,
            0xa7 => self.regs.mode |= MODE_DISABLE_AUX,
            0xa8 => self.regs.mode &= !MODE_DISABLE_AUX,
            0xa9 | 0xab => self.queue(INTERFACE_TEST_PASSED, false),
            0xaa => {
                self.regs.status |= STATUS_SYSTEM;
                self.queue(SELF_TEST_PASSED, false);
            }
            0xad => self.regs.mode |= MODE_DISABLE_KBD,
            0xae => self.regs.mode &= !MODE_DISABLE_KBD,
            0xc0 => self.queue(INPUT_PORT_VALUE, false),
            0xd0 => self.queue(self.regs.outport, false),
            0xd1 => self.regs.pending = PendingData::OutputPort,
            0xd2 => self.regs.pending = PendingData::KeyboardOutput,
            0xd3 => self.regs.pending = PendingData::AuxOutput,
            0xd4 => self.regs.pending = PendingData::AuxDevice,
            0xdd => self.regs.outport &= !OUTPORT_A20,
            0xdf => self.regs.outport |= OUTPORT_A20,
            0xe0 => self.queue(0x00, false),
            // Pulse output port bits low: bit 0 is the CPU reset line.
            0xf0..=0xff => {
                if command & 0x01 == 0 {
                    log::info!("i8042: guest requested a reset (command {command:#04x})");
                    self.power.request(PowerRequest::Reboot);
                }
            }
            other => log::debug!("i8042: unsupported controller command {other:#04x} ignored"),
        }
    }

    fn data(&mut self, value: u8) {
        let pending = std::mem::replace(&mut self.regs.pending, PendingData::None);
        match pending {
            PendingData::CommandByte => {
                self.regs.mode = value;
                self.update_lines();
            }
            PendingData::OutputPort => self.write_outport(value),
            PendingData::KeyboardOutput => self.queue(value, false),
            PendingData::AuxOutput => self.queue(value, true),
            // No keyboard or mouse is attached: bytes sent to them are lost
            // and the guest's driver times out, as on a board with empty
            // PS/2 sockets.
            PendingData::AuxDevice | PendingData::None => {}
        }
    }

    fn read_data(&mut self) -> u8 {
        // Only a read that empties the buffer recomputes the output-port
        // OBF bits, so a value written through 0xd1 reads back unchanged
        // until then (measured on QEMU 7.2).
        if self.regs.status & STATUS_OBF != 0 {
            self.regs.status &= !(STATUS_OBF | STATUS_AUX_OBF);
            self.update_lines();
        }
        self.regs.output
    }
}

/// The i8042 as saved: its registers, the output byte and a half-done
/// two-byte command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct I8042State {
    status: u8,
    mode: u8,
    outport: u8,
    /// The byte the guest reads from 0x60; stays readable after OBF clears.
    output: u8,
    output_is_aux: bool,
    pending: PendingData,
}

impl crate::devices::state::Snapshot for I8042 {
    fn snapshot(&self) -> crate::devices::state::DeviceState {
        crate::devices::state::DeviceState::I8042(self.regs.clone())
    }

    /// Every combination of these bytes is one the guest could reach, so
    /// nothing needs refusing. The output port is loaded as it was, not
    /// written: a loaded reset bit of 0 does not reset the machine.
    fn restore(&mut self, state: &crate::devices::state::DeviceState) -> Result<(), crate::devices::state::StateError> {
        let crate::devices::state::DeviceState::I8042(s) = state else {
            return Err(crate::devices::state::StateError::wrong_kind("i8042", state));
        };
        self.regs = s.clone();
        let full = self.regs.status & STATUS_OBF != 0;
        if let Some(irq) = &self.keyboard_irq {
            irq.set_level(full && !self.regs.output_is_aux && self.regs.mode & MODE_KBD_INT != 0);
        }
        if let Some(irq) = &self.aux_irq {
            irq.set_level(full && self.regs.output_is_aux && self.regs.mode & MODE_AUX_INT != 0);
        }
        Ok(())
    }
}

/// QEMU's `kbd_reset`: command byte, status, output port (A20 on) and
/// any half-done two-byte command back to power-on, the interrupts
/// lowered. The last output byte is not reset there either.
impl Reset for I8042 {
    fn reset(&mut self) {
        self.regs.status = STATUS_CMD | STATUS_UNLOCKED;
        self.regs.mode = MODE_KBD_INT | MODE_AUX_INT;
        self.regs.outport = OUTPORT_RESET_VALUE;
        self.regs.pending = PendingData::None;
        self.update_lines();
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some(first) = data.first_mut() else { return };
        match base + offset {
            p if p == DATA_PORT as u64 => *first = self.read_data(),
            p if p == COMMAND_PORT as u64 => *first = self.regs.status,
            _ => {}
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match base + offset {
            p if p == DATA_PORT as u64 => self.data(value),
            p if p == COMMAND_PORT as u64 => self.command(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::reset::tests::RecordingPower;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Line(AtomicBool);
    impl IrqLine for Line {
        fn set_level(&self, high: bool) {
            self.0.store(high, Ordering::SeqCst);
        }
    }

    struct Rig {
        kbc: I8042,
        power: Arc<RecordingPower>,
        irq1: Arc<Line>,
    }

    fn rig() -> Rig {
        let power = Arc::new(RecordingPower::default());
        let irq1 = Arc::new(Line::default());
        let kbc = I8042::new(power.clone(), Some(irq1.clone()), None);
        Rig { kbc, power, irq1 }
    }

    impl Rig {
        fn inb(&mut self, port: u16) -> u8 {
            let mut b = [0u8];
            self.kbc.read(port as u64, 0, &mut b);
            b[0]
        }
        fn outb(&mut self, port: u16, v: u8) {
            self.kbc.write(port as u64, 0, &[v]);
        }
    }

    /// QEMU 7.2 over qtest (tests/differential/reset.rs).
    #[test]
    fn reset_brings_back_command_byte_status_and_output_port() {
        let mut r = rig();
        r.outb(0x64, 0x60);
        r.outb(0x60, 0x75);
        r.outb(0x64, 0xd1);
        r.outb(0x60, 0xdd);
        r.outb(0x64, 0xaa);
        assert!(r.irq1.0.load(Ordering::SeqCst));
        r.outb(0x64, 0x60);
        r.kbc.reset();
        assert!(!r.irq1.0.load(Ordering::SeqCst), "the interrupt is lowered");
        assert_eq!(r.inb(0x64), 0x18, "status as at power-on, the output buffer empty");
        r.outb(0x64, 0x20);
        assert_eq!(r.inb(0x60), 0x03);
        r.outb(0x64, 0xd0);
        assert_eq!(r.inb(0x60), 0xcf);
        assert!(r.kbc.a20_enabled());
        assert!(r.power.taken().is_empty());
    }

    /// The sequence and values were measured on QEMU 7.2 over qtest.
    #[test]
    fn self_test_and_status_like_qemu() {
        let mut r = rig();
        assert_eq!(r.inb(0x64), 0x18);
        r.outb(0x64, 0xaa);
        assert_eq!(r.inb(0x64), 0x1d);
        assert!(r.irq1.0.load(Ordering::SeqCst));
        assert_eq!(r.inb(0x60), 0x55);
        assert!(!r.irq1.0.load(Ordering::SeqCst));
        assert_eq!(r.inb(0x64), 0x1c);
        assert_eq!(r.inb(0x60), 0x55, "the last byte stays readable");
        r.outb(0x64, 0x20);
        assert_eq!(r.inb(0x64), 0x1d);
        assert_eq!(r.inb(0x60), 0x03);
    }

    #[test]
    fn interface_tests_input_port_and_command_byte() {
        let mut r = rig();
        for (command, answer) in [(0xab, 0x00), (0xa9, 0x00), (0xc0, 0x80), (0xd0, 0xcf)] {
            r.outb(0x64, command);
            assert_eq!(r.inb(0x60), answer, "command {command:#x}");
        }
        r.outb(0x64, 0x60);
        r.outb(0x60, 0x65);
        assert_eq!(r.inb(0x64) & STATUS_CMD, STATUS_CMD, "QEMU never clears it");
        r.outb(0x64, 0x20);
        assert_eq!(r.inb(0x60), 0x65);
        r.outb(0x64, 0xad);
        r.outb(0x64, 0xa7);
        assert_eq!(r.kbc.command_byte(), 0x65 | 0x30);
    }

    #[test]
    fn a20_through_output_port_and_shortcuts() {
        let mut r = rig();
        r.outb(0x64, 0xd1);
        r.outb(0x60, 0xdd);
        r.outb(0x64, 0xd0);
        assert_eq!(r.inb(0x60), 0xdd);
        assert_eq!(
            r.inb(0x64),
            STATUS_CMD | STATUS_UNLOCKED,
            "0x1c on QEMU after its earlier self-test"
        );
        r.outb(0x64, 0xdd);
        r.outb(0x64, 0xd0);
        assert_eq!(r.inb(0x60), 0xcd);
        assert!(!r.kbc.a20_enabled());
        r.outb(0x64, 0xdf);
        r.outb(0x64, 0xd0);
        assert_eq!(r.inb(0x60), 0xcf);
        assert!(r.kbc.a20_enabled());
        assert!(r.power.taken().is_empty());
    }

    #[test]
    fn reset_by_pulse_command_and_by_output_port() {
        let mut r = rig();
        r.outb(0x64, 0xff);
        assert!(r.power.taken().is_empty());
        r.outb(0x64, 0xfe);
        assert_eq!(r.power.taken(), vec![PowerRequest::Reboot]);
        r.outb(0x64, 0xd1);
        r.outb(0x60, 0xfe);
        assert_eq!(r.power.taken(), vec![PowerRequest::Reboot]);
    }

    #[test]
    fn bytes_for_absent_devices_vanish() {
        let mut r = rig();
        r.outb(0x60, 0xf2);
        r.outb(0x64, 0xd4);
        r.outb(0x60, 0xf2);
        assert_eq!(r.inb(0x64) & STATUS_OBF, 0);
        r.outb(0x64, 0xd3);
        r.outb(0x60, 0x42);
        assert_eq!(r.inb(0x64) & (STATUS_OBF | STATUS_AUX_OBF), STATUS_OBF | STATUS_AUX_OBF);
        assert_eq!(r.inb(0x60), 0x42);
    }

    proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<u8>(), 0usize..5), 1..100)) {
            let mut r = rig();
            for (data_port, write, value, len) in ops {
                let port = if data_port { 0x60 } else { 0x64 };
                if write {
                    r.kbc.write(port, 0, &[value; 4][..len.min(4)]);
                } else {
                    let mut buf = vec![0u8; len];
                    r.kbc.read(port, 0, &mut buf);
                }
            }
            let status = r.inb(0x64);
            prop_assert_eq!(status & STATUS_UNLOCKED, STATUS_UNLOCKED);
            let _ = r.power.taken();
        }
    }
}
