# Helpers for the scenarios' dom0 scripts (sourced by busybox sh in dom0 as
# /testbed/lib.sh). A scenario's dom0.sh records checks with tb_check and
# ends with tb_finish; its exit status is the scenario's verdict.

TB_OUT=/tmp/tb                 # everything here is shipped back to the host
TB_CONSOLE=$TB_OUT/xen-console.log   # Xen console ring, appended every second
TB_FAILS=0
[ -f /testbed/params ] && . /testbed/params

tb_now() { cut -d' ' -f1 /proc/uptime; }
tb_say() { echo "SCENARIO[$(tb_now)]: $*"; }
# tb_check_qdisk_xvdb IMAGE QSTATE VBD_RD DMLOG: the checks every qdisk
# scenario makes of xvdb (devid 51728): the guest's 16 MiB at MiB 1 are in
# IMAGE, the backend was Connected (QSTATE, read while the guest tested
# it), xentop's reads (VBD_RD) for the record, and (ours) the ring
# connected in DMLOG.
tb_check_qdisk_xvdb() {
    want=$(tb_guest_md5)
    got=$(tb_region_md5 "$1" 1 16)
    tb_say "guest pattern md5=$want, qdisk image region md5=$got"
    tb_check "the guest's blocks are in the qdisk image file" [ -n "$want" -a "$want" = "$got" ]
    tb_check "the qdisk backend of xvdb was Connected (state 4)" [ "$2" = 4 ]
    # For the record only (see tb_xentop_vbd_reads).
    tb_say "xentop's reads of xvdb (51728): ${3:-not listed}"
    tb_check_ours "the DM connected xvdb's ring" grep -q 'qdisk xvdb: connected' "$4"
}
# tb_xentop_vbd_reads DEVID: xentop's VBD lines said, then the read count of
# VBD DEVID on stdout (empty if not listed). libxenstat asks the DM's
# libxenstat-cmd QMP socket for the qdisk disks; on this testbed it lists
# no qdisk VBD with QEMU 7.2 as the DM either (it waits 10 ms per answer),
# so scenarios record it and do not check it.
tb_xentop_vbd_reads() {
    xentop -b -i 1 -x > /tmp/xentop.out 2>&1
    tb_say "xentop: $(grep -E 'VBD' /tmp/xentop.out | tr '\n' ' ' | cut -c1-400)" >&2
    sed -n "s/^ *VBD .* $1 .*RD: *\([0-9]*\).*/\1/p" /tmp/xentop.out | head -1
}

# tb_check DESCRIPTION COMMAND...: run COMMAND, record ok/FAIL.
tb_check() {
    desc=$1; shift
    if "$@" >/dev/null 2>&1; then
        echo "CHECK ok: $desc"
    else
        echo "CHECK FAIL: $desc"
        TB_FAILS=$((TB_FAILS + 1))
    fi
}

# tb_check_ours DESCRIPTION COMMAND...: a criterion that only xen-ioemu can
# meet (its audit line format, its hold policy); reported as SKIP while the
# testbed runs Debian's QEMU as the device model.
tb_check_ours() {
    if [ "$DM_KIND" = qemu ]; then
        echo "CHECK SKIP (xen-ioemu only): $1"
        return 0
    fi
    tb_check "$@"
}

tb_finish() {
    tb_say "finished with $TB_FAILS failed check(s)"
    [ "$TB_FAILS" -eq 0 ]
    exit $?
}

# tb_create CFG: xl create (verbose log kept as xl-create-<cfg>.log),
# recorded as a check; a failed create ends the scenario at once.
tb_create() {
    cfg=$1
    log=$TB_OUT/xl-create-$(basename "$cfg" .cfg).log
    tb_say "xl create $cfg"
    timeout 150 xl -vvv create "$cfg" > "$log" 2>&1
    rc=$?
    tb_say "xl create $cfg returned rc=$rc"
    grep -E 'libxl: (error|warning)|^xl: |rror' "$log" | head -20
    tb_check "xl create $cfg" [ $rc -eq 0 ]
    [ $rc -eq 0 ] || tb_finish
}

# tb_wait_console REGEX SECONDS: wait until the Xen console (guest lines
# included) shows REGEX. Returns 1 on timeout.
tb_wait_console() {
    end=$(( $(cut -d. -f1 /proc/uptime) + $2 ))
    while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do
        grep -qE "$1" "$TB_CONSOLE" 2>/dev/null && return 0
        sleep 1
    done
    tb_say "timed out after $2 s waiting for /$1/ on the Xen console"
    return 1
}

tb_console_has() { grep -qE "$1" "$TB_CONSOLE"; }
tb_console_lacks() { ! grep -qE "$1" "$TB_CONSOLE"; }
tb_syslog_has() { grep -qE "$1" /var/log/messages; }

tb_domid() { xl domid "$1" 2>/dev/null; }

# tb_wait_domain_gone NAME SECONDS
tb_wait_domain_gone() {
    n=0
    while xl domid "$1" >/dev/null 2>&1; do
        n=$((n + 1)); [ $n -gt "$2" ] && return 1
        sleep 1
    done
    return 0
}

# tb_wait_domain_shut_down NAME SECONDS: the domain is gone, or shut down
# (state "s" in xl list) with nobody left to destroy it: xl's monitoring
# daemon exits when the domain suspends ("Domain has suspended. Done.
# Exiting now"), so after an `xl save -c` or a failed save on_poweroff is
# never carried out, whatever the device model.
tb_wait_domain_shut_down() {
    n=0
    while xl list "$1" 2>/dev/null | awk -v d="$1" '$1 == d && $5 !~ /s/ { f = 1 } END { exit !f }'; do
        n=$((n + 1)); [ $n -gt "$2" ] && return 1
        sleep 1
    done
    return 0
}

# The wrapper (dm-wrap.sh) records the device model's pid and exit status.
tb_dm_pid() { cat "$TB_OUT/dm-$1.pid" 2>/dev/null; }
tb_dm_exit() { cat "$TB_OUT/dm-$1.exit" 2>/dev/null; }
tb_wait_dm_exit() {
    n=0
    while [ ! -s "$TB_OUT/dm-$1.exit" ]; do
        n=$((n + 1)); [ $n -gt "$2" ] && return 1
        sleep 1
    done
    return 0
}
tb_pid_alive() { [ -n "$1" ] && [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# tb_guest_disk DEST SIZE_MB JOB: the guest image, extended sparsely to
# SIZE_MB, with the job line for tools/guest/guest-init.sh at 32 MiB.
tb_guest_disk() {
    cp /testbed/images/guest.img "$1"
    truncate -s "${2}M" "$1"
    printf '%s\n' "$3" | dd of="$1" bs=512 seek=65536 conv=notrunc,sync count=1 2>/dev/null
}

# tb_time_to_userspace T0 SECONDS: wait up to SECONDS for the guest's init
# line and print a BOOT line with the seconds since T0 (tb_now taken just
# before xl create), to within the console copy's 1 s period.
tb_time_to_userspace() {
    tb_wait_console 'GUEST: init running' "$2" || return 1
    echo "BOOT dm ($DM_KIND) userspace_s=$(awk "BEGIN{printf \"%.1f\", $(tb_now)-$1}") (xl create to the guest's init)"
}

# tb_guest_kernel: the guest's kernel and initrd for xl kernel=/ramdisk=,
# next to the images (scenario.conf NEEDS_KERNEL=1).
tb_guest_kernel() {
    cp /testbed/images/vmlinuz /testbed/images/initrd.gz /var/lib/xen/images/
}

# tb_guest_md5 -> the pattern md5 the guest printed
tb_guest_md5() { sed -n 's/.*GUEST: pattern md5=\([0-9a-f]*\).*/\1/p' "$TB_CONSOLE" | tail -1; }
# tb_region_md5 FILE START_MB MB
tb_region_md5() { dd if="$1" bs=1M skip="$2" count="$3" 2>/dev/null | md5sum | cut -d' ' -f1; }

# tb_firmware_run NAME CFG: the test firmware scenario body, shared by both
# xl flavours. Pass: every firmware check ok ("FW: ALL PASS"); the DMA data
# is in the image file; nothing reached the failing sector; (xen-ioemu) the
# injected ENOSPC is audited to syslog; xl destroy ends the DM with 0.
tb_firmware_run() {
    name=$1 cfg=$2
    dd if=/dev/zero of=/var/lib/xen/images/fw-disk.img bs=1M count=4 2>/dev/null
    tb_create "$cfg"
    domid=$(tb_domid "$name")
    tb_wait_console 'FW: (ALL PASS|FAILED)' 90
    grep -E '\(d[0-9]+\) .*FW: ' "$TB_CONSOLE" | sed 's/^/  console: /'
    tb_check "firmware checks all ok (FW: ALL PASS)" tb_console_has 'FW: ALL PASS'
    tb_check "no firmware check failed" tb_console_lacks 'FW: .* FAIL'
    zero16=$(dd if=/dev/zero bs=512 count=16 2>/dev/null | md5sum | cut -d' ' -f1)
    tb_check "DMA write (sectors 300-315) reached the image file" \
        [ "$(dd if=/var/lib/xen/images/fw-disk.img bs=512 skip=300 count=16 2>/dev/null | md5sum | cut -d' ' -f1)" != "$zero16" ]
    tb_check "nothing written at the failing sector 2048" \
        [ "$(dd if=/var/lib/xen/images/fw-disk.img bs=512 skip=2048 count=1 2>/dev/null | tr -d '\000' | wc -c)" -eq 0 ]
    tb_check_ours "syslog audits the injected ENOSPC" \
        tb_syslog_has "io-error domid=$domid drive=[^ ]+ cmd=\"WRITE DMA( EXT)?\" sectors=[0-9]+-[0-9]+ errno=28 .*action=report"
    sleep 2
    tb_check "domain still alive after the firmware finished" [ -n "$(tb_domid "$name")" ]
    tb_dm_figures "$domid" "$name"
    tb_destroy_clean "$name" "$domid"
    tail -20 "/var/log/xen/qemu-dm-$name.log" 2>/dev/null
}

# tb_destroy_clean NAME DOMID: xl destroy, checked: rc 0, the DM ends within
# 20 s with status 0, the domain is gone within 10 s.
tb_destroy_clean() {
    xl destroy "$1"
    tb_check "xl destroy rc=0" [ $? -eq 0 ]
    tb_check "xl destroy ends the device model" tb_wait_dm_exit "$2" 20
    tb_check "device model exit status 0" [ "$(tb_dm_exit "$2")" = 0 ]
    tb_check "domain gone" tb_wait_domain_gone "$1" 10
}

# tb_dm_figures DOMID NAME: the running device model's memory and (ours)
# its start-up time, as BENCH lines run.sh prints with the verdicts.
tb_dm_figures() {
    pid=$(tb_dm_pid "$1")
    mem=$(grep -E '^(VmRSS|VmHWM|Threads)' "/proc/$pid/status" 2>/dev/null | tr -s ' \t' ' ' | tr '\n' ' ')
    echo "BENCH device model ($DM_KIND) pid $pid: ${mem:-not running}"
    started=$(grep -o 'reported running [0-9]* ms after start' "/var/log/xen/qemu-dm-$2.log" 2>/dev/null | head -n 1)
    [ -n "$started" ] && echo "BENCH device model ($DM_KIND) $started"
    return 0
}

# tb_small_fs DIR SIZE_MB: a size-limited tmpfs that a guest can fill.
tb_small_fs() {
    mkdir -p "$1"
    mount -t tmpfs -o size="${2}m" tmpfs "$1"
}
tb_fs_avail_kb() { df -k "$1" | awk 'NR == 2 { print $4 }'; }

# tb_linux_milestones: the guest's boot timeline from the Xen console.
tb_linux_milestones() {
    grep -E 'Booting from|Linux version|GUEST: |failed command|status: \{|error: \{|I/O error' "$TB_CONSOLE" | sed 's/^/  console: /'
}

# tb_set_job IMAGE JOB: (re)write the guest's job line at 32 MiB of IMAGE.
tb_set_job() {
    printf '%s\n' "$2" | dd of="$1" bs=512 seek=65536 conv=notrunc,sync count=1 2>/dev/null
}

# tb_fs_image DEST: the ext4 data disk of tools/guest/build-image.sh
# (mkfs.ext4 -d), rebuilt as a sparse file from its written extents: the
# blocks mkfs wrote are allocated in DEST, all others are holes.
tb_fs_image() {
    truncate -s "$(cat /testbed/images/fs.size)" "$1"
    at=0
    while read -r off len; do
        dd if=/testbed/images/fs.data of="$1" bs=4096 skip=$((at / 4096)) seek=$((off / 4096)) \
            count=$((len / 4096)) conv=notrunc 2>/dev/null
        at=$((at + len))
    done < /testbed/images/fs.map
}
tb_alloc_kb() { du -k "$1" | cut -f1; }

# tb_guest_says DOMID REGEX: the guest (domain DOMID) printed GUEST: REGEX.
tb_guest_says() { grep -qE "\(d$1\) .*GUEST: ($2)" "$TB_CONSOLE"; }
tb_guest_lacks() { ! grep -qE "\(d$1\) .*($2)" "$TB_CONSOLE"; }

# tb_synced DOMID: "data/fNNN md5" for every file whose fsync succeeded.
tb_synced() { sed -n "s/.*(d$1) .*GUEST: synced \(data\/f[0-9]*\) md5=\([0-9a-f]*\).*/\1 \2/p" "$TB_CONSOLE"; }
# tb_listed DOMID: "data/fNNN md5" for every file the check boot listed.
tb_listed() { sed -n "s/.*(d$1) .*GUEST: file \(data\/f[0-9]*\) md5=\([0-9a-f]*\).*/\1 \2/p" "$TB_CONSOLE"; }

# tb_verify_synced SYNCED LISTED: every line of SYNCED is in LISTED
# (each fsynced file exists with that md5); prints the misses.
tb_verify_synced() {
    [ -s "$1" ] || { echo "no synced files"; return 1; }
    miss=0
    while read -r name sum; do
        grep -qx "$name $sum" "$2" || { echo "MISSING or differs: $name $sum (listed: $(grep "^$name " "$2"))"; miss=$((miss + 1)); }
    done < "$1"
    [ $miss -eq 0 ]
}

# tb_image_md5s IMAGE SYNCED: dom0's own reading of IMAGE (debugfs, no
# mount), one "name md5" line per file of SYNCED.
tb_image_md5s() {
    while read -r name sum; do
        echo "$name $(debugfs -R "cat /$name" "$1" 2>/dev/null | md5sum | cut -d' ' -f1)"
    done < "$2"
}

# tb_small_qcow2_fs DIR QCOW2: the ext4 data disk of tb_fs_image as a qcow2
# file (qemu-img convert) on a tmpfs at DIR sized to its allocation plus
# 2 MiB, so that the guest's file writes fill the host.
tb_small_qcow2_fs() {
    tb_fs_image /var/lib/xen/images/fs.raw
    tb_small_fs "$1" 80
    qemu-img convert -O qcow2 /var/lib/xen/images/fs.raw "$2"
    rm -f /var/lib/xen/images/fs.raw
    used=$(tb_alloc_kb "$2")
    mount -o remount,size=$((used + 2048))k "$1"
    tb_say "qcow2 image: $used KiB allocated; data fs: $(df -k "$1" | tail -1)"
}

# tb_check_qcow2_clean QCOW2 SYNCED: QEMU's view of a qcow2 image the guest
# filled with ext4 files: `qemu-img check` finds no corruption (rc 0; rc 3
# = leaked clusters only, which are counted and printed, not failed), and
# in qemu-img's raw copy dom0's e2fsck -f -n is clean and debugfs reads
# every file of SYNCED with its md5.
tb_check_qcow2_clean() {
    qemu-img check "$1" > $TB_OUT/qemu-img-check.log 2>&1
    rc=$?
    sed 's/^/  qemu-img check: /' $TB_OUT/qemu-img-check.log
    leaks=$(sed -n 's/^\([0-9]*\) leaked clusters.*/\1/p' $TB_OUT/qemu-img-check.log | head -1)
    tb_say "qemu-img check rc=$rc, leaked clusters: ${leaks:-0}"
    tb_check "qemu-img check: no errors (rc $rc; 0 clean, 3 leaks only)" [ $rc -eq 0 -o $rc -eq 3 ]
    qemu-img convert -O raw "$1" /tmp/qcow2-as-raw.img
    e2fsck -f -n /tmp/qcow2-as-raw.img > $TB_OUT/dom0-e2fsck.log 2>&1
    rc=$?
    sed 's/^/  dom0 e2fsck: /' $TB_OUT/dom0-e2fsck.log
    tb_check "dom0: e2fsck -f -n of qemu-img's raw copy is clean (rc $rc)" [ $rc -eq 0 ]
    tb_image_md5s /tmp/qcow2-as-raw.img "$2" > /tmp/image-md5s.txt
    tb_check "dom0: debugfs reads every fsynced file with its md5 from qemu-img's copy" cmp -s "$2" /tmp/image-md5s.txt
    rm -f /tmp/qcow2-as-raw.img
}

# tb_wait_syslog REGEX SECONDS
tb_wait_syslog() {
    n=0
    while ! grep -qE "$1" /var/log/messages; do
        n=$((n + 1)); [ $n -gt "$2" ] && return 1
        sleep 1
    done
    return 0
}

# tb_proc_cpu PID: utime + stime of PID in seconds (USER_HZ is 100 on x86
# Linux), from /proc/PID/stat past the command name, which may hold spaces.
tb_proc_cpu() {
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ printf "%.2f", ($12 + $13) / 100 }'
}

# tb_guest_pvhvm IMAGE: boot IMAGE (a tb_guest_disk copy) as a PVHVM guest:
# blank "xen_emul_unplug=never" in its syslinux.cfg, in place (the offset
# comes from build-image.sh; same length, so the FAT is untouched).
tb_guest_pvhvm() {
    at=$(cat /testbed/images/guest.unplug-at)
    printf '%21s' '' | dd of="$1" bs=1 seek="$at" conv=notrunc 2>/dev/null
    [ "$(dd if="$1" bs=1 skip="$at" count=21 2>/dev/null | tr -d ' ')" = "" ]
}

# --- save / restore / migrate (save-migrate, save-held) -------------------
# The guest's domid changes with every restore and migration, so these read
# the "GUEST:" lines of every domain.

# tb_all_synced_count: how many "GUEST: synced" lines the console has.
tb_all_synced_count() { grep -c 'GUEST: synced data/' "$TB_CONSOLE" 2>/dev/null; }
# tb_all_synced_last: "data/fNNN md5" with the last md5 synced per file.
tb_all_synced_last() {
    sed -n 's/.*(d[0-9]*) .*GUEST: synced \(data\/f[0-9]*\) md5=\([0-9a-f]*\).*/\1 \2/p' "$TB_CONSOLE" \
        | awk '{ last[$1] = $2 } END { for (f in last) print f, last[f] }' | sort
}
tb_all_listed() {
    sed -n 's/.*(d[0-9]*) .*GUEST: file \(data\/f[0-9]*\) md5=\([0-9a-f]*\).*/\1 \2/p' "$TB_CONSOLE" | sort
}
tb_all_guest_says() { grep -qE "\(d[0-9]+\) .*GUEST: ($1)" "$TB_CONSOLE"; }

# tb_wait_progress N SECONDS: wait until the guest has synced N more files.
tb_wait_progress() {
    want=$(( $(tb_all_synced_count) + $1 ))
    end=$(( $(cut -d. -f1 /proc/uptime) + $2 ))
    while [ "$(tb_all_synced_count)" -lt "$want" ]; do
        [ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ] && return 1
        sleep 1
    done
}

# tb_progress_sampler FILE: background; appends "<dom0 uptime> <synced
# count>" whenever the count grows (0.5 s polls of a console file that is
# appended every second: the gaps it yields are good to ~1.5 s).
tb_progress_sampler() {
    last=-1
    while :; do
        c=$(tb_all_synced_count)
        [ "$c" != "$last" ] && { echo "$(tb_now) $c" >> "$1"; last=$c; }
        sleep 0.5
    done
}
# tb_gap FILE FROM TO: the longest stretch without a new synced file that
# overlaps [FROM, TO] (the guest-visible downtime of an event there).
tb_gap() {
    awk -v a="$2" -v b="$3" '{ t[NR] = $1 } END {
        best = 0
        for (i = 2; i <= NR; i++)
            if (t[i] >= a && t[i-1] <= b && t[i] - t[i-1] > best) best = t[i] - t[i-1]
        printf "%.1f", best }' "$1"
}

# tb_devstate_sampler FILE: background; records the size of every
# /var/lib/xen/qemu-save.* (written by the DM for xen-save-devices-state,
# read back by libxl into the EMULATOR_CONTEXT record) and qemu-resume.*
# (written by libxl on restore) seen, polled every 0.1 s.
tb_devstate_sampler() {
    while :; do
        for f in /var/lib/xen/qemu-save.* /var/lib/xen/qemu-resume.*; do
            [ -f "$f" ] && echo "$(basename "$f") $(stat -c %s "$f")"
        done >> "$1"
        sleep 0.1
    done
}
# tb_devstate_size FILE PREFIX: the largest size seen of PREFIX.<domid>
tb_devstate_size() {
    awk -v p="$2" 'index($1, p ".") == 1 && $2 > m { m = $2 } END { print m + 0 }' "$1"
}

# tb_ssh_local PATH: a stand-in for ssh that xl migrate -s can use: xl runs
# "<cmd> <host> xl migrate-receive ...", this drops <host> and runs the rest.
tb_ssh_local() {
    printf '#!/bin/sh\n# xl migrate -s: "%s <host> xl migrate-receive ..." on this host\nshift\nexec "$@"\n' "$1" > "$1"
    chmod +x "$1"
}

# tb_stop_fsloop IMAGE: ask the fsloop guest job to stop (sector 65537).
tb_stop_fsloop() {
    printf 'TBSTOP\n' | dd of="$1" bs=512 seek=65537 conv=notrunc,sync count=1 2>/dev/null
}

# tb_libata_errors: the guest kernel's libata / block error lines.
TB_LIBATA_ERRORS='failed command|exception Emask|I/O error|resetting link|SRST failed|hard resetting'

# tb_channel_answer DOMID [DEVID]: dom0's end of an xl channel= with
# connection=pty (a PV console the DM serves): the pty path the DM wrote
# to the frontend's tty node (xl channel-list reads the same), read until
# the guest's "GUEST-CHANNEL-HELLO" (guest-init.sh, job key channel=1),
# then one reply line for the guest to print. Fails when the pty never
# appears or no hello comes within 120 s.
tb_channel_answer() {
    node=/local/domain/$1/device/console/${2:-1}/tty
    n=0
    while tty=$(xenstore-read "$node" 2>/dev/null); [ -z "$tty" ] && [ $n -lt 60 ]; do sleep 1; n=$((n+1)); done
    [ -n "$tty" ] && [ -c "$tty" ] || { tb_say "channel: no pty at $node (tty='$tty')"; return 1; }
    out=$TB_OUT/channel-$1.out
    cat "$tty" > "$out" 2>/dev/null &
    catpid=$!
    n=0
    while ! grep -q GUEST-CHANNEL-HELLO "$out" && [ $n -lt 600 ]; do sleep 0.2; n=$((n+1)); done
    ok=1
    grep -q GUEST-CHANNEL-HELLO "$out" && { echo "DOM0-CHANNEL-REPLY to d$1" > "$tty"; ok=0; }
    sleep 2
    kill "$catpid" 2>/dev/null
    tb_say "channel on $tty: read $(wc -c < "$out") bytes, first line '$(head -n 1 "$out" | tr -d '\r')'"
    return $ok
}

# tb_xl_bounded SECONDS LOG XL-ARGS...: `xl -vvv XL-ARGS` with its output in
# LOG, killed after SECONDS; its exit status (137 when killed). A hung save,
# restore or migrate would otherwise keep the whole nested host silent until
# the outer timeout; killed, it leaves the scenario a failed check and the
# state it hung in: the domains, the processes, the device-model xenstore
# nodes and the end of every DM log.
tb_xl_bounded() {
    secs=$1 log=$2; shift 2
    timeout -s KILL "$secs" xl -vvv "$@" > "$log" 2>&1
    rc=$?
    if [ $rc = 137 ]; then
        tb_say "xl $* did not finish within $secs s: killed; the state it left follows"
        { echo "== xl list"; xl list; echo "== ps"; ps
          echo "== xenstore device-model"; xenstore-ls -f /local/domain/0/device-model
          for f in /var/log/xen/qemu-dm-*.log; do echo "== $f"; tail -20 "$f"; done
          echo "== xl log"; tail -30 "$log"; } 2>&1 | sed 's/^/  hung: /'
    fi
    return $rc
}
