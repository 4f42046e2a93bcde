//! The audit line for a host I/O error: written once per failed request and
//! policy decision, at error level so it always reaches syslog.

use super::ratelimit::RateLimiter;
use crate::block::errno_text;
use log::Level;

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

/// Log the audit line, rate limited per drive so a guest that loops on a
/// failing sector cannot flood syslog. The first lines of a burst are exact;
/// the summary after it counts the hidden ones per errno and action, so
/// every host error still shows in the log, if only as a count.
pub fn audit_io_error(rec: &IoErrorAudit) {
    let mut limiter = super::ratelimit::global().lock().unwrap_or_else(|e| e.into_inner());
    audit_io_error_with(&mut limiter, rec, super::domid());
}

pub fn audit_io_error_with(limiter: &mut RateLimiter, rec: &IoErrorAudit, domid: Option<u32>) {
    let dom = match domid {
        Some(d) => format!("domid={d}"),
        None => "domid=none".to_string(),
    };
    let sub = format!("{dom} drive={}", rec.drive);
    let tally = format!("errno={} action={}", errno_text(rec.errno), rec.action);
    limiter.log_keyed(Level::Error, "io-error", &sub, &tally, format_args!("{}", format_io_error(rec, domid)));
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

    #[test]
    fn an_io_error_flood_keeps_the_burst_exact_and_counts_the_rest_per_errno_and_action() {
        use crate::logging::ratelimit::{Clock, DEFAULT_BURST, DEFAULT_INTERVAL};
        let clock = Clock::manual();
        let mut rl = RateLimiter::new(DEFAULT_BURST, DEFAULT_INTERVAL, clock.clone());
        let rec = |lba, errno, action| IoErrorAudit { drive: "ide0-hd0", command: "WRITE DMA", lba, sectors: 1, errno, action };
        let ((), lines) = crate::logging::testlog::capture(|| {
            for i in 0..10_000u64 {
                let (errno, action) = if i % 4 == 3 { (5, "stop") } else { (28, "report") };
                audit_io_error_with(&mut rl, &rec(i, errno, action), Some(7));
            }
            clock.advance(DEFAULT_INTERVAL);
            audit_io_error_with(&mut rl, &rec(0, 28, "report"), Some(7));
        });
        assert_eq!(lines.len(), DEFAULT_BURST as usize + 2, "{lines:#?}");
        for (i, (level, line)) in lines.iter().take(DEFAULT_BURST as usize).enumerate() {
            assert_eq!(*level, Level::Error);
            assert_eq!(line, &format_io_error(&rec(i as u64, if i % 4 == 3 { 5 } else { 28 }, if i % 4 == 3 { "stop" } else { "report" }), Some(7)));
        }
        // 10,000 - 10 hidden: of i in 10..10000, those with i % 4 == 3 are EIO.
        let eio = (10..10_000u64).filter(|i| i % 4 == 3).count();
        let enospc = 9_990 - eio;
        assert_eq!(
            lines[DEFAULT_BURST as usize].1,
            format!(
                "9990 similar messages suppressed (io-error domid=7 drive=ide0-hd0; \
                 errno=28 (No space left on device) action=report: {enospc}, errno=5 (Input/output error) action=stop: {eio})"
            )
        );
        assert!(lines[DEFAULT_BURST as usize + 1].1.starts_with("io-error domid=7 drive=ide0-hd0"));
    }
}
