//! Requests off the socket: JSON objects, bounded in size, with the
//! descriptors passed along with them (SCM_RIGHTS, for add-fd).

use super::error::CommandError;
use super::json::error_reply;
use super::outbox::Outbox;
use super::session::Session;
use super::{MAX_LINE, MAX_PENDING_FDS};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// Requests are JSON objects, normally one per line as libxl sends them;
/// an object may also span lines or share one with the next, as QEMU's
/// streaming parser allows. Unfinished input is bounded by MAX_LINE.
pub(super) fn read_commands(stream: FdStream, outbox: &Outbox, session: &mut Session) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut pending = String::new();
    // After an overflow the rest of that message is skipped up to the next
    // line that starts a new object, instead of answering each fragment.
    let mut discarding = false;
    let too_long = || error_reply(&CommandError::TooLong, None);
    loop {
        let line = match read_bounded_line(&mut reader, MAX_LINE)? {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                pending.clear();
                if !discarding {
                    outbox.reply(&too_long(), false)?;
                }
                discarding = true;
                continue;
            }
            Line::Text(text) => (text, true),
            Line::Unterminated(text) => (text, false),
        };
        let (line, ended_by_newline) = line;
        if discarding {
            if line.trim_ascii_start().first() != Some(&b'{') {
                continue;
            }
            discarding = false;
        }
        if pending.len() + line.len() > MAX_LINE {
            pending.clear();
            outbox.reply(&too_long(), false)?;
            discarding = true;
            continue;
        }
        pending.push_str(&String::from_utf8_lossy(&line));
        if ended_by_newline {
            pending.push('\n');
        }
        let mut stream = serde_json::Deserializer::from_str(&pending).into_iter::<Value>();
        let mut consumed = 0;
        loop {
            match stream.next() {
                None => {
                    consumed = pending.len();
                    break;
                }
                Some(Ok(request)) => {
                    consumed = stream.byte_offset();
                    let was_negotiated = session.negotiated;
                    let reply = session.handle_request(request);
                    outbox.reply(&reply, session.negotiated && !was_negotiated)?;
                    if session.quit_requested {
                        return Ok(());
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    consumed = pending.len();
                    outbox.reply(&error_reply(&CommandError::Parse(e), None), false)?;
                    break;
                }
            }
        }
        pending.drain(..consumed);
        if pending.trim().is_empty() {
            pending.clear();
        }
    }
}

enum Line {
    Text(Vec<u8>),
    /// What arrived so far ends like a JSON object but has no newline:
    /// libxenstat (xentop) sends its commands so and waits 10 ms for the
    /// answer, so it is parsed now instead of waiting for a newline.
    Unterminated(Vec<u8>),
    TooLong,
    Eof,
}

/// Reads up to '\n' (or to the end of what has arrived, when that ends in
/// '}'); a longer line is consumed and dropped in pieces so it never
/// occupies more than `limit` bytes of memory.
fn read_bounded_line<R: Read>(reader: &mut BufReader<R>, limit: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if too_long {
                Line::TooLong
            } else if line.is_empty() {
                Line::Eof
            } else {
                Line::Text(line)
            });
        }
        let (chunk, found_newline) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], Some(at)),
            None => (available, None),
        };
        if !too_long {
            if line.len() + chunk.len() > limit {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let available_len = available.len();
        let consumed = found_newline.map(|at| at + 1).unwrap_or(available_len);
        reader.consume(consumed);
        if found_newline.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Text(line) });
        }
        if !too_long && consumed == available_len && line.trim_ascii_end().last() == Some(&b'}') {
            return Ok(Line::Unterminated(line));
        }
    }
}


/// The command stream, read with recvmsg so descriptors passed along with a
/// command (SCM_RIGHTS, for add-fd) are kept instead of discarded.
pub(super) struct FdStream {
    pub(super) stream: UnixStream,
    pub(super) received: Arc<Mutex<VecDeque<OwnedFd>>>,
}

impl Read for FdStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; MAX_PENDING_FDS]);
        let msg = recvmsg::<()>(self.stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(std::io::Error::from)?;
        let mut received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        for message in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = message {
                for raw in fds {
                    // SAFETY: the kernel has just installed `raw` in our
                    // descriptor table for this message; nothing else owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                    if received.len() < MAX_PENDING_FDS {
                        received.push_back(fd);
                    } else {
                        log::warn!("QMP: closing a passed descriptor, {MAX_PENDING_FDS} are already unclaimed");
                    }
                }
            }
        }
        Ok(msg.bytes)
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn bounded_line_reader_drops_oversized_lines_and_keeps_going() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\nshort\nlast");
        let mut reader = BufReader::with_capacity(16, Cursor::new(input));
        assert!(matches!(read_bounded_line(&mut reader, 50).unwrap(), Line::TooLong));
        assert!(matches!(read_bounded_line(&mut reader, 50).unwrap(), Line::Text(t) if t == b"short"));
        assert!(matches!(read_bounded_line(&mut reader, 50).unwrap(), Line::Text(t) if t == b"last"));
        assert!(matches!(read_bounded_line(&mut reader, 50).unwrap(), Line::Eof));
    }

    /// Gives its bytes once, then fails: a reader that waited for more
    /// (a newline) would hit the failure.
    struct OnceThenStuck(Option<Vec<u8>>);

    impl Read for OnceThenStuck {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let data = self.0.take().ok_or_else(|| std::io::Error::other("blocked: waited for a newline"))?;
            buf[..data.len()].copy_from_slice(&data);
            Ok(data.len())
        }
    }

    #[test]
    fn a_command_without_a_newline_is_taken_as_it_arrives() {
        // libxenstat's exact bytes.
        let command = br#"{ "execute": "qmp_capabilities" }"#.to_vec();
        let mut reader = BufReader::new(OnceThenStuck(Some(command.clone())));
        assert!(matches!(read_bounded_line(&mut reader, 4096).unwrap(), Line::Unterminated(t) if t == command));
    }
}
