//! Block backends: the host side of a drive. Raw images in files or block
//! devices with QEMU's cache modes, qcow2 (and read-only flat VMDK) images
//! through the imago crate, and a fault-injection layer that reads QEMU's
//! blkdebug rules so one fault scenario runs against both.

pub mod blkdebug;
pub mod engine;
pub mod guest_io;
pub mod host_storage;
pub mod loopdev;
pub mod mem;
pub mod open;
pub mod policy;
pub mod qcow2;
pub mod raw;
#[cfg(test)]
pub(crate) mod testimg;
mod uio;

pub use blkdebug::{Blkdebug, BlkdebugRules};
pub use open::{file_size_limit, open_image, open_image_under_limit, open_image_with_sysfs, ImageSpec};
pub use policy::{ErrorAction, ErrorPolicy};
pub use qcow2::{FormatError, ImageFormat, ImagoImage};
pub use raw::RawImage;

use guest_io::GuestBuffers;
use thiserror::Error;

/// A failed host operation, with the errno the host gave.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BlockError {
    #[error("{op} at byte {offset} len {len}: {}", errno_text(*.errno))]
    Io { op: BlockOp, offset: u64, len: u64, errno: i32 },
    #[error("{op} at byte {offset} len {len} is past the end of the {size}-byte image")]
    OutOfRange { op: BlockOp, offset: u64, len: u64, size: u64 },
    #[error("image is read-only")]
    ReadOnly,
    #[error("no medium")]
    NoMedium,
    #[error("cannot open {path}: {reason}")]
    Open { path: String, reason: String },
}

impl BlockError {
    /// The errno to report and to decide the error policy with.
    pub fn errno(&self) -> i32 {
        match self {
            BlockError::Io { errno, .. } => *errno,
            BlockError::OutOfRange { .. } => libc::EIO,
            BlockError::ReadOnly => libc::EROFS,
            BlockError::NoMedium => libc::ENOMEDIUM,
            BlockError::Open { .. } => libc::EIO,
        }
    }
}

/// "28 (No space left on device)".
pub fn errno_text(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let name = text.split(" (os error").next().unwrap_or(&text);
    format!("{errno} ({name})")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOp {
    Read,
    Write,
    Flush,
    Discard,
}

impl std::fmt::Display for BlockOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlockOp::Read => "read",
            BlockOp::Write => "write",
            BlockOp::Flush => "flush",
            BlockOp::Discard => "discard",
        })
    }
}

/// QEMU's `cache=` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Host page cache, guest-visible write cache; flush = fdatasync.
    #[default]
    Writeback,
    /// Host page cache, every write is followed by fdatasync.
    Writethrough,
    /// O_DIRECT, guest-visible write cache.
    None,
    /// O_DIRECT and fdatasync after every write.
    Directsync,
    /// Host page cache, flushes are ignored.
    Unsafe,
}

/// A `cache=` value that is not one of QEMU's five modes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("cache={0:?} is not one of writeback, writethrough, none, directsync, unsafe")]
pub struct UnknownCacheMode(pub String);

impl std::str::FromStr for CacheMode {
    type Err = UnknownCacheMode;
    fn from_str(s: &str) -> Result<Self, UnknownCacheMode> {
        match s {
            "writeback" => Ok(CacheMode::Writeback),
            "writethrough" => Ok(CacheMode::Writethrough),
            "none" => Ok(CacheMode::None),
            "directsync" => Ok(CacheMode::Directsync),
            "unsafe" => Ok(CacheMode::Unsafe),
            other => Err(UnknownCacheMode(other.to_string())),
        }
    }
}

impl CacheMode {
    /// Whether the mode bypasses the host page cache (O_DIRECT).
    pub fn is_direct(self) -> bool {
        matches!(self, CacheMode::None | CacheMode::Directsync)
    }

    /// Whether every write must be durable before it completes,
    /// regardless of the guest's write-cache setting.
    pub fn syncs_every_write(self) -> bool {
        matches!(self, CacheMode::Writethrough | CacheMode::Directsync)
    }
}

/// The host side of a drive. Offsets and lengths are in bytes; callers
/// (the IDE core) pass sector-aligned values but implementations must check
/// every range against the image size themselves.
pub trait BlockBackend: Send {
    /// Image size in bytes.
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Must not return Ok unless the data reached the image in the way the
    /// cache mode promises (and never silently lose an error).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError>;
    /// DMA from the image into guest memory: `dst.len()` bytes at
    /// `offset`, checked like `read_at`. The default reads into `scratch`
    /// (the worker's reused buffer) and copies; a backend on a plain file
    /// descriptor reads straight into the mapped guest memory instead.
    /// On failure guest memory may hold part of the data.
    fn read_to_guest(&mut self, offset: u64, dst: &GuestBuffers, scratch: &mut Vec<u8>) -> Result<(), BlockError> {
        guest_io::bounce_read(self, offset, dst, scratch)
    }
    /// DMA from guest memory onto the image, with `write_at`'s promise
    /// about durability. The default copies all of guest memory into
    /// `scratch` first and then makes one `write_at`.
    fn write_from_guest(&mut self, offset: u64, src: &GuestBuffers, scratch: &mut Vec<u8>) -> Result<(), BlockError> {
        guest_io::bounce_write(self, offset, src, scratch)
    }
    /// FLUSH CACHE: fdatasync (except cache=unsafe).
    fn flush(&mut self) -> Result<(), BlockError>;
    /// TRIM: punch a hole (best effort where the host cannot).
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError>;
    /// The guest's write-cache setting (SET FEATURES 0x02/0x82). With the
    /// cache off every write is made durable before it completes.
    fn set_guest_write_cache(&mut self, enabled: bool);
    fn guest_write_cache(&self) -> bool;
    /// True once the image can no longer make data durable (a failed
    /// fdatasync lost dirty pages): every later flush fails too, so a
    /// `stop` policy would hold the guest forever and must report instead.
    fn failed_permanently(&self) -> bool {
        false
    }
}
