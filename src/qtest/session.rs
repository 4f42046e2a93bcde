//! One qtest conversation: commands in, replies out, against the machine.

use super::protocol::{decode_write_hex, parse, Command};
use super::{AnonRam, QtestIrqs, QtestStream};
use crate::machine::pc::{BusEffects, PcMachine};
use crate::machine::{Event, GuestMemory, PowerRequest};
use base64::Engine;
use std::io::BufRead;
use std::sync::{Arc, Mutex};

/// Longest memory read/write one command may ask for: a client can't make
/// us allocate more than this for a reply.
const MAX_TRANSFER: u64 = 256 << 20;
/// Longest command line accepted (a 1 MiB b64write is ~1.4 MB of text).
const MAX_LINE: usize = 64 << 20;

pub struct QtestSession {
    machine: Arc<Mutex<PcMachine>>,
    ram: Arc<AnonRam>,
    irqs: QtestIrqs,
    stream: QtestStream,
    clock_ns: i64,
}

impl QtestSession {
    pub fn new(machine: Arc<Mutex<PcMachine>>, ram: Arc<AnonRam>, irqs: QtestIrqs, stream: QtestStream) -> Self {
        QtestSession { machine, ram, irqs, stream, clock_ns: 0 }
    }

    /// Serve until the client closes its side.
    pub fn serve(&mut self, input: &mut dyn BufRead) -> std::io::Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = std::io::Read::take(&mut *input, MAX_LINE as u64).read_until(b'\n', &mut line)?;
            if n == 0 {
                return Ok(());
            }
            if line.last() != Some(&b'\n') && n >= MAX_LINE {
                self.stream.send("FAIL line too long\n");
                // Drop the rest of the oversized line.
                let mut sink = Vec::new();
                input.read_until(b'\n', &mut sink)?;
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            self.handle_line(text);
        }
    }

    pub fn handle_line(&mut self, line: &str) {
        self.stream.log_received(line);
        let reply = match parse(line) {
            Ok(cmd) => self.execute(cmd),
            Err(e) => format!("FAIL {e}\n"),
        };
        self.stream.send(&reply);
    }

    fn execute(&mut self, cmd: Command) -> String {
        match cmd {
            Command::Out { width, port, value } => {
                let mut machine = self.machine.lock().unwrap_or_else(|e| e.into_inner());
                let effects = machine.pio_write(port, width, value);
                Self::apply(&mut machine, effects);
                "OK\n".into()
            }
            Command::In { width, port } => {
                let v = self.machine.lock().unwrap_or_else(|e| e.into_inner()).pio_read(port, width);
                format!("OK 0x{v:04x}\n")
            }
            Command::Write { width, addr, value } => {
                let bytes = value.to_le_bytes();
                let _ = self.ram.write(addr, &bytes[..width as usize]);
                "OK\n".into()
            }
            Command::Read { width, addr } => {
                let mut bytes = [0u8; 8];
                if self.ram.read(addr, &mut bytes[..width as usize]).is_err() {
                    bytes = [0xff; 8];
                }
                let mask = if width == 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
                format!("OK 0x{:016x}\n", u64::from_le_bytes(bytes) & mask)
            }
            Command::MemRead { addr, len } => match self.read_block(addr, len) {
                Ok(data) => {
                    let mut s = String::with_capacity(data.len() * 2 + 6);
                    s.push_str("OK 0x");
                    for b in data {
                        s.push_str(&format!("{b:02x}"));
                    }
                    s.push('\n');
                    s
                }
                Err(e) => format!("FAIL {e}\n"),
            },
            Command::B64Read { addr, len } => match self.read_block(addr, len) {
                Ok(data) => format!("OK {}\n", base64::engine::general_purpose::STANDARD.encode(data)),
                Err(e) => format!("FAIL {e}\n"),
            },
            Command::MemWrite { addr, len, hex } => {
                if hex.len() < 3 {
                    return "ERR invalid argument size\n".into();
                }
                if len > MAX_TRANSFER {
                    return format!("FAIL length {len} exceeds {MAX_TRANSFER}\n");
                }
                let data = decode_write_hex(&hex, len as usize);
                let _ = self.ram.write(addr, &data);
                "OK\n".into()
            }
            Command::MemSet { addr, len, pattern } => {
                if len > MAX_TRANSFER {
                    return format!("FAIL length {len} exceeds {MAX_TRANSFER}\n");
                }
                let _ = self.ram.write(addr, &vec![pattern; len as usize]);
                "OK\n".into()
            }
            Command::B64Write { addr, len, data } => {
                if data.len() < 3 {
                    return "ERR invalid argument size\n".into();
                }
                if len > MAX_TRANSFER {
                    return format!("FAIL length {len} exceeds {MAX_TRANSFER}\n");
                }
                let mut bytes = base64::engine::general_purpose::STANDARD.decode(data.as_bytes()).unwrap_or_default();
                bytes.resize(len as usize, 0);
                let _ = self.ram.write(addr, &bytes);
                "OK\n".into()
            }
            Command::IrqInterceptIn { path } => {
                if path == "ioapic" || path == "/machine/ioapic" {
                    self.irqs.intercept();
                    "OK\n".into()
                } else {
                    "FAIL Unknown device\n".into()
                }
            }
            Command::IrqInterceptOut { .. } => "FAIL Unknown device\n".into(),
            Command::Endianness => "OK little\n".into(),
            Command::ClockStep { ns: None } => {
                "FAIL cannot advance clock to the next deadline because there is no pending deadline\n".into()
            }
            Command::ClockStep { ns: Some(ns) } => match self.clock_ns.checked_add(ns) {
                Some(new) if new > self.clock_ns => {
                    self.clock_ns = new;
                    format!("OK {new}\n")
                }
                _ => "FAIL could not advance time\n".into(),
            },
            Command::ClockSet { ns } => {
                if ns >= self.clock_ns {
                    self.clock_ns = ns;
                    format!("OK {ns}\n")
                } else {
                    format!("FAIL {}\n", self.clock_ns)
                }
            }
        }
    }

    /// What a guest write changed outside its device. There is no
    /// hypervisor to claim ports or route PCI links for; a power request
    /// is served as QEMU's main loop serves it before the next command:
    /// a reset of every device and the RESET event, or SHUTDOWN.
    fn apply(machine: &mut PcMachine, effects: BusEffects) {
        match effects.power {
            Some(PowerRequest::Reboot) => {
                let _ = machine.reset();
                machine.vm().events().emit(Event::Reset { guest: true, reason: "guest-reset" });
            }
            Some(PowerRequest::Poweroff) => {
                machine.vm().events().emit(Event::Shutdown { guest: true, reason: "guest-shutdown" });
                machine.vm().shutdown();
            }
            None => {}
        }
    }

    /// Guest memory for a read reply; bytes outside RAM read as 0xff.
    fn read_block(&self, addr: u64, len: u64) -> Result<Vec<u8>, String> {
        if len > MAX_TRANSFER {
            return Err(format!("length {len} exceeds {MAX_TRANSFER}"));
        }
        let mut data = vec![0xffu8; len as usize];
        let ram_len = self.ram.len() as u64;
        if addr < ram_len {
            let inside = (ram_len - addr).min(len) as usize;
            let _ = self.ram.read(addr, &mut data[..inside]);
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{EventSink, RunState, VmControl};

    fn session() -> (QtestSession, super::super::stream::CapturedOutput) {
        session_with(|_| {})
    }

    fn session_with(build: impl FnOnce(&mut PcMachine)) -> (QtestSession, super::super::stream::CapturedOutput) {
        let (stream, out) = QtestStream::capture();
        let vm = VmControl::new(RunState::Running, EventSink::new());
        let mut machine = PcMachine::new(vm);
        build(&mut machine);
        let machine = Arc::new(Mutex::new(machine));
        let ram = Arc::new(AnonRam::new(1 << 20).unwrap());
        let irqs = QtestIrqs::new(stream.clone());
        (QtestSession::new(machine, ram, irqs, stream), out)
    }

    #[test]
    fn replies_match_qemus_formats() {
        let (mut s, out) = session();
        let script = "write 0x1000 4 0xdeadbeef\nread 0x1000 4\nreadl 0x1000\nb64read 0x1000 4\ninb 0x80\n\
                      memset 0x2000 2 0x41\nread 0x2000 3\nendianness\nclock_step 100\nclock_step\nfrob\nread 0xfffff 2\n";
        s.serve(&mut script.as_bytes()).unwrap();
        assert_eq!(
            out.take(),
            "OK\nOK 0xdeadbeef\nOK 0x00000000efbeadde\nOK 3q2+7w==\nOK 0x00ff\nOK\nOK 0x414100\nOK little\nOK 100\n\
             FAIL cannot advance clock to the next deadline because there is no pending deadline\n\
             FAIL Unknown command 'frob'\nOK 0x00ff\n"
        );
    }

    /// The guest's 0xcf9 reset resets every device before the next
    /// command, with QEMU's RESET event; a PM1a_CNT S5 write shuts down.
    #[test]
    fn a_guest_reset_resets_the_devices_and_a_poweroff_shuts_down() {
        use crate::devices::i8042::I8042;
        use crate::devices::reset::ResetControl;
        let (mut s, out) = session_with(|m| {
            let kbc = Arc::new(Mutex::new(I8042::new(m.power_control(), None, None)));
            m.add_port_device(kbc.clone(), 0x60, 1).unwrap();
            m.add_port_device(kbc, 0x64, 1).unwrap();
            m.add_port_device(Arc::new(Mutex::new(ResetControl::new(m.power_control()))), 0xcf9, 1).unwrap();
        });
        let events = s.machine.lock().unwrap().vm().events().subscribe();
        let script = "outb 0x64 0x60\noutb 0x60 0x74\noutb 0xcf9 0x02\ninb 0xcf9\noutb 0xcf9 0x06\n\
                      inb 0xcf9\noutb 0x64 0x20\ninb 0x60\n";
        s.serve(&mut script.as_bytes()).unwrap();
        assert_eq!(out.take(), "OK\nOK\nOK\nOK 0x0002\nOK\nOK 0x0000\nOK\nOK 0x0003\n");
        assert_eq!(events.try_iter().collect::<Vec<_>>(), vec![Event::Reset { guest: true, reason: "guest-reset" }]);
        assert!(s.machine.lock().unwrap().vm().is_running());
        let (mut s, _) = session_with(|m| {
            let pm = Arc::new(Mutex::new(crate::devices::pci::piix4_pm::Piix4Pm::new(m.power_control(), Default::default())));
            m.add_pci_function(0x0b, pm.clone(), Some(pm));
        });
        let events = s.machine.lock().unwrap().vm().events().subscribe();
        // hvmloader's PM setup through 0xcf8/0xcfc, then S5.
        let script = "outl 0xcf8 0x80000b40\noutl 0xcfc 0xb001\noutl 0xcf8 0x80000b80\noutb 0xcfc 0x01\noutw 0xb004 0x2000\n";
        s.serve(&mut script.as_bytes()).unwrap();
        assert_eq!(events.try_iter().collect::<Vec<_>>(), vec![Event::Shutdown { guest: true, reason: "guest-shutdown" }]);
        assert!(!s.machine.lock().unwrap().vm().is_running());
    }

    #[test]
    fn hostile_lengths_are_refused_without_allocating() {
        let (mut s, out) = session();
        s.serve(&mut "read 0 0xffffffffffff\nmemset 0 0xffffffffffff 1\nwrite 0 5 0x\n".as_bytes()).unwrap();
        let text = out.take();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("FAIL length"));
        assert!(lines[1].starts_with("FAIL length"));
        assert_eq!(lines[2], "ERR invalid argument size");
    }
}
