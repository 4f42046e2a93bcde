//! Differential test of the fw_cfg device with direct kernel boot: Debian's
//! QEMU 7.2 and xen-ioemu (both in qtest mode, same argv with -kernel,
//! -initrd and -append) must give the same bytes for every access: the
//! selector/data ports, the DMA register, DMA transfers (select, read,
//! skip, write to a read-only item, past an item's end) and the kernel
//! items linuxboot_dma reads (setup with the loader's header fields,
//! kernel, initrd, command line, their addresses) and its ROM file.
//!
//! The synthetic bzImage states boot protocol 2.08: from 2.09 on QEMU 7.2
//! may chain a random-seed setup_data into the header, which differs on
//! every run and which we do not add.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

struct Qtest {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Qtest {
    fn start(program: &str, argv: &[String]) -> Qtest {
        let mut child = Command::new(program)
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} not runnable ({e}): run tools/install-deps.sh"));
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Qtest { child, input, output }
    }

    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.input, "{line}").unwrap();
        self.input.flush().unwrap();
        loop {
            let mut reply = String::new();
            assert!(self.output.read_line(&mut reply).unwrap() > 0, "qtest closed on {line}");
            let reply = reply.trim_end();
            if reply.starts_with("IRQ") {
                continue;
            }
            assert!(reply.starts_with("OK"), "{line}: {reply}");
            return reply.trim_start_matches("OK").trim().to_string();
        }
    }
    fn inb(&mut self, port: u16) -> u8 {
        u8::from_str_radix(self.cmd(&format!("inb {port:#x}")).trim_start_matches("0x"), 16).unwrap()
    }
    fn inw(&mut self, port: u16) -> u16 {
        u16::from_str_radix(self.cmd(&format!("inw {port:#x}")).trim_start_matches("0x"), 16).unwrap()
    }
    fn inl(&mut self, port: u16) -> u32 {
        u32::from_str_radix(self.cmd(&format!("inl {port:#x}")).trim_start_matches("0x"), 16).unwrap()
    }
    fn out(&mut self, width: char, port: u16, value: u32) {
        self.cmd(&format!("out{width} {port:#x} {value:#x}"));
    }
    fn memwrite(&mut self, addr: u64, data: &[u8]) {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.cmd(&format!("write {addr:#x} {} 0x{hex}", data.len()));
    }
    fn memread(&mut self, addr: u64, len: usize) -> Vec<u8> {
        let hex = self.cmd(&format!("read {addr:#x} {len}"));
        let hex = hex.trim_start_matches("0x");
        (0..len).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect()
    }
}

impl Drop for Qtest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A protocol 2.08 bzImage: 4 setup sectors + the boot sector, then a body.
fn bzimage() -> Vec<u8> {
    let mut k = vec![0u8; 5 * 512];
    k[0x1f1] = 4;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x0208u16.to_le_bytes());
    k[0x211] = 0x01;
    k[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    k[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes());
    k.extend((0..70_000u32).map(|i| (i * 7 + 3) as u8));
    k
}

fn argv(dir: &std::path::Path) -> Vec<String> {
    let bios = dir.join("halt.bin");
    let mut image = vec![0xf4u8; 65536];
    image[0xfff0..0xfff4].copy_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]);
    std::fs::write(&bios, image).unwrap();
    std::fs::write(dir.join("vmlinuz"), bzimage()).unwrap();
    std::fs::write(dir.join("initrd"), (0..12_345u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
    let s = |p: &str| dir.join(p).display().to_string();
    [
        "-machine", "pc", "-accel", "tcg", "-m", "128", "-nodefaults", "-display", "none", "-serial", "null",
        "-qtest", "stdio", "-bios",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([s("halt.bin"), "-kernel".into(), s("vmlinuz"), "-initrd".into(), s("initrd")])
    .chain(["-append".to_string(), "console=ttyS0 root=/dev/sda1 quiet".to_string()])
    .collect()
}

/// Select by port, then read `n` bytes from the data port.
fn port_item(q: &mut Qtest, key: u16, n: usize) -> Vec<u8> {
    q.out('w', 0x510, u32::from(key));
    (0..n).map(|_| q.inb(0x511)).collect()
}

/// One DMA transfer of `control`/`len` into 0x30000 with the descriptor at
/// 0x8000; returns the status word and what landed in memory.
fn dma(q: &mut Qtest, control: u32, len: u32, look: usize) -> (Vec<u8>, Vec<u8>) {
    // A non-zero background, so zero fill past an item's end shows.
    q.memwrite(0x30000, &vec![0xa5u8; look + 16]);
    let mut d = control.to_be_bytes().to_vec();
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&0x30000u64.to_be_bytes());
    q.memwrite(0x8000, &d);
    q.out('l', 0x514, 0);
    q.out('l', 0x518, 0x8000u32.swap_bytes());
    (q.memread(0x8000, 4), q.memread(0x30000, look + 16))
}

/// The file directory as (name, key, size).
fn files(q: &mut Qtest) -> Vec<(String, u16, u32)> {
    let head = port_item(q, 0x19, 4);
    let count = u32::from_be_bytes(head.try_into().unwrap());
    (0..count.min(64))
        .map(|_| {
            let e: Vec<u8> = (0..64).map(|_| q.inb(0x511)).collect();
            let size = u32::from_be_bytes(e[0..4].try_into().unwrap());
            let key = u16::from_be_bytes([e[4], e[5]]);
            let name = String::from_utf8_lossy(&e[8..]).trim_end_matches('\0').to_string();
            (name, key, size)
        })
        .collect()
}

/// Everything compared, as text lines, for one backend.
fn transcript(q: &mut Qtest) -> Vec<String> {
    let mut t = Vec::new();
    // Fixed items, by port.
    for (key, n) in [(0x00u16, 6), (0x01, 5), (0x07, 4), (0x08, 4), (0x0a, 4), (0x0b, 4), (0x13, 4), (0x14, 4), (0x16, 4), (0x17, 4)] {
        t.push(format!("item {key:#x}: {:02x?}", port_item(q, key, n)));
    }
    t.push(format!("cmdline: {:02x?}", port_item(q, 0x15, 40)));
    t.push(format!("setup: {:02x?}", port_item(q, 0x18, 5 * 512 + 4)));
    let kernel = port_item(q, 0x11, 70_004);
    t.push(format!("kernel: {} bytes, tail {:02x?}, sum {}", kernel.len(), &kernel[69_990..], kernel.iter().map(|b| u64::from(*b)).sum::<u64>()));
    let initrd = port_item(q, 0x12, 12_350);
    t.push(format!("initrd: tail {:02x?}, sum {}", &initrd[12_330..], initrd.iter().map(|b| u64::from(*b)).sum::<u64>()));
    // Invalid keys, the write bit, the selector port read, wide reads.
    for key in [0x3fffu16, 0x0c, 0x4000, 0x8000 | 0x3fff] {
        t.push(format!("key {key:#x}: {:02x?}", port_item(q, key, 4)));
    }
    q.out('w', 0x510, 0);
    t.push(format!("0x510 byte: {:#x}", q.inb(0x510)));
    t.push(format!("0x511 word: {:#x}", q.inw(0x510)));
    q.out('b', 0x511, 0x55);
    t.push(format!("after byte write: {:#x}", q.inb(0x511)));
    // The DMA register's signature at every width and offset.
    t.push(format!("dma sig: {:#x} {:#x} {:#x} {:#x}", q.inl(0x514), q.inl(0x518), q.inw(0x516), q.inb(0x51b)));
    // The ROM file and bootorder.
    let list = files(q);
    for name in ["genroms/linuxboot_dma.bin", "bootorder"] {
        let found = list.iter().find(|(n, _, _)| n == name).cloned();
        t.push(format!("file {name}: size {:?}", found.as_ref().map(|f| f.2)));
        if let Some((_, key, size)) = found {
            let data = port_item(q, key, size as usize + 2);
            t.push(format!("  content sum {}, head {:02x?}", data.iter().map(|b| u64::from(*b)).sum::<u64>(), &data[..8.min(data.len())]));
        }
    }
    // DMA: select + read, continue, skip, past the end, write, no direction.
    let sel = |key: u32| key << 16 | 0x08;
    for (what, control, len, look) in [
        ("read signature", sel(0) | 0x02, 6, 6),
        ("continue past end", 0x02, 3, 3),
        ("skip 2 of setup size", sel(0x17) | 0x04, 2, 0),
        ("read rest of setup size", 0x02, 4, 4),
        ("read cmdline", sel(0x15) | 0x02, 40, 40),
        ("write read-only", sel(0x01) | 0x10, 4, 4),
        ("write invalid", sel(0x3fff) | 0x10, 4, 4),
        ("no direction", sel(0x00), 4, 4),
        ("read invalid key", sel(0x3fff) | 0x02, 8, 8),
        ("read setup header", sel(0x18) | 0x02, 0x240, 0x240),
    ] {
        let (status, data) = dma(q, control, len, look);
        t.push(format!("dma {what}: status {status:02x?} data {data:02x?}"));
    }
    // The port interface continues where a DMA skip left off.
    dma(q, sel(0) | 0x04, 1, 0);
    t.push(format!("port after dma skip: {:#x}", q.inb(0x511)));
    t
}

#[test]
fn fw_cfg_and_kernel_items_match_qemu_7_2() {
    let dir = tempfile::tempdir().unwrap();
    let args = argv(dir.path());
    let mut qemu = Qtest::start("qemu-system-x86_64", &args);
    let ours_path = env!("CARGO_BIN_EXE_xen-ioemu");
    let mut ours = Qtest::start(ours_path, &args);
    let want = transcript(&mut qemu);
    let got = transcript(&mut ours);
    let mut diffs = Vec::new();
    for (w, g) in want.iter().zip(&got) {
        if w != g {
            diffs.push(format!("QEMU: {w}\nours: {g}"));
        }
    }
    assert_eq!(want.len(), got.len());
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}
