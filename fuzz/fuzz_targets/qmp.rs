//! The QMP dispatcher on a connection's byte stream, with descriptors
//! passed (SCM_RIGHTS) along with any chunk, against a real PIIX3 IDE
//! (query-block, eject, change, stop/cont and their events) whose media
//! changes open nothing on the host. Invariants: the greeting comes
//! first; every line out is one JSON object that is a reply, an error or
//! an event; no more replies than the input has bytes (each request,
//! however small, is at least one byte); and no descriptor outlives the
//! session (the fuzzed peer's fds are all closed when it ends).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nix::sys::socket::sockopt::{SndBuf, SndBufForce};
use nix::sys::socket::{getsockopt, sendmsg, setsockopt, ControlMessage, MsgFlags};
use serde_json::Value;
use std::io::{IoSlice, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use xen_ioemu::block::ErrorPolicy;
use xen_ioemu::control::{qmp, MachineError, MachineOps, QmpInfo};
use xen_ioemu::devices::ide::MediaKind;
use xen_ioemu::machine::{DriveInfo, RunState};
use xen_ioemu_fuzz::machine::{drive, Machine};
use xen_ioemu_fuzz::{FaultyImage, HostCounters};

/// Commands and argument names libxl and qtest suites send, so mutations
/// start from real requests.
const REQUESTS: &[&str] = &[
    r#"{"execute":"qmp_capabilities"}"#,
    r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#,
    r#"{"execute":"query-status","id":1}"#,
    r#"{"execute":"stop"}"#,
    r#"{"execute":"cont"}"#,
    r#"{"execute":"query-block"}"#,
    r#"{"execute":"query-blockstats"}"#,
    r#"{"execute":"eject","arguments":{"device":"ide1-cd0","force":true}}"#,
    r#"{"execute":"eject","arguments":{"id":"ide1-cd0"}}"#,
    r#"{"execute":"blockdev-change-medium","arguments":{"device":"ide1-cd0","filename":"/iso/a.iso"}}"#,
    r#"{"execute":"change","arguments":{"device":"ide1-cd0","target":"/dev/fdset/1"}}"#,
    r#"{"execute":"add-fd","arguments":{"fdset-id":1,"opaque":"x"}}"#,
    r#"{"execute":"remove-fd","arguments":{"fdset-id":1}}"#,
    r#"{"execute":"query-fdsets"}"#,
    r#"{"execute":"getfd","arguments":{"fdname":"f"}}"#,
    r#"{"execute":"closefd","arguments":{"fdname":"f"}}"#,
    r#"{"execute":"query-chardev"}"#,
    r#"{"execute":"query-name"}"#,
    r#"{"execute":"query-version"}"#,
    r#"{"execute":"query-commands"}"#,
    r#"{"execute":"query-command-line-options","arguments":{"option":"drive"}}"#,
    r#"{"execute":"system_reset"}"#,
    r#"{"execute":"xen-set-global-dirty-log","arguments":{"enable":true}}"#,
    r#"{"execute":"quit"}"#,
];

#[derive(Debug, Arbitrary)]
enum Chunk {
    Known { index: u8, newline: bool },
    Bytes(Vec<u8>),
    /// Sent with `fds` descriptors (0..=3) attached.
    WithFds { bytes: Vec<u8>, fds: u8 },
}

/// MachineOps over the harness machine; a change of medium inserts a RAM
/// image instead of opening the named file.
struct Ops {
    m: Mutex<Machine>,
    host: Arc<HostCounters>,
}

impl Ops {
    fn m(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MachineOps for Ops {
    fn run_state(&self) -> RunState {
        self.m().vm.state()
    }
    fn stop(&self) {
        self.m().stop();
    }
    fn cont(&self) -> Result<(), MachineError> {
        self.m().cont();
        Ok(())
    }
    fn block_info(&self) -> Vec<DriveInfo> {
        self.m().ide.lock().unwrap_or_else(|e| e.into_inner()).drives_info()
    }
    fn eject(&self, device: &str, force: bool) -> Result<(), MachineError> {
        let m = self.m();
        let r = m.ide.lock().unwrap_or_else(|e| e.into_inner()).eject(device, force).map_err(MachineError::from);
        m.settle();
        r
    }
    fn change_medium(&self, device: &str, _filename: &str, _read_only: Option<bool>) -> Result<(), MachineError> {
        let iso = FaultyImage::new(vec![0x5a; 2048 * 4], true, self.host.clone());
        let m = self.m();
        let r = m.ide.lock().unwrap_or_else(|e| e.into_inner()).change_medium(device, Box::new(iso), "fuzz.iso".into());
        m.settle();
        r.map_err(MachineError::from)
    }
    fn change_medium_fd(&self, device: &str, _fd: OwnedFd, read_only: Option<bool>) -> Result<(), MachineError> {
        self.change_medium(device, "", read_only)
    }
    fn chardevs(&self) -> Vec<(String, String)> {
        vec![("serial0".into(), "pty:/dev/pts/9".into())]
    }
    fn quit(&self) {}
    fn system_reset(&self) -> Result<(), MachineError> {
        self.m().reset();
        Ok(())
    }
}

/// A session's whole output is bounded: at most one reply per input byte
/// (libFuzzer's inputs are at most a few KiB) and a few KiB per reply,
/// plus the events of those commands. A unix stream socket charges what
/// is queued for the peer to the sender's buffer, so a send buffer far
/// above that bound means the server's writer never blocks on an unread
/// socket. SO_SNDBUFFORCE, unlike SO_SNDBUF, is not capped by
/// net.core.wmem_max, and needs CAP_NET_ADMIN: without it (not root) the
/// harness reads on a thread of its own while the session runs, which
/// costs a thread start per input (the largest cost after libFuzzer's own
/// in a profile of this target under ASan, 2026-12-04).
fn output_fits_in_socket(server: &UnixStream) -> bool {
    const OUTPUT_BOUND: usize = 64 << 20;
    setsockopt(server, SndBufForce, &OUTPUT_BOUND).is_ok()
        && getsockopt(server, SndBuf).is_ok_and(|n| n >= OUTPUT_BOUND)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fuzz_target!(|chunks: Vec<Chunk>| {
    if chunks.len() > 64 {
        return;
    }
    let fds_before = open_fds();
    let host = Arc::new(HostCounters::default());
    let cd = FaultyImage::new(vec![0x5a; 2048 * 16], true, host.clone());
    let c = drive("ide1-cd0", MediaKind::Cdrom, Some(&cd), ErrorPolicy::Report, ErrorPolicy::Report);
    let machine = Machine::new([None, None, Some(c), None], host.clone());
    let events = machine.vm.events().clone();
    let ops = Arc::new(Ops { m: Mutex::new(machine), host });
    let (client, server) = UnixStream::pair().expect("socketpair");
    let mut sent = 0usize;
    for chunk in &chunks {
        let (bytes, fds): (Vec<u8>, u8) = match chunk {
            Chunk::Known { index, newline } => {
                let mut b = REQUESTS[*index as usize % REQUESTS.len()].as_bytes().to_vec();
                if *newline {
                    b.push(b'\n');
                }
                (b, 0)
            }
            Chunk::Bytes(b) => (b.clone(), 0),
            Chunk::WithFds { bytes, fds } => (bytes.clone(), fds % 4),
        };
        // A descriptor travels with at least one byte.
        let bytes = if bytes.is_empty() && fds > 0 { b"\n".to_vec() } else { bytes };
        if bytes.is_empty() {
            continue;
        }
        let passed: Vec<OwnedFd> = (0..fds).map(|_| std::fs::File::open("/dev/null").expect("/dev/null").into()).collect();
        let raw: Vec<i32> = passed.iter().map(|f| f.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
        // The whole input fits in the socket buffer (libFuzzer's inputs are
        // a few KiB), so this never waits for the server.
        match sendmsg::<()>(client.as_raw_fd(), &[IoSlice::new(&bytes)], cmsgs, MsgFlags::MSG_DONTWAIT, None) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    client.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let info = QmpInfo { name: Some("fuzz".into()), vcpus: 1 };
    let out = if output_fits_in_socket(&server) {
        // Nothing the session writes can wait for a reader, so the output
        // is read once the session is over, without a thread of our own.
        let _ = qmp::serve_stream(server, ops.clone() as Arc<dyn MachineOps>, events, info);
        let mut out = Vec::new();
        let _ = (&client).read_to_end(&mut out);
        drop(client);
        out
    } else {
        let mut reader = client.try_clone().expect("clone");
        let replies = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = reader.read_to_end(&mut out);
            out
        });
        let _ = qmp::serve_stream(server, ops.clone() as Arc<dyn MachineOps>, events, info);
        drop(client);
        replies.join().expect("reader")
    };
    let text = String::from_utf8(out).expect("QMP output is UTF-8");
    let mut lines = text.split_terminator("\r\n");
    let greeting: Value = serde_json::from_str(lines.next().expect("a greeting")).expect("greeting JSON");
    assert!(greeting.get("QMP").is_some(), "first line is not the greeting: {greeting}");
    let mut replies = 0usize;
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        let kinds = ["return", "error", "event"].iter().filter(|k| obj.contains_key(**k)).count();
        assert_eq!(kinds, 1, "neither reply, error nor event: {line}");
        if !obj.contains_key("event") {
            replies += 1;
        }
    }
    assert!(replies <= sent, "{replies} replies to {sent} bytes");
    drop(ops);
    assert_eq!(open_fds(), fds_before, "descriptors left open after the session");
});
