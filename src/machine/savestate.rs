//! The device state libxl stores as the EMULATOR_CONTEXT record of a save
//! image (opaque to it): our own format, versioned.
//!
//! Layout: the magic `XIOEMUDS`, the format version (u32 LE), the length
//! of the body (u32 LE), an FNV-1a 64 checksum of the body (u64 LE), then
//! the body: a [`MachineState`] in postcard (serde, varint integers; the
//! PIO buffers are saved only as far as they are valid), which keeps a
//! whole PC's state to a few kilobytes. A QEMU blob (`QEVM`), a blob of
//! another magic, a truncated or corrupted one and one of a later version
//! are refused, each with one line saying which.

use crate::devices::state::{DeviceState, StateError};
use crate::vm::RunState;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const MAGIC: [u8; 8] = *b"XIOEMUDS";
/// Bump on any change a version-1 reader would misread.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8;
/// Far above a real state (a few KiB plus at most four 64 KiB PIO
/// windows); a larger length is a corrupt or hostile file.
pub const MAX_BODY: usize = 1 << 20;
/// QEMU's savevm magic ("QEVM"), what qemu-xen's xen-save-devices-state writes.
const QEMU_MAGIC: [u8; 4] = *b"QEVM";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SaveStateError {
    #[error("device state: this is a QEMU device state (QEVM), not one of xen-ioemu")]
    Qemu,
    #[error("device state: not a xen-ioemu device state (bad magic)")]
    NotOurs,
    #[error("device state: truncated ({0} bytes)")]
    Truncated(usize),
    #[error("device state: format version {0} is newer than this xen-ioemu reads ({VERSION})")]
    FutureVersion(u32),
    #[error("device state: format version {0} is unknown")]
    UnknownVersion(u32),
    #[error("device state: body of {0} bytes is larger than any state we write")]
    TooLarge(usize),
    #[error("device state: checksum mismatch (corrupt file)")]
    Checksum,
    #[error("device state: cannot decode: {0}")]
    Decode(String),
    #[error("device state: {0}")]
    Device(#[from] StateError),
    #[error("device state: the saved machine has device {0}, this one has not")]
    UnknownDevice(String),
    #[error("device state: this machine's device {0} is not in the saved state")]
    MissingDevice(String),
}

/// The run state as saved. QMP `stop` (libxl) always comes before a save,
/// so `Paused` is usual; `IoError` means a request is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedRunState {
    Prelaunch,
    Running,
    Paused,
    IoError,
}

impl SavedRunState {
    pub fn of(state: RunState) -> Self {
        match state {
            RunState::Prelaunch | RunState::InMigrate => SavedRunState::Prelaunch,
            RunState::Running => SavedRunState::Running,
            RunState::IoError => SavedRunState::IoError,
            RunState::Paused | RunState::Shutdown => SavedRunState::Paused,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    pub run_state: SavedRunState,
    /// The 0xcf8 latch.
    pub config_address: u32,
    /// Each device under the machine's name for it ("pci-09", "port-0070").
    pub devices: Vec<(String, DeviceState)>,
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

impl MachineState {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        let body = postcard::to_allocvec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&fnv1a64(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(blob: &[u8]) -> Result<MachineState, SaveStateError> {
        if blob.len() >= 4 && blob[..4] == QEMU_MAGIC {
            return Err(SaveStateError::Qemu);
        }
        if blob.len() < MAGIC.len() {
            return Err(if MAGIC.starts_with(blob) { SaveStateError::Truncated(blob.len()) } else { SaveStateError::NotOurs });
        }
        if blob[..8] != MAGIC {
            return Err(SaveStateError::NotOurs);
        }
        if blob.len() < HEADER_LEN {
            return Err(SaveStateError::Truncated(blob.len()));
        }
        let word = |at: usize| u32::from_le_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]]);
        let version = word(8);
        if version > VERSION {
            return Err(SaveStateError::FutureVersion(version));
        }
        if version != VERSION {
            return Err(SaveStateError::UnknownVersion(version));
        }
        let len = word(12) as usize;
        if len > MAX_BODY {
            return Err(SaveStateError::TooLarge(len));
        }
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&blob[16..24]);
        let body = &blob[HEADER_LEN..];
        if body.len() < len {
            return Err(SaveStateError::Truncated(blob.len()));
        }
        // libxl pads nothing, but a file may carry bytes after the state.
        let body = &body[..len];
        if fnv1a64(body) != u64::from_le_bytes(sum) {
            return Err(SaveStateError::Checksum);
        }
        let (state, rest) = postcard::take_from_bytes::<MachineState>(body).map_err(|e| SaveStateError::Decode(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SaveStateError::Decode(format!("{} bytes after the state", rest.len())));
        }
        Ok(state)
    }
}

/// Read a state file whole, at most a header and [`MAX_BODY`] bytes (a
/// longer file is refused by `decode` as too large, not read to its end).
pub fn read_state_file(file: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut blob = Vec::new();
    file.take((HEADER_LEN + MAX_BODY + 1) as u64).read_to_end(&mut blob)?;
    Ok(blob)
}

#[cfg(test)]
#[path = "savestate_tests.rs"]
mod tests;
