//! A hostile guest's random accesses as the Xen front serves them: each
//! access bracketed by begin/end_guest_request and never waiting for the
//! host, so completions race the next accesses as on real Xen (the storm
//! scenario, tools/firmware/storm.c). Every access must return.

use super::*;
use std::sync::mpsc;
use std::time::Duration;

/// Makes the host slow enough that requests are often in flight.
struct Slow(SharedImage);

impl BlockBackend for Slow {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_only(&self) -> bool {
        self.0.read_only()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        std::thread::sleep(Duration::from_micros(200));
        self.0.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        std::thread::sleep(Duration::from_micros(200));
        self.0.write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        std::thread::sleep(Duration::from_micros(200));
        self.0.flush()
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.0.discard(offset, len)
    }
    fn set_guest_write_cache(&mut self, enabled: bool) {
        self.0.set_guest_write_cache(enabled)
    }
    fn guest_write_cache(&self) -> bool {
        self.0.guest_write_cache()
    }
}

struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

fn storm(seed: u32, ops: usize, progress: mpsc::Sender<usize>) {
    let disk_image = SharedImage::new(8 * MIB);
    let cd_image = SharedImage::new(4 * MIB);
    let mut d = disk(&disk_image, ErrorPolicy::Report, ErrorPolicy::Report);
    d.backend = Some(Box::new(Slow(disk_image.clone())));
    let mut c = cdrom(Some(&cd_image));
    c.backend = Some(Box::new(Slow(cd_image.clone())));
    let rig = Rig::new([Some(d), None, Some(c), None]);
    let mut rng = Rng(seed);
    let ports: [(u64, u64); 5] = [(0x1f0, 8), (0x3f6, 1), (0x170, 8), (0x376, 1), (BM as u64, 16)];
    for i in 0..ops {
        let (base, len) = ports[rng.below(5) as usize];
        let off = u64::from(rng.below(len as u32));
        let size = [1usize, 2, 4][rng.below(3) as usize];
        let mut ide = rig.ide.lock().unwrap();
        if ide.begin_guest_request() {
            drop(ide);
            continue;
        }
        match rng.below(8) {
            0..=2 => {
                let mut buf = [0u8; 4];
                ide.read(base, off, &mut buf[..size]);
            }
            3 => {
                // A PRD table in RAM and the pointer to it.
                let table = 0x10000 + 8 * rng.below(64) as usize;
                let mut m = rig.mem.0.lock().unwrap();
                for e in 0..4 {
                    let addr = (0x100000 + rng.below(8 * MIB as u32)) & !1;
                    let cnt = rng.below(0x10000) & !1;
                    let eot = if e == 3 || rng.below(4) == 0 { 0x8000_0000u32 } else { 0 };
                    m[table + 8 * e..table + 8 * e + 4].copy_from_slice(&addr.to_le_bytes());
                    m[table + 8 * e + 4..table + 8 * e + 8].copy_from_slice(&(cnt | eot).to_le_bytes());
                }
                drop(m);
                let chan = u64::from(rng.below(2)) * 8;
                ide.write(BM as u64, chan + 4, &(table as u32).to_le_bytes());
            }
            4 => {
                // A command with a small LBA and count.
                let b = if rng.below(2) == 0 { 0x1f0 } else { 0x170 };
                ide.write(b, 6, &[0xe0 | (rng.below(2) as u8) << 4]);
                ide.write(b, 2, &[rng.below(16) as u8]);
                ide.write(b, 3, &[rng.below(256) as u8]);
                ide.write(b, 4, &[0]);
                ide.write(b, 5, &[0]);
                let cmds = [0x20u8, 0x30, 0xc8, 0xca, 0x25, 0x35, 0xe7, 0xec, 0xa0, 0xa1, 0x08, 0xc4, 0xc5];
                ide.write(b, 7, &[cmds[rng.below(cmds.len() as u32) as usize]]);
            }
            5 => {
                // Bus master start/stop, either direction, either channel.
                let chan = u64::from(rng.below(2)) * 8;
                ide.write(BM as u64, chan, &[(rng.below(2) as u8) | (rng.below(2) as u8) << 3]);
            }
            6 => {
                // SRST and back.
                let b = if rng.below(2) == 0 { 0x3f6 } else { 0x376 };
                ide.write(b, 0, &[0x04]);
                ide.write(b, 0, &[0x00]);
            }
            _ => {
                let v = rng.next().to_le_bytes();
                if !(base == BM as u64 && (4..8).contains(&(off % 8))) {
                    ide.write(base, off, &v[..size]);
                }
            }
        }
        if rng.below(500) == 0 {
            let _ = ide.unplug_disks(false);
        }
        ide.end_guest_request();
        drop(ide);
        let _ = progress.send(i);
    }
}

#[test]
fn a_random_storm_served_as_xen_serves_it_never_hangs_an_access() {
    for seed in 1..=40u32 {
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::spawn(move || storm(seed, 5000, tx));
        let mut last = None;
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(i) => last = Some(i),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("seed {seed}: an access hung after op {last:?}"),
            }
        }
        worker.join().unwrap();
    }
}
