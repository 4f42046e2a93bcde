//! Guest RAM for the qtest machine: one anonymous mapping of `-m` bytes at
//! guest-physical 0.
//!
//! The qtest client writes this memory (`write`, `memset`) while a DMA copy
//! may be running on another thread, so every access goes through the
//! volatile copies of `machine::volatile`. The mapping itself lives in an
//! `Arc` so that regions from `map_for_io` keep it mapped even if the
//! `AnonRam` is dropped first.

use crate::machine::volatile::{copy_from_guest, copy_to_guest};
use crate::machine::{DmaDirection, GuestIoRegion, GuestMemory, MemError};
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::Arc;

struct AnonMapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value for its whole life and is only
// accessed through raw pointers with volatile copies; nothing about it is
// tied to the thread that made it.
unsafe impl Send for AnonMapping {}
// SAFETY: as above; no Rust references into the mapping are handed out.
unsafe impl Sync for AnonMapping {}

impl Drop for AnonMapping {
    fn drop(&mut self) {
        // SAFETY: base/len describe the mapping made in AnonRam::new, unmapped
        // once, when the last holder (AnonRam or a GuestIoRegion) lets go.
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.len) };
    }
}

pub struct AnonRam {
    mapping: Arc<AnonMapping>,
}

impl AnonRam {
    pub fn new(len: usize) -> std::io::Result<Self> {
        let size = NonZeroUsize::new(len).ok_or_else(|| std::io::Error::other("RAM size must not be 0"))?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // affected and the result is checked.
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                size,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_PRIVATE | nix::sys::mman::MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(std::io::Error::from)?;
        Ok(AnonRam { mapping: Arc::new(AnonMapping { base: ptr.cast(), len }) })
    }

    pub fn len(&self) -> usize {
        self.mapping.len
    }

    pub fn is_empty(&self) -> bool {
        self.mapping.len == 0
    }

    /// Offset of `gpa..gpa+len` in the mapping, if it lies inside.
    fn offset(&self, gpa: u64, len: usize) -> Result<usize, MemError> {
        match gpa.checked_add(len as u64) {
            Some(end) if end <= self.mapping.len as u64 => Ok(gpa as usize),
            _ => Err(MemError::OutOfRange { gpa, len }),
        }
    }

    fn host(&self, off: usize) -> *mut u8 {
        // wrapping_add: `off <= len` (checked by the callers through
        // `offset`), so this is in or one past the mapping; no unsafe needed
        // to compute it.
        self.mapping.base.as_ptr().wrapping_add(off)
    }
}

impl GuestMemory for AnonRam {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = self.offset(gpa, buf.len())?;
        // SAFETY: off..off+len is inside the mapping (checked above), which
        // `self` keeps mapped for the call; no Rust reference points into it.
        unsafe { copy_from_guest(self.host(off), buf) };
        Ok(())
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let off = self.offset(gpa, data.len())?;
        // SAFETY: as in read; the destination range is inside the mapping.
        unsafe { copy_to_guest(self.host(off), data) };
        Ok(())
    }

    /// One host-contiguous slice; nothing to report for dirty logging
    /// (qtest has no migration), so `direction` does not matter.
    fn map_for_io(&self, gpa: u64, len: usize, _direction: DmaDirection) -> Result<GuestIoRegion, MemError> {
        let off = self.offset(gpa, len)?;
        let ptr = NonNull::new(self.host(off)).ok_or(MemError::OutOfRange { gpa, len })?;
        // SAFETY: off..off+len is inside the mapping, which the region keeps
        // alive through its clone of the Arc; only raw pointers and volatile
        // copies ever reach that memory.
        Ok(unsafe { GuestIoRegion::from_parts(gpa, [(ptr, len)], vec![self.mapping.clone()], None) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_at_the_end_and_on_overflow() {
        let ram = AnonRam::new(1 << 20).unwrap();
        ram.write(0xffff0, &[1, 2, 3]).unwrap();
        let mut b = [0u8; 3];
        ram.read(0xffff0, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert_eq!(ram.write((1 << 20) - 1, &[0, 0]), Err(MemError::OutOfRange { gpa: (1 << 20) - 1, len: 2 }));
        assert_eq!(ram.read(u64::MAX, &mut b), Err(MemError::OutOfRange { gpa: u64::MAX, len: 3 }));
    }

    #[test]
    fn map_for_io_checks_bounds_and_sees_the_same_bytes_as_read_write() {
        let ram = AnonRam::new(1 << 20).unwrap();
        for (gpa, len) in [(u64::MAX, 1usize), (u64::MAX - 3, 8), ((1 << 20) - 1, 2), (1 << 20, 1), ((1 << 20) + 1, 0)] {
            assert_eq!(ram.map_for_io(gpa, len, DmaDirection::ToDevice).unwrap_err(), MemError::OutOfRange { gpa, len });
        }
        let empty = ram.map_for_io(1 << 20, 0, DmaDirection::FromDevice).unwrap();
        assert!(empty.is_empty() && empty.iovecs().is_empty(), "zero length at the end maps nothing");

        ram.write(0x3000, b"guest").unwrap();
        let region = ram.map_for_io(0x2fff, 0x1002, DmaDirection::FromDevice).unwrap();
        let iov = region.iovecs();
        assert_eq!((iov.len(), iov[0].iov_len), (1, 0x1002));
        let mut seen = [0u8; 5];
        region.read_at(1, &mut seen).unwrap();
        assert_eq!(&seen, b"guest");
        region.write_at(0x1001, &[0xab]).unwrap();
        let mut b = [0u8; 1];
        ram.read(0x4000, &mut b).unwrap();
        assert_eq!(b, [0xab]);
    }

    /// The region keeps the RAM mapped after the AnonRam is gone, so a DMA
    /// in flight cannot fault.
    #[test]
    fn a_region_outlives_its_ram() {
        let ram = AnonRam::new(1 << 16).unwrap();
        ram.write(8, &[9; 4]).unwrap();
        let region = ram.map_for_io(0, 16, DmaDirection::ToDevice).unwrap();
        drop(ram);
        let mut b = [0u8; 4];
        region.read_at(8, &mut b).unwrap();
        assert_eq!(b, [9; 4]);
    }
}
