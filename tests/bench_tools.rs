//! The qtest benchmark client (tools/bench/qtest_bench.py) must produce
//! figures for a working device model and refuse to produce any for a
//! broken one. Both are driven for real: our binary, and a fake qtest
//! peer that answers every protocol request but returns wrong disk data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/bench/qtest_bench.py")
}

fn halt_bios(dir: &Path) -> PathBuf {
    let mut bios = vec![0xf4u8; 65536];
    bios[0xfff0..0xfff4].copy_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]);
    let path = dir.join("halt.bin");
    std::fs::write(&path, bios).unwrap();
    path
}

fn run_helper(dir: &Path, model: &str, workloads: &str) -> Output {
    Command::new("python3")
        .arg(helper())
        .args(["--model", model, "--workloads", workloads, "--seconds", "0.2", "--round-trips", "3000", "--memory"])
        .arg("--bios")
        .arg(halt_bios(dir))
        .arg("--workdir")
        .arg(dir)
        .output()
        .expect("python3 must be installed to run the benchmark tools")
}

/// The first number after `label` in its row (the first model's column).
fn figure(stdout: &str, label: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} row in:\n{stdout}"));
    line[label.len()..]
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

#[test]
fn every_qtest_workload_runs_against_our_binary_and_checks_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_helper(dir.path(), &format!("ours={}", env!("CARGO_BIN_EXE_xen-ioemu")), "rt,rt1,pio1,pio1ls,dma8r,dma256w");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "helper failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for row in [
        "pipelined inb 0x3f6/s",
        "lock-step inb 0x3f6 round trips/s",
        "1-sector READ SECTORS/s",
        "1-sector READ SECTORS/s, lock-step",
        "8-sector READ DMA/s",
        "256-sector WRITE DMA/s",
    ] {
        assert!(figure(&stdout, row) > 0.0, "{row} is not a positive rate:\n{stdout}");
    }
    // Peak RSS of a live process is at least its code; 0 would mean the
    // figure was not read from /proc.
    assert!(figure(&stdout, "VmHWM MiB") > 0.5, "{stdout}");
    // Image copies are removed once a model is done with them.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("halt.bin")]);
}

/// A peer that speaks the protocol and passes the PIIX3 and status checks
/// but whose data port reads zeros: the helper must fail, naming the LBA.
const WRONG_DATA_PEER: &str = r#"import sys
for line in sys.stdin:
    words = line.split()
    if words[0] == "inl":
        reply = "OK 0x70108086"
    elif words[0] == "inb":
        reply = "OK 0x0050" if words[1] == "0x1f7" or words[1] == "0x3f6" else "OK 0x0004"
    elif words[0] == "inw":
        reply = "OK 0x0000"
    else:
        reply = "OK"
    print(reply, flush=True)
"#;

#[test]
fn a_model_returning_wrong_sector_data_gets_no_figure() {
    let dir = tempfile::tempdir().unwrap();
    let peer = dir.path().join("wrong-data-peer");
    std::fs::write(&peer, format!("#!/usr/bin/env python3\n{WRONG_DATA_PEER}")).unwrap();
    let mut perms = std::fs::metadata(&peer).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&peer, perms).unwrap();

    let out = run_helper(dir.path(), &format!("fake={}", peer.display()), "pio1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "helper accepted zeros as sector data:\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("READ SECTORS of LBA 0 returned other bytes than the image"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("READ SECTORS/s"));
}
