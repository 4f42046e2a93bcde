//! Device logic. Nothing in here knows about Xen or qtest: devices see port
//! accesses, PCI config accesses, guest memory and interrupt lines.

pub mod bus;
pub mod ide;
pub mod pci;
