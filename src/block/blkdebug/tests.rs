use super::*;
use super::rules::{parse_number, DEFAULT_IOTYPE_MASK};
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
