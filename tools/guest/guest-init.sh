#!/bin/sh
# /init of the testbed's Linux guest. The image is the same for every
# scenario; what to do comes from a job line that dom0 writes into the first
# sector of the boot disk's data region (byte 32 MiB of ata1.00):
#   TBJOB dev=sda start_mb=33 mb=16 expect=ok|fail
# dev/start_mb/mb: where the test blocks go (a raw region, no filesystem);
# expect: whether the write should succeed (ok) or be reported as an I/O
# error to the guest (fail, the werror=report scenarios).
# or, for the ext4 data disk of the fs-* scenarios (tools/guest/build-image.sh
# makes it; seed/ holds four files and their MANIFEST, data/ is empty):
#   TBJOB mode=fs dev=sdb files=N kb=64 then=poweroff|check
#     mounts it, verifies seed/, then writes data/f001..fN (kb KiB of
#     /dev/urandom each, dd conv=fsync) and prints "GUEST: synced data/fNNN
#     md5=..." only after that file's fsync succeeded; stops at the first
#     failure ("GUEST: write data/fNNN FAILED ..."); unmounts; then=check
#     goes on with the check below in the same boot.
#   (any job) channel=1: first say hello on the PV console /dev/hvc1 (an
#     xl channel=) until dom0 answers a line; see tb_channel_answer.
#   TBJOB mode=fscheck dev=sdb
#     the check: mount + umount (the kernel replays the journal, if any),
#     e2fsck -f -n (its lines as "GUEST: e2fsck: ...", "GUEST: e2fsck -f -n
#     rc=N"), then mounts read-only and prints "GUEST: file data/fNNN md5=..."
#     for every file, for dom0 to compare with the synced list.
#   TBJOB mode=cdrom dev=hdc
#     the ATAPI CD-ROM: mounts its ISO 9660 medium, checks data.bin against
#     md5sum.txt and prints "GUEST: cd first: medium <label.txt> ...", then
#     "GUEST: cd waiting for a media change" and tries a mount every second
#     until a medium with another label is in (dom0 runs xl cd-eject and
#     xl cd-insert meanwhile), noting "GUEST: cd no medium" once, and checks
#     that one the same way ("GUEST: cd second: ..."). Meanwhile a shell
#     runs on ttyS0 for dom0's xl console.
#   TBJOB mode=bench devs=sda,sdc mb=32 start_mb=33
#     throughput and vCPU progress: an idle busy-loop rate, then an O_DIRECT
#     bs=1M write + read of mb MiB on the first disk alone, then on every
#     disk at once, each with a busy loop running beside it; prints "GUEST:
#     BENCH <phase> ..." lines (MB/s, busy-loop rate as % of idle) between
#     "GUEST: BENCH begin" and "GUEST: BENCH end" (3 s idle either side, for
#     dom0 to sample the DM's CPU time), then verifies every read by md5.
#   TBJOB mode=iobench devs=xvda,xvdb start_mb=33 mb=16 ops=2000
#     per disk, tools/guest/diskbench.c's O_DIRECT figures on the region:
#     sequential write and read of mb MiB (1 MiB requests), then ops random
#     4 KiB writes and reads in it; "GUEST: BENCH dev=D op=OP ... MBps=M
#     iops=I" lines (tools/bench/testbed-iobench.sh), then "GUEST: BENCH
#     end" and 3 s idle.
#   TBJOB mode=fsloop dev=sdb files=64 kb=64
#     the save/restore/migrate workload: mounts the ext4 disk, verifies
#     seed/, then writes data/f000..f(files-1) over and over (kb KiB of
#     /dev/urandom each, dd conv=fsync, "GUEST: synced data/fNNN md5=...
#     n=I" after each fsync) until dom0 writes "TBSTOP" at sector 65537 of
#     the boot disk (read with O_DIRECT every 4 files); every 16 files it
#     drops the page cache and reads back every file written so far
#     ("GUEST: verify round R: V of N ok"; a miss: "GUEST: VERIFY FAILED
#     ..."), so reads go through the disk across the events too. A failed
#     write stops the loop. Then the final check of mode=fscheck, against
#     the last md5 of every file.
# Every result line is "GUEST: ..." through /dev/kmsg, so it reaches the Xen
# console via earlyprintk=xen (port 0xE9) whatever the device model does.
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp

say() { echo "GUEST: $*" > /dev/kmsg; }
now() { cut -d' ' -f1 /proc/uptime; }
finish() {
    say "RESULT $1"
    say "DONE"
    sync
    # ACPI S5 through the device model's PIIX4 PM; if it has none, dom0
    # destroys the domain after seeing DONE.
    poweroff -f
    sleep 3600
}

say "init running at $(now)s, kernel $(cat /proc/sys/kernel/osrelease)"
for m in $(cat /mods/order); do
    t0=$(now)
    insmod /mods/$m.ko || say "insmod $m failed"
    # A slow probe is the first clue when a disk is missing later.
    awk -v a="$t0" -v b="$(now)" 'BEGIN{exit !(b - a > 2)}' && say "insmod $m took $t0 -> $(now)s"
done
# sd names follow the order the asynchronous SCSI scan finishes in, which is
# not stable: jobs name disks by ATA position instead (sda = ata1.00 =
# SCSI 0:0:0:0, sdb = ata1.01, sdc = ata2.00, sdd = ata2.01; hda..hdd are
# the same positions, for a CD-ROM, whose device is srN); xvdX (PV disks)
# by their own name.
position_of() {
    case $1 in
    sda|hda) echo 0:0:0:0 ;; sdb|hdb) echo 0:0:1:0 ;; sdc|hdc) echo 1:0:0:0 ;; sdd|hdd) echo 1:0:1:0 ;;
    *) echo "$1" ;;
    esac
}
disk_at() { # disk_at SCSI-ADDRESS|xvdX: its block device name, once it is there
    n=0
    while [ $n -lt 300 ]; do
        case $1 in
        *:*) b=$(ls /sys/bus/scsi/devices/$1/block 2>/dev/null | head -n 1) ;;
        *) b=$1 ;;
        esac
        [ -n "$b" ] && [ -b "/dev/$b" ] && { echo "$b"; return 0; }
        sleep 0.1; n=$((n+1))
    done
    return 1
}
no_disk() { # what the kernel knows about the IDE function, for the log
    d=/sys/bus/pci/devices/0000:00:01.1
    say "no disk at ata1.00 and no xvda at $(now)s; 00:01.1 enable=$(cat $d/enable 2>/dev/null) driver=$(basename "$(readlink $d/driver 2>/dev/null)") scsi hosts: $(ls /sys/class/scsi_host 2>/dev/null | tr '\n' ' ')"
    say "modules: $(cut -d' ' -f1,3 /proc/modules | tr '\n' ' ')"
    grep -E 'ata|ide|CPU' /proc/interrupts | while read -r l; do say "irq: $l"; done
    finish FAIL
}
# The boot disk is ata1.00, or xvda once a PVHVM kernel (no
# xen_emul_unplug=never) has unplugged the IDE disks and blkfront took over.
boot_disk() {
    n=0
    while [ $n -lt 300 ]; do
        b=$(ls /sys/bus/scsi/devices/0:0:0:0/block 2>/dev/null | head -n 1)
        [ -n "$b" ] && [ -b "/dev/$b" ] && { echo "ata1.00 $b"; return 0; }
        [ -b /dev/xvda ] && { echo "xvda xvda"; return 0; }
        sleep 0.1; n=$((n+1))
    done
    return 1
}
found=$(boot_disk) || no_disk
where=${found% *}; boot=${found#* }
say "found the boot disk ($where) as /dev/$boot, $(cat /sys/block/$boot/size) sectors, at $(now)s"

job=$(dd if=/dev/$boot bs=512 skip=65536 count=1 iflag=direct 2>/dev/null | tr -d '\000' | head -n 1)
case $job in TBJOB\ *) ;; *) say "no job at sector 65536 of /dev/$boot"; finish FAIL ;; esac
say "job: $job"
dev=sda; start_mb=33; mb=16; expect=ok; mode=raw; files=32; kb=64; then=poweroff; devs=sda; ops=2000
for kv in $job; do
    case $kv in
    mode=*) mode=${kv#mode=} ;;
    files=*) files=${kv#files=} ;;
    ops=*) ops=${kv#ops=} ;;
    kb=*) kb=${kv#kb=} ;;
    then=*) then=${kv#then=} ;;
    dev=*) dev=${kv#dev=} ;;
    start_mb=*) start_mb=${kv#start_mb=} ;;
    mb=*) mb=${kv#mb=} ;;
    expect=*) expect=${kv#expect=} ;;
    devs=*) devs=$(echo "${kv#devs=}" | tr , ' ') ;;
    channel=*) channel=${kv#channel=} ;;
    esac
done
# channel=1: an xl channel= (a PV console, /dev/hvc1) before the job: say
# hello on it once a second until a line comes back from dom0.
if [ "${channel:-0}" = 1 ]; then
    n=0
    while [ ! -c /dev/hvc1 ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
    [ -c /dev/hvc1 ] || { say "channel: no /dev/hvc1; xen devices: $(ls /sys/bus/xen/devices 2>/dev/null | tr '\n' ' ')"; finish FAIL; }
    # Raw and quiet while open: hvc resets a tty's settings at its last close.
    exec 3<>/dev/hvc1
    stty raw -echo <&3 || say "channel: stty failed"
    i=0; reply=""
    while [ $i -lt 90 ] && [ -z "$reply" ]; do
        echo "GUEST-CHANNEL-HELLO $i" >&3
        read -r -t 1 reply <&3
        i=$((i+1))
    done
    exec 3>&-
    [ -n "$reply" ] || { say "channel: no reply from dom0 in 90 s"; finish FAIL; }
    say "channel: got '$reply' after $i hello(s)"
fi
dev=$(disk_at "$(position_of "$dev")") || { say "no disk for $dev"; finish FAIL; }
dma=$(cat /sys/class/ata_device/dev1.0/dma_mode 2>/dev/null || echo "?")
say "$(grep -c ^processor /proc/cpuinfo) CPU(s) online"

fs_check() {
    say "check: mount + umount (journal replay), then e2fsck -f -n /dev/$dev"
    mount -t ext4 /dev/$dev /mnt 2>/tmp/mnt.err; r=$?
    say "mount rc=$r $(tr '\n' ' ' < /tmp/mnt.err)"
    [ $r -eq 0 ] && { umount /mnt; say "umount rc=$?"; }
    e2fsck -f -n /dev/$dev > /tmp/fsck.out 2>&1; r=$?
    while read -r l; do say "e2fsck: $l"; done < /tmp/fsck.out
    say "e2fsck -f -n rc=$r"
    mount -t ext4 -o ro /dev/$dev /mnt || { say "read-only mount failed"; finish FAIL; }
    (cd /mnt/seed && md5sum -c MANIFEST >/tmp/seed.out 2>&1); sr=$?
    say "seed files: $(grep -c ': OK' /tmp/seed.out) of 4 verify (md5sum -c rc=$sr)"
    n=0
    for f in /mnt/data/*; do
        [ -f "$f" ] || continue
        say "file data/$(basename "$f") md5=$(md5sum < "$f" | cut -d' ' -f1) size=$(stat -c %s "$f")"
        n=$((n + 1))
    done
    say "listed $n file(s) in data/"
    bad=0
    if [ -s /tmp/synced ]; then
        # same boot (then=check): compare with what this boot synced
        while read -r name sum; do
            got=$(md5sum < "/mnt/$name" 2>/dev/null | cut -d' ' -f1)
            [ "$got" = "$sum" ] || { say "VERIFY FAILED $name: md5 $got, synced $sum"; bad=$((bad + 1)); }
        done < /tmp/synced
        say "verified $(($(wc -l < /tmp/synced) - bad)) of $(wc -l < /tmp/synced) synced file(s)"
    fi
    umount /mnt
    # (loop_failed: a failure the fsloop job saw before this check)
    [ $r -eq 0 ] && [ $sr -eq 0 ] && [ $bad -eq 0 ] && [ "${loop_failed:-0}" = 0 ] && finish PASS
    finish FAIL
}

# bench: see the job line above. The busy loop publishes its count every
# 2000 iterations; its rate while a disk is busy, as a share of the idle
# rate, is how much of the vCPU the guest kept while the DM did the I/O.
count_now() { c=$(cat /tmp/count 2>/dev/null); echo "${c:-0}"; }
rate_since() { # rate_since COUNT0 T0 -> iterations per second since then
    awk "BEGIN{d=$(now)-$2; if (d > 0) printf \"%d\", ($(count_now)-$1)/d; else print 0}"
}
bench_phase() { # bench_phase NAME write|read DEV...: dd on every DEV at once
    phase=$1 dir=$2; shift 2
    c0=$(count_now); t0=$(now); pids=""
    for d in "$@"; do
        if [ "$dir" = write ]; then
            dd if=/tmp/pattern of=/dev/$d bs=1M seek="$start_mb" count="$mb" oflag=direct 2>/tmp/dd-$d.err &
        else
            dd if=/dev/$d of=/tmp/back-$d bs=1M skip="$start_mb" count="$mb" iflag=direct 2>/tmp/dd-$d.err &
        fi
        pids="$pids $!"
    done
    rc=0
    for p in $pids; do wait "$p" || rc=1; done
    t1=$(now); r=$(rate_since "$c0" "$t0")
    total=$(($# * mb))
    say "BENCH $phase $dir devs=$* MiB=$total seconds=$(awk "BEGIN{print $t1-$t0}") MBps=$(awk "BEGIN{d=$t1-$t0; if(d>0) printf \"%.2f\", $total*1.048576/d; else print 0}") busy=$(awk "BEGIN{if ($idle>0) printf \"%d\", 100*$r/$idle; else print 0}")% rc=$rc"
    [ $rc -eq 0 ] || { cat /tmp/dd-*.err > /dev/kmsg; bench_ok=0; }
    if [ "$dir" = read ]; then
        for d in "$@"; do
            got=$(md5sum < /tmp/back-$d | cut -d' ' -f1); rm -f /tmp/back-$d
            if [ "$got" = "$want" ]; then say "BENCH verify $phase $d md5 match"; else say "BENCH verify $phase $d md5 MISMATCH ($got)"; bench_ok=0; fi
        done
    fi
}
cd_read() { # cd_read TAG: mount the medium, verify data.bin, umount
    mount -t iso9660 -o ro /dev/$dev /mnt 2>/tmp/mnt.err || { say "cd $1: mount failed: $(cat /tmp/mnt.err)"; return 1; }
    label=$(cat /mnt/label.txt)
    want=$(cut -d' ' -f1 /mnt/md5sum.txt)
    got=$(md5sum < /mnt/data.bin | cut -d' ' -f1)
    say "cd $1: medium $label data.bin md5=$got (md5sum.txt: $want) at $(now)s"
    umount /mnt
    [ -n "$got" ] && [ "$got" = "$want" ]
}
if [ "$mode" = cdrom ]; then
    # A shell on COM1 for dom0's `xl console -t serial` (the DM's pty):
    # dom0 types a line there and waits for the shell's answer.
    if [ -c /dev/ttyS0 ]; then
        setsid sh -c 'exec sh -i < /dev/ttyS0 > /dev/ttyS0 2>&1' &
        say "shell on ttyS0 (pid $!)"
    else
        say "no /dev/ttyS0"
    fi
    cd_read first || finish FAIL
    first=$label
    say "cd waiting for a media change"
    # a first window with the tray unlocked (no mount) for dom0's eject
    sleep 5
    n=0; empty=0
    while [ $n -lt 300 ]; do
        if mount -t iso9660 -o ro /dev/$dev /mnt 2>/tmp/mnt.err; then
            l=$(cat /mnt/label.txt); umount /mnt
            [ "$l" != "$first" ] && break
        elif [ $empty = 0 ]; then
            say "cd no medium at $(now)s: $(tr '\n' ' ' < /tmp/mnt.err)"; empty=1
        fi
        sleep 1; n=$((n + 1))
    done
    cd_read second && [ "$label" != "$first" ] && finish PASS
    finish FAIL
fi
if [ "$mode" = bench ]; then
    names=""
    for d in $devs; do
        k=$(disk_at "$(position_of "$d")") || { say "no disk for $d"; finish FAIL; }
        names="$names $k"
    done
    dd if=/dev/urandom of=/tmp/pattern bs=1M count="$mb" 2>/dev/null
    want=$(md5sum < /tmp/pattern | cut -d' ' -f1)
    # (written aside and renamed, so a reader never sees a half-written file)
    ( i=0; while :; do i=$((i + 1)); [ $((i % 2000)) -eq 0 ] && { echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; }; done ) &
    busy_pid=$!
    sleep 1
    say "BENCH begin: disks$names, $mb MiB each, $(grep -c ^processor /proc/cpuinfo) CPU(s), ata1.00 dma_mode=$dma"
    sleep 3
    c0=$(count_now); t0=$(now); sleep 4; idle=$(rate_since "$c0" "$t0")
    say "BENCH idle busy-loop rate=$idle/s"
    bench_ok=1
    first=${names# }; first=${first%% *}
    bench_phase one-disk write $first
    bench_phase one-disk read $first
    # shellcheck disable=SC2086
    bench_phase all-disks write $names
    # shellcheck disable=SC2086
    bench_phase all-disks read $names
    kill $busy_pid
    say "BENCH end"
    sleep 3
    [ $bench_ok -eq 1 ] && finish PASS
    finish FAIL
fi

# iobench: per disk of devs, diskbench's four O_DIRECT figures on the
# region [start_mb, start_mb + mb) MiB: sequential write and read of mb MiB
# in 1 MiB requests, then ops random 4 KiB writes and reads in it.
if [ "$mode" = iobench ]; then
    ok=1
    for d in $devs; do
        k=$(disk_at "$(position_of "$d")") || { say "no disk for $d"; finish FAIL; }
        for op in seqwrite seqread randwrite randread; do
            n=$mb; case $op in rand*) n=$ops ;; esac
            diskbench "$k" $op "$start_mb" "$mb" "$n" "$d" > /dev/kmsg || ok=0
        done
    done
    # 3 s idle before the power-off, for dom0 to sample the DM's CPU time
    say "BENCH end"
    sleep 3
    [ $ok = 1 ] && finish PASS
    finish FAIL
fi
# ($dev is the kernel's name by now, found by ATA position above)
if [ "$mode" = fscheck ]; then
    fs_check
fi
if [ "$mode" = fsloop ]; then
    say "ext4 on /dev/$dev: fsloop over $files file(s) of $kb KiB, each fsynced, until TBSTOP; ata1.00 dma_mode=$dma"
    mount -t ext4 /dev/$dev /mnt 2>/tmp/mnt.err || { say "mount failed: $(cat /tmp/mnt.err)"; finish FAIL; }
    (cd /mnt/seed && md5sum -c MANIFEST >/dev/null 2>&1) && say "seed files verify" || say "seed files do NOT verify"
    mkdir -p /tmp/last
    i=0; round=0; vbad=0; wfail=0; t0=$(now)
    while :; do
        if [ $((i % 4)) -eq 0 ]; then
            stop=$(dd if=/dev/$boot bs=512 skip=65537 count=1 iflag=direct 2>/dev/null | tr -d '\000' | head -n 1)
            case $stop in TBSTOP*) say "stop request seen after $i file(s) at $(now)s"; break ;; esac
        fi
        slot=$(printf %03d $((i % files)))
        dd if=/dev/urandom of=/tmp/buf bs=1024 count="$kb" 2>/dev/null
        sum=$(md5sum < /tmp/buf | cut -d' ' -f1)
        if dd if=/tmp/buf of="/mnt/data/f$slot" bs=1024 count="$kb" conv=fsync 2>/tmp/dd.err; then
            echo "$sum" > /tmp/last/f$slot
            say "synced data/f$slot md5=$sum n=$i at $(now)s"
        else
            say "write data/f$slot FAILED at $(now)s: $(tr '\n' ' ' < /tmp/dd.err)"
            wfail=1
            break
        fi
        i=$((i + 1))
        if [ $((i % 16)) -eq 0 ]; then
            round=$((round + 1)); ok=0; n=0
            sync; echo 3 > /proc/sys/vm/drop_caches
            for f in /tmp/last/f*; do
                b=$(basename "$f"); n=$((n + 1))
                got=$(md5sum < "/mnt/data/$b" 2>/dev/null | cut -d' ' -f1)
                if [ "$got" = "$(cat "$f")" ]; then ok=$((ok + 1)); else say "VERIFY FAILED data/$b in round $round: md5 $got, synced $(cat "$f")"; vbad=$((vbad + 1)); fi
            done
            say "verify round $round: $ok of $n ok at $(now)s"
        fi
    done
    say "fsloop wrote $i file(s) in $(awk "BEGIN{print $(now)-$t0}")s, $round verify round(s), $vbad verify failure(s), write failure=$wfail"
    sync
    umount /mnt 2>/tmp/umount.err; say "umount rc=$? $(tr '\n' ' ' < /tmp/umount.err)"
    : > /tmp/synced
    for f in /tmp/last/f*; do [ -f "$f" ] && echo "data/$(basename "$f") $(cat "$f")" >> /tmp/synced; done
    [ $vbad -eq 0 ] && [ $wfail -eq 0 ] || { say "fsloop had failures"; loop_failed=1; }
    fs_check
fi
if [ "$mode" = fs ]; then
    say "ext4 on /dev/$dev: $files file(s) of $kb KiB, each fsynced, then $then; ata1.00 dma_mode=$dma"
    mount -t ext4 /dev/$dev /mnt 2>/tmp/mnt.err || { say "mount failed: $(cat /tmp/mnt.err)"; finish FAIL; }
    (cd /mnt/seed && md5sum -c MANIFEST >/dev/null 2>&1) && say "seed files verify" || say "seed files do NOT verify"
    : > /tmp/synced
    t0=$(now); i=1; ok=0
    while [ $i -le "$files" ]; do
        name=data/f$(printf %03d $i)
        dd if=/dev/urandom of=/tmp/buf bs=1024 count="$kb" 2>/dev/null
        sum=$(md5sum < /tmp/buf | cut -d' ' -f1)
        if dd if=/tmp/buf of="/mnt/$name" bs=1024 count="$kb" conv=fsync 2>/tmp/dd.err; then
            echo "$name $sum" >> /tmp/synced
            say "synced $name md5=$sum at $(now)s"
            ok=$((ok + 1))
        else
            say "write $name FAILED at $(now)s: $(tr '\n' ' ' < /tmp/dd.err)"
            break
        fi
        i=$((i + 1))
    done
    t1=$(now)
    say "wrote $ok of $files file(s) in $(awk "BEGIN{print $t1-$t0}")s"
    sync
    umount /mnt 2>/tmp/umount.err; say "umount rc=$? $(tr '\n' ' ' < /tmp/umount.err)"
    [ "$then" = check ] && fs_check
    # then=poweroff: PASS means every file was written; a disk-full job
    # expects FAIL here, dom0 decides from the lines above
    [ $ok -eq "$files" ] && finish PASS
    finish FAIL
fi
say "testing /dev/$dev from MiB $start_mb, $mb MiB, expect=$expect, ata1.00 dma_mode=$dma"

dd if=/dev/urandom of=/tmp/pattern bs=1M count="$mb" 2>/dev/null
want=$(md5sum < /tmp/pattern | cut -d' ' -f1)
say "pattern md5=$want"

# O_DIRECT so the blocks really travel through the controller (DMA) now,
# not from or into the page cache.
t0=$(now)
dd if=/tmp/pattern of=/dev/$dev bs=1M seek="$start_mb" count="$mb" oflag=direct 2>/tmp/dd.err
wrc=$?
t1=$(now)
say "write rc=$wrc in $(awk "BEGIN{print $t1-$t0}")s ($(awk "BEGIN{d=$t1-$t0; if(d>0) printf \"%.2f\", $mb/d; else print \"inf\"}") MB/s) $(tr '\n' ' ' < /tmp/dd.err)"
if [ "$expect" = fail ]; then
    if [ $wrc -ne 0 ]; then finish PASS; else say "write succeeded but an error was expected"; finish FAIL; fi
fi
[ $wrc -eq 0 ] || finish FAIL

# Read into tmpfs and checksum after, as the write reads from tmpfs: timed
# through a pipe into md5sum, the read figure was the guest's md5 speed as
# much as the disk's (one vCPU under TCG runs both).
t0=$(now)
dd if=/dev/$dev of=/tmp/back bs=1M skip="$start_mb" count="$mb" iflag=direct 2>/dev/null
t1=$(now)
got=$(md5sum < /tmp/back | cut -d' ' -f1)
rm -f /tmp/back
say "read back md5=$got in $(awk "BEGIN{print $t1-$t0}")s ($(awk "BEGIN{d=$t1-$t0; if(d>0) printf \"%.2f\", $mb/d; else print \"inf\"}") MB/s)"
if [ "$got" = "$want" ]; then say "md5 match"; finish PASS; else say "md5 MISMATCH"; finish FAIL; fi
