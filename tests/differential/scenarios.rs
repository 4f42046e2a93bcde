//! The scenarios: guest actions on a `Session` and the observations they
//! record. Facts from docs/ide-behaviour.md are asserted with `fact` (checked
//! on QEMU), everything else with `note`; both sides must then agree.

use crate::image;
use crate::launcher::{Drive, Machine, Rule};
use crate::session::{Prd, Session, Step, BSY, BUFFER, DRQ, PRIMARY, SECONDARY};
use serde_json::json;
use std::time::Duration;

/// Observations allowed to differ, with the reason and what xen-ioemu must
/// show instead. Kept rare and explicit.
pub struct Deviation {
    pub reason: &'static str,
    pub labels: Vec<&'static str>,
    pub ours: Vec<(&'static str, &'static str)>,
}

/// Evaluates the value before borrowing the session for recording, so
/// values can be read from the session inline.
macro_rules! fact {
    ($s:ident, $label:expr, $got:expr, $want:expr $(,)?) => {{
        let label = $label;
        let got = $got;
        let want = $want;
        $s.fact(label, got, want)
    }};
}

macro_rules! note {
    ($s:ident, $label:expr, $value:expr $(,)?) => {{
        let label = $label;
        let value = $value;
        $s.note(label, value)
    }};
}

pub type Run = Box<dyn Fn(&mut Session) -> Step + Send + Sync>;

pub struct Scenario {
    pub name: String,
    pub machine: Machine,
    /// Whether BAR4 and COMMAND are programmed before the scenario runs.
    pub program_pci: bool,
    pub run: Run,
    pub deviation: Option<Deviation>,
}

fn scenario(
    name: impl Into<String>,
    drives: Vec<Drive>,
    run: impl Fn(&mut Session) -> Step + Send + Sync + 'static,
) -> Scenario {
    Scenario {
        name: name.into(),
        machine: Machine { drives },
        program_pci: true,
        run: Box::new(run),
        deviation: None,
    }
}

fn one_disk() -> Vec<Drive> {
    vec![Drive::disk(0)]
}

fn cd_secondary() -> Vec<Drive> {
    vec![Drive::disk(0), Drive::cdrom(2)]
}

fn word_hex(v: u16) -> String {
    format!("0x{v:04x}")
}

fn hex(v: u8) -> String {
    format!("0x{v:02x}")
}

const DISK_SECTORS: u64 = image::DISK_SIZE / 512;

// ---- ATA building blocks ----------------------------------------------------

/// Runs a non-data command and records the settled registers.
fn nondata(s: &mut Session, label: &str, opcode: u8) -> Step {
    s.command(opcode)?;
    s.settle_and_note(label)?;
    s.note_taskfile(label)
}

fn expect_abort(s: &mut Session, label: &str) -> Step {
    s.settle_expect(label, 0x41, 0x04, true)
}

fn identify_words(s: &mut Session, opcode: u8) -> Result<Vec<u16>, String> {
    s.command(opcode)?;
    s.wait_not_busy()?;
    let data = s.pio_read(512)?;
    Ok(data
        .chunks(2)
        .map(|w| u16::from_le_bytes([w[0], w[1]]))
        .collect())
}

fn ata_string(words: &[u16]) -> String {
    words
        .iter()
        .flat_map(|w| [(w >> 8) as u8 as char, *w as u8 as char])
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// PIO data-in command: records each DRQ block (status, IRQ, contents), up
/// to `max_blocks`, then the final registers.
fn pio_in(s: &mut Session, label: &str, block_bytes: usize, max_blocks: usize) -> Step {
    for block in 0..max_blocks {
        let status = s.wait_not_busy()?;
        note!(s, format!("{label} block {block}: altstatus"), hex(status));
        if status & DRQ == 0 || status & BSY != 0 {
            return Ok(());
        }
        let status = s.status()?;
        note!(
            s,
            format!("{label} block {block}: status (irq ack)"),
            hex(status)
        );
        let data = s.pio_read(block_bytes)?;
        s.note_untimed(
            format!("{label} block {block}: data"),
            image::describe(&data, 512),
        );
    }
    let status = s.wait_not_busy()?;
    note!(s, format!("{label} end: altstatus"), hex(status));
    Ok(())
}

/// PIO data-out command: writes blocks filled with 0x50+block while DRQ.
fn pio_out(
    s: &mut Session,
    label: &str,
    block_bytes: usize,
    max_blocks: usize,
    first_block: usize,
) -> Step {
    for block in first_block..max_blocks {
        let status = s.wait_not_busy()?;
        note!(s, format!("{label} block {block}: altstatus"), hex(status));
        if status & DRQ == 0 || status & BSY != 0 {
            return Ok(());
        }
        let status = s.status()?;
        note!(
            s,
            format!("{label} block {block}: status (irq ack)"),
            hex(status)
        );
        s.pio_write(&vec![0x50 + block as u8; block_bytes])?;
    }
    let status = s.wait_not_busy()?;
    note!(s, format!("{label} end: altstatus"), hex(status));
    Ok(())
}

fn note_qmp_state(s: &mut Session) -> Step {
    s.note_events()?;
    s.note_runstate()?;
    s.note_block()
}

/// QEMU skips a flush when nothing was written since the last one, so
/// flush scenarios dirty a sector first (as ide-test's make_dirty does).
fn make_dirty(s: &mut Session) -> Step {
    s.taskfile28(0, 1, 1)?;
    s.command(0x30)?;
    s.wait_not_busy()?;
    s.pio_write(&[0xd1; 512])?;
    s.wait_not_busy()?;
    s.status()?;
    Ok(())
}

fn set_multiple(s: &mut Session, count: u8) -> Step {
    s.select(0)?;
    s.set_reg(2, count)?;
    s.command(0xc6)?;
    s.wait_not_busy()?;
    s.status().map(drop)
}

// ---- identification and signatures ------------------------------------------

fn identify_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("identify", one_disk(), |s| {
        s.select(0)?;
        s.command(0xec)?;
        let status = s.wait_not_busy()?;
        fact!(s, "identify: altstatus", hex(status), hex(0x58));
        s.fact_irq(true);
        let mut words = Vec::new();
        for i in 0..256 {
            if i == 128 {
                let mid = s.altstatus()?;
                fact!(s, "identify: altstatus mid-transfer", hex(mid), hex(0x58));
            }
            words.push(s.inw(0x1f0)?);
        }
        let end = s.altstatus()?;
        fact!(s, "identify: altstatus after data", hex(end), hex(0x50));
        fact!(s, "identify w0", word_hex(words[0]), "0x0040".to_string());
        fact!(s, "identify w47", word_hex(words[47]), "0x8010".to_string());
        fact!(s, "identify w49", word_hex(words[49]), "0x0b00".to_string());
        fact!(s, "identify w59", word_hex(words[59]), "0x0110".to_string());
        fact!(
            s,
            "identify w60-61",
            u32::from(words[60]) | u32::from(words[61]) << 16,
            DISK_SECTORS as u32
        );
        fact!(s, "identify w83", word_hex(words[83]), "0x7400".to_string());
        fact!(s, "identify w85", word_hex(words[85]), "0x4021".to_string());
        fact!(s, "identify w88", word_hex(words[88]), "0x203f".to_string());
        fact!(
            s,
            "identify serial",
            ata_string(&words[10..20]).trim().to_string(),
            "QM00001".to_string()
        );
        fact!(
            s,
            "identify firmware",
            ata_string(&words[23..27]),
            "2.5+".to_string()
        );
        fact!(
            s,
            "identify model",
            ata_string(&words[27..47]),
            "QEMU HARDDISK".to_string()
        );
        let all: String = words.iter().map(|w| format!("{w:04x}")).collect();
        note!(s, "identify words", all);
        Ok(())
    }));
    out.push(scenario(
        "identify/slave",
        vec![Drive::disk(0), Drive::disk(1)],
        |s| {
            s.select(1)?;
            let words = identify_words(s, 0xec)?;
            fact!(
                s,
                "identify slave serial",
                ata_string(&words[10..20]).trim().to_string(),
                "QM00002".to_string()
            );
            let all: String = words.iter().map(|w| format!("{w:04x}")).collect();
            note!(s, "identify words", all);
            s.note_taskfile("after")
        },
    ));
    out.push(scenario("identify/absent-slave", one_disk(), |s| {
        s.select(1)?;
        let status = s.status()?;
        fact!(s, "absent slave status", hex(status), hex(0x00));
        s.command(0xec)?;
        s.note_taskfile("after identify to absent slave")?;
        s.fact_irq(false);
        let word = s.inw(0x1f0)?;
        note!(s, "data port", format!("0x{word:04x}"));
        s.select(0)?;
        s.note_taskfile("master")
    }));
    out.push(scenario("identify/cdrom-aborts", cd_secondary(), |s| {
        s.ch = SECONDARY;
        s.select(0)?;
        s.command(0xec)?;
        s.settle_expect("identify on cd", 0x41, 0x04, true)?;
        s.note_taskfile("signature")
    }));
    out.push(scenario("identify/packet-device", cd_secondary(), |s| {
        s.ch = SECONDARY;
        s.select(0)?;
        let words = identify_words(s, 0xa1)?;
        fact!(
            s,
            "identify packet w0",
            word_hex(words[0]),
            "0x85c0".to_string()
        );
        fact!(
            s,
            "identify packet model",
            ata_string(&words[27..47]),
            "QEMU DVD-ROM".to_string()
        );
        let all: String = words.iter().map(|w| format!("{w:04x}")).collect();
        note!(s, "identify packet words", all);
        s.note_taskfile("after")
    }));
    out.push(scenario("identify/packet-on-disk", one_disk(), |s| {
        s.select(0)?;
        s.command(0xa1)?;
        expect_abort(s, "identify packet on disk")
    }));
    out.push(scenario(
        "diagnostic",
        vec![Drive::disk(0), Drive::disk(1)],
        |s| {
            s.select(1)?;
            s.set_reg(6, 0xf0)?;
            s.command(0x90)?;
            let status = s.wait_not_busy()?;
            fact!(s, "diagnostic: altstatus", hex(status), hex(0x50));
            fact!(s, "diagnostic: error", hex(s.reg(1)?), hex(0x01));
            fact!(s, "diagnostic: device", hex(s.reg(6)?), hex(0xa0));
            s.fact_irq(true);
            s.note_taskfile("master")?;
            s.select(1)?;
            s.note_taskfile("slave")
        },
    ));
    out.push(scenario("signature/power-on-disk", one_disk(), |s| {
        fact!(s, "count", hex(s.reg(2)?), hex(1));
        fact!(s, "sector", hex(s.reg(3)?), hex(1));
        fact!(s, "lcyl", hex(s.reg(4)?), hex(0));
        fact!(s, "hcyl", hex(s.reg(5)?), hex(0));
        fact!(s, "error", hex(s.reg(1)?), hex(0));
        fact!(s, "status", hex(s.status()?), hex(0x50));
        fact!(s, "device", hex(s.reg(6)?), hex(0xa0));
        s.note_taskfile("power-on")
    }));
    out.push(scenario("signature/power-on-cdrom", cd_secondary(), |s| {
        s.ch = SECONDARY;
        fact!(s, "lcyl", hex(s.reg(4)?), hex(0x14));
        fact!(s, "hcyl", hex(s.reg(5)?), hex(0xeb));
        fact!(s, "status", hex(s.status()?), hex(0x50));
        s.note_taskfile("power-on")
    }));
    out.push(scenario("signature/no-drives", vec![], |s| {
        for port in (0x1f1..=0x1f7).chain(0x171..=0x177).chain([0x3f6, 0x376]) {
            let value = s.inb(port)?;
            fact!(s, format!("inb 0x{port:x}"), hex(value), hex(0));
        }
        let word = s.inw(0x1f0)?;
        note!(s, "inw 0x1f0", format!("0x{word:04x}"));
        Ok(())
    }));
    out.push(scenario(
        "srst/disk",
        vec![Drive::disk(0), Drive::disk(1)],
        |s| {
            s.select(1)?;
            s.set_reg(2, 0x33)?;
            s.device_control(0x04)?;
            let during = s.altstatus()?;
            note!(s, "altstatus with SRST set", hex(during));
            s.device_control(0x00)?;
            let status = s.wait_not_busy()?;
            fact!(s, "altstatus after SRST", hex(status), hex(0x50));
            fact!(s, "error after SRST", hex(s.reg(1)?), hex(0x01));
            fact!(s, "device after SRST", hex(s.reg(6)?), hex(0xa0));
            s.fact_irq(true);
            s.note_taskfile("master after SRST")?;
            s.select(1)?;
            s.note_taskfile("slave after SRST")
        },
    ));
    out.push(scenario("srst/cdrom", cd_secondary(), |s| {
        s.ch = SECONDARY;
        s.device_control(0x04)?;
        s.device_control(0x00)?;
        s.wait_not_busy()?;
        s.note_taskfile("cd after SRST")?;
        fact!(s, "cd status after SRST", hex(s.status()?), hex(0x00));
        Ok(())
    }));
    out.push(scenario("srst/during-drq", one_disk(), |s| {
        s.select(0)?;
        s.command(0xec)?;
        s.wait_not_busy()?;
        s.pio_read(64)?;
        s.device_control(0x04)?;
        s.device_control(0x00)?;
        s.wait_not_busy()?;
        s.note_taskfile("after SRST mid-identify")?;
        let word = s.inw(0x1f0)?;
        note!(s, "data port after SRST", format!("0x{word:04x}"));
        Ok(())
    }));
}

// ---- register semantics ------------------------------------------------------

fn register_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("regs/ignored-while-drq", one_disk(), |s| {
        s.select(0)?;
        s.command(0xec)?;
        s.wait_not_busy()?;
        s.set_reg(2, 0x77)?;
        s.command(0xe5)?;
        fact!(s, "count after write during DRQ", hex(s.reg(2)?), hex(0x01));
        fact!(s, "altstatus", hex(s.altstatus()?), hex(0x58));
        let data = s.pio_read(512)?;
        note!(s, "identify still delivered", image::describe(&data, 512));
        s.note_taskfile("after")
    }));
    out.push(scenario("regs/hob", one_disk(), |s| {
        s.taskfile48(0, 0x0000_1234_5678_9abc, 0x0102)?;
        s.note_taskfile("hob clear")?;
        s.device_control(0x80)?;
        s.note_taskfile("hob set")?;
        s.set_reg(2, 0x09)?;
        s.note_taskfile("after a taskfile write with hob set")?;
        Ok(())
    }));
    out.push(scenario(
        "regs/device-register",
        vec![Drive::disk(0), Drive::disk(1)],
        |s| {
            for value in [0x00u8, 0x0f, 0x10, 0x4f, 0xff, 0xe0, 0xb0] {
                s.set_reg(6, value)?;
                let device = s.reg(6)?;
                let status = s.altstatus()?;
                note!(
                    s,
                    format!("device write 0x{value:02x}: device/altstatus"),
                    format!("{} {}", hex(device), hex(status))
                );
            }
            Ok(())
        },
    ));
    out.push(scenario("regs/status-clears-irq", one_disk(), |s| {
        s.select(0)?;
        s.command(0xe5)?;
        s.wait_not_busy()?;
        s.fact_irq(true);
        s.altstatus()?;
        fact!(s, "irq after altstatus read", u8::from(s.irq()), 1);
        s.status()?;
        fact!(s, "irq after status read", u8::from(s.irq()), 0);
        s.command(0xe5)?;
        s.wait_not_busy()?;
        s.command(0xe5)?;
        s.wait_not_busy()?;
        note!(s, "raises", s.raises());
        Ok(())
    }));
    out.push(scenario("regs/nien", one_disk(), |s| {
        s.device_control(0x02)?;
        s.select(0)?;
        s.command(0xe5)?;
        s.wait_not_busy()?;
        fact!(s, "irq with nIEN", u8::from(s.irq()), 0);
        s.note_taskfile("with nIEN")?;
        s.device_control(0x00)?;
        note!(s, "irq after clearing nIEN", u8::from(s.irq()));
        s.command(0xe5)?;
        s.wait_not_busy()?;
        s.fact_irq(true);
        Ok(())
    }));
    out.push(scenario("regs/data-port-idle", one_disk(), |s| {
        let word = s.inw(0x1f0)?;
        fact!(
            s,
            "inw 0x1f0 idle",
            format!("0x{word:04x}"),
            "0x0000".to_string()
        );
        let dword = s.inl(0x1f0)?;
        note!(s, "inl 0x1f0 idle", format!("0x{dword:08x}"));
        s.outw(0x1f0, 0x1234)?;
        s.note_taskfile("after idle data write")
    }));
    out.push(scenario("regs/data-port-widths", one_disk(), |s| {
        s.select(0)?;
        s.command(0xec)?;
        s.wait_not_busy()?;
        let mut reads = Vec::new();
        for _ in 0..4 {
            reads.push(format!("b{:02x}", s.inb(0x1f0)?));
        }
        reads.push(format!("w{:04x}", s.inw(0x1f0)?));
        reads.push(format!("l{:08x}", s.inl(0x1f0)?));
        reads.push(format!("w{:04x}", s.inw(0x1f1)?));
        reads.push(format!("l{:08x}", s.inl(0x1f2)?));
        note!(s, "mixed-width reads during IDENTIFY", reads.join(" "));
        s.note_taskfile("after mixed reads")?;
        // Data-out into a data-in phase is ignored; then drain the block.
        s.outw(0x1f0, 0x1234)?;
        let mut drained = 0;
        while s.altstatus()? & DRQ != 0 && drained < 256 {
            s.inw(0x1f0)?;
            drained += 1;
        }
        note!(s, "words left in the IDENTIFY block", drained);
        s.taskfile28(0, 20, 1)?;
        s.command(0x30)?;
        s.wait_not_busy()?;
        for i in 0..64u32 {
            s.outl(0x1f0, 0x0101_0101 * (i & 0xff))?;
        }
        for _ in 0..128 {
            s.outb(0x1f0, 0xee)?;
        }
        s.wait_not_busy()?;
        s.note_taskfile("after dword and byte data writes")?;
        s.note_image(0)
    }));
    out.push(scenario(
        "regs/control-block-ports",
        vec![Drive::disk(0), Drive::cdrom(2)],
        |s| {
            // 0x3f7 and 0x3f5 belong to QEMU's floppy controller (present even
            // with -nodefaults), which is outside the IDE comparison.
            for port in [0x3f6u16, 0x376, 0x377, 0x1f8, 0x178] {
                note!(s, format!("inb 0x{port:x}"), hex(s.inb(port)?));
            }
            s.outw(0x3f6, 0x0402)?;
            note!(s, "0x3f6 after word write", hex(s.inb(0x3f6)?));
            s.outb(0x3f6, 0x00)?;
            s.wait_not_busy()?;
            s.note_taskfile("after")
        },
    ));
    out.push(scenario("regs/data-port-32bit", one_disk(), |s| {
        s.select(0)?;
        s.command(0xec)?;
        s.wait_not_busy()?;
        let mut words = Vec::new();
        for _ in 0..128 {
            words.push(format!("{:08x}", s.inl(0x1f0)?));
        }
        note!(s, "identify via inl", words.concat());
        s.note_taskfile("after")
    }));
}

// ---- non-data commands -------------------------------------------------------

fn command_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("cmd/nop-aborts", one_disk(), |s| {
        s.select(0)?;
        s.command(0x00)?;
        expect_abort(s, "nop")
    }));
    out.push(scenario("cmd/unknown-opcodes", one_disk(), |s| {
        s.select(0)?;
        for opcode in [
            0x01u8, 0x08, 0x22, 0x23, 0x50, 0x87, 0xa0, 0xa1, 0xb1, 0xd0, 0xe4, 0xe8, 0xf1, 0xf6,
            0xfd, 0xff,
        ] {
            s.command(opcode)?;
            s.wait_not_busy()?;
            let status = s.status()?;
            let error = s.reg(1)?;
            note!(
                s,
                format!("opcode 0x{opcode:02x}: status/error"),
                format!("{} {}", hex(status), hex(error))
            );
        }
        Ok(())
    }));
    out.push(scenario("cmd/recalibrate", one_disk(), |s| {
        s.select(0)?;
        s.command(0x10)?;
        s.settle_expect("recalibrate", 0x50, 0x00, true)
    }));
    out.push(scenario("cmd/read-verify", one_disk(), |s| {
        s.taskfile28(0, 100, 5)?;
        s.command(0x40)?;
        s.settle_expect("read verify", 0x50, 0x00, true)?;
        s.note_taskfile("read verify")?;
        s.status()?;
        s.taskfile48(0, 200, 0)?;
        s.command(0x42)?;
        s.settle_expect("read verify ext", 0x50, 0x00, true)?;
        s.note_taskfile("read verify ext")
    }));
    out.push(scenario("cmd/seek", one_disk(), |s| {
        s.taskfile28(0, 0x0fff_ffff, 1)?;
        s.command(0x70)?;
        s.settle_expect("seek past end", 0x50, 0x00, true)?;
        s.note_taskfile("seek")
    }));
    out.push(scenario("cmd/check-power-mode", one_disk(), |s| {
        for opcode in [0xe5u8, 0x98] {
            s.select(0)?;
            s.set_reg(2, 0x12)?;
            s.command(opcode)?;
            s.settle_expect(
                &format!("check power mode 0x{opcode:02x}"),
                0x50,
                0x00,
                true,
            )?;
            fact!(
                s,
                format!("count after 0x{opcode:02x}"),
                hex(s.reg(2)?),
                hex(0xff)
            );
            s.status()?;
        }
        Ok(())
    }));
    out.push(scenario("cmd/idle-standby-sleep", one_disk(), |s| {
        for opcode in [0xe0u8, 0xe1, 0xe2, 0xe3, 0xe6, 0x94, 0x95, 0x96, 0x97, 0x99] {
            s.select(0)?;
            s.command(opcode)?;
            s.settle_expect(&format!("power 0x{opcode:02x}"), 0x40, 0x00, true)?;
            s.status()?;
        }
        Ok(())
    }));
    out.push(scenario("cmd/set-features-write-cache", one_disk(), |s| {
        s.select(0)?;
        s.set_reg(1, 0x82)?;
        s.command(0xef)?;
        s.settle_and_note("write cache off")?;
        let words = identify_words(s, 0xec)?;
        fact!(
            s,
            "w85 write cache off",
            word_hex(words[85]),
            "0x4001".to_string()
        );
        s.set_reg(1, 0x02)?;
        s.command(0xef)?;
        s.settle_and_note("write cache on")?;
        let words = identify_words(s, 0xec)?;
        fact!(
            s,
            "w85 write cache on",
            word_hex(words[85]),
            "0x4021".to_string()
        );
        note_qmp_state(s)
    }));
    out.push(scenario("cmd/set-features-xfer-mode", one_disk(), |s| {
        s.select(0)?;
        identify_words(s, 0xec)?;
        for mode in [0x00u8, 0x01, 0x0c, 0x22, 0x21, 0x42, 0x45, 0x46, 0x80, 0x13] {
            s.set_reg(1, 0x03)?;
            s.set_reg(2, mode)?;
            s.command(0xef)?;
            s.settle_and_note(&format!("xfer mode 0x{mode:02x}"))?;
            let words = identify_words(s, 0xec)?;
            note!(
                s,
                format!("xfer mode 0x{mode:02x}: w62/w63/w88"),
                format!("{:04x} {:04x} {:04x}", words[62], words[63], words[88])
            );
        }
        Ok(())
    }));
    out.push(scenario("cmd/set-features-subcommands", one_disk(), |s| {
        s.select(0)?;
        for feature in [
            0x00u8, 0x01, 0x05, 0x42, 0x55, 0x66, 0x85, 0xaa, 0xcc, 0xc2, 0x67, 0x69, 0x96, 0x9a,
            0x10, 0x90, 0xff,
        ] {
            s.set_reg(1, feature)?;
            s.command(0xef)?;
            s.wait_not_busy()?;
            let status = s.status()?;
            let error = s.reg(1)?;
            note!(
                s,
                format!("set features 0x{feature:02x}: status/error"),
                format!("{} {}", hex(status), hex(error))
            );
        }
        Ok(())
    }));
    out.push(scenario("cmd/read-native-max", one_disk(), |s| {
        s.select(0)?;
        s.set_reg(6, 0xe0)?;
        s.command(0xf8)?;
        s.settle_expect("read native max", 0x50, 0x00, true)?;
        let lba = u32::from(s.reg(3)?)
            | u32::from(s.reg(4)?) << 8
            | u32::from(s.reg(5)?) << 16
            | u32::from(s.reg(6)? & 0x0f) << 24;
        fact!(s, "native max lba", lba, (DISK_SECTORS - 1) as u32);
        s.note_taskfile("after f8")?;
        s.status()?;
        s.set_reg(6, 0x40)?;
        s.command(0x27)?;
        s.settle_expect("read native max ext", 0x50, 0x00, true)?;
        s.note_taskfile("after 27 (low)")?;
        s.device_control(0x80)?;
        s.note_taskfile("after 27 (hob)")
    }));
    out.push(scenario("cmd/set-multiple", one_disk(), |s| {
        for count in [0u8, 1, 2, 3, 8, 16, 32, 0xff] {
            s.select(0)?;
            s.set_reg(2, count)?;
            s.command(0xc6)?;
            s.wait_not_busy()?;
            let status = s.status()?;
            let error = s.reg(1)?;
            note!(
                s,
                format!("set multiple {count}: status/error"),
                format!("{} {}", hex(status), hex(error))
            );
            let words = identify_words(s, 0xec)?;
            note!(
                s,
                format!("set multiple {count}: w59"),
                format!("{:04x}", words[59])
            );
        }
        s.set_reg(2, 3)?;
        s.command(0xc6)?;
        expect_abort(s, "set multiple 3")
    }));
    out.push(scenario("cmd/init-device-parameters", one_disk(), |s| {
        s.set_reg(2, 32)?;
        s.set_reg(6, 0xa7)?;
        s.command(0x91)?;
        s.settle_expect("init device parameters", 0x50, 0x00, true)?;
        let words = identify_words(s, 0xec)?;
        note!(
            s,
            "w53..58 after INIT DEV PARAMS",
            format!("{:04x?}", &words[53..59])
        );
        Ok(())
    }));
    out.push(scenario("cmd/smart", one_disk(), |s| {
        s.select(0)?;
        s.set_reg(1, 0xd8)?;
        s.command(0xb0)?;
        expect_abort(s, "smart without signature")?;
        for feature in [0xd8u8, 0xda, 0xd9, 0xda, 0xd8, 0xd2, 0xd4, 0x77] {
            s.set_reg(1, feature)?;
            s.set_reg(4, 0x4f)?;
            s.set_reg(5, 0xc2)?;
            s.command(0xb0)?;
            s.settle_and_note(&format!("smart 0x{feature:02x}"))?;
            s.note_taskfile(&format!("smart 0x{feature:02x}"))?;
            s.status()?;
        }
        s.set_reg(1, 0xd0)?;
        s.set_reg(4, 0x4f)?;
        s.set_reg(5, 0xc2)?;
        s.command(0xb0)?;
        pio_in(s, "smart read data", 512, 1)
    }));
    out.push(scenario("cmd/device-reset-on-disk", one_disk(), |s| {
        s.select(0)?;
        s.command(0x08)?;
        expect_abort(s, "device reset on disk")
    }));
    out.push(scenario("cmd/security-freeze-and-misc", one_disk(), |s| {
        s.select(0)?;
        for opcode in [0xf5u8, 0x91, 0xe7, 0xea] {
            nondata(s, &format!("opcode 0x{opcode:02x}"), opcode)?;
            s.status()?;
        }
        Ok(())
    }));
}

// ---- PIO data transfers --------------------------------------------------------

fn pio_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("pio/read-sectors-1", one_disk(), |s| {
        s.taskfile28(0, 5, 1)?;
        s.command(0x20)?;
        pio_in(s, "read", 512, 2)?;
        // The last block's IRQ was acknowledged by the status read; no extra IRQ at the end.
        s.fact_irq(false);
        s.note_taskfile("after")
    }));
    out.push(scenario("pio/read-sectors-4", one_disk(), |s| {
        s.taskfile28(0, 1000, 4)?;
        s.command(0x21)?;
        pio_in(s, "read", 512, 5)?;
        s.note_taskfile("after")
    }));
    out.push(scenario("pio/read-sectors-ext", one_disk(), |s| {
        s.taskfile48(0, DISK_SECTORS - 3, 3)?;
        s.command(0x24)?;
        pio_in(s, "read ext", 512, 4)?;
        s.note_taskfile("after (low)")?;
        s.device_control(0x80)?;
        s.note_taskfile("after (hob)")
    }));
    out.push(scenario("pio/write-sectors-4", one_disk(), |s| {
        s.taskfile28(0, 300, 4)?;
        s.command(0x30)?;
        let status = s.altstatus()?;
        fact!(s, "write: altstatus before data", hex(status), hex(0x58));
        s.fact_irq(false);
        pio_out(s, "write", 512, 4, 0)?;
        s.fact_irq(true);
        s.note_taskfile("after")?;
        s.note_image(0)
    }));
    out.push(scenario("pio/write-sectors-ext", one_disk(), |s| {
        s.taskfile48(0, 4000, 2)?;
        s.command(0x34)?;
        pio_out(s, "write ext", 512, 2, 0)?;
        s.note_taskfile("after")?;
        s.note_image(0)
    }));
    out.push(scenario("pio/write-verify", one_disk(), |s| {
        s.taskfile28(0, 10, 1)?;
        s.command(0x3c)?;
        pio_out(s, "write verify", 512, 1, 0)?;
        s.note_taskfile("after")?;
        s.note_image(0)
    }));
    out.push(scenario("pio/chs-read", one_disk(), |s| {
        // Default geometry 16 heads x 63 sectors: C1/H2/S3 is LBA 1*16*63+2*63+2.
        s.taskfile_chs(0, 1, 2, 3, 2)?;
        s.command(0x20)?;
        pio_in(s, "chs read", 512, 3)?;
        s.note_taskfile("after")
    }));
    out.push(scenario("pio/chs-write", one_disk(), |s| {
        s.taskfile_chs(0, 3, 15, 63, 2)?;
        s.command(0x30)?;
        pio_out(s, "chs write", 512, 2, 0)?;
        s.note_taskfile("after")?;
        s.note_image(0)
    }));
    out.push(scenario("pio/read-multiple", one_disk(), |s| {
        set_multiple(s, 8)?;
        s.taskfile28(0, 64, 16)?;
        s.command(0xc4)?;
        pio_in(s, "read multiple", 8 * 512, 3)?;
        s.note_taskfile("after")
    }));
    out.push(scenario(
        "pio/read-multiple-partial-block",
        one_disk(),
        |s| {
            set_multiple(s, 4)?;
            s.taskfile28(0, 64, 6)?;
            s.command(0xc4)?;
            let status = s.wait_not_busy()?;
            note!(s, "first block altstatus", hex(status));
            s.pio_read(4 * 512)?;
            let status = s.wait_not_busy()?;
            note!(s, "second block altstatus", hex(status));
            let data = s.pio_read(2 * 512)?;
            note!(s, "second block data", image::describe(&data, 512));
            s.note_taskfile("after")
        },
    ));
    out.push(scenario("pio/write-multiple", one_disk(), |s| {
        set_multiple(s, 4)?;
        s.taskfile28(0, 128, 8)?;
        s.command(0xc5)?;
        pio_out(s, "write multiple", 4 * 512, 2, 0)?;
        s.note_taskfile("after")?;
        s.note_image(0)
    }));
    out.push(scenario("pio/read-multiple-ext", one_disk(), |s| {
        set_multiple(s, 2)?;
        s.taskfile48(0, 512, 4)?;
        s.command(0x29)?;
        pio_in(s, "read multiple ext", 2 * 512, 3)?;
        s.note_taskfile("after")
    }));
    out.push(scenario("pio/write-multiple-ext", one_disk(), |s| {
        set_multiple(s, 2)?;
        s.taskfile48(0, 700, 4)?;
        s.command(0x39)?;
        pio_out(s, "write multiple ext", 2 * 512, 2, 0)?;
        s.note_taskfile("after")?;
        s.note_image(0)
    }));
    out.push(scenario("pio/read-multiple-disabled", one_disk(), |s| {
        set_multiple(s, 0)?;
        s.taskfile28(0, 64, 2)?;
        s.command(0xc4)?;
        s.settle_and_note("read multiple with multiple=0")?;
        s.fact_irq(true);
        s.note_taskfile("after")
    }));
    out.push(scenario("pio/out-of-range-read", one_disk(), |s| {
        s.taskfile28(0, DISK_SECTORS as u32, 1)?;
        s.command(0x20)?;
        expect_abort(s, "read past end")?;
        s.note_taskfile("after")?;
        s.status()?;
        // PIO checks the range per block: the first sector is still delivered.
        s.taskfile28(0, DISK_SECTORS as u32 - 1, 2)?;
        s.command(0x20)?;
        pio_in(s, "read straddling the end", 512, 3)?;
        s.note_taskfile("after straddling read")?;
        note_qmp_state(s)
    }));
    out.push(scenario("pio/out-of-range-write", one_disk(), |s| {
        s.taskfile48(0, 1 << 40, 1)?;
        s.command(0x34)?;
        s.settle_and_note("write ext far past end")?;
        s.note_taskfile("after")?;
        note_qmp_state(s)?;
        s.note_image(0)
    }));
    out.push(scenario("pio/last-sector", one_disk(), |s| {
        s.taskfile28(0, DISK_SECTORS as u32 - 1, 1)?;
        s.command(0x20)?;
        pio_in(s, "last sector", 512, 2)?;
        s.note_taskfile("after")
    }));
    out.push(scenario(
        "pio/abandoned-write-then-command",
        one_disk(),
        |s| {
            s.taskfile28(0, 50, 2)?;
            s.command(0x30)?;
            s.wait_not_busy()?;
            s.pio_write(&[0x77; 100])?;
            s.command(0xe5)?;
            s.note_taskfile("command during write DRQ")?;
            s.device_control(0x04)?;
            s.device_control(0x00)?;
            s.wait_not_busy()?;
            s.note_taskfile("after SRST")?;
            s.note_image(0)
        },
    ));
}

// ---- bus-master DMA ------------------------------------------------------------------

fn note_dma_result(s: &mut Session, label: &str, bm: u8) -> Step {
    note!(s, format!("{label}: bm status"), hex(bm));
    s.note_taskfile(label)?;
    s.bm_command(0)?;
    let after = s.bm_status()?;
    note!(s, format!("{label}: bm status after stop"), hex(after));
    Ok(())
}

fn dma_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("bmdma/simple-rw", one_disk(), |s| {
        s.memset(BUFFER, 512, 0x55)?;
        s.memset(BUFFER + 512, 512, 0xaa)?;
        let bm = s.dma(0xca, 0, 2, &[(BUFFER, 1024, true)], false)?;
        fact!(s, "write dma: bm status", hex(bm), hex(0x04));
        fact!(s, "write dma: altstatus", hex(s.altstatus()?), hex(0x50));
        s.fact_irq(true);
        s.status()?;
        s.bm_command(0)?;
        s.memset(BUFFER, 1024, 0)?;
        let bm = s.dma(0xc8, 0, 2, &[(BUFFER, 1024, true)], true)?;
        fact!(s, "read dma: bm status", hex(bm), hex(0x04));
        s.note_mem(BUFFER, 1024, 512)?;
        s.note_image(0)
    }));
    for (name, read, write) in [
        ("bmdma/ext-rw", 0x25u8, 0x35u8),
        ("bmdma/noretry-rw", 0xc9, 0xcb),
    ] {
        out.push(scenario(name, one_disk(), move |s| {
            s.memset(BUFFER, 4096, 0x3c)?;
            let bm = s.dma(write, 2040, 8, &[(BUFFER, 4096, true)], false)?;
            note_dma_result(s, "write", bm)?;
            s.status()?;
            let bm = s.dma(read, 100, 8, &[(BUFFER, 4096, true)], true)?;
            note_dma_result(s, "read", bm)?;
            s.note_mem(BUFFER, 4096, 512)?;
            s.note_image(0)
        }));
    }
    // A qcow2 drive: a write straddling two 64 KiB clusters (LBA 120..136),
    // FLUSH CACHE so the metadata is in the file, the image as qemu-img
    // reads it, and the data read back.
    out.push(scenario(
        "bmdma/qcow2-rw",
        vec![Drive { qcow2: true, ..Drive::disk(0) }],
        |s| {
            for i in 0..16u32 {
                s.memset(BUFFER + i * 512, 512, 0x11 + i as u8)?;
            }
            let bm = s.dma(0xca, 120, 16, &[(BUFFER, 8192, true)], false)?;
            note_dma_result(s, "write", bm)?;
            s.status()?;
            s.select(0)?;
            s.command(0xe7)?;
            s.settle_expect("flush cache", 0x50, 0x00, true)?;
            s.status()?;
            s.note_image(0)?;
            s.memset(BUFFER, 16384, 0)?;
            let bm = s.dma(0xc8, 112, 32, &[(BUFFER, 16384, true)], true)?;
            note_dma_result(s, "read", bm)?;
            s.note_mem(BUFFER, 16384, 512)
        },
    ));
    // ide-test's various_prdts: PRD shorter, equal, longer than the transfer.
    let cases: [(&str, u16, Vec<Prd>, Option<u8>); 9] = [
        (
            "bmdma/prdt-exact-1",
            1,
            vec![(BUFFER, 512, true)],
            Some(0x04),
        ),
        (
            "bmdma/prdt-exact-64",
            64,
            vec![(BUFFER, 32768, true)],
            Some(0x04),
        ),
        (
            "bmdma/prdt-short",
            8,
            vec![(BUFFER, 2048, true)],
            Some(0x00),
        ),
        ("bmdma/prdt-long", 1, vec![(BUFFER, 4096, true)], Some(0x05)),
        (
            "bmdma/prdt-split",
            8,
            (0..8).map(|i| (BUFFER + i * 1024, 512, i == 7)).collect(),
            None,
        ),
        (
            "bmdma/prdt-zero-is-64k",
            128,
            vec![(BUFFER, 0, true)],
            Some(0x04),
        ),
        (
            "bmdma/prdt-odd-count",
            2,
            vec![(BUFFER, 513, false), (BUFFER + 4096, 511, true)],
            None,
        ),
        (
            "bmdma/prdt-unaligned-address",
            2,
            vec![(BUFFER + 3, 1024, true)],
            None,
        ),
        (
            "bmdma/prdt-outside-ram",
            8,
            vec![(0x7ff_f000, 4096, false), (0xf000_0000, 4096, true)],
            None,
        ),
    ];
    for (name, sectors, prdt, want) in cases {
        out.push(scenario(name, one_disk(), move |s| {
            let len = 65536 + 4096;
            s.memset(BUFFER, len, 0xcc)?;
            let bm = s.dma(0xc8, 16, sectors, &prdt, true)?;
            match want {
                Some(want) => fact!(s, "read dma: bm status", hex(bm), hex(want)),
                None => note!(s, "read dma: bm status", hex(bm)),
            }
            s.note_taskfile("read dma")?;
            s.bm_command(0)?;
            note!(s, "bm status after stop", hex(s.bm_status()?));
            s.note_mem(BUFFER, len, 512)
        }));
    }
    // ide-test's various_prdts matrix: for each sector count, a PRD one
    // sector short, exact, one sector long and 64 KiB, each with the engine
    // left running and stopped right after START.
    for sectors in [1u32, 3, 8, 64, 255, 256] {
        out.push(scenario(
            format!("bmdma/various-prdts/{sectors}"),
            one_disk(),
            move |s| {
                let bytes = sectors * 512;
                let mut sizes = vec![bytes.saturating_sub(512), bytes, bytes + 512, 0x10000];
                sizes.retain(|&size| size > 0 && size <= 0x10000);
                sizes.dedup();
                for size in sizes {
                    for abort in [false, true] {
                        let label = format!(
                            "{sectors} sectors, prd {size}{}",
                            if abort { ", stopped at once" } else { "" }
                        );
                        let len = 0x20000;
                        s.memset(BUFFER, len, 0xcc)?;
                        s.bm_command(0)?;
                        s.bm_clear()?;
                        // A 64 KiB PRD is encoded as byte count 0.
                        let mut table = vec![(BUFFER, size & 0xffff, true)];
                        if bytes > 0x10000 && size == 0x10000 {
                            table = vec![(BUFFER, 0, false), (BUFFER + 0x10000, 0, true)];
                        }
                        s.set_prdt(&table)?;
                        s.taskfile28(0, 0, sectors as u8)?;
                        s.command(0xc8)?;
                        s.bm_command(0x09)?;
                        if abort {
                            s.bm_command(0x08)?;
                        }
                        let bm = s.wait_dma()?;
                        let status = s.wait_not_busy()?;
                        let total: u32 = table
                            .iter()
                            .map(|&(_, count, _)| if count == 0 { 0x10000 } else { count })
                            .sum();
                        // ide-test: short -> 0, equal -> INTR, longer -> ACTIVE|INTR;
                        // stopped at once -> 0 / INTR / INTR.
                        let want = if total < bytes {
                            0x00
                        } else if total == bytes || abort {
                            0x04
                        } else {
                            0x05
                        };
                        fact!(s, format!("{label}: bm status"), hex(bm), hex(want));
                        note!(s, format!("{label}: altstatus"), hex(status));
                        s.status()?;
                        s.bm_command(0)?;
                        note!(s, format!("{label}: bm after stop"), hex(s.bm_status()?));
                        s.note_mem(BUFFER, len, 512)?;
                    }
                }
                Ok(())
            },
        ));
    }
    out.push(scenario("bmdma/count-zero-is-256", one_disk(), |s| {
        s.memset(BUFFER, 4096, 0xcc)?;
        let table: Vec<Prd> = (0..2).map(|i| (BUFFER + i * 0x10000, 0, i == 1)).collect();
        let bm = s.dma(0xc8, 0, 0, &table, true)?;
        note_dma_result(s, "read dma count 0", bm)?;
        s.note_mem(BUFFER, 0x20000, 512)
    }));
    out.push(scenario("bmdma/abort-right-after-start", one_disk(), |s| {
        s.memset(BUFFER, 4096, 0xcc)?;
        s.bm_command(0)?;
        s.bm_clear()?;
        s.set_prdt(&[(BUFFER, 4096, true)])?;
        s.taskfile28(0, 0, 8)?;
        s.command(0xc8)?;
        s.bm_command(0x09)?;
        s.bm_command(0x08)?;
        let bm = s.bm_status()?;
        note!(s, "bm status after immediate stop", hex(bm));
        s.wait_not_busy()?;
        s.note_taskfile("after")?;
        s.note_mem(BUFFER, 4096, 512)
    }));
    out.push(scenario("bmdma/start-before-command", one_disk(), |s| {
        s.memset(BUFFER, 4096, 0xcc)?;
        s.bm_clear()?;
        s.set_prdt(&[(BUFFER, 4096, true)])?;
        s.bm_command(0x09)?;
        s.taskfile28(0, 8, 8)?;
        s.command(0xc8)?;
        let bm = s.wait_dma()?;
        note_dma_result(s, "read dma", bm)?;
        s.note_mem(BUFFER, 4096, 512)
    }));
    out.push(scenario("bmdma/wrong-direction", one_disk(), |s| {
        s.memset(BUFFER, 4096, 0xcc)?;
        let bm = s.dma(0xc8, 0, 8, &[(BUFFER, 4096, true)], false)?;
        note_dma_result(s, "read dma with direction bit clear", bm)?;
        s.note_mem(BUFFER, 4096, 512)?;
        s.note_image(0)
    }));
    out.push(Scenario {
        program_pci: false,
        deviation: Some(Deviation {
            reason: "with bus mastering off QEMU 7.2 reads zeros where the guest's data should be and writes them \
                     to the image as a successful WRITE DMA; we abort the write (0x41/0x04, BM INTR) and leave \
                     the image alone, because a write the guest never made must not reach the disk",
            labels: vec!["write dma without bus mastering: bm status", "image0"],
            ours: vec![("write dma without bus mastering: bm status", "0x04"), ("image0", "0-8191:blk0-8191")],
        }),
        ..scenario("bmdma/no-busmaster", one_disk(), |s| {
            s.pci_write32(0x01, 1, 0x20, 0xc001)?;
            s.pci_write16(0x01, 1, 0x04, 0x0001)?;
            let garbage: Vec<Prd> = (0..512)
                .map(|i| (0x40000 + i * 0x10000, 0, false))
                .collect();
            s.memset(BUFFER, 4096, 0xcc)?;
            let bm = s.dma(0xc8, 0, 8, &garbage, true)?;
            note!(s, "read dma without bus mastering: bm status", hex(bm));
            s.note_taskfile("after")?;
            s.bm_command(0)?;
            note!(s, "bm after stop", hex(s.bm_status()?));
            let bm = s.dma(0xca, 0, 8, &garbage, false)?;
            note!(s, "write dma without bus mastering: bm status", hex(bm));
            s.bm_command(0)?;
            s.note_image(0)
        })
    });
    out.push(scenario("bmdma/registers", one_disk(), |s| {
        s.bm_command(0xff)?;
        fact!(s, "command after 0xff", hex(s.inb(0xc000)?), hex(0x09));
        s.bm_command(0x00)?;
        s.outb(0xc002, 0xff)?;
        fact!(s, "status after 0xff", hex(s.inb(0xc002)?), hex(0x60));
        s.outb(0xc002, 0x00)?;
        note!(s, "status after 0x00", hex(s.inb(0xc002)?));
        fact!(s, "inb +1", hex(s.inb(0xc001)?), hex(0xff));
        fact!(s, "inb +3", hex(s.inb(0xc003)?), hex(0xff));
        fact!(
            s,
            "inw +0",
            format!("0x{:04x}", s.inw(0xc000)?),
            "0xffff".to_string()
        );
        note!(s, "inw +2", format!("0x{:04x}", s.inw(0xc002)?));
        s.outl(0xc004, 0x1234_5677)?;
        fact!(
            s,
            "prd pointer",
            format!("0x{:08x}", s.inl(0xc004)?),
            "0x12345674".to_string()
        );
        s.outb(0xc006, 0xab)?;
        note!(
            s,
            "prd pointer after byte write",
            format!("0x{:08x}", s.inl(0xc004)?)
        );
        note!(s, "prd byte 5", hex(s.inb(0xc005)?));
        s.outw(0xc004, 0xffff)?;
        note!(
            s,
            "prd pointer after word write",
            format!("0x{:08x}", s.inl(0xc004)?)
        );
        for port in 0xc008u16..0xc010 {
            note!(s, format!("secondary inb 0x{port:x}"), hex(s.inb(port)?));
        }
        note!(s, "inb 0xc010 (past BAR)", hex(s.inb(0xc010)?));
        Ok(())
    }));
    out.push(scenario("bmdma/status-bits-and-pio-irq", one_disk(), |s| {
        s.bm_clear()?;
        s.select(0)?;
        s.command(0xe5)?;
        s.wait_not_busy()?;
        fact!(
            s,
            "bm status after a PIO irq",
            hex(s.bm_status()?),
            hex(0x04)
        );
        s.outb(0xc002, 0x04)?;
        note!(s, "bm status after clearing INTR", hex(s.bm_status()?));
        Ok(())
    }));
    out.push(scenario("bmdma/trim", one_disk(), |s| {
        let range = |lba: u64, count: u64| (lba | count << 48).to_le_bytes();
        let mut table = Vec::new();
        table.extend_from_slice(&range(10, 4));
        table.extend_from_slice(&range(100, 1));
        table.resize(512, 0);
        s.memwrite(BUFFER, &table)?;
        s.set_reg(1, 0x01)?;
        let bm = s.dma(0x06, 0, 1, &[(BUFFER, 512, true)], false)?;
        note_dma_result(s, "trim valid", bm)?;
        s.status()?;
        let mut bad = Vec::new();
        bad.extend_from_slice(&range(DISK_SECTORS - 1, 8));
        bad.resize(512, 0);
        s.memwrite(BUFFER, &bad)?;
        s.set_reg(1, 0x01)?;
        let bm = s.dma(0x06, 0, 1, &[(BUFFER, 512, true)], false)?;
        fact!(s, "trim past end: bm intr", hex(bm & 0x04), hex(0x04));
        fact!(
            s,
            "trim past end: altstatus",
            hex(s.altstatus()?),
            hex(0x41)
        );
        fact!(s, "trim past end: error", hex(s.reg(1)?), hex(0x04));
        note_dma_result(s, "trim past end", bm)
    }));
    out.push(scenario("bmdma/out-of-range", one_disk(), |s| {
        s.memset(BUFFER, 4096, 0xcc)?;
        let bm = s.dma(0xc8, DISK_SECTORS - 4, 8, &[(BUFFER, 4096, true)], true)?;
        fact!(s, "read past end: bm", hex(bm), hex(0x04));
        fact!(
            s,
            "read past end: altstatus",
            hex(s.altstatus()?),
            hex(0x41)
        );
        fact!(s, "read past end: error", hex(s.reg(1)?), hex(0x04));
        note_dma_result(s, "read past end", bm)?;
        s.note_mem(BUFFER, 4096, 512)?;
        s.status()?;
        let bm = s.dma(0x35, 1 << 40, 8, &[(BUFFER, 4096, true)], false)?;
        note_dma_result(s, "write ext far past end", bm)?;
        note_qmp_state(s)?;
        s.note_image(0)
    }));
}

// ---- flush -------------------------------------------------------------------------

fn flush_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("flush/cache", one_disk(), |s| {
        s.select(0)?;
        s.command(0xe7)?;
        s.settle_expect("flush cache", 0x50, 0x00, true)?;
        s.status()?;
        s.command(0xea)?;
        s.settle_expect("flush cache ext", 0x50, 0x00, true)
    }));
    out.push(scenario("flush/nodev", vec![], |s| {
        s.select(0)?;
        s.command(0xe7)?;
        s.note_taskfile("flush with no drive")?;
        note!(s, "irq14", u8::from(s.irq()));
        Ok(())
    }));
    out.push(scenario(
        "flush/empty-drive",
        vec![Drive::empty_cdrom(0)],
        |s| {
            s.select(0)?;
            s.command(0xe7)?;
            s.settle_and_note("flush on empty cd")?;
            s.note_taskfile("after")
        },
    ));
    out.push(scenario(
        "flush/retry-stop",
        vec![Drive {
            werror: Some("stop"),
            rerror: Some("stop"),
            rules: vec![Rule {
                event: "flush_to_disk",
                errno: 5,
                iotype: None,
                sector: None,
                once: true,
            }],
            ..Drive::disk(0)
        }],
        |s| {
            make_dirty(s)?;
            s.select(0)?;
            s.command(0xe7)?;
            s.wait_event("STOP", Duration::from_secs(3))?;
            // ide-test: BSY and DRDY set, DF/ERR/DRQ clear.
            fact!(
                s,
                "flush while stopped: altstatus & 0xe9",
                hex(s.altstatus()? & 0xe9),
                hex(0xc0)
            );
            s.fact_irq(false);
            note_qmp_state(s)?;
            s.cont()?;
            s.wait_event("RESUME", Duration::from_secs(3))?;
            s.settle_expect("flush after cont", 0x50, 0x00, true)?;
            note_qmp_state(s)
        },
    ));
}


// ---- ATAPI ---------------------------------------------------------------------------------

/// The 12 CDB bytes as six words to the secondary channel's data port.
fn send_cdb(s: &mut Session, cdb: [u8; 12]) -> Step {
    for pair in cdb.chunks(2) {
        s.outw(SECONDARY.base, u16::from_le_bytes([pair[0], pair[1]]))?;
    }
    Ok(())
}

/// PACKET by PIO on the secondary master with `byte_limit`; returns the
/// status once BSY is clear (the drive then waits for the CDB).
fn packet_command(s: &mut Session, byte_limit: u16) -> Result<u8, String> {
    s.ch = SECONDARY;
    s.select(0)?;
    s.set_reg(1, 0)?;
    s.set_reg(4, byte_limit as u8)?;
    s.set_reg(5, (byte_limit >> 8) as u8)?;
    s.command(0xa0)?;
    s.wait_not_busy()
}

/// Sends a PACKET command by PIO on the secondary channel and collects the
/// data phases; every phase's status, interrupt reason and byte count is
/// recorded.
fn packet(s: &mut Session, label: &str, cdb: [u8; 12], byte_limit: u16) -> Result<Vec<u8>, String> {
    let status = packet_command(s, byte_limit)?;
    let reason = s.reg(2)?;
    note!(
        s,
        format!("{label}: packet phase altstatus/ireason"),
        format!("{} {}", hex(status), hex(reason))
    );
    if status & DRQ == 0 {
        return Ok(Vec::new());
    }
    send_cdb(s, cdb)?;
    let mut data = Vec::new();
    for phase in 0..64 {
        let status = s.wait_not_busy()?;
        let reason = s.reg(2)?;
        let count = u16::from(s.reg(4)?) | u16::from(s.reg(5)?) << 8;
        let irq = s.irq();
        s.status()?;
        note!(
            s,
            format!("{label}: phase {phase} altstatus/ireason/bytes/irq"),
            format!("{} {} {count} {}", hex(status), hex(reason), u8::from(irq)),
        );
        if status & DRQ == 0 {
            if status & 0x01 != 0 {
                note!(s, format!("{label}: error"), hex(s.reg(1)?));
            }
            break;
        }
        for _ in 0..usize::from(count).div_ceil(2) {
            data.extend_from_slice(&s.inw(SECONDARY.base)?.to_le_bytes());
        }
        data.truncate(data.len() - usize::from(count) % 2);
    }
    Ok(data)
}

fn read10(lba: u32, blocks: u16) -> [u8; 12] {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0, 0, 0]
}

fn hexdump(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// TEST UNIT READY then REQUEST SENSE, recording sense key/ASC/ASCQ.
fn tur_and_sense(s: &mut Session, label: &str) -> Step {
    packet(s, &format!("{label} tur"), [0; 12], 0)?;
    let sense = packet(
        s,
        &format!("{label} request sense"),
        [0x03, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0],
        18,
    )?;
    if sense.len() >= 14 {
        note!(
            s,
            format!("{label} sense key/asc/ascq"),
            format!("{:x}/{:02x}/{:02x}", sense[2] & 0x0f, sense[12], sense[13])
        );
    }
    Ok(())
}

fn atapi_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("cdrom/pio", cd_secondary(), |s| {
        let data = packet(s, "read10 1 block", read10(0, 1), 5120)?;
        note!(s, "data", image::describe(&data, 2048));
        fact!(s, "data length", data.len(), 2048);
        Ok(())
    }));
    out.push(scenario("cdrom/pio-large", cd_secondary(), |s| {
        let data = packet(s, "read10 10 blocks", read10(3, 10), 5120)?;
        note!(s, "data", image::describe(&data, 2048));
        fact!(s, "data length", data.len(), 20480);
        Ok(())
    }));
    out.push(scenario("cdrom/pio-odd-limit", cd_secondary(), |s| {
        let data = packet(s, "read10 odd limit", read10(7, 2), 0x3ff)?;
        note!(s, "data", image::describe(&data, 2048));
        Ok(())
    }));
    out.push(scenario("cdrom/dma", cd_secondary(), |s| {
        s.ch = SECONDARY;
        s.memset(BUFFER, 3 * 2048, 0xcc)?;
        s.bm_command(0)?;
        s.bm_clear()?;
        s.set_prdt(&[(BUFFER, 3 * 2048, true)])?;
        s.select(0)?;
        s.set_reg(1, 0x01)?;
        s.command(0xa0)?;
        s.wait_not_busy()?;
        send_cdb(s, read10(5, 3))?;
        s.bm_command(0x09)?;
        let bm = s.wait_dma()?;
        fact!(s, "cd dma: bm", hex(bm), hex(0x04));
        s.wait_not_busy()?;
        s.note_taskfile("cd dma")?;
        s.fact_irq(true);
        s.bm_command(0)?;
        let data = s.memread(BUFFER, 3 * 2048)?;
        note!(s, "cd dma data", image::describe(&data, 2048));
        Ok(())
    }));
    // Found by the atapi fuzz target (2026-12-04, a harness defect): a
    // byte-count limit written while the drive waits for the CDB is ignored
    // (DRQ is set), so the limit of the PACKET itself sizes the data phase.
    out.push(scenario("atapi/limit-written-while-cdb-awaited", cd_secondary(), |s| {
        let status = packet_command(s, 0x0800)?;
        note!(s, "packet phase altstatus/ireason", format!("{} {}", hex(status), hex(s.reg(2)?)));
        s.set_reg(4, 5)?;
        s.set_reg(5, 0)?;
        note!(s, "limit read back while the CDB is awaited", format!("{} {}", hex(s.reg(4)?), hex(s.reg(5)?)));
        send_cdb(s, read10(0, 1))?;
        let status = s.wait_not_busy()?;
        let count = u16::from(s.reg(4)?) | u16::from(s.reg(5)?) << 8;
        note!(s, "first data phase altstatus/ireason/bytes", format!("{} {} {count}", hex(status), hex(s.reg(2)?)));
        Ok(())
    }));
    out.push(scenario("atapi/inquiry", cd_secondary(), |s| {
        let data = packet(s, "inquiry", [0x12, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0], 36)?;
        note!(s, "inquiry", hexdump(&data));
        Ok(())
    }));
    out.push(scenario("atapi/read-capacity", cd_secondary(), |s| {
        let data = packet(
            s,
            "read capacity",
            [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            8,
        )?;
        fact!(
            s,
            "read capacity",
            hexdump(&data),
            hexdump(&[0, 0, 0x01, 0xff, 0, 0, 0x08, 0])
        );
        Ok(())
    }));
    out.push(scenario("atapi/read-toc", cd_secondary(), |s| {
        for format in [0u8, 1, 2] {
            let data = packet(
                s,
                &format!("toc format {format}"),
                [0x43, 0x02, format, 0, 0, 0, 0, 0x03, 0x24, 0, 0, 0],
                0x324,
            )?;
            note!(s, format!("toc format {format}"), hexdump(&data));
        }
        Ok(())
    }));
    out.push(scenario("atapi/mode-sense", cd_secondary(), |s| {
        for page in [0x01u8, 0x2a, 0x3f, 0x05] {
            let data = packet(
                s,
                &format!("mode sense 0x{page:02x}"),
                [0x5a, 0, page, 0, 0, 0, 0, 0, 0xfc, 0, 0, 0],
                0xfc,
            )?;
            note!(s, format!("mode sense 0x{page:02x}"), hexdump(&data));
        }
        Ok(())
    }));
    out.push(scenario("atapi/tur-with-medium", cd_secondary(), |s| {
        tur_and_sense(s, "first")?;
        tur_and_sense(s, "second")
    }));
    out.push(scenario(
        "atapi/tur-no-medium",
        vec![Drive::disk(0), Drive::empty_cdrom(2)],
        |s| {
            tur_and_sense(s, "empty")?;
            let data = packet(
                s,
                "read capacity empty",
                [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                8,
            )?;
            note!(s, "read capacity empty", hexdump(&data));
            s.note_block()
        },
    ));
    out.push(scenario("atapi/unknown-opcode", cd_secondary(), |s| {
        packet(
            s,
            "opcode 0xff",
            [0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            64,
        )?;
        let sense = packet(
            s,
            "request sense",
            [0x03, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0],
            18,
        )?;
        note!(s, "sense", hexdump(&sense));
        Ok(())
    }));
    out.push(scenario("atapi/read-out-of-range", cd_secondary(), |s| {
        packet(s, "read10 past end", read10(600, 1), 2048)?;
        let sense = packet(
            s,
            "request sense",
            [0x03, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0],
            18,
        )?;
        note!(s, "sense", hexdump(&sense));
        Ok(())
    }));
    out.push(scenario("atapi/zero-byte-limit", cd_secondary(), |s| {
        let data = packet(
            s,
            "inquiry limit 0",
            [0x12, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0],
            0,
        )?;
        note!(s, "data", hexdump(&data));
        Ok(())
    }));
    out.push(scenario("atapi/eject-and-change", cd_secondary(), |s| {
        tur_and_sense(s, "initial")?;
        let cd = Drive::cdrom(2).qmp_id();
        s.eject(&cd)?;
        note_qmp_state(s)?;
        tur_and_sense(s, "after eject")?;
        let iso = s.inst.dir.path().join("new.iso");
        std::fs::write(&iso, image::initial_image(512 * 1024, 2048))
            .map_err(|e| format!("write new.iso: {e}"))?;
        s.qmp(
            "blockdev-change-medium",
            Some(json!({ "device": cd, "filename": iso.display().to_string(), "format": "raw" })),
        )?;
        note_qmp_state(s)?;
        tur_and_sense(s, "after change 1")?;
        tur_and_sense(s, "after change 2")?;
        tur_and_sense(s, "after change 3")?;
        let data = packet(
            s,
            "read capacity new",
            [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            8,
        )?;
        note!(s, "read capacity new", hexdump(&data));
        Ok(())
    }));
    out.push(scenario("atapi/read-sectors-on-cd", cd_secondary(), |s| {
        s.ch = SECONDARY;
        s.taskfile28(0, 0, 1)?;
        s.command(0x20)?;
        s.settle_expect("read sectors on cd", 0x41, 0x04, true)?;
        s.note_taskfile("signature")
    }));
    out.push(scenario("atapi/device-reset", cd_secondary(), |s| {
        packet(s, "inquiry", [0x12, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0], 36)?;
        s.ch = SECONDARY;
        s.command(0x08)?;
        s.settle_and_note("device reset")?;
        s.note_taskfile("after device reset")
    }));
    for (name, policy) in [("report", "report"), ("stop", "stop")] {
        let drive = Drive {
            rerror: Some(policy),
            werror: Some(policy),
            rules: vec![Rule {
                event: "read_aio",
                errno: 5,
                iotype: Some("read"),
                sector: None,
                once: true,
            }],
            ..Drive::cdrom(2)
        };
        // ATAPI PIO reads report host errors directly (ide_atapi_io_error):
        // QEMU applies no rerror policy and emits no BLOCK_IO_ERROR, even
        // with rerror=stop; the scenario pins that.
        out.push(scenario(
            format!("error/cd-read10-pio/rerror-{name}"),
            vec![Drive::disk(0), drive],
            move |s| {
                let stops = policy == "stop";
                if stops {
                    packet_command(s, 0x0800)?;
                    send_cdb(s, read10(4, 1))?;
                    s.wait_event("STOP", Duration::from_millis(300))?;
                    s.note_taskfile("stopped")?;
                    note_qmp_state(s)?;
                    let cont = s
                        .qmp("cont", None)
                        .map(|_| "ok".to_string())
                        .unwrap_or_else(|e| e);
                    note!(s, "cont while running", cont);
                    s.wait_not_busy()?;
                    s.note_taskfile("after cont")?;
                    note_qmp_state(s)?;
                    return Ok(());
                }
                let data = packet(s, "read10", read10(4, 1), 2048)?;
                note!(s, "data", image::describe(&data, 2048));
                fact!(s, "error register", hex(s.reg(1)?), hex(0x50));
                let sense = packet(
                    s,
                    "request sense",
                    [0x03, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0],
                    18,
                )?;
                fact!(
                    s,
                    "sense key/asc",
                    format!("{:x}/{:02x}", sense[2] & 0x0f, sense[12]),
                    "5/21".to_string()
                );
                note_qmp_state(s)
            },
        ));
    }
}

/// ATAPI READ(10) by DMA on the secondary channel; returns BM status.
pub(super) fn cd_dma_read(s: &mut Session, lba: u32, blocks: u16) -> Result<u8, String> {
    s.ch = SECONDARY;
    let len = usize::from(blocks) * 2048;
    s.memset(BUFFER, len, 0xcc)?;
    s.bm_command(0)?;
    s.bm_clear()?;
    s.set_prdt(&[(BUFFER, len as u32, true)])?;
    s.select(0)?;
    s.set_reg(1, 0x01)?;
    s.command(0xa0)?;
    s.wait_not_busy()?;
    send_cdb(s, read10(lba, blocks))?;
    s.bm_command(0x09)?;
    s.wait_dma()
}

fn atapi_dma_error_scenarios(out: &mut Vec<Scenario>) {
    for policy in ["report", "stop"] {
        let drive = Drive {
            rerror: Some(policy),
            werror: Some(policy),
            rules: vec![Rule {
                event: "read_aio",
                errno: 5,
                iotype: Some("read"),
                sector: None,
                once: true,
            }],
            ..Drive::cdrom(2)
        };
        out.push(scenario(
            format!("error/cd-read10-dma/rerror-{policy}"),
            vec![Drive::disk(0), drive],
            move |s| cd_dma_read_error(s, &|_| Ok(policy == "stop")),
        ));
    }
}

/// A CD READ(10) by DMA whose host read fails: bus master status,
/// taskfile and QMP state; if `resumes` says so, `cont` and what the
/// retried read leaves; then guest memory and the sense data.
pub(crate) fn cd_dma_read_error(s: &mut Session, resumes: &dyn Fn(&mut Session) -> Result<bool, String>) -> Step {
    let bm = cd_dma_read(s, 4, 2)?;
    note!(s, "cd dma: bm status", hex(bm));
    s.note_taskfile("cd dma")?;
    note_qmp_state(s)?;
    if resumes(s)? {
        s.cont()?;
        s.wait_event("RESUME", Duration::from_secs(3))?;
        let bm = s.wait_dma()?;
        note!(s, "cd dma after cont: bm status", hex(bm));
        s.wait_not_busy()?;
        s.note_taskfile("after cont")?;
        note_qmp_state(s)?;
    }
    s.bm_command(0)?;
    s.note_mem(BUFFER, 4096, 2048)?;
    let sense = packet(s, "request sense", [0x03, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0], 18)?;
    note!(s, "sense", hexdump(&sense));
    Ok(())
}

// ---- PCI configuration space -----------------------------------------------------------

fn pci_dump(s: &mut Session, device: u8, function: u8, label: &str) -> Step {
    let mut dwords = Vec::new();
    for offset in (0..0x100u16).step_by(4) {
        dwords.push(format!(
            "{:08x}",
            s.pci_read32(device, function, offset as u8)?
        ));
    }
    note!(s, format!("{label} config"), dwords.join(" "));
    Ok(())
}

fn pci_scenarios(out: &mut Vec<Scenario>) {
    let unprogrammed = |name: &str, run: fn(&mut Session) -> Step| Scenario {
        program_pci: false,
        ..scenario(name, one_disk(), run)
    };
    out.push(unprogrammed("pci/ide-function-config", |s| {
        fact!(
            s,
            "00:01.1 id",
            format!("0x{:08x}", s.pci_read32(1, 1, 0)?),
            "0x70108086".to_string()
        );
        fact!(
            s,
            "00:01.1 bar4 at reset",
            format!("0x{:08x}", s.pci_read32(1, 1, 0x20)?),
            "0x00000001".to_string()
        );
        fact!(
            s,
            "00:01.1 class/prog-if",
            format!(
                "{:02x}/{:02x}",
                s.pci_read8(1, 1, 0x0b)?,
                s.pci_read8(1, 1, 0x09)?
            ),
            "01/80".to_string()
        );
        fact!(
            s,
            "00:01.1 command at reset",
            format!("0x{:04x}", s.pci_read16(1, 1, 0x04)?),
            "0x0000".to_string()
        );
        pci_dump(s, 1, 1, "00:01.1")
    }));
    out.push(unprogrammed("pci/host-bridge-config", |s| {
        pci_dump(s, 0, 0, "00:00.0")
    }));
    out.push(unprogrammed("pci/isa-bridge-config", |s| {
        pci_dump(s, 1, 0, "00:01.0")
    }));
    out.push(unprogrammed("pci/absent-functions", |s| {
        for (device, function) in [(1u8, 2u8), (1, 5), (5, 0), (31, 7)] {
            note!(
                s,
                format!("00:{device:02x}.{function} id"),
                format!("0x{:08x}", s.pci_read32(device, function, 0)?)
            );
        }
        s.outl(0xcf8, 0x0000_0900)?;
        note!(
            s,
            "config data with enable bit clear",
            format!("0x{:08x}", s.inl(0xcfc)?)
        );
        note!(s, "cf8 readback", format!("0x{:08x}", s.inl(0xcf8)?));
        Ok(())
    }));
    out.push(unprogrammed("pci/bar4-sizing-and-decode", |s| {
        note!(s, "bmdma port before BAR", hex(s.inb(0xc002)?));
        s.pci_write32(1, 1, 0x20, 0xffff_ffff)?;
        fact!(
            s,
            "bar4 size probe",
            format!("0x{:08x}", s.pci_read32(1, 1, 0x20)?),
            "0xfffffff1".to_string()
        );
        s.pci_write32(1, 1, 0x20, 0xd001)?;
        note!(s, "bmdma at 0xd002 with I/O disabled", hex(s.inb(0xd002)?));
        s.pci_write16(1, 1, 0x04, 0x0001)?;
        note!(s, "bmdma at 0xd002 with I/O enabled", hex(s.inb(0xd002)?));
        note!(s, "bmdma at 0xc002 after move", hex(s.inb(0xc002)?));
        for offset in [0x10u8, 0x14, 0x18, 0x1c, 0x24] {
            s.pci_write32(1, 1, offset, 0xffff_ffff)?;
            note!(
                s,
                format!("bar 0x{offset:02x} probe"),
                format!("0x{:08x}", s.pci_read32(1, 1, offset)?)
            );
        }
        s.pci_write8(1, 1, 0x3c, 0x0e)?;
        s.pci_write16(1, 1, 0x40, 0x8000)?;
        s.pci_write32(1, 1, 0x00, 0)?;
        pci_dump(s, 1, 1, "00:01.1 after writes")
    }));
    out.push(unprogrammed("pci/legacy-ports-without-pci-enable", |s| {
        s.select(0)?;
        s.command(0xe5)?;
        s.settle_and_note("check power mode with PCI I/O disabled")?;
        s.note_taskfile("after")
    }));
}

// ---- hostile guests and corner cases ------------------------------------------------

fn hostile_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario(
        "regs/ignored-while-bsy",
        vec![Drive {
            werror: Some("stop"),
            rerror: Some("stop"),
            rules: vec![Rule {
                event: "flush_to_disk",
                errno: 5,
                iotype: None,
                sector: None,
                once: true,
            }],
            ..Drive::disk(0)
        }],
        |s| {
            make_dirty(s)?;
            s.select(0)?;
            s.command(0xe7)?;
            s.wait_event("STOP", Duration::from_secs(3))?;
            // The flush is held with BSY set: taskfile and command writes must be ignored.
            s.set_reg(2, 0x77)?;
            s.set_reg(3, 0x66)?;
            s.command(0xec)?;
            s.note_taskfile("while BSY")?;
            let word = s.inw(0x1f0)?;
            note!(s, "data port while BSY", format!("0x{word:04x}"));
            s.cont()?;
            s.wait_event("RESUME", Duration::from_secs(3))?;
            s.wait_not_busy()?;
            s.note_taskfile("after cont")?;
            note_qmp_state(s)
        },
    ));
    out.push(scenario("bmdma/prdt-no-eot-table-limit", one_disk(), |s| {
        // 512 two-byte entries without EOT fill the 4 KiB table but cover
        // only 1 KiB of an 8-sector transfer.
        s.memset(BUFFER, 4096, 0xcc)?;
        let table: Vec<Prd> = (0..512).map(|i| (BUFFER + i * 2, 2, false)).collect();
        let bm = s.dma(0xc8, 0, 8, &table, true)?;
        note_dma_result(s, "read with table overrun", bm)?;
        s.note_mem(BUFFER, 4096, 512)
    }));
    out.push(Scenario {
        deviation: Some(Deviation {
            reason: "a PRD table outside guest RAM: QEMU reads whatever is mapped there (here the BIOS ROM, \
                     elsewhere zeros) and, for the write, puts zeros on the image as a success; we have no ROM \
                     (on Xen the firmware lives in guest RAM) and end the command as a DMA error (0x41/0x04, \
                     BM INTR), so nothing the guest did not write reaches the disk",
            labels: vec![
                "read with PRD table at 0xfffff000: bm status",
                "read with PRD table at 0xfffff000: err/cnt/lba0/lba1/lba2/dev alt",
                "write with PRD table straddling the end of RAM: bm status",
                "write with PRD table straddling the end of RAM: err/cnt/lba0/lba1/lba2/dev alt",
                "image0",
            ],
            ours: vec![
                ("read with PRD table at 0xfffff000: bm status", "0x04"),
                ("write with PRD table straddling the end of RAM: bm status", "0x04"),
                ("image0", "0-8191:blk0-8191"),
            ],
        }),
        ..scenario("bmdma/prdt-table-outside-ram", one_disk(), |s| {
        s.bm_command(0)?;
        s.bm_clear()?;
        s.outl(0xc004, 0xffff_f000)?;
        s.taskfile28(0, 0, 8)?;
        s.command(0xc8)?;
        s.bm_command(0x09)?;
        let bm = s.wait_dma()?;
        note_dma_result(s, "read with PRD table at 0xfffff000", bm)?;
        s.status()?;
        s.bm_clear()?;
        s.outl(0xc004, 0x07ff_fffc)?;
        s.taskfile28(0, 0, 8)?;
        s.command(0xca)?;
        s.bm_command(0x01)?;
        let bm = s.wait_dma()?;
        note_dma_result(s, "write with PRD table straddling the end of RAM", bm)?;
        s.note_image(0)
    })
    });
    out.push(Scenario {
        deviation: Some(Deviation {
            reason: "WRITE DMA from a guest address with no RAM behind it: QEMU writes zeros to the image and \
                     reports success (silent corruption); we end it as a DMA error (0x41/0x04, BM INTR) with the \
                     registers left at the command's values, and the image keeps its data",
            labels: vec!["write dma from unbacked address: err/cnt/lba0/lba1/lba2/dev alt", "image0"],
            ours: vec![
                ("write dma from unbacked address: err/cnt/lba0/lba1/lba2/dev alt", "04/08/28/00/00/e0 41"),
                ("image0", "0-8191:blk0-8191"),
            ],
        }),
        ..scenario("bmdma/write-from-outside-ram", one_disk(), |s| {
        let bm = s.dma(0xca, 40, 8, &[(0xf000_0000, 4096, true)], false)?;
        note_dma_result(s, "write dma from unbacked address", bm)?;
        note_qmp_state(s)?;
        s.note_image(0)
    })
    });
    out.push(scenario("bmdma/lba48-huge-count", one_disk(), |s| {
        s.memset(BUFFER, 4096, 0xcc)?;
        let bm = s.dma(0x25, 0, 0, &[(BUFFER, 4096, true)], true)?;
        note_dma_result(s, "read dma ext count 0 (65536 sectors)", bm)?;
        s.note_mem(BUFFER, 4096, 512)
    }));
    out.push(scenario(
        "bmdma/two-commands-back-to-back",
        one_disk(),
        |s| {
            s.memset(BUFFER, 8192, 0xcc)?;
            let bm = s.dma(0xc8, 10, 8, &[(BUFFER, 4096, true)], true)?;
            note_dma_result(s, "first", bm)?;
            s.status()?;
            let bm = s.dma(0xc8, 30, 8, &[(BUFFER + 4096, 4096, true)], true)?;
            note_dma_result(s, "second", bm)?;
            s.note_mem(BUFFER, 8192, 512)
        },
    ));
    out.push(scenario("pio/chs-sector-zero", one_disk(), |s| {
        s.taskfile_chs(0, 0, 0, 0, 1)?;
        s.command(0x20)?;
        s.settle_and_note("chs sector 0")?;
        s.note_taskfile("after")
    }));
    out.push(scenario("pio/chs-past-capacity", one_disk(), |s| {
        s.taskfile_chs(0, 0xffff, 15, 63, 1)?;
        s.command(0x20)?;
        s.settle_and_note("chs past capacity")?;
        s.note_taskfile("after")?;
        note_qmp_state(s)
    }));
    out.push(scenario(
        "pio/read-sectors-to-absent-slave",
        one_disk(),
        |s| {
            s.taskfile28(1, 0, 1)?;
            s.command(0x20)?;
            s.note_taskfile("slave")?;
            s.select(0)?;
            s.note_taskfile("master")
        },
    ));
    out.push(scenario(
        "cmd/set-features-xfer-before-identify",
        one_disk(),
        |s| {
            s.select(0)?;
            s.set_reg(1, 0x03)?;
            s.set_reg(2, 0x21)?;
            s.command(0xef)?;
            s.settle_and_note("xfer mode MWDMA1 before identify")?;
            let words = identify_words(s, 0xec)?;
            note!(
                s,
                "w62/w63/w88",
                format!("{:04x} {:04x} {:04x}", words[62], words[63], words[88])
            );
            Ok(())
        },
    ));
}

/// hd-geo-test's territory: the geometry and capacities IDENTIFY reports
/// for image sizes around the CHS and LBA28 limits, plus the last sector.
fn geometry_scenarios(out: &mut Vec<Scenario>) {
    let sizes: [(&str, u64); 6] = [
        ("1m", 1 << 20),
        ("100m", 100 << 20),
        ("chs-limit", 1024 * 16 * 63 * 512),
        ("8g", 8 << 30),
        ("lba28-limit", (1 << 28) * 512),
        ("200g", 200 << 30),
    ];
    for (name, size) in sizes {
        out.push(scenario(
            format!("identify/geometry/{name}"),
            vec![Drive {
                size,
                ..Drive::disk(0)
            }],
            move |s| {
                s.select(0)?;
                let words = identify_words(s, 0xec)?;
                let w = |i: usize| format!("{:04x}", words[i]);
                let summary = [1, 3, 6, 54, 55, 56, 57, 58, 60, 61, 100, 101, 102, 103]
                    .map(|i| format!("w{i}={}", w(i)))
                    .join(" ");
                note!(s, "geometry words", summary);
                let sectors = size / 512;
                let lba48 = u64::from(words[100])
                    | u64::from(words[101]) << 16
                    | u64::from(words[102]) << 32
                    | u64::from(words[103]) << 48;
                fact!(s, "lba48 capacity", lba48, sectors);
                let lba28 = u64::from(words[60]) | u64::from(words[61]) << 16;
                fact!(s, "lba28 capacity", lba28, sectors.min((1 << 28) - 1));
                s.set_reg(6, 0x40)?;
                s.command(0x27)?;
                s.settle_and_note("read native max ext")?;
                s.note_taskfile("native max (low)")?;
                s.device_control(0x80)?;
                s.note_taskfile("native max (hob)")?;
                s.device_control(0x00)?;
                s.status()?;
                // Last sector by DMA, then one past it.
                s.memset(BUFFER, 512, 0xe7)?;
                let bm = s.dma(0x35, sectors - 1, 1, &[(BUFFER, 512, true)], false)?;
                note_dma_result(s, "write last sector", bm)?;
                s.status()?;
                let bm = s.dma(0x25, sectors, 1, &[(BUFFER, 512, true)], true)?;
                note_dma_result(s, "read one past the end", bm)?;
                let image = s.inst.images[0].1.clone();
                let len = std::fs::metadata(&image).map_err(|e| e.to_string())?.len();
                fact!(s, "image length after writes", len, size);
                let tail = {
                    use std::io::{Read, Seek, SeekFrom};
                    let mut file = std::fs::File::open(&image).map_err(|e| e.to_string())?;
                    file.seek(SeekFrom::Start(size - 512))
                        .map_err(|e| e.to_string())?;
                    let mut last = vec![0u8; 512];
                    file.read_exact(&mut last).map_err(|e| e.to_string())?;
                    last
                };
                note!(s, "last sector on disk", image::describe(&tail, 512));
                Ok(())
            },
        ));
    }
}

fn qmp_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("qmp/system-reset", cd_secondary(), |s| {
        set_multiple(s, 4)?;
        s.taskfile28(0, 0x123456, 9)?;
        s.device_control(0x02)?;
        s.bm_command(0x08)?;
        s.outl(0xc004, 0x0001_2340)?;
        s.qmp("system_reset", None)?;
        s.wait_event("RESET", Duration::from_secs(3))?;
        note_qmp_state(s)?;
        note!(
            s,
            "00:01.1 command",
            format!("0x{:04x}", s.pci_read16(1, 1, 0x04)?)
        );
        note!(
            s,
            "00:01.1 bar4",
            format!("0x{:08x}", s.pci_read32(1, 1, 0x20)?)
        );
        s.pci_write32(0x01, 1, 0x20, 0xc001)?;
        s.pci_write16(0x01, 1, 0x04, 0x0005)?;
        note!(
            s,
            "bm command/status/prd after reset",
            format!(
                "{} {} 0x{:08x}",
                hex(s.inb(0xc000)?),
                hex(s.inb(0xc002)?),
                s.inl(0xc004)?
            )
        );
        s.note_taskfile("primary after reset")?;
        s.ch = SECONDARY;
        s.note_taskfile("secondary after reset")?;
        s.ch = PRIMARY;
        let words = identify_words(s, 0xec)?;
        note!(s, "w59 after reset", word_hex(words[59]));
        Ok(())
    }));
    out.push(scenario("qmp/stop-cont-idle", one_disk(), |s| {
        s.qmp("stop", None)?;
        note_qmp_state(s)?;
        s.select(0)?;
        s.command(0xe5)?;
        s.settle_and_note("check power mode while stopped")?;
        s.cont()?;
        s.wait_event("RESUME", Duration::from_secs(3))?;
        note_qmp_state(s)
    }));
}

fn atapi_more_scenarios(out: &mut Vec<Scenario>) {
    out.push(scenario("atapi/misc-commands", cd_secondary(), |s| {
        let commands: [(&str, [u8; 12], u16); 9] = [
            (
                "get configuration",
                [0x46, 0x02, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0],
                0x40,
            ),
            (
                "get event status",
                [0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 0x08, 0, 0, 0],
                0x08,
            ),
            (
                "read disc information",
                [0x51, 0, 0, 0, 0, 0, 0, 0, 0x22, 0, 0, 0],
                0x22,
            ),
            (
                "mechanism status",
                [0xbd, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0],
                0x08,
            ),
            ("seek", [0x2b, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0], 0),
            (
                "set speed",
                [0xbb, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
                0,
            ),
            ("read(12)", [0xa8, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0], 2048),
            ("read cd", [0xbe, 0, 0, 0, 0, 3, 0, 0, 1, 0x10, 0, 0], 2048),
            (
                "read dvd structure",
                [0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0],
                0x20,
            ),
        ];
        for (name, cdb, limit) in commands {
            let data = packet(s, name, cdb, limit.max(2))?;
            if data.len() > 64 {
                note!(s, format!("{name} data"), image::describe(&data, 2048));
            } else {
                note!(s, format!("{name} data"), hexdump(&data));
            }
        }
        Ok(())
    }));
    out.push(scenario(
        "atapi/prevent-removal-and-eject",
        cd_secondary(),
        |s| {
            let cd = Drive::cdrom(2).qmp_id();
            packet(
                s,
                "prevent removal",
                [0x1e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
                0,
            )?;
            note_qmp_state(s)?;
            let eject = s
                .qmp("eject", Some(json!({ "device": cd })))
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e);
            note!(s, "eject while locked", eject);
            note_qmp_state(s)?;
            let data = packet(
                s,
                "get event status",
                [0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 0x08, 0, 0, 0],
                8,
            )?;
            note!(s, "event status", hexdump(&data));
            packet(
                s,
                "allow removal",
                [0x1e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                0,
            )?;
            packet(
                s,
                "start stop unit: eject",
                [0x1b, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0],
                0,
            )?;
            note_qmp_state(s)?;
            tur_and_sense(s, "after guest eject")
        },
    ));
    out.push(scenario(
        "atapi/packet-dma-without-prd",
        cd_secondary(),
        |s| {
            // DMA requested but the bus master is never started.
            s.ch = SECONDARY;
            s.select(0)?;
            s.set_reg(1, 0x01)?;
            s.command(0xa0)?;
            s.wait_not_busy()?;
            send_cdb(s, read10(0, 1))?;
            s.note_taskfile("dma packet, engine idle")?;
            note!(s, "bm status", hex(s.bm_status()?));
            s.device_control(0x04)?;
            s.device_control(0x00)?;
            s.wait_not_busy()?;
            s.note_taskfile("after SRST")
        },
    ));
    out.push(scenario(
        "atapi/srst-clears-unit-attention",
        cd_secondary(),
        |s| {
            let cd = Drive::cdrom(2).qmp_id();
            s.eject(&cd)?;
            let iso = s.inst.dir.path().join("new.iso");
            std::fs::write(&iso, image::initial_image(256 * 1024, 2048))
                .map_err(|e| format!("write new.iso: {e}"))?;
            s.qmp(
                "blockdev-change-medium",
                Some(
                    json!({ "device": cd, "filename": iso.display().to_string(), "format": "raw" }),
                ),
            )?;
            s.ch = SECONDARY;
            s.device_control(0x04)?;
            s.device_control(0x00)?;
            s.wait_not_busy()?;
            s.note_taskfile("after SRST")?;
            tur_and_sense(s, "after SRST 1")?;
            tur_and_sense(s, "after SRST 2")?;
            note_qmp_state(s)
        },
    ));
}

#[path = "fault_matrix.rs"]
pub mod fault_matrix;
#[path = "reset.rs"]
mod reset;

pub fn all() -> Vec<Scenario> {
    let mut out = Vec::new();
    identify_scenarios(&mut out);
    register_scenarios(&mut out);
    command_scenarios(&mut out);
    pio_scenarios(&mut out);
    dma_scenarios(&mut out);
    flush_scenarios(&mut out);
    fault_matrix::error_scenarios(&mut out);
    fault_matrix::fault_scenarios(&mut out);
    atapi_scenarios(&mut out);
    atapi_dma_error_scenarios(&mut out);
    pci_scenarios(&mut out);
    hostile_scenarios(&mut out);
    atapi_more_scenarios(&mut out);
    geometry_scenarios(&mut out);
    qmp_scenarios(&mut out);
    reset::reset_scenarios(&mut out);
    let _ = PRIMARY;
    out
}
