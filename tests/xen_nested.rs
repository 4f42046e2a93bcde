//! The Xen front against a real Xen 4.17: boots Debian's Xen + dom0 under
//! QEMU/TCG with /work/shared/docs/nested-xen.sh (or $XEN_IOEMU_NESTED_SCRIPT),
//! starts an HVM guest whose firmware is tests/xen_nested/fw.S and whose
//! device model is examples/xen_ioreq_probe.rs, and checks every round
//! trip from the guest's own console lines and the device model's log.
//!
//! About a minute of QEMU on two cores, so it is #[ignore]d; run it with
//! `cargo test --test xen_nested -- --ignored`. When asked to run it fails
//! (never skips) if the script, as/ld or QEMU are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "boots Xen under QEMU/TCG (~60 s)"]
fn ioreq_server_round_trips_on_nested_xen() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = std::env::var("XEN_IOEMU_NESTED_SCRIPT").unwrap_or_else(|_| "/work/shared/docs/nested-xen.sh".into());
    assert!(Path::new(&script).exists(), "{script} not found (set XEN_IOEMU_NESTED_SCRIPT)");
    let scratch = std::env::temp_dir().join(format!("xen-ioemu-nested-{}", std::process::id()));
    let extra = scratch.join("extra");
    std::fs::create_dir_all(&extra).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).current_dir(&root).args(["build", "--release", "--example", "xen_ioreq_probe"]));
    std::fs::copy(root.join("target/release/examples/xen_ioreq_probe"), extra.join("xen_ioreq_probe")).unwrap();
    let obj = scratch.join("fw.o");
    run(Command::new("as").arg("--32").arg("-o").arg(&obj).arg(root.join("tests/xen_nested/fw.S")));
    run(Command::new("ld").args(["-m", "elf_i386", "-N", "-Ttext=0x100000", "-e", "_start", "-o"]).arg(extra.join("fw.elf")).arg(&obj));
    std::fs::copy(root.join("tests/xen_nested/run.sh"), extra.join("run.sh")).unwrap();

    let xen = scratch.join("xen");
    run(Command::new(&script).arg(&xen).arg("build").env("EXTRA_DIR", &extra));
    let log = run(Command::new(&script).arg(&xen).arg("boot").env("TIMEOUT", "300"));
    let _ = std::fs::remove_dir_all(&scratch);

    for line in log.lines().filter(|l| l.contains("PROBE-RSS")) {
        println!("{line}");
    }
    for (domid, mapping) in [(1, "Auto"), (2, "GuestFrames")] {
        check_domain(&log, domid, mapping);
    }
    assert!(!log.contains("PROBE STILL RUNNING"), "the device model outlived its domain");
    assert!(!log.contains("FATAL"), "the probe failed");
}

/// The guest's console lines and the device model's log for one domain.
fn check_domain(log: &str, domid: u32, mapping: &str) {
    let tag = format!("(d{domid})");
    let guest: Vec<&str> = log.lines().filter(|l| l.contains(&tag)).collect();
    println!("guest console of d{domid}:\n{}", guest.join("\n"));
    let has_guest = |needle: &str| guest.iter().any(|l| l.contains(needle));
    for expected in [
        "RUSTDM-PROBE: inb(0x1f7)=0x50",
        "RUSTDM-PROBE: held inb(0x1f7)=0x50",
        "RUSTDM-PROBE: rep insw x4 from 0x1f0: 31 12 32 12 33 12 34 12",
        "RUSTDM-PROBE: std; rep insb x3 (low to high): 37 36 35",
        "RUSTDM-PROBE: pci 00:01.1 reg 8 = 0x01018008",
        "RUSTDM-PROBE: mmio [0xfebf0010] = 0xfeed0010",
        "RUSTDM-PROBE: rep movsl x2 from 0xfebf0000: 00 00 ed fe 04 00 ed fe",
        "RUSTDM-PROBE: asking for power-off",
    ] {
        assert!(has_guest(expected), "d{domid}: guest line {expected:?} missing");
    }
    assert!(!has_guest("still alive after power-off"), "d{domid}: remote_shutdown did not stop the guest");
    // The held read completes only after the hold: compare the guest's own
    // timestamps ("(d1) [   18.41] ...") of the lines before and after it.
    let stamp = |needle: &str| -> f64 {
        let line = guest.iter().find(|l| l.contains(needle)).expect("line present");
        let inner = line.split(&format!("{tag} [")).nth(1).expect("timestamp");
        inner.split(']').next().unwrap().trim().parse().expect("seconds")
    };
    let held_for = stamp("held inb(0x1f7)") - stamp("RUSTDM-PROBE: inb(0x1f7)");
    println!("d{domid}: held request completed after {held_for:.3} s");
    assert!((1.9..10.0).contains(&held_for), "d{domid}: held request completed after {held_for} s, expected about 2 s");

    // The device model's log (qemu-dm-<name>.log, printed by run.sh) for this domain.
    let start = log.find(&format!("ioreq server 0 created for d{domid} ({mapping} page mapping)")).unwrap_or_else(|| panic!("d{domid}: no {mapping} server"));
    let dm_log = &log[start..];
    let dm_log = &dm_log[..dm_log.find("ioreq server torn down; exiting").unwrap_or_else(|| panic!("d{domid}: no teardown"))];
    for expected in [
        "XENIOEMU-PROBE: pio write port=0x1f0 size=2 value=0xb1b2",
        "XENIOEMU-PROBE: pio write port=0x1f4 size=4 value=0xcafef00d",
        "XENIOEMU-PROBE: pci config write 00:09 reg=0xa size=2 value=0xbeef",
        "XENIOEMU-PROBE: mmio write 0xfebf0020 size=4 value=0x11223344",
        "set_isa_irq_level(14, 1) -> Ok(()); set_pci_link_route(0, 11) -> Ok(()); set_pci_intx_level(00:01 INTA) -> Ok(())",
        "XENIOEMU-PROBE: remote_shutdown(poweroff) -> Ok(())",
        &format!("XENIOEMU-PROBE: privcmd and evtchn restricted to d{domid}"),
        "XENIOEMU-PROBE: holding requests for 2 s",
        &format!("XENIOEMU-PROBE: xenstore: device-model/{domid} = [\"disable_pf\", \"state\"], platform device disabled = false"),
        "XENIOEMU-PROBE: xenstore: serial/0/tty reads back Some(\"/dev/pts/probe\")",
    ] {
        assert!(dm_log.contains(expected), "d{domid}: device model line {expected:?} missing");
    }
    assert!(log.contains(&format!("ioreq server 0 for domain {domid}: 2 vCPU(s)")));
    assert!(!dm_log.contains("FATAL"), "d{domid}: the probe failed");
}
