//! Shared pieces of the fuzz targets: a bounded guest RAM that records
//! every access the device model makes, a RAM image that counts host bytes
//! and flags any access past its end, and the PC (PIIX3 IDE) assembled the
//! way both fronts assemble it (`launch::assemble_pc`).
//!
//! Every target panics (so libFuzzer reports a crash) when an invariant
//! breaks; the messages say which one.

pub mod machine;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use xen_ioemu::block::mem::{InjectedFault, MemBackend};
use xen_ioemu::block::{BlockBackend, BlockError, BlockOp};
use xen_ioemu::machine::{GuestMemory, MemError};

/// Guest RAM of a fixed size from gpa 0. The device model may ask for any
/// range (the guest picks PRD addresses); what it must never do is get
/// bytes outside RAM, and one access must stay bounded.
pub struct RecordingMemory {
    ram: Mutex<Vec<u8>>,
    /// Bytes the device model read or wrote (refused accesses included).
    pub bytes: AtomicU64,
    /// Accesses the device model made.
    pub accesses: AtomicU64,
    /// Accesses refused because they reached outside RAM.
    pub refused: AtomicU64,
    /// Longest single access asked for.
    pub longest: AtomicU64,
}

impl RecordingMemory {
    pub fn new(size: usize) -> Self {
        RecordingMemory {
            ram: Mutex::new(vec![0; size]),
            bytes: AtomicU64::new(0),
            accesses: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            longest: AtomicU64::new(0),
        }
    }

    pub fn size(&self) -> usize {
        self.ram.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The checked range, counted as one device access.
    fn range(&self, gpa: u64, len: usize) -> Result<std::ops::Range<usize>, MemError> {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.longest.fetch_max(len as u64, Ordering::Relaxed);
        let size = self.size() as u64;
        match gpa.checked_add(len as u64) {
            Some(end) if end <= size => Ok(gpa as usize..end as usize),
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(MemError::OutOfRange { gpa, len })
            }
        }
    }

    /// The harness's own write (the guest's CPU filling memory): not counted.
    pub fn poke(&self, gpa: u64, data: &[u8]) {
        let mut ram = self.ram.lock().unwrap_or_else(|e| e.into_inner());
        let start = (gpa as usize).min(ram.len());
        let end = start.saturating_add(data.len()).min(ram.len());
        ram[start..end].copy_from_slice(&data[..end - start]);
    }

    pub fn peek(&self, gpa: u64, len: usize) -> Vec<u8> {
        let ram = self.ram.lock().unwrap_or_else(|e| e.into_inner());
        let start = (gpa as usize).min(ram.len());
        ram[start..start.saturating_add(len).min(ram.len())].to_vec()
    }
}

impl GuestMemory for RecordingMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.ram.lock().unwrap_or_else(|e| e.into_inner())[r]);
        Ok(())
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let r = self.range(gpa, data.len())?;
        self.ram.lock().unwrap_or_else(|e| e.into_inner())[r].copy_from_slice(data);
        Ok(())
    }
}

/// What the host side of every image saw, shared by the images of a rig.
#[derive(Default)]
pub struct HostCounters {
    /// Bytes read, written or discarded.
    pub bytes: AtomicU64,
    /// Operations that reached past the image's end: the device model must
    /// check the guest's LBA before it asks the host.
    pub out_of_image: AtomicU64,
}

/// A RAM image with injected faults (the blkdebug-like failing backend),
/// counting what the drive asks of it.
#[derive(Clone)]
pub struct FaultyImage {
    inner: Arc<Mutex<MemBackend>>,
    counters: Arc<HostCounters>,
}

impl FaultyImage {
    pub fn new(data: Vec<u8>, read_only: bool, counters: Arc<HostCounters>) -> Self {
        FaultyImage { inner: Arc::new(Mutex::new(MemBackend::with_data(data, read_only))), counters }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemBackend> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn inject(&self, op: BlockOp, at_byte: Option<u64>, errno: i32, once: bool) {
        self.lock().inject(InjectedFault { op: Some(op), at_byte, errno, once });
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    fn count(&self, offset: u64, len: u64) {
        self.counters.bytes.fetch_add(len, Ordering::Relaxed);
        if offset.checked_add(len).is_none_or(|end| end > self.lock().data().len() as u64) {
            self.counters.out_of_image.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl BlockBackend for FaultyImage {
    fn size(&self) -> u64 {
        self.lock().size()
    }
    fn read_only(&self) -> bool {
        self.lock().read_only()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.count(offset, buf.len() as u64);
        self.lock().read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        self.count(offset, data.len() as u64);
        self.lock().write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.lock().flush()
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.count(offset, len);
        self.lock().discard(offset, len)
    }
    fn set_guest_write_cache(&mut self, enabled: bool) {
        self.lock().set_guest_write_cache(enabled)
    }
    fn guest_write_cache(&self) -> bool {
        self.lock().guest_write_cache()
    }
}

/// The Xen front's guest memory caches mappings; this one has none to drop.
impl xen_ioemu::xen::ioreq::GuestMappings for RecordingMemory {
    fn invalidate(&self) {}
}
