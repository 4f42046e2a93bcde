//! Seeded random register and data-port sequences: no panic, bounded
//! work per access.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::sync::atomic::AtomicU64;

/// Counts the bytes a drive moves so each guest access can be checked
/// for bounded work.
struct Counting {
    inner: SharedImage,
    bytes: Arc<AtomicU64>,
}

impl BlockBackend for Counting {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.bytes.fetch_add(buf.len() as u64, Ordering::SeqCst);
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        self.bytes.fetch_add(data.len() as u64, Ordering::SeqCst);
        self.inner.write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.inner.flush()
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.bytes.fetch_add(len, Ordering::SeqCst);
        self.inner.discard(offset, len)
    }
    fn set_guest_write_cache(&mut self, enabled: bool) {
        self.inner.set_guest_write_cache(enabled)
    }
    fn guest_write_cache(&self) -> bool {
        self.inner.guest_write_cache()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Out { port: u16, size: usize, val: u32 },
    In { port: u16, size: usize },
    Command { secondary: bool, cmd: u8, lba: u32, count: u8, feature: u8, dev: u8, hob: u8 },
    Words { secondary: bool, write: bool, count: u16, val: u16 },
    Prd { index: u16, addr: u32, len: u16, eot: bool },
    Mem { addr: u32, len: u16, val: u8 },
    Config { offset: u8, size: u8, val: u32 },
    Fault { image: usize, op: u8, enospc: bool, at_sector: Option<u16>, once: bool },
    ClearFaults,
    Cont,
    Reset,
    Media { eject: bool, force: bool },
}

const COMMANDS: &[u8] = &[
    0x00, 0x06, 0x08, 0x10, 0x20, 0x24, 0x25, 0x27, 0x29, 0x30, 0x34, 0x35, 0x39, 0x40, 0x42, 0x70, 0x90, 0x91,
    0x98, 0xa0, 0xa1, 0xb0, 0xc4, 0xc5, 0xc6, 0xc8, 0xca, 0xe0, 0xe5, 0xe7, 0xea, 0xec, 0xef, 0xf5, 0xf8,
];

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![0x1f0u16..=0x1f7, Just(0x3f6), 0x170u16..=0x177, Just(0x376), BM..BM + 16]
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(2), Just(4)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (port(), size(), any::<u32>()).prop_map(|(port, size, val)| Op::Out { port, size, val }),
        3 => (port(), size()).prop_map(|(port, size)| Op::In { port, size }),
        6 => (any::<bool>(), prop_oneof![proptest::sample::select(COMMANDS), any::<u8>()], 0u32..20000, any::<u8>(),
              prop_oneof![Just(0u8), Just(1), Just(3), Just(0x82), any::<u8>()], any::<u8>(), any::<u8>())
            .prop_map(|(secondary, cmd, lba, count, feature, dev, hob)| Op::Command { secondary, cmd, lba, count, feature, dev, hob }),
        4 => (any::<bool>(), any::<bool>(), 1u16..2048, any::<u16>())
            .prop_map(|(secondary, write, count, val)| Op::Words { secondary, write, count, val }),
        3 => (0u16..520, prop_oneof![0x2_0000u32..0x30_0000, any::<u32>()], any::<u16>(), any::<bool>())
            .prop_map(|(index, addr, len, eot)| Op::Prd { index, addr, len, eot }),
        1 => (0x2_0000u32..0x30_0000, 0u16..4096, any::<u8>()).prop_map(|(addr, len, val)| Op::Mem { addr, len, val }),
        1 => (prop_oneof![Just(0x04u8), Just(0x20), Just(0x41), any::<u8>()], size(), any::<u32>())
            .prop_map(|(offset, size, val)| Op::Config { offset, size: size as u8, val }),
        1 => (0usize..3, 0u8..4, any::<bool>(), proptest::option::of(0u16..8192), any::<bool>())
            .prop_map(|(image, op, enospc, at_sector, once)| Op::Fault { image, op, enospc, at_sector, once }),
        1 => Just(Op::ClearFaults),
        2 => Just(Op::Cont),
        1 => Just(Op::Reset),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(eject, force)| Op::Media { eject, force }),
    ]
}

struct FuzzRig {
    rig: Rig,
    images: Vec<SharedImage>,
    moved: Arc<AtomicU64>,
}

fn fuzz_rig() -> FuzzRig {
    let moved = Arc::new(AtomicU64::new(0));
    let hd0 = SharedImage::new(4 * MIB);
    let hd1 = SharedImage::new(MIB);
    let cd = SharedImage::with_data(vec![0x5a; 2048 * 64], true);
    let counting = |img: &SharedImage| -> Box<dyn BlockBackend> { Box::new(Counting { inner: img.clone(), bytes: moved.clone() }) };
    let mut d0 = disk(&hd0, ErrorPolicy::Enospc, ErrorPolicy::Report);
    d0.backend = Some(counting(&hd0));
    let mut c1 = cdrom(Some(&cd));
    c1.backend = Some(counting(&cd));
    c1.rerror = ErrorPolicy::Stop;
    let mut d2 = disk(&hd1, ErrorPolicy::Stop, ErrorPolicy::Ignore);
    d2.id = "ide1-hd0".into();
    d2.backend = Some(counting(&hd1));
    let rig = Rig::new([Some(d0), Some(c1), Some(d2), None]);
    FuzzRig { rig, images: vec![hd0, cd, hd1], moved }
}

fn apply(f: &mut FuzzRig, op: &Op) {
    let rig = &mut f.rig;
    match *op {
        Op::Out { port, size, val } => match size {
            1 => rig.outb(port, val as u8),
            2 => rig.outw(port, val as u16),
            _ => rig.outl(port, val),
        },
        Op::In { port, size } => {
            match size {
                1 => drop(rig.inb(port)),
                2 => drop(rig.inw(port)),
                _ => drop(rig.inl(port)),
            };
        }
        Op::Command { secondary, cmd, lba, count, feature, dev, hob } => {
            let base = if secondary { 0x170 } else { 0x1f0 };
            rig.outb(base + 2, hob);
            rig.outb(base + 3, hob);
            rig.outb(base + 1, feature);
            rig.outb(base + 2, count);
            rig.outb(base + 3, lba as u8);
            rig.outb(base + 4, (lba >> 8) as u8);
            rig.outb(base + 5, (lba >> 16) as u8);
            rig.outb(base + 6, dev);
            rig.outb(base + 7, cmd);
        }
        Op::Words { secondary, write, count, val } => {
            let base = if secondary { 0x170 } else { 0x1f0 };
            for _ in 0..count {
                if write {
                    rig.outw(base, val);
                } else {
                    rig.inw(base);
                }
            }
        }
        Op::Prd { index, addr, len, eot } => {
            let mut e = addr.to_le_bytes().to_vec();
            e.extend_from_slice(&((len as u32) | if eot { 0x8000_0000 } else { 0 }).to_le_bytes());
            let _ = rig.mem.write(PRD_TABLE + index as u64 * 8, &e);
        }
        Op::Mem { addr, len, val } => {
            let _ = rig.mem.write(addr as u64, &vec![val; len as usize]);
        }
        Op::Config { offset, size, val } => {
            let _ = rig.ide().config_write(offset, size, val);
        }
        Op::Fault { image, op, enospc, at_sector, once } => {
            let op = [BlockOp::Read, BlockOp::Write, BlockOp::Flush, BlockOp::Discard][op as usize];
            let errno = if enospc { libc::ENOSPC } else { libc::EIO };
            f.images[image].inject(op, at_sector.map(|s| s as u64 * 512), errno, once);
        }
        Op::ClearFaults => f.images.iter().for_each(SharedImage::clear_faults),
        Op::Cont => {
            rig.vm.set_running();
            rig.restart_held();
        }
        Op::Reset => rig.ide().reset(),
        Op::Media { eject, force } => {
            if eject {
                let _ = rig.ide().eject("ide1-cd0", force);
            } else {
                let iso = SharedImage::with_data(vec![0xa5; 2048 * 8], true);
                let _ = rig.ide().change_medium("ide1-cd0", Box::new(iso), "new.iso".into());
            }
        }
    }
}

/// One guest access never moves more than a maximal request (32 MiB)
/// per direction plus a CD transfer bounded by the PRD table.
const WORK_BOUND: u64 = 3 * 32 * MIB as u64;

#[test]
fn random_port_bmdma_prd_memory_sequences_with_faults() {
    let config = Config { cases: 200, failure_persistence: None, ..Config::default() };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[0x1d; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let total_ops = Arc::new(AtomicU64::new(0));
    let counted = total_ops.clone();
    runner
        .run(&proptest::collection::vec(op(), 1..400), move |ops| {
            let mut f = fuzz_rig();
            for op in &ops {
                let before = f.moved.load(Ordering::SeqCst);
                apply(&mut f, op);
                let moved = f.moved.load(Ordering::SeqCst) - before;
                prop_assert!(moved <= WORK_BOUND, "{op:?} moved {moved} bytes");
                counted.fetch_add(1, Ordering::SeqCst);
                for port in [0x3f6u16, 0x376] {
                    let st = f.rig.inb(port);
                    prop_assert!(st & 0x09 != 0x09, "ERR and DRQ together after {op:?}: {st:#x}");
                }
                prop_assert_eq!(f.rig.bm_status() & 0x02, 0, "BM ERROR is never set by the device");
            }
            prop_assert_eq!(f.rig.mem.0.lock().unwrap().len(), RAM);
            Ok(())
        })
        .unwrap();
    let ops = total_ops.load(Ordering::SeqCst);
    println!("ide fuzz: {ops} operations in 200 seeded sequences");
    assert!(ops > 5000);
}
