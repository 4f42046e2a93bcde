fn main() {
    xen_ioemu::logging::init();
    std::process::exit(xen_ioemu::launch::run(std::env::args().skip(1).collect()));
}
