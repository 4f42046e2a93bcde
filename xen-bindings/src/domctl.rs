//! The one domctl a device model uses: pause/unpause of its domain, for a
//! hold that stops the whole guest (werror=stop), sent through privcmd's
//! generic hypercall ioctl.
//!
//! Unlike dm_op, domctl is versioned: Xen answers EACCES unless
//! `interface_version` is exactly its own `XEN_DOMCTL_INTERFACE_VERSION`.
//! Read in xen.git `xen/include/public/domctl.h` at each release: 0x15 in
//! Xen 4.17, 0x16 in 4.18, 0x17 from 4.19 ("Last version bump: Xen 4.19",
//! unchanged through 4.21), 0x18 on the 4.22 development branch. The
//! layout of the fields used here (cmd, version, domain, and an empty
//! union for pause) is the same in every one of them, so callers try
//! [`XEN_DOMCTL_INTERFACE_VERSIONS`] in turn and keep the first one Xen
//! accepts.

use core::mem::size_of;

/// `__HYPERVISOR_domctl` (xen.h).
pub const HYPERVISOR_DOMCTL: u64 = 36;

pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;

/// Interface versions of Xen 4.17 .. 4.22, oldest first.
pub const XEN_DOMCTL_INTERFACE_VERSIONS: [u32; 4] = [0x15, 0x16, 0x17, 0x18];

/// Size of the C union `xen_domctl.u` (its `pad[128]` member).
pub const XEN_DOMCTL_UNION_SIZE: usize = 128;

/// `struct xen_domctl` with the union as raw bytes (pause and unpause
/// carry no payload). Xen copies all 144 bytes in and back out.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct XenDomctl {
    pub cmd: u32,
    pub interface_version: u32,
    pub domain: u16,
    pub _pad: [u16; 3],
    pub u: DomctlUnion,
}

/// The union storage, 8-byte aligned like the C union (it holds u64s).
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy)]
pub struct DomctlUnion(pub [u8; XEN_DOMCTL_UNION_SIZE]);

impl XenDomctl {
    pub fn new(cmd: u32, interface_version: u32, domain: u16) -> Self {
        XenDomctl { cmd, interface_version, domain, _pad: [0; 3], u: DomctlUnion([0; XEN_DOMCTL_UNION_SIZE]) }
    }
}

/// `privcmd_hypercall_t` (Linux xen/sys/privcmd.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PrivcmdHypercall {
    pub op: u64,
    pub arg: [u64; 5],
}

pub const IOCTL_PRIVCMD_HYPERCALL: u32 = crate::ioc_none(b'P', 0, size_of::<PrivcmdHypercall>());

const _: () = assert!(size_of::<XenDomctl>() == 16 + XEN_DOMCTL_UNION_SIZE);
const _: () = assert!(size_of::<PrivcmdHypercall>() == 48);
