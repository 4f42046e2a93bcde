//! Differential check: the same QMP questions put to Debian's QEMU 7.2 and
//! to our server (over a fake machine holding the same two drives). Values
//! differ (node names, qdev paths); the JSON shapes must not.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xen_ioemu::block::CacheMode;
use xen_ioemu::control::qmp::{MachineError, MachineOps, QmpInfo, QmpServer};
use xen_ioemu::devices::ide::IdeError;
use xen_ioemu::control::QmpEndpoint;
use xen_ioemu::machine::{BlockStats, DriveInfo, EventSink, InsertedMedium, RunState};

const QEMU: &str = "qemu-system-x86_64";

struct TwoDrives {
    disk: PathBuf,
    cd: PathBuf,
}

impl MachineOps for TwoDrives {
    fn run_state(&self) -> RunState {
        RunState::Prelaunch
    }
    fn stop(&self) {}
    fn cont(&self) -> Result<(), MachineError> {
        Ok(())
    }
    fn block_info(&self) -> Vec<DriveInfo> {
        let medium = |path: &Path, read_only| InsertedMedium {
            file: path.display().to_string(),
            read_only,
            size: 1 << 20,
            cache: CacheMode::Writeback,
        };
        vec![
            DriveInfo {
                id: "ide0-hd0".into(),
                qdev: "ide0-hd0".into(),
                cdrom: false,
                removable: false,
                tray_open: false,
                locked: false,
                io_status: Some("ok"),
                inserted: Some(medium(&self.disk, false)),
                stats: BlockStats::default(),
            },
            DriveInfo {
                id: "ide1-cd0".into(),
                qdev: "ide1-cd0".into(),
                cdrom: true,
                removable: true,
                tray_open: false,
                locked: false,
                io_status: Some("ok"),
                inserted: Some(medium(&self.cd, true)),
                stats: BlockStats::default(),
            },
        ]
    }
    fn eject(&self, device: &str, _force: bool) -> Result<(), MachineError> {
        Err(MachineError::Ide(IdeError::NotRemovable(device.to_string())))
    }
    fn change_medium(&self, _: &str, _: &str, _: Option<bool>) -> Result<(), MachineError> {
        Ok(())
    }
    fn chardevs(&self) -> Vec<(String, String)> {
        vec![("serial0".into(), "null".into())]
    }
    fn quit(&self) {}
    fn system_reset(&self) -> Result<(), MachineError> {
        Ok(())
    }
}

struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    greeting: Value,
}

impl Session {
    fn cmd_with_fd(&mut self, request: Value, fd: &std::fs::File) -> Value {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::os::fd::AsRawFd;
        let text = format!("{request}\r\n");
        let iov = [std::io::IoSlice::new(text.as_bytes())];
        let fds = [fd.as_raw_fd()];
        sendmsg::<()>(self.writer.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).unwrap();
        loop {
            let message = self.recv();
            if message.get("event").is_none() {
                return message;
            }
        }
    }
    fn open(path: &Path) -> Session {
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("{}: {e}", path.display()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut session = Session { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream, greeting: Value::Null };
        session.greeting = session.recv();
        session
    }
    fn recv(&mut self) -> Value {
        let mut line = String::new();
        assert!(self.reader.read_line(&mut line).unwrap() > 0, "connection closed");
        serde_json::from_str(&line).unwrap()
    }
    fn cmd(&mut self, request: Value) -> Value {
        writeln!(self.writer, "{request}").unwrap();
        loop {
            let message = self.recv();
            if message.get("event").is_none() {
                return message;
            }
        }
    }
}

/// The shape of a JSON value: object keys recursively, array element shapes,
/// and the kind of every scalar.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn replies_have_the_shapes_qemu_7_2_gives() {
    assert!(
        Command::new(QEMU).arg("-version").stdout(Stdio::null()).status().is_ok(),
        "{QEMU} is not installed: run tools/install-deps.sh (the differential QMP check needs QEMU 7.2)"
    );
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let cd = dir.path().join("cd.iso");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    std::fs::write(&cd, vec![0u8; 1 << 20]).unwrap();
    let qemu_sock = dir.path().join("qemu.sock");
    let ours_sock = dir.path().join("ours.sock");
    let _qemu = Qemu(
        Command::new(QEMU)
            .args(["-machine", "pc", "-accel", "tcg", "-S", "-nodefaults", "-display", "none", "-serial", "null", "-m", "16", "-vnc", "none"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qemu_sock.display()))
            .arg("-drive")
            .arg(format!("if=ide,index=0,media=disk,format=raw,cache=writeback,file={}", disk.display()))
            .arg("-drive")
            .arg(format!("if=ide,index=2,media=cdrom,format=raw,file={}", cd.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("start qemu"),
    );
    let _server = QmpServer::start(
        &QmpEndpoint::UnixPath { label: "compat_monitor0".into(), path: ours_sock.clone() },
        Arc::new(TwoDrives { disk, cd }),
        EventSink::new(),
        QmpInfo::default(),
    )
    .unwrap();
    let mut qemu = Session::open(&qemu_sock);
    let mut ours = Session::open(&ours_sock);
    assert_eq!(shape(&qemu.greeting), shape(&ours.greeting));

    fn both(qemu: &mut Session, ours: &mut Session, request: Value) -> (Value, Value) {
        (qemu.cmd(request.clone()), ours.cmd(request))
    }

    let (q, o) = both(&mut qemu, &mut ours, json!({"execute": "query-status", "id": 1}));
    assert_eq!(q, o, "before negotiation");
    let (q, o) = both(&mut qemu, &mut ours, json!({"execute": "qmp_capabilities", "id": "neg"}));
    assert_eq!(q, o);
    for request in [
        json!({"execute": "query-status", "id": 2}),
        json!({"execute": "no-such-command", "id": 3}),
        json!({"execute": "qmp_capabilities"}),
        json!({"execute": "eject", "arguments": {"device": "nope"}}),
        json!({"execute": "eject", "arguments": {"id": "nope"}}),
        json!({"execute": "eject", "arguments": {"device": "ide0-hd0"}}),
        json!({"execute": "query-status", "arguments": {"x": 1}}),
        json!({"execute": "blockdev-change-medium", "arguments": {"device": "ide1-cd0"}}),
        json!({"execute": "query-name"}),
        json!({"execute": "add-fd", "id": 4}),
        json!({"execute": "remove-fd", "arguments": {"fdset-id": 3}}),
        json!({"execute": "remove-fd", "arguments": {"fdset-id": 3, "fd": 9}}),
        json!({"execute": "query-fdsets"}),
        json!({"execute": "query-vnc"}),
        json!({"execute": "blockdev-change-medium", "arguments": {"device": "ide1-cd0", "filename": "/dev/fdset/9"}}),
    ] {
        let (q, o) = both(&mut qemu, &mut ours, request.clone());
        assert_eq!(q, o, "{request}");
    }
    let (q, o) = both(&mut qemu, &mut ours, json!({"execute": "query-version"}));
    assert_eq!(shape(&q), shape(&o));

    // add-fd with a descriptor attached, as libxl's cd-insert sends it.
    let passed = std::fs::File::open(dir.path().join("cd.iso")).unwrap();
    let (q, o) = (qemu.cmd_with_fd(json!({"execute": "add-fd", "id": 8}), &passed), ours.cmd_with_fd(json!({"execute": "add-fd", "id": 8}), &passed));
    assert_eq!(shape(&q), shape(&o));
    assert_eq!(q["return"]["fdset-id"], o["return"]["fdset-id"]);
    let (q, o) = (qemu.cmd(json!({"execute": "query-fdsets"})), ours.cmd(json!({"execute": "query-fdsets"})));
    assert_eq!(shape(&q), shape(&o));

    let (q, o) = both(&mut qemu, &mut ours, json!({"execute": "query-block"}));
    let (q, o) = (&q["return"], &o["return"]);
    assert_eq!((q.as_array().map(Vec::len), o.as_array().map(Vec::len)), (Some(2), Some(2)));
    for i in 0..2 {
        assert_eq!(keys(&q[i]), keys(&o[i]), "query-block[{i}]");
        assert_eq!(shape(&q[i]["inserted"]), shape(&o[i]["inserted"]), "query-block[{i}].inserted");
        for key in ["device", "removable", "locked", "io-status", "type", "tray_open"] {
            assert_eq!(q[i][key], o[i][key], "query-block[{i}].{key}");
        }
        for key in ["ro", "drv", "file", "cache", "detect_zeroes", "backing_file_depth"] {
            assert_eq!(q[i]["inserted"][key], o[i]["inserted"][key], "query-block[{i}].inserted.{key}");
        }
    }

    let (q, o) = both(&mut qemu, &mut ours, json!({"execute": "query-blockstats"}));
    let (q, o) = (&q["return"], &o["return"]);
    assert_eq!((q.as_array().map(Vec::len), o.as_array().map(Vec::len)), (Some(2), Some(2)));
    for i in 0..2 {
        // "parent" (the protocol node's counters) is the one member we omit.
        let mut qemu_keys = keys(&q[i]);
        qemu_keys.remove("parent");
        assert_eq!(qemu_keys, keys(&o[i]), "query-blockstats[{i}]");
        assert_eq!(shape(&q[i]["stats"]), shape(&o[i]["stats"]), "query-blockstats[{i}].stats");
        assert_eq!(q[i]["stats"], o[i]["stats"], "idle counters");
    }

    let (q, o) = both(&mut qemu, &mut ours, json!({"execute": "query-chardev"}));
    let serial = |list: &Value| list["return"].as_array().unwrap().iter().find(|c| c["label"] == "serial0").cloned();
    assert_eq!(serial(&q), serial(&o));
}
