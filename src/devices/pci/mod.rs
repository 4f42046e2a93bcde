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

/// An I/O BAR as currently programmed and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoBar {
    pub index: usize,
    pub base: u16,
    pub len: u16,
}

pub trait PciFunction: Send {
    /// Read `size` (1, 2 or 4) bytes at `offset` (0..256, naturally aligned
    /// by the caller or not: the function must cope with any offset/size
    /// that stays inside the 256 bytes).
    fn config_read(&mut self, offset: u8, size: u8) -> u32;
    fn config_write(&mut self, offset: u8, size: u8, value: u32);
    /// I/O BARs that currently decode (COMMAND.IO set and base != 0).
    fn io_bars(&self) -> Vec<IoBar> {
        Vec::new()
    }
}
