//! The PV console device (`xen/io/console.h`): the backend half of a
//! console ring, for the consoles libxl leaves to the device model. libxl
//! does that for every xl `channel=` entry (console devid 1 and up, `type`
//! ioemu, its `output` naming a pty or a listening socket); console 0 is
//! xenconsoled's.
//!
//! Everything here is Xen-agnostic and unit-tested without Xen: the ring
//! page is reached through [`SharedRing`] (on Xen, the page the frontend
//! granted, mapped through gntdev), the host side through [`HostEnd`]
//! ([`host`]: a pty or a unix socket). The xenbus state machine and the
//! event channel live in `crate::xen::console`.
//!
//! The frontend writes every index in the page at any time, so our own
//! indexes (`out_cons`, `in_prod`) are kept here and only ever stored to
//! the page, and each of its indexes is checked: an `out_prod` more than a
//! ring ahead of what we consumed, or an `in_cons` past what we produced,
//! breaks the ring (nothing more moves, said once) instead of making us
//! read stale bytes or overwrite unread ones.

pub mod host;
#[cfg(test)]
mod tests;

pub use crate::pvblock::SharedRing;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use xen_sys::console::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleRingError {
    #[error("console page of {0} bytes is smaller than struct xencons_interface")]
    TooSmall(usize),
    #[error("frontend moved out_prod to {out_prod} with {out_cons} consumed: more than the {XENCONS_OUT_SIZE}-byte ring")]
    OutputOverflow { out_prod: u32, out_cons: u32 },
    #[error("frontend moved in_cons to {in_cons} with {in_prod} produced")]
    InputOverrun { in_cons: u32, in_prod: u32 },
}

/// The backend's view of one console page.
pub struct ConsoleRing {
    mem: Arc<dyn SharedRing>,
    out_cons: u32,
    in_prod: u32,
    broken: Option<ConsoleRingError>,
}

impl ConsoleRing {
    /// Our indexes start where the page's are (zero for a new frontend; a
    /// reconnecting one keeps its own).
    pub fn attach(mem: Arc<dyn SharedRing>) -> Result<Self, ConsoleRingError> {
        if mem.len() < XENCONS_INTERFACE_SIZE {
            return Err(ConsoleRingError::TooSmall(mem.len()));
        }
        let out_cons = mem.load_u32(XENCONS_OUT_CONS);
        let in_prod = mem.load_u32(XENCONS_IN_PROD);
        Ok(ConsoleRing { mem, out_cons, in_prod, broken: None })
    }

    pub fn broken(&self) -> Option<&ConsoleRingError> {
        self.broken.as_ref()
    }

    /// Append up to `max` bytes the guest wrote to `dst`; returns how many.
    pub fn take_output(&mut self, dst: &mut Vec<u8>, max: usize) -> usize {
        if self.broken.is_some() {
            return 0;
        }
        let out_prod = self.mem.load_u32(XENCONS_OUT_PROD);
        let waiting = out_prod.wrapping_sub(self.out_cons) as usize;
        if waiting > XENCONS_OUT_SIZE {
            self.broken = Some(ConsoleRingError::OutputOverflow { out_prod, out_cons: self.out_cons });
            return 0;
        }
        // The bytes are read after the index that covers them.
        fence(Ordering::Acquire);
        let n = waiting.min(max);
        let mut done = 0;
        while done < n {
            let at = (self.out_cons.wrapping_add(done as u32) as usize) % XENCONS_OUT_SIZE;
            let chunk = (n - done).min(XENCONS_OUT_SIZE - at);
            let start = dst.len();
            dst.resize(start + chunk, 0);
            self.mem.read(XENCONS_OUT + at, &mut dst[start..]);
            done += chunk;
        }
        if n > 0 {
            self.out_cons = self.out_cons.wrapping_add(n as u32);
            // The slots are free only once we have read them.
            fence(Ordering::Release);
            self.mem.store_u32(XENCONS_OUT_CONS, self.out_cons);
        }
        n
    }

    /// Free bytes in the ring towards the guest (0 once broken).
    pub fn input_space(&mut self) -> usize {
        if self.broken.is_some() {
            return 0;
        }
        let in_cons = self.mem.load_u32(XENCONS_IN_CONS);
        let unread = self.in_prod.wrapping_sub(in_cons) as usize;
        if unread > XENCONS_IN_SIZE {
            self.broken = Some(ConsoleRingError::InputOverrun { in_cons, in_prod: self.in_prod });
            return 0;
        }
        XENCONS_IN_SIZE - unread
    }

    /// Put as much of `data` as fits for the guest; returns how much.
    pub fn put_input(&mut self, data: &[u8]) -> usize {
        let n = self.input_space().min(data.len());
        let mut done = 0;
        while done < n {
            let at = (self.in_prod.wrapping_add(done as u32) as usize) % XENCONS_IN_SIZE;
            let chunk = (n - done).min(XENCONS_IN_SIZE - at);
            self.mem.write(XENCONS_IN + at, &data[done..done + chunk]);
            done += chunk;
        }
        if n > 0 {
            self.in_prod = self.in_prod.wrapping_add(n as u32);
            // The bytes are visible before the index that covers them.
            fence(Ordering::Release);
            self.mem.store_u32(XENCONS_IN_PROD, self.in_prod);
        }
        n
    }
}

/// Where a console's bytes go on the host, and come from.
pub trait HostEnd: Send {
    /// Take what can be taken now; returns how much (0: try again later,
    /// the rest stays with the caller). Output nobody is connected to
    /// read is taken and dropped, as QEMU's chardevs do.
    fn write(&mut self, data: &[u8]) -> usize;
    /// Bytes available now, up to `buf.len()` (0: none).
    fn read(&mut self, buf: &mut [u8]) -> usize;
}

/// Moves bytes between one console ring and its host end, at most a ring's
/// worth each way per call (bounded work per notification), holding at
/// most one ring's worth of guest output that the host end has not taken
/// yet: while that is pending, nothing more is consumed, so a slow reader
/// slows the guest down rather than making us buffer without bound.
pub struct ConsolePump {
    ring: ConsoleRing,
    pending: Vec<u8>,
}

impl ConsolePump {
    pub fn new(ring: ConsoleRing) -> Self {
        ConsolePump { ring, pending: Vec::with_capacity(XENCONS_OUT_SIZE) }
    }

    pub fn broken(&self) -> Option<&ConsoleRingError> {
        self.ring.broken()
    }

    /// Bytes taken from the guest that the host end has not taken yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether host input can go anywhere now: the guest has room for it
    /// and the ring works. While not, the caller must not wake on the host
    /// end being readable (it would stay readable: a spin a guest that
    /// never reads its console could cause); the guest's notification
    /// after it reads is the wake-up.
    pub fn wants_input(&mut self) -> bool {
        self.ring.input_space() > 0
    }

    /// Returns whether the frontend should be notified (we consumed its
    /// output, so it may write more, or we gave it input).
    pub fn service(&mut self, host: &mut dyn HostEnd) -> bool {
        let mut notify = false;
        if self.pending.is_empty() && self.ring.take_output(&mut self.pending, XENCONS_OUT_SIZE) > 0 {
            notify = true;
        }
        if !self.pending.is_empty() {
            let taken = host.write(&self.pending).min(self.pending.len());
            self.pending.drain(..taken);
        }
        let space = self.ring.input_space();
        if space > 0 {
            let mut buf = [0u8; XENCONS_IN_SIZE];
            let n = host.read(&mut buf[..space]).min(space);
            if n > 0 && self.ring.put_input(&buf[..n]) > 0 {
                notify = true;
            }
        }
        notify
    }
}
