//! Interrupt lines of the qtest machine. Once the client asked for
//! `irq_intercept_in ioapic`, every level change of a GSI is written to the
//! qtest stream as `IRQ raise N` / `IRQ lower N`, at the moment it happens,
//! as QEMU does (so a change caused by a command comes before its reply).

use super::stream::QtestStream;
use crate::machine::IrqLine;
use std::sync::{Arc, Mutex};

pub const GSI_COUNT: usize = 24;

struct State {
    levels: [bool; GSI_COUNT],
    /// Levels as last reported to the client (QEMU's irq_levels[], zeroed
    /// when the stream opens).
    reported: [bool; GSI_COUNT],
    intercepted: bool,
}

#[derive(Clone)]
pub struct QtestIrqs {
    state: Arc<Mutex<State>>,
    stream: QtestStream,
}

impl QtestIrqs {
    pub fn new(stream: QtestStream) -> Self {
        QtestIrqs {
            state: Arc::new(Mutex::new(State { levels: [false; GSI_COUNT], reported: [false; GSI_COUNT], intercepted: false })),
            stream,
        }
    }

    pub fn line(&self, gsi: usize) -> Arc<dyn IrqLine> {
        Arc::new(QtestIrqLine { gsi: gsi.min(GSI_COUNT - 1), irqs: self.clone() })
    }

    /// `irq_intercept_in ioapic`: from now on changes are reported.
    pub fn intercept(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.intercepted = true;
    }

    pub fn level(&self, gsi: usize) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.levels.get(gsi).copied().unwrap_or(false)
    }

    fn set(&self, gsi: usize, high: bool) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.levels[gsi] = high;
        if s.intercepted && s.reported[gsi] != high {
            s.reported[gsi] = high;
            let line = format!("IRQ {} {}\n", if high { "raise" } else { "lower" }, gsi);
            self.stream.send(&line);
        }
    }
}

struct QtestIrqLine {
    gsi: usize,
    irqs: QtestIrqs,
}

impl IrqLine for QtestIrqLine {
    fn set_level(&self, high: bool) {
        self.irqs.set(self.gsi, high);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_only_changes_and_only_when_intercepted() {
        let (stream, out) = QtestStream::capture();
        let irqs = QtestIrqs::new(stream);
        let l14 = irqs.line(14);
        l14.set_level(true);
        l14.set_level(false);
        irqs.intercept();
        l14.set_level(true);
        l14.set_level(true);
        l14.set_level(false);
        assert_eq!(out.take(), "IRQ raise 14\nIRQ lower 14\n");
        assert!(!irqs.level(14));
    }
}
