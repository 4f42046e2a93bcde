//! The console ring and pump against a fake frontend (the page as a byte
//! array, written the way Linux's hvc_xen does) and a fake host end.

use super::*;
use crate::pvblock::tests::FakeRing;
use std::sync::Mutex;

struct Frontend {
    page: Arc<FakeRing>,
}

impl Frontend {
    fn new() -> Self {
        Frontend { page: Arc::new(FakeRing(Mutex::new(vec![0; 4096]))) }
    }
    fn ring(&self) -> ConsoleRing {
        ConsoleRing::attach(self.page.clone()).expect("attach")
    }
    fn load(&self, off: usize) -> u32 {
        self.page.load_u32(off)
    }
    /// What hvc_xen's `__write_console` does: copy into out[], then move out_prod.
    fn write(&self, data: &[u8]) -> usize {
        let (cons, mut prod) = (self.load(XENCONS_OUT_CONS), self.load(XENCONS_OUT_PROD));
        let mut sent = 0;
        while sent < data.len() && prod.wrapping_sub(cons) < XENCONS_OUT_SIZE as u32 {
            self.page.write(XENCONS_OUT + prod as usize % XENCONS_OUT_SIZE, &data[sent..sent + 1]);
            prod = prod.wrapping_add(1);
            sent += 1;
        }
        self.page.store_u32(XENCONS_OUT_PROD, prod);
        sent
    }
    /// What hvc_xen's `domU_read_console` does.
    fn read(&self) -> Vec<u8> {
        let (mut cons, prod) = (self.load(XENCONS_IN_CONS), self.load(XENCONS_IN_PROD));
        let mut got = Vec::new();
        while cons != prod {
            let mut b = [0u8];
            self.page.read(XENCONS_IN + cons as usize % XENCONS_IN_SIZE, &mut b);
            got.push(b[0]);
            cons = cons.wrapping_add(1);
        }
        self.page.store_u32(XENCONS_IN_CONS, cons);
        got
    }
}

#[derive(Default)]
struct FakeHost {
    written: Vec<u8>,
    /// How many more bytes write() takes (None: all).
    room: Option<usize>,
    typed: Vec<u8>,
}

impl HostEnd for FakeHost {
    fn write(&mut self, data: &[u8]) -> usize {
        let n = self.room.map_or(data.len(), |r| r.min(data.len()));
        if let Some(r) = &mut self.room {
            *r -= n;
        }
        self.written.extend_from_slice(&data[..n]);
        n
    }
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.typed.len());
        buf[..n].copy_from_slice(&self.typed[..n]);
        self.typed.drain(..n);
        n
    }
}

#[test]
fn guest_output_reaches_the_host_and_host_input_reaches_the_guest_across_the_ring_wrap() {
    let fe = Frontend::new();
    let mut pump = ConsolePump::new(fe.ring());
    let mut host = FakeHost::default();
    let mut expect_out = Vec::new();
    let mut expect_in = Vec::new();
    let mut got_in = Vec::new();
    // Enough rounds of odd sizes to wrap both rings several times.
    for round in 0..40u32 {
        let line: Vec<u8> = (0..(round * 37 % 1500 + 1)).map(|i| (i + round) as u8).collect();
        assert_eq!(fe.write(&line), line.len());
        expect_out.extend_from_slice(&line);
        host.typed = (0..(round * 53 % 900 + 1)).map(|i| (i * 7 + round) as u8).collect();
        expect_in.extend_from_slice(&host.typed);
        assert!(pump.service(&mut host), "round {round}: the frontend is told");
        got_in.extend(fe.read());
    }
    assert_eq!(host.written, expect_out);
    assert_eq!(got_in, expect_in);
    assert_eq!(fe.load(XENCONS_OUT_CONS), fe.load(XENCONS_OUT_PROD));
    assert!(pump.broken().is_none());
}

#[test]
fn a_slow_host_reader_holds_the_guest_back_with_at_most_one_ring_pending() {
    let fe = Frontend::new();
    let mut pump = ConsolePump::new(fe.ring());
    let mut host = FakeHost { room: Some(100), ..FakeHost::default() };
    let data: Vec<u8> = (0..6000u32).map(|i| i as u8).collect();
    let mut sent = fe.write(&data);
    assert_eq!(sent, XENCONS_OUT_SIZE, "the guest fills its ring");
    pump.service(&mut host);
    assert_eq!(host.written.len(), 100);
    assert_eq!(pump.pending(), XENCONS_OUT_SIZE - 100);
    // The ring is free again, but nothing more is taken while bytes wait.
    sent += fe.write(&data[sent..]);
    assert_eq!(sent, 2 * XENCONS_OUT_SIZE);
    for _ in 0..5 {
        pump.service(&mut host);
    }
    assert!(pump.pending() <= XENCONS_OUT_SIZE);
    assert_eq!(fe.load(XENCONS_OUT_PROD).wrapping_sub(fe.load(XENCONS_OUT_CONS)), XENCONS_OUT_SIZE as u32);
    // The reader catches up: every byte arrives, in order.
    host.room = None;
    while sent < data.len() || pump.pending() > 0 || fe.load(XENCONS_OUT_PROD) != fe.load(XENCONS_OUT_CONS) {
        pump.service(&mut host);
        sent += fe.write(&data[sent..]);
    }
    assert_eq!(host.written, data);
}

#[test]
fn input_is_never_more_than_the_guest_has_room_for() {
    let fe = Frontend::new();
    let mut pump = ConsolePump::new(fe.ring());
    let mut host = FakeHost { typed: vec![b'x'; 5000], ..FakeHost::default() };
    pump.service(&mut host);
    assert_eq!(fe.load(XENCONS_IN_PROD), XENCONS_IN_SIZE as u32, "one ring's worth");
    assert_eq!(host.typed.len(), 5000 - XENCONS_IN_SIZE, "the rest stays with the host");
    assert!(!pump.service(&mut host), "nothing moves while the guest reads nothing");
    assert!(!pump.wants_input(), "no wake-ups for host input the guest has no room for");
    assert_eq!(fe.read().len(), XENCONS_IN_SIZE);
    assert!(pump.wants_input());
    pump.service(&mut host);
    assert_eq!(fe.load(XENCONS_IN_PROD), 2 * XENCONS_IN_SIZE as u32);
}

#[test]
fn a_hostile_out_prod_breaks_the_ring_and_nothing_is_read() {
    let fe = Frontend::new();
    let mut pump = ConsolePump::new(fe.ring());
    let mut host = FakeHost::default();
    fe.page.store_u32(XENCONS_OUT_PROD, XENCONS_OUT_SIZE as u32 + 1);
    assert!(!pump.service(&mut host));
    assert!(host.written.is_empty());
    assert!(matches!(pump.broken(), Some(ConsoleRingError::OutputOverflow { .. })));
    // A broken ring stays broken: nothing is taken even once the index looks sane.
    fe.page.store_u32(XENCONS_OUT_PROD, 1);
    host.typed = b"abc".to_vec();
    assert!(!pump.service(&mut host));
    assert!(host.written.is_empty() && host.typed.len() == 3);
}

#[test]
fn a_hostile_in_cons_breaks_the_ring_instead_of_overwriting_unread_input() {
    let fe = Frontend::new();
    let mut pump = ConsolePump::new(fe.ring());
    let mut host = FakeHost { typed: b"hello".to_vec(), ..FakeHost::default() };
    pump.service(&mut host);
    // The guest claims to have read bytes we never produced.
    fe.page.store_u32(XENCONS_IN_CONS, 1000);
    host.typed = b"more".to_vec();
    assert!(!pump.service(&mut host));
    assert!(matches!(pump.broken(), Some(ConsoleRingError::InputOverrun { in_cons: 1000, in_prod: 5 })));
    assert!(!pump.wants_input(), "a broken console waits on nothing of the host's");
    assert_eq!(fe.load(XENCONS_IN_PROD), 5);
}

#[test]
fn the_frontend_rewriting_our_indexes_changes_nothing_we_do() {
    let fe = Frontend::new();
    let mut pump = ConsolePump::new(fe.ring());
    let mut host = FakeHost::default();
    fe.write(b"first");
    pump.service(&mut host);
    // Our own indexes, overwritten by the guest: we keep ours.
    fe.page.store_u32(XENCONS_OUT_CONS, 0);
    fe.page.store_u32(XENCONS_IN_PROD, 777);
    fe.write(b"second");
    host.typed = b"in".to_vec();
    pump.service(&mut host);
    assert_eq!(host.written, b"firstsecond".to_vec());
    assert_eq!(fe.load(XENCONS_IN_PROD), 2);
}

#[test]
fn a_page_smaller_than_the_interface_is_refused() {
    let small = Arc::new(FakeRing(Mutex::new(vec![0; 1024])));
    assert!(matches!(ConsoleRing::attach(small), Err(ConsoleRingError::TooSmall(1024))));
}

#[test]
fn a_socket_end_drops_output_without_a_client_and_serves_one_client_at_a_time() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let dir = std::env::temp_dir().join(format!("xen-ioemu-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chan.sock");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let mut end = host::SocketEnd::bind(&path).expect("bind");
    assert_eq!(end.write(b"nobody listens"), 14, "taken and dropped");
    let mut buf = [0u8; 64];
    assert_eq!(end.read(&mut buf), 0);
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"typed").unwrap();
    let mut n = 0;
    for _ in 0..100 {
        n = end.read(&mut buf);
        if n > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(&buf[..n], b"typed");
    assert!(end.connected());
    assert_eq!(end.write(b"to the client"), 13);
    let mut got = [0u8; 13];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"to the client");
    drop(client);
    assert_eq!(end.read(&mut buf), 0);
    assert!(!end.connected(), "the client hung up");
    let mut second = UnixStream::connect(&path).unwrap();
    assert_eq!(end.write(b"again"), 5);
    let mut got = [0u8; 5];
    second.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"again");
    drop(end);
    assert!(!path.exists(), "the socket file goes with the end");
    let _ = std::fs::remove_dir_all(&dir);
}
