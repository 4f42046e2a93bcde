//! The PIIX4 power-management function at 00:01.3 (8086:7113).
//!
//! Xen emulates PM1a_STS/PM1a_EN and the PM timer itself and leaves
//! PM1a_CNT to the device model, so that is the only PM register this
//! function decodes: SCI_EN (hvmloader's ACPI-enable check) and SLP_TYP +
//! SLP_EN (the guest's S5 power-off). The APM control port 0xb2/0xb3 lives
//! here too, as in QEMU, because writing 0xf1/0xf0 there is how firmware
//! turns ACPI mode (SCI_EN) on and off.

use super::config::{INTERRUPT_PIN, STATUS};
use super::qemu_header::{qemu_config_space, written_bytes};
use super::{ConfigSpace, ConfigWriteResult, IoBar, PciFunction};
use crate::devices::bus::{BusDevice, Reset};
use crate::vm::{PowerControl, PowerRequest};
use std::sync::Arc;

pub const DEVICE_PIIX4_PM: u16 = 0x7113;
pub const CLASS_BRIDGE_OTHER: u32 = 0x068000;
pub const REVISION: u8 = 0x03;

/// PMBASE: I/O base of the 64-byte PM register block.
pub const PMBASE: usize = 0x40;
pub const PMBASE_MASK: u32 = 0xffc0;
pub const PM_BLOCK_LEN: u16 = 64;
/// PMREGMISC bit 0: the PM I/O block decodes.
pub const PMREGMISC: usize = 0x80;
pub const PM_IO_ENABLE: u8 = 0x01;
/// Offset of PM1a_CNT inside the PM block, and its width.
pub const PM1A_CNT_OFFSET: u16 = 4;
pub const PM1A_CNT_LEN: u16 = 2;

pub const SCI_EN: u16 = 1 << 0;
pub const SLP_TYP_SHIFT: u16 = 10;
pub const SLP_TYP_MASK: u16 = 0x7 << SLP_TYP_SHIFT;
pub const SLP_EN: u16 = 1 << 13;
/// SLP_TYP values that power the machine off: Xen's DSDT `_S5` is 0, and 2
/// is QEMU's default S4 value, which QEMU also treats as power-off.
pub const SLP_TYP_S5: u16 = 0;
pub const SLP_TYP_S4_QEMU: u16 = 2;

/// APM control (0xb2) and status (0xb3) ports.
pub const APM_PORT: u16 = 0xb2;
pub const APM_PORT_LEN: u16 = 2;
pub const APM_ACPI_ENABLE: u8 = 0xf1;
pub const APM_ACPI_DISABLE: u8 = 0xf0;

/// SMBus I/O base QEMU's pc machine programs (config 0x90); the SMBus
/// registers themselves are not emulated.
const SMBUS_BASE: u16 = 0xb100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Piix4PmOptions {
    /// SMM available to the guest (QEMU TCG: yes; Xen: no). When absent,
    /// QEMU marks SMM as already initialised in config 0x5b.
    pub smm_enabled: bool,
    /// A UART at COM1 / COM2 (reflected in config 0x67 as QEMU does).
    pub com1: bool,
    pub com2: bool,
}

/// An I/O range the machine must route to this function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoRange {
    pub base: u16,
    pub len: u16,
}

/// What QEMU's `piix4_pm_reset` writes: the low PMBASE byte (0x41 keeps
/// the guest's value, measured on QEMU 7.2), the SMM/device-activity
/// bytes 0x58-0x5b and PMREGMISC (the PM block stops decoding).
const RESET_REGISTERS: [usize; 6] = [PMBASE, 0x58, 0x59, 0x5a, 0x5b, PMREGMISC];

pub struct Piix4Pm {
    config: ConfigSpace,
    power_on: ConfigSpace,
    pm1a_cnt: u16,
    apm_control: u8,
    apm_status: u8,
    power: Arc<dyn PowerControl>,
}

impl Piix4Pm {
    pub fn new(power: Arc<dyn PowerControl>, options: Piix4PmOptions) -> Self {
        let mut config = qemu_config_space(
            super::i440fx::VENDOR_INTEL,
            DEVICE_PIIX4_PM,
            CLASS_BRIDGE_OTHER,
            REVISION,
        );
        config.set_u16(STATUS, 0x0280);
        config.set_byte(INTERRUPT_PIN, 0x01);
        config.set_byte(PMBASE, 0x01);
        if !options.smm_enabled {
            config.set_byte(0x5b, 0x02);
        }
        config.set_byte(0x5f, 0x10);
        config.set_byte(0x63, 0x60);
        config.set_byte(
            0x67,
            if options.com1 { 0x08 } else { 0 } | if options.com2 { 0x90 } else { 0 },
        );
        config.set_u16(0x90, SMBUS_BASE | 1);
        config.set_byte(0xd2, 0x09);
        Piix4Pm {
            power_on: config.clone(),
            config,
            pm1a_cnt: 0,
            apm_control: 0,
            apm_status: 0,
            power,
        }
    }

    /// The PM block base, if the guest enabled PM I/O decoding.
    pub fn pm_base(&self) -> Option<u16> {
        let base = self.config.u32_at(PMBASE) & PMBASE_MASK;
        (self.config.byte(PMREGMISC) & PM_IO_ENABLE != 0 && base != 0).then_some(base as u16)
    }

    /// The ports this function decodes right now: PM1a_CNT inside the PM
    /// block (which moves with PMBASE) and the fixed APM ports. The machine
    /// re-reads this after every config write.
    pub fn io_ranges(&self) -> Vec<IoRange> {
        let mut ranges = vec![IoRange {
            base: APM_PORT,
            len: APM_PORT_LEN,
        }];
        if let Some(base) = self.pm_base() {
            ranges.push(IoRange {
                base: base + PM1A_CNT_OFFSET,
                len: PM1A_CNT_LEN,
            });
        }
        ranges
    }

    pub fn pm1a_cnt(&self) -> u16 {
        self.pm1a_cnt
    }

    pub fn sci_enabled(&self) -> bool {
        self.pm1a_cnt & SCI_EN != 0
    }

    fn write_pm1a_cnt(&mut self, value: u16) {
        self.pm1a_cnt = value & !SLP_EN;
        if value & SLP_EN == 0 {
            return;
        }
        let sleep_type = (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
        match sleep_type {
            SLP_TYP_S5 | SLP_TYP_S4_QEMU => {
                log::info!("piix4-pm: guest requested power-off (SLP_TYP {sleep_type})");
                self.power.request(PowerRequest::Poweroff);
            }
            // Ignored, so the guest may retry in a loop: rate limited.
            other => crate::logging::ratelimit::log_global(
                log::Level::Info,
                "piix4-sleep-state",
                format_args!("piix4-pm: guest requested unsupported sleep state SLP_TYP {other}; ignored"),
            ),
        }
    }

    fn write_apm_control(&mut self, value: u8) {
        self.apm_control = value;
        match value {
            APM_ACPI_ENABLE => self.pm1a_cnt |= SCI_EN,
            APM_ACPI_DISABLE => self.pm1a_cnt &= !SCI_EN,
            _ => {}
        }
    }

    fn read_port(&self, port: u16) -> u8 {
        if port == APM_PORT {
            return self.apm_control;
        }
        if port == APM_PORT + 1 {
            return self.apm_status;
        }
        match self.pm_base() {
            Some(base) if port == base + PM1A_CNT_OFFSET => self.pm1a_cnt as u8,
            Some(base) if port == base + PM1A_CNT_OFFSET + 1 => (self.pm1a_cnt >> 8) as u8,
            _ => 0xff,
        }
    }
}

impl PciFunction for Piix4Pm {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.config.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) -> ConfigWriteResult {
        let before = self.pm_base();
        self.config.write(offset, size, value);
        let touched =
            written_bytes(offset, size, value).any(|(at, _)| (PMBASE..PMBASE + 4).contains(&at) || at == PMREGMISC);
        if touched && before != self.pm_base() {
            log::debug!("piix4-pm: PM block now at {:?}", self.pm_base());
        }
        ConfigWriteResult::default()
    }

    /// PM1a_CNT moves with PMBASE like a BAR does, so the machine follows
    /// it the same way (APM at 0xb2 is fixed and registered once).
    fn io_bars(&self) -> Vec<IoBar> {
        self.io_ranges()
            .into_iter()
            .filter(|r| r.base != APM_PORT)
            .map(|r| IoBar { index: 0, base: r.base, len: r.len })
            .collect()
    }
}

/// PIIX4 PM as saved: its configuration space (PMBASE, PMREGMISC, ...),
/// PM1a_CNT and the APM registers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Piix4PmState {
    pub config: crate::devices::pci::config::ConfigState,
    pub pm1a_cnt: u16,
    pub apm_control: u8,
    pub apm_status: u8,
}

impl crate::devices::state::Snapshot for Piix4Pm {
    fn snapshot(&self) -> crate::devices::state::DeviceState {
        crate::devices::state::DeviceState::Piix4Pm(Piix4PmState {
            config: self.config.save(),
            pm1a_cnt: self.pm1a_cnt,
            apm_control: self.apm_control,
            apm_status: self.apm_status,
        })
    }

    fn restore(&mut self, state: &crate::devices::state::DeviceState) -> Result<(), crate::devices::state::StateError> {
        let crate::devices::state::DeviceState::Piix4Pm(s) = state else {
            return Err(crate::devices::state::StateError::wrong_kind("piix4-pm", state));
        };
        self.config.load("piix4-pm", &s.config)?;
        // SLP_EN is a write-only trigger: a loaded state cannot power off.
        self.pm1a_cnt = s.pm1a_cnt & !SLP_EN;
        self.apm_control = s.apm_control;
        self.apm_status = s.apm_status;
        Ok(())
    }
}

/// PM1a_CNT clears as in QEMU's `acpi_pm1_cnt_reset`; the APM ports have
/// no reset handler in QEMU 7.2 and keep their values (measured).
impl Reset for Piix4Pm {
    fn reset(&mut self) {
        self.config.reset_header(&self.power_on);
        self.config.restore(&self.power_on, &RESET_REGISTERS);
        self.pm1a_cnt = 0;
    }
}

impl BusDevice for Piix4Pm {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match u16::try_from(base + offset + i as u64) {
                Ok(port) => self.read_port(port),
                Err(_) => 0xff,
            };
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        // Gather the bytes that land on PM1a_CNT so a 16-bit write is one
        // register write (SLP_TYP and SLP_EN must be seen together).
        let cnt_port = self.pm_base().map(|b| b + PM1A_CNT_OFFSET);
        let mut cnt = self.pm1a_cnt & !SLP_EN;
        let mut cnt_written = false;
        for (i, &byte) in data.iter().enumerate() {
            let Ok(port) = u16::try_from(base + offset + i as u64) else {
                continue;
            };
            if port == APM_PORT {
                self.write_apm_control(byte);
                cnt = (cnt & !SCI_EN) | (self.pm1a_cnt & SCI_EN);
            } else if port == APM_PORT + 1 {
                self.apm_status = byte;
            } else if Some(port) == cnt_port {
                cnt = (cnt & 0xff00) | byte as u16;
                cnt_written = true;
            } else if cnt_port.is_some_and(|p| port == p.wrapping_add(1)) {
                cnt = (cnt & 0x00ff) | ((byte as u16) << 8);
                cnt_written = true;
            }
        }
        if cnt_written {
            self.write_pm1a_cnt(cnt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Power(Mutex<Vec<PowerRequest>>);
    impl PowerControl for Power {
        fn request(&self, what: PowerRequest) {
            self.0.lock().unwrap().push(what);
        }
    }

    fn pm(options: Piix4PmOptions) -> (Piix4Pm, Arc<Power>) {
        let power = Arc::new(Power::default());
        (Piix4Pm::new(power.clone(), options), power)
    }

    /// What hvmloader does: PMBASE 0xb001, PM I/O enable.
    fn hvmloader_setup(pm: &mut Piix4Pm) {
        pm.config_write(0x40, 4, 0xb001);
        pm.config_write(0x80, 1, 0x01);
    }

    fn inw(pm: &mut Piix4Pm, port: u16) -> u16 {
        let mut b = [0u8; 2];
        pm.read(port as u64, 0, &mut b);
        u16::from_le_bytes(b)
    }

    fn outw(pm: &mut Piix4Pm, port: u16, value: u16) {
        pm.write(port as u64, 0, &value.to_le_bytes());
    }

    /// Values read from QEMU 7.2 `-machine pc` (TCG, so SMM on) over qtest.
    #[test]
    fn reset_config_matches_qemu() {
        let (mut pm, _) = pm(Piix4PmOptions {
            smm_enabled: true,
            ..Default::default()
        });
        let expected = [
            (0x00, 0x7113_8086),
            (0x04, 0x0280_0000),
            (0x08, 0x0680_0003),
            (0x0c, 0x0000_0000),
            (0x2c, 0x1100_1af4),
            (0x3c, 0x0000_0100),
            (0x40, 0x0000_0001),
            (0x58, 0x0000_0000),
            (0x5c, 0x1000_0000),
            (0x60, 0x6000_0000),
            (0x64, 0x0000_0000),
            (0x80, 0x0000_0000),
            (0x90, 0x0000_b101),
            (0xd0, 0x0009_0000),
        ];
        for (offset, value) in expected {
            assert_eq!(pm.config_read(offset, 4), value, "offset {offset:#x}");
        }
    }

    #[test]
    fn xen_options_mark_smm_done_and_com_ports() {
        let (mut pm, _) = pm(Piix4PmOptions {
            smm_enabled: false,
            com1: true,
            com2: false,
        });
        assert_eq!(pm.config_read(0x5b, 1), 0x02);
        assert_eq!(pm.config_read(0x67, 1), 0x08);
    }

    #[test]
    fn io_ranges_follow_pmbase_and_enable() {
        let (mut pm, _) = pm(Piix4PmOptions::default());
        assert_eq!(pm.io_ranges(), vec![IoRange { base: 0xb2, len: 2 }]);
        pm.config_write(0x40, 4, 0xb001);
        assert_eq!(pm.pm_base(), None, "PM I/O not enabled yet");
        pm.config_write(0x80, 1, 0x01);
        assert_eq!(
            pm.io_ranges(),
            vec![IoRange { base: 0xb2, len: 2 }, IoRange { base: 0xb004, len: 2 }]
        );
        pm.config_write(0x41, 1, 0xc0);
        assert_eq!(pm.pm_base(), Some(0xc000));
        pm.config_write(0x40, 2, 0xc03f);
        assert_eq!(pm.pm_base(), Some(0xc000), "low six bits are not address bits");
        pm.config_write(0x80, 1, 0x00);
        assert_eq!(pm.pm_base(), None);
    }

    #[test]
    fn hvmloader_acpi_enable_sequence_sets_sci_en() {
        let (mut pm, _) = pm(Piix4PmOptions::default());
        hvmloader_setup(&mut pm);
        assert_eq!(inw(&mut pm, 0xb004) & SCI_EN, 0);
        pm.write(0xb2, 0, &[APM_ACPI_ENABLE]);
        assert_eq!(inw(&mut pm, 0xb004) & SCI_EN, SCI_EN);
        let mut b = [0u8; 1];
        pm.read(0xb2, 0, &mut b);
        assert_eq!(b[0], 0xf1);
        pm.write(0xb2, 0, &[APM_ACPI_DISABLE]);
        assert!(!pm.sci_enabled());
        pm.write(0xb2, 1, &[0x5a]);
        pm.read(0xb2, 1, &mut b);
        assert_eq!(b[0], 0x5a);
    }

    /// QEMU 7.2 over qtest (tests/differential/reset.rs): piix4_pm_reset's
    /// bytes go back, PMBASE's high byte, SMBus config and APM survive.
    #[test]
    fn reset_stops_pm_decoding_and_keeps_what_qemu_keeps() {
        let (mut pm, power) = pm(Piix4PmOptions { smm_enabled: false, ..Default::default() });
        hvmloader_setup(&mut pm);
        let _ = pm.config_write(0x58, 4, 0xffff_ffff);
        let _ = pm.config_write(0xd2, 1, 0x01);
        let _ = pm.config_write(0x04, 2, 0x0001);
        let _ = pm.config_write(0x3c, 1, 0x09);
        outw(&mut pm, 0xb004, SCI_EN);
        pm.write(APM_PORT as u64, 0, &[0x12, 0x34]);
        pm.reset();
        assert_eq!(pm.config_read(0x40, 4), 0x0000_b001, "only the low PMBASE byte is reset");
        assert_eq!(pm.config_read(0x58, 4), 0x0200_0000, "0x5b: SMM marked initialised without SMM");
        assert_eq!(pm.config_read(0x80, 1), 0);
        assert_eq!(pm.pm_base(), None);
        assert_eq!(pm.pm1a_cnt(), 0);
        assert_eq!(pm.config_read(0xd0, 4), 0x0001_0000);
        assert_eq!(pm.config_read(0x04, 2), 0);
        assert_eq!(pm.config_read(0x3c, 2), 0x0100, "interrupt line cleared, pin kept");
        let mut apm = [0u8; 2];
        pm.read(APM_PORT as u64, 0, &mut apm);
        assert_eq!(apm, [0x12, 0x34], "QEMU's APM has no reset handler");
        assert!(power.0.lock().unwrap().is_empty());
    }

    #[test]
    fn s5_sleep_powers_off_and_slp_en_reads_zero() {
        let (mut pm, power) = pm(Piix4PmOptions::default());
        hvmloader_setup(&mut pm);
        outw(&mut pm, 0xb004, SCI_EN | (SLP_TYP_S5 << SLP_TYP_SHIFT) | SLP_EN);
        assert_eq!(*power.0.lock().unwrap(), vec![PowerRequest::Poweroff]);
        assert_eq!(inw(&mut pm, 0xb004), SCI_EN);
    }

    #[test]
    fn other_sleep_types_and_no_slp_en_do_nothing() {
        let (mut pm, power) = pm(Piix4PmOptions::default());
        hvmloader_setup(&mut pm);
        outw(&mut pm, 0xb004, 1 << SLP_TYP_SHIFT | SLP_EN);
        outw(&mut pm, 0xb004, 5 << SLP_TYP_SHIFT);
        assert!(power.0.lock().unwrap().is_empty());
        assert_eq!(inw(&mut pm, 0xb004), 5 << SLP_TYP_SHIFT);
        outw(&mut pm, 0xb004, SLP_TYP_S4_QEMU << SLP_TYP_SHIFT | SLP_EN);
        assert_eq!(*power.0.lock().unwrap(), vec![PowerRequest::Poweroff]);
    }

    #[test]
    fn byte_writes_merge_into_the_register() {
        let (mut pm, power) = pm(Piix4PmOptions::default());
        hvmloader_setup(&mut pm);
        pm.write(0xb004, 0, &[0x01]);
        pm.write(0xb004, 1, &[0x04]);
        assert_eq!(inw(&mut pm, 0xb004), 0x0401);
        pm.write(0xb004, 1, &[0x20]);
        assert_eq!(*power.0.lock().unwrap(), vec![PowerRequest::Poweroff]);
        assert_eq!(inw(&mut pm, 0xb004), 0x0001);
    }

    #[test]
    fn pm1a_cnt_is_dead_while_pm_io_is_disabled() {
        let (mut pm, power) = pm(Piix4PmOptions::default());
        outw(&mut pm, 0xb004, SLP_EN);
        assert_eq!(inw(&mut pm, 0xb004), 0xffff);
        assert!(power.0.lock().unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn random_accesses_never_panic(
            ops in proptest::collection::vec((any::<bool>(), any::<u8>(), 0u8..8, any::<u32>(), any::<u16>(), 0usize..5), 1..60)
        ) {
            let (mut pm, _) = pm(Piix4PmOptions::default());
            for (config, offset, size, value, port, len) in ops {
                if config {
                    pm.config_write(offset, size, value);
                    let _ = pm.config_read(offset, size);
                } else {
                    let mut buf = vec![0u8; len];
                    pm.read(port as u64, 0, &mut buf);
                    pm.write(0, port as u64, &value.to_le_bytes()[..len.min(4)]);
                }
                for range in pm.io_ranges() {
                    prop_assert!(range.base as u32 + range.len as u32 <= 0x1_0000);
                }
            }
            prop_assert_eq!(pm.config_read(0, 4), 0x7113_8086);
        }
    }
}
