//! The command line of the three launchers we stand in for: QEMU's qtest
//! client (libqtest), libxl's qemu-xen flavour (incl. the 4.20+ probe run)
//! and libxl's qemu-xen-traditional flavour (qemu-dm).

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
    pub domid_restrict: bool,
    /// `-machine ...,max-ram-below-4g=` in bytes.
    pub max_ram_below_4g: Option<u64>,
    /// `-no-shutdown`: on guest poweroff stop instead of exiting.
    pub no_shutdown: bool,
    pub warnings: Vec<String>,
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
    #[error("xenstore {path}: {reason}")]
    Xenstore { path: String, reason: String },
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
        | "append" | "initrd" | "pidfile" | "trace" | "sandbox" | "xen-attach" | "uuid"
        | "option-rom" | "overcommit" | "action" | "acpitable" | "spice" => with_value(None),
        "nodefaults" | "no-user-config" | "nographic" | "no-shutdown" | "no-reboot"
        | "no-acpi" | "acpi" | "S" | "xen-domid-restrict" | "usb" | "vncunused"
        | "no-hpet" | "enable-kvm" | "daemonize" | "version" | "h" | "help" | "snapshot"
        | "std-vga" | "localtime" | "full-screen" | "no-fd-bootchk" | "sdl" => Some(None),
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
POLICY: report|ignore|stop|enospc. Defaults: werror=enospc, rerror=report, retry-interval=5.\n";

#[derive(Default)]
struct RawDrive {
    option: String,
    opts: OptValue,
}

#[derive(Default)]
struct RawDevice {
    driver: String,
    opts: OptValue,
}

#[derive(Default)]
struct PolicyOverride {
    werror: Option<ErrorPolicy>,
    rerror: Option<ErrorPolicy>,
    retry_interval: Option<Duration>,
}

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
    xen_domid: Option<u32>,
    trad_domid: Option<u32>,
    name: Option<String>,
    ram_mib: Option<u64>,
    vcpus: Option<u32>,
    max_vcpus: Option<u32>,
    start_paused: bool,
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
    domid_restrict: bool,
    max_ram_below_4g: Option<u64>,
    no_shutdown: bool,
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
            "xen-domid-restrict" => self.domid_restrict = true,
            "no-shutdown" => self.no_shutdown = true,
            "incoming" => return Err(invalid(option, "restoring a saved device state is not supported")),
            "loadvm" => return Err(invalid(option, "restoring a saved device state is not supported")),
            "daemonize" => {
                return Err(invalid(option, "libxl tracks the device model's pid; it must not daemonize"))
            }
            "snapshot" => return Err(invalid(option, "temporary snapshots are not supported")),
            // libxl passes these for an HVM guest only with kernel=/ramdisk=/
            // cmdline= in its config; dropping them would boot the disk
            // instead of the kernel the admin asked for.
            "kernel" | "initrd" | "append" => {
                return Err(invalid(option, "direct kernel boot is not supported by xen-ioemu; boot from a disk"))
            }
            "xen-attach" => return Err(invalid(option, "attaching to a running domain is not supported")),
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

    fn machine_option(&mut self, option: &str, opts: &OptValue) -> Result<(), ConfigError> {
        if let Some(kind) = opts.get("type") {
            match kind {
                "xenfv" | "pc" | "none" => self.machine = Some(kind.to_string()),
                "help" => return Err(invalid(option, "machines: pc, xenfv, none")),
                other if other.starts_with("pc-i440fx") || other.starts_with("xenfv-") => {
                    self.machine = Some(if other.starts_with("xenfv") { "xenfv" } else { "pc" }.to_string())
                }
                other => {
                    return Err(invalid(option, format!("machine '{other}' is not supported (pc, xenfv or none)")))
                }
            }
        }
        if let Some(accels) = opts.get("accel") {
            self.accels.extend(accels.split(':').map(str::to_string));
        }
        if let Some(limit) = opts.get("max-ram-below-4g") {
            let bytes = parse_size(limit, 1)
                .filter(|b| *b <= 1 << 32)
                .ok_or_else(|| invalid(option, format!("max-ram-below-4g='{limit}' is not a size up to 4G")))?;
            self.max_ram_below_4g = Some(bytes);
        }
        Ok(())
    }

    /// `-global ide-hd.werror=stop` or `-global driver=ide-hd,property=werror,value=stop`.
    fn global_option(&mut self, option: &str, raw: &str) -> Result<(), ConfigError> {
        let opts = OptValue::parse(raw, None);
        let (driver, property, value) = match (opts.get("driver"), opts.get("property"), opts.get("value")) {
            (Some(d), Some(p), Some(v)) => (d.to_string(), p.to_string(), v.to_string()),
            _ => {
                let (lhs, value) =
                    raw.split_once('=').ok_or_else(|| invalid(option, format!("'{raw}' is not DRIVER.PROPERTY=VALUE")))?;
                let (driver, property) =
                    lhs.split_once('.').ok_or_else(|| invalid(option, format!("'{raw}' is not DRIVER.PROPERTY=VALUE")))?;
                (driver.to_string(), property.to_string(), value.to_string())
            }
        };
        let driver = if driver == "ide-drive" { "ide-hd".to_string() } else { driver };
        if driver != "ide-hd" && driver != "ide-cd" {
            self.warnings.push(format!("-global {raw}: device {driver} is not emulated; ignored"));
            return Ok(());
        }
        let entry = self.globals.entry(driver.clone()).or_default();
        let label = format!("-global {driver}.{property}");
        match property.as_str() {
            "werror" => entry.werror = Some(parse_policy(&label, &value, false)?),
            "rerror" => entry.rerror = Some(parse_policy(&label, &value, false)?),
            "retry-interval" => entry.retry_interval = Some(parse_interval(&label, &value)?),
            _ => self.warnings.push(format!("-global {raw}: property {property} is ignored")),
        }
        Ok(())
    }

    fn finish(mut self) -> Result<MachineConfig, ConfigError> {
        if self.xen_domid.is_some() && self.trad_domid.is_some() {
            return Err(ConfigError::Conflict("-xen-domid and -d: give the domain once".into()));
        }
        let domid = self.xen_domid.or(self.trad_domid);
        let accel_list: Vec<&str> = self.accels.iter().map(String::as_str).collect();
        if domid.is_some() && accel_list.contains(&"qtest") {
            return Err(ConfigError::Conflict(
                "-accel qtest: cannot be combined with -xen-domid/-d (pick Xen or qtest)".into(),
            ));
        }
        if self.qtest.is_some() && domid.is_some() {
            return Err(ConfigError::Conflict("-qtest: cannot be combined with -xen-domid/-d".into()));
        }
        let probe = self.machine.as_deref() == Some("none");
        let flavour = if self.qtest.is_some() {
            if !accel_list.is_empty() && !accel_list.iter().any(|a| *a == "qtest" || *a == "tcg") {
                return Err(invalid("-qtest", "needs -accel qtest (or tcg)"));
            }
            Flavour::Qtest
        } else if probe && domid.is_none() {
            Flavour::Probe
        } else if self.xen_domid.is_some() {
            Flavour::QemuXen
        } else if self.trad_domid.is_some() {
            Flavour::Traditional
        } else {
            return Err(ConfigError::Conflict(
                "no -xen-domid N, -d N or -qtest given: nothing to serve".into(),
            ));
        };
        let others: Vec<String> =
            accel_list.iter().filter(|a| !matches!(**a, "qtest" | "tcg" | "xen")).map(|a| a.to_string()).collect();
        for a in others {
            self.warnings.push(format!("-accel {a}: ignored, this device model only serves Xen or qtest"));
        }
        if flavour == Flavour::Traditional && !self.drives.is_empty() {
            return Err(invalid("-drive", "qemu-xen-traditional (-d) takes its disks from xenstore"));
        }
        let mut qmp = std::mem::take(&mut self.qmp);
        // The first entries come from -qmp, the rest from -chardev + -mon.
        let n_qmp_options = qmp.len();
        let mut unused: Vec<&String> = self.chardevs.keys().filter(|id| !self.monitors.contains(id)).collect();
        unused.sort();
        let unused: Vec<String> =
            unused.into_iter().map(|id| format!("-chardev id={id}: not used by any -mon; ignored")).collect();
        self.warnings.extend(unused);
        for chardev in std::mem::take(&mut self.monitors) {
            let opts = self.chardevs.get(&chardev).ok_or_else(|| {
                invalid("-mon", format!("chardev={chardev} names no -chardev"))
            })?;
            if opts.get("driver") != Some("socket") {
                return Err(invalid("-chardev", format!("id={chardev}: a QMP monitor needs a socket chardev")));
            }
            qmp.push(socket_endpoint("-chardev", opts, "path", chardev.clone())?);
        }
        check_fds_used_once(&qmp, n_qmp_options)?;
        let drives = self.resolve_drives(flavour)?;
        let vcpus = self.vcpus.unwrap_or(1);
        let max_vcpus = self.max_vcpus.unwrap_or(vcpus);
        if max_vcpus < vcpus {
            return Err(invalid("-smp", format!("maxcpus={max_vcpus} is less than cpus={vcpus}")));
        }
        let xen_platform_device = self.machine.as_deref() == Some("xenfv");
        Ok(MachineConfig {
            flavour,
            domid,
            name: self.name,
            ram_mib: self.ram_mib.unwrap_or(128),
            vcpus,
            max_vcpus,
            start_paused: self.start_paused,
            xen_platform_device,
            acpi: self.acpi.unwrap_or(flavour != Flavour::Traditional),
            boot_order: self.boot_order.unwrap_or_else(|| "cad".into()),
            drives,
            qmp,
            qtest: self.qtest,
            qtest_log: self.qtest_log,
            serial: self.serial,
            runas: self.runas,
            chroot: self.chroot,
            domid_restrict: self.domid_restrict,
            max_ram_below_4g: self.max_ram_below_4g,
            no_shutdown: self.no_shutdown,
            warnings: self.warnings,
        })
    }

    fn resolve_drives(&mut self, flavour: Flavour) -> Result<Vec<DriveSpec>, ConfigError> {
        let mut by_slot: Vec<Option<DriveSpec>> = vec![None; MAX_SLOTS as usize];
        let mut unattached: Vec<(DriveSpec, PolicyOverride)> = Vec::new();
        let mut drive_overrides: Vec<PolicyOverride> = vec![PolicyOverride::default(), PolicyOverride::default(), PolicyOverride::default(), PolicyOverride::default()];
        for raw in std::mem::take(&mut self.drives) {
            let opt = raw.option.as_str();
            let o = &raw.opts;
            for key in o.keys() {
                if !matches!(
                    key,
                    "file" | "if" | "index" | "bus" | "unit" | "media" | "format" | "cache" | "readonly"
                        | "read-only" | "werror" | "rerror" | "retry-interval" | "id" | "serial"
                        | "model" | "aio" | "discard" | "detect-zeroes" | "snapshot" | "copy-on-read"
                        | "cache.direct" | "cache.no-flush" | "auto-read-only" | "locking"
                ) {
                    return Err(invalid(opt, format!("{key}=: unknown drive property")));
                }
            }
            let interface = o.get("if").unwrap_or("ide");
            if interface != "ide" && interface != "none" {
                return Err(invalid(opt, format!("if={interface}: only if=ide and if=none are supported")));
            }
            let format = o.get("format").unwrap_or("raw");
            if let Err(e) = format.parse::<crate::block::ImageFormat>() {
                return Err(invalid(opt, e.to_string()));
            }
            if matches!(o.get("snapshot").map(parse_bool), Some(Some(true))) {
                return Err(invalid(opt, "snapshot=on: temporary snapshots are not supported"));
            }
            let cdrom = match o.get("media").unwrap_or("disk") {
                "disk" => false,
                "cdrom" => true,
                other => return Err(invalid(opt, format!("media={other}: must be disk or cdrom"))),
            };
            let cache = match o.get("cache") {
                None => {
                    let direct = o.get("cache.direct").and_then(parse_bool).unwrap_or(false);
                    let no_flush = o.get("cache.no-flush").and_then(parse_bool).unwrap_or(false);
                    match (direct, no_flush) {
                        (false, false) => CacheMode::Writeback,
                        (true, false) => CacheMode::None,
                        (_, true) => CacheMode::Unsafe,
                    }
                }
                Some(c) => parse_cache(opt, c)?,
            };
            let read_only = match o.get("readonly").or(o.get("read-only")) {
                None => false,
                Some(v) => parse_bool(v).ok_or_else(|| invalid(opt, format!("readonly={v}: expected on or off")))?,
            };
            let over = PolicyOverride {
                werror: o.get("werror").map(|v| parse_policy(&format!("{opt} werror"), v, false)).transpose()?,
                rerror: o.get("rerror").map(|v| parse_policy(&format!("{opt} rerror"), v, true)).transpose()?,
                retry_interval: o
                    .get("retry-interval")
                    .map(|v| parse_interval(&format!("{opt} retry-interval"), v))
                    .transpose()?,
            };
            let file = o.get("file").filter(|f| !f.is_empty()).map(str::to_string);
            if file.is_none() && !cdrom && interface == "ide" {
                return Err(invalid(opt, "a hard disk needs file="));
            }
            let spec = DriveSpec {
                id: o.get("id").unwrap_or("").to_string(),
                slot: 0,
                cdrom,
                file,
                format: format.to_string(),
                cache,
                read_only,
                werror: ErrorPolicy::Enospc,
                rerror: ErrorPolicy::Report,
                retry_interval: DEFAULT_RETRY_INTERVAL,
                serial: o.get("serial").map(str::to_string),
                model: o.get("model").map(str::to_string),
                device_id: None,
            };
            if interface == "none" {
                if spec.id.is_empty() {
                    return Err(invalid(opt, "if=none needs id="));
                }
                unattached.push((spec, over));
                continue;
            }
            let slot = explicit_slot(opt, o.get("index"), o.get("bus"), o.get("unit"))?
                .or_else(|| (0..MAX_SLOTS).find(|s| by_slot[*s as usize].is_none()))
                .ok_or_else(|| invalid(opt, "all four IDE slots are taken"))?;
            place(&mut by_slot, opt, slot, spec)?;
            drive_overrides[slot as usize] = over;
        }
        // Device properties, which QEMU lets win over the -drive options.
        let mut device_overrides: Vec<PolicyOverride> = (0..MAX_SLOTS).map(|_| PolicyOverride::default()).collect();
        for device in std::mem::take(&mut self.devices) {
            let driver = device.driver.as_str();
            let o = &device.opts;
            let is_ide = matches!(driver, "ide-hd" | "ide-cd" | "ide-drive");
            if !is_ide {
                if let Some(drive) = o.get("drive") {
                    return Err(invalid(
                        "-device",
                        format!("{driver},drive={drive}: only ide-hd and ide-cd can attach a drive"),
                    ));
                }
                self.warnings.push(format!("-device {driver}: not emulated; ignored"));
                continue;
            }
            let option = format!("-device {driver}");
            let drive_id = o.get("drive").ok_or_else(|| invalid(&option, "no drive= given"))?;
            let at = unattached
                .iter()
                .position(|(d, _)| d.id == drive_id)
                .ok_or_else(|| invalid(&option, format!("drive={drive_id}: no -drive if=none,id={drive_id}")))?;
            let (mut spec, over) = unattached.remove(at);
            let cdrom = driver == "ide-cd";
            if spec.cdrom != cdrom && o.get("drive").is_some() && spec.cdrom {
                return Err(invalid(&option, format!("drive={drive_id} is media=cdrom; use ide-cd")));
            }
            spec.cdrom = cdrom;
            if !cdrom && spec.file.is_none() {
                return Err(invalid(&option, format!("drive={drive_id}: a hard disk needs file=")));
            }
            spec.device_id = o.get("id").map(str::to_string);
            if let Some(serial) = o.get("serial") {
                spec.serial = Some(serial.to_string());
            }
            if let Some(model) = o.get("model") {
                spec.model = Some(model.to_string());
            }
            let (bus, unit) = (o.get("bus"), o.get("unit"));
            let bus_number = match bus {
                None => None,
                Some(b) => Some(
                    b.strip_prefix("ide.")
                        .and_then(|n| n.parse::<u8>().ok())
                        .filter(|n| *n < 2)
                        .ok_or_else(|| invalid(&option, format!("bus={b}: only ide.0 and ide.1 exist")))?,
                ),
            };
            let slot = match (bus_number, unit) {
                (b, Some(u)) => {
                    let unit: u8 = u
                        .parse()
                        .ok()
                        .filter(|u| *u < 2)
                        .ok_or_else(|| invalid(&option, format!("unit={u}: an IDE bus has units 0 and 1")))?;
                    b.unwrap_or(0) * 2 + unit
                }
                (Some(b), None) => (b * 2..b * 2 + 2)
                    .find(|s| by_slot[*s as usize].is_none())
                    .ok_or_else(|| invalid(&option, format!("bus=ide.{b} is full")))?,
                (None, None) => (0..MAX_SLOTS)
                    .find(|s| by_slot[*s as usize].is_none())
                    .ok_or_else(|| invalid(&option, "all four IDE slots are taken"))?,
            };
            place(&mut by_slot, &option, slot, spec)?;
            drive_overrides[slot as usize] = over;
            device_overrides[slot as usize] = PolicyOverride {
                werror: o.get("werror").map(|v| parse_policy(&format!("{option} werror"), v, false)).transpose()?,
                rerror: o.get("rerror").map(|v| parse_policy(&format!("{option} rerror"), v, false)).transpose()?,
                retry_interval: o
                    .get("retry-interval")
                    .map(|v| parse_interval(&format!("{option} retry-interval"), v))
                    .transpose()?,
            };
        }
        for (spec, _) in unattached {
            self.warnings.push(format!("-drive id={}: not attached to any -device; ignored", spec.id));
        }
        let mut drives = Vec::new();
        for (slot, entry) in by_slot.into_iter().enumerate() {
            let Some(mut spec) = entry else { continue };
            spec.slot = slot as u8;
            let kind = if spec.cdrom { "cd" } else { "hd" };
            if spec.id.is_empty() {
                spec.id = format!("ide{}-{}{}", slot / 2, kind, slot % 2);
            }
            if spec.cdrom {
                spec.read_only = true;
            }
            // A writable VMDK would fail every guest write: refuse it now.
            if let Err(e) = crate::block::ImageFormat::check(&spec.format, spec.read_only) {
                return Err(invalid("-drive", format!("{}: {e}", spec.id)));
            }
            if !spec.cdrom && spec.read_only {
                let why = if flavour == Flavour::QemuXen {
                    "qemu-xen doesn't support read-only IDE disks"
                } else {
                    "an IDE hard disk cannot be read-only (use media=cdrom)"
                };
                return Err(invalid("-drive", format!("{}: {why}", spec.id)));
            }
            let global = self.globals.get(if spec.cdrom { "ide-cd" } else { "ide-hd" });
            let layers = [Some(&device_overrides[slot]), global, Some(&drive_overrides[slot])];
            let first = |pick: &dyn Fn(&PolicyOverride) -> Option<ErrorPolicy>| {
                layers.iter().flatten().find_map(|l| pick(l))
            };
            spec.werror = first(&|l| l.werror).unwrap_or(ErrorPolicy::Enospc);
            spec.rerror = first(&|l| l.rerror).unwrap_or(ErrorPolicy::Report);
            spec.retry_interval =
                layers.iter().flatten().find_map(|l| l.retry_interval).unwrap_or(DEFAULT_RETRY_INTERVAL);
            drives.push(spec);
        }
        let mut seen = std::collections::HashSet::new();
        for d in &drives {
            if !seen.insert(d.id.clone()) {
                return Err(invalid("-drive", format!("id={}: used twice", d.id)));
            }
        }
        Ok(drives)
    }
}

fn place(by_slot: &mut [Option<DriveSpec>], option: &str, slot: u8, spec: DriveSpec) -> Result<(), ConfigError> {
    let entry = by_slot
        .get_mut(slot as usize)
        .ok_or_else(|| invalid(option, format!("slot {slot} is beyond ide.1 unit 1")))?;
    if entry.is_some() {
        return Err(invalid(
            option,
            format!("ide.{} unit {} already holds a drive", slot / 2, slot % 2),
        ));
    }
    *entry = Some(spec);
    Ok(())
}

fn explicit_slot(option: &str, index: Option<&str>, bus: Option<&str>, unit: Option<&str>) -> Result<Option<u8>, ConfigError> {
    let number = |key: &str, v: &str| {
        v.parse::<u32>().map_err(|_| invalid(option, format!("{key}={v}: not a number")))
    };
    let beyond = |what: String| invalid(option, format!("{what} is beyond ide.1 unit 1"));
    if let Some(index) = index {
        if bus.is_some() || unit.is_some() {
            return Err(invalid(option, "index= cannot be combined with bus= or unit="));
        }
        let n = number("index", index)?;
        return if n < MAX_SLOTS as u32 { Ok(Some(n as u8)) } else { Err(beyond(format!("index={n}"))) };
    }
    match (bus, unit) {
        (None, None) => Ok(None),
        (b, u) => {
            let b = b.map(|v| number("bus", v)).transpose()?.unwrap_or(0);
            let u = u.map(|v| number("unit", v)).transpose()?.unwrap_or(0);
            if b > 1 || u > 1 {
                return Err(beyond(format!("bus={b},unit={u}")));
            }
            Ok(Some((b * 2 + u) as u8))
        }
    }
}

fn parse_domid(option: &str, raw: &str) -> Result<u32, ConfigError> {
    // DOMID_FIRST_RESERVED (0x7ff0) and up are not guest domains; 0 is dom0.
    raw.parse::<u32>()
        .ok()
        .filter(|d| (1..0x7ff0).contains(d))
        .ok_or_else(|| invalid(option, format!("'{raw}' is not a guest domain id (1..32751)")))
}

fn parse_count(option: &str, raw: &str) -> Result<u32, ConfigError> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| (1..=128).contains(n))
        .ok_or_else(|| invalid(option, format!("'{raw}' is not a vCPU count (1..128)")))
}

fn parse_cache(option: &str, value: &str) -> Result<CacheMode, ConfigError> {
    Ok(match value {
        "writeback" => CacheMode::Writeback,
        "writethrough" => CacheMode::Writethrough,
        "none" | "off" => CacheMode::None,
        "directsync" => CacheMode::Directsync,
        "unsafe" => CacheMode::Unsafe,
        other => {
            return Err(invalid(
                option,
                format!("cache={other}: not one of writeback, writethrough, none, directsync, unsafe"),
            ))
        }
    })
}

/// `drive_rerror`: QEMU refuses enospc in -drive rerror= but takes it as a
/// device property (-device/-global), where a read failing with ENOSPC stops.
fn parse_policy(label: &str, value: &str, drive_rerror: bool) -> Result<ErrorPolicy, ConfigError> {
    let policy: ErrorPolicy = value.parse().map_err(|reason: String| invalid(label, reason))?;
    if drive_rerror && policy == ErrorPolicy::Enospc {
        return Err(invalid(label, "'enospc' invalid read error action"));
    }
    Ok(policy)
}

fn parse_interval(label: &str, value: &str) -> Result<Duration, ConfigError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= 24 * 3600)
        .map(Duration::from_secs)
        .ok_or_else(|| invalid(label, format!("'{value}' is not a number of seconds (0..86400)")))
}

fn parse_serial(option: &str, value: &str) -> Result<SerialSpec, ConfigError> {
    Ok(match value {
        "pty" => SerialSpec::Pty,
        "null" => SerialSpec::Null,
        "stdio" => SerialSpec::Stdio,
        "none" => SerialSpec::None,
        other => match other.strip_prefix("file:") {
            Some(path) if !path.is_empty() => SerialSpec::File(PathBuf::from(path)),
            _ => {
                return Err(invalid(option, format!("'{other}': only pty, null, stdio, file:PATH and none are supported")))
            }
        },
    })
}

/// Each inherited descriptor is adopted (and closed at exit) by the one
/// endpoint naming it: a second user would close it twice, the second time
/// perhaps a descriptor since reused for something else.
fn check_fds_used_once(qmp: &[QmpEndpoint], n_qmp_options: usize) -> Result<(), ConfigError> {
    let mut owners: HashMap<i32, String> = HashMap::new();
    for (i, endpoint) in qmp.iter().enumerate() {
        let QmpEndpoint::Fd { label, fd } = endpoint else { continue };
        let (option, who) = if i < n_qmp_options {
            ("-qmp", "-qmp".to_string())
        } else {
            ("-chardev", format!("-chardev id={label}"))
        };
        if let Some(first) = owners.get(fd) {
            return Err(invalid(option, format!("fd={fd} is already used by {first}; each descriptor can serve one monitor")));
        }
        owners.insert(*fd, who);
    }
    Ok(())
}

fn socket_endpoint(option: &str, opts: &OptValue, path_key: &str, label: String) -> Result<QmpEndpoint, ConfigError> {
    let server = match opts.get("server") {
        Some(v) => parse_bool(v).ok_or_else(|| invalid(option, format!("server={v}: not on or off")))?,
        // QEMU: a -chardev socket without server=on connects; -qmp unix:PATH
        // is kept as a listener, the form every QMP client here uses.
        None => opts.get("fd").is_some() || option != "-chardev",
    };
    if let Some(wait) = opts.get("wait") {
        if parse_bool(wait) != Some(false) {
            return Err(invalid(option, "wait=on is not supported (use wait=off)"));
        }
    }
    if let Some(fd) = opts.get("fd") {
        let fd = fd
            .parse::<i32>()
            .ok()
            .filter(|fd| *fd > 2)
            .ok_or_else(|| invalid(option, format!("fd={fd}: not an inherited descriptor number")))?;
        return Ok(QmpEndpoint::Fd { label, fd });
    }
    let path = opts.get(path_key).ok_or_else(|| invalid(option, "no path= or fd= given"))?;
    let path = path.strip_prefix("unix:").unwrap_or(path);
    if path.is_empty() || path.starts_with("tcp:") || path.starts_with("stdio") {
        return Err(invalid(option, format!("'{path}': only unix sockets are supported")));
    }
    if server {
        Ok(QmpEndpoint::UnixPath { label, path: PathBuf::from(path) })
    } else {
        Ok(QmpEndpoint::Connect { label, path: PathBuf::from(path) })
    }
}

/// Why a frontend's `backend` node is not the one libxl writes.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackendPathError {
    #[error("is not under /local/domain/0/backend/")]
    NotDom0,
    #[error("is not a vbd/tap/qdisk/vbd3 backend")]
    Kind,
    #[error("belongs to another domain")]
    Domain,
    #[error("belongs to another device")]
    Device,
}

/// libxl puts every disk backend a dom0 device model can open at
/// /local/domain/0/backend/<kind>/<domid>/<devid> (libxl__device_backend_path
/// with backend_domid 0); qemu-dm compared it with that path too.
pub fn check_backend_path(backend: &str, domid: u32, devid: &str) -> Result<(), BackendPathError> {
    let rest = backend.strip_prefix("/local/domain/0/backend/").ok_or(BackendPathError::NotDom0)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [kind, dom, dev] = parts[..] else { return Err(BackendPathError::Device) };
    if !["vbd", "tap", "qdisk", "vbd3"].contains(&kind) {
        return Err(BackendPathError::Kind);
    }
    if dom != domid.to_string() {
        return Err(BackendPathError::Domain);
    }
    if dev != devid {
        return Err(BackendPathError::Device);
    }
    Ok(())
}

/// Read access to xenstore, as the Xen front provides it.
pub trait XenstoreRead {
    fn read(&self, path: &str) -> Option<String>;
    fn directory(&self, path: &str) -> Vec<String>;
}

/// The emulated disks of a qemu-xen-traditional domain, found the way
/// qemu-dm found them: each vbd frontend, its backend (which must point
/// back), the backend's dev/params/type/mode and the frontend's device-type.
pub fn drives_from_xenstore(store: &dyn XenstoreRead, domid: u32) -> Result<Vec<DriveSpec>, ConfigError> {
    let vbd_dir = format!("/local/domain/{domid}/device/vbd");
    let mut by_slot: Vec<Option<DriveSpec>> = vec![None; MAX_SLOTS as usize];
    let xs_err = |path: &str, reason: String| ConfigError::Xenstore { path: path.to_string(), reason };
    for devid in store.directory(&vbd_dir) {
        let frontend = format!("{vbd_dir}/{devid}");
        let backend_key = format!("{frontend}/backend");
        let backend = store.read(&backend_key).ok_or_else(|| xs_err(&backend_key, "missing".into()))?;
        // The frontend area is the guest's to write: a `backend` it forged
        // could name any node (its own data/ area with params= of a dom0
        // disk). Only the exact path libxl writes is followed.
        if let Err(e) = check_backend_path(&backend, domid, &devid) {
            log::warn!("xenstore {backend_key}: '{backend}' {e}; disk {devid} skipped");
            continue;
        }
        let back_frontend_key = format!("{backend}/frontend");
        if store.read(&back_frontend_key).as_deref() != Some(frontend.as_str()) {
            return Err(xs_err(&back_frontend_key, format!("does not point back to {frontend}")));
        }
        let dev_key = format!("{backend}/dev");
        let dev = store.read(&dev_key).ok_or_else(|| xs_err(&dev_key, "missing".into()))?;
        let dev = dev.split(':').next().unwrap_or("");
        // Only hda..hdd are IDE; xvd*/sd* disks are PV-only for this guest.
        let slot = match dev.as_bytes() {
            [b'h', b'd', letter @ b'a'..=b'd'] => letter - b'a',
            _ => continue,
        };
        let params_key = format!("{backend}/params");
        let mut params = store.read(&params_key).unwrap_or_default();
        let mut format = "raw";
        loop {
            let lower = params.to_ascii_lowercase();
            if let Some(rest) = ["tap2:", "tap:", "aio:", "raw:", "qdisk:", "file:"]
                .iter()
                .find_map(|p| lower.starts_with(p).then(|| params[p.len()..].to_string()))
            {
                params = rest;
                continue;
            }
            if lower.starts_with("qcow2:") {
                params = params["qcow2:".len()..].to_string();
                format = "qcow2";
                continue;
            }
            if let Some(fmt) = ["qcow:", "vhd:", "vmdk:", "qed:"].iter().find(|p| lower.starts_with(**p)) {
                return Err(xs_err(&params_key, format!("format {} is not supported, only raw and qcow2", fmt.trim_end_matches(':'))));
            }
            break;
        }
        let kind = store.read(&format!("{backend}/type")).unwrap_or_default();
        // qemu-dm's rule for bare device names ("loop3"); blkdebug: specs
        // (host error injection under test) name their files themselves.
        if kind == "phy" && !params.is_empty() && !params.starts_with('/') && !params.starts_with("blkdebug:") {
            params = format!("/dev/{params}");
        }
        let mode_key = format!("{backend}/mode");
        let read_only = match store.read(&mode_key).as_deref() {
            Some("r") => true,
            Some("w") | None => false,
            Some(other) => return Err(xs_err(&mode_key, format!("'{other}' is neither r nor w"))),
        };
        let cdrom = store.read(&format!("{frontend}/device-type")).as_deref() == Some("cdrom");
        if !cdrom && params.is_empty() {
            return Err(xs_err(&params_key, format!("hard disk {dev} has no image")));
        }
        let spec = DriveSpec {
            id: format!("ide{}-{}{}", slot / 2, if cdrom { "cd" } else { "hd" }, slot % 2),
            slot,
            cdrom,
            file: (!params.is_empty()).then_some(params),
            format: format.into(),
            cache: CacheMode::Writeback,
            read_only: read_only || cdrom,
            werror: ErrorPolicy::Report,
            rerror: ErrorPolicy::Report,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            serial: None,
            model: None,
            device_id: None,
        };
        place(&mut by_slot, &format!("xenstore {frontend}"), slot, spec)?;
    }
    Ok(by_slot.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests;
