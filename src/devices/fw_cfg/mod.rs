//! QEMU's firmware configuration device (fw_cfg) on its x86 ports: a
//! selector at 0x510 (16-bit write), a data byte at 0x511 and the DMA
//! address register at 0x514-0x51b, as QEMU 7.2's `fw_cfg_io` has them.
//!
//! Firmware reads items by key: the fixed ones below 0x20 (signature,
//! interface id, the direct kernel boot items) and named files from 0x20
//! up, listed in the file directory (key 0x19). SeaBIOS finds the device
//! by its "QEMU" signature, reads `bootorder` and runs the option ROMs
//! under `genroms/`; the linuxboot_dma ROM then pulls the kernel, initrd
//! and command line through DMA (see [`linux_boot`]).
//!
//! Every item is read-only (QEMU 7.2 ignores data-port writes; DMA writes
//! to a read-only item set the error bit). The DMA descriptor, its address
//! and length come from the guest: each guest-memory access goes through
//! [`GuestMemory`], which checks the range, and a transfer does no more
//! work than its own length allows (zero fill past an item's end is done
//! in bounded chunks and stops at the first range that is not RAM).

pub mod dma;
pub mod linux_boot;

use crate::devices::bus::{BusDevice, Reset};
use crate::devices::state::{DeviceState, Snapshot, StateError};
use crate::vm::GuestMemory;
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

pub const FW_CFG_PORT_BASE: u16 = 0x510;
/// Selector (0x510, 16-bit writes) and data (0x511, byte reads).
pub const FW_CFG_PORT_LEN: u16 = 2;
pub const FW_CFG_DMA_PORT_BASE: u16 = 0x514;
/// The 64-bit big-endian DMA address register.
pub const FW_CFG_DMA_PORT_LEN: u16 = 8;

pub const KEY_SIGNATURE: u16 = 0x00;
pub const KEY_ID: u16 = 0x01;
pub const KEY_NB_CPUS: u16 = 0x05;
pub const KEY_KERNEL_ADDR: u16 = 0x07;
pub const KEY_KERNEL_SIZE: u16 = 0x08;
pub const KEY_INITRD_ADDR: u16 = 0x0a;
pub const KEY_INITRD_SIZE: u16 = 0x0b;
pub const KEY_BOOT_MENU: u16 = 0x0e;
pub const KEY_KERNEL_DATA: u16 = 0x11;
pub const KEY_INITRD_DATA: u16 = 0x12;
pub const KEY_CMDLINE_ADDR: u16 = 0x13;
pub const KEY_CMDLINE_SIZE: u16 = 0x14;
pub const KEY_CMDLINE_DATA: u16 = 0x15;
pub const KEY_SETUP_ADDR: u16 = 0x16;
pub const KEY_SETUP_SIZE: u16 = 0x17;
pub const KEY_SETUP_DATA: u16 = 0x18;
pub const KEY_FILE_DIR: u16 = 0x19;
pub const KEY_FILE_FIRST: u16 = 0x20;
/// QEMU 7.2's default number of file slots (`x-file-slots`).
pub const FILE_SLOTS: u16 = 0x20;
/// Bit 14 of a key asked for the (long removed) write channel; bit 15
/// picks the architecture-specific item table.
const KEY_ARCH_LOCAL: u16 = 0x8000;
const KEY_ENTRY_MASK: u16 = 0x3fff;
/// Longest file name, NUL included (the directory's fixed field).
pub const FILE_NAME_LEN: usize = 56;
/// Bit 0: the traditional port interface; bit 1: DMA.
const ID_TRADITIONAL_AND_DMA: u32 = 0b11;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FwCfgError {
    #[error("fw_cfg file name '{0}' is empty or longer than 55 bytes")]
    BadFileName(String),
    #[error("fw_cfg file '{0}' is added twice")]
    DuplicateFile(String),
    #[error("fw_cfg has no free file slot for '{0}' (at most {FILE_SLOTS})")]
    NoFileSlot(String),
    #[error("fw_cfg item {0:#x} is outside the fixed keys")]
    BadKey(u16),
    #[error("fw_cfg item {key:#x} is {len} bytes; items end below 4 GiB")]
    TooLarge { key: u16, len: usize },
}

/// The device. Items are shared buffers, so the multi-megabyte kernel and
/// initrd are held once however often the guest reads them.
pub struct FwCfg {
    mem: Arc<dyn GuestMemory>,
    /// Keyed by the key without the write bit (bit 15 kept: arch table).
    items: BTreeMap<u16, Arc<[u8]>>,
    /// In key order from [`KEY_FILE_FIRST`]: name and key.
    files: Vec<(String, u16)>,
    /// None: an invalid key is selected (reads give zeros).
    selected: Option<u16>,
    offset: u32,
    /// The DMA address register, high half first (QEMU keeps it across
    /// transfers only until the low half starts one).
    dma_address: u64,
}

/// What moves with a save: the selector, the read position and the DMA
/// address register. The items themselves are built again from the
/// destination's own `-kernel`/`-initrd`/`-append` (libxl passes the same).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FwCfgState {
    pub selected: Option<u16>,
    pub offset: u32,
    pub dma_address: u64,
}

impl Snapshot for FwCfg {
    fn snapshot(&self) -> DeviceState {
        DeviceState::FwCfg(FwCfgState { selected: self.selected, offset: self.offset, dma_address: self.dma_address })
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let DeviceState::FwCfg(st) = state else {
            return Err(StateError::WrongKind { device: "fw-cfg", found: state.kind() });
        };
        if let Some(key) = st.selected {
            // A key this machine lacks, or a position past its item, would
            // not be what the guest was reading: refuse it.
            let len = self.items.get(&key).map(|item| item.len()).unwrap_or(0);
            if st.offset as usize > len {
                return Err(StateError::invalid("fw-cfg", format!("offset {} in item {key:#x} of {len} bytes", st.offset)));
            }
        }
        self.selected = st.selected;
        self.offset = st.offset;
        self.dma_address = st.dma_address;
        Ok(())
    }
}

impl FwCfg {
    /// The fixed items every QEMU fw_cfg has: signature, interface id (with
    /// DMA), no boot menu, the vCPU count and an empty file directory.
    pub fn new(mem: Arc<dyn GuestMemory>, vcpus: u16) -> Self {
        let mut dev = FwCfg {
            mem,
            items: BTreeMap::new(),
            files: Vec::new(),
            selected: Some(KEY_SIGNATURE),
            offset: 0,
            dma_address: 0,
        };
        dev.items.insert(KEY_SIGNATURE, Arc::from(&b"QEMU"[..]));
        dev.items.insert(KEY_ID, Arc::from(&ID_TRADITIONAL_AND_DMA.to_le_bytes()[..]));
        dev.items.insert(KEY_BOOT_MENU, Arc::from(&0u16.to_le_bytes()[..]));
        dev.items.insert(KEY_NB_CPUS, Arc::from(&vcpus.to_le_bytes()[..]));
        dev.rebuild_file_dir();
        dev
    }

    /// The guest memory DMA goes to, when the device was filled before the
    /// guest's memory was set up (the items are checked at start-up first).
    pub fn set_memory(&mut self, mem: Arc<dyn GuestMemory>) {
        self.mem = mem;
    }

    /// A fixed item (below [`KEY_FILE_FIRST`], not the signature, id or
    /// directory), replacing any earlier value.
    pub fn add_item(&mut self, key: u16, data: Arc<[u8]>) -> Result<(), FwCfgError> {
        let entry = key & KEY_ENTRY_MASK;
        if entry >= KEY_FILE_FIRST || matches!(entry, KEY_SIGNATURE | KEY_ID | KEY_FILE_DIR) || key & 0x4000 != 0 {
            return Err(FwCfgError::BadKey(key));
        }
        check_len(key, &data)?;
        self.items.insert(key, data);
        Ok(())
    }

    /// A named file in the next free slot; the directory lists files by
    /// name, as QEMU 7.2 sorts it, while keys are handed out in order.
    pub fn add_file(&mut self, name: &str, data: Arc<[u8]>) -> Result<u16, FwCfgError> {
        if name.is_empty() || name.len() >= FILE_NAME_LEN || name.contains('\0') {
            return Err(FwCfgError::BadFileName(name.to_string()));
        }
        if self.files.iter().any(|(n, _)| n == name) {
            return Err(FwCfgError::DuplicateFile(name.to_string()));
        }
        let slot = u16::try_from(self.files.len()).unwrap_or(u16::MAX);
        if slot >= FILE_SLOTS {
            return Err(FwCfgError::NoFileSlot(name.to_string()));
        }
        let key = KEY_FILE_FIRST + slot;
        check_len(key, &data)?;
        self.items.insert(key, data);
        self.files.push((name.to_string(), key));
        self.rebuild_file_dir();
        Ok(key)
    }

    /// Big-endian count, then per file: size (be32), key (be16), two
    /// reserved bytes and the NUL-padded name; sorted by name.
    fn rebuild_file_dir(&mut self) {
        let mut sorted: Vec<&(String, u16)> = self.files.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut dir = Vec::with_capacity(4 + sorted.len() * (8 + FILE_NAME_LEN));
        dir.extend_from_slice(&(sorted.len() as u32).to_be_bytes());
        for (name, key) in sorted {
            let size = self.items.get(key).map_or(0, |d| d.len() as u32);
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&key.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut field = [0u8; FILE_NAME_LEN];
            field[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&field);
        }
        self.items.insert(KEY_FILE_DIR, Arc::from(dir));
    }

    /// QEMU's `fw_cfg_select`: the offset restarts; a key past the last
    /// file slot selects nothing.
    fn select(&mut self, key: u16) {
        self.offset = 0;
        self.selected = ((key & KEY_ENTRY_MASK) < KEY_FILE_FIRST + FILE_SLOTS).then_some(key);
    }

    /// The selected item's bytes, if it has any.
    fn current(&self) -> Option<&Arc<[u8]>> {
        let key = self.selected?;
        self.items.get(&(key & (KEY_ENTRY_MASK | KEY_ARCH_LOCAL)))
    }

    fn read_data_byte(&mut self) -> u8 {
        let offset = self.offset as usize;
        match self.current().and_then(|d| d.get(offset).copied()) {
            Some(byte) => {
                self.offset += 1;
                byte
            }
            None => 0,
        }
    }
}

fn check_len(key: u16, data: &[u8]) -> Result<(), FwCfgError> {
    if u32::try_from(data.len()).is_err() {
        return Err(FwCfgError::TooLarge { key, len: data.len() });
    }
    Ok(())
}

/// The 64-bit DMA register reads as this, most significant byte first.
const DMA_SIGNATURE: &[u8; 8] = b"QEMU CFG";

impl BusDevice for FwCfg {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        if base == u64::from(FW_CFG_DMA_PORT_BASE) {
            // The signature's bytes in port order (a big-endian register).
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = DMA_SIGNATURE.get(offset as usize + i).copied().unwrap_or(0);
            }
            return;
        }
        // Only byte reads are valid on the selector/data pair (either port
        // gives the data byte); QEMU answers a refused access with zeros.
        data.fill(0);
        if data.len() == 1 {
            data[0] = self.read_data_byte();
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        if base == u64::from(FW_CFG_DMA_PORT_BASE) {
            if let Ok(half) = <[u8; 4]>::try_from(data) {
                let value = u64::from(u32::from_be_bytes(half));
                match offset {
                    0 => self.dma_address = value << 32,
                    4 => {
                        // The register is cleared before the transfer runs.
                        let address = std::mem::take(&mut self.dma_address) | value;
                        self.dma_transfer(address);
                    }
                    _ => {}
                }
            }
            return;
        }
        // A 16-bit write at either port selects; byte writes (the old data
        // write channel) do nothing in QEMU 7.2.
        if let Ok(key) = <[u8; 2]>::try_from(data) {
            self.select(u16::from_le_bytes(key));
        }
    }
}

impl Reset for FwCfg {
    /// QEMU's reset selects the signature; the DMA register is kept.
    fn reset(&mut self) {
        self.select(KEY_SIGNATURE);
    }
}

#[cfg(test)]
mod tests;
