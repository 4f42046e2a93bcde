//! A port-I/O bus that routes address ranges to devices, in the manner of
//! Firecracker's `Bus`: each range has a base and a length, and a device
//! sees the base of the range that matched plus the offset into it.

use crate::vm::PowerRequest;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Back to the power-on state, as a machine reset (QMP `system_reset`,
/// 0xcf9, the i8042 reset pulse) leaves the device. Only what the hardware
/// keeps across a reset survives; QEMU 7.2 is the reference for what that
/// is (CMOS NVRAM, the PCI bytes a reset handler leaves alone, ...).
///
/// A supertrait of [`BusDevice`] and
/// [`PciFunction`](crate::devices::pci::PciFunction), so that no device
/// on the machine's buses can be left out of a reset by forgetting it.
pub trait Reset {
    fn reset(&mut self);
}

pub trait BusDevice: Send + Reset + crate::devices::state::Snapshot {
    /// Fill `data` (1, 2 or 4 bytes, little endian) for a read at
    /// `base + offset`. Unhandled reads should leave all-ones.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BusError {
    #[error("range {base:#x}+{len:#x} overlaps an existing range")]
    Overlap { base: u64, len: u64 },
    #[error("empty range at {0:#x}")]
    Empty(u64),
}

/// A port range that appeared or went away (a BAR moved, I/O decoding was
/// switched). A hypervisor front claims and releases these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRangeChange {
    Added(BusRange),
    Removed(BusRange),
}

/// A PCI interrupt link routed by the guest: `link` 0..3 is PIRQA..PIRQD,
/// `irq` the ISA IRQ it now goes to, None when the guest disabled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PirqRoute {
    pub link: u8,
    pub irq: Option<u8>,
}

/// What a guest access (or a reset) changed outside the device's own
/// registers, returned up through the machine to the front that must act
/// on it: Xen claims and releases port ranges, routes PCI links and shuts
/// the domain down; qtest resets the machine or exits. Returned rather
/// than queued, so every front and every test sees the same effects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "bus effects must reach the front (port claims, IRQ routes, power)"]
pub struct BusEffects {
    /// In the order they happened (a removal before the addition that
    /// reuses the range).
    pub ports: Vec<PortRangeChange>,
    pub pirq_routes: Vec<PirqRoute>,
    /// A power transition the guest asked for.
    pub power: Option<PowerRequest>,
}

impl BusEffects {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.pirq_routes.is_empty() && self.power.is_none()
    }

    /// `other` happened after `self`. A power-off outranks a reboot, as in
    /// QEMU's main loop, which looks at a shutdown request first.
    pub fn merge(&mut self, other: BusEffects) {
        self.ports.extend(other.ports);
        self.pirq_routes.extend(other.pirq_routes);
        self.power = match (self.power, other.power) {
            (Some(PowerRequest::Poweroff), _) | (_, Some(PowerRequest::Poweroff)) => Some(PowerRequest::Poweroff),
            (a, b) => a.or(b),
        };
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusRange {
    pub base: u64,
    pub len: u64,
}

impl BusRange {
    pub fn last(&self) -> u64 {
        self.base + self.len - 1
    }
    fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.len
    }
}

#[derive(Default, Clone)]
pub struct Bus {
    ranges: BTreeMap<u64, (BusRange, Arc<Mutex<dyn BusDevice>>)>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, device: Arc<Mutex<dyn BusDevice>>, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty(base));
        }
        let new = BusRange { base, len };
        let overlaps = self
            .ranges
            .values()
            .any(|(r, _)| r.base <= new.last() && new.base <= r.last());
        if overlaps {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.insert(base, (new, device));
        Ok(())
    }

    pub fn remove(&mut self, base: u64) -> bool {
        self.ranges.remove(&base).is_some()
    }

    pub fn ranges(&self) -> impl Iterator<Item = BusRange> + '_ {
        self.ranges.values().map(|(r, _)| *r)
    }

    /// Every range's device; one registered at several ranges comes once
    /// per range.
    pub fn devices(&self) -> impl Iterator<Item = &Arc<Mutex<dyn BusDevice>>> + '_ {
        self.ranges.values().map(|(_, d)| d)
    }

    fn find(&self, addr: u64) -> Option<(BusRange, &Arc<Mutex<dyn BusDevice>>)> {
        let (_, (range, dev)) = self.ranges.range(..=addr).next_back()?;
        range.contains(addr).then_some((*range, dev))
    }

    /// Returns false when no device claims `addr` (data is then all-ones,
    /// as the PC bus floats high).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((range, dev)) => {
                dev.lock().unwrap_or_else(|e| e.into_inner()).read(range.base, addr - range.base, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((range, dev)) => {
                dev.lock().unwrap_or_else(|e| e.into_inner()).write(range.base, addr - range.base, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, u64)>);
    impl Reset for Echo {
        fn reset(&mut self) {}
    }
    crate::devices::state::stateless_for_tests!(Echo);
    impl BusDevice for Echo {
        fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
            self.0.push((base, offset));
        }
        fn write(&mut self, base: u64, offset: u64, _data: &[u8]) {
            self.0.push((base, offset));
        }
    }

    #[test]
    fn routes_by_range_and_floats_high_elsewhere() {
        let dev = Arc::new(Mutex::new(Echo(vec![])));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x1f0, 8).unwrap();
        bus.insert(dev.clone(), 0x3f6, 1).unwrap();
        assert_eq!(bus.insert(dev.clone(), 0x1f7, 2), Err(BusError::Overlap { base: 0x1f7, len: 2 }));
        let mut b = [0u8; 1];
        assert!(bus.read(0x1f7, &mut b));
        assert_eq!(b[0], 7);
        assert!(!bus.read(0x1f8, &mut b));
        assert_eq!(b[0], 0xff);
        assert!(bus.write(0x3f6, &[4]));
        assert!(!bus.write(0x3f7, &[4]));
        assert_eq!(dev.lock().unwrap().0, vec![(0x1f0, 7), (0x3f6, 0)]);
    }

    #[test]
    fn a_poweroff_outranks_a_reboot_whichever_came_first() {
        let reboot = || BusEffects { power: Some(PowerRequest::Reboot), ..Default::default() };
        let off = || BusEffects { power: Some(PowerRequest::Poweroff), ..Default::default() };
        let mut a = reboot();
        a.merge(off());
        assert_eq!(a.power, Some(PowerRequest::Poweroff));
        let mut b = off();
        b.merge(reboot());
        assert_eq!(b.power, Some(PowerRequest::Poweroff));
        let mut c = BusEffects::default();
        assert!(c.is_empty());
        c.merge(reboot());
        assert_eq!(c.power, Some(PowerRequest::Reboot));
    }
}
