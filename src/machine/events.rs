//! Asynchronous machine events in the shapes QMP publishes them.

use std::sync::{Arc, Mutex};
use std::sync::mpsc::{channel, Receiver, Sender};

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
    /// "report" | "ignore" | "stop".
    BlockIoError {
        device: String,
        node_name: String,
        operation: IoOperation,
        action: &'static str,
        nospace: bool,
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
    subscribers: Arc<Mutex<Vec<Sender<Event>>>>,
}

impl EventSink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = channel();
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    pub fn emit(&self, event: Event) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|tx| tx.send(event.clone()).is_ok());
    }
}
