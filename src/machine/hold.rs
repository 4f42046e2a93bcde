//! A hold that stops the whole guest: while a werror/rerror `stop` policy
//! holds a request, the front end pauses every vCPU (Xen: the domain), and
//! lets the guest run again only after the held request has completed and
//! its interrupt has been raised.
//!
//! Why the whole guest: blocking only the vCPUs that touch our ports leaves
//! the guest running, so its block layer's 30 s command timer expires and
//! libata's error handler resets the link (measured on the testbed, see
//! tests/xen-scenarios/fs-full-hold). A paused guest runs no timer code.
//! Guest time still advances (Xen keeps the domain's clock running), so on
//! resume the timer may have expired; the interrupt is then already pending
//! and is taken as soon as a vCPU enables interrupts, before the timeout
//! work can run, and the block layer finds the request completed.
//!
//! Why only for an I/O error: libxl pauses the domain itself around a QMP
//! `stop` it sends (save, `xl pause`), and its `xl unpause` is a `cont` plus
//! its own unpause. Xen counts toolstack pauses, so ours nests with libxl's
//! (one pause, one unpause each).
//!
//! The gate knows nothing about Xen; [`PauseGuest`] is the front end's
//! part, and the front end's run-state watcher calls [`HoldGate::step`] on
//! every run-state change (and often while it waits to release).

use super::RunState;

/// What a front end does to stop every vCPU.
pub trait PauseGuest: Send {
    fn pause(&self) -> Result<(), PauseRefused>;
    fn unpause(&self) -> Result<(), PauseRefused>;
}

/// Why a pause or unpause did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PauseRefused {
    /// The front end may never pause (dm_restrict, XSM): the hold falls
    /// back to blocking the vCPUs that touch our devices.
    #[error("not permitted: {0}")]
    NotPermitted(String),
    #[error("{0}")]
    Failed(String),
}

/// Whether the guest is paused by us, and the decision of when to change
/// that. Owned by the front end's run-state watcher.
pub struct HoldGate {
    pauser: Box<dyn PauseGuest>,
    paused: bool,
    /// Set after the first refusal: dm_restrict does not change while we
    /// run, so asking again at every retry would only repeat the log line.
    disabled: bool,
    pauses: u64,
}

impl HoldGate {
    pub fn new(pauser: Box<dyn PauseGuest>) -> Self {
        HoldGate { pauser, paused: false, disabled: false, pauses: 0 }
    }

    /// True while the guest is paused by us.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// True when the gate is waiting to release: the caller should call
    /// `step` again soon rather than at its idle pace.
    pub fn wants_release(&self, state: RunState) -> bool {
        self.paused && state == RunState::Running
    }

    /// How many times the guest was paused (for the log and tests).
    pub fn pauses(&self) -> u64 {
        self.pauses
    }

    /// Pause on an I/O-error stop; release once the VM runs again and
    /// `settled` (no request on the host, none held: the retried request's
    /// completion and its interrupt are done). A `stop` or prelaunch
    /// arriving while paused keeps the guest paused until it runs. At
    /// shutdown the guest is released, so a device model that ends never
    /// leaves its domain paused behind it.
    pub fn step(&mut self, state: RunState, settled: bool) {
        match state {
            RunState::IoError if !self.paused && !self.disabled => match self.pauser.pause() {
                Ok(()) => {
                    self.paused = true;
                    self.pauses += 1;
                    log::info!("I/O error hold: guest paused until the held request completes");
                }
                Err(PauseRefused::NotPermitted(why)) => {
                    self.disabled = true;
                    log::warn!(
                        "I/O error hold: cannot pause the guest ({why}); only vCPUs that touch the disk controller wait, \
                         so the guest's own I/O timeouts may fire during a long hold"
                    );
                }
                // Not disabled: a transient failure may pass by the next stop.
                Err(e) => log::warn!("I/O error hold: pausing the guest failed: {e}"),
            },
            RunState::Running if self.paused && settled => self.release("the held request completed"),
            RunState::Shutdown if self.paused => self.release("shutting down"),
            _ => {}
        }
    }

    fn release(&mut self, why: &str) {
        // Not paused afterwards either way: an unpause that fails (libxl's
        // own `xl unpause` may have dropped the count already) must not
        // make the next hold skip its pause.
        self.paused = false;
        match self.pauser.unpause() {
            Ok(()) => log::info!("I/O error hold: guest unpaused ({why})"),
            Err(e) => log::warn!("I/O error hold: unpausing the guest ({why}) failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Recorder {
        calls: Arc<Mutex<Vec<&'static str>>>,
        refuse: bool,
    }

    impl PauseGuest for Recorder {
        fn pause(&self) -> Result<(), PauseRefused> {
            self.calls.lock().unwrap().push("pause");
            if self.refuse {
                return Err(PauseRefused::NotPermitted("EPERM".into()));
            }
            Ok(())
        }
        fn unpause(&self) -> Result<(), PauseRefused> {
            self.calls.lock().unwrap().push("unpause");
            Ok(())
        }
    }

    fn gate(refuse: bool) -> (HoldGate, Arc<Mutex<Vec<&'static str>>>) {
        let r = Recorder { refuse, ..Default::default() };
        let calls = r.calls.clone();
        (HoldGate::new(Box::new(r)), calls)
    }

    #[test]
    fn an_io_error_pauses_once_and_the_guest_runs_only_after_the_retry_settled() {
        let (mut g, calls) = gate(false);
        g.step(RunState::Running, true);
        assert!(calls.lock().unwrap().is_empty(), "a running guest is never paused");
        g.step(RunState::IoError, false);
        // Retries that fail again: Running (re-issued) then IoError again.
        for _ in 0..3 {
            g.step(RunState::Running, false);
            assert!(g.wants_release(RunState::Running));
            g.step(RunState::IoError, false);
            assert!(!g.wants_release(RunState::IoError));
        }
        assert_eq!(*calls.lock().unwrap(), vec!["pause"], "one pause per hold, not one per retry");
        // The retry succeeded but its completion has not been applied yet.
        g.step(RunState::Running, false);
        assert!(g.is_paused());
        g.step(RunState::Running, true);
        assert!(!g.is_paused());
        assert_eq!(*calls.lock().unwrap(), vec!["pause", "unpause"]);
        // The next hold pauses again.
        g.step(RunState::IoError, false);
        assert_eq!(g.pauses(), 2);
    }

    #[test]
    fn a_qmp_stop_does_not_pause_but_keeps_a_held_guest_paused() {
        let (mut g, calls) = gate(false);
        g.step(RunState::Paused, true);
        g.step(RunState::Prelaunch, true);
        assert!(calls.lock().unwrap().is_empty(), "libxl pauses around its own stop");
        g.step(RunState::IoError, false);
        g.step(RunState::Paused, true);
        assert!(g.is_paused(), "a stop during a hold must not let the guest run");
        assert!(!g.wants_release(RunState::Paused));
        g.step(RunState::Running, true);
        assert_eq!(*calls.lock().unwrap(), vec!["pause", "unpause"]);
    }

    #[test]
    fn shutdown_releases_and_a_refusal_is_asked_once() {
        let (mut g, calls) = gate(false);
        g.step(RunState::IoError, false);
        g.step(RunState::Shutdown, false);
        assert_eq!(*calls.lock().unwrap(), vec!["pause", "unpause"]);

        let (mut g, calls) = gate(true);
        for _ in 0..4 {
            g.step(RunState::IoError, false);
            g.step(RunState::Running, true);
        }
        assert!(!g.is_paused());
        assert_eq!(*calls.lock().unwrap(), vec!["pause"], "dm_restrict does not change: ask once");
    }
}
