//! The PV block protocol (`xen/io/blkif.h`, `xen/io/ring.h`) as byte
//! offsets, for both ABIs a frontend can speak: native x86_64 and
//! `x86_32-abi` (a 32-bit guest, whose 64-bit fields are only 4-aligned).
//! Requests are parsed from bytes by offset rather than cast, so one parser
//! serves both; `tests/layout.rs` checks every offset against blkif.h,
//! compiled natively and under `#pragma pack(4)` (how the x86_32 ABI is
//! defined by QEMU's and Linux's backends).

pub const BLKIF_OP_READ: u8 = 0;
pub const BLKIF_OP_WRITE: u8 = 1;
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
pub const BLKIF_OP_DISCARD: u8 = 5;
pub const BLKIF_OP_INDIRECT: u8 = 6;

pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
pub const BLKIF_RSP_ERROR: i16 = -1;
pub const BLKIF_RSP_OKAY: i16 = 0;

/// Segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// blkif sectors are always 512 bytes, whatever `sector-size` says.
pub const BLKIF_SECTOR_SHIFT: u32 = 9;
/// `BLKIF_DISCARD_SECURE` in a discard request's flag byte.
pub const BLKIF_DISCARD_SECURE: u8 = 1;

/// Grant references of descriptor pages in one indirect request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;

/// `struct blkif_request_segment`: gref u32, first_sect u8, last_sect u8.
pub const SEGMENT_SIZE: usize = 8;
pub const SEGMENT_GREF: usize = 0;
pub const SEGMENT_FIRST_SECT: usize = 4;
pub const SEGMENT_LAST_SECT: usize = 5;

/// Byte offsets inside one ring entry, per ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkifLayout {
    /// Name as the frontend writes it in its `protocol` node.
    pub protocol: &'static str,
    pub request_size: usize,
    pub response_size: usize,
    pub req_operation: usize,
    pub req_nr_segments: usize,
    pub req_handle: usize,
    pub req_id: usize,
    pub req_sector_number: usize,
    pub req_seg: usize,
    /// Discard: `flag` shares the byte of `nr_segments`.
    pub discard_flag: usize,
    pub discard_id: usize,
    pub discard_sector_number: usize,
    pub discard_nr_sectors: usize,
    /// `struct blkif_request_indirect`: `indirect_op` shares the byte of
    /// `nr_segments`, whose own u16 follows.
    pub indirect_op: usize,
    pub indirect_nr_segments: usize,
    pub indirect_id: usize,
    pub indirect_sector_number: usize,
    pub indirect_grefs: usize,
    pub rsp_id: usize,
    pub rsp_operation: usize,
    pub rsp_status: usize,
}

impl BlkifLayout {
    /// One slot of the shared ring: the larger of request and response.
    pub const fn entry_size(&self) -> usize {
        if self.request_size > self.response_size {
            self.request_size
        } else {
            self.response_size
        }
    }
}

pub const BLKIF_X86_64: BlkifLayout = BlkifLayout {
    protocol: "x86_64-abi",
    request_size: 112,
    response_size: 16,
    req_operation: 0,
    req_nr_segments: 1,
    req_handle: 2,
    req_id: 8,
    req_sector_number: 16,
    req_seg: 24,
    discard_flag: 1,
    discard_id: 8,
    discard_sector_number: 16,
    discard_nr_sectors: 24,
    indirect_op: 1,
    indirect_nr_segments: 2,
    indirect_id: 8,
    indirect_sector_number: 16,
    indirect_grefs: 28,
    rsp_id: 0,
    rsp_operation: 8,
    rsp_status: 10,
};

pub const BLKIF_X86_32: BlkifLayout = BlkifLayout {
    protocol: "x86_32-abi",
    request_size: 108,
    response_size: 12,
    req_operation: 0,
    req_nr_segments: 1,
    req_handle: 2,
    req_id: 4,
    req_sector_number: 12,
    req_seg: 20,
    discard_flag: 1,
    discard_id: 4,
    discard_sector_number: 12,
    discard_nr_sectors: 20,
    indirect_op: 1,
    indirect_nr_segments: 2,
    indirect_id: 4,
    indirect_sector_number: 12,
    indirect_grefs: 24,
    rsp_id: 0,
    rsp_operation: 8,
    rsp_status: 10,
};

/// `struct blkif_sring` header (ring.h): req_prod, req_event, rsp_prod,
/// rsp_event, then padding up to the first entry.
pub const SRING_REQ_PROD: usize = 0;
pub const SRING_REQ_EVENT: usize = 4;
pub const SRING_RSP_PROD: usize = 8;
pub const SRING_RSP_EVENT: usize = 12;
pub const SRING_ENTRIES: usize = 64;

/// Entries in a shared ring of `bytes`: the largest power of two that fits
/// after the header (ring.h's `__RING_SIZE`).
pub const fn ring_entries(bytes: usize, entry_size: usize) -> u32 {
    if bytes <= SRING_ENTRIES || entry_size == 0 {
        return 0;
    }
    let n = (bytes - SRING_ENTRIES) / entry_size;
    if n == 0 {
        0
    } else {
        1u32 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// xenbus states (`xen/io/xenbus.h`).
pub const XENBUS_STATE_UNKNOWN: u32 = 0;
pub const XENBUS_STATE_INITIALISING: u32 = 1;
pub const XENBUS_STATE_INIT_WAIT: u32 = 2;
pub const XENBUS_STATE_INITIALISED: u32 = 3;
pub const XENBUS_STATE_CONNECTED: u32 = 4;
pub const XENBUS_STATE_CLOSING: u32 = 5;
pub const XENBUS_STATE_CLOSED: u32 = 6;
pub const XENBUS_STATE_RECONFIGURING: u32 = 7;
pub const XENBUS_STATE_RECONFIGURED: u32 = 8;

/// `VDISK_*` bits of the backend's `info` node.
pub const VDISK_CDROM: u32 = 0x1;
pub const VDISK_REMOVABLE: u32 = 0x2;
pub const VDISK_READONLY: u32 = 0x4;
