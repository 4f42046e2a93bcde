//! Scenario tests of the controller through its ports, with a Vec-backed
//! guest memory, recording interrupt lines and RAM images with injected
//! faults. Expected values are QEMU 7.2's (ide-behaviour.md).

use super::*;
use crate::block::mem::{InjectedFault, MemBackend};
use crate::block::BlockOp;
use crate::vm::{EventSink, IoOperation, MemError, RunState};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Mutex;

pub(super) struct VecMemory(Mutex<Vec<u8>>);

impl VecMemory {
    fn range(len_total: usize, gpa: u64, len: usize) -> Result<std::ops::Range<usize>, MemError> {
        match gpa.checked_add(len as u64) {
            Some(end) if end <= len_total as u64 => Ok(gpa as usize..end as usize),
            _ => Err(MemError::OutOfRange { gpa, len }),
        }
    }
}

impl GuestMemory for VecMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let m = self.0.lock().unwrap();
        let r = Self::range(m.len(), gpa, buf.len())?;
        buf.copy_from_slice(&m[r]);
        Ok(())
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let mut m = self.0.lock().unwrap();
        let r = Self::range(m.len(), gpa, data.len())?;
        m[r].copy_from_slice(data);
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct RecordingIrq {
    level: AtomicBool,
    raises: AtomicUsize,
    calls: AtomicUsize,
}

impl IrqLine for RecordingIrq {
    fn set_level(&self, high: bool) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if high {
            self.raises.fetch_add(1, Ordering::SeqCst);
        }
        self.level.store(high, Ordering::SeqCst);
    }
}

/// A RAM image the test can still look at after handing it to a drive.
#[derive(Clone)]
pub(super) struct SharedImage(Arc<Mutex<MemBackend>>);

impl SharedImage {
    fn new(size: usize) -> Self {
        SharedImage(Arc::new(Mutex::new(MemBackend::new(size))))
    }
    fn with_data(data: Vec<u8>, read_only: bool) -> Self {
        SharedImage(Arc::new(Mutex::new(MemBackend::with_data(data, read_only))))
    }
    fn inject(&self, op: BlockOp, at_byte: Option<u64>, errno: i32, once: bool) {
        self.0.lock().unwrap().inject(InjectedFault { op: Some(op), at_byte, errno, once });
    }
    fn clear_faults(&self) {
        self.0.lock().unwrap().faults.clear();
    }
    fn bytes(&self, at: usize, len: usize) -> Vec<u8> {
        self.0.lock().unwrap().data()[at..at + len].to_vec()
    }
    fn fill(&self, at: usize, data: &[u8]) {
        self.0.lock().unwrap().write_at(at as u64, data).unwrap();
    }
    fn flushes(&self) -> u64 {
        self.0.lock().unwrap().flushes
    }
}

impl BlockBackend for SharedImage {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().size()
    }
    fn read_only(&self) -> bool {
        self.0.lock().unwrap().read_only()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.lock().unwrap().read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        self.0.lock().unwrap().write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.0.lock().unwrap().flush()
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.0.lock().unwrap().discard(offset, len)
    }
    fn set_guest_write_cache(&mut self, enabled: bool) {
        self.0.lock().unwrap().set_guest_write_cache(enabled)
    }
    fn guest_write_cache(&self) -> bool {
        self.0.lock().unwrap().guest_write_cache()
    }
}

pub(super) const MIB: usize = 1 << 20;
pub(super) const BM: u16 = 0xc000;
pub(super) const PRD_TABLE: u64 = 0x1_0000;
pub(super) const BUF: u64 = 0x2_0000;
pub(super) const RAM: usize = 16 * MIB;

pub(super) fn disk(image: &SharedImage, werror: ErrorPolicy, rerror: ErrorPolicy) -> DriveConfig {
    disk_on(Box::new(image.clone()), werror, rerror)
}

/// The primary master disk on any backend (also the launch tests' disk).
pub(crate) fn disk_on(backend: Box<dyn BlockBackend>, werror: ErrorPolicy, rerror: ErrorPolicy) -> DriveConfig {
    DriveConfig {
        id: "ide0-hd0".into(),
        media: MediaKind::Disk,
        backend: Some(backend),
        filename: "/images/disk.img".into(),
        cache: CacheMode::Writeback,
        werror,
        rerror,
        serial: None,
        model: None,
        version: None,
    }
}

pub(super) fn cdrom(image: Option<&SharedImage>) -> DriveConfig {
    DriveConfig {
        id: "ide1-cd0".into(),
        media: MediaKind::Cdrom,
        backend: image.map(|i| Box::new(i.clone()) as Box<dyn BlockBackend>),
        filename: "/images/cd.iso".into(),
        cache: CacheMode::Writeback,
        werror: ErrorPolicy::Report,
        rerror: ErrorPolicy::Report,
        serial: None,
        model: None,
        version: None,
    }
}

pub(super) struct Rig {
    pub ide: Arc<Mutex<IdeController>>,
    pub mem: Arc<VecMemory>,
    pub irqs: [Arc<RecordingIrq>; 2],
    pub vm: VmControl,
    pub events: Receiver<Event>,
}

impl Rig {
    pub fn new(drives: [Option<DriveConfig>; 4]) -> Self {
        let mem = Arc::new(VecMemory(Mutex::new(vec![0; RAM])));
        let irqs = [Arc::new(RecordingIrq::default()), Arc::new(RecordingIrq::default())];
        let sink = EventSink::new();
        let events = sink.subscribe();
        let vm = VmControl::new(RunState::Running, sink);
        let ide = Arc::new(Mutex::new(IdeController::new(
            drives,
            mem.clone(),
            [irqs[0].clone() as Arc<dyn IrqLine>, irqs[1].clone() as Arc<dyn IrqLine>],
            vm.clone(),
        )));
        IdeController::start_engine(&ide).unwrap();
        let rig = Rig { ide, mem, irqs, vm, events };
        rig.ide().config_write(0x20, 4, BM as u32 | 1);
        rig.ide().config_write(0x04, 2, 0x0005);
        rig
    }

    pub fn ide(&self) -> std::sync::MutexGuard<'_, IdeController> {
        self.ide.lock().unwrap()
    }

    /// Wait until every request the last access sent to the host has
    /// completed, so a test reads registers as a guest that waits for the
    /// interrupt would.
    pub fn settle(&self) {
        assert!(wait_idle(&self.ide, std::time::Duration::from_secs(10)), "a request stayed on the host for 10 s");
    }

    /// `cont` as the machine runs it: re-issue held requests, set the VM
    /// running, then wait for the host.
    pub fn restart_held(&self) {
        let vm = self.vm.clone();
        self.ide().restart_held_requests_and_run(&vm);
        self.settle();
    }

    /// A port write that does not wait for the host (in-flight tests).
    pub fn outb_nowait(&mut self, port: u16, v: u8) {
        let (b, o) = Self::route(port);
        self.ide().write(b, o, &[v]);
    }

    pub fn disk_only(image: &SharedImage, werror: ErrorPolicy, rerror: ErrorPolicy) -> Self {
        Rig::new([Some(disk(image, werror, rerror)), None, None, None])
    }

    fn route(port: u16) -> (u64, u64) {
        let p = port as u64;
        match p {
            0x1f0..=0x1f7 => (0x1f0, p - 0x1f0),
            0x3f6 => (0x3f6, 0),
            0x170..=0x177 => (0x170, p - 0x170),
            0x376 => (0x376, 0),
            _ => (BM as u64, p - BM as u64),
        }
    }

    pub fn outb(&mut self, port: u16, v: u8) {
        self.outb_nowait(port, v);
        self.settle();
    }
    pub fn outw(&mut self, port: u16, v: u16) {
        let (b, o) = Self::route(port);
        self.ide().write(b, o, &v.to_le_bytes());
        self.settle();
    }
    pub fn outl(&mut self, port: u16, v: u32) {
        let (b, o) = Self::route(port);
        self.ide().write(b, o, &v.to_le_bytes());
        self.settle();
    }
    pub fn inb(&mut self, port: u16) -> u8 {
        let (b, o) = Self::route(port);
        let mut d = [0u8; 1];
        self.ide().read(b, o, &mut d);
        self.settle();
        d[0]
    }
    pub fn inw(&mut self, port: u16) -> u16 {
        let (b, o) = Self::route(port);
        let mut d = [0u8; 2];
        self.ide().read(b, o, &mut d);
        self.settle();
        u16::from_le_bytes(d)
    }
    pub fn inl(&mut self, port: u16) -> u32 {
        let (b, o) = Self::route(port);
        let mut d = [0u8; 4];
        self.ide().read(b, o, &mut d);
        self.settle();
        u32::from_le_bytes(d)
    }

    pub fn irq_raises(&self, ch: usize) -> usize {
        self.irqs[ch].raises.load(Ordering::SeqCst)
    }
    pub fn irq_high(&self, ch: usize) -> bool {
        self.irqs[ch].level.load(Ordering::SeqCst)
    }

    pub fn altstatus(&mut self) -> u8 {
        self.inb(0x3f6)
    }

    /// LBA28 taskfile on the primary master, then the command.
    pub fn command_lba28(&mut self, cmd: u8, lba: u32, count: u8) {
        self.outb(0x1f6, 0xe0 | ((lba >> 24) as u8 & 0x0f));
        self.outb(0x1f2, count);
        self.outb(0x1f3, lba as u8);
        self.outb(0x1f4, (lba >> 8) as u8);
        self.outb(0x1f5, (lba >> 16) as u8);
        self.outb(0x1f7, cmd);
    }

    pub fn command_lba48(&mut self, cmd: u8, lba: u64, count: u16) {
        self.outb(0x1f6, 0xe0);
        self.outb(0x1f2, (count >> 8) as u8);
        self.outb(0x1f3, (lba >> 24) as u8);
        self.outb(0x1f4, (lba >> 32) as u8);
        self.outb(0x1f5, (lba >> 40) as u8);
        self.outb(0x1f2, count as u8);
        self.outb(0x1f3, lba as u8);
        self.outb(0x1f4, (lba >> 8) as u8);
        self.outb(0x1f5, (lba >> 16) as u8);
        self.outb(0x1f7, cmd);
    }

    pub fn read_block(&mut self, bytes: usize) -> Vec<u8> {
        (0..bytes / 2).flat_map(|_| self.inw(0x1f0).to_le_bytes()).collect()
    }

    pub fn write_block(&mut self, data: &[u8]) {
        for w in data.chunks(2) {
            self.outw(0x1f0, u16::from_le_bytes([w[0], w[1]]));
        }
    }

    pub fn mem_write(&self, gpa: u64, data: &[u8]) {
        self.mem.write(gpa, data).unwrap();
    }
    pub fn mem_read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(gpa, &mut v).unwrap();
        v
    }

    /// PRD table at PRD_TABLE with the given (addr, bytes) entries, EOT on the last.
    pub fn set_prdt(&mut self, entries: &[(u32, u32)]) {
        let mut t = Vec::new();
        for (i, (addr, len)) in entries.iter().enumerate() {
            let eot = if i + 1 == entries.len() { 0x8000_0000 } else { 0 };
            t.extend_from_slice(&addr.to_le_bytes());
            t.extend_from_slice(&((len & 0xffff) | eot).to_le_bytes());
        }
        self.mem_write(PRD_TABLE, &t);
        self.outl(BM + 4, PRD_TABLE as u32);
    }

    /// Linux's order: PRD, direction, command, START.
    pub fn dma(&mut self, cmd: u8, lba: u32, count: u8, read: bool) {
        self.outb(BM, if read { 0x08 } else { 0x00 });
        self.outb(BM + 2, 0x06);
        self.command_lba28(cmd, lba, count);
        self.outb(BM, if read { 0x09 } else { 0x01 });
    }

    pub fn bm_status(&mut self) -> u8 {
        self.inb(BM + 2)
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

fn io_errors(events: &[Event]) -> Vec<(String, IoOperation, &'static str, Option<bool>, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::BlockIoError { device, operation, action, nospace, reason, .. } => {
                Some((device.clone(), *operation, *action, *nospace, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn cd_rig(blocks: usize) -> (Rig, SharedImage) {
    let data: Vec<u8> = (0..blocks * 2048).map(|i| (i / 2048) as u8 ^ (i as u8)).collect();
    let cd = SharedImage::with_data(data, true);
    let rig = Rig::new([Some(cdrom(Some(&cd))), None, None, None]);
    (rig, cd)
}

fn send_packet(rig: &mut Rig, cdb: &[u8; 12], bcl: u16, dma: bool) {
    rig.outb(0x1f6, 0xa0);
    rig.outb(0x1f1, dma as u8);
    rig.outb(0x1f4, bcl as u8);
    rig.outb(0x1f5, (bcl >> 8) as u8);
    rig.outb(0x1f7, 0xa0);
    assert_eq!((rig.altstatus(), rig.inb(0x1f2)), (0x58, 1), "packet phase: DRQ, C/D");
    rig.write_block(cdb);
}

fn read10(lba: u32, count: u16) -> [u8; 12] {
    let mut cdb = [0u8; 12];
    cdb[0] = 0x28;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&count.to_be_bytes());
    cdb
}

mod atapi_transport;
mod cdrom;
mod dma;
mod fuzz;
mod fuzz_found;
mod more;
mod pio;
mod policy;
mod qcow2;
mod real_fs;
mod registers;
mod savestate;
mod storm;
mod unplug;
mod versus_qemu;
