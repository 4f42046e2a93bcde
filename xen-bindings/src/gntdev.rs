//! Linux `/dev/xen/gntdev` ioctls (`xen/sys/gntdev.h`) and the grant-table
//! constants they use (`xen/grant_table.h`).
//!
//! The qdisk backend maps the frontend's ring pages (MAP_GRANT_REF, then
//! mmap at the returned index) and moves request data with GRANT_COPY,
//! which copies between a granted page and our buffer in the hypervisor
//! without mapping anything.

use crate::ioc_none;
use core::mem::size_of;

/// Grant reference (`grant_ref_t`).
pub type GrantRef = u32;

/// One grant of a MAP_GRANT_REF request (`struct ioctl_gntdev_grant_ref`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IoctlGntdevGrantRef {
    pub domid: u32,
    pub ref_: GrantRef,
}

/// Header of `struct ioctl_gntdev_map_grant_ref`; the C struct ends in a
/// `refs[1]` array that the caller extends to `count` entries, so the
/// ioctl argument is this header followed directly by the refs.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IoctlGntdevMapGrantRefHeader {
    pub count: u32,
    pub pad: u32,
    /// Out: the offset to mmap the granted pages at.
    pub index: u64,
}

/// `struct ioctl_gntdev_map_grant_ref` with one ref (its C size, which the
/// ioctl number encodes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IoctlGntdevMapGrantRef {
    pub header: IoctlGntdevMapGrantRefHeader,
    pub refs: [IoctlGntdevGrantRef; 1],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IoctlGntdevUnmapGrantRef {
    pub index: u64,
    pub count: u32,
    pub pad: u32,
}

/// The foreign side of a grant-copy segment (the `foreign` member of the
/// C union; the other member is a process virtual address).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GrantCopyForeign {
    pub ref_: GrantRef,
    pub offset: u16,
    pub domid: u16,
}

/// `source` or `dest` of a segment: a virtual address or a foreign grant,
/// told apart by the segment's `flags`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union GrantCopyPtr {
    pub virt: u64,
    pub foreign: GrantCopyForeign,
}

impl Default for GrantCopyPtr {
    fn default() -> Self {
        GrantCopyPtr { virt: 0 }
    }
}

/// `struct ioctl_gntdev_grant_copy_segment`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct IoctlGntdevGrantCopySegment {
    pub source: GrantCopyPtr,
    pub dest: GrantCopyPtr,
    pub len: u16,
    /// `GNTCOPY_source_gref` / `GNTCOPY_dest_gref`.
    pub flags: u16,
    /// Out: `GNTST_okay` or a negative GNTST_* code.
    pub status: i16,
}

/// `struct ioctl_gntdev_grant_copy`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IoctlGntdevGrantCopy {
    pub count: u32,
    pub segments: u64,
}

pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;
pub const GNTST_OKAY: i16 = 0;

pub const IOCTL_GNTDEV_MAP_GRANT_REF: u32 = ioc_none(b'G', 0, size_of::<IoctlGntdevMapGrantRef>());
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 = ioc_none(b'G', 1, size_of::<IoctlGntdevUnmapGrantRef>());
pub const IOCTL_GNTDEV_GRANT_COPY: u32 = ioc_none(b'G', 8, size_of::<IoctlGntdevGrantCopy>());

const _: () = assert!(size_of::<IoctlGntdevGrantCopySegment>() == 24);
const _: () = assert!(size_of::<IoctlGntdevMapGrantRef>() == 24);
