//! ATAPI: CDBs to the CD-ROM (primary master) through PACKET, answered
//! by PIO (bounded by the guest's byte-count limit) or by bus-master DMA
//! into a PRD table the input picks, with media changes, host read
//! faults and resets between packets. Invariants: those of
//! `xen_ioemu_fuzz::machine`, plus: a PIO data phase never offers more
//! than the byte-count limit the guest set (0xffff counts as 0xfffe; a
//! limit of 0 gets no PIO data phase at all), as on QEMU 7.2.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use xen_ioemu::block::{BlockOp, ErrorPolicy};
use xen_ioemu::devices::ide::MediaKind;
use xen_ioemu_fuzz::machine::{drive, Machine, BM, RAM};
use xen_ioemu_fuzz::{FaultyImage, HostCounters};

const PRD_TABLE: u64 = 0x1_0000;
/// Data words the harness reads per packet; a reply can be far longer
/// (READ CD of many blocks), the rest is left for the next command.
const MAX_WORDS: usize = 1 << 14;

/// Opcodes the CD-ROM implements, so most packets reach a handler.
const OPCODES: &[u8] = &[
    0x00, 0x03, 0x12, 0x1a, 0x1b, 0x1e, 0x23, 0x25, 0x28, 0x2b, 0x42, 0x43, 0x46, 0x4a, 0x51, 0x55, 0x5a, 0xa8,
    0xad, 0xb9, 0xbb, 0xbd, 0xbe, 0xa3, 0xa4, 0x35, 0x47, 0x4b, 0x4e, 0xa2, 0x5c,
];

#[derive(Debug, Arbitrary)]
enum Op {
    Packet { cdb: [u8; 12], known: bool, bcl: u16, dma: bool },
    Prd { entries: Vec<(u32, u16)> },
    Fault { at_block: Option<u8>, once: bool },
    ClearFaults,
    Eject { force: bool },
    Insert { blocks: u8 },
    Reset,
    /// A raw write to a command-block register between packets.
    Out { reg: u8, val: u8 },
}

struct Rig {
    m: Machine,
    cd: FaultyImage,
    host: Arc<HostCounters>,
}

fn cd_image(blocks: usize, host: &Arc<HostCounters>) -> FaultyImage {
    let data: Vec<u8> = (0..blocks * 2048).map(|i| (i / 2048) as u8 ^ (i as u8)).collect();
    FaultyImage::new(data, true, host.clone())
}

fn packet(r: &mut Rig, cdb: &[u8; 12], bcl: u16, dma: bool) {
    let m = &mut r.m;
    m.access(0x1f6, 1, Some(0xa0));
    m.access(0x1f1, 1, Some(dma as u32));
    m.access(0x1f4, 1, Some(bcl as u32 & 0xff));
    m.access(0x1f5, 1, Some((bcl >> 8) as u32));
    if dma {
        m.access(BM + 4, 4, Some(PRD_TABLE as u32));
        m.access(BM, 1, Some(0x08));
        m.access(BM + 2, 1, Some(0x06));
    }
    m.access(0x1f7, 1, Some(0xa0));
    // The CDB goes out as six words when the drive asks for it (DRQ with
    // C/D=1, I/O=0). Otherwise the drive refused PACKET (as it must while
    // an earlier data phase still holds DRQ; the limit written above was
    // ignored then too), and this packet is over.
    let st = m.access(0x3f6, 1, None);
    let ireason = m.access(0x1f2, 1, None);
    if st.is_none_or(|st| st & 0x88 != 0x08) || ireason.is_none_or(|ir| ir & 0x03 != 0x01) {
        return;
    }
    // The limit the drive will honour is the one in its registers now: a
    // raw PACKET (Op::Out) may already be waiting for its CDB, and then the
    // limit written above was ignored (register writes are, while DRQ is
    // set, as on QEMU) and the one of that earlier PACKET stands.
    let (Some(lo), Some(hi)) = (m.access(0x1f4, 1, None), m.access(0x1f5, 1, None)) else { return };
    let bcl = (hi as u16) << 8 | lo as u16;
    for w in cdb.chunks(2) {
        m.access(0x1f0, 2, Some(u16::from_le_bytes([w[0], w[1]]) as u32));
    }
    if dma {
        m.access(BM, 1, Some(0x09));
        return;
    }
    let limit = if bcl == 0xffff { 0xfffe } else { bcl as usize };
    let mut words = 0;
    // Chunks, bounded too: a one-byte phase read by words never ends
    // (as on QEMU), so the word count alone would not stop the loop soon.
    for _ in 0..256 {
        if words >= MAX_WORDS {
            return;
        }
        let Some(st) = m.access(0x3f6, 1, None) else { return };
        if st & 0x88 != 0x08 {
            return;
        }
        // Interrupt reason: a data phase to the host is I/O=1, C/D=0.
        if m.access(0x1f2, 1, None).is_none_or(|ireason| ireason & 0x03 != 0x02) {
            return;
        }
        let Some(lo) = m.access(0x1f4, 1, None) else { return };
        let Some(hi) = m.access(0x1f5, 1, None) else { return };
        let chunk = (hi as usize) << 8 | lo as usize;
        assert!(chunk <= limit, "a data phase of {chunk} bytes over a byte-count limit of {bcl}");
        // The drive counts in bytes; the guest reads words, an odd count rounded up.
        let n = chunk.div_ceil(2).max(1);
        m.rep(0x1f0, 2, None, n.min(MAX_WORDS - words));
        words += n;
    }
}

fn apply(r: &mut Rig, op: &Op) {
    match op {
        Op::Packet { cdb, known, bcl, dma } => {
            let mut cdb = *cdb;
            if *known {
                cdb[0] = OPCODES[cdb[0] as usize % OPCODES.len()];
            }
            packet(r, &cdb, *bcl, *dma);
        }
        Op::Prd { entries } => {
            let mut table = Vec::new();
            for (i, (addr, len)) in entries.iter().take(64).enumerate() {
                let addr = if addr & 1 == 0 { addr % RAM as u32 } else { *addr };
                let eot = if i + 1 == entries.len().min(64) { 0x8000_0000u32 } else { 0 };
                table.extend_from_slice(&addr.to_le_bytes());
                table.extend_from_slice(&((*len as u32) | eot).to_le_bytes());
            }
            r.m.mem.poke(PRD_TABLE, &table);
        }
        Op::Fault { at_block, once } => {
            let at = at_block.map(|b| b as u64 * 2048);
            r.cd.inject(BlockOp::Read, at, libc::EIO, *once);
        }
        Op::ClearFaults => r.cd.clear_faults(),
        Op::Eject { force } => r.m.eject("ide0-cd0", *force),
        Op::Insert { blocks } => {
            let cd = cd_image(*blocks as usize % 80, &r.host);
            r.m.change_medium("ide0-cd0", &cd);
            r.cd = cd;
        }
        Op::Reset => r.m.reset(),
        Op::Out { reg, val } => drop(r.m.access(0x1f1 + (*reg as u16 % 7), 1, Some(*val as u32))),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    if ops.len() > 128 {
        return;
    }
    let host = Arc::new(HostCounters::default());
    let cd = cd_image(64, &host);
    let c0 = drive("ide0-cd0", MediaKind::Cdrom, Some(&cd), ErrorPolicy::Report, ErrorPolicy::Report);
    let m = Machine::new([Some(c0), None, None, None], host.clone());
    let mut r = Rig { m, cd, host };
    for op in ops {
        apply(&mut r, &op);
        r.m.check_status();
    }
});
