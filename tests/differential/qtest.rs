//! Client for QEMU's qtest line protocol over a child's stdin/stdout.
//!
//! Replies are read in the calling thread (a thread hop per round trip
//! would dominate the benchmark), but only after poll(2) says data is there,
//! so a backend that stops answering is a timeout error, not a hang.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

/// How long one qtest reply may take; a stuck backend is a failure, not a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Qtest {
    input: ChildStdin,
    output: ChildStdout,
    /// Bytes read from the backend that do not yet form a whole line.
    pending: Vec<u8>,
    /// Current level of each intercepted IRQ line, from async `IRQ raise/lower N`.
    levels: HashMap<u32, bool>,
    /// Raise edges per line, so scenarios can tell "raised again" from "still high".
    raises: HashMap<u32, u32>,
    pub round_trips: u64,
}

impl Qtest {
    pub fn new(input: ChildStdin, output: ChildStdout) -> Self {
        Qtest {
            input,
            output,
            pending: Vec::new(),
            levels: HashMap::new(),
            raises: HashMap::new(),
            round_trips: 0,
        }
    }

    fn read_line(&mut self, command: &str) -> Result<String, String> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "qtest `{command}`: no reply within {REPLY_TIMEOUT:?}"
                ));
            }
            let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.output.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, wait) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("qtest `{command}`: poll: {e}")),
            }
            let mut chunk = [0u8; 65536];
            let read = self
                .output
                .read(&mut chunk)
                .map_err(|e| format!("qtest `{command}`: read: {e}"))?;
            if read == 0 {
                return Err(format!("qtest `{command}`: backend closed its stdout"));
            }
            self.pending.extend_from_slice(&chunk[..read]);
        }
    }

    fn track_irq(&mut self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        if words.next() != Some("IRQ") {
            return false;
        }
        let edge = words.next();
        let number = words.next().and_then(|n| n.parse::<u32>().ok());
        match (edge, number) {
            (Some("raise"), Some(n)) => {
                self.levels.insert(n, true);
                *self.raises.entry(n).or_default() += 1;
            }
            (Some("lower"), Some(n)) => {
                self.levels.insert(n, false);
            }
            _ => {}
        }
        true
    }

    /// Sends one command and returns the words after `OK`; `FAIL` is an error.
    pub fn cmd(&mut self, command: &str) -> Result<String, String> {
        writeln!(self.input, "{command}").map_err(|e| format!("qtest write `{command}`: {e}"))?;
        self.input
            .flush()
            .map_err(|e| format!("qtest flush: {e}"))?;
        self.round_trips += 1;
        loop {
            let line = self.read_line(command)?;
            if self.track_irq(&line) {
                continue;
            }
            if line == "OK" {
                return Ok(String::new());
            }
            if let Some(rest) = line.strip_prefix("OK ") {
                return Ok(rest.trim().to_string());
            }
            if line.starts_with("FAIL") {
                return Err(format!("qtest `{command}`: {line}"));
            }
            // Anything else (e.g. a log line) is not a reply; keep waiting.
        }
    }

    pub fn irq_level(&self, line: u32) -> bool {
        self.levels.get(&line).copied().unwrap_or(false)
    }

    pub fn irq_raises(&self, line: u32) -> u32 {
        self.raises.get(&line).copied().unwrap_or(0)
    }

    fn parse_hex(reply: &str, command: &str) -> Result<u64, String> {
        let digits = reply.trim_start_matches("0x");
        u64::from_str_radix(digits, 16)
            .map_err(|_| format!("qtest `{command}`: bad value `{reply}`"))
    }

    fn input(&mut self, width: &str, port: u16) -> Result<u64, String> {
        let command = format!("in{width} 0x{port:x}");
        let reply = self.cmd(&command)?;
        Self::parse_hex(&reply, &command)
    }

    pub fn inb(&mut self, port: u16) -> Result<u8, String> {
        Ok(self.input("b", port)? as u8)
    }
    pub fn inw(&mut self, port: u16) -> Result<u16, String> {
        Ok(self.input("w", port)? as u16)
    }
    pub fn inl(&mut self, port: u16) -> Result<u32, String> {
        Ok(self.input("l", port)? as u32)
    }
    pub fn outb(&mut self, port: u16, value: u8) -> Result<(), String> {
        self.cmd(&format!("outb 0x{port:x} 0x{value:x}")).map(drop)
    }
    pub fn outw(&mut self, port: u16, value: u16) -> Result<(), String> {
        self.cmd(&format!("outw 0x{port:x} 0x{value:x}")).map(drop)
    }
    pub fn outl(&mut self, port: u16, value: u32) -> Result<(), String> {
        self.cmd(&format!("outl 0x{port:x} 0x{value:x}")).map(drop)
    }

    pub fn memwrite(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.cmd(&format!("write 0x{addr:x} 0x{:x} 0x{hex}", data.len()))
            .map(drop)
    }

    pub fn memset(&mut self, addr: u64, len: usize, value: u8) -> Result<(), String> {
        self.cmd(&format!("memset 0x{addr:x} 0x{len:x} 0x{value:02x}"))
            .map(drop)
    }

    pub fn memread(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        let command = format!("read 0x{addr:x} 0x{len:x}");
        let reply = self.cmd(&command)?;
        let digits = reply.trim_start_matches("0x");
        if digits.len() != len * 2 {
            return Err(format!(
                "qtest `{command}`: {} hex digits for {len} bytes",
                digits.len()
            ));
        }
        (0..len)
            .map(|i| {
                u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
                    .map_err(|_| format!("qtest `{command}`: bad hex"))
            })
            .collect()
    }

    fn pci_address(device: u8, function: u8, offset: u8) -> u32 {
        0x8000_0000
            | (u32::from(device) << 11)
            | (u32::from(function) << 8)
            | u32::from(offset & 0xfc)
    }

    pub fn pci_read32(&mut self, device: u8, function: u8, offset: u8) -> Result<u32, String> {
        self.outl(0xcf8, Self::pci_address(device, function, offset))?;
        self.inl(0xcfc)
    }
    pub fn pci_read16(&mut self, device: u8, function: u8, offset: u8) -> Result<u16, String> {
        self.outl(0xcf8, Self::pci_address(device, function, offset))?;
        self.inw(0xcfc + u16::from(offset & 2))
    }
    pub fn pci_read8(&mut self, device: u8, function: u8, offset: u8) -> Result<u8, String> {
        self.outl(0xcf8, Self::pci_address(device, function, offset))?;
        self.inb(0xcfc + u16::from(offset & 3))
    }
    pub fn pci_write32(
        &mut self,
        device: u8,
        function: u8,
        offset: u8,
        value: u32,
    ) -> Result<(), String> {
        self.outl(0xcf8, Self::pci_address(device, function, offset))?;
        self.outl(0xcfc, value)
    }
    pub fn pci_write16(
        &mut self,
        device: u8,
        function: u8,
        offset: u8,
        value: u16,
    ) -> Result<(), String> {
        self.outl(0xcf8, Self::pci_address(device, function, offset))?;
        self.outw(0xcfc + u16::from(offset & 2), value)
    }
    pub fn pci_write8(
        &mut self,
        device: u8,
        function: u8,
        offset: u8,
        value: u8,
    ) -> Result<(), String> {
        self.outl(0xcf8, Self::pci_address(device, function, offset))?;
        self.outb(0xcfc + u16::from(offset & 3), value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A stand-in backend: answers every command with an IRQ edge and then
    /// a reply chosen by the command's first word.
    fn fake_backend() -> (std::process::Child, Qtest) {
        let script = r#"while read cmd rest; do
            case "$cmd" in
              inb) echo "IRQ raise 14"; echo "OK 0x0058" ;;
              outb) echo "IRQ lower 14"; echo "OK" ;;
              read) echo "OK 0x00ff10" ;;
              *) echo "FAIL unknown command $cmd" ;;
            esac
        done"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let qtest = Qtest::new(child.stdin.take().unwrap(), child.stdout.take().unwrap());
        (child, qtest)
    }

    #[test]
    fn replies_values_and_irq_edges_are_parsed() {
        let (mut child, mut qtest) = fake_backend();
        assert_eq!(qtest.inb(0x1f7).unwrap(), 0x58);
        assert!(qtest.irq_level(14));
        assert_eq!(qtest.irq_raises(14), 1);
        qtest.outb(0x1f7, 0xec).unwrap();
        assert!(!qtest.irq_level(14));
        assert!(!qtest.irq_level(15));
        assert_eq!(qtest.memread(0x1000, 3).unwrap(), vec![0x00, 0xff, 0x10]);
        assert!(
            qtest.memread(0x1000, 4).is_err(),
            "a short read reply must be an error"
        );
        let failure = qtest.cmd("bogus").unwrap_err();
        assert!(failure.contains("FAIL unknown command bogus"), "{failure}");
        assert_eq!(qtest.round_trips, 5);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_dead_backend_is_an_error_not_a_hang() {
        let (mut child, mut qtest) = fake_backend();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(qtest.inb(0x1f7).is_err());
    }
}
