//! From the options seen to a `MachineConfig`: the machine, -global, and
//! the checks that need every option at once; the value parsers the
//! option loop shares.

use super::*;
use super::drives::{parse_interval, parse_policy};

impl Parser {
    pub(super) fn machine_option(&mut self, option: &str, opts: &OptValue) -> Result<(), ConfigError> {
        if let Some(kind) = opts.get("type") {
            match kind {
                "xenfv" | "pc" | "none" | "xenpv" => self.machine = Some(kind.to_string()),
                "help" => return Err(invalid(option, "machines: pc, xenfv, xenpv, none")),
                other if other.starts_with("pc-i440fx") || other.starts_with("xenfv-") => {
                    self.machine = Some(if other.starts_with("xenfv") { "xenfv" } else { "pc" }.to_string())
                }
                other => {
                    return Err(invalid(option, format!("machine '{other}' is not supported (pc, xenfv, xenpv or none)")))
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
    pub(super) fn global_option(&mut self, option: &str, raw: &str) -> Result<(), ConfigError> {
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
        if driver != "ide-hd" && driver != "ide-cd" && driver != "xen-block" {
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

    pub(super) fn finish(mut self) -> Result<MachineConfig, ConfigError> {
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
        let xenpv = self.machine.as_deref() == Some("xenpv");
        if xenpv != self.xen_attach {
            return Err(if xenpv {
                invalid("-machine", "xenpv needs -xen-attach (libxl passes both for a PV or PVH domain)")
            } else {
                invalid("-xen-attach", "only with -machine xenpv (a PV or PVH domain's device model)")
            });
        }
        if xenpv {
            if self.xen_domid.is_none() {
                return Err(invalid("-machine", "xenpv needs -xen-domid N"));
            }
            // A PV or PVH domain has no emulated hardware: what would need
            // it is a configuration libxl never writes.
            if !self.drives.is_empty() || self.devices.iter().any(|d| d.driver.starts_with("ide-")) {
                return Err(invalid("-drive", "-machine xenpv has no IDE controller: PV disks come from xenstore (qdisk)"));
            }
            if self.kernel.is_some() {
                return Err(invalid("-kernel", "-machine xenpv: the domain builder loads a PV or PVH kernel, not the device model"));
            }
        }
        let flavour = if self.qtest.is_some() {
            if !accel_list.is_empty() && !accel_list.iter().any(|a| *a == "qtest" || *a == "tcg") {
                return Err(invalid("-qtest", "needs -accel qtest (or tcg)"));
            }
            Flavour::Qtest
        } else if probe && domid.is_none() {
            Flavour::Probe
        } else if xenpv {
            Flavour::XenPv
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
        let channel_sockets = self.channel_sockets()?;
        let mut unused: Vec<&String> =
            self.chardevs.keys().filter(|id| !self.monitors.contains(id) && !is_channel(id)).collect();
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
        let direct_kernel = match self.kernel.take() {
            Some(kernel) => Some(DirectKernel { kernel, initrd: self.initrd.take(), append: self.append.take().unwrap_or_default() }),
            // As QEMU: these mean nothing without a kernel.
            None if self.initrd.is_some() => return Err(invalid("-initrd", "only allowed with -kernel")),
            None if self.append.is_some() => return Err(invalid("-append", "only allowed with -kernel")),
            None => None,
        };
        let pv = self.globals.get("xen-block");
        let pv_disk_policy = PvDiskPolicy {
            werror: pv.and_then(|g| g.werror).unwrap_or(ErrorPolicy::Enospc),
            rerror: pv.and_then(|g| g.rerror).unwrap_or(ErrorPolicy::Report),
            retry_interval: pv.and_then(|g| g.retry_interval).unwrap_or(Duration::from_secs(5)),
        };
        Ok(MachineConfig {
            pv_disk_policy,
            channel_sockets,
            flavour,
            domid,
            name: self.name,
            ram_mib: self.ram_mib.unwrap_or(128),
            vcpus,
            max_vcpus,
            start_paused: self.start_paused,
            incoming: self.incoming,
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
            sandbox: self.sandbox.unwrap_or(true),
            domid_restrict: self.domid_restrict,
            max_ram_below_4g: self.max_ram_below_4g,
            no_shutdown: self.no_shutdown,
            direct_kernel,
            firmware_dir: self.firmware_dir.unwrap_or_else(|| DEFAULT_FIRMWARE_DIR.into()),
            warnings: self.warnings,
        })
    }
}

/// libxl's chardev for xl `channel=` entry N (libxl_dm.c).
fn is_channel(id: &str) -> bool {
    id.strip_prefix("libxl-channel").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Parser {
    /// The listening sockets of the channel chardevs. A `pty` one needs
    /// nothing here: its console's `output` is "pty", and the console
    /// opens its own, as QEMU's does.
    fn channel_sockets(&self) -> Result<Vec<(String, PathBuf)>, ConfigError> {
        let mut ids: Vec<&String> = self.chardevs.keys().filter(|id| is_channel(id)).collect();
        ids.sort();
        let mut sockets = Vec::new();
        for id in ids {
            let opts = &self.chardevs[id];
            match opts.get("driver") {
                Some("pty") => {}
                Some("socket") => match socket_endpoint("-chardev", opts, "path", id.clone())? {
                    QmpEndpoint::UnixPath { path, .. } => sockets.push((id.clone(), path)),
                    _ => return Err(invalid("-chardev", format!("id={id}: a channel needs a listening socket (path=...,server=on)"))),
                },
                other => {
                    return Err(invalid("-chardev", format!("id={id}: a channel is a pty or a socket, not {}", other.unwrap_or("nothing"))))
                }
            }
        }
        Ok(sockets)
    }
}

pub(super) fn parse_domid(option: &str, raw: &str) -> Result<u32, ConfigError> {
    // DOMID_FIRST_RESERVED (0x7ff0) and up are not guest domains; 0 is dom0.
    raw.parse::<u32>()
        .ok()
        .filter(|d| (1..0x7ff0).contains(d))
        .ok_or_else(|| invalid(option, format!("'{raw}' is not a guest domain id (1..32751)")))
}

pub(super) fn parse_count(option: &str, raw: &str) -> Result<u32, ConfigError> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| (1..=128).contains(n))
        .ok_or_else(|| invalid(option, format!("'{raw}' is not a vCPU count (1..128)")))
}

pub(super) fn parse_serial(option: &str, value: &str) -> Result<SerialSpec, ConfigError> {
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
pub(super) fn check_fds_used_once(qmp: &[QmpEndpoint], n_qmp_options: usize) -> Result<(), ConfigError> {
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

pub(super) fn socket_endpoint(option: &str, opts: &OptValue, path_key: &str, label: String) -> Result<QmpEndpoint, ConfigError> {
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

