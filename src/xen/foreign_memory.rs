//! Guest RAM for DMA and data_is_ptr requests: 1 MiB buckets mapped with
//! MMAPBATCH_V2 on demand, kept in a bounded LRU cache.
//!
//! The only raw memory access is inside `ForeignMapping::copy_in/copy_out`
//! (privcmd.rs); this file decides which pages may be touched: a page the
//! batch could not map is never accessed (it would fault) but reported as
//! `MemError::Unmappable`.

use super::dm::DeviceModelHandle;
use super::ioreq::GuestMappings;
use super::privcmd::ForeignMapping;
use crate::machine::{GuestMemory, MemError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use xen_sys::{PAGE_SHIFT, PAGE_SIZE};

/// 1 MiB buckets, as QEMU's and qemu-trad's map caches.
pub const BUCKET_SHIFT: u32 = 20;
const PAGES_PER_BUCKET: usize = 1 << (BUCKET_SHIFT - PAGE_SHIFT);
/// Default cap: 64 buckets = 64 MiB of mapped guest memory.
pub const DEFAULT_MAX_BUCKETS: usize = 64;
/// x86-64 guest-physical addresses are at most 52 bits; anything above is
/// refused before a mapping is attempted.
const MAX_GPA_BITS: u32 = 52;

struct Bucket {
    mapping: ForeignMapping,
    /// Per page: 0 mapped, else the negative errno from MMAPBATCH_V2.
    errors: Vec<i32>,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    buckets: HashMap<u64, Bucket>,
    clock: u64,
}

pub struct XenGuestMemory {
    dm: Arc<DeviceModelHandle>,
    cache: Mutex<Cache>,
    max_buckets: usize,
    dirty_logging: AtomicBool,
}

impl XenGuestMemory {
    pub fn new(dm: Arc<DeviceModelHandle>) -> Self {
        Self::with_capacity(dm, DEFAULT_MAX_BUCKETS)
    }

    pub fn with_capacity(dm: Arc<DeviceModelHandle>, max_buckets: usize) -> Self {
        XenGuestMemory { dm, cache: Mutex::new(Cache::default()), max_buckets: max_buckets.max(1), dirty_logging: AtomicBool::new(false) }
    }

    /// While on, every page written is reported with modified_memory (set
    /// by QMP xen-set-global-dirty-log for save/migration).
    pub fn set_dirty_logging(&self, on: bool) {
        self.dirty_logging.store(on, Ordering::SeqCst);
    }

    /// Number of buckets currently mapped.
    pub fn mapped_buckets(&self) -> usize {
        self.lock().buckets.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Split `gpa..gpa+len` into per-bucket pieces and run `f` on each with
    /// the bucket's mapping and the offset inside it.
    fn access(&self, gpa: u64, len: usize, mut f: impl FnMut(&ForeignMapping, usize, std::ops::Range<usize>)) -> Result<(), MemError> {
        let end = gpa
            .checked_add(len as u64)
            .filter(|&end| end <= 1u64 << MAX_GPA_BITS)
            .ok_or(MemError::OutOfRange { gpa, len })?;
        let mut cache = self.lock();
        let mut cursor = gpa;
        while cursor < end {
            let bucket_index = cursor >> BUCKET_SHIFT;
            let bucket_end = (bucket_index + 1) << BUCKET_SHIFT;
            let piece_end = end.min(bucket_end);
            let offset = (cursor - (bucket_index << BUCKET_SHIFT)) as usize;
            let piece_len = (piece_end - cursor) as usize;
            self.ensure_bucket(&mut cache, bucket_index)?;
            cache.clock += 1;
            let now = cache.clock;
            let bucket = cache.buckets.get_mut(&bucket_index).expect("bucket just ensured");
            bucket.last_used = now;
            let first_page = offset / PAGE_SIZE;
            let last_page = (offset + piece_len - 1) / PAGE_SIZE;
            if let Some(bad) = (first_page..=last_page).find(|&p| bucket.errors[p] != 0) {
                let gfn = (bucket_index << (BUCKET_SHIFT - PAGE_SHIFT)) + bad as u64;
                let errno = -bucket.errors[bad];
                // A failed page may become mappable later (paged back in,
                // ballooned up): do not keep the bucket.
                cache.buckets.remove(&bucket_index);
                return Err(MemError::Unmappable { gfn, errno });
            }
            let done = (cursor - gpa) as usize;
            f(&bucket.mapping, offset, done..done + piece_len);
            cursor = piece_end;
        }
        Ok(())
    }

    fn ensure_bucket(&self, cache: &mut Cache, bucket_index: u64) -> Result<(), MemError> {
        if cache.buckets.contains_key(&bucket_index) {
            return Ok(());
        }
        while cache.buckets.len() >= self.max_buckets {
            let oldest = cache.buckets.iter().min_by_key(|(_, b)| b.last_used).map(|(&k, _)| k);
            match oldest {
                Some(k) => cache.buckets.remove(&k),
                None => break,
            };
        }
        let first_gfn = bucket_index << (BUCKET_SHIFT - PAGE_SHIFT);
        let gfns: Vec<u64> = (0..PAGES_PER_BUCKET as u64).map(|i| first_gfn + i).collect();
        let (mapping, errors) = self.dm.privcmd().mmap_batch(self.dm.domid(), &gfns).map_err(|e| {
            log::warn!("mapping guest frames {first_gfn:#x}+{PAGES_PER_BUCKET}: {e}");
            MemError::Unmappable { gfn: first_gfn, errno: libc::EFAULT }
        })?;
        cache.buckets.insert(bucket_index, Bucket { mapping, errors, last_used: 0 });
        Ok(())
    }

    fn report_dirty(&self, gpa: u64, len: usize) {
        if len == 0 || !self.dirty_logging.load(Ordering::Relaxed) {
            return;
        }
        let first = gpa >> PAGE_SHIFT;
        let last = (gpa + len as u64 - 1) >> PAGE_SHIFT;
        if let Err(e) = self.dm.modified_memory(&[(first, (last - first + 1) as u32)]) {
            log::error!("dirty logging: reporting pages {first:#x}..={last:#x}: {e}");
        }
    }
}

impl GuestMemory for XenGuestMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let len = buf.len();
        self.access(gpa, len, |mapping, offset, range| mapping.copy_out(offset, &mut buf[range]))
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        self.access(gpa, data.len(), |mapping, offset, range| mapping.copy_in(offset, &data[range]))?;
        self.report_dirty(gpa, data.len());
        Ok(())
    }
}

impl GuestMappings for XenGuestMemory {
    fn invalidate(&self) {
        self.lock().buckets.clear();
    }
}
