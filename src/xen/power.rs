//! Guest-initiated power-off and reset, handed to Xen as QEMU's
//! destroy_hvm_domain does: libxl then tears the domain (and us) down or
//! rebuilds it, according to on_poweroff / on_reboot.

use super::dm::DeviceModelHandle;
use super::Result;
use crate::machine::{PowerControl, PowerRequest};
use std::sync::Arc;
use xen_sys::{SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};

/// The one dm_op this needs (a trait so it is testable without Xen).
pub trait RemoteShutdown: Send + Sync {
    fn remote_shutdown(&self, reason: u32) -> Result<()>;
}

impl RemoteShutdown for DeviceModelHandle {
    fn remote_shutdown(&self, reason: u32) -> Result<()> {
        DeviceModelHandle::remote_shutdown(self, reason)
    }
}

pub struct XenPowerControl {
    target: Arc<dyn RemoteShutdown>,
}

impl XenPowerControl {
    pub fn new(target: Arc<dyn RemoteShutdown>) -> Self {
        XenPowerControl { target }
    }
}

impl PowerControl for XenPowerControl {
    fn request(&self, what: PowerRequest) {
        let reason = match what {
            PowerRequest::Poweroff => SHUTDOWN_POWEROFF,
            PowerRequest::Reboot => SHUTDOWN_REBOOT,
        };
        // Normally the domain goes away after one request; if Xen refuses,
        // the guest can repeat it in a loop.
        let rl = crate::logging::ratelimit::log_global;
        rl(log::Level::Info, "guest-power-request", format_args!("guest requested {what:?}; asking Xen to shut the domain down"));
        if let Err(e) = self.target.remote_shutdown(reason) {
            rl(log::Level::Error, "guest-power-request-failed", format_args!("guest {what:?} request could not be passed to Xen: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<u32>>);

    impl RemoteShutdown for Recorder {
        fn remote_shutdown(&self, reason: u32) -> Result<()> {
            self.0.lock().unwrap().push(reason);
            Ok(())
        }
    }

    #[test]
    fn requests_map_to_xen_shutdown_reasons() {
        let rec = Arc::new(Recorder::default());
        let power = XenPowerControl::new(rec.clone());
        power.request(PowerRequest::Poweroff);
        power.request(PowerRequest::Reboot);
        assert_eq!(*rec.0.lock().unwrap(), vec![0, 1]);
    }
}
