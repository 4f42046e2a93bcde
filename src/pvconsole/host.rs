//! The host ends a console can have, as libxl asks for them: a pty
//! (`output` = "pty": its path goes to the frontend's `tty` node, which
//! `xl channel-list` shows) or a unix socket we listen on (`output` =
//! "chardev:libxl-channelN", the `-chardev socket,...,server=on` libxl
//! passes for a channel with `connection=socket`). Everything is
//! non-blocking: the console thread polls each end's `poll_fd` beside its
//! event channel.

use super::HostEnd;
use crate::devices::uart::pty::{PtyError, PtyReader, PtySerial};
use crate::devices::uart::SerialBackend;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A pty whose slave we keep open ourselves, so that it exists while no
/// one has it open; what nobody reads is dropped once the pty's buffer is
/// full (the serial console's rule, `devices::uart::pty`).
pub struct PtyEnd {
    pty: PtySerial,
    reader: PtyReader,
}

impl PtyEnd {
    pub fn open() -> Result<Self, PtyError> {
        let pty = PtySerial::open()?;
        let reader = pty.reader();
        Ok(PtyEnd { pty, reader })
    }

    pub fn path(&self) -> &Path {
        self.pty.slave_path()
    }

    pub fn poll_fd(&self) -> BorrowedFd<'_> {
        self.reader.as_fd()
    }
}

impl HostEnd for PtyEnd {
    fn write(&mut self, data: &[u8]) -> usize {
        SerialBackend::write(&mut self.pty, data);
        data.len()
    }

    fn read(&mut self, buf: &mut [u8]) -> usize {
        self.reader.read_available(buf).unwrap_or(0)
    }
}

/// A listening unix socket and at most one client at a time (QEMU's
/// `server=on` chardev): a second client waits in the backlog until the
/// first has gone. Guest output while no client is connected is dropped;
/// a connected client that reads slowly holds the guest back instead.
pub struct SocketEnd {
    listener: UnixListener,
    path: PathBuf,
    client: Option<UnixStream>,
}

impl SocketEnd {
    /// Bind `path` (a stale socket file left there is replaced, as QEMU
    /// does).
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        }) {
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(SocketEnd { listener, path: path.to_path_buf(), client: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptors to wait on: the client's, or the listener's while
    /// there is none.
    pub fn poll_fd(&self) -> BorrowedFd<'_> {
        match &self.client {
            Some(c) => c.as_fd(),
            None => self.listener.as_fd(),
        }
    }

    pub fn connected(&self) -> bool {
        self.client.is_some()
    }

    fn accept(&mut self) {
        if self.client.is_some() {
            return;
        }
        match self.listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_ok() {
                    log::info!("console socket {}: client connected", self.path.display());
                    self.client = Some(stream);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => log::warn!("console socket {}: accept: {e}", self.path.display()),
        }
    }

    fn hang_up(&mut self) {
        if self.client.take().is_some() {
            log::info!("console socket {}: client gone", self.path.display());
        }
    }
}

impl HostEnd for SocketEnd {
    fn write(&mut self, data: &[u8]) -> usize {
        self.accept();
        let Some(client) = &mut self.client else { return data.len() };
        match client.write(data) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => 0,
            Err(_) => {
                self.hang_up();
                data.len()
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> usize {
        self.accept();
        let Some(client) = &mut self.client else { return 0 };
        match client.read(buf) {
            Ok(0) => {
                self.hang_up();
                0
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => 0,
            Err(_) => {
                self.hang_up();
                0
            }
        }
    }
}

impl Drop for SocketEnd {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
