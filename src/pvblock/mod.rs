//! The PV block device (blkif, "qdisk" in libxl's words): the backend half
//! of Xen's block protocol, served from our block layer.
//!
//! Everything here is Xen-agnostic and unit-tested without Xen: the shared
//! ring is reached through [`SharedRing`] (on Xen, pages granted by the
//! frontend and mapped through gntdev), request data through
//! [`GrantCopier`] (on Xen, the gntdev grant-copy ioctl), and the frontend
//! is kicked through [`Notifier`] (an event channel). The thin Xen layer
//! that implements them, and the xenbus state machine, live in
//! `crate::xen::qdisk`.
//!
//! * [`ring`]: the back end of a shared ring (both ABIs), with every index
//!   the frontend writes checked: a `req_prod` more than a ring ahead
//!   stops the ring instead of making us loop or read stale slots.
//! * [`request`]: parses and checks one request (operation, segments,
//!   sector ranges against the image).
//! * [`backend`]: runs requests on the block I/O engine, many in flight,
//!   and answers them; host errors go through werror/rerror as for IDE.

pub mod backend;
pub mod info;
pub mod request;
pub mod ring;
#[cfg(test)]
pub(crate) mod tests;

pub use backend::{Qdisk, QdiskOptions, QdiskStats};
pub use info::{drive_infos, PvDiskInfo, PvDiskTable};
pub use request::{BlkRequest, Rejection, RequestKind, Segment};
pub use ring::{BackRing, RingError};

/// Memory shared with the frontend (the ring pages). Accesses are single
/// volatile loads and stores: the frontend writes the same memory at any
/// time. Offsets are checked by the implementation against its length.
pub trait SharedRing: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn load_u32(&self, offset: usize) -> u32;
    fn store_u32(&self, offset: usize, value: u32);
    /// Copy `dst.len()` bytes out (each byte read once).
    fn read(&self, offset: usize, dst: &mut [u8]);
    fn write(&self, offset: usize, src: &[u8]);
}

/// A granted page failed to copy (bad grant reference, wrong domain,
/// revoked grant): `status` is Xen's GNTST_* code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("grant copy of ref {gref} failed with status {status}")]
pub struct GrantError {
    pub gref: u32,
    pub status: i16,
}

/// Moves request data between the frontend's granted pages and our
/// buffers. `segments` are in order and their lengths add up to the
/// buffer's length.
pub trait GrantCopier: Send + Sync {
    fn copy_from_grants(&self, segments: &[Segment], dst: &mut [u8]) -> Result<(), GrantError>;
    fn copy_to_grants(&self, segments: &[Segment], src: &[u8]) -> Result<(), GrantError>;
}

/// Kicks the frontend (an event channel on Xen).
pub trait Notifier: Send + Sync {
    fn notify(&self);
}
