//! The seccomp filter (on by default) lets the binary's real work happen:
//! the qtest front with a QMP monitor, a CD change through QMP (a file
//! opened after start-up), and the way out (the QMP socket shut down and
//! unlinked). `-sandbox` takes on or off, nothing else. The forbidden calls
//! are tested in src/sandbox/tests.rs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(dir: &std::path::Path, extra: &[&str]) -> Child {
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    Command::new(env!("CARGO_BIN_EXE_xen-ioemu"))
        .args(["-machine", "pc", "-accel", "qtest", "-qtest", "stdio", "-qtest-log", "none", "-display", "none"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display()))
        .arg("-drive")
        .arg(format!("if=ide,index=0,media=disk,format=raw,file={}", disk.display()))
        .args(["-drive", "if=ide,index=2,media=cdrom,id=cd0"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn connect(path: &std::path::Path, child: &mut Child) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = UnixStream::connect(path) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            return s;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("xen-ioemu exited ({status}) before its QMP socket was there");
        }
        assert!(Instant::now() < deadline, "no QMP socket within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn command(writer: &mut UnixStream, reader: &mut BufReader<UnixStream>, cmd: &str) -> String {
    writeln!(writer, "{cmd}").unwrap();
    loop {
        let mut s = String::new();
        reader.read_line(&mut s).expect("QMP reply within 10 s");
        assert!(!s.is_empty(), "QMP closed after {cmd}");
        // Events (DEVICE_TRAY_MOVED, ...) come between replies.
        if !s.contains("\"event\"") {
            return s.trim_end().to_string();
        }
    }
}

#[test]
fn a_cd_change_over_qmp_and_a_clean_exit_pass_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("cd.iso");
    std::fs::write(&iso, vec![0x5au8; 2048 * 16]).unwrap();
    let mut child = start(dir.path(), &[]);
    let qmp = connect(&dir.path().join("qmp.sock"), &mut child);
    let mut writer = qmp.try_clone().unwrap();
    let mut reader = BufReader::new(qmp);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.contains("\"QMP\""), "{greeting}");
    assert_eq!(command(&mut writer, &mut reader, r#"{"execute":"qmp_capabilities"}"#), r#"{"return":{}}"#);
    let change = format!(r#"{{"execute":"blockdev-change-medium","arguments":{{"id":"cd0","filename":"{}"}}}}"#, iso.display());
    assert_eq!(command(&mut writer, &mut reader, &change), r#"{"return":{}}"#);
    let block = command(&mut writer, &mut reader, r#"{"execute":"query-block"}"#);
    assert!(block.contains(&*iso.to_string_lossy()), "query-block after the change: {block}");
    drop(writer);
    drop(reader);

    // IDENTIFY on the disk, then end of input: the qtest session ends and
    // the process leaves through the QMP server's shutdown and unlink.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"outb 0x1f6 0xa0\noutb 0x1f7 0xec\ninb 0x1f7\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("seccomp"), "{stderr}");
    assert!(out.status.success(), "exit status {}: {stderr}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), ["OK", "OK", "OK 0x0058"]);
    assert!(!dir.path().join("qmp.sock").exists(), "the QMP socket is unlinked at exit");
}

#[test]
fn sandbox_takes_on_or_off() {
    for (value, ok) in [("off", true), ("on", true), ("on,obsolete=deny", true), ("maybe", false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = start(dir.path(), &["-sandbox", value]);
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "-sandbox {value}: {}: {stderr}", out.status);
        if !ok {
            assert_eq!(stderr.trim_end(), "xen-ioemu: -sandbox: 'maybe': give on or off");
        }
    }
}
