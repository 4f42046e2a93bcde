//! One blkif request, parsed from its slot copy and checked against the
//! disk before anything is submitted: the operation, the segment count,
//! each segment's sector span inside its page, and the sector range
//! against the image size (no overflow). Grant references are checked by
//! the hypervisor when the data is copied.
//!
//! An indirect request (`BLKIF_OP_INDIRECT`, offered through
//! `feature-max-indirect-segments`) keeps its segment list in pages the
//! frontend grants: they are copied once into our buffer and parsed from
//! that copy, with the same checks as a direct request's segments.

use super::ring::RawRequest;
use super::{GrantCopier, GrantError};
use xen_sys::blkif::*;

/// Sectors of 512 bytes per 4 KiB page.
const SECTORS_PER_PAGE: u8 = 8;
const SECTOR: u64 = 1 << BLKIF_SECTOR_SHIFT;
const PAGE_BYTES: usize = 4096;
/// Segment descriptors in one indirect page.
pub const SEGMENTS_PER_INDIRECT_PAGE: usize = PAGE_BYTES / SEGMENT_SIZE;
/// What we advertise in `feature-max-indirect-segments`: Linux blkback's
/// MAX_INDIRECT_SEGMENTS (one descriptor page, 1 MiB per request). Linux
/// blkfront uses at most 32 unless its max_indirect_segments is raised.
pub const MAX_INDIRECT_SEGMENTS: u16 = 256;
const _: () = assert!(MAX_INDIRECT_SEGMENTS as usize <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * SEGMENTS_PER_INDIRECT_PAGE);
/// The most data one request can carry, direct or indirect.
pub const MAX_REQUEST_BYTES: usize = MAX_INDIRECT_SEGMENTS as usize * PAGE_BYTES;

/// A piece of a granted page: `len` bytes at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub gref: u32,
    pub offset: u16,
    pub len: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    Write,
    /// FLUSH_DISKCACHE: a flush; with segments (Linux's REQ_FUA/PREFLUSH
    /// writes), a flush, the write, and a flush after it.
    Flush,
    /// WRITE_BARRIER: as Flush (QEMU's pre- and post-sync).
    Barrier,
    Discard,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkRequest {
    pub id: u64,
    /// The operation byte, echoed in the response.
    pub operation: u8,
    pub kind: RequestKind,
    /// First 512-byte sector.
    pub sector: u64,
    /// 512-byte sectors covered (data, or the discard's range).
    pub sectors: u64,
    pub segments: Vec<Segment>,
}

impl BlkRequest {
    pub fn byte_offset(&self) -> u64 {
        self.sector * SECTOR
    }
    pub fn data_len(&self) -> usize {
        self.segments.iter().map(|s| usize::from(s.len)).sum()
    }
    pub fn writes_data(&self) -> bool {
        matches!(self.kind, RequestKind::Write | RequestKind::Flush | RequestKind::Barrier) && !self.segments.is_empty()
    }
}

/// What the disk allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLimits {
    /// Size in 512-byte sectors.
    pub sectors: u64,
    pub read_only: bool,
    pub discard: bool,
    /// Segments an indirect request may carry (0: indirect is not offered,
    /// and BLKIF_OP_INDIRECT is an unsupported operation).
    pub max_indirect_segments: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("operation {0} is not supported")]
    Unsupported(u8),
    #[error("{count} segments (1 to {max} allowed)")]
    SegmentCount { count: u16, max: u16 },
    #[error("indirect operation {0} is not supported (read and write are)")]
    IndirectOperation(u8),
    #[error("indirect descriptor page: {0}")]
    IndirectGrant(GrantError),
    #[error("segment {index}: sectors {first}-{last} are not inside one page")]
    SegmentSpan { index: usize, first: u8, last: u8 },
    #[error("sectors {sector}+{count} are past the end of the {size}-sector disk")]
    OutOfRange { sector: u64, count: u64, size: u64 },
    #[error("write to a read-only disk")]
    ReadOnly,
}

impl Rejection {
    /// The status the frontend gets.
    pub fn status(&self) -> i16 {
        match self {
            Rejection::Unsupported(_) | Rejection::IndirectOperation(_) => BLKIF_RSP_EOPNOTSUPP,
            _ => BLKIF_RSP_ERROR,
        }
    }
}

// Little-endian fields of a request slot or a descriptor page.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// The id and operation of any request, for answering one we reject. An
/// indirect request is answered with its `indirect_op`, as Linux blkback
/// does and blkfront checks (the id sits where a direct request's does).
pub fn id_and_operation(raw: &RawRequest, layout: &BlkifLayout) -> (u64, u8) {
    let op = match raw[layout.req_operation] {
        BLKIF_OP_INDIRECT => raw[layout.indirect_op],
        op => op,
    };
    (u64_at(raw, layout.req_id), op)
}

/// One segment descriptor (`struct blkif_request_segment`) at `at`.
fn segment_at(bytes: &[u8], at: usize, index: usize) -> Result<Segment, Rejection> {
    let gref = u32_at(bytes, at + SEGMENT_GREF);
    let (first, last) = (bytes[at + SEGMENT_FIRST_SECT], bytes[at + SEGMENT_LAST_SECT]);
    if first > last || last >= SECTORS_PER_PAGE {
        return Err(Rejection::SegmentSpan { index, first, last });
    }
    let count = u16::from(last - first) + 1;
    Ok(Segment { gref, offset: u16::from(first) * SECTOR as u16, len: count * SECTOR as u16 })
}

fn sectors_of(segments: &[Segment]) -> u64 {
    segments.iter().map(|s| u64::from(s.len) >> BLKIF_SECTOR_SHIFT).sum()
}

fn check_range(sector: u64, count: u64, disk: &DiskLimits) -> Result<(), Rejection> {
    match sector.checked_add(count) {
        Some(end) if end <= disk.sectors => Ok(()),
        _ => Err(Rejection::OutOfRange { sector, count, size: disk.sectors }),
    }
}

/// Parse and check one request; an indirect one's descriptor pages are
/// copied through `grants`. On rejection the caller answers with
/// `id_and_operation` and [`Rejection::status`].
pub fn parse(raw: &RawRequest, layout: &BlkifLayout, disk: &DiskLimits, grants: &dyn GrantCopier) -> Result<BlkRequest, Rejection> {
    if raw[layout.req_operation] == BLKIF_OP_INDIRECT && disk.max_indirect_segments > 0 {
        return parse_indirect(raw, layout, disk, grants);
    }
    let (id, operation) = (u64_at(raw, layout.req_id), raw[layout.req_operation]);
    let kind = match operation {
        BLKIF_OP_READ => RequestKind::Read,
        BLKIF_OP_WRITE => RequestKind::Write,
        BLKIF_OP_FLUSH_DISKCACHE => RequestKind::Flush,
        BLKIF_OP_WRITE_BARRIER => RequestKind::Barrier,
        BLKIF_OP_DISCARD if disk.discard => RequestKind::Discard,
        other => return Err(Rejection::Unsupported(other)),
    };
    if kind != RequestKind::Read && disk.read_only {
        return Err(Rejection::ReadOnly);
    }
    if kind == RequestKind::Discard {
        let sector = u64_at(raw, layout.discard_sector_number);
        let sectors = u64_at(raw, layout.discard_nr_sectors);
        check_range(sector, sectors, disk)?;
        return Ok(BlkRequest { id, operation, kind, sector, sectors, segments: Vec::new() });
    }
    let nr = raw[layout.req_nr_segments];
    let flush_only = matches!(kind, RequestKind::Flush | RequestKind::Barrier) && nr == 0;
    if !flush_only && (nr == 0 || usize::from(nr) > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
        return Err(Rejection::SegmentCount { count: u16::from(nr), max: BLKIF_MAX_SEGMENTS_PER_REQUEST as u16 });
    }
    let sector = if flush_only { 0 } else { u64_at(raw, layout.req_sector_number) };
    let segments = (0..usize::from(nr))
        .map(|index| segment_at(raw, layout.req_seg + index * SEGMENT_SIZE, index))
        .collect::<Result<Vec<_>, _>>()?;
    let sectors = sectors_of(&segments);
    if !flush_only {
        check_range(sector, sectors, disk)?;
    }
    Ok(BlkRequest { id, operation, kind, sector, sectors, segments })
}

/// An indirect READ or WRITE: up to `max_indirect_segments` segments, in
/// ceil(n / 512) descriptor pages whose grant references are in the slot.
fn parse_indirect(raw: &RawRequest, layout: &BlkifLayout, disk: &DiskLimits, grants: &dyn GrantCopier) -> Result<BlkRequest, Rejection> {
    let (id, operation) = id_and_operation(raw, layout);
    let kind = match operation {
        BLKIF_OP_READ => RequestKind::Read,
        BLKIF_OP_WRITE => RequestKind::Write,
        other => return Err(Rejection::IndirectOperation(other)),
    };
    if kind == RequestKind::Write && disk.read_only {
        return Err(Rejection::ReadOnly);
    }
    let nr = u16_at(raw, layout.indirect_nr_segments);
    // Never past what the slot's eight descriptor references can hold.
    let max = disk.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS);
    if nr == 0 || nr > max {
        return Err(Rejection::SegmentCount { count: nr, max });
    }
    let pages = usize::from(nr).div_ceil(SEGMENTS_PER_INDIRECT_PAGE);
    let descriptor_pages: Vec<Segment> = (0..pages)
        .map(|i| Segment { gref: u32_at(raw, layout.indirect_grefs + 4 * i), offset: 0, len: PAGE_BYTES as u16 })
        .collect();
    let mut descriptors = vec![0u8; pages * PAGE_BYTES];
    grants.copy_from_grants(&descriptor_pages, &mut descriptors).map_err(Rejection::IndirectGrant)?;
    let segments = (0..usize::from(nr))
        .map(|index| segment_at(&descriptors, index * SEGMENT_SIZE, index))
        .collect::<Result<Vec<_>, _>>()?;
    let sector = u64_at(raw, layout.indirect_sector_number);
    let sectors = sectors_of(&segments);
    check_range(sector, sectors, disk)?;
    Ok(BlkRequest { id, operation, kind, sector, sectors, segments })
}
