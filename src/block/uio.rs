//! preadv/pwritev between an image file and mapped guest memory: the only
//! place where the kernel is handed guest addresses. The loops around the
//! syscalls make a transfer complete or an error, as `pread_full` and
//! `pwrite_full` do for process buffers.

use super::guest_io::GuestBuffers;
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;

/// One preadv of at most `max` bytes into `bufs` from byte `from` on.
pub fn preadv(file: &File, bufs: &GuestBuffers, from: usize, max: usize, offset: u64) -> Result<usize, Errno> {
    let iov = bufs.iovecs(from, max);
    if iov.is_empty() {
        return Ok(0);
    }
    let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    // SAFETY: every iovec points into a mapping that `bufs` holds (its
    // regions keep their mappings alive, see GuestIoRegion), and `bufs` is
    // borrowed for the whole call, so the kernel writes only memory that
    // stays mapped and is ours to write. The guest may access the same
    // memory meanwhile, as it may under any DMA; no Rust reference points
    // into it. `iov` outlives the call and has at most MAX_IOVECS entries.
    let n = unsafe { libc::preadv(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, offset) };
    Errno::result(n).map(|n| n as usize)
}

/// One pwritev of at most `max` bytes from `bufs`, byte `from` on.
pub fn pwritev(file: &File, bufs: &GuestBuffers, from: usize, max: usize, offset: u64) -> Result<usize, Errno> {
    let iov = bufs.iovecs(from, max);
    if iov.is_empty() {
        return Ok(0);
    }
    let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    // SAFETY: as in preadv; here the kernel only reads the mapped memory.
    let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, offset) };
    Errno::result(n).map(|n| n as usize)
}

/// A syscall as the loops use it: (buffers, from byte, file offset) ->
/// bytes moved. Tests pass one that moves little at a time.
pub type VectoredIo<'a> = &'a mut dyn FnMut(&GuestBuffers, usize, u64) -> Result<usize, Errno>;

/// Fill all of `bufs` from `offset` on, continuing after short reads and
/// EINTR. Bytes past the end of the host file read as zeros (the file
/// shrank after open), as with `pread_full`. `aligned_steps`: O_DIRECT,
/// where a read may only continue at an aligned byte; a short read that
/// leaves a misaligned remainder only happens at the end of the file, so
/// the rest reads as zeros then too.
pub fn read_full(bufs: &GuestBuffers, offset: u64, aligned_steps: Option<usize>, io: VectoredIo) -> Result<(), i32> {
    let mut done = 0;
    while done < bufs.len() {
        match io(bufs, done, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n.min(bufs.len() - done),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e as i32),
        }
        if aligned_steps.is_some_and(|a| !done.is_multiple_of(a.max(1))) {
            break;
        }
    }
    if done < bufs.len() {
        bufs.zero_from(done);
    }
    Ok(())
}

/// Write all of `bufs` at `offset`, continuing after short writes and
/// EINTR. A write that stops short is an error (the errno of the call that
/// stopped it, EIO for one that wrote nothing), never a success.
pub fn write_full(bufs: &GuestBuffers, offset: u64, io: VectoredIo) -> Result<(), i32> {
    let mut done = 0;
    while done < bufs.len() {
        match io(bufs, done, offset + done as u64) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => done += n.min(bufs.len() - done),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e as i32),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::engine::GuestSegment;
    use crate::vm::{DmaDirection, GuestMemory};
    use crate::qtest::AnonRam;
    use std::io::Write;

    fn segments() -> Vec<GuestSegment> {
        // Odd sizes, one crossing a page boundary, out of address order.
        [(0x9000, 1000), (0x1ffe, 4100), (0x400, 7)].iter().map(|&(gpa, len)| GuestSegment { gpa, len }).collect()
    }

    fn file_with(data: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(data).unwrap();
        f
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 13 % 251) as u8 + 1).collect()
    }

    fn gathered(ram: &AnonRam) -> Vec<u8> {
        segments()
            .iter()
            .flat_map(|s| {
                let mut b = vec![0; s.len];
                ram.read(s.gpa, &mut b).unwrap();
                b
            })
            .collect()
    }

    /// Reads that the "kernel" cuts to 777 bytes (and interrupts once)
    /// still fill every segment with the right bytes.
    #[test]
    fn short_reads_continue_where_they_stopped() {
        let data = pattern(16384);
        let f = file_with(&data);
        let ram = AnonRam::new(1 << 20).unwrap();
        let bufs = GuestBuffers::map(&ram, &segments(), DmaDirection::FromDevice).unwrap();
        let (mut calls, mut interrupted) = (0, false);
        let mut io = |b: &GuestBuffers, from: usize, at: u64| {
            calls += 1;
            if !interrupted && from > 0 {
                interrupted = true;
                return Err(Errno::EINTR);
            }
            preadv(f.as_file(), b, from, 777, at)
        };
        read_full(&bufs, 100, None, &mut io).unwrap();
        assert_eq!(calls, 5107usize.div_ceil(777) + 1);
        assert_eq!(gathered(&ram), data[100..100 + 5107]);
    }

    #[test]
    fn reads_past_the_end_of_the_file_give_zeros_and_errors_come_back() {
        let data = pattern(3000);
        let f = file_with(&data);
        let ram = AnonRam::new(1 << 20).unwrap();
        ram.write(0, &vec![0xff; 0x10000]).unwrap();
        let bufs = GuestBuffers::map(&ram, &segments(), DmaDirection::FromDevice).unwrap();
        read_full(&bufs, 0, None, &mut |b, from, at| preadv(f.as_file(), b, from, usize::MAX, at)).unwrap();
        let mut want = data.clone();
        want.resize(5107, 0);
        assert_eq!(gathered(&ram), want);
        // O_DIRECT steps: a short read to a misaligned byte ends the read.
        ram.write(0, &vec![0xff; 0x10000]).unwrap();
        read_full(&bufs, 0, Some(512), &mut |b, from, at| preadv(f.as_file(), b, from, 700, at)).unwrap();
        let mut want = data[..700].to_vec();
        want.resize(5107, 0);
        assert_eq!(gathered(&ram), want);
        let err = read_full(&bufs, 0, None, &mut |_, _, _| Err(Errno::EIO));
        assert_eq!(err, Err(libc::EIO));
    }

    #[test]
    fn short_writes_continue_and_a_stuck_write_is_an_error() {
        let f = file_with(&[0u8; 8192]);
        let ram = AnonRam::new(1 << 20).unwrap();
        let data = pattern(5107);
        let mut at = 0;
        for s in segments() {
            ram.write(s.gpa, &data[at..at + s.len]).unwrap();
            at += s.len;
        }
        let bufs = GuestBuffers::map(&ram, &segments(), DmaDirection::ToDevice).unwrap();
        write_full(&bufs, 512, &mut |b, from, at| pwritev(f.as_file(), b, from, 1000, at)).unwrap();
        let image = std::fs::read(f.path()).unwrap();
        assert_eq!(&image[512..512 + 5107], &data[..]);
        assert!(image[..512].iter().chain(&image[512 + 5107..]).all(|&b| b == 0));
        let mut once = true;
        let stuck = write_full(&bufs, 0, &mut |b, from, at| {
            if std::mem::take(&mut once) {
                pwritev(f.as_file(), b, from, 10, at)
            } else {
                Ok(0)
            }
        });
        assert_eq!(stuck, Err(libc::EIO));
        assert_eq!(write_full(&bufs, 0, &mut |_, _, _| Err(Errno::ENOSPC)), Err(libc::ENOSPC));
    }
}
