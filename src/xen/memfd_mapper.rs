//! A [`FrameMapper`] without Xen, for tests and benchmarks: guest frames
//! are pages of a memfd, each bucket a real `mmap` (MAP_POPULATE, as
//! MMAPBATCH fills the page tables up front) and a real `munmap` on drop,
//! so remapping costs what the kernel side of a remap costs (privcmd adds
//! the hypercall on top).
//!
//! The guest-physical space may be larger than the memfd: frame `gfn` is
//! backed by file page `gfn % backing pages`, so an 8 GiB guest fits in a
//! few hundred MiB of host memory.

use super::foreign_memory::{FrameMapper, MappedFrames};
use crate::machine::MemError;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use xen_sys::PAGE_SIZE;

#[derive(Debug, Default)]
pub struct MapperCounters {
    pub maps: AtomicU64,
    pub unmaps: AtomicU64,
}

pub struct MemfdMapper {
    file: File,
    guest_pages: u64,
    backing_bytes: u64,
    holes: Vec<u64>,
    counters: Arc<MapperCounters>,
    modified: Mutex<Vec<(u64, u32)>>,
}

impl MemfdMapper {
    /// A guest of `guest_bytes` (frames at and beyond its end fail with
    /// ENOENT, as a frame outside the p2m does) over `backing_bytes` of
    /// memfd, a multiple of 1 MiB.
    pub fn new(guest_bytes: u64, backing_bytes: u64) -> std::io::Result<Self> {
        if backing_bytes == 0 || !backing_bytes.is_multiple_of(1 << 20) {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        let fd = nix::sys::memfd::memfd_create(c"xen-ioemu-fake-guest", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)?;
        let file = File::from(fd);
        file.set_len(backing_bytes)?;
        Ok(MemfdMapper {
            file,
            guest_pages: guest_bytes / PAGE_SIZE as u64,
            backing_bytes,
            holes: Vec::new(),
            counters: Arc::default(),
            modified: Mutex::new(Vec::new()),
        })
    }

    /// Frames that fail to map (ENOENT) although inside the guest.
    pub fn with_holes(mut self, holes: &[u64]) -> Self {
        self.holes = holes.to_vec();
        self
    }

    pub fn counters(&self) -> &Arc<MapperCounters> {
        &self.counters
    }

    /// Pages reported written (dirty logging), in order.
    pub fn modified(&self) -> Vec<(u64, u32)> {
        self.modified.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What backs guest-physical `gpa` now, read through the file (not
    /// through any mapping).
    pub fn peek(&self, gpa: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, gpa % self.backing_bytes)
    }
}

pub struct MemfdFrames {
    base: NonNull<u8>,
    len: usize,
    counters: Arc<MapperCounters>,
}

// SAFETY: a shared mapping owned by this value, only reached through raw
// pointers; nothing ties it to the mapping thread.
unsafe impl Send for MemfdFrames {}
// SAFETY: as above.
unsafe impl Sync for MemfdFrames {}

// SAFETY: base..base+len is the mmap made in map_frames, readable and
// writable until Drop unmaps it; only raw pointers are handed out.
unsafe impl MappedFrames for MemfdFrames {
    fn base(&self) -> NonNull<u8> {
        self.base
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl Drop for MemfdFrames {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in map_frames, unmapped once; the
        // MappedFrames contract means nothing refers into it any more.
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.len) };
        self.counters.unmaps.fetch_add(1, Ordering::SeqCst);
    }
}

impl FrameMapper for MemfdMapper {
    type Frames = MemfdFrames;

    fn map_frames(&self, first_gfn: u64, count: usize) -> Result<(MemfdFrames, Vec<i32>), MemError> {
        let einval = MemError::Unmappable { gfn: first_gfn, errno: libc::EINVAL };
        if first_gfn >= self.guest_pages {
            return Err(einval);
        }
        let len = count.checked_mul(PAGE_SIZE).ok_or(einval.clone())?;
        let offset = first_gfn.checked_mul(PAGE_SIZE as u64).ok_or(einval.clone())? % self.backing_bytes;
        if offset + len as u64 > self.backing_bytes {
            return Err(einval);
        }
        let size = std::num::NonZeroUsize::new(len).ok_or(einval.clone())?;
        // SAFETY: a fresh shared mapping of our own memfd at an address the
        // kernel picks; nothing existing is replaced.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                size,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED | nix::sys::mman::MapFlags::MAP_POPULATE,
                self.file.as_fd(),
                offset as libc::off_t,
            )
        }
        .map_err(|e| MemError::Unmappable { gfn: first_gfn, errno: e as i32 })?;
        self.counters.maps.fetch_add(1, Ordering::SeqCst);
        let errors = (first_gfn..first_gfn + count as u64)
            .map(|g| if g >= self.guest_pages || self.holes.contains(&g) { -libc::ENOENT } else { 0 })
            .collect();
        Ok((MemfdFrames { base: ptr.cast(), len, counters: self.counters.clone() }, errors))
    }

    fn report_modified(&self, first_pfn: u64, nr: u32) {
        self.modified.lock().unwrap_or_else(|e| e.into_inner()).push((first_pfn, nr));
    }
}
