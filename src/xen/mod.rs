//! The Xen front: ioreq server, guest memory, IRQs, xenstore.
