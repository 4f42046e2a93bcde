#!/bin/bash
# Smoke-run (or run longer) the cargo-fuzz targets under fuzz/:
#   tools/fuzz.sh [SECONDS] [TARGET...]
# SECONDS per target (default 25); all targets unless some are named.
# Each target starts from its committed corpus (fuzz/corpus/<target>) and
# writes what it finds to a scratch directory, so a run never changes the
# repository. Every fuzzer runs under nice, with one job, FUZZ_JOBS (2) of
# them at a time. A crash fails the script; its input is left in
# fuzz/artifacts/<target>/.
#
# Needs rustup's nightly toolchain and cargo-fuzz (installed with --locked
# when missing). fuzz/Cargo.lock is checked to be current first, since
# `cargo fuzz build` has no --locked of its own.
#
# Sanitizers: every target is built with debug assertions (overflow checks
# included). ioreq, whose decoder reads guest-shared pages through raw
# pointers, is built with ASan too. The others drive safe Rust only, where
# ASan can find nothing that Rust's own checks miss, and it cost them 5.6x
# (ide: 1,800 against 10,000 inputs per CPU second, 2026-12-04), mostly in
# page faults of its allocator; they run without a sanitizer, and
# libFuzzer's -rss_limit_mb still fails a run whose memory grows without
# bound. qmp ran with ASan until 2026-12-06 (1.8 M inputs): its one
# `unsafe` block takes ownership of a received descriptor, a fault ASan
# cannot see and the target's own check (no descriptor left open after a
# session) does; without ASan it makes 2,438 inputs per second against 629,
# and its memory stays at 33 MB instead of growing with ASan's quarantine.
set -euo pipefail
# The whole script is one brace group, so bash has read all of it before it
# runs any: a long run survives an edit of this file (bash reads a script
# as it goes, and an edit during the campaign of 2026-12-04 broke two
# runs' corpus merges with a syntax error at the shifted offset).
{
cd "$(dirname "$0")/.."
secs=${1:-25}
shift || true
all=(ide atapi ioreq qmp argv blkdebug xenstore savestate blkif_ring)
asan=(ioreq)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
started=$(date +%s)
stamp() { echo "== fuzz [$(( $(date +%s) - started ))s] $*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    stamp "installing cargo-fuzz"
    nice -n 19 cargo install cargo-fuzz --locked
fi
nice -n 19 cargo +nightly metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
stamp "building the targets (nightly, debug assertions; ASan for ${asan[*]})"
nice -n 19 cargo +nightly fuzz build --fuzz-dir fuzz -s none --target-dir fuzz/target-nosan
wants_asan() { [[ " ${asan[*]} " == *" $1 "* ]]; }
for t in "${targets[@]}"; do
    if wants_asan "$t"; then nice -n 19 cargo +nightly fuzz build --fuzz-dir fuzz "$t"; fi
done
bin_of() {
    if wants_asan "$1"; then
        echo fuzz/target/x86_64-unknown-linux-gnu/release
    else
        echo fuzz/target-nosan/x86_64-unknown-linux-gnu/release
    fi
}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# FUZZ_JOBS targets at a time (default 2: the machines have two cores;
# each fuzzer is one process with one job).
jobs=${FUZZ_JOBS:-2}
run_target() {
    local t=$1
    # First directory: where new inputs go; the committed corpus is read only.
    local rc=0
    nice -n 19 "$(bin_of "$t")/$t" -max_total_time="$secs" -rss_limit_mb=1024 -timeout=30 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" "$scratch/$t" "fuzz/corpus/$t" >"$scratch/$t.log" 2>&1 || rc=$?
    echo "$rc" > "$scratch/$t.rc"
}
running=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    stamp "$t for ${secs}s"
    run_target "$t" &
    running=$((running + 1))
done
wait
failed=()
for t in "${targets[@]}"; do
    if [ "$(cat "$scratch/$t.rc")" = 0 ]; then
        echo "$t: $(grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$scratch/$t.log" | tr '\n' ' ')"
    else
        echo "$t: crashed"
        tail -n 40 "$scratch/$t.log"
        failed+=("$t")
    fi
done
# FUZZ_MERGE=1 (long runs): what a run found is merged into the committed
# corpus, minimised (libFuzzer's -merge=1 keeps only inputs that add
# coverage), for a commit.
if [ "${FUZZ_MERGE:-0}" = 1 ] && [ ${#failed[@]} = 0 ]; then
    for t in "${targets[@]}"; do
        before=$(find "fuzz/corpus/$t" -type f | wc -l)
        nice -n 19 "$(bin_of "$t")/$t" -merge=1 -rss_limit_mb=1024 -timeout=30 "fuzz/corpus/$t" "$scratch/$t" >"$scratch/$t.merge.log" 2>&1 \
            || { tail -n 20 "$scratch/$t.merge.log"; failed+=("$t (merge)"); }
        echo "$t: corpus $before -> $(find "fuzz/corpus/$t" -type f | wc -l) files"
    done
fi
if [ ${#failed[@]} -gt 0 ]; then
    stamp "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
stamp "every target ran clean"
exit 0
}
