//! Differential test of the blkdebug model against Debian's QEMU 7.2: the
//! same rule file and the same request sequence go to QEMU (through its
//! HMP `qemu-io` command on a `-drive if=none`) and to `open_image`, and
//! every request must succeed or fail with the same errno in both.
//! Needs qemu-system-x86_64; without it the test fails naming it.

use std::io::Write;
use std::process::{Command, Stdio};

use xen_ioemu::block::{open_image, CacheMode, ImageSpec};

const QEMU: &str = "qemu-system-x86_64";

#[derive(Debug, Clone, Copy)]
enum Op {
    Read(u64, u64),
    Write(u64, u64),
    /// A write with FUA: QEMU's `write -f`, here a write with the guest
    /// write cache off.
    WriteFua(u64, u64),
    Discard(u64, u64),
}

impl Op {
    fn qemu_io(self) -> String {
        match self {
            Op::Read(o, l) => format!("read {o} {l}"),
            Op::Write(o, l) => format!("write -P 0x5a {o} {l}"),
            Op::WriteFua(o, l) => format!("write -f -P 0x5a {o} {l}"),
            Op::Discard(o, l) => format!("discard {o} {l}"),
        }
    }
}

fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    text.split(" (os error").next().unwrap().to_string()
}

/// "ok" or the strerror text, per request, from QEMU.
fn run_qemu(rules: &std::path::Path, image: &std::path::Path, cache: &str, ops: &[Op]) -> Vec<String> {
    let drive = format!(
        "if=none,id=d0,format=raw,cache={cache},discard=unmap,file=blkdebug:{}:{}",
        rules.display(),
        image.display()
    );
    let mut child = Command::new(QEMU)
        .args(["-machine", "none", "-nodefaults", "-display", "none", "-monitor", "stdio", "-drive", &drive])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {QEMU}: {e} (this test compares with Debian's QEMU 7.2)"));
    {
        let stdin = child.stdin.as_mut().unwrap();
        for op in ops {
            writeln!(stdin, "qemu-io d0 \"{}\"", op.qemu_io()).unwrap();
        }
        writeln!(stdin, "quit").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut results = Vec::new();
    for line in stdout.split(['\n', '\r']) {
        // HMP echoes input with terminal escapes; results start a line.
        let line = line.trim();
        if let Some((_, err)) = line.split_once(" failed: ") {
            if line.starts_with("read") || line.starts_with("write") || line.starts_with("discard") {
                results.push(err.trim().to_string());
            }
        } else if (line.starts_with("read ") || line.starts_with("wrote ") || line.starts_with("discard "))
            && line.contains(" bytes at offset ")
        {
            results.push("ok".to_string());
        }
    }
    assert_eq!(
        results.len(),
        ops.len(),
        "could not read one result per request from QEMU:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    results
}

fn run_model(rules: &std::path::Path, image: &std::path::Path, cache: CacheMode, ops: &[Op]) -> Vec<String> {
    let spec = ImageSpec {
        file: format!("blkdebug:{}:{}", rules.display(), image.display()),
        format: "raw".into(),
        cache,
        read_only: false,
    };
    let mut backend = open_image(&spec).unwrap();
    ops.iter()
        .map(|&op| {
            let result = match op {
                Op::Read(o, l) => backend.read_at(o, &mut vec![0; l as usize]),
                Op::Write(o, l) => backend.write_at(o, &vec![0x5a; l as usize]),
                Op::WriteFua(o, l) => {
                    backend.set_guest_write_cache(false);
                    let r = backend.write_at(o, &vec![0x5a; l as usize]);
                    backend.set_guest_write_cache(true);
                    r
                }
                Op::Discard(o, l) => backend.discard(o, l),
            };
            match result {
                Ok(()) => "ok".to_string(),
                Err(e) => strerror(e.errno()),
            }
        })
        .collect()
}

struct Scenario {
    name: &'static str,
    rules: &'static str,
    ops: &'static [Op],
}

const S: u64 = 512;

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "read rule with the default iotype also fails later writes",
        rules: "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\n",
        ops: &[Op::Write(0, S), Op::Read(0, S), Op::Write(0, S), Op::WriteFua(0, S), Op::Discard(0, 4096), Op::Read(0, S)],
    },
    Scenario {
        name: "write rule on one sector with iotype=write",
        rules: "[inject-error]\nevent = \"write_aio\"\nerrno = \"28\"\niotype = \"write\"\nsector = \"500\"\n",
        ops: &[
            Op::Write(499 * S, S),
            Op::Write(498 * S, 4 * S),
            Op::Read(500 * S, S),
            Op::Write(500 * S, S),
            Op::Write(501 * S, S),
        ],
    },
    Scenario {
        name: "once",
        rules: "[inject-error]\nevent = \"write_aio\"\nonce = \"on\"\nerrno = \"28\"\n",
        ops: &[Op::Read(0, S), Op::Write(0, S), Op::Write(0, S), Op::Read(0, S)],
    },
    Scenario {
        name: "states and set-state",
        rules: "[inject-error]\nevent = \"write_aio\"\nstate = \"2\"\nerrno = \"28\"\n\
                [set-state]\nevent = \"write_aio\"\nstate = \"1\"\nnew_state = \"2\"\n\
                [set-state]\nevent = \"read_aio\"\nstate = \"2\"\nnew_state = \"1\"\n",
        ops: &[Op::Write(0, S), Op::Write(0, S), Op::Read(0, S), Op::Write(0, S), Op::Write(0, S)],
    },
    Scenario {
        name: "flush_to_disk fires only when the raw node is dirty",
        rules: "[inject-error]\nevent = \"flush_to_disk\"\nerrno = \"28\"\niotype = \"flush\"\n",
        ops: &[Op::WriteFua(0, S), Op::WriteFua(S, S), Op::Write(0, S), Op::WriteFua(S, S), Op::WriteFua(S, S)],
    },
    Scenario {
        name: "flush_to_os fires on every flush",
        rules: "[inject-error]\nevent = \"flush_to_os\"\nerrno = \"5\"\niotype = \"flush\"\nonce = \"on\"\n",
        ops: &[Op::WriteFua(0, S), Op::WriteFua(0, S), Op::Write(0, S)],
    },
    Scenario {
        name: "errno 0 shadows later rules",
        rules: "[inject-error]\nevent = \"write_aio\"\nerrno = \"0\"\n[inject-error]\nevent = \"write_aio\"\nerrno = \"5\"\n",
        ops: &[Op::Write(0, S), Op::Read(0, S)],
    },
    Scenario {
        name: "first rule in the file wins",
        rules: "[inject-error]\nevent = \"read_aio\"\nerrno = \"28\"\n[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\n",
        ops: &[Op::Read(0, S)],
    },
    Scenario {
        name: "a later event with rules replaces the active set",
        rules: "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\niotype = \"read\"\n\
                [inject-error]\nevent = \"write_aio\"\nerrno = \"28\"\niotype = \"write\"\nsector = \"7\"\n",
        ops: &[Op::Read(0, S), Op::Write(0, S), Op::Read(0, S), Op::Write(7 * S, S), Op::Read(7 * S, S)],
    },
    Scenario {
        name: "discard rules",
        rules: "[inject-error]\nevent = \"write_aio\"\niotype = \"discard\"\nerrno = \"5\"\nsector = \"16\"\n",
        ops: &[Op::Discard(0, 4096), Op::Write(0, S), Op::Discard(0, 4096), Op::Discard(8192, 4096), Op::Read(0, S)],
    },
    Scenario {
        name: "an injected EOPNOTSUPP on discard counts as done (TRIM is advisory)",
        rules: "[inject-error]\nevent = \"write_aio\"\niotype = \"discard\"\nerrno = \"95\"\n",
        ops: &[Op::Write(0, S), Op::Discard(0, 4096)],
    },
    Scenario {
        name: "the none event makes rules active from the start",
        rules: "[inject-error]\nevent = \"none\"\nerrno = \"5\"\niotype = \"read\"\nonce = \"on\"\n",
        ops: &[Op::Read(0, S), Op::Read(0, S)],
    },
];

#[test]
fn blkdebug_model_matches_qemu_7_2_request_by_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut mismatches = Vec::new();
    let caches =
        [("writeback", CacheMode::Writeback), ("writethrough", CacheMode::Writethrough), ("unsafe", CacheMode::Unsafe)];
    for (qemu_cache, cache) in caches {
        for (i, scenario) in SCENARIOS.iter().enumerate() {
            let rules = dir.path().join(format!("rules{i}.ini"));
            std::fs::write(&rules, scenario.rules).unwrap();
            let qemu_image = dir.path().join(format!("qemu{i}-{qemu_cache}.img"));
            let model_image = dir.path().join(format!("model{i}-{qemu_cache}.img"));
            std::fs::write(&qemu_image, vec![0u8; 1 << 20]).unwrap();
            std::fs::write(&model_image, vec![0u8; 1 << 20]).unwrap();
            let qemu = run_qemu(&rules, &qemu_image, qemu_cache, scenario.ops);
            let model = run_model(&rules, &model_image, cache, scenario.ops);
            if qemu != model {
                mismatches.push(format!(
                    "{} (cache={qemu_cache}):\n  ops   {:?}\n  qemu  {qemu:?}\n  model {model:?}",
                    scenario.name, scenario.ops
                ));
            }
            // Whatever failed must not have reached either image, and the
            // two images must end up identical.
            assert!(
                std::fs::read(&qemu_image).unwrap() == std::fs::read(&model_image).unwrap(),
                "{} (cache={qemu_cache}): image contents differ",
                scenario.name
            );
        }
    }
    assert!(mismatches.is_empty(), "blkdebug differs from QEMU 7.2:\n{}", mismatches.join("\n"));
}
