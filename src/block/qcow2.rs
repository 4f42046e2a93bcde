//! qcow2 images, and flat VMDK images read-only, served by the `imago`
//! crate.
//!
//! # Why imago
//! imago (crates.io `imago` 0.2.6, MIT, <https://gitlab.com/hreitz/imago>)
//! is written by Hanna Czenczek, who maintains QEMU's block layer and its
//! qcow2 driver. It was chosen over writing a qcow2 implementation here
//! because:
//! - its `sync` feature is a plain blocking API with no runtime, which fits
//!   the I/O engine: each drive's requests already run on a worker thread;
//! - it writes: cluster allocation with refcounts, copy-on-write from a
//!   backing image (qcow2 or raw, opened read-only), zero clusters and
//!   discard, and it reads compressed clusters;
//! - a write's new mapping is prepared, the data written, and only then is
//!   the mapping committed (`prepare_data_mapping`/`commit_data_mapping`),
//!   and clusters of a failed allocation go back to the free list: a host
//!   error in the middle of an allocation leaves the old contents visible and
//!   `qemu-img check` clean (tests/block_qcow2_fs.rs fills a real filesystem
//!   to check that);
//! - storage is a trait, so the host file can be our own
//!   (`host_storage::HostStorage`: fdatasync for FLUSH, errno kept);
//! - it is maintained: 0.2.6 is the newest release on crates.io (checked
//!   2026-12-02), and the crate ships its plan for 0.3 (FOR-0.3.md), whose
//!   incompatible changes reach us only as `Storage::settle_writes`
//!   becoming required, which for our synchronous host I/O has nothing to
//!   wait for.
//!
//! What it lacks: VHD (`vpc`), VHDX, qcow (v1) and QED have no driver, and
//! its VMDK driver reads only descriptor files with FLAT/ZERO extents, so
//! those are refused at start-up with one line (see `ImageFormat`).
//!
//! # Cache modes
//! As for raw images (raw.rs): none/directsync open the files O_DIRECT;
//! writethrough/directsync, or the guest's write cache turned off, write
//! imago's metadata caches back and fdatasync after every write; FLUSH
//! writes the metadata back and fdatasyncs; unsafe writes the metadata back
//! on FLUSH (as QEMU does) but never syncs.

use std::io;
use std::path::{Path, PathBuf};

use imago::qcow2::Qcow2;
use imago::vmdk::Vmdk;
use imago::{FormatAccess, FormatDriverBuilder, PermissiveImplicitOpenGate, Storage, StorageOpenOptions};
use thiserror::Error;

use super::host_storage::{clear_host_errno, last_host_errno, HostStorage};
use super::{BlockBackend, BlockError, BlockOp, CacheMode};

/// The `format=` values a drive may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
    /// Read-only: imago has no VMDK write support.
    Vmdk,
}

/// A `format=` this device model cannot serve.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    #[error("format={0}: not supported (the imago image library has no {0} driver); supported: raw, qcow2, vmdk (read-only); convert with qemu-img convert -O qcow2")]
    Unsupported(String),
    #[error("format=vmdk: VMDK images can only be read (imago cannot write VMDK): use the image as a CD-ROM (media=cdrom) or convert it with qemu-img convert -O qcow2")]
    VmdkNeedsReadOnly,
}

impl std::str::FromStr for ImageFormat {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        match s {
            "raw" => Ok(ImageFormat::Raw),
            "qcow2" => Ok(ImageFormat::Qcow2),
            "vmdk" => Ok(ImageFormat::Vmdk),
            other => Err(FormatError::Unsupported(other.to_string())),
        }
    }
}

impl ImageFormat {
    /// The format and the drive's read-only setting together: a writable
    /// VMDK is refused rather than served with every write failing.
    pub fn check(s: &str, read_only: bool) -> Result<ImageFormat, FormatError> {
        let format: ImageFormat = s.parse()?;
        if format == ImageFormat::Vmdk && !read_only {
            return Err(FormatError::VmdkNeedsReadOnly);
        }
        Ok(format)
    }

    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Vmdk => "vmdk",
        }
    }
}

/// A qcow2 (or VMDK) image with its backing chain.
pub struct ImagoImage {
    access: FormatAccess<HostStorage>,
    path: PathBuf,
    format: ImageFormat,
    cache: CacheMode,
    read_only: bool,
    guest_write_cache: bool,
    /// Set after a failed fdatasync of page-cache writes, as in raw.rs:
    /// Linux drops the dirty pages and a later fdatasync would succeed
    /// while the data is lost, so every later flush fails too.
    sync_failed: Option<i32>,
    syncs: u64,
    format_error_logged: bool,
    discard_unsupported_logged: bool,
}

fn open_error(path: &Path, e: impl std::fmt::Display) -> BlockError {
    BlockError::Open { path: path.display().to_string(), reason: e.to_string() }
}

/// The errno a failed imago call stands for. imago's own context strips
/// the OS error from many errors, so the host call's errno recorded by
/// HostStorage comes first after the error's own; an error no host call
/// caused (corrupt metadata, an L2 cache with every entry in use) is EIO,
/// as QEMU reports it.
fn errno_of(e: &io::Error) -> i32 {
    if let Some(errno) = e.raw_os_error() {
        return errno;
    }
    if let Some(errno) = last_host_errno() {
        return errno;
    }
    match e.kind() {
        io::ErrorKind::StorageFull => libc::ENOSPC,
        io::ErrorKind::ReadOnlyFilesystem => libc::EROFS,
        io::ErrorKind::QuotaExceeded => libc::EDQUOT,
        _ => libc::EIO,
    }
}

impl ImagoImage {
    pub fn open(path: &Path, format: ImageFormat, cache: CacheMode, read_only: bool) -> Result<Self, BlockError> {
        let writable = !read_only;
        let opts = StorageOpenOptions::new().filename(path).write(writable).direct(cache.is_direct());
        let storage = HostStorage::open(opts.clone()).map_err(|e| open_error(path, e))?;
        // Permissive: the backing file named in the qcow2 header (or a VMDK's
        // extents) is opened as QEMU opens it, read-only, with the same
        // cache mode. The path comes from the image, which the host
        // administrator chose, as with QEMU.
        let gate = PermissiveImplicitOpenGate::default();
        let access = match format {
            ImageFormat::Qcow2 => {
                let image = Qcow2::<HostStorage>::builder(storage)
                    .write(writable)
                    .storage_open_options(opts)
                    .open(gate)
                    .map_err(|e| open_error(path, format!("qcow2: {e}")))?;
                FormatAccess::new(image)
            }
            ImageFormat::Vmdk => {
                if writable {
                    return Err(open_error(path, FormatError::VmdkNeedsReadOnly));
                }
                let image = Vmdk::<HostStorage>::builder(storage)
                    .write(false)
                    .storage_open_options(opts)
                    .open(gate)
                    .map_err(|e| open_error(path, format!("vmdk: {e}")))?;
                FormatAccess::new(image)
            }
            ImageFormat::Raw => return Err(open_error(path, "raw images are served by RawImage")),
        };
        Ok(ImagoImage {
            access,
            path: path.to_path_buf(),
            format,
            cache,
            read_only,
            guest_write_cache: true,
            sync_failed: None,
            syncs: 0,
            format_error_logged: false,
            discard_unsupported_logged: false,
        })
    }

    pub fn format(&self) -> ImageFormat {
        self.format
    }

    pub fn cache_mode(&self) -> CacheMode {
        self.cache
    }

    /// How many fdatasync rounds reached the host (successful or not).
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    fn check_range(&self, op: BlockOp, offset: u64, len: u64) -> Result<(), BlockError> {
        let size = self.access.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(BlockError::OutOfRange { op, offset, len, size }),
        }
    }

    fn io_error(&mut self, op: BlockOp, offset: u64, len: u64, e: io::Error) -> BlockError {
        let errno = errno_of(&e);
        // A host errno speaks for itself in the audit line the engine logs;
        // an error of the image itself needs imago's words, once.
        if e.raw_os_error().is_none() && last_host_errno().is_none() && !self.format_error_logged {
            self.format_error_logged = true;
            log::error!("{}: {} image error on {op}: {e}", self.path.display(), self.format.name());
        }
        BlockError::Io { op, offset, len, errno }
    }

    /// fdatasync every file of the image we write (imago syncs the image
    /// file and an external data file; backing files are read-only).
    fn datasync(&mut self) -> Result<(), i32> {
        if let Some(errno) = self.sync_failed {
            return Err(errno);
        }
        self.syncs += 1;
        clear_host_errno();
        self.access.sync().map_err(|e| {
            let errno = errno_of(&e);
            if !self.cache.is_direct() {
                self.sync_failed = Some(errno);
            }
            errno
        })
    }

    /// Write imago's dirty L2 tables and refcount blocks to the host file.
    fn write_back_metadata(&mut self) -> Result<(), io::Error> {
        clear_host_errno();
        self.access.flush()
    }

    fn write_needs_sync(&self) -> bool {
        self.cache != CacheMode::Unsafe && (self.cache.syncs_every_write() || !self.guest_write_cache)
    }
}

impl BlockBackend for ImagoImage {
    fn size(&self) -> u64 {
        self.access.size()
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let len = buf.len() as u64;
        self.check_range(BlockOp::Read, offset, len)?;
        clear_host_errno();
        self.access.read(buf, offset).map_err(|e| self.io_error(BlockOp::Read, offset, len, e))
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let len = data.len() as u64;
        self.check_range(BlockOp::Write, offset, len)?;
        clear_host_errno();
        self.access.write(data, offset).map_err(|e| self.io_error(BlockOp::Write, offset, len, e))?;
        if self.write_needs_sync() {
            self.write_back_metadata().map_err(|e| self.io_error(BlockOp::Write, offset, len, e))?;
            self.datasync().map_err(|errno| BlockError::Io { op: BlockOp::Write, offset, len, errno })?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.write_back_metadata().map_err(|e| self.io_error(BlockOp::Flush, 0, 0, e))?;
        if self.cache == CacheMode::Unsafe {
            return Ok(());
        }
        self.datasync().map_err(|errno| BlockError::Io { op: BlockOp::Flush, offset: 0, len: 0, errno })
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        self.check_range(BlockOp::Discard, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        clear_host_errno();
        // To zero, not to the backing image: TRIMmed sectors of a raw image
        // read as zeros (a punched hole), and so do they here.
        match self.access.discard_to_zero(offset, len) {
            Ok(()) => Ok(()),
            // TRIM is advisory (qcow2 v2 images cannot discard safely).
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                if !self.discard_unsupported_logged {
                    self.discard_unsupported_logged = true;
                    log::debug!("{}: image cannot discard ({e}); TRIM requests are ignored", self.path.display());
                }
                Ok(())
            }
            Err(e) => Err(self.io_error(BlockOp::Discard, offset, len, e)),
        }
    }

    fn set_guest_write_cache(&mut self, enabled: bool) {
        self.guest_write_cache = enabled;
    }

    fn guest_write_cache(&self) -> bool {
        self.guest_write_cache
    }

    fn failed_permanently(&self) -> bool {
        self.sync_failed.is_some()
    }
}

impl Drop for ImagoImage {
    /// At shutdown the metadata still in imago's caches must reach the
    /// file (imago's own Drop would write it back but never sync it).
    fn drop(&mut self) {
        if self.read_only {
            return;
        }
        let result = self.write_back_metadata().map_err(|e| errno_of(&e)).and_then(|()| {
            if self.cache == CacheMode::Unsafe {
                Ok(())
            } else {
                self.datasync()
            }
        });
        if let Err(errno) = result {
            log::error!(
                "{}: writing the qcow2 metadata back at close failed: {}",
                self.path.display(),
                super::errno_text(errno)
            );
        }
    }
}

#[cfg(test)]
#[path = "qcow2_tests.rs"]
mod tests;
