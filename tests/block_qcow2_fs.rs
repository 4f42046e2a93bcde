//! qcow2 images on small real filesystems that really fill up during
//! cluster allocation: the write that does not fit fails with ENOSPC (as a
//! raw image's does), retries keep failing while the filesystem is full,
//! a retry after space returns completes, and `qemu-img check` finds no
//! error afterwards. Needs root (mount, losetup, mkfs.ext4) and qemu-utils;
//! without them the tests fail with the command that could not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use xen_ioemu::block::{open_image, BlockBackend, BlockError, BlockOp, CacheMode, ImageSpec};

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (these tests need root, mount/losetup/mkfs.ext4 and qemu-utils)"));
    assert!(
        out.status.success(),
        "{cmd} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A mounted filesystem, unmounted on drop (also when a test panics).
struct Mount {
    dir: tempfile::TempDir,
    _loop: Option<LoopDevice>,
    _image_dir: Option<tempfile::TempDir>,
}

struct LoopDevice(PathBuf);

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

impl Mount {
    fn tmpfs(size: &str) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.path().to_str().unwrap()]);
        Mount { dir, _loop: None, _image_dir: None }
    }

    /// ext4 (4 KiB blocks) on a loop device: O_DIRECT works there.
    fn ext4(size_mib: u64) -> Mount {
        let image_dir = tempfile::tempdir().unwrap();
        let image = image_dir.path().join("ext4.img");
        std::fs::File::create(&image).unwrap().set_len(size_mib << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", "-m", "0", "-b", "4096", image.to_str().unwrap()]);
        let dev = LoopDevice(PathBuf::from(run("losetup", &["-f", "--show", image.to_str().unwrap()]).trim()));
        let dir = tempfile::tempdir().unwrap();
        run("mount", &[dev.0.to_str().unwrap(), dir.path().to_str().unwrap()]);
        Mount { dir, _loop: Some(dev), _image_dir: Some(image_dir) }
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

fn qcow2(path: &Path, size: &str) {
    run("qemu-img", &["create", "-q", "-f", "qcow2", path.to_str().unwrap(), size]);
}

fn open(path: &Path, cache: CacheMode) -> Box<dyn BlockBackend> {
    open_image(&ImageSpec { file: path.to_str().unwrap().into(), format: "qcow2".into(), cache, read_only: false })
        .unwrap()
}

/// `qemu-img check`: (errors, leaked clusters). Leaks are no error, but
/// they are printed so a run shows them.
fn check(path: &Path) -> (u64, u64) {
    let out = Command::new("qemu-img").args(["check", "--output=json", "-f", "qcow2"]).arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("qemu-img check ({:?}): {e}: {text}", out.status));
    let n = |k: &str| json.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let (errors, leaks) = (n("check-errors") + n("corruptions"), n("leaks"));
    eprintln!("qemu-img check {}: {errors} errors, {leaks} leaked clusters", path.display());
    assert!(out.status.code() == Some(if leaks > 0 { 3 } else { 0 }) || errors > 0, "{:?}: {text}", out.status);
    (errors, leaks)
}

fn contents(path: &Path) -> Vec<u8> {
    let out = tempfile::NamedTempFile::new().unwrap();
    run("qemu-img", &["convert", "-f", "qcow2", "-O", "raw", path.to_str().unwrap(), out.path().to_str().unwrap()]);
    std::fs::read(out.path()).unwrap()
}

fn pattern(chunk: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (chunk as usize * 31 + i / 512) as u8 | 1).collect()
}

/// Fills the host filesystem but for a little room, with a file that can
/// be deleted to give the space back.
fn fill_all_but(dir: &Path, keep: u64) -> PathBuf {
    let filler = dir.join("filler");
    let free = nix::sys::statvfs::statvfs(dir).unwrap();
    let avail = free.blocks_available() as u64 * free.fragment_size() as u64;
    let len = avail.saturating_sub(keep) / 4096 * 4096;
    let chunk = vec![0xffu8; 1 << 16];
    let mut f = std::fs::File::create(&filler).unwrap();
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        if std::io::Write::write_all(&mut f, &chunk[..n]).is_err() {
            break;
        }
        done += n as u64;
    }
    f.sync_all().unwrap();
    filler
}

const CHUNK: usize = 48 * 1024; // not a divisor of the 64 KiB cluster

/// Writes CHUNK-sized blocks from `first` until one fails; keeps the guest's
/// view in `shadow`. Returns the chunk that failed and its error.
fn write_until_error(img: &mut dyn BlockBackend, shadow: &mut [u8], first: u64) -> (u64, BlockError) {
    let mut n = first;
    loop {
        let offset = n * CHUNK as u64;
        assert!(offset + CHUNK as u64 <= img.size(), "the image never filled the filesystem");
        match img.write_at(offset, &pattern(n, CHUNK)) {
            Ok(()) => {
                shadow[offset as usize..offset as usize + CHUNK].copy_from_slice(&pattern(n, CHUNK));
                n += 1;
            }
            Err(e) => return (n, e),
        }
    }
}

fn assert_enospc(err: &BlockError, chunk: u64) {
    assert_eq!(
        *err,
        BlockError::Io { op: BlockOp::Write, offset: chunk * CHUNK as u64, len: CHUNK as u64, errno: libc::ENOSPC },
        "the write whose cluster did not fit fails with ENOSPC"
    );
}

/// werror=report: the guest is told and goes on; the filesystem stays
/// full. Retries fail the same way, what was written reads back, and after
/// close the image checks clean.
#[test]
fn enospc_in_allocation_is_reported_with_enospc_and_the_image_checks_clean() {
    for cache in [CacheMode::Writeback, CacheMode::Writethrough, CacheMode::Unsafe] {
        let fs = Mount::tmpfs("2m");
        let path = fs.path().join("disk.qcow2");
        qcow2(&path, "16M");
        let mut img = open(&path, cache);
        let mut shadow = vec![0u8; 16 << 20];
        let (failed, err) = write_until_error(img.as_mut(), &mut shadow, 0);
        assert!(failed > 4, "{cache:?}: only {failed} chunks fit");
        assert_enospc(&err, failed);
        for _ in 0..5 {
            assert_enospc(&img.write_at(failed * CHUNK as u64, &pattern(failed, CHUNK)).unwrap_err(), failed);
        }
        // The guest's view is intact: every completed write reads back. The
        // failed request may have landed in part (here: its head, in the
        // cluster that was already allocated), as a failed raw write may;
        // each of its sectors holds the old or the new data, nothing else.
        let mut all = vec![0u8; shadow.len()];
        img.read_at(0, &mut all).unwrap();
        let (start, end) = (failed as usize * CHUNK, (failed as usize + 1) * CHUNK);
        assert!(all[..start] == shadow[..start] && all[end..] == shadow[end..], "{cache:?}: completed writes read back");
        let new = pattern(failed, CHUNK);
        for s in (start..end).step_by(512) {
            let got = &all[s..s + 512];
            assert!(got == &shadow[s..s + 512] || got == &new[s - start..s - start + 512], "{cache:?}: sector {}", s / 512);
        }
        // The guest's view of the failed range now: what the image holds.
        shadow[start..end].copy_from_slice(&all[start..end]);
        // FLUSH must write the metadata back, which may itself not fit: then
        // it fails with ENOSPC too, never with another errno or silently.
        let flushed = match img.flush() {
            Ok(()) => true,
            Err(e) => {
                assert_eq!(e.errno(), libc::ENOSPC, "{cache:?}: {e}");
                false
            }
        };
        eprintln!("{cache:?}: {failed} chunks fit; FLUSH after the incident: {}", if flushed { "ok" } else { "ENOSPC" });
        drop(img);
        assert_eq!(check(&path).0, 0, "{cache:?}: qemu-img check finds no error");
        if flushed || cache == CacheMode::Writethrough {
            assert!(contents(&path) == shadow, "{cache:?}: what the guest was told is written is in the image");
        }
    }
}

/// werror=enospc: the request is held and retried while the filesystem is
/// full, then space returns and the same write completes.
#[test]
fn enospc_held_then_space_freed_then_the_retry_completes_and_checks_clean() {
    for cache in [CacheMode::Writeback, CacheMode::Writethrough] {
        let fs = Mount::tmpfs("8m");
        let path = fs.path().join("disk.qcow2");
        qcow2(&path, "32M");
        let filler = fill_all_but(fs.path(), 1 << 20);
        let mut img = open(&path, cache);
        let mut shadow = vec![0u8; 32 << 20];
        let (failed, err) = write_until_error(img.as_mut(), &mut shadow, 0);
        assert_enospc(&err, failed);
        for _ in 0..3 {
            assert_enospc(&img.write_at(failed * CHUNK as u64, &pattern(failed, CHUNK)).unwrap_err(), failed);
        }
        std::fs::remove_file(&filler).unwrap();
        // The held request, retried unchanged.
        img.write_at(failed * CHUNK as u64, &pattern(failed, CHUNK)).unwrap();
        let at = failed as usize * CHUNK;
        shadow[at..at + CHUNK].copy_from_slice(&pattern(failed, CHUNK));
        // And the guest goes on writing.
        for n in failed + 1..failed + 20 {
            // Writeback metadata the failed attempts left dirty may still be
            // written out (and fail with the ENOSPC of before) on a later
            // request: seen once in ~10 runs of the whole binary under load.
            // Under werror=enospc that request is held and retried like the
            // first, so retry it the same way; it must then complete.
            let mut tries = 0;
            while let Err(e) = img.write_at(n * CHUNK as u64, &pattern(n, CHUNK)) {
                tries += 1;
                if tries == 3 {
                    let st = nix::sys::statvfs::statvfs(fs.path()).unwrap();
                    let out = std::process::Command::new("ls").args(["-ls", fs.path().to_str().unwrap()]).output().unwrap();
                    panic!(
                        "{cache:?}: chunk {n} after the held chunk {failed} completed fails 3 times: {e:?}; {} bytes free; ls -ls:\n{}",
                        st.blocks_available() as u64 * st.fragment_size() as u64,
                        String::from_utf8_lossy(&out.stdout)
                    );
                }
                assert_enospc(&e, n);
            }
            shadow[n as usize * CHUNK..(n as usize + 1) * CHUNK].copy_from_slice(&pattern(n, CHUNK));
        }
        img.flush().unwrap();
        assert!(!img.failed_permanently());
        drop(img);
        assert_eq!(check(&path).0, 0, "{cache:?}: qemu-img check finds no error");
        assert!(contents(&path) == shadow, "{cache:?}: qemu-img reads every completed write");
    }
}

/// cache=none on ext4: O_DIRECT qcow2 I/O for 512-byte guest requests, and
/// ENOSPC from a direct write, held and retried.
#[test]
fn o_direct_qcow2_on_a_full_ext4_reports_enospc_then_completes_after_space_returns() {
    let fs = Mount::ext4(16);
    let path = fs.path().join("disk.qcow2");
    qcow2(&path, "64M");
    let mut img = open(&path, CacheMode::None);
    let mut shadow = vec![0u8; 64 << 20];
    // Unaligned to the 4 KiB blocks: the storage layer must bounce them.
    for (i, &(offset, len)) in [(512usize, 512usize), (3584, 1024), (70 * 1024 + 512, 9 * 512)].iter().enumerate() {
        let data = pattern(100 + i as u64, len);
        img.write_at(offset as u64, &data).unwrap();
        shadow[offset..offset + len].copy_from_slice(&data);
    }
    let filler = fill_all_but(fs.path(), 512 * 1024);
    let (failed, err) = write_until_error(img.as_mut(), &mut shadow, 2);
    assert_enospc(&err, failed);
    assert_enospc(&img.write_at(failed * CHUNK as u64, &pattern(failed, CHUNK)).unwrap_err(), failed);
    std::fs::remove_file(&filler).unwrap();
    img.write_at(failed * CHUNK as u64, &pattern(failed, CHUNK)).unwrap();
    let at = failed as usize * CHUNK;
    shadow[at..at + CHUNK].copy_from_slice(&pattern(failed, CHUNK));
    img.flush().unwrap();
    let mut all = vec![0u8; shadow.len()];
    img.read_at(0, &mut all).unwrap();
    assert!(all == shadow);
    drop(img);
    assert_eq!(check(&path).0, 0);
    assert!(contents(&path) == shadow);
}

/// 512-byte clusters: an L2 table covers 32 KiB of the guest and a refcount
/// block 128 KiB of the host file, so the writes below allocate L2 tables
/// and refcount blocks as often as data clusters, and ENOSPC hits metadata
/// allocation too. Whatever was hit, the error is ENOSPC, retries fail the
/// same way, the retry after space returns completes, and the image checks
/// clean, both when it is closed full (report) and after the retry (hold).
#[test]
fn enospc_while_allocating_l2_tables_and_refcount_blocks_leaves_a_clean_image() {
    const STRIDE: u64 = 40 * 1024;
    const LEN: usize = 4096;
    // Four margins 4 KiB (a tmpfs page) apart, so the write that does not
    // fit is a different mix of data, L2 and refcount allocation each time.
    for (hold, margin) in [false, true].into_iter().flat_map(|h| (0..4).map(move |k| (h, k * 4096))) {
        let fs = Mount::tmpfs("4m");
        let path = fs.path().join("disk.qcow2");
        run("qemu-img", &["create", "-q", "-f", "qcow2", "-o", "cluster_size=512", path.to_str().unwrap(), "256M"]);
        let filler = fill_all_but(fs.path(), (1 << 20) + margin);
        let mut img = open(&path, CacheMode::Writeback);
        let mut shadow = vec![0u8; 256 << 20];
        let mut n = 0u64;
        let err = loop {
            let data = pattern(n, LEN);
            match img.write_at(n * STRIDE, &data) {
                Ok(()) => {
                    shadow[(n * STRIDE) as usize..(n * STRIDE) as usize + LEN].copy_from_slice(&data);
                    n += 1;
                }
                Err(e) => break e,
            }
            assert!((n + 1) * STRIDE < 256 << 20, "never filled");
        };
        assert_eq!(err.errno(), libc::ENOSPC, "hold={hold}: {err}");
        for _ in 0..3 {
            assert_eq!(img.write_at(n * STRIDE, &pattern(n, LEN)).unwrap_err().errno(), libc::ENOSPC);
        }
        // A failed write may have landed in part; take the image's word for
        // that range.
        let at = (n * STRIDE) as usize;
        let mut got = vec![0u8; LEN];
        img.read_at(at as u64, &mut got).unwrap();
        shadow[at..at + LEN].copy_from_slice(&got);
        if hold {
            std::fs::remove_file(&filler).unwrap();
            img.write_at(n * STRIDE, &pattern(n, LEN)).unwrap();
            shadow[at..at + LEN].copy_from_slice(&pattern(n, LEN));
            for m in n + 1..n + 50 {
                img.write_at(m * STRIDE, &pattern(m, LEN)).unwrap();
                shadow[(m * STRIDE) as usize..(m * STRIDE) as usize + LEN].copy_from_slice(&pattern(m, LEN));
            }
            img.flush().unwrap();
        } else if let Err(e) = img.flush() {
            assert_eq!(e.errno(), libc::ENOSPC, "{e}");
        }
        let mut all = vec![0u8; shadow.len()];
        img.read_at(0, &mut all).unwrap();
        assert!(all == shadow, "hold={hold}: the guest's view after {n} writes");
        eprintln!("hold={hold} margin={margin}: {n} writes fit before ENOSPC");
        drop(img);
        let (errors, _) = check(&path);
        assert_eq!(errors, 0, "hold={hold}: qemu-img check finds no error");
        if hold {
            assert!(contents(&path) == shadow, "qemu-img reads every completed write");
        }
    }
}
