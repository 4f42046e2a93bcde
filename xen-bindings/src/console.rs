//! The PV console ring (`xen/io/console.h`, `struct xencons_interface`) as
//! byte offsets: one page the frontend grants, with a 1 KiB ring towards
//! the guest (`in`) and a 2 KiB ring from it (`out`), each with a free
//! running 32-bit producer and consumer index. `tests/layout.rs` checks
//! every offset against the header.

/// `in[]`: bytes for the guest; we produce (`in_prod`), it consumes.
pub const XENCONS_IN: usize = 0;
pub const XENCONS_IN_SIZE: usize = 1024;
/// `out[]`: bytes from the guest; it produces (`out_prod`), we consume.
pub const XENCONS_OUT: usize = 1024;
pub const XENCONS_OUT_SIZE: usize = 2048;
pub const XENCONS_IN_CONS: usize = 3072;
pub const XENCONS_IN_PROD: usize = 3076;
pub const XENCONS_OUT_CONS: usize = 3080;
pub const XENCONS_OUT_PROD: usize = 3084;
/// `sizeof(struct xencons_interface)`.
pub const XENCONS_INTERFACE_SIZE: usize = 3088;
