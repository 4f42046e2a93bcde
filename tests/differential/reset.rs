//! System reset: every device is put in a state a guest (or firmware)
//! leaves behind, the machine is reset, and every register is read back.
//! QEMU resets some registers and keeps others (CMOS NVRAM, the i8042's
//! output port A20, PIIX4 PM bytes its reset handler leaves alone), so the
//! comparison covers what survives as well as what is cleared.

use super::{one_disk, pci_dump, scenario, Scenario};
use crate::session::{Session, Step};
use std::time::Duration;

/// The PCI functions of the qtest machine: (device, function, label).
const FUNCTIONS: [(u8, u8, &str); 4] = [(0, 0, "00:00.0"), (1, 0, "00:01.0"), (1, 1, "00:01.1"), (1, 3, "00:01.3")];

/// Config writes a BIOS and an OS make, on every function.
fn dirty_config(s: &mut Session) -> Step {
    // i440FX: PAM shadowing, SMRAM open, latency timer.
    for pam in 0x59..=0x5f {
        s.pci_write8(0, 0, pam, 0x33)?;
    }
    s.pci_write8(0, 0, 0x72, 0x4a)?;
    s.pci_write8(0, 0, 0x0d, 0x40)?;
    s.pci_write16(0, 0, 0x04, 0x0006)?;
    // PIIX3 ISA: PIRQ routes, top of memory, misc, APIC base, command.
    for (link, irq) in [(0x60, 0x0a), (0x61, 0x0b), (0x62, 0x05), (0x63, 0x09)] {
        s.pci_write8(1, 0, link, irq)?;
    }
    s.pci_write8(1, 0, 0x69, 0xf2)?;
    s.pci_write8(1, 0, 0x4c, 0x00)?;
    s.pci_write8(1, 0, 0x70, 0x0c)?;
    s.pci_write8(1, 0, 0x80, 0x01)?;
    s.pci_write8(1, 0, 0xa0, 0x00)?;
    s.pci_write16(1, 0, 0x04, 0x0000)?;
    s.pci_write8(1, 0, 0x3c, 0x0b)?;
    // PIIX IDE: timing registers, BAR4, command, interrupt line.
    s.pci_write32(1, 1, 0x40, 0xa307_a307)?;
    s.pci_write32(1, 1, 0x20, 0xc001)?;
    s.pci_write16(1, 1, 0x04, 0x0005)?;
    s.pci_write8(1, 1, 0x3c, 0x0e)?;
    s.pci_write8(1, 1, 0x0d, 0x40)?;
    // PIIX4 PM: PM block at 0xb000 decoding, SMBus host enabled, IRQ.
    s.pci_write32(1, 3, 0x40, 0xb001)?;
    s.pci_write8(1, 3, 0x80, 0x01)?;
    s.pci_write8(1, 3, 0x58, 0xff)?;
    s.pci_write8(1, 3, 0xd2, 0x01)?;
    s.pci_write8(1, 3, 0x3c, 0x09)?;
    s.pci_write16(1, 3, 0x04, 0x0001)
}

/// Port writes: CMOS (shutdown status, register B square wave, NVRAM,
/// index left at an NVRAM byte), i8042 command byte, 0x92 A20, 0xcf9,
/// PM1a_CNT SCI_EN, APM, IDE taskfile and bus master.
fn dirty_ports(s: &mut Session) -> Step {
    for (index, value) in [(0x0f, 0x05), (0x0b, 0x0a), (0x40, 0x5a), (0x7f, 0xa5)] {
        s.outb(0x70, index)?;
        s.outb(0x71, value)?;
    }
    s.outb(0x70, 0x40)?;
    s.outb(0x64, 0x60)?;
    s.outb(0x60, 0x74)?;
    s.outb(0x92, 0x02)?;
    s.outb(0xcf9, 0x02)?;
    s.outw(0xb004, 0x0001)?;
    s.outb(0xb2, 0x12)?;
    s.outb(0xb3, 0x34)?;
    s.taskfile28(0, 0x123456, 9)?;
    s.device_control(0x02)?;
    s.outl(0xc004, 0x0001_2340)?;
    s.bm_command(0x08)
}

fn note_ports(s: &mut Session, when: &str) -> Step {
    // The data port first: it shows the index the reset left.
    let after_index = s.inb(0x71)?;
    s.note(format!("{when}: cmos data at the kept index"), format!("0x{after_index:02x}"));
    for index in [0x0a, 0x0b, 0x0d, 0x0f, 0x10, 0x14, 0x40, 0x7f] {
        s.outb(0x70, index)?;
        let v = s.inb(0x71)?;
        s.note(format!("{when}: cmos {index:#04x}"), format!("0x{v:02x}"));
    }
    s.outb(0x64, 0x20)?;
    let mode = s.inb(0x60)?;
    s.note(format!("{when}: i8042 command byte"), format!("0x{mode:02x}"));
    s.outb(0x64, 0xd0)?;
    let outport = s.inb(0x60)?;
    s.note(format!("{when}: i8042 output port"), format!("0x{outport:02x}"));
    let status = s.inb(0x64)?;
    s.note(format!("{when}: i8042 status"), format!("0x{status:02x}"));
    for port in [0x92u16, 0xcf9, 0xb2, 0xb3] {
        let v = s.inb(port)?;
        s.note(format!("{when}: port {port:#x}"), format!("0x{v:02x}"));
    }
    let cnt = s.inw(0xb004)?;
    s.note(format!("{when}: pm1a_cnt at 0xb004"), format!("0x{cnt:04x}"));
    s.note_taskfile(&format!("{when}: primary taskfile"))
}

fn dump_all(s: &mut Session, when: &str) -> Step {
    for (device, function, label) in FUNCTIONS {
        pci_dump(s, device, function, &format!("{when}: {label}"))?;
    }
    Ok(())
}

/// Reprogram the IDE function so its registers can be read after a reset
/// that moved BAR4 back to 0.
fn note_bus_master(s: &mut Session, when: &str) -> Step {
    s.pci_write32(1, 1, 0x20, 0xc001)?;
    s.pci_write16(1, 1, 0x04, 0x0005)?;
    let (command, status, prd) = (s.inb(0xc000)?, s.inb(0xc002)?, s.inl(0xc004)?);
    s.note(format!("{when}: bm command/status/prd"), format!("0x{command:02x} 0x{status:02x} 0x{prd:08x}"));
    Ok(())
}

fn dirty_reset_and_read(s: &mut Session, reset: fn(&mut Session) -> Step) -> Step {
    dirty_config(s)?;
    dirty_ports(s)?;
    dump_all(s, "before reset")?;
    reset(s)?;
    s.wait_event("RESET", Duration::from_secs(3))?;
    s.note_events()?;
    s.note_runstate()?;
    dump_all(s, "after reset")?;
    note_ports(s, "after reset")?;
    note_bus_master(s, "after reset")
}

pub fn reset_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("reset/qmp-system-reset-every-device", one_disk(), |s| {
        dirty_reset_and_read(s, |s| s.qmp("system_reset", None).map(|_| ()))
    }));
    out.push(scenario("reset/guest-0xcf9-every-device", one_disk(), |s| {
        dirty_reset_and_read(s, |s| s.outb(0xcf9, 0x06))
    }));
    out.push(scenario("reset/guest-i8042-pulse-every-device", one_disk(), |s| {
        dirty_reset_and_read(s, |s| s.outb(0x64, 0xfe))
    }));
}
