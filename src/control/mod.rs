//! The control plane: command line parsing and QMP.

pub fn run(_args: Vec<String>) -> i32 {
    eprintln!("xen-ioemu: not yet wired");
    1
}
