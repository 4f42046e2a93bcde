//! Why a QMP request failed, and the error class QEMU puts on the wire for
//! it. Errors keep their type up to the reply: the class comes from the
//! variant, and the text (QEMU 7.2's wording, which libxl and the QMP vs
//! QEMU tests compare) from its Display.

use super::{MAX_FDSETS, MAX_FDS_PER_SET, MAX_LINE};
use crate::block::BlockError;
use crate::devices::ide::IdeError;
use thiserror::Error;

/// QEMU's QapiErrorClass values this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotFound,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
        }
    }
}

/// What the machine refused (the [`super::MachineOps`] calls).
#[derive(Debug, Error)]
pub enum MachineError {
    #[error(transparent)]
    Ide(#[from] IdeError),
    /// A medium for the CD-ROM could not be opened.
    #[error("Could not open '{file}': {source}")]
    Open { file: String, source: BlockError },
    /// The machine has no such drive (the probe run has none at all).
    #[error("Device '{0}' not found")]
    NoSuchDevice(String),
    /// QEMU's `cont` after the guest shut down (runstate_needs_reset); a
    /// front that keeps a shut-down guest answers with it.
    #[error("Resetting the Virtual Machine is required")]
    ResetRequired,
    #[error("there is no machine to reset in a probe run")]
    NoMachine,
    #[error("{0}")]
    State(#[from] crate::machine::savestate::SaveStateError),
    /// The device state cannot be taken now (a request stays on the host).
    #[error("cannot save the device state: {0}")]
    NotQuiet(&'static str),
    #[error("cannot save the device state: flushing the images failed: {0}")]
    Flush(BlockError),
    #[error("{file}: {source}")]
    StateFile { file: String, source: std::io::Error },
    #[error("dirty logging is not available on this front")]
    NoDirtyLog,
    #[error("the machine is not waiting for an incoming state (-incoming defer)")]
    NotIncoming,
}

impl MachineError {
    pub fn class(&self) -> ErrorClass {
        match self {
            MachineError::Ide(IdeError::NoSuchDevice(_)) | MachineError::NoSuchDevice(_) => ErrorClass::DeviceNotFound,
            _ => ErrorClass::GenericError,
        }
    }
}

/// A request that failed: in the protocol (before a command ran) or in
/// the command.
#[derive(Debug, Error)]
pub enum CommandError {
    // ---- the request itself ----
    #[error("QMP input must be a JSON object")]
    NotAnObject,
    #[error("QMP input member 'execute' must be a string")]
    ExecuteNotAString,
    #[error("QMP input lacks member 'execute'")]
    NoExecute,
    #[error("QMP input member '{0}' is unexpected")]
    UnexpectedMember(String),
    #[error("QMP input member 'arguments' must be an object")]
    ArgumentsNotAnObject,
    #[error("JSON message too long (limit {MAX_LINE} bytes)")]
    TooLong,
    #[error("JSON parse error, {0}")]
    Parse(serde_json::Error),
    #[error("Expecting capabilities negotiation with 'qmp_capabilities'")]
    NotNegotiated,
    #[error("Capabilities negotiation is already complete, command ignored")]
    AlreadyNegotiated,
    #[error("The command {0} has not been found")]
    UnknownCommand(String),

    // ---- arguments ----
    #[error("Parameter '{0}' is unexpected")]
    UnexpectedParameter(String),
    #[error("Parameter '{0}' is missing")]
    MissingParameter(String),
    #[error("Invalid parameter type for '{key}', expected: {expected}")]
    InvalidType { key: String, expected: &'static str },
    #[error("Parameter '{key}' does not accept value '{value}'")]
    InvalidValue { key: &'static str, value: String },
    #[error("Invalid parameter '{0}'")]
    InvalidParameter(&'static str),
    #[error("Capability '{0}' not available")]
    NoSuchCapability(String),
    #[error("Need exactly one of 'device' and 'id'")]
    DeviceOrId,
    #[error("Device '{0}' not found")]
    DeviceNotFound(String),
    #[error("Unknown driver '{0}' (only raw images are supported)")]
    UnknownDriver(String),

    // ---- descriptors passed with add-fd ----
    #[error("No file descriptor supplied via SCM_RIGHTS")]
    NoPassedFd,
    #[error("Too many fd sets (limit {MAX_FDSETS})")]
    TooManyFdSets,
    #[error("Too many descriptors in fd set {0} (limit {MAX_FDS_PER_SET})")]
    TooManyFds(u64),
    #[error("File descriptor named 'fdset-id:{set}, fd:{fd}' not found")]
    NoSuchFd { set: u64, fd: u64 },
    #[error("File descriptor named 'fdset-id:{0}' not found")]
    NoSuchFdSet(u64),
    /// QEMU's wording, with the open(2) access mode it would have used.
    #[error("Could not dup FD for {filename} flags {flags:x}: No such file or directory")]
    NoFdForMedium { filename: String, flags: i32 },
    #[error("Could not open '{filename}': {source}")]
    DupFd { filename: String, source: std::io::Error },

    #[error(transparent)]
    Machine(#[from] MachineError),
}

impl CommandError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CommandError::NotNegotiated | CommandError::AlreadyNegotiated | CommandError::UnknownCommand(_) => {
                ErrorClass::CommandNotFound
            }
            CommandError::DeviceNotFound(_) => ErrorClass::DeviceNotFound,
            CommandError::Machine(e) => e.class(),
            _ => ErrorClass::GenericError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_qemu() {
        assert_eq!(CommandError::UnknownCommand("x".into()).class().as_str(), "CommandNotFound");
        assert_eq!(CommandError::NotNegotiated.class(), ErrorClass::CommandNotFound);
        assert_eq!(CommandError::DeviceNotFound("d".into()).class(), ErrorClass::DeviceNotFound);
        let missing = CommandError::from(MachineError::Ide(IdeError::NoSuchDevice("d".into())));
        assert_eq!((missing.class(), missing.to_string().as_str()), (ErrorClass::DeviceNotFound, "Device 'd' not found"));
        let locked = CommandError::from(MachineError::Ide(IdeError::NotRemovable("ide0-hd0".into())));
        assert_eq!((locked.class(), locked.to_string().as_str()), (ErrorClass::GenericError, "Device 'ide0-hd0' is not removable"));
        assert_eq!(CommandError::MissingParameter("device".into()).class(), ErrorClass::GenericError);
    }
}
