//! ImagoImage against qemu-img/qemu-io: what we write QEMU reads, what
//! QEMU writes we read, backing chains, and the cache modes' syncs.

use super::*;
use crate::block::testimg::{check, contents, create, pattern, qemu_io};

const MIB: usize = 1 << 20;

fn open(path: &Path, cache: CacheMode) -> ImagoImage {
    ImagoImage::open(path, ImageFormat::Qcow2, cache, false).unwrap()
}

#[test]
fn what_we_write_qemu_reads_back_and_the_image_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    // 4 KiB clusters, so the requests below straddle clusters and L2 tables.
    create(&path, "qcow2", "16M", &["-o", "cluster_size=4096"]);
    let mut shadow = vec![0u8; 16 * MIB];
    let mut img = open(&path, CacheMode::Writeback);
    assert_eq!(img.size(), 16 * MIB as u64);
    let requests: &[(usize, usize)] =
        &[(0, 512), (512, 3584), (7 * 512, 9 * 512), (2 * MIB - 512, 64 * 1024), (15 * MIB, MIB), (4096, 4096)];
    for (i, &(offset, len)) in requests.iter().enumerate() {
        let data = pattern(len, i as u8 * 17);
        img.write_at(offset as u64, &data).unwrap();
        shadow[offset..offset + len].copy_from_slice(&data);
        let mut back = vec![0; len];
        img.read_at(offset as u64, &mut back).unwrap();
        assert!(back == data, "request {i} reads back through us");
    }
    img.flush().unwrap();
    drop(img);
    assert!(contents(&path, "qcow2") == shadow, "qemu-img convert sees what we wrote");
    assert_eq!(check(&path), crate::block::testimg::Check { errors: 0, leaks: 0 });
}

#[test]
fn what_qemu_writes_we_read_including_compressed_and_zero_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    create(&path, "qcow2", "8M", &[]);
    qemu_io(&path, "qcow2", &["write -P 0xab 0 100k", "write -P 0x5c 3M 64k", "write -z 3M 4k"]);
    let expected = contents(&path, "qcow2");
    assert_eq!(expected[0], 0xab);
    let mut img = ImagoImage::open(&path, ImageFormat::Qcow2, CacheMode::Writeback, true).unwrap();
    let mut all = vec![0xeeu8; 8 * MIB];
    img.read_at(0, &mut all).unwrap();
    assert!(all == expected, "we read what qemu-io wrote");

    // Compressed clusters (qemu-img convert -c).
    let raw = dir.path().join("src.raw");
    let data: Vec<u8> = (0..4 * MIB).map(|i| ((i / 4096) % 7) as u8).collect();
    std::fs::write(&raw, &data).unwrap();
    let compressed = dir.path().join("c.qcow2");
    crate::block::testimg::run(
        "qemu-img",
        &["convert", "-c", "-f", "raw", "-O", "qcow2", raw.to_str().unwrap(), compressed.to_str().unwrap()],
    );
    let mut img = ImagoImage::open(&compressed, ImageFormat::Qcow2, CacheMode::Writeback, true).unwrap();
    let mut all = vec![0xeeu8; 4 * MIB];
    img.read_at(0, &mut all).unwrap();
    assert!(all == data, "compressed clusters decompress");
}

#[test]
fn overlay_on_raw_and_on_qcow2_base_reads_through_and_leaves_the_base_alone() {
    let dir = tempfile::tempdir().unwrap();
    let base_raw = dir.path().join("base.raw");
    let base_data = pattern(4 * MIB, 3);
    std::fs::write(&base_raw, &base_data).unwrap();
    let base_qcow2 = dir.path().join("base.qcow2");
    create(&base_qcow2, "qcow2", "4M", &[]);
    qemu_io(&base_qcow2, "qcow2", &["write -P 0x42 64k 192k"]);
    // Relative backing names, as `qemu-img create -b` writes them when
    // told so: they resolve against the overlay's directory.
    for (base, base_fmt, overlay_opts) in [
        (&base_raw, "raw", vec!["-F", "raw", "-b", "base.raw"]),
        (&base_qcow2, "qcow2", vec!["-F", "qcow2", "-b", "base.qcow2"]),
    ] {
        let before = std::fs::read(base).unwrap();
        let overlay = dir.path().join(format!("overlay-{base_fmt}.qcow2"));
        create(&overlay, "qcow2", "4M", &overlay_opts);
        let mut expected = contents(&overlay, "qcow2");
        assert!(expected == contents(base, base_fmt));
        let mut img = open(&overlay, CacheMode::Writeback);
        // A write inside one 64 KiB cluster: the rest of the cluster must
        // be copied from the base.
        let data = pattern(1024, 99);
        img.write_at(70 * 1024, &data).unwrap();
        expected[70 * 1024..71 * 1024].copy_from_slice(&data);
        let mut all = vec![0; 4 * MIB];
        img.read_at(0, &mut all).unwrap();
        assert!(all == expected, "{base_fmt}: overlay data over base data");
        img.flush().unwrap();
        drop(img);
        assert!(contents(&overlay, "qcow2") == expected, "{base_fmt}: qemu-img agrees");
        assert!(std::fs::read(base).unwrap() == before, "{base_fmt}: the base is untouched");
        assert_eq!(check(&overlay).errors, 0);
    }
    // Not a qcow2 file at all.
    let err = ImagoImage::open(&base_raw, ImageFormat::Qcow2, CacheMode::Writeback, false).err().unwrap();
    assert!(matches!(err, BlockError::Open { .. }) && err.to_string().contains("qcow2"), "{err}");
    // A backing file that is gone: refused at open, naming it.
    let orphan = dir.path().join("orphan.qcow2");
    create(&orphan, "qcow2", "4M", &["-F", "raw", "-b", base_raw.to_str().unwrap()]);
    std::fs::remove_file(&base_raw).unwrap();
    let err = ImagoImage::open(&orphan, ImageFormat::Qcow2, CacheMode::Writeback, false).err().unwrap();
    assert!(err.to_string().contains("base.raw"), "{err}");
}

#[test]
fn syncs_follow_the_cache_mode_and_guest_write_cache_as_for_raw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    create(&path, "qcow2", "4M", &[]);
    let mut wb = open(&path, CacheMode::Writeback);
    wb.write_at(0, &[1; 512]).unwrap();
    assert_eq!(wb.sync_count(), 0);
    wb.flush().unwrap();
    assert_eq!(wb.sync_count(), 1);
    wb.set_guest_write_cache(false);
    wb.write_at(MIB as u64, &[1; 512]).unwrap();
    assert_eq!(wb.sync_count(), 2, "write cache off: every write is synced");
    drop(wb);

    let mut wt = open(&path, CacheMode::Writethrough);
    wt.write_at(0, &[2; 512]).unwrap();
    wt.write_at(2 * MIB as u64, &[2; 512]).unwrap();
    assert_eq!(wt.sync_count(), 2);
    // Writethrough also wrote the new cluster's L2 entry: a reader that
    // opens the file now (before we flush or close) sees the data.
    assert_eq!(contents(&path, "qcow2")[2 * MIB], 2);
    drop(wt);

    let mut us = open(&path, CacheMode::Unsafe);
    us.set_guest_write_cache(false);
    us.write_at(3 * MIB as u64, &[3; 512]).unwrap();
    us.flush().unwrap();
    assert_eq!(us.sync_count(), 0, "unsafe never syncs");
    // ... but FLUSH still wrote the metadata back, as QEMU's does.
    assert_eq!(contents(&path, "qcow2")[3 * MIB], 3);
    drop(us);
    assert_eq!(check(&path).errors, 0);
}

#[test]
fn read_only_refuses_writes_and_does_not_touch_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    create(&path, "qcow2", "4M", &[]);
    qemu_io(&path, "qcow2", &["write -P 0x11 0 64k"]);
    let before = std::fs::read(&path).unwrap();
    let mut img = ImagoImage::open(&path, ImageFormat::Qcow2, CacheMode::Writeback, true).unwrap();
    assert!(img.read_only());
    assert_eq!(img.write_at(0, &[0; 512]), Err(BlockError::ReadOnly));
    assert_eq!(img.discard(0, 512), Err(BlockError::ReadOnly));
    img.flush().unwrap();
    let mut buf = [0; 512];
    img.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [0x11; 512]);
    drop(img);
    assert!(std::fs::read(&path).unwrap() == before);
}

#[test]
fn ranges_past_the_end_are_refused_and_do_not_grow_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    create(&path, "qcow2", "1M", &[]);
    let mut img = open(&path, CacheMode::Writeback);
    assert!(matches!(img.read_at(MIB as u64 - 512, &mut [0; 1024]), Err(BlockError::OutOfRange { .. })));
    assert!(matches!(img.write_at(u64::MAX - 10, &[0; 512]), Err(BlockError::OutOfRange { .. })));
    assert!(matches!(img.discard(MIB as u64, 1), Err(BlockError::OutOfRange { .. })));
    assert_eq!(img.size(), MIB as u64);
}

#[test]
fn discard_reads_back_zeros_even_over_a_backing_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    std::fs::write(&base, vec![0x77u8; 4 * MIB]).unwrap();
    let path = dir.path().join("disk.qcow2");
    create(&path, "qcow2", "4M", &["-F", "raw", "-b", base.to_str().unwrap()]);
    let mut img = open(&path, CacheMode::Writeback);
    img.write_at(0, &vec![0x33; 256 * 1024]).unwrap();
    // Unaligned to the 64 KiB clusters at both ends.
    img.discard(512, 200 * 1024).unwrap();
    img.discard(MIB as u64, 128 * 1024).unwrap();
    let mut buf = vec![0xffu8; 256 * 1024];
    img.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..512], &[0x33; 512][..]);
    assert!(buf[512..512 + 200 * 1024].iter().all(|&b| b == 0), "discarded range reads zeros");
    assert!(buf[512 + 200 * 1024..].iter().all(|&b| b == 0x33));
    img.read_at(MIB as u64, &mut buf[..128 * 1024]).unwrap();
    assert!(buf[..128 * 1024].iter().all(|&b| b == 0), "not the backing file's 0x77");
    img.flush().unwrap();
    drop(img);
    let all = contents(&path, "qcow2");
    assert!(all[MIB..MIB + 128 * 1024].iter().all(|&b| b == 0));
    assert_eq!(all[2 * MIB], 0x77);
    assert_eq!(check(&path).errors, 0);
}

#[test]
fn flat_vmdk_reads_read_only_and_sparse_vmdk_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("flat.vmdk");
    create(&flat, "vmdk", "2M", &["-o", "subformat=monolithicFlat"]);
    qemu_io(&flat, "vmdk", &["write -P 0x66 512k 64k"]);
    let expected = contents(&flat, "vmdk");
    let mut img = ImagoImage::open(&flat, ImageFormat::Vmdk, CacheMode::Writeback, true).unwrap();
    let mut all = vec![0; 2 * MIB];
    img.read_at(0, &mut all).unwrap();
    assert!(all == expected && all[512 * 1024] == 0x66);
    let err = ImagoImage::open(&flat, ImageFormat::Vmdk, CacheMode::Writeback, false).err().unwrap();
    assert!(err.to_string().contains("VMDK images can only be read"), "{err}");

    let sparse = dir.path().join("sparse.vmdk");
    create(&sparse, "vmdk", "2M", &[]);
    let err = ImagoImage::open(&sparse, ImageFormat::Vmdk, CacheMode::Writeback, true).err().unwrap();
    let text = err.to_string();
    assert!(text.contains("vmdk") && !text.contains('\n'), "{text}");
}

#[test]
fn format_names_parse_and_the_refusals_name_the_option() {
    assert_eq!(ImageFormat::check("qcow2", false), Ok(ImageFormat::Qcow2));
    assert_eq!(ImageFormat::check("raw", false), Ok(ImageFormat::Raw));
    assert_eq!(ImageFormat::check("vmdk", true), Ok(ImageFormat::Vmdk));
    assert_eq!(ImageFormat::check("vmdk", false), Err(FormatError::VmdkNeedsReadOnly));
    let err = ImageFormat::check("vpc", false).unwrap_err().to_string();
    assert!(err.starts_with("format=vpc: not supported") && !err.contains('\n'), "{err}");
}

#[test]
fn errno_comes_from_the_error_then_the_host_call_then_the_kind() {
    clear_host_errno();
    assert_eq!(errno_of(&io::Error::from_raw_os_error(libc::EDQUOT)), libc::EDQUOT);
    // imago's context drops the OS error but keeps the kind.
    assert_eq!(errno_of(&io::Error::new(io::ErrorKind::StorageFull, "Writing cluster: ...")), libc::ENOSPC);
    assert_eq!(errno_of(&io::Error::other("corrupt L2 table")), libc::EIO);
    // A host call that failed during the request wins over the kind.
    let dir = tempfile::tempdir().unwrap();
    let err = HostStorage::open(StorageOpenOptions::new().filename(dir.path().join("missing"))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(errno_of(&io::Error::other("Backing file: no such file")), libc::ENOENT);
    clear_host_errno();
    assert_eq!(errno_of(&io::Error::other("Backing file: no such file")), libc::EIO);
}
