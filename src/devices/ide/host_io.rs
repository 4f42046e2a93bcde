//! The controller and the I/O engine: one queue per drive, completions
//! applied under the controller lock, guest requests kept whole, and the
//! re-run of held requests on `cont`.

use super::IdeController;
use crate::block::engine::{BlockQueue, Completion, EngineError, IdleWaiter, QueueKind};
use crate::vm::{RunState, VmControl};
use std::sync::{Arc, Mutex, TryLockError, Weak};
use std::time::Duration;

/// How often a worker looks again at a busy controller lock to deliver a
/// completion (see `start_engine`).
const DELIVERY_RETRY: Duration = Duration::from_micros(100);

impl IdeController {
    /// Give every drive its queue on the I/O engine. Completions take the
    /// controller's lock through a weak reference, so the workers never
    /// keep a destroyed controller alive.
    pub fn start_engine(this: &Arc<Mutex<IdeController>>) -> Result<(), EngineError> {
        Self::start_engine_as(this, QueueKind::Threaded)
    }

    /// As [`start_engine`](Self::start_engine), with queues of `kind`. An
    /// inline request completes inside the port access (or QMP command)
    /// that submitted it, under this lock: its completion waits in the
    /// queue for `end_guest_request` or the caller's `deliver_completions`,
    /// as a worker's does while a guest request is served.
    pub fn start_engine_as(this: &Arc<Mutex<IdeController>>, kind: QueueKind) -> Result<(), EngineError> {
        let weak: Weak<Mutex<IdeController>> = Arc::downgrade(this);
        let mut ctl = this.lock().unwrap_or_else(|e| e.into_inner());
        let mem = ctl.mem.clone();
        let completions = ctl.completions.clone();
        for (c, ch) in ctl.channels.iter_mut().enumerate() {
            for (u, drive) in ch.drives_mut_indexed() {
                let (weak, completions) = (weak.clone(), completions.clone());
                if kind == QueueKind::Inline {
                    let on_complete = Arc::new(move |done: Completion| completions.push(c, u, done));
                    drive.queue = Some(BlockQueue::inline(mem.clone(), on_complete));
                    continue;
                }
                let on_complete = Arc::new(move |done: Completion| {
                    let tag = done.tag;
                    completions.push(c, u, done);
                    let Some(ctl) = weak.upgrade() else { return };
                    // Never block on the controller lock here: its holder
                    // may be draining this channel (a bus-master stop, a
                    // reset), waiting under the lock for the *next* request
                    // of this drive, which this worker runs only once this
                    // callback returns. So: deliver if the lock is free,
                    // stop trying once someone else took the completion
                    // (the drain, or another worker's delivery).
                    loop {
                        match ctl.try_lock() {
                            Ok(mut ctl) => return ctl.deliver_completions(),
                            Err(TryLockError::Poisoned(p)) => return p.into_inner().deliver_completions(),
                            Err(TryLockError::WouldBlock) if !completions.contains(c, u, tag) => return,
                            Err(TryLockError::WouldBlock) => std::thread::sleep(DELIVERY_RETRY),
                        }
                    }
                });
                drive.queue = Some(BlockQueue::spawn(&drive.id, mem.clone(), on_complete)?);
            }
        }
        Ok(())
    }

    /// Apply every completion that has arrived, unless a guest request is
    /// being served (then `end_guest_request` does it).
    pub fn deliver_completions(&mut self) {
        if self.serving_guest_request {
            return;
        }
        while let Some((c, u, done)) = self.completions.pop() {
            let (ctx, channels) = self.ctx_and_channels();
            if let Some(ch) = channels.get_mut(c) {
                ch.complete(&ctx, u, done);
            }
        }
    }

    /// The Xen front calls this before it serves a vCPU's request. Returns
    /// true when the request must wait (the VM is stopped), decided under
    /// this lock, which completions (and so the error policy's holds) also
    /// take; otherwise completions wait until `end_guest_request`, so one
    /// request (every element of a `rep outsb`) sees no command finish in
    /// its middle, as on QEMU, whose main loop serves a request whole.
    ///
    /// The exception: an I/O-error hold while the host pauses the whole
    /// guest (`set_serve_while_held`). A vCPU left waiting here keeps its
    /// request open, and a vCPU with an open request defers the domain's
    /// shutdown: Xen never finishes a suspend (`xl save`) of the paused
    /// guest, and libxl gives up after 60 s. So its request is served, as
    /// a real controller would answer it (a held channel shows BSY and
    /// ignores commands), and the pause is taken when no vCPU has one open.
    pub fn begin_guest_request(&mut self) -> bool {
        let state = self.vm.state();
        let served_anyway = self.serve_while_held && state == RunState::IoError;
        if state != RunState::Running && !served_anyway {
            return true;
        }
        self.serving_guest_request = true;
        false
    }

    /// See `begin_guest_request`: on while the host pauses (or is about
    /// to pause) the whole guest for an I/O-error hold.
    pub fn set_serve_while_held(&mut self, on: bool) {
        self.serve_while_held = on;
    }

    pub fn end_guest_request(&mut self) {
        self.serving_guest_request = false;
        self.deliver_completions();
    }

    /// `cont`: re-issue what a `stop` policy held, then set the VM running,
    /// both under this lock, so a re-issued request that fails again holds
    /// the VM after the state said Running (never before, to be
    /// overwritten) and no guest request is served in between.
    pub fn restart_held_requests_and_run(&mut self, vm: &VmControl) {
        let (ctx, channels) = self.ctx_and_channels();
        for ch in channels.iter_mut() {
            ch.restart_held(&ctx);
        }
        vm.set_running();
        // Synchronous, so after set_running: a flush that fails again
        // holds the VM anew instead of being overwritten.
        self.retry_unplug_flushes();
    }

    /// Waiters for every drive's queue to run dry (tests, benchmarks,
    /// flush at exit). Wait on them with this controller unlocked.
    pub fn idle_waiters(&self) -> Vec<IdleWaiter> {
        self.channels.iter().flat_map(|ch| ch.drives()).filter_map(|d| d.queue.as_ref().map(BlockQueue::idle_waiter)).collect()
    }

    pub fn has_request_in_flight(&self) -> bool {
        self.channels.iter().any(|ch| ch.has_request_in_flight())
    }
}

/// Wait until `ide` has no request on the host; false after `timeout`.
pub fn wait_idle(ide: &Mutex<IdeController>, timeout: Duration) -> bool {
    let waiters = ide.lock().unwrap_or_else(|e| e.into_inner()).idle_waiters();
    waiters.iter().all(|w| w.wait(timeout))
}
