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
#   TBJOB mode=fscheck dev=sdb
#     the check: mount + umount (the kernel replays the journal, if any),
#     e2fsck -f -n (its lines as "GUEST: e2fsck: ...", "GUEST: e2fsck -f -n
#     rc=N"), then mounts read-only and prints "GUEST: file data/fNNN md5=..."
#     for every file, for dom0 to compare with the synced list.
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
# SCSI 0:0:0:0, sdb = ata1.01, sdc = ata2.00, sdd = ata2.01).
position_of() {
    case $1 in sda) echo 0:0:0:0 ;; sdb) echo 0:0:1:0 ;; sdc) echo 1:0:0:0 ;; sdd) echo 1:0:1:0 ;; *) echo "$1" ;; esac
}
disk_at() { # disk_at SCSI-ADDRESS: its block device name, once it is there
    n=0
    while [ $n -lt 300 ]; do
        b=$(ls /sys/class/scsi_disk/$1/device/block 2>/dev/null | head -n 1)
        [ -n "$b" ] && [ -b "/dev/$b" ] && { echo "$b"; return 0; }
        sleep 0.1; n=$((n+1))
    done
    return 1
}
no_disk() { # what the kernel knows about the IDE function, for the log
    d=/sys/bus/pci/devices/0000:00:01.1
    say "no disk at ata1.00 at $(now)s; 00:01.1 enable=$(cat $d/enable 2>/dev/null) driver=$(basename "$(readlink $d/driver 2>/dev/null)") scsi hosts: $(ls /sys/class/scsi_host 2>/dev/null | tr '\n' ' ')"
    say "modules: $(cut -d' ' -f1,3 /proc/modules | tr '\n' ' ')"
    grep -E 'ata|ide|CPU' /proc/interrupts | while read -r l; do say "irq: $l"; done
    finish FAIL
}
boot=$(disk_at 0:0:0:0) || no_disk
say "found the boot disk (ata1.00) as /dev/$boot, $(cat /sys/block/$boot/size) sectors, at $(now)s"

job=$(dd if=/dev/$boot bs=512 skip=65536 count=1 iflag=direct 2>/dev/null | tr -d '\000' | head -n 1)
case $job in TBJOB\ *) ;; *) say "no job at sector 65536 of /dev/$boot"; finish FAIL ;; esac
say "job: $job"
dev=sda; start_mb=33; mb=16; expect=ok; mode=raw; files=32; kb=64; then=poweroff
for kv in $job; do
    case $kv in
    mode=*) mode=${kv#mode=} ;;
    files=*) files=${kv#files=} ;;
    kb=*) kb=${kv#kb=} ;;
    then=*) then=${kv#then=} ;;
    dev=*) dev=${kv#dev=} ;;
    start_mb=*) start_mb=${kv#start_mb=} ;;
    mb=*) mb=${kv#mb=} ;;
    expect=*) expect=${kv#expect=} ;;
    esac
done
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
    [ $r -eq 0 ] && [ $sr -eq 0 ] && [ $bad -eq 0 ] && finish PASS
    finish FAIL
}

# ($dev is the kernel's name by now, found by ATA position above)
if [ "$mode" = fscheck ]; then
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

t0=$(now)
got=$(dd if=/dev/$dev bs=1M skip="$start_mb" count="$mb" iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
t1=$(now)
say "read back md5=$got in $(awk "BEGIN{print $t1-$t0}")s ($(awk "BEGIN{d=$t1-$t0; if(d>0) printf \"%.2f\", $mb/d; else print \"inf\"}") MB/s)"
if [ "$got" = "$want" ]; then say "md5 match"; finish PASS; else say "md5 MISMATCH"; finish FAIL; fi
