//! The guest memory of one DMA request, mapped for the host: every PRD
//! segment as a [`GuestIoRegion`], held for as long as the request is on
//! the host, so that a backend on a plain file descriptor can move the data
//! with preadv/pwritev (`uio`) and nothing is copied. Backends that cannot
//! (blkdebug, the RAM image, O_DIRECT with guest buffers that are not
//! aligned) bounce through the worker's scratch buffer instead
//! ([`bounce_read`], [`bounce_write`]).
//!
//! Bounds: the device builds at most 512 segments of at most 64 KiB (the
//! PRD table limit) and the engine refuses more than `MAX_DMA_BYTES` in all
//! before anything is mapped, so a request pins at most 32 MiB of guest
//! memory and its iovec list has at most a few thousand entries.

use super::engine::GuestSegment;
use super::{BlockBackend, BlockError};
use crate::vm::{DmaDirection, GuestIoRegion, GuestMemory, MemError};

/// Most iovecs the kernel takes in one call (IOV_MAX on Linux).
pub const MAX_IOVECS: usize = 1024;

/// The mapped segments of one request, in transfer order.
pub struct GuestBuffers {
    regions: Vec<GuestIoRegion>,
    len: usize,
}

impl GuestBuffers {
    /// Map every segment. Fails on the first segment that is not guest RAM
    /// or cannot be mapped (or when the memory has no host view at all);
    /// nothing has been transferred then.
    pub fn map(mem: &dyn GuestMemory, segments: &[GuestSegment], direction: DmaDirection) -> Result<Self, MemError> {
        let mut regions = Vec::with_capacity(segments.len());
        let mut len = 0usize;
        for s in segments {
            regions.push(mem.map_for_io(s.gpa, s.len, direction)?);
            len = len.saturating_add(s.len);
        }
        Ok(GuestBuffers { regions, len })
    }

    /// Bytes in all segments.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host pieces in transfer order, with pieces that continue each
    /// other in host memory merged (guests often hand out runs of
    /// consecutive pages as separate PRD entries).
    fn pieces(&self) -> impl Iterator<Item = (*mut u8, usize)> + '_ {
        let mut all = self.regions.iter().flat_map(|r| r.slices()).peekable();
        std::iter::from_fn(move || {
            let (start, mut len) = all.next()?;
            while let Some(&(next, n)) = all.peek() {
                if (start as usize).checked_add(len) != Some(next as usize) {
                    break;
                }
                len += n;
                all.next();
            }
            Some((start, len))
        })
    }

    /// Whether every host piece starts at an address and has a length that
    /// are multiples of `align` (what O_DIRECT asks of each iovec).
    pub fn is_aligned(&self, align: usize) -> bool {
        let align = align.max(1);
        self.pieces().all(|(p, n)| (p as usize).is_multiple_of(align) && n.is_multiple_of(align))
    }

    /// The iovecs for bytes `from..from + max_bytes` (cut at the end), at
    /// most [`MAX_IOVECS`] of them: a caller loops until it has moved all.
    /// The pointers are valid while `self` lives; see `GuestIoRegion` for
    /// what may be done with them (hand them to the kernel, nothing else).
    pub fn iovecs(&self, from: usize, max_bytes: usize) -> Vec<libc::iovec> {
        let mut out = Vec::new();
        let (mut skip, mut left) = (from, max_bytes);
        for (p, n) in self.pieces() {
            if left == 0 || out.len() == MAX_IOVECS {
                break;
            }
            if skip >= n {
                skip -= n;
                continue;
            }
            let take = (n - skip).min(left);
            out.push(libc::iovec { iov_base: p.wrapping_add(skip).cast(), iov_len: take });
            left -= take;
            skip = 0;
        }
        out
    }

    /// Copy `data` into the segments from byte 0 (volatile), as far as both
    /// reach; returns the bytes copied.
    pub fn copy_from(&self, data: &[u8]) -> usize {
        let mut at = 0;
        for r in &self.regions {
            if at == data.len() {
                break;
            }
            at += r.write_some(0, &data[at..]);
        }
        at
    }

    /// Copy the segments into `buf` from byte 0 (volatile), as far as both
    /// reach; returns the bytes copied.
    pub fn copy_to(&self, buf: &mut [u8]) -> usize {
        let mut at = 0;
        for r in &self.regions {
            if at == buf.len() {
                break;
            }
            at += r.read_some(0, &mut buf[at..]);
        }
        at
    }

    /// Zero bytes `from..` of the segments (a read that met the end of the
    /// host file: those bytes read as zeros, as through `read_at`).
    pub fn zero_from(&self, from: usize) {
        const ZEROS: [u8; 4096] = [0; 4096];
        let mut skip = from;
        for r in &self.regions {
            if skip >= r.len() {
                skip -= r.len();
                continue;
            }
            let mut at = skip;
            while at < r.len() {
                let n = r.write_some(at, &ZEROS[..(r.len() - at).min(ZEROS.len())]);
                if n == 0 {
                    break;
                }
                at += n;
            }
            skip = 0;
        }
    }
}

/// A buffer of `len` bytes from the worker's scratch space; it only grows,
/// so a steady stream of bounced DMA allocates and zeroes nothing.
pub fn scratch_slice(scratch: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    &mut scratch[..len]
}

/// A DMA read through a bounce buffer: one `read_at` of the whole request
/// (so a fault layer sees the request the guest made), then a copy into
/// guest memory.
pub fn bounce_read<B: BlockBackend + ?Sized>(
    backend: &mut B,
    offset: u64,
    dst: &GuestBuffers,
    scratch: &mut Vec<u8>,
) -> Result<(), BlockError> {
    let buf = scratch_slice(scratch, dst.len());
    backend.read_at(offset, buf)?;
    let copied = dst.copy_from(buf);
    debug_assert_eq!(copied, dst.len());
    Ok(())
}

/// A DMA write through a bounce buffer: guest memory is copied out in full
/// first, then written with one `write_at`.
pub fn bounce_write<B: BlockBackend + ?Sized>(
    backend: &mut B,
    offset: u64,
    src: &GuestBuffers,
    scratch: &mut Vec<u8>,
) -> Result<(), BlockError> {
    let buf = scratch_slice(scratch, src.len());
    let copied = src.copy_to(buf);
    debug_assert_eq!(copied, src.len());
    backend.write_at(offset, buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qtest::AnonRam;

    fn segs(list: &[(u64, usize)]) -> Vec<GuestSegment> {
        list.iter().map(|&(gpa, len)| GuestSegment { gpa, len }).collect()
    }

    #[test]
    fn mapping_fails_on_any_bad_segment_and_sums_lengths() {
        let ram = AnonRam::new(1 << 20).unwrap();
        let ok = GuestBuffers::map(&ram, &segs(&[(0x1000, 512), (0x3000, 4096)]), DmaDirection::ToDevice).unwrap();
        assert_eq!(ok.len(), 4608);
        let bad = segs(&[(0x1000, 512), ((1 << 20) - 100, 512)]);
        assert_eq!(
            GuestBuffers::map(&ram, &bad, DmaDirection::ToDevice).err(),
            Some(MemError::OutOfRange { gpa: (1 << 20) - 100, len: 512 })
        );
    }

    #[test]
    fn iovecs_merge_adjacent_segments_and_cut_at_offsets() {
        let ram = AnonRam::new(1 << 20).unwrap();
        // 0x1000+0x800 and 0x1800+0x800 continue each other; 0x8000 does not.
        let bufs = GuestBuffers::map(&ram, &segs(&[(0x1000, 0x800), (0x1800, 0x800), (0x8000, 0x200)]), DmaDirection::FromDevice)
            .unwrap();
        let lens = |v: Vec<libc::iovec>| v.iter().map(|i| i.iov_len).collect::<Vec<_>>();
        assert_eq!(lens(bufs.iovecs(0, usize::MAX)), vec![0x1000, 0x200]);
        assert_eq!(lens(bufs.iovecs(0xf00, 0x180)), vec![0x100, 0x80]);
        assert_eq!(lens(bufs.iovecs(0x1200, 1)), Vec::<usize>::new(), "past the end");
        let first = bufs.iovecs(0x10, 1)[0].iov_base as usize;
        assert_eq!(first - bufs.iovecs(0, 1)[0].iov_base as usize, 0x10);
        assert!(bufs.is_aligned(512) && !bufs.is_aligned(4096 * 2), "0x1000 + 0x200");
        let odd = GuestBuffers::map(&ram, &segs(&[(0x1000, 0x1000), (0x4002, 0x200)]), DmaDirection::ToDevice).unwrap();
        assert!(!odd.is_aligned(512), "a misaligned address");
    }

    #[test]
    fn copies_and_zeroing_follow_the_segments_in_order() {
        let ram = AnonRam::new(1 << 20).unwrap();
        ram.write(0, &vec![0xee; 0x10000]).unwrap();
        let bufs = GuestBuffers::map(&ram, &segs(&[(0x5000, 3), (0x100, 5), (0x2ffe, 4)]), DmaDirection::FromDevice).unwrap();
        assert_eq!(bufs.copy_from(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]), 12, "only 12 bytes of room");
        let mut b = [0u8; 5];
        ram.read(0x5000, &mut b[..4]).unwrap();
        assert_eq!(&b[..4], &[1, 2, 3, 0xee]);
        ram.read(0xff, &mut b[..]).unwrap();
        assert_eq!(b, [0xee, 4, 5, 6, 7]);
        let mut back = [0u8; 12];
        assert_eq!(bufs.copy_to(&mut back), 12);
        assert_eq!(back, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        bufs.zero_from(4);
        assert_eq!(bufs.copy_to(&mut back), 12);
        assert_eq!(back, [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        ram.read(0x3002, &mut b[..1]).unwrap();
        assert_eq!(b[0], 0xee, "nothing after the last segment");
    }
}
