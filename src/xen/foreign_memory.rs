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

/// Where buckets come from: privcmd on Xen, plain memory in tests.
pub trait FrameMapper: Send + Sync {
    type Frames: MappedFrames;
    /// Map `count` consecutive guest frames from `first_gfn`; per-frame
    /// status beside it (0 mapped, else a negative errno).
    fn map_frames(&self, first_gfn: u64, count: usize) -> Result<(Self::Frames, Vec<i32>), MemError>;
    /// Report frames written by us while dirty logging is on.
    fn report_modified(&self, first_pfn: u64, nr: u32);
}

/// A mapped run of frames. Offsets are checked by the caller to lie in
/// frames that mapped without error.
pub trait MappedFrames: Send + Sync {
    fn copy_out(&self, offset: usize, buf: &mut [u8]);
    fn copy_in(&self, offset: usize, data: &[u8]);
}

impl MappedFrames for ForeignMapping {
    fn copy_out(&self, offset: usize, buf: &mut [u8]) {
        ForeignMapping::copy_out(self, offset, buf)
    }
    fn copy_in(&self, offset: usize, data: &[u8]) {
        ForeignMapping::copy_in(self, offset, data)
    }
}

/// Guest frames mapped with MMAPBATCH_V2 through the domain's privcmd handle.
pub struct PrivcmdMapper {
    dm: Arc<DeviceModelHandle>,
}

impl FrameMapper for PrivcmdMapper {
    type Frames = ForeignMapping;

    fn map_frames(&self, first_gfn: u64, count: usize) -> Result<(ForeignMapping, Vec<i32>), MemError> {
        let gfns: Vec<u64> = (0..count as u64).map(|i| first_gfn + i).collect();
        self.dm.privcmd().mmap_batch(self.dm.domid(), &gfns).map_err(|e| {
            log::warn!("mapping guest frames {first_gfn:#x}+{count}: {e}");
            MemError::Unmappable { gfn: first_gfn, errno: libc::EFAULT }
        })
    }

    fn report_modified(&self, first_pfn: u64, nr: u32) {
        if let Err(e) = self.dm.modified_memory(&[(first_pfn, nr)]) {
            log::error!("dirty logging: reporting {nr} page(s) from {first_pfn:#x}: {e}");
        }
    }
}

struct Bucket<F> {
    mapping: F,
    /// Per page: 0 mapped, else the negative errno from MMAPBATCH_V2.
    errors: Vec<i32>,
    last_used: u64,
}

struct Cache<F> {
    buckets: HashMap<u64, Bucket<F>>,
    clock: u64,
}

pub struct XenGuestMemory<M: FrameMapper = PrivcmdMapper> {
    mapper: M,
    cache: Mutex<Cache<M::Frames>>,
    max_buckets: usize,
    dirty_logging: AtomicBool,
}

impl XenGuestMemory<PrivcmdMapper> {
    pub fn new(dm: Arc<DeviceModelHandle>) -> Self {
        Self::with_mapper(PrivcmdMapper { dm }, DEFAULT_MAX_BUCKETS)
    }
}

impl<M: FrameMapper> XenGuestMemory<M> {
    /// `max_buckets` MiB of guest memory stay mapped at most (least
    /// recently used buckets are unmapped first).
    pub fn with_mapper(mapper: M, max_buckets: usize) -> Self {
        XenGuestMemory {
            mapper,
            cache: Mutex::new(Cache { buckets: HashMap::new(), clock: 0 }),
            max_buckets: max_buckets.max(1),
            dirty_logging: AtomicBool::new(false),
        }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache<M::Frames>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Split `gpa..gpa+len` into per-bucket pieces and run `f` on each with
    /// the bucket's mapping and the offset inside it.
    fn access(&self, gpa: u64, len: usize, mut f: impl FnMut(&M::Frames, usize, std::ops::Range<usize>)) -> Result<(), MemError> {
        if len == 0 {
            return Ok(());
        }
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

    fn ensure_bucket(&self, cache: &mut Cache<M::Frames>, bucket_index: u64) -> Result<(), MemError> {
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
        let (mapping, errors) = self.mapper.map_frames(first_gfn, PAGES_PER_BUCKET)?;
        cache.buckets.insert(bucket_index, Bucket { mapping, errors, last_used: 0 });
        Ok(())
    }

    fn report_dirty(&self, gpa: u64, len: usize) {
        if len == 0 || !self.dirty_logging.load(Ordering::Relaxed) {
            return;
        }
        let first = gpa >> PAGE_SHIFT;
        let last = (gpa + len as u64 - 1) >> PAGE_SHIFT;
        self.mapper.report_modified(first, (last - first + 1) as u32);
    }
}

impl<M: FrameMapper> GuestMemory for XenGuestMemory<M> {
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

impl<M: FrameMapper> GuestMappings for XenGuestMemory<M> {
    fn invalidate(&self) {
        self.lock().buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Guest RAM in a Vec; frames listed in `holes` fail to map.
    struct VecMapper {
        ram: Arc<Mutex<Vec<u8>>>,
        holes: Vec<u64>,
        maps: AtomicUsize,
        modified: Mutex<Vec<(u64, u32)>>,
    }

    struct VecFrames {
        ram: Arc<Mutex<Vec<u8>>>,
        base: usize,
    }

    impl MappedFrames for VecFrames {
        fn copy_out(&self, offset: usize, buf: &mut [u8]) {
            let ram = self.ram.lock().unwrap();
            buf.copy_from_slice(&ram[self.base + offset..self.base + offset + buf.len()]);
        }
        fn copy_in(&self, offset: usize, data: &[u8]) {
            let mut ram = self.ram.lock().unwrap();
            ram[self.base + offset..self.base + offset + data.len()].copy_from_slice(data);
        }
    }

    impl FrameMapper for VecMapper {
        type Frames = VecFrames;
        fn map_frames(&self, first_gfn: u64, count: usize) -> Result<(VecFrames, Vec<i32>), MemError> {
            self.maps.fetch_add(1, Ordering::SeqCst);
            let ram_pages = (self.ram.lock().unwrap().len() / PAGE_SIZE) as u64;
            if first_gfn >= ram_pages {
                return Err(MemError::Unmappable { gfn: first_gfn, errno: libc::EINVAL });
            }
            let errors = (0..count as u64)
                .map(|i| first_gfn + i)
                .map(|g| if g >= ram_pages || self.holes.contains(&g) { -libc::ENOENT } else { 0 })
                .collect();
            Ok((VecFrames { ram: self.ram.clone(), base: first_gfn as usize * PAGE_SIZE }, errors))
        }
        fn report_modified(&self, first_pfn: u64, nr: u32) {
            self.modified.lock().unwrap().push((first_pfn, nr));
        }
    }

    fn memory(mib: usize, holes: &[u64], max_buckets: usize) -> XenGuestMemory<VecMapper> {
        // One extra page past the last bucket boundary keeps frame maths honest.
        let mapper = VecMapper {
            ram: Arc::new(Mutex::new(vec![0; (mib << 20) + PAGE_SIZE])),
            holes: holes.to_vec(),
            maps: AtomicUsize::new(0),
            modified: Mutex::new(Vec::new()),
        };
        XenGuestMemory::with_mapper(mapper, max_buckets)
    }

    #[test]
    fn accesses_spanning_buckets_are_split_and_round_trip() {
        let mem = memory(3, &[], 8);
        let data: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        let gpa = (1 << 20) - 4096;
        mem.write(gpa, &data).unwrap();
        let mut back = vec![0; data.len()];
        mem.read(gpa, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(mem.mapped_buckets(), 2);
        assert_eq!(mem.mapper.ram.lock().unwrap()[(1 << 20) + 4095], (8191u32) as u8);
    }

    #[test]
    fn unmappable_pages_are_reported_never_touched_and_not_cached() {
        let mem = memory(2, &[0x105], 8);
        let err = mem.write(0x105 << 12, &[1, 2, 3]).unwrap_err();
        assert_eq!(err, MemError::Unmappable { gfn: 0x105, errno: libc::ENOENT });
        assert!(mem.mapper.ram.lock().unwrap().iter().all(|&b| b == 0));
        assert_eq!(mem.mapped_buckets(), 0, "a bucket with a failed page is retried next time");
        mem.read(0x104 << 12, &mut [0; 4096]).unwrap();
        assert_eq!((mem.mapper.maps.load(Ordering::SeqCst), mem.mapped_buckets()), (2, 1));
        let err = mem.read(0x104 << 12, &mut [0; 4097]).unwrap_err();
        assert_eq!(err, MemError::Unmappable { gfn: 0x105, errno: libc::ENOENT }, "one byte into the hole");
        assert_eq!(mem.mapped_buckets(), 0);
        let err = mem.read(3 << 20, &mut [0; 8]).unwrap_err();
        assert!(matches!(err, MemError::Unmappable { .. }), "beyond guest RAM: {err:?}");
    }

    #[test]
    fn hostile_ranges_are_refused_before_mapping() {
        let mem = memory(1, &[], 8);
        for (gpa, len) in [(u64::MAX, 2usize), (u64::MAX - 3, 8), (1 << 52, 1), ((1 << 52) - 1, 2)] {
            let err = mem.read(gpa, &mut vec![0; len]).unwrap_err();
            assert_eq!(err, MemError::OutOfRange { gpa, len });
        }
        assert_eq!(mem.mapper.maps.load(Ordering::SeqCst), 0);
        mem.write(u64::MAX, &[]).unwrap();
    }

    #[test]
    fn cache_is_bounded_and_evicts_the_least_recently_used_bucket() {
        let mem = memory(5, &[], 2);
        let mut b = [0u8; 1];
        mem.read(0, &mut b).unwrap();
        mem.read(1 << 20, &mut b).unwrap();
        mem.read(0, &mut b).unwrap();
        mem.read(2 << 20, &mut b).unwrap();
        assert_eq!(mem.mapped_buckets(), 2);
        assert_eq!(mem.mapper.maps.load(Ordering::SeqCst), 3);
        mem.read(0, &mut b).unwrap();
        assert_eq!(mem.mapper.maps.load(Ordering::SeqCst), 3, "bucket 0 was used recently and stayed");
        mem.read(1 << 20, &mut b).unwrap();
        assert_eq!(mem.mapper.maps.load(Ordering::SeqCst), 4, "bucket 1 was the LRU victim");
        mem.invalidate();
        assert_eq!(mem.mapped_buckets(), 0);
    }

    #[test]
    fn dirty_logging_reports_written_pages_only_when_on() {
        let mem = memory(1, &[], 8);
        mem.write(0x1ffe, &[0; 4]).unwrap();
        assert!(mem.mapper.modified.lock().unwrap().is_empty());
        mem.set_dirty_logging(true);
        mem.write(0x1ffe, &[0; 4]).unwrap();
        mem.read(0x5000, &mut [0; 16]).unwrap();
        assert_eq!(*mem.mapper.modified.lock().unwrap(), vec![(1, 2)]);
    }
}
