//! Thin unsafe layer over /dev/xen/privcmd: the DM_OP, RESTRICT,
//! MMAP_RESOURCE, MMAPBATCH_V2 and HYPERCALL (domctl only) ioctls, and the
//! mappings they create.

use super::{Result, XenError};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use xen_sys::*;

pub const PRIVCMD_PATH: &str = "/dev/xen/privcmd";

pub struct Privcmd {
    file: File,
}

/// Pages mapped from another domain through privcmd; unmapped on drop.
pub struct ForeignMapping {
    addr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; access
// goes through raw pointers whose users synchronise themselves (atomics
// for the ioreq pages, copies for guest RAM).
unsafe impl Send for ForeignMapping {}
// SAFETY: as above; `&ForeignMapping` only hands out raw pointers.
unsafe impl Sync for ForeignMapping {}

impl ForeignMapping {
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// View page `index` as `T` (an all-atomics mirror of a shared page).
    pub fn page_as<T: AtomicPageView>(&self, index: usize) -> &T {
        assert!(std::mem::size_of::<T>() <= PAGE_SIZE && std::mem::align_of::<T>() <= PAGE_SIZE);
        assert!((index + 1) * PAGE_SIZE <= self.len);
        // SAFETY: the page is mapped, page-aligned and large enough for T
        // (asserted); T is made only of atomics so any bit pattern and any
        // concurrent write by Xen is valid; the reference lives no longer
        // than `self`, which keeps the mapping alive.
        unsafe { &*(self.addr.as_ptr().add(index * PAGE_SIZE) as *const T) }
    }
}

/// Types made only of atomics (so any bit pattern and any concurrent write
/// by Xen is fine) that may overlay a shared page.
///
/// # Safety
/// Implementors must consist solely of atomic integers, without padding.
pub unsafe trait AtomicPageView {}

// SAFETY: `AtomicIoreq` is `#[repr(C)]` and made of atomic integers only,
// with no padding (its layout mirrors ioreq_t, checked at compile time).
unsafe impl AtomicPageView for [super::ioreq::AtomicIoreq; SHARED_IOPAGE_SLOTS] {}
// SAFETY: two AtomicU32 then AtomicU64 slots at offset 8, no padding.
unsafe impl AtomicPageView for super::ioreq::AtomicBufferedIopage {}

impl Drop for ForeignMapping {
    fn drop(&mut self) {
        // SAFETY: addr/len are exactly what mmap returned; no reference into
        // the mapping outlives self (page_as borrows from self).
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}

impl Privcmd {
    pub fn open() -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(PRIVCMD_PATH)
            .map_err(|source| XenError::Open { path: PRIVCMD_PATH, source })?;
        Ok(Privcmd { file })
    }

    /// One dm_op hypercall: buffer 0 is `op`, buffer 1 (if any) `extra`.
    pub fn dm_op(&self, domid: DomId, op: &mut XenDmOp, extra: Option<&mut [u8]>) -> io::Result<()> {
        let mut bufs = [
            PrivcmdDmOpBuf { uptr: (op as *mut XenDmOp).cast(), size: std::mem::size_of::<XenDmOp>() },
            PrivcmdDmOpBuf { uptr: std::ptr::null_mut(), size: 0 },
        ];
        let mut num = 1u16;
        if let Some(extra) = extra {
            bufs[1] = PrivcmdDmOpBuf { uptr: extra.as_mut_ptr().cast(), size: extra.len() };
            num = 2;
        }
        let arg = PrivcmdDmOp { dom: domid, num, ubufs: bufs.as_ptr() };
        // SAFETY: `arg` points at `num` valid buffer descriptors whose
        // memory (`op`, `extra`) is exclusively borrowed for the call; the
        // kernel copies in and out within the given sizes.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_PRIVCMD_DM_OP as _, &arg) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One domctl hypercall; `domctl` is read and written back by Xen.
    /// Errors carry Xen's errno (EACCES: another interface version; EPERM:
    /// this descriptor is restricted, or XSM said no).
    pub fn domctl(&self, domctl: &mut XenDomctl) -> io::Result<()> {
        // Xen reads the argument through dom0's page tables and answers
        // EFAULT instead of faulting a page in, so the argument lives in a
        // page of its own, locked, as libxencall's buffers are. A pause is
        // rare: one page per call is cheaper than keeping one.
        let len = PAGE_SIZE;
        // SAFETY: a fresh private anonymous mapping; the kernel picks the
        // address, so nothing existing is replaced.
        let page = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if page == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `page` is our own mapping of `len` bytes.
        let locked = unsafe { libc::mlock(page, len) } == 0;
        let arg = page.cast::<XenDomctl>();
        // SAFETY: the page is writable, page-aligned (so aligned for
        // XenDomctl) and larger than it; nothing else refers to it.
        unsafe { arg.write(*domctl) };
        let call = PrivcmdHypercall { op: HYPERVISOR_DOMCTL, arg: [arg as u64, 0, 0, 0, 0] };
        // SAFETY: HYPERCALL runs the hypercall with `call`'s arguments;
        // domctl reads and writes one xen_domctl_t at arg[0], which points
        // at our page, live until the munmap below.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_PRIVCMD_HYPERCALL as _, &call) };
        let result = if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
        // SAFETY: as for the write; Xen is done with the page.
        *domctl = unsafe { arg.read() };
        if locked {
            // SAFETY: unlocks exactly the range locked above.
            unsafe { libc::munlock(page, len) };
        }
        // SAFETY: `page`/`len` are what mmap returned; no reference into
        // the page survives (the value was copied out).
        unsafe { libc::munmap(page, len) };
        result
    }

    /// Limit this descriptor to one domain (dm_restrict).
    pub fn restrict(&self, domid: DomId) -> io::Result<()> {
        let dom = domid;
        // SAFETY: RESTRICT reads one domid_t from the pointer we pass.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_PRIVCMD_RESTRICT as _, &dom) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn mmap_pages(&self, pages: usize) -> Result<ForeignMapping> {
        let len = pages.checked_mul(PAGE_SIZE).ok_or(XenError::Mmap { pages, source: io::Error::from_raw_os_error(libc::EINVAL) })?;
        // SAFETY: a fresh shared mapping of the privcmd device; the kernel
        // picks the address, so nothing existing is replaced.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, self.file.as_raw_fd(), 0)
        };
        if addr == libc::MAP_FAILED {
            return Err(XenError::Mmap { pages, source: io::Error::last_os_error() });
        }
        let addr = NonNull::new(addr.cast::<u8>()).ok_or(XenError::Mmap { pages, source: io::Error::from_raw_os_error(libc::ENOMEM) })?;
        Ok(ForeignMapping { addr, len })
    }

    /// Map `num` frames of a resource (e.g. the ioreq server pages). Errors
    /// keep the errno so callers can tell "not supported" (EOPNOTSUPP/ENOTTY)
    /// from real failures.
    pub fn mmap_resource(&self, domid: DomId, type_: u32, id: u32, idx: u32, num: usize) -> std::result::Result<ForeignMapping, io::Error> {
        let mapping = self.mmap_pages(num).map_err(|e| match e {
            XenError::Mmap { source, .. } => source,
            other => io::Error::other(other.to_string()),
        })?;
        let arg = PrivcmdMmapResource { dom: domid, type_, id, idx, num: num as u64, addr: mapping.as_ptr() as u64 };
        // SAFETY: `addr` is our own privcmd mapping of exactly `num` pages,
        // which the kernel populates; `arg` is a valid struct for the call.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_PRIVCMD_MMAP_RESOURCE as _, &arg) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(mapping)
    }

    /// Map guest frames; per-page errors (negative errno, 0 = mapped) come
    /// back beside the mapping. Pages with an error must not be touched:
    /// they are left unpopulated and would fault.
    pub fn mmap_batch(&self, domid: DomId, gfns: &[XenPfn]) -> Result<(ForeignMapping, Vec<i32>)> {
        let mapping = self.mmap_pages(gfns.len())?;
        let mut errs = vec![0i32; gfns.len()];
        let arg = PrivcmdMmapBatchV2 {
            num: gfns.len() as u32,
            dom: domid,
            addr: mapping.as_ptr() as u64,
            arr: gfns.as_ptr(),
            err: errs.as_mut_ptr(),
        };
        // SAFETY: `addr` is our privcmd mapping of gfns.len() pages; `arr`
        // and `err` point at gfns.len() elements each, live for the call.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_PRIVCMD_MMAPBATCH_V2 as _, &arg) };
        if rc < 0 {
            let source = io::Error::last_os_error();
            // ENOENT means "some pages are paged out", reported in errs.
            if source.raw_os_error() != Some(libc::ENOENT) {
                return Err(XenError::Ioctl { what: "IOCTL_PRIVCMD_MMAPBATCH_V2", source });
            }
        }
        Ok((mapping, errs))
    }
}
