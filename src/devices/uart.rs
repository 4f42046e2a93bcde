//! A 16550A UART (COM1 at 0x3f8, IRQ 4 on a PC) with its host side.
//!
//! Transmission is instantaneous: a byte written to THR goes straight to
//! the [`SerialBackend`] and THR is empty again at once, so the guest never
//! waits on a baud-rate clock. Reception goes through [`Uart::receive`],
//! which takes only what the receive FIFO can hold; the host side keeps the
//! rest, which is the flow control a real line would give.
//!
//! With the FIFO on, a receive FIFO below its trigger level reports the
//! character-timeout interrupt at once (real hardware waits four character
//! times), so drivers that wait for a timeout to drain it are never stuck.

use crate::vm::IrqLine;
use std::collections::VecDeque;
use std::sync::Arc;

pub const COM1_BASE: u16 = 0x3f8;
pub const COM1_IRQ: u8 = 4;
pub const REGISTER_COUNT: u16 = 8;
pub const FIFO_SIZE: usize = 16;

const RBR_THR_DLL: u64 = 0;
const IER_DLM: u64 = 1;
const IIR_FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

const IER_RX_DATA: u8 = 0x01;
const IER_THR_EMPTY: u8 = 0x02;
const IER_LINE_STATUS: u8 = 0x04;
const IER_MODEM_STATUS: u8 = 0x08;
const IER_MASK: u8 = 0x0f;

const IIR_NO_INTERRUPT: u8 = 0x01;
const IIR_MODEM_STATUS: u8 = 0x00;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_RX_DATA: u8 = 0x04;
const IIR_LINE_STATUS: u8 = 0x06;
const IIR_CHAR_TIMEOUT: u8 = 0x0c;
const IIR_FIFO_ENABLED: u8 = 0xc0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const FCR_CLEAR_TX: u8 = 0x04;
const FCR_TRIGGER_SHIFT: u8 = 6;

const LCR_DLAB: u8 = 0x80;

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOPBACK: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;

const LSR_DATA_READY: u8 = 0x01;
const LSR_OVERRUN: u8 = 0x02;
const LSR_BREAK: u8 = 0x10;
const LSR_ERRORS: u8 = 0x1e;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TRANSMITTER_EMPTY: u8 = 0x40;

const MSR_DELTA_MASK: u8 = 0x0f;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
/// A connected line without a modem: carrier, data set ready, clear to send.
const MSR_IDLE_LINE: u8 = MSR_DCD | MSR_DSR | MSR_CTS;

/// 115200 / 12 = 9600 baud, the reset divisor QEMU uses.
const RESET_DIVISOR: u16 = 12;

/// Where transmitted bytes go. Must not block: a guest printing to a
/// console nobody reads must not stall the device model.
pub trait SerialBackend: Send {
    fn write(&mut self, bytes: &[u8]);
}

/// Discards output; for a UART the guest may probe but nobody listens to.
#[derive(Debug, Default)]
pub struct NullSerial;

impl SerialBackend for NullSerial {
    fn write(&mut self, _bytes: &[u8]) {}
}

pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    lsr: u8,
    msr: u8,
    scr: u8,
    divisor: u16,
    fifo_enabled: bool,
    rx_trigger: usize,
    rx: VecDeque<u8>,
    /// Last byte handed to the guest; RBR keeps returning it when empty.
    last_rx: u8,
    thr_interrupt_pending: bool,
    irq: Arc<dyn IrqLine>,
    irq_level: bool,
    backend: Box<dyn SerialBackend>,
}

impl Uart {
    pub fn new(irq: Arc<dyn IrqLine>, backend: Box<dyn SerialBackend>) -> Self {
        Uart {
            ier: 0,
            lcr: 0,
            mcr: MCR_OUT2,
            lsr: LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY,
            msr: MSR_IDLE_LINE,
            scr: 0,
            divisor: RESET_DIVISOR,
            fifo_enabled: false,
            rx_trigger: 1,
            rx: VecDeque::with_capacity(FIFO_SIZE),
            last_rx: 0,
            thr_interrupt_pending: false,
            irq,
            irq_level: false,
            backend,
        }
    }

    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled {
            FIFO_SIZE
        } else {
            1
        }
    }

    /// Free space in the receive FIFO; what [`Uart::receive`] would take.
    pub fn rx_space(&self) -> usize {
        if self.mcr & MCR_LOOPBACK != 0 {
            return 0;
        }
        self.rx_capacity().saturating_sub(self.rx.len())
    }

    /// Bytes arriving on the line. Returns how many were taken (bounded by
    /// the FIFO; none while in loopback, where the line is disconnected).
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.len().min(self.rx_space());
        self.rx.extend(&bytes[..taken]);
        if taken > 0 {
            self.lsr |= LSR_DATA_READY;
            self.update_irq();
        }
        taken
    }

    fn push_loopback(&mut self, byte: u8) {
        if self.rx.len() < self.rx_capacity() {
            self.rx.push_back(byte);
        } else {
            self.lsr |= LSR_OVERRUN;
        }
        self.lsr |= LSR_DATA_READY;
    }

    fn interrupt_id(&self) -> u8 {
        if self.ier & IER_LINE_STATUS != 0 && self.lsr & (LSR_OVERRUN | LSR_ERRORS) != 0 {
            return IIR_LINE_STATUS;
        }
        if self.ier & IER_RX_DATA != 0 && !self.rx.is_empty() {
            if !self.fifo_enabled || self.rx.len() >= self.rx_trigger {
                return IIR_RX_DATA;
            }
            return IIR_CHAR_TIMEOUT;
        }
        if self.ier & IER_THR_EMPTY != 0 && self.thr_interrupt_pending {
            return IIR_THR_EMPTY;
        }
        if self.ier & IER_MODEM_STATUS != 0 && self.msr & MSR_DELTA_MASK != 0 {
            return IIR_MODEM_STATUS;
        }
        IIR_NO_INTERRUPT
    }

    fn update_irq(&mut self) {
        let level = self.interrupt_id() != IIR_NO_INTERRUPT;
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn transmit(&mut self, byte: u8) {
        if self.mcr & MCR_LOOPBACK != 0 {
            self.push_loopback(byte);
        } else {
            self.backend.write(&[byte]);
        }
        // The byte left at once: THR is empty again and says so.
        self.lsr |= LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY;
        self.thr_interrupt_pending = true;
    }

    fn set_modem_status(&mut self, lines: u8) {
        let changed = (self.msr ^ lines) & 0xf0;
        let mut delta = self.msr & MSR_DELTA_MASK;
        delta |= (changed & MSR_CTS != 0) as u8;
        delta |= ((changed & MSR_DSR != 0) as u8) << 1;
        // Trailing edge of ring indicator only.
        delta |= ((self.msr & MSR_RI != 0 && lines & MSR_RI == 0) as u8) << 2;
        delta |= ((changed & MSR_DCD != 0) as u8) << 3;
        self.msr = lines | delta;
    }

    fn write_mcr(&mut self, value: u8) {
        let old = self.mcr;
        self.mcr = value & MCR_MASK;
        if self.mcr & MCR_LOOPBACK != 0 {
            let mut lines = 0;
            lines |= if self.mcr & MCR_RTS != 0 { MSR_CTS } else { 0 };
            lines |= if self.mcr & MCR_DTR != 0 { MSR_DSR } else { 0 };
            lines |= if self.mcr & MCR_OUT1 != 0 { MSR_RI } else { 0 };
            lines |= if self.mcr & MCR_OUT2 != 0 { MSR_DCD } else { 0 };
            self.set_modem_status(lines);
        } else if old & MCR_LOOPBACK != 0 {
            self.set_modem_status(MSR_IDLE_LINE);
        }
    }

    fn write_fcr(&mut self, value: u8) {
        let enable = value & FCR_ENABLE != 0;
        if enable != self.fifo_enabled || value & FCR_CLEAR_RX != 0 {
            self.rx.clear();
            self.lsr &= !LSR_DATA_READY;
        }
        if value & FCR_CLEAR_TX != 0 {
            self.lsr |= LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY;
        }
        self.fifo_enabled = enable;
        self.rx_trigger = [1, 4, 8, 14][(value >> FCR_TRIGGER_SHIFT) as usize & 3];
    }

    fn read_register(&mut self, register: u64) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match register {
            RBR_THR_DLL if dlab => self.divisor as u8,
            RBR_THR_DLL => {
                if let Some(byte) = self.rx.pop_front() {
                    self.last_rx = byte;
                }
                if self.rx.is_empty() {
                    self.lsr &= !LSR_DATA_READY;
                }
                self.last_rx
            }
            IER_DLM if dlab => (self.divisor >> 8) as u8,
            IER_DLM => self.ier,
            IIR_FCR => {
                let id = self.interrupt_id();
                // Reading IIR acknowledges a THR-empty interrupt it reports.
                if id == IIR_THR_EMPTY {
                    self.thr_interrupt_pending = false;
                }
                id | if self.fifo_enabled { IIR_FIFO_ENABLED } else { 0 }
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let value = self.lsr;
                self.lsr &= !(LSR_OVERRUN | LSR_ERRORS);
                value
            }
            MSR => {
                let value = self.msr;
                self.msr &= !MSR_DELTA_MASK;
                value
            }
            SCR => self.scr,
            _ => 0xff,
        }
    }

    fn write_register(&mut self, register: u64, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match register {
            RBR_THR_DLL if dlab => self.divisor = (self.divisor & 0xff00) | value as u16,
            RBR_THR_DLL => {
                self.thr_interrupt_pending = false;
                self.transmit(value);
            }
            IER_DLM if dlab => self.divisor = (self.divisor & 0x00ff) | (value as u16) << 8,
            IER_DLM => {
                let enabling_thr = value & IER_THR_EMPTY != 0 && self.ier & IER_THR_EMPTY == 0;
                self.ier = value & IER_MASK;
                // A 16550 raises THRE at once when the interrupt is enabled
                // with THR already empty; drivers count on it to start.
                if enabling_thr && self.lsr & LSR_THR_EMPTY != 0 {
                    self.thr_interrupt_pending = true;
                }
            }
            IIR_FCR => self.write_fcr(value),
            LCR => {
                let starting_break = value & 0x40 != 0 && self.lcr & 0x40 == 0;
                self.lcr = value;
                if starting_break && self.mcr & MCR_LOOPBACK != 0 {
                    self.lsr |= LSR_BREAK;
                }
            }
            MCR => self.write_mcr(value),
            // LSR and MSR are read-only.
            LSR | MSR => {}
            SCR => self.scr = value,
            _ => {}
        }
    }
}

/// QEMU's `serial_reset`: every register back to power-on and both FIFOs
/// emptied, the interrupt lowered. The FIFO control (FCR) is not among
/// the registers QEMU resets, so FIFO mode and the trigger level stay.
impl crate::devices::bus::Reset for Uart {
    fn reset(&mut self) {
        self.ier = 0;
        self.lcr = 0;
        self.mcr = MCR_OUT2;
        self.lsr = LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY;
        self.msr = MSR_IDLE_LINE;
        self.scr = 0;
        self.divisor = RESET_DIVISOR;
        self.rx.clear();
        self.last_rx = 0;
        self.thr_interrupt_pending = false;
        self.update_irq();
    }
}

/// The UART as saved: its registers, the receive FIFO and the line
/// state. Bytes already handed to the pty are the host's; bytes the pty
/// has not delivered yet stay in its buffer on the old host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UartState {
    pub ier: u8,
    pub lcr: u8,
    pub mcr: u8,
    pub lsr: u8,
    pub msr: u8,
    pub scr: u8,
    pub divisor: u16,
    pub fifo_enabled: bool,
    pub rx_trigger: u8,
    pub rx: Vec<u8>,
    pub last_rx: u8,
    pub thr_interrupt_pending: bool,
}

impl crate::devices::state::Snapshot for Uart {
    fn snapshot(&self) -> crate::devices::state::DeviceState {
        crate::devices::state::DeviceState::Uart(UartState {
            ier: self.ier,
            lcr: self.lcr,
            mcr: self.mcr,
            lsr: self.lsr,
            msr: self.msr,
            scr: self.scr,
            divisor: self.divisor,
            fifo_enabled: self.fifo_enabled,
            rx_trigger: self.rx_trigger as u8,
            rx: self.rx.iter().copied().collect(),
            last_rx: self.last_rx,
            thr_interrupt_pending: self.thr_interrupt_pending,
        })
    }

    fn restore(&mut self, state: &crate::devices::state::DeviceState) -> Result<(), crate::devices::state::StateError> {
        use crate::devices::state::StateError;
        let crate::devices::state::DeviceState::Uart(s) = state else {
            return Err(StateError::wrong_kind("uart", state));
        };
        let capacity = if s.fifo_enabled { FIFO_SIZE } else { 1 };
        crate::devices::state::check_len("uart", "receive FIFO", s.rx.len(), capacity)?;
        if ![1, 4, 8, 14].contains(&s.rx_trigger) {
            return Err(StateError::invalid("uart", format!("receive trigger level {}", s.rx_trigger)));
        }
        self.ier = s.ier & IER_MASK;
        self.lcr = s.lcr;
        self.mcr = s.mcr & MCR_MASK;
        self.lsr = s.lsr;
        self.msr = s.msr;
        self.scr = s.scr;
        self.divisor = s.divisor;
        self.fifo_enabled = s.fifo_enabled;
        self.rx_trigger = s.rx_trigger as usize;
        self.rx = s.rx.iter().copied().collect();
        self.last_rx = s.last_rx;
        self.thr_interrupt_pending = s.thr_interrupt_pending;
        // The line goes to the loaded level whatever it was before.
        self.irq_level = self.interrupt_id() != IIR_NO_INTERRUPT;
        self.irq.set_level(self.irq_level);
        Ok(())
    }
}

impl crate::devices::bus::BusDevice for Uart {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let register = offset.saturating_add(i as u64);
            *byte = if register < REGISTER_COUNT as u64 { self.read_register(register) } else { 0xff };
        }
        self.update_irq();
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            let register = offset.saturating_add(i as u64);
            if register < REGISTER_COUNT as u64 {
                self.write_register(register, byte);
            }
        }
        self.update_irq();
    }
}

pub mod pty;
pub use pty::{PtyError, PtyReader, PtySerial};

#[cfg(test)]
mod tests;
