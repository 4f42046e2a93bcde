//! Minimal QMP client: greeting, capabilities negotiation, commands, and
//! collection of asynchronous events (connected early so none is missed).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Qmp {
    stream: UnixStream,
    messages: Receiver<Value>,
    /// Events received and not yet handed out by `take_events`.
    pending_events: Vec<Value>,
}

impl Qmp {
    /// Connects, retrying while the backend is still creating the socket;
    /// `exited` reports a backend that died meanwhile, so that is not
    /// mistaken for slowness.
    pub fn connect(
        path: &Path,
        deadline: Duration,
        mut exited: impl FnMut() -> Option<String>,
    ) -> Result<Self, String> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(e) => {
                    if let Some(status) = exited() {
                        return Err(format!("backend exited ({status}) before QMP was up"));
                    }
                    if start.elapsed() >= deadline {
                        return Err(format!("QMP connect {}: {e}", path.display()));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        let reader = stream.try_clone().map_err(|e| format!("QMP clone: {e}"))?;
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let value =
                    serde_json::from_str(&line).unwrap_or_else(|_| json!({ "unparsable": line }));
                if sender.send(value).is_err() {
                    break;
                }
            }
        });
        let mut qmp = Qmp {
            stream,
            messages,
            pending_events: Vec::new(),
        };
        let greeting = qmp.next_message(REPLY_TIMEOUT)?;
        if greeting.get("QMP").is_none() {
            return Err(format!("QMP: expected a greeting, got {greeting}"));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn next_message(&mut self, timeout: Duration) -> Result<Value, String> {
        match self.messages.recv_timeout(timeout) {
            Ok(value) => Ok(value),
            Err(RecvTimeoutError::Timeout) => Err("QMP: no message within timeout".into()),
            Err(RecvTimeoutError::Disconnected) => Err("QMP: connection closed".into()),
        }
    }

    /// Runs a command; returns its `return` value, or an error carrying the
    /// QMP error class and description.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, String> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut text = request.to_string();
        text.push('\n');
        self.stream
            .write_all(text.as_bytes())
            .map_err(|e| format!("QMP write: {e}"))?;
        loop {
            let message = self
                .next_message(REPLY_TIMEOUT)
                .map_err(|e| format!("{e} (command {command})"))?;
            if message.get("event").is_some() {
                self.pending_events.push(message);
                continue;
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                return Err(format!(
                    "QMP {command}: {}",
                    error.get("class").and_then(Value::as_str).unwrap_or("?")
                ));
            }
        }
    }

    /// Moves every event that has already arrived into the pending list.
    pub fn poll_events(&mut self, wait: Duration) {
        let mut timeout = wait;
        while let Ok(message) = self.messages.recv_timeout(timeout) {
            if message.get("event").is_some() {
                self.pending_events.push(message);
            }
            timeout = Duration::ZERO;
        }
    }

    /// Whether the newest STOP/RESUME event seen is a STOP: the VM is
    /// stopped now (a STOP followed by RESUME is over).
    pub fn stopped_by_event(&self) -> bool {
        self.pending_events.iter().rev().find(|e| e["event"] == "STOP" || e["event"] == "RESUME").is_some_and(|e| e["event"] == "STOP")
    }

    /// Brings every event the backend emitted before this call into the
    /// pending list, without guessing how long delivery takes: a cheap
    /// command's reply is a barrier, because both QEMU and xen-ioemu write
    /// an event emitted before a command ahead of that command's reply
    /// (`execute` files the events it reads on the way).
    pub fn sync_events(&mut self) -> Result<(), String> {
        self.execute("query-status", None).map(drop)
    }

    pub fn has_event(&self, name: &str) -> bool {
        self.pending_events.iter().any(|e| e["event"] == name)
    }

    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.pending_events)
    }
}
