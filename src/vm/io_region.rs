//! Host views of guest memory for zero-copy I/O: what
//! [`GuestMemory::map_for_io`](super::GuestMemory::map_for_io) returns.
//!
//! # Contract for users of the pointers
//! * Each slice is valid for reads and writes of its length until the
//!   region is dropped: the region holds a reference on every mapping it
//!   points into, so neither an INVALIDATE nor a cache eviction unmaps them
//!   while it lives (they are unmapped when the last holder lets go).
//! * The guest may read and write the same memory at any time. Never make a
//!   Rust reference (`&[u8]`, `&mut [u8]`, `IoSliceMut`) out of a slice:
//!   hand the raw [`iovecs`](GuestIoRegion::iovecs) to the kernel
//!   (`libc::preadv`/`pwritev`), or copy with
//!   [`read_at`](GuestIoRegion::read_at)/[`write_at`](GuestIoRegion::write_at),
//!   which use volatile accesses.
//! * After an INVALIDATE the pages may no longer be the guest's (ballooned
//!   out): I/O through a region mapped before it still lands in memory we
//!   own, never elsewhere, as a DMA in flight on real hardware would.

use super::volatile::{copy_from_guest, copy_to_guest};
use super::MemError;
use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

/// Which way data moves between a device and guest memory (QEMU's
/// DMADirection): `FromDevice` writes guest memory, so its pages are
/// reported to dirty logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaDirection {
    /// The device reads guest memory (a disk write).
    ToDevice,
    /// The device writes guest memory (a disk read).
    FromDevice,
}

/// Keeps a mapping alive; the mapping is unmapped when the last one drops.
pub type KeepAlive = Arc<dyn Any + Send + Sync>;

/// Host memory covering one guest-physical range, in the order of the
/// range, split where the host addresses are not contiguous.
pub struct GuestIoRegion {
    gpa: u64,
    len: usize,
    slices: Vec<(NonNull<u8>, usize)>,
    /// Runs before `_keep_alive` is released (dirty logging).
    on_drop: Option<Box<dyn FnOnce() + Send>>,
    _keep_alive: Vec<KeepAlive>,
}

// SAFETY: the pointers refer to mappings owned by `_keep_alive` (which are
// Send + Sync) and not to anything tied to the creating thread; `on_drop`
// is Send.
unsafe impl Send for GuestIoRegion {}
// SAFETY: through `&GuestIoRegion` one only gets copies of the pointers and
// volatile copies, both fine from several threads at once; `on_drop` (the
// one non-Sync field) is touched only by `Drop`, which has `&mut self`.
unsafe impl Sync for GuestIoRegion {}

impl GuestIoRegion {
    /// A region of no bytes at `gpa`.
    pub fn empty(gpa: u64) -> Self {
        GuestIoRegion { gpa, len: 0, slices: Vec::new(), on_drop: None, _keep_alive: Vec::new() }
    }

    /// Assemble a region; zero-length slices are dropped and slices that
    /// continue each other in host memory are merged.
    ///
    /// # Safety
    /// Every `(ptr, len)` must be valid for reads and writes of `len` bytes
    /// for as long as all of `keep_alive` lives, and no Rust reference may
    /// point into that memory.
    pub unsafe fn from_parts(
        gpa: u64,
        slices: impl IntoIterator<Item = (NonNull<u8>, usize)>,
        keep_alive: Vec<KeepAlive>,
        on_drop: Option<Box<dyn FnOnce() + Send>>,
    ) -> Self {
        let mut merged: Vec<(NonNull<u8>, usize)> = Vec::new();
        let mut len = 0usize;
        for (ptr, n) in slices.into_iter().filter(|&(_, n)| n != 0) {
            len += n;
            if let Some(last) = merged.last_mut() {
                if (last.0.as_ptr() as usize).checked_add(last.1) == Some(ptr.as_ptr() as usize) {
                    last.1 += n;
                    continue;
                }
            }
            merged.push((ptr, n));
        }
        GuestIoRegion { gpa, len, slices: merged, on_drop, _keep_alive: keep_alive }
    }

    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// Bytes covered (the `len` asked for).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host pieces, in guest order. See the module doc for what the
    /// pointers may be used for.
    pub fn slices(&self) -> impl Iterator<Item = (*mut u8, usize)> + '_ {
        self.slices.iter().map(|&(p, n)| (p.as_ptr(), n))
    }

    /// The pieces as iovecs for preadv/pwritev. Valid while `self` lives.
    pub fn iovecs(&self) -> Vec<libc::iovec> {
        self.slices().map(|(p, n)| libc::iovec { iov_base: p.cast(), iov_len: n }).collect()
    }

    /// Volatile copy of `buf.len()` bytes at `offset` into the region.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemError> {
        let mut done = 0;
        self.walk(offset, buf.len(), |ptr, range| {
            // SAFETY: `walk` hands out sub-ranges of slices that are valid
            // while `self` (and so `_keep_alive`) lives, which it does for
            // the whole call.
            unsafe { copy_from_guest(ptr, &mut buf[range.clone()]) };
            done = range.end;
        })?;
        debug_assert_eq!(done, buf.len());
        Ok(())
    }

    /// Volatile copy of `data` into the region at `offset`.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), MemError> {
        self.walk(offset, data.len(), |ptr, range| {
            // SAFETY: as in read_at.
            unsafe { copy_to_guest(ptr, &data[range]) };
        })
    }

    /// Volatile copy of as much of `data` as fits in the region from
    /// `offset` on; returns the bytes copied (0 past the end). For callers
    /// that split one buffer over several regions and cannot be out of
    /// range by construction.
    pub fn write_some(&self, offset: usize, data: &[u8]) -> usize {
        let n = data.len().min(self.len.saturating_sub(offset));
        match self.write_at(offset, &data[..n]) {
            Ok(()) => n,
            Err(_) => 0,
        }
    }

    /// Volatile copy of as much of the region from `offset` on as fits in
    /// `buf`; returns the bytes copied (0 past the end).
    pub fn read_some(&self, offset: usize, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.len.saturating_sub(offset));
        match self.read_at(offset, &mut buf[..n]) {
            Ok(()) => n,
            Err(_) => 0,
        }
    }

    /// Run `f(host_ptr, buffer_range)` over the pieces of `offset..offset+len`.
    fn walk(&self, offset: usize, len: usize, mut f: impl FnMut(*mut u8, std::ops::Range<usize>)) -> Result<(), MemError> {
        let gpa = self.gpa.wrapping_add(offset as u64);
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {}
            _ => return Err(MemError::OutOfRange { gpa, len }),
        }
        let (mut skip, mut done) = (offset, 0usize);
        for &(ptr, n) in &self.slices {
            if done == len {
                break;
            }
            if skip >= n {
                skip -= n;
                continue;
            }
            let take = (n - skip).min(len - done);
            // SAFETY: skip < n: the pointer stays inside this slice.
            let p = unsafe { ptr.as_ptr().add(skip) };
            f(p, done..done + take);
            done += take;
            skip = 0;
        }
        Ok(())
    }
}

impl Drop for GuestIoRegion {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

impl std::fmt::Debug for GuestIoRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestIoRegion")
            .field("gpa", &format_args!("{:#x}", self.gpa))
            .field("len", &self.len)
            .field("slices", &self.slices.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Two host buffers that are not adjacent, and one adjacent to the
    /// first, as the pieces of one region.
    #[test]
    fn pieces_merge_when_contiguous_and_offsets_cross_them() {
        let a: KeepAlive = Arc::new(std::sync::Mutex::new(()));
        let mut buf = vec![0u8; 64];
        let mut other = vec![0u8; 16];
        let base = NonNull::new(buf.as_mut_ptr()).unwrap();
        let second = NonNull::new(base.as_ptr().wrapping_add(32)).unwrap();
        let far = NonNull::new(other.as_mut_ptr()).unwrap();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        // SAFETY: all three pieces lie in `buf`/`other`, which outlive the
        // region and are not borrowed while it lives.
        let region = unsafe {
            GuestIoRegion::from_parts(
                0x1000,
                [(base, 32), (second, 32), (far, 0), (far, 16)],
                vec![a],
                Some(Box::new(move || flag.store(true, Ordering::SeqCst))),
            )
        };
        assert_eq!((region.len(), region.slices().count()), (80, 2), "adjacent pieces merged, empty one dropped");
        let iov = region.iovecs();
        assert_eq!((iov[0].iov_len, iov[1].iov_len), (64, 16));
        let data: Vec<u8> = (1..=20).collect();
        region.write_at(58, &data).unwrap();
        let mut back = [0u8; 20];
        region.read_at(58, &mut back).unwrap();
        assert_eq!(back.to_vec(), data);
        assert_eq!(region.read_at(70, &mut [0; 11]), Err(MemError::OutOfRange { gpa: 0x1000 + 70, len: 11 }));
        assert_eq!(region.write_at(usize::MAX, &[1]), Err(MemError::OutOfRange { gpa: 0x1000u64.wrapping_add(usize::MAX as u64), len: 1 }));
        assert_eq!(region.write_some(75, &[9; 10]), 5, "clamped at the region's end");
        assert_eq!((region.write_some(80, &[9]), region.write_some(usize::MAX, &[9])), (0, 0));
        let mut tail = [0u8; 10];
        assert_eq!(region.read_some(75, &mut tail), 5);
        assert_eq!(&tail[..6], &[9, 9, 9, 9, 9, 0]);
        region.write_at(58, &data).unwrap();
        drop(region);
        assert!(dropped.load(Ordering::SeqCst));
        assert_eq!(&buf[58..64], &data[..6]);
        assert_eq!(&other[..14], &data[6..]);
    }
}
