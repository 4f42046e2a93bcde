//! Throughput of the device model itself (no ioreq cost), for the report:
//! `cargo test --release --lib devices::ide::tests::throughput -- --ignored --nocapture`.

use super::*;
use std::time::Instant;

#[test]
#[ignore]
fn dma_and_pio_throughput() {
    let img = SharedImage::new(64 * MIB);
    let mut rig = Rig::disk_only(&img, ErrorPolicy::Report, ErrorPolicy::Report);
    rig.set_prdt(&[(BUF as u32, 0), (BUF as u32 + 0x10000, 0)]);
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        rig.outb(BM, 0);
        rig.dma(0xc8, (i % 400) * 256, 0, true);
        assert_eq!(rig.inb(0x1f7), 0x50);
    }
    let s = t.elapsed().as_secs_f64();
    println!("READ DMA 128 KiB: {:.0} commands/s, {:.0} MB/s", n as f64 / s, n as f64 * 131072.0 / s / 1e6);
    let t = Instant::now();
    for i in 0..n {
        rig.outb(BM, 0);
        rig.dma(0xca, (i % 400) * 256, 0, false);
        assert_eq!(rig.inb(0x1f7), 0x50);
    }
    let s = t.elapsed().as_secs_f64();
    println!("WRITE DMA 128 KiB: {:.0} commands/s, {:.0} MB/s", n as f64 / s, n as f64 * 131072.0 / s / 1e6);
    let t = Instant::now();
    let sectors = 4000;
    for i in 0..sectors {
        rig.command_lba28(0x20, i, 1);
        rig.read_block(512);
    }
    let s = t.elapsed().as_secs_f64();
    println!("READ SECTORS (1 sector, 262 port accesses): {:.0} sectors/s, {:.0} ns per port access", sectors as f64 / s, s * 1e9 / (sectors as f64 * 262.0));
}
