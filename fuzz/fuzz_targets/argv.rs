//! The argv parser, both Xen flavours (and qtest): a command line libxl
//! writes for qemu-xen or for qemu-xen-traditional, with options and
//! values replaced, added or mangled by the input. Invariants: the parse
//! is a pure function of argv (the same twice), and an accepted machine
//! has at most four drives, on distinct slots of the two IDE channels,
//! with distinct ids.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use xen_ioemu::control::cmdline::{parse_args, Command};

/// libxl's qemu-xen command line (libxl__build_device_model_args_new).
const QEMU_XEN: &[&str] = &[
    "-xen-domid", "7", "-chardev", "socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-7,server=on,wait=off",
    "-mon", "chardev=libxl-cmd,mode=control", "-nodefaults", "-no-user-config", "-name", "guest",
    "-machine", "xenfv,suppress-vmdesc=on", "-m", "1024", "-drive",
    "file=/images/disk.img,if=ide,index=0,media=disk,format=raw,cache=writeback", "-drive",
    "if=ide,index=2,readonly=on,media=cdrom,id=ide-5632", "-boot", "order=cd", "-smp", "2,maxcpus=2",
    "-serial", "pty", "-display", "none", "-vnc", "none", "-runas", "1000:1000", "-xen-domid-restrict",
];

/// libxl's qemu-xen-traditional command line (libxl__build_device_model_args_old).
const TRADITIONAL: &[&str] = &[
    "-d", "7", "-domain-name", "guest", "-videoram", "4", "-boot", "dc", "-serial", "pty", "-vcpus", "2",
    "-vcpu_avail", "0x3", "-acpi", "-net", "none", "-M", "xenfv", "-vnc", "127.0.0.1:0", "-vncunused",
];

/// Option names and values the parser knows, so mutations recombine them.
const WORDS: &[&str] = &[
    "-drive", "-device", "-global", "-qmp", "-qtest", "-accel", "-machine", "-M", "-chardev", "-mon", "-monitor",
    "-serial", "-cdrom", "-hda", "-hdb", "-hdc", "-hdd", "-run-with", "-chroot", "-runas", "-xen-domid", "-d",
    "-smp", "-m", "-boot", "-name", "qtest", "none", "stdio", "unix:/tmp/q,server=on,wait=off", "ide-hd", "ide-cd",
    "if=none,id=d0,file=/x", "driver=ide-hd,drive=d0,bus=ide.1,unit=1", "ide-hd.werror=stop", "werror=enospc",
    "rerror=stop", "retry-interval=0", "media=cdrom", "index=3", "format=raw", "cache=none", "fd=3",
    "socket,id=c,fd=4,server=on", "chardev=c,mode=control", "-version", "-help", "--", ",", ",,", "=", "",
];

#[derive(Debug, Arbitrary)]
enum Edit {
    Insert { at: u8, word: u8 },
    InsertText { at: u8, text: String },
    Replace { at: u8, text: String },
    Remove { at: u8 },
}

#[derive(Debug, Arbitrary)]
struct Input {
    base: u8,
    edits: Vec<Edit>,
}

fuzz_target!(|input: Input| {
    let base: &[&str] = match input.base % 3 {
        0 => QEMU_XEN,
        1 => TRADITIONAL,
        _ => &[],
    };
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    for edit in input.edits.iter().take(64) {
        let at = |a: u8, len: usize| if len == 0 { 0 } else { a as usize % (len + 1) };
        match edit {
            Edit::Insert { at: a, word } => {
                let i = at(*a, args.len());
                args.insert(i, WORDS[*word as usize % WORDS.len()].to_string());
            }
            Edit::InsertText { at: a, text } => {
                let i = at(*a, args.len());
                args.insert(i, text.clone());
            }
            Edit::Replace { at: a, text } if !args.is_empty() => {
                let i = *a as usize % args.len();
                args[i] = text.clone();
            }
            Edit::Remove { at: a } if !args.is_empty() => {
                let i = *a as usize % args.len();
                args.remove(i);
            }
            _ => {}
        }
    }
    let first = parse_args(&args);
    assert_eq!(first, parse_args(&args), "the same argv parsed twice differently");
    if let Ok(Command::Run(config)) = first {
        assert!(config.drives.len() <= 4, "{} drives", config.drives.len());
        let mut slots: Vec<u8> = config.drives.iter().map(|d| d.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), config.drives.len(), "two drives on one slot: {:?}", config.drives);
        assert!(slots.iter().all(|s| *s < 4), "a drive on slot {slots:?}");
        let mut ids: Vec<&str> = config.drives.iter().map(|d| d.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), config.drives.len(), "two drives with one id");
    }
});
