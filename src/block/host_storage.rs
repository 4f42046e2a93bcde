//! The host file under an imago image (qcow2 file, its backing files, VMDK
//! extents), as an `imago::Storage`.
//!
//! It wraps imago's own `file::File` for the I/O and changes two things the
//! project promises and imago does not:
//! - `sync()` is fdatasync, as FLUSH is for raw images (imago calls
//!   `sync_all`, an fsync, which also writes back timestamps).
//! - The errno of the host call that failed is kept. imago prepends context
//!   to many errors with `io::Error::new(kind, text)`, which drops the raw
//!   OS error; an ENOSPC would then reach the werror policy as a bare
//!   "storage full" kind, and an EIO as no errno at all. Every failing call
//!   here records its errno in a thread-local, which the backend reads when
//!   a request fails. The I/O engine runs each drive's requests on one
//!   worker thread, and imago's sync API does all of a request's host calls
//!   on the calling thread, so the last errno recorded on the thread during
//!   a request is the one that failed it.

use std::cell::Cell;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use imago::io_buffers::{IoVector, IoVectorMut};
use imago::storage::drivers::CommonStorageHelper;
use imago::storage::PreallocateMode;
use imago::{Storage, StorageOpenOptions};

thread_local! {
    static LAST_HOST_ERRNO: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Forget the errno of an earlier request, before starting a new one.
pub fn clear_host_errno() {
    LAST_HOST_ERRNO.with(|c| c.set(None));
}

/// The errno of the last host call that failed on this thread since
/// `clear_host_errno`.
pub fn last_host_errno() -> Option<i32> {
    LAST_HOST_ERRNO.with(|c| c.get())
}

fn record<T>(result: io::Result<T>) -> io::Result<T> {
    if let Err(e) = &result {
        if let Some(errno) = e.raw_os_error() {
            LAST_HOST_ERRNO.with(|c| c.set(Some(errno)));
        }
    }
    result
}

/// One host file of an image chain.
#[derive(Debug)]
pub struct HostStorage {
    inner: imago::file::File,
    /// A second descriptor of the same open file, for fdatasync: imago's
    /// File does not hand out its own.
    sync_fd: std::fs::File,
    path: PathBuf,
}

impl fmt::Display for HostStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

impl HostStorage {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Storage for HostStorage {
    fn open(opts: StorageOpenOptions) -> io::Result<Self> {
        let path = opts
            .get_filename()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name to open"))?
            .to_path_buf();
        let mut o = OpenOptions::new();
        o.read(true).write(opts.get_writable());
        if opts.get_direct() {
            o.custom_flags(libc::O_DIRECT);
        }
        let file = record(o.open(&path)).map_err(|e| {
            if opts.get_direct() && e.raw_os_error() == Some(libc::EINVAL) {
                io::Error::new(e.kind(), "the filesystem does not support O_DIRECT (cache=none/directsync)")
            } else {
                e
            }
        })?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        let sync_fd = file.try_clone()?;
        let inner = imago::file::File::from_open_file(file, opts)?;
        Ok(HostStorage { inner, sync_fd, path })
    }

    fn mem_align(&self) -> usize {
        self.inner.mem_align()
    }

    fn req_align(&self) -> usize {
        self.inner.req_align()
    }

    fn zero_align(&self) -> usize {
        self.inner.zero_align()
    }

    fn discard_align(&self) -> usize {
        self.inner.discard_align()
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn resolve_relative_path<P: AsRef<std::path::Path>>(&self, relative: P) -> io::Result<PathBuf> {
        self.inner.resolve_relative_path(relative)
    }

    fn get_filename(&self) -> Option<PathBuf> {
        Some(self.path.clone())
    }

    unsafe fn pure_readv(&self, bufv: IoVectorMut<'_>, offset: u64) -> io::Result<()> {
        // SAFETY: the caller keeps the contract of Storage::pure_readv
        // (alignment, no conflicting concurrent access); it is passed on
        // unchanged.
        record(unsafe { self.inner.pure_readv(bufv, offset) })
    }

    unsafe fn pure_writev(&self, bufv: IoVector<'_>, offset: u64) -> io::Result<()> {
        // SAFETY: as for pure_readv, the caller's contract is passed on.
        record(unsafe { self.inner.pure_writev(bufv, offset) })
    }

    unsafe fn pure_write_zeroes(&self, offset: u64, length: u64) -> io::Result<()> {
        // SAFETY: as for pure_readv, the caller's contract is passed on.
        record(unsafe { self.inner.pure_write_zeroes(offset, length) })
    }

    unsafe fn pure_write_allocated_zeroes(&self, offset: u64, length: u64) -> io::Result<()> {
        // SAFETY: as for pure_readv, the caller's contract is passed on.
        record(unsafe { self.inner.pure_write_allocated_zeroes(offset, length) })
    }

    unsafe fn pure_discard(&self, offset: u64, length: u64) -> io::Result<()> {
        // SAFETY: as for pure_readv, the caller's contract is passed on.
        record(unsafe { self.inner.pure_discard(offset, length) })
    }

    fn flush(&self) -> io::Result<()> {
        record(self.inner.flush())
    }

    fn sync(&self) -> io::Result<()> {
        record(nix::unistd::fdatasync(self.sync_fd.as_raw_fd()).map_err(io::Error::from))
    }

    unsafe fn invalidate_cache(&self) -> io::Result<()> {
        // SAFETY: the caller guarantees the on-disk state is consistent, as
        // Storage::invalidate_cache requires; passed on unchanged.
        unsafe { self.inner.invalidate_cache() }
    }

    fn get_storage_helper(&self) -> &CommonStorageHelper {
        self.inner.get_storage_helper()
    }

    fn resize(&self, new_size: u64, prealloc_mode: PreallocateMode) -> io::Result<()> {
        record(self.inner.resize(new_size, prealloc_mode))
    }
}
