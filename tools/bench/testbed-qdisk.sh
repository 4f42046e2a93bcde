#!/bin/bash
# testbed-qdisk.sh [--dm-only ours|qemu]: guest dd figures over a qdisk PV
# disk on the nested Xen, for xen-ioemu and Debian's QEMU 7.2 (its
# xen-block), one after the other in the same run, from the qdisk scenario
# (tests/xen-scenarios/qdisk): a 1-vCPU PVHVM guest, O_DIRECT dd bs=1M of
# 16 MiB written to xvdb, then read back through md5sum (the read figure
# includes the guest's md5sum). Prints one table; the logs stay in
# build/bench/testbed-qdisk/<dm>/qdisk/. Takes ~5 min (direct kernel boot).
# Holds the nested Xen for both runs: start it as one testbed job
# (e.g. through a slot semaphore).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/build/bench/testbed-qdisk
which=(ours qemu)
[ "${1:-}" = --dm-only ] && which=("$2")
for dm in "${which[@]}"; do
    args=()
    [ "$dm" = qemu ] && args=(--dm qemu)
    [ "$dm" = ours ] && [ -n "${QDISK_BENCH_DM:-}" ] && args=(--dm "$QDISK_BENCH_DM")
    echo "== $(date +%T) qdisk with $dm"
    "$repo/tools/testbed/run.sh" "${args[@]}" --logs "$out/$dm" qdisk || echo "   ($dm: scenario FAILED, figures below may be missing)"
done
field() { sed -n "s/^BENCH qdisk .* $2=\([0-9.?]*\).*/\1/p" "$out/$1/qdisk/dom0-script.log" 2>/dev/null | head -1; }
boot() { sed -n "s/^BOOT dm .* userspace_s=\([0-9.]*\).*/\1/p" "$out/$1/qdisk/dom0-script.log" 2>/dev/null | head -1; }
printf '\n%-44s %12s %12s\n' "figure ($(date +%F), load $(cut -d' ' -f1-3 /proc/loadavg))" xen-ioemu "QEMU 7.2"
row() { printf '%-44s %12s %12s\n' "$1" "${2:--}" "${3:--}"; }
row "xvdb O_DIRECT write MB/s" "$(field ours write_MBps)" "$(field qemu write_MBps)"
row "xvdb O_DIRECT read (+ md5sum) MB/s" "$(field ours read_MBps)" "$(field qemu read_MBps)"
row "xl create -> guest init, s" "$(boot ours)" "$(boot qemu)"
