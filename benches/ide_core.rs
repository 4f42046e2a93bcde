//! Sectors per second through the IDE core alone: no ioreq, no qtest, no
//! host I/O. The image is a RAM `MemBackend`, guest memory the qtest
//! front's `AnonRam`, and the controller is driven through its ports the
//! way Linux's ata_piix does it, so what is measured is the cost of the
//! register emulation, the PIO data path and the PRD walk plus copies.
//!
//! `cargo bench --bench ide_core` (BENCH_SECONDS=<f> sets the time of one
//! run of a row, default 0.25; BENCH_REPEAT=<n> the runs whose median is
//! printed, default 3). Prints a table; timings are never asserted,
//! but every command's outcome and a data sample are, so a broken
//! controller cannot produce a fast-looking figure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xen_ioemu::block::mem::MemBackend;
use xen_ioemu::block::{CacheMode, ErrorPolicy};
use xen_ioemu::devices::bus::BusDevice;
use xen_ioemu::devices::ide::{DriveConfig, IdeController, MediaKind, PRIMARY_CMD_BASE, PRIMARY_CTRL_BASE};
use xen_ioemu::devices::pci::PciFunction;
use xen_ioemu::machine::{EventSink, GuestMemory, IrqLine, RunState, VmControl};
use xen_ioemu::qtest::AnonRam;

const SECTOR: usize = 512;
const IMAGE_BYTES: usize = 64 << 20;
const IMAGE_SECTORS: u32 = (IMAGE_BYTES / SECTOR) as u32;
const RAM_BYTES: usize = 64 << 20;
/// Where BAR4 is programmed, as SeaBIOS/our qtest clients do.
const BM_BASE: u64 = 0xc000;
const PRD_TABLE: u64 = 0x1_0000;
const DMA_BUFFER: u64 = 0x10_0000;
/// Linux hands the controller one PRD entry per 4 KiB page of a bio.
const PRD_SEGMENT: usize = 4096;
const MULTIPLE_BLOCK: u8 = 16;

const ST_BSY: u8 = 0x80;
const ST_DRQ: u8 = 0x08;
const ST_ERR: u8 = 0x01;
const BM_INTR: u8 = 0x04;
const BM_ERROR: u8 = 0x02;

#[derive(Default)]
struct CountingIrq {
    raises: AtomicU64,
}

impl IrqLine for CountingIrq {
    fn set_level(&self, high: bool) {
        if high {
            self.raises.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Byte at `offset` of the image as built by `image_pattern`.
fn pattern_byte(offset: usize) -> u8 {
    (offset as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8
}

fn image_pattern() -> Vec<u8> {
    (0..IMAGE_BYTES).map(pattern_byte).collect()
}

struct Guest {
    ide: IdeController,
    ram: Arc<AnonRam>,
    irq14: Arc<CountingIrq>,
}

impl Guest {
    fn new() -> Self {
        let ram = Arc::new(AnonRam::new(RAM_BYTES).expect("guest RAM mapping"));
        let irq14 = Arc::new(CountingIrq::default());
        let irq15 = Arc::new(CountingIrq::default());
        let vm = VmControl::new(RunState::Running, EventSink::new());
        let disk = DriveConfig {
            id: "ide0-hd0".into(),
            media: MediaKind::Disk,
            backend: Some(Box::new(MemBackend::with_data(image_pattern(), false))),
            filename: "ram".into(),
            cache: CacheMode::Writeback,
            werror: ErrorPolicy::Report,
            rerror: ErrorPolicy::Report,
            serial: None,
            model: None,
            version: None,
        };
        let mut ide = IdeController::new(
            [Some(disk), None, None, None],
            ram.clone(),
            [irq14.clone() as Arc<dyn IrqLine>, irq15 as Arc<dyn IrqLine>],
            vm,
        );
        // What the BIOS would do: BAR4, then I/O space + bus master.
        ide.config_write(0x20, 4, BM_BASE as u32 | 1);
        ide.config_write(0x04, 2, 0x0005);
        let mut guest = Guest { ide, ram, irq14 };
        guest.set_multiple(MULTIPLE_BLOCK);
        guest
    }

    fn route(port: u16) -> (u64, u64) {
        let p = port as u64;
        match p {
            0x1f0..=0x1f7 => (PRIMARY_CMD_BASE, p - PRIMARY_CMD_BASE),
            0x3f6 => (PRIMARY_CTRL_BASE, 0),
            _ => (BM_BASE, p - BM_BASE),
        }
    }

    fn outb(&mut self, port: u16, v: u8) {
        let (base, off) = Self::route(port);
        self.ide.write(base, off, &[v]);
    }

    fn outw(&mut self, port: u16, v: u16) {
        let (base, off) = Self::route(port);
        self.ide.write(base, off, &v.to_le_bytes());
    }

    fn outl(&mut self, port: u16, v: u32) {
        let (base, off) = Self::route(port);
        self.ide.write(base, off, &v.to_le_bytes());
    }

    fn inb(&mut self, port: u16) -> u8 {
        let (base, off) = Self::route(port);
        let mut d = [0u8; 1];
        self.ide.read(base, off, &mut d);
        d[0]
    }

    fn inl(&mut self, port: u16) -> u32 {
        let (base, off) = Self::route(port);
        let mut d = [0u8; 4];
        self.ide.read(base, off, &mut d);
        u32::from_le_bytes(d)
    }

    fn inw(&mut self, port: u16) -> u16 {
        let (base, off) = Self::route(port);
        let mut d = [0u8; 2];
        self.ide.read(base, off, &mut d);
        u16::from_le_bytes(d)
    }

    fn taskfile_lba28(&mut self, cmd: u8, lba: u32, count: u8) {
        self.outb(0x1f6, 0xe0 | ((lba >> 24) as u8 & 0x0f));
        self.outb(0x1f2, count);
        self.outb(0x1f3, lba as u8);
        self.outb(0x1f4, (lba >> 8) as u8);
        self.outb(0x1f5, (lba >> 16) as u8);
        self.outb(0x1f7, cmd);
    }

    /// Status read that also acknowledges the interrupt, as the guest's
    /// IRQ handler does. Anything but a clean completion stops the run.
    fn expect_status(&mut self, want: u8, what: &str) {
        let st = self.inb(0x1f7);
        if st & (ST_BSY | ST_ERR | ST_DRQ) != want {
            let err = self.inb(0x1f1);
            panic!("{what}: status {st:#04x} error {err:#04x}, wanted BSY/ERR/DRQ = {want:#04x}");
        }
    }

    fn set_multiple(&mut self, block: u8) {
        self.taskfile_lba28(0xc6, 0, block);
        self.expect_status(0, "SET MULTIPLE MODE");
    }

    /// One PIO data-in command of `count` sectors; the guest takes one DRQ
    /// block per interrupt (1 sector, or the multiple block) with 16-bit
    /// `insw` as ata_sff_data_xfer does, or `insl` with `pio32`.
    fn pio_in(&mut self, cmd: u8, lba: u32, count: u8, block: usize, pio32: bool, sink: &mut [u8]) {
        self.taskfile_lba28(cmd, lba, count);
        let total = if count == 0 { 256 } else { count as usize } * SECTOR;
        let mut done = 0;
        while done < total {
            self.expect_status(ST_DRQ, "PIO data-in block");
            let n = (block * SECTOR).min(total - done);
            if pio32 {
                for w in sink[done..done + n].chunks_exact_mut(4) {
                    w.copy_from_slice(&self.inl(0x1f0).to_le_bytes());
                }
            } else {
                for w in sink[done..done + n].chunks_exact_mut(2) {
                    w.copy_from_slice(&self.inw(0x1f0).to_le_bytes());
                }
            }
            done += n;
        }
        self.expect_status(0, "PIO data-in end");
    }

    fn pio_out(&mut self, cmd: u8, lba: u32, count: u8, block: usize, data: &[u8]) {
        self.taskfile_lba28(cmd, lba, count);
        let total = if count == 0 { 256 } else { count as usize } * SECTOR;
        let mut done = 0;
        while done < total {
            // The first block is sent without an interrupt, the rest after one.
            self.expect_status(ST_DRQ, "PIO data-out block");
            let n = (block * SECTOR).min(total - done);
            for w in data[done..done + n].chunks_exact(2) {
                self.outw(0x1f0, u16::from_le_bytes([w[0], w[1]]));
            }
            done += n;
        }
        self.expect_status(0, "PIO data-out end");
    }

    /// PRD table of 4 KiB segments covering `bytes` at DMA_BUFFER.
    fn build_prd_table(&self, bytes: usize) {
        let mut table = Vec::new();
        let segments = bytes.div_ceil(PRD_SEGMENT);
        for i in 0..segments {
            let len = PRD_SEGMENT.min(bytes - i * PRD_SEGMENT) as u32;
            let eot = if i + 1 == segments { 0x8000_0000u32 } else { 0 };
            table.extend_from_slice(&((DMA_BUFFER as usize + i * PRD_SEGMENT) as u32).to_le_bytes());
            table.extend_from_slice(&((len & 0xffff) | eot).to_le_bytes());
        }
        self.ram.write(PRD_TABLE, &table).expect("PRD table inside RAM");
    }

    /// ata_bmdma_setup + ata_bmdma_start + the interrupt handler's
    /// ata_bmdma_status/stop and status read.
    fn dma(&mut self, cmd: u8, lba: u32, count: u8, to_memory: bool) {
        let bm = BM_BASE as u16;
        self.outl(bm + 4, PRD_TABLE as u32);
        self.outb(bm, if to_memory { 0x08 } else { 0x00 });
        self.outb(bm + 2, BM_INTR | BM_ERROR);
        self.taskfile_lba28(cmd, lba, count);
        self.outb(bm, if to_memory { 0x09 } else { 0x01 });
        let bm_status = self.inb(bm + 2);
        if bm_status & (BM_INTR | BM_ERROR | 0x01) != BM_INTR {
            panic!("DMA {cmd:#04x}: BMDMA status {bm_status:#04x}, wanted INTR only");
        }
        self.outb(bm, if to_memory { 0x08 } else { 0x00 });
        self.expect_status(0, "DMA end");
    }
}

#[derive(Clone, Copy)]
enum Work {
    PioIn { cmd: u8, block: usize, pio32: bool },
    PioOut { cmd: u8, block: usize },
    Dma { cmd: u8, to_memory: bool },
}

struct Row {
    name: &'static str,
    sectors_per_cmd: u32,
    work: Work,
}

struct Measured {
    commands: u64,
    sectors: u64,
    seconds: f64,
    irqs: u64,
}

/// Successive commands walk the image so that the copies are not served
/// from one hot cache line.
fn lba_for(i: u64, sectors_per_cmd: u32) -> u32 {
    let slots = (IMAGE_SECTORS / sectors_per_cmd) as u64;
    ((i * 7919) % slots) as u32 * sectors_per_cmd
}

fn count_field(sectors: u32) -> u8 {
    if sectors == 256 {
        0
    } else {
        sectors as u8
    }
}

fn run_row(guest: &mut Guest, row: &Row, budget: Duration) -> Measured {
    let bytes = row.sectors_per_cmd as usize * SECTOR;
    let mut buf = vec![0u8; bytes];
    let out: Vec<u8> = (0..bytes).map(|i| (i as u8) ^ 0x5a).collect();
    if let Work::Dma { .. } = row.work {
        guest.build_prd_table(bytes);
    }
    let count = count_field(row.sectors_per_cmd);
    let issue = |guest: &mut Guest, lba: u32, buf: &mut [u8]| match row.work {
        Work::PioIn { cmd, block, pio32 } => guest.pio_in(cmd, lba, count, block, pio32, buf),
        Work::PioOut { cmd, block } => guest.pio_out(cmd, lba, count, block, &out),
        Work::Dma { cmd, to_memory } => guest.dma(cmd, lba, count, to_memory),
    };
    let irqs_before = guest.irq14.raises.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut commands = 0u64;
    loop {
        let lba = lba_for(commands, row.sectors_per_cmd);
        issue(guest, lba, &mut buf);
        commands += 1;
        // Checking the clock every 8 commands keeps its cost out of the
        // 1-sector rows without overshooting the budget on slow ones.
        if commands.is_multiple_of(8) && start.elapsed() >= budget {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Measured {
        commands,
        sectors: commands * row.sectors_per_cmd as u64,
        seconds,
        irqs: guest.irq14.raises.load(Ordering::Relaxed) - irqs_before,
    }
}

/// Reads must return the image's bytes, and writes must land: one check
/// per data path before anything is timed.
fn verify_data_paths(guest: &mut Guest) {
    let lba = 4000u32;
    let at = lba as usize * SECTOR;
    let want: Vec<u8> = (at..at + 8 * SECTOR).map(pattern_byte).collect();
    let mut got = vec![0u8; 8 * SECTOR];
    guest.pio_in(0x20, lba, 8, 1, false, &mut got);
    assert!(got == want, "READ SECTORS returned other bytes than the image holds");
    got.fill(0);
    guest.pio_in(0xc4, lba, 8, MULTIPLE_BLOCK as usize, false, &mut got);
    assert!(got == want, "READ MULTIPLE returned other bytes than the image holds");
    got.fill(0);
    guest.pio_in(0xc4, lba, 8, MULTIPLE_BLOCK as usize, true, &mut got);
    assert!(got == want, "READ MULTIPLE with 32-bit data reads returned other bytes than the image holds");
    guest.build_prd_table(8 * SECTOR);
    guest.dma(0xc8, lba, 8, true);
    let mut from_ram = vec![0u8; 8 * SECTOR];
    guest.ram.read(DMA_BUFFER, &mut from_ram).unwrap();
    assert!(from_ram == want, "READ DMA put other bytes into guest RAM than the image holds");

    let written: Vec<u8> = (0..8 * SECTOR).map(|i| !(i as u8)).collect();
    guest.ram.write(DMA_BUFFER, &written).unwrap();
    guest.dma(0xca, lba, 8, false);
    guest.pio_in(0x20, lba, 8, 1, false, &mut got);
    assert!(got == written, "WRITE DMA did not reach the image");
    let pio_written: Vec<u8> = (0..8 * SECTOR).map(|i| (i as u8).wrapping_mul(3)).collect();
    guest.pio_out(0xc5, lba, 8, MULTIPLE_BLOCK as usize, &pio_written);
    guest.pio_in(0xc4, lba, 8, MULTIPLE_BLOCK as usize, false, &mut got);
    assert!(got == pio_written, "WRITE MULTIPLE did not reach the image");
}

fn main() {
    // Words after `--` pick the rows whose name contains one of them
    // (`cargo bench --bench ide_core -- DMA`); cargo's own `--bench` is not
    // a row filter.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let budget = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(0.25);
    let budget = Duration::from_secs_f64(budget);
    let repeat = std::env::var("BENCH_REPEAT").ok().and_then(|s| s.parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(3);

    let mut guest = Guest::new();
    verify_data_paths(&mut guest);

    let block = MULTIPLE_BLOCK as usize;
    let rows = [
        Row { name: "READ SECTORS (0x20)", sectors_per_cmd: 1, work: Work::PioIn { cmd: 0x20, block: 1, pio32: false } },
        Row { name: "READ SECTORS (0x20)", sectors_per_cmd: 256, work: Work::PioIn { cmd: 0x20, block: 1, pio32: false } },
        Row { name: "WRITE SECTORS (0x30)", sectors_per_cmd: 1, work: Work::PioOut { cmd: 0x30, block: 1 } },
        Row { name: "WRITE SECTORS (0x30)", sectors_per_cmd: 256, work: Work::PioOut { cmd: 0x30, block: 1 } },
        Row { name: "READ MULTIPLE (0xc4), 16/blk", sectors_per_cmd: 256, work: Work::PioIn { cmd: 0xc4, block, pio32: false } },
        Row { name: "READ MULTIPLE, 32-bit insl", sectors_per_cmd: 256, work: Work::PioIn { cmd: 0xc4, block, pio32: true } },
        Row { name: "WRITE MULTIPLE (0xc5), 16/blk", sectors_per_cmd: 256, work: Work::PioOut { cmd: 0xc5, block } },
        Row { name: "READ DMA (0xc8)", sectors_per_cmd: 8, work: Work::Dma { cmd: 0xc8, to_memory: true } },
        Row { name: "READ DMA (0xc8)", sectors_per_cmd: 256, work: Work::Dma { cmd: 0xc8, to_memory: true } },
        Row { name: "WRITE DMA (0xca)", sectors_per_cmd: 8, work: Work::Dma { cmd: 0xca, to_memory: false } },
        Row { name: "WRITE DMA (0xca)", sectors_per_cmd: 256, work: Work::Dma { cmd: 0xca, to_memory: false } },
    ];

    println!("IDE core alone: RAM image (MemBackend, 64 MiB), RAM guest memory (AnonRam); 16-bit data port unless noted; 4 KiB PRD segments");
    println!(
        "median of {repeat} runs of {:.2} s per row (BENCH_REPEAT, BENCH_SECONDS); MB = 10^6 bytes\n",
        budget.as_secs_f64()
    );
    println!(
        "{:<30} {:>8} {:>12} {:>12} {:>10} {:>12}",
        "command", "sect/cmd", "commands/s", "sectors/s", "MB/s", "IRQs/cmd"
    );
    for row in rows.iter().filter(|r| filters.is_empty() || filters.iter().any(|f| r.name.contains(f.as_str()))) {
        // Other processes share the host: the median run is the figure.
        let mut runs: Vec<Measured> = (0..repeat).map(|_| run_row(&mut guest, row, budget)).collect();
        runs.sort_by(|a, b| (a.sectors as f64 / a.seconds).total_cmp(&(b.sectors as f64 / b.seconds)));
        let m = &runs[runs.len() / 2];
        let sectors_per_s = m.sectors as f64 / m.seconds;
        println!(
            "{:<30} {:>8} {:>12.0} {:>12.0} {:>10.1} {:>12.2}",
            row.name,
            row.sectors_per_cmd,
            m.commands as f64 / m.seconds,
            sectors_per_s,
            sectors_per_s * SECTOR as f64 / 1e6,
            m.irqs as f64 / m.commands as f64,
        );
    }
}
