//! From a parsed command line to a running machine behind its front end.

pub fn run(_args: Vec<String>) -> i32 {
    eprintln!("xen-ioemu: not yet wired");
    1
}
