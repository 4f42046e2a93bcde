//! Crash safety of the image (issue 11, item 5): xen-ioemu with the qtest
//! front on a real raw image file is killed with SIGKILL in the middle of
//! a guest's writes, at 100 kill points (seeds 0..100, each killing after a
//! different number of commands), and the image file is then checked.
//!
//! The guest writes patterned sectors (every sector's bytes name the write
//! that made them) by WRITE DMA and WRITE SECTORS (PIO), with FLUSH CACHE
//! at intervals and stretches with the write cache off (SET FEATURES
//! 0x82/0x02). The checker records what the guest saw completed and which
//! completed writes a later completed FLUSH CACHE, or the write cache being
//! off, covered. After the kill, for every sector:
//!
//! * **completed**: the image holds the last write the guest saw
//!   completed, or the write still in flight at the kill (never anything
//!   older, never anything else). A write reported complete is in the file.
//! * **covered**: so in particular every covered write is there unless a
//!   later write to the same sector replaced it.
//!
//! What this proves, honestly: SIGKILL ends the process but does not drop
//! the host's page cache, so "in the image" after the kill proves that the
//! write reached the kernel before the guest was told it was complete, not
//! that it reached the disk. A FLUSH CACHE that skipped its fdatasync would
//! pass this test; that part (durability against power loss) needs a
//! power-cut test below the page cache (dm-flakey, a VM), which this is
//! not. The ordering part is what is checked: no completion before the
//! data is in the file, and nothing completed is lost or replaced by an
//! older version when the process dies.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const SECTORS: u64 = 2048; // a 1 MiB image
const KILL_POINTS: u64 = 100;
const PRD_TABLE: u32 = 0x10000;
const BUFFER: u32 = 0x20000;
const BMDMA: u16 = 0xc000;

struct Dm {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Dm {
    fn start(image: &Path) -> Dm {
        Dm::start_with(image, "")
    }

    fn start_with(image: &Path, extra: &str) -> Dm {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xen-ioemu"))
            .args(["-machine", "pc", "-accel", "qtest", "-qtest", "stdio", "-m", "64", "-drive"])
            .arg(format!("file={},format=raw,if=ide,index=0,cache=writeback{extra}", image.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn xen-ioemu");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut dm = Dm { child, stdin, stdout };
        // BAR4 at 0xc000, I/O decoding and bus mastering on (the firmware's job).
        dm.outl(0xcf8, 0x8000_0920);
        dm.outl(0xcfc, u32::from(BMDMA) | 1);
        dm.outl(0xcf8, 0x8000_0904);
        dm.outw(0xcfc, 0x0005);
        dm
    }

    fn qtest(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert!(reply.starts_with("OK"), "{line:.60}: {reply}");
        reply.trim().to_string()
    }
    /// Sends a line and does not wait for the answer: the kill comes next.
    fn send_only(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.qtest(&format!("outb {port:#x} {v:#x}"));
    }
    fn outw(&mut self, port: u16, v: u16) {
        self.qtest(&format!("outw {port:#x} {v:#x}"));
    }
    fn outl(&mut self, port: u16, v: u32) {
        self.qtest(&format!("outl {port:#x} {v:#x}"));
    }
    fn inb(&mut self, port: u16) -> u8 {
        let r = self.qtest(&format!("inb {port:#x}"));
        u8::from_str_radix(r.trim_start_matches("OK 0x"), 16).unwrap()
    }
    fn memwrite(&mut self, addr: u32, data: &[u8]) {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.qtest(&format!("write {addr:#x} {:#x} 0x{hex}", data.len()));
    }
    /// Polls status until BSY clears; returns the status.
    fn wait_not_busy(&mut self) -> u8 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.inb(0x3f6);
            if s & 0x80 == 0 {
                return s;
            }
            assert!(Instant::now() < deadline, "BSY for 10 s");
        }
    }
    fn taskfile(&mut self, lba: u64, count: u8) {
        for (port, v) in [(0x1f6, 0xe0 | ((lba >> 24) as u8 & 0x0f)), (0x1f2, count), (0x1f3, lba as u8), (0x1f4, (lba >> 8) as u8), (0x1f5, (lba >> 16) as u8)] {
            self.outb(port, v);
        }
    }
    /// WRITE DMA of `data` at `lba`; returns (BM status, ATA status, error).
    fn write_dma(&mut self, lba: u64, data: &[u8]) -> (u8, u8, u8) {
        self.issue_write_dma(lba, data);
        self.run_dma()
    }
    /// WRITE DMA up to its command byte: PRD table, data, taskfile.
    fn issue_write_dma(&mut self, lba: u64, data: &[u8]) {
        self.outb(BMDMA, 0);
        self.outb(BMDMA + 2, 0x06);
        let mut prd = BUFFER.to_le_bytes().to_vec();
        prd.extend_from_slice(&(data.len() as u32 | 0x8000_0000).to_le_bytes());
        self.memwrite(PRD_TABLE, &prd);
        self.outl(BMDMA + 4, PRD_TABLE);
        self.memwrite(BUFFER, data);
        self.taskfile(lba, (data.len() / 512) as u8);
        self.outb(0x1f7, 0xca);
    }
    /// Start the bus master, wait for its interrupt and stop it; returns
    /// (BM status, ATA status, error).
    fn run_dma(&mut self) -> (u8, u8, u8) {
        self.outb(BMDMA, 0x01);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.inb(BMDMA + 2) & 0x04 == 0 {
            assert!(Instant::now() < deadline, "WRITE DMA did not complete");
        }
        let status = self.wait_not_busy();
        let bm = self.inb(BMDMA + 2);
        self.outb(BMDMA, 0);
        (bm, status, self.inb(0x1f1))
    }
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The 512 bytes of sector `lba` as write number `version` makes them
/// (version 0: the zeroed image).
fn sector_bytes(version: u64, lba: u64) -> Vec<u8> {
    if version == 0 {
        return vec![0; 512];
    }
    let mut out = Vec::with_capacity(512);
    for i in 0..64u64 {
        let word = version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ lba.rotate_left(20) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        out.extend_from_slice(&word.to_le_bytes());
    }
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64: deterministic per seed.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Per sector, what the guest knows.
#[derive(Clone, Default)]
struct SectorState {
    /// Last write the guest saw completed (0: none, the zeroed image).
    completed: u64,
    /// Last completed write a FLUSH CACHE or the cache being off covered.
    covered: u64,
    /// A write issued but not seen completed when the kill came.
    in_flight: Option<u64>,
}

struct Guest {
    sectors: Vec<SectorState>,
    /// Completed writes since the last completed flush, with the cache on.
    uncovered: Vec<(u64, u64)>,
    cache_on: bool,
    version: u64,
    commands: u64,
    covered_writes: u64,
}

impl Guest {
    fn complete(&mut self, lba: u64, count: u64, version: u64) {
        for l in lba..lba + count {
            let s = &mut self.sectors[l as usize];
            s.completed = version;
            s.in_flight = None;
            if !self.cache_on {
                s.covered = version;
                self.covered_writes += 1;
            } else {
                self.uncovered.push((l, version));
            }
        }
    }
    fn flushed(&mut self) {
        for (l, v) in self.uncovered.drain(..) {
            let s = &mut self.sectors[l as usize];
            if s.covered < v {
                s.covered = v;
            }
            self.covered_writes += 1;
        }
    }
}

/// One command; with `kill_now` it is started and not waited for.
fn step(dm: &mut Dm, g: &mut Guest, rng: &mut Rng, kill_now: bool) {
    g.commands += 1;
    let pick = rng.below(100);
    if pick < 12 {
        dm.outb(0x1f6, 0xe0);
        if kill_now {
            return dm.send_only("outb 0x1f7 0xe7");
        }
        dm.outb(0x1f7, 0xe7);
        let s = dm.wait_not_busy();
        assert_eq!(s & 0x01, 0, "FLUSH CACHE failed: {s:#x}");
        return g.flushed();
    }
    if pick < 17 {
        let on = rng.below(2) == 0;
        dm.outb(0x1f6, 0xe0);
        dm.outb(0x1f1, if on { 0x02 } else { 0x82 });
        dm.outb(0x1f7, 0xef);
        let s = dm.wait_not_busy();
        assert_eq!(s & 0x01, 0, "SET FEATURES failed: {s:#x}");
        // Turning the cache off does not flush what is already cached.
        g.cache_on = on;
        return;
    }
    let dma = pick < 70;
    let count = if dma { 1 + rng.below(16) } else { 1 + rng.below(4) };
    let lba = rng.below(SECTORS - count);
    g.version += 1;
    let version = g.version;
    let data: Vec<u8> = (lba..lba + count).flat_map(|l| sector_bytes(version, l)).collect();
    for l in lba..lba + count {
        g.sectors[l as usize].in_flight = Some(version);
    }
    if dma {
        dm.issue_write_dma(lba, &data);
        if kill_now {
            return dm.send_only(&format!("outb {BMDMA:#x} 0x1"));
        }
        let (_, s, _) = dm.run_dma();
        assert_eq!(s, 0x50, "WRITE DMA status");
    } else {
        dm.taskfile(lba, count as u8);
        dm.outb(0x1f7, 0x30);
        for (i, sector) in data.chunks(512).enumerate() {
            let s = dm.wait_not_busy();
            assert_eq!(s & 0x08, 0x08, "WRITE SECTORS: no DRQ for sector {i}: {s:#x}");
            let words: Vec<u16> = sector.chunks(2).map(|w| u16::from_le_bytes([w[0], w[1]])).collect();
            let last = i + 1 == data.len() / 512;
            for (j, w) in words.iter().enumerate() {
                if kill_now && last && j + 1 == words.len() {
                    return dm.send_only(&format!("outw 0x1f0 {w:#x}"));
                }
                dm.outw(0x1f0, *w);
            }
        }
        let s = dm.wait_not_busy();
        assert_eq!(s, 0x50, "WRITE SECTORS status");
    }
    g.complete(lba, count, version);
}

/// Runs one kill point; returns (commands run, covered writes, sectors checked).
fn kill_point(dir: &Path, seed: u64) -> (u64, u64, u64) {
    let image = dir.join(format!("crash{seed}.img"));
    std::fs::File::create(&image).unwrap().set_len(SECTORS * 512).unwrap();
    let mut rng = Rng(seed);
    // Kill points spread over 4..=103 commands, each a different count.
    let kill_after = 4 + (seed * 37) % KILL_POINTS;
    let mut g = Guest {
        sectors: vec![SectorState::default(); SECTORS as usize],
        uncovered: Vec::new(),
        cache_on: true,
        version: 0,
        commands: 0,
        covered_writes: 0,
    };
    let mut dm = Dm::start(&image);
    for n in 0..kill_after {
        step(&mut dm, &mut g, &mut rng, n + 1 == kill_after);
    }
    dm.kill();
    let mut bytes = Vec::new();
    std::fs::File::open(&image).unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, SECTORS * 512, "seed {seed}: image size");
    let mut checked = 0;
    for (l, s) in g.sectors.iter().enumerate() {
        let got = &bytes[l * 512..(l + 1) * 512];
        let l = l as u64;
        let ok = |v: u64| got == sector_bytes(v, l).as_slice();
        let in_flight = s.in_flight.is_some_and(ok);
        assert!(
            ok(s.completed) || in_flight,
            "seed {seed} (killed at command {kill_after}): sector {l} does not hold write {} that the guest saw completed{} (covered: write {})",
            s.completed,
            s.in_flight.map(|v| format!(" nor write {v} in flight")).unwrap_or_default(),
            s.covered,
        );
        if s.covered != 0 {
            // Implied by the line above, since covered <= completed; kept
            // as the statement the issue asks for.
            assert!(ok(s.covered) || s.completed > s.covered || in_flight, "seed {seed}: sector {l} lost covered write {}", s.covered);
            checked += 1;
        }
    }
    std::fs::remove_file(&image).unwrap();
    (g.commands, g.covered_writes, checked)
}

#[test]
fn sigkill_in_the_middle_of_writes_loses_nothing_completed() {
    let dir = tempfile::Builder::new().prefix("xen-ioemu-crash-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let started = Instant::now();
    let (mut commands, mut covered, mut sectors) = (0, 0, 0);
    for seed in 0..KILL_POINTS {
        let (c, w, s) = kill_point(dir.path(), seed);
        commands += c;
        covered += w;
        sectors += s;
    }
    eprintln!(
        "crash safety: {KILL_POINTS} kill points, {commands} commands, {covered} covered sector writes, {sectors} covered sectors checked, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(covered > 1000 && sectors > 1000, "the workload must cover writes: {covered} {sectors}");
}

#[test]
fn the_checker_sees_a_sector_that_is_not_what_completed() {
    // The checker's own test: a pattern names its write and its sector.
    assert_ne!(sector_bytes(3, 10), sector_bytes(4, 10));
    assert_ne!(sector_bytes(3, 10), sector_bytes(3, 11));
    assert_ne!(sector_bytes(1, 0), sector_bytes(0, 0));
}

/// A short write, for real: the image lives on a 1 MiB tmpfs and the guest
/// writes 15-sector chunks (not a multiple of the 4 KiB page) by DMA until
/// one fails. The failing chunk shares its first page with the chunk
/// before it, so its pwritev writes that head (a short write) and the
/// retry of the remainder fails with ENOSPC. QEMU cannot be compared here
/// (blkdebug has no short write), so ours is checked against the rule:
/// never complete a write that did not reach the image. The failing write
/// must end 0x41/ABRT (werror=report), every write before it must be in
/// the file. Needs root (mount), as tests/block_fs.rs does.
#[test]
fn a_short_write_on_a_full_filesystem_is_reported_not_completed() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .status()
        .expect("mount (this test needs root)");
    assert!(mounted.success(), "mount -t tmpfs failed (this test needs root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(4 << 20).unwrap();
    let mut dm = Dm::start_with(&image, ",werror=report,rerror=report");
    const CHUNK: u64 = 15;
    let mut written = 0;
    let failed = loop {
        let lba = written * CHUNK;
        assert!(lba + CHUNK <= 8192, "the 1 MiB tmpfs never filled");
        let data: Vec<u8> = (lba..lba + CHUNK).flat_map(|l| sector_bytes(1, l)).collect();
        match dm.write_dma(lba, &data) {
            (0x04, 0x50, _) => written += 1,
            other => break other,
        }
    };
    assert_eq!(failed, (0x04, 0x41, 0x04), "the write that did not fit: BM INTR, 0x41, ABRT");
    dm.kill();
    let bytes = std::fs::read(&image).unwrap();
    for l in 0..written * CHUNK {
        let at = l as usize * 512;
        assert!(bytes[at..at + 512] == sector_bytes(1, l), "sector {l} of a completed write is not in the image");
    }
    // The failing chunk's head really was written (a short write), so the
    // block layer went on to the remainder and reported its ENOSPC.
    let head = (written * CHUNK) as usize * 512;
    assert!(bytes[head..head + 512] == sector_bytes(1, written * CHUNK), "no short write happened: the failing chunk wrote nothing");
    assert!(written > 50, "{written} chunks before the filesystem filled");
}
