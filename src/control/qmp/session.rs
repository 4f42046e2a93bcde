//! The commands: what libxl, xentop and the qtest suites send, answered
//! as QEMU 7.2 answers them.

use super::args::{invalid_type, Args};
use super::error::CommandError;
use super::json::{block_json, blockstats_json, command_line_options, error_reply, version_json};
use super::{Shared, MAX_FDSETS, MAX_FDS_PER_SET};
use super::error::MachineError;
use crate::machine::{DriveInfo, RunState};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

pub(super) struct Session {
    shared: Arc<Shared>,
    /// Events start once the reply saying so is queued (read_commands).
    pub(super) negotiated: bool,
    pub(super) quit_requested: bool,
    received_fds: Arc<Mutex<VecDeque<OwnedFd>>>,
    /// add-fd's fd sets. QEMU keeps them per process; libxl adds and uses
    /// one within a single connection, so they live as long as it.
    fdsets: BTreeMap<u64, Vec<PassedFd>>,
}

struct PassedFd {
    fd: OwnedFd,
    opaque: Option<String>,
}

impl Session {
    /// `received_fds`: where the connection's reader puts descriptors
    /// passed with a command, for add-fd to claim.
    pub(super) fn new(shared: Arc<Shared>, received_fds: Arc<Mutex<VecDeque<OwnedFd>>>) -> Self {
        Session { shared, negotiated: false, quit_requested: false, received_fds, fdsets: BTreeMap::new() }
    }

    pub(super) fn handle_request(&mut self, request: Value) -> Value {
        let Value::Object(request) = request else {
            return error_reply(&CommandError::NotAnObject, None);
        };
        let id = request.get("id");
        let command = match request.get("execute").or_else(|| request.get("exec-oob")) {
            Some(Value::String(name)) => name.as_str(),
            Some(_) => return error_reply(&CommandError::ExecuteNotAString, id),
            None => return error_reply(&CommandError::NoExecute, id),
        };
        for key in request.keys() {
            if !matches!(key.as_str(), "execute" | "exec-oob" | "arguments" | "id" | "control") {
                return error_reply(&CommandError::UnexpectedMember(key.clone()), id);
            }
        }
        let empty = Map::new();
        let arguments = match request.get("arguments") {
            None => &empty,
            Some(Value::Object(map)) => map,
            Some(_) => return error_reply(&CommandError::ArgumentsNotAnObject, id),
        };
        let result = if !self.negotiated && command != "qmp_capabilities" {
            Err(CommandError::NotNegotiated)
        } else {
            self.dispatch(command, Args(arguments))
        };
        match result {
            Ok(value) => {
                let mut reply = json!({"return": value});
                if let Some(id) = id {
                    reply["id"] = id.clone();
                }
                reply
            }
            Err(e) => error_reply(&e, id),
        }
    }

    fn dispatch(&mut self, command: &str, args: Args) -> Result<Value, CommandError> {
        let ops = &self.shared.ops;
        match command {
            "qmp_capabilities" => {
                args.only(&["enable"])?;
                if self.negotiated {
                    return Err(CommandError::AlreadyNegotiated);
                }
                if let Some(enable) = args.0.get("enable") {
                    let Value::Array(list) = enable else {
                        return Err(invalid_type("enable", "array"));
                    };
                    for cap in list {
                        if cap != "oob" {
                            return Err(CommandError::NoSuchCapability(cap.as_str().unwrap_or("?").to_string()));
                        }
                    }
                }
                self.negotiated = true;
                Ok(json!({}))
            }
            "query-status" => {
                args.only(&[])?;
                let state = ops.run_state();
                Ok(json!({"status": state.as_qmp(), "singlestep": false, "running": state == RunState::Running}))
            }
            "stop" => {
                args.only(&[])?;
                ops.stop();
                Ok(json!({}))
            }
            "cont" => {
                args.only(&[])?;
                ops.cont()?;
                Ok(json!({}))
            }
            "system_reset" => {
                args.only(&[])?;
                ops.system_reset()?;
                Ok(json!({}))
            }
            "query-version" => {
                args.only(&[])?;
                Ok(version_json())
            }
            "query-name" => {
                args.only(&[])?;
                Ok(match &self.shared.info.name {
                    Some(name) => json!({"name": name}),
                    None => json!({}),
                })
            }
            "query-chardev" => {
                args.only(&[])?;
                let list: Vec<Value> = ops
                    .chardevs()
                    .into_iter()
                    .map(|(label, filename)| json!({"frontend-open": true, "filename": filename, "label": label}))
                    .collect();
                Ok(Value::Array(list))
            }
            "query-block" => {
                args.only(&["flat"])?;
                Ok(Value::Array(ops.block_info().iter().enumerate().map(|(i, d)| block_json(i, d)).collect()))
            }
            "query-blockstats" => {
                args.only(&["query-nodes"])?;
                Ok(Value::Array(
                    ops.block_info().iter().enumerate().map(|(i, d)| blockstats_json(i, d)).collect(),
                ))
            }
            "eject" => {
                args.only(&["device", "id", "force"])?;
                let device = self.find_drive(&args)?;
                let force = args.bool("force")?.unwrap_or(false);
                ops.eject(&device.id, force)?;
                Ok(json!({}))
            }
            "add-fd" => {
                args.only(&["fdset-id", "opaque"])?;
                let wanted_set = args.uint("fdset-id")?;
                let opaque = args.str("opaque")?.map(str::to_string);
                let fd = self
                    .received_fds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front()
                    .ok_or(CommandError::NoPassedFd)?;
                let set_id = match wanted_set {
                    Some(id) => id,
                    None => (0..).find(|id| !self.fdsets.contains_key(id)).unwrap_or(0),
                };
                if !self.fdsets.contains_key(&set_id) && self.fdsets.len() >= MAX_FDSETS {
                    return Err(CommandError::TooManyFdSets);
                }
                let set = self.fdsets.entry(set_id).or_default();
                if set.len() >= MAX_FDS_PER_SET {
                    return Err(CommandError::TooManyFds(set_id));
                }
                let number = fd.as_raw_fd();
                set.push(PassedFd { fd, opaque });
                Ok(json!({"fdset-id": set_id, "fd": number}))
            }
            "remove-fd" => {
                args.only(&["fdset-id", "fd"])?;
                let set_id = args.uint("fdset-id")?.ok_or_else(|| CommandError::MissingParameter("fdset-id".into()))?;
                let fd = args.uint("fd")?;
                let missing = || match fd {
                    Some(fd) => CommandError::NoSuchFd { set: set_id, fd },
                    None => CommandError::NoSuchFdSet(set_id),
                };
                let set = self.fdsets.get_mut(&set_id).ok_or_else(missing)?;
                match fd {
                    None => set.clear(),
                    Some(number) => {
                        let at = set.iter().position(|p| p.fd.as_raw_fd() as u64 == number).ok_or_else(missing)?;
                        set.remove(at);
                    }
                }
                if set.is_empty() {
                    self.fdsets.remove(&set_id);
                }
                Ok(json!({}))
            }
            "query-fdsets" => {
                args.only(&[])?;
                let sets: Vec<Value> = self
                    .fdsets
                    .iter()
                    .map(|(id, fds)| {
                        let fds: Vec<Value> = fds
                            .iter()
                            .map(|p| {
                                let mut entry = json!({"fd": p.fd.as_raw_fd()});
                                if let Some(opaque) = &p.opaque {
                                    entry["opaque"] = json!(opaque);
                                }
                                entry
                            })
                            .collect();
                        json!({"fdset-id": id, "fds": fds})
                    })
                    .collect();
                Ok(Value::Array(sets))
            }
            "blockdev-change-medium" => {
                args.only(&["device", "id", "filename", "format", "force", "read-only-mode"])?;
                let device = self.find_drive(&args)?;
                let filename = args.required_str("filename")?;
                if let Some(format) = args.str("format")? {
                    if format != "raw" {
                        return Err(CommandError::UnknownDriver(format.to_string()));
                    }
                }
                let read_only = match args.str("read-only-mode")? {
                    None | Some("retain") => None,
                    Some("read-only") => Some(true),
                    Some("read-write") => Some(false),
                    Some(other) => {
                        return Err(CommandError::InvalidValue { key: "read-only-mode", value: other.to_string() })
                    }
                };
                self.change_medium(&device.id, filename, read_only)?;
                Ok(json!({}))
            }
            // Removed from QEMU in 6.0; libxl only sends it to QEMU < 2.8.
            "change" => {
                args.only(&["device", "target", "arg"])?;
                let name = args.required_str("device")?;
                let target = args.required_str("target")?;
                let device = lookup(ops.block_info(), Some(name), None)?;
                self.change_medium(&device.id, target, None)?;
                Ok(json!({}))
            }
            "query-command-line-options" => {
                args.only(&["option"])?;
                command_line_options(args.str("option")?)
            }
            // libxl asks after every start when the config has VNC on (the
            // xl default); an error there fails domain creation. There is no
            // VNC server here, which is what QEMU says for -vnc none.
            "query-vnc" => {
                args.only(&[])?;
                Ok(json!({"enabled": false}))
            }
            "change-vnc-password" => {
                args.only(&["password"])?;
                args.required_str("password")?;
                log::warn!("QMP {}: change-vnc-password ignored, no VNC server is provided", self.shared.label);
                Ok(json!({}))
            }
            "human-monitor-command" => {
                args.only(&["command-line", "cpu-index"])?;
                args.required_str("command-line")?;
                Ok(json!(""))
            }
            "xen-set-global-dirty-log" => {
                args.only(&["enable"])?;
                let on = args.bool("enable")?.ok_or_else(|| CommandError::MissingParameter("enable".into()))?;
                ops.set_dirty_logging(on)?;
                Ok(json!({}))
            }
            "xen-save-devices-state" => {
                args.only(&["filename", "live"])?;
                let filename = args.required_str("filename")?;
                // Nothing differs for a live save: the memory is copied by
                // libxl, and our state is taken with the guest stopped.
                args.bool("live")?;
                let blob = ops.save_devices_state()?;
                self.write_state_file(filename, &blob)?;
                log::info!("device state saved to {filename}: {} bytes", blob.len());
                Ok(json!({}))
            }
            "xen-load-devices-state" => {
                args.only(&["filename"])?;
                let filename = args.required_str("filename")?;
                let blob = crate::machine::savestate::read_state_file(std::fs::File::open(filename).map_err(|source| {
                    MachineError::StateFile { file: filename.to_string(), source }
                })?)
                .map_err(|source| MachineError::StateFile { file: filename.to_string(), source })?;
                ops.load_devices_state(&blob)?;
                Ok(json!({}))
            }
            "quit" => {
                args.only(&[])?;
                self.quit_requested = true;
                Ok(json!({}))
            }
            other => Err(CommandError::UnknownCommand(other.to_string())),
        }
    }

    /// The state to "/dev/fdset/N" (libxl's qemu-save.<domid>, opened by
    /// it, written from where it stands) or to a path we create (0600).
    fn write_state_file(&self, filename: &str, blob: &[u8]) -> Result<(), CommandError> {
        use std::io::Write;
        let failed = |source| MachineError::StateFile { file: filename.to_string(), source };
        let mut file = match filename.strip_prefix("/dev/fdset/") {
            Some(set) => {
                let fd = set
                    .parse::<u64>()
                    .ok()
                    .and_then(|id| self.fdsets.get(&id))
                    .and_then(|fds| fds.first())
                    .ok_or_else(|| failed(std::io::Error::from_raw_os_error(libc::ENOENT)))?;
                std::fs::File::from(fd.fd.try_clone().map_err(failed)?)
            }
            None => {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(filename).map_err(failed)?
            }
        };
        file.write_all(blob).and_then(|_| file.sync_data().or_else(|e| if e.raw_os_error() == Some(libc::EINVAL) { Ok(()) } else { Err(e) })).map_err(failed)?;
        Ok(())
    }

    /// A path, or "/dev/fdset/N" for a descriptor passed with add-fd.
    fn change_medium(&self, device: &str, filename: &str, read_only: Option<bool>) -> Result<(), CommandError> {
        let ops = &self.shared.ops;
        let Some(set) = filename.strip_prefix("/dev/fdset/") else {
            return Ok(ops.change_medium(device, filename, read_only)?);
        };
        let fd = set
            .parse::<u64>()
            .ok()
            .and_then(|id| self.fdsets.get(&id))
            .and_then(|fds| fds.first())
            .ok_or_else(|| {
                // The open(2) access mode QEMU would have used.
                let flags = if read_only == Some(false) { libc::O_RDWR } else { libc::O_RDONLY };
                CommandError::NoFdForMedium { filename: filename.to_string(), flags }
            })?;
        // The set keeps its descriptor, as in QEMU; the medium gets a duplicate.
        let medium = fd.fd.try_clone().map_err(|source| CommandError::DupFd { filename: filename.to_string(), source })?;
        Ok(ops.change_medium_fd(device, medium, read_only)?)
    }

    fn find_drive(&self, args: &Args) -> Result<DriveInfo, CommandError> {
        let device = args.str("device")?;
        let id = args.str("id")?;
        if device.is_some() == id.is_some() {
            return Err(CommandError::DeviceOrId);
        }
        lookup(self.shared.ops.block_info(), device, id)
    }
}

fn lookup(drives: Vec<DriveInfo>, device: Option<&str>, id: Option<&str>) -> Result<DriveInfo, CommandError> {
    let wanted = device.or(id).unwrap_or("");
    drives
        .into_iter()
        .find(|d| match (device, id) {
            (Some(name), _) => d.id == name,
            (_, Some(qdev)) => d.qdev == qdev,
            _ => false,
        })
        .ok_or_else(|| CommandError::DeviceNotFound(wanted.to_string()))
}

