//! Raw Xen ABI for a device model (filled in by the Xen front work).
