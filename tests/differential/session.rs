//! A running backend plus the observation log of one scenario, with the ATA,
//! bus-master and QMP helpers scenarios are written in.

use crate::image;
use crate::launcher::{self, Backend, Instance, Machine};
use serde_json::{json, Value};
use std::fmt::Display;
use std::time::{Duration, Instant};

pub const BSY: u8 = 0x80;
pub const DRQ: u8 = 0x08;
/// Guest-physical location of the PRD table and of data buffers.
pub const PRD_TABLE: u32 = 0x10000;
pub const BUFFER: u32 = 0x20000;
/// BAR4 as the scenarios program it; primary BMDMA at +0, secondary at +8.
pub const BMDMA_BASE: u16 = 0xc000;
/// How long a request may stay in flight before the scenario gives up waiting.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy)]
pub struct Channel {
    pub base: u16,
    pub control: u16,
    pub bmdma: u16,
    pub irq: u32,
}

pub const PRIMARY: Channel = Channel {
    base: 0x1f0,
    control: 0x3f6,
    bmdma: BMDMA_BASE,
    irq: 14,
};
pub const SECONDARY: Channel = Channel {
    base: 0x170,
    control: 0x376,
    bmdma: BMDMA_BASE + 8,
    irq: 15,
};

pub struct Session {
    pub backend: Backend,
    pub inst: Instance,
    pub obs: Vec<String>,
    /// QEMU values that contradict ide-behaviour.md (checked on QEMU only).
    pub fact_failures: Vec<String>,
    pub ch: Channel,
}

pub type Step = Result<(), String>;

/// One PRD entry: guest-physical address, byte count (0 = 64 KiB), end of table.
pub type Prd = (u32, u32, bool);

impl Session {
    pub fn start(backend: Backend, machine: &Machine, program_pci: bool) -> Result<Self, String> {
        let inst = launcher::launch(backend, machine)?;
        let mut session = Session {
            backend,
            inst,
            obs: Vec::new(),
            fact_failures: Vec::new(),
            ch: PRIMARY,
        };
        session.inst.qtest.cmd("irq_intercept_in ioapic")?;
        if program_pci {
            // Firmware is a halt loop, so the client places BAR4 and enables
            // I/O decoding and bus mastering itself.
            session.pci_write32(0x01, 1, 0x20, u32::from(BMDMA_BASE) | 1)?;
            session.pci_write16(0x01, 1, 0x04, 0x0005)?;
        }
        Ok(session)
    }

    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(&self.inst.stderr_path).unwrap_or_default()
    }

    // ---- observations -------------------------------------------------

    pub fn note(&mut self, label: impl Display, value: impl Display) {
        let q = &self.inst.qtest;
        let line = format!(
            "{label} = {value} | irq14={} irq15={}",
            u8::from(q.irq_level(14)),
            u8::from(q.irq_level(15))
        );
        self.obs.push(line);
    }

    /// Records an observation taken while the next block may still be in
    /// flight: QEMU completes it asynchronously, a synchronous backend may
    /// already have raised the IRQ, and both are correct, so the IRQ levels
    /// are left out here (the next settled observation records them).
    pub fn note_untimed(&mut self, label: impl Display, value: impl Display) {
        self.obs
            .push(format!("{label} = {value} | irq levels not sampled"));
    }

    /// Records an observation and, on QEMU, checks it against the value
    /// ide-behaviour.md states.
    pub fn fact<T: Display + PartialEq>(&mut self, label: impl Display, got: T, want: T) {
        let label = label.to_string();
        if self.backend == Backend::Qemu && got != want {
            self.fact_failures.push(format!(
                "{label}: QEMU gave {got}, ide-behaviour.md says {want}"
            ));
        }
        self.note(label, got);
    }

    pub fn fact_irq(&mut self, want: bool) {
        let level = self.inst.qtest.irq_level(self.ch.irq);
        let label = format!("irq{} level", self.ch.irq);
        self.fact(label, u8::from(level), u8::from(want));
    }

    pub fn irq(&self) -> bool {
        self.inst.qtest.irq_level(self.ch.irq)
    }

    pub fn raises(&self) -> u32 {
        self.inst.qtest.irq_raises(self.ch.irq)
    }

    // ---- raw access -----------------------------------------------------

    pub fn inb(&mut self, port: u16) -> Result<u8, String> {
        self.inst.qtest.inb(port)
    }
    pub fn inw(&mut self, port: u16) -> Result<u16, String> {
        self.inst.qtest.inw(port)
    }
    pub fn inl(&mut self, port: u16) -> Result<u32, String> {
        self.inst.qtest.inl(port)
    }
    pub fn outb(&mut self, port: u16, value: u8) -> Step {
        self.inst.qtest.outb(port, value)
    }
    pub fn outw(&mut self, port: u16, value: u16) -> Step {
        self.inst.qtest.outw(port, value)
    }
    pub fn outl(&mut self, port: u16, value: u32) -> Step {
        self.inst.qtest.outl(port, value)
    }
    pub fn pci_read32(&mut self, dev: u8, func: u8, offset: u8) -> Result<u32, String> {
        self.inst.qtest.pci_read32(dev, func, offset)
    }
    pub fn pci_read16(&mut self, dev: u8, func: u8, offset: u8) -> Result<u16, String> {
        self.inst.qtest.pci_read16(dev, func, offset)
    }
    pub fn pci_read8(&mut self, dev: u8, func: u8, offset: u8) -> Result<u8, String> {
        self.inst.qtest.pci_read8(dev, func, offset)
    }
    pub fn pci_write32(&mut self, dev: u8, func: u8, offset: u8, value: u32) -> Step {
        self.inst.qtest.pci_write32(dev, func, offset, value)
    }
    pub fn pci_write16(&mut self, dev: u8, func: u8, offset: u8, value: u16) -> Step {
        self.inst.qtest.pci_write16(dev, func, offset, value)
    }
    pub fn pci_write8(&mut self, dev: u8, func: u8, offset: u8, value: u8) -> Step {
        self.inst.qtest.pci_write8(dev, func, offset, value)
    }
    pub fn memwrite(&mut self, addr: u32, data: &[u8]) -> Step {
        self.inst.qtest.memwrite(u64::from(addr), data)
    }
    pub fn memset(&mut self, addr: u32, len: usize, value: u8) -> Step {
        self.inst.qtest.memset(u64::from(addr), len, value)
    }
    pub fn memread(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, String> {
        self.inst.qtest.memread(u64::from(addr), len)
    }

    // ---- taskfile ---------------------------------------------------------

    pub fn reg(&mut self, offset: u16) -> Result<u8, String> {
        let port = self.ch.base + offset;
        self.inb(port)
    }
    pub fn set_reg(&mut self, offset: u16, value: u8) -> Step {
        let port = self.ch.base + offset;
        self.outb(port, value)
    }
    /// Status register (base+7); reading it lowers INTRQ.
    pub fn status(&mut self) -> Result<u8, String> {
        self.reg(7)
    }
    pub fn altstatus(&mut self) -> Result<u8, String> {
        let port = self.ch.control;
        self.inb(port)
    }
    pub fn device_control(&mut self, value: u8) -> Step {
        let port = self.ch.control;
        self.outb(port, value)
    }
    pub fn select(&mut self, device: u8) -> Step {
        self.set_reg(6, 0xa0 | (device << 4))
    }
    pub fn command(&mut self, opcode: u8) -> Step {
        self.set_reg(7, opcode)
    }
    pub fn taskfile28(&mut self, device: u8, lba: u32, count: u8) -> Step {
        self.set_reg(2, count)?;
        self.set_reg(3, lba as u8)?;
        self.set_reg(4, (lba >> 8) as u8)?;
        self.set_reg(5, (lba >> 16) as u8)?;
        self.set_reg(6, 0xe0 | (device << 4) | ((lba >> 24) as u8 & 0x0f))
    }
    pub fn taskfile48(&mut self, device: u8, lba: u64, count: u16) -> Step {
        self.set_reg(2, (count >> 8) as u8)?;
        self.set_reg(3, (lba >> 24) as u8)?;
        self.set_reg(4, (lba >> 32) as u8)?;
        self.set_reg(5, (lba >> 40) as u8)?;
        self.set_reg(2, count as u8)?;
        self.set_reg(3, lba as u8)?;
        self.set_reg(4, (lba >> 8) as u8)?;
        self.set_reg(5, (lba >> 16) as u8)?;
        self.set_reg(6, 0x40 | (device << 4))
    }
    pub fn taskfile_chs(
        &mut self,
        device: u8,
        cylinder: u16,
        head: u8,
        sector: u8,
        count: u8,
    ) -> Step {
        self.set_reg(2, count)?;
        self.set_reg(3, sector)?;
        self.set_reg(4, cylinder as u8)?;
        self.set_reg(5, (cylinder >> 8) as u8)?;
        self.set_reg(6, 0xa0 | (device << 4) | (head & 0x0f))
    }

    /// Polls altstatus (which leaves INTRQ alone) until BSY clears or the VM
    /// stopped; returns the last altstatus.
    pub fn wait_not_busy(&mut self) -> Result<u8, String> {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            let status = self.altstatus()?;
            if status & BSY == 0 {
                return Ok(status);
            }
            polls += 1;
            if polls.is_multiple_of(64) {
                self.inst.qmp.poll_events(Duration::from_millis(1));
                if self.inst.qmp.stopped_by_event() || start.elapsed() > COMPLETION_TIMEOUT {
                    return Ok(status);
                }
            }
        }
    }

    /// Records altstatus, error and IRQ level after a command settles.
    pub fn settle_and_note(&mut self, what: &str) -> Step {
        let status = self.wait_not_busy()?;
        self.note(format!("{what}: altstatus"), format!("0x{status:02x}"));
        let error = self.reg(1)?;
        self.note(format!("{what}: error"), format!("0x{error:02x}"));
        Ok(())
    }

    /// Checks the settled result against stated facts.
    pub fn settle_expect(&mut self, what: &str, status: u8, error: u8, irq: bool) -> Step {
        let got = self.wait_not_busy()?;
        self.fact(
            format!("{what}: altstatus"),
            format!("0x{got:02x}"),
            format!("0x{status:02x}"),
        );
        let got_error = self.reg(1)?;
        self.fact(
            format!("{what}: error"),
            format!("0x{got_error:02x}"),
            format!("0x{error:02x}"),
        );
        self.fact_irq(irq);
        Ok(())
    }

    fn taskfile_text(&mut self) -> Result<String, String> {
        let mut regs = Vec::new();
        for offset in 1..=6 {
            regs.push(format!("{:02x}", self.reg(offset)?));
        }
        let alt = self.altstatus()?;
        Ok(format!("{} {alt:02x}", regs.join("/")))
    }

    pub fn note_taskfile(&mut self, what: &str) -> Step {
        let text = self.taskfile_text()?;
        self.note(format!("{what}: err/cnt/lba0/lba1/lba2/dev alt"), text);
        Ok(())
    }

    /// `want` in the form `err/cnt/lba0/lba1/lba2/dev alt`, e.g. `04/04/be/02/00/e0 41`.
    pub fn fact_taskfile(&mut self, what: &str, want: &str) -> Step {
        let text = self.taskfile_text()?;
        self.fact(
            format!("{what}: err/cnt/lba0/lba1/lba2/dev alt"),
            text,
            want.to_string(),
        );
        Ok(())
    }

    pub fn pio_read(&mut self, bytes: usize) -> Result<Vec<u8>, String> {
        let port = self.ch.base;
        let mut data = Vec::with_capacity(bytes);
        for _ in 0..bytes / 2 {
            data.extend_from_slice(&self.inw(port)?.to_le_bytes());
        }
        Ok(data)
    }

    pub fn pio_write(&mut self, data: &[u8]) -> Step {
        let port = self.ch.base;
        for word in data.chunks(2) {
            self.outw(
                port,
                u16::from_le_bytes([word[0], *word.get(1).unwrap_or(&0)]),
            )?;
        }
        Ok(())
    }

    // ---- bus master ---------------------------------------------------------

    /// Writes a PRD table of (address, byte count, end-of-table) entries and
    /// points the channel's PRD register at it.
    pub fn set_prdt(&mut self, entries: &[Prd]) -> Step {
        let mut table = Vec::new();
        for &(addr, count, eot) in entries {
            table.extend_from_slice(&addr.to_le_bytes());
            let field = (count & 0xffff) | if eot { 0x8000_0000 } else { 0 };
            table.extend_from_slice(&field.to_le_bytes());
        }
        self.memwrite(PRD_TABLE, &table)?;
        let port = self.ch.bmdma + 4;
        self.outl(port, PRD_TABLE)
    }
    pub fn bm_status(&mut self) -> Result<u8, String> {
        let port = self.ch.bmdma + 2;
        self.inb(port)
    }
    pub fn bm_clear(&mut self) -> Step {
        let port = self.ch.bmdma + 2;
        self.outb(port, 0x06)
    }
    pub fn bm_command(&mut self, value: u8) -> Step {
        let port = self.ch.bmdma;
        self.outb(port, value)
    }

    /// Polls BM status until ACTIVE clears or INTR is set, or the VM stopped.
    pub fn wait_dma(&mut self) -> Result<u8, String> {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            let status = self.bm_status()?;
            if status & 0x01 == 0 || status & 0x04 != 0 {
                return Ok(status);
            }
            polls += 1;
            if polls.is_multiple_of(64) {
                self.inst.qmp.poll_events(Duration::from_millis(1));
                if self.inst.qmp.stopped_by_event() || start.elapsed() > COMPLETION_TIMEOUT {
                    return Ok(status);
                }
            }
        }
    }

    /// Issues a DMA command the way ide-test does: taskfile, command, then
    /// START (with direction), waits, and returns the BM status.
    pub fn dma(
        &mut self,
        opcode: u8,
        lba: u64,
        count: u16,
        prdt: &[Prd],
        to_memory: bool,
    ) -> Result<u8, String> {
        self.bm_command(0)?;
        self.bm_clear()?;
        self.set_prdt(prdt)?;
        if matches!(opcode, 0x25 | 0x35) {
            self.taskfile48(0, lba, count)?;
        } else {
            self.taskfile28(0, lba as u32, count as u8)?;
        }
        self.command(opcode)?;
        self.bm_command(if to_memory { 0x09 } else { 0x01 })?;
        self.wait_dma()
    }

    // ---- QMP ------------------------------------------------------------------

    /// Waits (poking altstatus so the backend keeps serving qtest) until QMP
    /// delivered `event` or the timeout passed.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Step {
        let start = Instant::now();
        while !self.inst.qmp.has_event(event) && start.elapsed() < timeout {
            self.inst.qmp.poll_events(Duration::from_millis(5));
            self.altstatus()?;
        }
        Ok(())
    }

    /// Records every QMP event emitted so far, without timestamps and
    /// QEMU's generated node names. Everything the scenario did before this
    /// call has happened, so its events have been emitted; the barrier then
    /// makes sure they have also arrived (a fixed wait did not, under load).
    pub fn note_events(&mut self) -> Step {
        self.inst.qmp.sync_events()?;
        for mut event in self.inst.qmp.take_events() {
            if let Some(map) = event.as_object_mut() {
                map.remove("timestamp");
            }
            let name = event["event"].as_str().unwrap_or("?").to_string();
            if let Some(data) = event.get_mut("data").and_then(Value::as_object_mut) {
                data.remove("node-name");
                // DEVICE_TRAY_MOVED's "id" is the device's QOM identity (in
                // QEMU a generated path such as "/machine/unattached/device[19]"),
                // an artefact of the object tree that neither the guest nor
                // libxl sees; "device" (the drive name) is still compared.
                if name == "DEVICE_TRAY_MOVED" && data.contains_key("id") {
                    data.insert("id".into(), Value::String("<device id>".into()));
                }
            }
            self.note(
                format!("event {name}"),
                event.get("data").map(Value::to_string).unwrap_or_default(),
            );
        }
        Ok(())
    }

    pub fn note_runstate(&mut self) -> Step {
        let status = self.inst.qmp.execute("query-status", None)?;
        let runstate = status["status"].as_str().unwrap_or("?").to_string();
        self.note("query-status", runstate);
        Ok(())
    }

    pub fn runstate(&mut self) -> Result<String, String> {
        let status = self.inst.qmp.execute("query-status", None)?;
        Ok(status["status"].as_str().unwrap_or("?").to_string())
    }

    pub fn note_block(&mut self) -> Step {
        let devices = self.inst.qmp.execute("query-block", None)?;
        for device in devices.as_array().cloned().unwrap_or_default() {
            let name = device["device"].as_str().unwrap_or("?").to_string();
            let field = |key: &str| {
                device
                    .get(key)
                    .map(Value::to_string)
                    .unwrap_or_else(|| "-".into())
            };
            let value = format!(
                "io-status={} removable={} locked={} tray_open={} inserted={}",
                field("io-status"),
                field("removable"),
                field("locked"),
                field("tray_open"),
                device.get("inserted").is_some()
            );
            self.note(format!("query-block {name}"), value);
        }
        Ok(())
    }

    pub fn qmp(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, String> {
        self.inst.qmp.execute(command, arguments)
    }

    pub fn cont(&mut self) -> Step {
        self.qmp("cont", None).map(drop)
    }

    pub fn eject(&mut self, device: &str) -> Step {
        self.qmp("eject", Some(json!({ "device": device, "force": true })))
            .map(drop)
    }

    // ---- contents -----------------------------------------------------------

    pub fn note_image(&mut self, index: u8) -> Step {
        let (drive, path) = self
            .inst
            .images
            .iter()
            .find(|(drive, _)| drive.index == index)
            .cloned()
            .ok_or_else(|| format!("no image for drive {index}"))?;
        let data = if drive.qcow2 {
            // The guest's view, read as QEMU reads it. -U: QEMU holds a write
            // lock on the open image; reading beside it is safe after FLUSH.
            let raw = self.inst.dir.path().join(format!("image{index}.raw"));
            let out = std::process::Command::new("qemu-img")
                .args(["convert", "-U", "-f", "qcow2", "-O", "raw"])
                .arg(&path)
                .arg(&raw)
                .output()
                .map_err(|e| format!("qemu-img: {e}"))?;
            if !out.status.success() {
                return Err(format!("qemu-img convert: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
            std::fs::read(&raw).map_err(|e| format!("read {}: {e}", raw.display()))?
        } else {
            std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?
        };
        let description = image::describe(&data, drive.block_size());
        self.note(format!("image{index}"), description);
        Ok(())
    }

    pub fn note_mem(&mut self, addr: u32, len: usize, block: usize) -> Step {
        let data = self.memread(addr, len)?;
        let description = image::describe(&data, block);
        self.note(format!("mem[0x{addr:x}..+{len}]"), description);
        Ok(())
    }
}
