//! Differential test: the same port and PCI-config accesses go to Debian's
//! QEMU 7.2 (over qtest) and to our platform devices, and every value read
//! must be the same. Covers the i440FX, PIIX3 ISA and PIIX4 PM config
//! spaces, PIRQ routing, PM1a_CNT/APM, CMOS, i8042, port 0x92, 0xcf9 and
//! the UART registers.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use xen_ioemu::devices::bus::Bus;
use xen_ioemu::devices::cmos::{BootOrder, Cmos, CmosScope, CmosSetup, MemoryLayout};
use xen_ioemu::devices::i8042::I8042;
use xen_ioemu::devices::pci::i440fx::I440fx;
use xen_ioemu::devices::pci::piix3_isa::Piix3Isa;
use xen_ioemu::devices::pci::piix4_pm::{Piix4Pm, Piix4PmOptions};
use xen_ioemu::devices::pci::PciFunction;
use xen_ioemu::devices::reset::{PortA, ResetControl};
use xen_ioemu::devices::uart::{NullSerial, Uart};
use xen_ioemu::machine::{IrqLine, PowerControl, PowerRequest};

const RAM: u64 = 128 << 20;

#[derive(Default)]
struct Power(Mutex<Vec<PowerRequest>>);
impl PowerControl for Power {
    fn request(&self, what: PowerRequest) {
        self.0.lock().unwrap().push(what);
    }
}

struct NoIrq;
impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) {}
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Out(u16, u8, u32),
    In(u16, u8),
}

struct Qemu {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

impl Qemu {
    fn start() -> Option<Qemu> {
        let dir = tempfile::tempdir().unwrap();
        let bios = dir.path().join("halt.bin");
        // A firmware that only halts, so the qtest client is the only guest.
        let mut image = vec![0xf4u8; 65536];
        image[0xfff0..0xfff4].copy_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]);
        std::fs::write(&bios, image).unwrap();
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "pc",
                "-accel",
                "tcg",
                "-m",
                "128",
                "-nodefaults",
                "-display",
                "none",
            ])
            .args(["-serial", "null", "-qtest", "stdio", "-bios"])
            .arg(&bios)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => panic!("qemu-system-x86_64 not runnable ({e}): run tools/install-deps.sh"),
        };
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Some(Qemu {
            child,
            input,
            output,
            _dir: dir,
        })
    }

    fn run(&mut self, op: Op) -> Option<u32> {
        let line = match op {
            Op::Out(port, 1, v) => format!("outb {port:#x} {v:#x}\n"),
            Op::Out(port, 2, v) => format!("outw {port:#x} {v:#x}\n"),
            Op::Out(port, _, v) => format!("outl {port:#x} {v:#x}\n"),
            Op::In(port, 1) => format!("inb {port:#x}\n"),
            Op::In(port, 2) => format!("inw {port:#x}\n"),
            Op::In(port, _) => format!("inl {port:#x}\n"),
        };
        self.input.write_all(line.as_bytes()).unwrap();
        self.input.flush().unwrap();
        loop {
            let mut reply = String::new();
            assert!(self.output.read_line(&mut reply).unwrap() > 0, "QEMU closed qtest");
            if reply.starts_with("IRQ") {
                continue;
            }
            assert!(reply.starts_with("OK"), "QEMU said {reply:?} to {line:?}");
            return reply
                .split_whitespace()
                .nth(1)
                .map(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).unwrap());
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our side: a port bus plus a 0xcf8/0xcfc configuration mechanism.
struct Ours {
    bus: Bus,
    functions: Vec<(u8, Arc<Mutex<dyn PciFunction>>)>,
    config_address: u32,
    power: Arc<Power>,
    pm: Option<Arc<Mutex<Piix4Pm>>>,
    pm_bases: Vec<u64>,
}

impl Ours {
    fn new() -> Ours {
        let power = Arc::new(Power::default());
        let mut bus = Bus::new();
        let cmos = Cmos::new(&CmosSetup {
            scope: CmosScope::Full,
            memory: MemoryLayout::qemu_pc(RAM),
            boot_order: BootOrder::default(),
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
        let pm = Arc::new(Mutex::new(Piix4Pm::new(
            power.clone(),
            Piix4PmOptions {
                smm_enabled: true,
                com1: true,
                com2: false,
            },
        )));
        let functions: Vec<(u8, Arc<Mutex<dyn PciFunction>>)> = vec![
            (0x00, Arc::new(Mutex::new(I440fx::new(RAM)))),
            (0x08, Arc::new(Mutex::new(Piix3Isa::new()))),
            (0x0b, pm.clone()),
        ];
        let mut ours = Ours {
            bus,
            functions,
            config_address: 0,
            power,
            pm: None,
            pm_bases: Vec::new(),
        };
        ours.pm = Some(pm);
        ours.remap_pm();
        ours
    }
}

// The PM function decodes ranges that move with PMBASE; keep the bus in step
// the way the machine does after every config write.
impl Ours {
    fn remap_pm(&mut self) {
        let Some(pm) = self.pm.clone() else { return };
        for base in self.pm_bases.drain(..) {
            self.bus.remove(base);
        }
        for range in pm.lock().unwrap().io_ranges() {
            self.bus
                .insert(pm.clone(), range.base as u64, range.len as u64)
                .unwrap();
            self.pm_bases.push(range.base as u64);
        }
    }

    fn function(&self) -> Option<Arc<Mutex<dyn PciFunction>>> {
        if self.config_address & 0x8000_0000 == 0 || (self.config_address >> 16) & 0xff != 0 {
            return None;
        }
        let devfn = (self.config_address >> 8) as u8;
        self.functions.iter().find(|(d, _)| *d == devfn).map(|(_, f)| f.clone())
    }

    fn run(&mut self, op: Op) -> Option<u32> {
        match op {
            Op::Out(0xcf8, 4, v) => self.config_address = v,
            Op::Out(port @ 0xcfc..=0xcff, size, v) => {
                if let Some(f) = self.function() {
                    let offset = (self.config_address & 0xfc) as u8 + (port - 0xcfc) as u8;
                    let _ = f.lock().unwrap().config_write(offset, size, v);
                    self.remap_pm();
                }
            }
            Op::In(port @ 0xcfc..=0xcff, size) => {
                let offset = (self.config_address & 0xfc) as u8 + (port - 0xcfc) as u8;
                let mask = if size == 4 { u32::MAX } else { (1 << (8 * size)) - 1 };
                return Some(
                    self.function()
                        .map_or(mask, |f| f.lock().unwrap().config_read(offset, size)),
                );
            }
            Op::Out(port, size, v) => {
                self.bus.write(port as u64, &v.to_le_bytes()[..size as usize]);
            }
            Op::In(port, size) => {
                let mut data = vec![0u8; size as usize];
                self.bus.read(port as u64, &mut data);
                let mut value = 0u32;
                for (i, b) in data.iter().enumerate() {
                    value |= (*b as u32) << (8 * i);
                }
                return Some(value);
            }
        }
        None
    }
}

fn config_dump(devfn: u8, ops: &mut Vec<Op>) {
    for offset in (0..256u32).step_by(4) {
        ops.push(Op::Out(0xcf8, 4, 0x8000_0000 | (devfn as u32) << 8 | offset));
        ops.push(Op::In(0xcfc, 4));
    }
}

fn config_write(devfn: u8, offset: u32, size: u8, value: u32, ops: &mut Vec<Op>) {
    ops.push(Op::Out(0xcf8, 4, 0x8000_0000 | (devfn as u32) << 8 | (offset & 0xfc)));
    ops.push(Op::Out(0xcfc + (offset & 3) as u16, size, value));
}

fn script() -> Vec<Op> {
    let mut ops = Vec::new();
    for devfn in [0x00, 0x08, 0x0b] {
        config_dump(devfn, &mut ops);
    }
    // Header fields and device areas under writes of every width.
    for devfn in [0x00, 0x08, 0x0b] {
        config_write(devfn, 0x04, 2, 0xffff, &mut ops);
        config_write(devfn, 0x06, 2, 0xffff, &mut ops);
        config_write(devfn, 0x0c, 4, 0xffff_ffff, &mut ops);
        config_write(devfn, 0x3c, 4, 0xffff_ffff, &mut ops);
        config_write(devfn, 0x59, 1, 0x33, &mut ops);
        config_write(devfn, 0x5e, 2, 0x1111, &mut ops);
        config_write(devfn, 0x72, 1, 0x4a, &mut ops);
        config_write(devfn, 0x60, 4, 0x800b_0a05, &mut ops);
        config_write(devfn, 0x00, 4, 0, &mut ops);
        config_write(devfn, 0x08, 4, 0, &mut ops);
        config_dump(devfn, &mut ops);
    }
    // hvmloader's PM setup and ACPI enable, then the PM1a_CNT register.
    config_write(0x0b, 0x40, 4, 0xb001, &mut ops);
    config_write(0x0b, 0x80, 1, 0x01, &mut ops);
    ops.extend([
        Op::In(0xb004, 2),
        Op::Out(0xb2, 1, 0xf1),
        Op::In(0xb004, 2),
        Op::In(0xb2, 1),
        Op::Out(0xb3, 1, 0x5a),
        Op::In(0xb3, 1),
        Op::Out(0xb004, 2, 0x0401),
        Op::In(0xb004, 2),
        Op::Out(0xb2, 1, 0xf0),
        Op::In(0xb004, 2),
    ]);
    // CMOS NVRAM above the clock registers, then a write and read-back.
    for index in 0x0e..0x80u32 {
        if index == 0x32 || index == 0x37 {
            continue; // the century follows the host clock
        }
        ops.push(Op::Out(0x70, 1, index));
        ops.push(Op::In(0x71, 1));
    }
    ops.extend([
        Op::Out(0x70, 1, 0xc0),
        Op::Out(0x71, 1, 0x5a),
        Op::Out(0x70, 1, 0x40),
        Op::In(0x71, 1),
        Op::In(0x70, 1),
    ]);
    // i8042, port A and the reset control register (no reset bits).
    for (port, value) in [
        (0x64, 0xaa),
        (0x64, 0x20),
        (0x64, 0xab),
        (0x64, 0xa9),
        (0x64, 0xc0),
        (0x64, 0xd0),
        (0x64, 0x60),
        (0x60, 0x65),
        (0x64, 0x20),
        (0x64, 0xd1),
        (0x60, 0xdd),
        (0x64, 0xd0),
        (0x64, 0xdd),
        (0x64, 0xd0),
        (0x64, 0xdf),
        (0x64, 0xd0),
        (0x64, 0xad),
        (0x64, 0xa7),
        (0x64, 0x20),
    ] {
        ops.extend([
            Op::Out(port, 1, value),
            Op::In(0x64, 1),
            Op::In(0x60, 1),
            Op::In(0x64, 1),
        ]);
    }
    ops.extend([
        Op::In(0x92, 1),
        Op::Out(0x92, 1, 0x02),
        Op::In(0x92, 1),
        Op::In(0xcf9, 1),
    ]);
    ops.extend([
        Op::Out(0xcf9, 1, 0xf3),
        Op::In(0xcf9, 1),
        Op::Out(0xcf9, 1, 0x00),
        Op::In(0xcf9, 1),
    ]);
    // UART registers: reset values, hvmloader's IER probe, DLAB, scratch.
    for reg in 0..8 {
        ops.push(Op::In(0x3f8 + reg, 1));
    }
    ops.extend([
        Op::Out(0x3f9, 1, 0x00),
        Op::In(0x3f9, 1),
        Op::Out(0x3f9, 1, 0x0f),
        Op::In(0x3f9, 1),
        Op::Out(0x3f9, 1, 0xff),
        Op::In(0x3f9, 1),
        Op::Out(0x3f9, 1, 0x00),
        Op::Out(0x3fb, 1, 0x83),
        Op::Out(0x3f8, 1, 0x01),
        Op::Out(0x3f9, 1, 0x00),
        Op::In(0x3f8, 1),
        Op::In(0x3f9, 1),
        Op::Out(0x3fb, 1, 0x03),
        Op::In(0x3fb, 1),
        Op::Out(0x3ff, 1, 0xa5),
        Op::In(0x3ff, 1),
        Op::Out(0x3fc, 1, 0x0b),
        Op::In(0x3fc, 1),
        Op::Out(0x3fc, 1, 0xff),
        Op::In(0x3fc, 1),
        Op::Out(0x3fa, 1, 0x07),
        Op::In(0x3fa, 1),
        Op::Out(0x3fa, 1, 0x00),
        Op::In(0x3fa, 1),
        Op::In(0x3fd, 1),
    ]);
    ops
}

#[test]
fn platform_devices_read_like_qemu_7_2() {
    let Some(mut qemu) = Qemu::start() else { return };
    let mut ours = Ours::new();
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (step, op) in script().into_iter().enumerate() {
        let theirs = qemu.run(op);
        let mine = ours.run(op);
        if theirs.is_some() {
            compared += 1;
        }
        if theirs != mine {
            mismatches.push(format!("step {step} {op:x?}: qemu {theirs:x?} ours {mine:x?}"));
        }
    }
    assert!(
        ours.power.0.lock().unwrap().is_empty(),
        "the script must not reset either machine"
    );
    assert!(compared > 500, "only {compared} values compared");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} values differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
