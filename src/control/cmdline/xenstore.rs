//! The traditional flavour's disks, as qemu-dm found them in xenstore.

use super::*;
use super::drives::place;

/// What is wrong with a node of a disk the traditional flavour reads.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum XenstoreProblem {
    #[error("missing")]
    Missing,
    #[error("does not point back to {0}")]
    NotPointingBack(String),
    #[error("format {0} is not supported, only raw and qcow2")]
    Format(String),
    #[error("'{0}' is neither r nor w")]
    Mode(String),
    #[error("hard disk {0} has no image")]
    NoImage(String),
}

/// Why a frontend's `backend` node is not the one libxl writes.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackendPathError {
    #[error("is not under /local/domain/0/backend/")]
    NotDom0,
    #[error("is not a vbd/tap/qdisk/vbd3 backend")]
    Kind,
    #[error("belongs to another domain")]
    Domain,
    #[error("belongs to another device")]
    Device,
}

/// libxl puts every disk backend a dom0 device model can open at
/// /local/domain/0/backend/<kind>/<domid>/<devid> (libxl__device_backend_path
/// with backend_domid 0); qemu-dm compared it with that path too.
pub fn check_backend_path(backend: &str, domid: u32, devid: &str) -> Result<(), BackendPathError> {
    let rest = backend.strip_prefix("/local/domain/0/backend/").ok_or(BackendPathError::NotDom0)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [kind, dom, dev] = parts[..] else { return Err(BackendPathError::Device) };
    if !["vbd", "tap", "qdisk", "vbd3"].contains(&kind) {
        return Err(BackendPathError::Kind);
    }
    if dom != domid.to_string() {
        return Err(BackendPathError::Domain);
    }
    if dev != devid {
        return Err(BackendPathError::Device);
    }
    Ok(())
}

/// Read access to xenstore, as the Xen front provides it.
pub trait XenstoreRead {
    fn read(&self, path: &str) -> Option<String>;
    fn directory(&self, path: &str) -> Vec<String>;
}

/// The emulated disks of a qemu-xen-traditional domain, found the way
/// qemu-dm found them: each vbd frontend, its backend (which must point
/// back), the backend's dev/params/type/mode and the frontend's device-type.
pub fn drives_from_xenstore(store: &dyn XenstoreRead, domid: u32) -> Result<Vec<DriveSpec>, ConfigError> {
    let vbd_dir = format!("/local/domain/{domid}/device/vbd");
    let mut by_slot: Vec<Option<DriveSpec>> = vec![None; MAX_SLOTS as usize];
    let xs_err = |path: &str, reason: XenstoreProblem| ConfigError::Xenstore { path: path.to_string(), reason };
    for devid in store.directory(&vbd_dir) {
        let frontend = format!("{vbd_dir}/{devid}");
        let backend_key = format!("{frontend}/backend");
        let backend = store.read(&backend_key).ok_or_else(|| xs_err(&backend_key, XenstoreProblem::Missing))?;
        // The frontend area is the guest's to write: a `backend` it forged
        // could name any node (its own data/ area with params= of a dom0
        // disk). Only the exact path libxl writes is followed.
        if let Err(e) = check_backend_path(&backend, domid, &devid) {
            log::warn!("xenstore {backend_key}: '{backend}' {e}; disk {devid} skipped");
            continue;
        }
        let back_frontend_key = format!("{backend}/frontend");
        if store.read(&back_frontend_key).as_deref() != Some(frontend.as_str()) {
            return Err(xs_err(&back_frontend_key, XenstoreProblem::NotPointingBack(frontend.clone())));
        }
        let dev_key = format!("{backend}/dev");
        let dev = store.read(&dev_key).ok_or_else(|| xs_err(&dev_key, XenstoreProblem::Missing))?;
        let dev = dev.split(':').next().unwrap_or("");
        // Only hda..hdd are IDE; xvd*/sd* disks are PV-only for this guest.
        let slot = match dev.as_bytes() {
            [b'h', b'd', letter @ b'a'..=b'd'] => letter - b'a',
            _ => continue,
        };
        let params_key = format!("{backend}/params");
        let mut params = store.read(&params_key).unwrap_or_default();
        let mut format = "raw";
        loop {
            let lower = params.to_ascii_lowercase();
            if let Some(rest) = ["tap2:", "tap:", "aio:", "raw:", "qdisk:", "file:"]
                .iter()
                .find_map(|p| lower.starts_with(p).then(|| params[p.len()..].to_string()))
            {
                params = rest;
                continue;
            }
            if lower.starts_with("qcow2:") {
                params = params["qcow2:".len()..].to_string();
                format = "qcow2";
                continue;
            }
            if let Some(fmt) = ["qcow:", "vhd:", "vmdk:", "qed:"].iter().find(|p| lower.starts_with(**p)) {
                return Err(xs_err(&params_key, XenstoreProblem::Format(fmt.trim_end_matches(':').to_string())));
            }
            break;
        }
        let kind = store.read(&format!("{backend}/type")).unwrap_or_default();
        // qemu-dm's rule for bare device names ("loop3"); blkdebug: specs
        // (host error injection under test) name their files themselves.
        if kind == "phy" && !params.is_empty() && !params.starts_with('/') && !params.starts_with("blkdebug:") {
            params = format!("/dev/{params}");
        }
        let mode_key = format!("{backend}/mode");
        let read_only = match store.read(&mode_key).as_deref() {
            Some("r") => true,
            Some("w") | None => false,
            Some(other) => return Err(xs_err(&mode_key, XenstoreProblem::Mode(other.to_string()))),
        };
        let cdrom = store.read(&format!("{frontend}/device-type")).as_deref() == Some("cdrom");
        if !cdrom && params.is_empty() {
            return Err(xs_err(&params_key, XenstoreProblem::NoImage(dev.to_string())));
        }
        let spec = DriveSpec {
            id: format!("ide{}-{}{}", slot / 2, if cdrom { "cd" } else { "hd" }, slot % 2),
            slot,
            cdrom,
            file: (!params.is_empty()).then_some(params),
            format: format.into(),
            cache: CacheMode::Writeback,
            read_only: read_only || cdrom,
            werror: ErrorPolicy::Report,
            rerror: ErrorPolicy::Report,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            serial: None,
            model: None,
            device_id: None,
        };
        place(&mut by_slot, &format!("xenstore {frontend}"), slot, spec)?;
    }
    Ok(by_slot.into_iter().flatten().collect())
}
