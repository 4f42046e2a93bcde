//! The qtest front: QEMU's qtest line protocol driving the pc machine.
