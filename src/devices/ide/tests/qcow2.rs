//! A qcow2 drive through the controller: DMA reads and writes that QEMU's
//! qemu-img reads back, and ENOSPC during cluster allocation on a tmpfs
//! that really fills, held under werror=enospc and reported under
//! werror=report exactly as for a raw image (real_fs.rs). Needs root (mount)
//! and qemu-utils.

use super::*;
use crate::block::open::{open_image, ImageSpec};
use crate::block::testimg::{check, contents, create};
use std::path::{Path, PathBuf};
use std::process::Command;

fn qcow2_disk(path: &Path, werror: ErrorPolicy) -> DriveConfig {
    let spec = ImageSpec { file: path.to_str().unwrap().into(), format: "qcow2".into(), cache: CacheMode::Writeback, read_only: false };
    disk_on(open_image(&spec).unwrap(), werror, ErrorPolicy::Report)
}

struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a {size} tmpfs at {}: this test needs root", dir.path().display());
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn fill_up(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0xffu8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    filler
}

#[test]
fn qcow2_drive_reads_and_writes_by_dma_and_qemu_img_reads_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    create(&path, "qcow2", "16M", &[]);
    crate::block::testimg::qemu_io(&path, "qcow2", &["write -P 0x3c 4M 64k"]);
    let mut expected = contents(&path, "qcow2");
    {
        let mut rig = Rig::new([Some(qcow2_disk(&path, ErrorPolicy::Report)), None, None, None]);
        // What qemu-io wrote, read by DMA.
        rig.set_prdt(&[(BUF as u32, 0)]);
        rig.dma(0xc8, 8192, 128, true);
        assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
        assert_eq!(rig.mem_read(BUF, 64 * 1024), vec![0x3c; 64 * 1024]);

        // A write over two PRDs, straddling a 64 KiB cluster boundary
        // (LBA 120..136 of cluster 0 and 1), read back.
        let data = pattern(16 * 512, 11);
        rig.mem_write(BUF, &data[..1024]);
        rig.mem_write(BUF + 0x10000, &data[1024..]);
        rig.outb(BM, 0);
        rig.set_prdt(&[(BUF as u32, 1024), (BUF as u32 + 0x10000, 7 * 1024)]);
        rig.dma(0xca, 120, 16, false);
        assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
        expected[120 * 512..136 * 512].copy_from_slice(&data);
        rig.mem_write(BUF, &[0xcc; 8192]);
        rig.outb(BM, 0);
        rig.set_prdt(&[(BUF as u32, 8192)]);
        rig.dma(0xc8, 120, 16, true);
        assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
        assert_eq!(rig.mem_read(BUF, 8192), data);

        // FLUSH CACHE writes the qcow2 metadata back: qemu-img sees the
        // write while the drive is still open.
        rig.outb(BM, 0);
        rig.command_lba28(0xe7, 0, 0);
        assert_eq!(rig.inb(0x1f7), 0x50);
        assert!(contents(&path, "qcow2") == expected, "after FLUSH CACHE");
    }
    assert!(contents(&path, "qcow2") == expected, "after close");
    assert_eq!(check(&path).errors, 0);
}

#[test]
fn enospc_allocating_a_qcow2_cluster_is_held_then_completes_and_is_reported_under_report() {
    let fs = Tmpfs::mount("1m");
    let path = fs.0.path().join("disk.qcow2");
    create(&path, "qcow2", "8M", &[]);
    let data = pattern(64 * 1024, 77);
    {
        let mut rig = Rig::new([Some(qcow2_disk(&path, ErrorPolicy::Enospc)), None, None, None]);
        let filler = fill_up(fs.0.path());
        rig.mem_write(BUF, &data);
        rig.set_prdt(&[(BUF as u32, 0)]);
        // The audit line is written by the same apply_policy call, from the
        // same errno, as this event (it is logged on the engine's thread,
        // which testlog cannot see).
        rig.dma(0xca, 2048, 128, false);
        assert_eq!(rig.vm.state(), RunState::IoError, "ENOSPC under werror=enospc stops");
        assert_eq!((rig.altstatus(), rig.bm_status()), (0x58, 0x01), "the command stays busy while held");
        assert_eq!(rig.ide().drives_info()[0].io_status, Some("nospace"));
        let ev = io_errors(&rig.events());
        assert_eq!(ev, vec![("ide0-hd0".into(), IoOperation::Write, "stop", Some(true), "No space left on device".into())]);
        // Still full: `cont` holds it again.
        rig.vm.set_running();
        rig.restart_held();
        assert_eq!(rig.vm.state(), RunState::IoError);
        std::fs::remove_file(&filler).unwrap();
        rig.vm.set_running();
        rig.restart_held();
        assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04), "completed after space returned");
    }
    assert_eq!(check(&path).errors, 0, "qemu-img check after the held incident");
    {
        // werror=report on the same image: the guest sees the error.
        let mut rig = Rig::new([Some(qcow2_disk(&path, ErrorPolicy::Report)), None, None, None]);
        let _filler = fill_up(fs.0.path());
        rig.mem_write(BUF, &pattern(64 * 1024, 5));
        rig.set_prdt(&[(BUF as u32, 0)]);
        rig.dma(0xca, 8192, 128, false);
        assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.bm_status()), (0x41, 0x04, 0x04), "ABRT for the guest");
        assert_eq!(rig.vm.state(), RunState::Running);
        assert_eq!(io_errors(&rig.events())[0].2, "report");
        // The guest flushes; the metadata of the completed write fits.
        rig.outb(BM, 0);
        rig.command_lba28(0xe7, 0, 0);
        assert_eq!(rig.inb(0x1f7), 0x50);
    }
    let image = contents(&path, "qcow2");
    assert!(image[2048 * 512..2048 * 512 + data.len()] == data[..], "the held write reached the image");
    assert_eq!(check(&path).errors, 0, "qemu-img check after the incident");
}
