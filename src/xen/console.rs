//! The PV consoles libxl leaves to the device model: the backend half of
//! the xenbus state machine under `/local/domain/0/backend/console/<domid>/
//! <devid>` for every console whose frontend says `type` = ioemu (libxl
//! makes one for each xl `channel=` entry, devid 1 and up; console 0 is
//! xenconsoled's), each served by a [`ConsolePump`] over the page the
//! frontend granted and an interdomain event channel.
//!
//! libxl writes the nodes before it starts the device model: on the
//! backend `frontend`, `name`, `connection` and (socket) `path`; on the
//! frontend's read-only side `type`, `output` ("pty", or
//! "chardev:libxl-channelN" for the `-chardev socket,...,server=on` it
//! also passes us) and an empty `tty`. We open the host end at start-up
//! (for a pty its path goes to the frontend's `tty`, where `xl
//! channel-list` reads it), go to InitWait, and connect when the frontend
//! is Initialised (its `ring-ref`, a grant, and `port` written), as QEMU's
//! console backend does.
//!
//! xenstore-rs has no watches, so the state nodes are polled every 100 ms.

use super::evtchn::EventChannels;
use super::gntdev::GrantDevice;
use super::xenbus::{read_u32, Node};
use super::xenstore::{XenStore, XenstoreRead};
use crate::pvconsole::host::{PtyEnd, SocketEnd};
use crate::pvconsole::{ConsolePump, ConsoleRing, HostEnd};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xen_sys::blkif::*;
use xen_sys::{DomId, EvtchnPort};

const POLL: Duration = Duration::from_millis(100);
/// How soon output a socket client has not taken yet is offered again.
const RETRY_PENDING: Duration = Duration::from_millis(10);

/// The consoles' threads; dropping it leaves them running (see shutdown).
/// Each thread hands its host end back when it ends, to be dropped by
/// `shutdown`'s caller: dropping a socket end unlinks its path, a call the
/// console threads' filter does not have (found on real Xen: the first
/// socket console to end killed the device model at the guest's exit).
pub struct ConsoleService {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Host>>,
}

fn base_path(domid: DomId) -> String {
    format!("/local/domain/0/backend/console/{domid}")
}

/// The consoles of `domid` that are ours, as (devid, frontend path,
/// output): the frontend's `type` is ioemu.
pub fn consoles_left_to_us(xs: &dyn XenstoreRead, domid: DomId) -> Vec<(String, String, String)> {
    let base = base_path(domid);
    let mut found = Vec::new();
    for devid in xs.directory(&base) {
        if devid.parse::<u32>().is_err() {
            continue;
        }
        let fe = xs
            .read(&format!("{base}/{devid}/frontend"))
            .unwrap_or_else(|| format!("/local/domain/{domid}/device/console/{devid}"));
        if xs.read(&format!("{fe}/type")).as_deref().map(str::trim) != Some("ioemu") {
            continue;
        }
        let output = xs.read(&format!("{fe}/output")).unwrap_or_default();
        found.push((devid, fe, output));
    }
    found
}

enum Host {
    Pty(PtyEnd),
    Socket(SocketEnd),
}

impl Host {
    fn end(&mut self) -> &mut dyn HostEnd {
        match self {
            Host::Pty(p) => p,
            Host::Socket(s) => s,
        }
    }
    fn poll_fd(&self) -> BorrowedFd<'_> {
        match self {
            Host::Pty(p) => p.poll_fd(),
            Host::Socket(s) => s.poll_fd(),
        }
    }
}

/// Open the host end `output` names: a new pty, or the listening socket
/// of the `-chardev` it names (`sockets`: id -> path).
fn open_host(output: &str, sockets: &[(String, PathBuf)]) -> Result<Host, String> {
    if output == "pty" {
        return PtyEnd::open().map(Host::Pty).map_err(|e| e.to_string());
    }
    let Some(id) = output.strip_prefix("chardev:") else {
        return Err(format!("output {output:?} is not served (pty or chardev:ID)"));
    };
    let (_, path) = sockets
        .iter()
        .find(|(sid, _)| sid == id)
        .ok_or_else(|| format!("output {output:?} names no -chardev socket of ours"))?;
    SocketEnd::bind(path).map(Host::Socket).map_err(|e| format!("binding {}: {e}", path.display()))
}

impl ConsoleService {
    /// Find the consoles left to us, open their host ends, event channels
    /// and gntdev on the calling thread (before -runas and -chroot drop
    /// privileges), and start one thread each, filtered from its first
    /// instruction. A console that cannot be served is said in the log and
    /// its backend set Closed.
    pub fn start(domid: DomId, sockets: &[(String, PathBuf)]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let xs = match XenStore::open() {
            Ok(xs) => Arc::new(xs),
            Err(e) => {
                log::error!("PV consoles: {e}; none is served");
                return ConsoleService { stop, threads };
            }
        };
        let consoles = consoles_left_to_us(&*xs, domid);
        if consoles.is_empty() {
            return ConsoleService { stop, threads };
        }
        let gntdev = GrantDevice::open().map_err(|e| e.to_string());
        for (devid, fe, output) in consoles {
            let be = format!("{}/{devid}", base_path(domid));
            let name = xs.read(&format!("{be}/name")).unwrap_or_default();
            let opened = gntdev.clone().and_then(|g| {
                let evtchn = EventChannels::open().map_err(|e| e.to_string())?;
                Ok((g, evtchn, open_host(&output, sockets)?))
            });
            let (gntdev, evtchn, host) = match opened {
                Ok(v) => v,
                Err(e) => {
                    log::error!("PV console {devid} ({name}) of domain {domid}: {e}; not served");
                    super::xenbus::refuse(&xs, &be, &e);
                    continue;
                }
            };
            let where_to = match &host {
                Host::Pty(p) => {
                    let tty = p.path().display().to_string();
                    if let Err(e) = xs.write(&format!("{fe}/tty"), &tty) {
                        log::warn!("PV console {devid}: {e}");
                    }
                    tty
                }
                Host::Socket(s) => s.path().display().to_string(),
            };
            log::info!("PV console {devid} ({name}) of domain {domid}: served on {where_to}");
            let node = Node { xs: xs.clone(), be, fe, label: format!("PV console {devid} ({name})") };
            let dev = Console { node, gntdev, evtchn, domid, host };
            let stop = stop.clone();
            match std::thread::Builder::new().name(format!("console-{devid}")).spawn(move || {
                crate::sandbox::enter_or_exit(crate::sandbox::ThreadKind::ConsoleDevice);
                let mut dev = dev;
                super::xenbus::run(&mut dev, &stop, POLL);
                // Served until stop or libxl removed the device; the host
                // end goes back to shutdown's caller.
                dev.host
            }) {
                Ok(t) => threads.push(t),
                Err(e) => log::error!("PV console {devid}: cannot start its thread: {e}"),
            }
        }
        ConsoleService { stop, threads }
    }

    /// Stop every console and drop its host end here (a socket's path is
    /// unlinked).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            drop(t.join());
        }
    }
}

struct Console {
    /// Its xenstore directories; the label is "PV console <devid> (<name>)".
    node: Node,
    gntdev: Arc<GrantDevice>,
    evtchn: EventChannels,
    domid: DomId,
    host: Host,
}

struct Connection {
    pump: ConsolePump,
    port: EvtchnPort,
    broken_logged: bool,
}

impl super::xenbus::Backend for Console {
    type Connection = Connection;
    fn node(&self) -> &super::xenbus::Node {
        &self.node
    }
    /// A console has nothing to advertise (QEMU's writes nothing either).
    fn advertise(&self) {
        super::xenbus::set_state(&self.node.xs, &self.node.be, &self.node.label, XENBUS_STATE_INIT_WAIT);
    }

    fn connect(&self) -> Result<Connection, String> {
        let fe = &self.node.fe;
        let gref = read_u32(&self.node.xs, &format!("{fe}/ring-ref")).ok_or(format!("{fe}/ring-ref missing"))?;
        let remote_port = read_u32(&self.node.xs, &format!("{fe}/port")).ok_or(format!("{fe}/port missing"))?;
        let mapping = self.gntdev.map(self.domid, &[gref]).map_err(|e| e.to_string())?;
        let ring = ConsoleRing::attach(Arc::new(mapping)).map_err(|e| e.to_string())?;
        let port = self.evtchn.bind_interdomain(self.domid, remote_port).map_err(|e| e.to_string())?;
        log::info!("{}: connected, event channel {remote_port} -> local {port}", self.node.label);
        Ok(Connection { pump: ConsolePump::new(ring), port, broken_logged: false })
    }

    fn disconnect(&self, c: Connection) {
        let _ = self.evtchn.unbind(c.port);
        log::info!("{}: disconnected", self.node.label);
        // Dropping the pump unmaps the page.
    }

    /// Move bytes for about `period`, waking on the event channel or the
    /// host end.
    fn serve(&mut self, c: &mut Connection, period: Duration) {
        let deadline = Instant::now() + period;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let mut wait = deadline - now;
            if c.pump.pending() > 0 {
                wait = wait.min(RETRY_PENDING);
            }
            let ms = wait.as_millis().clamp(1, u128::from(u16::MAX)) as u16;
            {
                // The host end is waited on only while its input can go
                // somewhere (see ConsolePump::wants_input).
                let host = if c.pump.wants_input() { PollFlags::POLLIN } else { PollFlags::empty() };
                let mut fds = [PollFd::new(self.evtchn.as_fd(), PollFlags::POLLIN), PollFd::new(self.host.poll_fd(), host)];
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            super::xenbus::drain_pending(&self.evtchn, c.port, &self.node.label);
            if c.pump.service(self.host.end()) {
                if let Err(e) = self.evtchn.notify(c.port) {
                    log::warn!("{}: notify: {e}", self.node.label);
                }
            }
            if let (Some(e), false) = (c.pump.broken(), c.broken_logged) {
                c.broken_logged = true;
                log::error!("{}: {e}; nothing more moves on this console", self.node.label);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::cmdline::tests::FakeStore;

    #[test]
    fn the_consoles_left_to_us_are_those_whose_frontend_says_ioemu() {
        let mut xs = FakeStore::default();
        // What libxl writes for console 0 (xenconsoled's) and two channels.
        for (path, value) in [
            ("/local/domain/0/backend/console/7/0/frontend", "/local/domain/7/console"),
            ("/local/domain/7/console/type", "xenconsoled"),
            ("/local/domain/0/backend/console/7/1/frontend", "/local/domain/7/device/console/1"),
            ("/local/domain/7/device/console/1/type", "ioemu"),
            ("/local/domain/7/device/console/1/output", "pty"),
            ("/local/domain/0/backend/console/7/2/frontend", "/local/domain/7/device/console/2"),
            ("/local/domain/7/device/console/2/type", "ioemu"),
            ("/local/domain/7/device/console/2/output", "chardev:libxl-channel2"),
            // A type on the backend side means nothing: libxl writes it on the frontend's.
            ("/local/domain/0/backend/console/7/3/type", "ioemu"),
            ("/local/domain/0/backend/console/7/junk/frontend", "/local/domain/7/device/console/1"),
        ] {
            xs.set(path, value);
        }
        let found = consoles_left_to_us(&xs, 7);
        assert_eq!(
            found,
            vec![
                ("1".to_string(), "/local/domain/7/device/console/1".to_string(), "pty".to_string()),
                ("2".to_string(), "/local/domain/7/device/console/2".to_string(), "chardev:libxl-channel2".to_string()),
            ]
        );
        assert!(consoles_left_to_us(&xs, 8).is_empty());
    }

    #[test]
    fn an_output_we_cannot_serve_is_said_and_not_opened() {
        let sockets = vec![("libxl-channel1".to_string(), PathBuf::from("/nonexistent/dir/c.sock"))];
        let err = |o: &str| open_host(o, &sockets).err().expect("refused");
        assert!(err("file:/tmp/x").contains("is not served"));
        assert!(err("chardev:libxl-channel9").contains("names no -chardev socket"));
        assert!(err("chardev:libxl-channel1").contains("binding /nonexistent/dir/c.sock"));
    }
}
