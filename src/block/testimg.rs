//! qemu-img and qemu-io as the oracle for image contents in unit tests
//! (Debian's qemu-utils; tools/install-deps.sh installs it). A missing
//! tool fails the test with the command that could not run: a test that
//! skipped itself would pass without checking anything.

use std::path::Path;
use std::process::Command;

pub fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e} (install qemu-utils: tools/install-deps.sh)"));
    assert!(
        out.status.success(),
        "{tool} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn create(path: &Path, format: &str, size: &str, extra: &[&str]) {
    let mut args = vec!["create", "-q", "-f", format];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    args.push(size);
    run("qemu-img", &args);
}

/// qemu-io commands ("write -P 0xab 0 64k") on an image, as QEMU writes.
pub fn qemu_io(path: &Path, format: &str, commands: &[&str]) {
    let mut args = vec!["-f", format];
    for c in commands {
        args.push("-c");
        args.push(c);
    }
    args.push(path.to_str().unwrap());
    let out = run("qemu-io", &args);
    // qemu-io exits 0 even when a command failed; it says so on stdout.
    assert!(!out.contains("failed"), "qemu-io {commands:?}: {out}");
}

/// The guest-visible contents as QEMU reads them.
pub fn contents(path: &Path, format: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("out.raw");
    run("qemu-img", &["convert", "-f", format, "-O", "raw", path.to_str().unwrap(), raw.to_str().unwrap()]);
    std::fs::read(raw).unwrap()
}

/// `qemu-img check`'s verdict: errors (corruptions and check errors) and
/// leaked clusters, which are no error but are counted.
#[derive(Debug, PartialEq, Eq)]
pub struct Check {
    pub errors: u64,
    pub leaks: u64,
}

pub fn check(path: &Path) -> Check {
    let out = Command::new("qemu-img")
        .args(["check", "--output=json", "-f", "qcow2"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run qemu-img: {e} (install qemu-utils: tools/install-deps.sh)"));
    // Exit 0: clean; 3: leaks only; 2: corruptions; 1: the check failed.
    let code = out.status.code();
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("qemu-img check {} ({code:?}): {e}: {text}", path.display()));
    let n = |k: &str| json.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let errors = n("check-errors") + n("corruptions");
    assert!(code == Some(0) || code == Some(3) || errors > 0, "qemu-img check exit {code:?}: {text}");
    Check { errors, leaks: n("leaks") }
}

/// Bytes that differ from run to run of a test and from sector to sector.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i / 512) as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}
