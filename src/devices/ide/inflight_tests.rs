//! What the guest sees while a request is on the host: a backend that
//! blocks until the test opens its gate keeps each request in flight for
//! as long as the test looks at the registers.

use super::tests::{disk_on, Rig, BM, BUF, MIB};
use super::*;
use crate::block::mem::MemBackend;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// A RAM image whose reads, writes and flushes wait for an open gate.
#[derive(Clone)]
struct GatedImage(Arc<Gate>);

struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    image: Mutex<MemBackend>,
    requests: AtomicUsize,
}

impl GatedImage {
    fn new() -> Self {
        GatedImage(Arc::new(Gate {
            // Open while the controller is built (it reads the MBR for
            // the geometry); each test closes it.
            open: Mutex::new(true),
            opened: Condvar::new(),
            image: Mutex::new(MemBackend::new(MIB)),
            requests: AtomicUsize::new(0),
        }))
    }
    fn close(&self) {
        *self.0.open.lock().unwrap() = false;
        self.0.requests.store(0, Ordering::SeqCst);
    }
    fn open(&self) {
        *self.0.open.lock().unwrap() = true;
        self.0.opened.notify_all();
    }
    fn pass(&self) {
        self.0.requests.fetch_add(1, Ordering::SeqCst);
        let mut open = self.0.open.lock().unwrap();
        while !*open {
            open = self.0.opened.wait(open).unwrap();
        }
    }
    fn requests(&self) -> usize {
        self.0.requests.load(Ordering::SeqCst)
    }
}

impl BlockBackend for GatedImage {
    fn size(&self) -> u64 {
        MIB as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.pass();
        self.0.image.lock().unwrap().read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        self.pass();
        self.0.image.lock().unwrap().write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.pass();
        Ok(())
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.pass();
        self.0.image.lock().unwrap().discard(offset, len)
    }
    fn set_guest_write_cache(&mut self, _enabled: bool) {}
    fn guest_write_cache(&self) -> bool {
        true
    }
}

/// The rig, with the gate closed once it is built.
fn rig_with(image: &GatedImage) -> Rig {
    let cfg = disk_on(Box::new(image.clone()), ErrorPolicy::Report, ErrorPolicy::Report);
    let rig = Rig::new([Some(cfg), None, None, None]);
    image.close();
    rig
}

/// Register reads that do not wait for the host.
fn altstatus_now(rig: &Rig) -> u8 {
    let mut d = [0u8; 1];
    rig.ide().read(0x3f6, 0, &mut d);
    d[0]
}

fn bm_status_now(rig: &Rig) -> u8 {
    let mut d = [0u8; 1];
    rig.ide().read(BM as u64, 2, &mut d);
    d[0]
}

#[test]
fn a_dma_in_flight_shows_drq_and_an_active_engine_and_takes_no_command_bytes() {
    let image = GatedImage::new();
    let mut rig = rig_with(&image);
    // PRD table longer than the command: the engine stays ACTIVE after it,
    // as in the issue's `rep outsb` measurement on the nested Xen.
    rig.set_prdt(&[(BUF as u32, 4096), (BUF as u32 + 0x10000, 4096)]);
    rig.outb(BM, 0x08);
    rig.outb(BM + 2, 0x06);
    rig.outb(0x1f6, 0xe0);
    rig.outb(0x1f2, 8);
    rig.outb(0x1f3, 0);
    rig.outb(0x1f4, 0);
    rig.outb(0x1f5, 0);
    rig.outb(BM, 0x09);
    // 32 READ DMA bytes, as a guest's `rep outsb` hands them over: the
    // first starts the command, the other 31 arrive while it is in flight.
    for _ in 0..32 {
        rig.outb_nowait(0x1f7, 0xc8);
    }
    assert_eq!(altstatus_now(&rig), 0x58, "DRQ while the DMA is on the host");
    assert_eq!(bm_status_now(&rig), 0x01, "ACTIVE, no interrupt yet");
    assert!(!rig.irq_high(0));
    assert!(rig.ide().has_request_in_flight());
    image.open();
    rig.settle();
    assert_eq!(rig.altstatus(), 0x50, "one command ran; nothing is pending");
    assert_eq!(bm_status_now(&rig) & 0x04, 0x04);
    assert!(!rig.ide().has_request_in_flight());
    assert_eq!(image.requests(), 1, "the 31 bytes in flight started nothing");
    assert_eq!(rig.irq_raises(0), 1);
}

#[test]
fn a_pio_read_shows_bsy_until_the_host_is_done() {
    let image = GatedImage::new();
    let mut rig = rig_with(&image);
    rig.outb(0x1f6, 0xe0);
    rig.outb(0x1f2, 1);
    rig.outb(0x1f3, 5);
    rig.outb(0x1f4, 0);
    rig.outb(0x1f5, 0);
    rig.outb_nowait(0x1f7, 0x20);
    assert_eq!(altstatus_now(&rig), 0xd0, "BSY while the block is read");
    rig.outb_nowait(0x1f7, 0xec);
    assert_eq!(altstatus_now(&rig), 0xd0, "a command byte while BSY is ignored");
    image.open();
    rig.settle();
    assert_eq!(rig.altstatus(), 0x58);
    assert_eq!(rig.read_block(512), vec![0; 512]);
    assert_eq!(rig.altstatus(), 0x50);
    assert_eq!(image.requests(), 1);
}

#[test]
fn a_bus_master_stop_drains_the_dma_on_the_host_first() {
    // QEMU's bmdma_cmd_writeb: ide_cancel_dma_sync waits for the request,
    // whose completion runs, then the engine stops.
    let image = GatedImage::new();
    let mut rig = rig_with(&image);
    rig.set_prdt(&[(BUF as u32, 4096)]);
    rig.outb(BM, 0x08);
    rig.outb(BM + 2, 0x06);
    rig.command_lba28(0xc8, 0, 8);
    rig.outb_nowait(BM, 0x09);
    assert_eq!(altstatus_now(&rig), 0x58);
    let opener = {
        let image = image.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            image.open();
        })
    };
    rig.outb_nowait(BM, 0x08);
    opener.join().unwrap();
    assert_eq!(altstatus_now(&rig), 0x50, "the stop waited for the DMA to finish");
    assert_eq!(bm_status_now(&rig), 0x04);
}

#[test]
fn an_atapi_pio_reply_chunk_shows_bsy_while_the_medium_is_read() {
    let image = GatedImage::new();
    let data: Vec<u8> = (0..3 * 2048).map(|i| (i * 7 % 253) as u8).collect();
    image.0.image.lock().unwrap().write_at(2048, &data).unwrap();
    let cfg = DriveConfig { backend: Some(Box::new(image.clone())), ..super::tests::cdrom(None) };
    let mut rig = Rig::new([Some(cfg), None, None, None]);
    image.close();
    // Opens the gate when the test says so, or after 5 s: a port write that
    // read the medium itself (as before the engine) would block until then
    // and come back with DRQ already set.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let opener = {
        let image = image.clone();
        std::thread::spawn(move || {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(5));
            image.open();
        })
    };
    rig.outb(0x1f6, 0xa0);
    rig.outb(0x1f1, 0);
    rig.outb(0x1f4, 0x00);
    rig.outb(0x1f5, 0x08);
    rig.outb(0x1f7, 0xa0);
    // READ(10) of blocks 1..3 with a 2048-byte limit: three chunks.
    let cdb = [0x28u8, 0, 0, 0, 0, 1, 0, 0, 3, 0, 0, 0];
    for w in cdb.chunks(2).take(5) {
        rig.outw(0x1f0, u16::from_le_bytes([w[0], w[1]]));
    }
    rig.ide().write(0x1f0, 0, &[cdb[10], cdb[11]]);
    assert_eq!(altstatus_now(&rig), 0xd0, "BSY, no DRQ, while the first chunk is read");
    assert!(rig.ide().has_request_in_flight());
    assert!(!rig.irq_high(0));
    tx.send(()).unwrap();
    opener.join().unwrap();
    rig.settle();
    let mut got = Vec::new();
    for _ in 0..3 {
        assert_eq!(rig.altstatus(), 0x58, "a chunk is ready");
        assert_eq!((rig.inb(0x1f4), rig.inb(0x1f5)), (0x00, 0x08));
        got.extend(rig.read_block(2048));
    }
    assert_eq!(rig.altstatus(), 0x50);
    assert_eq!(got, data);
    assert_eq!(image.requests(), 3, "one host read per chunk");
}
