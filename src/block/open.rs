//! From a drive's `file=`/`format=`/`cache=`/read-only settings to a backend.

use std::path::Path;

use super::blkdebug::{Blkdebug, BlkdebugRules};
use super::loopdev::{attached_loop_without_sysfs, is_backing_file, loop_backing_with_sysfs, LoopBacking};
use super::qcow2::{ImageFormat, ImagoImage};
use super::raw::{ImageWindow, RawImage};
use super::{BlockBackend, BlockError, CacheMode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// A path, or QEMU's `blkdebug:RULES:IMAGE`.
    pub file: String,
    /// "raw", "qcow2" or "vmdk" (read-only); see `ImageFormat`.
    pub format: String,
    pub cache: CacheMode,
    pub read_only: bool,
}

const BLKDEBUG_PREFIX: &str = "blkdebug:";

const SYSFS_DEV_BLOCK: &str = "/sys/dev/block";

pub fn open_image(spec: &ImageSpec) -> Result<Box<dyn BlockBackend>, BlockError> {
    open_image_with_sysfs(spec, Path::new(SYSFS_DEV_BLOCK))
}

/// As `open_image`, reading loop devices' sysfs attributes from
/// `sysfs_dev_block` instead of /sys/dev/block.
pub fn open_image_with_sysfs(spec: &ImageSpec, sysfs_dev_block: &Path) -> Result<Box<dyn BlockBackend>, BlockError> {
    open_image_under_limit(spec, sysfs_dev_block, file_size_limit())
}

/// This process's RLIMIT_FSIZE (soft), None when unlimited. libxl sets it
/// to 256 KiB for a dm_restrict device model ("big enough for log files",
/// libxl_linux.c), and the kernel then fails every write to a regular file
/// that reaches past it with EFBIG, whatever the file's size already is.
/// Block devices are not limited.
pub fn file_size_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    match getrlimit(Resource::RLIMIT_FSIZE) {
        Ok((soft, _)) if soft != RLIM_INFINITY => Some(soft),
        _ => None,
    }
}

/// Why a writable regular file cannot be served under `limit`: every guest
/// write past it would fail, so the drive is refused at start-up instead of
/// failing the guest later. `end` is how far writes can reach in the file.
fn refuse_past_file_size_limit(path: &str, end: u64, limit: Option<u64>) -> Result<(), BlockError> {
    match limit {
        Some(limit) if end > limit => Err(BlockError::Open {
            path: path.to_string(),
            reason: format!(
                "writes would reach byte {end} of this file but RLIMIT_FSIZE is {limit} bytes (libxl sets 256 KiB under dm_restrict); \
                 give the disk as a block device (script=block, or a phy: device) or make it read-only"
            ),
        }),
        _ => Ok(()),
    }
}

/// As `open_image_with_sysfs`, with RLIMIT_FSIZE given (`file_size_limit`).
pub fn open_image_under_limit(
    spec: &ImageSpec,
    sysfs_dev_block: &Path,
    limit: Option<u64>,
) -> Result<Box<dyn BlockBackend>, BlockError> {
    let format = ImageFormat::check(&spec.format, spec.read_only)
        .map_err(|e| BlockError::Open { path: spec.file.clone(), reason: e.to_string() })?;
    if let Some(rest) = spec.file.strip_prefix(BLKDEBUG_PREFIX) {
        // QEMU splits at the first ':'; an empty RULES part means no rules.
        let (config, image) = rest.split_once(':').ok_or_else(|| BlockError::Open {
            path: spec.file.clone(),
            reason: "blkdebug requires both config file and image path (blkdebug:RULES:IMAGE)".into(),
        })?;
        let rules =
            if config.is_empty() { BlkdebugRules::default() } else { BlkdebugRules::from_file(Path::new(config))? };
        let inner =
            open_image_under_limit(&ImageSpec { file: image.to_string(), ..spec.clone() }, sysfs_dev_block, limit)?;
        return Ok(Box::new(Blkdebug::new(inner, rules).with_cache_mode(spec.cache)));
    }
    if spec.file.is_empty() {
        return Err(BlockError::Open { path: String::new(), reason: "file= is empty".into() });
    }
    let path = Path::new(&spec.file);
    let regular_file = std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(false);
    if format != ImageFormat::Raw {
        let image = ImagoImage::open(path, format, spec.cache, spec.read_only)?;
        if regular_file && !spec.read_only {
            // A qcow2 file grows towards its virtual size (plus metadata).
            refuse_past_file_size_limit(&spec.file, image.size(), limit)?;
        }
        return Ok(Box::new(image));
    }
    if let Some(backing) = loop_backing_with_sysfs(path, sysfs_dev_block)? {
        return open_loop(spec, backing, limit);
    }
    if let Some(status) = attached_loop_without_sysfs(path) {
        let reason = format!("{} has no loop attributes", sysfs_dev_block.display());
        return open_loop_device_direct(spec, path, spec.read_only || status.read_only, &reason);
    }
    let image = RawImage::open(path, spec.cache, spec.read_only)?;
    if regular_file && !spec.read_only {
        refuse_past_file_size_limit(&spec.file, image.size(), limit)?;
    }
    Ok(Box::new(image))
}

/// The loop device itself with O_DIRECT: without the page cache the loop
/// driver's write errors come back on the write instead of being absorbed.
fn open_loop_device_direct(
    spec: &ImageSpec,
    device: &Path,
    read_only: bool,
    reason: &str,
) -> Result<Box<dyn BlockBackend>, BlockError> {
    let cache = if spec.cache.syncs_every_write() { CacheMode::Directsync } else { CacheMode::None };
    log::warn!(
        "{}: cannot use the backing file ({reason}); using the loop device itself with O_DIRECT",
        device.display()
    );
    Ok(Box::new(RawImage::open(device, cache, read_only)?))
}

fn open_loop(spec: &ImageSpec, backing: LoopBacking, limit: Option<u64>) -> Result<Box<dyn BlockBackend>, BlockError> {
    let read_only = spec.read_only || backing.read_only;
    if backing.read_only && !spec.read_only {
        log::info!("{}: the loop device is read-only, so the drive is too", backing.device.display());
    }
    let window = ImageWindow { base: backing.offset, size: backing.image_size() };
    let window_end = window.base.saturating_add(window.size);
    let via_file = if backing.deleted {
        Err(format!("its backing file {} was deleted", backing.backing_file.display()))
    } else if let Some(limit) = limit.filter(|&limit| !read_only && window_end > limit) {
        // The loop device is a block device, which RLIMIT_FSIZE does not
        // limit: this is why dm_restrict wants disks on block devices.
        Err(format!(
            "writes would reach byte {window_end} of it but RLIMIT_FSIZE is {limit} bytes (dm_restrict)"
        ))
    } else {
        RawImage::open_window(&backing.backing_file, spec.cache, read_only, Some(window))
            .map_err(|e| e.to_string())
            .and_then(|image| match is_backing_file(&backing.device, image.host_file()) {
                Ok(true) => Ok(image),
                Ok(false) => Err(format!(
                    "{} is not the file the loop driver holds (another mount namespace or a replaced file)",
                    backing.backing_file.display()
                )),
                Err(e) => Err(format!("cannot ask the loop driver for its backing file: {e}")),
            })
    };
    match via_file {
        Ok(image) => {
            log::info!(
                "{}: doing I/O on its backing file {} (offset {}, size {} bytes) so host errors reach the guest's request",
                backing.device.display(),
                backing.backing_file.display(),
                window.base,
                image.size()
            );
            Ok(Box::new(image))
        }
        Err(reason) => open_loop_device_direct(spec, &backing.device, read_only, &reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(file: &str) -> ImageSpec {
        ImageSpec { file: file.into(), format: "raw".into(), cache: CacheMode::Writeback, read_only: false }
    }

    #[test]
    fn formats_imago_lacks_are_refused_naming_format() {
        for format in ["vpc", "vhdx", "qcow", "qed"] {
            let err = open_image(&ImageSpec { format: format.into(), ..spec("/x") }).err().unwrap();
            assert!(err.to_string().contains(&format!("format={format}: not supported")), "{err}");
        }
        let err = open_image(&ImageSpec { format: "vmdk".into(), ..spec("/x") }).err().unwrap();
        assert!(err.to_string().contains("media=cdrom"), "{err}");
    }

    #[test]
    fn missing_images_and_bad_blkdebug_forms_are_open_errors() {
        assert!(matches!(open_image(&spec("/nonexistent/disk.img")), Err(BlockError::Open { .. })));
        assert!(matches!(open_image(&spec("")), Err(BlockError::Open { .. })));
        let err = open_image(&spec("blkdebug:/only-one-part")).err().unwrap();
        assert!(err.to_string().contains("both config file and image"), "{err}");
        let err = open_image(&spec("blkdebug:/nonexistent.ini:/etc/hostname")).err().unwrap();
        assert!(err.to_string().contains("blkdebug config"), "{err}");
    }

    #[test]
    fn blkdebug_prefix_wraps_the_image_and_injects() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::write(&img, vec![0u8; 64 * 1024]).unwrap();
        let ini = dir.path().join("rules.ini");
        std::fs::write(
            &ini,
            "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"3\"\niotype = \"read\"\n",
        )
        .unwrap();
        let mut b = open_image(&spec(&format!("blkdebug:{}:{}", ini.display(), img.display()))).unwrap();
        assert_eq!(b.size(), 64 * 1024);
        assert!(b.read_at(0, &mut [0; 1024]).is_ok());
        assert_eq!(b.read_at(1024, &mut [0; 1024]).unwrap_err().errno(), libc::EIO);
        // Empty RULES: no faults.
        let mut plain = open_image(&spec(&format!("blkdebug::{}", img.display()))).unwrap();
        assert!(plain.read_at(1024, &mut [0; 1024]).is_ok());
    }

    #[test]
    fn cache_mode_parses_and_names_valid_values_on_error() {
        assert_eq!("directsync".parse::<CacheMode>(), Ok(CacheMode::Directsync));
        assert_eq!("none".parse::<CacheMode>(), Ok(CacheMode::None));
        let err = "fast".parse::<CacheMode>().unwrap_err().to_string();
        assert!(err.contains("cache=\"fast\"") && err.contains("writethrough"), "{err}");
    }
}
