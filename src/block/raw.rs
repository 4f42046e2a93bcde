//! A raw image in a regular file or a block device, with QEMU's cache modes.
//!
//! The image may be a window of the file (a loop device's offset and size
//! limit), so every guest offset is shifted by `base` before it reaches the
//! host.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::guest_io::GuestBuffers;
use super::{BlockBackend, BlockError, BlockOp, CacheMode};

mod vectored;

/// O_DIRECT alignment for regular files: the largest logical block size a
/// host filesystem is likely to demand, so it works everywhere.
const FILE_DIRECT_ALIGN: usize = 4096;
/// Upper bound on one O_DIRECT bounce transfer, so a huge guest request does
/// not allocate a huge buffer.
const DIRECT_CHUNK: usize = 1 << 20;

mod ioctl {
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    // BLKSSZGET = _IO(0x12, 104), returns an int through the pointer
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), libc::c_int);
    // BLKDISCARD = _IO(0x12, 119), takes {start, len} in bytes
    nix::ioctl_write_ptr_bad!(blkdiscard, nix::request_code_none!(0x12, 119), [u64; 2]);
}

/// The part of a host file or device the guest sees as its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageWindow {
    /// Byte offset of guest byte 0 in the host file.
    pub base: u64,
    /// Guest-visible size in bytes.
    pub size: u64,
}

pub struct RawImage {
    file: File,
    /// A page-cache descriptor for the last, partial alignment block of an
    /// O_DIRECT file whose length is not a multiple of the alignment:
    /// O_DIRECT cannot write it without extending the file.
    buffered_tail: Option<File>,
    path: PathBuf,
    window: ImageWindow,
    /// Host length of the file (or device) at open.
    host_len: u64,
    cache: CacheMode,
    read_only: bool,
    guest_write_cache: bool,
    block_device: bool,
    direct_align: usize,
    bounce: Vec<u8>,
    discard_unsupported_logged: bool,
    /// Set after a failed fdatasync: Linux forgets the error once it was
    /// reported and drops the dirty pages, so a later successful fdatasync
    /// would claim data is safe that was lost. QEMU's file-posix does the
    /// same and fails every later flush.
    page_cache_inconsistent: Option<i32>,
    syncs: u64,
    /// DMA requests that went straight to guest memory / that bounced.
    zero_copy: u64,
    bounced: u64,
}

fn errno_of(err: &std::io::Error) -> i32 {
    err.raw_os_error().unwrap_or(libc::EIO)
}

fn open_error(path: &Path, reason: impl std::fmt::Display) -> BlockError {
    BlockError::Open { path: path.display().to_string(), reason: reason.to_string() }
}

/// Size of a block device in bytes.
pub fn block_device_size(file: &File) -> Result<u64, Errno> {
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points
    // at a live local; the descriptor is open for the call's duration.
    unsafe { ioctl::blkgetsize64(file.as_raw_fd(), &mut size) }?;
    Ok(size)
}

/// Logical block size of a block device in bytes.
pub fn block_device_logical_block_size(file: &File) -> Result<usize, Errno> {
    let mut lbs: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at
    // a live local; the descriptor is open for the call's duration.
    unsafe { ioctl::blksszget(file.as_raw_fd(), &mut lbs) }?;
    Ok(lbs.max(512) as usize)
}

impl RawImage {
    /// Opens a whole file or block device.
    pub fn open(path: &Path, cache: CacheMode, read_only: bool) -> Result<Self, BlockError> {
        Self::open_window(path, cache, read_only, None)
    }

    /// Opens `path` and shows the guest only `window` of it (None: all of
    /// it). The window is cut down to what the host really holds.
    pub fn open_window(
        path: &Path,
        cache: CacheMode,
        read_only: bool,
        window: Option<ImageWindow>,
    ) -> Result<Self, BlockError> {
        let open = |direct: bool| {
            let mut opts = OpenOptions::new();
            opts.read(true).write(!read_only);
            if direct {
                opts.custom_flags(libc::O_DIRECT);
            }
            opts.open(path)
        };
        let file = open(cache.is_direct()).map_err(|e| {
            if cache.is_direct() && errno_of(&e) == libc::EINVAL {
                open_error(path, format!("the filesystem does not support O_DIRECT (cache={})", cache_name(cache)))
            } else {
                open_error(path, e)
            }
        })?;
        let meta = file.metadata().map_err(|e| open_error(path, e))?;
        let block_device = meta.file_type().is_block_device();
        let host_len = if block_device {
            block_device_size(&file).map_err(|e| open_error(path, format!("BLKGETSIZE64: {e}")))?
        } else if meta.is_file() {
            meta.len()
        } else {
            return Err(open_error(path, "not a regular file or block device"));
        };
        let direct_align = if block_device {
            block_device_logical_block_size(&file).unwrap_or(FILE_DIRECT_ALIGN)
        } else {
            FILE_DIRECT_ALIGN
        };
        let window = match window {
            None => ImageWindow { base: 0, size: host_len },
            Some(w) => {
                let available = host_len.saturating_sub(w.base);
                ImageWindow { base: w.base, size: w.size.min(available) }
            }
        };
        let buffered_tail = if cache.is_direct() && host_len % direct_align as u64 != 0 {
            Some(open(false).map_err(|e| open_error(path, e))?)
        } else {
            None
        };
        Ok(RawImage {
            file,
            buffered_tail,
            path: path.to_path_buf(),
            window,
            host_len,
            cache,
            read_only,
            guest_write_cache: true,
            block_device,
            direct_align,
            bounce: Vec::new(),
            discard_unsupported_logged: false,
            page_cache_inconsistent: None,
            syncs: 0,
            zero_copy: 0,
            bounced: 0,
        })
    }

    /// The open host file, e.g. to check its identity.
    pub fn host_file(&self) -> &File {
        &self.file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn cache_mode(&self) -> CacheMode {
        self.cache
    }

    pub fn window(&self) -> ImageWindow {
        self.window
    }

    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// How many fdatasync calls reached the host (successful or not).
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// O_DIRECT alignment in bytes (meaningful only for cache=none/directsync).
    pub fn direct_alignment(&self) -> usize {
        self.direct_align
    }

    fn check_range(&self, op: BlockOp, offset: u64, len: u64) -> Result<u64, BlockError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.window.size => Ok(self.window.base + offset),
            _ => Err(BlockError::OutOfRange { op, offset, len, size: self.window.size }),
        }
    }

    fn datasync(&mut self) -> Result<(), i32> {
        if let Some(errno) = self.page_cache_inconsistent {
            return Err(errno);
        }
        self.syncs += 1;
        match nix::unistd::fdatasync(self.file.as_raw_fd()) {
            Ok(()) => Ok(()),
            Err(e) => {
                // With O_DIRECT no dirty pages were dropped, so a retry
                // means something; with the page cache (also for an O_DIRECT
                // file's partial tail block) it does not.
                if !self.cache.is_direct() || self.buffered_tail.is_some() {
                    self.page_cache_inconsistent = Some(e as i32);
                }
                Err(e as i32)
            }
        }
    }

    fn write_needs_sync(&self) -> bool {
        self.cache != CacheMode::Unsafe && (self.cache.syncs_every_write() || !self.guest_write_cache)
    }

    /// Where an aligned O_DIRECT span would run past the host length the
    /// kernel cannot do it, so such spans go through the page cache.
    fn direct_span_fits(&self, host_offset: u64, len: usize) -> bool {
        let align = self.direct_align as u64;
        let end = (host_offset + len as u64).div_ceil(align) * align;
        end <= self.host_len
    }

    fn read_host(&mut self, host_offset: u64, buf: &mut [u8]) -> Result<(), i32> {
        if !self.cache.is_direct() {
            return pread_full(&self.file, buf, host_offset);
        }
        let mut done = 0;
        while done < buf.len() {
            let chunk = (buf.len() - done).min(DIRECT_CHUNK);
            let at = host_offset + done as u64;
            if self.direct_span_fits(at, chunk) {
                self.direct_read(at, &mut buf[done..done + chunk])?;
            } else {
                let tail = self.buffered_tail.as_ref().unwrap_or(&self.file);
                pread_full(tail, &mut buf[done..done + chunk], at)?;
            }
            done += chunk;
        }
        Ok(())
    }

    fn write_host(&mut self, host_offset: u64, data: &[u8]) -> Result<(), i32> {
        if !self.cache.is_direct() {
            return pwrite_full(&self.file, data, host_offset);
        }
        let mut done = 0;
        while done < data.len() {
            let chunk = (data.len() - done).min(DIRECT_CHUNK);
            let at = host_offset + done as u64;
            if self.direct_span_fits(at, chunk) {
                self.direct_write(at, &data[done..done + chunk])?;
            } else {
                let tail = self.buffered_tail.as_ref().unwrap_or(&self.file);
                pwrite_full(tail, &data[done..done + chunk], at)?;
            }
            done += chunk;
        }
        Ok(())
    }

    /// Aligned span [start, start+len) covering [offset, offset+n), and a
    /// bounce buffer slice range of that length at an aligned address.
    fn bounce_for(&mut self, offset: u64, n: usize) -> (u64, usize, std::ops::Range<usize>) {
        let align = self.direct_align as u64;
        let start = offset / align * align;
        let end = (offset + n as u64).div_ceil(align) * align;
        let len = (end - start) as usize;
        let needed = len + self.direct_align;
        if self.bounce.len() < needed {
            self.bounce = vec![0; needed];
        }
        let misalign = self.bounce.as_ptr() as usize % self.direct_align;
        let first = if misalign == 0 { 0 } else { self.direct_align - misalign };
        (start, len, first..first + len)
    }

    fn direct_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), i32> {
        let (start, _, range) = self.bounce_for(offset, buf.len());
        let lead = (offset - start) as usize;
        pread_full(&self.file, &mut self.bounce[range.clone()], start)?;
        buf.copy_from_slice(&self.bounce[range.start + lead..range.start + lead + buf.len()]);
        Ok(())
    }

    fn direct_write(&mut self, offset: u64, data: &[u8]) -> Result<(), i32> {
        let (start, len, range) = self.bounce_for(offset, data.len());
        let lead = (offset - start) as usize;
        let align = self.direct_align;
        // Read-modify-write of the partial alignment blocks at either end.
        if lead != 0 {
            let head = range.start..range.start + align;
            pread_full(&self.file, &mut self.bounce[head], start)?;
        }
        let tail_used = (lead + data.len()) % align;
        if tail_used != 0 && (lead == 0 || len > align) {
            let tail = range.end - align..range.end;
            pread_full(&self.file, &mut self.bounce[tail], start + (len - align) as u64)?;
        }
        self.bounce[range.start + lead..range.start + lead + data.len()].copy_from_slice(data);
        pwrite_full(&self.file, &self.bounce[range], start)
    }
}

fn cache_name(cache: CacheMode) -> &'static str {
    match cache {
        CacheMode::Writeback => "writeback",
        CacheMode::Writethrough => "writethrough",
        CacheMode::None => "none",
        CacheMode::Directsync => "directsync",
        CacheMode::Unsafe => "unsafe",
    }
}

/// Reads all of `buf` at `offset`, retrying short reads and EINTR. Bytes
/// past the host end of file read as zeros, as with QEMU's file driver.
pub fn pread_full(file: &File, buf: &mut [u8], offset: u64) -> Result<(), i32> {
    let mut done = 0;
    while done < buf.len() {
        match nix::sys::uio::pread(file, &mut buf[done..], (offset + done as u64) as libc::off_t) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e as i32),
        }
    }
    Ok(())
}

/// Writes all of `data` at `offset`, retrying short writes and EINTR. A
/// partial write is an error: the errno of the call that stopped it.
pub fn pwrite_full(file: &File, data: &[u8], offset: u64) -> Result<(), i32> {
    let mut done = 0;
    while done < data.len() {
        match nix::sys::uio::pwrite(file, &data[done..], (offset + done as u64) as libc::off_t) {
            // A zero-byte write with bytes left makes no progress; retrying
            // would spin, and claiming success would lose data.
            Ok(0) => return Err(libc::EIO),
            Ok(n) => done += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e as i32),
        }
    }
    Ok(())
}

impl BlockBackend for RawImage {
    fn size(&self) -> u64 {
        self.window.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let len = buf.len() as u64;
        let host = self.check_range(BlockOp::Read, offset, len)?;
        self.read_host(host, buf).map_err(|errno| BlockError::Io { op: BlockOp::Read, offset, len, errno })
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let len = data.len() as u64;
        let host = self.check_range(BlockOp::Write, offset, len)?;
        let io_error = |errno| BlockError::Io { op: BlockOp::Write, offset, len, errno };
        self.write_host(host, data).map_err(io_error)?;
        if self.write_needs_sync() {
            self.datasync().map_err(io_error)?;
        }
        Ok(())
    }

    fn read_to_guest(&mut self, offset: u64, dst: &GuestBuffers, scratch: &mut Vec<u8>) -> Result<(), BlockError> {
        self.vectored_read(offset, dst, scratch)
    }

    fn write_from_guest(&mut self, offset: u64, src: &GuestBuffers, scratch: &mut Vec<u8>) -> Result<(), BlockError> {
        self.vectored_write(offset, src, scratch)
    }

    fn failed_permanently(&self) -> bool {
        self.page_cache_inconsistent.is_some()
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only || self.cache == CacheMode::Unsafe {
            return Ok(());
        }
        self.datasync().map_err(|errno| BlockError::Io { op: BlockOp::Flush, offset: 0, len: 0, errno })
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let host = self.check_range(BlockOp::Discard, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let result = if self.block_device {
            // A device discards whole logical blocks only (EINVAL
            // otherwise); the partial blocks at either end keep their data.
            let align = self.direct_align as u64;
            let start = host.div_ceil(align) * align;
            let end = (host + len) / align * align;
            if end <= start {
                return Ok(());
            }
            let range = [start, end - start];
            // SAFETY: BLKDISCARD reads two u64 through the pointer, which
            // points at a live local; the descriptor is open.
            unsafe { ioctl::blkdiscard(self.file.as_raw_fd(), &range) }.map(drop)
        } else {
            nix::fcntl::fallocate(
                self.file.as_raw_fd(),
                nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                host as libc::off_t,
                len as libc::off_t,
            )
        };
        match result {
            Ok(()) => Ok(()),
            // TRIM is advisory: a host that cannot discard loses nothing.
            Err(Errno::EOPNOTSUPP | Errno::ENOTTY | Errno::ENOSYS) => {
                if !self.discard_unsupported_logged {
                    self.discard_unsupported_logged = true;
                    log::debug!("{}: host cannot discard; TRIM requests are ignored", self.path.display());
                }
                Ok(())
            }
            Err(e) => Err(BlockError::Io { op: BlockOp::Discard, offset, len, errno: e as i32 }),
        }
    }

    fn set_guest_write_cache(&mut self, enabled: bool) {
        self.guest_write_cache = enabled;
    }

    fn guest_write_cache(&self) -> bool {
        self.guest_write_cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn image(len: usize, fill: u8) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![fill; len]).unwrap();
        f
    }

    #[test]
    fn reads_back_what_was_written_in_every_buffered_mode() {
        for cache in [CacheMode::Writeback, CacheMode::Writethrough, CacheMode::Unsafe] {
            let f = image(8192, 0);
            let mut img = RawImage::open(f.path(), cache, false).unwrap();
            img.write_at(512, &[0xab; 1024]).unwrap();
            let mut buf = [0u8; 2048];
            img.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf[..512], &[0; 512][..]);
            assert_eq!(&buf[512..1536], &[0xab; 1024][..]);
            assert_eq!(std::fs::read(f.path()).unwrap()[600], 0xab, "{cache:?}");
        }
    }

    #[test]
    fn ranges_past_the_end_or_overflowing_are_refused() {
        let f = image(4096, 0);
        let mut img = RawImage::open(f.path(), CacheMode::Writeback, false).unwrap();
        assert!(matches!(img.read_at(3584, &mut [0; 1024]), Err(BlockError::OutOfRange { size: 4096, .. })));
        assert!(matches!(img.write_at(u64::MAX - 10, &[0; 512]), Err(BlockError::OutOfRange { .. })));
        assert!(matches!(img.discard(4096, 1), Err(BlockError::OutOfRange { .. })));
        assert_eq!(std::fs::metadata(f.path()).unwrap().len(), 4096, "nothing may grow the image");
    }

    #[test]
    fn sync_count_follows_the_cache_mode_and_guest_write_cache() {
        let f = image(4096, 0);
        let mut wb = RawImage::open(f.path(), CacheMode::Writeback, false).unwrap();
        wb.write_at(0, &[1; 512]).unwrap();
        assert_eq!(wb.sync_count(), 0);
        wb.flush().unwrap();
        assert_eq!(wb.sync_count(), 1);
        wb.set_guest_write_cache(false);
        wb.write_at(0, &[1; 512]).unwrap();
        assert_eq!(wb.sync_count(), 2);

        let mut wt = RawImage::open(f.path(), CacheMode::Writethrough, false).unwrap();
        wt.write_at(0, &[2; 512]).unwrap();
        wt.write_at(512, &[2; 512]).unwrap();
        assert_eq!(wt.sync_count(), 2);

        let mut us = RawImage::open(f.path(), CacheMode::Unsafe, false).unwrap();
        us.set_guest_write_cache(false);
        us.write_at(0, &[3; 512]).unwrap();
        us.flush().unwrap();
        assert_eq!(us.sync_count(), 0);
    }

    #[test]
    fn window_shifts_and_limits_guest_offsets() {
        let f = image(8192, 0);
        let w = ImageWindow { base: 1024, size: 2048 };
        let mut img = RawImage::open_window(f.path(), CacheMode::Writeback, false, Some(w)).unwrap();
        assert_eq!(img.size(), 2048);
        img.write_at(0, &[7; 512]).unwrap();
        assert!(img.write_at(2048, &[7; 512]).is_err());
        let host = std::fs::read(f.path()).unwrap();
        assert_eq!(host[1023], 0);
        assert_eq!(host[1024], 7);
        assert_eq!(host[1536], 0);
    }

    #[test]
    fn read_only_refuses_writes_and_discards() {
        let f = image(4096, 5);
        let mut img = RawImage::open(f.path(), CacheMode::Writeback, true).unwrap();
        assert_eq!(img.write_at(0, &[0; 512]), Err(BlockError::ReadOnly));
        assert_eq!(img.discard(0, 512), Err(BlockError::ReadOnly));
        let mut buf = [0; 512];
        img.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, [5; 512]);
    }

    #[test]
    fn bytes_the_host_file_lost_after_open_read_as_zeros() {
        let f = image(8192, 0x77);
        let mut img = RawImage::open(f.path(), CacheMode::Writeback, false).unwrap();
        f.as_file().set_len(4096).unwrap();
        let mut buf = [0xffu8; 1024];
        img.read_at(3584, &mut buf).unwrap();
        assert_eq!(&buf[..512], &[0x77; 512][..]);
        assert_eq!(&buf[512..], &[0; 512][..]);
    }

    #[test]
    fn character_devices_are_refused() {
        let err = RawImage::open(Path::new("/dev/null"), CacheMode::Writeback, false).err().unwrap();
        assert!(matches!(err, BlockError::Open { .. }), "{err}");
    }
}
