#!/bin/bash
# The main job: the disk-full story on a real Xen with xen-ioemu as libxl's
# device model, told from the logs the testbed collects.
#
#   1. werror=report: a Linux guest writes to a disk whose image lives on an
#      8 MiB tmpfs in dom0; the host filesystem fills, and the guest is told
#      (libata's ABRT lines), while dom0's syslog audits every error.
#   2. werror=enospc (hold): the same write is held instead; the guest sees
#      a slow disk, dom0 grows the filesystem, the write completes by itself
#      and the guest's checksums verify.
#
# Needs root on Debian bookworm; installs what it needs (tools/install-deps.sh).
# Takes about 3-4 minutes (Xen and the guest run under QEMU/TCG): 3 min 1 s
# from a fresh clone on 2026-12-04, with the Debian packages already there.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=build/testbed/logs
started=$(date +%s)
elapsed() { echo "$(( $(date +%s) - started ))s"; }
say() { printf '\n\033[1m== [%s] %s\033[0m\n' "$(elapsed)" "$*"; }
# run_scenario NAME: tools/testbed/run.sh NAME, with a line every 20 s
# (elapsed time and the scenario's latest milestone on the console), so
# that no minute passes in silence; prints the verdict line.
run_scenario() {
    local name=$1 out="$LOGS/demo-$1.out" pid last rc
    mkdir -p "$LOGS"
    tools/testbed/run.sh "$name" > "$out" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 20
        kill -0 "$pid" 2>/dev/null || break
        last=$(grep -aE 'SCENARIO\[|GUEST: |Booting from|Linux version|failed command|TESTBED-DOM0' \
            "$LOGS/$name/console.log" 2>/dev/null | tail -n 1 | sed -E 's/^\[ *[0-9.]+\] //' | cut -c1-160)
        printf '    [%s] %s running: %s\n' "$(elapsed)" "$name" "${last:-booting Xen under QEMU/TCG}"
    done
    wait "$pid"; rc=$?
    grep -E '^(PASS|FAIL) ' "$out"
    return $rc
}
show() { # show FILE PATTERN [MAX]
    grep -a -m "${3:-6}" -E "$2" "$1" 2>/dev/null | sed -E 's/^\[ *[0-9.]+\] //; s/^/    /' | cut -c1-220
}

say "Setting up: Debian packages (tools/install-deps.sh)"
tools/install-deps.sh >/dev/null || exit 1
say "Setting up: release build (cargo build --release)"
cargo build --release --locked >/dev/null 2>&1 || { cargo build --release --locked; exit 1; }

say "Booting Debian's Xen 4.17 under QEMU/TCG; the guest's data disk is on a small dom0 filesystem, werror=report"
run_scenario disk-full-report
report=$?
L=$LOGS/disk-full-report
say "Xen booted"
show "$L/xen-boot.log" 'Xen version|HVM: SVM enabled|Hardware Assisted Paging' 3
say "xen-ioemu is the device model; the guest boots from our IDE disk"
show "$L/xen-qemu-dm-disk-full-report.log" 'reported running|serving domain' 2
show "$L/guest-lines.log" 'ata0-0: QEMU HARDDISK|Booting from Hard Disk|ata1.00: ATA-7|ata1.01: configured|GUEST: init running' 6
say "The host filesystem under the image is full"
show "$L/dom0-script.log" 'data fs:' 1
say "The guest is told: its kernel's ATA abort lines"
show "$L/guest-lines.log" 'failed command: WRITE DMA|res 41/04|status: \{ DRDY ERR \}|error: \{ ABRT \}|I/O error, dev sdb' 8
say "dom0's syslog: our audit lines"
show "$L/syslog.log" 'io-error domid=' 3

say "The same write with the hold policy (werror=enospc)"
run_scenario disk-full-hold
hold=$?
L=$LOGS/disk-full-hold
show "$L/dom0-script.log" 'data fs:|guest is held|freed space|held write completed' 6
show "$L/syslog.log" 'io-error domid=|retrying held' 3
say "Recovery: the guest's data verified, nothing lost"
show "$L/guest-lines.log" 'GUEST: (write rc|read|pattern|RESULT)' 5
show "$L/dom0-script.log" 'image region md5|guest\x27s blocks are in the image' 2

say "Logs: $LOGS/disk-full-report and $LOGS/disk-full-hold"
if [ "$report" = 0 ] && [ "$hold" = 0 ]; then
    say "demo: both stories passed every check"
    exit 0
fi
say "demo: a scenario failed (see its dom0-script.log and console.log)"
exit 1
