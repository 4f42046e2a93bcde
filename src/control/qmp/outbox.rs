//! One connection's output: replies and events in the order QEMU gives.

use super::json::event_json;
use crate::machine::Event;
use serde_json::Value;
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex};
use std::time::SystemTime;
use thiserror::Error;

/// Replies a client may have unread before the command reader waits for
/// the writer: a client that sends without reading can't make us allocate
/// without bound either.
const MAX_QUEUED_REPLIES: usize = 64;

/// One connection's outgoing lines, in the order they must reach the
/// client. Events are queued by `EventSink::emit` on the emitting thread
/// (see `EventSubscriber`) and replies by the command reader once the
/// command completed, both under this one lock, and a single writer thread
/// sends the queue front to back. So an event whose emit() returned before
/// a command's reply was queued is written before that reply: the ordering
/// QEMU gives, which clients (the differential harness among them) use to
/// know that an event "has had time" to arrive.
pub(super) struct Outbox {
    state: Mutex<OutboxState>,
    /// Signalled when lines are queued (the writer waits for work) and when
    /// they are taken or the connection ends (the reader waits for room).
    changed: Condvar,
}

#[derive(Default)]
struct OutboxState {
    lines: VecDeque<Queued>,
    events_queued: usize,
    replies_queued: usize,
    /// QEMU only sends events once capabilities are negotiated.
    events_wanted: bool,
    /// The reader is done; the writer sends what is queued, then ends.
    closing: bool,
    /// Writing failed; nothing more is queued or sent.
    broken: bool,
}

enum Queued {
    Event(String),
    Reply(String),
}

impl Queued {
    fn line(&self) -> &str {
        match self {
            Queued::Event(line) | Queued::Reply(line) => line,
        }
    }
}

pub(super) fn json_line(message: &Value) -> String {
    let mut line = message.to_string();
    line.push_str("\r\n");
    line
}

/// Why a reply could not be queued.
#[derive(Debug, Error)]
pub(super) enum OutboxError {
    #[error("the client stopped accepting output")]
    Broken,
}

impl From<OutboxError> for std::io::Error {
    fn from(e: OutboxError) -> Self {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, e)
    }
}

impl Outbox {
    pub(super) fn new() -> Self {
        Outbox { state: Mutex::new(OutboxState::default()), changed: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a reply (or the greeting) behind everything emitted so far.
    /// `then_events`: capabilities negotiation just completed, so events
    /// emitted from now on are wanted; switched in the same critical
    /// section so none can slip in ahead of the negotiation's reply.
    pub(super) fn reply(&self, message: &Value, then_events: bool) -> Result<(), OutboxError> {
        let line = json_line(message);
        let mut state = self.lock();
        while state.replies_queued >= MAX_QUEUED_REPLIES && !state.broken {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.broken {
            return Err(OutboxError::Broken);
        }
        state.lines.push_back(Queued::Reply(line));
        state.replies_queued += 1;
        state.events_wanted |= then_events;
        self.changed.notify_all();
        Ok(())
    }

    /// The reader is done: the writer drains the queue and ends.
    pub(super) fn close(&self) {
        self.lock().closing = true;
        self.changed.notify_all();
    }

    /// Takes everything queued, waiting for some; None once closed (or
    /// broken) and drained.
    fn take(&self) -> Option<String> {
        let mut state = self.lock();
        while state.lines.is_empty() && !state.closing && !state.broken {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.broken || state.lines.is_empty() {
            return None;
        }
        let mut batch = String::new();
        for queued in state.lines.drain(..) {
            batch.push_str(queued.line());
        }
        state.events_queued = 0;
        state.replies_queued = 0;
        self.changed.notify_all();
        Some(batch)
    }

    fn mark_broken(&self) {
        let mut state = self.lock();
        state.broken = true;
        state.lines.clear();
        self.changed.notify_all();
    }
}

impl crate::machine::EventSubscriber for Outbox {
    fn deliver(&self, event: &Event) -> crate::machine::Delivery {
        use crate::machine::{events::SUBSCRIBER_BACKLOG, Delivery};
        let mut state = self.lock();
        if state.broken || state.closing {
            return Delivery::Gone;
        }
        if !state.events_wanted {
            return Delivery::Taken;
        }
        if state.events_queued >= SUBSCRIBER_BACKLOG {
            return Delivery::Full;
        }
        // Stamped now, at emission, as QEMU stamps its events.
        state.lines.push_back(Queued::Event(json_line(&event_json(event, SystemTime::now()))));
        state.events_queued += 1;
        self.changed.notify_all();
        Delivery::Taken
    }
}

/// The connection's only writer: sends the outbox in order. A failed or
/// timed-out write shuts the socket down, which also ends the reader.
pub(super) fn write_outbox(mut stream: UnixStream, outbox: &Outbox) {
    while let Some(batch) = outbox.take() {
        if stream.write_all(batch.as_bytes()).is_err() {
            outbox.mark_broken();
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}
