//! Requests on the host: what a channel has submitted to a drive's queue
//! (`block::engine`), the queue its completions come back through, and
//! the dispatch of a completion to the data path that asked for it.
//!
//! A channel has at most one request on the host (QEMU's one aiocb per
//! bus). While it is there, the registers show what the command shows in
//! flight (BSY for PIO and flush, DRQ with the bus master ACTIVE for DMA),
//! so command bytes the guest writes meanwhile are ignored, as on QEMU.
//! Completions run on the drive's worker thread under the controller lock,
//! except while a guest request is being served (see
//! `IdeController::begin_guest_request`): then they wait in the queue.

use super::channel::{Channel, Ctx};
use super::dma::AtaDma;
use crate::block::engine::{Completion, IoOp};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// What a request on the host was for, with what its completion needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pending {
    /// A PIO block of `n` sectors at `lba`, with `remaining` sectors of
    /// the command left before it.
    PioRead { lba: i64, n: u32, remaining: u32 },
    PioWrite { lba: i64, n: u32, remaining: u32 },
    Flush,
    AtaDma { kind: AtaDma, lba: i64, count: u32, stay_active: bool },
    /// DATA SET MANAGEMENT: the sector ranges (start, count) of the
    /// request, from `first` on (after an ignored failure the rest runs).
    Trim { lba: i64, count: u32, ranges: Vec<(u64, u64)>, first: usize, stay_active: bool },
    /// An ATAPI reply by DMA: `size` bytes of the medium (read as user
    /// blocks, turned into the guest's view on completion).
    AtapiDma { size: usize, short: bool },
    /// One PIO chunk of an ATAPI reply from the medium: `size` bytes of
    /// the guest's view (read as user blocks).
    AtapiPio { size: usize },
}

#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) unit: usize,
    pub(super) tag: u64,
    pub(super) pending: Pending,
}

/// Completions of every drive of a controller, in arrival order.
#[derive(Default)]
pub(crate) struct CompletionQueue {
    items: Mutex<VecDeque<(usize, usize, Completion)>>,
    arrived: Condvar,
}

impl CompletionQueue {
    pub(crate) fn push(&self, channel: usize, unit: usize, c: Completion) {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).push_back((channel, unit, c));
        self.arrived.notify_all();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Whether the completion of `tag` on (channel, unit) is still queued.
    pub(crate) fn contains(&self, channel: usize, unit: usize, tag: u64) -> bool {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(c, u, done)| *c == channel && *u == unit && done.tag == tag)
    }

    pub(crate) fn pop(&self) -> Option<(usize, usize, Completion)> {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    /// Wait for the completion of `tag` on (channel, unit) and take it out
    /// of the queue. The worker pushes without the controller lock, so
    /// this can be called with it held.
    fn wait_for(&self, channel: usize, unit: usize, tag: u64) -> Completion {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(i) = items.iter().position(|(c, u, done)| *c == channel && *u == unit && done.tag == tag) {
                if let Some((_, _, done)) = items.remove(i) {
                    return done;
                }
            }
            items = self.arrived.wait(items).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Channel {
    /// Send `op` to drive `u`'s queue. False when the drive has no medium
    /// or no queue; the caller aborts the command then.
    ///
    /// At most one request of a channel is on the host: a drain (bus-master
    /// stop, reset, unplug) waits under the controller lock for the one in
    /// flight, which only works if its worker is not stuck behind an older
    /// request of the channel whose completion callback waits for that
    /// lock. So a request still in flight here (a command to the other
    /// unit, which the selected unit's BSY does not block) is drained and
    /// dropped first, as a reset would: the guest was never told it ended.
    pub(super) fn submit(&mut self, u: usize, op: IoOp, pending: Pending) -> bool {
        if self.units[u].drive.is_none() {
            return false;
        }
        self.drain_and_drop();
        let Some(drive) = self.units[u].drive.as_mut() else { return false };
        let (Some(queue), Some(medium)) = (drive.queue.as_mut(), drive.medium.as_ref()) else { return false };
        let tag = queue.submit(medium.backend(), op);
        self.inflight = Some(InFlight { unit: u, tag, pending });
        true
    }

    pub fn has_request_in_flight(&self) -> bool {
        self.inflight.is_some()
    }

    /// Apply a completion of drive `u`. One whose request was cancelled
    /// (a reset, or a newer request) is dropped: its registers are gone.
    pub(super) fn complete(&mut self, ctx: &Ctx, u: usize, done: Completion) {
        let Some(f) = self.inflight.take_if(|f| f.unit == u && f.tag == done.tag) else { return };
        self.finish(ctx, f, done);
    }

    fn finish(&mut self, ctx: &Ctx, f: InFlight, done: Completion) {
        let u = f.unit;
        match f.pending {
            Pending::PioRead { lba, n, remaining } => self.sector_read_done(ctx, u, lba, n, remaining, done),
            Pending::PioWrite { lba, n, remaining } => self.sector_write_done(ctx, u, lba, n, remaining, done),
            Pending::Flush => self.flush_done(ctx, u, done),
            Pending::AtaDma { kind, lba, count, stay_active } => self.ata_dma_done(ctx, u, kind, lba, count, stay_active, done),
            Pending::Trim { lba, count, ranges, first, stay_active } => {
                self.trim_done(ctx, u, lba, count, ranges, first, stay_active, done)
            }
            Pending::AtapiDma { size, short } => self.atapi_dma_done(ctx, u, size, short, done),
            Pending::AtapiPio { size } => self.atapi_pio_done(u, size, done),
        }
    }

    /// QEMU drains the request on the host before a bus-master stop takes
    /// effect: the command finishes as it would have, then the engine
    /// stops. Waits with the controller lock held; only the worker, which
    /// never needs that lock to report, can end the wait.
    pub(super) fn drain_and_finish(&mut self, ctx: &Ctx) {
        if let Some(f) = self.inflight.take() {
            let done = self.completions.wait_for(self.index, f.unit, f.tag);
            self.finish(ctx, f, done);
        }
    }

    /// A reset cancels the request on the host: wait until the host is done
    /// with it (a write may still reach the image; the guest was never told
    /// it did) and drop its result.
    pub(super) fn drain_and_drop(&mut self) {
        if let Some(f) = self.inflight.take() {
            let _ = self.completions.wait_for(self.index, f.unit, f.tag);
        }
    }
}
