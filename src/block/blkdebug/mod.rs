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

mod rules;
#[cfg(test)]
mod tests;

pub use rules::{BlkdebugParseError, BlkdebugRules, InjectRule, IoType, SetStateRule};

use super::{BlockBackend, BlockError, BlockOp, CacheMode};
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

