//! The blkdebug rules file: QEMU 7.2's `[inject-error]` and `[set-state]`
//! sections, parsed as block/blkdebug.c reads them.

use std::path::Path;

use thiserror::Error;

use crate::block::BlockError;


/// QEMU 7.2's BlkdebugEvent names.
const EVENTS: &[&str] = &[
    "l1_update",
    "l1_grow_alloc_table",
    "l1_grow_write_table",
    "l1_grow_activate_table",
    "l2_load",
    "l2_update",
    "l2_update_compressed",
    "l2_alloc_cow_read",
    "l2_alloc_write",
    "read_aio",
    "read_backing_aio",
    "read_compressed",
    "write_aio",
    "write_compressed",
    "vmstate_load",
    "vmstate_save",
    "cow_read",
    "cow_write",
    "reftable_load",
    "reftable_grow",
    "reftable_update",
    "refblock_load",
    "refblock_update",
    "refblock_update_part",
    "refblock_alloc",
    "refblock_alloc_hookup",
    "refblock_alloc_write",
    "refblock_alloc_write_blocks",
    "refblock_alloc_write_table",
    "refblock_alloc_switch_table",
    "cluster_alloc",
    "cluster_alloc_bytes",
    "cluster_free",
    "flush_to_os",
    "flush_to_disk",
    "pwritev_rmw_head",
    "pwritev_rmw_after_head",
    "pwritev_rmw_tail",
    "pwritev_rmw_after_tail",
    "pwritev",
    "pwritev_zero",
    "pwritev_done",
    "empty_image_prepare",
    "l1_shrink_write_table",
    "l1_shrink_free_l2_clusters",
    "cor_write",
    "cluster_alloc_space",
    "none",
];

/// Events a raw image fires here; rules on any other event never fire.
const FIRED_EVENTS: &[&str] =
    &["read_aio", "write_aio", "pwritev", "pwritev_done", "flush_to_os", "flush_to_disk", "none"];

/// QEMU's BlkdebugIOType, in QEMU's order (bit positions of the mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoType {
    Read,
    Write,
    WriteZeroes,
    Discard,
    Flush,
    BlockStatus,
}

impl IoType {
    pub(super) fn bit(self) -> u8 {
        1 << self as u8
    }

    fn parse(name: &str) -> Option<IoType> {
        Some(match name {
            "read" => IoType::Read,
            "write" => IoType::Write,
            "write-zeroes" => IoType::WriteZeroes,
            "discard" => IoType::Discard,
            "flush" => IoType::Flush,
            "block-status" => IoType::BlockStatus,
            _ => return None,
        })
    }
}

/// QEMU's default when `iotype` is absent: everything but block-status.
pub(super) const DEFAULT_IOTYPE_MASK: u8 = 0b01_1111;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectRule {
    pub event: String,
    /// 0: any state.
    pub state: u64,
    /// 0 never fails a request but still shadows later rules, as in QEMU.
    pub errno: i32,
    /// None: any request.
    pub sector: Option<u64>,
    pub once: bool,
    /// Accepted for QEMU compatibility: every completion here is immediate.
    pub immediately: bool,
    pub iotype_mask: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStateRule {
    pub event: String,
    pub state: u64,
    pub new_state: u64,
}

/// A parsed blkdebug config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkdebugRules {
    pub inject: Vec<InjectRule>,
    pub set_state: Vec<SetStateRule>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BlkdebugParseError {
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("[{section}] rule ending at line {line}: {reason}")]
    Rule { section: &'static str, line: usize, reason: String },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    InjectError,
    SetState,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::InjectError => "inject-error",
            Section::SetState => "set-state",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            Section::InjectError => &["event", "state", "errno", "sector", "once", "immediately", "iotype"],
            Section::SetState => &["event", "state", "new_state"],
        }
    }
}

/// QEMU's QEMU_OPT_NUMBER: unsigned, base prefix allowed (0x, leading 0),
/// a leading '-' negates modulo 2^64 (so "-1" is all ones).
pub(super) fn parse_number(text: &str) -> Option<u64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        u64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<u64>().ok()?
    };
    Some(if negative { value.wrapping_neg() } else { value })
}

/// QEMU's QEMU_OPT_BOOL.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

struct PendingSection {
    kind: Section,
    values: Vec<(String, String)>,
    last_line: usize,
}

impl PendingSection {
    /// QemuOpts returns the last value given for a key.
    fn get(&self, key: &str) -> Option<&str> {
        self.values.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn error(&self, reason: String) -> BlkdebugParseError {
        BlkdebugParseError::Rule { section: self.kind.name(), line: self.last_line, reason }
    }

    fn number(&self, key: &str, default: u64) -> Result<u64, BlkdebugParseError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_number(v).ok_or_else(|| self.error(format!("{key}={v:?} is not a number"))),
        }
    }

    fn boolean(&self, key: &str) -> Result<bool, BlkdebugParseError> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| self.error(format!("{key}={v:?} is not on/off"))),
        }
    }

    fn event(&self) -> Result<String, BlkdebugParseError> {
        let event = self.get("event").ok_or_else(|| self.error("missing event name for rule".into()))?;
        if !EVENTS.contains(&event) {
            return Err(self.error(format!("event={event:?} is not a blkdebug event")));
        }
        if !FIRED_EVENTS.contains(&event) {
            log::warn!("blkdebug: event {event} never happens on a raw image here; its rule will not fire");
        }
        Ok(event.to_string())
    }
}

impl BlkdebugRules {
    /// Parses QEMU's blkdebug config syntax (qemu_config_parse): `[group]`
    /// lines, `key = "value"` lines, `#` comments. Unquoted values are
    /// accepted here; QEMU 7.2 silently mis-reads them (its sscanf keeps the
    /// previous line's value), so rule files shared with QEMU must quote.
    pub fn parse(text: &str) -> Result<BlkdebugRules, BlkdebugParseError> {
        let mut rules = BlkdebugRules::default();
        let mut current: Option<PendingSection> = None;
        for (index, raw_line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw_line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: String| BlkdebugParseError::Syntax { line: line_no, reason };
            if let Some(header) = line.strip_prefix('[') {
                let header =
                    header.strip_suffix(']').ok_or_else(|| syntax(format!("unterminated section header {line:?}")))?;
                // `[group "id"]` names a QemuOpts instance; the id is irrelevant here.
                let group = header.split_whitespace().next().unwrap_or("");
                let kind = match group {
                    "inject-error" => Section::InjectError,
                    "set-state" => Section::SetState,
                    other => {
                        return Err(syntax(format!(
                            "there is no blkdebug section [{other}] (only [inject-error] and [set-state])"
                        )))
                    }
                };
                if let Some(done) = current.take() {
                    rules.add(done)?;
                }
                current = Some(PendingSection { kind, values: Vec::new(), last_line: line_no });
                continue;
            }
            let section = current.as_mut().ok_or_else(|| syntax("option before any [section]".into()))?;
            let (key, value) =
                line.split_once('=').ok_or_else(|| syntax(format!("expected key = \"value\", got {line:?}")))?;
            let key = key.trim();
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(rest) => {
                    rest.strip_suffix('"').ok_or_else(|| syntax(format!("unterminated quote in {line:?}")))?
                }
                None => value,
            };
            if !section.kind.keys().contains(&key) {
                return Err(syntax(format!(
                    "[{}] has no option {key:?} (valid: {})",
                    section.kind.name(),
                    section.kind.keys().join(", ")
                )));
            }
            section.values.push((key.to_string(), value.to_string()));
            section.last_line = line_no;
        }
        if let Some(done) = current.take() {
            rules.add(done)?;
        }
        Ok(rules)
    }

    pub fn from_file(path: &Path) -> Result<BlkdebugRules, BlockError> {
        let open_error = |reason: String| BlockError::Open { path: path.display().to_string(), reason };
        let text =
            std::fs::read_to_string(path).map_err(|e| open_error(format!("cannot read blkdebug config: {e}")))?;
        BlkdebugRules::parse(&text).map_err(|e| open_error(format!("blkdebug config: {e}")))
    }

    fn add(&mut self, section: PendingSection) -> Result<(), BlkdebugParseError> {
        let event = section.event()?;
        let state = section.number("state", 0)?;
        match section.kind {
            Section::InjectError => {
                let errno = section.number("errno", libc::EIO as u64)?;
                if errno > 4095 {
                    return Err(section.error(format!("errno={errno} is not an errno value")));
                }
                let sector = section.number("sector", u64::MAX)?;
                let iotype_mask = match section.get("iotype") {
                    None => DEFAULT_IOTYPE_MASK,
                    Some(name) => IoType::parse(name).map(IoType::bit).ok_or_else(|| {
                        section.error(format!(
                            "iotype={name:?} is not one of read, write, write-zeroes, discard, flush, block-status"
                        ))
                    })?,
                };
                self.inject.push(InjectRule {
                    event,
                    state,
                    errno: errno as i32,
                    sector: (sector != u64::MAX).then_some(sector),
                    once: section.boolean("once")?,
                    immediately: section.boolean("immediately")?,
                    iotype_mask,
                });
            }
            Section::SetState => {
                let new_state = section.number("new_state", 0)?;
                self.set_state.push(SetStateRule { event, state, new_state });
            }
        }
        Ok(())
    }
}

