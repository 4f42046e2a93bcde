//! The wire shapes: greeting, error replies, query-block and
//! query-blockstats entries, query-command-line-options, events.

use super::error::CommandError;
use crate::block::CacheMode;
use crate::control::cmdline::QmpEndpoint;
use crate::machine::{DriveInfo, Event};
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn greeting() -> Value {
    json!({"QMP": {"version": version_json(), "capabilities": ["oob"]}})
}

pub(super) fn version_json() -> Value {
    json!({"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": format!("xen-ioemu {}", env!("CARGO_PKG_VERSION"))})
}

/// The reply to a failed request: QEMU's class for it and its text.
pub(super) fn error_reply(err: &CommandError, id: Option<&Value>) -> Value {
    let mut reply = json!({"error": {"class": err.class().as_str(), "desc": err.to_string()}});
    if let Some(id) = id {
        reply["id"] = id.clone();
    }
    reply
}


/// QEMU names block nodes "#blockNNN"; ours only need to be stable and unique.
pub fn node_name(index: usize) -> String {
    format!("#block{:03}", index + 1)
}

fn cache_json(cache: CacheMode) -> Value {
    let (writeback, direct, no_flush) = match cache {
        CacheMode::Writeback => (true, false, false),
        CacheMode::Writethrough => (false, false, false),
        CacheMode::None => (true, true, false),
        CacheMode::Directsync => (false, true, false),
        CacheMode::Unsafe => (true, false, true),
    };
    json!({"no-flush": no_flush, "direct": direct, "writeback": writeback})
}

pub(super) fn block_json(index: usize, drive: &DriveInfo) -> Value {
    let mut entry = json!({
        "device": drive.id,
        "locked": drive.locked,
        "removable": drive.removable,
        "qdev": drive.qdev,
        "type": "unknown",
    });
    if let Some(status) = drive.io_status {
        entry["io-status"] = json!(status);
    }
    if drive.removable {
        entry["tray_open"] = json!(drive.tray_open);
    }
    if let Some(medium) = &drive.inserted {
        let mut image = json!({
            "virtual-size": medium.size,
            "filename": medium.file,
            "format": "raw",
            "dirty-flag": false,
        });
        // Allocated bytes on the host, as QEMU's raw driver reports them.
        if let Ok(meta) = std::fs::metadata(&medium.file) {
            image["actual-size"] = json!(meta.blocks() * 512);
        }
        entry["inserted"] = json!({
            "iops_rd": 0, "detect_zeroes": "off", "image": image, "iops_wr": 0,
            "ro": medium.read_only, "node-name": node_name(index), "backing_file_depth": 0,
            "drv": "raw", "iops": 0, "bps_wr": 0, "write_threshold": 0, "encrypted": false,
            "bps": 0, "bps_rd": 0, "cache": cache_json(medium.cache), "file": medium.file,
        });
    }
    entry
}

pub(super) fn blockstats_json(index: usize, drive: &DriveInfo) -> Value {
    let s = &drive.stats;
    let mut entry = json!({
        "device": drive.id,
        "qdev": drive.qdev,
        "stats": {
            "unmap_operations": s.unmap_operations, "unmap_merged": 0,
            "flush_total_time_ns": s.flush_total_time_ns, "wr_highest_offset": 0,
            "wr_total_time_ns": s.wr_total_time_ns, "failed_wr_operations": s.failed_wr_operations,
            "failed_rd_operations": s.failed_rd_operations, "wr_merged": 0, "wr_bytes": s.wr_bytes,
            "timed_stats": [], "failed_unmap_operations": s.failed_unmap_operations,
            "failed_flush_operations": s.failed_flush_operations, "account_invalid": true,
            "rd_total_time_ns": s.rd_total_time_ns, "invalid_unmap_operations": 0,
            "flush_operations": s.flush_operations, "wr_operations": s.wr_operations,
            "unmap_bytes": s.unmap_bytes, "rd_merged": 0, "rd_bytes": s.rd_bytes,
            "unmap_total_time_ns": 0, "invalid_flush_operations": 0, "account_failed": true,
            "rd_operations": s.rd_operations, "invalid_wr_operations": 0, "invalid_rd_operations": 0,
        },
    });
    if drive.inserted.is_some() {
        entry["node-name"] = json!(node_name(index));
    }
    entry
}

/// The options and parameters this binary understands, in the shape of
/// QEMU's query-command-line-options. libxl 4.20+ asks in its probe run
/// whether `-run-with` exists; it does not here, so libxl keeps using
/// `-chroot` and `-runas`.
pub(super) fn command_line_options(only: Option<&str>) -> Result<Value, CommandError> {
    let table: &[(&str, &[(&str, &str)])] = &[
        ("machine", &[("type", "string"), ("accel", "string"), ("suppress-vmdesc", "boolean"), ("max-ram-below-4g", "size")]),
        ("drive", &[
            ("file", "string"), ("if", "string"), ("index", "number"), ("bus", "number"), ("unit", "number"),
            ("media", "string"), ("format", "string"), ("cache", "string"), ("readonly", "boolean"),
            ("werror", "string"), ("rerror", "string"), ("retry-interval", "number"), ("id", "string"),
        ]),
        ("chardev", &[("id", "string"), ("backend", "string"), ("path", "string"), ("fd", "string"), ("server", "boolean"), ("wait", "boolean")]),
        ("mon", &[("chardev", "string"), ("mode", "string")]),
        ("boot-opts", &[("order", "string"), ("once", "string")]),
        ("smp-opts", &[("cpus", "number"), ("maxcpus", "number")]),
        ("global", &[("driver", "string"), ("property", "string"), ("value", "string")]),
        ("accel", &[("accel", "string")]),
    ];
    let render = |(name, params): &(&str, &[(&str, &str)])| {
        let parameters: Vec<Value> = params.iter().map(|(p, t)| json!({"name": p, "type": t})).collect();
        json!({"parameters": parameters, "option": name})
    };
    match only {
        None => Ok(Value::Array(table.iter().map(render).collect())),
        Some(wanted) => match table.iter().find(|(name, _)| *name == wanted) {
            Some(entry) => Ok(json!([render(entry)])),
            None => Err(CommandError::InvalidParameter("option")),
        },
    }
}

/// An event as QEMU 7.2 puts it on the wire.
pub fn event_json(event: &Event, now: SystemTime) -> Value {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (name, data) = match event {
        Event::BlockIoError { device, node_name, operation, action, nospace, reason } => {
            let mut data = json!({
                "device": device, "node-name": node_name, "operation": operation.as_qmp(),
                "action": action, "reason": reason,
            });
            if let Some(nospace) = nospace {
                data["nospace"] = json!(nospace);
            }
            ("BLOCK_IO_ERROR", Some(data))
        }
        Event::Stop => ("STOP", None),
        Event::Resume => ("RESUME", None),
        Event::Shutdown { guest, reason } => ("SHUTDOWN", Some(json!({"guest": guest, "reason": reason}))),
        Event::Reset { guest, reason } => ("RESET", Some(json!({"guest": guest, "reason": reason}))),
        Event::DeviceTrayMoved { device, id, tray_open } => {
            ("DEVICE_TRAY_MOVED", Some(json!({"device": device, "tray-open": tray_open, "id": id})))
        }
    };
    let mut message = json!({
        "timestamp": {"seconds": since_epoch.as_secs(), "microseconds": since_epoch.subsec_micros()},
        "event": name,
    });
    if let Some(data) = data {
        message["data"] = data;
    }
    message
}

/// The query-chardev entries of the QMP monitors on the command line, in
/// QEMU's filename format, for the launcher's `MachineOps::chardevs`.
pub fn monitor_chardevs(endpoints: &[QmpEndpoint]) -> Vec<(String, String)> {
    endpoints
        .iter()
        .map(|e| match e {
            QmpEndpoint::UnixPath { label, path } => (label.clone(), format!("unix:{},server=on", path.display())),
            QmpEndpoint::Fd { label, .. } => (label.clone(), "disconnected:unix".to_string()),
            QmpEndpoint::Connect { label, path } => (label.clone(), format!("unix:{}", path.display())),
        })
        .collect()
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::IoOperation;
    use std::time::Duration;

    #[test]
    fn block_io_error_event_shape() {
        let event = Event::BlockIoError {
            device: "ide0-hd0".into(),
            node_name: "#block121".into(),
            operation: IoOperation::Write,
            action: "stop",
            nospace: Some(true),
            reason: "No space left on device".into(),
        };
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(
            event_json(&event, at),
            json!({"timestamp": {"seconds": 1_700_000_000u64, "microseconds": 123_456},
                   "event": "BLOCK_IO_ERROR",
                   "data": {"device": "ide0-hd0", "node-name": "#block121", "operation": "write",
                            "action": "stop", "nospace": true, "reason": "No space left on device"}})
        );
        let stop = event_json(&Event::Stop, at);
        assert_eq!(stop["event"], "STOP");
        assert!(stop.get("data").is_none());
        let tray = event_json(&Event::DeviceTrayMoved { device: "ide1-cd0".into(), id: "cd".into(), tray_open: true }, at);
        assert_eq!(tray["data"], json!({"device": "ide1-cd0", "tray-open": true, "id": "cd"}));
    }

    #[test]
    fn cache_modes_map_to_qemu_flags() {
        assert_eq!(cache_json(CacheMode::None), json!({"no-flush": false, "direct": true, "writeback": true}));
        assert_eq!(cache_json(CacheMode::Unsafe), json!({"no-flush": true, "direct": false, "writeback": true}));
        assert_eq!(cache_json(CacheMode::Writethrough)["writeback"], false);
    }

    #[test]
    fn command_line_options_filter() {
        let all = command_line_options(None).ok().unwrap();
        assert!(all.as_array().unwrap().iter().all(|o| o["option"] != "run-with"));
        let drive = command_line_options(Some("drive")).ok().unwrap();
        assert_eq!(drive[0]["option"], "drive");
        assert_eq!(command_line_options(Some("run-with")).err().unwrap().to_string(), "Invalid parameter 'option'");
    }
}

