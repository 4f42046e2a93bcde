//! Fault injection with QEMU's blkdebug rules, so one fault scenario file
//! drives both QEMU (`file=blkdebug:RULES:IMAGE`) and this device model.
//!
//! Semantics follow QEMU 7.2's block/blkdebug.c. Rules belong to an event.
//! When an event fires, the `[inject-error]` rules for it whose `state`
//! matches (0 = any) replace the set of active rules, and a matching
//! `[set-state]` rule changes the state (initially 1). A request then fails
//! with the errno of the first active rule whose `iotype` includes the
//! request's type and whose `sector` (absent or -1 = any) lies inside the
//! request; flushes only match rules without a sector. A rule with
//! `once = on` is deleted after it fired. Active rules stay active until
//! the next event that has matching inject rules.
//!
//! The events this model fires, as QEMU's raw format over blkdebug does:
//! read: `read_aio`; write: `write_aio`, `pwritev`, then after the write
//! `pwritev_done`; flush: `flush_to_os`, then `flush_to_disk` only if
//! something was written since the last successful flush; `none` once at
//! creation. A write that must be durable at once (guest write cache off,
//! cache=writethrough/directsync) is followed by a flush, as QEMU emulates
//! FUA. With cache=unsafe a flush fires only `flush_to_os` and never checks
//! the rules. Requests past the end or writes to a read-only image are
//! refused before any event, as QEMU's block layer does.

use std::path::Path;

use thiserror::Error;

use super::{BlockBackend, BlockError, BlockOp, CacheMode};

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
    fn bit(self) -> u8 {
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
const DEFAULT_IOTYPE_MASK: u8 = 0b01_1111;

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
fn parse_number(text: &str) -> Option<u64> {
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

/// QEMU's write generations (write_gen/flushed_gen) of the raw format node
/// and of the blkdebug node below it. A flush that finds nothing written
/// since the last successful one skips its flush_to_disk event and the
/// blkdebug rule check, so whether a flush rule fires depends on them.
#[derive(Debug, Default, Clone, Copy)]
struct Generations {
    raw_written: u64,
    raw_flushed: u64,
    debug_written: u64,
    debug_flushed: u64,
}

/// Wraps a backend and fails its requests as the rules say.
pub struct Blkdebug {
    inner: Box<dyn BlockBackend>,
    inject: Vec<Option<InjectRule>>,
    set_state: Vec<SetStateRule>,
    /// Indexes into `inject`, in QEMU's match order.
    active: Vec<usize>,
    state: u64,
    cache: CacheMode,
    generations: Generations,
    fired: u64,
}

impl Blkdebug {
    pub fn new(inner: Box<dyn BlockBackend>, rules: BlkdebugRules) -> Blkdebug {
        let mut debug = Blkdebug {
            inner,
            inject: rules.inject.into_iter().map(Some).collect(),
            set_state: rules.set_state,
            active: Vec::new(),
            state: 1,
            cache: CacheMode::Writeback,
            generations: Generations::default(),
            fired: 0,
        };
        debug.event("none");
        debug
    }

    /// The cache mode of the drive, which decides whether QEMU would flush
    /// after writes (writethrough, directsync) or never (unsafe).
    pub fn with_cache_mode(mut self, cache: CacheMode) -> Blkdebug {
        self.cache = cache;
        self
    }

    /// How many requests an injected error failed.
    pub fn injected_count(&self) -> u64 {
        self.fired
    }

    pub fn state(&self) -> u64 {
        self.state
    }

    fn event(&mut self, name: &str) {
        let current = self.state;
        let applies =
            |rule_event: &str, rule_state: u64| rule_event == name && (rule_state == 0 || rule_state == current);
        let newly_active: Vec<usize> = self
            .inject
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_ref().is_some_and(|r| applies(&r.event, r.state)))
            .map(|(i, _)| i)
            .collect();
        if !newly_active.is_empty() {
            self.active = newly_active;
        }
        // QEMU processes an event's rules newest first and the last one
        // processed wins, so the first matching rule in the file decides.
        if let Some(rule) = self.set_state.iter().find(|r| applies(&r.event, r.state)) {
            self.state = rule.new_state;
        }
    }

    fn check(&mut self, iotype: IoType, op: BlockOp, offset: u64, len: u64) -> Result<(), BlockError> {
        let hit = self.active.iter().position(|&i| {
            let Some(rule) = &self.inject[i] else { return false };
            let covers = match rule.sector {
                None => true,
                Some(sector) => {
                    sector.checked_mul(512).is_some_and(|byte| len != 0 && byte >= offset && byte - offset < len)
                }
            };
            covers && rule.iotype_mask & iotype.bit() != 0
        });
        let Some(position) = hit else { return Ok(()) };
        let index = self.active[position];
        let Some(rule) = &self.inject[index] else { return Ok(()) };
        let errno = rule.errno;
        if errno == 0 {
            return Ok(());
        }
        if rule.once {
            self.active.remove(position);
            self.inject[index] = None;
        }
        self.fired += 1;
        log::debug!("blkdebug: injected errno {errno} into {op} at byte {offset} len {len}");
        Err(BlockError::Io { op, offset, len, errno })
    }

    fn flushes_after_write(&self) -> bool {
        self.cache.syncs_every_write() || !self.inner.guest_write_cache()
    }

    /// QEMU's bdrv_co_flush on the raw node (whose generation is
    /// `raw_generation`) and then on the blkdebug node. `sync_inner` is
    /// false for the flush that emulates FUA after a write, whose data the
    /// inner backend already made durable.
    fn flush_as_qemu(&mut self, raw_generation: u64, sync_inner: bool) -> Result<(), BlockError> {
        self.event("flush_to_os");
        if self.cache == CacheMode::Unsafe {
            return Ok(());
        }
        if self.generations.raw_flushed != raw_generation {
            self.event("flush_to_disk");
        }
        let debug_generation = self.generations.debug_written;
        if self.generations.debug_flushed != debug_generation {
            self.check(IoType::Flush, BlockOp::Flush, 0, 0)?;
            if sync_inner {
                self.inner.flush()?;
            }
            self.generations.debug_flushed = debug_generation;
        }
        self.generations.raw_flushed = raw_generation;
        Ok(())
    }

    /// Requests the block layer refuses before any driver sees them.
    fn precheck(&self, op: BlockOp, offset: u64, len: u64) -> Result<(), BlockError> {
        if op != BlockOp::Read && self.inner.read_only() {
            return Err(BlockError::ReadOnly);
        }
        let size = self.inner.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(BlockError::OutOfRange { op, offset, len, size }),
        }
    }
}

impl BlockBackend for Blkdebug {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.precheck(BlockOp::Read, offset, buf.len() as u64)?;
        self.event("read_aio");
        self.check(IoType::Read, BlockOp::Read, offset, buf.len() as u64)?;
        self.inner.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        let len = data.len() as u64;
        self.precheck(BlockOp::Write, offset, len)?;
        self.event("write_aio");
        self.event("pwritev");
        let written =
            self.check(IoType::Write, BlockOp::Write, offset, len).and_then(|()| self.inner.write_at(offset, data));
        self.event("pwritev_done");
        self.generations.debug_written += 1;
        let result = written.and_then(|()| {
            if !self.flushes_after_write() {
                return Ok(());
            }
            // QEMU emulates FUA with a flush before it counts the write on
            // the raw node; its failure fails the write.
            self.flush_as_qemu(self.generations.raw_written, false).map_err(|e| BlockError::Io {
                op: BlockOp::Write,
                offset,
                len,
                errno: e.errno(),
            })
        });
        self.generations.raw_written += 1;
        result
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.flush_as_qemu(self.generations.raw_written, true)
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.precheck(BlockOp::Discard, offset, len)?;
        // QEMU fires no event for a discard; the rules still active decide.
        // Its block layer treats ENOTSUP from a driver as a done discard.
        let result = match self.check(IoType::Discard, BlockOp::Discard, offset, len) {
            Err(e) if e.errno() == libc::EOPNOTSUPP => Ok(()),
            checked => checked.and_then(|()| self.inner.discard(offset, len)),
        };
        self.generations.debug_written += 1;
        self.generations.raw_written += 1;
        result
    }

    fn set_guest_write_cache(&mut self, enabled: bool) {
        self.inner.set_guest_write_cache(enabled);
    }

    fn guest_write_cache(&self) -> bool {
        self.inner.guest_write_cache()
    }
    fn failed_permanently(&self) -> bool {
        self.inner.failed_permanently()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::mem::MemBackend;

    fn debug(rules: &str) -> Blkdebug {
        Blkdebug::new(Box::new(MemBackend::new(1 << 20)), BlkdebugRules::parse(rules).unwrap())
    }

    #[test]
    fn parses_quoted_and_unquoted_values_comments_and_defaults() {
        let rules = BlkdebugRules::parse(
            "# comment\n\n[inject-error]\nevent = \"write_aio\"\nerrno = \"28\"\niotype = write\nsector = \"500\"\nonce = \"on\"\n\
             [inject-error \"r2\"]\nevent=read_aio\n",
        )
        .unwrap();
        assert_eq!(rules.inject.len(), 2);
        let r = &rules.inject[0];
        assert_eq!((r.errno, r.sector, r.once, r.iotype_mask), (28, Some(500), true, IoType::Write.bit()));
        let d = &rules.inject[1];
        assert_eq!((d.errno, d.sector, d.once, d.state), (libc::EIO, None, false, 0));
        assert_eq!(d.iotype_mask, DEFAULT_IOTYPE_MASK);
    }

    #[test]
    fn numbers_follow_qemu_syntax() {
        assert_eq!(parse_number("-1"), Some(u64::MAX));
        assert_eq!(parse_number("0x1c"), Some(28));
        assert_eq!(parse_number("034"), Some(28));
        assert_eq!(parse_number("28"), Some(28));
        assert_eq!(parse_number("2 8"), None);
        let r = BlkdebugRules::parse("[inject-error]\nevent = \"read_aio\"\nsector = \"-1\"\n").unwrap();
        assert_eq!(r.inject[0].sector, None);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let cases = [
            ("[inject-error]\nerrno = \"5\"\n", "missing event"),
            ("[inject-error]\nevent = \"bogus\"\n", "not a blkdebug event"),
            ("[inject-error]\nevent = \"read_aio\"\ncolour = \"red\"\n", "no option \"colour\""),
            ("[suspend]\nevent = \"read_aio\"\n", "no blkdebug section [suspend]"),
            ("event = \"read_aio\"\n", "before any [section]"),
            ("[inject-error]\nevent = \"read_aio\"\niotype = \"sideways\"\n", "iotype=\"sideways\""),
            ("[inject-error]\nevent = \"read_aio\"\nonce = \"maybe\"\n", "not on/off"),
            ("[inject-error]\nevent = \"read_aio\"\nerrno = \"many\"\n", "errno=\"many\" is not a number"),
            ("[inject-error]\nevent = \"read_aio\"\nerrno = \"\n", "unterminated quote"),
        ];
        for (text, expected) in cases {
            let err = BlkdebugRules::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn write_rule_with_iotype_fails_only_writes_covering_the_sector() {
        let mut d =
            debug("[inject-error]\nevent = \"write_aio\"\nerrno = \"28\"\niotype = \"write\"\nsector = \"500\"\n");
        assert!(d.write_at(499 * 512, &[1; 512]).is_ok());
        assert!(d.write_at(501 * 512, &[1; 512]).is_ok());
        let err = d.write_at(498 * 512, &[1; 2048]).unwrap_err();
        assert_eq!(err, BlockError::Io { op: BlockOp::Write, offset: 498 * 512, len: 2048, errno: libc::ENOSPC });
        // Not once: fires again; reads of the sector are untouched.
        assert!(d.write_at(500 * 512, &[1; 512]).is_err());
        assert!(d.read_at(500 * 512, &mut [0; 512]).is_ok());
        assert_eq!(d.injected_count(), 2);
    }

    #[test]
    fn once_rule_fires_a_single_time_and_the_data_is_untouched() {
        let mut d = debug("[inject-error]\nevent = \"write_aio\"\nonce = \"on\"\n");
        assert_eq!(d.write_at(0, &[9; 512]).unwrap_err().errno(), libc::EIO);
        let mut buf = [0xff; 512];
        d.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, [0; 512], "the failed write must not reach the image");
        d.write_at(0, &[9; 512]).unwrap();
        d.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, [9; 512]);
    }

    #[test]
    fn rule_without_iotype_stays_active_for_other_request_types_as_in_qemu() {
        // The read_aio rule becomes active on the first read and, with the
        // default iotype mask, also fails the following write and flush.
        let mut d = debug("[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\n");
        assert!(d.write_at(0, &[1; 512]).is_ok(), "not active before any read");
        assert!(d.read_at(0, &mut [0; 512]).is_err());
        assert!(d.write_at(0, &[1; 512]).is_err());
        assert!(d.flush().is_err());
    }

    #[test]
    fn flush_rules_fire_on_flush_and_on_writes_with_the_guest_cache_off() {
        let mut d = debug("[inject-error]\nevent = \"flush_to_disk\"\nerrno = \"5\"\niotype = \"flush\"\n");
        d.write_at(0, &[1; 512]).unwrap();
        assert_eq!(d.flush().unwrap_err(), BlockError::Io { op: BlockOp::Flush, offset: 0, len: 0, errno: 5 });
        d.set_guest_write_cache(false);
        let err = d.write_at(512, &[1; 512]).unwrap_err();
        assert_eq!(err, BlockError::Io { op: BlockOp::Write, offset: 512, len: 512, errno: 5 });

        let mut unsafe_mode = debug("[inject-error]\nevent = \"flush_to_disk\"\n").with_cache_mode(CacheMode::Unsafe);
        assert!(unsafe_mode.flush().is_ok(), "cache=unsafe never flushes");
    }

    #[test]
    fn flush_with_nothing_written_since_the_last_flush_checks_no_rule() {
        let mut d =
            debug("[inject-error]\nevent = \"flush_to_os\"\nerrno = \"5\"\niotype = \"flush\"\nonce = \"on\"\n");
        assert!(d.flush().is_ok(), "nothing written yet");
        d.write_at(0, &[1; 512]).unwrap();
        assert!(d.flush().is_err());
        assert!(d.flush().is_ok(), "the once rule is gone and the retry succeeds");
        assert!(d.flush().is_ok());
        assert_eq!(d.injected_count(), 1);
    }

    #[test]
    fn out_of_range_and_read_only_requests_fire_no_event() {
        let mut d = debug("[inject-error]\nevent = \"read_aio\"\nonce = \"on\"\n");
        assert!(matches!(d.read_at(1 << 20, &mut [0; 512]), Err(BlockError::OutOfRange { .. })));
        assert_eq!(d.read_at(0, &mut [0; 512]).unwrap_err().errno(), libc::EIO, "the rule was not used up");
        let mut ro = Blkdebug::new(Box::new(MemBackend::with_data(vec![0; 4096], true)), BlkdebugRules::default());
        assert_eq!(ro.write_at(0, &[0; 512]), Err(BlockError::ReadOnly));
    }

    #[test]
    fn sector_rules_never_match_flushes() {
        let mut d = debug("[inject-error]\nevent = \"flush_to_disk\"\nsector = \"0\"\n");
        assert!(d.flush().is_ok());
    }

    #[test]
    fn states_gate_rules_and_set_state_moves_between_them() {
        // Fail the second write only: the first write moves state 1 -> 2.
        let mut d = debug(
            "[inject-error]\nevent = \"write_aio\"\nstate = \"2\"\nerrno = \"28\"\n\
             [set-state]\nevent = \"write_aio\"\nstate = \"1\"\nnew_state = \"2\"\n",
        );
        assert!(d.write_at(0, &[1; 512]).is_ok());
        assert_eq!(d.state(), 2);
        assert_eq!(d.write_at(0, &[1; 512]).unwrap_err().errno(), libc::ENOSPC);
    }

    #[test]
    fn errno_zero_shadows_later_rules() {
        let mut d =
            debug("[inject-error]\nevent = \"write_aio\"\nerrno = \"0\"\n[inject-error]\nevent = \"write_aio\"\n");
        assert!(d.write_at(0, &[1; 512]).is_ok());
    }

    #[test]
    fn discard_is_checked_against_the_active_rules() {
        let mut d = debug("[inject-error]\nevent = \"write_aio\"\niotype = \"discard\"\nerrno = \"5\"\n");
        assert!(d.discard(0, 4096).is_ok(), "no event yet");
        d.write_at(0, &[0; 512]).unwrap();
        assert_eq!(d.discard(0, 4096).unwrap_err().errno(), 5);
        let mut unsupported = debug("[inject-error]\nevent = \"none\"\niotype = \"discard\"\nerrno = \"95\"\n");
        assert!(unsupported.discard(0, 4096).is_ok(), "EOPNOTSUPP on a discard is not an error");
    }
}
