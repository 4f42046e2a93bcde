//! Pausing the guest's domain (XEN_DOMCTL_pausedomain/unpausedomain) for a
//! hold that stops every vCPU; see `machine::hold` for when.
//!
//! domctl is the toolstack's interface, so two things can refuse it:
//! * Linux refuses every privcmd hypercall (EPERM) on a descriptor
//!   restricted to one domain, which is what dm_restrict does to ours; a
//!   second, unrestricted descriptor would undo the restriction, so we do
//!   not keep one;
//! * Xen answers EACCES to an interface version other than its own; the
//!   versions of 4.17 .. 4.22 are tried in turn and the accepted one kept.
//!
//! Xen counts toolstack pauses per domain (`controller_pause_count`), so a
//! pause of ours nests inside libxl's and each side unpauses its own.

use super::privcmd::Privcmd;
use crate::machine::hold::{PauseGuest, PauseRefused};
use std::io;
use std::sync::{Arc, Mutex};
use xen_sys::*;

/// One domctl call: the real one goes to privcmd, tests give their own.
pub type DomctlFn = Box<dyn Fn(&mut XenDomctl) -> io::Result<()> + Send + Sync>;

pub struct DomainPauser {
    domctl: DomctlFn,
    domid: DomId,
    /// The interface version Xen accepted, once one did.
    version: Mutex<Option<u32>>,
}

impl DomainPauser {
    pub fn new(privcmd: Arc<Privcmd>, domid: DomId) -> Self {
        Self::with_domctl(Box::new(move |d| privcmd.domctl(d)), domid)
    }

    pub fn with_domctl(domctl: DomctlFn, domid: DomId) -> Self {
        DomainPauser { domctl, domid, version: Mutex::new(None) }
    }

    fn call(&self, cmd: u32) -> Result<(), PauseRefused> {
        let mut known = self.version.lock().unwrap_or_else(|e| e.into_inner());
        let candidates: &[u32] = match known.as_ref() {
            Some(v) => std::slice::from_ref(v),
            None => &XEN_DOMCTL_INTERFACE_VERSIONS,
        };
        for &version in candidates {
            let mut d = XenDomctl::new(cmd, version, self.domid);
            match (self.domctl)(&mut d) {
                Ok(()) => {
                    if known.is_none() {
                        log::info!("domctl interface version {version:#x}");
                    }
                    *known = Some(version);
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EACCES) && known.is_none() => continue,
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    return Err(PauseRefused::NotPermitted(format!("domctl for domain {}: {e} (privcmd restricted by dm_restrict, or XSM)", self.domid)))
                }
                Err(e) => return Err(PauseRefused::Failed(format!("domctl {cmd} for domain {}: {e}", self.domid))),
            }
        }
        Err(PauseRefused::NotPermitted(format!(
            "Xen accepts none of the domctl interface versions {:x?} (newer than this build knows)",
            XEN_DOMCTL_INTERFACE_VERSIONS
        )))
    }
}

impl PauseGuest for DomainPauser {
    fn pause(&self) -> Result<(), PauseRefused> {
        self.call(XEN_DOMCTL_PAUSEDOMAIN)
    }

    fn unpause(&self) -> Result<(), PauseRefused> {
        self.call(XEN_DOMCTL_UNPAUSEDOMAIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (cmd, interface_version, domain) of every domctl Xen got.
    type Seen = Arc<Mutex<Vec<(u32, u32, u16)>>>;

    /// A Xen that knows one interface version and records what it got.
    fn xen(accepts: u32, errno_other: Option<i32>) -> (DomainPauser, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let domctl: DomctlFn = Box::new(move |d: &mut XenDomctl| {
            log.lock().unwrap().push((d.cmd, d.interface_version, d.domain));
            if let Some(errno) = errno_other {
                return Err(io::Error::from_raw_os_error(errno));
            }
            if d.interface_version != accepts {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            Ok(())
        });
        (DomainPauser::with_domctl(domctl, 7), seen)
    }

    #[test]
    fn the_interface_version_is_probed_once_and_kept() {
        let (p, seen) = xen(0x17, None);
        p.pause().unwrap();
        p.unpause().unwrap();
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![
                (XEN_DOMCTL_PAUSEDOMAIN, 0x15, 7),
                (XEN_DOMCTL_PAUSEDOMAIN, 0x16, 7),
                (XEN_DOMCTL_PAUSEDOMAIN, 0x17, 7),
                (XEN_DOMCTL_UNPAUSEDOMAIN, 0x17, 7),
            ]
        );
    }

    #[test]
    fn a_restricted_privcmd_is_not_permitted_and_an_unknown_xen_is_said_so() {
        let (p, seen) = xen(0x15, Some(libc::EPERM));
        assert!(matches!(p.pause(), Err(PauseRefused::NotPermitted(_))));
        assert_eq!(seen.lock().unwrap().len(), 1, "EPERM is not a version mismatch: no probing on");
        let (p, _) = xen(0x99, None);
        match p.pause() {
            Err(PauseRefused::NotPermitted(why)) => assert!(why.contains("none of the domctl interface versions"), "{why}"),
            other => panic!("{other:?}"),
        }
        let (p, _) = xen(0x15, Some(libc::EINVAL));
        assert!(matches!(p.pause(), Err(PauseRefused::Failed(_))));
    }
}
