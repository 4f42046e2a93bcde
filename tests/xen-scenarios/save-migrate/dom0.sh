# Pass: see scenario.conf. Each save/restore/migrate happens while the
# guest is writing; after each one the guest must sync 4 more files within
# 300 s (it syncs one every 1-10 s at host load 10: the bound only tells a
# stuck guest from a slow one; every 16th file triggers a read-back of all).
IMG=/var/lib/xen/images
SAVE=/var/lib/xen/save
NAME=save-migrate
SAVE_ROUNDS=5
MIGRATE_ROUNDS=5
mkdir -p $SAVE
mount -t tmpfs -o size=640m tmpfs $SAVE
tb_fs_image $IMG/data.img
tb_guest_disk $IMG/boot.img 40 "TBJOB mode=fsloop dev=sdb files=64 kb=64"
tb_guest_kernel
tb_ssh_local /tmp/tb-ssh
tb_create guest.cfg
domid=$(tb_domid $NAME)
tb_wait_console "\(d$domid\) .*GUEST: ext4 on" 1200
tb_check "guest started its write loop" tb_wait_progress 8 180
tb_progress_sampler /tmp/progress.txt &
sampler=$!
tb_devstate_sampler /tmp/devstate.txt &
dsampler=$!
tb_say "guest writing; free memory: $(free -m | awk 'NR==2{print $4}') MiB; xl info free: $(xl info | awk '/free_memory/{print $3}') MiB"

# end_hung: an xl command hung and was killed (tb_xl_bounded): stop here,
# with the samplers, whose open stdout would keep dom0's report waiting.
end_hung() { kill $sampler $dsampler 2>/dev/null; tb_finish; }

alive_after() { # alive_after WHAT: the domain exists and the guest goes on
    tb_check "$1: domain $NAME exists" [ -n "$(tb_domid $NAME)" ]
    tb_check "$1: the guest goes on writing (4 more files within 300 s)" tb_wait_progress 4 300
}

i=1
while [ $i -le $SAVE_ROUNDS ] && [ -n "$(tb_domid $NAME)" ]; do
    d=$(tb_domid $NAME)
    : > /tmp/devstate.txt
    t0=$(tb_now)
    tb_xl_bounded 600 /tmp/xl-save.log save $NAME $SAVE/g.save; rc=$?
    t1=$(tb_now)
    size=$(stat -c %s $SAVE/g.save 2>/dev/null)
    tb_check "save $i: xl save rc=0 (rc $rc)" [ $rc -eq 0 ]
    tb_check "save $i: domain gone after the save" tb_wait_domain_gone $NAME 20
    tb_xl_bounded 600 /tmp/xl-restore.log restore $SAVE/g.save; rc2=$?
    t2=$(tb_now)
    tb_check "save $i: xl restore rc=0 (rc $rc2)" [ $rc2 -eq 0 ]
    [ $i = 1 ] && { tail -300 /tmp/xl-save.log > $TB_OUT/xl-save-1.log; tail -300 /tmp/xl-restore.log > $TB_OUT/xl-restore-1.log; }
    [ $rc -ne 0 ] && { tail -40 /tmp/xl-save.log; cp /tmp/xl-save.log $TB_OUT/xl-save-$i.log; }
    [ $rc2 -ne 0 ] && { tail -40 /tmp/xl-restore.log; cp /tmp/xl-restore.log $TB_OUT/xl-restore-$i.log; }
    # hung: its check failed and its state is logged; what follows would hang too
    [ $rc = 137 ] || [ $rc2 = 137 ] && end_hung
    alive_after "save $i"
    echo "BENCH save $i: xl save $(awk "BEGIN{print $t1-$t0}") s, xl restore $(awk "BEGIN{print $t2-$t1}") s, guest downtime $(tb_gap /tmp/progress.txt "$t0" "$t2") s, save file $size bytes, device state (qemu-save.$d) $(tb_devstate_size /tmp/devstate.txt qemu-save) bytes, qemu-resume $(tb_devstate_size /tmp/devstate.txt qemu-resume) bytes"
    rm -f $SAVE/g.save
    i=$((i + 1))
done

i=1
while [ $i -le $MIGRATE_ROUNDS ] && [ -n "$(tb_domid $NAME)" ]; do
    d=$(tb_domid $NAME)
    : > /tmp/devstate.txt
    t0=$(tb_now)
    tb_xl_bounded 600 /tmp/xl-migrate.log migrate -s /tmp/tb-ssh $NAME localhost; rc=$?
    t1=$(tb_now)
    tb_check "migrate $i: xl migrate to localhost rc=0 (rc $rc)" [ $rc -eq 0 ]
    d2=$(tb_domid $NAME)
    [ -n "$d2" ] && [ "$d2" != "$d" ]
    tb_check "migrate $i: the guest runs in a new domain (domid $d -> $d2)" [ $? -eq 0 ]
    [ $i = 1 ] && tail -300 /tmp/xl-migrate.log > $TB_OUT/xl-migrate-1.log
    [ $rc -ne 0 ] && { tail -40 /tmp/xl-migrate.log; cp /tmp/xl-migrate.log $TB_OUT/xl-migrate-$i.log; }
    [ $rc = 137 ] && end_hung
    alive_after "migrate $i"
    echo "BENCH migrate $i: xl migrate $(awk "BEGIN{print $t1-$t0}") s, guest downtime $(tb_gap /tmp/progress.txt "$t0" "$t1") s, device state (qemu-save.$d) $(tb_devstate_size /tmp/devstate.txt qemu-save) bytes"
    i=$((i + 1))
done

# checkpoint: the guest keeps running in the same domain
d=$(tb_domid $NAME)
t0=$(tb_now)
tb_xl_bounded 600 /tmp/xl-ckpt.log save -c $NAME $SAVE/ckpt.save; rc=$?
t1=$(tb_now)
[ $rc -ne 0 ] && { tail -40 /tmp/xl-ckpt.log; cp /tmp/xl-ckpt.log $TB_OUT/xl-ckpt.log; }
tb_check "checkpoint: xl save -c rc=0 (rc $rc)" [ $rc -eq 0 ]
tb_check "checkpoint: the save file was written" [ -s $SAVE/ckpt.save ]
tb_check "checkpoint: the guest stays in domain $d" [ "$(tb_domid $NAME)" = "$d" ]
alive_after "checkpoint"
echo "BENCH checkpoint: xl save -c $(awk "BEGIN{print $t1-$t0}") s, guest downtime $(tb_gap /tmp/progress.txt "$t0" "$t1") s"
rm -f $SAVE/ckpt.save

# a save that fails: the target filesystem is full after 16 MiB
tb_small_fs /tmp/full 16
t0=$(tb_now)
tb_xl_bounded 600 /tmp/xl-failsave.log save $NAME /tmp/full/g.save; rc=$?
t1=$(tb_now)
grep -E 'rror|resum|Failed' /tmp/xl-failsave.log | tail -8 | sed 's/^/  xl: /'
cp /tmp/xl-failsave.log $TB_OUT/xl-failed-save.log
tb_check "failed save: xl save to a full filesystem fails (rc $rc)" [ $rc -ne 0 ]
tb_check "failed save: the guest stays in domain $d" [ "$(tb_domid $NAME)" = "$d" ]
alive_after "failed save"
echo "BENCH failed save: xl save $(awk "BEGIN{print $t1-$t0}") s until it failed, guest downtime $(tb_gap /tmp/progress.txt "$t0" "$t1") s"
umount /tmp/full

kill $sampler $dsampler 2>/dev/null
d=$(tb_domid $NAME)
tb_stop_fsloop $IMG/boot.img
tb_wait_console "\(d$d\) .*GUEST: DONE" 600
grep -E "\(d[0-9]+\) .*(GUEST: |$TB_LIBATA_ERRORS)" "$TB_CONSOLE" | grep -vE 'GUEST: (file|synced) ' | sed 's/^/  console: /' | tail -60
tb_all_synced_last > /tmp/synced.txt
tb_all_listed > /tmp/listed.txt
tb_say "files synced in all: $(tb_all_synced_count); distinct files: $(wc -l < /tmp/synced.txt)"
tb_check "guest: the write loop ended on dom0's stop request" tb_all_guest_says 'stop request seen'
tb_check "guest: no write failed and no read-back differed" tb_all_guest_says 'fsloop wrote [0-9]+ file\(s\) in [0-9.]+s, [0-9]+ verify round\(s\), 0 verify failure\(s\), write failure=0'
tb_check "guest: no VERIFY FAILED line" tb_console_lacks 'GUEST: VERIFY FAILED'
tb_check "guest: mount (journal replay) works" tb_all_guest_says 'mount rc=0'
tb_check "guest: e2fsck -f -n clean (rc 0)" tb_all_guest_says 'e2fsck -f -n rc=0 *$'
tb_check "guest: seed files verify (4 of 4)" tb_all_guest_says 'seed files: 4 of 4 verify'
tb_check "every file is listed with its last synced md5 ($(wc -l < /tmp/synced.txt) files)" \
    tb_verify_synced /tmp/synced.txt /tmp/listed.txt
tb_verify_synced /tmp/synced.txt /tmp/listed.txt | head -5
tb_check "guest: RESULT PASS" tb_all_guest_says 'RESULT PASS'
tb_check "no failed command / exception Emask / I/O error / link reset in the guest kernel log at any time" \
    tb_console_lacks "$TB_LIBATA_ERRORS"
tb_say "soft-lockup reports: $(grep -cE '\(d[0-9]+\) .*soft lockup' "$TB_CONSOLE")"
# The checkpoint and the failed save suspended the domain, and xl's monitor
# exits on a suspend: the poweroff leaves the domain shut down, and dom0
# destroys it (the device model exits when libxl tears the domain down).
tb_check "guest powered itself off (domain shut down within 60 s)" tb_wait_domain_shut_down $NAME 60
tb_check_ours "the DM saw the guest's ACPI power-off" grep -qs 'guest requested Poweroff' /var/log/xen/qemu-dm-$NAME--incoming.log /var/log/xen/qemu-dm-$NAME.log
xl destroy $NAME
tb_check "device model exited after xl destroy" tb_wait_dm_exit "$d" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$d")" = 0 ]
e2fsck -f -n $IMG/data.img > $TB_OUT/dom0-e2fsck.log 2>&1
rc=$?
sed 's/^/  dom0 e2fsck: /' $TB_OUT/dom0-e2fsck.log
tb_check "dom0: e2fsck -f -n of the image is clean (rc $rc)" [ $rc -eq 0 ]
tb_image_md5s $IMG/data.img /tmp/synced.txt > /tmp/image-md5s.txt
tb_check "dom0: debugfs reads every file with its last synced md5 from the image" cmp -s /tmp/synced.txt /tmp/image-md5s.txt
for f in /var/log/xen/qemu-dm-$NAME*.log; do echo "== $f"; tail -5 "$f"; done 2>/dev/null
tb_finish
