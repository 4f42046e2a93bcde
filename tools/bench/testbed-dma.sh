#!/bin/bash
# testbed-dma.sh [--dm-only ours|qemu]: guest DMA figures on the nested Xen
# for xen-ioemu and Debian's QEMU 7.2 (qemu-system-xen as the qemu-xen DM),
# one after the other in the same run, from the two-disk scenario
# (tests/xen-scenarios/two-disk): a 1-vCPU Linux guest, O_DIRECT dd bs=1M of
# 32 MiB on one disk, then on two disks on two channels at once, with a busy
# loop beside each dd. Prints one table; the logs stay in
# build/bench/testbed-dma/<dm>/two-disk/. Takes ~12 min (two guest boots by
# SeaBIOS INT13 under TCG). Env: TESTBED_SMP as for tools/testbed/run.sh.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/build/bench/testbed-dma
which=(ours qemu)
[ "${1:-}" = --dm-only ] && which=("$2")
for dm in "${which[@]}"; do
    args=()
    [ "$dm" = qemu ] && args=(--dm qemu)
    echo "== $(date +%T) two-disk with $dm"
    "$repo/tools/testbed/run.sh" "${args[@]}" --logs "$out/$dm" two-disk || echo "   ($dm: scenario FAILED, figures below may be missing)"
done
field() { # field DM PHASE DIR KEY
    sed -n "s/^BENCH guest $2 $3 .* $4=\([0-9.]*\).*/\1/p" "$out/$1/two-disk/dom0-script.log" 2>/dev/null | head -1
}
dmfig() { sed -n "s/^BENCH dm .* $2=\([0-9.]*[ kB]*\).*/\1/p" "$out/$1/two-disk/dom0-script.log" 2>/dev/null | head -1; }
printf '\n%-44s %12s %12s\n' "figure ($(date +%F), load $(cut -d' ' -f1-3 /proc/loadavg))" xen-ioemu "QEMU 7.2"
row() { printf '%-44s %12s %12s\n' "$1" "${2:--}" "${3:--}"; }
for p in "one-disk write" "one-disk read" "all-disks write" "all-disks read"; do
    set -- $p
    row "$p MB/s" "$(field ours "$1" "$2" MBps)" "$(field qemu "$1" "$2" MBps)"
    row "$p: busy loop, % of idle" "$(field ours "$1" "$2" busy)" "$(field qemu "$1" "$2" busy)"
done
row "DM CPU s, boot to the guest's init" "$(dmfig ours cpu_boot_s)" "$(dmfig qemu cpu_boot_s)"
row "DM CPU s per GiB of guest DMA" "$(dmfig ours cpu_s_per_GiB)" "$(dmfig qemu cpu_s_per_GiB)"
row "DM VmHWM" "$(dmfig ours VmHWM)" "$(dmfig qemu VmHWM)"
