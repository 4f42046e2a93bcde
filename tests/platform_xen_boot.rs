//! A Xen guest's life as the platform devices see it, through a port bus
//! wired the way the Xen machine wires them: hvmloader's PCI setup and
//! probes, a PV driver's unplug handshake, then the guest powering off and
//! rebooting.

use std::sync::{Arc, Mutex};

use xen_ioemu::devices::bus::Bus;
use xen_ioemu::devices::cmos::{BootOrder, Cmos, CmosScope, CmosSetup, MemoryLayout};
use xen_ioemu::devices::i8042::I8042;
use xen_ioemu::devices::pci::piix3_isa::Piix3Isa;
use xen_ioemu::devices::pci::piix4_pm::{Piix4Pm, Piix4PmOptions};
use xen_ioemu::devices::pci::xen_platform::{UnplugMask, XenPlatform, FIXED_PORT_BASE, FIXED_PORT_LEN};
use xen_ioemu::devices::pci::PciFunction;
use xen_ioemu::devices::reset::{PortA, ResetControl};
use xen_ioemu::devices::uart::{NullSerial, Uart};
use xen_ioemu::machine::{IrqLine, PowerControl, PowerRequest};

#[derive(Default)]
struct Power(Mutex<Vec<PowerRequest>>);
impl PowerControl for Power {
    fn request(&self, what: PowerRequest) {
        self.0.lock().unwrap().push(what);
    }
}
impl Power {
    fn taken(&self) -> Vec<PowerRequest> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct NoIrq;
impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) {}
}

type RouteLog = Arc<Mutex<Vec<(u8, Option<u8>)>>>;

struct XenMachine {
    bus: Bus,
    power: Arc<Power>,
    isa: Arc<Mutex<Piix3Isa>>,
    pm: Arc<Mutex<Piix4Pm>>,
    pm_ranges: Vec<u64>,
    platform: Arc<Mutex<XenPlatform>>,
    platform_bar: Option<u64>,
    routes: RouteLog,
    unplugs: Arc<Mutex<Vec<UnplugMask>>>,
}

impl XenMachine {
    fn new() -> Self {
        let power = Arc::new(Power::default());
        let routes = Arc::new(Mutex::new(Vec::new()));
        let unplugs = Arc::new(Mutex::new(Vec::new()));
        let mut bus = Bus::new();
        let cmos = Cmos::new(&CmosSetup {
            scope: CmosScope::NvramOnly,
            memory: MemoryLayout {
                below_4g: 1 << 30,
                above_4g: 0,
            },
            boot_order: BootOrder::parse("dc").unwrap(),
            floppy_boot_check: true,
            hard_disks: [None; 4],
        });
        bus.insert(Arc::new(Mutex::new(cmos)), 0x70, 2).unwrap();
        let kbc = Arc::new(Mutex::new(I8042::new(power.clone(), None, None)));
        bus.insert(kbc.clone(), 0x60, 1).unwrap();
        bus.insert(kbc, 0x64, 1).unwrap();
        bus.insert(Arc::new(Mutex::new(PortA::new(power.clone()))), 0x92, 1)
            .unwrap();
        bus.insert(Arc::new(Mutex::new(ResetControl::new(power.clone()))), 0xcf9, 1)
            .unwrap();
        bus.insert(
            Arc::new(Mutex::new(Uart::new(Arc::new(NoIrq), Box::new(NullSerial)))),
            0x3f8,
            8,
        )
        .unwrap();
        let isa = Arc::new(Mutex::new(Piix3Isa::new()));
        let pm = Arc::new(Mutex::new(Piix4Pm::new(
            power.clone(),
            Piix4PmOptions {
                smm_enabled: false,
                com1: true,
                com2: false,
            },
        )));
        let sink = unplugs.clone();
        let platform = Arc::new(Mutex::new(XenPlatform::new(Arc::new(move |m| {
            sink.lock().unwrap().push(m)
        }))));
        bus.insert(platform.clone(), FIXED_PORT_BASE as u64, FIXED_PORT_LEN as u64)
            .unwrap();
        let mut machine = XenMachine {
            bus,
            power,
            isa,
            pm,
            pm_ranges: Vec::new(),
            platform,
            platform_bar: None,
            routes,
            unplugs,
        };
        machine.remap();
        machine
    }

    /// What the machine does after each config write: follow the ranges.
    fn remap(&mut self) {
        for base in self.pm_ranges.drain(..) {
            self.bus.remove(base);
        }
        for range in self.pm.lock().unwrap().io_ranges() {
            self.bus
                .insert(self.pm.clone(), range.base as u64, range.len as u64)
                .unwrap();
            self.pm_ranges.push(range.base as u64);
        }
        if let Some(base) = self.platform_bar.take() {
            self.bus.remove(base);
        }
        if let Some(bar) = self.platform.lock().unwrap().io_bars().first() {
            self.bus
                .insert(self.platform.clone(), bar.base as u64, bar.len as u64)
                .unwrap();
            self.platform_bar = Some(bar.base as u64);
        }
    }

    /// The routes a write returns are what the Xen front hands to
    /// set_pci_link_route; they are logged as it would send them.
    fn config_write(&mut self, function: &Arc<Mutex<impl PciFunction>>, offset: u8, size: u8, value: u32) {
        let result = function.lock().unwrap().config_write(offset, size, value);
        self.routes.lock().unwrap().extend(result.pirq_routes.iter().map(|r| (r.link, r.irq)));
        self.remap();
    }

    fn outb(&self, port: u64, v: u8) {
        self.bus.write(port, &[v]);
    }
    fn outw(&self, port: u64, v: u16) {
        self.bus.write(port, &v.to_le_bytes());
    }
    fn outl(&self, port: u64, v: u32) {
        self.bus.write(port, &v.to_le_bytes());
    }
    fn inb(&self, port: u64) -> u8 {
        let mut b = [0u8];
        self.bus.read(port, &mut b);
        b[0]
    }
    fn inw(&self, port: u64) -> u16 {
        let mut b = [0u8; 2];
        self.bus.read(port, &mut b);
        u16::from_le_bytes(b)
    }
}

#[test]
fn hvmloader_then_pv_driver_then_poweroff_and_reboot() {
    let mut m = XenMachine::new();

    // hvmloader: PIRQ routes (PCI_ISA_IRQ_MASK picks 5, 10, 11), PM setup.
    let isa = m.isa.clone();
    for (link, irq) in [(0u8, 5u32), (1, 10), (2, 11), (3, 5)] {
        m.config_write(&isa, 0x60 + link, 1, irq);
    }
    assert_eq!(
        *m.routes.lock().unwrap(),
        vec![(0, Some(5)), (1, Some(10)), (2, Some(11)), (3, Some(5))]
    );
    let pm = m.pm.clone();
    m.config_write(&pm, 0x40, 4, 0xb001);
    m.config_write(&pm, 0x80, 1, 0x01);
    m.config_write(&pm, 0x3c, 1, 9);

    // hvmloader: uart_exists(0x3f8) and (absent) 0x2f8.
    let saved = m.inb(0x3f9);
    m.outb(0x3f9, 0);
    let b = m.inb(0x3f9);
    m.outb(0x3f9, 0x0f);
    let c = m.inb(0x3f9);
    m.outb(0x3f9, saved);
    assert!(b == 0 && c == 0x0f, "COM1 found");
    m.outb(0x2f9, 0);
    assert_ne!(m.inb(0x2f9), 0, "COM2 absent");

    // hvmloader: acpi_enable_sci().
    assert_eq!(m.inw(0xb004) & 1, 0);
    m.outb(0xb2, 0xf1);
    assert_eq!(m.inw(0xb004) & 1, 1, "SCI_EN after APM ACPI enable");

    // SeaBIOS: boot order and memory from CMOS (Xen forwards index >= 14).
    m.outb(0x70, 0x3d);
    assert_eq!(m.inb(0x71), 0x23);
    // (1 GiB - 16 MiB) / 64 KiB = 0x3f00
    m.outb(0x70, 0x34);
    assert_eq!(m.inb(0x71), 0x00);
    m.outb(0x70, 0x35);
    assert_eq!(m.inb(0x71), 0x3f);

    // hvmloader assigns the platform device's BARs; its I/O BAR moves.
    let platform = m.platform.clone();
    m.config_write(&platform, 0x10, 4, 0xc000);
    m.config_write(&platform, 0x14, 4, 0xf000_0000);
    assert_eq!(m.inb(0xc000), 0, "flags through BAR0");
    m.config_write(&platform, 0x10, 4, 0xc100);
    assert_eq!(m.inb(0xc000), 0xff, "old BAR no longer decodes");

    // Linux's xen platform unplug handshake.
    assert_eq!(m.inw(0x10), 0x49d2);
    assert_eq!(m.inb(0x12), 1);
    m.outw(0x12, 3);
    m.outl(0x10, 0x0001_0000);
    assert_eq!(m.inw(0x10), 0x49d2);
    m.outw(0x10, UnplugMask::ALL_IDE_DISKS | UnplugMask::ALL_NICS);
    assert_eq!(*m.unplugs.lock().unwrap(), vec![UnplugMask(3)]);
    assert!(m.unplugs.lock().unwrap()[0].unplugs_ide_disk(0, 0));

    assert!(m.power.taken().is_empty());

    // The guest moves PMBASE; PM1a_CNT follows it.
    m.config_write(&pm, 0x40, 4, 0xc041);
    assert_eq!(m.inw(0xb004), 0xffff);
    assert_eq!(m.inw(0xc044) & 1, 1);

    // Linux acpi_power_off: SLP_TYP(_S5 = 0) | SLP_EN.
    m.outw(0xc044, 1 | 1 << 13);
    assert_eq!(m.power.taken(), vec![PowerRequest::Poweroff]);

    // ACPI reset register, then the keyboard controller, then port 0x92.
    m.outb(0xcf9, 0x06);
    m.outb(0x64, 0xfe);
    m.outb(0x92, 0x01);
    assert_eq!(m.power.taken(), vec![PowerRequest::Reboot; 3]);
}
