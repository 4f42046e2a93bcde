//! Device logic. Nothing in here knows about Xen or qtest: devices see port
//! accesses, PCI config accesses, guest memory and interrupt lines.

pub mod bus;
pub mod cmos;
pub mod i8042;
pub mod ide;
pub mod pci;
pub mod reset;
pub mod state;
pub mod uart;
