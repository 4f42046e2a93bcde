//! The PC platform devices around the IDE controller, per front.

use super::LaunchError;
use crate::control::MachineConfig;
use crate::machine::pc::PcMachine;
use crate::qtest::QtestIrqs;

/// What the rest of the launcher needs to know about the platform.
#[derive(Default)]
pub struct PlatformHandles {
    /// The pty of COM1, for xenstore serial/0/tty and query-chardev.
    pub serial_tty: Option<String>,
}

pub fn add_qtest_platform(_machine: &mut PcMachine, _config: &MachineConfig, _irqs: &QtestIrqs) -> Result<PlatformHandles, LaunchError> {
    Ok(PlatformHandles::default())
}

pub fn add_xen_platform(
    _machine: &mut PcMachine,
    _config: &MachineConfig,
    _dm: std::sync::Arc<crate::xen::DeviceModelHandle>,
    _platform_device: bool,
    _ide: std::sync::Arc<std::sync::Mutex<crate::devices::ide::IdeController>>,
    _irq: &dyn Fn(u8) -> std::sync::Arc<dyn crate::machine::IrqLine>,
) -> Result<PlatformHandles, LaunchError> {
    Ok(PlatformHandles::default())
}
