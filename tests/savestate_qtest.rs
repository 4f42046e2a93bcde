//! xl save / restore as libxl drives the device model, against our qtest
//! front: the QMP sequence of libxl_dom_save.c (dirty log on, stop,
//! add-fd with SCM_RIGHTS, xen-save-devices-state to /dev/fdset/N, dirty
//! log off), then a fresh process started with `-incoming fd:N -S` as
//! libxl_dm.c starts it, `query-status`, `cont`. The guest-visible values
//! after the move (a PIO read cut in the middle of its DRQ block, the
//! taskfile, CMOS NVRAM) are compared with an uninterrupted run.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct Dm {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    qmp: UnixStream,
    qmp_in: BufReader<UnixStream>,
}

impl Dm {
    fn start(dir: &Path, name: &str, image: &Path, extra: &[String], inherit: Option<RawFd>) -> Dm {
        let sock = dir.join(format!("{name}.qmp"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xen-ioemu"));
        cmd.args(["-machine", "pc", "-accel", "qtest", "-qtest", "stdio", "-m", "64"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .arg("-drive")
            .arg(format!("file={},format=raw,if=ide,index=0", image.display()))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(fd) = inherit {
            // The file stays open across exec, as libxl leaves qemu-resume.<domid>.
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
        }
        let mut child = cmd.spawn().expect("spawn xen-ioemu");
        let deadline = Instant::now() + Duration::from_secs(20);
        let qmp = loop {
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            assert!(Instant::now() < deadline, "no QMP socket");
            std::thread::sleep(Duration::from_millis(20));
        };
        let qmp_in = BufReader::new(qmp.try_clone().unwrap());
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut dm = Dm { child, stdin, stdout, qmp, qmp_in };
        let greeting = dm.qmp_line();
        assert_eq!(greeting["QMP"]["version"]["qemu"]["major"], 7, "libxl sends `live` only to >= 2.11");
        assert_eq!(dm.qmp("qmp_capabilities", None, None), json!({"return": {}}));
        dm
    }

    fn qmp_line(&mut self) -> Value {
        let mut line = String::new();
        self.qmp_in.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn qmp(&mut self, cmd: &str, args: Option<Value>, fd: Option<RawFd>) -> Value {
        let mut request = json!({"execute": cmd});
        if let Some(a) = args {
            request["arguments"] = a;
        }
        let line = format!("{request}\n");
        match fd {
            None => self.qmp.write_all(line.as_bytes()).unwrap(),
            Some(fd) => {
                use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
                let fds = [fd];
                let iov = [std::io::IoSlice::new(line.as_bytes())];
                sendmsg::<()>(self.qmp.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).unwrap();
            }
        }
        loop {
            let reply = self.qmp_line();
            if reply.get("event").is_none() {
                return reply;
            }
        }
    }

    fn qtest(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        reply.trim().to_string()
    }

    fn outb(&mut self, port: u16, v: u8) {
        assert_eq!(self.qtest(&format!("outb {port:#x} {v:#x}")), "OK");
    }

    fn inb(&mut self, port: u16) -> u8 {
        let r = self.qtest(&format!("inb {port:#x}"));
        u8::from_str_radix(r.trim_start_matches("OK 0x"), 16).unwrap()
    }

    fn inw(&mut self, port: u16) -> u16 {
        let r = self.qtest(&format!("inw {port:#x}"));
        u16::from_str_radix(r.trim_start_matches("OK 0x"), 16).unwrap()
    }

    /// READ SECTORS of `count` at `lba` on the primary master.
    fn read_sectors(&mut self, lba: u8, count: u8) {
        for (port, v) in [(0x1f6, 0xe0), (0x1f2, count), (0x1f3, lba), (0x1f4, 0), (0x1f5, 0), (0x70, 0x50), (0x71, 0x99)] {
            self.outb(port, v);
        }
        self.outb(0x1f7, 0x20);
    }

    /// A guest waits for BSY to clear before the next DRQ block (the read
    /// of the next sector runs on the host meanwhile).
    fn wait_not_busy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.inb(0x3f6) & 0x80 != 0 {
            assert!(Instant::now() < deadline, "BSY for 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Everything a guest reads that the move must keep.
    fn visible(&mut self) -> Vec<u8> {
        let mut v: Vec<u8> = [0x1f1, 0x1f2, 0x1f3, 0x1f4, 0x1f5, 0x1f6, 0x3f6].iter().map(|p| self.inb(*p)).collect();
        self.outb(0x70, 0x50);
        v.push(self.inb(0x71));
        v
    }
}

impl Drop for Dm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&image, &data).unwrap();
    (dir, image, data)
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}: byte {i} is {:#04x}, the image has {:#04x}", got[i], want[i]);
    }
}

fn words(dm: &mut Dm, n: usize) -> Vec<u8> {
    (0..n).flat_map(|_| dm.inw(0x1f0).to_le_bytes()).collect()
}

#[test]
fn the_libxl_save_and_restore_sequence_moves_a_pio_read_cut_in_the_middle() {
    let (dir, image, data) = setup();
    let expected = &data[3 * 512..5 * 512];

    // The uninterrupted run.
    let mut whole = Dm::start(dir.path(), "whole", &image, &[], None);
    whole.read_sectors(3, 2);
    whole.wait_not_busy();
    let mut read = words(&mut whole, 100);
    let before = whole.visible();
    read.extend(words(&mut whole, 156));
    whole.wait_not_busy();
    let after_block = whole.visible();
    read.extend(words(&mut whole, 256));
    assert_same(&read, expected, "uninterrupted");
    let status_whole = whole.inb(0x1f7);

    // The same, saved after 100 words as libxl does it.
    let mut old = Dm::start(dir.path(), "old", &image, &[], None);
    old.read_sectors(3, 2);
    old.wait_not_busy();
    let mut moved = words(&mut old, 100);
    assert_eq!(old.qmp("xen-set-global-dirty-log", Some(json!({"enable": true})), None), json!({"return": {}}));
    assert_eq!(old.qmp("stop", None, None), json!({"return": {}}));
    let save_path = dir.path().join("qemu-save.1");
    let save_file = std::fs::File::create(&save_path).unwrap();
    let added = old.qmp("add-fd", None, Some(save_file.as_raw_fd()));
    let set = added["return"]["fdset-id"].as_u64().expect("add-fd answers with fdset-id");
    let saved = old.qmp("xen-save-devices-state", Some(json!({"filename": format!("/dev/fdset/{set}"), "live": true})), None);
    assert_eq!(saved, json!({"return": {}}));
    assert_eq!(old.qmp("xen-set-global-dirty-log", Some(json!({"enable": false})), None), json!({"return": {}}));
    drop(old);
    let size = std::fs::metadata(&save_path).unwrap().len();
    println!("device state: {size} bytes");
    assert!(size > 24 && size < 64 * 1024, "{size} bytes");

    // libxl_dm.c: the resume file inherited, -incoming fd:N, and -S under dm_restrict.
    let resume = std::fs::File::open(&save_path).unwrap();
    let fd = resume.as_raw_fd();
    let mut new = Dm::start(dir.path(), "new", &image, &["-incoming".into(), format!("fd:{fd}"), "-S".into()], Some(fd));
    drop(resume);
    assert_eq!(new.qmp("query-status", None, None)["return"]["status"], "paused", "what libxl waits for on a restore");
    assert_eq!(new.qmp("cont", None, None), json!({"return": {}}));
    assert_eq!(new.qmp("query-status", None, None)["return"]["status"], "running");
    assert_eq!(new.visible(), before);
    moved.extend(words(&mut new, 156));
    new.wait_not_busy();
    assert_eq!(new.visible(), after_block);
    moved.extend(words(&mut new, 256));
    assert_same(&moved, expected, "the read goes on where it stopped");
    assert_eq!(new.inb(0x1f7), status_whole);
}

#[test]
fn a_fresh_start_with_dash_s_is_prelaunch_and_defer_waits_for_the_state() {
    let (dir, image, _) = setup();
    let mut fresh = Dm::start(dir.path(), "fresh", &image, &["-S".into()], None);
    assert_eq!(fresh.qmp("query-status", None, None)["return"]["status"], "prelaunch");
    fresh.outb(0x70, 0x60);
    fresh.outb(0x71, 0x42);
    let path = dir.path().join("plain.state");
    let saved = fresh.qmp("xen-save-devices-state", Some(json!({"filename": path.display().to_string()})), None);
    assert_eq!(saved, json!({"return": {}}), "a plain path works too");
    drop(fresh);

    let mut deferred = Dm::start(dir.path(), "deferred", &image, &["-incoming".into(), "defer".into(), "-S".into()], None);
    assert_eq!(deferred.qmp("query-status", None, None)["return"]["status"], "inmigrate");
    let qemu_blob = dir.path().join("qemu.state");
    std::fs::write(&qemu_blob, b"QEVM\0\0\0\x03 and the rest of a QEMU stream").unwrap();
    let refused = deferred.qmp("xen-load-devices-state", Some(json!({"filename": qemu_blob.display().to_string()})), None);
    assert_eq!(refused["error"]["desc"], "device state: this is a QEMU device state (QEVM), not one of xen-ioemu");
    let loaded = deferred.qmp("xen-load-devices-state", Some(json!({"filename": path.display().to_string()})), None);
    assert_eq!(loaded, json!({"return": {}}));
    assert_eq!(deferred.qmp("query-status", None, None)["return"]["status"], "paused");
    deferred.outb(0x70, 0x60);
    assert_eq!(deferred.inb(0x71), 0x42, "CMOS NVRAM came with the state");
    let again = deferred.qmp("xen-load-devices-state", Some(json!({"filename": path.display().to_string()})), None);
    assert!(again.get("error").is_some(), "a second load is refused: {again}");
}

#[test]
fn a_qemu_or_corrupt_state_on_the_command_line_ends_start_up_with_one_line() {
    let (dir, image, _) = setup();
    for (what, bytes, text) in [
        ("qemu", b"QEVM\0\0\0\x03xxxxxxxxxxxxxxxxxxxxxxxx".to_vec(), "this is a QEMU device state (QEVM)"),
        ("truncated", b"XIOEMUDS\x01\0\0\0".to_vec(), "truncated"),
    ] {
        let path = dir.path().join(what);
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let fd = file.as_raw_fd();
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_xen-ioemu"))
            .args(["-machine", "pc", "-accel", "qtest", "-qtest", "stdio", "-m", "64"])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=ide,index=0", image.display()))
            .args(["-incoming", &format!("fd:{fd}")])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        let line = stderr.lines().find(|l| l.contains("-incoming")).unwrap_or_else(|| panic!("{what}: {stderr}"));
        assert!(line.contains(text), "{what}: {line}");
    }
}
