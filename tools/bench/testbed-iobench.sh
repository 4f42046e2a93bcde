#!/bin/bash
# testbed-iobench.sh [--dm-only ours|qemu | --table]: guest O_DIRECT figures per disk
# path on the nested Xen, for xen-ioemu and Debian's QEMU 7.2, one after the
# other in the same run, from the iobench scenario
# (tests/xen-scenarios/iobench): a 1-vCPU guest booted twice, PVHVM (xvda
# raw on dom0's blkback, the reference; xvdb raw and xvdc qcow2 on the DM's
# qdisk) and emulated (hdb raw, hdc qcow2 on the DM's IDE); on each disk
# tools/guest/diskbench.c: sequential 1 MiB write and read of 16 MiB, 2000
# random 4 KiB writes and reads. Prints one table (MB/s for sequential,
# IOPS for random); logs in build/bench/testbed-iobench/<dm>/iobench/.
# Takes ~15 min. QDISK_BENCH_DM=PATH: our binary.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/build/bench/testbed-iobench
which=(ours qemu)
[ "${1:-}" = --dm-only ] && which=("$2")
# --table: print the table of the last run only
[ "${1:-}" = --table ] && which=()
for dm in ${which[@]+"${which[@]}"}; do
    args=()
    [ "$dm" = qemu ] && args=(--dm qemu)
    [ "$dm" = ours ] && [ -n "${QDISK_BENCH_DM:-}" ] && args=(--dm "$QDISK_BENCH_DM")
    echo "== $(date +%T) iobench with $dm"
    "$repo/tools/testbed/run.sh" "${args[@]}" --logs "$out/$dm" iobench || echo "   ($dm: scenario FAILED, figures below may be missing)"
done
# figure DM BOOT DEV OP FIELD
figure() {
    sed -n "s/^BENCH iobench dm=[a-z-]* boot=$2 dev=$3 op=$4 .*$5=\([0-9.]*\).*/\1/p" \
        "$out/$1/iobench/dom0-script.log" 2>/dev/null | head -1
}
printf '\n%-48s %11s %11s\n' "figure ($(date +%F), load $(cut -d' ' -f1-3 /proc/loadavg))" xen-ioemu "QEMU 7.2"
for path in "pv xvda blkback raw (dom0, not the DM)" "pv xvdb qdisk raw" "pv xvdc qdisk qcow2" \
            "ide sdb IDE raw" "ide sdc IDE qcow2"; do
    read -r boot dev label <<< "$path"
    for op in seqwrite seqread randwrite randread; do
        case $op in seq*) f=MBps unit="MB/s" ;; *) f=iops unit=IOPS ;; esac
        a=$(figure ours "$boot" "$dev" $op $f) b=$(figure qemu "$boot" "$dev" $op $f)
        printf '%-48s %11s %11s\n' "$dev $label $op $unit" "${a:--}" "${b:--}"
    done
done
cpu() { sed -n "s/^BENCH iobench-cpu dm=[a-z-]* boot=$2 .*$3=\([0-9.]*\).*/\1/p" "$out/$1/iobench/dom0-script.log" 2>/dev/null | head -1; }
for boot in pv ide; do
    for f in dm_cpu_s dom0_busy_pct; do
        a=$(cpu ours $boot $f) b=$(cpu qemu $boot $f)
        printf '%-48s %11s %11s\n' "$boot boot, while the figures ran: $f" "${a:--}" "${b:--}"
    done
done
