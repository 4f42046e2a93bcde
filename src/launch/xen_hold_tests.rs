//! The domain hold driven by a real controller: the guest is paused when a
//! write is held and unpaused only after the retried write completed and
//! raised its IRQ, never while the retry is still on the host.

use super::step_hold;
use crate::block::{BlockBackend, BlockError, BlockOp, ErrorPolicy};
use crate::devices::bus::BusDevice;
use crate::devices::ide::tests::disk_on;
use crate::devices::ide::{wait_idle, IdeController};
use crate::machine::hold::{HoldGate, PauseGuest, PauseRefused};
use crate::machine::{EventSink, IrqLine, RunState, VmControl};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What happened, in order: IRQ edges and pause/unpause calls.
type Log = Arc<Mutex<Vec<&'static str>>>;

/// A disk whose writes fail with ENOSPC while `full`, and wait while the
/// gate is closed.
#[derive(Clone)]
struct HostDisk(Arc<(Mutex<(bool, bool)>, Condvar)>);

impl HostDisk {
    fn set(&self, full: bool, open: bool) {
        *self.0 .0.lock().unwrap() = (full, open);
        self.0 .1.notify_all();
    }
}

impl BlockBackend for HostDisk {
    fn size(&self) -> u64 {
        1 << 20
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&mut self, _: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        buf.fill(0);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        let mut g = self.0 .0.lock().unwrap();
        while !g.1 {
            g = self.0 .1.wait(g).unwrap();
        }
        if g.0 {
            return Err(BlockError::Io { op: BlockOp::Write, offset, len: data.len() as u64, errno: libc::ENOSPC });
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
    fn discard(&mut self, _: u64, _: u64) -> Result<(), BlockError> {
        Ok(())
    }
    fn set_guest_write_cache(&mut self, _: bool) {}
    fn guest_write_cache(&self) -> bool {
        true
    }
}

/// Opens the disk when the test ends, failed or not: the controller's drop
/// joins its worker, which must not still be waiting at a closed gate.
struct OpenOnDrop(HostDisk);
impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.set(false, true);
    }
}

struct Irq(Log);
impl IrqLine for Irq {
    fn set_level(&self, high: bool) {
        self.0.lock().unwrap().push(if high { "irq high" } else { "irq low" });
    }
}

struct Pauser(Log);
impl PauseGuest for Pauser {
    fn pause(&self) -> Result<(), PauseRefused> {
        self.0.lock().unwrap().push("pause");
        Ok(())
    }
    fn unpause(&self) -> Result<(), PauseRefused> {
        self.0.lock().unwrap().push("unpause");
        Ok(())
    }
}

struct NoMemory;
impl crate::machine::GuestMemory for NoMemory {
    fn read(&self, gpa: u64, _: &mut [u8]) -> Result<(), crate::machine::MemError> {
        Err(crate::machine::MemError::OutOfRange { gpa, len: 0 })
    }
    fn write(&self, gpa: u64, _: &[u8]) -> Result<(), crate::machine::MemError> {
        Err(crate::machine::MemError::OutOfRange { gpa, len: 0 })
    }
}

/// A controller whose one disk's PIO WRITE SECTORS (LBA 0, interrupts on)
/// is held by werror=enospc because the host is full.
struct HeldWrite {
    /// First, so dropped before `ide`, whose drop joins the disk's worker.
    _open_at_end: OpenOnDrop,
    disk: HostDisk,
    vm: VmControl,
    ide: Arc<Mutex<IdeController>>,
}

fn held_pio_write(irq14_log: Log) -> HeldWrite {
    let disk = HostDisk(Arc::new((Mutex::new((true, true)), Condvar::new())));
    let drive = disk_on(Box::new(disk.clone()), ErrorPolicy::Enospc, ErrorPolicy::Report);
    let vm = VmControl::new(RunState::Running, EventSink::new());
    let irq14: Arc<dyn IrqLine> = Arc::new(Irq(irq14_log));
    let irq15: Arc<dyn IrqLine> = Arc::new(Irq(Log::default()));
    let ide = Arc::new(Mutex::new(IdeController::new([Some(drive), None, None, None], Arc::new(NoMemory), [irq14, irq15], vm.clone())));
    IdeController::start_engine(&ide).unwrap();
    let held = HeldWrite { _open_at_end: OpenOnDrop(disk.clone()), disk, vm, ide };
    for (off, v) in [(6u64, 0xe0u8), (2, 1), (3, 0), (4, 0), (5, 0), (7, 0x30)] {
        held.ide.lock().unwrap().write(0x1f0, off, &[v]);
    }
    for _ in 0..256 {
        held.ide.lock().unwrap().write(0x1f0, 0, &[0, 0]);
    }
    assert!(wait_idle(&held.ide, Duration::from_secs(10)));
    assert_eq!(held.vm.state(), RunState::IoError);
    held
}

#[test]
fn the_guest_stays_paused_until_the_retried_write_completed_and_raised_its_irq() {
    let log: Log = Arc::default();
    let HeldWrite { disk, vm, ide, .. } = &held_pio_write(log.clone());
    let gate = Mutex::new(HoldGate::new(Box::new(Pauser(log.clone()))));
    step_hold(&gate, ide, vm.state());
    assert!(gate.lock().unwrap().is_paused());
    log.lock().unwrap().clear();

    // Space is back, but the retried write is slow to reach the image.
    disk.set(false, false);
    ide.lock().unwrap().restart_held_requests_and_run(vm);
    assert_eq!(vm.state(), RunState::Running);
    for _ in 0..20 {
        step_hold(&gate, ide, vm.state());
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen = log.lock().unwrap().clone();
    assert!(!seen.contains(&"unpause"), "unpaused while the retry was on the host: {seen:?}");

    disk.set(false, true);
    let end = Instant::now() + Duration::from_secs(10);
    while gate.lock().unwrap().is_paused() && Instant::now() < end {
        step_hold(&gate, ide, vm.state());
        std::thread::sleep(Duration::from_millis(1));
    }
    let log = log.lock().unwrap().clone();
    let at = |what| log.iter().position(|e| *e == what);
    assert!(at("unpause").is_some(), "never unpaused: {log:?}");
    assert!(at("irq high").is_some() && at("irq high") < at("unpause"), "the completion's IRQ must come before the guest runs: {log:?}");
    assert!(ide.lock().unwrap().held_drive_ids().is_empty());
}

/// While the host pauses the whole guest for the hold, a request that
/// still reaches us is served instead of left open (an open request keeps
/// Xen from suspending the paused domain for xl save), and it gets what a
/// busy controller gives: BSY, and a command byte ignored. The held write
/// still completes on cont.
#[test]
fn during_a_domain_paused_hold_requests_are_served_as_by_a_busy_controller_and_the_held_write_survives() {
    let HeldWrite { disk, vm, ide, .. } = &held_pio_write(Log::default());
    assert!(ide.lock().unwrap().begin_guest_request(), "without a domain pause a vCPU waits at our ports");

    ide.lock().unwrap().set_serve_while_held(true);
    let status = |ide: &Mutex<IdeController>| {
        let mut ide = ide.lock().unwrap();
        assert!(!ide.begin_guest_request(), "paused by the host: served");
        let mut s = [0u8];
        ide.read(0x1f0, 7, &mut s);
        ide.end_guest_request();
        s[0]
    };
    assert_eq!(status(ide) & 0x80, 0x80, "the held channel shows BSY");
    {
        let mut ide = ide.lock().unwrap();
        assert!(!ide.begin_guest_request());
        ide.write(0x1f0, 7, &[0x20]); // READ SECTORS while BSY: ignored
        ide.end_guest_request();
    }
    assert_eq!(ide.lock().unwrap().held_drive_ids(), ["ide0-hd0"], "the command byte did not touch the held write");
    assert_eq!(vm.state(), RunState::IoError);

    disk.set(false, true);
    ide.lock().unwrap().restart_held_requests_and_run(vm);
    assert!(wait_idle(ide, Duration::from_secs(10)));
    assert_eq!(vm.state(), RunState::Running);
    assert!(ide.lock().unwrap().held_drive_ids().is_empty());
    assert_eq!(status(ide), 0x50, "the held write completed");
    ide.lock().unwrap().set_serve_while_held(false);
}
