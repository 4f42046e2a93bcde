//! The VM run state (QEMU's runstate names) shared between devices, QMP and
//! the front ends.

use super::events::{Event, EventSink};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Started with -S and not yet continued.
    Prelaunch,
    /// Started with `-incoming`: waiting for the device state.
    InMigrate,
    Running,
    /// Stopped by the `stop` QMP command.
    Paused,
    /// Stopped by a werror/rerror "stop" policy.
    IoError,
    Shutdown,
}

impl RunState {
    pub fn as_qmp(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::InMigrate => "inmigrate",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::IoError => "io-error",
            RunState::Shutdown => "shutdown",
        }
    }
}

struct Inner {
    state: RunState,
    /// Bumped on every change so waiters can tell a stop-and-resume apart.
    generation: u64,
}

/// Shared run state. Devices call [`VmControl::stop`] from inside an I/O
/// access; the owner of the machine lock calls [`VmControl::set_running`]
/// and then restarts held requests.
#[derive(Clone)]
pub struct VmControl {
    inner: Arc<(Mutex<Inner>, Condvar)>,
    events: EventSink,
}

impl VmControl {
    pub fn new(initial: RunState, events: EventSink) -> Self {
        VmControl {
            inner: Arc::new((Mutex::new(Inner { state: initial, generation: 0 }), Condvar::new())),
            events,
        }
    }

    pub fn events(&self) -> &EventSink {
        &self.events
    }

    pub fn state(&self) -> RunState {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).state
    }

    pub fn generation(&self) -> u64 {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).generation
    }

    pub fn is_running(&self) -> bool {
        self.state() == RunState::Running
    }

    /// Leave the running state; emits STOP when the VM was running.
    pub fn stop(&self, reason: RunState) {
        let was_running = {
            let mut g = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
            let was = g.state == RunState::Running;
            if g.state != RunState::Shutdown {
                g.state = reason;
                g.generation += 1;
            }
            was
        };
        self.inner.1.notify_all();
        if was_running {
            self.events.emit(Event::Stop);
        }
    }

    /// Enter the running state; emits RESUME when it was not running.
    /// Returns true when the state changed.
    pub fn set_running(&self) -> bool {
        let changed = {
            let mut g = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
            if g.state == RunState::Running || g.state == RunState::Shutdown {
                false
            } else {
                g.state = RunState::Running;
                g.generation += 1;
                true
            }
        };
        self.inner.1.notify_all();
        if changed {
            self.events.emit(Event::Resume);
        }
        changed
    }

    pub fn shutdown(&self) {
        {
            let mut g = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
            g.state = RunState::Shutdown;
            g.generation += 1;
        }
        self.inner.1.notify_all();
    }

    /// Block until the generation differs from `seen` or `timeout` passes.
    pub fn wait_change(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        let g = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self
            .inner
            .1
            .wait_timeout_while(g, timeout, |g| g.generation == seen)
            .unwrap_or_else(|e| e.into_inner());
        g.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_resume_emit_events_once() {
        let events = EventSink::new();
        let rx = events.subscribe();
        let vm = VmControl::new(RunState::Running, events);
        vm.stop(RunState::IoError);
        vm.stop(RunState::IoError);
        assert_eq!(vm.state(), RunState::IoError);
        assert!(vm.set_running());
        assert!(!vm.set_running());
        let got: Vec<Event> = rx.try_iter().collect();
        assert_eq!(got, vec![Event::Stop, Event::Resume]);
    }
}
