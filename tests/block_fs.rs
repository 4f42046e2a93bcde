//! Block backends on real filesystems: a tmpfs that really fills up, an
//! ext4 on a loop device for O_DIRECT, and loop devices over full
//! filesystems. Needs root (mount, losetup); without it the tests fail
//! with the command that could not run.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use xen_ioemu::block::raw::{ImageWindow, RawImage};
use xen_ioemu::block::{open_image, BlockBackend, BlockError, BlockOp, CacheMode, ImageSpec};

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (these tests need root with mount/losetup/mkfs.ext4)"));
    assert!(
        out.status.success(),
        "{cmd} {} failed ({}): {} (these tests need root with mount/losetup/mkfs.ext4)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A mounted filesystem, unmounted on drop (also when a test panics).
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(size: &str) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.path().to_str().unwrap()]);
        Mount { dir }
    }

    fn device(dev: &Path) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        run("mount", &[dev.to_str().unwrap(), dir.path().to_str().unwrap()]);
        Mount { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// An attached loop device, detached on drop.
struct LoopDevice {
    dev: PathBuf,
}

impl LoopDevice {
    fn attach(file: &Path, extra: &[&str]) -> LoopDevice {
        let mut args = vec!["-f", "--show"];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        LoopDevice { dev: PathBuf::from(run("losetup", &args)) }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// An ext4 filesystem in a file on a loop device. Field order is drop
/// order: unmount, then detach, then delete the image.
struct Ext4 {
    mount: Mount,
    _loop: LoopDevice,
    _dir: tempfile::TempDir,
}

impl Ext4 {
    fn new(size_mib: u64) -> Ext4 {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("ext4.img");
        std::fs::File::create(&image).unwrap().set_len(size_mib << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", "-m", "0", image.to_str().unwrap()]);
        let dev = LoopDevice::attach(&image, &[]);
        let mount = Mount::device(&dev.dev);
        Ext4 { mount, _loop: dev, _dir: dir }
    }
}

fn sparse_file(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

fn pattern(chunk: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (chunk as usize * 31 + i / 512) as u8 | 1).collect()
}

/// Writes `chunk`-byte blocks from offset 0 until a write fails; returns the
/// number of chunks that succeeded and the error.
fn fill_until_error(b: &mut dyn BlockBackend, chunk: usize) -> (u64, BlockError) {
    let mut n = 0u64;
    loop {
        let offset = n * chunk as u64;
        assert!(offset + chunk as u64 <= b.size(), "the image never filled the filesystem");
        match b.write_at(offset, &pattern(n, chunk)) {
            Ok(()) => n += 1,
            Err(e) => return (n, e),
        }
    }
}

fn assert_reads_back(b: &mut dyn BlockBackend, chunks: u64, chunk: usize) {
    let mut buf = vec![0; chunk];
    for n in 0..chunks {
        b.read_at(n * chunk as u64, &mut buf).unwrap();
        assert!(buf == pattern(n, chunk), "chunk {n} does not read back");
    }
}

fn assert_enospc_on_write(err: &BlockError, expected_offset: u64, chunk: usize) {
    assert_eq!(
        *err,
        BlockError::Io { op: BlockOp::Write, offset: expected_offset, len: chunk as u64, errno: libc::ENOSPC },
        "the write that did not fit must fail with ENOSPC"
    );
}

#[test]
fn full_tmpfs_fails_the_write_that_does_not_fit_in_every_page_cache_mode() {
    for cache in [CacheMode::Writeback, CacheMode::Writethrough, CacheMode::Unsafe] {
        let fs = Mount::tmpfs("1m");
        let path = fs.path().join("disk.img");
        sparse_file(&path, 4 << 20);
        let mut img = RawImage::open(&path, cache, false).unwrap();
        let chunk = 48 * 1024; // not a divisor of 1 MiB: the last write is partial
        let (written, err) = fill_until_error(&mut img, chunk);
        assert!(written > 0 && written * (chunk as u64) <= 1 << 20, "{cache:?}: {written} chunks");
        assert_enospc_on_write(&err, written * chunk as u64, chunk);
        assert_reads_back(&mut img, written, chunk);
        assert!(img.flush().is_ok() || cache == CacheMode::Unsafe);
    }
}

#[test]
fn loop_device_on_a_full_filesystem_reports_enospc_on_the_write() {
    let fs = Mount::tmpfs("1m");
    let backing = fs.path().join("guest.img");
    sparse_file(&backing, 4 << 20);
    let dev = LoopDevice::attach(&backing, &[]);
    let spec = ImageSpec {
        file: dev.dev.to_str().unwrap().to_string(),
        format: "raw".into(),
        cache: CacheMode::Writeback,
        read_only: false,
    };
    let mut img = open_image(&spec).unwrap();
    assert_eq!(img.size(), 4 << 20);
    let chunk = 64 * 1024;
    let (written, err) = fill_until_error(img.as_mut(), chunk);
    assert_enospc_on_write(&err, written * chunk as u64, chunk);
    assert_reads_back(img.as_mut(), written, chunk);
    // The data is in the backing file itself, where the loop device reads it.
    let host = std::fs::read(&backing).unwrap();
    assert_eq!(&host[..chunk], &pattern(0, chunk)[..]);
}

#[test]
fn loop_offset_and_sizelimit_make_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("guest.img");
    sparse_file(&backing, 4 << 20);
    let dev = LoopDevice::attach(&backing, &["-o", "8192", "--sizelimit", "1048576"]);
    let spec = ImageSpec {
        file: dev.dev.to_str().unwrap().to_string(),
        format: "raw".into(),
        cache: CacheMode::Writeback,
        read_only: false,
    };
    let mut img = open_image(&spec).unwrap();
    assert_eq!(img.size(), 1 << 20);
    img.write_at(0, &[0x5a; 512]).unwrap();
    assert!(matches!(img.write_at(1 << 20, &[0; 512]), Err(BlockError::OutOfRange { .. })));
    let host = std::fs::read(&backing).unwrap();
    assert_eq!(host[8191], 0);
    assert_eq!(&host[8192..8192 + 512], &[0x5a; 512][..]);
}

#[test]
fn read_only_loop_device_and_read_only_spec_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("guest.img");
    std::fs::write(&backing, vec![7u8; 1 << 20]).unwrap();
    let dev = LoopDevice::attach(&backing, &["-r"]);
    let spec = ImageSpec {
        file: dev.dev.to_str().unwrap().to_string(),
        format: "raw".into(),
        cache: CacheMode::Writeback,
        read_only: false,
    };
    let mut img = open_image(&spec).unwrap();
    assert!(img.read_only());
    assert_eq!(img.write_at(0, &[0; 512]), Err(BlockError::ReadOnly));
    let mut buf = [0; 512];
    img.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [7; 512]);

    let spec = ImageSpec { file: backing.to_str().unwrap().to_string(), read_only: true, ..spec };
    let mut img = open_image(&spec).unwrap();
    assert_eq!(img.write_at(0, &[0; 512]), Err(BlockError::ReadOnly));
    assert_eq!(std::fs::read(&backing).unwrap()[0], 7);
}

#[test]
fn loop_with_deleted_backing_file_falls_back_to_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("guest.img");
    std::fs::write(&backing, vec![3u8; 1 << 20]).unwrap();
    let dev = LoopDevice::attach(&backing, &[]);
    std::fs::remove_file(&backing).unwrap();
    let spec = ImageSpec {
        file: dev.dev.to_str().unwrap().to_string(),
        format: "raw".into(),
        cache: CacheMode::Writeback,
        read_only: false,
    };
    let mut img = open_image(&spec).unwrap();
    assert_eq!(img.size(), 1 << 20);
    img.write_at(4096, &[9; 1024]).unwrap();
    let mut buf = [0; 2048];
    img.read_at(3584, &mut buf).unwrap();
    assert_eq!(&buf[..512], &[3; 512][..]);
    assert_eq!(&buf[512..1536], &[9; 1024][..]);
    assert_eq!(&buf[1536..], &[3; 512][..]);
}

#[test]
fn o_direct_on_ext4_handles_any_512_byte_aligned_request() {
    let fs = Ext4::new(32);
    // 1001 sectors: the last 4 KiB block is partial, so the tail goes
    // through the page cache.
    let size = 1001 * 512;
    let path = fs.mount.path().join("disk.img");
    std::fs::write(&path, vec![0u8; size]).unwrap();
    for cache in [CacheMode::None, CacheMode::Directsync] {
        let mut img = RawImage::open(&path, cache, false).unwrap();
        assert_eq!(img.direct_alignment(), 4096);
        let mut shadow = std::fs::read(&path).unwrap();
        let requests: &[(u64, usize)] =
            &[(0, 512), (512, 512), (3584, 1024), (4096, 8192), (7 * 512, 40 * 512), (990 * 512, 11 * 512), (0, size)];
        for (i, &(offset, len)) in requests.iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|b| (b / 512 + i * 7 + 1) as u8).collect();
            img.write_at(offset, &data).unwrap();
            shadow[offset as usize..offset as usize + len].copy_from_slice(&data);
            let mut back = vec![0; len];
            img.read_at(offset, &mut back).unwrap();
            assert!(back == data, "{cache:?} request {i} reads back");
        }
        let mut all = vec![0; size];
        img.read_at(0, &mut all).unwrap();
        assert!(all == shadow, "{cache:?}: neighbouring sectors were disturbed");
        img.flush().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64, "the file must not grow");
        if cache == CacheMode::Directsync {
            assert_eq!(img.sync_count(), requests.len() as u64 + 1, "directsync: one fdatasync per write + the flush");
        } else {
            assert_eq!(img.sync_count(), 1, "cache=none: only the flush syncs");
        }
    }
}

#[test]
fn o_direct_on_a_full_ext4_reports_enospc_on_the_write() {
    let fs = Ext4::new(8);
    let path = fs.mount.path().join("disk.img");
    sparse_file(&path, 64 << 20);
    let mut img = RawImage::open(&path, CacheMode::None, false).unwrap();
    let chunk = 256 * 1024;
    let (written, err) = fill_until_error(&mut img, chunk);
    assert!(written > 0);
    assert_enospc_on_write(&err, written * chunk as u64, chunk);
    assert_reads_back(&mut img, written, chunk);
}

#[test]
fn o_direct_on_a_4k_sector_block_device_does_read_modify_write_for_512_byte_requests() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("guest.img");
    std::fs::write(&backing, vec![0x11u8; 1 << 20]).unwrap();
    let dev = LoopDevice::attach(&backing, &["-b", "4096"]);
    let mut img = RawImage::open(&dev.dev, CacheMode::None, false).unwrap();
    assert_eq!(img.direct_alignment(), 4096, "BLKSSZGET of a 4K-sector loop device");
    assert_eq!(img.size(), 1 << 20);
    img.write_at(512, &[0x22; 512]).unwrap();
    img.write_at(4096 - 512, &[0x33; 1024]).unwrap();
    let mut buf = vec![0; 8192];
    img.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..512], &[0x11; 512][..]);
    assert_eq!(&buf[512..1024], &[0x22; 512][..]);
    assert_eq!(&buf[1024..3584], &[0x11; 2560][..]);
    assert_eq!(&buf[3584..4608], &[0x33; 1024][..]);
    assert_eq!(&buf[4608..], &[0x11; 3584][..]);
    img.flush().unwrap();

    // TRIM of 512-byte sectors on a 4K-sector device discards the whole
    // 4K blocks inside the range and keeps the partial ones.
    img.write_at(65536, &[0x44; 16384]).unwrap();
    img.discard(65536 + 512, 12288).unwrap();
    let mut after = vec![0; 16384];
    img.read_at(65536, &mut after).unwrap();
    assert_eq!(&after[..4096], &[0x44; 4096][..], "partial head block kept");
    assert_eq!(&after[4096..12288], &[0; 8192][..], "whole blocks discarded");
    assert_eq!(&after[12288..], &[0x44; 4096][..], "partial tail block kept");
    img.discard(512, 1024).unwrap();
}

#[test]
fn discard_punches_a_hole_in_files_and_through_blkdiscard_on_loop_devices() {
    let fs = Mount::tmpfs("8m");
    let path = fs.path().join("disk.img");
    std::fs::write(&path, vec![0xeeu8; 2 << 20]).unwrap();
    let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks();
    let before = blocks(&path);
    let mut img = RawImage::open(&path, CacheMode::Writeback, false).unwrap();
    img.discard(512 * 1024, 1 << 20).unwrap();
    let after = blocks(&path);
    assert!(after + 2048 <= before, "st_blocks {before} -> {after}: 1 MiB should be freed");
    let mut buf = vec![0xff; 4096];
    img.read_at(512 * 1024, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    img.read_at(512 * 1024 - 4096, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0xee), "bytes before the range are kept");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 << 20, "KEEP_SIZE");

    // The same through the block device path (BLKGETSIZE64, BLKDISCARD).
    let dev = LoopDevice::attach(&path, &[]);
    let mut blk = RawImage::open(&dev.dev, CacheMode::Writeback, false).unwrap();
    assert!(blk.is_block_device());
    assert_eq!(blk.size(), 2 << 20);
    let before = blocks(&path);
    blk.discard(0, 256 * 1024).unwrap();
    let after = blocks(&path);
    assert!(after + 512 <= before, "loop BLKDISCARD: st_blocks {before} -> {after}");
}

#[test]
fn blkdebug_file_syntax_injects_once_on_a_real_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let rules = dir.path().join("blkdebug.ini");
    std::fs::write(
        &rules,
        "[inject-error]\nevent = \"write_aio\"\nerrno = \"28\"\niotype = \"write\"\nsector = \"500\"\nonce = \"on\"\n",
    )
    .unwrap();
    let spec = ImageSpec {
        file: format!("blkdebug:{}:{}", rules.display(), image.display()),
        format: "raw".into(),
        cache: CacheMode::Writethrough,
        read_only: false,
    };
    let mut img = open_image(&spec).unwrap();
    img.write_at(0, &[1; 512]).unwrap();
    let err = img.write_at(496 * 512, &[2; 8 * 512]).unwrap_err();
    assert_eq!(err, BlockError::Io { op: BlockOp::Write, offset: 496 * 512, len: 4096, errno: libc::ENOSPC });
    assert_eq!(std::fs::read(&image).unwrap()[500 * 512], 0, "the failed write must not reach the file");
    img.write_at(496 * 512, &[2; 8 * 512]).unwrap();
    assert_eq!(std::fs::read(&image).unwrap()[500 * 512], 2);
}

#[test]
fn window_past_the_file_end_is_cut_to_what_the_host_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    sparse_file(&path, 1 << 20);
    let w = ImageWindow { base: 512 * 1024, size: 4 << 20 };
    let img = RawImage::open_window(&path, CacheMode::Writeback, false, Some(w)).unwrap();
    assert_eq!(img.size(), 512 * 1024);
}

#[test]
fn loop_backing_path_that_names_another_file_falls_back_to_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let attached = dir.path().join("guest.img");
    let impostor = dir.path().join("other.img");
    std::fs::write(&attached, vec![1u8; 1 << 20]).unwrap();
    std::fs::write(&impostor, vec![2u8; 1 << 20]).unwrap();
    let dev = LoopDevice::attach(&attached, &[]);
    // The path still reads the same in sysfs, but now opens another file,
    // as it would for a device model in another mount namespace.
    run("mount", &["--bind", impostor.to_str().unwrap(), attached.to_str().unwrap()]);
    struct Unbind<'a>(&'a Path);
    impl Drop for Unbind<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unbind = Unbind(&attached);
    let spec = ImageSpec {
        file: dev.dev.to_str().unwrap().to_string(),
        format: "raw".into(),
        cache: CacheMode::Writeback,
        read_only: false,
    };
    let mut img = open_image(&spec).unwrap();
    let mut buf = [0; 512];
    img.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [1; 512], "must read the loop's own file");
    img.write_at(0, &[9; 512]).unwrap();
    img.flush().unwrap();
    assert_eq!(std::fs::read(&impostor).unwrap()[0], 2, "the other file must stay untouched");
}

/// An ext4 whose loop device sits on a tmpfs too small for it: ext4
/// accepts writes into its page cache and loses them at writeback, the
/// failure QEMU's cache=writeback acknowledged.
struct OvercommittedExt4 {
    ext4: Mount,
    _loop: LoopDevice,
    _tmpfs: Mount,
}

impl OvercommittedExt4 {
    fn new() -> OvercommittedExt4 {
        let tmpfs = Mount::tmpfs("6m");
        let backing = tmpfs.path().join("ext4.img");
        sparse_file(&backing, 64 << 20);
        let dev = LoopDevice::attach(&backing, &[]);
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1",
                "-J",
                "size=1",
                dev.dev.to_str().unwrap(),
            ],
        );
        let ext4 = Mount::device(&dev.dev);
        OvercommittedExt4 { ext4, _loop: dev, _tmpfs: tmpfs }
    }
}

#[test]
fn lost_writeback_fails_the_flush_and_every_later_flush() {
    let fs = OvercommittedExt4::new();
    let path = fs.ext4.path().join("disk.img");
    sparse_file(&path, 32 << 20);
    let mut img = RawImage::open(&path, CacheMode::Writeback, false).unwrap();
    for n in 0..256u64 {
        img.write_at(n * 65536, &pattern(n, 65536)).expect("ext4 takes the write into its page cache");
    }
    let first = img.flush().unwrap_err();
    assert!(matches!(first, BlockError::Io { op: BlockOp::Flush, .. }), "{first}");
    // Linux reports a writeback error once; the image must not look
    // consistent again afterwards.
    let second = img.flush().unwrap_err();
    assert_eq!(second.errno(), first.errno());
    assert_eq!(img.sync_count(), 1, "the second flush must not trust a new fdatasync");
}

#[test]
fn lost_writeback_fails_the_write_itself_when_the_guest_cache_is_off() {
    let fs = OvercommittedExt4::new();
    let path = fs.ext4.path().join("disk.img");
    sparse_file(&path, 32 << 20);
    let mut img = RawImage::open(&path, CacheMode::Writeback, false).unwrap();
    img.set_guest_write_cache(false);
    let mut failed_at = None;
    for n in 0..256u64 {
        if let Err(e) = img.write_at(n * 65536, &pattern(n, 65536)) {
            assert!(matches!(e, BlockError::Io { op: BlockOp::Write, .. }), "{e}");
            failed_at = Some(n);
            break;
        }
    }
    let n = failed_at.expect("a write whose data was lost must fail");
    assert!(img.write_at(0, &[0; 512]).is_err(), "after chunk {n}, every later write must fail too");
}

#[test]
fn o_direct_random_512_byte_requests_match_a_shadow_copy() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let fs = Ext4::new(32);
    // An odd sector count leaves a partial last 4 KiB block.
    let sectors = 1001u64;
    let path = fs.mount.path().join("disk.img");
    std::fs::write(&path, vec![0u8; (sectors * 512) as usize]).unwrap();
    let request = (0..sectors, 1u64..64, any::<u8>(), any::<bool>())
        .prop_map(move |(start, count, fill, is_write)| (start, count.min(sectors - start), fill, is_write));
    let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
    runner
        .run(&proptest::collection::vec(request, 1..24), |requests| {
            let mut img = RawImage::open(&path, CacheMode::None, false).unwrap();
            let mut shadow = std::fs::read(&path).unwrap();
            for (start, count, fill, is_write) in requests {
                let (offset, len) = (start * 512, (count * 512) as usize);
                if is_write {
                    img.write_at(offset, &vec![fill; len]).unwrap();
                    shadow[offset as usize..offset as usize + len].fill(fill);
                } else {
                    let mut buf = vec![0; len];
                    img.read_at(offset, &mut buf).unwrap();
                    prop_assert!(buf[..] == shadow[offset as usize..offset as usize + len]);
                }
            }
            img.flush().unwrap();
            prop_assert!(std::fs::read(&path).unwrap() == shadow);
            Ok(())
        })
        .unwrap();
}

#[test]
fn deleted_backing_file_on_a_full_filesystem_still_fails_the_write_itself() {
    let fs = Mount::tmpfs("1m");
    let backing = fs.path().join("guest.img");
    sparse_file(&backing, 4 << 20);
    let dev = LoopDevice::attach(&backing, &[]);
    std::fs::remove_file(&backing).unwrap();
    let spec = ImageSpec {
        file: dev.dev.to_str().unwrap().to_string(),
        format: "raw".into(),
        cache: CacheMode::Writeback,
        read_only: false,
    };
    // The fallback writes through the loop device with O_DIRECT, so the
    // loop driver's failure comes back on the write instead of being
    // absorbed by the page cache.
    let mut img = open_image(&spec).unwrap();
    let chunk = 64 * 1024;
    let (written, err) = fill_until_error(img.as_mut(), chunk);
    assert!(written <= 16, "{written} chunks acknowledged on a 1 MiB filesystem");
    match err {
        BlockError::Io { op: BlockOp::Write, offset, errno, .. } => {
            assert_eq!(offset, written * chunk as u64);
            assert!(errno == libc::ENOSPC || errno == libc::EIO, "errno {errno}");
        }
        other => panic!("expected a write error, got {other}"),
    }
    assert_reads_back(img.as_mut(), written, chunk);
}

#[test]
fn loop_device_without_sysfs_is_used_with_o_direct() {
    let fs = Mount::tmpfs("1m");
    let backing = fs.path().join("guest.img");
    sparse_file(&backing, 4 << 20);
    let dev = LoopDevice::attach(&backing, &["-r"]);
    let no_sysfs = tempfile::tempdir().unwrap();
    let spec = ImageSpec {
        file: dev.dev.to_str().unwrap().to_string(),
        format: "raw".into(),
        cache: CacheMode::Writeback,
        read_only: false,
    };
    let img = xen_ioemu::block::open_image_with_sysfs(&spec, no_sysfs.path()).unwrap();
    assert!(img.read_only(), "the loop driver's read-only flag is honoured without sysfs");
    drop(img);
    drop(dev);

    let dev = LoopDevice::attach(&backing, &[]);
    let spec = ImageSpec { file: dev.dev.to_str().unwrap().to_string(), ..spec };
    let mut img = xen_ioemu::block::open_image_with_sysfs(&spec, no_sysfs.path()).unwrap();
    let chunk = 64 * 1024;
    let (written, err) = fill_until_error(img.as_mut(), chunk);
    assert!(written <= 16, "{written} chunks acknowledged on a 1 MiB filesystem: the page cache absorbed errors");
    assert!(matches!(err, BlockError::Io { op: BlockOp::Write, .. }), "{err}");
}

/// dm_restrict: libxl caps the device model's RLIMIT_FSIZE at 256 KiB, and
/// the kernel fails every write to a regular file past that offset with
/// EFBIG. A loop device (script=block) is then served as the device itself,
/// and a writable image file that reaches past the limit is refused at
/// start-up with one line. The limit must be the process's own, so the
/// checks run in a child test under `prlimit` (util-linux).
#[test]
fn under_libxl_dm_restrict_rlimit_fsize_a_loop_device_is_served_and_a_large_file_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("guest.img");
    std::fs::write(&backing, vec![1u8; 1 << 20]).unwrap();
    let dev = LoopDevice::attach(&backing, &[]);
    let out = Command::new("prlimit")
        .arg(format!("--fsize={0}:{0}", 256 * 1024))
        .arg(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "dm_restrict_child_opens_under_the_limit", "--nocapture"])
        .env("DM_RESTRICT_CHILD_LOOP", &dev.dev)
        .env("DM_RESTRICT_CHILD_FILE", &backing)
        .output()
        .expect("cannot run prlimit (util-linux)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "child under prlimit: {}\n{text}", out.status);
    // The child's write at 512 KiB went through the loop device into the file.
    let host = std::fs::read(&backing).unwrap();
    assert_eq!(&host[512 << 10..(512 << 10) + 4096], &[0xab; 4096][..]);
    assert_eq!(host[(512 << 10) - 1], 1);
}

/// Run only by the test above, in a child process whose RLIMIT_FSIZE is
/// 256 KiB (so #[ignore]: in the normal test process it would not be).
#[test]
#[ignore]
fn dm_restrict_child_opens_under_the_limit() {
    assert_eq!(xen_ioemu::block::file_size_limit(), Some(256 * 1024), "run by the prlimit test only");
    let spec = |file: String, read_only| ImageSpec { file, format: "raw".into(), cache: CacheMode::Writeback, read_only };
    let dev = std::env::var("DM_RESTRICT_CHILD_LOOP").unwrap();
    let file = std::env::var("DM_RESTRICT_CHILD_FILE").unwrap();
    let mut img = open_image(&spec(dev, false)).unwrap();
    img.write_at(512 << 10, &[0xab; 4096]).expect("the loop device itself is not limited by RLIMIT_FSIZE");
    img.flush().unwrap();
    let err = open_image(&spec(file.clone(), false)).err().expect("a writable 1 MiB file under a 256 KiB limit");
    let text = err.to_string();
    assert!(text.contains("RLIMIT_FSIZE is 262144 bytes") && text.contains("block device") && !text.contains('\n'), "{text}");
    // Read-only, nothing is limited.
    assert!(open_image(&spec(file, true)).is_ok());
}
