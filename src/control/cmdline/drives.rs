//! The disks: -drive, -hda.., -cdrom and -device ide-*, placed on the two
//! IDE channels, with their cache mode and werror/rerror/retry-interval
//! from the drive, -global, or the default.

use super::*;

#[derive(Default)]
pub(super) struct RawDrive {
    pub(super) option: String,
    pub(super) opts: OptValue,
}

#[derive(Default)]
pub(super) struct RawDevice {
    pub(super) driver: String,
    pub(super) opts: OptValue,
}

#[derive(Default)]
pub(super) struct PolicyOverride {
    pub(super) werror: Option<ErrorPolicy>,
    pub(super) rerror: Option<ErrorPolicy>,
    pub(super) retry_interval: Option<Duration>,
}

impl Parser {
    pub(super) fn resolve_drives(&mut self, flavour: Flavour) -> Result<Vec<DriveSpec>, ConfigError> {
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

pub(super) fn place(by_slot: &mut [Option<DriveSpec>], option: &str, slot: u8, spec: DriveSpec) -> Result<(), ConfigError> {
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

pub(super) fn explicit_slot(option: &str, index: Option<&str>, bus: Option<&str>, unit: Option<&str>) -> Result<Option<u8>, ConfigError> {
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

pub(super) fn parse_cache(option: &str, value: &str) -> Result<CacheMode, ConfigError> {
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
pub(super) fn parse_policy(label: &str, value: &str, drive_rerror: bool) -> Result<ErrorPolicy, ConfigError> {
    let policy: ErrorPolicy = value.parse().map_err(|source| ConfigError::Policy { option: label.to_string(), source })?;
    if drive_rerror && policy == ErrorPolicy::Enospc {
        return Err(invalid(label, "'enospc' invalid read error action"));
    }
    Ok(policy)
}

pub(super) fn parse_interval(label: &str, value: &str) -> Result<Duration, ConfigError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= 24 * 3600)
        .map(Duration::from_secs)
        .ok_or_else(|| invalid(label, format!("'{value}' is not a number of seconds (0..86400)")))
}
