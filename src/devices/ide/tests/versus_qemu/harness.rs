//! Both sides of the comparison: a `Port` for this controller (the rig) and
//! for QEMU 7.2 over qtest, and the `Script` that records what a guest reads.

use super::super::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub(super) trait Port {
    fn inb(&mut self, port: u16) -> u8;
    fn inw(&mut self, port: u16) -> u16;
    fn inl(&mut self, port: u16) -> u32;
    fn outb(&mut self, port: u16, v: u8);
    fn outw(&mut self, port: u16, v: u16);
    fn outl(&mut self, port: u16, v: u32);
    fn memw(&mut self, gpa: u64, data: &[u8]);
    fn memr(&mut self, gpa: u64, len: usize) -> Vec<u8>;
    /// QMP runstate name.
    fn runstate(&mut self) -> String;
    /// QMP `cont`: resume and re-run held requests.
    fn cont(&mut self);
}

impl Port for Rig {
    fn inb(&mut self, port: u16) -> u8 {
        Rig::inb(self, port)
    }
    fn inw(&mut self, port: u16) -> u16 {
        Rig::inw(self, port)
    }
    fn inl(&mut self, port: u16) -> u32 {
        Rig::inl(self, port)
    }
    fn outb(&mut self, port: u16, v: u8) {
        Rig::outb(self, port, v)
    }
    fn outw(&mut self, port: u16, v: u16) {
        Rig::outw(self, port, v)
    }
    fn outl(&mut self, port: u16, v: u32) {
        Rig::outl(self, port, v)
    }
    fn memw(&mut self, gpa: u64, data: &[u8]) {
        self.mem_write(gpa, data)
    }
    fn memr(&mut self, gpa: u64, len: usize) -> Vec<u8> {
        self.mem_read(gpa, len)
    }
    fn runstate(&mut self) -> String {
        self.vm.state().as_qmp().to_string()
    }
    fn cont(&mut self) {
        self.vm.set_running();
        self.restart_held();
    }
}

pub(super) struct Qemu {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    qmp: Option<(UnixStream, BufReader<UnixStream>)>,
    log: std::path::PathBuf,
}

impl Qemu {
    pub(super) fn start(dir: &std::path::Path, disk_drive: &str) -> Option<Qemu> {
        let mut bios = vec![0xf4u8; 65536];
        bios[0xfff0..0xfff4].copy_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]);
        std::fs::write(dir.join("halt.bin"), bios).ok()?;
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-machine", "pc", "-m", "128", "-accel", "tcg", "-nodefaults", "-display", "none"])
            .arg("-bios")
            .arg(dir.join("halt.bin"))
            .args(["-qtest", "stdio"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display()))
            .arg("-drive")
            .arg(disk_drive)
            .arg("-drive")
            .arg(format!("if=ide,index=2,media=cdrom,format=raw,file={}", dir.join("cd.iso").display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("qemu.log")).ok()?)
            .spawn()
            .ok()?;
        let input = child.stdin.take()?;
        let output = BufReader::new(child.stdout.take()?);
        let mut qemu = Qemu { child, input, output, qmp: None, log: dir.join("qemu.log") };
        // The first qtest round trip proves the QMP socket is listening.
        qemu.cmd("inb 0x80");
        let stream = UnixStream::connect(dir.join("qmp.sock")).ok()?;
        let reader = BufReader::new(stream.try_clone().ok()?);
        qemu.qmp = Some((stream, reader));
        qemu.qmp_line();
        qemu.qmp_execute("qmp_capabilities");
        Some(qemu)
    }

    fn qmp_line(&mut self) -> serde_json::Value {
        let (_, reader) = self.qmp.as_mut().expect("qmp");
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("qmp read") > 0, "QMP closed");
        serde_json::from_str(&line).expect("qmp json")
    }

    fn qmp_execute(&mut self, command: &str) -> serde_json::Value {
        let (stream, _) = self.qmp.as_mut().expect("qmp");
        let request = format!("{{\"execute\": \"{command}\"}}\n");
        if let Err(e) = stream.write_all(request.as_bytes()) {
            let _ = self.child.kill();
            let status = self.child.wait();
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            panic!("QMP write failed ({e}); QEMU {status:?}; log tail:\n{}", tail.join("\n"));
        }
        loop {
            let reply = self.qmp_line();
            if let Some(ret) = reply.get("return") {
                return ret.clone();
            }
            assert!(reply.get("error").is_none(), "QMP error: {reply}");
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.input, "{line}").expect("qtest write");
        loop {
            let mut reply = String::new();
            assert!(self.output.read_line(&mut reply).expect("qtest read") > 0, "QEMU exited");
            if reply.starts_with("OK") || reply.starts_with("FAIL") {
                return reply.trim().to_string();
            }
        }
    }

    fn value(&mut self, line: &str) -> u64 {
        let reply = self.cmd(line);
        let hex = reply.split_whitespace().nth(1).expect("value");
        u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex")
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Port for Qemu {
    fn inb(&mut self, port: u16) -> u8 {
        self.value(&format!("inb {port:#x}")) as u8
    }
    fn inw(&mut self, port: u16) -> u16 {
        self.value(&format!("inw {port:#x}")) as u16
    }
    fn inl(&mut self, port: u16) -> u32 {
        self.value(&format!("inl {port:#x}")) as u32
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.cmd(&format!("outb {port:#x} {v:#x}"));
    }
    fn outw(&mut self, port: u16, v: u16) {
        self.cmd(&format!("outw {port:#x} {v:#x}"));
    }
    fn outl(&mut self, port: u16, v: u32) {
        self.cmd(&format!("outl {port:#x} {v:#x}"));
    }
    fn memw(&mut self, gpa: u64, data: &[u8]) {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.cmd(&format!("write {gpa:#x} {:#x} 0x{hex}", data.len()));
    }
    fn memr(&mut self, gpa: u64, len: usize) -> Vec<u8> {
        let reply = self.cmd(&format!("read {gpa:#x} {len:#x}"));
        let hex = reply.split_whitespace().nth(1).expect("data").trim_start_matches("0x").to_string();
        (0..len).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex")).collect()
    }
    fn runstate(&mut self) -> String {
        // QEMU's main loop carries out the stop request: poll, with
        // qtest accesses in between, until it settles.
        let mut last = String::new();
        for _ in 0..200 {
            let status = self.qmp_execute("query-status");
            last = status["status"].as_str().unwrap_or("?").to_string();
            if last != "running" {
                break;
            }
            self.cmd("inb 0x80");
        }
        last
    }
    fn cont(&mut self) {
        self.qmp_execute("cont");
    }
}

/// Records every value the guest reads, labelled, so a mismatch names
/// the step.
pub(super) struct Script<'a> {
    pub(super) port: &'a mut dyn Port,
    pub(super) seen: Vec<String>,
}

impl Script<'_> {
    pub(super) fn rb(&mut self, what: &str, port: u16) -> u8 {
        let v = self.port.inb(port);
        self.seen.push(format!("{what}: inb {port:#x} = {v:#04x}"));
        v
    }
    pub(super) fn words(&mut self, what: &str, port: u16, n: usize) {
        self.settle(port & !7);
        let words: Vec<String> = (0..n).map(|_| format!("{:04x}", self.port.inw(port))).collect();
        self.seen.push(format!("{what}: {}", words.join(" ")));
    }
    /// QEMU's host I/O is asynchronous: wait (bounded) until the
    /// channel is not busy before recording, as a guest would.
    pub(super) fn settle(&mut self, base: u16) {
        let alt = if base == 0x1f0 { 0x3f6 } else { 0x376 };
        for _ in 0..10_000 {
            if self.port.inb(alt) & 0x80 == 0 {
                break;
            }
        }
    }
    fn settle_dma(&mut self, bm: u16) {
        for _ in 0..10_000 {
            let st = self.port.inb(bm + 2);
            if st & 0x04 != 0 || st & 0x01 == 0 {
                break;
            }
        }
    }
    pub(super) fn regs(&mut self, what: &str, base: u16) {
        self.settle(base);
        let v: Vec<String> = (1..=7).map(|r| format!("{:02x}", self.port.inb(base + r))).collect();
        let alt = self.port.inb(if base == 0x1f0 { 0x3f6 } else { 0x376 });
        self.seen.push(format!("{what}: regs {} alt {alt:02x}", v.join(" ")));
    }
    pub(super) fn bm(&mut self, what: &str, base: u16) {
        self.settle_dma(base);
        let v: Vec<String> = (0..8).map(|r| format!("{:02x}", self.port.inb(base + r))).collect();
        self.seen.push(format!("{what}: bm {}", v.join(" ")));
    }
    pub(super) fn taskfile(&mut self, base: u16, cmd: u8, dev: u8, lba: u32, count: u8, feature: u8) {
        self.port.outb(base + 6, dev | ((lba >> 24) as u8 & 0x0f));
        self.port.outb(base + 1, feature);
        self.port.outb(base + 2, count);
        self.port.outb(base + 3, lba as u8);
        self.port.outb(base + 4, (lba >> 8) as u8);
        self.port.outb(base + 5, (lba >> 16) as u8);
        self.port.outb(base + 7, cmd);
    }
    pub(super) fn packet(&mut self, cdb: &[u8; 12], bcl: u16, dma: bool) {
        self.taskfile(0x170, 0xa0, 0xa0, (bcl as u32) << 8, 0, dma as u8);
        for w in cdb.chunks(2) {
            self.port.outw(0x170, u16::from_le_bytes([w[0], w[1]]));
        }
    }
}

// The rig has no PCI host bridge: decode 0xcf8/0xcfc here.
pub(super) struct WithPci<'a> {
    pub(super) rig: &'a mut Rig,
    pub(super) address: u32,
}
impl Port for WithPci<'_> {
    fn inb(&mut self, port: u16) -> u8 {
        self.rig.inb(port)
    }
    fn inw(&mut self, port: u16) -> u16 {
        self.rig.inw(port)
    }
    fn inl(&mut self, port: u16) -> u32 {
        self.rig.inl(port)
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.rig.outb(port, v)
    }
    fn outw(&mut self, port: u16, v: u16) {
        if port == 0xcfc {
            self.rig.ide().config_write((self.address & 0xfc) as u8, 2, v as u32);
        } else {
            self.rig.outw(port, v)
        }
    }
    fn outl(&mut self, port: u16, v: u32) {
        match port {
            0xcf8 => self.address = v,
            0xcfc => {
                let _ = self.rig.ide().config_write((self.address & 0xfc) as u8, 4, v);
            }
            _ => self.rig.outl(port, v),
        }
    }
    fn memw(&mut self, gpa: u64, data: &[u8]) {
        self.rig.mem_write(gpa, data)
    }
    fn memr(&mut self, gpa: u64, len: usize) -> Vec<u8> {
        self.rig.mem_read(gpa, len)
    }
    fn runstate(&mut self) -> String {
        self.rig.runstate()
    }
    fn cont(&mut self) {
        self.rig.cont()
    }
}
