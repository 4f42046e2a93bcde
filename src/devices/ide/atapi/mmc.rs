//! The MMC commands one by one, and the medium and reply helpers they
//! share. `AtapiState::execute_packet` checks the table flags and
//! dispatches here.

use super::*;

impl AtapiState {
    pub(super) fn fail(&mut self, key: u8, asc: u8) -> PacketOutcome {
        self.sense = Sense::new(key, asc);
        PacketOutcome::Atapi(PacketResult::Error(self.sense))
    }

    pub(super) fn request_sense(&mut self, cdb: &[u8; 12]) -> PacketOutcome {
        let mut data = vec![0u8; 18];
        data[0] = 0xf0; // valid, current error, fixed format
        data[2] = self.sense.key;
        data[7] = 10;
        data[12] = self.sense.asc;
        data[13] = self.sense.ascq;
        // Reading a unit attention consumes it; QEMU keeps the ASC.
        if self.sense.key == sense_key::UNIT_ATTENTION {
            self.sense.key = sense_key::NO_SENSE;
        }
        reply(data, usize::from(cdb[4]))
    }

    pub(super) fn inquiry(&mut self, cdb: &[u8; 12]) -> PacketOutcome {
        let allocation = usize::from(cdb[4]);
        let vital_product_data = cdb[1] & 1 != 0;
        if !vital_product_data {
            let mut data = vec![0x05, 0x80, 0x00, 0x21, 31, 0, 0, 0];
            data.extend(padded(Self::VENDOR, 8));
            data.extend(padded(Self::PRODUCT, 16));
            data.extend(padded(Self::REVISION, 4));
            return reply(data, allocation);
        }
        let page = cdb[2];
        let mut data = vec![0x05, page, 0x00, 0x00];
        match page {
            0x00 => data.extend_from_slice(&[0x00, 0x83]),
            0x83 => {
                // QEMU leaves out descriptors that do not fit the allocation
                // length, and fails when not even the serial fits.
                if data.len() + 24 > allocation {
                    return self.fail(sense_key::ILLEGAL_REQUEST, asc::DATA_PHASE_ERROR);
                }
                data.extend_from_slice(&[0x02, 0x00, 0x00, 20]);
                data.extend(padded(&self.serial, 20));
                if data.len() + 72 <= allocation {
                    data.extend_from_slice(&[0x02, 0x01, 0x00, 68]);
                    data.extend(padded("ATA", 8));
                    data.extend(padded(Self::PRODUCT, 40));
                    data.extend(padded(&self.serial, 20));
                }
            }
            _ => return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        }
        data[3] = (data.len() - 4) as u8;
        reply(data, allocation)
    }

    pub(super) fn start_stop_unit(&mut self, cdb: &[u8; 12], inserted: bool) -> PacketOutcome {
        let start = cdb[4] & 1 != 0;
        let load_eject = cdb[4] & 2 != 0;
        let power_condition = cdb[4] & 0xf0;
        // A power-condition change never moves the tray.
        if power_condition != 0 || !load_eject {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        let open = !start;
        if open && !self.tray_open && self.locked {
            let key = if inserted {
                sense_key::NOT_READY
            } else {
                sense_key::ILLEGAL_REQUEST
            };
            return self.fail(key, asc::MEDIUM_REMOVAL_PREVENTED);
        }
        if self.tray_open == open {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        self.tray_open = open;
        PacketOutcome::Atapi(PacketResult::TrayMoved { open })
    }

    pub(super) fn read(&mut self, lba: u32, count: u32, medium: Medium) -> PacketOutcome {
        if count == 0 {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        if !medium.holds(lba, count) {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_OUT_OF_RANGE);
        }
        PacketOutcome::Atapi(PacketResult::Read { lba, count })
    }

    pub(super) fn read_cd(
        &mut self,
        cdb: &[u8; 12],
        medium: Medium,
        byte_count_limit_usable: bool,
    ) -> PacketOutcome {
        let count = u32::from_be_bytes([0, cdb[6], cdb[7], cdb[8]]);
        let lba = be32(&cdb[2..6]);
        if count == 0 {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        if !medium.holds(lba, count) {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_OUT_OF_RANGE);
        }
        // Byte 9 selects the sector fields; QEMU implements "none", "user
        // data" and "everything".
        let fields = cdb[9] & 0xf8;
        if fields == 0 {
            return PacketOutcome::Atapi(PacketResult::Done);
        }
        if !byte_count_limit_usable {
            return PacketOutcome::AbortByteCountLimit;
        }
        match fields {
            0x10 => PacketOutcome::Atapi(PacketResult::Read { lba, count }),
            0xf8 => PacketOutcome::ReadRaw { lba, count },
            _ => self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        }
    }

    pub(super) fn read_toc(&mut self, cdb: &[u8; 12], medium: Medium) -> PacketOutcome {
        let allocation = usize::from(be16(&cdb[7..9]));
        let msf = cdb[1] & 2 != 0;
        let start_track = cdb[6];
        // QEMU takes the format from the old location (byte 9, bits 6-7).
        match cdb[9] >> 6 {
            0 => {
                if start_track > 1 && start_track != 0xaa {
                    return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                }
                let mut data = vec![0, 0, 1, 1];
                if start_track <= 1 {
                    data.extend_from_slice(&[0, 0x14, 1, 0]);
                    push_address(&mut data, 0, msf);
                }
                data.extend_from_slice(&[0, 0x16, 0xaa, 0]);
                push_address(&mut data, medium.blocks, msf);
                set_length_header(&mut data);
                reply(data, allocation)
            }
            1 => {
                let data = vec![0x00, 0x0a, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
                reply(data, allocation)
            }
            2 => {
                let mut data = vec![0, 0, 1, 1];
                data.extend_from_slice(&[1, 0x14, 0, 0xa0, 0, 0, 0, 0, 1, 0, 0]);
                data.extend_from_slice(&[1, 0x14, 0, 0xa1, 0, 0, 0, 0, 1, 0, 0]);
                data.extend_from_slice(&[1, 0x14, 0, 0xa2, 0, 0, 0]);
                push_address(&mut data, medium.blocks, msf);
                data.extend_from_slice(&[1, 0x14, 0, 1, 0, 0, 0]);
                push_address(&mut data, 0, msf);
                set_length_header(&mut data);
                reply(data, allocation)
            }
            _ => self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        }
    }

    pub(super) fn get_configuration(&mut self, cdb: &[u8; 12], medium: Medium) -> PacketOutcome {
        // Only a listing from feature 0 is implemented.
        if cdb[2] != 0 || cdb[3] != 0 {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
        }
        // QEMU never answers more than one 512-byte sector.
        let allocation = usize::from(be16(&cdb[7..9])).min(512);
        let current = medium.profile();
        let mut data = vec![0u8; 8];
        data[6..8].copy_from_slice(&current.to_be_bytes());
        // Feature 0 (profile list): persistent and current, two profiles.
        data.extend_from_slice(&[0x00, 0x00, 0x03, 8]);
        for profile in [PROFILE_DVD_ROM, PROFILE_CD_ROM] {
            data.extend_from_slice(&profile.to_be_bytes());
            data.push(u8::from(profile == current));
            data.push(0);
        }
        let following = (data.len() - 4) as u32;
        data[0..4].copy_from_slice(&following.to_be_bytes());
        reply(data, allocation)
    }

    pub(super) fn get_event_status(&mut self, cdb: &[u8; 12], inserted: bool) -> PacketOutcome {
        const MEDIA_CLASS: u8 = 4;
        const MEDIA_CLASS_MASK: u8 = 1 << MEDIA_CLASS;
        let allocation = usize::from(be16(&cdb[7..9]));
        // Only polled operation: asynchronous notification is optional in MMC.
        if cdb[1] & 1 == 0 {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
        }
        if cdb[4] & MEDIA_CLASS_MASK == 0 {
            // No event available from the classes asked for.
            return reply(vec![0, 0, 0x80, MEDIA_CLASS_MASK], allocation);
        }
        let media_status = if self.tray_open {
            1
        } else if inserted {
            2
        } else {
            0
        };
        let mut event = 0;
        if !self.tray_open {
            if self.events.new_media {
                event = 2;
                self.events.new_media = false;
            } else if self.events.eject_request {
                event = 1;
                self.events.eject_request = false;
            }
        }
        reply(
            vec![
                0,
                4,
                MEDIA_CLASS,
                MEDIA_CLASS_MASK,
                event,
                media_status,
                0,
                0,
            ],
            allocation,
        )
    }

    pub(super) fn read_disc_information(&mut self, cdb: &[u8; 12]) -> PacketOutcome {
        // Data types 1 and 2 exist only for Blu-ray.
        if cdb[1] & 7 != 0 {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
        }
        let mut data = vec![0u8; 34];
        // 32 more bytes; finalized disc, last session complete; one session
        // with one track; unrestricted use; CD-ROM or DVD-ROM.
        data[..8].copy_from_slice(&[0, 32, 0x0e, 1, 1, 1, 1, 0x20]);
        reply(data, usize::from(be16(&cdb[7..9])))
    }

    pub(super) fn mode_sense(&mut self, cdb: &[u8; 12]) -> PacketOutcome {
        let allocation = usize::from(be16(&cdb[7..9]));
        let page_control = cdb[2] >> 6;
        let page = cdb[2] & 0x3f;
        match page_control {
            0 => {}
            // QEMU offers no changeable or default values.
            1 | 2 => return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
            _ => {
                return self.fail(
                    sense_key::ILLEGAL_REQUEST,
                    asc::SAVING_PARAMETERS_NOT_SUPPORTED,
                )
            }
        }
        // Mode parameter header (8 bytes, medium type 0x70 = no disc / door
        // closed as QEMU reports it always) followed by the page.
        let page_bytes: Vec<u8> = match page {
            // Read/write error recovery: read retry count 5.
            0x01 => vec![0x01, 0x06, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00],
            // CD audio control. QEMU answers with stale buffer bytes in the
            // volume fields; here they are zero.
            0x0e => {
                let mut bytes = vec![0u8; 16];
                bytes[0] = 0x0e;
                bytes[1] = 0x0e;
                bytes
            }
            0x2a => {
                let mut caps = vec![0u8; 22];
                caps[0] = 0x2a;
                caps[1] = 0x14;
                caps[2] = 0x3b; // reads CD-R, CD-RW, DVD-ROM, DVD-R, DVD-RAM
                                // Audio play is claimed because Linux automounts only then.
                caps[4] = 0x71;
                caps[5] = 0x60;
                // Lock supported, eject, tray loading; bit 1 shows the lock.
                caps[6] = 0x29 | if self.locked { 0x02 } else { 0 };
                caps[8..10].copy_from_slice(&704u16.to_be_bytes()); // 4x
                caps[11] = 2; // volume levels
                caps[12..14].copy_from_slice(&512u16.to_be_bytes()); // KiB buffer
                caps[14..16].copy_from_slice(&704u16.to_be_bytes());
                caps
            }
            _ => return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        };
        let mut data = vec![0, 0, 0x70, 0, 0, 0, 0, 0];
        data.extend_from_slice(&page_bytes);
        set_length_header(&mut data);
        reply(data, allocation)
    }

    pub(super) fn read_dvd_structure(&mut self, cdb: &[u8; 12], medium: Medium) -> PacketOutcome {
        let media_type = cdb[1];
        let format = cdb[7];
        let allocation = usize::from(be16(&cdb[8..10]));
        if format != 0xff {
            if medium.is_cd() {
                return self.fail(sense_key::ILLEGAL_REQUEST, asc::INCOMPATIBLE_FORMAT);
            }
            if !medium.present() {
                return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
            }
        }
        if media_type != 0 || !(format <= 0x7f || format == 0xff) {
            return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
        }
        let data = match format {
            0x00 => {
                // QEMU clears its buffer, which still holds the CDB, before
                // it reads the layer byte; so the layer is only checked when
                // the allocation length leaves byte 6 alone.
                let layer = if allocation > 6 { 0 } else { cdb[6] };
                if layer != 0 {
                    return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                }
                if medium.blocks == 0 {
                    return self.fail(sense_key::ILLEGAL_REQUEST, asc::MEDIUM_NOT_PRESENT);
                }
                let last = (medium.blocks - 1) as u32;
                let mut data = vec![0u8; 2048 + 4];
                data[0..2].copy_from_slice(&(2048u16 + 2).to_be_bytes());
                // DVD-ROM part version 1, 120 mm, one layer read-only.
                data[4..8].copy_from_slice(&[0x01, 0x0f, 0x01, 0x00]);
                data[12..16].copy_from_slice(&last.to_be_bytes());
                data[16..20].copy_from_slice(&last.to_be_bytes());
                data
            }
            0x01 => vec![0x00, 0x06, 0, 0, 0, 0, 0, 0], // no copy protection, no region
            0x04 => {
                let mut data = vec![0u8; 2048 + 4];
                data[0..2].copy_from_slice(&(2048u16 + 2).to_be_bytes());
                data
            }
            0xff => {
                let mut data = vec![0x00, 0x12, 0, 0];
                for (structure, length) in [
                    (0x00u8, 2048u16 + 4),
                    (0x01, 4 + 4),
                    (0x03, 188 + 4),
                    (0x04, 2048 + 4),
                ] {
                    data.extend_from_slice(&[structure, 0x40]); // readable, not writable
                    data.extend_from_slice(&length.to_be_bytes());
                }
                data
            }
            _ => return self.fail(sense_key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB),
        };
        reply(data, allocation)
    }
}

const PROFILE_CD_ROM: u16 = 0x0008;
const PROFILE_DVD_ROM: u16 = 0x0010;

/// The medium as the command handlers see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Medium {
    /// 2048-byte blocks; 0 when there is no readable medium.
    pub(super) blocks: u64,
}

impl Medium {
    pub(super) fn new(medium_sectors: Option<u64>, tray_open: bool) -> Self {
        let blocks = if tray_open {
            0
        } else {
            medium_sectors.unwrap_or(0)
        };
        Medium { blocks }
    }

    pub(super) fn present(self) -> bool {
        self.blocks > 0
    }

    fn is_cd(self) -> bool {
        self.present() && self.blocks <= CD_MAX_BLOCKS
    }

    fn profile(self) -> u16 {
        match self.blocks {
            0 => 0,
            blocks if blocks <= CD_MAX_BLOCKS => PROFILE_CD_ROM,
            _ => PROFILE_DVD_ROM,
        }
    }

    /// Whether blocks lba..lba+count all lie on the medium.
    fn holds(self, lba: u32, count: u32) -> bool {
        u64::from(lba) + u64::from(count) <= self.blocks
    }
}

fn push_address(data: &mut Vec<u8>, lba: u64, msf: bool) {
    if msf {
        data.push(0);
        data.extend_from_slice(&lba_to_msf(lba));
    } else {
        data.extend_from_slice(&(lba as u32).to_be_bytes());
    }
}

/// Store the count of the bytes that follow the 2-byte length field.
fn set_length_header(data: &mut [u8]) {
    let following = (data.len() - 2) as u16;
    data[0..2].copy_from_slice(&following.to_be_bytes());
}

pub(super) fn reply(mut data: Vec<u8>, allocation_length: usize) -> PacketOutcome {
    data.truncate(allocation_length);
    PacketOutcome::Atapi(PacketResult::DataIn(data))
}
