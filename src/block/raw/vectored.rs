//! DMA between a raw image and mapped guest memory without a copy:
//! preadv/pwritev over the request's segments (`block::uio`). With O_DIRECT
//! the kernel wants the file offset, the length and every iovec aligned to
//! the logical block size; guest PRD segments need not be, so such a
//! request falls back to the aligned bounce path of `read_at`/`write_at`.

use super::RawImage;
use crate::block::guest_io::{bounce_read, bounce_write, GuestBuffers};
use crate::block::{uio, BlockError, BlockOp};

impl RawImage {
    /// Whether the kernel can move `bufs` at `host_offset` directly: always
    /// through the page cache; with O_DIRECT only when everything is
    /// aligned and the span lies inside the host file (the partial last
    /// block goes through the page-cache descriptor, see `buffered_tail`).
    fn can_transfer_directly(&self, host_offset: u64, bufs: &GuestBuffers) -> bool {
        if !self.cache.is_direct() {
            return true;
        }
        let align = self.direct_align;
        host_offset.is_multiple_of(align as u64)
            && bufs.len().is_multiple_of(align)
            && self.direct_span_fits(host_offset, bufs.len())
            && bufs.is_aligned(align)
    }

    pub(super) fn vectored_read(&mut self, offset: u64, dst: &GuestBuffers, scratch: &mut Vec<u8>) -> Result<(), BlockError> {
        let len = dst.len() as u64;
        let host = self.check_range(BlockOp::Read, offset, len)?;
        if !self.can_transfer_directly(host, dst) {
            self.bounced += 1;
            return bounce_read(self, offset, dst, scratch);
        }
        self.zero_copy += 1;
        let steps = self.cache.is_direct().then_some(self.direct_align);
        let file = &self.file;
        uio::read_full(dst, host, steps, &mut |b, from, at| uio::preadv(file, b, from, usize::MAX, at))
            .map_err(|errno| BlockError::Io { op: BlockOp::Read, offset, len, errno })
    }

    pub(super) fn vectored_write(&mut self, offset: u64, src: &GuestBuffers, scratch: &mut Vec<u8>) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let len = src.len() as u64;
        let host = self.check_range(BlockOp::Write, offset, len)?;
        if !self.can_transfer_directly(host, src) {
            self.bounced += 1;
            return bounce_write(self, offset, src, scratch);
        }
        self.zero_copy += 1;
        let io_error = |errno| BlockError::Io { op: BlockOp::Write, offset, len, errno };
        let file = &self.file;
        uio::write_full(src, host, &mut |b, from, at| uio::pwritev(file, b, from, usize::MAX, at)).map_err(io_error)?;
        if self.write_needs_sync() {
            self.datasync().map_err(io_error)?;
        }
        Ok(())
    }

    /// DMA requests moved straight between the file and guest memory, and
    /// those that went through a bounce buffer (tests, benchmarks).
    pub fn dma_paths(&self) -> (u64, u64) {
        (self.zero_copy, self.bounced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::engine::GuestSegment;
    use crate::block::{BlockBackend, CacheMode};
    use crate::vm::{DmaDirection, GuestMemory};
    use crate::qtest::AnonRam;

    /// An image on the filesystem the build runs on (O_DIRECT works there;
    /// tmpfs may refuse it).
    fn image(len: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
        let path = dir.path().join("img");
        let data: Vec<u8> = (0..len).map(|i| (i / 512 * 7 + i % 512) as u8).collect();
        std::fs::write(&path, data).unwrap();
        (dir, path)
    }

    fn segs(list: &[(u64, usize)]) -> Vec<GuestSegment> {
        list.iter().map(|&(gpa, len)| GuestSegment { gpa, len }).collect()
    }

    /// Read `segments` from `offset` and write them back `shift` bytes on,
    /// through `cache`; returns (guest bytes read, image after, paths).
    fn round_trip(cache: CacheMode, segments: &[GuestSegment], offset: u64, shift: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>, (u64, u64)) {
        let (_dir, path) = image(1 << 20);
        let before = std::fs::read(&path).unwrap();
        let mut img = RawImage::open(&path, cache, false).unwrap();
        let ram = AnonRam::new(4 << 20).unwrap();
        let mut scratch = Vec::new();
        let dst = GuestBuffers::map(&ram, segments, DmaDirection::FromDevice).unwrap();
        img.read_to_guest(offset, &dst, &mut scratch).unwrap();
        drop(dst);
        let mut seen = Vec::new();
        for s in segments {
            let mut b = vec![0; s.len];
            ram.read(s.gpa, &mut b).unwrap();
            seen.extend(b);
        }
        let src = GuestBuffers::map(&ram, segments, DmaDirection::ToDevice).unwrap();
        img.write_from_guest(offset + shift, &src, &mut scratch).unwrap();
        let paths = img.dma_paths();
        (seen, before, std::fs::read(&path).unwrap(), paths)
    }

    #[test]
    fn page_cache_transfers_go_straight_to_odd_and_page_crossing_segments() {
        let segments = segs(&[(0x30ffe, 0x1002), (0x1000, 6), (0x200000, 0x10000), (0x5, 0x3f0)]);
        let total: usize = segments.iter().map(|s| s.len).sum();
        let (seen, before, after, paths) = round_trip(CacheMode::Writeback, &segments, 1000, 4096 * 20);
        assert_eq!(seen, before[1000..1000 + total], "each segment got its bytes in order");
        let at = 1000 + 4096 * 20;
        assert_eq!(after[at..at + total], before[1000..1000 + total]);
        assert_eq!(after[..at], before[..at], "nothing before the write changed");
        assert_eq!(after[at + total..], before[at + total..], "nothing after it");
        assert_eq!(paths, (2, 0), "both requests without a bounce");
    }

    #[test]
    fn o_direct_goes_straight_when_aligned_and_bounces_when_not() {
        let aligned = segs(&[(0x10000, 0x2000), (0x40000, 0x1000)]);
        let (seen, before, after, paths) = round_trip(CacheMode::None, &aligned, 8192, 65536);
        assert_eq!(paths, (2, 0));
        assert_eq!(seen, before[8192..8192 + 0x3000]);
        assert_eq!(after[65536 + 8192..65536 + 8192 + 0x3000], before[8192..8192 + 0x3000]);
        // A guest address off by 2, a length of 512 (not the 4096 the file
        // alignment asks), an unaligned image offset: all bounce, and the
        // data is still right (preadv on O_DIRECT would fail with EINVAL).
        for (segments, offset) in [
            (segs(&[(0x10002, 0x1000)]), 4096u64),
            (segs(&[(0x10000, 0x200)]), 4096),
            (segs(&[(0x10000, 0x1000)]), 512),
        ] {
            let len = segments[0].len;
            let (seen, before, after, paths) = round_trip(CacheMode::None, &segments, offset, 65536);
            assert_eq!(paths, (0, 2), "{segments:?} at {offset}");
            assert_eq!(seen, before[offset as usize..offset as usize + len]);
            let at = offset as usize + 65536;
            assert_eq!(after[at..at + len], before[offset as usize..offset as usize + len]);
            assert_eq!(after[..at], before[..at]);
        }
    }

    #[test]
    fn vectored_requests_are_range_checked_synced_and_refused_on_read_only_images() {
        let (_dir, path) = image(8192);
        let ram = AnonRam::new(1 << 20).unwrap();
        let bufs = GuestBuffers::map(&ram, &segs(&[(0, 1024)]), DmaDirection::ToDevice).unwrap();
        let mut img = RawImage::open(&path, CacheMode::Writeback, false).unwrap();
        assert!(matches!(img.read_to_guest(7680, &bufs, &mut Vec::new()), Err(BlockError::OutOfRange { .. })));
        assert!(matches!(img.write_from_guest(u64::MAX - 100, &bufs, &mut Vec::new()), Err(BlockError::OutOfRange { .. })));
        // Write-through: the write is durable before it completes.
        let mut wt = RawImage::open(&path, CacheMode::Writethrough, false).unwrap();
        wt.write_from_guest(0, &bufs, &mut Vec::new()).unwrap();
        assert_eq!((wt.sync_count(), wt.dma_paths()), (1, (1, 0)));
        let mut ro = RawImage::open(&path, CacheMode::Writeback, true).unwrap();
        assert_eq!(ro.write_from_guest(0, &bufs, &mut Vec::new()), Err(BlockError::ReadOnly));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
    }
}
