//! xen-ioemu: a device model for Xen HVM guests.
//!
//! Layout: `devices` (guest-visible hardware, no Xen), `block` (host
//! images and fault injection), `machine` (what fronts and devices share),
//! `xen` (the ioreq-server front), `qtest` (QEMU's test protocol front),
//! `control` (command line and QMP), `logging` (stderr, syslog, audit).

pub mod block;
pub mod control;
pub mod launch;
#[forbid(unsafe_code)]
pub mod devices;
pub mod logging;
pub mod machine;
pub mod qtest;
pub mod xen;
