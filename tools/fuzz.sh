#!/bin/bash
# Smoke-run (or run longer) the cargo-fuzz targets under fuzz/:
#   tools/fuzz.sh [SECONDS] [TARGET...]
# SECONDS per target (default 25); all targets unless some are named.
# Each target starts from its committed corpus (fuzz/corpus/<target>) and
# writes what it finds to a scratch directory, so a run never changes the
# repository. Every fuzzer runs alone, under nice, with one job. A crash
# fails the script; its input is left in fuzz/artifacts/<target>/.
#
# Needs rustup's nightly toolchain and cargo-fuzz (installed with --locked
# when missing). fuzz/Cargo.lock is checked to be current first, since
# `cargo fuzz build` has no --locked of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-25}
shift || true
all=(ide atapi ioreq qmp argv blkdebug xenstore savestate blkif_ring)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
started=$(date +%s)
stamp() { echo "== fuzz [$(( $(date +%s) - started ))s] $*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    stamp "installing cargo-fuzz"
    nice -n 19 cargo install cargo-fuzz --locked
fi
nice -n 19 cargo +nightly metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
stamp "building the targets (nightly, ASan, debug assertions)"
nice -n 19 cargo +nightly fuzz build --fuzz-dir fuzz
bin=fuzz/target/x86_64-unknown-linux-gnu/release
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
    stamp "$t for ${secs}s"
    # First directory: where new inputs go; the committed corpus is read only.
    if nice -n 19 "$bin/$t" -max_total_time="$secs" -rss_limit_mb=1024 -timeout=30 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" "$scratch/$t" "fuzz/corpus/$t" >"$scratch/$t.log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$scratch/$t.log" | tr '\n' ' '
        echo
    else
        tail -n 40 "$scratch/$t.log"
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    stamp "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
stamp "every target ran clean"
