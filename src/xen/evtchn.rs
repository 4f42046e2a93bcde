//! Thin unsafe layer over /dev/xen/evtchn: interdomain binding, notify,
//! and the read (pending ports) / write (unmask) protocol of the device.

use super::{Result, XenError};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use xen_sys::*;

pub const EVTCHN_PATH: &str = "/dev/xen/evtchn";
/// Ports taken from the device per read() (a fixed buffer, no allocation).
pub const MAX_PENDING_PER_READ: usize = 64;

/// An open event-channel device; ports bound through it are unbound by the
/// kernel when it is closed.
pub struct EventChannels {
    file: File,
}

impl EventChannels {
    /// Opened non-blocking: the owner polls the descriptor and drains
    /// every pending port per wake-up.
    pub fn open() -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(EVTCHN_PATH)
            .map_err(|source| XenError::Open { path: EVTCHN_PATH, source })?;
        Ok(EventChannels { file })
    }

    fn ioctl<T>(&self, request: u32, arg: &T) -> io::Result<i32> {
        // SAFETY: every evtchn ioctl reads a small struct of the type its
        // number encodes; callers pass exactly that type by reference.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, arg as *const T) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    /// Bind a local port to `remote_port` of `domid`; returns the local port.
    pub fn bind_interdomain(&self, domid: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort> {
        let arg = IoctlEvtchnBindInterdomain { remote_domain: u32::from(domid), remote_port };
        self.ioctl(IOCTL_EVTCHN_BIND_INTERDOMAIN, &arg)
            .map(|p| p as EvtchnPort)
            .map_err(|source| XenError::Ioctl { what: "IOCTL_EVTCHN_BIND_INTERDOMAIN", source })
    }

    pub fn unbind(&self, port: EvtchnPort) -> Result<()> {
        self.ioctl(IOCTL_EVTCHN_UNBIND, &IoctlEvtchnUnbind { port })
            .map(drop)
            .map_err(|source| XenError::Ioctl { what: "IOCTL_EVTCHN_UNBIND", source })
    }

    pub fn notify(&self, port: EvtchnPort) -> Result<()> {
        self.ioctl(IOCTL_EVTCHN_NOTIFY, &IoctlEvtchnNotify { port })
            .map(drop)
            .map_err(|source| XenError::Ioctl { what: "IOCTL_EVTCHN_NOTIFY", source })
    }

    /// Clear the pending buffer and its overflow error.
    pub fn reset(&self) -> Result<()> {
        self.ioctl(IOCTL_EVTCHN_RESET, &0u32)
            .map(drop)
            .map_err(|source| XenError::Ioctl { what: "IOCTL_EVTCHN_RESET", source })
    }

    /// Only allow binding to `domid` from now on (dm_restrict).
    pub fn restrict(&self, domid: DomId) -> Result<()> {
        self.ioctl(IOCTL_EVTCHN_RESTRICT_DOMID, &IoctlEvtchnRestrictDomid { domid })
            .map(drop)
            .map_err(|source| XenError::Ioctl { what: "IOCTL_EVTCHN_RESTRICT_DOMID", source })
    }

    /// Pending ports (each now masked until [`unmask`](Self::unmask)); empty
    /// when nothing is pending. At most `out.len()` per call.
    /// [`XenError::EvtchnOverflow`] means the kernel's ring overflowed and
    /// notifications were lost: [`reset`](Self::reset), unmask every port
    /// and re-examine everything.
    pub fn pending(&self, out: &mut [EvtchnPort]) -> Result<usize> {
        let mut raw = [0u8; MAX_PENDING_PER_READ * 4];
        let want = out.len().min(MAX_PENDING_PER_READ) * 4;
        match (&self.file).read(&mut raw[..want]) {
            Ok(n) => {
                let count = n / 4;
                for (i, chunk) in raw[..count * 4].chunks_exact(4).enumerate() {
                    out[i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
                Ok(count)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::EFBIG) => Err(XenError::EvtchnOverflow),
            Err(e) => Err(XenError::Evtchn(e)),
        }
    }

    pub fn unmask(&self, port: EvtchnPort) -> Result<()> {
        (&self.file).write_all(&port.to_ne_bytes()).map_err(XenError::Evtchn)
    }
}

impl AsFd for EventChannels {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
