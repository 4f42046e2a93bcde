//! The qdisk backends of a domain: the backend half of the xenbus state
//! machine for every device libxl writes under
//! `/local/domain/0/backend/qdisk/<domid>/<devid>`, each served by a
//! [`crate::pvblock::Qdisk`] over a gntdev-mapped ring, grant copies and
//! an interdomain event channel.
//!
//! libxl writes the backend nodes (`params` = `FORMAT:PATH` with FORMAT
//! `aio` for raw or `qcow2`, `mode`, `dev`, `frontend`, `state` = 1) before
//! it starts the device model and does not wait for a qdisk backend to
//! connect. We then advertise the disk (`sectors`, `sector-size`, `info`,
//! `feature-flush-cache`, `feature-discard`, `max-ring-page-order`,
//! `feature-max-indirect-segments`) and go
//! to InitWait; when the frontend is Initialised (its `ring-ref`s,
//! `event-channel` and `protocol` written) we map the ring and go to
//! Connected. A frontend going to Closing/Closed, or libxl setting the
//! backend to Closing or `online` to 0, disconnects: in-flight requests
//! finish first, then the ring is unmapped and the channel unbound.
//!
//! xenstore-rs has no watches, so the nodes are polled (every 100 ms per
//! device, every second for new devices).

use super::evtchn::EventChannels;
use super::gntdev::{GrantDevice, XenGrantCopier, MAX_RING_PAGES};
use super::xenbus::{read_u32, Node};
use super::xenstore::{XenStore, XenstoreRead};
use crate::block::engine::{share, SharedBackend};
use crate::block::{open_image, CacheMode, ErrorPolicy, ImageSpec};
use crate::pvblock::request::{DiskLimits, MAX_INDIRECT_SEGMENTS};
use crate::pvblock::{BackRing, Notifier, PvDiskInfo, PvDiskTable, Qdisk, QdiskOptions};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashSet;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use xen_sys::blkif::*;
use xen_sys::{DomId, EvtchnPort};

/// werror/rerror/retry-interval of every qdisk disk (`-global xen-block.*`).
#[derive(Debug, Clone, Copy)]
pub struct QdiskPolicy {
    pub werror: ErrorPolicy,
    pub rerror: ErrorPolicy,
    pub retry_interval: Duration,
}

const POLL_MS: u16 = 100;
const SCAN_EVERY: u32 = 10;

pub struct QdiskService {
    stop: Arc<AtomicBool>,
    supervisor: Option<JoinHandle<()>>,
}

impl QdiskService {
    /// Open what every disk shares (the xenstore connection, gntdev) on the
    /// calling thread, then start the supervisor, filtered from its first
    /// instruction. Failures are logged: a domain without qdisk disks
    /// needs neither. The served disks are kept in `disks` for QMP.
    pub fn start(domid: DomId, policy: QdiskPolicy, disks: PvDiskTable) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = match (XenStore::open(), GrantDevice::open()) {
            (Ok(xs), gntdev) => Some((Arc::new(xs), gntdev.map_err(|e| e.to_string()))),
            (Err(e), _) => {
                log::error!("qdisk: {e}; PV disks are not served");
                None
            }
        };
        let s = stop.clone();
        let supervisor = shared.and_then(|(xs, gntdev)| {
            let sup = Supervisor { domid, policy, xs, gntdev, stop: s, disks };
            // libxl wrote the nodes of the disks the domain starts with
            // before it started us: those are opened here, before -runas
            // and -chroot drop privileges (dm_restrict).
            let first = sup.new_devices(&mut HashSet::new());
            std::thread::Builder::new()
                .name("qdisk".into())
                .spawn(move || {
                    crate::sandbox::enter_or_exit(crate::sandbox::ThreadKind::QdiskSupervisor);
                    supervise(sup, first);
                })
                .map_err(|e| log::error!("qdisk: cannot start the backend thread: {e}"))
                .ok()
        });
        QdiskService { stop, supervisor }
    }

    /// Stop every backend: in-flight requests complete and images are
    /// flushed before this returns.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.supervisor.take() {
            let _ = t.join();
        }
    }
}

fn base_path(domid: DomId) -> String {
    format!("/local/domain/0/backend/qdisk/{domid}")
}

struct Supervisor {
    domid: DomId,
    policy: QdiskPolicy,
    xs: Arc<XenStore>,
    /// gntdev, or why it could not be opened (said once a disk needs it).
    gntdev: std::result::Result<Arc<GrantDevice>, String>,
    stop: Arc<AtomicBool>,
    disks: PvDiskTable,
}

impl Supervisor {
    /// The devices under our backend path not seen before, each opened
    /// (None: it cannot be served, and the backend says why).
    fn new_devices(&self, seen: &mut HashSet<String>) -> Vec<(String, Option<Device>)> {
        let mut found = Vec::new();
        for devid in self.xs.directory(&base_path(self.domid)) {
            if devid.parse::<u32>().is_err() || !seen.insert(devid.clone()) {
                continue;
            }
            let dev = prepare_device(self, &devid);
            found.push((devid, dev));
        }
        found
    }
}

fn supervise(sup: Supervisor, first: Vec<(String, Option<Device>)>) {
    let mut started: HashSet<String> = first.iter().map(|(id, _)| id.clone()).collect();
    let mut threads = Vec::new();
    let mut found = first;
    let mut tick = 0u32;
    loop {
        for (devid, dev) in found.drain(..) {
            let Some(dev) = dev else { continue };
            let stop = sup.stop.clone();
            match std::thread::Builder::new().name(format!("qdisk-{devid}")).spawn(move || {
                crate::sandbox::enter_or_exit(crate::sandbox::ThreadKind::QdiskDevice);
                let mut dev = dev;
                super::xenbus::run(&mut dev, &stop, Duration::from_millis(u64::from(POLL_MS)));
                dev.finish();
            }) {
                Ok(t) => threads.push(t),
                Err(e) => log::error!("qdisk {devid}: cannot start its thread: {e}"),
            }
        }
        if sup.stop.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(u64::from(POLL_MS)));
        tick = tick.wrapping_add(1);
        if tick.is_multiple_of(SCAN_EVERY) {
            found = sup.new_devices(&mut started);
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

struct EvtchnNotifier {
    evtchn: Arc<EventChannels>,
    port: EvtchnPort,
}

impl Notifier for EvtchnNotifier {
    fn notify(&self) {
        if let Err(e) = self.evtchn.notify(self.port) {
            log::warn!("qdisk: notify: {e}");
        }
    }
}

/// `params` as libxl writes it for qdisk: `FORMAT:PATH`.
pub fn parse_params(params: &str) -> Result<(&'static str, &str), String> {
    let (format, path) = params.split_once(':').unwrap_or(("aio", params));
    let format = match format {
        "aio" | "raw" | "" => "raw",
        "qcow2" => "qcow2",
        other => return Err(format!("params={params:?}: format {other} is not served (raw/aio or qcow2)")),
    };
    if path.is_empty() {
        return Err(format!("params={params:?} names no image"));
    }
    Ok((format, path))
}

struct Device {
    /// Its xenstore directories; the label is "qdisk <vdev>".
    node: Node,
    gntdev: Arc<GrantDevice>,
    /// This disk's own event-channel descriptor (a reset after an overflow
    /// touches no other disk).
    evtchn: Arc<EventChannels>,
    domid: DomId,
    vdev: String,
    backend: SharedBackend,
    limits: DiskLimits,
    policy: QdiskPolicy,
    disks: PvDiskTable,
}

struct Connection {
    qdisk: Qdisk,
    port: EvtchnPort,
}

/// What a disk's thread needs, opened on the supervisor (the device thread
/// opens nothing). None: the disk cannot be served; the backend is Closed
/// with `hotplug-error` saying why.
fn prepare_device(sup: &Supervisor, devid: &str) -> Option<Device> {
    let (xs, domid) = (&sup.xs, sup.domid);
    let be = format!("{}/{devid}", base_path(domid));
    let fe = xs.read(&format!("{be}/frontend")).unwrap_or_else(|| format!("/local/domain/{domid}/device/vbd/{devid}"));
    let vdev = xs.read(&format!("{be}/dev")).unwrap_or_else(|| devid.to_string());
    let params = xs.read(&format!("{be}/params")).unwrap_or_default();
    let read_only = xs.read(&format!("{be}/mode")).is_none_or(|m| !m.starts_with('w'));
    let parsed = parse_params(&params);
    let file = parsed.as_ref().map(|(_, path)| path.to_string()).unwrap_or_default();
    let opened = parsed.and_then(|(format, path)| {
        open_image(&ImageSpec { file: path.to_string(), format: format.to_string(), cache: CacheMode::Writeback, read_only })
            .map_err(|e| e.to_string())
    });
    let channels = || -> std::result::Result<_, String> {
        let gntdev = sup.gntdev.clone()?;
        let evtchn = EventChannels::open().map_err(|e| e.to_string())?;
        Ok((gntdev, Arc::new(evtchn)))
    };
    let (image, (gntdev, evtchn)) = match opened.and_then(|image| Ok((image, channels()?))) {
        Ok(v) => v,
        Err(e) => {
            log::error!("qdisk {vdev}: {e}");
            super::xenbus::refuse(xs, &be, &e);
            return None;
        }
    };
    let sectors = image.size() >> BLKIF_SECTOR_SHIFT;
    let read_only = read_only || image.read_only();
    let info = PvDiskInfo { devid: devid.to_string(), file, read_only, size: image.size(), ..PvDiskInfo::default() };
    sup.disks.lock().unwrap_or_else(|e| e.into_inner()).insert(vdev.clone(), info);
    log::info!("qdisk {vdev} (devid {devid}): {params} {} sectors{}", sectors, if read_only { " read-only" } else { "" });
    Some(Device {
        node: Node { xs: xs.clone(), be, fe, label: format!("qdisk {vdev}") },
        gntdev,
        evtchn,
        domid,
        vdev,
        backend: share(image),
        limits: DiskLimits { sectors, read_only, discard: !read_only, max_indirect_segments: MAX_INDIRECT_SEGMENTS },
        policy: sup.policy,
        disks: sup.disks.clone(),
    })
}

impl Device {
    fn write(&self, leaf: &str, value: &str) {
        if let Err(e) = self.node.xs.write(&format!("{}/{leaf}", self.node.be), value) {
            log::warn!("qdisk {}: {e}", self.vdev);
        }
    }

    fn write_features(&self) {
        self.write("sector-size", "512");
        self.write("sectors", &self.limits.sectors.to_string());
        self.write("info", &(if self.limits.read_only { VDISK_READONLY } else { 0 }).to_string());
        self.write("feature-flush-cache", "1");
        self.write("feature-discard", if self.limits.discard { "1" } else { "0" });
        if self.limits.discard {
            self.write("discard-granularity", "512");
            self.write("discard-alignment", "0");
        }
        self.write("max-ring-page-order", &MAX_RING_PAGES.trailing_zeros().to_string());
        self.write("feature-max-indirect-segments", &self.limits.max_indirect_segments.to_string());
        super::xenbus::set_state(&self.node.xs, &self.node.be, &self.node.label, XENBUS_STATE_INIT_WAIT);
    }

    /// After the state machine ends: the image flushed, the disk out of
    /// the QMP table.
    fn finish(&self) {
        if let Err(e) = self.backend.lock().unwrap_or_else(|e| e.into_inner()).flush() {
            log::error!("qdisk {}: flushing the image at exit: {e}", self.vdev);
        }
        self.disks.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.vdev);
    }

    /// The connection's counters into the QMP table; `ended`: they join
    /// the disk's earlier ones.
    fn record_stats(&self, qdisk: &Qdisk, ended: bool) {
        if let Some(disk) = self.disks.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&self.vdev) {
            disk.current = qdisk.stats();
            if ended {
                disk.end_connection();
            }
        }
    }

    /// Wait up to `wait` for the event channel, then serve the ring once.
    fn serve_events(&self, c: &Connection, wait: Duration) {
        let mut fds = [PollFd::new(self.evtchn.as_fd(), PollFlags::POLLIN)];
        // At least 1 ms, so that a sub-millisecond remainder does not spin.
        let ms = wait.as_millis().clamp(1, u128::from(u16::MAX)) as u16;
        let _ = poll(&mut fds, PollTimeout::from(ms));
        super::xenbus::drain_pending(&self.evtchn, c.port, &self.node.label);
        if c.qdisk.retry_due() {
            c.qdisk.retry_held();
        }
        c.qdisk.process();
        self.record_stats(&c.qdisk, false);
    }

}

impl super::xenbus::Backend for Device {
    type Connection = Connection;
    fn node(&self) -> &super::xenbus::Node {
        &self.node
    }
    fn advertise(&self) {
        self.write_features();
    }

    fn connect(&self) -> Result<Connection, String> {
        let fe = &self.node.fe;
        let order = read_u32(&self.node.xs, &format!("{fe}/ring-page-order")).unwrap_or(0);
        if order > MAX_RING_PAGES.trailing_zeros() {
            return Err(format!("ring-page-order {order} is over our max-ring-page-order"));
        }
        let refs: Vec<u32> = if self.node.xs.read(&format!("{fe}/ring-page-order")).is_some() {
            (0..1u32 << order)
                .map(|i| read_u32(&self.node.xs, &format!("{fe}/ring-ref{i}")).ok_or(format!("{fe}/ring-ref{i} missing")))
                .collect::<Result<_, _>>()?
        } else {
            vec![read_u32(&self.node.xs, &format!("{fe}/ring-ref")).ok_or(format!("{fe}/ring-ref missing"))?]
        };
        let remote_port = read_u32(&self.node.xs, &format!("{fe}/event-channel")).ok_or(format!("{fe}/event-channel missing"))?;
        let layout = match self.node.xs.read(&format!("{fe}/protocol")).as_deref().map(str::trim) {
            None | Some("x86_64-abi") => BLKIF_X86_64,
            Some("x86_32-abi") => BLKIF_X86_32,
            Some(other) => return Err(format!("protocol {other:?} is not served")),
        };
        let mapping = self.gntdev.map(self.domid, &refs).map_err(|e| e.to_string())?;
        let ring = BackRing::attach(Arc::new(mapping), layout).map_err(|e| e.to_string())?;
        let port = self.evtchn.bind_interdomain(self.domid, remote_port).map_err(|e| e.to_string())?;
        let opts = QdiskOptions {
            drive: self.vdev.clone(),
            werror: self.policy.werror,
            rerror: self.policy.rerror,
            retry_interval: self.policy.retry_interval,
            audit: None,
        };
        let qdisk = Qdisk::new(
            ring,
            self.backend.clone(),
            self.limits,
            Arc::new(XenGrantCopier { dev: self.gntdev.clone(), domid: self.domid }),
            Arc::new(EvtchnNotifier { evtchn: self.evtchn.clone(), port }),
            opts,
        )
        .map_err(|e| {
            let _ = self.evtchn.unbind(port);
            e.to_string()
        })?;
        log::info!(
            "qdisk {}: connected, {} ring page(s), {}, event channel {remote_port} -> local {port}",
            self.vdev,
            refs.len(),
            layout.protocol
        );
        Ok(Connection { qdisk, port })
    }

    fn disconnect(&self, c: Connection) {
        if !c.qdisk.wait_idle(Duration::from_secs(30)) {
            log::error!("qdisk {}: requests still on the host after 30 s at disconnect", self.vdev);
        }
        if c.qdisk.held() > 0 {
            log::error!("qdisk {}: {} held request(s) dropped at disconnect (never acknowledged)", self.vdev, c.qdisk.held());
        }
        if let Err(e) = c.qdisk.flush() {
            log::error!("qdisk {}: flush at disconnect: {e}", self.vdev);
        }
        let _ = self.evtchn.unbind(c.port);
        self.record_stats(&c.qdisk, true);
        log::info!("qdisk {}: disconnected", self.vdev);
        // Dropping the Qdisk joins its worker and unmaps the ring.
    }

    /// Serve requests for about `period`, waking on the event channel.
    /// Every event is served as it comes, but the caller's xenstore reads
    /// happen once per `period`, not once per event: at three reads per
    /// kick, a busy ring made xenstored (and dom0's one vCPU) the
    /// bottleneck.
    fn serve(&mut self, c: &mut Connection, period: Duration) {
        let deadline = std::time::Instant::now() + period;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            // Requests left in the ring for lack of budget are taken as
            // soon as completions free it, not at the next notification.
            let wait = if c.qdisk.backlogged() { left.min(Duration::from_millis(1)) } else { left };
            self.serve_events(c, wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_as_libxl_writes_them() {
        assert_eq!(parse_params("aio:/var/img/a.raw"), Ok(("raw", "/var/img/a.raw")));
        assert_eq!(parse_params("qcow2:/x/y.qcow2"), Ok(("qcow2", "/x/y.qcow2")));
        assert_eq!(parse_params("/plain/path"), Ok(("raw", "/plain/path")));
        assert!(parse_params("vhd:/a.vhd").unwrap_err().contains("format vhd is not served"));
        assert!(parse_params("qcow2:").is_err());
    }
}
