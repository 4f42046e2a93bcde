//! The PIIX3 IDE with bus master, as a hostile guest and a failing host
//! drive it: port accesses of every width on every port the machine
//! decodes (legacy channels, BAR4, the PCI config mechanism), `rep`
//! strings, taskfile commands, PRD tables and guest memory, host faults,
//! resets, media changes, and stop/cont (werror=stop on one disk).
//! Invariants: see `xen_ioemu_fuzz::machine` (bounded host and memory
//! work per access, nothing past an image's end, no request that never
//! completes) and the status checks after every operation.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use xen_ioemu::block::{BlockOp, ErrorPolicy};
use xen_ioemu::devices::ide::MediaKind;
use xen_ioemu_fuzz::machine::{drive, Machine, BM, RAM};
use xen_ioemu_fuzz::{FaultyImage, HostCounters};

/// The ports the machine decodes for the IDE, plus the config mechanism.
const PORTS: &[u16] = &[
    0x1f0, 0x1f1, 0x1f2, 0x1f3, 0x1f4, 0x1f5, 0x1f6, 0x1f7, 0x3f6, 0x170, 0x171, 0x172, 0x173, 0x174, 0x175, 0x176,
    0x177, 0x376, BM, BM + 1, BM + 2, BM + 3, BM + 4, BM + 5, BM + 6, BM + 7, BM + 8, BM + 9, BM + 10, BM + 11,
    BM + 12, BM + 13, BM + 14, BM + 15, 0xcf8, 0xcfc, 0xcfd, 0xcfe, 0xcff,
];

/// Commands the controller implements, so a random byte is not mostly
/// "aborted command".
const COMMANDS: &[u8] = &[
    0x00, 0x06, 0x08, 0x10, 0x20, 0x24, 0x25, 0x27, 0x29, 0x30, 0x34, 0x35, 0x39, 0x40, 0x42, 0x70, 0x90, 0x91, 0x98,
    0xa0, 0xa1, 0xb0, 0xc4, 0xc5, 0xc6, 0xc8, 0xca, 0xe0, 0xe5, 0xe7, 0xea, 0xec, 0xef, 0xf5, 0xf8,
];

const PRD_TABLE: u64 = 0x1_0000;

#[derive(Debug, Arbitrary)]
enum Op {
    Out { port: u8, size: u8, val: u32 },
    In { port: u8, size: u8 },
    /// A `rep outs`/`rep ins` of up to 1024 elements (data_is_ptr).
    Rep { port: u8, size: u8, write: bool, count: u16, val: u32 },
    Command { secondary: bool, cmd: u8, known: bool, lba: u16, count: u8, feature: u8, dev: u8, hob: u8 },
    /// Start a DMA command the way Linux does: PRD, direction, command, START.
    Dma { secondary: bool, read: bool, cmd: u8, lba: u16, count: u8 },
    Prd { index: u16, addr: u32, len: u16, eot: bool },
    Mem { addr: u32, len: u16, val: u8 },
    Config { offset: u8, size: u8, val: u32 },
    Fault { image: u8, op: u8, enospc: bool, at_sector: Option<u16>, once: bool },
    ClearFaults,
    Stop,
    Cont,
    Reset,
    Media { eject: bool, force: bool, blocks: u8 },
}

fn size(s: u8) -> u8 {
    [1, 2, 4][s as usize % 3]
}

struct Rig {
    m: Machine,
    images: Vec<FaultyImage>,
    host: Arc<HostCounters>,
}

fn rig() -> Rig {
    let host = Arc::new(HostCounters::default());
    let hd0 = FaultyImage::new(vec![0; 256 << 10], false, host.clone());
    let cd = FaultyImage::new(vec![0x5a; 2048 * 64], true, host.clone());
    let hd1 = FaultyImage::new(vec![0; 128 << 10], false, host.clone());
    let d0 = drive("ide0-hd0", MediaKind::Disk, Some(&hd0), ErrorPolicy::Enospc, ErrorPolicy::Report);
    let c1 = drive("ide1-cd0", MediaKind::Cdrom, Some(&cd), ErrorPolicy::Report, ErrorPolicy::Stop);
    let d2 = drive("ide1-hd1", MediaKind::Disk, Some(&hd1), ErrorPolicy::Stop, ErrorPolicy::Ignore);
    let m = Machine::new([Some(d0), None, Some(c1), Some(d2)], host.clone());
    Rig { m, images: vec![hd0, cd, hd1], host }
}

fn taskfile(m: &mut Machine, base: u16, regs: [(u16, u8); 9]) {
    for (reg, v) in regs {
        m.access(base + reg, 1, Some(v as u32));
    }
}

fn apply(r: &mut Rig, op: &Op) {
    let m = &mut r.m;
    match *op {
        Op::Out { port, size: s, val } => drop(m.access(PORTS[port as usize % PORTS.len()], size(s), Some(val))),
        Op::In { port, size: s } => drop(m.access(PORTS[port as usize % PORTS.len()], size(s), None)),
        Op::Rep { port, size: s, write, count, val } => {
            let port = PORTS[port as usize % PORTS.len()];
            m.rep(port, size(s), write.then_some(val), count as usize % 1025);
        }
        Op::Command { secondary, cmd, known, lba, count, feature, dev, hob } => {
            let cmd = if known { COMMANDS[cmd as usize % COMMANDS.len()] } else { cmd };
            let base = if secondary { 0x170 } else { 0x1f0 };
            let l = lba as u32;
            taskfile(m, base, [(2, hob), (3, hob), (1, feature), (2, count), (3, l as u8), (4, (l >> 8) as u8), (5, 0), (6, dev), (7, cmd)]);
        }
        Op::Dma { secondary, read, cmd, lba, count } => {
            let (base, bm) = if secondary { (0x170, BM + 8) } else { (0x1f0, BM) };
            let cmd = [0xc8, 0xca, 0x25, 0x35][cmd as usize % 4];
            m.access(bm + 4, 4, Some(PRD_TABLE as u32));
            m.access(bm, 1, Some(if read { 0x08 } else { 0x00 }));
            m.access(bm + 2, 1, Some(0x06));
            let l = lba as u32;
            taskfile(m, base, [(2, 0), (3, 0), (1, 0), (2, count), (3, l as u8), (4, (l >> 8) as u8), (5, 0), (6, 0xe0), (7, cmd)]);
            m.access(bm, 1, Some(if read { 0x09 } else { 0x01 }));
        }
        Op::Prd { index, addr, len, eot } => {
            // Mostly inside RAM; sometimes anywhere in the 4 GiB the guest can name.
            let addr = if addr & 1 == 0 { addr % RAM as u32 } else { addr };
            let mut e = addr.to_le_bytes().to_vec();
            e.extend_from_slice(&((len as u32) | if eot { 0x8000_0000 } else { 0 }).to_le_bytes());
            m.mem.poke(PRD_TABLE + (index as u64 % 8192) * 8, &e);
        }
        Op::Mem { addr, len, val } => m.mem.poke(addr as u64 % RAM as u64, &vec![val; len as usize % 4097]),
        Op::Config { offset, size: s, val } => m.config_write(offset, size(s), val),
        Op::Fault { image, op, enospc, at_sector, once } => {
            let op = [BlockOp::Read, BlockOp::Write, BlockOp::Flush, BlockOp::Discard][op as usize % 4];
            let errno = if enospc { libc::ENOSPC } else { libc::EIO };
            r.images[image as usize % 3].inject(op, at_sector.map(|s| s as u64 * 512), errno, once);
        }
        Op::ClearFaults => r.images.iter().for_each(FaultyImage::clear_faults),
        Op::Stop => m.stop(),
        Op::Cont => m.cont(),
        Op::Reset => m.reset(),
        Op::Media { eject, force, blocks } => {
            if eject {
                m.eject("ide1-cd0", force);
            } else {
                let iso = FaultyImage::new(vec![0xa5; 2048 * (blocks as usize % 16)], true, r.host.clone());
                m.change_medium("ide1-cd0", &iso);
                r.images[1] = iso;
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    if ops.len() > 256 {
        return;
    }
    let mut r = rig();
    for op in &ops {
        apply(&mut r, op);
        r.m.check_status();
    }
    // Finally let everything held run, with the faults gone: it must end.
    r.images.iter().for_each(FaultyImage::clear_faults);
    r.m.cont();
    r.m.check_status();
});
