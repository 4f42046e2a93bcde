//! Starts one backend (QEMU 7.2 or xen-ioemu) with an identical argv built
//! from a scenario's machine description, over fresh per-backend images.

use crate::image;
use crate::qmp::Qmp;
use crate::qtest::Qtest;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Qemu,
    XenIoemu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Qemu => "qemu",
            Backend::XenIoemu => "xen-ioemu",
        }
    }
    fn program(self) -> PathBuf {
        match self {
            Backend::Qemu => std::env::var_os("DIFF_QEMU")
                .map(PathBuf::from)
                .unwrap_or_else(|| "qemu-system-x86_64".into()),
            Backend::XenIoemu => std::env::var_os("DIFF_XEN_IOEMU")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_xen-ioemu"))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    Disk,
    Cdrom,
}

/// One blkdebug `[inject-error]` rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub event: &'static str,
    pub errno: i32,
    pub iotype: Option<&'static str>,
    pub sector: Option<u64>,
    pub once: bool,
}

#[derive(Clone, Debug)]
pub struct Drive {
    /// -drive index: 0/1 primary master/slave, 2/3 secondary.
    pub index: u8,
    pub media: Media,
    /// Image size in bytes; 0 with Cdrom means an empty tray (no file).
    pub size: u64,
    pub werror: Option<&'static str>,
    pub rerror: Option<&'static str>,
    pub rules: Vec<Rule>,
    /// Served as a qcow2 image (made from the raw pattern by qemu-img
    /// convert) instead of raw.
    pub qcow2: bool,
    /// `discard=unmap`: QEMU passes TRIM to the image only with it (we
    /// always do), so TRIM fault scenarios set it.
    pub discard: bool,
}

impl Drive {
    pub fn disk(index: u8) -> Self {
        Drive {
            index,
            media: Media::Disk,
            size: image::DISK_SIZE,
            werror: None,
            rerror: None,
            rules: Vec::new(),
            qcow2: false,
            discard: false,
        }
    }
    pub fn cdrom(index: u8) -> Self {
        Drive {
            index,
            media: Media::Cdrom,
            size: image::CD_SIZE,
            werror: None,
            rerror: None,
            rules: Vec::new(),
            qcow2: false,
            discard: false,
        }
    }
    pub fn empty_cdrom(index: u8) -> Self {
        Drive {
            size: 0,
            ..Drive::cdrom(index)
        }
    }
    pub fn block_size(&self) -> usize {
        match self.media {
            Media::Disk => 512,
            Media::Cdrom => 2048,
        }
    }
    /// QEMU's BlockBackend name for `-drive if=ide,index=N`.
    pub fn qmp_id(&self) -> String {
        let kind = if self.media == Media::Disk {
            "hd"
        } else {
            "cd"
        };
        format!("ide{}-{}{}", self.index / 2, kind, self.index % 2)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub drives: Vec<Drive>,
}

/// A drive and the per-backend image file created for it.
pub type DriveImage = (Drive, PathBuf);

pub struct Instance {
    pub child: Child,
    pub qtest: Qtest,
    pub qmp: Qmp,
    pub images: Vec<DriveImage>,
    pub stderr_path: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 64 KiB BIOS of `hlt` whose reset vector is `cli; hlt; jmp $-3`, so the
/// vCPU never touches the IDE and the qtest client is the only guest.
pub fn halt_bios() -> Vec<u8> {
    let mut bios = vec![0xf4u8; 0x10000];
    bios[0xfff0..0xfff4].copy_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]);
    bios
}

fn rules_text(rules: &[Rule]) -> String {
    let mut text = String::new();
    for rule in rules {
        let _ = writeln!(
            text,
            "[inject-error]\nevent = \"{}\"\nerrno = \"{}\"",
            rule.event, rule.errno
        );
        if let Some(iotype) = rule.iotype {
            let _ = writeln!(text, "iotype = \"{iotype}\"");
        }
        if let Some(sector) = rule.sector {
            let _ = writeln!(text, "sector = \"{sector}\"");
        }
        if rule.once {
            let _ = writeln!(text, "once = \"on\"");
        }
        text.push('\n');
    }
    text
}

/// `raw` converted by qemu-img to a qcow2 image beside it.
fn to_qcow2(raw: &Path) -> Result<PathBuf, String> {
    let qcow2 = raw.with_extension("qcow2");
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(&qcow2)
        .output()
        .map_err(|e| format!("qemu-img (qemu-utils): {e}"))?;
    if !out.status.success() {
        return Err(format!("qemu-img convert: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    std::fs::remove_file(raw).map_err(|e| format!("remove {}: {e}", raw.display()))?;
    Ok(qcow2)
}

/// The argv both backends receive (ours ignores -accel tcg and -bios).
pub fn build_argv(dir: &Path, machine: &Machine) -> Result<(Vec<String>, Vec<DriveImage>), String> {
    let write = |path: &Path, data: &[u8]| {
        std::fs::write(path, data).map_err(|e| format!("write {}: {e}", path.display()))
    };
    let bios = dir.join("halt.bin");
    write(&bios, &halt_bios())?;
    let mut argv: Vec<String> = ["-machine", "pc", "-m", "128", "-accel", "tcg", "-bios"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.push(bios.display().to_string());
    argv.extend(
        ["-nodefaults", "-display", "none", "-qtest", "stdio", "-qmp"]
            .iter()
            .map(|s| s.to_string()),
    );
    argv.push(format!(
        "unix:{},server=on,wait=off",
        dir.join("qmp.sock").display()
    ));
    let mut images = Vec::new();
    for drive in &machine.drives {
        let media = if drive.media == Media::Disk {
            "disk"
        } else {
            "cdrom"
        };
        let mut spec = format!("if=ide,index={},media={media}", drive.index);
        if drive.size > 0 {
            let path = dir.join(format!("drive{}.img", drive.index));
            // Large images get the pattern at the start only and stay sparse.
            let patterned = drive.size.min(image::DISK_SIZE) as usize;
            write(&path, &image::initial_image(patterned, drive.block_size()))?;
            if drive.size > patterned as u64 {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|file| file.set_len(drive.size))
                    .map_err(|e| format!("extend {}: {e}", path.display()))?;
            }
            let (path, format) = if drive.qcow2 { (to_qcow2(&path)?, "qcow2") } else { (path, "raw") };
            let file = if drive.rules.is_empty() {
                path.display().to_string()
            } else {
                let rules = dir.join(format!("blkdebug{}.ini", drive.index));
                write(&rules, rules_text(&drive.rules).as_bytes())?;
                format!("blkdebug:{}:{}", rules.display(), path.display())
            };
            let _ = write!(spec, ",format={format},cache=writeback,file={file}");
            if drive.discard {
                spec.push_str(",discard=unmap");
            }
            images.push((drive.clone(), path));
        }
        if let Some(werror) = drive.werror {
            let _ = write!(spec, ",werror={werror}");
        }
        if let Some(rerror) = drive.rerror {
            let _ = write!(spec, ",rerror={rerror}");
        }
        argv.push("-drive".into());
        argv.push(spec);
    }
    Ok((argv, images))
}

pub fn launch(backend: Backend, machine: &Machine) -> Result<Instance, String> {
    let dir = tempfile::Builder::new()
        .prefix("xen-ioemu-diff-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let (argv, images) = build_argv(dir.path(), machine)?;
    let stderr_path = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).map_err(|e| format!("stderr log: {e}"))?;
    let mut child = Command::new(backend.program())
        .args(&argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| {
            format!(
                "{}: cannot start {}: {e}",
                backend.name(),
                backend.program().display()
            )
        })?;
    let stdin = child.stdin.take().expect("stdin was piped");
    let stdout = child.stdout.take().expect("stdout was piped");
    let qtest = Qtest::new(stdin, stdout);
    let exited = || {
        child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| status.to_string())
    };
    let qmp = match Qmp::connect(
        &dir.path().join("qmp.sock"),
        Duration::from_secs(10),
        exited,
    ) {
        Ok(qmp) => qmp,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            return Err(format!("{}: {e}; stderr: {}", backend.name(), log.trim()));
        }
    };
    Ok(Instance {
        child,
        qtest,
        qmp,
        images,
        stderr_path,
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_bios_resets_into_cli_hlt_loop() {
        let bios = halt_bios();
        assert_eq!(bios.len(), 0x10000);
        assert_eq!(&bios[0xfff0..0xfff4], &[0xfa, 0xf4, 0xeb, 0xfd]);
        assert_eq!(bios[0], 0xf4);
    }

    #[test]
    fn argv_carries_blkdebug_policies_and_images() {
        let dir = tempfile::tempdir().unwrap();
        let rule = Rule {
            event: "write_aio",
            errno: 28,
            iotype: Some("write"),
            sector: Some(702),
            once: true,
        };
        let machine = Machine {
            drives: vec![
                Drive {
                    werror: Some("stop"),
                    rerror: Some("report"),
                    rules: vec![rule],
                    ..Drive::disk(0)
                },
                Drive::empty_cdrom(2),
            ],
        };
        let (argv, images) = build_argv(dir.path(), &machine).unwrap();
        let drives: Vec<&String> = argv
            .iter()
            .skip_while(|a| *a != "-drive")
            .filter(|a| a.starts_with("if=ide"))
            .collect();
        let rules = dir.path().join("blkdebug0.ini");
        let image = dir.path().join("drive0.img");
        assert_eq!(
            drives[0],
            &format!(
                "if=ide,index=0,media=disk,format=raw,cache=writeback,file=blkdebug:{}:{},werror=stop,rerror=report",
                rules.display(),
                image.display()
            )
        );
        assert_eq!(drives[1], "if=ide,index=2,media=cdrom");
        assert_eq!(images.len(), 1);
        assert_eq!(std::fs::metadata(&image).unwrap().len(), image::DISK_SIZE);
        let text = std::fs::read_to_string(rules).unwrap();
        assert_eq!(text, "[inject-error]\nevent = \"write_aio\"\nerrno = \"28\"\niotype = \"write\"\nsector = \"702\"\nonce = \"on\"\n\n");
        assert!(argv.windows(2).any(|w| w[0] == "-qtest" && w[1] == "stdio"));
        assert_eq!(Drive::cdrom(2).qmp_id(), "ide1-cd0");
        assert_eq!(Drive::disk(1).qmp_id(), "ide0-hd1");
    }
}
