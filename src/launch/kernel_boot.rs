//! The fw_cfg device at 0x510/0x514 and, with `-kernel`, the direct kernel
//! boot items in it. Under Xen it is there only with `-kernel`, as with
//! qemu-xen (its `xen_load_linux` creates fw_cfg for that alone): SeaBIOS
//! under hvmloader then finds it, runs `genroms/linuxboot_dma.bin` first
//! and the ROM loads the kernel by DMA instead of SeaBIOS reading a disk
//! through INT13. The qtest machine always has it, as QEMU's pc does.

use super::LaunchError;
use crate::control::{DirectKernel, MachineConfig};
use crate::devices::cmos::MemoryLayout;
use crate::devices::fw_cfg::linux_boot::{self, LinuxImage, LINUXBOOT_ROM_NAME};
use crate::devices::fw_cfg::{FwCfg, FW_CFG_DMA_PORT_BASE, FW_CFG_DMA_PORT_LEN, FW_CFG_PORT_BASE, FW_CFG_PORT_LEN};
use crate::machine::pc::PcMachine;
use crate::machine::GuestMemory;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Files larger than this are refused before they are read: fw_cfg items
/// are addressed with 32 bits, and no kernel or initrd comes near it.
const MAX_FILE_BYTES: u64 = 2 << 30;

#[derive(Debug, Error)]
pub enum KernelBootError {
    #[error("{option} {}: {source}", path.display())]
    Read { option: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{option} {}: {size} bytes is more than the 2 GiB a boot file may have", path.display())]
    TooLarge { option: &'static str, path: PathBuf, size: u64 },
    #[error("-kernel: the option ROM {}: {source} (it comes with QEMU's data files, qemu-system-data; -L DIR names another directory)", path.display())]
    Rom { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Image(#[from] linux_boot::LinuxBootError),
}

fn read_limited(option: &'static str, path: &Path) -> Result<Vec<u8>, KernelBootError> {
    let size = std::fs::metadata(path).map_err(|source| KernelBootError::Read { option, path: path.into(), source })?.len();
    if size > MAX_FILE_BYTES {
        return Err(KernelBootError::TooLarge { option, path: path.into(), size });
    }
    std::fs::read(path).map_err(|source| KernelBootError::Read { option, path: path.into(), source })
}

/// Guest memory before the front has mapped any: every access refused.
/// Only stands in between [`prepare_fw_cfg`] and [`attach_fw_cfg`].
struct NoMemoryYet;

impl GuestMemory for NoMemoryYet {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), crate::machine::MemError> {
        Err(crate::machine::MemError::OutOfRange { gpa, len: buf.len() })
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), crate::machine::MemError> {
        Err(crate::machine::MemError::OutOfRange { gpa, len: data.len() })
    }
}

/// The fw_cfg device for `config` (`always`: even without -kernel), with
/// every file read and checked: called before the front touches Xen, so
/// a missing kernel, initrd or ROM ends start-up with one line.
pub fn prepare_fw_cfg(config: &MachineConfig, always: bool) -> Result<Option<FwCfg>, LaunchError> {
    if config.direct_kernel.is_none() && !always {
        return Ok(None);
    }
    let vcpus = u16::try_from(config.vcpus).unwrap_or(u16::MAX);
    let mut fw = FwCfg::new(Arc::new(NoMemoryYet), vcpus);
    if let Some(kernel) = &config.direct_kernel {
        load_kernel(&mut fw, kernel, config)?;
    }
    Ok(Some(fw))
}

/// Give the device its guest memory and put it on the port bus.
pub fn attach_fw_cfg(machine: &mut PcMachine, fw: Option<FwCfg>, mem: Arc<dyn GuestMemory>) {
    let Some(mut fw) = fw else { return };
    fw.set_memory(mem);
    let fw = Arc::new(Mutex::new(fw));
    for (what, base, len) in
        [("fw_cfg ports", FW_CFG_PORT_BASE, FW_CFG_PORT_LEN), ("fw_cfg DMA ports", FW_CFG_DMA_PORT_BASE, FW_CFG_DMA_PORT_LEN)]
    {
        if let Err(e) = machine.add_port_device(fw.clone(), base, len) {
            log::error!("{what}: {e}");
        }
    }
}

fn load_kernel(fw: &mut FwCfg, boot: &DirectKernel, config: &MachineConfig) -> Result<(), KernelBootError> {
    let rom_path = config.firmware_dir.join(LINUXBOOT_ROM_NAME);
    let rom = std::fs::read(&rom_path).map_err(|source| KernelBootError::Rom { path: rom_path.clone(), source })?;
    let kernel = read_limited("-kernel", &boot.kernel)?;
    let initrd = boot.initrd.as_deref().map(|p| read_limited("-initrd", p)).transpose()?;
    let ram_below_4g = MemoryLayout::qemu_pc(config.ram_mib << 20).below_4g;
    let image = LinuxImage { kernel, initrd, cmdline: &boot.append, ram_below_4g };
    let layout = linux_boot::install(fw, image, rom)?;
    log::info!(
        "direct kernel boot: {} (protocol {:#06x}, setup {} + kernel {} bytes), initrd {} bytes at {:#x}, option ROM {}, cmdline {:?}",
        boot.kernel.display(),
        layout.protocol,
        layout.setup_size,
        layout.kernel_size,
        layout.initrd_size,
        layout.initrd_addr,
        rom_path.display(),
        boot.append
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::cmdline::{parse_args, Command};

    fn config(line: &str) -> MachineConfig {
        match parse_args(&line.split_whitespace().map(str::to_string).collect::<Vec<_>>()) {
            Ok(Command::Run(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    fn start(line: &str) -> Result<PcMachine, String> {
        let c = config(line);
        let vm = crate::machine::VmControl::new(crate::machine::RunState::Running, crate::machine::EventSink::new());
        let mut m = PcMachine::new(vm);
        let fw = prepare_fw_cfg(&c, false).map_err(|e| e.to_string())?;
        attach_fw_cfg(&mut m, fw, Arc::new(NoMemoryYet));
        Ok(m)
    }

    #[test]
    fn missing_files_end_start_up_with_one_line_naming_the_option() {
        let dir = std::env::temp_dir().join(format!("kboot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = start(&format!("-machine xenfv -xen-domid 1 -kernel /nonexistent/vmlinuz -L {}", dir.display())).err().expect("start-up must fail");
        assert!(err.starts_with("-kernel: the option ROM ") && err.contains("linuxboot_dma.bin"), "{err}");
        std::fs::write(dir.join(LINUXBOOT_ROM_NAME), b"\x55\xaa").unwrap();
        let err = start(&format!("-machine xenfv -xen-domid 1 -kernel /nonexistent/vmlinuz -L {}", dir.display())).err().expect("start-up must fail");
        assert!(err.starts_with("-kernel /nonexistent/vmlinuz: "), "{err}");
        let not_linux = dir.join("not-linux");
        std::fs::write(&not_linux, vec![0u8; 4096]).unwrap();
        let err = start(&format!("-machine xenfv -xen-domid 1 -kernel {} -L {}", not_linux.display(), dir.display())).err().expect("start-up must fail");
        assert!(err.starts_with("-kernel: not a Linux bzImage"), "{err}");
        let err = start(&format!(
            "-machine xenfv -xen-domid 1 -kernel {} -initrd /nonexistent/initrd -L {}",
            not_linux.display(),
            dir.display()
        ))
        .err().expect("start-up must fail");
        assert!(err.starts_with("-initrd /nonexistent/initrd: "), "{err}");
        assert!(!err.contains('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fw_cfg_is_on_the_bus_only_with_a_kernel_under_xen() {
        let m = start("-machine xenfv -xen-domid 1").unwrap();
        assert!(!m.claim_ranges().iter().any(|r| r.base <= 0x510 && 0x510 <= r.last()));
    }
}
