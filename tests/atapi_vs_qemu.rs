//! Differential test of the ATAPI command set against Debian's QEMU 7.2.
//!
//! QEMU runs with a halting BIOS under `-qtest stdio` and an ide-cd at
//! secondary master; this test sends each packet over PIO exactly as a guest
//! would and compares every data byte and the status, error and interrupt
//! reason registers with what `AtapiState` answers, the test itself playing
//! the transport (host reads from the same image file). Host-side medium
//! events go to QEMU over QMP and to `AtapiState` through its methods.
//!
//! QEMU (qemu-system-x86_64) must be installed; it is on every machine this
//! project supports for development.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use xen_ioemu::devices::ide::atapi::{
    raw_sector, AtapiState, PacketOutcome, PacketResult, CD_SECTOR_SIZE,
    UNIT_ATTENTION_PENDING_ERROR, UNIT_ATTENTION_PENDING_STATUS,
};

/// Guest-visible end of one packet command.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Completion {
    status: u8,
    error: u8,
    interrupt_reason: u8,
    data: Vec<u8>,
}

struct Qemu {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    qmp: BufReader<UnixStream>,
    _dir: tempfile::TempDir,
}

impl Qemu {
    fn start(image: &Path) -> Qemu {
        let dir = tempfile::tempdir().unwrap();
        let mut bios = vec![0xf4u8; 65536];
        bios[0xfff0..0xfff4].copy_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]);
        let bios_path = dir.path().join("halt.bin");
        std::fs::write(&bios_path, &bios).unwrap();
        let qmp_path = dir.path().join("qmp.sock");
        let mut child = Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "pc",
                "-m",
                "128",
                "-accel",
                "tcg",
                "-nodefaults",
                "-display",
                "none",
            ])
            .arg("-bios")
            .arg(&bios_path)
            .args(["-qtest", "stdio", "-qtest-log", "/dev/null"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .arg("-drive")
            .arg(format!(
                "if=none,id=cd,format=raw,readonly=on,file={}",
                image.display()
            ))
            .args(["-device", "ide-cd,drive=cd,bus=ide.1,unit=0,id=cd0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("qemu-system-x86_64 (Debian's QEMU 7.2) must be installed for this test");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        let qmp = loop {
            match UnixStream::connect(&qmp_path) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(err) => panic!("QMP socket never came up: {err}"),
            }
        };
        let mut qemu = Qemu {
            child,
            stdin,
            stdout,
            qmp: BufReader::new(qmp),
            _dir: dir,
        };
        qemu.qmp_line();
        qemu.qmp_command(r#"{"execute":"qmp_capabilities"}"#);
        // PIIX3 IDE function 00:01.1: I/O space and bus master on.
        qemu.command("outl 0xcf8 0x80000904");
        qemu.command("outw 0xcfc 0x0005");
        qemu
    }

    fn qmp_line(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.qmp.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// Run a QMP command and return its reply, skipping events.
    fn qmp_command(&mut self, json: &str) -> serde_json::Value {
        self.qmp.get_mut().write_all(json.as_bytes()).unwrap();
        self.qmp.get_mut().write_all(b"\n").unwrap();
        loop {
            let reply = self.qmp_line();
            if reply.get("return").is_some() || reply.get("error").is_some() {
                return reply;
            }
        }
    }

    fn command(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        loop {
            let mut reply = String::new();
            assert!(
                self.stdout.read_line(&mut reply).unwrap() > 0,
                "QEMU closed qtest during {line}"
            );
            if reply.starts_with("IRQ") {
                continue;
            }
            assert!(reply.starts_with("OK"), "qtest {line}: {reply}");
            return reply.trim_end().to_string();
        }
    }

    fn input(&mut self, width: char, port: u16) -> u16 {
        let reply = self.command(&format!("in{width} {port:#x}"));
        let value = reply
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_start_matches("0x");
        u16::from_str_radix(value, 16).unwrap()
    }

    fn inb(&mut self, port: u16) -> u8 {
        self.input('b', port) as u8
    }

    fn outb(&mut self, port: u16, value: u8) {
        self.command(&format!("outb {port:#x} {value:#x}"));
    }

    /// One PACKET command over PIO on the secondary channel.
    fn packet(&mut self, cdb: &[u8; 12], byte_count_limit: u16) -> Completion {
        self.outb(0x176, 0xa0);
        self.outb(0x171, 0); // PIO
        self.outb(0x174, byte_count_limit as u8);
        self.outb(0x175, (byte_count_limit >> 8) as u8);
        self.outb(0x177, 0xa0);
        assert_eq!(self.inb(0x177) & 0x88, 0x08, "PACKET must ask for the CDB");
        for pair in cdb.chunks(2) {
            self.command(&format!(
                "outw 0x170 {:#x}",
                u16::from_le_bytes([pair[0], pair[1]])
            ));
        }
        let mut data = Vec::new();
        let status = loop {
            let status = self.inb(0x177);
            if status & 0x80 != 0 {
                continue;
            }
            if status & 0x08 == 0 {
                break status;
            }
            let count = usize::from(self.inb(0x174)) | usize::from(self.inb(0x175)) << 8;
            let start = data.len();
            for _ in 0..count.div_ceil(2) {
                data.extend_from_slice(&self.input('w', 0x170).to_le_bytes());
            }
            data.truncate(start + count);
            assert!(
                count % 2 == 0,
                "odd PIO chunk never completes in QEMU: {cdb:02x?}"
            );
        };
        Completion {
            status,
            error: self.inb(0x171),
            interrupt_reason: self.inb(0x172) & 7,
            data,
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our side: the command set plus the transport's register rules and host
/// reads, as the IDE core is specified to do them.
struct Model {
    atapi: AtapiState,
    /// None once the medium is gone (QMP eject removes it).
    medium: Option<File>,
}

impl Model {
    fn new(image: &Path) -> Model {
        Model {
            atapi: AtapiState::new(),
            medium: Some(File::open(image).unwrap()),
        }
    }

    fn blocks(&self) -> Option<u64> {
        let file = self.medium.as_ref()?;
        Some(file.metadata().unwrap().len() / CD_SECTOR_SIZE as u64)
    }

    fn block(&self, lba: u32) -> [u8; CD_SECTOR_SIZE] {
        let mut block = [0u8; CD_SECTOR_SIZE];
        let file = self.medium.as_ref().expect("reads need a medium");
        file.read_exact_at(&mut block, u64::from(lba) * CD_SECTOR_SIZE as u64)
            .unwrap();
        block
    }

    fn packet(&mut self, cdb: &[u8; 12], byte_count_limit: u16) -> Completion {
        let ok = |data| Completion {
            status: 0x50,
            error: 0,
            interrupt_reason: 3,
            data,
        };
        match self
            .atapi
            .execute_packet(cdb, self.blocks(), byte_count_limit != 0)
        {
            PacketOutcome::Atapi(PacketResult::DataIn(data)) => ok(data),
            PacketOutcome::Atapi(PacketResult::Done)
            | PacketOutcome::Atapi(PacketResult::TrayMoved { .. }) => ok(Vec::new()),
            PacketOutcome::Atapi(PacketResult::Read { lba, count }) => ok((lba..lba + count)
                .flat_map(|block| self.block(block))
                .collect()),
            PacketOutcome::ReadRaw { lba, count } => ok((lba..lba + count)
                .flat_map(|block| raw_sector(block, &self.block(block)))
                .collect()),
            PacketOutcome::Atapi(PacketResult::Error(sense)) => Completion {
                status: 0x41,
                error: sense.ata_error_register(),
                interrupt_reason: 3,
                data: Vec::new(),
            },
            PacketOutcome::UnitAttentionPending => Completion {
                status: UNIT_ATTENTION_PENDING_STATUS,
                error: UNIT_ATTENTION_PENDING_ERROR,
                interrupt_reason: 0,
                data: Vec::new(),
            },
            // The interrupt reason still says "command" (C/D) as after PACKET.
            PacketOutcome::AbortByteCountLimit => Completion {
                status: 0x41,
                error: 0x04,
                interrupt_reason: 1,
                data: Vec::new(),
            },
        }
    }
}

/// An image of `blocks` blocks whose first `filled` blocks hold
/// pseudo-random bytes; the rest is a hole.
fn image(blocks: u64, filled: usize) -> tempfile::NamedTempFile {
    let mut contents = vec![0u8; filled * CD_SECTOR_SIZE];
    let mut seed = 0x1234_5678_u32;
    for byte in contents.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        *byte = seed as u8;
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&contents).unwrap();
    file.as_file()
        .set_len(blocks * CD_SECTOR_SIZE as u64)
        .unwrap();
    file.flush().unwrap();
    file
}

/// Compare one packet, unless its reply has an odd length: QEMU's 16-bit
/// data port never delivers the last odd byte (DRQ stays set, the command
/// never completes), so such packets are left out.
fn try_compare(
    qemu: &mut Qemu,
    model: &mut Model,
    cdb: [u8; 12],
    byte_count_limit: u16,
) -> Option<Completion> {
    let mut dry_run = model.atapi.clone();
    if let PacketOutcome::Atapi(PacketResult::DataIn(data)) =
        dry_run.execute_packet(&cdb, model.blocks(), byte_count_limit != 0)
    {
        if data.len() % 2 == 1 {
            return None;
        }
    }
    Some(compare(qemu, model, cdb, byte_count_limit))
}

/// How many compared packets ended each way, so the random run can show
/// it reached all of them.
#[derive(Debug, Default)]
struct Tally {
    data: usize,
    large_data: usize,
    no_data: usize,
    check_condition: usize,
    unit_attention_pending: usize,
    aborted: usize,
}

impl Tally {
    fn count(&mut self, completion: &Completion) {
        match (completion.status, completion.error) {
            (0x50, _) if completion.data.len() >= CD_SECTOR_SIZE => self.large_data += 1,
            (0x50, _) if !completion.data.is_empty() => self.data += 1,
            (0x50, _) => self.no_data += 1,
            (0x41, 0x04) => self.aborted += 1,
            (0x41, _) => self.check_condition += 1,
            _ => self.unit_attention_pending += 1,
        }
    }
}

fn compare(qemu: &mut Qemu, model: &mut Model, cdb: [u8; 12], byte_count_limit: u16) -> Completion {
    let theirs = qemu.packet(&cdb, byte_count_limit);
    let ours = model.packet(&cdb, byte_count_limit);
    assert_eq!(
        ours, theirs,
        "CDB {cdb:02x?}, byte count limit {byte_count_limit:#x}"
    );
    ours
}

fn cdb(bytes: &[u8]) -> [u8; 12] {
    let mut packet = [0u8; 12];
    packet[..bytes.len()].copy_from_slice(bytes);
    packet
}

#[test]
fn every_command_matches_qemu() {
    let file = image(300, 300);
    let mut qemu = Qemu::start(file.path());
    let mut model = Model::new(file.path());
    let packets: &[&[u8]] = &[
        &[0x00],
        &[0x03, 0, 0, 0, 18],
        &[0x12, 0, 0, 0, 96],
        &[0x12, 1, 0, 0, 96],
        &[0x12, 1, 0x83, 0, 255],
        &[0x12, 1, 0x83, 0, 26],
        &[0x25],
        &[0x28, 0, 0, 0, 0, 7, 0, 0, 3],
        &[0x28, 0, 0, 0, 1, 0x2b, 0, 0, 1],
        &[0x28, 0, 0, 0, 1, 0x2b, 0, 0, 2],
        &[0xa8, 0, 0, 0, 0, 9, 0, 0, 0, 2],
        &[0x2b, 0, 0, 0, 1, 0x2c],
        &[0x43, 0, 0, 0, 0, 0, 0, 0, 100],
        &[0x43, 2, 0, 0, 0, 0, 1, 0, 100, 0x80],
        &[0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0x40],
        &[0x5a, 0, 0x01, 0, 0, 0, 0, 0, 100],
        &[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 28],
        &[0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 100],
        &[0x46, 0, 0, 0, 0, 0, 0, 2, 0],
        &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8],
        &[0x51, 0, 0, 0, 0, 0, 0, 0, 40],
        &[0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 40],
        &[0xad, 0, 0, 0, 0, 0, 0, 0, 0, 40],
        &[0xbb, 0, 0xff, 0xff],
        &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8],
        &[0xbe, 0, 0, 0, 0, 3, 0, 0, 2, 0x10],
        &[0xbe, 0, 0, 0, 0, 3, 0, 0, 2, 0xf8],
        &[0xbe, 0, 0, 0, 0, 3, 0, 0, 2, 0x08],
        &[0xbe, 0, 0, 0, 0, 3, 0, 0, 2, 0x00],
        &[0x1e, 0, 0, 0, 1],
        &[0x1b, 0, 0, 0, 2],
        &[0x1e, 0, 0, 0, 0],
        &[0x1b, 0, 0, 0, 2],
        &[0x00],
        &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8],
        &[0x1b, 0, 0, 0, 3],
        &[0x00],
        &[0xee],
        &[0x03, 0, 0, 0, 18],
    ];
    for packet in packets {
        for byte_count_limit in [0xfffe, 0x0007] {
            compare(&mut qemu, &mut model, cdb(packet), byte_count_limit);
        }
    }
    for packet in [
        &[0x12, 0, 0, 0, 36][..],
        &[0x00],
        &[0xbe, 0, 0, 0, 0, 3, 0, 0, 2, 0x10],
        &[0x28, 0, 0, 0, 0, 0],
    ] {
        compare(&mut qemu, &mut model, cdb(packet), 0);
    }
}

#[test]
fn host_medium_events_match_qemu() {
    let file = image(64, 64);
    let second = image(500, 500);
    let mut qemu = Qemu::start(file.path());
    let mut model = Model::new(file.path());
    let probe = |qemu: &mut Qemu, model: &mut Model| {
        for packet in [
            &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8][..],
            &[0x00],
            &[0x25],
            &[0x00],
            &[0x03, 0, 0, 0, 18],
        ] {
            compare(qemu, model, cdb(packet), 0xfffe);
        }
    };
    probe(&mut qemu, &mut model);

    qemu.qmp_command(r#"{"execute":"blockdev-open-tray","arguments":{"id":"cd0"}}"#);
    model.atapi.set_tray_open(true);
    model.atapi.medium_changed();
    probe(&mut qemu, &mut model);

    qemu.qmp_command(r#"{"execute":"blockdev-close-tray","arguments":{"id":"cd0"}}"#);
    model.atapi.set_tray_open(false);
    model.atapi.medium_changed();
    probe(&mut qemu, &mut model);

    let change = format!(
        r#"{{"execute":"blockdev-change-medium","arguments":{{"id":"cd0","filename":"{}","format":"raw","read-only-mode":"read-only"}}}}"#,
        second.path().display()
    );
    let reply = qemu.qmp_command(&change);
    assert!(reply.get("return").is_some(), "{reply}");
    // QEMU opens the tray, swaps the medium and closes it again.
    model.atapi.medium_changed();
    model.medium = Some(File::open(second.path()).unwrap());
    // Without REQUEST SENSE in between, the pending unit attention blocks.
    for packet in [
        &[0x25][..],
        &[0x25],
        &[0x25],
        &[0x28, 0, 0, 0, 0, 0, 0, 0, 1],
        &[0x12, 0, 0, 0, 36],
    ] {
        compare(&mut qemu, &mut model, cdb(packet), 0xfffe);
    }
    probe(&mut qemu, &mut model);

    compare(&mut qemu, &mut model, cdb(&[0x1e, 0, 0, 0, 1]), 0xfffe);
    let reply = qemu.qmp_command(r#"{"execute":"eject","arguments":{"id":"cd0"}}"#);
    assert!(
        reply.get("error").is_some(),
        "a locked tray refuses a plain eject: {reply}"
    );
    model.atapi.eject_requested(false);
    probe(&mut qemu, &mut model);
    compare(
        &mut qemu,
        &mut model,
        cdb(&[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]),
        0xfffe,
    );

    // Eject opens the tray and takes the medium out.
    qemu.qmp_command(r#"{"execute":"eject","arguments":{"id":"cd0","force":true}}"#);
    model.atapi.eject_requested(true);
    model.atapi.set_tray_open(true);
    model.atapi.medium_changed();
    model.medium = None;
    probe(&mut qemu, &mut model);
    qemu.qmp_command(r#"{"execute":"blockdev-close-tray","arguments":{"id":"cd0"}}"#);
    model.atapi.set_tray_open(false);
    model.atapi.medium_changed();
    probe(&mut qemu, &mut model);
    compare(
        &mut qemu,
        &mut model,
        cdb(&[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 100]),
        0xfffe,
    );
}

/// Small deterministic generator, so a failure names a reproducible CDB.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

#[test]
fn random_packets_match_qemu() {
    let file = image(40, 40);
    let mut qemu = Qemu::start(file.path());
    let mut model = Model::new(file.path());
    let opcodes = [
        0x00, 0x03, 0x12, 0x1b, 0x1e, 0x25, 0x28, 0x2b, 0x43, 0x46, 0x4a, 0x51, 0x5a, 0xa8, 0xad,
        0xbb, 0xbd, 0xbe, 0x1a, 0x55, 0xff,
    ];
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut compared = 0;
    let mut tally = Tally::default();
    // Start with a host-side medium change so the unit attention paths run.
    qemu.qmp_command(r#"{"execute":"blockdev-open-tray","arguments":{"id":"cd0"}}"#);
    qemu.qmp_command(r#"{"execute":"blockdev-close-tray","arguments":{"id":"cd0"}}"#);
    model.atapi.medium_changed();
    while compared < 1500 {
        if compared % 150 == 149 {
            // A forced open drops the guest's lock; QEMU reports the open
            // and the close as medium changes, keeping the medium.
            qemu.qmp_command(
                r#"{"execute":"blockdev-open-tray","arguments":{"id":"cd0","force":true}}"#,
            );
            model.atapi.eject_requested(true);
            model.atapi.set_tray_open(true);
            model.atapi.medium_changed();
            qemu.qmp_command(r#"{"execute":"blockdev-close-tray","arguments":{"id":"cd0"}}"#);
            model.atapi.set_tray_open(false);
            model.atapi.medium_changed();
        }
        let mut packet = [0u8; 12];
        for byte in packet.iter_mut() {
            // Mostly small values, so fields land in and near valid ranges.
            *byte = match random.byte() % 4 {
                0 => random.byte(),
                1 => 0,
                _ => random.byte() % 4,
            };
        }
        packet[0] = opcodes[usize::from(random.byte()) % opcodes.len()];
        // Aim most reads at and just past the end of the 40-block medium.
        if matches!(packet[0], 0x28 | 0xa8 | 0xbe | 0x2b) && !random.byte().is_multiple_of(4) {
            packet[2..6].copy_from_slice(&u32::from(random.byte() % 48).to_be_bytes());
            let count = random.byte() % 5;
            match packet[0] {
                0x28 => packet[7..9].copy_from_slice(&[0, count]),
                0xa8 => packet[6..10].copy_from_slice(&[0, 0, 0, count]),
                0xbe => packet[6..9].copy_from_slice(&[0, 0, count]),
                _ => {}
            }
        }
        // QEMU answers MODE SENSE's audio page with stale buffer bytes.
        if packet[0] == 0x5a && packet[2] == 0x0e {
            continue;
        }
        // Keep reads short; QEMU's 32-bit length arithmetic also breaks on
        // huge counts, which the unit tests cover instead.
        let count = match packet[0] {
            0x28 => u32::from(u16::from_be_bytes([packet[7], packet[8]])),
            0xa8 => u32::from_be_bytes([packet[6], packet[7], packet[8], packet[9]]),
            0xbe => u32::from_be_bytes([0, packet[6], packet[7], packet[8]]),
            _ => 0,
        };
        if count > 4 {
            continue;
        }
        let byte_count_limit = [0xfffe, 0xffff, 0x0007, 0x0800, 0][usize::from(random.byte()) % 5];
        if let Some(completion) = try_compare(&mut qemu, &mut model, packet, byte_count_limit) {
            tally.count(&completion);
            compared += 1;
        }
        // Reload the tray now and then so eject does not end the run.
        if model.atapi.tray_open() && random.byte().is_multiple_of(4) {
            compare(&mut qemu, &mut model, cdb(&[0x1b, 0, 0, 0, 3]), 0xfffe);
        }
    }
    eprintln!("{tally:?}");
    assert!(
        tally.data > 100 && tally.large_data > 20 && tally.no_data > 100,
        "{tally:?}"
    );
    assert!(
        tally.check_condition > 100 && tally.aborted > 20 && tally.unit_attention_pending > 0,
        "{tally:?}"
    );
}

#[test]
fn dvd_sized_medium_matches_qemu() {
    // One block more than an 80-minute CD makes QEMU call it a DVD; the
    // image is sparse apart from its first blocks.
    let blocks = 80 * 60 * 75 + 1;
    let file = image(blocks, 4);
    let mut qemu = Qemu::start(file.path());
    let mut model = Model::new(file.path());
    let last = (blocks - 1) as u32;
    let [_, b1, b2, b3] = last.to_be_bytes();
    let packets: &[&[u8]] = &[
        &[0x00],
        &[0x25],
        &[0x46, 0, 0, 0, 0, 0, 0, 0, 100],
        &[0x43, 0, 0, 0, 0, 0, 0, 0, 100],
        &[0x43, 2, 0, 0, 0, 0, 0, 0, 100],
        &[0x43, 2, 0, 0, 0, 0, 0, 0, 100, 0x80],
        &[0xad, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x04],
        &[0xad, 0, 0, 0, 0, 0, 1, 0, 0, 100],
        &[0xad, 0, 0, 0, 0, 0, 1, 0, 0, 6],
        &[0xad, 0, 0, 0, 0, 0, 0, 1, 0, 100],
        &[0xad, 0, 0, 0, 0, 0, 0, 3, 0, 100],
        &[0xad, 0, 0, 0, 0, 0, 0, 4, 0x10, 0],
        &[0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 100],
        &[0xad, 0, 0, 0, 0, 0, 0, 0x80, 0, 100],
        &[0xad, 1, 0, 0, 0, 0, 0, 0, 0, 100],
        &[0x28, 0, 0, b1, b2, b3, 0, 0, 1],
        &[0x28, 0, 0, b1, b2, b3, 0, 0, 2],
        &[0xbe, 0, 0, b1, b2, b3, 0, 0, 1, 0xf8],
        &[0xa8, 0, 0, 0, 0, 0, 0, 0, 0, 3],
        &[0x2b, 0, 0, b1, b2, b3],
        &[0x51, 0, 0, 0, 0, 0, 0, 0, 34],
        &[0x03, 0, 0, 0, 18],
    ];
    for packet in packets {
        compare(&mut qemu, &mut model, cdb(packet), 0xfffe);
    }
}
