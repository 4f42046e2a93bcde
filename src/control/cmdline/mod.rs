//! The command line of the three launchers we stand in for: QEMU's qtest
//! client (libqtest), libxl's qemu-xen flavour (incl. the 4.20+ probe run)
//! and libxl's qemu-xen-traditional flavour (qemu-dm).
//!
//! Here: the result types, the errors and the option loop. `finish` turns
//! the options into a `MachineConfig` (and checks that they fit together),
//! `drives` places the disks and applies their policies, `xenstore` reads
//! the traditional flavour's disks.

mod drives;
mod finish;
mod xenstore;

pub use xenstore::{check_backend_path, drives_from_xenstore, BackendPathError, XenstoreProblem, XenstoreRead};
use drives::{PolicyOverride, RawDevice, RawDrive};
use finish::{parse_count, parse_domid, parse_serial, socket_endpoint};

use super::opts::{parse_bool, parse_size, OptValue};
use crate::block::{CacheMode, ErrorPolicy};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// How often a request held by a "stop" policy is retried by itself.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(5);
const MAX_SLOTS: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Qtest,
    QemuXen,
    Traditional,
    /// libxl 4.20+ spawns the DM once with `-machine none` to ask which
    /// options it knows, then quits it.
    Probe,
    /// `-machine xenpv -xen-attach`: a PV or PVH domain's device model,
    /// which serves its qdisk disks only (no ioreq server, no devices).
    XenPv,
}

/// Where the device state of a restore comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// `-incoming fd:N`: the file libxl opened (qemu-resume.<domid>),
    /// read whole before the images are opened.
    Fd(i32),
    /// `-incoming defer`: QMP `xen-load-devices-state` brings it.
    Defer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MachineConfig {
    pub flavour: Flavour,
    pub domid: Option<u32>,
    pub name: Option<String>,
    pub ram_mib: u64,
    pub vcpus: u32,
    pub max_vcpus: u32,
    pub start_paused: bool,
    /// `-incoming`: a restore or the destination of a migration.
    pub incoming: Option<Incoming>,
    pub xen_platform_device: bool,
    pub acpi: bool,
    pub boot_order: String,
    pub drives: Vec<DriveSpec>,
    pub qmp: Vec<QmpEndpoint>,
    pub qtest: Option<QtestEndpoint>,
    pub qtest_log: Option<PathBuf>,
    pub serial: Vec<SerialSpec>,
    pub runas: Option<String>,
    pub chroot: Option<PathBuf>,
    /// `-sandbox on|off`: the seccomp filter (`crate::sandbox`), on unless
    /// turned off.
    pub sandbox: bool,
    pub domid_restrict: bool,
    /// `-machine ...,max-ram-below-4g=` in bytes.
    pub max_ram_below_4g: Option<u64>,
    /// `-no-shutdown`: on guest poweroff stop instead of exiting.
    pub no_shutdown: bool,
    /// `-kernel`/`-initrd`/`-append` (xl `kernel=`/`ramdisk=`/`cmdline=`).
    pub direct_kernel: Option<DirectKernel>,
    /// `-L DIR`: where firmware files (linuxboot_dma.bin) are looked up.
    pub firmware_dir: PathBuf,
    pub warnings: Vec<String>,
    /// `-global xen-block.werror/rerror/retry-interval`: the policy of
    /// every qdisk (PV) disk, which has no -drive of its own.
    pub pv_disk_policy: PvDiskPolicy,
    /// The listening sockets of libxl's `-chardev socket,id=libxl-channelN`
    /// (xl `channel=` with `connection=socket`), as (id, path): the PV
    /// consoles whose xenstore `output` is "chardev:ID" are served on them.
    pub channel_sockets: Vec<(String, PathBuf)>,
}

/// The error policy of the qdisk backend's disks. Defaults as for IDE
/// disks: werror=enospc, rerror=report, a retry every 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvDiskPolicy {
    pub werror: ErrorPolicy,
    pub rerror: ErrorPolicy,
    pub retry_interval: Duration,
}

/// QEMU's data directory on Debian (qemu-system-data), `-L`'s default.
pub const DEFAULT_FIRMWARE_DIR: &str = "/usr/share/qemu";

/// A Linux kernel booted through fw_cfg and the linuxboot option ROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub append: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriveSpec {
    pub id: String,
    /// channel * 2 + unit.
    pub slot: u8,
    pub cdrom: bool,
    /// None: an empty CD-ROM drive.
    pub file: Option<String>,
    pub format: String,
    pub cache: CacheMode,
    pub read_only: bool,
    pub werror: ErrorPolicy,
    pub rerror: ErrorPolicy,
    /// Zero: a held request is retried only on `cont`.
    pub retry_interval: Duration,
    pub serial: Option<String>,
    pub model: Option<String>,
    /// The `-device id=` when the drive was attached with -device.
    pub device_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpEndpoint {
    UnixPath { label: String, path: PathBuf },
    /// A listening socket libxl created and bound (dm_restrict, probe run).
    Fd { label: String, fd: i32 },
    /// A socket someone else listens on (`-chardev socket,path=...` without
    /// server=on, as libqtest starts QEMU): we connect once and serve it.
    Connect { label: String, path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QtestEndpoint {
    Stdio,
    /// The test listens; we connect.
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialSpec {
    Pty,
    Null,
    Stdio,
    File(PathBuf),
    None,
}

// Parsed once at start-up; boxing the config would only complicate callers.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(MachineConfig),
    PrintAndExit { text: String },
}

/// One line each: the option and why it cannot be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0}: unknown option")]
    UnknownOption(String),
    #[error("{0}: requires an argument")]
    MissingArgument(String),
    #[error("{option}: {reason}")]
    Invalid { option: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{option}: {source}")]
    Policy { option: String, source: crate::block::policy::UnknownPolicy },
    #[error("xenstore {path}: {reason}")]
    Xenstore { path: String, reason: XenstoreProblem },
}

fn invalid(option: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { option: option.to_string(), reason: reason.into() }
}

/// Options taking an argument, and the implied key of their value.
fn option_arity(name: &str) -> Option<Option<Option<&'static str>>> {
    // Some(Some(implied)) = takes a value; Some(None) = a flag; None = unknown.
    let with_value = |implied| Some(Some(implied));
    match name {
        "machine" | "M" => with_value(Some("type")),
        "accel" => with_value(Some("accel")),
        "m" => with_value(Some("size")),
        "smp" => with_value(Some("cpus")),
        "boot" => with_value(Some("order")),
        "name" => with_value(Some("guest")),
        "qmp" | "qtest" | "serial" | "monitor" | "parallel" => with_value(Some("path")),
        "vnc" => with_value(Some("vnc")),
        "display" => with_value(Some("type")),
        "sandbox" => with_value(Some("enable")),
        "vga" => with_value(Some("type")),
        "net" | "netdev" | "device" | "chardev" | "audiodev" | "object" | "numa" => {
            with_value(Some("driver"))
        }
        "drive" | "mon" | "global" | "run-with" | "rtc" | "icount" | "smbios" | "fw_cfg" | "msg" => {
            with_value(None)
        }
        "qtest-log" | "cdrom" | "hda" | "hdb" | "hdc" | "hdd" | "bios" | "cpu" | "xen-domid"
        | "d" | "domain-name" | "videoram" | "vcpu_avail" | "vcpus" | "k" | "usbdevice"
        | "soundhw" | "loadvm" | "incoming" | "runas" | "chroot" | "L" | "D" | "kernel"
        | "append" | "initrd" | "pidfile" | "trace" | "uuid"
        | "option-rom" | "overcommit" | "action" | "acpitable" | "spice" => with_value(None),
        "nodefaults" | "no-user-config" | "nographic" | "no-shutdown" | "no-reboot"
        | "no-acpi" | "acpi" | "S" | "xen-domid-restrict" | "usb" | "vncunused"
        | "no-hpet" | "enable-kvm" | "daemonize" | "version" | "h" | "help" | "snapshot"
        | "std-vga" | "localtime" | "full-screen" | "no-fd-bootchk" | "sdl" | "xen-attach" => Some(None),
        _ => None,
    }
}

const USAGE: &str = "usage: xen-ioemu [options]\n\
Xen device model (PIIX3 IDE) speaking libxl's qemu-xen and qemu-xen-traditional command lines, or QEMU's qtest.\n\
  -xen-domid N            serve Xen domain N (qemu-xen flavour)\n\
  -d N                    serve Xen domain N, disks from xenstore (qemu-xen-traditional flavour)\n\
  -accel qtest -qtest stdio|unix:PATH   serve the qtest protocol instead of Xen\n\
  -drive if=ide|none,index=N,media=disk|cdrom,file=PATH,format=raw,cache=MODE,\n\
         readonly=on|off,werror=POLICY,rerror=POLICY,retry-interval=SECONDS\n\
  -device ide-hd|ide-cd,drive=ID,bus=ide.N,unit=M   attach an if=none drive\n\
  -global ide-hd.werror=POLICY  (also rerror, retry-interval; ide-cd likewise)\n\
  -cdrom FILE, -hda..-hdd FILE, -qmp unix:PATH,server=on,wait=off,\n\
  -chardev socket,id=ID,path=PATH|fd=N,server=on,wait=off -mon chardev=ID,mode=control\n\
  -serial pty|null|stdio|file:PATH|none, -S, -m MIB, -smp N,maxcpus=M, -boot order=ORDER\n\
  -sandbox on|off         the per-thread seccomp filter (default on)\n\
POLICY: report|ignore|stop|enospc. Defaults: werror=enospc, rerror=report, retry-interval=5.\n";

/// Parses the device model's arguments (without `argv[0]`).
pub fn parse_args(args: &[String]) -> Result<Command, ConfigError> {
    let mut p = Parser::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(stripped) = arg.strip_prefix('-') else {
            // QEMU takes a lone argument as the first hard disk image.
            p.drives.push(RawDrive {
                option: "hda".into(),
                opts: OptValue::parse(&format!("index=0,media=disk,file={}", escape(arg)), None),
            });
            continue;
        };
        let name = stripped.strip_prefix('-').unwrap_or(stripped);
        let option = format!("-{name}");
        let value = match option_arity(name) {
            None => return Err(ConfigError::UnknownOption(option)),
            Some(None) => None,
            Some(Some(implied)) => {
                let text = args.get(i).ok_or_else(|| ConfigError::MissingArgument(option.clone()))?;
                i += 1;
                Some((text.as_str(), implied))
            }
        };
        if let Some(text) = p.handle(name, &option, value)? {
            return Ok(Command::PrintAndExit { text });
        }
    }
    p.finish().map(Command::Run)
}

fn escape(s: &str) -> String {
    s.replace(',', ",,")
}

#[derive(Default)]
struct Parser {
    /// Every accelerator named by -accel or -machine accel=, in order.
    accels: Vec<String>,
    machine: Option<String>,
    xen_attach: bool,
    xen_domid: Option<u32>,
    trad_domid: Option<u32>,
    name: Option<String>,
    ram_mib: Option<u64>,
    vcpus: Option<u32>,
    max_vcpus: Option<u32>,
    start_paused: bool,
    incoming: Option<Incoming>,
    acpi: Option<bool>,
    boot_order: Option<String>,
    drives: Vec<RawDrive>,
    devices: Vec<RawDevice>,
    globals: HashMap<String, PolicyOverride>,
    chardevs: HashMap<String, OptValue>,
    monitors: Vec<String>,
    qmp: Vec<QmpEndpoint>,
    qtest: Option<QtestEndpoint>,
    qtest_log: Option<PathBuf>,
    serial: Vec<SerialSpec>,
    runas: Option<String>,
    chroot: Option<PathBuf>,
    sandbox: Option<bool>,
    domid_restrict: bool,
    max_ram_below_4g: Option<u64>,
    no_shutdown: bool,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Option<String>,
    firmware_dir: Option<PathBuf>,
    warnings: Vec<String>,
}

impl Parser {
    /// Returns Some(text) for options that print and exit.
    fn handle(
        &mut self,
        name: &str,
        option: &str,
        value: Option<(&str, Option<&'static str>)>,
    ) -> Result<Option<String>, ConfigError> {
        let raw = value.map(|(text, _)| text).unwrap_or("");
        let opts = value.map(|(text, implied)| OptValue::parse(text, implied)).unwrap_or_default();
        match name {
            "version" => {
                return Ok(Some(format!(
                    "QEMU emulator version 7.2.0 (xen-ioemu {})\n",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            "h" | "help" => return Ok(Some(USAGE.to_string())),
            "accel" => {
                let accel = opts.get("accel").unwrap_or("");
                if accel == "help" {
                    return Ok(Some("Accelerators supported in QEMU binary:\nqtest\nxen\n".into()));
                }
                self.accels.push(accel.to_string());
            }
            "machine" | "M" => self.machine_option(option, &opts)?,
            "xen-domid" => self.xen_domid = Some(parse_domid(option, raw)?),
            "d" => match raw.parse::<u64>() {
                Ok(_) => self.trad_domid = Some(parse_domid(option, raw)?),
                // Upstream QEMU's -d takes log items; they have no meaning here.
                Err(_) => self.warnings.push(format!("-d {raw}: QEMU log items are ignored")),
            },
            "name" => self.name = opts.get("guest").map(str::to_string),
            "domain-name" => self.name = Some(raw.to_string()),
            "m" => {
                let size = opts.get("size").ok_or_else(|| invalid(option, "no size given"))?;
                let bytes = parse_size(size, 1 << 20)
                    .filter(|b| *b >= 1 << 20)
                    .ok_or_else(|| invalid(option, format!("'{size}' is not a memory size")))?;
                self.ram_mib = Some(bytes >> 20);
            }
            "smp" => {
                if let Some(cpus) = opts.get("cpus") {
                    self.vcpus = Some(parse_count(option, cpus)?);
                }
                if let Some(max) = opts.get("maxcpus") {
                    self.max_vcpus = Some(parse_count(option, max)?);
                }
            }
            "vcpus" => self.vcpus = Some(parse_count(option, raw)?),
            "vcpu_avail" => {
                let digits = raw.strip_prefix("0x").unwrap_or(raw);
                let mask = u128::from_str_radix(digits, 16)
                    .map_err(|_| invalid(option, format!("'{raw}' is not a hex bitmap")))?;
                if mask == 0 {
                    return Err(invalid(option, "no vCPU is available"));
                }
            }
            "S" => self.start_paused = true,
            "acpi" => self.acpi = Some(true),
            "no-acpi" => self.acpi = Some(false),
            "boot" => {
                let order = opts.get("order").or(opts.get("once")).unwrap_or("");
                if !order.chars().all(|c| matches!(c, 'a'..='p')) {
                    return Err(invalid(option, format!("'{order}' is not a boot order (letters a-p)")));
                }
                self.boot_order = Some(order.to_string());
            }
            "drive" => self.drives.push(RawDrive { option: option.into(), opts }),
            "cdrom" => self.drives.push(RawDrive {
                option: option.into(),
                opts: OptValue::parse(&format!("index=2,media=cdrom,file={}", escape(raw)), None),
            }),
            "hda" | "hdb" | "hdc" | "hdd" => {
                let index = (name.as_bytes()[2] - b'a') as usize;
                self.drives.push(RawDrive {
                    option: option.into(),
                    opts: OptValue::parse(&format!("index={index},media=disk,file={}", escape(raw)), None),
                });
            }
            "device" => {
                let driver = opts.get("driver").unwrap_or("").to_string();
                self.devices.push(RawDevice { driver, opts });
            }
            "global" => self.global_option(option, raw)?,
            "chardev" => {
                let id = opts.get("id").ok_or_else(|| invalid(option, "no id= given"))?.to_string();
                self.chardevs.insert(id, opts);
            }
            "mon" => {
                let chardev = opts.get("chardev").ok_or_else(|| invalid(option, "no chardev= given"))?;
                match opts.get("mode").unwrap_or("readline") {
                    "control" => self.monitors.push(chardev.to_string()),
                    mode => self.warnings.push(format!(
                        "-mon chardev={chardev},mode={mode}: only QMP (mode=control) monitors are served; ignored"
                    )),
                }
            }
            "qmp" => {
                let label = format!("compat_monitor{}", self.qmp.len());
                let endpoint = socket_endpoint(option, &opts, "path", label)?;
                self.qmp.push(endpoint);
            }
            "monitor" => match opts.get("path").unwrap_or("") {
                "none" => {}
                other => self.warnings.push(format!("-monitor {other}: the human monitor is not provided; ignored")),
            },
            "qtest" => {
                let path = opts.get("path").unwrap_or("");
                self.qtest = Some(if path == "stdio" {
                    QtestEndpoint::Stdio
                } else if let Some(p) = path.strip_prefix("unix:") {
                    QtestEndpoint::Unix(PathBuf::from(p))
                } else {
                    return Err(invalid(option, format!("'{path}': only stdio and unix:PATH are supported")));
                });
            }
            "qtest-log" => self.qtest_log = Some(PathBuf::from(raw)),
            "serial" => self.serial.push(parse_serial(option, opts.get("path").unwrap_or(""))?),
            "runas" => self.runas = Some(raw.to_string()),
            // QEMU 9's spelling of -chroot/-runas; not advertised in
            // query-command-line-options, accepted all the same.
            "run-with" => {
                for (key, value) in opts.pairs() {
                    match key.as_str() {
                        "chroot" => self.chroot = Some(PathBuf::from(value)),
                        "user" => self.runas = Some(value.clone()),
                        "async-teardown" => {}
                        other => return Err(invalid(option, format!("{other}=: unknown property"))),
                    }
                }
            }
            "chroot" => self.chroot = Some(PathBuf::from(raw)),
            // QEMU's sub-options choose which groups its filter denies;
            // ours always denies everything a thread does not need.
            "sandbox" => {
                let enable = opts.get("enable").unwrap_or("");
                self.sandbox = Some(parse_bool(enable).ok_or_else(|| invalid(option, format!("'{enable}': give on or off")))?);
            }
            "xen-domid-restrict" => self.domid_restrict = true,
            "no-shutdown" => self.no_shutdown = true,
            "incoming" => {
                self.incoming = Some(match raw {
                    "defer" => Incoming::Defer,
                    other => match other.strip_prefix("fd:").map(str::parse::<i32>) {
                        Some(Ok(fd)) if fd >= 0 => Incoming::Fd(fd),
                        _ => return Err(invalid(option, "only fd:N (a file libxl opened) and defer are supported")),
                    },
                })
            }
            "loadvm" => return Err(invalid(option, "restoring a saved device state is not supported")),
            "daemonize" => {
                return Err(invalid(option, "libxl tracks the device model's pid; it must not daemonize"))
            }
            "snapshot" => return Err(invalid(option, "temporary snapshots are not supported")),
            // libxl passes these for an HVM guest with kernel=/ramdisk=/
            // cmdline= in its config.
            "kernel" => self.kernel = Some(PathBuf::from(raw)),
            "initrd" => self.initrd = Some(PathBuf::from(raw)),
            "append" => self.append = Some(raw.to_string()),
            "L" => self.firmware_dir = Some(PathBuf::from(raw)),
            // libxl's PV/PVH device model: checked against -machine in finish.
            "xen-attach" => self.xen_attach = true,
            "vnc" if opts.get("vnc") != Some("none") => {
                    self.warnings.push(format!("-vnc {raw}: no display is emulated; ignored"));
            }
            "display" if opts.get("type") != Some("none") => {
                    self.warnings.push(format!("-display {raw}: no display is emulated; ignored"));
            }
            "vga" | "std-vga" if name == "std-vga" || opts.get("type") != Some("none") => {
                    self.warnings.push(format!("{option} {raw}: no graphics card is emulated; ignored"));
            }
            "net" | "netdev" if opts.get("driver") != Some("none") => {
                    self.warnings.push(format!("{option} {raw}: no network card is emulated; ignored"));
            }
            "sdl" | "spice" | "full-screen" => {
                self.warnings.push(format!("{option}: no display is emulated; ignored"))
            }
            "acpitable" => self.warnings.push(format!(
                "-acpitable {raw}: extra ACPI tables come from hvmloader's acpi_firmware, not the device model; ignored"
            )),
            "usb" | "usbdevice" => self.warnings.push(format!("{option}: no USB controller is emulated; ignored")),
            "soundhw" | "audiodev" => self.warnings.push(format!("{option} {raw}: no sound card is emulated; ignored")),
            "parallel" if opts.get("path") != Some("none") => {
                    self.warnings.push(format!("-parallel {raw}: no parallel port is emulated; ignored"));
            }
            // Needed by a CPU or by graphics, neither of which is emulated here.
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
pub(crate) mod tests;
