//! A drive and its host side: backend, policy, identity and statistics.

use super::atapi::{AtapiState, CD_SECTOR_SIZE};
use super::identify::{Geometry, Identity};
use super::regs::SECTOR_SIZE;
use super::MediaKind;
use crate::block::engine::{BlockQueue, Medium};
use crate::block::{BlockOp, CacheMode, ErrorPolicy};
use super::info::BlockStats;
use std::time::Duration;

/// A drive and its host side.
pub(super) struct Drive {
    pub id: String,
    pub media: MediaKind,
    /// None: an empty CD-ROM drive (or tray open with the medium gone).
    pub medium: Option<Medium>,
    /// The drive's request queue on the I/O engine; None until the
    /// controller's engine is started.
    pub queue: Option<BlockQueue>,
    pub filename: String,
    pub cache: CacheMode,
    pub werror: ErrorPolicy,
    pub rerror: ErrorPolicy,
    pub identity: Identity,
    pub default_geometry: Geometry,
    pub geometry: Geometry,
    pub mult_sectors: u16,
    /// QEMU's identify_set: SET FEATURES edits the data once it exists.
    pub identify: Option<[u16; 256]>,
    pub atapi: AtapiState,
    pub stats: BlockStats,
    pub io_status: &'static str,
    pub smart_enabled: bool,
    pub smart_autosave: bool,
    /// The guest's write-cache setting (SET FEATURES 02h/82h), as the
    /// backend also has it; kept here for IDENTIFY.
    pub write_cache: bool,
    /// The backend said it can never succeed again; logged once.
    pub failed_permanently: bool,
}

impl Drive {
    /// query-blockstats counters for a request that completed.
    pub(super) fn account(&mut self, op: BlockOp, bytes: u64, elapsed: Duration) {
        let ns = elapsed.as_nanos() as u64;
        let s = &mut self.stats;
        match op {
            BlockOp::Read => {
                s.rd_bytes += bytes;
                s.rd_operations += 1;
                s.rd_total_time_ns += ns;
            }
            BlockOp::Write => {
                s.wr_bytes += bytes;
                s.wr_operations += 1;
                s.wr_total_time_ns += ns;
            }
            BlockOp::Flush => {
                s.flush_operations += 1;
                s.flush_total_time_ns += ns;
            }
            BlockOp::Discard => {
                s.unmap_operations += 1;
                s.unmap_bytes += bytes;
            }
        }
    }

    pub fn is_cdrom(&self) -> bool {
        self.media == MediaKind::Cdrom
    }

    /// QEMU keeps an I/O status (and reports `nospace`) only for drives
    /// whose policy can stop the VM.
    pub fn keeps_io_status(&self) -> bool {
        let stops = |p: ErrorPolicy| matches!(p, ErrorPolicy::Stop | ErrorPolicy::Enospc);
        stops(self.werror) || stops(self.rerror)
    }

    pub(super) fn nb_sectors(&self) -> u64 {
        self.medium.as_ref().map_or(0, |m| m.size() / SECTOR_SIZE as u64)
    }

    pub(super) fn cd_sectors(&self) -> Option<u64> {
        if self.atapi.tray_open() {
            return None;
        }
        self.medium.as_ref().map(|m| m.size() / CD_SECTOR_SIZE as u64)
    }
}
