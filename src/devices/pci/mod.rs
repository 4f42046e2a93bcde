//! PCI functions and their configuration space.
//!
//! A [`PciFunction`] owns its 256-byte config space. The machine routes
//! config cycles (0xcf8/0xcfc in qtest, PCI_CONFIG ioreqs on Xen) to the
//! function at a bus/device/function address, and after each write asks the
//! function for its I/O BARs so the port bus can follow a relocation.

pub mod config;
pub mod i440fx;
pub mod piix3_isa;
pub mod piix4_pm;
pub mod qemu_header;
pub mod xen_platform;

pub use config::ConfigSpace;

use crate::devices::bus::{PirqRoute, Reset};
use crate::devices::state::Snapshot;

/// An I/O BAR as currently programmed and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoBar {
    pub index: usize,
    pub base: u16,
    pub len: u16,
}

/// What a config write changed beyond the function's registers (crosvm's
/// `ConfigWriteResult` is the model). BAR moves and I/O decoding are not
/// here: the machine sees those by comparing [`PciFunction::io_bars`]
/// before and after, and reports them in its
/// [`BusEffects`](crate::devices::bus::BusEffects).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigWriteResult {
    pub pirq_routes: Vec<PirqRoute>,
}

pub trait PciFunction: Send + Reset + Snapshot {
    /// Read `size` (1, 2 or 4) bytes at `offset` (0..256, naturally aligned
    /// by the caller or not: the function must cope with any offset/size
    /// that stays inside the 256 bytes).
    fn config_read(&mut self, offset: u8, size: u8) -> u32;
    fn config_write(&mut self, offset: u8, size: u8, value: u32) -> ConfigWriteResult;
    /// I/O BARs that currently decode (COMMAND.IO set and base != 0).
    fn io_bars(&self) -> Vec<IoBar> {
        Vec::new()
    }
    /// Every PCI interrupt link this function routes, as a loaded state
    /// has them (the PIIX3 ISA bridge): sent again to the hypervisor after
    /// a restore.
    fn pirq_routes(&self) -> Vec<PirqRoute> {
        Vec::new()
    }
}
