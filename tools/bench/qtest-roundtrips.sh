#!/bin/bash
# qtest round trips/s, 1-sector PIO READ SECTORS/s and 8-sector READ DMA/s,
# for Debian's QEMU 7.2 and for xen-ioemu in the same run (same argv, same
# machine). Knobs: BENCH_ROUNDTRIPS (default 100000), BENCH_SECONDS per
# transfer measurement (default 3), DIFF_QEMU / DIFF_XEN_IOEMU binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo test --release --test differential -- --ignored --exact bench_roundtrips --nocapture 2>&1 \
    | grep -E '^bench |test result'
