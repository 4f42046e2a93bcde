//! The qdisk disks as QMP's query-block and query-blockstats show them.
//! libxenstat (xentop's library) asks query-blockstats on libxl's
//! `libxenstat-cmd` socket, then matches each drive to its xenstore backend
//! by the image file query-block names (`params` after its first '/').

use super::QdiskStats;
use crate::block::CacheMode;
use crate::machine::{BlockStats, DriveInfo, InsertedMedium};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One served disk. A frontend that reconnects gets a new ring and new
/// counters; the earlier ones are kept so the figures only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PvDiskInfo {
    /// The xenstore device id ("51728").
    pub devid: String,
    pub file: String,
    pub read_only: bool,
    /// Bytes.
    pub size: u64,
    pub earlier: QdiskStats,
    pub current: QdiskStats,
}

/// The served disks by vdev ("xvdb"): written by the backend threads, read
/// by QMP.
pub type PvDiskTable = Arc<Mutex<BTreeMap<String, PvDiskInfo>>>;

impl PvDiskInfo {
    /// The connection ended: its counters join the earlier ones.
    pub fn end_connection(&mut self) {
        self.earlier = self.total();
        self.current = QdiskStats::default();
    }

    pub fn total(&self) -> QdiskStats {
        let (a, b) = (&self.earlier, &self.current);
        QdiskStats {
            rd_operations: a.rd_operations + b.rd_operations,
            wr_operations: a.wr_operations + b.wr_operations,
            flush_operations: a.flush_operations + b.flush_operations,
            unmap_operations: a.unmap_operations + b.unmap_operations,
            rd_bytes: a.rd_bytes + b.rd_bytes,
            wr_bytes: a.wr_bytes + b.wr_bytes,
            rd_total_time_ns: a.rd_total_time_ns + b.rd_total_time_ns,
            wr_total_time_ns: a.wr_total_time_ns + b.wr_total_time_ns,
            flush_total_time_ns: a.flush_total_time_ns + b.flush_total_time_ns,
            failed_rd_operations: a.failed_rd_operations + b.failed_rd_operations,
            failed_wr_operations: a.failed_wr_operations + b.failed_wr_operations,
            failed_flush_operations: a.failed_flush_operations + b.failed_flush_operations,
            invalid_operations: a.invalid_operations + b.invalid_operations,
        }
    }
}

/// The table's disks as QMP drives: id the vdev, qdev as QEMU's xen-block
/// names its devices (`xen-qdisk-<devid>`).
pub fn drive_infos(table: &PvDiskTable) -> Vec<DriveInfo> {
    let table = table.lock().unwrap_or_else(|e| e.into_inner());
    table
        .iter()
        .map(|(vdev, disk)| {
            let s = disk.total();
            DriveInfo {
                id: vdev.clone(),
                qdev: format!("xen-qdisk-{}", disk.devid),
                cdrom: false,
                removable: false,
                tray_open: false,
                locked: false,
                io_status: None,
                inserted: Some(InsertedMedium {
                    file: disk.file.clone(),
                    read_only: disk.read_only,
                    size: disk.size,
                    cache: CacheMode::Writeback,
                }),
                stats: BlockStats {
                    rd_bytes: s.rd_bytes,
                    wr_bytes: s.wr_bytes,
                    rd_operations: s.rd_operations,
                    wr_operations: s.wr_operations,
                    flush_operations: s.flush_operations,
                    unmap_operations: s.unmap_operations,
                    failed_rd_operations: s.failed_rd_operations,
                    failed_wr_operations: s.failed_wr_operations,
                    failed_flush_operations: s.failed_flush_operations,
                    rd_total_time_ns: s.rd_total_time_ns,
                    wr_total_time_ns: s.wr_total_time_ns,
                    flush_total_time_ns: s.flush_total_time_ns,
                    ..BlockStats::default()
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_shows_its_file_and_the_counters_of_every_connection() {
        let table = PvDiskTable::default();
        let mut disk = PvDiskInfo {
            devid: "51728".into(),
            file: "/var/lib/xen/images/data.img".into(),
            read_only: false,
            size: 64 << 20,
            ..PvDiskInfo::default()
        };
        disk.current = QdiskStats { wr_operations: 16, wr_bytes: 16 << 20, ..QdiskStats::default() };
        disk.end_connection();
        disk.current = QdiskStats { wr_operations: 2, wr_bytes: 8192, rd_operations: 5, rd_bytes: 4096, ..QdiskStats::default() };
        table.lock().unwrap().insert("xvdb".into(), disk);

        let drives = drive_infos(&table);
        assert_eq!(drives.len(), 1);
        let d = &drives[0];
        assert_eq!((d.id.as_str(), d.qdev.as_str()), ("xvdb", "xen-qdisk-51728"));
        let medium = d.inserted.as_ref().expect("a medium");
        assert_eq!((medium.file.as_str(), medium.read_only, medium.size), ("/var/lib/xen/images/data.img", false, 64 << 20));
        assert_eq!((d.stats.wr_operations, d.stats.wr_bytes), (18, (16 << 20) + 8192));
        assert_eq!((d.stats.rd_operations, d.stats.rd_bytes), (5, 4096));
    }
}
