//! QEMU's own test library (libqtest) starts the device model with
//! `-qtest unix:PATH -chardev socket,path=PATH,id=char0 -mon
//! chardev=char0,mode=control -accel qtest` and listens on both sockets
//! itself. This drives xen-ioemu exactly that way.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn accept_within(listener: &UnixListener, child: &mut Child, limit: Duration) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("xen-ioemu exited ({status}) before connecting");
                }
                assert!(Instant::now() < deadline, "xen-ioemu did not connect within {limit:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn line(reader: &mut BufReader<UnixStream>) -> String {
    let mut s = String::new();
    reader.read_line(&mut s).expect("reply within 10 s");
    s.trim_end().to_string()
}

#[test]
fn a_libqtest_style_client_drives_us_over_its_own_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let qtest_path = dir.path().join("qtest.sock");
    let qmp_path = dir.path().join("qmp.sock");
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let qtest_listener = UnixListener::bind(&qtest_path).unwrap();
    let qmp_listener = UnixListener::bind(&qmp_path).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_xen-ioemu"))
        .arg("-qtest")
        .arg(format!("unix:{}", qtest_path.display()))
        .args(["-qtest-log", "/dev/null", "-chardev"])
        .arg(format!("socket,path={},id=char0", qmp_path.display()))
        .args(["-mon", "chardev=char0,mode=control", "-display", "none", "-machine", "pc", "-drive"])
        .arg(format!("if=ide,index=0,media=disk,format=raw,file={}", disk.display()))
        .args(["-accel", "qtest"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    let mut qtest = accept_within(&qtest_listener, &mut child, Duration::from_secs(10));
    let mut qtest_reader = BufReader::new(qtest.try_clone().unwrap());
    let qmp = accept_within(&qmp_listener, &mut child, Duration::from_secs(10));
    let mut qmp_writer = qmp.try_clone().unwrap();
    let mut qmp_reader = BufReader::new(qmp);

    let greeting = line(&mut qmp_reader);
    assert!(greeting.contains("\"QMP\""), "greeting: {greeting}");
    writeln!(qmp_writer, "{{\"execute\": \"qmp_capabilities\"}}").unwrap();
    assert_eq!(line(&mut qmp_reader), "{\"return\":{}}");

    qtest.write_all(b"outb 0x1f6 0xa0\noutb 0x1f7 0xec\ninb 0x1f7\ninw 0x1f0\n").unwrap();
    let replies: Vec<String> = (0..4).map(|_| line(&mut qtest_reader)).collect();
    assert_eq!(replies, ["OK", "OK", "OK 0x0058", "OK 0x0040"], "IDENTIFY over the qtest socket");

    writeln!(qmp_writer, "{{\"execute\": \"query-status\"}}").unwrap();
    let status = line(&mut qmp_reader);
    assert!(status.contains("\"status\":\"running\""), "query-status: {status}");

    drop(qtest);
    drop(qtest_reader);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "xen-ioemu did not exit when the qtest socket closed");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}
