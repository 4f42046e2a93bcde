//! The domain pause of an I/O-error hold, taken at a moment when no vCPU
//! has a request open with us.
//!
//! Xen finishes a domain's shutdown (and `xl save` suspends an HVM guest
//! without PV drivers by one, SHUTDOWN_suspend) only once every vCPU is
//! past its open I/O request: a vCPU defers the shutdown from the moment
//! it sends a request to a device model until it runs again and takes the
//! response back. A vCPU paused with one open therefore keeps the suspend
//! from ever finishing while the hold lasts, and libxl gives up after
//! 60 s ("guest did not suspend, timed out"); the save-held scenario
//! failed that way whenever the guest's console (COM1) was written at the
//! moment of the hold. So the requests that reach us during the hold are
//! served (`IdeController::set_serve_while_held`), and the pause is
//! retried until it finds every vCPU's slot idle.

use crate::machine::hold::{PauseGuest, PauseRefused};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How many times a pause is taken and let go again while some vCPU has a
/// request open, and how long the guest runs between two tries: a vCPU
/// takes its response back as soon as it runs, so one try in a few finds
/// them all idle unless a vCPU does port I/O in a tight loop.
const TRIES: u32 = 2000;
const SETTLE: Duration = Duration::from_millis(1);

pub struct PauseWhenNoneOpen {
    inner: Box<dyn PauseGuest>,
    any_open: Box<dyn Fn() -> bool + Send>,
    /// Turns serving requests during the hold on (before the first try)
    /// and off (after the unpause, or when pausing is refused).
    serve: Box<dyn Fn(bool) + Send>,
    warned: AtomicBool,
    tries: u32,
    settle: Duration,
}

impl PauseWhenNoneOpen {
    pub fn new(inner: Box<dyn PauseGuest>, any_open: Box<dyn Fn() -> bool + Send>, serve: Box<dyn Fn(bool) + Send>) -> Self {
        PauseWhenNoneOpen { inner, any_open, serve, warned: AtomicBool::new(false), tries: TRIES, settle: SETTLE }
    }
}

impl PauseGuest for PauseWhenNoneOpen {
    fn pause(&self) -> Result<(), PauseRefused> {
        (self.serve)(true);
        for attempt in 1..=self.tries {
            if let Err(e) = self.inner.pause() {
                (self.serve)(false);
                return Err(e);
            }
            if !(self.any_open)() {
                if attempt > 1 {
                    log::info!("I/O error hold: paused at the {attempt}th try (a vCPU had an I/O request open before)");
                }
                return Ok(());
            }
            if let Err(e) = self.inner.unpause() {
                // Still paused, by us: say so rather than pause twice.
                log::warn!("I/O error hold: letting a vCPU finish its request failed ({e}); staying paused");
                return Ok(());
            }
            std::thread::sleep(self.settle);
        }
        self.inner.pause()?;
        if !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "I/O error hold: a vCPU had an I/O request open at each of {} pauses; paused anyway \
                 (a suspend of this guest, as xl save does, cannot finish until the hold ends)",
                self.tries
            );
        }
        Ok(())
    }

    fn unpause(&self) -> Result<(), PauseRefused> {
        let result = self.inner.unpause();
        (self.serve)(false);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<String>>>;

    struct Domain {
        log: Log,
        refuse: bool,
    }

    impl PauseGuest for Domain {
        fn pause(&self) -> Result<(), PauseRefused> {
            self.log.lock().unwrap().push("pause".into());
            if self.refuse {
                return Err(PauseRefused::NotPermitted("EPERM".into()));
            }
            Ok(())
        }
        fn unpause(&self) -> Result<(), PauseRefused> {
            self.log.lock().unwrap().push("unpause".into());
            Ok(())
        }
    }

    /// A pauser whose probe says "open" for the first `open_for` looks.
    fn pauser(open_for: u32, refuse: bool) -> (PauseWhenNoneOpen, Log) {
        let log: Log = Arc::default();
        let looks = Arc::new(Mutex::new(0u32));
        let (l1, l2) = (log.clone(), log.clone());
        let p = PauseWhenNoneOpen::new(
            Box::new(Domain { log: log.clone(), refuse }),
            Box::new(move || {
                let mut n = looks.lock().unwrap();
                *n += 1;
                l1.lock().unwrap().push("look".into());
                *n <= open_for
            }),
            Box::new(move |on| l2.lock().unwrap().push(format!("serve {on}"))),
        );
        (p, log)
    }

    #[test]
    fn the_pause_is_let_go_until_no_vcpu_has_a_request_open() {
        let (p, log) = pauser(2, false);
        p.pause().unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            ["serve true", "pause", "look", "unpause", "pause", "look", "unpause", "pause", "look"],
            "served first, then paused for good only when the probe found every slot idle"
        );
        log.lock().unwrap().clear();
        p.unpause().unwrap();
        assert_eq!(*log.lock().unwrap(), ["unpause", "serve false"]);
    }

    #[test]
    fn a_refused_pause_stops_serving_and_a_busy_guest_is_paused_anyway_once_warned() {
        let (p, log) = pauser(0, true);
        assert!(matches!(p.pause(), Err(PauseRefused::NotPermitted(_))));
        assert_eq!(*log.lock().unwrap(), ["serve true", "pause", "serve false"], "the fallback hold blocks vCPUs again");

        let (mut p, log) = pauser(u32::MAX, false);
        (p.tries, p.settle) = (50, Duration::ZERO);
        p.pause().unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.iter().filter(|e| *e == "pause").count(), 51);
        assert_eq!(log.iter().filter(|e| *e == "unpause").count(), 50);
        assert_eq!(log.last().map(String::as_str), Some("pause"), "ends paused");
    }
}
