//! A flush that fails at the Xen platform unplug goes through werror, as a
//! failed FLUSH CACHE does, and is audited once per decision.

use super::*;
use crate::block::blkdebug::{Blkdebug, BlkdebugRules};
use crate::logging::testlog::capture;

fn audit_lines(lines: &[(log::Level, String)]) -> Vec<String> {
    lines.iter().filter(|(_, l)| l.starts_with("io-error ")).map(|(_, l)| l.clone()).collect()
}

fn unplug_audit(drive: &str, errno_text: &str, action: &str) -> String {
    format!("io-error domid=none drive={drive} cmd=\"FLUSH (Xen PV unplug)\" sectors=none errno={errno_text} action={action}")
}

/// A rig with one disk whose id no other test uses: audit lines are rate
/// limited per drive through one limiter for the whole process, and tests
/// run in parallel.
fn rig_with(id: &str, backend: Box<dyn BlockBackend>, werror: ErrorPolicy) -> Rig {
    let mut cfg = disk_on(backend, werror, ErrorPolicy::Report);
    cfg.id = id.to_string();
    Rig::new([Some(cfg), None, None, None])
}

const ENOSPC_TEXT: &str = "28 (No space left on device)";
const EIO_TEXT: &str = "5 (Input/output error)";

/// Report: the guest can't be told, so the admin is (audit line, event),
/// and the disk leaves the bus anyway: PV drivers take the image over.
#[test]
fn a_failed_unplug_flush_under_report_is_audited_and_the_disk_dropped() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Flush, None, libc::EIO, false);
    let rig = rig_with("unplug-report", Box::new(img.clone()), ErrorPolicy::Report);
    let (removed, lines) = capture(|| rig.ide().unplug_disks(false));
    assert_eq!(removed, vec!["unplug-report".to_string()]);
    assert_eq!(audit_lines(&lines), vec![unplug_audit("unplug-report", EIO_TEXT, "report")]);
    assert_eq!(io_errors(&rig.events()), vec![("unplug-report".to_string(), IoOperation::Write, "report", None, "Input/output error".to_string())]);
    assert_eq!(rig.vm.state(), RunState::Running);
    assert!(!rig.ide().has_held_request());
    assert!(rig.ide().drives_info().is_empty());
}

/// Stop: the VM is held and the image kept until a flush succeeds; every
/// failed retry is held (and audited) again; nothing is dropped unflushed.
#[test]
fn a_failed_unplug_flush_under_stop_holds_the_vm_until_a_retry_succeeds() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Flush, None, libc::ENOSPC, false);
    let mut rig = rig_with("unplug-stop", Box::new(img.clone()), ErrorPolicy::Enospc);
    let (removed, lines) = capture(|| rig.ide().unplug_disks(false));
    assert_eq!(removed, vec!["unplug-stop".to_string()], "the guest sees the disk gone at once");
    assert_eq!(audit_lines(&lines), vec![unplug_audit("unplug-stop", ENOSPC_TEXT, "stop")]);
    assert_eq!(rig.vm.state(), RunState::IoError);
    let events = rig.events();
    assert!(events.contains(&Event::Stop));
    assert_eq!(io_errors(&events), vec![("unplug-stop".to_string(), IoOperation::Write, "stop", Some(true), "No space left on device".to_string())]);
    assert!(rig.ide().has_held_request());
    assert_eq!(rig.ide().held_drive_ids(), vec!["unplug-stop".to_string()], "the retry timer follows this drive's interval");
    rig.outb(0x1f6, 0xa0);
    assert_eq!(rig.inb(0x1f7), 0x00, "off the bus while held");

    let ((), lines) = capture(|| rig.restart_held());
    assert_eq!(audit_lines(&lines), vec![unplug_audit("unplug-stop", ENOSPC_TEXT, "stop")], "a failed retry is audited and held again");
    assert_eq!(rig.vm.state(), RunState::IoError);
    assert!(rig.ide().has_held_request());

    img.clear_faults();
    let flushes = img.flushes();
    let ((), lines) = capture(|| rig.restart_held());
    assert!(audit_lines(&lines).is_empty(), "{lines:?}");
    assert_eq!(img.flushes(), flushes + 1, "the retry flushed the image");
    assert_eq!(rig.vm.state(), RunState::Running);
    assert!(!rig.ide().has_held_request());
    assert!(rig.ide().held_drive_ids().is_empty());
}

/// enospc holds only for ENOSPC; EIO reports. Ignore says so and goes on.
#[test]
fn enospc_reports_other_errors_and_ignore_is_audited_too() {
    let cases = [("unplug-enospc", ErrorPolicy::Enospc, libc::EIO, EIO_TEXT, "report"), ("unplug-ignore", ErrorPolicy::Ignore, libc::ENOSPC, ENOSPC_TEXT, "ignore")];
    for (id, policy, errno, text, action) in cases {
        let img = SharedImage::new(MIB);
        img.inject(BlockOp::Flush, None, errno, false);
        let rig = rig_with(id, Box::new(img.clone()), policy);
        let (_, lines) = capture(|| rig.ide().unplug_disks(false));
        assert_eq!(audit_lines(&lines), vec![unplug_audit(id, text, action)]);
        assert_eq!(rig.vm.state(), RunState::Running);
        assert!(!rig.ide().has_held_request());
    }
}

/// The fault comes from a blkdebug rule, as the testbed scenarios write
/// them: the guest wrote through the emulated disk, so the unplug's flush
/// must reach the disk (`flush_to_disk`); it fails once, is held, and
/// succeeds on `cont`.
#[test]
fn a_blkdebug_flush_fault_at_unplug_is_held_and_retried() {
    let rules = BlkdebugRules::parse("[inject-error]\nevent = \"flush_to_disk\"\nerrno = \"28\"\nonce = \"on\"\n").unwrap();
    let backend = Blkdebug::new(Box::new(MemBackend::new(MIB)), rules);
    let mut rig = rig_with("unplug-blkdebug", Box::new(backend), ErrorPolicy::Stop);
    rig.command_lba28(0x30, 8, 1);
    rig.write_block(&[0x5a; 512]);
    assert_eq!(rig.inb(0x1f7), 0x50, "the write itself succeeded");
    let (_, lines) = capture(|| rig.ide().unplug_disks(false));
    assert_eq!(audit_lines(&lines), vec![unplug_audit("unplug-blkdebug", ENOSPC_TEXT, "stop")]);
    assert_eq!(rig.vm.state(), RunState::IoError);
    rig.restart_held();
    assert_eq!(rig.vm.state(), RunState::Running);
    assert!(!rig.ide().has_held_request());
}

/// A disk held at unplug is still flushed (and its failure returned) when
/// the device model exits.
#[test]
fn an_unplugged_disk_held_for_its_flush_is_flushed_at_exit() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Flush, None, libc::ENOSPC, false);
    let rig = rig_with("unplug-exit", Box::new(img.clone()), ErrorPolicy::Stop);
    let _ = capture(|| rig.ide().unplug_disks(false));
    assert!(rig.ide().flush_all().is_err(), "the held disk's flush fails at exit too");
    img.clear_faults();
    let flushes = img.flushes();
    assert!(rig.ide().flush_all().is_ok());
    assert_eq!(img.flushes(), flushes + 1);
}
