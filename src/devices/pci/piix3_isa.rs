//! The PIIX3 PCI-to-ISA bridge at 00:01.0 (8086:7000). Its only behaviour
//! that matters to a Xen guest is PCI interrupt routing: the PIRQA-D route
//! registers at 0x60-0x63. Each route write is returned to the machine as
//! a [`PirqRoute`], and the front hands it to the interrupt controller that
//! really does the routing (Xen's set_pci_link_route); the ELCR belongs to
//! Xen's vPIC, not to us.

use super::qemu_header::{qemu_config_space, written_bytes};
use super::{ConfigSpace, ConfigWriteResult, PciFunction};
use crate::devices::bus::{PirqRoute, Reset};

pub const DEVICE_PIIX3_ISA: u16 = 0x7000;
pub const CLASS_ISA_BRIDGE: u32 = 0x060100;
pub const PIRQ_ROUTE_FIRST: usize = 0x60;
pub const PIRQ_LINKS: usize = 4;
/// Route register bit 7: the link is not routed to any ISA IRQ.
pub const PIRQ_ROUTE_DISABLED: u8 = 0x80;

/// The registers QEMU's `piix3_reset` writes (besides COMMAND/STATUS,
/// which the header reset covers): they go back to power-on, the other
/// function-specific bytes keep what the guest wrote.
const RESET_REGISTERS: [usize; 27] = [
    0x4c, 0x4e, 0x4f, 0x60, 0x61, 0x62, 0x63, 0x69, 0x70, 0x76, 0x77, 0x78, 0x79, 0x80, 0x82, 0xa0, 0xa2, 0xa3,
    0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xaa, 0xab, 0xac, 0xae,
];

pub struct Piix3Isa {
    config: ConfigSpace,
    power_on: ConfigSpace,
}

/// The ISA IRQ a route register value selects, as QEMU's Xen glue reads it:
/// bit 7 disables, the low nibble is the IRQ.
pub fn decode_route(value: u8) -> Option<u8> {
    (value & PIRQ_ROUTE_DISABLED == 0).then_some(value & 0x0f)
}

impl Piix3Isa {
    pub fn new() -> Self {
        let mut config = qemu_config_space(super::i440fx::VENDOR_INTEL, DEVICE_PIIX3_ISA, CLASS_ISA_BRIDGE, 0);
        config.set_byte(super::config::HEADER_TYPE, 0x80);
        // Reset values of QEMU's piix3_reset (DEVSEL medium, IRQ routing off,
        // top-of-memory and APIC base defaults), measured over qtest.
        config.set_u16(super::config::STATUS, 0x0200);
        for (offset, value) in [
            (0x4c, 0x4d),
            (0x4e, 0x03),
            (0x69, 0x02),
            (0x70, 0x80),
            (0x76, 0x0c),
            (0x77, 0x0c),
            (0x78, 0x02),
            (0xa0, 0x08),
            (0xa8, 0x0f),
        ] {
            config.set_byte(offset, value);
        }
        for link in 0..PIRQ_LINKS {
            config.set_byte(PIRQ_ROUTE_FIRST + link, PIRQ_ROUTE_DISABLED);
        }
        Piix3Isa { power_on: config.clone(), config }
    }

    pub fn route(&self, link: u8) -> Option<u8> {
        if link as usize >= PIRQ_LINKS {
            return None;
        }
        decode_route(self.config.byte(PIRQ_ROUTE_FIRST + link as usize))
    }
}

impl PciFunction for Piix3Isa {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.config.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) -> ConfigWriteResult {
        self.config.write(offset, size, value);
        // Every write to a route register is reported, changed or not, as
        // QEMU forwards it: the hypervisor's copy is the one that counts.
        let pirq_routes = written_bytes(offset, size, value)
            .filter(|(at, _)| (PIRQ_ROUTE_FIRST..PIRQ_ROUTE_FIRST + PIRQ_LINKS).contains(at))
            .map(|(at, _)| PirqRoute { link: (at - PIRQ_ROUTE_FIRST) as u8, irq: decode_route(self.config.byte(at)) })
            .collect();
        ConfigWriteResult { pirq_routes }
    }

    /// The hypervisor's copy of the routes counts (see `config_write`):
    /// after a restore every link goes to it again.
    fn pirq_routes(&self) -> Vec<PirqRoute> {
        (0..PIRQ_LINKS as u8).map(|link| PirqRoute { link, irq: self.route(link) }).collect()
    }
}

/// The routes are bytes of the configuration space: saving it saves them.
impl crate::devices::state::Snapshot for Piix3Isa {
    fn snapshot(&self) -> crate::devices::state::DeviceState {
        crate::devices::state::DeviceState::PciConfig(self.config.save())
    }

    fn restore(&mut self, state: &crate::devices::state::DeviceState) -> Result<(), crate::devices::state::StateError> {
        match state {
            crate::devices::state::DeviceState::PciConfig(c) => self.config.load("piix3-isa", c),
            other => Err(crate::devices::state::StateError::wrong_kind("piix3-isa", other)),
        }
    }
}

impl Default for Piix3Isa {
    fn default() -> Self {
        Self::new()
    }
}

/// The route registers go back to "disabled" without being reported:
/// QEMU's Xen glue forwards routes on config writes only, and under Xen a
/// reset is a domain reboot that tears the routing down anyway.
impl Reset for Piix3Isa {
    fn reset(&mut self) {
        self.config.reset_header(&self.power_on);
        self.config.restore(&self.power_on, &RESET_REGISTERS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn routes(result: ConfigWriteResult) -> Vec<(u8, Option<u8>)> {
        result.pirq_routes.into_iter().map(|r| (r.link, r.irq)).collect()
    }

    /// Values read from QEMU 7.2 `-machine pc` over qtest.
    #[test]
    fn reset_config_matches_qemu() {
        let mut isa = Piix3Isa::new();
        let expected = [
            (0x00, 0x7000_8086),
            (0x04, 0x0200_0000),
            (0x08, 0x0601_0000),
            (0x0c, 0x0080_0000),
            (0x2c, 0x1100_1af4),
            (0x4c, 0x0003_004d),
            (0x60, 0x8080_8080),
            (0x68, 0x0000_0200),
            (0x70, 0x0000_0080),
            (0x74, 0x0c0c_0000),
            (0x78, 0x0000_0002),
            (0xa0, 0x0000_0008),
            (0xa8, 0x0000_000f),
        ];
        for (offset, value) in expected {
            assert_eq!(isa.config_read(offset, 4), value, "offset {offset:#x}");
        }
        assert_eq!(isa.config_read(0x3c, 4), 0);
    }

    #[test]
    fn route_writes_are_returned_per_link() {
        let mut isa = Piix3Isa::new();
        assert_eq!(
            routes(isa.config_write(0x60, 4, 0x8005_0b0a)),
            vec![(0, Some(10)), (1, Some(11)), (2, Some(5)), (3, None)]
        );
        assert_eq!(isa.route(1), Some(11));
        assert_eq!(isa.route(3), None);
        assert_eq!(isa.route(9), None);
        assert_eq!(routes(isa.config_write(0x62, 1, 0x09)), vec![(2, Some(9))]);
        assert_eq!(routes(isa.config_write(0x5f, 2, 0x8b00)), vec![(0, None)]);
        assert_eq!(isa.config_read(0x60, 4), 0x8009_0b8b);
    }

    #[test]
    fn writes_outside_the_route_registers_return_no_route() {
        let mut isa = Piix3Isa::new();
        assert!(isa.config_write(0x5c, 4, 0x1234_5678).pirq_routes.is_empty());
        assert!(isa.config_write(0x64, 4, 0x1234_5678).pirq_routes.is_empty());
        assert!(isa.config_write(0x0e, 1, 0).pirq_routes.is_empty());
        assert_eq!(isa.config_read(0x0e, 1), 0x80);
    }

    /// QEMU 7.2 over qtest (tests/differential/reset.rs): piix3_reset's
    /// registers go back, the other function bytes and the ID survive.
    #[test]
    fn reset_restores_routing_and_keeps_other_function_bytes() {
        let mut isa = Piix3Isa::new();
        let _ = isa.config_write(0x60, 4, 0x0905_0b0a);
        let _ = isa.config_write(0x69, 1, 0xf2);
        let _ = isa.config_write(0x4c, 1, 0x00);
        let _ = isa.config_write(0x3c, 1, 0x0b);
        let _ = isa.config_write(0x04, 2, 0x0007);
        let _ = isa.config_write(0xb0, 4, 0x1234_5678);
        isa.reset();
        assert_eq!(isa.config_read(0x60, 4), 0x8080_8080);
        assert_eq!((0..4).map(|l| isa.route(l)).collect::<Vec<_>>(), vec![None; 4]);
        assert_eq!(isa.config_read(0x68, 4), 0x0000_0200);
        assert_eq!(isa.config_read(0x4c, 4), 0x0003_004d);
        assert_eq!(isa.config_read(0x3c, 1), 0);
        assert_eq!(isa.config_read(0x04, 4), 0x0200_0000);
        assert_eq!(isa.config_read(0xb0, 4), 0x1234_5678, "not in piix3_reset: kept");
    }

    #[test]
    fn upper_nibble_bits_other_than_disable_are_ignored_in_the_irq() {
        assert_eq!(decode_route(0x7b), Some(11));
        assert_eq!(decode_route(0x8b), None);
        assert_eq!(decode_route(0x00), Some(0));
    }

    proptest! {
        #[test]
        fn any_access_keeps_identity_and_links_in_range(
            accesses in proptest::collection::vec((any::<u8>(), 0u8..8, any::<u32>()), 1..40)
        ) {
            let mut isa = Piix3Isa::new();
            let mut seen = Vec::new();
            for (offset, size, value) in accesses {
                seen.extend(routes(isa.config_write(offset, size, value)));
                let _ = isa.config_read(offset, size);
            }
            prop_assert_eq!(isa.config_read(0, 4), 0x7000_8086);
            prop_assert_eq!(isa.config_read(0x0e, 1), 0x80);
            for (link, irq) in seen.iter() {
                prop_assert!(*link < 4);
                prop_assert!(irq.is_none_or(|i| i < 16));
            }
        }
    }
}
