# Pass: the guest's ext4 on xvdb (qdisk, qcow2) fills the host filesystem
# while it writes and fsyncs 64 KiB files; (xen-ioemu) syslog has the audit
# line with drive=xvdb, errno=28, action=stop; for 35 s after that the guest
# shows no error and has not finished (held); after dom0 grows the
# filesystem the held write completes by itself within 30 s (no xl
# unpause); all 48 files were fsynced; in the same boot the mount and
# e2fsck -f -n are clean and every file verifies; no I/O error in the guest
# kernel log at any time; clean power-off, DM exit 0; then qemu-img check
# finds no error (leaked clusters are counted and printed), and dom0's
# e2fsck -f -n and debugfs read every fsynced file from qemu-img's raw copy.
IMG=/var/lib/xen/images
FILES=48
tb_small_qcow2_fs $IMG/small $IMG/small/data.qcow2
tb_guest_disk $IMG/boot.img 40 "TBJOB mode=fs dev=xvdb files=$FILES kb=64 then=check"
tb_guest_kernel
tb_create guest.cfg
domid=$(tb_domid qdisk-qcow2-hold)
tb_wait_console "\(d$domid\) .*GUEST: ext4 on" 600
qstate=$(xenstore-read /local/domain/0/backend/qdisk/$domid/51728/state 2>&1)
tb_say "qdisk xvdb (51728): state $qstate, params $(xenstore-read /local/domain/0/backend/qdisk/$domid/51728/params 2>&1)"
n=0
while [ "$(tb_fs_avail_kb $IMG/small)" -ge 64 ] && [ $n -lt 300 ]; do
    tb_console_has "\(d$domid\) .*GUEST: (wrote|DONE)" && break
    sleep 1; n=$((n + 1))
done
tb_say "data fs: $(df -k $IMG/small | tail -1)"
tb_check "the host filesystem under the qcow2 image filled up" [ "$(tb_fs_avail_kb $IMG/small)" -lt 64 ]
tb_check_ours "syslog: io-error audit line, drive=xvdb, errno=28, action=stop" \
    tb_wait_syslog "io-error domid=$domid drive=xvdb cmd=\"[A-Z ]+\" sectors=[0-9]+-[0-9]+ errno=28 \(No space left on device\) action=stop" 20
t_full=$(tb_now)
sleep 35
tb_say "host full for $(awk "BEGIN{print $(tb_now)-$t_full}") s; synced so far: $(tb_synced "$domid" | wc -l)"
tb_check "guest is held: not finished 35 s after the host filled" tb_guest_lacks "$domid" 'GUEST: wrote'
tb_check "guest is held: no I/O error" tb_guest_lacks "$domid" 'I/O error|blk_update_request|EXT4-fs error'
tb_check "the device model is alive while it holds the write" kill -0 "$(tb_dm_pid "$domid")"
mount -o remount,size=80m $IMG/small
t_free=$(tb_now)
tb_say "freed space: $(df -k $IMG/small | tail -1)"
held=$(tb_synced "$domid" | wc -l)
n=0
while [ "$(tb_synced "$domid" | wc -l)" -le "$held" ] && ! tb_guest_says "$domid" 'wrote' && [ $n -lt 30 ]; do
    sleep 1; n=$((n + 1))
done
tb_say "held write completed $(awk "BEGIN{print $(tb_now)-$t_free}") s after space was freed (synced: $held -> $(tb_synced "$domid" | wc -l))"
tb_check "held write completed by itself within 30 s of freeing space (DM retry; no xl unpause)" \
    [ "$(tb_synced "$domid" | wc -l)" -gt "$held" ]
tb_wait_console "\(d$domid\) .*GUEST: wrote" 240
tb_wait_console "\(d$domid\) .*GUEST: DONE" 300
grep -E "\(d$domid\) .*(GUEST: |I/O error|blkfront)" "$TB_CONSOLE" | grep -vE 'GUEST: (file|synced) ' | sed 's/^/  console: /'
tb_synced "$domid" > /tmp/synced.txt
tb_listed "$domid" > /tmp/listed.txt
tb_check "guest: its boot disk is xvda (unplugged IDE, blkback)" tb_guest_says "$domid" 'found the boot disk \(xvda\)'
tb_check "the qdisk backend of xvdb was Connected (state 4)" [ "$qstate" = 4 ]
tb_check "guest: every fsync succeeded ($FILES of $FILES files)" tb_guest_says "$domid" "wrote $FILES of $FILES file"
tb_check "guest: mount works" tb_guest_says "$domid" 'mount rc=0'
tb_check "guest: e2fsck -f -n clean (rc 0)" tb_guest_says "$domid" 'e2fsck -f -n rc=0 *$'
tb_check "guest: seed files verify (4 of 4)" tb_guest_says "$domid" 'seed files: 4 of 4 verify'
tb_check "guest: every synced file verifies in the guest" tb_guest_says "$domid" "verified $FILES of $FILES synced"
tb_check "every synced file is listed with its md5 ($(wc -l < /tmp/synced.txt) files)" \
    tb_verify_synced /tmp/synced.txt /tmp/listed.txt
tb_check "guest: RESULT PASS" tb_guest_says "$domid" 'RESULT PASS'
tb_check "no I/O error in the guest kernel log at any time" tb_console_lacks 'I/O error|blk_update_request|EXT4-fs error'
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone qdisk-qcow2-hold 60
tb_check "device model exited" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
tb_check_qcow2_clean $IMG/small/data.qcow2 /tmp/synced.txt
grep -E 'io-error|held|hold' /var/log/messages | head -5
grep -E 'qdisk|xvdb' /var/log/xen/qemu-dm-qdisk-qcow2-hold.log | head -10
tb_finish
