//! Guest RAM for DMA and data_is_ptr requests: 1 MiB buckets mapped with
//! MMAPBATCH_V2 on demand, kept in an LRU cache sized to the guest.
//!
//! * Size: [`XenGuestMemory::sized_for_guest`] keeps up to guest RAM plus
//!   1 GiB mapped (buckets in the MMIO hole fail to map and are not kept),
//!   so once warm a DMA never remaps; eviction is O(1) (`lru.rs`).
//! * Lifetime: every bucket is an `Arc<Bucket>` whose drop unmaps it. The
//!   cache holds one reference; a copy, or a [`GuestIoRegion`] from
//!   `map_for_io`, holds its own while it uses the bucket. INVALIDATE (and
//!   eviction) only drop the cache's reference, so a mapping is never
//!   unmapped under a DMA in flight on another thread.
//! * Access: copies are volatile (`machine::volatile`); the guest writes
//!   this memory concurrently. A page the batch could not map is never
//!   touched (it would fault) but reported as `MemError::Unmappable`.
//!
//! `cargo bench --bench guest_memory`, random 4 KiB-aligned reads over an
//! 8 GiB fake guest (memfd mapper: a real mmap/munmap per bucket, privcmd
//! costs more), loaded 2-core host:
//!
//! | read size | cache sized (9 GiB), warm | maps/op | old 64 MiB cap | maps/op |
//! |-----------|---------------------------|---------|----------------|---------|
//! | 4 KiB     | 0.9-2.5 GB/s              | 0       | 0.01-0.02 GB/s | 0.99    |
//! | 64 KiB    | 3.1-6.8 GB/s              | 0       | 0.10-0.30 GB/s | 1.04    |
//! | 1 MiB     | 5.0-11.6 GB/s             | 0       | 0.65-1.8 GB/s  | 1.99    |
//! | 32 MiB    | 2.3-5.3 GB/s              | 0       | 0.33-2.6 GB/s  | 33      |
//!
//! (mapping all 8192 buckets once took 0.7-1.9 s.)

use super::dm::DeviceModelHandle;
use super::ioreq::GuestMappings;
use super::lru::Lru;
use super::privcmd::ForeignMapping;
use crate::machine::io_region::KeepAlive;
use crate::machine::volatile::{copy_from_guest, copy_to_guest};
use crate::machine::{DmaDirection, GuestIoRegion, GuestMemory, MemError};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use xen_sys::{PAGE_SHIFT, PAGE_SIZE};

/// 1 MiB buckets, as QEMU's and qemu-trad's map caches.
pub const BUCKET_SHIFT: u32 = 20;
const BUCKET_BYTES: usize = 1 << BUCKET_SHIFT;
const PAGES_PER_BUCKET: usize = 1 << (BUCKET_SHIFT - PAGE_SHIFT);
/// The old fixed cap, now the floor: 64 MiB of mapped guest memory.
pub const MIN_CACHE_BYTES: u64 = 64 << 20;
/// Room above guest RAM for what lies beyond it in the guest-physical map:
/// RAM relocated above 4 GiB behind the MMIO hole, grant/ioreq pages.
pub const MMIO_HOLE_ALLOWANCE: u64 = 1 << 30;
/// x86-64 guest-physical addresses are at most 52 bits; anything above is
/// refused before a mapping is attempted.
const MAX_GPA_BITS: u32 = 52;

/// How many bytes of guest memory the cache keeps mapped for a guest of
/// `guest_ram_bytes`: all of it plus [`MMIO_HOLE_ALLOWANCE`], at least
/// [`MIN_CACHE_BYTES`].
pub fn cache_bytes_for_guest(guest_ram_bytes: u64) -> u64 {
    guest_ram_bytes.saturating_add(MMIO_HOLE_ALLOWANCE).max(MIN_CACHE_BYTES)
}

/// Where buckets come from: privcmd on Xen, a memfd in tests and benches.
pub trait FrameMapper: Send + Sync + 'static {
    type Frames: MappedFrames;
    /// Map `count` consecutive guest frames from `first_gfn`; per-frame
    /// status beside it (0 mapped, else a negative errno).
    fn map_frames(&self, first_gfn: u64, count: usize) -> Result<(Self::Frames, Vec<i32>), MemError>;
    /// Report frames written by us while dirty logging is on.
    fn report_modified(&self, first_pfn: u64, nr: u32);
}

/// A mapped run of frames, host-contiguous, unmapped when dropped.
///
/// # Safety
/// `base()..base() + len()` must be readable and writable memory for as
/// long as the value lives (at least where the frames mapped without
/// error), the same on every call, and no Rust reference may point into it.
pub unsafe trait MappedFrames: Send + Sync + 'static {
    fn base(&self) -> NonNull<u8>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: a ForeignMapping is an mmap of `len()` bytes at `as_ptr()` that
// stays mapped until it drops; privcmd fills it with guest frames (a frame
// that failed is never accessed, the caller checks the batch status). It
// only hands out raw pointers.
unsafe impl MappedFrames for ForeignMapping {
    fn base(&self) -> NonNull<u8> {
        NonNull::new(self.as_ptr()).expect("mmap never returns NULL on success")
    }
    fn len(&self) -> usize {
        ForeignMapping::len(self)
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

/// One mapped 1 MiB bucket. Dropping the last `Arc` unmaps it.
struct Bucket<F> {
    frames: F,
    /// Per page: 0 mapped, else the negative errno from MMAPBATCH_V2.
    errors: Vec<i32>,
}

impl<F: MappedFrames> Bucket<F> {
    /// Host address of byte `offset` of the bucket (`offset < BUCKET_BYTES`,
    /// and the bucket is at least that long, checked when it was mapped).
    fn host(&self, offset: usize) -> NonNull<u8> {
        debug_assert!(offset < BUCKET_BYTES);
        // SAFETY: offset < BUCKET_BYTES <= frames.len() (checked in
        // `bucket`), so the result stays inside the mapping and is not null.
        unsafe { NonNull::new_unchecked(self.frames.base().as_ptr().add(offset)) }
    }
}

/// Counters for logs, QMP and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Buckets the cache holds now.
    pub mapped_buckets: usize,
    /// Most buckets the cache holds.
    pub capacity_buckets: usize,
    /// Buckets mapped since creation (misses).
    pub maps: u64,
    /// Buckets dropped to make room.
    pub evictions: u64,
}

/// The mapper and the dirty-logging switch, shared with the regions from
/// `map_for_io`: a FromDevice region reports its pages when it drops, which
/// may be after the `&XenGuestMemory` it came from is gone.
struct Shared<M> {
    mapper: M,
    on: AtomicBool,
    /// Pages written and not yet reported (first pfn, last pfn): writes
    /// that touch or adjoin it grow it, so the elements of a `rep ins` or
    /// the pieces of a bounce-buffered DMA go out as one modified_memory.
    pending: Mutex<Option<(u64, u64)>>,
}

impl<M: FrameMapper> Shared<M> {
    /// Batched: kept in `pending` until a write elsewhere or `flush`.
    fn report(&self, gpa: u64, len: usize) {
        if len == 0 || !self.on.load(Ordering::Relaxed) {
            return;
        }
        let first = gpa >> PAGE_SHIFT;
        let last = gpa.saturating_add(len as u64 - 1) >> PAGE_SHIFT;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match *pending {
            Some((a, b)) if first <= b.saturating_add(1) && a <= last.saturating_add(1) => *pending = Some((a.min(first), b.max(last))),
            Some((a, b)) => {
                self.report_now(a, b);
                *pending = Some((first, last));
            }
            None => *pending = Some((first, last)),
        }
    }

    fn flush(&self) {
        let taken = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((first, last)) = taken {
            self.report_now(first, last);
        }
    }

    fn report_now(&self, first: u64, last: u64) {
        let mut pfn = first;
        // modified_memory counts pages in a u32; no DMA comes near that,
        // but the arithmetic should not wrap if one ever did.
        while pfn <= last {
            let nr = (last - pfn + 1).min(u32::MAX as u64) as u32;
            self.mapper.report_modified(pfn, nr);
            pfn += nr as u64;
        }
    }
}

pub struct XenGuestMemory<M: FrameMapper = PrivcmdMapper> {
    shared: Arc<Shared<M>>,
    cache: Mutex<Lru<Arc<Bucket<M::Frames>>>>,
    max_buckets: usize,
    maps: AtomicU64,
    evictions: AtomicU64,
}

impl XenGuestMemory<PrivcmdMapper> {
    /// A cache of [`MIN_CACHE_BYTES`]; prefer [`sized_for_guest`](Self::sized_for_guest).
    pub fn new(dm: Arc<DeviceModelHandle>) -> Self {
        Self::with_mapper(PrivcmdMapper { dm }, MIN_CACHE_BYTES)
    }

    /// A cache that holds all of a guest of `guest_ram_bytes` (`-m`), see
    /// [`cache_bytes_for_guest`].
    pub fn sized_for_guest(dm: Arc<DeviceModelHandle>, guest_ram_bytes: u64) -> Self {
        Self::with_mapper(PrivcmdMapper { dm }, cache_bytes_for_guest(guest_ram_bytes))
    }
}

impl<M: FrameMapper> XenGuestMemory<M> {
    /// Keep at most `max_bytes` of guest memory mapped (rounded up to whole
    /// buckets, at least one); least recently used buckets go first.
    pub fn with_mapper(mapper: M, max_bytes: u64) -> Self {
        let buckets = max_bytes.div_ceil(BUCKET_BYTES as u64).max(1);
        XenGuestMemory {
            shared: Arc::new(Shared { mapper, on: AtomicBool::new(false), pending: Mutex::new(None) }),
            cache: Mutex::new(Lru::new()),
            max_buckets: usize::try_from(buckets).unwrap_or(usize::MAX),
            maps: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// While on, every page written is reported with modified_memory (set
    /// by QMP xen-set-global-dirty-log for save/migration).
    pub fn set_dirty_logging(&self, on: bool) {
        self.shared.flush();
        self.shared.on.store(on, Ordering::SeqCst);
    }

    /// Report what is batched now (before `stop` answers: libxl's last
    /// memory pass comes after it).
    pub fn flush_dirty_log(&self) {
        self.shared.flush();
    }

    pub fn mapper(&self) -> &M {
        &self.shared.mapper
    }

    /// Number of buckets currently in the cache.
    pub fn mapped_buckets(&self) -> usize {
        self.lock().len()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            mapped_buckets: self.mapped_buckets(),
            capacity_buckets: self.max_buckets,
            maps: self.maps.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<Arc<Bucket<M::Frames>>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bucket `index`, from the cache or freshly mapped. The returned Arc
    /// keeps it mapped for as long as the caller holds it.
    fn bucket(&self, index: u64) -> Result<Arc<Bucket<M::Frames>>, MemError> {
        let mut cache = self.lock();
        if let Some(b) = cache.get(index) {
            return Ok(b.clone());
        }
        // Mapping under the lock keeps two threads from mapping the same
        // bucket twice; a miss is rare once the cache is sized to the guest.
        let first_gfn = index << (BUCKET_SHIFT - PAGE_SHIFT);
        let (frames, errors) = self.shared.mapper.map_frames(first_gfn, PAGES_PER_BUCKET)?;
        self.maps.fetch_add(1, Ordering::Relaxed);
        // Every later access trusts these two lengths; a mapper that got
        // them wrong must not turn into an out-of-bounds copy.
        if frames.len() < BUCKET_BYTES || errors.len() != PAGES_PER_BUCKET {
            log::error!("mapper returned {} bytes / {} statuses for a 1 MiB bucket at gfn {first_gfn:#x}", frames.len(), errors.len());
            return Err(MemError::Unmappable { gfn: first_gfn, errno: libc::EINVAL });
        }
        let bucket = Arc::new(Bucket { frames, errors });
        let victim = if cache.len() >= self.max_buckets { cache.pop_lru() } else { None };
        cache.insert(index, bucket.clone());
        drop(cache);
        if victim.is_some() {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        // The victim's munmap (if no copy holds it) happens here, outside
        // the lock.
        drop(victim);
        Ok(bucket)
    }

    /// Split `gpa..gpa+len` into per-bucket pieces and run `f` on each with
    /// the bucket (held for the duration of `f`), the offset inside it and
    /// the matching range of the caller's buffer. Every guest-controlled
    /// value is checked here: overflow, the 52-bit limit, unmapped pages.
    fn for_each_piece(
        &self,
        gpa: u64,
        len: usize,
        mut f: impl FnMut(&Arc<Bucket<M::Frames>>, usize, std::ops::Range<usize>),
    ) -> Result<(), MemError> {
        if len == 0 {
            return Ok(());
        }
        let end = gpa
            .checked_add(len as u64)
            .filter(|&end| end <= 1u64 << MAX_GPA_BITS)
            .ok_or(MemError::OutOfRange { gpa, len })?;
        let mut cursor = gpa;
        while cursor < end {
            let index = cursor >> BUCKET_SHIFT;
            let piece_end = end.min((index + 1) << BUCKET_SHIFT);
            let offset = (cursor - (index << BUCKET_SHIFT)) as usize;
            let piece_len = (piece_end - cursor) as usize;
            let bucket = self.bucket(index)?;
            let first_page = offset / PAGE_SIZE;
            let last_page = (offset + piece_len - 1) / PAGE_SIZE;
            if let Some(bad) = (first_page..=last_page).find(|&p| bucket.errors[p] != 0) {
                let gfn = (index << (BUCKET_SHIFT - PAGE_SHIFT)) + bad as u64;
                let errno = -bucket.errors[bad];
                // A failed page may become mappable later (paged back in,
                // ballooned up): do not keep the bucket. Only this very
                // mapping is dropped, not one another thread made since.
                let mut cache = self.lock();
                let ours = cache.get(index).is_some_and(|b| Arc::ptr_eq(b, &bucket));
                let removed = if ours { cache.remove(index) } else { None };
                drop(cache);
                drop(removed);
                return Err(MemError::Unmappable { gfn, errno });
            }
            let done = (cursor - gpa) as usize;
            f(&bucket, offset, done..done + piece_len);
            cursor = piece_end;
        }
        Ok(())
    }
}

impl<M: FrameMapper> GuestMemory for XenGuestMemory<M> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let len = buf.len();
        self.for_each_piece(gpa, len, |bucket, offset, range| {
            // SAFETY: offset + range.len() <= BUCKET_BYTES (pieces never
            // cross a bucket), inside the mapping, whose pages in that range
            // mapped without error (checked by for_each_piece); `bucket` is
            // held for the call so it stays mapped whatever INVALIDATE does.
            unsafe { copy_from_guest(bucket.host(offset).as_ptr(), &mut buf[range]) }
        })
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        self.for_each_piece(gpa, data.len(), |bucket, offset, range| {
            // SAFETY: as in read, with the direction reversed.
            unsafe { copy_to_guest(bucket.host(offset).as_ptr(), &data[range]) }
        })?;
        self.shared.report(gpa, data.len());
        Ok(())
    }

    /// One slice per bucket (merged where buckets happen to be adjacent in
    /// host memory), each bucket held by the region. A region may not be
    /// larger than the cache, which bounds how much a guest can pin.
    fn map_for_io(&self, gpa: u64, len: usize, direction: DmaDirection) -> Result<GuestIoRegion, MemError> {
        let max = self.max_buckets.saturating_mul(BUCKET_BYTES);
        if len > max {
            return Err(MemError::TooLarge { len, max });
        }
        let mut keep_alive: Vec<KeepAlive> = Vec::with_capacity(len / BUCKET_BYTES + 2);
        let mut slices = Vec::with_capacity(len / BUCKET_BYTES + 2);
        self.for_each_piece(gpa, len, |bucket, offset, range| {
            slices.push((bucket.host(offset), range.len()));
            keep_alive.push(bucket.clone());
        })?;
        let on_drop: Option<Box<dyn FnOnce() + Send>> = match direction {
            DmaDirection::ToDevice => None,
            DmaDirection::FromDevice => {
                let shared = self.shared.clone();
                Some(Box::new(move || shared.report(gpa, len)))
            }
        };
        // SAFETY: each slice lies inside one bucket's mapping, in pages that
        // mapped without error (for_each_piece), and that bucket's Arc is in
        // `keep_alive`, so the memory stays mapped while the region lives.
        // Guest memory is only ever reached through raw pointers.
        Ok(unsafe { GuestIoRegion::from_parts(gpa, slices, keep_alive, on_drop) })
    }
}

impl<M: FrameMapper> GuestMappings for XenGuestMemory<M> {
    /// Drop the cache's references; buckets a copy or a region still holds
    /// stay mapped until it lets go. The unmaps happen outside the lock.
    fn invalidate(&self) {
        let dropped = self.lock().drain();
        drop(dropped);
    }

    fn flush_dirty(&self) {
        self.shared.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::memfd_mapper::MemfdMapper;

    const MIB: u64 = 1 << 20;

    /// `mib` MiB of guest RAM plus one page past the last bucket boundary
    /// (keeps frame maths honest), over a memfd of the same size.
    fn memory(mib: u64, holes: &[u64], max_bytes: u64) -> XenGuestMemory<MemfdMapper> {
        let mapper = MemfdMapper::new(mib * MIB + PAGE_SIZE as u64, (mib + 1) * MIB).unwrap().with_holes(holes);
        XenGuestMemory::with_mapper(mapper, max_bytes)
    }

    fn maps(mem: &XenGuestMemory<MemfdMapper>) -> u64 {
        mem.mapper().counters().maps.load(Ordering::SeqCst)
    }

    fn unmaps(mem: &XenGuestMemory<MemfdMapper>) -> u64 {
        mem.mapper().counters().unmaps.load(Ordering::SeqCst)
    }

    fn peek(mem: &XenGuestMemory<MemfdMapper>, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        mem.mapper().peek(gpa, &mut b).unwrap();
        b
    }

    #[test]
    fn accesses_spanning_buckets_are_split_and_round_trip() {
        let mem = memory(3, &[], 8 * MIB);
        let data: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        let gpa = MIB - 4096;
        mem.write(gpa, &data).unwrap();
        let mut back = vec![0; data.len()];
        mem.read(gpa, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(mem.mapped_buckets(), 2);
        assert_eq!(peek(&mem, gpa, 8192), data, "the bytes reached the backing frames");
    }

    #[test]
    fn unmappable_pages_are_reported_never_touched_and_not_cached() {
        let mem = memory(2, &[0x105], 8 * MIB);
        let err = mem.write(0x105 << 12, &[1, 2, 3]).unwrap_err();
        assert_eq!(err, MemError::Unmappable { gfn: 0x105, errno: libc::ENOENT });
        assert!(peek(&mem, 0, 3 << 20).iter().all(|&b| b == 0));
        assert_eq!(mem.mapped_buckets(), 0, "a bucket with a failed page is retried next time");
        assert_eq!(unmaps(&mem), 1, "and its mapping is gone");
        mem.read(0x104 << 12, &mut [0; 4096]).unwrap();
        assert_eq!((maps(&mem), mem.mapped_buckets()), (2, 1));
        let err = mem.read(0x104 << 12, &mut [0; 4097]).unwrap_err();
        assert_eq!(err, MemError::Unmappable { gfn: 0x105, errno: libc::ENOENT }, "one byte into the hole");
        assert_eq!(mem.mapped_buckets(), 0);
        let err = mem.read(3 << 20, &mut [0; 8]).unwrap_err();
        assert!(matches!(err, MemError::Unmappable { .. }), "beyond guest RAM: {err:?}");
    }

    #[test]
    fn hostile_ranges_are_refused_before_mapping() {
        let mem = memory(1, &[], 8 * MIB);
        for (gpa, len) in [(u64::MAX, 2usize), (u64::MAX - 3, 8), (1 << 52, 1), ((1 << 52) - 1, 2)] {
            let err = mem.read(gpa, &mut vec![0; len]).unwrap_err();
            assert_eq!(err, MemError::OutOfRange { gpa, len });
            assert_eq!(mem.map_for_io(gpa, len, DmaDirection::FromDevice).unwrap_err(), MemError::OutOfRange { gpa, len });
        }
        assert_eq!(maps(&mem), 0);
        mem.write(u64::MAX, &[]).unwrap();
    }

    #[test]
    fn cache_is_bounded_and_evicts_the_least_recently_used_bucket() {
        let mem = memory(5, &[], 2 * MIB);
        let mut b = [0u8; 1];
        mem.read(0, &mut b).unwrap();
        mem.read(MIB, &mut b).unwrap();
        mem.read(0, &mut b).unwrap();
        mem.read(2 * MIB, &mut b).unwrap();
        assert_eq!(mem.mapped_buckets(), 2);
        assert_eq!((maps(&mem), unmaps(&mem)), (3, 1));
        mem.read(0, &mut b).unwrap();
        assert_eq!(maps(&mem), 3, "bucket 0 was used recently and stayed");
        mem.read(MIB, &mut b).unwrap();
        assert_eq!(maps(&mem), 4, "bucket 1 was the LRU victim");
        assert_eq!(mem.stats(), CacheStats { mapped_buckets: 2, capacity_buckets: 2, maps: 4, evictions: 2 });
        mem.invalidate();
        assert_eq!((mem.mapped_buckets(), unmaps(&mem)), (0, 4));
    }

    #[test]
    fn the_cache_is_sized_to_the_guest_and_never_remaps_once_warm() {
        assert_eq!(cache_bytes_for_guest(0), MMIO_HOLE_ALLOWANCE, "the hole allowance alone is above the old 64 MiB floor");
        assert_eq!(cache_bytes_for_guest(8 << 30), (9 << 30));
        assert_eq!(cache_bytes_for_guest(u64::MAX), u64::MAX);
        let guest = 96 * MIB;
        let mem = XenGuestMemory::with_mapper(MemfdMapper::new(guest, 16 * MIB).unwrap(), cache_bytes_for_guest(guest));
        assert_eq!(mem.stats().capacity_buckets, 96 + 1024);
        let mut b = [0u8; 64];
        // A stride that visits every bucket in a scrambled order, twice.
        for i in 0..2 * 96u64 {
            mem.read(((i * 37) % 96) * MIB + 100, &mut b).unwrap();
        }
        assert_eq!((maps(&mem), unmaps(&mem), mem.stats().evictions), (96, 0, 0));
    }

    /// INVALIDATE arriving while a copy is inside a bucket (here: from
    /// inside the copy step, where the ioreq thread would hit it) takes the
    /// bucket out of the cache but leaves it mapped until the copy's own
    /// reference goes.
    #[test]
    fn invalidate_during_a_copy_does_not_unmap_it() {
        let mem = memory(2, &[], 8 * MIB);
        mem.write(0x1000, b"before").unwrap();
        let mut seen = Vec::new();
        mem.for_each_piece(0x1000, 6, |bucket, offset, _| {
            mem.invalidate();
            assert_eq!(mem.mapped_buckets(), 0, "the cache let go");
            assert_eq!(unmaps(&mem), 0, "but the copy still holds the bucket");
            let mut b = [0u8; 6];
            // SAFETY: the bucket is held by this closure's caller; 0x1000+6
            // lies in its first, mapped pages.
            unsafe { copy_from_guest(bucket.host(offset).as_ptr(), &mut b) };
            seen.extend_from_slice(&b);
        })
        .unwrap();
        assert_eq!(seen, b"before");
        assert_eq!(unmaps(&mem), 1, "unmapped once the copy finished");
    }

    #[test]
    fn a_region_keeps_its_buckets_mapped_across_invalidate_and_eviction() {
        let mem = memory(4, &[], 2 * MIB);
        let region = mem.map_for_io(MIB - 16, 32, DmaDirection::FromDevice).unwrap();
        mem.invalidate();
        mem.read(2 * MIB, &mut [0; 1]).unwrap();
        mem.read(3 * MIB, &mut [0; 1]).unwrap();
        assert_eq!(unmaps(&mem), 0, "buckets 0 and 1 are held by the region");
        region.write_at(0, &[0x5a; 32]).unwrap();
        assert_eq!(peek(&mem, MIB - 16, 32), vec![0x5a; 32]);
        drop(region);
        assert_eq!(unmaps(&mem), 2);
    }

    #[test]
    fn map_for_io_checks_bounds_and_splits_at_buckets() {
        let mem = memory(3, &[0x2ff], 64 * MIB);
        let empty = mem.map_for_io(u64::MAX, 0, DmaDirection::ToDevice).unwrap();
        assert!(empty.is_empty() && empty.iovecs().is_empty());
        assert_eq!(maps(&mem), 0, "zero length maps nothing");
        assert_eq!(mem.map_for_io(0, 64 * MIB as usize + 1, DmaDirection::ToDevice).unwrap_err(), MemError::TooLarge {
            len: 64 * MIB as usize + 1,
            max: 64 * MIB as usize
        });
        assert_eq!(mem.map_for_io(3 * MIB, 2 * PAGE_SIZE, DmaDirection::ToDevice).unwrap_err(), MemError::Unmappable {
            gfn: 0x301,
            errno: libc::ENOENT
        });
        assert!(matches!(mem.map_for_io(8 * MIB, 1, DmaDirection::ToDevice), Err(MemError::Unmappable { .. })), "outside RAM");
        assert_eq!(mem.map_for_io(2 * MIB, 1 << 20, DmaDirection::ToDevice).unwrap_err(), MemError::Unmappable {
            gfn: 0x2ff,
            errno: libc::ENOENT
        });

        let (gpa, len) = (MIB - 4096, MIB as usize + 8192);
        let region = mem.map_for_io(gpa, len, DmaDirection::ToDevice).unwrap();
        let slices: Vec<(*mut u8, usize)> = region.slices().collect();
        assert_eq!(slices.iter().map(|s| s.1).sum::<usize>(), len);
        let mut at = 0;
        for pair in slices.windows(2) {
            at += pair[0].1;
            assert!([4096, 4096 + MIB as usize].contains(&at), "split only at bucket boundaries: {at:#x}");
            assert_ne!(pair[0].0.wrapping_add(pair[0].1), pair[1].0, "split only where the host is not contiguous");
        }
        let pattern: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        mem.write(gpa, &pattern).unwrap();
        let mut through_region = vec![0; len];
        region.read_at(0, &mut through_region).unwrap();
        assert!(through_region == pattern, "the region sees what write put there, in order");
        let iov = region.iovecs();
        assert_eq!(iov.len(), slices.len());
        assert_eq!(iov[0].iov_base as *mut u8, slices[0].0);
    }

    #[test]
    fn dirty_logging_reports_written_pages_only_when_on() {
        let mem = memory(1, &[], 8 * MIB);
        mem.write(0x1ffe, &[0; 4]).unwrap();
        assert!(mem.mapper().modified().is_empty());
        mem.set_dirty_logging(true);
        mem.write(0x1ffe, &[0; 4]).unwrap();
        mem.read(0x5000, &mut [0; 16]).unwrap();
        assert!(mem.mapper().modified().is_empty(), "batched until a flush");
        mem.flush_dirty_log();
        assert_eq!(mem.mapper().modified(), vec![(1, 2)]);
        let to_device = mem.map_for_io(0x8000, 4096, DmaDirection::ToDevice).unwrap();
        let from_device = mem.map_for_io(0x9fff, 2, DmaDirection::FromDevice).unwrap();
        drop(to_device);
        assert_eq!(mem.mapper().modified(), vec![(1, 2)], "nothing written, nothing reported");
        assert_eq!(mem.mapper().modified().len(), 1, "a region reports when it drops, not before");
        drop(from_device);
        mem.flush_dirty_log();
        assert_eq!(mem.mapper().modified(), vec![(1, 2), (9, 2)]);
    }

    #[test]
    fn the_elements_of_a_rep_ins_are_one_report_and_a_jump_sends_the_batch() {
        let mem = memory(1, &[], 8 * MIB);
        mem.set_dirty_logging(true);
        // 2048 word writes across two pages, as a `rep insw` gives them.
        for i in 0..2048u64 {
            mem.write(0x3000 + 2 * i, &[0xab, 0xcd]).unwrap();
        }
        assert!(mem.mapper().modified().is_empty());
        mem.write(0x7_0000, &[1]).unwrap();
        assert_eq!(mem.mapper().modified(), vec![(3, 1)], "the batch went when a write landed elsewhere");
        mem.set_dirty_logging(false);
        assert_eq!(mem.mapper().modified(), vec![(3, 1), (0x70, 1)], "turning logging off sends what is pending");
    }

    /// The real race: copies on one thread, INVALIDATE and evictions on
    /// another. A copy through an unmapped bucket would fault and kill the
    /// test; every copy must also see the bytes that were written.
    #[test]
    fn copies_survive_concurrent_invalidate_and_eviction() {
        let mem = Arc::new(memory(8, &[], 3 * MIB));
        let pattern: Vec<u8> = (0..(6 * MIB) as usize).map(|i| (i / 4096) as u8 ^ (i as u8)).collect();
        mem.write(0, &pattern).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let invalidator = {
            let (mem, stop) = (mem.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    mem.invalidate();
                    mem.read(7 * MIB, &mut [0; 1]).unwrap();
                    n += 1;
                }
                n
            })
        };
        let mut buf = vec![0u8; (5 * MIB) as usize];
        for round in 0..40u64 {
            let gpa = (round % 3) * (MIB / 2);
            mem.read(gpa, &mut buf).unwrap();
            assert!(buf[..] == pattern[gpa as usize..gpa as usize + buf.len()], "round {round}");
        }
        stop.store(true, Ordering::Relaxed);
        assert!(invalidator.join().unwrap() > 0);
        let mapper_counters = mem.mapper().counters().clone();
        drop(mem);
        assert_eq!(mapper_counters.maps.load(Ordering::SeqCst), mapper_counters.unmaps.load(Ordering::SeqCst), "every mapping unmapped exactly once");
    }
}
