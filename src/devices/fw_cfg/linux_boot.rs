//! Direct kernel boot (`-kernel`, `-initrd`, `-append`) the way QEMU 7.2's
//! `x86_load_linux` prepares it for the linuxboot option ROM: the bzImage
//! is split into its real-mode setup and protected-mode kernel, the setup
//! header gets the loader's fields (command line pointer, heap end, initrd
//! place and size, loader type), and everything becomes fw_cfg items with
//! the addresses the ROM copies them to. The ROM itself is the firmware
//! file `linuxboot_dma.bin` from QEMU's data directory; SeaBIOS runs it
//! from `genroms/` first because `bootorder` names it.
//!
//! Only bzImage kernels of boot protocol 2.02 or later that load high are
//! taken (every Linux since 2.4); older zImages, multiboot and ELF (PVH)
//! kernels are refused at start-up. The inputs are the administrator's
//! files, not the guest's, but every header field is still checked.

use super::{FwCfg, FwCfgError};
use std::sync::Arc;
use thiserror::Error;

pub const LINUXBOOT_ROM_NAME: &str = "linuxboot_dma.bin";
/// Where QEMU's real-mode part of a protocol 2.02+ kernel goes, its
/// command line, and the protected-mode kernel.
const REAL_ADDR: u32 = 0x1_0000;
const CMDLINE_ADDR: u32 = 0x2_0000;
const PROT_ADDR: u32 = 0x10_0000;
/// QEMU's pc machines keep this much below the top of low RAM for ACPI
/// data when they place the initrd.
const ACPI_DATA_SIZE: u64 = 0x2_8000;
/// The initrd limit of kernels that do not state one (protocol < 2.03).
const DEFAULT_INITRD_MAX: u32 = 0x37ff_ffff;
/// Setup header offsets (Documentation/arch/x86/boot.rst).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const PROTOCOL: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const HEAP_END_PTR: usize = 0x224;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22c;
const CMDLINE_SIZE: usize = 0x238;
/// The header must reach past cmdline_size for the fields read here.
const MIN_HEADER_LEN: usize = CMDLINE_SIZE + 4;
const LOADED_HIGH: u8 = 0x01;
const CAN_USE_HEAP: u8 = 0x80;
/// "Undefined boot loader" with QEMU's sub-type, as QEMU writes.
const LOADER_TYPE_QEMU: u8 = 0xb0;
/// The most setup sectors a real-mode part can have below the command line.
const MAX_SETUP_SIZE: usize = (CMDLINE_ADDR - REAL_ADDR) as usize;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LinuxBootError {
    #[error("-kernel: {0} bytes is too short for a Linux bzImage")]
    TooShort(usize),
    #[error("-kernel: not a Linux bzImage (no HdrS setup header); multiboot and ELF kernels are not supported")]
    NotBzImage,
    #[error("-kernel: boot protocol {0:#06x} is too old (2.02 or later, loaded high, is needed)")]
    OldProtocol(u16),
    #[error("-kernel: the setup part ({0} bytes) does not fit the file or the real-mode area")]
    BadSetup(usize),
    #[error("-kernel: the file is {0} bytes; it must stay below 4 GiB")]
    KernelTooLarge(usize),
    #[error("-append: {len} bytes, but this kernel takes a command line of at most {max}")]
    CmdlineTooLong { len: usize, max: u32 },
    #[error("-append: the command line contains a NUL byte")]
    CmdlineNul,
    #[error("-initrd: {size} bytes do not fit below the kernel's limit {max:#x}")]
    InitrdTooLarge { size: usize, max: u64 },
    #[error("-kernel: {0}")]
    FwCfg(#[from] FwCfgError),
}

/// What the administrator gave, read into memory at start-up.
pub struct LinuxImage<'a> {
    pub kernel: Vec<u8>,
    pub initrd: Option<Vec<u8>>,
    pub cmdline: &'a str,
    /// Guest RAM below 4 GiB, for the initrd's place (the ROM moves it
    /// below the top of RAM the BIOS reports anyway).
    pub ram_below_4g: u64,
}

/// Where each part will be, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxLayout {
    pub protocol: u16,
    pub setup_size: u32,
    pub kernel_size: u32,
    pub initrd_addr: u32,
    pub initrd_size: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn item_u32(v: u32) -> Arc<[u8]> {
    Arc::from(&v.to_le_bytes()[..])
}

/// Fill `fw` with the kernel items, the option ROM and the boot order.
pub fn install(fw: &mut FwCfg, image: LinuxImage, rom: Vec<u8>) -> Result<LinuxLayout, LinuxBootError> {
    let LinuxImage { mut kernel, initrd, cmdline, ram_below_4g } = image;
    if kernel.len() < MIN_HEADER_LEN {
        return Err(LinuxBootError::TooShort(kernel.len()));
    }
    if u32::try_from(kernel.len()).is_err() {
        return Err(LinuxBootError::KernelTooLarge(kernel.len()));
    }
    if &kernel[HEADER_MAGIC..HEADER_MAGIC + 4] != b"HdrS" {
        return Err(LinuxBootError::NotBzImage);
    }
    let protocol = u16_at(&kernel, PROTOCOL);
    if protocol < 0x202 || kernel[LOADFLAGS] & LOADED_HIGH == 0 {
        return Err(LinuxBootError::OldProtocol(protocol));
    }
    let sects = match kernel[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let setup_size = (sects + 1) * 512;
    if setup_size > kernel.len() || !(MIN_HEADER_LEN..=MAX_SETUP_SIZE).contains(&setup_size) {
        return Err(LinuxBootError::BadSetup(setup_size));
    }
    if cmdline.contains('\0') {
        return Err(LinuxBootError::CmdlineNul);
    }
    // Protocol 2.06 states its limit; before it was 255 characters.
    let cmdline_max = if protocol >= 0x206 { u32_at(&kernel, CMDLINE_SIZE) } else { 255 };
    if cmdline.len() as u64 > u64::from(cmdline_max) {
        return Err(LinuxBootError::CmdlineTooLong { len: cmdline.len(), max: cmdline_max });
    }

    let mut initrd_max = if protocol >= 0x203 { u32_at(&kernel, INITRD_ADDR_MAX) } else { DEFAULT_INITRD_MAX };
    let ram_limit = ram_below_4g.saturating_sub(ACPI_DATA_SIZE + 1);
    if u64::from(initrd_max) >= ram_below_4g.saturating_sub(ACPI_DATA_SIZE) {
        initrd_max = u32::try_from(ram_limit).unwrap_or(u32::MAX);
    }

    let setup = &mut kernel[..setup_size];
    setup[TYPE_OF_LOADER] = LOADER_TYPE_QEMU;
    setup[LOADFLAGS] |= CAN_USE_HEAP;
    // A 16-bit offset from the setup's start.
    setup[HEAP_END_PTR..HEAP_END_PTR + 2].copy_from_slice(&((CMDLINE_ADDR - REAL_ADDR - 0x200) as u16).to_le_bytes());
    put_u32(setup, CMD_LINE_PTR, CMDLINE_ADDR);

    let mut layout = LinuxLayout { protocol, setup_size: setup_size as u32, kernel_size: 0, initrd_addr: 0, initrd_size: 0 };
    if let Some(initrd) = initrd {
        let size = initrd.len();
        if size as u64 > u64::from(initrd_max) {
            return Err(LinuxBootError::InitrdTooLarge { size, max: u64::from(initrd_max) });
        }
        let addr = (initrd_max - size as u32) & !0xfff;
        put_u32(&mut kernel[..setup_size], RAMDISK_IMAGE, addr);
        put_u32(&mut kernel[..setup_size], RAMDISK_SIZE, size as u32);
        fw.add_item(super::KEY_INITRD_ADDR, item_u32(addr))?;
        fw.add_item(super::KEY_INITRD_SIZE, item_u32(size as u32))?;
        fw.add_item(super::KEY_INITRD_DATA, Arc::from(initrd))?;
        layout.initrd_addr = addr;
        layout.initrd_size = size as u32;
    }

    let protected: Arc<[u8]> = Arc::from(&kernel[setup_size..]);
    kernel.truncate(setup_size);
    layout.kernel_size = protected.len() as u32;
    fw.add_item(super::KEY_KERNEL_ADDR, item_u32(PROT_ADDR))?;
    fw.add_item(super::KEY_KERNEL_SIZE, item_u32(layout.kernel_size))?;
    fw.add_item(super::KEY_KERNEL_DATA, protected)?;
    fw.add_item(super::KEY_SETUP_ADDR, item_u32(REAL_ADDR))?;
    fw.add_item(super::KEY_SETUP_SIZE, item_u32(setup_size as u32))?;
    fw.add_item(super::KEY_SETUP_DATA, Arc::from(kernel))?;
    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    fw.add_item(super::KEY_CMDLINE_ADDR, item_u32(CMDLINE_ADDR))?;
    fw.add_item(super::KEY_CMDLINE_SIZE, item_u32(line.len() as u32))?;
    fw.add_item(super::KEY_CMDLINE_DATA, Arc::from(line))?;

    fw.add_file(&format!("genroms/{LINUXBOOT_ROM_NAME}"), Arc::from(rom))?;
    // QEMU's boot device list: one path, NUL-terminated, so SeaBIOS runs
    // the loader's boot entry before any disk.
    let order = format!("/rom@genroms/{LINUXBOOT_ROM_NAME}\0");
    fw.add_file("bootorder", Arc::from(order.into_bytes()))?;
    Ok(layout)
}
