//! The PC platform devices around the IDE controller, laid out as QEMU's
//! pc / xenfv machines have them: 00:00.0 i440FX, 00:01.0 PIIX3 ISA,
//! 00:01.1 PIIX3 IDE (placed by `assemble_pc`), 00:01.3 PIIX4 PM when ACPI
//! is on, 00:02.0 the Xen platform device; CMOS, i8042, port 0x92, 0xcf9
//! reset and COM1 on the ISA side.

use super::LaunchError;
use crate::control::{MachineConfig, SerialSpec};
use crate::devices::cmos::{BootOrder, Cmos, CmosScope, CmosSetup, HardDiskGeometry, MemoryLayout};
use crate::devices::i8042::I8042;
use crate::devices::ide::IdeController;
use crate::devices::pci::i440fx::I440fx;
use crate::devices::pci::piix3_isa::Piix3Isa;
use crate::devices::pci::piix4_pm::{Piix4Pm, Piix4PmOptions};
use crate::devices::pci::xen_platform::{UnplugMask, XenPlatform, FIXED_PORT_BASE, FIXED_PORT_LEN};
use crate::devices::reset::{PortA, ResetControl};
use crate::devices::uart::pty::PtySerial;
use crate::devices::uart::{NullSerial, SerialBackend, Uart};
use crate::machine::pc::PcMachine;
use crate::machine::IrqLine;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

const DEVFN_HOST_BRIDGE: u8 = 0x00;
const DEVFN_ISA_BRIDGE: u8 = 0x08;
const DEVFN_PM: u8 = 0x0b;
const DEVFN_XEN_PLATFORM: u8 = 0x10;
const COM1_BASE: u16 = 0x3f8;
const COM1_IRQ: u8 = 4;

/// What the rest of the launcher needs to know about the platform.
#[derive(Default)]
pub struct PlatformHandles {
    /// The pty of COM1, for xenstore serial/0/tty and query-chardev.
    pub serial_tty: Option<String>,
}

/// Everything the platform needs from the front it runs under. Power
/// requests and PIRQ routes are not here: they come back to the front in
/// the machine's bus effects.
pub struct PlatformWiring<'a> {
    pub irq: &'a dyn Fn(u8) -> Arc<dyn IrqLine>,
    pub cmos_scope: CmosScope,
    /// Xen: the platform device (5853:0001) and its unplug protocol.
    pub xen_platform: bool,
    pub smm: bool,
}

/// Checked before any front touches Xen, so a bad `-boot` ends start-up.
pub fn boot_order(config: &MachineConfig) -> Result<BootOrder, LaunchError> {
    let order = if config.boot_order.is_empty() { BootOrder::DEFAULT } else { config.boot_order.as_str() };
    Ok(BootOrder::parse(order)?)
}

fn report<E: std::fmt::Display>(what: &str, r: Result<(), E>) {
    if let Err(e) = r {
        log::error!("{what}: {e}");
    }
}

pub fn add_platform(
    machine: &mut PcMachine,
    config: &MachineConfig,
    ide: &Arc<Mutex<IdeController>>,
    wiring: PlatformWiring,
) -> Result<PlatformHandles, LaunchError> {
    let ram_bytes = config.ram_mib << 20;
    let host_bridge = Arc::new(Mutex::new(I440fx::new(ram_bytes)));
    machine.add_pci_function(DEVFN_HOST_BRIDGE, host_bridge, None);
    let isa_bridge = Arc::new(Mutex::new(Piix3Isa::new()));
    let power = machine.power_control();
    machine.add_pci_function(DEVFN_ISA_BRIDGE, isa_bridge, None);

    let mut handles = PlatformHandles::default();
    let mut pty_reader = None;
    let serial: Option<Box<dyn SerialBackend>> = match config.serial.first() {
        None | Some(SerialSpec::None) => None,
        Some(SerialSpec::Pty) => {
            let pty = PtySerial::open()?;
            handles.serial_tty = Some(pty.slave_path().display().to_string());
            pty_reader = Some(pty.reader());
            Some(Box::new(pty))
        }
        Some(SerialSpec::Null) => Some(Box::new(NullSerial)),
        Some(other) => {
            log::warn!("-serial {other:?}: only pty and null are provided; COM1 output is discarded");
            Some(Box::new(NullSerial))
        }
    };
    let has_uart = serial.is_some();

    if config.acpi {
        let pm = Arc::new(Mutex::new(Piix4Pm::new(
            power.clone(),
            Piix4PmOptions { smm_enabled: wiring.smm, com1: has_uart, com2: false },
        )));
        report("APM ports", machine.add_port_device(pm.clone(), 0xb2, 2));
        machine.add_pci_function(DEVFN_PM, pm.clone(), Some(pm));
    }

    if wiring.xen_platform {
        let ide_for_unplug = ide.clone();
        let on_unplug = Arc::new(move |mask: UnplugMask| {
            if mask.all_ide_disks() || mask.aux_ide_disks_only() {
                let removed = ide_for_unplug
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .unplug_disks(mask.aux_ide_disks_only() && !mask.all_ide_disks());
                // The guest can repeat the unplug write as often as it likes.
                crate::logging::ratelimit::log_global(
                    log::Level::Info,
                    "ide-unplug",
                    format_args!("guest unplugged the emulated IDE disks {removed:?} (PV drivers take over)"),
                );
            }
            if mask.all_nics() {
                crate::logging::ratelimit::log_global(
                    log::Level::Info,
                    "nic-unplug",
                    format_args!("guest asked to unplug emulated NICs; none are emulated"),
                );
            }
        });
        let platform = Arc::new(Mutex::new(XenPlatform::new(on_unplug)));
        report("Xen platform ports", machine.add_port_device(platform.clone(), FIXED_PORT_BASE, FIXED_PORT_LEN));
        machine.add_pci_function(DEVFN_XEN_PLATFORM, platform.clone(), Some(platform));
    }

    let hard_disks = {
        let info = ide.lock().unwrap_or_else(|e| e.into_inner()).drives_info();
        let mut disks: [Option<HardDiskGeometry>; 4] = Default::default();
        for (slot, d) in info.iter().enumerate().take(4) {
            if !d.cdrom {
                disks[slot] = d.inserted.as_ref().map(|m| HardDiskGeometry::guess_for_sectors(m.size / 512));
            }
        }
        disks
    };
    let cmos = Cmos::new(&CmosSetup {
        scope: wiring.cmos_scope,
        memory: MemoryLayout::qemu_pc(ram_bytes),
        boot_order: boot_order(config)?,
        floppy_boot_check: true,
        hard_disks,
    });
    report("CMOS ports", machine.add_port_device(Arc::new(Mutex::new(cmos)), 0x70, 2));

    let i8042 = Arc::new(Mutex::new(I8042::new(power.clone(), None, None)));
    report("i8042 data port", machine.add_port_device(i8042.clone(), 0x60, 1));
    report("i8042 command port", machine.add_port_device(i8042, 0x64, 1));
    report("port 0x92", machine.add_port_device(Arc::new(Mutex::new(PortA::new(power.clone()))), 0x92, 1));
    report("port 0xcf9", machine.add_port_device(Arc::new(Mutex::new(ResetControl::new(power))), 0xcf9, 1));

    if let Some(backend) = serial {
        let uart = Arc::new(Mutex::new(Uart::new((wiring.irq)(COM1_IRQ), backend)));
        report("COM1", machine.add_port_device(uart.clone(), COM1_BASE, 8));
        if let Some(reader) = pty_reader {
            let uart = uart.clone();
            reader
                .spawn(
                    move |bytes| uart.lock().unwrap_or_else(|e| e.into_inner()).receive(bytes),
                    Arc::new(AtomicBool::new(false)),
                )
                .map_err(LaunchError::SerialReader)?;
        }
    }
    Ok(handles)
}
