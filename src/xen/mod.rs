//! The Xen front: an ioreq server that takes the guest's port I/O, MMIO and
//! PCI-config requests from Xen, plus guest memory, IRQ lines and xenstore.
//!
//! `unsafe` lives only in the thin layers over the kernel devices
//! (`privcmd`, `evtchn`) and in the guest-memory mappings
//! (`foreign_memory`'s buckets, `memfd_mapper`, its stand-in without Xen);
//! everything else is safe code on top of them, and the request decoder
//! (`ioreq`) and the map cache are unit-tested without Xen.
//!
//! Wiring, in the order Xen needs it (the domain stays paused until
//! "running" is written, so nothing races the guest):
//!
//! ```no_run
//! use std::sync::Arc;
//! use xen_ioemu::machine::IrqLine;
//! use xen_ioemu::xen::*;
//!
//! # struct Machine;
//! # impl IoHandler for Machine {
//! #     fn pio_read(&mut self, _: u16, _: u8) -> u32 { 0 }
//! #     fn pio_write(&mut self, _: u16, _: u8, _: u32) {}
//! #     fn mmio_read(&mut self, _: u64, _: u8) -> u64 { 0 }
//! #     fn mmio_write(&mut self, _: u64, _: u8, _: u64) {}
//! #     fn pci_config_read(&mut self, _: u8, _: u8, _: u16, _: u8) -> u32 { 0 }
//! #     fn pci_config_write(&mut self, _: u8, _: u8, _: u16, _: u8, _: u32) {}
//! #     fn hold_request(&mut self) -> bool { false }
//! # }
//! # fn main() -> Result<()> {
//! let domid = 7;
//! let dm = Arc::new(DeviceModelHandle::open(domid)?);
//! let xenstore = XenStore::open()?; // before any restriction
//! let mut server = IoreqServer::create(dm.clone(), true)?;
//! server.claim_ports(&[0x1f0..=0x1f7, 0x3f6..=0x3f6, 0x170..=0x177, 0x376..=0x376])?;
//! server.claim_pci(0, 0x09)?; // 00:01.1 PIIX3 IDE
//! let guest_ram_bytes = 2 << 30; // -m
//! let memory = Arc::new(XenGuestMemory::sized_for_guest(dm.clone(), guest_ram_bytes)); // DMA for the devices
//! let ide_irq: Arc<dyn IrqLine> = Arc::new(IsaIrq::new(dm.clone(), 14));
//! # let _ = ide_irq;
//! let waker = server.waker(); // QMP `cont` -> waker.wake(); SIGHUP -> waker.stop()
//! # let _ = waker;
//! xenstore.report_state(domid, "running")?;
//! let mut machine = Machine;
//! server.run(&mut machine, &*memory)?; // until waker.stop(); drop tears down
//! # Ok(()) }
//! ```

pub mod console;
pub mod dm;
pub mod evtchn;
pub mod foreign_memory;
pub mod gntdev;
pub mod ioreq;
pub mod irq;
mod lru;
pub mod memfd_mapper;
pub mod pause;
pub mod power;
pub mod privcmd;
pub mod qdisk;
pub mod server;
pub mod xenstore;
mod xenbus;

pub use dm::{DeviceModelHandle, IoRangeKind, PageMapping};
pub use evtchn::EventChannels;
pub use foreign_memory::XenGuestMemory;
pub use ioreq::{GuestMappings, IoHandler};
pub use irq::{InterruptController, IsaIrq, PciIntx, PciLinkRouter};
pub use pause::DomainPauser;
pub use power::XenPowerControl;
pub use server::{IoreqServer, OpenRequestProbe, ServerWaker};
pub use xenstore::{XenStore, XenstoreRead};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum XenError {
    #[error("cannot open {path}: {source} (is this dom0 with the xen-privcmd/xen-evtchn modules loaded?)")]
    Open { path: &'static str, source: std::io::Error },
    #[error("dm_op {op} for domain {domid} failed: {source}")]
    DmOp { op: &'static str, domid: u16, source: std::io::Error },
    #[error("{what} failed: {source}")]
    Ioctl { what: &'static str, source: std::io::Error },
    #[error("mmap of {pages} page(s) from /dev/xen/privcmd failed: {source}")]
    Mmap { pages: usize, source: std::io::Error },
    #[error("mapping ioreq server {id} pages of domain {domid} failed: {source}")]
    MapIoreqPages { id: u16, domid: u16, source: Box<XenError> },
    #[error("ioreq page frame {gfn:#x} of domain {domid} could not be mapped (errno {errno})")]
    IoreqPageUnmappable { domid: u16, gfn: u64, errno: i32 },
    #[error("domain {domid} reports {vcpus} vCPUs, more than the {max} slots of an ioreq page")]
    TooManyVcpus { domid: u16, vcpus: u32, max: usize },
    #[error("vCPU {vcpu} has no ioreq event channel (is the server enabled?)")]
    NoEventChannel { vcpu: usize },
    #[error("the event channel device's pending ring overflowed")]
    EvtchnOverflow,
    #[error("event channel device: {0}")]
    Evtchn(std::io::Error),
    #[error("wake-up eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("polling the event channels failed: {0}")]
    Poll(std::io::Error),
    #[error("xenstore: {op} {path}: {source}")]
    Xenstore { op: &'static str, path: String, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, XenError>;
