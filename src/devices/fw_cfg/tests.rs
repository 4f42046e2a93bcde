use super::dma::{CTL_ERROR, CTL_READ, CTL_SELECT, CTL_SKIP, CTL_WRITE};
use super::linux_boot::{install, LinuxBootError, LinuxImage};
use super::*;
use crate::vm::MemError;
use std::sync::Mutex;

/// Guest RAM of a fixed size; anything outside is refused, as a front's
/// memory refuses what is not RAM.
struct Ram(Mutex<Vec<u8>>);

impl Ram {
    fn new(len: usize) -> Arc<Self> {
        Arc::new(Ram(Mutex::new(vec![0xaa; len])))
    }
    fn bytes(&self, gpa: u64, len: usize) -> Vec<u8> {
        self.0.lock().unwrap()[gpa as usize..gpa as usize + len].to_vec()
    }
    fn put(&self, gpa: u64, data: &[u8]) {
        self.0.lock().unwrap()[gpa as usize..gpa as usize + data.len()].copy_from_slice(data);
    }
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let ram = self.0.lock().unwrap();
        let start = usize::try_from(gpa).ok().filter(|s| s.checked_add(buf.len()).is_some_and(|e| e <= ram.len()));
        let start = start.ok_or(MemError::OutOfRange { gpa, len: buf.len() })?;
        buf.copy_from_slice(&ram[start..start + buf.len()]);
        Ok(())
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let mut ram = self.0.lock().unwrap();
        let start = usize::try_from(gpa).ok().filter(|s| s.checked_add(data.len()).is_some_and(|e| e <= ram.len()));
        let start = start.ok_or(MemError::OutOfRange { gpa, len: data.len() })?;
        ram[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

const BASE: u64 = FW_CFG_PORT_BASE as u64;
const DMA: u64 = FW_CFG_DMA_PORT_BASE as u64;

fn select(fw: &mut FwCfg, key: u16) {
    fw.write(BASE, 0, &key.to_le_bytes());
}

fn read_bytes(fw: &mut FwCfg, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            let mut b = [0xffu8];
            fw.read(BASE, 1, &mut b);
            b[0]
        })
        .collect()
}

/// Write a descriptor at `at` and start it through 0x518, as SeaBIOS and
/// linuxboot_dma do (outl of the byte-swapped address).
fn dma(fw: &mut FwCfg, ram: &Ram, at: u64, control: u32, len: u32, address: u64) -> u32 {
    let mut d = Vec::new();
    d.extend_from_slice(&control.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&address.to_be_bytes());
    ram.put(at, &d);
    fw.write(DMA, 0, &0u32.to_be_bytes());
    fw.write(DMA, 4, &(at as u32).to_be_bytes());
    u32::from_be_bytes(ram.bytes(at, 4).try_into().unwrap())
}

#[test]
fn signature_id_and_dma_signature_read_as_qemu_gives_them() {
    let ram = Ram::new(0x10000);
    let mut fw = FwCfg::new(ram, 2);
    // After reset the signature is selected.
    fw.reset();
    assert_eq!(read_bytes(&mut fw, 5), b"QEMU\0");
    select(&mut fw, KEY_ID);
    assert_eq!(read_bytes(&mut fw, 4), [3, 0, 0, 0]);
    select(&mut fw, KEY_NB_CPUS);
    assert_eq!(read_bytes(&mut fw, 2), [2, 0]);
    let mut sig = [0u8; 4];
    fw.read(DMA, 0, &mut sig);
    assert_eq!(&sig, b"QEMU");
    fw.read(DMA, 4, &mut sig);
    assert_eq!(&sig, b" CFG");
    let mut one = [0u8];
    fw.read(DMA, 7, &mut one);
    assert_eq!(one[0], b'G');
}

#[test]
fn the_data_port_gives_only_bytes_and_bad_keys_read_zero() {
    let mut fw = FwCfg::new(Ram::new(0x1000), 1);
    select(&mut fw, KEY_SIGNATURE);
    let mut word = [0xffu8; 2];
    fw.read(BASE, 0, &mut word);
    assert_eq!(word, [0, 0], "16-bit reads are refused (zeros)");
    // The selector port reads the data byte too.
    let mut b = [0u8];
    fw.read(BASE, 0, &mut b);
    assert_eq!(b[0], b'Q');
    // Byte writes (the removed write channel) change nothing.
    fw.write(BASE, 1, &[0x55]);
    assert_eq!(read_bytes(&mut fw, 3), b"EMU");
    for key in [0x3fffu16, KEY_FILE_FIRST + FILE_SLOTS, 0x8000 | 0x3fff, 0x0c] {
        select(&mut fw, key);
        assert_eq!(read_bytes(&mut fw, 8), [0; 8], "key {key:#x}");
    }
    // The write bit does not hide the item.
    select(&mut fw, 0x4000 | KEY_SIGNATURE);
    assert_eq!(read_bytes(&mut fw, 4), b"QEMU");
}

#[test]
fn files_are_listed_by_name_with_keys_in_insertion_order() {
    let mut fw = FwCfg::new(Ram::new(0x1000), 1);
    assert_eq!(fw.add_file("zeta", Arc::from(&b"zz"[..])), Ok(0x20));
    assert_eq!(fw.add_file("alpha", Arc::from(&b"abc"[..])), Ok(0x21));
    assert_eq!(fw.add_file("alpha", Arc::from(&b""[..])), Err(FwCfgError::DuplicateFile("alpha".into())));
    assert!(matches!(fw.add_file(&"x".repeat(56), Arc::from(&b""[..])), Err(FwCfgError::BadFileName(_))));
    select(&mut fw, KEY_FILE_DIR);
    let dir = read_bytes(&mut fw, 4 + 2 * 64);
    assert_eq!(&dir[..4], &[0, 0, 0, 2]);
    assert_eq!(&dir[4..12], &[0, 0, 0, 3, 0, 0x21, 0, 0]);
    assert_eq!(&dir[12..18], b"alpha\0");
    assert_eq!(&dir[68..76], &[0, 0, 0, 2, 0, 0x20, 0, 0]);
    select(&mut fw, 0x21);
    assert_eq!(read_bytes(&mut fw, 4), b"abc\0");
}

#[test]
fn file_slots_run_out_with_an_error() {
    let mut fw = FwCfg::new(Ram::new(0x1000), 1);
    for i in 0..FILE_SLOTS {
        fw.add_file(&format!("f{i}"), Arc::from(&b"x"[..])).unwrap();
    }
    assert_eq!(fw.add_file("more", Arc::from(&b"x"[..])), Err(FwCfgError::NoFileSlot("more".into())));
}

#[test]
fn a_dma_read_selects_copies_and_zero_fills_past_the_end() {
    let ram = Ram::new(0x10000);
    let mut fw = FwCfg::new(ram.clone(), 1);
    let status = dma(&mut fw, &ram, 0x100, u32::from(KEY_SIGNATURE) << 16 | CTL_SELECT | CTL_READ, 8, 0x2000);
    assert_eq!(status, 0);
    assert_eq!(ram.bytes(0x2000, 9), b"QEMU\0\0\0\0\xaa");
    // No select: continues at the offset (past the end: zeros only).
    assert_eq!(dma(&mut fw, &ram, 0x100, CTL_READ, 2, 0x3000), 0);
    assert_eq!(ram.bytes(0x3000, 3), [0, 0, 0xaa]);
    // Skip then read.
    assert_eq!(dma(&mut fw, &ram, 0x100, u32::from(KEY_SIGNATURE) << 16 | CTL_SELECT | CTL_SKIP, 2, 0), 0);
    assert_eq!(dma(&mut fw, &ram, 0x100, CTL_READ, 2, 0x4000), 0);
    assert_eq!(ram.bytes(0x4000, 2), b"MU");
    // The port interface sees the DMA's offset.
    select(&mut fw, KEY_SIGNATURE);
    assert_eq!(dma(&mut fw, &ram, 0x100, CTL_SKIP, 1, 0), 0);
    assert_eq!(read_bytes(&mut fw, 1), b"E");
}

#[test]
fn dma_errors_for_writes_bad_targets_and_bad_descriptors() {
    let ram = Ram::new(0x10000);
    let mut fw = FwCfg::new(ram.clone(), 1);
    let sel = u32::from(KEY_SIGNATURE) << 16 | CTL_SELECT;
    assert_eq!(dma(&mut fw, &ram, 0x100, sel | CTL_WRITE, 4, 0x2000), CTL_ERROR, "read-only item");
    assert_eq!(dma(&mut fw, &ram, 0x100, sel | CTL_READ, 4, 0xfffe), CTL_ERROR, "target leaves RAM");
    // A huge zero fill past the end stops at the end of RAM, with an error.
    assert_eq!(dma(&mut fw, &ram, 0x100, sel | CTL_READ, u32::MAX, 0x8000), CTL_ERROR);
    assert_eq!(ram.bytes(0x8000, 4), b"QEMU");
    assert_eq!(ram.bytes(0x8004, 0x1000), [0; 0x1000]);
    // Address wrap-around is an error, not a panic.
    assert_eq!(dma(&mut fw, &ram, 0x100, sel | CTL_READ, 16, u64::MAX - 3), CTL_ERROR);
    // No direction bit: nothing moves, the control word is cleared.
    ram.put(0x5000, &[0x11; 4]);
    assert_eq!(dma(&mut fw, &ram, 0x100, sel, 4, 0x5000), 0);
    assert_eq!(ram.bytes(0x5000, 4), [0x11; 4]);
    // A descriptor outside RAM: nothing is written anywhere, no panic.
    fw.write(DMA, 0, &0u32.to_be_bytes());
    fw.write(DMA, 4, &0xffff_fff8u32.to_be_bytes());
    // The high half is cleared by the transfer that used it.
    fw.write(DMA, 0, &1u32.to_be_bytes());
    fw.write(DMA, 4, &0x100u32.to_be_bytes());
    assert_eq!(fw.dma_address, 0);
}

/// A minimal protocol 2.15 bzImage: 4 setup sectors + 1, then `body`.
fn bzimage(body: &[u8]) -> Vec<u8> {
    let mut k = vec![0u8; 5 * 512];
    k[0x1f1] = 4;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    k[0x211] = 0x01;
    k[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    k[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes());
    k.extend_from_slice(body);
    k
}

fn read_item(fw: &mut FwCfg, key: u16, n: usize) -> Vec<u8> {
    select(fw, key);
    read_bytes(fw, n)
}

fn le32(fw: &mut FwCfg, key: u16) -> u32 {
    u32::from_le_bytes(read_item(fw, key, 4).try_into().unwrap())
}

#[test]
fn a_bzimage_becomes_setup_kernel_initrd_cmdline_rom_and_bootorder() {
    let mut fw = FwCfg::new(Ram::new(0x1000), 1);
    let image = LinuxImage {
        kernel: bzimage(b"KERNEL"),
        initrd: Some(vec![7u8; 5000]),
        cmdline: "console=ttyS0",
        ram_below_4g: 256 << 20,
    };
    let layout = install(&mut fw, image, b"\x55\xaaROM".to_vec()).unwrap();
    assert_eq!(le32(&mut fw, KEY_SETUP_ADDR), 0x10000);
    assert_eq!(le32(&mut fw, KEY_SETUP_SIZE), 2560);
    assert_eq!(le32(&mut fw, KEY_KERNEL_ADDR), 0x100000);
    assert_eq!(le32(&mut fw, KEY_KERNEL_SIZE), 6);
    assert_eq!(read_item(&mut fw, KEY_KERNEL_DATA, 7), b"KERNEL\0");
    assert_eq!(le32(&mut fw, KEY_CMDLINE_ADDR), 0x20000);
    assert_eq!(le32(&mut fw, KEY_CMDLINE_SIZE), 14);
    assert_eq!(read_item(&mut fw, KEY_CMDLINE_DATA, 14), b"console=ttyS0\0");
    // The initrd ends page-aligned below top of RAM minus QEMU's ACPI room.
    let top = (256u32 << 20) - 0x28000 - 1;
    let want_addr = (top - 5000) & !0xfff;
    assert_eq!(le32(&mut fw, KEY_INITRD_ADDR), want_addr);
    assert_eq!(layout.initrd_addr, want_addr);
    assert_eq!(le32(&mut fw, KEY_INITRD_SIZE), 5000);
    let setup = read_item(&mut fw, KEY_SETUP_DATA, 2560);
    assert_eq!(setup[0x210], 0xb0, "type_of_loader");
    assert_eq!(setup[0x211], 0x81, "LOADED_HIGH | CAN_USE_HEAP");
    assert_eq!(u16::from_le_bytes([setup[0x224], setup[0x225]]), 0xfe00, "heap_end_ptr");
    assert_eq!(u32::from_le_bytes(setup[0x228..0x22c].try_into().unwrap()), 0x20000);
    assert_eq!(u32::from_le_bytes(setup[0x218..0x21c].try_into().unwrap()), want_addr);
    assert_eq!(u32::from_le_bytes(setup[0x21c..0x220].try_into().unwrap()), 5000);
    // Files: bootorder (0x21) sorts before genroms/ (0x20).
    let dir = read_item(&mut fw, KEY_FILE_DIR, 4 + 128);
    assert_eq!(&dir[..4], &[0, 0, 0, 2]);
    assert_eq!(&dir[12..22], b"bootorder\0");
    assert_eq!(&dir[76..102], b"genroms/linuxboot_dma.bin\0");
    assert_eq!(read_item(&mut fw, 0x20, 5), b"\x55\xaaROM");
    assert_eq!(read_item(&mut fw, 0x21, 32), b"/rom@genroms/linuxboot_dma.bin\0\0");
}

#[test]
fn bad_kernels_and_command_lines_are_refused() {
    let fresh = || FwCfg::new(Ram::new(0x1000), 1);
    let image = |kernel: Vec<u8>, cmdline: &'static str| LinuxImage { kernel, initrd: None, cmdline, ram_below_4g: 64 << 20 };
    assert_eq!(install(&mut fresh(), image(vec![0; 100], ""), vec![]).unwrap_err(), LinuxBootError::TooShort(100));
    let mut elf = bzimage(b"");
    elf[0x202] = b'X';
    assert_eq!(install(&mut fresh(), image(elf, ""), vec![]).unwrap_err(), LinuxBootError::NotBzImage);
    let mut old = bzimage(b"");
    old[0x206..0x208].copy_from_slice(&0x0201u16.to_le_bytes());
    assert_eq!(install(&mut fresh(), image(old, ""), vec![]).unwrap_err(), LinuxBootError::OldProtocol(0x201));
    let mut low = bzimage(b"");
    low[0x211] = 0;
    assert!(matches!(install(&mut fresh(), image(low, ""), vec![]), Err(LinuxBootError::OldProtocol(_))));
    let mut big_setup = bzimage(b"");
    big_setup[0x1f1] = 200;
    assert!(matches!(install(&mut fresh(), image(big_setup, ""), vec![]), Err(LinuxBootError::BadSetup(_))));
    let long: &'static str = Box::leak("x".repeat(2049).into_boxed_str());
    assert_eq!(
        install(&mut fresh(), image(bzimage(b""), long), vec![]).unwrap_err(),
        LinuxBootError::CmdlineTooLong { len: 2049, max: 2048 }
    );
    let too_big = LinuxImage { kernel: bzimage(b""), initrd: Some(vec![0; 2 << 20]), cmdline: "", ram_below_4g: 2 << 20 };
    assert!(matches!(install(&mut fresh(), too_big, vec![]), Err(LinuxBootError::InitrdTooLarge { .. })));
}

#[test]
fn a_saved_read_position_goes_on_after_the_load_and_a_bad_one_is_refused() {
    let mut fw = FwCfg::new(Ram::new(0x1000), 1);
    select(&mut fw, KEY_SIGNATURE);
    assert_eq!(read_bytes(&mut fw, 2), b"QE");
    let state = fw.snapshot();
    let mut moved = FwCfg::new(Ram::new(0x1000), 1);
    moved.restore(&state).unwrap();
    assert_eq!(read_bytes(&mut moved, 2), b"MU", "the read goes on where it was saved");
    let bad = DeviceState::FwCfg(FwCfgState { selected: Some(KEY_SIGNATURE), offset: 5, dma_address: 0 });
    assert!(moved.restore(&bad).is_err(), "a position past the 4-byte signature");
    assert!(moved.restore(&DeviceState::Latch(0)).is_err());
}
