//! Raw Xen ABI used by xen-ioemu: the ioreq pages, the `dm_op` structures a
//! device model sends, and the Linux privcmd / evtchn ioctls that carry them.
//!
//! # Why raw ioctls instead of the stable C libraries
//!
//! libxendevicemodel, libxenforeignmemory and libxenevtchn are, on Linux,
//! thin wrappers over exactly these ioctls on `/dev/xen/privcmd` and
//! `/dev/xen/evtchn` (libxendevicemodel only falls back to raw hypercalls on
//! kernels older than 4.11). Talking to the devices directly means:
//!
//! * no link-time dependency: the binary runs on a host (or in a
//!   `dm_restrict` chroot) that has no libxen*.so, and one build serves
//!   Xen 4.17 to 4.21 because the dm_op and ioreq ABI is stable (only
//!   domctl is versioned; the one we use, pause/unpause, is probed, see
//!   [`domctl`]);
//! * nothing hidden: every structure the hypervisor reads is defined here and
//!   its layout is checked against Debian's libxen-dev headers by
//!   `tests/layout.rs`;
//! * restricting (`IOCTL_PRIVCMD_RESTRICT`, `IOCTL_EVTCHN_RESTRICT_DOMID`) is
//!   one ioctl per descriptor we own, no xentoolcore callback registry.
//!
//! The price is that a future kernel ioctl change would have to be followed
//! here; these ioctls have been unchanged since Linux 4.18.
//!
//! Everything in this crate is plain data: no `unsafe`, no system calls.
//! Layouts are for x86_64 Linux (the only host Debian ships Xen x86 tools for).

#![no_std]

use core::mem::size_of;

pub mod blkif;
pub mod console;
pub mod domctl;
pub mod gntdev;
pub use domctl::*;
pub use gntdev::*;

/// Xen domain id (`domid_t`).
pub type DomId = u16;
/// Ioreq server id (`ioservid_t`).
pub type IoServId = u16;
/// Event channel port (`evtchn_port_t`).
pub type EvtchnPort = u32;
/// Guest frame number as privcmd takes it (`xen_pfn_t` = unsigned long on x86_64).
pub type XenPfn = u64;

pub const PAGE_SIZE: usize = 4096;
pub const PAGE_SHIFT: u32 = 12;

// ---------------------------------------------------------------- ioreq.h

pub const STATE_IOREQ_NONE: u8 = 0;
pub const STATE_IOREQ_READY: u8 = 1;
pub const STATE_IOREQ_INPROCESS: u8 = 2;
pub const STATE_IORESP_READY: u8 = 3;

pub const IOREQ_WRITE: u8 = 0;
pub const IOREQ_READ: u8 = 1;

pub const IOREQ_TYPE_PIO: u8 = 0;
pub const IOREQ_TYPE_COPY: u8 = 1;
pub const IOREQ_TYPE_PCI_CONFIG: u8 = 2;
pub const IOREQ_TYPE_TIMEOFFSET: u8 = 7;
pub const IOREQ_TYPE_INVALIDATE: u8 = 8;

pub const IOREQ_BUFFER_SLOT_NUM: usize = 511;

/// One synchronous request slot (`struct ioreq`, 32 bytes). Byte 30 holds
/// the C bitfields `state:4, data_is_ptr:1, dir:1, df:1, _pad1:1`; use the
/// accessors rather than the raw byte.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ioreq {
    pub addr: u64,
    pub data: u64,
    pub count: u32,
    pub size: u32,
    pub vp_eport: u32,
    pub _pad0: u16,
    pub flags: u8,
    pub type_: u8,
}

/// Byte offset of the state/data_is_ptr/dir/df byte inside [`Ioreq`].
pub const IOREQ_FLAGS_OFFSET: usize = 30;

const IOREQ_STATE_MASK: u8 = 0x0f;
const IOREQ_DATA_IS_PTR_BIT: u8 = 1 << 4;
const IOREQ_DIR_BIT: u8 = 1 << 5;
const IOREQ_DF_BIT: u8 = 1 << 6;

impl Ioreq {
    pub fn state(&self) -> u8 {
        state_of_flags(self.flags)
    }
    pub fn data_is_ptr(&self) -> bool {
        self.flags & IOREQ_DATA_IS_PTR_BIT != 0
    }
    /// [`IOREQ_READ`] or [`IOREQ_WRITE`].
    pub fn dir(&self) -> u8 {
        u8::from(self.flags & IOREQ_DIR_BIT != 0)
    }
    pub fn df(&self) -> bool {
        self.flags & IOREQ_DF_BIT != 0
    }
    pub fn set_state(&mut self, state: u8) {
        self.flags = with_state(self.flags, state);
    }
    pub fn set_data_is_ptr(&mut self, on: bool) {
        self.flags = set_bit(self.flags, IOREQ_DATA_IS_PTR_BIT, on);
    }
    pub fn set_dir(&mut self, dir: u8) {
        self.flags = set_bit(self.flags, IOREQ_DIR_BIT, dir != 0);
    }
    pub fn set_df(&mut self, on: bool) {
        self.flags = set_bit(self.flags, IOREQ_DF_BIT, on);
    }
}

/// The state nibble of a flags byte read from a live slot.
pub const fn state_of_flags(flags: u8) -> u8 {
    flags & IOREQ_STATE_MASK
}

/// `flags` with its state nibble replaced, the other bits kept.
pub const fn with_state(flags: u8, state: u8) -> u8 {
    (flags & !IOREQ_STATE_MASK) | (state & IOREQ_STATE_MASK)
}

const fn set_bit(flags: u8, bit: u8, on: bool) -> u8 {
    if on {
        flags | bit
    } else {
        flags & !bit
    }
}

/// Slots in the one synchronous page (`struct shared_iopage`): one per vCPU,
/// 4096 / 32 = 128 = HVM_MAX_VCPUS.
pub const SHARED_IOPAGE_SLOTS: usize = PAGE_SIZE / size_of::<Ioreq>();

#[repr(C)]
pub struct SharedIopage {
    pub vcpu_ioreq: [Ioreq; SHARED_IOPAGE_SLOTS],
}

/// One buffered write (`struct buf_ioreq`, 8 bytes). Word 0 holds the C
/// bitfields `type:8, pad:1, dir:1, size:2, addr:20`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufIoreq {
    pub word0: u32,
    pub data: u32,
}

impl BufIoreq {
    pub fn type_(&self) -> u8 {
        (self.word0 & 0xff) as u8
    }
    pub fn dir(&self) -> u8 {
        ((self.word0 >> 9) & 1) as u8
    }
    /// Encoded size: 0 -> 1 byte, 1 -> 2, 2 -> 4, 3 -> 8 (two slots).
    pub fn size_code(&self) -> u8 {
        ((self.word0 >> 10) & 3) as u8
    }
    pub fn size_bytes(&self) -> u8 {
        1 << self.size_code()
    }
    pub fn addr(&self) -> u32 {
        self.word0 >> 12
    }
    pub fn new(type_: u8, dir: u8, size_code: u8, addr: u32, data: u32) -> Self {
        BufIoreq {
            word0: u32::from(type_)
                | (u32::from(dir & 1) << 9)
                | (u32::from(size_code & 3) << 10)
                | ((addr & 0xf_ffff) << 12),
            data,
        }
    }
}

/// `struct buffered_iopage` (4096 bytes). Xen may replace both pointers with
/// one 64-bit compare-and-swap, so consumers access them atomically.
#[repr(C)]
pub struct BufferedIopage {
    pub read_pointer: u32,
    pub write_pointer: u32,
    pub buf_ioreq: [BufIoreq; IOREQ_BUFFER_SLOT_NUM],
}

// ---------------------------------------------------------------- hvm_op.h / memory.h / sched.h

pub const HVM_IOREQSRV_BUFIOREQ_OFF: u8 = 0;
pub const HVM_IOREQSRV_BUFIOREQ_LEGACY: u8 = 1;
pub const HVM_IOREQSRV_BUFIOREQ_ATOMIC: u8 = 2;

pub const XENMEM_RESOURCE_IOREQ_SERVER: u32 = 0;
pub const XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ: u32 = 0;
/// `XENMEM_resource_ioreq_server_frame_ioreq(n)`.
pub const fn xenmem_resource_ioreq_server_frame_ioreq(n: u32) -> u32 {
    1 + n
}

pub const SHUTDOWN_POWEROFF: u32 = 0;
pub const SHUTDOWN_REBOOT: u32 = 1;

// ---------------------------------------------------------------- dm_op.h

pub const XEN_DMOP_CREATE_IOREQ_SERVER: u32 = 1;
pub const XEN_DMOP_GET_IOREQ_SERVER_INFO: u32 = 2;
pub const XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER: u32 = 3;
pub const XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER: u32 = 4;
pub const XEN_DMOP_SET_IOREQ_SERVER_STATE: u32 = 5;
pub const XEN_DMOP_DESTROY_IOREQ_SERVER: u32 = 6;
pub const XEN_DMOP_SET_PCI_INTX_LEVEL: u32 = 8;
pub const XEN_DMOP_SET_ISA_IRQ_LEVEL: u32 = 9;
pub const XEN_DMOP_SET_PCI_LINK_ROUTE: u32 = 10;
pub const XEN_DMOP_MODIFIED_MEMORY: u32 = 11;
pub const XEN_DMOP_REMOTE_SHUTDOWN: u32 = 16;
pub const XEN_DMOP_NR_VCPUS: u32 = 20;

pub const XEN_DMOP_NO_GFNS: u16 = 1;

pub const XEN_DMOP_IO_RANGE_PORT: u32 = 0;
pub const XEN_DMOP_IO_RANGE_MEMORY: u32 = 1;
pub const XEN_DMOP_IO_RANGE_PCI: u32 = 2;

/// `XEN_DMOP_PCI_SBDF(s, b, d, f)`: the start/end value of a PCI range.
pub const fn xen_dmop_pci_sbdf(seg: u16, bus: u8, dev: u8, func: u8) -> u64 {
    ((seg as u64) << 16) | ((bus as u64) << 8) | (((dev & 0x1f) as u64) << 3) | ((func & 7) as u64)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpCreateIoreqServer {
    pub handle_bufioreq: u8,
    pub pad: [u8; 3],
    pub id: IoServId,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpGetIoreqServerInfo {
    pub id: IoServId,
    pub flags: u16,
    pub bufioreq_port: EvtchnPort,
    pub ioreq_gfn: u64,
    pub bufioreq_gfn: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpIoreqServerRange {
    pub id: IoServId,
    pub pad: u16,
    pub type_: u32,
    pub start: u64,
    pub end: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpSetIoreqServerState {
    pub id: IoServId,
    pub enabled: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpDestroyIoreqServer {
    pub id: IoServId,
    pub pad: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpSetPciIntxLevel {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub intx: u8,
    pub level: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpSetIsaIrqLevel {
    pub isa_irq: u8,
    pub level: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpSetPciLinkRoute {
    pub link: u8,
    pub isa_irq: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpModifiedMemory {
    pub nr_extents: u32,
    pub opaque: u32,
}

/// Passed in dm_op buffer 1 (an array of them) with [`DmOpModifiedMemory`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmOpModifiedMemoryExtent {
    pub nr: u32,
    pub pad: u32,
    pub first_pfn: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpRemoteShutdown {
    pub reason: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpNrVcpus {
    pub vcpus: u32,
}

/// Size of the C union `xen_dm_op.u` (its largest member, inject_event, is 24 bytes).
pub const XEN_DM_OP_UNION_SIZE: usize = 24;

/// `struct xen_dm_op`: `op`, padding, then the union as raw bytes. Fill it
/// with [`XenDmOp::new`] and read results back with [`XenDmOp::payload`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct XenDmOp {
    pub op: u32,
    pub pad: u32,
    pub u: DmOpUnion,
}

/// The union storage, 8-byte aligned like the C union (it holds u64 fields).
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy)]
pub struct DmOpUnion(pub [u8; XEN_DM_OP_UNION_SIZE]);

/// Marker for the plain-old-data payloads that may live in the dm_op union:
/// `#[repr(C)]`, no padding the hypervisor could misread as a field, every
/// bit pattern valid, and at most [`XEN_DM_OP_UNION_SIZE`] bytes.
pub trait DmOpPayload: Copy + Default {
    /// The `XEN_DMOP_*` number this payload goes with.
    const OP: u32;
    /// Little-endian bytes of the payload.
    fn to_bytes(&self, out: &mut [u8]);
    fn from_bytes(bytes: &[u8]) -> Self;
}

macro_rules! le_fields {
    ($ty:ty, $op:expr, $($field:ident : $fty:ty),* $(,)?) => {
        impl DmOpPayload for $ty {
            const OP: u32 = $op;
            fn to_bytes(&self, out: &mut [u8]) {
                $( {
                    let off = core::mem::offset_of!($ty, $field);
                    out[off..off + size_of::<$fty>()].copy_from_slice(&self.$field.to_le_bytes());
                } )*
            }
            fn from_bytes(bytes: &[u8]) -> Self {
                let mut v = <$ty>::default();
                $( {
                    let mut raw = [0u8; size_of::<$fty>()];
                    let off = core::mem::offset_of!($ty, $field);
                    raw.copy_from_slice(&bytes[off..off + size_of::<$fty>()]);
                    v.$field = <$fty>::from_le_bytes(raw);
                } )*
                v
            }
        }
    };
}

le_fields!(DmOpCreateIoreqServer, XEN_DMOP_CREATE_IOREQ_SERVER,
    handle_bufioreq: u8, id: u16);
le_fields!(DmOpGetIoreqServerInfo, XEN_DMOP_GET_IOREQ_SERVER_INFO,
    id: u16, flags: u16, bufioreq_port: u32, ioreq_gfn: u64, bufioreq_gfn: u64);
le_fields!(DmOpSetIoreqServerState, XEN_DMOP_SET_IOREQ_SERVER_STATE,
    id: u16, enabled: u8);
le_fields!(DmOpDestroyIoreqServer, XEN_DMOP_DESTROY_IOREQ_SERVER, id: u16);
le_fields!(DmOpSetPciIntxLevel, XEN_DMOP_SET_PCI_INTX_LEVEL,
    domain: u16, bus: u8, device: u8, intx: u8, level: u8);
le_fields!(DmOpSetIsaIrqLevel, XEN_DMOP_SET_ISA_IRQ_LEVEL, isa_irq: u8, level: u8);
le_fields!(DmOpSetPciLinkRoute, XEN_DMOP_SET_PCI_LINK_ROUTE, link: u8, isa_irq: u8);
le_fields!(DmOpIoreqServerRange, XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER,
    id: u16, type_: u32, start: u64, end: u64);
le_fields!(DmOpModifiedMemory, XEN_DMOP_MODIFIED_MEMORY, nr_extents: u32, opaque: u32);
le_fields!(DmOpRemoteShutdown, XEN_DMOP_REMOTE_SHUTDOWN, reason: u32);
le_fields!(DmOpNrVcpus, XEN_DMOP_NR_VCPUS, vcpus: u32);

/// Map and unmap share one payload layout but not one op number, so the
/// range payload is tagged by direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpMapIoRange(pub DmOpIoreqServerRange);
#[derive(Debug, Clone, Copy, Default)]
pub struct DmOpUnmapIoRange(pub DmOpIoreqServerRange);

macro_rules! range_payload {
    ($ty:ty, $op:expr) => {
        impl DmOpPayload for $ty {
            const OP: u32 = $op;
            fn to_bytes(&self, out: &mut [u8]) {
                self.0.to_bytes(out)
            }
            fn from_bytes(bytes: &[u8]) -> Self {
                Self(DmOpIoreqServerRange::from_bytes(bytes))
            }
        }
    };
}
range_payload!(DmOpMapIoRange, XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER);
range_payload!(DmOpUnmapIoRange, XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER);

impl XenDmOp {
    pub fn new<P: DmOpPayload>(payload: &P) -> Self {
        let mut u = [0u8; XEN_DM_OP_UNION_SIZE];
        payload.to_bytes(&mut u);
        XenDmOp { op: P::OP, pad: 0, u: DmOpUnion(u) }
    }

    /// The union read back as `P` (for OUT fields after the ioctl).
    pub fn payload<P: DmOpPayload>(&self) -> P {
        P::from_bytes(&self.u.0)
    }
}

// ---------------------------------------------------------------- Linux privcmd (xen/sys/privcmd.h)

/// `struct privcmd_dm_op_buf`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PrivcmdDmOpBuf {
    pub uptr: *mut core::ffi::c_void,
    pub size: usize,
}

/// `struct privcmd_dm_op`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PrivcmdDmOp {
    pub dom: DomId,
    pub num: u16,
    pub ubufs: *const PrivcmdDmOpBuf,
}

/// `struct privcmd_mmapbatch_v2`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PrivcmdMmapBatchV2 {
    pub num: u32,
    pub dom: DomId,
    pub addr: u64,
    pub arr: *const XenPfn,
    pub err: *mut i32,
}

/// `struct privcmd_mmap_resource`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PrivcmdMmapResource {
    pub dom: DomId,
    pub type_: u32,
    pub id: u32,
    pub idx: u32,
    pub num: u64,
    pub addr: u64,
}

/// Linux `_IOC(_IOC_NONE, ty, nr, size)` (x86 encoding: dir bits 30-31 = 0,
/// size bits 16-29, type bits 8-15, number bits 0-7).
pub const fn ioc_none(ty: u8, nr: u8, size: usize) -> u32 {
    ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

pub const IOCTL_PRIVCMD_MMAPBATCH_V2: u32 = ioc_none(b'P', 4, size_of::<PrivcmdMmapBatchV2>());
pub const IOCTL_PRIVCMD_DM_OP: u32 = ioc_none(b'P', 5, size_of::<PrivcmdDmOp>());
pub const IOCTL_PRIVCMD_RESTRICT: u32 = ioc_none(b'P', 6, size_of::<DomId>());
pub const IOCTL_PRIVCMD_MMAP_RESOURCE: u32 = ioc_none(b'P', 7, size_of::<PrivcmdMmapResource>());

/// MMAPBATCH_V2 per-page error meaning "paged out, try again".
pub const PRIVCMD_ENOENT: i32 = -2;

// ---------------------------------------------------------------- Linux evtchn (xen/sys/evtchn.h)

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IoctlEvtchnBindInterdomain {
    pub remote_domain: u32,
    pub remote_port: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IoctlEvtchnUnbind {
    pub port: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IoctlEvtchnNotify {
    pub port: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IoctlEvtchnRestrictDomid {
    pub domid: DomId,
}

pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u32 = ioc_none(b'E', 1, size_of::<IoctlEvtchnBindInterdomain>());
pub const IOCTL_EVTCHN_UNBIND: u32 = ioc_none(b'E', 3, size_of::<IoctlEvtchnUnbind>());
pub const IOCTL_EVTCHN_NOTIFY: u32 = ioc_none(b'E', 4, size_of::<IoctlEvtchnNotify>());
pub const IOCTL_EVTCHN_RESET: u32 = ioc_none(b'E', 5, 0);
pub const IOCTL_EVTCHN_RESTRICT_DOMID: u32 = ioc_none(b'E', 6, size_of::<IoctlEvtchnRestrictDomid>());

// Compile-time guards for the sizes the hypervisor and kernel rely on; the
// layout test checks every offset against the C headers.
const _: () = assert!(size_of::<Ioreq>() == 32);
const _: () = assert!(size_of::<SharedIopage>() == PAGE_SIZE);
const _: () = assert!(size_of::<BufIoreq>() == 8);
const _: () = assert!(size_of::<BufferedIopage>() == PAGE_SIZE);
const _: () = assert!(size_of::<XenDmOp>() == 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioreq_flag_accessors_round_trip_each_bit() {
        let mut r = Ioreq::default();
        r.set_state(STATE_IOREQ_READY);
        r.set_dir(IOREQ_READ);
        r.set_df(true);
        assert_eq!(r.flags, 0x01 | 0x20 | 0x40);
        r.set_data_is_ptr(true);
        assert!(r.data_is_ptr() && r.df() && r.dir() == IOREQ_READ);
        r.set_state(STATE_IORESP_READY);
        assert_eq!(r.state(), STATE_IORESP_READY);
        assert_eq!(r.flags & 0xf0, 0x70, "state change must keep the other bits");
        r.set_dir(IOREQ_WRITE);
        assert_eq!(r.dir(), IOREQ_WRITE);
    }

    #[test]
    fn buf_ioreq_packs_like_the_c_bitfields() {
        let b = BufIoreq::new(IOREQ_TYPE_PIO, IOREQ_WRITE, 2, 0xabcde, 7);
        assert_eq!(b.word0, 0xabcde << 12 | 2 << 10);
        assert_eq!((b.type_(), b.dir(), b.size_bytes(), b.addr()), (0, 0, 4, 0xabcde));
    }

    #[test]
    fn dm_op_payload_round_trips_through_the_union() {
        let info = DmOpGetIoreqServerInfo { id: 3, flags: XEN_DMOP_NO_GFNS, bufioreq_port: 0x1234_5678, ioreq_gfn: 9, bufioreq_gfn: u64::MAX };
        let op = XenDmOp::new(&info);
        assert_eq!(op.op, XEN_DMOP_GET_IOREQ_SERVER_INFO);
        let back: DmOpGetIoreqServerInfo = op.payload();
        assert_eq!((back.id, back.flags, back.bufioreq_port, back.ioreq_gfn, back.bufioreq_gfn), (3, 1, 0x1234_5678, 9, u64::MAX));
        let range = DmOpMapIoRange(DmOpIoreqServerRange { id: 1, pad: 0, type_: XEN_DMOP_IO_RANGE_PCI, start: xen_dmop_pci_sbdf(0, 0, 1, 1), end: 0xfeed_0000_0000 });
        let op = XenDmOp::new(&range);
        let back: DmOpMapIoRange = op.payload();
        assert_eq!((back.0.id, back.0.type_, back.0.start, back.0.end), (1, 2, 0x9, 0xfeed_0000_0000));
    }
}
