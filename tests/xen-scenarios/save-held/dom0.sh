# Pass: see scenario.conf.
IMG=/var/lib/xen/images
SAVE=/var/lib/xen/save
NAME=save-held
FILES=48
mkdir -p $SAVE
mount -t tmpfs -o size=400m tmpfs $SAVE
tb_small_fs $IMG/small 80
tb_fs_image $IMG/small/data.img
used=$(tb_alloc_kb $IMG/small/data.img)
mount -o remount,size=$((used + 2048))k $IMG/small
tb_say "ext4 image: $used KiB allocated; data fs: $(df -k $IMG/small | tail -1)"
tb_guest_disk $IMG/boot.img 40 "TBJOB mode=fs dev=sdb files=$FILES kb=64 then=check"
tb_guest_kernel
tb_create guest.cfg
domid=$(tb_domid $NAME)
tb_wait_console "\(d$domid\) .*GUEST: ext4 on" 1200
n=0
while [ "$(tb_fs_avail_kb $IMG/small)" -ge 64 ] && [ $n -lt 300 ]; do
    tb_console_has "\(d$domid\) .*GUEST: (wrote|DONE)" && break
    sleep 1; n=$((n + 1))
done
tb_say "data fs: $(df -k $IMG/small | tail -1)"
tb_check "the host filesystem under the image filled up" [ "$(tb_fs_avail_kb $IMG/small)" -lt 64 ]
tb_check_ours "syslog: io-error audit line, errno=28, action=stop" \
    tb_wait_syslog "io-error domid=$domid drive=[^ ]+ cmd=\"WRITE DMA( EXT)?\" sectors=[0-9]+-[0-9]+ errno=28 \(No space left on device\) action=(stop|retry)" 20
sleep 5
held=$(tb_synced "$domid" | wc -l)
tb_say "synced before the save: $held"
tb_check "guest is held: not finished when the save starts" tb_guest_lacks "$domid" 'GUEST: wrote'
xl list
t0=$(tb_now)
xl -vvv save $NAME $SAVE/g.save > $TB_OUT/xl-save.log 2>&1; rc=$?
t1=$(tb_now)
size=$(stat -c %s $SAVE/g.save 2>/dev/null)
[ $rc -ne 0 ] && tail -40 $TB_OUT/xl-save.log
tb_check "xl save of the held guest rc=0 (rc $rc)" [ $rc -eq 0 ]
tb_check "libxl suspended the guest by the SHUTDOWN_suspend domctl (no PV drivers)" \
    grep -q 'Calling xc_domain_shutdown on HVM domain' $TB_OUT/xl-save.log
tb_check "domain gone after the save" tb_wait_domain_gone $NAME 20
ls -l /var/lib/xen
mount -o remount,size=80m $IMG/small
tb_say "freed space: $(df -k $IMG/small | tail -1)"
t2=$(tb_now)
xl -vvv restore $SAVE/g.save > $TB_OUT/xl-restore.log 2>&1; rc=$?
t3=$(tb_now)
[ $rc -ne 0 ] && tail -40 $TB_OUT/xl-restore.log
tb_check "xl restore rc=0 (rc $rc)" [ $rc -eq 0 ]
echo "BENCH save-held: xl save $(awk "BEGIN{print $t1-$t0}") s (save file $size bytes), xl restore $(awk "BEGIN{print $t3-$t2}") s"
d2=$(tb_domid $NAME)
tb_say "restored as domain $d2"
n=0
while [ "$(tb_synced "$d2" | wc -l)" -lt 1 ] && ! tb_guest_says "$d2" 'wrote' && [ $n -lt 60 ]; do
    sleep 1; n=$((n + 1))
done
tb_say "first file synced after the restore $(awk "BEGIN{print $(tb_now)-$t3}") s after it"
tb_check "the held write completed after the restore (a file synced within 60 s)" \
    [ "$(tb_synced "$d2" | wc -l)" -ge 1 ]
tb_wait_console "\(d$d2\) .*GUEST: wrote" 300
tb_wait_console "\(d$d2\) .*GUEST: DONE" 300
grep -E "\(d[0-9]+\) .*(GUEST: |$TB_LIBATA_ERRORS)" "$TB_CONSOLE" | grep -vE 'GUEST: (file|synced) ' | sed 's/^/  console: /'
{ tb_synced "$domid"; [ "$d2" != "$domid" ] && tb_synced "$d2"; } > /tmp/synced.txt
tb_listed "$d2" > /tmp/listed.txt
tb_check "guest: every fsync succeeded ($FILES of $FILES files, across the save)" tb_guest_says "$d2" "wrote $FILES of $FILES file"
tb_check "$FILES distinct files synced in all" [ "$(cut -d' ' -f1 /tmp/synced.txt | sort -u | wc -l)" -eq $FILES ]
tb_check "guest: mount (journal replay) works" tb_guest_says "$d2" 'mount rc=0'
tb_check "guest: e2fsck -f -n clean (rc 0)" tb_guest_says "$d2" 'e2fsck -f -n rc=0 *$'
tb_check "guest: seed files verify (4 of 4)" tb_guest_says "$d2" 'seed files: 4 of 4 verify'
tb_check "guest: every synced file verifies in the guest" tb_guest_says "$d2" "verified $FILES of $FILES synced"
tb_check "every synced file is listed with its md5 ($(wc -l < /tmp/synced.txt) files)" \
    tb_verify_synced /tmp/synced.txt /tmp/listed.txt
tb_verify_synced /tmp/synced.txt /tmp/listed.txt | head -5
tb_check "guest: RESULT PASS" tb_guest_says "$d2" 'RESULT PASS'
tb_check "no failed command / exception Emask / I/O error / link reset in the guest kernel log at any time" \
    tb_console_lacks "$TB_LIBATA_ERRORS"
tb_say "soft-lockup reports: $(grep -cE '\(d[0-9]+\) .*soft lockup' "$TB_CONSOLE")"
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone $NAME 60
tb_check "device model exited" tb_wait_dm_exit "$d2" 20
e2fsck -f -n $IMG/small/data.img > $TB_OUT/dom0-e2fsck.log 2>&1
rc=$?
sed 's/^/  dom0 e2fsck: /' $TB_OUT/dom0-e2fsck.log
tb_check "dom0: e2fsck -f -n of the image is clean (rc $rc)" [ $rc -eq 0 ]
tb_image_md5s $IMG/small/data.img /tmp/synced.txt > /tmp/image-md5s.txt
tb_check "dom0: debugfs reads every fsynced file with its md5 from the image" cmp -s /tmp/synced.txt /tmp/image-md5s.txt
grep -E 'io-error|held|hold' /var/log/messages | head -8
for f in /var/log/xen/qemu-dm-$NAME*.log; do echo "== $f"; tail -8 "$f"; done 2>/dev/null
tb_finish
