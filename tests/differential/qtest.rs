//! Client for QEMU's qtest line protocol over a child's stdin/stdout.
//!
//! Replies are read on a separate thread so a backend that stops answering
//! turns into a timeout error instead of hanging the whole suite.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long one qtest reply may take; a stuck backend is a failure, not a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Qtest {
    input: ChildStdin,
    lines: Receiver<String>,
    /// Current level of each intercepted IRQ line, from async `IRQ raise/lower N`.
    levels: HashMap<u32, bool>,
    /// Raise edges per line, so scenarios can tell "raised again" from "still high".
    raises: HashMap<u32, u32>,
    pub round_trips: u64,
}

impl Qtest {
    pub fn new(input: ChildStdin, output: ChildStdout) -> Self {
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(output);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Qtest { input, lines, levels: HashMap::new(), raises: HashMap::new(), round_trips: 0 }
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
        self.input.flush().map_err(|e| format!("qtest flush: {e}"))?;
        self.round_trips += 1;
        loop {
            let line = match self.lines.recv_timeout(REPLY_TIMEOUT) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => return Err(format!("qtest `{command}`: no reply within {REPLY_TIMEOUT:?}")),
                Err(RecvTimeoutError::Disconnected) => return Err(format!("qtest `{command}`: backend closed its stdout")),
            };
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
        u64::from_str_radix(digits, 16).map_err(|_| format!("qtest `{command}`: bad value `{reply}`"))
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

    pub fn readl(&mut self, addr: u64) -> Result<u32, String> {
        let command = format!("readl 0x{addr:x}");
        let reply = self.cmd(&command)?;
        Ok(Self::parse_hex(&reply, &command)? as u32)
    }

    pub fn memwrite(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.cmd(&format!("write 0x{addr:x} 0x{:x} 0x{hex}", data.len())).map(drop)
    }

    pub fn memset(&mut self, addr: u64, len: usize, value: u8) -> Result<(), String> {
        self.cmd(&format!("memset 0x{addr:x} 0x{len:x} 0x{value:02x}")).map(drop)
    }

    pub fn memread(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        let command = format!("read 0x{addr:x} 0x{len:x}");
        let reply = self.cmd(&command)?;
        let digits = reply.trim_start_matches("0x");
        if digits.len() != len * 2 {
            return Err(format!("qtest `{command}`: {} hex digits for {len} bytes", digits.len()));
        }
        (0..len)
            .map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| format!("qtest `{command}`: bad hex")))
            .collect()
    }

    fn pci_address(device: u8, function: u8, offset: u8) -> u32 {
        0x8000_0000 | (u32::from(device) << 11) | (u32::from(function) << 8) | u32::from(offset & 0xfc)
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
    pub fn pci_write32(&mut self, device: u8, function: u8, offset: u8, value: u32) -> Result<(), String> {
        self.outl(0xcf8, Self::pci_address(device, function, offset))?;
        self.outl(0xcfc, value)
    }
    pub fn pci_write16(&mut self, device: u8, function: u8, offset: u8, value: u16) -> Result<(), String> {
        self.outl(0xcf8, Self::pci_address(device, function, offset))?;
        self.outw(0xcfc + u16::from(offset & 2), value)
    }
    pub fn pci_write8(&mut self, device: u8, function: u8, offset: u8, value: u8) -> Result<(), String> {
        self.outl(0xcf8, Self::pci_address(device, function, offset))?;
        self.outb(0xcfc + u16::from(offset & 3), value)
    }
}
