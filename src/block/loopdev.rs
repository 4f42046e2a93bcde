//! Loop devices seen through to their backing file.
//!
//! libxl's block hotplug script attaches a `disk=` file to /dev/loopN and
//! hands the device model the loop device. Writes through the loop driver
//! are buffered in the loop's own queue: a host ENOSPC surfaces later (as a
//! lost page on writeback), not on the guest's write. Doing the I/O on the
//! backing file itself makes ENOSPC and EIO arrive on the write that caused
//! them. The loop driver (without direct I/O) reads through the backing
//! file's page cache, so a PV path using the same loop device stays coherent.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::BlockError;

/// What sysfs says about an attached loop device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopBacking {
    pub device: PathBuf,
    /// The backing file as the kernel names it, without " (deleted)".
    pub backing_file: PathBuf,
    /// The kernel marked the backing file as unlinked.
    pub deleted: bool,
    /// Byte offset of the device's first byte in the backing file.
    pub offset: u64,
    /// 0: no limit.
    pub size_limit: u64,
    /// Device size in bytes as the loop driver presents it.
    pub device_size: u64,
    pub read_only: bool,
}

const SYSFS_DEV_BLOCK: &str = "/sys/dev/block";
const DELETED_SUFFIX: &str = " (deleted)";

/// If `path` is an attached loop device, what it is backed by; None for
/// anything else (regular files, other block devices, detached loops).
pub fn loop_backing(path: &Path) -> Result<Option<LoopBacking>, BlockError> {
    loop_backing_with_sysfs(path, Path::new(SYSFS_DEV_BLOCK))
}

/// As `loop_backing`, with sysfs's /sys/dev/block at `sysfs_dev_block`.
pub fn loop_backing_with_sysfs(path: &Path, sysfs_dev_block: &Path) -> Result<Option<LoopBacking>, BlockError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // open_image reports a missing image with the open error.
        Err(_) => return Ok(None),
    };
    if !meta.file_type().is_block_device() {
        return Ok(None);
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    loop_backing_in(sysfs_dev_block, path, major, minor)
}

/// As `loop_backing`, reading sysfs under `sysfs_dev_block` (a stand-in
/// tree in unit tests).
pub fn loop_backing_in(
    sysfs_dev_block: &Path,
    device: &Path,
    major: u32,
    minor: u32,
) -> Result<Option<LoopBacking>, BlockError> {
    let dev_dir = sysfs_dev_block.join(format!("{major}:{minor}"));
    let loop_dir = dev_dir.join("loop");
    if !loop_dir.is_dir() {
        return Ok(None);
    }
    let read = |p: PathBuf| -> Result<String, BlockError> {
        std::fs::read_to_string(&p).map(|s| s.trim_end_matches('\n').to_string()).map_err(|e| BlockError::Open {
            path: device.display().to_string(),
            reason: format!("{}: {e}", p.display()),
        })
    };
    let number = |p: PathBuf| -> Result<u64, BlockError> {
        let text = read(p.clone())?;
        text.trim().parse::<u64>().map_err(|_| BlockError::Open {
            path: device.display().to_string(),
            reason: format!("{}: {text:?} is not a number", p.display()),
        })
    };
    let raw_backing = read(loop_dir.join("backing_file"))?;
    let (backing_file, deleted) = match raw_backing.strip_suffix(DELETED_SUFFIX) {
        Some(p) => (p.to_string(), true),
        None => (raw_backing, false),
    };
    let offset = number(loop_dir.join("offset"))?;
    let size_limit = number(loop_dir.join("sizelimit"))?;
    let sectors = number(dev_dir.join("size"))?;
    let read_only = number(dev_dir.join("ro"))? != 0;
    Ok(Some(LoopBacking {
        device: device.to_path_buf(),
        backing_file: PathBuf::from(backing_file),
        deleted,
        offset,
        size_limit,
        device_size: sectors.saturating_mul(512),
        read_only,
    }))
}

/// The kernel's `struct loop_info64` (linux/loop.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

mod ioctl {
    // LOOP_GET_STATUS64 = 0x4C05, fills a struct loop_info64
    nix::ioctl_read_bad!(loop_get_status64, 0x4C05, super::LoopInfo64);
}

/// What the loop driver itself says about an attached loop device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopStatus {
    /// st_dev and st_ino of the file the driver really reads.
    pub backing_dev: u64,
    pub backing_inode: u64,
    pub read_only: bool,
}

const LO_FLAGS_READ_ONLY: u32 = 1;
const LOOP_MAJOR: u32 = 7;

/// LOOP_GET_STATUS64 on `device`; fails (ENXIO) for a detached loop and
/// (ENOTTY/EINVAL) for anything that is not a loop device.
pub fn loop_status(device: &Path) -> Result<LoopStatus, std::io::Error> {
    let file = File::open(device)?;
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: 0,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    // SAFETY: LOOP_GET_STATUS64 writes one struct loop_info64 through the
    // pointer, which points at a live local of that exact layout; the
    // descriptor is open for the call's duration.
    unsafe { ioctl::loop_get_status64(file.as_raw_fd(), &mut info) }.map_err(std::io::Error::from)?;
    Ok(LoopStatus {
        backing_dev: info.lo_device,
        backing_inode: info.lo_inode,
        read_only: info.lo_flags & LO_FLAGS_READ_ONLY != 0,
    })
}

/// An attached loop device that sysfs did not describe (no /sys in a
/// chroot, say): the driver still answers for it.
pub fn attached_loop_without_sysfs(path: &Path) -> Option<LoopStatus> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_block_device() || libc::major(meta.rdev()) != LOOP_MAJOR {
        return None;
    }
    loop_status(path).ok()
}

/// Whether `file` is the loop device's backing file. A path can name
/// another file than the one the driver holds (a device model in a chroot
/// or another mount namespace, a file replaced since attach).
pub fn is_backing_file(device: &Path, file: &File) -> Result<bool, std::io::Error> {
    let status = loop_status(device)?;
    let meta = file.metadata()?;
    Ok(meta.dev() == status.backing_dev && meta.ino() == status.backing_inode)
}

impl LoopBacking {
    /// Guest-visible size: what the loop device shows, which the driver
    /// computed from the file length, offset and size limit at attach time.
    pub fn image_size(&self) -> u64 {
        if self.device_size != 0 {
            return self.device_size;
        }
        self.size_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_loop(root: &Path, majmin: &str, backing: &str, offset: &str, sizelimit: &str, size: &str, ro: &str) {
        let dev = root.join(majmin);
        std::fs::create_dir_all(dev.join("loop")).unwrap();
        std::fs::write(dev.join("loop/backing_file"), format!("{backing}\n")).unwrap();
        std::fs::write(dev.join("loop/offset"), format!("{offset}\n")).unwrap();
        std::fs::write(dev.join("loop/sizelimit"), format!("{sizelimit}\n")).unwrap();
        std::fs::write(dev.join("size"), format!("{size}\n")).unwrap();
        std::fs::write(dev.join("ro"), format!("{ro}\n")).unwrap();
    }

    #[test]
    fn reads_backing_file_offset_limit_and_ro() {
        let root = tempfile::tempdir().unwrap();
        fake_loop(root.path(), "7:3", "/srv/xen/disk one.img", "1048576", "4194304", "8192", "1");
        let b = loop_backing_in(root.path(), Path::new("/dev/loop3"), 7, 3).unwrap().unwrap();
        assert_eq!(b.backing_file, PathBuf::from("/srv/xen/disk one.img"));
        assert!(!b.deleted);
        assert_eq!((b.offset, b.size_limit, b.image_size()), (1048576, 4194304, 8192 * 512));
        assert!(b.read_only);
    }

    #[test]
    fn deleted_suffix_is_stripped_and_flagged() {
        let root = tempfile::tempdir().unwrap();
        fake_loop(root.path(), "7:1", "/tmp/gone.img (deleted)", "0", "0", "2048", "0");
        let b = loop_backing_in(root.path(), Path::new("/dev/loop1"), 7, 1).unwrap().unwrap();
        assert_eq!(b.backing_file, PathBuf::from("/tmp/gone.img"));
        assert!(b.deleted);
        assert!(!b.read_only);
    }

    #[test]
    fn detached_loops_and_other_devices_are_not_loops() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("7:2")).unwrap();
        assert_eq!(loop_backing_in(root.path(), Path::new("/dev/loop2"), 7, 2).unwrap(), None);
        assert_eq!(loop_backing_in(root.path(), Path::new("/dev/sda"), 8, 0).unwrap(), None);
        assert_eq!(loop_backing(Path::new("/etc/hostname")).unwrap(), None);
    }

    #[test]
    fn garbage_in_sysfs_is_an_open_error_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        fake_loop(root.path(), "7:4", "/x.img", "zero", "0", "8", "0");
        let err = loop_backing_in(root.path(), Path::new("/dev/loop4"), 7, 4).unwrap_err();
        assert!(err.to_string().contains("loop/offset"), "{err}");
    }
}
