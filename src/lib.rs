//! xen-ioemu: a device model for Xen HVM guests.
//!
//! Layout: `devices` (guest-visible hardware, no Xen), `block` (host
//! images and fault injection), `vm` (what fronts, board and devices share: guest memory, IRQ lines,
//! run state, events), `machine` (the PC board, above the devices),
//! `xen` (the ioreq-server front), `qtest` (QEMU's test protocol front),
//! `control` (command line and QMP), `logging` (stderr, syslog, audit).

pub mod block;
pub mod control;
pub mod launch;
#[forbid(unsafe_code)]
pub mod devices;
pub mod logging;
#[forbid(unsafe_code)]
pub mod machine;
#[forbid(unsafe_code)]
pub mod pvblock;
#[forbid(unsafe_code)]
pub mod pvconsole;
pub mod qtest;
pub mod sandbox;
pub mod vm;
pub mod xen;
