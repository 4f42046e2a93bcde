//! What a device keeps across `xl save`/`xl restore`/`xl migrate`. Each
//! device owns its own state struct, next to its code; this module only
//! names them together ([`DeviceState`]) and gives every device the same
//! two calls ([`Snapshot`]). The machine assembles the devices' states into
//! the saved blob (`machine::savestate`), which has the magic number and
//! the version.
//!
//! A loaded state is as hostile as a guest access: every `restore`
//! checks every field (buffer positions inside the buffer, unit numbers,
//! lengths) and refuses the whole state before changing anything.

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::devices::cmos::CmosState;
pub use crate::devices::i8042::I8042State;
pub use crate::devices::ide::IdeState;
pub use crate::devices::pci::config::ConfigState;
pub use crate::devices::pci::piix4_pm::Piix4PmState;
pub use crate::devices::pci::xen_platform::XenPlatformState;
pub use crate::devices::uart::UartState;

/// One device's saved state. The variant names the kind of device, so a
/// state can never be loaded into a device of another kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    /// Nothing to keep (a write-only port).
    Stateless,
    /// A PCI function whose only state is its configuration space
    /// (i440FX host bridge, PIIX3 ISA bridge with its PIRQ routes).
    PciConfig(ConfigState),
    /// A one-byte latch (port 0x92, 0xcf9).
    Latch(u8),
    Piix4Pm(Piix4PmState),
    XenPlatform(XenPlatformState),
    Cmos(CmosState),
    I8042(I8042State),
    Uart(UartState),
    Ide(Box<IdeState>),
}

impl DeviceState {
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceState::Stateless => "stateless",
            DeviceState::PciConfig(_) => "pci-config",
            DeviceState::Latch(_) => "latch",
            DeviceState::Piix4Pm(_) => "piix4-pm",
            DeviceState::XenPlatform(_) => "xen-platform",
            DeviceState::Cmos(_) => "cmos",
            DeviceState::I8042(_) => "i8042",
            DeviceState::Uart(_) => "uart",
            DeviceState::Ide(_) => "ide",
        }
    }
}

/// Why a saved state cannot be loaded into a device.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StateError {
    #[error("{device}: a {found} state cannot be loaded into this device")]
    WrongKind { device: &'static str, found: &'static str },
    #[error("{device}: {what}")]
    Invalid { device: &'static str, what: String },
}

impl StateError {
    pub fn invalid(device: &'static str, what: impl Into<String>) -> Self {
        StateError::Invalid { device, what: what.into() }
    }

    pub fn wrong_kind(device: &'static str, found: &DeviceState) -> Self {
        StateError::WrongKind { device, found: found.kind() }
    }
}

/// Save and load a device. A supertrait of
/// [`BusDevice`](crate::devices::bus::BusDevice) and
/// [`PciFunction`](crate::devices::pci::PciFunction), as
/// [`Reset`](crate::devices::bus::Reset) is, so that no device on the
/// machine's buses can be left out of a saved state by forgetting it.
pub trait Snapshot {
    /// The device's state now. Host I/O must have been drained first (see
    /// `IdeController::snapshot`), so the state is complete.
    fn snapshot(&self) -> DeviceState;
    /// Take `state` over, or refuse it whole and leave the device as it
    /// was. Interrupt lines are driven to the loaded levels.
    fn restore(&mut self, state: &DeviceState) -> Result<(), StateError>;
}

/// `len <= max` or the named field is refused.
pub fn check_len(device: &'static str, field: &str, len: usize, max: usize) -> Result<(), StateError> {
    if len > max {
        return Err(StateError::invalid(device, format!("{field}: {len} entries, at most {max}")));
    }
    Ok(())
}

/// Test devices with nothing to save.
#[cfg(test)]
macro_rules! stateless_for_tests {
    ($($t:ty),*) => {
        $(impl $crate::devices::state::Snapshot for $t {
            fn snapshot(&self) -> $crate::devices::state::DeviceState {
                $crate::devices::state::DeviceState::Stateless
            }
            fn restore(&mut self, _: &$crate::devices::state::DeviceState) -> Result<(), $crate::devices::state::StateError> {
                Ok(())
            }
        })*
    };
}
#[cfg(test)]
pub(crate) use stateless_for_tests;
