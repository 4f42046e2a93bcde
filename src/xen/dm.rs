//! Device-model operations (XEN_DMOP_*) for one domain, over privcmd.

use super::privcmd::{ForeignMapping, Privcmd};
use super::{Result, XenError};
use std::sync::Arc;
use xen_sys::*;

/// What an I/O range claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoRangeKind {
    Port,
    Mmio,
}

/// The guest frames and buffered port of an ioreq server (from
/// get_ioreq_server_info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoreqServerInfo {
    pub bufioreq_port: EvtchnPort,
    /// Only filled when asked for (the legacy mapping fallback).
    pub ioreq_gfn: Option<u64>,
    pub bufioreq_gfn: Option<u64>,
}

/// How to reach the ioreq pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageMapping {
    /// MMAP_RESOURCE (Linux >= 4.18), falling back to `GuestFrames` when
    /// the kernel does not know it.
    Auto,
    /// get_ioreq_server_info gfns + MMAPBATCH_V2 (what QEMU does on old kernels).
    GuestFrames,
}

/// Most extents per modified_memory call; keeps the buffer small.
const MODIFIED_MEMORY_BATCH: usize = 256;

pub struct DeviceModelHandle {
    privcmd: Arc<Privcmd>,
    domid: DomId,
}

impl DeviceModelHandle {
    pub fn open(domid: DomId) -> Result<Self> {
        Ok(Self::with_privcmd(Arc::new(Privcmd::open()?), domid))
    }

    pub fn with_privcmd(privcmd: Arc<Privcmd>, domid: DomId) -> Self {
        DeviceModelHandle { privcmd, domid }
    }

    pub fn domid(&self) -> DomId {
        self.domid
    }

    pub fn privcmd(&self) -> &Arc<Privcmd> {
        &self.privcmd
    }

    fn op<P: DmOpPayload>(&self, name: &'static str, payload: &P, extra: Option<&mut [u8]>) -> Result<P> {
        let mut op = XenDmOp::new(payload);
        self.privcmd
            .dm_op(self.domid, &mut op, extra)
            .map_err(|source| XenError::DmOp { op: name, domid: self.domid, source })?;
        Ok(op.payload())
    }

    /// Create an ioreq server; `bufioreq` is one of `HVM_IOREQSRV_BUFIOREQ_*`.
    pub fn create_ioreq_server(&self, bufioreq: u8) -> Result<IoServId> {
        let out = self.op("create_ioreq_server", &DmOpCreateIoreqServer { handle_bufioreq: bufioreq, ..Default::default() }, None)?;
        Ok(out.id)
    }

    /// With `want_gfns` false the XEN_DMOP_no_gfns flag is set so Xen does
    /// not take guest frames for the pages (we map them as a resource).
    pub fn get_ioreq_server_info(&self, id: IoServId, want_gfns: bool) -> Result<IoreqServerInfo> {
        let flags = if want_gfns { 0 } else { XEN_DMOP_NO_GFNS };
        let out = self.op("get_ioreq_server_info", &DmOpGetIoreqServerInfo { id, flags, ..Default::default() }, None)?;
        Ok(IoreqServerInfo {
            bufioreq_port: out.bufioreq_port,
            ioreq_gfn: want_gfns.then_some(out.ioreq_gfn),
            bufioreq_gfn: want_gfns.then_some(out.bufioreq_gfn),
        })
    }

    fn range(id: IoServId, kind: IoRangeKind, first: u64, last: u64) -> DmOpIoreqServerRange {
        let type_ = match kind {
            IoRangeKind::Port => XEN_DMOP_IO_RANGE_PORT,
            IoRangeKind::Mmio => XEN_DMOP_IO_RANGE_MEMORY,
        };
        DmOpIoreqServerRange { id, pad: 0, type_, start: first, end: last }
    }

    /// Claim `first..=last` (inclusive, as Xen takes it).
    pub fn map_io_range_to_ioreq_server(&self, id: IoServId, kind: IoRangeKind, first: u64, last: u64) -> Result<()> {
        self.op("map_io_range_to_ioreq_server", &DmOpMapIoRange(Self::range(id, kind, first, last)), None).map(drop)
    }

    pub fn unmap_io_range_from_ioreq_server(&self, id: IoServId, kind: IoRangeKind, first: u64, last: u64) -> Result<()> {
        self.op("unmap_io_range_from_ioreq_server", &DmOpUnmapIoRange(Self::range(id, kind, first, last)), None).map(drop)
    }

    fn pci_range(id: IoServId, segment: u16, bus: u8, device: u8, function: u8) -> DmOpIoreqServerRange {
        let sbdf = xen_dmop_pci_sbdf(segment, bus, device, function);
        DmOpIoreqServerRange { id, pad: 0, type_: XEN_DMOP_IO_RANGE_PCI, start: sbdf, end: sbdf }
    }

    pub fn map_pcidev_to_ioreq_server(&self, id: IoServId, segment: u16, bus: u8, device: u8, function: u8) -> Result<()> {
        self.op("map_pcidev_to_ioreq_server", &DmOpMapIoRange(Self::pci_range(id, segment, bus, device, function)), None).map(drop)
    }

    pub fn unmap_pcidev_from_ioreq_server(&self, id: IoServId, segment: u16, bus: u8, device: u8, function: u8) -> Result<()> {
        self.op("unmap_pcidev_from_ioreq_server", &DmOpUnmapIoRange(Self::pci_range(id, segment, bus, device, function)), None).map(drop)
    }

    pub fn set_ioreq_server_state(&self, id: IoServId, enabled: bool) -> Result<()> {
        self.op("set_ioreq_server_state", &DmOpSetIoreqServerState { id, enabled: u8::from(enabled), pad: 0 }, None).map(drop)
    }

    pub fn destroy_ioreq_server(&self, id: IoServId) -> Result<()> {
        self.op("destroy_ioreq_server", &DmOpDestroyIoreqServer { id, pad: 0 }, None).map(drop)
    }

    /// ISA IRQ 0-15 (Xen refuses others).
    pub fn set_isa_irq_level(&self, irq: u8, high: bool) -> Result<()> {
        self.op("set_isa_irq_level", &DmOpSetIsaIrqLevel { isa_irq: irq, level: u8::from(high) }, None).map(drop)
    }

    /// INTx (0 = INTA .. 3 = INTD) of device `device` on segment 0 / `bus`.
    pub fn set_pci_intx_level(&self, bus: u8, device: u8, intx: u8, high: bool) -> Result<()> {
        let payload = DmOpSetPciIntxLevel { domain: 0, bus, device, intx, level: u8::from(high) };
        self.op("set_pci_intx_level", &payload, None).map(drop)
    }

    /// Route PCI link `link` (0-3, PIIX3 PIRQA-D) to ISA IRQ `irq` (0 = disabled).
    pub fn set_pci_link_route(&self, link: u8, irq: u8) -> Result<()> {
        self.op("set_pci_link_route", &DmOpSetPciLinkRoute { link, isa_irq: irq }, None).map(drop)
    }

    /// Report guest frames written by the device model (dirty logging).
    pub fn modified_memory(&self, extents: &[(u64, u32)]) -> Result<()> {
        for batch in extents.chunks(MODIFIED_MEMORY_BATCH) {
            let mut raw = extents_as_bytes(batch);
            self.op("modified_memory", &DmOpModifiedMemory { nr_extents: batch.len() as u32, opaque: 0 }, Some(&mut raw))?;
        }
        Ok(())
    }

    /// Ask Xen to shut the domain down (guest power-off / reset).
    pub fn remote_shutdown(&self, reason: u32) -> Result<()> {
        self.op("remote_shutdown", &DmOpRemoteShutdown { reason }, None).map(drop)
    }

    pub fn nr_vcpus(&self) -> Result<u32> {
        Ok(self.op("nr_vcpus", &DmOpNrVcpus::default(), None)?.vcpus)
    }

    /// Limit the privcmd descriptor to this domain.
    pub fn restrict(&self) -> Result<()> {
        self.privcmd.restrict(self.domid).map_err(|source| XenError::Ioctl { what: "IOCTL_PRIVCMD_RESTRICT", source })
    }

    /// Map the ioreq server's pages: frame 0 buffered (if `with_buffered`),
    /// then the synchronous frame. Falls back to get_ioreq_server_info gfns +
    /// MMAPBATCH when the kernel has no MMAP_RESOURCE.
    pub fn map_ioreq_pages(&self, id: IoServId, with_buffered: bool, how: PageMapping) -> Result<IoreqPages> {
        let wrap = |e: XenError| XenError::MapIoreqPages { id, domid: self.domid, source: Box::new(e) };
        if how == PageMapping::GuestFrames {
            return self.map_ioreq_pages_by_gfn(id, with_buffered).map_err(wrap);
        }
        let (first, num) = if with_buffered {
            (XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ, 2)
        } else {
            (xenmem_resource_ioreq_server_frame_ioreq(0), 1)
        };
        match self.privcmd.mmap_resource(self.domid, XENMEM_RESOURCE_IOREQ_SERVER, u32::from(id), first, num) {
            Ok(mapping) => {
                let mapping = Arc::new(mapping);
                Ok(if with_buffered {
                    IoreqPages { sync: PageRef { mapping: mapping.clone(), index: 1 }, buffered: Some(PageRef { mapping, index: 0 }) }
                } else {
                    IoreqPages { sync: PageRef { mapping, index: 0 }, buffered: None }
                })
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY)) => {
                log::info!("privcmd has no MMAP_RESOURCE ({e}); mapping ioreq pages by gfn");
                self.map_ioreq_pages_by_gfn(id, with_buffered).map_err(wrap)
            }
            Err(source) => Err(wrap(XenError::Ioctl { what: "IOCTL_PRIVCMD_MMAP_RESOURCE", source })),
        }
    }

    /// The pre-4.18-kernel way: ask Xen for the pages' guest frames and map
    /// those. Must happen before the server is enabled (Xen then removes
    /// the frames from the guest's physmap).
    fn map_ioreq_pages_by_gfn(&self, id: IoServId, with_buffered: bool) -> Result<IoreqPages> {
        let info = self.get_ioreq_server_info(id, true)?;
        log::info!("ioreq server {id}: sync page at gfn {:#x?}, buffered at {:#x?}", info.ioreq_gfn, info.bufioreq_gfn);
        let sync = self.map_one_gfn(info.ioreq_gfn.unwrap_or(u64::MAX))?;
        let buffered = if with_buffered { Some(self.map_one_gfn(info.bufioreq_gfn.unwrap_or(u64::MAX))?) } else { None };
        Ok(IoreqPages { sync, buffered })
    }

    fn map_one_gfn(&self, gfn: u64) -> Result<PageRef> {
        let (mapping, errs) = self.privcmd.mmap_batch(self.domid, &[gfn])?;
        if errs[0] != 0 {
            return Err(XenError::IoreqPageUnmappable { domid: self.domid, gfn, errno: -errs[0] });
        }
        Ok(PageRef { mapping: Arc::new(mapping), index: 0 })
    }
}

/// dm_op buffer 1 of modified_memory: `xen_dm_op_modified_memory_extent[]`.
fn extents_as_bytes(extents: &[(u64, u32)]) -> Vec<u8> {
    let stride = std::mem::size_of::<DmOpModifiedMemoryExtent>();
    let mut raw = vec![0u8; extents.len() * stride];
    for (chunk, &(first_pfn, nr)) in raw.chunks_exact_mut(stride).zip(extents) {
        let nr_at = std::mem::offset_of!(DmOpModifiedMemoryExtent, nr);
        let pfn_at = std::mem::offset_of!(DmOpModifiedMemoryExtent, first_pfn);
        chunk[nr_at..nr_at + 4].copy_from_slice(&nr.to_le_bytes());
        chunk[pfn_at..pfn_at + 8].copy_from_slice(&first_pfn.to_le_bytes());
    }
    raw
}

/// One page inside a (possibly shared) mapping.
#[derive(Clone)]
pub struct PageRef {
    mapping: Arc<ForeignMapping>,
    index: usize,
}

impl PageRef {
    pub fn get<T: super::privcmd::AtomicPageView>(&self) -> &T {
        self.mapping.page_as::<T>(self.index)
    }
}

/// The mapped ioreq server pages.
pub struct IoreqPages {
    pub sync: PageRef,
    pub buffered: Option<PageRef>,
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_memory_extents_use_the_c_layout() {
        let raw = extents_as_bytes(&[(0x1234_5678_9abc, 3), (7, 1)]);
        assert_eq!(raw.len(), 32);
        assert_eq!(&raw[..16], &[3, 0, 0, 0, 0, 0, 0, 0, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0, 0]);
        assert_eq!(&raw[16..], &[1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn pci_ranges_are_single_sbdfs() {
        let r = DeviceModelHandle::pci_range(3, 0, 0, 1, 1);
        assert_eq!((r.id, r.type_, r.start, r.end), (3, XEN_DMOP_IO_RANGE_PCI, 0x9, 0x9));
        let r = DeviceModelHandle::range(1, IoRangeKind::Mmio, 0xfebf_0000, 0xfebf_0fff);
        assert_eq!((r.type_, r.start, r.end), (XEN_DMOP_IO_RANGE_MEMORY, 0xfebf_0000, 0xfebf_0fff));
    }
}
