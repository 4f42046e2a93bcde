fn main() {
    xen_ioemu::logging::init();
    std::process::exit(xen_ioemu::control::run(std::env::args().skip(1).collect()));
}
