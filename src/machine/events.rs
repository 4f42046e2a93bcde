//! Asynchronous machine events in the shapes QMP publishes them.

use std::sync::{Arc, Mutex};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Events a subscriber may have unread before newer ones are dropped for it:
/// a QMP client that stops reading can't make us allocate without bound.
pub const SUBSCRIBER_BACKLOG: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOperation {
    Read,
    Write,
}

impl IoOperation {
    pub fn as_qmp(self) -> &'static str {
        match self {
            IoOperation::Read => "read",
            IoOperation::Write => "write",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// QMP BLOCK_IO_ERROR. `device` is the drive id ("ide0-hd0"), `node_name`
    /// the block node ("#block123" style is fine), `action` one of
    /// "report" | "ignore" | "stop". `nospace` is present (QEMU: only when
    /// the drive keeps an I/O status, i.e. a stop-type policy is set) and
    /// then says whether the errno was ENOSPC.
    BlockIoError {
        device: String,
        node_name: String,
        operation: IoOperation,
        action: &'static str,
        nospace: Option<bool>,
        reason: String,
    },
    Stop,
    Resume,
    /// QMP SHUTDOWN (guest: true when the guest asked for it).
    Shutdown { guest: bool, reason: &'static str },
    Reset { guest: bool, reason: &'static str },
    DeviceTrayMoved { device: String, id: String, tray_open: bool },
}

/// Fan-out of events to every subscriber (each QMP connection, tests).
/// Cloning shares the subscriber list.
#[derive(Clone, Default)]
pub struct EventSink {
    subscribers: Arc<Mutex<Vec<SyncSender<Event>>>>,
}

impl EventSink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = sync_channel(SUBSCRIBER_BACKLOG);
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    pub fn emit(&self, event: Event) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                // A guest can raise events (I/O errors, resets) in a loop
                // while a QMP client is not reading.
                crate::logging::ratelimit::log_global(
                    log::Level::Warn,
                    "event-backlog",
                    format_args!("an event subscriber is {SUBSCRIBER_BACKLOG} events behind; dropping {event:?} for it"),
                );
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_that_never_reads_has_a_bounded_backlog() {
        let sink = EventSink::new();
        let slow = sink.subscribe();
        for _ in 0..SUBSCRIBER_BACKLOG + 10 {
            sink.emit(Event::Stop);
        }
        assert_eq!(slow.try_iter().count(), SUBSCRIBER_BACKLOG);
        drop(slow);
        sink.emit(Event::Resume);
        assert!(sink.subscribers.lock().unwrap().is_empty());
    }
}
