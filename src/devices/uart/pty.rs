//! A pseudo-terminal host side for the UART, like QEMU's `-serial pty`:
//! the guest's console appears as /dev/pts/N, which libxl publishes in
//! xenstore for `xl console`.
//!
//! The device model keeps the slave end open itself, so the pty exists
//! (and the master never sees EIO/hang-up) while no console is attached;
//! what nobody reads fills the pty buffer and the rest is dropped and
//! counted rather than blocking the guest.

use super::SerialBackend;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PtyError {
    #[error("serial pty: openpty failed: {0}")]
    Open(Errno),
    #[error("serial pty: cannot find the slave's name: {0}")]
    Name(Errno),
    #[error("serial pty: cannot set raw mode: {0}")]
    RawMode(Errno),
    #[error("serial pty: cannot make the master non-blocking: {0}")]
    NonBlocking(Errno),
    #[error("serial pty: cannot duplicate the master for reading: {0}")]
    Duplicate(std::io::Error),
}

/// How long the reader waits for input or for FIFO space before looking
/// at its stop flag again.
const READER_POLL: Duration = Duration::from_millis(100);
const READER_POLL_MS: u16 = 100;
/// How long the reader waits for the guest to drain a full receive FIFO.
const FIFO_FULL_BACKOFF: Duration = Duration::from_millis(5);
const READ_CHUNK: usize = 256;

pub struct PtySerial {
    master: Arc<OwnedFd>,
    _slave: OwnedFd,
    slave_path: PathBuf,
    dropped: Arc<AtomicU64>,
    reported_error: bool,
}

impl PtySerial {
    pub fn open() -> Result<Self, PtyError> {
        let pty = openpty(None, None).map_err(PtyError::Open)?;
        let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).map_err(PtyError::Name)?;
        let mut termios = tcgetattr(pty.slave.as_fd()).map_err(PtyError::RawMode)?;
        cfmakeraw(&mut termios);
        tcsetattr(pty.slave.as_fd(), SetArg::TCSANOW, &termios).map_err(PtyError::RawMode)?;
        let flags = fcntl(pty.master.as_raw_fd(), FcntlArg::F_GETFL).map_err(PtyError::NonBlocking)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(pty.master.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(PtyError::NonBlocking)?;
        Ok(PtySerial {
            master: Arc::new(pty.master),
            _slave: pty.slave,
            slave_path,
            dropped: Arc::new(AtomicU64::new(0)),
            reported_error: false,
        })
    }

    /// "/dev/pts/N", for xenstore and QMP query-chardev.
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// Counts output bytes dropped because nobody drained the pty; stays
    /// valid after the backend has moved into the UART.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    /// The input side; hand it to a thread or a poll loop.
    pub fn reader(&self) -> PtyReader {
        PtyReader {
            master: self.master.clone(),
        }
    }
}

impl SerialBackend for PtySerial {
    fn write(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match nix::unistd::write(self.master.as_fd(), rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(err) => {
                    if !self.reported_error {
                        log::warn!(
                            "serial pty {}: write failed ({err}); output is dropped",
                            self.slave_path.display()
                        );
                        self.reported_error = true;
                    }
                    break;
                }
            }
        }
        self.dropped.fetch_add(rest.len() as u64, Ordering::Relaxed);
    }
}

/// Reads what a console client types into the pty.
pub struct PtyReader {
    master: Arc<OwnedFd>,
}

impl PtyReader {
    pub fn raw_fd(&self) -> RawFd {
        self.master.as_raw_fd()
    }

    /// The master, to wait on with poll.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Non-blocking read for a poll loop; Ok(0) when nothing is waiting.
    pub fn read_available(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        match nix::unistd::read(self.master.as_raw_fd(), buf) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(0),
            other => other,
        }
    }

    /// A thread that feeds input to `feed`, which returns how many bytes it
    /// took (the UART's FIFO space). Bytes not taken wait in the thread, not
    /// in an unbounded queue: at most one read chunk is held.
    pub fn spawn<F>(self, mut feed: F, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>>
    where
        F: FnMut(&[u8]) -> usize + Send + 'static,
    {
        std::thread::Builder::new().name("serial-pty".into()).spawn(move || {
            crate::sandbox::enter_or_exit(crate::sandbox::ThreadKind::SerialPty);
            let mut held: Vec<u8> = Vec::with_capacity(READ_CHUNK);
            while !stop.load(Ordering::Relaxed) {
                if !held.is_empty() {
                    let taken = feed(&held).min(held.len());
                    held.drain(..taken);
                    if taken == 0 {
                        std::thread::sleep(FIFO_FULL_BACKOFF);
                    }
                    continue;
                }
                let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
                let timeout = PollTimeout::from(READER_POLL_MS);
                match poll(&mut fds, timeout) {
                    Ok(0) | Err(Errno::EINTR) => continue,
                    Ok(_) => {}
                    Err(err) => {
                        log::warn!("serial pty: poll failed ({err}); input stops");
                        return;
                    }
                }
                let mut chunk = [0u8; READ_CHUNK];
                match self.read_available(&mut chunk) {
                    Ok(n) => held.extend_from_slice(&chunk[..n]),
                    Err(Errno::EIO) => std::thread::sleep(READER_POLL),
                    Err(err) => {
                        log::warn!("serial pty: read failed ({err}); input stops");
                        return;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Uart, FIFO_SIZE};
    use super::*;
    use crate::devices::bus::BusDevice;
    use crate::vm::IrqLine;
    use std::fs::OpenOptions;
    use std::io::{Read, Write};
    use std::sync::Mutex;
    use std::time::Instant;

    struct NoIrq;
    impl IrqLine for NoIrq {
        fn set_level(&self, _high: bool) {}
    }

    #[test]
    fn guest_output_reaches_a_console_client() {
        let pty = PtySerial::open().unwrap();
        let path = pty.slave_path().to_path_buf();
        assert!(path.to_string_lossy().starts_with("/dev/pts/"), "{path:?}");
        let mut console = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut uart = Uart::new(Arc::new(NoIrq), Box::new(pty));
        for &b in b"login:\n" {
            uart.write(0x3f8, 0, &[b]);
        }
        let mut got = [0u8; 7];
        console.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"login:\n", "raw mode: no CR inserted");
    }

    #[test]
    fn console_input_reaches_the_guest_through_the_fifo() {
        let pty = PtySerial::open().unwrap();
        let mut console = OpenOptions::new()
            .read(true)
            .write(true)
            .open(pty.slave_path())
            .unwrap();
        let reader = pty.reader();
        let uart = Arc::new(Mutex::new(Uart::new(Arc::new(NoIrq), Box::new(pty))));
        uart.lock().unwrap().write(0x3f8, 2, &[0x07]);
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = uart.clone();
        let thread = reader
            .spawn(move |bytes| feeder.lock().unwrap().receive(bytes), stop.clone())
            .unwrap();
        let message: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        console.write_all(&message).unwrap();
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.len() < message.len() && Instant::now() < deadline {
            let byte = {
                let mut u = uart.lock().unwrap();
                assert!(u.rx_space() <= FIFO_SIZE);
                let mut lsr = [0u8];
                u.read(0x3f8, 5, &mut lsr);
                let mut b = [0u8];
                (lsr[0] & 1 != 0).then(|| {
                    u.read(0x3f8, 0, &mut b);
                    b[0]
                })
            };
            match byte {
                Some(b) => received.push(b),
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        assert_eq!(received, message);
    }

    #[test]
    fn output_nobody_reads_is_dropped_and_counted_without_blocking() {
        let mut pty = PtySerial::open().unwrap();
        let dropped = pty.dropped_counter();
        let started = Instant::now();
        let block = vec![b'x'; 4096];
        for _ in 0..256 {
            pty.write(&block);
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        let lost = dropped.load(Ordering::Relaxed);
        assert!(lost > 0 && lost < 256 * 4096, "dropped {lost}");
    }

    #[test]
    fn read_available_is_non_blocking() {
        let pty = PtySerial::open().unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(pty.reader().read_available(&mut buf), Ok(0));
    }
}
