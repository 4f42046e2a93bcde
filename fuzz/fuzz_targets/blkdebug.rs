//! The blkdebug rules parser (QEMU's config syntax), and the rules it
//! accepts run against a small image. Invariants: the parse is the same
//! twice; a request past the image's end never reaches the image (the
//! block layer's precheck); every I/O error is an injected one (the image
//! itself never fails), at most one injection per request, and with only
//! `once` rules at most one injection per rule.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use xen_ioemu::block::{Blkdebug, BlkdebugRules, BlockBackend, BlockError, CacheMode};
use xen_ioemu_fuzz::{FaultyImage, HostCounters};

const IMAGE: usize = 64 << 10;

#[derive(Debug, Arbitrary)]
enum Req {
    Read { offset: u32, len: u16 },
    Write { offset: u32, len: u16 },
    Flush,
    Discard { offset: u32, len: u32 },
    WriteCache(bool),
}

#[derive(Debug, Arbitrary)]
struct Input {
    rules: String,
    cache: u8,
    requests: Vec<Req>,
}

/// Small offsets mostly, so requests land inside and near the end.
fn offset(o: u32) -> u64 {
    if o & 1 == 0 { (o as u64 >> 1) % (IMAGE as u64 + 4096) } else { o as u64 }
}

fuzz_target!(|input: Input| {
    let Ok(rules) = BlkdebugRules::parse(&input.rules) else { return };
    assert_eq!(Ok(&rules), BlkdebugRules::parse(&input.rules).as_ref(), "the same text parsed twice differently");
    let can_fail = rules.inject.iter().any(|r| r.errno != 0);
    let once_rules = rules.inject.iter().filter(|r| r.once && r.errno != 0).count() as u64;
    let all_once = rules.inject.iter().all(|r| r.once || r.errno == 0);
    let host = Arc::new(HostCounters::default());
    let image = FaultyImage::new(vec![0; IMAGE], false, host.clone());
    let cache = [CacheMode::Writeback, CacheMode::Writethrough, CacheMode::None, CacheMode::Unsafe, CacheMode::Directsync]
        [input.cache as usize % 5];
    let mut debug = Blkdebug::new(Box::new(image), rules).with_cache_mode(cache);
    let mut failed = 0u64;
    let requests = input.requests.len().min(256) as u64;
    for req in input.requests.iter().take(256) {
        let result = match *req {
            Req::Read { offset: o, len } => debug.read_at(offset(o), &mut vec![0; len as usize]),
            Req::Write { offset: o, len } => debug.write_at(offset(o), &vec![0xa5; len as usize]),
            Req::Flush => debug.flush(),
            Req::Discard { offset: o, len } => debug.discard(offset(o), len as u64 % (2 * IMAGE as u64)),
            Req::WriteCache(on) => {
                debug.set_guest_write_cache(on);
                Ok(())
            }
        };
        if let Err(BlockError::Io { .. }) = result {
            assert!(can_fail, "an I/O error with no rule that injects one: {result:?}");
            failed += 1;
        }
        assert_eq!(host.out_of_image.load(Ordering::Relaxed), 0, "{req:?} reached past the image's end");
    }
    let injected = debug.injected_count();
    // An EOPNOTSUPP injected into a discard is a done discard, so
    // injections can outnumber failures, never the reverse.
    assert!(failed <= injected && injected <= requests, "{injected} injections, {failed} failures, {requests} requests");
    if all_once {
        assert!(debug.injected_count() <= once_rules, "{} injections from {once_rules} once-rules", debug.injected_count());
    }
});
