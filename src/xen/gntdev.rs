//! Thin unsafe layer over /dev/xen/gntdev: the frontend's ring pages
//! mapped into our address space, and request data moved with the
//! hypervisor's grant copy (no mapping per request: the copy checks the
//! grant, its domain and its page bounds itself and fails the segment with
//! a GNTST_* status otherwise).

use super::{Result, XenError};
use crate::pvblock::{GrantCopier, GrantError, Segment, SharedRing};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use xen_sys::*;

pub const GNTDEV_PATH: &str = "/dev/xen/gntdev";
/// Pages of a ring at most (`max-ring-page-order` 4, as Linux's blkback).
pub const MAX_RING_PAGES: usize = 16;

pub struct GrantDevice {
    file: File,
}

impl GrantDevice {
    pub fn open() -> Result<Arc<Self>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(GNTDEV_PATH)
            .map_err(|source| XenError::Open { path: GNTDEV_PATH, source })?;
        Ok(Arc::new(GrantDevice { file }))
    }

    fn ioctl(&self, request: u32, arg: *mut u8) -> io::Result<()> {
        // SAFETY: each caller passes a buffer laid out as the C struct the
        // ioctl number names (checked by xen-bindings' layout test), large
        // enough for the count it carries, and alive for the call.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, arg) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Map `refs` of `domid` as one contiguous read-write area.
    pub fn map(self: &Arc<Self>, domid: DomId, refs: &[GrantRef]) -> Result<GrantMapping> {
        if refs.is_empty() || refs.len() > MAX_RING_PAGES {
            return Err(XenError::Ioctl {
                what: "IOCTL_GNTDEV_MAP_GRANT_REF",
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        // Header (count, pad, index) then the refs, in u64 words for alignment.
        let mut words = vec![0u64; 2 + refs.len()];
        words[0] = refs.len() as u64; // count (low half), pad (high half)
        for (i, r) in refs.iter().enumerate() {
            words[2 + i] = u64::from(domid) | (u64::from(*r) << 32);
        }
        self.ioctl(IOCTL_GNTDEV_MAP_GRANT_REF, words.as_mut_ptr().cast())
            .map_err(|source| XenError::Ioctl { what: "IOCTL_GNTDEV_MAP_GRANT_REF", source })?;
        let index = words[1];
        let len = refs.len() * PAGE_SIZE;
        // SAFETY: a fresh shared mapping of the pages just granted at
        // `index`; nothing else refers to the returned range.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, self.file.as_raw_fd(), index as libc::off_t)
        };
        if ptr == libc::MAP_FAILED {
            let source = io::Error::last_os_error();
            self.unmap_index(index, refs.len());
            return Err(XenError::Mmap { pages: refs.len(), source });
        }
        Ok(GrantMapping { dev: self.clone(), ptr: ptr.cast(), len, index, pages: refs.len() })
    }

    fn unmap_index(&self, index: u64, pages: usize) {
        let mut arg = IoctlGntdevUnmapGrantRef { index, count: pages as u32, pad: 0 };
        if let Err(e) = self.ioctl(IOCTL_GNTDEV_UNMAP_GRANT_REF, (&mut arg as *mut IoctlGntdevUnmapGrantRef).cast()) {
            log::warn!("IOCTL_GNTDEV_UNMAP_GRANT_REF: {e}");
        }
    }

    /// One GRANT_COPY for every segment; per-segment statuses are checked.
    fn copy(&self, segs: &mut [IoctlGntdevGrantCopySegment]) -> std::result::Result<(), GrantError> {
        let mut arg = IoctlGntdevGrantCopy { count: segs.len() as u32, segments: segs.as_mut_ptr() as u64 };
        if let Err(e) = self.ioctl(IOCTL_GNTDEV_GRANT_COPY, (&mut arg as *mut IoctlGntdevGrantCopy).cast()) {
            log::warn!("IOCTL_GNTDEV_GRANT_COPY: {e}");
            return Err(GrantError { gref: 0, status: -1 });
        }
        for s in segs.iter() {
            if s.status != GNTST_OKAY {
                // SAFETY: the flags say which member is the foreign one.
                let gref = unsafe { if s.flags & GNTCOPY_SOURCE_GREF != 0 { s.source.foreign.ref_ } else { s.dest.foreign.ref_ } };
                return Err(GrantError { gref, status: s.status });
            }
        }
        Ok(())
    }
}

/// Granted pages mapped into our address space (the ring).
pub struct GrantMapping {
    dev: Arc<GrantDevice>,
    ptr: *mut u8,
    len: usize,
    index: u64,
    pages: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; every
// access goes through volatile loads and stores, never references.
unsafe impl Send for GrantMapping {}
// SAFETY: as above; concurrent accesses are single volatile operations.
unsafe impl Sync for GrantMapping {}

impl GrantMapping {
    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }
}

impl SharedRing for GrantMapping {
    fn len(&self) -> usize {
        self.len
    }
    fn load_u32(&self, offset: usize) -> u32 {
        if !self.in_bounds(offset, 4) || !offset.is_multiple_of(4) {
            return 0;
        }
        // SAFETY: in bounds and 4-aligned (the mapping is page-aligned).
        unsafe { std::ptr::read_volatile(self.ptr.add(offset).cast::<u32>()) }
    }
    fn store_u32(&self, offset: usize, value: u32) {
        if !self.in_bounds(offset, 4) || !offset.is_multiple_of(4) {
            return;
        }
        // SAFETY: in bounds and 4-aligned.
        unsafe { std::ptr::write_volatile(self.ptr.add(offset).cast::<u32>(), value) }
    }
    fn read(&self, offset: usize, dst: &mut [u8]) {
        if !self.in_bounds(offset, dst.len()) {
            dst.fill(0);
            return;
        }
        // SAFETY: in bounds of the live mapping; no reference points into it.
        unsafe { crate::vm::volatile::copy_from_guest(self.ptr.add(offset), dst) }
    }
    fn write(&self, offset: usize, src: &[u8]) {
        if !self.in_bounds(offset, src.len()) {
            return;
        }
        // SAFETY: as for read.
        unsafe { crate::vm::volatile::copy_to_guest(self.ptr.add(offset), src) }
    }
}

impl Drop for GrantMapping {
    fn drop(&mut self) {
        // SAFETY: the range mmap returned; no access can follow (we own it).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
        self.dev.unmap_index(self.index, self.pages);
    }
}

/// Grant copies to and from one frontend domain.
pub struct XenGrantCopier {
    pub dev: Arc<GrantDevice>,
    pub domid: DomId,
}

impl XenGrantCopier {
    fn segments(&self, segments: &[Segment], buf: *mut u8, buf_len: usize, to_grants: bool) -> Option<Vec<IoctlGntdevGrantCopySegment>> {
        let mut out = Vec::with_capacity(segments.len());
        let mut at = 0usize;
        for s in segments {
            let len = usize::from(s.len);
            if at + len > buf_len || usize::from(s.offset) + len > PAGE_SIZE {
                return None;
            }
            let foreign = GrantCopyPtr { foreign: GrantCopyForeign { ref_: s.gref, offset: s.offset, domid: self.domid } };
            let local = GrantCopyPtr { virt: buf as u64 + at as u64 };
            let (source, dest, flags) =
                if to_grants { (local, foreign, GNTCOPY_DEST_GREF) } else { (foreign, local, GNTCOPY_SOURCE_GREF) };
            out.push(IoctlGntdevGrantCopySegment { source, dest, len: s.len, flags, status: 0 });
            at += len;
        }
        Some(out)
    }
}

impl GrantCopier for XenGrantCopier {
    fn copy_from_grants(&self, segments: &[Segment], dst: &mut [u8]) -> std::result::Result<(), GrantError> {
        let mut segs = self.segments(segments, dst.as_mut_ptr(), dst.len(), false).ok_or(GrantError { gref: 0, status: -1 })?;
        self.dev.copy(&mut segs)
    }
    fn copy_to_grants(&self, segments: &[Segment], src: &[u8]) -> std::result::Result<(), GrantError> {
        // The kernel only reads from `src` for this direction.
        let mut segs = self.segments(segments, src.as_ptr() as *mut u8, src.len(), true).ok_or(GrantError { gref: 0, status: -1 })?;
        self.dev.copy(&mut segs)
    }
}
