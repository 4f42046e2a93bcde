//! IDENTIFY (PACKET) DEVICE data and the default CHS geometry, with the
//! word values QEMU 7.2 gives (ide-behaviour.md 2.5).

pub const MAX_MULT_SECTORS: u16 = 16;

/// Strings a drive reports; defaults follow QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub serial: String,
    pub model: String,
    pub firmware: String,
}

impl Identity {
    /// `position` = channel * 2 + unit. QEMU numbers the four PIIX
    /// positions QM00001..QM00004 whether a drive sits there or not.
    pub fn default_for(position: usize, cdrom: bool) -> Self {
        Identity {
            serial: format!("QM{:05}", position + 1),
            model: if cdrom { "QEMU DVD-ROM" } else { "QEMU HARDDISK" }.to_string(),
            firmware: "2.5+".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u16,
    pub sectors: u16,
}

/// QEMU's hd_geometry_guess: a partition table whose end head is below 16
/// dictates the geometry, otherwise 16 heads x 63 sectors with cylinders
/// from the size (2..=16383).
pub fn guess_geometry(nb_sectors: u64, first_sector: Option<&[u8; 512]>) -> Geometry {
    if let Some((heads, sectors)) = first_sector.and_then(|mbr| mbr_lchs(mbr, nb_sectors)) {
        if heads <= 16 {
            let cylinders = (nb_sectors / (heads as u64 * sectors as u64)) as u16;
            return Geometry { cylinders, heads, sectors };
        }
    }
    let cylinders = (nb_sectors / (16 * 63)).clamp(2, 16383) as u16;
    Geometry { cylinders, heads: 16, sectors: 63 }
}

fn mbr_lchs(mbr: &[u8; 512], nb_sectors: u64) -> Option<(u16, u16)> {
    if mbr[510] != 0x55 || mbr[511] != 0xaa {
        return None;
    }
    for part in mbr[0x1be..0x1fe].chunks_exact(16) {
        let nr_sects = u32::from_le_bytes([part[12], part[13], part[14], part[15]]);
        let end_head = part[5];
        if nr_sects == 0 || end_head == 0 {
            continue;
        }
        let heads = end_head as u16 + 1;
        let sectors = (part[6] & 63) as u16;
        if sectors == 0 {
            continue;
        }
        let cylinders = nb_sectors / (heads as u64 * sectors as u64);
        if !(1..=16383).contains(&cylinders) {
            continue;
        }
        return Some((heads, sectors));
    }
    None
}

/// ATA strings: space padded, two characters per word, first in the high byte.
fn put_string(words: &mut [u16], text: &str) {
    let bytes = text.as_bytes();
    for (i, w) in words.iter_mut().enumerate() {
        let hi = *bytes.get(2 * i).unwrap_or(&b' ');
        let lo = *bytes.get(2 * i + 1).unwrap_or(&b' ');
        *w = ((hi as u16) << 8) | lo as u16;
    }
}

pub struct DiskParams<'a> {
    pub identity: &'a Identity,
    pub default_geometry: Geometry,
    pub current_geometry: Geometry,
    pub nb_sectors: u64,
    pub mult_sectors: u16,
    pub write_cache: bool,
}

pub fn disk_identify(p: &DiskParams) -> [u16; 256] {
    let mut w = [0u16; 256];
    let g = p.default_geometry;
    let c = p.current_geometry;
    w[0] = 0x0040;
    w[1] = g.cylinders;
    w[3] = g.heads;
    w[4] = 512u16.wrapping_mul(g.sectors);
    w[5] = 512;
    w[6] = g.sectors;
    put_string(&mut w[10..20], &p.identity.serial);
    w[20] = 3;
    w[21] = 512;
    w[22] = 4;
    put_string(&mut w[23..27], &p.identity.firmware);
    put_string(&mut w[27..47], &p.identity.model);
    w[47] = 0x8000 | MAX_MULT_SECTORS;
    w[48] = 1;
    w[49] = (1 << 11) | (1 << 9) | (1 << 8);
    w[51] = 0x200;
    w[52] = 0x200;
    w[53] = 7;
    w[54] = c.cylinders;
    w[55] = c.heads;
    w[56] = c.sectors;
    let chs_capacity = c.cylinders as u32 * c.heads as u32 * c.sectors as u32;
    w[57] = chs_capacity as u16;
    w[58] = (chs_capacity >> 16) as u16;
    if p.mult_sectors != 0 {
        w[59] = 0x100 | p.mult_sectors;
    }
    let lba28 = p.nb_sectors.min((1 << 28) - 1);
    w[60] = lba28 as u16;
    w[61] = (lba28 >> 16) as u16;
    w[62] = 0x07;
    w[63] = 0x07;
    w[64] = 0x03;
    w[65..69].fill(120);
    w[69] = 1 << 14;
    w[80] = 0xf0;
    w[81] = 0x16;
    w[82] = (1 << 14) | (1 << 5) | 1;
    w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10);
    w[84] = 1 << 14;
    w[85] = if p.write_cache { (1 << 14) | (1 << 5) | 1 } else { (1 << 14) | 1 };
    w[86] = (1 << 13) | (1 << 12) | (1 << 10);
    w[87] = 1 << 14;
    w[88] = 0x3f | (1 << 13);
    w[93] = 1 | (1 << 14) | 0x2000;
    for (i, word) in w[100..104].iter_mut().enumerate() {
        *word = (p.nb_sectors >> (16 * i)) as u16;
    }
    // Physical block size: one logical sector per physical one.
    w[106] = 0x6000;
    w[169] = 1;
    w
}

pub fn atapi_identify(identity: &Identity) -> [u16; 256] {
    let mut w = [0u16; 256];
    w[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5);
    put_string(&mut w[10..20], &identity.serial);
    w[20] = 3;
    w[21] = 512;
    w[22] = 4;
    put_string(&mut w[23..27], &identity.firmware);
    put_string(&mut w[27..47], &identity.model);
    w[48] = 1;
    w[49] = (1 << 9) | (1 << 8);
    w[53] = 7;
    w[62] = 7;
    w[63] = 7;
    w[64] = 3;
    w[65] = 0xb4;
    w[66] = 0xb4;
    w[67] = 0x12c;
    w[68] = 0xb4;
    w[71] = 30;
    w[72] = 30;
    w[80] = 0x1e;
    w[88] = 0x3f | (1 << 13);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_mib_disk_matches_qemu_words() {
        let id = Identity::default_for(0, false);
        let g = guess_geometry(32768, None);
        assert_eq!(g, Geometry { cylinders: 32, heads: 16, sectors: 63 });
        let w = disk_identify(&DiskParams {
            identity: &id,
            default_geometry: g,
            current_geometry: g,
            nb_sectors: 32768,
            mult_sectors: 16,
            write_cache: true,
        });
        assert_eq!(&w[0..7], &[0x0040, 32, 0, 16, 0x7e00, 512, 63]);
        assert_eq!(w[10], u16::from_be_bytes(*b"QM"));
        assert_eq!(w[12], u16::from_be_bytes(*b"00"));
        assert_eq!(w[13], u16::from_be_bytes(*b"1 "));
        assert_eq!(w[14], 0x2020);
        assert_eq!(w[23], u16::from_be_bytes(*b"2."));
        assert_eq!(w[24], u16::from_be_bytes(*b"5+"));
        assert_eq!(w[27], u16::from_be_bytes(*b"QE"));
        assert_eq!((w[47], w[49], w[57], w[58], w[59]), (0x8010, 0x0b00, 0x7e00, 0, 0x0110));
        assert_eq!((w[60], w[61], w[83], w[85], w[88], w[93]), (32768, 0, 0x7400, 0x4021, 0x203f, 0x6001));
        assert_eq!(&w[100..104], &[32768, 0, 0, 0]);
    }

    #[test]
    fn geometry_follows_mbr_and_size_limits() {
        assert_eq!(guess_geometry(10, None).cylinders, 2);
        assert_eq!(guess_geometry(1 << 40, None).cylinders, 16383);
        let mut mbr = [0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let p = 0x1be;
        mbr[p + 5] = 3; // end head -> 4 heads
        mbr[p + 6] = 32; // 32 sectors
        mbr[p + 12] = 100;
        let g = guess_geometry(4 * 32 * 100, Some(&mbr));
        assert_eq!(g, Geometry { cylinders: 100, heads: 4, sectors: 32 });
        mbr[p + 5] = 254; // LBA-translated table: standard geometry
        assert_eq!(guess_geometry(4 * 32 * 100, Some(&mbr)).heads, 16);
    }

    #[test]
    fn atapi_word0_and_model() {
        let w = atapi_identify(&Identity::default_for(2, true));
        assert_eq!(w[0], 0x85c0);
        assert_eq!(w[13], u16::from_be_bytes(*b"3 "));
        assert_eq!(w[31], u16::from_be_bytes(*b"-R"));
    }
    /// Non-zero words QEMU 7.2 (Debian 1:7.2+dfsg-7+deb12u18) returned over
    /// qtest for a 16 MiB raw disk at primary master and a CD at secondary
    /// master ("index:hex", measured on this machine).
    const QEMU_HD_16MIB: &str = "0:0040 1:0020 3:0010 4:7e00 5:0200 6:003f 10:514d 11:3030 12:3030 13:3120 14:2020 15:2020 16:2020 17:2020 18:2020 19:2020 20:0003 21:0200 22:0004 23:322e 24:352b 25:2020 26:2020 27:5145 28:4d55 29:2048 30:4152 31:4444 32:4953 33:4b20 34:2020 35:2020 36:2020 37:2020 38:2020 39:2020 40:2020 41:2020 42:2020 43:2020 44:2020 45:2020 46:2020 47:8010 48:0001 49:0b00 51:0200 52:0200 53:0007 54:0020 55:0010 56:003f 57:7e00 59:0110 60:8000 62:0007 63:0007 64:0003 65:0078 66:0078 67:0078 68:0078 69:4000 80:00f0 81:0016 82:4021 83:7400 84:4000 85:4021 86:3400 87:4000 88:203f 93:6001 100:8000 106:6000 169:0001";
    const QEMU_CD_SECONDARY_MASTER: &str = "0:85c0 10:514d 11:3030 12:3030 13:3320 14:2020 15:2020 16:2020 17:2020 18:2020 19:2020 20:0003 21:0200 22:0004 23:322e 24:352b 25:2020 26:2020 27:5145 28:4d55 29:2044 30:5644 31:2d52 32:4f4d 33:2020 34:2020 35:2020 36:2020 37:2020 38:2020 39:2020 40:2020 41:2020 42:2020 43:2020 44:2020 45:2020 46:2020 48:0001 49:0300 53:0007 62:0007 63:0007 64:0003 65:00b4 66:00b4 67:012c 68:00b4 71:001e 72:001e 80:001e 88:203f";

    fn nonzero(words: &[u16; 256]) -> String {
        let parts: Vec<String> =
            words.iter().enumerate().filter(|(_, w)| **w != 0).map(|(i, w)| format!("{i}:{w:04x}")).collect();
        parts.join(" ")
    }

    #[test]
    fn every_word_matches_qemu_7_2() {
        let g = guess_geometry(32768, None);
        let hd = disk_identify(&DiskParams {
            identity: &Identity::default_for(0, false),
            default_geometry: g,
            current_geometry: g,
            nb_sectors: 32768,
            mult_sectors: 16,
            write_cache: true,
        });
        assert_eq!(nonzero(&hd), QEMU_HD_16MIB);
        assert_eq!(nonzero(&atapi_identify(&Identity::default_for(2, true))), QEMU_CD_SECONDARY_MASTER);
    }
}
