//! Interrupt lines into Xen's virtual PIC/IOAPIC: ISA IRQs, PCI INTx, and
//! the PIIX3 PIRQ link routing.

use super::dm::DeviceModelHandle;
use super::Result;
use crate::machine::IrqLine;
use std::sync::{Arc, Mutex};

/// The dm_ops an interrupt line needs (a trait so lines are testable
/// without Xen).
pub trait InterruptController: Send + Sync {
    fn set_isa_irq_level(&self, irq: u8, high: bool) -> Result<()>;
    fn set_pci_intx_level(&self, bus: u8, device: u8, intx: u8, high: bool) -> Result<()>;
    fn set_pci_link_route(&self, link: u8, irq: u8) -> Result<()>;
}

impl InterruptController for DeviceModelHandle {
    fn set_isa_irq_level(&self, irq: u8, high: bool) -> Result<()> {
        DeviceModelHandle::set_isa_irq_level(self, irq, high)
    }
    fn set_pci_intx_level(&self, bus: u8, device: u8, intx: u8, high: bool) -> Result<()> {
        DeviceModelHandle::set_pci_intx_level(self, bus, device, intx, high)
    }
    fn set_pci_link_route(&self, link: u8, irq: u8) -> Result<()> {
        DeviceModelHandle::set_pci_link_route(self, link, irq)
    }
}

/// Remembers the last level Xen accepted, so only changes cost a hypercall.
/// A failed call is logged and forgotten: the next set_level retries it.
#[derive(Default)]
struct LastLevel(Mutex<Option<bool>>);

impl LastLevel {
    fn update(&self, high: bool, send: impl FnOnce() -> Result<()>, what: &dyn Fn() -> String) {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *last == Some(high) {
            return;
        }
        match send() {
            Ok(()) => *last = Some(high),
            Err(e) => {
                *last = None;
                // Every retry is another line, and the guest drives the
                // level as often as it does I/O.
                crate::logging::ratelimit::log_global(log::Level::Error, "irq-level", format_args!("{}: {e}", what()));
            }
        }
    }
}

/// An ISA interrupt line (0-15), e.g. IRQ 14/15 of legacy IDE.
pub struct IsaIrq {
    controller: Arc<dyn InterruptController>,
    irq: u8,
    last: LastLevel,
}

impl IsaIrq {
    pub fn new(controller: Arc<dyn InterruptController>, irq: u8) -> Self {
        IsaIrq { controller, irq, last: LastLevel::default() }
    }
}

impl IrqLine for IsaIrq {
    fn set_level(&self, high: bool) {
        self.last.update(high, || self.controller.set_isa_irq_level(self.irq, high), &|| format!("setting ISA IRQ {} to {}", self.irq, u8::from(high)));
    }
}

/// A PCI INTx pin (0 = INTA .. 3 = INTD) of a device on segment 0.
pub struct PciIntx {
    controller: Arc<dyn InterruptController>,
    bus: u8,
    device: u8,
    intx: u8,
    last: LastLevel,
}

impl PciIntx {
    pub fn new(controller: Arc<dyn InterruptController>, bus: u8, device: u8, intx: u8) -> Self {
        PciIntx { controller, bus, device, intx, last: LastLevel::default() }
    }
}

impl IrqLine for PciIntx {
    fn set_level(&self, high: bool) {
        self.last.update(
            high,
            || self.controller.set_pci_intx_level(self.bus, self.device, self.intx, high),
            &|| format!("setting INT{} of PCI {:02x}:{:02x} to {}", (b'A' + self.intx) as char, self.bus, self.device, u8::from(high)),
        );
    }
}

/// Forwards guest writes of the PIIX3 PIRQ route registers (config
/// 0x60-0x63 of 00:01.0) to Xen, as QEMU's xen_piix_pci_write_config_client.
pub struct PciLinkRouter {
    controller: Arc<dyn InterruptController>,
    routes: Mutex<[Option<u8>; 4]>,
}

impl PciLinkRouter {
    pub fn new(controller: Arc<dyn InterruptController>) -> Self {
        PciLinkRouter { controller, routes: Mutex::new([None; 4]) }
    }

    /// A config write of `size` bytes at `reg` with `value`: every byte that
    /// lands in 0x60..=0x63 updates its link. Bit 7 disables the link
    /// (IRQ 0 for Xen), bits 0-3 are the ISA IRQ.
    pub fn config_write(&self, reg: u16, size: u8, value: u32) {
        for i in 0..u16::from(size.min(4)) {
            let Some(byte_reg) = reg.checked_add(i) else { break };
            if !(0x60..=0x63).contains(&byte_reg) {
                continue;
            }
            let byte = (value >> (8 * i)) as u8;
            let irq = if byte & 0x80 != 0 { 0 } else { byte & 0x0f };
            self.route((byte_reg - 0x60) as u8, irq);
        }
    }

    fn route(&self, link: u8, irq: u8) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes[usize::from(link)] == Some(irq) {
            return;
        }
        match self.controller.set_pci_link_route(link, irq) {
            Ok(()) => routes[usize::from(link)] = Some(irq),
            Err(e) => {
                routes[usize::from(link)] = None;
                // The guest writes the PIRQ registers at will.
                crate::logging::ratelimit::log_global(
                    log::Level::Error,
                    "pci-link-route",
                    format_args!("routing PCI link {link} to IRQ {irq}: {e}"),
                );
            }
        }
    }

    /// A callback for the PIIX3 function: `(reg, size, value)`.
    pub fn into_callback(self: Arc<Self>) -> Box<dyn Fn(u16, u8, u32) + Send + Sync> {
        Box::new(move |reg, size, value| self.config_write(reg, size, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::XenError;

    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Recorder {
        fn record(&self, s: String) -> Result<()> {
            self.calls.lock().unwrap().push(s);
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(XenError::DmOp { op: "test", domid: 1, source: std::io::Error::from_raw_os_error(libc::EINVAL) });
            }
            Ok(())
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
    }

    impl InterruptController for Recorder {
        fn set_isa_irq_level(&self, irq: u8, high: bool) -> Result<()> {
            self.record(format!("isa {irq} {high}"))
        }
        fn set_pci_intx_level(&self, bus: u8, device: u8, intx: u8, high: bool) -> Result<()> {
            self.record(format!("intx {bus} {device} {intx} {high}"))
        }
        fn set_pci_link_route(&self, link: u8, irq: u8) -> Result<()> {
            self.record(format!("link {link} {irq}"))
        }
    }

    #[test]
    fn isa_irq_sends_only_level_changes_and_retries_after_failure() {
        let rec = Arc::new(Recorder::default());
        let irq = IsaIrq::new(rec.clone(), 14);
        irq.set_level(true);
        irq.set_level(true);
        irq.set_level(false);
        assert_eq!(rec.take(), vec!["isa 14 true", "isa 14 false"]);
        rec.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        irq.set_level(true);
        rec.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        irq.set_level(true);
        assert_eq!(rec.take(), vec!["isa 14 true", "isa 14 true"], "a failed raise is sent again");
    }

    #[test]
    fn pci_intx_carries_bus_device_and_pin() {
        let rec = Arc::new(Recorder::default());
        let pin = PciIntx::new(rec.clone(), 0, 1, 0);
        pin.set_level(true);
        pin.set_level(true);
        assert_eq!(rec.take(), vec!["intx 0 1 0 true"]);
    }

    #[test]
    fn pirq_writes_route_each_byte_and_bit7_disables() {
        let rec = Arc::new(Recorder::default());
        let router = Arc::new(PciLinkRouter::new(rec.clone()));
        let cb = router.clone().into_callback();
        cb(0x60, 4, 0x8b_0a_05_0b);
        assert_eq!(rec.take(), vec!["link 0 11", "link 1 5", "link 2 10", "link 3 0"]);
        cb(0x61, 1, 0x05);
        assert!(rec.take().is_empty(), "unchanged route is not resent");
        cb(0x5e, 4, 0x0000_0e00);
        assert_eq!(rec.take(), vec!["link 0 0", "link 1 0"], "bytes 2-3 of a write at 0x5e land on 0x60/0x61");
        cb(0xfffe, 4, 0xffff_ffff);
        cb(0x64, 4, 0);
        assert!(rec.take().is_empty());
    }
}
