//! Nested-Xen probe for the Xen front (not part of the product): started by
//! libxl as a qemu-xen-traditional device model (`-d DOMID ...`), it creates
//! an ioreq server with a buffered ring, claims ports 0x1f0-0x1f7, MMIO
//! 0xfebf0000-0xfebf0fff and PCI 00:01.1, answers status reads with 0x50 and
//! data reads with a counter, raises IRQ 14 / routes link A on a write to
//! 0x1f6, holds requests for 2 s after a write to 0x1f3 (the io-error stop
//! path), powers the guest off on a write to 0x1f5, logs every access to
//! /dev/console, and tears everything down on SIGHUP (xl destroy).

use nix::sys::signal::{SigSet, Signal};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xen_ioemu::xen::{DeviceModelHandle, PageMapping, IoHandler, IoreqServer, ServerWaker, XenGuestMemory, XenStore, XenstoreRead};

struct Console(Mutex<Option<std::fs::File>>);

impl Console {
    fn line(&self, msg: &str) {
        eprintln!("XENIOEMU-PROBE: {msg}");
        if let Some(f) = self.0.lock().unwrap().as_mut() {
            let _ = writeln!(f, "XENIOEMU-PROBE: {msg}");
        }
    }
}

struct ProbeHandler {
    console: Arc<Console>,
    data_counter: u32,
    dm: Arc<DeviceModelHandle>,
    waker: Arc<ServerWaker>,
    /// Requests are held (as during an io-error stop) until this instant.
    hold_until: Option<Instant>,
}

const HOLD: Duration = Duration::from_secs(2);

impl IoHandler for ProbeHandler {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        let value = match port {
            0x1f7 => 0x50,
            0x1f0 => {
                self.data_counter += 1;
                0x1230 + self.data_counter
            }
            _ => 0,
        };
        self.console.line(&format!("pio read port={port:#x} size={size} -> {value:#x}"));
        value
    }
    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        self.console.line(&format!("pio write port={port:#x} size={size} value={value:#x}"));
        match port {
            0x1f6 => {
                let irq = self.dm.set_isa_irq_level(14, value & 1 != 0);
                let route = self.dm.set_pci_link_route(0, 11);
                let intx = self.dm.set_pci_intx_level(0, 1, 0, value & 1 != 0);
                self.console.line(&format!("set_isa_irq_level(14, {}) -> {irq:?}; set_pci_link_route(0, 11) -> {route:?}; set_pci_intx_level(00:01 INTA) -> {intx:?}", value & 1));
            }
            0x1f3 => {
                self.hold_until = Some(Instant::now() + HOLD);
                self.console.line("holding requests for 2 s");
                let waker = self.waker.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(HOLD);
                    waker.wake();
                });
            }
            0x1f5 => {
                let r = self.dm.remote_shutdown(xen_sys::SHUTDOWN_POWEROFF);
                self.console.line(&format!("remote_shutdown(poweroff) -> {r:?}"));
            }
            _ => {}
        }
    }
    fn mmio_read(&mut self, addr: u64, size: u8) -> u64 {
        let value = 0xfeed_0000 + (addr & 0xffff);
        self.console.line(&format!("mmio read {addr:#x} size={size} -> {value:#x}"));
        value
    }
    fn mmio_write(&mut self, addr: u64, size: u8, value: u64) {
        self.console.line(&format!("mmio write {addr:#x} size={size} value={value:#x}"));
    }
    fn pci_config_read(&mut self, bus: u8, devfn: u8, reg: u16, size: u8) -> u32 {
        let value = 0x0101_8000 | u32::from(reg);
        self.console.line(&format!("pci config read {bus:02x}:{devfn:02x} reg={reg:#x} size={size} -> {value:#x}"));
        value
    }
    fn pci_config_write(&mut self, bus: u8, devfn: u8, reg: u16, size: u8, value: u32) {
        self.console.line(&format!("pci config write {bus:02x}:{devfn:02x} reg={reg:#x} size={size} value={value:#x}"));
    }
    fn hold_request(&mut self) -> bool {
        self.hold_until.is_some_and(|t| Instant::now() < t)
    }
}

fn main() {
    xen_ioemu::logging::init();
    let console = Arc::new(Console(Mutex::new(std::fs::OpenOptions::new().write(true).open("/dev/console").ok())));
    let args: Vec<String> = std::env::args().collect();
    let domid: u16 = match args.iter().position(|a| a == "-d" || a == "-xen-domid").and_then(|i| args.get(i + 1)).and_then(|d| d.parse().ok()) {
        Some(d) => d,
        None => {
            eprintln!("xen_ioreq_probe: -d DOMID is required");
            std::process::exit(2);
        }
    };
    console.line(&format!("argv {:?}", &args[1..]));
    // Block the teardown signals before any thread exists; one thread waits for them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    signals.thread_block().expect("block signals");

    let dm = Arc::new(DeviceModelHandle::open(domid).unwrap_or_else(|e| fail(&console, &e.to_string())));
    // A domain named *-gfn exercises the legacy page mapping (gfns + MMAPBATCH).
    let name = args.iter().position(|a| a == "-domain-name" || a == "-name").and_then(|i| args.get(i + 1)).cloned().unwrap_or_default();
    let mapping = if name.ends_with("-gfn") { PageMapping::GuestFrames } else { PageMapping::Auto };
    let mut server = IoreqServer::create_with(dm.clone(), true, mapping).unwrap_or_else(|e| fail(&console, &e.to_string()));
    console.line(&format!("ioreq server {} created for d{domid} ({mapping:?} page mapping)", server.id()));
    server.claim_ports(&[0x1f0..=0x1f7]).unwrap_or_else(|e| fail(&console, &e.to_string()));
    server.claim_mmio(0xfebf_0000..=0xfebf_0fff).unwrap_or_else(|e| fail(&console, &e.to_string()));
    server.claim_pci(0, 0x09).unwrap_or_else(|e| fail(&console, &e.to_string()));
    let memory = XenGuestMemory::new(dm.clone());
    // Exercise modified_memory on every DMA-style write.
    memory.set_dirty_logging(true);
    let xs = XenStore::open().unwrap_or_else(|e| fail(&console, &e.to_string()));
    xs.report_state(domid, "running").unwrap_or_else(|e| fail(&console, &e.to_string()));
    let entries = xs.directory(&format!("/local/domain/0/device-model/{domid}"));
    console.line(&format!(
        "xenstore: device-model/{domid} = {entries:?}, platform device disabled = {}",
        xs.platform_device_disabled(domid)
    ));
    xs.publish_serial_tty(domid, 0, "/dev/pts/probe").unwrap_or_else(|e| fail(&console, &e.to_string()));
    let tty = xs.read(&format!("/local/domain/{domid}/serial/0/tty"));
    console.line(&format!("xenstore: serial/0/tty reads back {tty:?}"));
    // dm_restrict: from here on the descriptors only reach this domain.
    match server.restrict() {
        Ok(()) => console.line(&format!("privcmd and evtchn restricted to d{domid}")),
        Err(e) => fail(&console, &e.to_string()),
    }
    console.line("wrote running; serving");

    let waker = server.waker();
    let sig_console = console.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            sig_console.line(&format!("got {sig:?}, stopping"));
        }
        waker.stop();
    });
    let mut handler = ProbeHandler { console: console.clone(), data_counter: 0, dm: dm.clone(), waker: server.waker(), hold_until: None };
    if let Err(e) = server.run(&mut handler, &memory) {
        console.line(&format!("run failed: {e}"));
    }
    console.line(&format!("{} guest-memory bucket(s) mapped at exit", memory.mapped_buckets()));
    drop(server);
    console.line("ioreq server torn down; exiting");
}

fn fail(console: &Console, msg: &str) -> ! {
    console.line(&format!("FATAL: {msg}"));
    std::process::exit(1);
}
