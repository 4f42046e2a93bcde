//! Guest RAM for the qtest machine: one anonymous mapping of `-m` bytes at
//! guest-physical 0.

use crate::machine::{GuestMemory, MemError};
use std::num::NonZeroUsize;
use std::ptr::NonNull;

pub struct AnonRam {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value for its whole life and only
// accessed through bounds-checked copies; concurrent guest-memory access
// is inherent to emulated DMA and is done with plain byte copies.
unsafe impl Send for AnonRam {}
// SAFETY: as above; no references into the mapping are ever handed out.
unsafe impl Sync for AnonRam {}

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
        Ok(AnonRam { base: ptr.cast(), len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn offset(&self, gpa: u64, len: usize) -> Result<usize, MemError> {
        match gpa.checked_add(len as u64) {
            Some(end) if end <= self.len as u64 => Ok(gpa as usize),
            _ => Err(MemError::OutOfRange { gpa, len }),
        }
    }
}

impl GuestMemory for AnonRam {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = self.offset(gpa, buf.len())?;
        // SAFETY: off..off+len is inside the mapping (checked above) and
        // `buf` is a distinct Rust allocation.
        unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let off = self.offset(gpa, data.len())?;
        // SAFETY: as in read; the destination range is inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(off), data.len()) };
        Ok(())
    }
}

impl Drop for AnonRam {
    fn drop(&mut self) {
        // SAFETY: base/len describe the mapping made in new(), unmapped once.
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.len) };
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
        assert!(ram.write((1 << 20) - 1, &[0, 0]).is_err());
        assert!(ram.read(u64::MAX, &mut b).is_err());
    }
}
