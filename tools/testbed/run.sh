#!/bin/bash
# run.sh [--xen 4.17|4.20] [--dm PATH|qemu] [--logs DIR] [-j N] [-v] SCENARIO...|all
#
# Boots the nested Xen testbed once per scenario (tests/xen-scenarios/<name>)
# under QEMU/TCG, runs the scenario's dom0.sh there, collects the logs into
# DIR/<scenario>/ (default build/testbed/logs) and prints one line per
# scenario: "PASS|FAIL <name> <seconds>s". Exit status 0 only if all passed.
#
# --dm PATH   device model binary to test (default target/release/xen-ioemu);
#             copied into dom0 with its shared libraries.
# --dm qemu   Debian's QEMU (qemu-system-xen), the reference: 7.2 on 4.17,
#             10.0 on 4.20.
# --xen V     the nested host: 4.17 (default; Debian bookworm) or 4.20
#             (Debian trixie: Xen 4.20, its kernel, glibc and QEMU 10.0).
#             Each version has its own host (OUT/host[-4.20]), run folders
#             and logs (default OUT/logs for 4.17, OUT/logs-4.20 for 4.20).
# -j N        boot N testbeds at once (default TESTBED_JOBS, else 1); each
#             nested Xen has one TCG vCPU (TESTBED_SMP=1), so -j 2 fills a
#             2-core host. Verdict lines come as scenarios finish.
# -v          echo the serial console while it runs.
# Env: TESTBED_OUT (build dir, default build/testbed), TESTBED_CPU,
#      TESTBED_SMP (pCPUs of the nested Xen, default 1: with one TCG vCPU
#      an ioreq round trip is a Xen context switch instead of a cross-thread
#      wake-up; measured 2.6x faster INT13 loading on a loaded 2-core host,
#      and it leaves the other host core free), GUEST_KERNEL (cloud|generic).
# Scenarios with QEMU_RECORD=1 in scenario.conf (fs-full-*) hold checks that
# Debian's QEMU is known to fail (it hides errors): with --dm qemu, `all`
# leaves them out, and naming one runs it for the record only: its verdict
# line reads RECORD (CHECK lines as they came) and does not fail the run.
# XFAIL_CHECKS=ERE in scenario.conf: a known xen-ioemu failure; verdict
# XFAIL (not counted) if every failed check matches it, else FAIL.
# NOT_IN_ALL="reason" in scenario.conf: `all` leaves the scenario out and
# says so with the reason; naming it runs it.
set -euo pipefail
. "$(dirname "$0")/common.sh"

OUT=$(realpath -m "${TESTBED_OUT:-$REPO_DIR/build/testbed}")
SCEN_DIR="$REPO_DIR/tests/xen-scenarios"
DM="$REPO_DIR/target/release/xen-ioemu"
LOGS=""
VERBOSE=0
JOBS=${TESTBED_JOBS:-1}
names=()
while [ $# -gt 0 ]; do
    case $1 in
    --dm) DM=$2; shift 2 ;;
    --logs) LOGS=$(realpath -m "$2"); shift 2 ;;
    -j) JOBS=$2; shift 2 ;;
    -v) VERBOSE=1; shift ;;
    --xen) select_xen "$2" "$OUT" || exit 2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
    esac
done
[ ${#names[@]} -gt 0 ] || { echo "usage: run.sh [--xen 4.17|4.20] [--dm PATH|qemu] [--logs DIR] [-j N] [-v] SCENARIO...|all" >&2; exit 2; }
LOGS=${LOGS:-$OUT/logs$XEN_TAG}
case $JOBS in ''|*[!0-9]*|0) echo "run.sh: -j $JOBS: must be a positive number of testbeds at once" >&2; exit 2 ;; esac
if [ "${names[0]}" = all ]; then
    names=()
    for d in "$SCEN_DIR"/*/; do
        [ -f "$d/scenario.conf" ] || continue
        [ "$DM" = qemu ] && grep -q '^QEMU_RECORD=1' "$d/scenario.conf" && continue
        if reason=$(sed -n 's/^NOT_IN_ALL=//p' "$d/scenario.conf") && [ -n "$reason" ]; then
            echo "NOT-IN-ALL $(basename "$d"): $reason"
            continue
        fi
        names+=("$(basename "$d")")
    done
fi
for n in "${names[@]}"; do
    [ -f "$SCEN_DIR/$n/scenario.conf" ] || { echo "run.sh: no scenario $n (no $SCEN_DIR/$n/scenario.conf)" >&2; exit 2; }
done
# Longest first (by TIMEOUT, the closest thing to a duration a scenario
# states), so that with -j N the last one to start is a short one and the
# testbeds finish together instead of one long scenario running alone.
if [ ${#names[@]} -gt 1 ]; then
    mapfile -t names < <(for n in "${names[@]}"; do
        t=$(sed -n 's/^TIMEOUT=\([0-9]*\).*/\1/p' "$SCEN_DIR/$n/scenario.conf" | tail -1)
        echo "${t:-0} $n"
    done | sort -k1,1nr -k2,2 | cut -d' ' -f2)
fi

if [ "$DM" = qemu ]; then
    DM_KIND=qemu
    DM_IN_DOM0=/usr/libexec/xen-qemu-system-i386
else
    DM_KIND=xen-ioemu
    [ -x "$DM" ] || { echo "run.sh: --dm $DM: not an executable file (build it with cargo build --release, or use --dm qemu)" >&2; exit 2; }
    DM_IN_DOM0=/testbed/dm/$(basename "$DM")
fi

TESTBED_XEN=$XV "$TESTBED_DIR/build-host.sh" "$OUT" >/dev/null
HOST="$OUT/host$XEN_TAG"
"$REPO_DIR/tools/firmware/build.sh" "$OUT/fw" >/dev/null
# dom0's terminal for `xl console` (static: dom0 has only the libraries of
# the packages unpacked into it)
gcc -static -O2 -Wall -Wextra -Werror -o "$OUT/fw/ptyrun" "$TESTBED_DIR/ptyrun.c"
# dom0's watcher of a DM under a hostile guest (the storm scenario)
gcc -static -O2 -Wall -Wextra -Werror -o "$OUT/fw/dmwatch" "$TESTBED_DIR/dmwatch.c"
# dom0's client of an xl channel on a unix socket (busybox nc has none)
gcc -static -O2 -Wall -Wextra -Werror -o "$OUT/fw/chanclient" "$TESTBED_DIR/chanclient.c"
need_guest=0
for n in "${names[@]}"; do grep -q '^NEEDS_GUEST=1' "$SCEN_DIR/$n/scenario.conf" && need_guest=1; done
[ $need_guest = 1 ] && "$REPO_DIR/tools/guest/build-image.sh" "$OUT" >/dev/null

CPU=${TESTBED_CPU:-qemu64,+svm,+npt}
# DOM0_MEM / HOST_MEM (MiB, scenario.conf): dom0's share and the nested
# machine's RAM; the defaults fit one 256 MiB guest. The save scenarios keep
# a whole saved guest in dom0's tmpfs and run two copies of it during a
# local migration, so they raise both.
xen_cmd() {
    echo "console=com1 com1=115200,8n1 console_timestamps=boot loglvl=all guest_loglvl=all conring_size=4M dom0_mem=${1}M,max:${1}M dom0_max_vcpus=1"
}
LINUX_CMD="console=hvc0 earlyprintk=xen"

# watch_silence LOGDIR WORK SECONDS: the nested host's serial console is
# watched for silence (a scenario prints at least every few seconds:
# dom0's checks, the guest's progress, Xen's own lines).
#
# Silence for 20 s: perhaps a stalled nested CPU, kicked by a serial
# interrupt (harmless when the host was only quiet, e.g. during a 60 s
# benchmark phase). Seen in save-migrate with 2 guest vCPUs (2026-12-02, CI of
# 2026-12-07, and here on 2026-12-08): the one TCG CPU stays in the HVM
# guest at one RIP (a guest spin-wait, IF=1, HLT=0, the same registers in
# three HMP reads a second apart) and no host timer interrupt brings Xen
# back; Xen later says "Platform timer appears to have unexpectedly wrapped
# 10 or more times" and dom0 "soft lockup - CPU#0 stuck for 578s" in its
# idle loop. Bytes typed on the serial port raised an interrupt and the
# host went on at once; it stalls with 1 vCPU too (iobench, the guest in
# HLT: "wrapped 1 times", a guest soft lockup of 58 s). A kick is three
# Ctrl-A pairs (Xen takes them to switch its input to Xen and back,
# nothing reaches dom0), logged in kicks.log; the stalls it ended (Xen's
# "unexpectedly wrapped" lines) are counted on the verdict line.
#
# Silence for SECONDS (not counting the kicks' own echo): hung for good.
# It records the nested CPU's registers (three reads a second apart) and
# Xen's state through its debug keys q, r, d, then ends the run.
watch_silence() {
    local ldir=$1 work=$2 limit=$3 size last=-1 quiet=0 step=5 kick_after=20 since_kick=0
    while sleep $step; do
        size=$(stat -c %s "$ldir/console.log" 2>/dev/null || echo 0)
        if [ "$size" != "$last" ]; then last=$size quiet=0 since_kick=0; continue; fi
        quiet=$((quiet + step)) since_kick=$((since_kick + step))
        if [ $quiet -lt "$limit" ]; then
            [ $since_kick -ge $kick_after ] || continue
            since_kick=0
            echo "$(date -Is) kick after $quiet s of silence (console at $size bytes)" >> "$ldir/kicks.log"
            printf '\001\001\001\001\001\001' > "$work/serial-in"
            # Xen's two "Serial input to ..." lines are no sign of life.
            sleep 3
            last=$(stat -c %s "$ldir/console.log" 2>/dev/null || echo 0)
            continue
        fi
        {
            echo "== $(date -Is): the serial console has been silent for $quiet s"
            echo "== HMP (nested CPU):"
            hmp_ask "$work/hmp.sock" "info status" "info cpus" "info registers" \
                "info registers" "info registers" || echo "(no HMP answer)"
            echo "== Xen debug keys q (domains, vCPUs), r (run queues), d (registers) typed on the serial port; the answer is in console.log after this size: $size"
        } > "$ldir/watchdog.log" 2>&1
        # Ctrl-A three times switches the serial input to Xen, and back.
        printf '\001\001\001' > "$work/serial-in"; sleep 1
        for key in q r d; do printf %s "$key" > "$work/serial-in"; sleep 5; done
        printf '\001\001\001' > "$work/serial-in"; sleep 5
        echo "== console grew by $(( $(stat -c %s "$ldir/console.log") - size )) bytes after the keys; killing the nested host" >> "$ldir/watchdog.log"
        hmp_ask "$work/hmp.sock" quit > /dev/null 2>&1 || true
        sleep 5
        [ -s "$work/qemu.pid" ] && kill -9 "$(cat "$work/qemu.pid")" 2>/dev/null
        return 0
    done
}
# hmp_ask SOCKET COMMAND...: QEMU's human monitor, one command per second.
hmp_ask() {
    perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => shift @ARGV) or exit 1;
        $s->blocking(0);
        for my $c (@ARGV) { print $s "$c\n"; sleep 1; my $b; while (sysread($s, $b, 65536)) { print $b } }
        sleep 1; my $b; while (sysread($s, $b, 65536)) { print $b }' "$@" \
      | sed 's/\x1b\[[0-9;]*[A-Za-z]//g; s/\r//g' | grep -vE '^(\(qemu\)|XMM|FPR|FCW|DR[0-9])'
}

run_one() {
    # The work folder is this run's own: two run.sh at once (ours and
    # --dm qemu, tools/bench/testbed-save.sh) may run the same scenario.
    local name=$1 sdir="$SCEN_DIR/$1" ldir="$LOGS/$1" work="$OUT/run$XEN_TAG/$1.$BASHPID"
    local TIMEOUT=300 NEEDS_GUEST=0 NEEDS_KERNEL=0 NEEDS_FS=0 QEMU_RECORD=0 XFAIL_CHECKS="" DOM0_MEM=768 HOST_MEM=2048 SILENCE=${TESTBED_SILENCE:-600}
    # shellcheck disable=SC1090
    . "$sdir/scenario.conf"
    rm -rf "$ldir" "$work"
    mkdir -p "$ldir" "$work/root/testbed/fw" "$work/root/testbed/images"
    local T="$work/root/testbed"
    cp "$TESTBED_DIR/dom0-run.sh" "$T/dom0-run.sh"
    cp "$TESTBED_DIR/dom0-lib.sh" "$T/lib.sh"
    cp "$TESTBED_DIR/dm-wrap.sh" "$TESTBED_DIR/hotplug-ok.sh" "$T/"
    cp -r "$sdir" "$T/scenario"
    cp "$OUT/fw/idetest.elf" "$OUT/fw/storm.elf" "$T/fw/"
    cp "$OUT/fw/ptyrun" "$OUT/fw/dmwatch" "$OUT/fw/chanclient" "$T/"
    [ "$NEEDS_GUEST" = 1 ] && cp "$OUT/guest.img" "$OUT/guest.unplug-at" "$OUT/cd-a.iso" "$OUT/cd-b.iso" "$T/images/"
    # xl kernel=/ramdisk= scenarios: the guest's kernel and initrd beside its image.
    [ "$NEEDS_KERNEL" = 1 ] && cp -L "$OUT/vmlinuz" "$OUT/initrd.gz" "$T/images/"
    [ "$NEEDS_FS" = 1 ] && cp "$OUT/fs.map" "$OUT/fs.data" "$OUT/fs.size" "$T/images/"
    if [ "$DM_KIND" != qemu ]; then
        # Its libraries as the dom0 base's suite has them (the DM is built on
        # bookworm; trixie's newer glibc runs it), and nothing the base has
        # already: a second, older libc in the overlay would shadow the
        # base's for every binary. A library the suite lacks comes from the
        # build machine.
        TB_BASE_FILES="$HOST/base-files.txt" TB_HOST_LIBS_OK=1 \
            copy_elf_with_libs "$HOST/root" "$DM" "$work/root$DM_IN_DOM0" "$work/root"
    fi
    echo "$DM_IN_DOM0" > "$T/dm-path"
    printf 'SCENARIO=%s\nSCENARIO_TIMEOUT=%s\nDM_KIND=%s\nXEN_VERSION=%s\n' "$name" "$TIMEOUT" "$DM_KIND" "$XV" > "$T/params"
    chmod +x "$T"/*.sh
    cpio_of "$work/root" "$work/overlay.cpio.gz"
    # Linux unpacks concatenated initramfs archives in order, so the
    # per-run files land on top of the cached dom0 base.
    cat "$HOST/dom0-base.cpio.gz" "$work/overlay.cpio.gz" > "$work/initrd.gz"

    local start end rc=0 serial_in="$work/serial-in" serial_fd watcher
    start=$(date +%s)
    # The serial port's input is a FIFO held open here, so that the silence
    # watchdog can type Xen debug keys; the HMP monitor on a socket lets it
    # read the nested CPU's registers.
    mkfifo "$serial_in"
    exec {serial_fd}<>"$serial_in"
    : > "$ldir/console.log"
    watch_silence "$ldir" "$work" "$SILENCE" &
    watcher=$!
    # dom0 kills its scenario at TIMEOUT and still reports; the outer limit
    # and the silence watchdog only catch a hung Xen or dom0.
    timeout --foreground -k 10 $((TIMEOUT + 180)) \
        qemu-system-x86_64 -accel tcg -cpu "$CPU" -m "$HOST_MEM" -smp "${TESTBED_SMP:-1}" \
        -display none -serial stdio -no-reboot -nodefaults \
        -chardev socket,id=hmp,path="$work/hmp.sock",server=on,wait=off -mon chardev=hmp,mode=readline \
        -pidfile "$work/qemu.pid" \
        -kernel "$HOST/xen" -append "$(xen_cmd "$DOM0_MEM")" \
        -initrd "$HOST/vmlinuz $LINUX_CMD,$work/initrd.gz" <&"$serial_fd" 2>&1 \
      | perl -MTime::HiRes=time -ne 'BEGIN{$|=1;$t0=time} s/\r//g; printf "[%7.2f] %s", time-$t0, $_' \
      | if [ $VERBOSE = 1 ]; then tee -a "$ldir/console.log"; else cat >> "$ldir/console.log"; fi \
      || rc=$?
    end=$(date +%s)
    kill "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    exec {serial_fd}>&-
    rm -rf "$work"

    # rebuild dom0's files from the "@@TB@@ <file> <line>" dump
    perl -ne 'if (/^\[[ 0-9.]+\] \@\@TB\@\@ (\S+) ?(.*)$/) { my ($f, $l) = ($1, $2);
        next if $f =~ m{/|^\.};
        open(my $h, ">>", "'"$ldir"'/$f") or die; print $h "$l\n"; close $h }' "$ldir/console.log"
    grep -E '^\[ *[0-9.]+\] \(d[0-9]+\)' "$ldir/console.log" > "$ldir/guest-lines.log" || true
    local verdict=FAIL why=""
    if grep -q "TESTBED-RESULT scenario=$name rc=0\$" "$ldir/console.log"; then
        verdict=PASS
    elif grep -q "TESTBED-RESULT scenario=$name" "$ldir/console.log"; then
        why="(scenario rc=$(sed -n "s/.*TESTBED-RESULT scenario=$name rc=//p" "$ldir/console.log" | tail -1))"
    elif [ -s "$ldir/watchdog.log" ]; then
        why="(the nested host printed nothing for ${SILENCE} s: killed; Xen's and the CPU's state in watchdog.log and console.log)"
    else
        why="(no result from dom0: boot failure or outer timeout, qemu rc=$rc)"
    fi
    grep -hE '^(CHECK|BENCH) ' "$ldir/dom0-script.log" 2>/dev/null | sed 's/^/    /' || true
    # XFAIL_CHECKS (scenario.conf, an ERE): a known xen-ioemu failure; the
    # scenario then reads XFAIL, not FAIL, only if dom0 reported and every
    # failed check matches it (any other failure is still a FAIL).
    if [ $verdict = FAIL ] && [ -n "$XFAIL_CHECKS" ] && [ "$DM_KIND" != qemu ] \
       && grep -q "TESTBED-RESULT scenario=$name rc=1\$" "$ldir/console.log" \
       && grep -q '^CHECK FAIL: ' "$ldir/dom0-script.log" \
       && ! grep '^CHECK FAIL: ' "$ldir/dom0-script.log" | grep -qvE "$XFAIL_CHECKS"; then
        verdict=XFAIL why="(known failure, only: $XFAIL_CHECKS)"
    elif [ $verdict = PASS ] && [ -n "$XFAIL_CHECKS" ] && [ "$DM_KIND" != qemu ]; then
        why="(XPASS: the known failure is gone, drop XFAIL_CHECKS)"
    fi
    if [ "$DM_KIND" = qemu ] && [ "$QEMU_RECORD" = 1 ] && [ $verdict = FAIL ]; then
        verdict=RECORD why="(for the record: Debian's QEMU fails this scenario's checks $why)"
    fi
    local stalls
    stalls=$(grep -c 'Platform timer appears to have unexpectedly wrapped' "$ldir/console.log" || true)
    [ "${stalls:-0}" -gt 0 ] && why="$why (nested CPU stalled $stalls time(s), each ended by a watchdog kick: kicks.log)"
    printf '%-5s %-18s %4ds %s\n' "$verdict" "$name" $((end - start)) "$why" | tee -a "$LOGS/summary.txt"
    [ $verdict != FAIL ]
}

mkdir -p "$LOGS"
echo "== $(date -Is) xen=$XV dm=$DM ($DM_KIND) scenarios: ${names[*]}" >> "$LOGS/summary.txt"
failed=0
running=0
for n in "${names[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || failed=$((failed + 1))
        running=$((running - 1))
    fi
    { run_one "$n" || exit 1; } &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
done
echo "logs: $LOGS"
[ $failed -eq 0 ]
