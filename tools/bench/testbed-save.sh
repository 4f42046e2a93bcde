#!/bin/bash
# testbed-save.sh [--dm-only ours|qemu]: xl save / xl restore / xl migrate
# figures on the nested Xen for xen-ioemu and Debian's QEMU 7.2 in the same
# run, from the save-migrate scenario (tests/xen-scenarios/save-migrate: a
# 2-vCPU, 256 MiB Linux guest writing and fsyncing files on ext4 on our IDE
# disk; 5 saves + restores, 5 local migrations, a checkpoint, a failed
# save). Both testbeds run at once (one per core), so both DMs see the same
# host load. Prints one table of medians (min..max); the logs stay in
# build/bench/testbed-save/<dm>/save-migrate/. Takes ~15-30 min.
# --table: print the table from the logs of the last run only.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/build/bench/testbed-save
which=(ours qemu)
[ "${1:-}" = --dm-only ] && which=("$2")
mkdir -p "$out"
if [ "${1:-}" != --table ]; then
    pids=()
    for dm in "${which[@]}"; do
        args=()
        [ "$dm" = qemu ] && args=(--dm qemu)
        echo "== $(date +%T) save-migrate with $dm"
        "$repo/tools/testbed/run.sh" "${args[@]}" --logs "$out/$dm" save-migrate > "$out-$dm.verdict" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
fi
for dm in "${which[@]}"; do echo "$dm: $(grep -E '^(PASS|FAIL|RECORD) ' "$out-$dm.verdict" || echo 'no verdict')"; done
# stat DM KIND KEY: median (min..max) of "KEY <n> s" / "KEY <n> bytes" over the BENCH KIND lines
stat() {
    sed -n "s/^BENCH $2 *[0-9]*:.* $3 \([0-9.]*\) \(s\|bytes\).*/\1/p" "$out/$1/save-migrate/dom0-script.log" 2>/dev/null |
        sort -n | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "-"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.10g (%.10g..%.10g)", m, v[1], v[NR] }'
}
printf '\n%-40s %22s %22s\n' "median (min..max), $(date +%F), load $(cut -d' ' -f1-3 /proc/loadavg)" xen-ioemu "QEMU 7.2"
row() { printf '%-40s %22s %22s\n' "$1" "$(stat ours "$2" "$3")" "$(stat qemu "$2" "$3")"; }
row "xl save, s" save "xl save"
row "xl restore, s" save "xl restore"
row "guest downtime across save+restore, s" save "guest downtime"
row "xl migrate (localhost), s" migrate "xl migrate"
row "guest downtime across migrate, s" migrate "guest downtime"
row "xl save -c (checkpoint), s" checkpoint "xl save -c"
row "device state (qemu-save.N), bytes" save "(qemu-save.[0-9]*)"
row "save file, bytes" save "save file"
