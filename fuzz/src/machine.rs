//! The PC with its PIIX3 IDE as both fronts build it, driven as the Xen
//! front drives it: each guest access is one request, refused while the VM
//! is held (`begin_guest_request`), with completions kept out of its middle
//! until `end_guest_request`. The drives' queues run inline
//! (`QueueKind::Inline`): a request is done on the host inside the access
//! that submitted it, and its completion is applied at the end of that
//! access (or, for one a QMP command or `cont` submitted, by `settle`),
//! as a worker's would be if it finished before the guest's next access.
//! So one input always runs the same way, a crash reproduces, and no
//! thread hop is paid per request. (Completions racing guest accesses are
//! the business of `src/devices/ide/tests/storm.rs`, on real workers.)

use crate::{FaultyImage, HostCounters, RecordingMemory};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use xen_ioemu::block::{CacheMode, ErrorPolicy};
use xen_ioemu::block::engine::QueueKind;
use xen_ioemu::devices::ide::{DriveConfig, IdeController, MediaKind};
use xen_ioemu::launch::assemble_pc;
use xen_ioemu::machine::pc::PcMachine;
use xen_ioemu::machine::{EventSink, IrqLine, RunState, VmControl};

/// Where the harness maps the bus-master BAR (BAR4).
pub const BM: u16 = 0xc000;
/// Guest RAM: small, so random PRD addresses often land inside (and each
/// input zeroes little: page faults on fresh RAM were a third of a run).
pub const RAM: usize = 256 << 10;
/// One guest access moves at most a maximal request per direction plus a
/// CD transfer bounded by the PRD table (each at most 32 MiB); more would
/// mean work the guest can make unbounded.
pub const HOST_BYTES_PER_ACCESS: u64 = 3 * (32 << 20);
/// Guest memory traffic per access: the same transfers plus the PRD table
/// walks (a table is at most 64 KiB, read once per transfer).
pub const MEM_BYTES_PER_ACCESS: u64 = 4 * (32 << 20);

struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) {}
}

pub struct Machine {
    pub pc: PcMachine,
    pub ide: Arc<Mutex<IdeController>>,
    pub mem: Arc<RecordingMemory>,
    pub vm: VmControl,
    pub host: Arc<HostCounters>,
}

/// A drive on a `FaultyImage`; the caller picks where it goes.
pub fn drive(id: &str, media: MediaKind, image: Option<&FaultyImage>, werror: ErrorPolicy, rerror: ErrorPolicy) -> DriveConfig {
    DriveConfig {
        id: id.into(),
        media,
        backend: image.map(|i| Box::new(i.clone()) as Box<dyn xen_ioemu::block::BlockBackend>),
        filename: format!("/images/{id}.img"),
        cache: CacheMode::Writeback,
        werror,
        rerror,
        serial: None,
        model: None,
        version: None,
    }
}

impl Machine {
    /// `drives` get `host` counters through their images; the caller
    /// builds them with `drive`.
    pub fn new(drives: [Option<DriveConfig>; 4], host: Arc<HostCounters>) -> Self {
        let vm = VmControl::new(RunState::Running, EventSink::new());
        let mut pc = PcMachine::new(vm.clone());
        let mem = Arc::new(RecordingMemory::new(RAM));
        let ide = assemble_pc(&mut pc, drives, mem.clone(), Arc::new(NoIrq), Arc::new(NoIrq), QueueKind::Inline)
            .expect("the IDE assembles");
        let mut m = Machine { pc, ide, mem, vm, host };
        // What the BIOS does: BAR4 at BM, I/O decoding and bus mastering.
        m.config_write(0x20, 4, BM as u32 | 1);
        m.config_write(0x04, 2, 0x0005);
        m
    }

    /// A config write to the IDE function (00:01.1) through 0xcf8/0xcfc.
    pub fn config_write(&mut self, reg: u8, size: u8, value: u32) {
        self.access(0xcf8, 4, Some(0x8000_0000 | 0x09 << 8 | (reg as u32 & 0xfc)));
        self.access(0xcfc + (reg as u16 & 3), size, Some(value));
    }

    /// One guest port access (`value` None: a read), then the wait for the
    /// host; the invariants of one access are checked here.
    pub fn access(&mut self, port: u16, size: u8, value: Option<u32>) -> Option<u32> {
        self.rep(port, size, value, 1).into_iter().last()
    }

    /// A `rep` string access: `count` elements as one request, completions
    /// held back until its end, as the Xen front serves it. None while the
    /// VM is held (the vCPU would wait; the harness drops the access).
    pub fn rep(&mut self, port: u16, size: u8, value: Option<u32>, count: usize) -> Vec<u32> {
        let (host0, mem0) = (self.host.bytes.load(Ordering::Relaxed), self.mem.bytes.load(Ordering::Relaxed));
        let mut out = Vec::new();
        if self.ide.lock().unwrap_or_else(|e| e.into_inner()).begin_guest_request() {
            return out;
        }
        for _ in 0..count {
            match value {
                // The bus effects (ports to claim, PIRQ routes, power) are
                // for a front; the board's own bus is already updated.
                Some(v) => drop(self.pc.pio_write(port, size, v)),
                None => out.push(self.pc.pio_read(port, size)),
            }
        }
        self.ide.lock().unwrap_or_else(|e| e.into_inner()).end_guest_request();
        self.settle();
        let host = self.host.bytes.load(Ordering::Relaxed) - host0;
        let mem = self.mem.bytes.load(Ordering::Relaxed) - mem0;
        let n = count as u64;
        assert!(host <= n * HOST_BYTES_PER_ACCESS, "{count} x port {port:#x} moved {host} host bytes");
        assert!(mem <= n * MEM_BYTES_PER_ACCESS, "{count} x port {port:#x} moved {mem} guest-memory bytes");
        out
    }

    /// Apply the completions still queued (requests that QMP, `cont` or a
    /// reset submitted, outside a guest access), then check what must
    /// hold between guest accesses.
    pub fn settle(&self) {
        let mut ide = self.ide.lock().unwrap_or_else(|e| e.into_inner());
        ide.deliver_completions();
        // Every request ran in the access that submitted it, so one still
        // on a channel now has lost its completion: the guest would wait
        // for it forever.
        assert!(!ide.has_request_in_flight(), "a request stayed in flight after every completion was applied");
        drop(ide);
        assert_eq!(self.host.out_of_image.load(Ordering::Relaxed), 0, "a host request reached past the image's end");
        assert!(
            self.mem.longest.load(Ordering::Relaxed) <= (32 << 20),
            "one guest-memory access of {} bytes",
            self.mem.longest.load(Ordering::Relaxed)
        );
    }

    /// Status of both channels (alternate status: no side effects) and the
    /// bus-master status bytes, read as the guest would.
    pub fn check_status(&mut self) {
        if !self.vm.is_running() {
            return;
        }
        for port in [0x3f6u16, 0x376] {
            if let Some(st) = self.access(port, 1, None) {
                assert!(st & 0x09 != 0x09, "ERR and DRQ together on {port:#x}: {st:#x}");
            }
        }
    }

    /// `cont` as QMP runs it (re-issue held requests, run), then the wait.
    pub fn cont(&mut self) {
        self.pc.cont();
        self.settle();
    }

    pub fn stop(&mut self) {
        self.pc.stop();
    }

    /// `system_reset` of the qtest machine: every device to its power-on
    /// state and the BARs read again (the harness's BIOS then maps BAR4
    /// again).
    pub fn reset(&mut self) {
        drop(self.pc.reset());
        self.settle();
    }

    pub fn eject(&mut self, id: &str, force: bool) {
        let _ = self.ide.lock().unwrap_or_else(|e| e.into_inner()).eject(id, force);
        self.settle();
    }

    pub fn change_medium(&mut self, id: &str, image: &FaultyImage) {
        let backend = Box::new(image.clone());
        let _ = self.ide.lock().unwrap_or_else(|e| e.into_inner()).change_medium(id, backend, "new.iso".into());
        self.settle();
    }
}
