//! QMP transcripts over real unix sockets against a fake machine.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xen_ioemu::block::CacheMode;
use xen_ioemu::control::qmp::{MachineError, MachineOps, QmpInfo, QmpServer};
use xen_ioemu::devices::ide::IdeError;
use xen_ioemu::control::QmpEndpoint;
use xen_ioemu::machine::{BlockStats, DriveInfo, Event, EventSink, InsertedMedium, IoOperation, RunState};

#[derive(Default)]
struct FakeMachine {
    state: Mutex<Option<RunState>>,
    calls: Mutex<Vec<String>>,
    cont_needs_reset: Mutex<bool>,
    image: PathBuf,
}

impl FakeMachine {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl MachineOps for FakeMachine {
    fn run_state(&self) -> RunState {
        self.state.lock().unwrap().unwrap_or(RunState::Prelaunch)
    }
    fn stop(&self) {
        self.record("stop".into());
        *self.state.lock().unwrap() = Some(RunState::Paused);
    }
    fn cont(&self) -> Result<(), MachineError> {
        self.record("cont".into());
        if *self.cont_needs_reset.lock().unwrap() {
            return Err(MachineError::ResetRequired);
        }
        *self.state.lock().unwrap() = Some(RunState::Running);
        Ok(())
    }
    fn block_info(&self) -> Vec<DriveInfo> {
        let file = self.image.display().to_string();
        vec![
            DriveInfo {
                id: "ide0-hd0".into(),
                qdev: "/machine/ide0-hd0".into(),
                cdrom: false,
                removable: false,
                tray_open: false,
                locked: false,
                io_status: Some("nospace"),
                inserted: Some(InsertedMedium { file: file.clone(), read_only: false, size: 4096, cache: CacheMode::Writeback }),
                stats: BlockStats { rd_bytes: 512, rd_operations: 1, failed_wr_operations: 2, ..Default::default() },
            },
            DriveInfo {
                id: "ide1-cd0".into(),
                qdev: "cd-dev".into(),
                cdrom: true,
                removable: true,
                tray_open: true,
                locked: false,
                io_status: Some("ok"),
                inserted: None,
                stats: BlockStats::default(),
            },
        ]
    }
    fn eject(&self, device: &str, force: bool) -> Result<(), MachineError> {
        self.record(format!("eject {device} {force}"));
        if device == "ide0-hd0" {
            return Err(MachineError::Ide(IdeError::NotRemovable(device.to_string())));
        }
        Ok(())
    }
    fn change_medium(&self, device: &str, filename: &str, read_only: Option<bool>) -> Result<(), MachineError> {
        self.record(format!("change {device} {filename} {read_only:?}"));
        Ok(())
    }
    fn chardevs(&self) -> Vec<(String, String)> {
        vec![("serial0".into(), "pty:/dev/pts/3".into()), ("libxl-cmd".into(), "unix:/x,server=on".into())]
    }
    fn quit(&self) {
        self.record("quit".into());
    }
    fn system_reset(&self) -> Result<(), MachineError> {
        self.record("system_reset".into());
        Ok(())
    }
    fn change_medium_fd(&self, device: &str, fd: OwnedFd, read_only: Option<bool>) -> Result<(), MachineError> {
        let mut content = String::new();
        std::fs::File::from(fd).read_to_string(&mut content).expect("the passed descriptor is readable");
        self.record(format!("change-fd {device} {content:?} {read_only:?}"));
        Ok(())
    }
}

struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect");
        Self::over(stream)
    }
    fn over(stream: UnixStream) -> Client {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
    }
    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read");
        assert!(n > 0, "connection closed");
        assert!(line.ends_with("\r\n"), "line not CRLF-terminated: {line:?}");
        serde_json::from_str(&line).expect("json")
    }
    fn send_raw(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }
    /// Sends a command and returns its reply, skipping events.
    fn cmd(&mut self, request: Value) -> Value {
        self.send_raw(&format!("{request}\n"));
        loop {
            let message = self.recv();
            if message.get("event").is_none() {
                return message;
            }
        }
    }
    fn negotiated(path: &Path) -> Client {
        let mut client = Client::connect(path);
        client.recv();
        assert_eq!(client.cmd(json!({"execute": "qmp_capabilities"})), json!({"return": {}}));
        client
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    machine: Arc<FakeMachine>,
    events: EventSink,
    server: QmpServer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![1u8; 4096]).unwrap();
    let machine = Arc::new(FakeMachine { image, ..Default::default() });
    let events = EventSink::new();
    let server = QmpServer::start(
        &QmpEndpoint::UnixPath { label: "libxl-cmd".into(), path: path.clone() },
        machine.clone(),
        events.clone(),
        QmpInfo { name: Some("g1".into()), vcpus: 2 },
    )
    .unwrap();
    Fixture { _dir: dir, path, machine, events, server }
}

#[test]
fn greeting_and_capabilities_negotiation() {
    let f = fixture();
    let mut c = Client::connect(&f.path);
    assert_eq!(
        c.recv(),
        json!({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "xen-ioemu 0.1.0"}, "capabilities": ["oob"]}})
    );
    assert_eq!(
        c.cmd(json!({"execute": "query-status", "id": 1})),
        json!({"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 1})
    );
    assert_eq!(c.cmd(json!({"execute": "qmp_capabilities", "id": "x"})), json!({"return": {}, "id": "x"}));
    assert_eq!(
        c.cmd(json!({"execute": "qmp_capabilities"}))["error"]["desc"],
        "Capabilities negotiation is already complete, command ignored"
    );
    assert!(f.machine.calls().is_empty());
}

#[test]
fn run_control_commands() {
    let f = fixture();
    let mut c = Client::negotiated(&f.path);
    assert_eq!(
        c.cmd(json!({"execute": "query-status", "id": [1, 2]})),
        json!({"return": {"status": "prelaunch", "singlestep": false, "running": false}, "id": [1, 2]})
    );
    assert_eq!(c.cmd(json!({"execute": "cont", "id": 7})), json!({"return": {}, "id": 7}));
    assert_eq!(c.cmd(json!({"execute": "query-status"}))["return"]["status"], "running");
    assert_eq!(c.cmd(json!({"execute": "query-status"}))["return"]["running"], true);
    assert_eq!(c.cmd(json!({"execute": "stop"})), json!({"return": {}}));
    assert_eq!(c.cmd(json!({"execute": "query-status"}))["return"]["status"], "paused");
    *f.machine.cont_needs_reset.lock().unwrap() = true;
    assert_eq!(
        c.cmd(json!({"execute": "cont"})),
        json!({"error": {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"}})
    );
    assert_eq!(f.machine.calls(), vec!["cont", "stop", "cont"]);
}

#[test]
fn query_commands_have_qemu_shapes() {
    let f = fixture();
    let mut c = Client::negotiated(&f.path);
    assert_eq!(
        c.cmd(json!({"execute": "query-version"}))["return"],
        json!({"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "xen-ioemu 0.1.0"})
    );
    assert_eq!(c.cmd(json!({"execute": "query-name"}))["return"], json!({"name": "g1"}));
    // libxl's retrieve_domain_configuration (every xl save and migrate)
    // reads cpu-index of each entry as the online-vCPU bitmap.
    let cpus = c.cmd(json!({"execute": "query-cpus-fast"}))["return"].clone();
    let indexes: Vec<u64> = cpus.as_array().unwrap().iter().map(|e| e["cpu-index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, vec![0, 1], "{cpus}");
    assert_eq!(
        c.cmd(json!({"execute": "query-chardev"}))["return"],
        json!([{"frontend-open": true, "filename": "pty:/dev/pts/3", "label": "serial0"},
               {"frontend-open": true, "filename": "unix:/x,server=on", "label": "libxl-cmd"}])
    );
    let block = c.cmd(json!({"execute": "query-block"}))["return"].clone();
    let hd = &block[0];
    assert_eq!(hd["device"], "ide0-hd0");
    assert_eq!(hd["io-status"], "nospace");
    assert_eq!(hd["removable"], false);
    assert!(hd.get("tray_open").is_none());
    assert_eq!(hd["type"], "unknown");
    let inserted = &hd["inserted"];
    assert_eq!(inserted["ro"], false);
    assert_eq!(inserted["drv"], "raw");
    assert_eq!(inserted["file"], f.machine.image.display().to_string());
    assert_eq!(inserted["image"]["virtual-size"], 4096);
    assert_eq!(inserted["image"]["format"], "raw");
    assert!(inserted["image"]["actual-size"].as_u64().unwrap() >= 4096);
    assert_eq!(inserted["cache"], json!({"no-flush": false, "direct": false, "writeback": true}));
    assert!(inserted["node-name"].as_str().unwrap().starts_with("#block"));
    let cd = &block[1];
    assert_eq!((cd["removable"].clone(), cd["tray_open"].clone()), (json!(true), json!(true)));
    assert!(cd.get("inserted").is_none());

    let stats = c.cmd(json!({"execute": "query-blockstats"}))["return"].clone();
    assert_eq!(stats[0]["device"], "ide0-hd0");
    assert_eq!(stats[0]["qdev"], "/machine/ide0-hd0");
    assert_eq!(stats[0]["stats"]["rd_bytes"], 512);
    assert_eq!(stats[0]["stats"]["rd_operations"], 1);
    assert_eq!(stats[0]["stats"]["failed_wr_operations"], 2);
    assert_eq!(stats[0]["stats"]["timed_stats"], json!([]));
    assert_eq!(stats[1]["device"], "ide1-cd0");
    assert!(stats[1].get("node-name").is_none());

    let options = c.cmd(json!({"execute": "query-command-line-options", "arguments": {"option": "machine"}}));
    assert_eq!(options["return"][0]["option"], "machine");
    assert_eq!(
        c.cmd(json!({"execute": "query-command-line-options", "arguments": {"option": "run-with"}})),
        json!({"error": {"class": "GenericError", "desc": "Invalid parameter 'option'"}})
    );
    assert_eq!(c.cmd(json!({"execute": "query-vnc", "id": 1})), json!({"return": {"enabled": false}, "id": 1}));
    assert_eq!(
        c.cmd(json!({"execute": "change-vnc-password", "arguments": {"password": "s3cret"}})),
        json!({"return": {}})
    );
    assert_eq!(
        c.cmd(json!({"execute": "human-monitor-command", "arguments": {"command-line": "info block"}})),
        json!({"return": ""})
    );
}

#[test]
fn removable_media_commands() {
    let f = fixture();
    let mut c = Client::negotiated(&f.path);
    assert_eq!(c.cmd(json!({"execute": "eject", "arguments": {"device": "ide1-cd0"}})), json!({"return": {}}));
    assert_eq!(c.cmd(json!({"execute": "eject", "arguments": {"id": "cd-dev", "force": true}})), json!({"return": {}}));
    assert_eq!(
        c.cmd(json!({"execute": "eject", "arguments": {"device": "nope"}})),
        json!({"error": {"class": "DeviceNotFound", "desc": "Device 'nope' not found"}})
    );
    assert_eq!(
        c.cmd(json!({"execute": "eject", "arguments": {}}))["error"]["desc"],
        "Need exactly one of 'device' and 'id'"
    );
    assert_eq!(
        c.cmd(json!({"execute": "eject", "arguments": {"device": "ide0-hd0"}})),
        json!({"error": {"class": "GenericError", "desc": "Device 'ide0-hd0' is not removable"}})
    );
    assert_eq!(
        c.cmd(json!({"execute": "eject", "arguments": {"device": "ide1-cd0", "force": "yes"}}))["error"]["desc"],
        "Invalid parameter type for 'force', expected: boolean"
    );
    let change = json!({"execute": "blockdev-change-medium", "id": 3,
        "arguments": {"device": "ide1-cd0", "filename": "/iso/new.iso", "format": "raw", "read-only-mode": "read-only"}});
    assert_eq!(c.cmd(change), json!({"return": {}, "id": 3}));
    assert_eq!(
        c.cmd(json!({"execute": "blockdev-change-medium", "arguments": {"device": "ide1-cd0"}}))["error"]["desc"],
        "Parameter 'filename' is missing"
    );
    assert_eq!(
        c.cmd(json!({"execute": "blockdev-change-medium", "arguments": {"id": "cd-dev", "filename": "/x", "format": "qcow2"}}))["error"]["class"],
        "GenericError"
    );
    assert_eq!(c.cmd(json!({"execute": "change", "arguments": {"device": "ide1-cd0", "target": "/iso/b.iso"}})), json!({"return": {}}));
    assert_eq!(
        f.machine.calls(),
        vec![
            "eject ide1-cd0 false",
            "eject ide1-cd0 true",
            "eject ide0-hd0 false",
            "change ide1-cd0 /iso/new.iso Some(true)",
            "change ide1-cd0 /iso/b.iso None",
        ]
    );
}

#[test]
fn malformed_requests_get_errors_and_the_connection_survives() {
    let f = fixture();
    let mut c = Client::negotiated(&f.path);
    assert_eq!(
        c.cmd(json!({"execute": "bogus", "id": 9})),
        json!({"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}, "id": 9})
    );
    assert_eq!(
        c.cmd(json!({"execute": "query-status", "arguments": {"x": 1}}))["error"]["desc"],
        "Parameter 'x' is unexpected"
    );
    c.send_raw("{\"execute\": }\n");
    assert_eq!(c.recv()["error"]["class"], "GenericError");
    // One object over several lines, then two on one line.
    c.send_raw("{\"execute\":\n \"query-name\",\r\n \"id\": 5}\n");
    assert_eq!(c.recv(), json!({"return": {"name": "g1"}, "id": 5}));
    c.send_raw("{\"execute\": \"query-name\", \"id\": 6} {\"execute\": \"query-name\", \"id\": 7}\n");
    assert_eq!(c.recv()["id"], 6);
    assert_eq!(c.recv()["id"], 7);
    c.send_raw("[1, 2]\n");
    assert_eq!(c.recv()["error"]["desc"], "QMP input must be a JSON object");
    assert_eq!(c.cmd(json!({"id": 4}))["error"]["desc"], "QMP input lacks member 'execute'");
    assert_eq!(c.cmd(json!({"execute": "stop", "arguments": [1]}))["error"]["desc"], "QMP input member 'arguments' must be an object");
    assert_eq!(c.cmd(json!({"execute": "query-version"}))["return"]["qemu"]["major"], 7);
}

#[test]
fn oversized_line_is_refused_without_dropping_the_connection() {
    let f = fixture();
    let mut c = Client::negotiated(&f.path);
    let huge = format!("{{\"execute\": \"query-status\", \"id\": \"{}\"}}\n", "a".repeat(200 * 1024));
    c.send_raw(&huge);
    assert_eq!(
        c.recv(),
        json!({"error": {"class": "GenericError", "desc": "JSON message too long (limit 65536 bytes)"}})
    );
    assert_eq!(c.cmd(json!({"execute": "query-status", "id": 2}))["id"], 2);
    // An unfinished object growing line by line hits the same bound.
    c.send_raw("{\"execute\": \"query-status\", \"id\": [\n");
    for _ in 0..20 {
        c.send_raw(&format!("{}\n", "1,".repeat(2048)));
    }
    assert_eq!(c.recv()["error"]["desc"], "JSON message too long (limit 65536 bytes)");
    c.send_raw("1]}\n");
    assert_eq!(c.cmd(json!({"execute": "query-status", "id": 3}))["id"], 3);
}

#[test]
fn events_reach_negotiated_connections_in_qemu_shape() {
    let f = fixture();
    let mut early = Client::connect(&f.path);
    early.recv();
    let mut c = Client::negotiated(&f.path);
    f.events.emit(Event::BlockIoError {
        device: "ide0-hd0".into(),
        node_name: "#block001".into(),
        operation: IoOperation::Write,
        action: "stop",
        nospace: Some(true),
        reason: "No space left on device".into(),
    });
    f.events.emit(Event::Stop);
    f.events.emit(Event::DeviceTrayMoved { device: "ide1-cd0".into(), id: "cd-dev".into(), tray_open: false });
    f.events.emit(Event::Shutdown { guest: true, reason: "guest-shutdown" });
    let first = c.recv();
    assert_eq!(first["event"], "BLOCK_IO_ERROR");
    assert_eq!(
        first["data"],
        json!({"device": "ide0-hd0", "node-name": "#block001", "operation": "write", "action": "stop",
               "nospace": true, "reason": "No space left on device"})
    );
    assert!(first["timestamp"]["seconds"].as_u64().unwrap() > 1_600_000_000);
    assert!(first["timestamp"]["microseconds"].as_u64().unwrap() < 1_000_000);
    let stop = c.recv();
    assert_eq!(stop["event"], "STOP");
    assert!(stop.get("data").is_none());
    assert_eq!(c.recv()["data"], json!({"device": "ide1-cd0", "tray-open": false, "id": "cd-dev"}));
    assert_eq!(c.recv()["data"], json!({"guest": true, "reason": "guest-shutdown"}));
    // The unnegotiated connection got none of them: its next line is the reply.
    assert_eq!(early.cmd(json!({"execute": "qmp_capabilities", "id": 1})), json!({"return": {}, "id": 1}));
    early.send_raw("{\"execute\": \"query-name\"}\n");
    assert_eq!(early.recv(), json!({"return": {"name": "g1"}}));
}

#[test]
fn sequential_and_concurrent_connections() {
    let f = fixture();
    for round in 0..3 {
        let mut c = Client::negotiated(&f.path);
        assert_eq!(c.cmd(json!({"execute": "query-status", "id": round}))["id"], round);
    }
    let mut a = Client::negotiated(&f.path);
    let mut b = Client::negotiated(&f.path);
    assert_eq!(b.cmd(json!({"execute": "query-name"}))["return"]["name"], "g1");
    assert_eq!(a.cmd(json!({"execute": "query-name"}))["return"]["name"], "g1");
}

#[test]
fn quit_replies_then_asks_the_machine_to_quit() {
    let f = fixture();
    let mut c = Client::negotiated(&f.path);
    assert_eq!(c.cmd(json!({"execute": "quit", "id": 1})), json!({"return": {}, "id": 1}));
    let mut rest = String::new();
    assert_eq!(c.reader.read_line(&mut rest).unwrap(), 0, "connection stays open after quit");
    for _ in 0..100 {
        if f.machine.calls().contains(&"quit".to_string()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("quit never reached the machine: {:?}", f.machine.calls());
}

#[test]
fn inherited_listening_fd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libxl.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // libxl may hand the socket over with O_NONBLOCK still set.
    listener.set_nonblocking(true).unwrap();
    let fd = listener.into_raw_fd();
    let machine = Arc::new(FakeMachine::default());
    let _server = QmpServer::start(
        &QmpEndpoint::Fd { label: "libxl-cmd".into(), fd },
        machine.clone(),
        EventSink::new(),
        QmpInfo::default(),
    )
    .unwrap();
    for _ in 0..2 {
        let mut c = Client::negotiated(&path);
        assert_eq!(c.cmd(json!({"execute": "query-status"}))["return"]["status"], "prelaunch");
        assert_eq!(c.cmd(json!({"execute": "query-name"}))["return"], json!({}));
    }
}

#[test]
fn inherited_fd_must_be_a_listening_socket() {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("plain")).unwrap();
    let fd = file.into_raw_fd();
    let err = QmpServer::start(
        &QmpEndpoint::Fd { label: "libxl-cmd".into(), fd },
        Arc::new(FakeMachine::default()),
        EventSink::new(),
        QmpInfo::default(),
    )
    .err()
    .expect("a regular file was accepted as a listener");
    assert!(err.to_string().starts_with(&format!("QMP fd={fd}: not a socket")), "{err}");
}

#[test]
fn stale_socket_is_replaced_but_other_files_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = QmpServer::start(
        &QmpEndpoint::UnixPath { label: "m".into(), path: path.clone() },
        Arc::new(FakeMachine::default()),
        EventSink::new(),
        QmpInfo::default(),
    )
    .unwrap();
    Client::negotiated(&path);
    drop(server);
    assert!(!path.exists(), "socket left behind after shutdown");
    assert!(UnixStream::connect(&path).is_err());

    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"keep me").unwrap();
    let err = QmpServer::start(
        &QmpEndpoint::UnixPath { label: "m".into(), path: plain.clone() },
        Arc::new(FakeMachine::default()),
        EventSink::new(),
        QmpInfo::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("a non-socket file is in the way"), "{err}");
    assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");
}

#[test]
fn server_shutdown_stops_accepting() {
    let mut f = fixture();
    Client::negotiated(&f.path);
    f.server.shutdown();
    // The socket file is still there until drop, but nobody accepts.
    let refused = match UnixStream::connect(&f.path) {
        Err(_) => true,
        Ok(s) => {
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).map(|n| n == 0).unwrap_or(true)
        }
    };
    assert!(refused, "a greeting arrived after shutdown");
}

#[test]
fn connections_beyond_the_bound_wait_for_a_free_slot() {
    let f = fixture();
    let mut open: Vec<Client> = (0..xen_ioemu::control::qmp::MAX_CONNECTIONS).map(|_| Client::negotiated(&f.path)).collect();
    let waiting = UnixStream::connect(&f.path).expect("the backlog takes the connection");
    waiting.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut reader = BufReader::new(waiting.try_clone().unwrap());
    let mut line = String::new();
    assert!(reader.read_line(&mut line).is_err(), "served beyond the bound: {line:?}");
    open.pop();
    waiting.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("{\"QMP\""), "{line:?}");
    assert_eq!(open[0].cmd(json!({"execute": "query-name"}))["return"]["name"], "g1");
}

#[test]
fn start_all_serves_every_monitor_of_a_libxl_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let line = format!(
        "-xen-domid 4 -chardev socket,id=libxl-cmd,path={0}/qmp-libxl-4,server=on,wait=off -mon chardev=libxl-cmd,mode=control \
         -chardev socket,id=libxenstat-cmd,path={0}/qmp-libxenstat-4,server=on,wait=off -mon chardev=libxenstat-cmd,mode=control",
        dir.path().display()
    );
    let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let Ok(xen_ioemu::control::Command::Run(config)) = xen_ioemu::control::parse_args(&args) else { panic!() };
    let servers = QmpServer::start_all(&config.qmp, Arc::new(FakeMachine::default()), &EventSink::new(), &QmpInfo::default()).unwrap();
    assert_eq!(servers.iter().map(|s| s.label()).collect::<Vec<_>>(), vec!["libxl-cmd", "libxenstat-cmd"]);
    for name in ["qmp-libxl-4", "qmp-libxenstat-4"] {
        let mut c = Client::negotiated(&dir.path().join(name));
        assert_eq!(c.cmd(json!({"execute": "query-status"}))["return"]["status"], "prelaunch");
    }
}

/// Sends one request with a descriptor attached, as libxl does for add-fd.
fn send_with_fd(c: &mut Client, request: Value, fd: &impl AsRawFd) {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let text = format!("{request}\r\n");
    let iov = [std::io::IoSlice::new(text.as_bytes())];
    let fds = [fd.as_raw_fd()];
    let sent = sendmsg::<()>(c.writer.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).unwrap();
    assert_eq!(sent, text.len());
}

#[test]
fn cd_insert_the_libxl_way_with_add_fd() {
    let f = fixture();
    let iso = f._dir.path().join("new.iso");
    std::fs::write(&iso, "ISO CONTENT").unwrap();
    let mut c = Client::negotiated(&f.path);
    assert_eq!(
        c.cmd(json!({"execute": "add-fd", "id": 1})),
        json!({"error": {"class": "GenericError", "desc": "No file descriptor supplied via SCM_RIGHTS"}, "id": 1})
    );
    let file = std::fs::File::open(&iso).unwrap();
    send_with_fd(&mut c, json!({"execute": "add-fd", "id": 2}), &file);
    drop(file);
    let reply = c.recv();
    assert_eq!(reply["id"], 2);
    assert_eq!(reply["return"]["fdset-id"], 0);
    let fd_number = reply["return"]["fd"].as_u64().expect("fd number");
    assert_eq!(
        c.cmd(json!({"execute": "query-fdsets"}))["return"],
        json!([{"fdset-id": 0, "fds": [{"fd": fd_number}]}])
    );
    let change = json!({"execute": "blockdev-change-medium", "id": 3,
        "arguments": {"id": "cd-dev", "filename": "/dev/fdset/0", "format": "raw"}});
    assert_eq!(c.cmd(change), json!({"return": {}, "id": 3}));
    assert_eq!(
        c.cmd(json!({"execute": "blockdev-change-medium", "arguments": {"id": "cd-dev", "filename": "/dev/fdset/9"}}))["error"]["desc"],
        "Could not dup FD for /dev/fdset/9 flags 0: No such file or directory"
    );
    assert_eq!(c.cmd(json!({"execute": "remove-fd", "arguments": {"fdset-id": 0}})), json!({"return": {}}));
    assert_eq!(c.cmd(json!({"execute": "query-fdsets"}))["return"], json!([]));
    assert_eq!(f.machine.calls(), vec!["change-fd ide1-cd0 \"ISO CONTENT\" None"]);
}

#[test]
fn passed_descriptors_are_bounded() {
    let f = fixture();
    let mut c = Client::negotiated(&f.path);
    let file = std::fs::File::open(&f.machine.image).unwrap();
    for round in 0..20 {
        send_with_fd(&mut c, json!({"execute": "add-fd", "arguments": {"fdset-id": 5}}), &file);
        let reply = c.recv();
        if round < 8 {
            assert_eq!(reply["return"]["fdset-id"], 5, "{reply}");
        } else {
            assert_eq!(reply["error"]["desc"], "Too many descriptors in fd set 5 (limit 8)");
        }
    }
    let sets = c.cmd(json!({"execute": "query-fdsets"}));
    assert_eq!(sets["return"][0]["fds"].as_array().unwrap().len(), 8);
}

#[test]
fn libxl_417_sequence_create_unpause_cd_insert() {
    let f = fixture();
    // domcreate: post-start configuration on its own connection.
    let mut c = Client::connect(&f.path);
    assert!(c.recv()["QMP"]["version"]["qemu"]["major"].as_u64().unwrap() >= 2);
    c.send_raw("{\"execute\":\"qmp_capabilities\",\"id\":1}\r\n");
    assert_eq!(c.recv(), json!({"return": {}, "id": 1}));
    c.send_raw("{\"execute\":\"query-chardev\",\"id\":2}\r\n");
    let chardevs = c.recv();
    let serial0 = chardevs["return"].as_array().unwrap().iter().find(|d| d["label"] == "serial0").unwrap();
    assert!(serial0["filename"].as_str().unwrap().starts_with("pty:"));
    c.send_raw("{\"execute\":\"query-vnc\",\"id\":3}\r\n");
    assert_eq!(c.recv()["return"]["enabled"], false);
    drop(c);
    // xl unpause / end of xl create.
    let mut c = Client::negotiated(&f.path);
    assert_eq!(c.cmd(json!({"execute": "cont", "id": 4})), json!({"return": {}, "id": 4}));
    drop(c);
    // xl cd-insert: eject, add-fd with the opened image, change by qdev id.
    let iso = f._dir.path().join("insert.iso");
    std::fs::write(&iso, "NEW").unwrap();
    let mut c = Client::negotiated(&f.path);
    assert_eq!(c.cmd(json!({"execute": "eject", "arguments": {"id": "cd-dev", "force": true}, "id": 5}))["id"], 5);
    let file = std::fs::File::open(&iso).unwrap();
    send_with_fd(&mut c, json!({"execute": "add-fd", "id": 6}), &file);
    let fdset = c.recv()["return"]["fdset-id"].as_u64().unwrap();
    let change = json!({"execute": "blockdev-change-medium", "id": 7,
        "arguments": {"id": "cd-dev", "filename": format!("/dev/fdset/{fdset}"), "format": "raw"}});
    assert_eq!(c.cmd(change), json!({"return": {}, "id": 7}));
    assert_eq!(
        f.machine.calls(),
        vec!["cont".to_string(), "eject ide1-cd0 true".into(), "change-fd ide1-cd0 \"NEW\" None".into()]
    );
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    fn request() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z_-]{0,12}".prop_map(Value::from),
            prop::sample::select(vec!["eject", "blockdev-change-medium", "add-fd", "remove-fd", "query-block", "change", "cont"])
                .prop_map(Value::from),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec!["execute", "arguments", "id", "device", "id", "filename", "fdset-id", "force", "x"]),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        });
        prop_oneof![
            3 => value.prop_map(|v| v.to_string()),
            1 => "[ -~]{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn any_input_leaves_the_monitor_answering(lines in prop::collection::vec(request(), 1..12)) {
            let f = fixture();
            let mut c = Client::negotiated(&f.path);
            for line in &lines {
                c.send_raw(&format!("{line}\n"));
            }
            // Close any object left open, then ask something with a known id.
            c.send_raw("]]]]}}}}\n{\"execute\": \"query-status\", \"id\": \"final\"}\n");
            loop {
                let message = c.recv();
                prop_assert!(message.get("return").is_some() || message.get("error").is_some() || message.get("event").is_some(), "{}", message);
                if message["id"] == "final" {
                    prop_assert!(message["return"]["status"].is_string());
                    break;
                }
            }
        }
    }
}

/// A machine whose query-chardev reports, as the label of its only chardev,
/// how many events the emitter thread of the ordering test had finished
/// emitting when the command ran: the reply then says which events must
/// already be ahead of it on the wire.
struct EmissionCounter {
    emitted: Arc<std::sync::atomic::AtomicU64>,
}

impl MachineOps for EmissionCounter {
    fn run_state(&self) -> RunState {
        RunState::Running
    }
    fn stop(&self) {}
    fn cont(&self) -> Result<(), MachineError> {
        Ok(())
    }
    fn block_info(&self) -> Vec<DriveInfo> {
        Vec::new()
    }
    fn eject(&self, _: &str, _: bool) -> Result<(), MachineError> {
        Ok(())
    }
    fn change_medium(&self, _: &str, _: &str, _: Option<bool>) -> Result<(), MachineError> {
        Ok(())
    }
    fn chardevs(&self) -> Vec<(String, String)> {
        let emitted = self.emitted.load(std::sync::atomic::Ordering::SeqCst);
        vec![(emitted.to_string(), "emitted".into())]
    }
    fn quit(&self) {}
    fn system_reset(&self) -> Result<(), MachineError> {
        Ok(())
    }
}

/// QEMU's ordering guarantee, which the differential harness relies on: an
/// event emitted before a command ran is on the wire before that command's
/// reply. Another thread emits numbered events while the client runs
/// commands back to back; each reply carries how many events had been
/// emitted when the command ran, and all of those must have arrived first.
#[test]
fn events_emitted_before_a_command_precede_its_reply() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const COMMANDS: u64 = 5000;
    // The emitter stays at most this far ahead of what the client has read,
    // well inside the per-connection backlog, so no event is ever dropped
    // and a missing one is an ordering failure, not backpressure.
    const LEAD: u64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let emitted = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let events = EventSink::new();
    let _server = QmpServer::start(
        &QmpEndpoint::UnixPath { label: "libxl-cmd".into(), path: path.clone() },
        Arc::new(EmissionCounter { emitted: emitted.clone() }),
        events.clone(),
        QmpInfo::default(),
    )
    .unwrap();
    let mut c = Client::negotiated(&path);
    let done = Arc::new(AtomicBool::new(false));
    let emitter = {
        let (emitted, seen, done, events) = (emitted.clone(), seen.clone(), done.clone(), events.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !done.load(Ordering::SeqCst) {
                if n - seen.load(Ordering::SeqCst) >= LEAD {
                    std::thread::yield_now();
                    continue;
                }
                n += 1;
                events.emit(Event::DeviceTrayMoved { device: n.to_string(), id: "cd".into(), tray_open: n.is_multiple_of(2) });
                // Published only once emit() returned: "emitted before".
                emitted.store(n, Ordering::SeqCst);
            }
        })
    };
    let mut arrived = 0u64;
    for i in 0..COMMANDS {
        c.send_raw(&format!("{}\n", json!({"execute": "query-chardev", "id": i})));
        let reply = loop {
            let message = c.recv();
            if message.get("event").is_none() {
                break message;
            }
            let number: u64 = message["data"]["device"].as_str().unwrap().parse().unwrap();
            assert_eq!(number, arrived + 1, "events arrive in emission order, none lost");
            arrived = number;
            seen.store(arrived, Ordering::SeqCst);
        };
        assert_eq!(reply["id"], i);
        let before: u64 = reply["return"][0]["label"].as_str().unwrap().parse().unwrap();
        assert!(
            arrived >= before,
            "command {i}: {before} events were emitted before it ran, only {arrived} arrived ahead of its reply"
        );
    }
    done.store(true, Ordering::SeqCst);
    emitter.join().unwrap();
    assert!(arrived > COMMANDS / 10, "the emitter ran alongside the commands ({arrived} events)");
}
