//! The audit line for a host I/O error: written once per failed request and
//! policy decision, at error level so it always reaches syslog.

use crate::block::errno_text;

pub struct IoErrorAudit<'a> {
    /// Drive id as QMP names it ("ide0-hd0").
    pub drive: &'a str,
    /// ATA or ATAPI command name ("WRITE DMA EXT", "FLUSH CACHE", "READ(10)").
    pub command: &'a str,
    pub lba: u64,
    pub sectors: u64,
    pub errno: i32,
    /// "report", "ignore", "stop" or "retry".
    pub action: &'a str,
}

pub fn format_io_error(rec: &IoErrorAudit, domid: Option<u32>) -> String {
    let dom = match domid {
        Some(d) => format!("domid={d}"),
        None => "domid=none".to_string(),
    };
    let range = if rec.sectors == 0 {
        "sectors=none".to_string()
    } else {
        format!("sectors={}-{}", rec.lba, rec.lba + rec.sectors - 1)
    };
    format!(
        "io-error {dom} drive={} cmd=\"{}\" {range} errno={} action={}",
        rec.drive,
        rec.command,
        errno_text(rec.errno),
        rec.action
    )
}

pub fn audit_io_error(rec: &IoErrorAudit) {
    log::error!("{}", format_io_error(rec, super::domid()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_line_names_everything_an_admin_needs() {
        let line = format_io_error(
            &IoErrorAudit { drive: "ide0-hd0", command: "WRITE DMA EXT", lba: 32768, sectors: 8, errno: 28, action: "report" },
            Some(3),
        );
        assert_eq!(
            line,
            "io-error domid=3 drive=ide0-hd0 cmd=\"WRITE DMA EXT\" sectors=32768-32775 errno=28 (No space left on device) action=report"
        );
    }
}
