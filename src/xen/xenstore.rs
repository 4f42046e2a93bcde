//! The xenstore nodes a device model reads and writes (xenstore-rs XsUnix).

use super::{Result, XenError};
use std::sync::Mutex;
use xenstore_rs::unix::XsUnix;
use xenstore_rs::Xs;

/// The read-only view the traditional flavour's disk discovery needs.
pub use crate::control::XenstoreRead;

pub struct XenStore {
    xs: Mutex<XsUnix>,
}

impl XenStore {
    pub fn open() -> Result<Self> {
        let xs = XsUnix::new().map_err(|source| XenError::Xenstore { op: "open", path: "/run/xenstored/socket".into(), source })?;
        Ok(XenStore { xs: Mutex::new(xs) })
    }

    fn xs(&self) -> std::sync::MutexGuard<'_, XsUnix> {
        self.xs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self, path: &str, value: &str) -> Result<()> {
        self.xs().write(path, value).map_err(|source| XenError::Xenstore { op: "write", path: path.into(), source })
    }

    pub fn remove(&self, path: &str) -> Result<()> {
        self.xs().rm(path).map_err(|source| XenError::Xenstore { op: "rm", path: path.into(), source })
    }

    /// Tell libxl the device model is up (both flavours wait for this).
    pub fn report_state(&self, domid: u16, state: &str) -> Result<()> {
        self.write(&dm_path(domid, "state"), state)
    }

    /// libxl's "do not create the Xen platform PCI device" flag.
    pub fn platform_device_disabled(&self, domid: u16) -> bool {
        self.read(&dm_path(domid, "disable_pf")).is_some_and(|v| v.trim() == "1")
    }

    /// Where `xl console -t serial` finds the guest's serial pty.
    pub fn publish_serial_tty(&self, domid: u16, index: u32, tty: &str) -> Result<()> {
        self.write(&format!("/local/domain/{domid}/serial/{index}/tty"), tty)
    }

    /// The traditional flavour's command node (save/continue); read and
    /// removed as qemu-dm does. Polled rather than watched: XsUnix has no
    /// watch support.
    pub fn take_command(&self, domid: u16) -> Option<String> {
        let path = dm_path(domid, "command");
        let value = self.read(&path)?;
        if let Err(e) = self.remove(&path) {
            log::warn!("{e}");
        }
        Some(value)
    }
}

impl XenstoreRead for XenStore {
    fn read(&self, path: &str) -> Option<String> {
        self.xs().read(path).ok().map(String::from)
    }
    fn directory(&self, path: &str) -> Vec<String> {
        self.xs().directory(path).map(|v| v.into_iter().map(String::from).collect()).unwrap_or_default()
    }
}

/// `/local/domain/0/device-model/<domid>/<leaf>`.
pub fn dm_path(domid: u16, leaf: &str) -> String {
    format!("/local/domain/0/device-model/{domid}/{leaf}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_model_paths_match_what_libxl_watches() {
        assert_eq!(dm_path(7, "state"), "/local/domain/0/device-model/7/state");
        assert_eq!(dm_path(0, "disable_pf"), "/local/domain/0/device-model/0/disable_pf");
    }
}
