//! Checks every struct size, field offset and constant of xen-sys against
//! the C headers: Debian's libxen-dev (`/usr/include/xen/...`, including
//! `xen/sys/privcmd.h` and `xen/sys/evtchn.h`, which carry the Linux ioctl
//! structures). A C program printing `name value` lines is generated,
//! compiled with gcc and run; the test fails when the headers or gcc are
//! missing, because a skipped layout check would prove nothing.
//!
//! `buf_ioreq_t` and the `ioreq_t` flags byte are C bitfields, which have no
//! offset; their bit positions are checked by setting each field in C and
//! printing the raw bytes.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::process::Command;
use xen_sys::*;

const C_PRELUDE: &str = r#"
#define __XEN_TOOLS__ 1
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <xen/xen.h>
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/event_channel.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/ioreq.h>
#include <xen/hvm/dm_op.h>
#include <xen/sys/privcmd.h>
#include <xen/sys/evtchn.h>
#include <xen/sys/gntdev.h>
#include <xen/grant_table.h>
#include <xen/io/console.h>
#include <xen/io/blkif.h>
#include <xen/io/xenbus.h>
/* The x86_32 ABI of blkif: the same structs with 64-bit fields 4-aligned,
   as QEMU and Linux backends declare them. */
#pragma pack(push, 4)
#define blkif_request_segment blkif32_request_segment
#define blkif_request blkif32_request
#define blkif_request_discard blkif32_request_discard
#define blkif_request_indirect blkif32_request_indirect
#define blkif_request_other blkif32_request_other
#define blkif_response blkif32_response
#define blkif_request_t blkif32_request_t
#define blkif_request_discard_t blkif32_request_discard_t
#define blkif_request_indirect_t blkif32_request_indirect_t
#define blkif_response_t blkif32_response_t
#define blkif_sring blkif32_sring
#define blkif_sring_entry blkif32_sring_entry
#define blkif_front_ring blkif32_front_ring
#define blkif_back_ring blkif32_back_ring
#define blkif_sring_t blkif32_sring_t
#define blkif_front_ring_t blkif32_front_ring_t
#define blkif_back_ring_t blkif32_back_ring_t
#undef __XEN_PUBLIC_IO_BLKIF_H__
#include <xen/io/blkif.h>
#pragma pack(pop)
#undef blkif_request_segment
#undef blkif_request
#undef blkif_request_discard
#undef blkif_request_indirect
#undef blkif_request_other
#undef blkif_response
#undef blkif_request_t
#undef blkif_request_discard_t
#undef blkif_request_indirect_t
#undef blkif_response_t
#undef blkif_sring
#undef blkif_sring_entry
#undef blkif_front_ring
#undef blkif_back_ring
#undef blkif_sring_t
#undef blkif_front_ring_t
#undef blkif_back_ring_t
#include <xen/domctl.h>
#include <xenctrl.h>
#define P(name, expr) printf("%s %llu\n", name, (unsigned long long)(expr))
#define S(t) P("size " #t, sizeof(t))
#define O(t, f) P("off " #t "." #f, offsetof(t, f))
int main(void) {
"#;

/// (key, value in Rust, C expression). Keys are shared by both sides.
fn expectations() -> Vec<(String, u64, String)> {
    let mut v: Vec<(String, u64, String)> = Vec::new();
    macro_rules! size {
        ($rust:ty, $c:literal) => {
            v.push((format!("size {}", $c), size_of::<$rust>() as u64, format!("sizeof({})", $c)));
        };
    }
    macro_rules! off {
        ($rust:ty, $rf:ident, $c:literal, $cf:literal) => {
            v.push((format!("off {}.{}", $c, $cf), offset_of!($rust, $rf) as u64, format!("offsetof({}, {})", $c, $cf)));
        };
    }
    macro_rules! constant {
        ($rust:expr, $c:literal) => {
            v.push((format!("const {}", $c), ($rust) as u64, format!("{}", $c)));
        };
    }

    size!(Ioreq, "ioreq_t");
    off!(Ioreq, addr, "ioreq_t", "addr");
    off!(Ioreq, data, "ioreq_t", "data");
    off!(Ioreq, count, "ioreq_t", "count");
    off!(Ioreq, size, "ioreq_t", "size");
    off!(Ioreq, vp_eport, "ioreq_t", "vp_eport");
    off!(Ioreq, _pad0, "ioreq_t", "_pad0");
    off!(Ioreq, type_, "ioreq_t", "type");
    constant!(IOREQ_FLAGS_OFFSET, "offsetof(ioreq_t, _pad0) + 2");
    // C declares vcpu_ioreq[1] (a page-sized array in practice): compare the
    // stride of the array, and our full-page size against the page size.
    constant!(offset_of!(SharedIopage, vcpu_ioreq) + size_of::<Ioreq>(), "offsetof(shared_iopage_t, vcpu_ioreq[1])");
    constant!(size_of::<SharedIopage>(), "XC_PAGE_SIZE");
    constant!(SHARED_IOPAGE_SLOTS, "XC_PAGE_SIZE / sizeof(ioreq_t)");
    size!(BufIoreq, "buf_ioreq_t");
    off!(BufIoreq, data, "buf_ioreq_t", "data");
    size!(BufferedIopage, "buffered_iopage_t");
    off!(BufferedIopage, read_pointer, "buffered_iopage_t", "read_pointer");
    off!(BufferedIopage, write_pointer, "buffered_iopage_t", "write_pointer");
    off!(BufferedIopage, buf_ioreq, "buffered_iopage_t", "buf_ioreq");

    constant!(STATE_IOREQ_NONE, "STATE_IOREQ_NONE");
    constant!(STATE_IOREQ_READY, "STATE_IOREQ_READY");
    constant!(STATE_IOREQ_INPROCESS, "STATE_IOREQ_INPROCESS");
    constant!(STATE_IORESP_READY, "STATE_IORESP_READY");
    constant!(IOREQ_READ, "IOREQ_READ");
    constant!(IOREQ_WRITE, "IOREQ_WRITE");
    constant!(IOREQ_TYPE_PIO, "IOREQ_TYPE_PIO");
    constant!(IOREQ_TYPE_COPY, "IOREQ_TYPE_COPY");
    constant!(IOREQ_TYPE_PCI_CONFIG, "IOREQ_TYPE_PCI_CONFIG");
    constant!(IOREQ_TYPE_TIMEOFFSET, "IOREQ_TYPE_TIMEOFFSET");
    constant!(IOREQ_TYPE_INVALIDATE, "IOREQ_TYPE_INVALIDATE");
    constant!(IOREQ_BUFFER_SLOT_NUM, "IOREQ_BUFFER_SLOT_NUM");
    constant!(PAGE_SIZE, "XC_PAGE_SIZE + 0");
    constant!(PAGE_SHIFT, "XC_PAGE_SHIFT");

    constant!(HVM_IOREQSRV_BUFIOREQ_OFF, "HVM_IOREQSRV_BUFIOREQ_OFF");
    constant!(HVM_IOREQSRV_BUFIOREQ_LEGACY, "HVM_IOREQSRV_BUFIOREQ_LEGACY");
    constant!(HVM_IOREQSRV_BUFIOREQ_ATOMIC, "HVM_IOREQSRV_BUFIOREQ_ATOMIC");
    constant!(XENMEM_RESOURCE_IOREQ_SERVER, "XENMEM_resource_ioreq_server");
    constant!(XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ, "XENMEM_resource_ioreq_server_frame_bufioreq");
    constant!(xenmem_resource_ioreq_server_frame_ioreq(0), "XENMEM_resource_ioreq_server_frame_ioreq(0)");
    constant!(xenmem_resource_ioreq_server_frame_ioreq(5), "XENMEM_resource_ioreq_server_frame_ioreq(5)");
    constant!(SHUTDOWN_POWEROFF, "SHUTDOWN_poweroff");
    constant!(SHUTDOWN_REBOOT, "SHUTDOWN_reboot");

    constant!(XEN_DMOP_CREATE_IOREQ_SERVER, "XEN_DMOP_create_ioreq_server");
    constant!(XEN_DMOP_GET_IOREQ_SERVER_INFO, "XEN_DMOP_get_ioreq_server_info");
    constant!(XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER, "XEN_DMOP_map_io_range_to_ioreq_server");
    constant!(XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER, "XEN_DMOP_unmap_io_range_from_ioreq_server");
    constant!(XEN_DMOP_SET_IOREQ_SERVER_STATE, "XEN_DMOP_set_ioreq_server_state");
    constant!(XEN_DMOP_DESTROY_IOREQ_SERVER, "XEN_DMOP_destroy_ioreq_server");
    constant!(XEN_DMOP_SET_PCI_INTX_LEVEL, "XEN_DMOP_set_pci_intx_level");
    constant!(XEN_DMOP_SET_ISA_IRQ_LEVEL, "XEN_DMOP_set_isa_irq_level");
    constant!(XEN_DMOP_SET_PCI_LINK_ROUTE, "XEN_DMOP_set_pci_link_route");
    constant!(XEN_DMOP_MODIFIED_MEMORY, "XEN_DMOP_modified_memory");
    constant!(XEN_DMOP_REMOTE_SHUTDOWN, "XEN_DMOP_remote_shutdown");
    constant!(XEN_DMOP_NR_VCPUS, "XEN_DMOP_nr_vcpus");
    constant!(XEN_DMOP_NO_GFNS, "XEN_DMOP_no_gfns");
    constant!(XEN_DMOP_IO_RANGE_PORT, "XEN_DMOP_IO_RANGE_PORT");
    constant!(XEN_DMOP_IO_RANGE_MEMORY, "XEN_DMOP_IO_RANGE_MEMORY");
    constant!(XEN_DMOP_IO_RANGE_PCI, "XEN_DMOP_IO_RANGE_PCI");
    constant!(xen_dmop_pci_sbdf(0x1234, 0xab, 0x1f, 7), "XEN_DMOP_PCI_SBDF(0x1234, 0xab, 0x1f, 7)");
    constant!(xen_dmop_pci_sbdf(0, 0, 1, 1), "XEN_DMOP_PCI_SBDF(0, 0, 1, 1)");

    size!(XenDmOp, "struct xen_dm_op");
    off!(XenDmOp, op, "struct xen_dm_op", "op");
    off!(XenDmOp, pad, "struct xen_dm_op", "pad");
    off!(XenDmOp, u, "struct xen_dm_op", "u");
    constant!(XEN_DM_OP_UNION_SIZE, "sizeof(((struct xen_dm_op *)0)->u)");
    constant!(std::mem::align_of::<DmOpUnion>(), "_Alignof(((struct xen_dm_op *)0)->u)");

    size!(DmOpCreateIoreqServer, "xen_dm_op_create_ioreq_server_t");
    off!(DmOpCreateIoreqServer, handle_bufioreq, "xen_dm_op_create_ioreq_server_t", "handle_bufioreq");
    off!(DmOpCreateIoreqServer, pad, "xen_dm_op_create_ioreq_server_t", "pad");
    off!(DmOpCreateIoreqServer, id, "xen_dm_op_create_ioreq_server_t", "id");
    size!(DmOpGetIoreqServerInfo, "xen_dm_op_get_ioreq_server_info_t");
    off!(DmOpGetIoreqServerInfo, id, "xen_dm_op_get_ioreq_server_info_t", "id");
    off!(DmOpGetIoreqServerInfo, flags, "xen_dm_op_get_ioreq_server_info_t", "flags");
    off!(DmOpGetIoreqServerInfo, bufioreq_port, "xen_dm_op_get_ioreq_server_info_t", "bufioreq_port");
    off!(DmOpGetIoreqServerInfo, ioreq_gfn, "xen_dm_op_get_ioreq_server_info_t", "ioreq_gfn");
    off!(DmOpGetIoreqServerInfo, bufioreq_gfn, "xen_dm_op_get_ioreq_server_info_t", "bufioreq_gfn");
    size!(DmOpIoreqServerRange, "xen_dm_op_ioreq_server_range_t");
    off!(DmOpIoreqServerRange, id, "xen_dm_op_ioreq_server_range_t", "id");
    off!(DmOpIoreqServerRange, pad, "xen_dm_op_ioreq_server_range_t", "pad");
    off!(DmOpIoreqServerRange, type_, "xen_dm_op_ioreq_server_range_t", "type");
    off!(DmOpIoreqServerRange, start, "xen_dm_op_ioreq_server_range_t", "start");
    off!(DmOpIoreqServerRange, end, "xen_dm_op_ioreq_server_range_t", "end");
    size!(DmOpSetIoreqServerState, "xen_dm_op_set_ioreq_server_state_t");
    off!(DmOpSetIoreqServerState, id, "xen_dm_op_set_ioreq_server_state_t", "id");
    off!(DmOpSetIoreqServerState, enabled, "xen_dm_op_set_ioreq_server_state_t", "enabled");
    off!(DmOpSetIoreqServerState, pad, "xen_dm_op_set_ioreq_server_state_t", "pad");
    size!(DmOpDestroyIoreqServer, "xen_dm_op_destroy_ioreq_server_t");
    off!(DmOpDestroyIoreqServer, id, "xen_dm_op_destroy_ioreq_server_t", "id");
    off!(DmOpDestroyIoreqServer, pad, "xen_dm_op_destroy_ioreq_server_t", "pad");
    size!(DmOpSetPciIntxLevel, "xen_dm_op_set_pci_intx_level_t");
    off!(DmOpSetPciIntxLevel, domain, "xen_dm_op_set_pci_intx_level_t", "domain");
    off!(DmOpSetPciIntxLevel, bus, "xen_dm_op_set_pci_intx_level_t", "bus");
    off!(DmOpSetPciIntxLevel, device, "xen_dm_op_set_pci_intx_level_t", "device");
    off!(DmOpSetPciIntxLevel, intx, "xen_dm_op_set_pci_intx_level_t", "intx");
    off!(DmOpSetPciIntxLevel, level, "xen_dm_op_set_pci_intx_level_t", "level");
    size!(DmOpSetIsaIrqLevel, "xen_dm_op_set_isa_irq_level_t");
    off!(DmOpSetIsaIrqLevel, isa_irq, "xen_dm_op_set_isa_irq_level_t", "isa_irq");
    off!(DmOpSetIsaIrqLevel, level, "xen_dm_op_set_isa_irq_level_t", "level");
    size!(DmOpSetPciLinkRoute, "xen_dm_op_set_pci_link_route_t");
    off!(DmOpSetPciLinkRoute, link, "xen_dm_op_set_pci_link_route_t", "link");
    off!(DmOpSetPciLinkRoute, isa_irq, "xen_dm_op_set_pci_link_route_t", "isa_irq");
    size!(DmOpModifiedMemory, "xen_dm_op_modified_memory_t");
    off!(DmOpModifiedMemory, nr_extents, "xen_dm_op_modified_memory_t", "nr_extents");
    off!(DmOpModifiedMemory, opaque, "xen_dm_op_modified_memory_t", "opaque");
    size!(DmOpModifiedMemoryExtent, "struct xen_dm_op_modified_memory_extent");
    off!(DmOpModifiedMemoryExtent, nr, "struct xen_dm_op_modified_memory_extent", "nr");
    off!(DmOpModifiedMemoryExtent, pad, "struct xen_dm_op_modified_memory_extent", "pad");
    off!(DmOpModifiedMemoryExtent, first_pfn, "struct xen_dm_op_modified_memory_extent", "first_pfn");
    size!(DmOpRemoteShutdown, "xen_dm_op_remote_shutdown_t");
    off!(DmOpRemoteShutdown, reason, "xen_dm_op_remote_shutdown_t", "reason");
    size!(DmOpNrVcpus, "xen_dm_op_nr_vcpus_t");
    off!(DmOpNrVcpus, vcpus, "xen_dm_op_nr_vcpus_t", "vcpus");

    size!(PrivcmdDmOpBuf, "privcmd_dm_op_buf_t");
    off!(PrivcmdDmOpBuf, uptr, "privcmd_dm_op_buf_t", "uptr");
    off!(PrivcmdDmOpBuf, size, "privcmd_dm_op_buf_t", "size");
    size!(PrivcmdDmOp, "privcmd_dm_op_t");
    off!(PrivcmdDmOp, dom, "privcmd_dm_op_t", "dom");
    off!(PrivcmdDmOp, num, "privcmd_dm_op_t", "num");
    off!(PrivcmdDmOp, ubufs, "privcmd_dm_op_t", "ubufs");
    size!(PrivcmdMmapBatchV2, "privcmd_mmapbatch_v2_t");
    off!(PrivcmdMmapBatchV2, num, "privcmd_mmapbatch_v2_t", "num");
    off!(PrivcmdMmapBatchV2, dom, "privcmd_mmapbatch_v2_t", "dom");
    off!(PrivcmdMmapBatchV2, addr, "privcmd_mmapbatch_v2_t", "addr");
    off!(PrivcmdMmapBatchV2, arr, "privcmd_mmapbatch_v2_t", "arr");
    off!(PrivcmdMmapBatchV2, err, "privcmd_mmapbatch_v2_t", "err");
    size!(PrivcmdMmapResource, "privcmd_mmap_resource_t");
    off!(PrivcmdMmapResource, dom, "privcmd_mmap_resource_t", "dom");
    off!(PrivcmdMmapResource, type_, "privcmd_mmap_resource_t", "type");
    off!(PrivcmdMmapResource, id, "privcmd_mmap_resource_t", "id");
    off!(PrivcmdMmapResource, idx, "privcmd_mmap_resource_t", "idx");
    off!(PrivcmdMmapResource, num, "privcmd_mmap_resource_t", "num");
    off!(PrivcmdMmapResource, addr, "privcmd_mmap_resource_t", "addr");
    constant!(size_of::<XenPfn>(), "sizeof(xen_pfn_t)");
    constant!(size_of::<DomId>(), "sizeof(domid_t)");
    constant!(size_of::<IoServId>(), "sizeof(ioservid_t)");
    constant!(size_of::<EvtchnPort>(), "sizeof(evtchn_port_t)");
    constant!(IOCTL_PRIVCMD_MMAPBATCH_V2, "IOCTL_PRIVCMD_MMAPBATCH_V2");
    constant!(IOCTL_PRIVCMD_DM_OP, "IOCTL_PRIVCMD_DM_OP");
    constant!(IOCTL_PRIVCMD_RESTRICT, "IOCTL_PRIVCMD_RESTRICT");
    constant!(IOCTL_PRIVCMD_MMAP_RESOURCE, "IOCTL_PRIVCMD_MMAP_RESOURCE");
    size!(PrivcmdHypercall, "privcmd_hypercall_t");
    off!(PrivcmdHypercall, op, "privcmd_hypercall_t", "op");
    off!(PrivcmdHypercall, arg, "privcmd_hypercall_t", "arg");
    constant!(IOCTL_PRIVCMD_HYPERCALL, "IOCTL_PRIVCMD_HYPERCALL");

    size!(XenDomctl, "xen_domctl_t");
    off!(XenDomctl, cmd, "xen_domctl_t", "cmd");
    off!(XenDomctl, interface_version, "xen_domctl_t", "interface_version");
    off!(XenDomctl, domain, "xen_domctl_t", "domain");
    off!(XenDomctl, u, "xen_domctl_t", "u");
    constant!(size_of::<DomctlUnion>(), "sizeof(((xen_domctl_t *)0)->u)");
    constant!(HYPERVISOR_DOMCTL, "__HYPERVISOR_domctl");
    constant!(XEN_DOMCTL_PAUSEDOMAIN, "XEN_DOMCTL_pausedomain");
    constant!(XEN_DOMCTL_UNPAUSEDOMAIN, "XEN_DOMCTL_unpausedomain");
    // The headers are Debian's 4.17, the oldest release the list starts with.
    constant!(XEN_DOMCTL_INTERFACE_VERSIONS[0], "XEN_DOMCTL_INTERFACE_VERSION");

    size!(IoctlEvtchnBindInterdomain, "struct ioctl_evtchn_bind_interdomain");
    off!(IoctlEvtchnBindInterdomain, remote_domain, "struct ioctl_evtchn_bind_interdomain", "remote_domain");
    off!(IoctlEvtchnBindInterdomain, remote_port, "struct ioctl_evtchn_bind_interdomain", "remote_port");
    size!(IoctlEvtchnUnbind, "struct ioctl_evtchn_unbind");
    off!(IoctlEvtchnUnbind, port, "struct ioctl_evtchn_unbind", "port");
    size!(IoctlEvtchnNotify, "struct ioctl_evtchn_notify");
    off!(IoctlEvtchnNotify, port, "struct ioctl_evtchn_notify", "port");
    size!(IoctlEvtchnRestrictDomid, "struct ioctl_evtchn_restrict_domid");
    off!(IoctlEvtchnRestrictDomid, domid, "struct ioctl_evtchn_restrict_domid", "domid");
    constant!(IOCTL_EVTCHN_BIND_INTERDOMAIN, "IOCTL_EVTCHN_BIND_INTERDOMAIN");
    constant!(IOCTL_EVTCHN_UNBIND, "IOCTL_EVTCHN_UNBIND");
    constant!(IOCTL_EVTCHN_NOTIFY, "IOCTL_EVTCHN_NOTIFY");
    constant!(IOCTL_EVTCHN_RESET, "IOCTL_EVTCHN_RESET");
    constant!(IOCTL_EVTCHN_RESTRICT_DOMID, "IOCTL_EVTCHN_RESTRICT_DOMID");

    size!(IoctlGntdevGrantRef, "struct ioctl_gntdev_grant_ref");
    off!(IoctlGntdevGrantRef, domid, "struct ioctl_gntdev_grant_ref", "domid");
    off!(IoctlGntdevGrantRef, ref_, "struct ioctl_gntdev_grant_ref", "ref");
    size!(IoctlGntdevMapGrantRef, "struct ioctl_gntdev_map_grant_ref");
    constant!(offset_of!(IoctlGntdevMapGrantRef, header) + offset_of!(IoctlGntdevMapGrantRefHeader, count), "offsetof(struct ioctl_gntdev_map_grant_ref, count)");
    constant!(offset_of!(IoctlGntdevMapGrantRef, header) + offset_of!(IoctlGntdevMapGrantRefHeader, index), "offsetof(struct ioctl_gntdev_map_grant_ref, index)");
    constant!(offset_of!(IoctlGntdevMapGrantRef, refs), "offsetof(struct ioctl_gntdev_map_grant_ref, refs)");
    constant!(size_of::<IoctlGntdevMapGrantRefHeader>(), "offsetof(struct ioctl_gntdev_map_grant_ref, refs[0])");
    size!(IoctlGntdevUnmapGrantRef, "struct ioctl_gntdev_unmap_grant_ref");
    off!(IoctlGntdevUnmapGrantRef, index, "struct ioctl_gntdev_unmap_grant_ref", "index");
    off!(IoctlGntdevUnmapGrantRef, count, "struct ioctl_gntdev_unmap_grant_ref", "count");
    size!(IoctlGntdevGrantCopySegment, "struct ioctl_gntdev_grant_copy_segment");
    off!(IoctlGntdevGrantCopySegment, source, "struct ioctl_gntdev_grant_copy_segment", "source");
    off!(IoctlGntdevGrantCopySegment, dest, "struct ioctl_gntdev_grant_copy_segment", "dest");
    off!(IoctlGntdevGrantCopySegment, len, "struct ioctl_gntdev_grant_copy_segment", "len");
    off!(IoctlGntdevGrantCopySegment, flags, "struct ioctl_gntdev_grant_copy_segment", "flags");
    off!(IoctlGntdevGrantCopySegment, status, "struct ioctl_gntdev_grant_copy_segment", "status");
    constant!(offset_of!(GrantCopyForeign, ref_), "offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.ref)");
    constant!(offset_of!(GrantCopyForeign, offset), "offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.offset)");
    constant!(offset_of!(GrantCopyForeign, domid), "offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.domid)");
    size!(IoctlGntdevGrantCopy, "struct ioctl_gntdev_grant_copy");
    off!(IoctlGntdevGrantCopy, count, "struct ioctl_gntdev_grant_copy", "count");
    off!(IoctlGntdevGrantCopy, segments, "struct ioctl_gntdev_grant_copy", "segments");
    constant!(IOCTL_GNTDEV_MAP_GRANT_REF, "IOCTL_GNTDEV_MAP_GRANT_REF");
    constant!(IOCTL_GNTDEV_UNMAP_GRANT_REF, "IOCTL_GNTDEV_UNMAP_GRANT_REF");
    constant!(IOCTL_GNTDEV_GRANT_COPY, "IOCTL_GNTDEV_GRANT_COPY");
    constant!(GNTCOPY_SOURCE_GREF, "GNTCOPY_source_gref");
    constant!(GNTCOPY_DEST_GREF, "GNTCOPY_dest_gref");
    constant!(GNTST_OKAY, "GNTST_okay");

    {
        use xen_sys::blkif::*;
        constant!(BLKIF_OP_READ, "BLKIF_OP_READ");
        constant!(BLKIF_OP_WRITE, "BLKIF_OP_WRITE");
        constant!(BLKIF_OP_WRITE_BARRIER, "BLKIF_OP_WRITE_BARRIER");
        constant!(BLKIF_OP_FLUSH_DISKCACHE, "BLKIF_OP_FLUSH_DISKCACHE");
        constant!(BLKIF_OP_DISCARD, "BLKIF_OP_DISCARD");
        constant!(BLKIF_OP_INDIRECT, "BLKIF_OP_INDIRECT");
        constant!(BLKIF_RSP_EOPNOTSUPP as i64, "(long long)BLKIF_RSP_EOPNOTSUPP");
        constant!(BLKIF_RSP_ERROR as i64, "(long long)BLKIF_RSP_ERROR");
        constant!(BLKIF_RSP_OKAY, "BLKIF_RSP_OKAY");
        constant!(BLKIF_MAX_SEGMENTS_PER_REQUEST, "BLKIF_MAX_SEGMENTS_PER_REQUEST");
        constant!(BLKIF_DISCARD_SECURE, "BLKIF_DISCARD_SECURE");
        constant!(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, "BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST");
        constant!(SEGMENT_SIZE, "sizeof(struct blkif_request_segment)");
        constant!(SEGMENT_GREF, "offsetof(struct blkif_request_segment, gref)");
        constant!(SEGMENT_FIRST_SECT, "offsetof(struct blkif_request_segment, first_sect)");
        constant!(SEGMENT_LAST_SECT, "offsetof(struct blkif_request_segment, last_sect)");
        constant!(SRING_REQ_PROD, "offsetof(struct blkif_sring, req_prod)");
        constant!(SRING_REQ_EVENT, "offsetof(struct blkif_sring, req_event)");
        constant!(SRING_RSP_PROD, "offsetof(struct blkif_sring, rsp_prod)");
        constant!(SRING_RSP_EVENT, "offsetof(struct blkif_sring, rsp_event)");
        constant!(SRING_ENTRIES, "offsetof(struct blkif_sring, ring)");
        constant!(SRING_ENTRIES, "offsetof(struct blkif32_sring, ring)");
        constant!(ring_entries(4096, BLKIF_X86_64.entry_size()), "__CONST_RING_SIZE(blkif, 4096)");
        constant!(ring_entries(4096, BLKIF_X86_32.entry_size()), "__CONST_RING_SIZE(blkif32, 4096)");
        constant!(ring_entries(4096 << 4, BLKIF_X86_64.entry_size()), "__CONST_RING_SIZE(blkif, 4096 << 4)");
        constant!(ring_entries(4096 << 4, BLKIF_X86_32.entry_size()), "__CONST_RING_SIZE(blkif32, 4096 << 4)");
        for (l, p) in [(BLKIF_X86_64, ""), (BLKIF_X86_32, "32")] {
            let mut c = |rust: usize, expr: String| v.push((format!("blkif{p} {expr}"), rust as u64, expr));
            c(l.request_size, format!("sizeof(struct blkif{p}_request)"));
            c(l.response_size, format!("sizeof(struct blkif{p}_response)"));
            c(l.entry_size(), format!("sizeof(union blkif{p}_sring_entry)"));
            c(l.req_operation, format!("offsetof(struct blkif{p}_request, operation)"));
            c(l.req_nr_segments, format!("offsetof(struct blkif{p}_request, nr_segments)"));
            c(l.req_handle, format!("offsetof(struct blkif{p}_request, handle)"));
            c(l.req_id, format!("offsetof(struct blkif{p}_request, id)"));
            c(l.req_sector_number, format!("offsetof(struct blkif{p}_request, sector_number)"));
            c(l.req_seg, format!("offsetof(struct blkif{p}_request, seg)"));
            c(l.discard_flag, format!("offsetof(struct blkif{p}_request_discard, flag)"));
            c(l.discard_id, format!("offsetof(struct blkif{p}_request_discard, id)"));
            c(l.discard_sector_number, format!("offsetof(struct blkif{p}_request_discard, sector_number)"));
            c(l.discard_nr_sectors, format!("offsetof(struct blkif{p}_request_discard, nr_sectors)"));
            c(l.indirect_op, format!("offsetof(struct blkif{p}_request_indirect, indirect_op)"));
            c(l.indirect_nr_segments, format!("offsetof(struct blkif{p}_request_indirect, nr_segments)"));
            c(l.indirect_id, format!("offsetof(struct blkif{p}_request_indirect, id)"));
            c(l.indirect_sector_number, format!("offsetof(struct blkif{p}_request_indirect, sector_number)"));
            c(l.indirect_grefs, format!("offsetof(struct blkif{p}_request_indirect, indirect_grefs)"));
            c(l.rsp_id, format!("offsetof(struct blkif{p}_response, id)"));
            c(l.rsp_operation, format!("offsetof(struct blkif{p}_response, operation)"));
            c(l.rsp_status, format!("offsetof(struct blkif{p}_response, status)"));
        }
        constant!(XENBUS_STATE_INITIALISING, "XenbusStateInitialising");
        constant!(XENBUS_STATE_INIT_WAIT, "XenbusStateInitWait");
        constant!(XENBUS_STATE_INITIALISED, "XenbusStateInitialised");
        constant!(XENBUS_STATE_CONNECTED, "XenbusStateConnected");
        constant!(XENBUS_STATE_CLOSING, "XenbusStateClosing");
        constant!(XENBUS_STATE_CLOSED, "XenbusStateClosed");
        constant!(VDISK_CDROM, "VDISK_CDROM");
        constant!(VDISK_REMOVABLE, "VDISK_REMOVABLE");
        constant!(VDISK_READONLY, "VDISK_READONLY");
    }
    {
        use xen_sys::console::*;
        constant!(XENCONS_IN, "offsetof(struct xencons_interface, in)");
        constant!(XENCONS_IN_SIZE, "sizeof(((struct xencons_interface *)0)->in)");
        constant!(XENCONS_OUT, "offsetof(struct xencons_interface, out)");
        constant!(XENCONS_OUT_SIZE, "sizeof(((struct xencons_interface *)0)->out)");
        constant!(XENCONS_IN_CONS, "offsetof(struct xencons_interface, in_cons)");
        constant!(XENCONS_IN_PROD, "offsetof(struct xencons_interface, in_prod)");
        constant!(XENCONS_OUT_CONS, "offsetof(struct xencons_interface, out_cons)");
        constant!(XENCONS_OUT_PROD, "offsetof(struct xencons_interface, out_prod)");
        constant!(XENCONS_INTERFACE_SIZE, "sizeof(struct xencons_interface)");
    }
    v
}

/// Bitfield checks: C sets one field, prints the raw word; Rust builds the
/// same value with its accessors.
fn bitfield_expectations() -> Vec<(String, u64, String)> {
    let mut v = Vec::new();
    let mut flag = |name: &str, setup: &str, rust: u8| {
        let c = format!("({{ ioreq_t r; memset(&r, 0, sizeof r); {setup}; ((unsigned char *)&r)[offsetof(ioreq_t, _pad0) + 2]; }})");
        v.push((format!("bits ioreq {name}"), u64::from(rust), c));
    };
    let with = |f: &dyn Fn(&mut Ioreq)| {
        let mut r = Ioreq::default();
        f(&mut r);
        r.flags
    };
    flag("state", "r.state = 0xd", with(&|r| r.set_state(0xd)));
    flag("data_is_ptr", "r.data_is_ptr = 1", with(&|r| r.set_data_is_ptr(true)));
    flag("dir", "r.dir = 1", with(&|r| r.set_dir(IOREQ_READ)));
    flag("df", "r.df = 1", with(&|r| r.set_df(true)));
    let mut buf = |name: &str, setup: &str, rust: BufIoreq| {
        let c = format!("({{ buf_ioreq_t b; memset(&b, 0, sizeof b); {setup}; uint32_t w; memcpy(&w, &b, 4); w; }})");
        v.push((format!("bits buf_ioreq {name}"), u64::from(rust.word0), c));
    };
    buf("type", "b.type = 0xa5", BufIoreq::new(0xa5, 0, 0, 0, 0));
    buf("dir", "b.dir = 1", BufIoreq::new(0, 1, 0, 0, 0));
    buf("size", "b.size = 3", BufIoreq::new(0, 0, 3, 0, 0));
    buf("addr", "b.addr = 0xfedcb", BufIoreq::new(0, 0, 0, 0xfedcb, 0));
    v
}

fn run_c(checks: &[(String, u64, String)]) -> BTreeMap<String, u64> {
    for header in ["/usr/include/xen/io/blkif.h", "/usr/include/xen/sys/gntdev.h", "/usr/include/xen/hvm/ioreq.h", "/usr/include/xen/hvm/dm_op.h", "/usr/include/xen/sys/privcmd.h", "/usr/include/xen/sys/evtchn.h", "/usr/include/xen/domctl.h"] {
        assert!(std::path::Path::new(header).exists(), "{header} is missing: install libxen-dev (the layout check needs it)");
    }
    let dir = tempdir();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    let mut c = String::from(C_PRELUDE);
    for (key, _, expr) in checks {
        c.push_str(&format!("    P(\"{key}\", {expr});\n"));
    }
    c.push_str("    return 0;\n}\n");
    std::fs::write(&src, c).expect("write C file");
    let out = Command::new("gcc").args(["-std=gnu11", "-Wall", "-Werror", "-o"]).arg(&exe).arg(&src).output().expect("gcc must be installed for the layout test");
    assert!(out.status.success(), "gcc failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(&exe).output().expect("run layout probe");
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("number"))
        })
        .collect()
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xen-sys-layout-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn every_size_offset_and_constant_matches_libxen_dev_headers() {
    let mut checks = expectations();
    checks.extend(bitfield_expectations());
    let c = run_c(&checks);
    let mut mismatches = Vec::new();
    for (key, rust, _) in &checks {
        match c.get(key) {
            Some(cv) if cv == rust => {}
            other => mismatches.push(format!("{key}: rust {rust} vs C {other:?}")),
        }
    }
    assert_eq!(c.len(), checks.len(), "duplicate keys in the check list");
    assert!(mismatches.is_empty(), "layout mismatches:\n{}", mismatches.join("\n"));
    assert!(checks.len() > 150, "check list unexpectedly short: {}", checks.len());
}
