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

/// What a subscriber did with an event handed to it by `EventSink::emit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued (or deliberately not wanted, e.g. before QMP negotiation).
    Taken,
    /// The subscriber's backlog is full; this event is dropped for it.
    Full,
    /// The subscriber went away; the sink forgets it.
    Gone,
}

/// Something that receives events synchronously, on the emitting thread,
/// while `emit` runs. A QMP connection queues them on its outgoing queue
/// here, so an event is ordered against replies by when it was emitted
/// rather than by when some forwarding thread got round to it.
/// `deliver` must not block and must not emit.
pub trait EventSubscriber: Send + Sync {
    fn deliver(&self, event: &Event) -> Delivery;
}

impl EventSubscriber for SyncSender<Event> {
    fn deliver(&self, event: &Event) -> Delivery {
        match self.try_send(event.clone()) {
            Ok(()) => Delivery::Taken,
            Err(TrySendError::Full(_)) => Delivery::Full,
            Err(TrySendError::Disconnected(_)) => Delivery::Gone,
        }
    }
}

/// Fan-out of events to every subscriber (each QMP connection, tests).
/// Cloning shares the subscriber list.
#[derive(Clone, Default)]
pub struct EventSink {
    subscribers: Arc<Mutex<Vec<Arc<dyn EventSubscriber>>>>,
}

impl EventSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// A channel subscriber with a bounded backlog of SUBSCRIBER_BACKLOG.
    pub fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = sync_channel(SUBSCRIBER_BACKLOG);
        self.add_subscriber(Arc::new(tx));
        rx
    }

    pub fn add_subscriber(&self, subscriber: Arc<dyn EventSubscriber>) {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(subscriber);
    }

    /// Hands the event to every subscriber before returning. The list stays
    /// locked throughout, so concurrent emitters are serialised and every
    /// subscriber sees the same order.
    pub fn emit(&self, event: Event) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|subscriber| match subscriber.deliver(&event) {
            Delivery::Taken => true,
            Delivery::Full => {
                // A guest can raise events (I/O errors, resets) in a loop
                // while a QMP client is not reading.
                crate::logging::ratelimit::log_global(
                    log::Level::Warn,
                    "event-backlog",
                    format_args!("an event subscriber is {SUBSCRIBER_BACKLOG} events behind; dropping {event:?} for it"),
                );
                true
            }
            Delivery::Gone => false,
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
