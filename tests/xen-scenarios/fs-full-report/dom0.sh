# Pass, first boot: the host filesystem under the image fills; the guest
# kernel logs the ATA abort on ata1.01 (failed command: WRITE DMA, status:
# { DRDY ERR }, error: { ABRT }); an fsync fails in the application
# (GUEST: write ... FAILED) after at least one succeeded; (xen-ioemu) syslog
# has "io-error domid=N ... errno=28 ... action=report"; the guest powers
# off. Second boot, after dom0 freed space: the mount (journal replay) and
# e2fsck -f -n are clean (rc 0), the seed files verify, every file whose
# fsync succeeded in the first boot is there with its md5 (in the guest and
# read by dom0's debugfs from the image), dom0's own e2fsck -f -n is clean.
IMG=/var/lib/xen/images
tb_small_fs $IMG/small 80
tb_fs_image $IMG/small/data.img
used=$(tb_alloc_kb $IMG/small/data.img)
mount -o remount,size=$((used + 2048))k $IMG/small
tb_say "ext4 image: $used KiB allocated; data fs: $(df -k $IMG/small | tail -1)"
tb_guest_disk $IMG/boot.img 40 "TBJOB mode=fs dev=sdb files=64 kb=64 then=poweroff"
tb_guest_kernel
tb_create guest.cfg
d1=$(tb_domid fs-full-report)
tb_wait_console "\(d$d1\) .*GUEST: DONE" 900
tb_linux_milestones
tb_say "data fs: $(df -k $IMG/small | tail -1)"
tb_synced "$d1" > /tmp/synced.txt
tb_say "first boot: $(wc -l < /tmp/synced.txt) file(s) fsynced before the failure"
tb_check "guest ran with $(grep -o "^vcpus = [0-9]*" guest.cfg | cut -d" " -f3) vCPU(s)" tb_guest_says "$d1" "$(grep -o "^vcpus = [0-9]*" guest.cfg | cut -d" " -f3) CPU\\(s\\) online"
tb_check "the host filesystem under the image is full" [ "$(tb_fs_avail_kb $IMG/small)" -lt 64 ]
tb_check "guest: seed files verify on first mount" tb_guest_says "$d1" 'seed files verify'
tb_check "guest: at least one file fsynced before the host filled" [ -s /tmp/synced.txt ]
tb_check "guest: ext4 returned the error to the application (write FAILED)" tb_guest_says "$d1" 'write data/f[0-9]+ FAILED'
tb_check "guest kernel: failed command: WRITE DMA" tb_console_has "\(d$d1\) .*ata1\.01: failed command: WRITE DMA"
tb_check "guest kernel: status: { DRDY ERR }" tb_console_has "\(d$d1\) .*ata1\.01: status: \{ DRDY ERR \}"
tb_check "guest kernel: error: { ABRT }" tb_console_has "\(d$d1\) .*ata1\.01: error: \{ ABRT \}"
tb_check "boot disk saw no error" tb_console_lacks 'ata1\.00: failed command'
tb_check_ours "syslog: io-error audit line, errno=28, action=report" \
    tb_syslog_has "io-error domid=$d1 drive=[^ ]+ cmd=\"WRITE DMA( EXT)?\" sectors=[0-9]+-[0-9]+ errno=28 \(No space left on device\) action=report"
tb_check "no script=: the DM was handed the image files" grep -q 'exec: .*file=/var/lib/xen/images/small/data.img' /var/log/xen/qemu-dm-fs-full-report.log
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone fs-full-report 60
tb_check "device model exited" tb_wait_dm_exit "$d1" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$d1")" = 0 ]
grep -E 'io-error' /var/log/messages | head -3

mount -o remount,size=80m $IMG/small
tb_say "freed space: $(df -k $IMG/small | tail -1)"
tb_set_job $IMG/boot.img "TBJOB mode=fscheck dev=sdb"
# To see this scenario fail, corrupt one fsynced file here, e.g.:
#   b=$(debugfs -R "bmap /data/f001 0" $IMG/small/data.img 2>/dev/null)
#   dd if=/dev/urandom of=$IMG/small/data.img bs=4096 seek=$b count=1 conv=notrunc
tb_create guest.cfg
d2=$(tb_domid fs-full-report)
tb_wait_console "\(d$d2\) .*GUEST: DONE" 900
grep -E "\(d$d2\) .*GUEST: " "$TB_CONSOLE" | grep -v 'GUEST: file ' | sed 's/^/  console: /'
tb_listed "$d2" > /tmp/listed.txt
tb_check "second boot: mount (journal replay) works" tb_guest_says "$d2" 'mount rc=0'
tb_check "second boot: e2fsck -f -n clean (rc 0)" tb_guest_says "$d2" 'e2fsck -f -n rc=0 *$'
tb_check "second boot: seed files verify (4 of 4)" tb_guest_says "$d2" 'seed files: 4 of 4 verify'
tb_check "every file fsynced in the first boot verifies by md5 ($(wc -l < /tmp/synced.txt) files)" \
    tb_verify_synced /tmp/synced.txt /tmp/listed.txt
tb_verify_synced /tmp/synced.txt /tmp/listed.txt | head -5
tb_check "second boot: no ATA error" tb_guest_lacks "$d2" 'failed command|exception Emask|I/O error'
tb_check "guest powered itself off again" tb_wait_domain_gone fs-full-report 60
tb_check "device model exited (second boot)" tb_wait_dm_exit "$d2" 20
tb_check "device model exit status 0 (second boot)" [ "$(tb_dm_exit "$d2")" = 0 ]
e2fsck -f -n $IMG/small/data.img > $TB_OUT/dom0-e2fsck.log 2>&1
rc=$?
sed 's/^/  dom0 e2fsck: /' $TB_OUT/dom0-e2fsck.log
tb_check "dom0: e2fsck -f -n of the image is clean (rc $rc)" [ $rc -eq 0 ]
tb_image_md5s $IMG/small/data.img /tmp/synced.txt > /tmp/image-md5s.txt
tb_check "dom0: debugfs reads every fsynced file with its md5 from the image" cmp -s /tmp/synced.txt /tmp/image-md5s.txt
tail -10 /var/log/xen/qemu-dm-fs-full-report.log 2>/dev/null
tb_finish
