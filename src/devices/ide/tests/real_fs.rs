//! The error paths against a real filesystem that really runs out of space:
//! a 256 KiB tmpfs (needs root to mount; fails otherwise).

use super::*;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;

/// Test fixture: a raw image file with pread/pwrite/fdatasync.
struct RawFile {
    file: File,
    size: u64,
    write_cache: bool,
}

fn io_error(op: BlockOp, offset: u64, len: usize, e: std::io::Error) -> BlockError {
    BlockError::Io { op, offset, len: len as u64, errno: e.raw_os_error().unwrap_or(libc::EIO) }
}

impl BlockBackend for RawFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.file.read_exact_at(buf, offset).map_err(|e| io_error(BlockOp::Read, offset, buf.len(), e))
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        self.file.write_all_at(data, offset).map_err(|e| io_error(BlockOp::Write, offset, data.len(), e))
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(|e| io_error(BlockOp::Flush, 0, 0, e))
    }
    fn discard(&mut self, _offset: u64, _len: u64) -> Result<(), BlockError> {
        Ok(())
    }
    fn set_guest_write_cache(&mut self, enabled: bool) {
        self.write_cache = enabled;
    }
    fn guest_write_cache(&self) -> bool {
        self.write_cache
    }
}

struct SmallTmpfs(PathBuf);

impl SmallTmpfs {
    fn mount() -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("xen-ioemu-ide-enospc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            panic!("cannot mount a 256 KiB tmpfs at {}: this test needs root", dir.display());
        }
        Some(SmallTmpfs(dir))
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn fill_up(dir: &std::path::Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = File::create(&filler).unwrap();
    let chunk = vec![0xffu8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    filler
}

#[test]
fn genuine_enospc_reported_then_held_and_completed_after_space_returns() {
    let Some(fs) = SmallTmpfs::mount() else { return };
    let path = fs.0.join("disk.img");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    file.set_len(4 * MIB as u64).unwrap();
    let backend = RawFile { file, size: 4 * MIB as u64, write_cache: true };
    let mut cfg = disk(&SharedImage::new(512), ErrorPolicy::Enospc, ErrorPolicy::Report);
    cfg.backend = Some(Box::new(backend));
    let mut rig = Rig::new([Some(cfg), None, None, None]);
    let filler = fill_up(&fs.0);

    let data = pattern(64 * 1024, 77);
    rig.mem_write(BUF, &data);
    rig.set_prdt(&[(BUF as u32, 0)]);
    rig.dma(0xca, 2048, 128, false);
    assert_eq!(rig.vm.state(), RunState::IoError, "ENOSPC under werror=enospc stops");
    assert_eq!((rig.altstatus(), rig.bm_status()), (0x58, 0x01));
    assert_eq!(rig.ide().drives_info()[0].io_status, Some("nospace"));
    let ev = io_errors(&rig.events());
    assert_eq!(ev, vec![("ide0-hd0".into(), IoOperation::Write, "stop", Some(true), "No space left on device".into())]);

    std::fs::remove_file(&filler).unwrap();
    rig.vm.set_running();
    rig.restart_held();
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    let mut on_disk = vec![0u8; data.len()];
    File::open(&path).unwrap().read_exact_at(&mut on_disk, 2048 * 512).unwrap();
    assert_eq!(on_disk, data, "the held write reached the file after space returned");

    // The same with report semantics on a PIO write: the guest sees the error.
    let filler = fill_up(&fs.0);
    rig.outb(BM, 0);
    rig.command_lba28(0x30, 6000, 16);
    let mut status = 0x58;
    for block in 0..16 {
        if status != 0x58 {
            break;
        }
        rig.write_block(&pattern(512, block));
        status = rig.inb(0x1f7);
    }
    assert_eq!(rig.vm.state(), RunState::IoError, "still enospc: stop");
    std::fs::remove_file(&filler).unwrap();
    rig.vm.set_running();
    rig.restart_held();
    let mut blocks = 0;
    while rig.inb(0x1f7) == 0x58 && blocks < 16 {
        rig.write_block(&[0xab; 512]);
        blocks += 1;
    }
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f2)), (0x50, 0));
}

#[test]
fn genuine_enospc_with_report_policy_aborts_the_command() {
    let Some(fs) = SmallTmpfs::mount() else { return };
    let path = fs.0.join("disk.img");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    file.set_len(4 * MIB as u64).unwrap();
    let mut cfg = disk(&SharedImage::new(512), ErrorPolicy::Report, ErrorPolicy::Report);
    cfg.backend = Some(Box::new(RawFile { file, size: 4 * MIB as u64, write_cache: true }));
    let mut rig = Rig::new([Some(cfg), None, None, None]);
    let _filler = fill_up(&fs.0);
    rig.mem_write(BUF, &pattern(64 * 1024, 1));
    rig.set_prdt(&[(BUF as u32, 0)]);
    rig.dma(0xca, 4096, 128, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.bm_status()), (0x41, 0x04, 0x04));
    assert_eq!((rig.inb(0x1f3), rig.inb(0x1f2)), (0, 128), "registers from the command");
    assert_eq!(rig.vm.state(), RunState::Running);
    assert!(rig.irq_raises(0) > 0);
    assert_eq!(io_errors(&rig.events())[0].2, "report");
}
