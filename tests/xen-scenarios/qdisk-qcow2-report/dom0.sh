# Pass, first boot: the host filesystem under the qcow2 image fills; the
# guest kernel logs "I/O error, dev xvdb" (blkfront got BLKIF_RSP_ERROR);
# an fsync fails in the application after at least one succeeded;
# (xen-ioemu) syslog has "io-error domid=N drive=xvdb ... errno=28 ...
# action=report"; the guest powers off. Second boot, after dom0 freed
# space: the mount (journal replay) and e2fsck -f -n are clean, the seed
# files and every file fsynced in the first boot verify; then qemu-img
# check finds no error (leaks counted) and dom0's e2fsck + debugfs on
# qemu-img's raw copy agree.
IMG=/var/lib/xen/images
tb_small_qcow2_fs $IMG/small $IMG/small/data.qcow2
tb_guest_disk $IMG/boot.img 40 "TBJOB mode=fs dev=xvdb files=64 kb=64 then=poweroff"
tb_guest_kernel
tb_create guest.cfg
d1=$(tb_domid qdisk-qcow2-report)
tb_wait_console "\(d$d1\) .*GUEST: DONE" 600
grep -E "\(d$d1\) .*(GUEST: |I/O error|EXT4-fs)" "$TB_CONSOLE" | grep -vE 'GUEST: (file|synced) ' | head -30 | sed 's/^/  console: /'
tb_say "data fs: $(df -k $IMG/small | tail -1)"
tb_synced "$d1" > /tmp/synced.txt
tb_say "first boot: $(wc -l < /tmp/synced.txt) file(s) fsynced before the failure"
tb_check "the host filesystem under the qcow2 image is full" [ "$(tb_fs_avail_kb $IMG/small)" -lt 64 ]
tb_check "guest: its boot disk is xvda (unplugged IDE, blkback)" tb_guest_says "$d1" 'found the boot disk \(xvda\)'
tb_check "guest: seed files verify on first mount" tb_guest_says "$d1" 'seed files verify'
tb_check "guest: at least one file fsynced before the host filled" [ -s /tmp/synced.txt ]
tb_check "guest: ext4 returned the error to the application (write FAILED)" tb_guest_says "$d1" 'write data/f[0-9]+ FAILED'
tb_check "guest kernel: I/O error on xvdb (blkfront failed the request)" tb_console_has "\(d$d1\) .*I/O error, dev xvdb"
tb_check "boot disk saw no error" tb_console_lacks 'I/O error, dev xvda'
tb_check_ours "syslog: io-error audit line, drive=xvdb, errno=28, action=report" \
    tb_syslog_has "io-error domid=$d1 drive=xvdb cmd=\"[A-Z ]+\" sectors=[0-9]+-[0-9]+ errno=28 \(No space left on device\) action=report"
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone qdisk-qcow2-report 60
tb_check "device model exited" tb_wait_dm_exit "$d1" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$d1")" = 0 ]
grep -E 'io-error' /var/log/messages | head -3

mount -o remount,size=80m $IMG/small
tb_say "freed space: $(df -k $IMG/small | tail -1)"
tb_set_job $IMG/boot.img "TBJOB mode=fscheck dev=xvdb"
tb_create guest.cfg
d2=$(tb_domid qdisk-qcow2-report)
tb_wait_console "\(d$d2\) .*GUEST: DONE" 600
grep -E "\(d$d2\) .*GUEST: " "$TB_CONSOLE" | grep -v 'GUEST: file ' | sed 's/^/  console: /'
tb_listed "$d2" > /tmp/listed.txt
tb_check "second boot: mount (journal replay) works" tb_guest_says "$d2" 'mount rc=0'
tb_check "second boot: e2fsck -f -n clean (rc 0)" tb_guest_says "$d2" 'e2fsck -f -n rc=0 *$'
tb_check "second boot: seed files verify (4 of 4)" tb_guest_says "$d2" 'seed files: 4 of 4 verify'
tb_check "every file fsynced in the first boot verifies by md5 ($(wc -l < /tmp/synced.txt) files)" \
    tb_verify_synced /tmp/synced.txt /tmp/listed.txt
tb_verify_synced /tmp/synced.txt /tmp/listed.txt | head -5
tb_check "second boot: no I/O error" tb_guest_lacks "$d2" 'I/O error'
tb_check "guest powered itself off again" tb_wait_domain_gone qdisk-qcow2-report 60
tb_check "device model exited (second boot)" tb_wait_dm_exit "$d2" 20
tb_check "device model exit status 0 (second boot)" [ "$(tb_dm_exit "$d2")" = 0 ]
tb_check_qcow2_clean $IMG/small/data.qcow2 /tmp/synced.txt
tail -10 /var/log/xen/qemu-dm-qdisk-qcow2-report.log 2>/dev/null
tb_finish
