//! Rate limits for log lines a guest can trigger at will (issue 7): a guest
//! that loops on a bad access must not be able to fill dom0's syslog.
//!
//! Each kind of line (a static name, plus a sub-key such as the drive) may
//! log a burst of lines per interval; further lines are counted, not
//! written. When a later interval starts, one summary line says how many
//! were suppressed and, per tally label (e.g. errno and action), how many
//! of each — so an admin still learns that, and what, was hidden.

use log::Level;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines of one kind written per interval before suppression starts: the
/// global limiter's, which the I/O-error audit lines go through (each is
/// an incident an admin must see, so a burst of them is written whole).
pub const DEFAULT_BURST: u32 = 10;
/// The same for lines a guest alone triggers, as often as it likes (a BAR
/// moved over another range, a port access of a refused size, its PV
/// driver's log port): one line per kind per interval, then the count
/// (issue 7). With 10 a hostile guest got 300 BAR lines into dom0's
/// syslog in 150 s (the storm scenario, 46 KB with the rest).
pub const GUEST_BURST: u32 = 1;
/// Length of one rate-limit interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Where the limiter reads the time: the system clock, or a clock tests
/// move by hand so intervals pass without sleeping.
#[derive(Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(Arc<Mutex<Instant>>),
}

impl Clock {
    /// A manual clock starting now.
    pub fn manual() -> Clock {
        Clock::Manual(Arc::new(Mutex::new(Instant::now())))
    }

    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Move a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
            *t += by;
        }
    }
}

struct KindState {
    kind: &'static str,
    sub: String,
    level: Level,
    window_start: Instant,
    logged: u32,
    suppressed: u64,
    /// Suppressed lines per tally label, so a summary can say what it hid.
    tally: BTreeMap<String, u64>,
}

impl KindState {
    fn take_summary(&mut self) -> Option<Summary> {
        if self.suppressed == 0 {
            return None;
        }
        let s = Summary {
            level: self.level,
            kind: self.kind,
            sub: self.sub.clone(),
            count: self.suppressed,
            tally: std::mem::take(&mut self.tally).into_iter().filter(|(label, _)| !label.is_empty()).collect(),
        };
        self.suppressed = 0;
        Some(s)
    }
}

/// "N similar messages suppressed (kind)", once per interval that hid any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub level: Level,
    pub kind: &'static str,
    pub sub: String,
    pub count: u64,
    /// (label, count) for every tally label the suppressed lines carried.
    pub tally: Vec<(String, u64)>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} similar messages suppressed ({}", self.count, self.kind)?;
        if !self.sub.is_empty() {
            write!(f, " {}", self.sub)?;
        }
        for (i, (label, n)) in self.tally.iter().enumerate() {
            write!(f, "{} {label}: {n}", if i == 0 { ";" } else { "," })?;
        }
        write!(f, ")")
    }
}

/// What the limiter decided for one line.
#[derive(Debug, Default)]
pub struct Admission {
    /// Write the line.
    pub log: bool,
    /// Summaries of earlier intervals to write first.
    pub summaries: Vec<Summary>,
}

pub struct RateLimiter {
    burst: u32,
    interval: Duration,
    clock: Clock,
    // Few kinds exist (one per call site, times drives), so a scan is
    // cheaper than hashing.
    kinds: Vec<KindState>,
    written: u64,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(DEFAULT_BURST, DEFAULT_INTERVAL, Clock::System)
    }
}

impl RateLimiter {
    /// The limiter of a device's (or a front's) guest-triggered lines.
    pub fn for_guest_lines() -> Self {
        Self::for_guest_lines_with(Clock::System)
    }

    /// The same on `clock` (tests move a manual one).
    pub fn for_guest_lines_with(clock: Clock) -> Self {
        RateLimiter::new(GUEST_BURST, DEFAULT_INTERVAL, clock)
    }

    pub fn new(burst: u32, interval: Duration, clock: Clock) -> Self {
        RateLimiter { burst, interval, clock, kinds: Vec::new(), written: 0 }
    }

    /// Decide about one line of `kind`/`sub` at `now`. `tally` labels the
    /// line in a later summary if it is suppressed ("" for none).
    pub fn admit_at(&mut self, now: Instant, level: Level, kind: &'static str, sub: &str, tally: &str) -> Admission {
        let mut admission = Admission::default();
        // Every kind whose interval ended reports what it hid, not only the
        // one logging now: a drive that fell silent still gets its summary.
        for st in &mut self.kinds {
            if now.saturating_duration_since(st.window_start) >= self.interval {
                admission.summaries.extend(st.take_summary());
                st.window_start = now;
                st.logged = 0;
            }
        }
        let idx = match self.kinds.iter().position(|s| s.kind == kind && s.sub == sub) {
            Some(i) => i,
            None => {
                self.kinds.push(KindState {
                    kind,
                    sub: sub.to_string(),
                    level,
                    window_start: now,
                    logged: 0,
                    suppressed: 0,
                    tally: BTreeMap::new(),
                });
                self.kinds.len() - 1
            }
        };
        let st = &mut self.kinds[idx];
        if st.logged < self.burst {
            st.logged += 1;
            admission.log = true;
        } else {
            st.suppressed += 1;
            if let Some(n) = st.tally.get_mut(tally) {
                *n += 1;
            } else {
                st.tally.insert(tally.to_string(), 1);
            }
        }
        self.written += admission.summaries.len() as u64 + u64::from(admission.log);
        admission
    }

    pub fn admit(&mut self, level: Level, kind: &'static str, sub: &str, tally: &str) -> Admission {
        let now = self.clock.now();
        self.admit_at(now, level, kind, sub, tally)
    }

    /// Log one line through the limiter; `args` is only formatted when the
    /// line is written.
    pub fn log(&mut self, level: Level, kind: &'static str, args: fmt::Arguments<'_>) {
        self.log_keyed(level, kind, "", "", args)
    }

    pub fn log_keyed(&mut self, level: Level, kind: &'static str, sub: &str, tally: &str, args: fmt::Arguments<'_>) {
        let a = self.admit(level, kind, sub, tally);
        for s in &a.summaries {
            log::log!(s.level, "{s}");
        }
        if a.log {
            log::log!(level, "{args}");
        }
    }

    /// Summaries of everything suppressed so far (at exit, so no count is
    /// lost with the process).
    pub fn flush(&mut self) -> Vec<Summary> {
        let out: Vec<Summary> = self.kinds.iter_mut().filter_map(KindState::take_summary).collect();
        self.written += out.len() as u64;
        out
    }

    /// Lines (messages and summaries) this limiter let through so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Lines suppressed and not yet summarised, over all kinds.
    pub fn pending(&self) -> u64 {
        self.kinds.iter().map(|s| s.suppressed).sum()
    }
}

/// A limiter that goes away (its device, its decoder) still says what it
/// held back.
impl Drop for RateLimiter {
    fn drop(&mut self) {
        for s in self.flush() {
            log::log!(s.level, "{s}");
        }
    }
}

/// The limiter for call sites that own no state of their own (closures,
/// the IDE's audit lines).
pub fn global() -> &'static Mutex<RateLimiter> {
    static GLOBAL: OnceLock<Mutex<RateLimiter>> = OnceLock::new();
    GLOBAL.get_or_init(|| Mutex::new(RateLimiter::default()))
}

/// Log through the global limiter.
pub fn log_global(level: Level, kind: &'static str, args: fmt::Arguments<'_>) {
    global().lock().unwrap_or_else(|e| e.into_inner()).log(level, kind, args)
}

/// Write the global limiter's pending summaries (at exit).
pub fn flush_global() {
    let summaries = global().lock().unwrap_or_else(|e| e.into_inner()).flush();
    for s in summaries {
        log::log!(s.level, "{s}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gives_at_most_burst_plus_one_lines_per_interval_and_counts_right() {
        let clock = Clock::manual();
        let mut rl = RateLimiter::new(DEFAULT_BURST, DEFAULT_INTERVAL, clock.clone());
        // 100,000 lines spread over 10 intervals (10,000 each).
        let mut summaries = Vec::new();
        for interval in 0..10 {
            let mut lines = 0;
            for _ in 0..10_000 {
                let a = rl.admit(Level::Warn, "flood", "", "");
                lines += a.summaries.len() + usize::from(a.log);
                summaries.extend(a.summaries);
            }
            assert!(lines <= DEFAULT_BURST as usize + 1, "interval {interval}: {lines} lines");
            assert!(lines >= DEFAULT_BURST as usize, "interval {interval}: the burst itself is logged");
            clock.advance(DEFAULT_INTERVAL);
        }
        // Intervals 0..8 are summarised by the next one; the 10th by flush.
        summaries.extend(rl.flush());
        assert_eq!(summaries.len(), 10);
        for s in &summaries {
            assert_eq!(s.count, 10_000 - u64::from(DEFAULT_BURST));
            assert_eq!(s.kind, "flood");
        }
        assert_eq!(summaries[0].to_string(), "9990 similar messages suppressed (flood)");
        assert_eq!(rl.pending(), 0);
        assert_eq!(rl.written(), 10 * u64::from(DEFAULT_BURST) + 10);
    }

    #[test]
    fn kinds_and_sub_keys_are_limited_separately() {
        let clock = Clock::manual();
        let mut rl = RateLimiter::new(2, DEFAULT_INTERVAL, clock.clone());
        let logged = |rl: &mut RateLimiter, kind, sub| (0..5).filter(|_| rl.admit(Level::Error, kind, sub, "").log).count();
        assert_eq!(logged(&mut rl, "a", ""), 2);
        assert_eq!(logged(&mut rl, "b", ""), 2, "kind a's flood must not silence kind b");
        assert_eq!(logged(&mut rl, "a", "ide0-hd1"), 2);
    }

    #[test]
    fn summary_counts_per_tally_label_and_comes_when_any_kind_logs() {
        let clock = Clock::manual();
        let mut rl = RateLimiter::new(1, DEFAULT_INTERVAL, clock.clone());
        assert!(rl.admit(Level::Error, "io-error", "drive=ide0-hd0", "errno=28 action=report").log);
        for _ in 0..3 {
            rl.admit(Level::Error, "io-error", "drive=ide0-hd0", "errno=28 action=report");
        }
        rl.admit(Level::Error, "io-error", "drive=ide0-hd0", "errno=5 action=stop");
        clock.advance(DEFAULT_INTERVAL);
        // A different kind logging after the interval brings the summary out.
        let a = rl.admit(Level::Warn, "other", "", "");
        assert!(a.log);
        assert_eq!(a.summaries.len(), 1);
        assert_eq!(a.summaries[0].level, Level::Error);
        assert_eq!(
            a.summaries[0].to_string(),
            "4 similar messages suppressed (io-error drive=ide0-hd0; errno=28 action=report: 3, errno=5 action=stop: 1)"
        );
        // The new interval starts with a fresh burst.
        assert!(rl.admit(Level::Error, "io-error", "drive=ide0-hd0", "errno=28 action=report").log);
    }

    #[test]
    fn nothing_suppressed_means_no_summary() {
        let clock = Clock::manual();
        let mut rl = RateLimiter::new(3, DEFAULT_INTERVAL, clock.clone());
        for _ in 0..3 {
            assert!(rl.admit(Level::Info, "k", "", "").log);
        }
        clock.advance(DEFAULT_INTERVAL * 2);
        assert!(rl.admit(Level::Info, "k", "", "").summaries.is_empty());
        assert!(rl.flush().is_empty());
    }

    #[test]
    fn a_dropped_limiter_logs_what_it_still_held_back() {
        let ((), lines) = crate::logging::testlog::capture(|| {
            let mut rl = RateLimiter::new(1, DEFAULT_INTERVAL, Clock::manual());
            for _ in 0..4 {
                rl.log(Level::Warn, "dropped", format_args!("line"));
            }
        });
        assert_eq!(
            lines,
            vec![(Level::Warn, "line".to_string()), (Level::Warn, "3 similar messages suppressed (dropped)".to_string())]
        );
    }
}
