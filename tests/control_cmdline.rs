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

/// libxl's HVM argv with kernel= set and the kernel missing: the binary
/// must stop before it opens anything of Xen's, with one line naming the
/// option and the file (-L names a directory with the option ROM).
#[test]
fn a_missing_direct_boot_kernel_ends_start_up_before_touching_xen() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("linuxboot_dma.bin"), b"\x55\xaa").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xen-ioemu"))
        .args([
            "-xen-domid", "7", "-no-shutdown", "-nodefaults", "-no-user-config", "-name", "g1",
            "-display", "none", "-kernel", "/nonexistent/vmlinuz", "-append", "console=ttyS0",
            "-machine", "xenfv,suppress-vmdesc=on", "-m", "1016", "-L",
        ])
        .arg(dir.path())
        .env("XEN_IOEMU_LOG", "error")
        .output()
        .expect("run xen-ioemu");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "xen-ioemu: error: -kernel /nonexistent/vmlinuz: No such file or directory (os error 2)\n");
}

/// Every option the device model refuses, each run through the binary:
/// exit status 1, and on stderr exactly one line that names the option and
/// says why, before anything touches Xen (none is needed to run this).
/// (args, the line after "xen-ioemu: ").
const REFUSED: &[(&str, &str)] = &[
    ("-frobnicate", "-frobnicate: unknown option"),
    ("-xen-domid", "-xen-domid: requires an argument"),
    ("-xen-domid 7 -d 8", "-xen-domid and -d: give the domain once"),
    ("-xen-domid 7 -accel qtest", "-accel qtest: cannot be combined with -xen-domid/-d (pick Xen or qtest)"),
    ("-xen-domid 7 -qtest unix:/tmp/q", "-qtest: cannot be combined with -xen-domid/-d"),
    ("-qtest unix:/tmp/q -accel kvm", "-qtest: needs -accel qtest (or tcg)"),
    ("-m 64", "no -xen-domid N, -d N or -qtest given: nothing to serve"),
    ("-d 7 -drive file=/x.img", "-drive: qemu-xen-traditional (-d) takes its disks from xenstore"),
    ("-xen-domid 7 -mon chardev=nope,mode=control", "-mon: chardev=nope names no -chardev"),
    ("-xen-domid 7 -mon mode=control", "-mon: no chardev= given"),
    ("-xen-domid 7 -chardev pty,id=c1 -mon chardev=c1,mode=control", "-chardev: id=c1: a QMP monitor needs a socket chardev"),
    (
        "-xen-domid 7 -chardev socket,id=c1,fd=5,server=on,wait=off -mon chardev=c1,mode=control -qmp fd=5",
        "-chardev: fd=5 is already used by -qmp; each descriptor can serve one monitor",
    ),
    ("-xen-domid 7 -chardev socket,id=c1,server=on,wait=off -mon chardev=c1,mode=control", "-chardev: no path= or fd= given"),
    ("-xen-domid 7 -chardev socket,path=/tmp/q", "-chardev: no id= given"),
    ("-xen-domid 7 -smp 4,maxcpus=2", "-smp: maxcpus=2 is less than cpus=4"),
    ("-xen-domid 7 -smp 0", "-smp: '0' is not a vCPU count (1..128)"),
    ("-xen-domid 7 -smp 999", "-smp: '999' is not a vCPU count (1..128)"),
    ("-xen-domid 0", "-xen-domid: '0' is not a guest domain id (1..32751)"),
    ("-xen-domid 40000", "-xen-domid: '40000' is not a guest domain id (1..32751)"),
    ("-d 0", "-d: '0' is not a guest domain id (1..32751)"),
    ("-xen-domid 7 -serial tcp:1.2.3.4:5", "-serial: 'tcp:1.2.3.4:5': only pty, null, stdio, file:PATH and none are supported"),
    ("-xen-domid 7 -qmp unix:/tmp/q,server=maybe", "-qmp: server=maybe: not on or off"),
    ("-xen-domid 7 -qmp unix:/tmp/q,server=on,wait=on", "-qmp: wait=on is not supported (use wait=off)"),
    ("-xen-domid 7 -qmp fd=abc,server=on,wait=off", "-qmp: fd=abc: not an inherited descriptor number"),
    ("-xen-domid 7 -qmp tcp:1.2.3.4:5,server=on,wait=off", "-qmp: 'tcp:1.2.3.4:5': only unix sockets are supported"),
    ("-qtest tcp:1.2.3.4", "-qtest: 'tcp:1.2.3.4': only stdio and unix:PATH are supported"),
    ("-xen-domid 7 -machine help", "-machine: machines: pc, xenfv, xenpv, none"),
    ("-xen-domid 7 -machine q35", "-machine: machine 'q35' is not supported (pc, xenfv, xenpv or none)"),
    ("-xen-domid 7 -machine xenfv,max-ram-below-4g=9G", "-machine: max-ram-below-4g='9G' is not a size up to 4G"),
    ("-xen-domid 7 -global foo", "-global: 'foo' is not DRIVER.PROPERTY=VALUE"),
    ("-xen-domid 7 -global foo=bar", "-global: 'foo=bar' is not DRIVER.PROPERTY=VALUE"),
    ("-xen-domid 7 -global ide-hd.werror=explode", "-global ide-hd.werror: 'explode' is not one of report, ignore, stop, enospc"),
    ("-xen-domid 7 -m size=", "-m: '' is not a memory size"),
    ("-xen-domid 7 -m slots=2", "-m: no size given"),
    ("-xen-domid 7 -m lots", "-m: 'lots' is not a memory size"),
    ("-xen-domid 7 -vcpu_avail zz", "-vcpu_avail: 'zz' is not a hex bitmap"),
    ("-xen-domid 7 -vcpu_avail 0", "-vcpu_avail: no vCPU is available"),
    ("-xen-domid 7 -boot order=!!", "-boot: '!!' is not a boot order (letters a-p)"),
    // Passes the parser; the PC's own check ends start-up just the same.
    ("-xen-domid 7 -boot order=e", "-boot order=e: invalid boot device 'e' for a PC (use a, b, c, d or n)"),
    ("-xen-domid 7 -run-with chroot=/x,bogus=1", "-run-with: bogus=: unknown property"),
    ("-xen-domid 7 -incoming tcp:0:4444", "-incoming: only fd:N (a file libxl opened) and defer are supported"),
    ("-xen-domid 7 -loadvm snap", "-loadvm: restoring a saved device state is not supported"),
    ("-xen-domid 7 -daemonize", "-daemonize: libxl tracks the device model's pid; it must not daemonize"),
    ("-xen-domid 7 -snapshot", "-snapshot: temporary snapshots are not supported"),
    ("-xen-domid 7 -initrd /boot/initrd.img", "-initrd: only allowed with -kernel"),
    ("-xen-domid 7 -append quiet", "-append: only allowed with -kernel"),
    ("-xen-domid 7 -xen-attach", "-xen-attach: only with -machine xenpv (a PV or PVH domain's device model)"),
    ("-xen-domid 7 -machine xenpv", "-machine: xenpv needs -xen-attach (libxl passes both for a PV or PVH domain)"),
    ("-xen-attach -machine xenpv", "-machine: xenpv needs -xen-domid N"),
    ("-xen-domid 7 -xen-attach -machine xenpv -drive file=/x.img", "-drive: -machine xenpv has no IDE controller: PV disks come from xenstore (qdisk)"),
    ("-xen-domid 7 -xen-attach -machine xenpv -kernel /vmlinuz", "-kernel: -machine xenpv: the domain builder loads a PV or PVH kernel, not the device model"),
    ("-xen-domid 7 -drive file=/x.img,bogus=1", "-drive: bogus=: unknown drive property"),
    ("-xen-domid 7 -drive file=/x.img,if=virtio", "-drive: if=virtio: only if=ide and if=none are supported"),
    ("-xen-domid 7 -drive file=/x.img,format=vpc", "-drive: format=vpc: not supported (the imago image library has no vpc driver); supported: raw, qcow2, vmdk (read-only); convert with qemu-img convert -O qcow2"),
    ("-xen-domid 7 -drive file=/x.img,snapshot=on", "-drive: snapshot=on: temporary snapshots are not supported"),
    ("-xen-domid 7 -drive file=/x.img,media=tape", "-drive: media=tape: must be disk or cdrom"),
    ("-xen-domid 7 -drive file=/x.img,readonly=maybe", "-drive: readonly=maybe: expected on or off"),
    ("-xen-domid 7 -drive file=/x.img,readonly=on", "-drive: ide0-hd0: qemu-xen doesn't support read-only IDE disks"),
    ("-xen-domid 7 -drive media=disk", "-drive: a hard disk needs file="),
    ("-xen-domid 7 -drive file=/x.img,if=none", "-drive: if=none needs id="),
    ("-xen-domid 7 -hda /a -hdb /b -hdc /c -hdd /d -drive file=/e.img", "-drive: all four IDE slots are taken"),
    ("-xen-domid 7 -drive file=/x.img,index=0 -drive file=/y.img,index=0", "-drive: ide.0 unit 0 already holds a drive"),
    ("-xen-domid 7 -drive file=/x.img,id=a -drive file=/y.img,id=a", "-drive: id=a: used twice"),
    ("-xen-domid 7 -drive file=/x.img,index=9", "-drive: index=9 is beyond ide.1 unit 1"),
    ("-xen-domid 7 -drive file=/x.img,index=x", "-drive: index=x: not a number"),
    ("-xen-domid 7 -drive file=/x.img,index=0,bus=0", "-drive: index= cannot be combined with bus= or unit="),
    ("-xen-domid 7 -drive file=/x.img,bus=3,unit=0", "-drive: bus=3,unit=0 is beyond ide.1 unit 1"),
    ("-xen-domid 7 -drive file=/x.img,werror=explode", "-drive werror: 'explode' is not one of report, ignore, stop, enospc"),
    ("-xen-domid 7 -drive file=/x.img,rerror=enospc", "-drive rerror: 'enospc' invalid read error action"),
    ("-xen-domid 7 -drive file=/x.img,retry-interval=forever", "-drive retry-interval: 'forever' is not a number of seconds (0..86400)"),
    ("-xen-domid 7 -drive file=/x.img,cache=fast", "-drive: cache=fast: not one of writeback, writethrough, none, directsync, unsafe"),
    ("-xen-domid 7 -device ide-hd", "-device ide-hd: no drive= given"),
    ("-xen-domid 7 -device ide-hd,drive=nope", "-device ide-hd: drive=nope: no -drive if=none,id=nope"),
    ("-xen-domid 7 -device e1000,drive=d", "-device: e1000,drive=d: only ide-hd and ide-cd can attach a drive"),
    ("-xen-domid 7 -drive if=none,id=c,media=cdrom -device ide-hd,drive=c", "-device ide-hd: drive=c is media=cdrom; use ide-cd"),
    ("-xen-domid 7 -drive if=none,id=d -device ide-hd,drive=d", "-device ide-hd: drive=d: a hard disk needs file="),
    ("-xen-domid 7 -drive if=none,id=d,file=/x.img -device ide-hd,drive=d,bus=ide.7", "-device ide-hd: bus=ide.7: only ide.0 and ide.1 exist"),
    ("-xen-domid 7 -drive if=none,id=d,file=/x.img -device ide-hd,drive=d,unit=5", "-device ide-hd: unit=5: an IDE bus has units 0 and 1"),
    (
        "-xen-domid 7 -hda /a -hdb /b -drive if=none,id=d,file=/x.img -device ide-hd,drive=d,bus=ide.0",
        "-device ide-hd: bus=ide.0 is full",
    ),
    (
        "-xen-domid 7 -drive if=none,id=d,file=/x.img -device ide-hd,drive=d,werror=explode",
        "-device ide-hd werror: 'explode' is not one of report, ignore, stop, enospc",
    ),
];

#[test]
fn every_refused_option_gives_one_line_naming_it_and_exit_status_1() {
    let mut wrong = Vec::new();
    for (args, line) in REFUSED {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xen-ioemu"))
            .args(args.split_whitespace())
            .env("XEN_IOEMU_LOG", "off")
            .output()
            .expect("run xen-ioemu");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let want = format!("xen-ioemu: {line}\n");
        if out.status.code() != Some(1) || stderr != want || !out.stdout.is_empty() {
            wrong.push(format!("{args}\n  status {:?}, stderr {stderr:?}\n  wanted {want:?}", out.status.code()));
        }
    }
    assert!(wrong.is_empty(), "{} of {} refusals are off:\n{}", wrong.len(), REFUSED.len(), wrong.join("\n"));
}

/// A configuration that parses but cannot be set up (an image that isn't
/// there) ends start-up the same way: exit status 1 and one error line
/// naming the option, with its cause kept (the OS error).
#[test]
fn an_image_that_cannot_be_opened_is_one_error_line_naming_the_drive() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xen-ioemu"))
        .args(["-qtest", "stdio", "-accel", "qtest", "-drive", "file=/nonexistent/disk.img"])
        .env("XEN_IOEMU_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run xen-ioemu");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("xen-ioemu: error: -drive file=/nonexistent/disk.img: "), "{stderr}");
    assert!(lines[0].contains("No such file or directory"), "{stderr}");
}
