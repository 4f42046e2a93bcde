//! The backend half of the xenbus state machine, shared by the PV devices
//! we serve (qdisk disks, PV consoles): what the backend's `state` does as
//! libxl and the frontend move theirs, polled (xenstore-rs has no
//! watches), and the drain of an event-channel descriptor's pending ports.

use super::evtchn::EventChannels;
use super::xenstore::{XenStore, XenstoreRead};
use super::XenError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use xen_sys::blkif::*;
use xen_sys::EvtchnPort;

/// Where a PV device lives in xenstore.
pub(super) struct Node {
    pub xs: std::sync::Arc<XenStore>,
    /// The backend and frontend directories.
    pub be: String,
    pub fe: String,
    /// For log lines: "qdisk xvdb", "PV console 1 (org.x)".
    pub label: String,
}

/// One PV device's backend, as the state machine sees it.
pub(super) trait Backend {
    type Connection;
    fn node(&self) -> &Node;
    /// Write what the frontend reads before it connects, then InitWait.
    fn advertise(&self);
    /// Map the frontend's ring and bind its event channel.
    fn connect(&self) -> Result<Self::Connection, String>;
    /// In-flight work finishes first; then the ring is released.
    fn disconnect(&self, c: Self::Connection);
    /// Serve a connection for about `period`.
    fn serve(&mut self, c: &mut Self::Connection, period: Duration);
}

pub(super) fn read_u32(xs: &XenStore, path: &str) -> Option<u32> {
    xs.read(path).and_then(|v| v.trim().parse().ok())
}

pub(super) fn set_state(xs: &XenStore, be: &str, label: &str, state: u32) {
    if let Err(e) = xs.write(&format!("{be}/state"), &state.to_string()) {
        log::warn!("{label}: {e}");
    }
}

/// A device that cannot be served: why, in `hotplug-error` (where libxl
/// looks), and the backend Closed, so the frontend does not wait for it.
pub(super) fn refuse(xs: &XenStore, be: &str, why: &str) {
    let _ = xs.write(&format!("{be}/hotplug-error"), why);
    let _ = xs.write(&format!("{be}/state"), &XENBUS_STATE_CLOSED.to_string());
}

/// Run `dev` until `stop`, or until libxl removes its backend directory:
/// InitWait after `advertise`; Connected once the frontend is Initialised
/// (or Connected) and `connect` worked, Closing if it did not; a frontend
/// going to Closing/Closed, or libxl setting the backend to Closing or
/// `online` to 0, disconnects; a frontend that starts over (driver
/// reload, kexec) after Closed gets a new `advertise`.
pub(super) fn run<B: Backend>(dev: &mut B, stop: &AtomicBool, poll: Duration) {
    dev.advertise();
    let mut conn: Option<B::Connection> = None;
    let mut backend_state = XENBUS_STATE_INIT_WAIT;
    let (be, fe, label) = {
        let n = dev.node();
        (n.be.clone(), n.fe.clone(), n.label.clone())
    };
    while !stop.load(Ordering::SeqCst) {
        let xs = &*dev.node().xs;
        let Some(be_state) = read_u32(xs, &format!("{be}/state")) else {
            break; // libxl removed the device
        };
        let online = read_u32(xs, &format!("{be}/online")).unwrap_or(1) != 0;
        let fe_state = read_u32(xs, &format!("{fe}/state")).unwrap_or(XENBUS_STATE_UNKNOWN);
        let closing = be_state == XENBUS_STATE_CLOSING || !online;
        if closing || matches!(fe_state, XENBUS_STATE_CLOSING | XENBUS_STATE_CLOSED) {
            if let Some(c) = conn.take() {
                dev.disconnect(c);
            }
            let target = if fe_state == XENBUS_STATE_CLOSED || closing { XENBUS_STATE_CLOSED } else { XENBUS_STATE_CLOSING };
            if backend_state != target {
                set_state(&dev.node().xs, &be, &label, target);
                backend_state = target;
            }
        } else if conn.is_none() && matches!(fe_state, XENBUS_STATE_INITIALISED | XENBUS_STATE_CONNECTED) {
            let next = match dev.connect() {
                Ok(c) => {
                    conn = Some(c);
                    XENBUS_STATE_CONNECTED
                }
                Err(e) => {
                    log::error!("{label}: cannot connect to the frontend: {e}");
                    XENBUS_STATE_CLOSING
                }
            };
            set_state(&dev.node().xs, &be, &label, next);
            backend_state = next;
        } else if conn.is_none() && fe_state == XENBUS_STATE_INITIALISING && backend_state == XENBUS_STATE_CLOSED && online {
            dev.advertise();
            backend_state = XENBUS_STATE_INIT_WAIT;
        }
        match &mut conn {
            Some(c) => dev.serve(c, poll),
            None => std::thread::sleep(poll),
        }
    }
    if let Some(c) = conn.take() {
        dev.disconnect(c);
    }
}

/// Read and unmask every pending port of `evtchn` (one descriptor per
/// device, so they are all this device's); after an overflow the
/// descriptor is reset and `port` unmasked again.
pub(super) fn drain_pending(evtchn: &EventChannels, port: EvtchnPort, label: &str) {
    let mut ports = [0u32; 8];
    loop {
        match evtchn.pending(&mut ports) {
            Ok(0) => break,
            Ok(n) => {
                for p in &ports[..n] {
                    let _ = evtchn.unmask(*p);
                }
            }
            Err(XenError::EvtchnOverflow) => {
                let _ = evtchn.reset();
                let _ = evtchn.unmask(port);
                break;
            }
            Err(e) => {
                log::warn!("{label}: {e}");
                break;
            }
        }
    }
}
