//! The qtest front: QEMU's qtest line protocol driving the pc machine, so
//! that any client written for QEMU's IDE (and our differential suite) can
//! drive xen-ioemu unchanged.

pub mod irq;
pub mod protocol;
pub mod ram;
pub mod session;
pub mod stream;

pub use irq::QtestIrqs;
pub use ram::AnonRam;
pub use session::QtestSession;
pub use stream::QtestStream;
