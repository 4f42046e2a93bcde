//! The ioreq server's life: create, map its pages, enable, bind the
//! per-vCPU event channels, claim ranges, serve, and tear down on drop.

use super::dm::{DeviceModelHandle, IoRangeKind, IoreqPages, PageMapping};
use super::evtchn::EventChannels;
use super::ioreq::{AtomicBufferedIopage, AtomicIoreq, GuestMappings, IoHandler, IoreqDecoder, SlotOutcome, BUFFERED_BUDGET};
use super::{Result, XenError};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::ops::RangeInclusive;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use xen_sys::*;

use super::evtchn::MAX_PENDING_PER_READ as PENDING_BATCH;
/// Idle re-scan period: a lost notification costs at most this much.
const IDLE_RESCAN_MS: u16 = 1000;

type SyncSlots = [AtomicIoreq; SHARED_IOPAGE_SLOTS];

/// Wakes a running server from another thread: to re-examine held requests
/// (after QMP `cont`) or to make it return.
pub struct ServerWaker {
    reader: PipeReader,
    writer: PipeWriter,
    stop: AtomicBool,
}

impl ServerWaker {
    fn new() -> Result<Self> {
        let (reader, writer) = std::io::pipe().map_err(XenError::EventFd)?;
        for fd in [reader.as_raw_fd(), writer.as_raw_fd()] {
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| XenError::EventFd(e.into()))?;
        }
        Ok(ServerWaker { reader, writer, stop: AtomicBool::new(false) })
    }

    /// Re-examine every slot (held requests) soon.
    pub fn wake(&self) {
        // A full pipe already guarantees a wake-up, so WouldBlock is fine.
        let _ = (&self.writer).write(&[1]);
    }

    /// Make `run` return after its current pass.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.reader).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Reads, from any thread, whether some vCPU has a synchronous request
/// with this server open: sent and not yet answered, or answered and not
/// yet taken back by the vCPU (its slot is STATE_IOREQ_NONE only then). A
/// vCPU with one open defers its domain's shutdown (Xen's
/// `vcpu_start_shutdown_deferral`) until it runs again and takes the
/// response, so a domain paused then cannot be suspended.
#[derive(Clone)]
pub struct OpenRequestProbe {
    page: super::dm::PageRef,
    vcpus: usize,
}

impl OpenRequestProbe {
    pub fn any_open(&self) -> bool {
        self.page.get::<SyncSlots>()[..self.vcpus].iter().any(|slot| slot.state() != STATE_IOREQ_NONE)
    }
}

pub struct IoreqServer {
    dm: Arc<DeviceModelHandle>,
    id: IoServId,
    pages: Option<IoreqPages>,
    evtchn: EventChannels,
    /// Local port per vCPU, index = vCPU id.
    vcpu_ports: Vec<EvtchnPort>,
    buffered_port: Option<EvtchnPort>,
    waker: Arc<ServerWaker>,
    decoder: IoreqDecoder,
}

impl IoreqServer {
    /// Create and enable a server for `dm`'s domain and bind its event
    /// channels. With `buffered`, the server takes buffered writes (ATOMIC
    /// mode); the domain stays paused by libxl until we report "running".
    pub fn create(dm: Arc<DeviceModelHandle>, buffered: bool) -> Result<Self> {
        Self::create_with(dm, buffered, PageMapping::Auto)
    }

    /// As [`create`](Self::create), choosing how the ioreq pages are mapped.
    pub fn create_with(dm: Arc<DeviceModelHandle>, buffered: bool, mapping: PageMapping) -> Result<Self> {
        let vcpus = dm.nr_vcpus()?;
        if vcpus as usize > SHARED_IOPAGE_SLOTS {
            return Err(XenError::TooManyVcpus { domid: dm.domid(), vcpus, max: SHARED_IOPAGE_SLOTS });
        }
        let mode = if buffered { HVM_IOREQSRV_BUFIOREQ_ATOMIC } else { HVM_IOREQSRV_BUFIOREQ_OFF };
        let id = dm.create_ioreq_server(mode)?;
        let evtchn = match EventChannels::open() {
            Ok(e) => e,
            Err(e) => {
                let _ = dm.destroy_ioreq_server(id);
                return Err(e);
            }
        };
        let waker = match ServerWaker::new() {
            Ok(w) => Arc::new(w),
            Err(e) => {
                let _ = dm.destroy_ioreq_server(id);
                return Err(e);
            }
        };
        // From here on, Drop undoes whatever was done.
        let mut server = IoreqServer {
            dm,
            id,
            pages: None,
            evtchn,
            vcpu_ports: Vec::new(),
            buffered_port: None,
            waker,
            decoder: IoreqDecoder::new(),
        };
        server.pages = Some(server.dm.map_ioreq_pages(id, buffered, mapping)?);
        let buffered_remote = if buffered { Some(server.dm.get_ioreq_server_info(id, false)?.bufioreq_port) } else { None };
        // vp_eport is filled in by Xen only when the server is enabled.
        server.dm.set_ioreq_server_state(id, true)?;
        for vcpu in 0..vcpus as usize {
            let remote = server.sync_slots()[vcpu].vp_eport();
            if remote == 0 {
                return Err(XenError::NoEventChannel { vcpu });
            }
            let local = server.evtchn.bind_interdomain(server.dm.domid(), remote)?;
            server.vcpu_ports.push(local);
        }
        if let Some(remote) = buffered_remote {
            server.buffered_port = Some(server.evtchn.bind_interdomain(server.dm.domid(), remote)?);
        }
        log::info!(
            "ioreq server {id} for domain {}: {vcpus} vCPU(s), ports {:?}, buffered {:?}",
            server.dm.domid(),
            server.vcpu_ports,
            server.buffered_port
        );
        Ok(server)
    }

    pub fn id(&self) -> IoServId {
        self.id
    }

    pub fn dm(&self) -> &Arc<DeviceModelHandle> {
        &self.dm
    }

    pub fn waker(&self) -> Arc<ServerWaker> {
        self.waker.clone()
    }

    /// Only allow these descriptors to act on our domain (dm_restrict).
    pub fn restrict(&self) -> Result<()> {
        self.dm.restrict()?;
        self.evtchn.restrict(self.dm.domid())
    }

    pub fn open_request_probe(&self) -> OpenRequestProbe {
        let pages = self.pages.as_ref().expect("pages are mapped while the server lives");
        OpenRequestProbe { page: pages.sync.clone(), vcpus: self.vcpu_ports.len() }
    }

    fn sync_slots(&self) -> &SyncSlots {
        self.pages.as_ref().expect("pages are mapped while the server lives").sync.get::<SyncSlots>()
    }

    pub fn claim_ports(&self, ranges: &[RangeInclusive<u16>]) -> Result<()> {
        for r in ranges {
            self.dm.map_io_range_to_ioreq_server(self.id, IoRangeKind::Port, u64::from(*r.start()), u64::from(*r.end()))?;
        }
        Ok(())
    }

    pub fn unclaim_ports(&self, ranges: &[RangeInclusive<u16>]) -> Result<()> {
        for r in ranges {
            self.dm.unmap_io_range_from_ioreq_server(self.id, IoRangeKind::Port, u64::from(*r.start()), u64::from(*r.end()))?;
        }
        Ok(())
    }

    pub fn claim_mmio(&self, range: RangeInclusive<u64>) -> Result<()> {
        self.dm.map_io_range_to_ioreq_server(self.id, IoRangeKind::Mmio, *range.start(), *range.end())
    }

    pub fn unclaim_mmio(&self, range: RangeInclusive<u64>) -> Result<()> {
        self.dm.unmap_io_range_from_ioreq_server(self.id, IoRangeKind::Mmio, *range.start(), *range.end())
    }

    /// Route config space of `bus:devfn` (segment 0) to us.
    pub fn claim_pci(&self, bus: u8, devfn: u8) -> Result<()> {
        self.dm.map_pcidev_to_ioreq_server(self.id, 0, bus, devfn >> 3, devfn & 7)
    }

    pub fn unclaim_pci(&self, bus: u8, devfn: u8) -> Result<()> {
        self.dm.unmap_pcidev_from_ioreq_server(self.id, 0, bus, devfn >> 3, devfn & 7)
    }

    /// Serve requests until [`ServerWaker::stop`]. Every wake-up (event
    /// channel, waker, or the idle period) unmasks the pending ports and
    /// re-examines every vCPU slot, so held requests are picked up as soon
    /// as the handler stops holding them and the waker is poked.
    pub fn run(&mut self, handler: &mut dyn IoHandler, mem: &dyn GuestMappings) -> Result<()> {
        let mut pending = [0u32; PENDING_BATCH];
        while !self.waker.stop.load(Ordering::SeqCst) {
            let (evtchn_ready, wake_ready) = {
                let mut fds = [
                    PollFd::new(self.evtchn.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.waker.reader.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::from(IDLE_RESCAN_MS)) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(XenError::Poll(e.into())),
                }
                let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if wake_ready {
                self.waker.drain();
            }
            if evtchn_ready {
                loop {
                    let n = match self.evtchn.pending(&mut pending) {
                        Ok(n) => n,
                        Err(XenError::EvtchnOverflow) => {
                            self.recover_from_overflow()?;
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    for &port in &pending[..n] {
                        self.evtchn.unmask(port)?;
                    }
                    if n < PENDING_BATCH {
                        break;
                    }
                }
            }
            self.service_all(handler, mem)?;
        }
        Ok(())
    }

    /// Lost notifications leave their ports masked: unmask all of ours; the
    /// full re-scan that follows finds whatever they announced.
    fn recover_from_overflow(&self) -> Result<()> {
        // A guest's vCPUs notifying faster than we drain can repeat this.
        crate::logging::ratelimit::log_global(
            log::Level::Warn,
            "evtchn-overflow",
            format_args!("event channel ring overflowed; resetting and re-scanning every slot"),
        );
        self.evtchn.reset()?;
        for &port in self.vcpu_ports.iter().chain(self.buffered_port.iter()) {
            self.evtchn.unmask(port)?;
        }
        Ok(())
    }

    /// One pass over the buffered ring and every vCPU slot.
    pub fn service_all(&mut self, handler: &mut dyn IoHandler, mem: &dyn GuestMappings) -> Result<()> {
        let pages = self.pages.take().expect("pages are mapped while the server lives");
        let result = (|| {
            // Buffered writes were issued by the guest before whatever a
            // vCPU is now blocked on: apply them first to keep its order.
            if let Some(buffered) = pages.buffered.as_ref() {
                self.decoder.drain_buffered(buffered.get::<AtomicBufferedIopage>(), handler, BUFFERED_BUDGET);
            }
            let slots = pages.sync.get::<SyncSlots>();
            for (vcpu, &port) in self.vcpu_ports.iter().enumerate() {
                if self.decoder.service_slot(&slots[vcpu], handler, mem) == SlotOutcome::Completed {
                    self.evtchn.notify(port)?;
                }
            }
            mem.flush_dirty();
            Ok(())
        })();
        self.pages = Some(pages);
        result
    }
}

impl Drop for IoreqServer {
    fn drop(&mut self) {
        if let Err(e) = self.dm.set_ioreq_server_state(self.id, false) {
            log::warn!("disabling ioreq server {}: {e}", self.id);
        }
        self.pages = None;
        for port in self.vcpu_ports.drain(..).chain(self.buffered_port.take()) {
            if let Err(e) = self.evtchn.unbind(port) {
                log::warn!("{e}");
            }
        }
        if let Err(e) = self.dm.destroy_ioreq_server(self.id) {
            log::warn!("destroying ioreq server {}: {e}", self.id);
        }
    }
}
