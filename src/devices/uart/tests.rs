//! The 16550A against QEMU 7.2's values: registers, FIFO, loopback, reset.

use super::*;
use crate::devices::bus::BusDevice;
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
struct Line(AtomicBool);
impl IrqLine for Line {
    fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::SeqCst);
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);
impl SerialBackend for Capture {
    fn write(&mut self, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
    }
}

struct Rig {
    uart: Uart,
    irq: Arc<Line>,
    out: Capture,
}

fn rig() -> Rig {
    let irq = Arc::new(Line::default());
    let out = Capture::default();
    Rig { uart: Uart::new(irq.clone(), Box::new(out.clone())), irq, out }
}

impl Rig {
    fn inb(&mut self, reg: u64) -> u8 {
        let mut b = [0u8];
        self.uart.read(0x3f8, reg, &mut b);
        b[0]
    }
    fn outb(&mut self, reg: u64, v: u8) {
        self.uart.write(0x3f8, reg, &[v]);
    }
    fn irq(&self) -> bool {
        self.irq.0.load(Ordering::SeqCst)
    }
}

#[test]
fn a_machine_reset_brings_back_the_reset_values_but_keeps_fifo_mode() {
    use crate::devices::bus::Reset;
    let mut r = rig();
    r.outb(IIR_FCR, 0x01);
    let fifo_iir = r.inb(IIR_FCR);
    r.outb(LCR, 0x80);
    r.outb(0, 0x01);
    r.outb(LCR, 0x1b);
    r.outb(MCR, 0x0b);
    r.outb(SCR, 0x5a);
    r.outb(IER_DLM, 0x0f);
    r.uart.receive(b"xy");
    assert!(r.irq());
    r.uart.reset();
    assert!(!r.irq(), "the interrupt is lowered");
    assert_eq!(r.inb(IER_DLM), 0);
    assert_eq!(r.inb(LCR), 0);
    assert_eq!(r.inb(MCR), 0x08);
    assert_eq!(r.inb(LSR), 0x60, "received bytes are gone");
    assert_eq!(r.inb(0), 0, "RBR reads QEMU's reset value, not a byte received before");
    assert_eq!(r.inb(MSR), 0xb0);
    assert_eq!(r.inb(SCR), 0);
    assert_eq!(r.uart.divisor(), 12);
    assert_eq!(r.inb(IIR_FCR), fifo_iir, "FCR is not reset (QEMU's serial_reset)");
}

#[test]
fn reset_values() {
    let mut r = rig();
    assert_eq!(r.inb(IER_DLM), 0);
    assert_eq!(r.inb(IIR_FCR), 0x01);
    assert_eq!(r.inb(LCR), 0);
    assert_eq!(r.inb(MCR), 0x08);
    assert_eq!(r.inb(LSR), 0x60);
    assert_eq!(r.inb(MSR), 0xb0);
    assert_eq!(r.inb(SCR), 0);
    assert_eq!(r.uart.divisor(), 12);
    assert!(!r.irq());
}

/// hvmloader's uart_exists(): IER must read back 0 and 0x0f.
#[test]
fn hvmloader_ier_probe() {
    let mut r = rig();
    let saved = r.inb(IER_DLM);
    r.outb(IER_DLM, 0);
    assert_eq!(r.inb(IER_DLM), 0);
    r.outb(IER_DLM, 0xff);
    assert_eq!(r.inb(IER_DLM), 0x0f);
    r.outb(IER_DLM, saved);
}

#[test]
fn divisor_latch_and_scratch() {
    let mut r = rig();
    r.outb(LCR, 0x83);
    r.outb(RBR_THR_DLL, 0x01);
    r.outb(IER_DLM, 0x00);
    assert_eq!(r.inb(RBR_THR_DLL), 0x01);
    assert_eq!(r.inb(IER_DLM), 0x00);
    r.outb(LCR, 0x03);
    assert_eq!(r.uart.divisor(), 1);
    assert_eq!(r.inb(IER_DLM), 0, "IER untouched by DLM writes");
    assert!(r.out.0.lock().unwrap().is_empty(), "DLL writes do not transmit");
    r.outb(SCR, 0xa5);
    assert_eq!(r.inb(SCR), 0xa5);
}

#[test]
fn transmit_and_thre_interrupt() {
    let mut r = rig();
    r.outb(RBR_THR_DLL, b'h');
    r.outb(RBR_THR_DLL, b'i');
    assert_eq!(*r.out.0.lock().unwrap(), b"hi");
    assert_eq!(r.inb(LSR) & 0x60, 0x60);
    assert!(!r.irq(), "THRE interrupt not enabled yet");
    r.outb(IER_DLM, IER_THR_EMPTY);
    assert!(r.irq(), "enabling THRI with THR empty interrupts at once");
    assert_eq!(r.inb(IIR_FCR), IIR_THR_EMPTY);
    assert!(!r.irq(), "reading IIR acknowledges THRE");
    assert_eq!(r.inb(IIR_FCR), IIR_NO_INTERRUPT);
    r.outb(RBR_THR_DLL, b'!');
    assert!(r.irq());
    assert_eq!(r.inb(IIR_FCR), IIR_THR_EMPTY);
}

#[test]
fn receive_without_fifo_holds_one_byte() {
    let mut r = rig();
    r.outb(IER_DLM, IER_RX_DATA);
    assert_eq!(r.uart.receive(b"ab"), 1);
    assert!(r.irq());
    assert_eq!(r.inb(IIR_FCR), IIR_RX_DATA);
    assert_eq!(r.inb(LSR) & LSR_DATA_READY, LSR_DATA_READY);
    assert_eq!(r.inb(RBR_THR_DLL), b'a');
    assert!(!r.irq());
    assert_eq!(r.inb(LSR) & LSR_DATA_READY, 0);
    assert_eq!(r.inb(RBR_THR_DLL), b'a', "RBR keeps its last byte");
    assert_eq!(r.uart.receive(b"b"), 1);
}

#[test]
fn fifo_bounds_trigger_level_and_timeout() {
    let mut r = rig();
    r.outb(IIR_FCR, 0x87); // FIFO on, clear both, trigger 8
    r.outb(IER_DLM, IER_RX_DATA);
    assert_eq!(r.inb(IIR_FCR), 0xc1);
    let data: Vec<u8> = (0..40).collect();
    assert_eq!(r.uart.receive(&data[..3]), 3);
    assert_eq!(r.inb(IIR_FCR), 0xc0 | IIR_CHAR_TIMEOUT);
    assert_eq!(r.uart.receive(&data[3..]), FIFO_SIZE - 3);
    assert_eq!(r.uart.rx_space(), 0);
    assert_eq!(r.inb(IIR_FCR), 0xc0 | IIR_RX_DATA);
    let got: Vec<u8> = (0..FIFO_SIZE).map(|_| r.inb(RBR_THR_DLL)).collect();
    assert_eq!(got, data[..FIFO_SIZE]);
    assert!(!r.irq());
    assert_eq!(r.inb(LSR) & LSR_OVERRUN, 0, "the host side keeps what does not fit");
    r.uart.receive(b"xyz");
    r.outb(IIR_FCR, 0x03);
    assert_eq!(r.inb(LSR) & LSR_DATA_READY, 0, "FCR clears the receive FIFO");
    r.outb(IIR_FCR, 0x00);
    assert_eq!(r.inb(IIR_FCR), 0x01);
}

#[test]
fn loopback_echoes_and_reflects_modem_lines() {
    let mut r = rig();
    r.outb(MCR, MCR_LOOPBACK | MCR_OUT2 | MCR_RTS);
    let msr = r.inb(MSR);
    assert_eq!(msr & 0xf0, MSR_DCD | MSR_CTS);
    assert_eq!(msr & MSR_DELTA_MASK, 0x02, "DSR dropped");
    assert_eq!(r.inb(MSR) & MSR_DELTA_MASK, 0, "reading MSR clears the deltas");
    r.outb(RBR_THR_DLL, 0x5a);
    assert!(r.out.0.lock().unwrap().is_empty(), "loopback output stays inside");
    assert_eq!(r.uart.receive(b"q"), 0, "the line is disconnected in loopback");
    assert_eq!(r.inb(RBR_THR_DLL), 0x5a);
    r.outb(RBR_THR_DLL, 1);
    r.outb(RBR_THR_DLL, 2);
    assert_eq!(r.inb(LSR) & (LSR_OVERRUN | LSR_DATA_READY), LSR_OVERRUN | LSR_DATA_READY);
    assert_eq!(r.inb(LSR) & LSR_OVERRUN, 0, "reading LSR clears overrun");
    r.outb(MCR, MCR_OUT2);
    assert_eq!(r.inb(MSR) & 0xf0, MSR_IDLE_LINE);
}

#[test]
fn line_status_and_modem_interrupts() {
    let mut r = rig();
    r.outb(IER_DLM, IER_LINE_STATUS | IER_MODEM_STATUS);
    r.outb(MCR, MCR_LOOPBACK);
    assert!(r.irq());
    assert_eq!(r.inb(IIR_FCR), IIR_MODEM_STATUS);
    r.inb(MSR);
    assert!(!r.irq());
    r.outb(RBR_THR_DLL, 1);
    r.outb(RBR_THR_DLL, 2);
    assert_eq!(r.inb(IIR_FCR), IIR_LINE_STATUS);
    r.inb(LSR);
    assert!(!r.irq());
    r.outb(LCR, 0x40);
    assert_eq!(r.inb(IIR_FCR), IIR_LINE_STATUS);
    assert_eq!(r.inb(LSR) & LSR_BREAK, LSR_BREAK);
}

#[test]
fn wide_accesses_split_into_registers() {
    let mut r = rig();
    r.uart.write(0x3f8, 6, &[0xff, 0x77, 0x55, 0x44]);
    assert_eq!(r.inb(SCR), 0x77);
    let mut w = [0u8; 4];
    r.uart.read(0x3f8, 6, &mut w);
    assert_eq!(w, [0xb0, 0x77, 0xff, 0xff]);
}

proptest! {
    #[test]
    fn random_accesses_keep_invariants(
        ops in proptest::collection::vec((0u8..3, 0u64..10, any::<u8>(), 0usize..5), 1..200)
    ) {
        let mut r = rig();
        for (kind, reg, value, len) in ops {
            match kind {
                0 => r.uart.write(0x3f8, reg, &[value; 4][..len.min(4)]),
                1 => {
                    let mut buf = vec![0u8; len];
                    r.uart.read(0x3f8, reg, &mut buf);
                }
                _ => {
                    let before = r.uart.rx.len();
                    let taken = r.uart.receive(&vec![value; len * 5]);
                    prop_assert_eq!(r.uart.rx.len(), before + taken);
                }
            }
            prop_assert!(r.uart.rx.len() <= FIFO_SIZE);
            prop_assert_eq!(r.irq(), r.uart.interrupt_id() != IIR_NO_INTERRUPT);
        }
    }
}
