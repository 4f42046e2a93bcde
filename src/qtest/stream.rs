//! The qtest output stream, shared by the command loop and by interrupt
//! lines that fire from other threads (a QMP `cont` completing a request).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone)]
pub struct QtestStream {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    out: Box<dyn Write + Send>,
    log: Option<Box<dyn Write + Send>>,
    opened: Instant,
}

impl QtestStream {
    pub fn new(out: Box<dyn Write + Send>, log: Option<Box<dyn Write + Send>>) -> Self {
        QtestStream { inner: Arc::new(Mutex::new(Inner { out, log, opened: Instant::now() })) }
    }

    /// Write a complete reply or async line; errors (client gone) are
    /// ignored here and noticed by the reader seeing EOF.
    pub fn send(&self, text: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let t = g.opened.elapsed();
        if let Some(log) = g.log.as_mut() {
            let _ = write!(log, "[S +{}.{:06}] {}", t.as_secs(), t.subsec_micros(), text);
        }
        let _ = g.out.write_all(text.as_bytes());
        let _ = g.out.flush();
    }

    /// Log a received command as QEMU's -qtest-log does.
    pub fn log_received(&self, line: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let t = g.opened.elapsed();
        if let Some(log) = g.log.as_mut() {
            let _ = writeln!(log, "[R +{}.{:06}] {}", t.as_secs(), t.subsec_micros(), line);
            let _ = log.flush();
        }
    }

    /// A stream whose output can be read back (tests).
    pub fn capture() -> (Self, CapturedOutput) {
        let buf = CapturedOutput(Arc::new(Mutex::new(Vec::new())));
        (QtestStream::new(Box::new(buf.clone()), None), buf)
    }
}

#[derive(Clone)]
pub struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    pub fn take(&self) -> String {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&std::mem::take(&mut *g)).into_owned()
    }
}

impl Write for CapturedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
