//! Host I/O errors under each werror/rerror policy: report, ignore,
//! enospc, and stop with the held request retried after `cont`.

use super::*;

#[test]
fn report_pio_write_points_registers_at_failing_block() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Write, Some(702 * 512), libc::ENOSPC, false);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.command_lba28(0x30, 700, 4);
    for _ in 0..2 {
        rig.write_block(&[0x55; 512]);
        assert_eq!(rig.inb(0x1f7), 0x58);
    }
    rig.write_block(&[0x55; 512]);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x04));
    assert_eq!((rig.inb(0x1f3), rig.inb(0x1f2)), ((702 & 0xff) as u8, 2));
    assert_eq!(rig.bm_status() & 0x04, 0x04, "every IRQ sets BM INTR");
    let ev = io_errors(&rig.events());
    assert_eq!(ev, vec![("ide0-hd0".to_string(), IoOperation::Write, "report", None, "No space left on device".to_string())]);
    assert_eq!(rig.ide().drives_info()[0].stats.failed_wr_operations, 1);
    assert_eq!(rig.ide().drives_info()[0].io_status, None, "report-only drives keep no I/O status");
    assert_eq!(rig.vm.state(), RunState::Running);
}

#[test]
fn report_pio_read_and_read_multiple() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Read, Some(20 * 512), libc::EIO, false);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.command_lba28(0x20, 19, 2);
    rig.read_block(512);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.inb(0x1f3), rig.inb(0x1f2)), (0x41, 0x04, 20, 1));
    assert_eq!(rig.inw(0x1f0), 0, "no data phase after the error");
    rig.command_lba28(0xc4, 16, 8);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x04));
    let ev = io_errors(&rig.events());
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| e.1 == IoOperation::Read && e.2 == "report" && e.3.is_none()));
}

#[test]
fn report_dma_read_leaves_guest_memory_and_registers() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Read, Some(700 * 512), libc::EIO, false);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.mem_write(BUF, &[0xcc; 4096]);
    rig.set_prdt(&[(BUF as u32, 4096)]);
    rig.dma(0xc8, 698, 8, true);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.bm_status()), (0x41, 0x04, 0x04));
    assert_eq!((rig.inb(0x1f3), rig.inb(0x1f2)), ((698 & 0xff) as u8, 8), "registers from the command");
    assert_eq!(rig.mem_read(BUF, 4096), vec![0xcc; 4096]);
    assert!(rig.irq_raises(0) > 0);
}

#[test]
fn report_dma_write_and_flush() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Write, None, libc::ENOSPC, false);
    img.inject(BlockOp::Flush, None, libc::EIO, false);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.set_prdt(&[(BUF as u32, 512)]);
    rig.dma(0xca, 0, 1, false);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1), rig.bm_status()), (0x41, 0x04, 0x04));
    rig.outb(BM, 0);
    rig.outb(0x1f7, 0xe7);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x04));
    rig.outb(0x1f7, 0xea);
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f1)), (0x41, 0x04));
    let ev = io_errors(&rig.events());
    assert_eq!(ev.len(), 3);
    assert!(ev.iter().all(|e| e.1 == IoOperation::Write && e.2 == "report"));
    let stats = &rig.ide().drives_info()[0].stats;
    assert_eq!((stats.failed_wr_operations, stats.failed_flush_operations), (1, 2));
}

#[test]
fn ignore_acknowledges_failed_writes_and_hands_stale_reads() {
    let img = SharedImage::new(MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Ignore, ErrorPolicy::Ignore);
    rig.command_lba28(0x30, 3, 1);
    rig.write_block(&[0x77; 512]);
    img.inject(BlockOp::Write, None, libc::ENOSPC, false);
    img.inject(BlockOp::Read, None, libc::EIO, false);
    rig.command_lba28(0x30, 4, 1);
    rig.write_block(&[0x99; 512]);
    assert_eq!(rig.inb(0x1f7), 0x50);
    rig.command_lba28(0x20, 5, 1);
    assert_eq!(rig.inb(0x1f7), 0x58);
    assert_eq!(rig.read_block(512), vec![0x99; 512], "stale buffer, as QEMU");
    rig.set_prdt(&[(BUF as u32, 512)]);
    rig.dma(0xc8, 0, 1, true);
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    let ev = io_errors(&rig.events());
    assert_eq!(ev.len(), 3);
    assert!(ev.iter().all(|e| e.2 == "ignore"));
}

#[test]
fn stop_holds_dma_write_and_completes_it_after_cont() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Write, Some(700 * 512), libc::ENOSPC, true);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Enospc, ErrorPolicy::Report);
    let data = pattern(4096, 42);
    rig.mem_write(BUF, &data);
    rig.set_prdt(&[(BUF as u32, 4096)]);
    rig.dma(0xca, 698, 8, false);
    assert_eq!(rig.vm.state(), RunState::IoError);
    assert!(rig.ide().has_held_request());
    assert_eq!((rig.altstatus(), rig.bm_status()), (0x58, 0x01));
    assert!(!rig.irq_high(0));
    assert_eq!(rig.ide().drives_info()[0].io_status, Some("nospace"));
    let events = rig.events();
    assert_eq!(io_errors(&events)[0].2, "stop");
    assert!(events.contains(&Event::Stop));
    assert_ne!(img.bytes(698 * 512, 4096), data);

    assert!(rig.vm.set_running());
    rig.restart_held();
    assert!(!rig.ide().has_held_request());
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    assert!(rig.irq_raises(0) > 0);
    assert_eq!(img.bytes(698 * 512, 4096), data, "the whole request reached the image");
    assert_eq!(rig.ide().drives_info()[0].io_status, Some("ok"));
}

#[test]
fn enospc_policy_reports_other_errors() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Write, None, libc::EIO, true);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Enospc, ErrorPolicy::Report);
    rig.set_prdt(&[(BUF as u32, 512)]);
    rig.dma(0xca, 0, 1, false);
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x41, 0x04));
    assert_eq!(rig.vm.state(), RunState::Running);
    assert_eq!(io_errors(&rig.events())[0].2, "report");
}

#[test]
fn stop_holds_pio_write_and_retries_the_block() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Write, Some(11 * 512), libc::EIO, true);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Stop, ErrorPolicy::Stop);
    rig.command_lba28(0x30, 10, 2);
    rig.write_block(&[1; 512]);
    rig.inb(0x1f7);
    rig.write_block(&[2; 512]);
    assert_eq!(rig.vm.state(), RunState::IoError);
    // BSY stays while the block is held: 0x50 would tell a polling guest
    // (SeaBIOS, DOS) the write was done (QEMU 7.2 shows that).
    assert_eq!((rig.altstatus(), rig.irq_high(0)), (0xd0, false));
    assert_eq!(rig.ide().drives_info()[0].io_status, Some("failed"));
    rig.vm.set_running();
    rig.restart_held();
    assert_eq!((rig.inb(0x1f7), rig.inb(0x1f2)), (0x50, 0));
    assert_eq!(img.bytes(10 * 512, 1024), [vec![1; 512], vec![2; 512]].concat());
}

#[test]
fn stop_holds_pio_read_and_dma_read() {
    let img = SharedImage::new(MIB);
    img.fill(30 * 512, &pattern(512, 8));
    img.inject(BlockOp::Read, Some(30 * 512), libc::EIO, true);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Stop);
    rig.command_lba28(0x20, 30, 1);
    assert_eq!((rig.altstatus(), rig.vm.state()), (0xd0, RunState::IoError), "BSY while the read is held");
    rig.vm.set_running();
    rig.restart_held();
    assert_eq!(rig.inb(0x1f7), 0x58);
    assert_eq!(rig.read_block(512), pattern(512, 8));

    img.inject(BlockOp::Read, Some(30 * 512), libc::EIO, true);
    rig.set_prdt(&[(BUF as u32, 512)]);
    rig.dma(0xc8, 30, 1, true);
    assert_eq!((rig.altstatus(), rig.bm_status()), (0x58, 0x01));
    rig.vm.set_running();
    rig.restart_held();
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    assert_eq!(rig.mem_read(BUF, 512), pattern(512, 8));
}

#[test]
fn stop_holds_flush_with_busy_and_retries_after_cont() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Flush, None, libc::EIO, true);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Stop, ErrorPolicy::Stop);
    rig.outb(0x1f7, 0xe7);
    assert_eq!(rig.altstatus(), 0xc0, "BSY|DRDY while held, as QEMU's retry_pci test");
    assert!(!rig.irq_high(0));
    let stop_events = rig.events();
    assert!(stop_events.contains(&Event::Stop));
    rig.vm.set_running();
    rig.restart_held();
    assert_eq!(rig.inb(0x1f7), 0x50);
    assert!(rig.irq_raises(0) > 0);
    assert_eq!(img.flushes(), 1);
}

#[test]
fn stop_again_when_the_retry_fails_again() {
    let img = SharedImage::new(MIB);
    img.inject(BlockOp::Write, None, libc::ENOSPC, false);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Enospc, ErrorPolicy::Report);
    rig.set_prdt(&[(BUF as u32, 512)]);
    rig.dma(0xca, 0, 1, false);
    rig.vm.set_running();
    rig.restart_held();
    assert_eq!(rig.vm.state(), RunState::IoError);
    assert!(rig.ide().has_held_request());
    img.clear_faults();
    rig.vm.set_running();
    rig.restart_held();
    assert_eq!((rig.inb(0x1f7), rig.bm_status()), (0x50, 0x04));
    assert_eq!(io_errors(&rig.events()).len(), 2);
}
