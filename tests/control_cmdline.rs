//! Properties of the command-line parser over generated argument lists.

use proptest::prelude::*;
use xen_ioemu::control::{parse_args, Command};

const WORDS: &[&str] = &[
    "-xen-domid", "-d", "-drive", "-device", "-global", "-machine", "-M", "-accel", "-qtest", "-qmp",
    "-chardev", "-mon", "-m", "-smp", "-boot", "-serial", "-cdrom", "-hda", "-hdd", "-S", "-nodefaults",
    "-incoming", "-vcpu_avail", "-vcpus", "--name", "-runas", "-chroot", "-version", "1", "7", "0",
    "if=ide,index=0,file=/a", "if=none,id=x,file=/b", "ide-cd,drive=x,bus=ide.1", "ide-hd,drive=x,unit=1",
    "ide-hd.werror=stop", "xenfv", "none,accel=xen", "qtest", "stdio", "unix:/tmp/s,server=on,wait=off",
    "socket,id=c,fd=9,server=on,wait=off", "chardev=c,mode=control", "pty", ",,", ",", "=", "", "0x",
    "4,maxcpus=2", "order=", "file=,,", "index=99999999999999999999", "ide-cd.retry-interval=-1",
];

fn arg() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "[-a-z=,.:/0-9]{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_argument_list_parses_or_gives_a_one_line_error(args in proptest::collection::vec(arg(), 0..14)) {
        match parse_args(&args) {
            Ok(Command::Run(config)) => {
                prop_assert!(config.drives.len() <= 4);
                let mut slots: Vec<u8> = config.drives.iter().map(|d| d.slot).collect();
                slots.dedup();
                prop_assert_eq!(slots.len(), config.drives.len());
                prop_assert!(config.drives.iter().all(|d| d.slot < 4));
                prop_assert!(config.domid.is_some() || config.qtest.is_some()
                    || config.flavour == xen_ioemu::control::Flavour::Probe);
            }
            Ok(Command::PrintAndExit { text }) => prop_assert!(!text.is_empty()),
            Err(e) => {
                let text = e.to_string();
                prop_assert!(!text.is_empty() && !text.contains('\n'), "{:?}", text);
            }
        }
    }

    #[test]
    fn escaped_file_names_come_back_unchanged(name in "/[a-z,=:. ]{1,30}") {
        let value = format!("if=ide,index=1,format=raw,file={}", name.replace(',', ",,"));
        let args: Vec<String> = ["-xen-domid", "5", "-drive", value.as_str()].iter().map(|s| s.to_string()).collect();
        match parse_args(&args) {
            Ok(Command::Run(config)) => prop_assert_eq!(config.drives[0].file.as_deref(), Some(name.as_str())),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

/// libxl's HVM argv with kernel= set: the binary must stop before it opens
/// anything of Xen's, with one line naming the option.
#[test]
fn the_binary_refuses_direct_kernel_boot_before_touching_xen() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xen-ioemu"))
        .args([
            "-xen-domid", "7", "-no-shutdown", "-nodefaults", "-no-user-config", "-name", "g1",
            "-display", "none", "-kernel", "/boot/vmlinuz", "-append", "console=ttyS0",
            "-machine", "xenfv,suppress-vmdesc=on", "-m", "1016",
        ])
        .env("XEN_IOEMU_LOG", "off")
        .output()
        .expect("run xen-ioemu");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "xen-ioemu: -kernel: direct kernel boot is not supported by xen-ioemu; boot from a disk\n");
}
