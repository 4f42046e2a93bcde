//! One blkif request, parsed from its slot copy and checked against the
//! disk before anything is submitted: the operation, the segment count,
//! each segment's sector span inside its page, and the sector range
//! against the image size (no overflow). Grant references are checked by
//! the hypervisor when the data is copied.

use super::ring::RawRequest;
use xen_sys::blkif::*;

/// Sectors of 512 bytes per 4 KiB page.
const SECTORS_PER_PAGE: u8 = 8;
const SECTOR: u64 = 1 << BLKIF_SECTOR_SHIFT;

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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("operation {0} is not supported")]
    Unsupported(u8),
    #[error("{0} segments (1 to {BLKIF_MAX_SEGMENTS_PER_REQUEST} allowed)")]
    SegmentCount(u8),
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
            Rejection::Unsupported(_) => BLKIF_RSP_EOPNOTSUPP,
            _ => BLKIF_RSP_ERROR,
        }
    }
}

fn u64_at(raw: &RawRequest, at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(raw: &RawRequest, at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&raw[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The id and operation of any request, for answering one we reject.
pub fn id_and_operation(raw: &RawRequest, layout: &BlkifLayout) -> (u64, u8) {
    (u64_at(raw, layout.req_id), raw[layout.req_operation])
}

fn check_range(sector: u64, count: u64, disk: &DiskLimits) -> Result<(), Rejection> {
    match sector.checked_add(count) {
        Some(end) if end <= disk.sectors => Ok(()),
        _ => Err(Rejection::OutOfRange { sector, count, size: disk.sectors }),
    }
}

/// Parse and check one request. On rejection the caller answers with
/// `id_and_operation` and [`Rejection::status`].
pub fn parse(raw: &RawRequest, layout: &BlkifLayout, disk: &DiskLimits) -> Result<BlkRequest, Rejection> {
    let (id, operation) = id_and_operation(raw, layout);
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
        return Err(Rejection::SegmentCount(nr));
    }
    let sector = if flush_only { 0 } else { u64_at(raw, layout.req_sector_number) };
    let mut segments = Vec::with_capacity(usize::from(nr));
    let mut sectors = 0u64;
    for index in 0..usize::from(nr) {
        let at = layout.req_seg + index * SEGMENT_SIZE;
        let gref = u32_at(raw, at + SEGMENT_GREF);
        let (first, last) = (raw[at + SEGMENT_FIRST_SECT], raw[at + SEGMENT_LAST_SECT]);
        if first > last || last >= SECTORS_PER_PAGE {
            return Err(Rejection::SegmentSpan { index, first, last });
        }
        let count = u16::from(last - first) + 1;
        segments.push(Segment { gref, offset: u16::from(first) * SECTOR as u16, len: count * SECTOR as u16 });
        sectors += u64::from(count);
    }
    if !flush_only {
        check_range(sector, sectors, disk)?;
    }
    Ok(BlkRequest { id, operation, kind, sector, sectors, segments })
}
