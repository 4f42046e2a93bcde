//! Logging: every record goes to stderr (libxl's qemu-dm-<name>.log) and,
//! when a syslog socket is there, to syslog (facility daemon). Host I/O
//! errors and the policy actions taken for them are audit records: one line
//! each, with domid, drive, command, sector range, errno and action.

pub mod audit;
pub mod ratelimit;

pub use audit::{audit_io_error, IoErrorAudit};
pub use ratelimit::{Clock, RateLimiter};

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use syslog::{Facility, Formatter3164, LoggerBackend};

static DOMID: OnceLock<u32> = OnceLock::new();

/// Record the domain this device model serves; audit lines carry it.
pub fn set_domid(domid: u32) {
    let _ = DOMID.set(domid);
}

pub fn domid() -> Option<u32> {
    DOMID.get().copied()
}

struct DualLogger {
    level: LevelFilter,
    syslog: Option<Mutex<syslog::Logger<LoggerBackend, Formatter3164>>>,
}

impl Log for DualLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = format!("{}", record.args());
        {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "xen-ioemu: {}: {}", record.level().as_str().to_lowercase(), msg);
        }
        if let Some(sys) = &self.syslog {
            let mut s = sys.lock().unwrap_or_else(|e| e.into_inner());
            let _ = match record.level() {
                Level::Error => s.err(&msg),
                Level::Warn => s.warning(&msg),
                Level::Info => s.info(&msg),
                Level::Debug | Level::Trace => s.debug(&msg),
            };
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Install the logger once. `XEN_IOEMU_LOG=debug|info|warn|error` picks the
/// level (default info). Syslog is skipped silently when no daemon listens:
/// stderr still gets every line.
pub fn init() {
    let level = match std::env::var("XEN_IOEMU_LOG").as_deref() {
        Ok("trace") => LevelFilter::Trace,
        Ok("debug") => LevelFilter::Debug,
        Ok("warn") => LevelFilter::Warn,
        Ok("error") => LevelFilter::Error,
        Ok("off") => LevelFilter::Off,
        _ => LevelFilter::Info,
    };
    let formatter = Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "xen-ioemu".into(),
        pid: std::process::id(),
    };
    let syslog = syslog::unix(formatter).ok().map(Mutex::new);
    let logger = DualLogger { level, syslog };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// Tests see the records their own thread logs: a process-wide logger
/// (installed once) forwards each record to the calling thread's buffer, so
/// parallel tests do not see each other's lines.
#[cfg(test)]
pub mod testlog {
    use log::{Level, Log, Metadata, Record};
    use std::cell::RefCell;

    thread_local! {
        static CAPTURED: RefCell<Option<Vec<(Level, String)>>> = const { RefCell::new(None) };
    }

    struct Capture;

    impl Log for Capture {
        fn enabled(&self, _: &Metadata) -> bool {
            true
        }
        fn log(&self, record: &Record) {
            CAPTURED.with(|c| {
                if let Some(v) = c.borrow_mut().as_mut() {
                    v.push((record.level(), record.args().to_string()));
                }
            });
        }
        fn flush(&self) {}
    }

    static LOGGER: Capture = Capture;

    /// Run `f` and return the records it logged on this thread.
    pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<(Level, String)>) {
        let _ = log::set_logger(&LOGGER);
        // Every time, not only after installing: a test racing the installer
        // must not log while the level is still Off.
        log::set_max_level(log::LevelFilter::Trace);
        CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
        let r = f();
        let lines = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
        (r, lines)
    }
}
