# Pass: the data disk fills while the guest writes; for 5 s after that the
# guest shows neither an ATA error nor a finished write (it is held);
# after dom0 grows the filesystem the write completes, by itself within
# 10 s or after `xl unpause`; the guest's md5 check passes and the image
# holds the guest's data; no ATA error at any time; (xen-ioemu) syslog
# has the audit line with errno=28 and action=stop; clean power-off.
tb_small_fs /var/lib/xen/images/small 8
truncate -s 64M /var/lib/xen/images/small/data.img
tb_guest_disk /var/lib/xen/images/boot.img 40 "TBJOB dev=sdb start_mb=0 mb=16 expect=ok"
tb_guest_kernel
tb_create guest.cfg
domid=$(tb_domid disk-full-hold)
tb_wait_console 'GUEST: pattern md5=' 780
n=0
while [ "$(tb_fs_avail_kb /var/lib/xen/images/small)" -ge 64 ] && [ $n -lt 120 ]; do sleep 1; n=$((n + 1)); done
tb_say "data fs: $(df -k /var/lib/xen/images/small | tail -1)"
tb_check "the data filesystem filled up" [ "$(tb_fs_avail_kb /var/lib/xen/images/small)" -lt 64 ]
# libata times a command out after 30 s: the hold, the wait for a
# completion by itself and the unpause must all fit in that, or the guest
# rightly reports a timeout (seen with QEMU, which needs the QMP cont).
sleep 5
tb_check "guest is held: no finished write 5 s after the disk filled" tb_console_lacks 'GUEST: write rc='
tb_check "guest is held: no ATA error" tb_console_lacks 'failed command|exception Emask'
xl list
mount -o remount,size=64m /var/lib/xen/images/small
tb_say "freed space: $(df -k /var/lib/xen/images/small | tail -1)"
how=""
if tb_wait_console 'GUEST: write rc=' 10; then
    how="by itself"
else
    tb_say "write still held 10 s after freeing space: xl unpause"
    xl unpause disk-full-hold; tb_say "xl unpause rc=$?"
    tb_wait_console 'GUEST: write rc=' 60 && how="after xl unpause"
fi
tb_say "held write completed: ${how:-never}"
tb_check "held write completed after space was freed (${how:-never})" [ -n "$how" ]
tb_wait_console 'GUEST: DONE' 120
tb_linux_milestones
tb_check "guest's write + read-back md5 match (GUEST: RESULT PASS)" tb_console_has 'GUEST: RESULT PASS'
tb_check "no ATA error on the guest console at any time" tb_console_lacks 'failed command|exception Emask|I/O error'
want=$(tb_guest_md5)
got=$(tb_region_md5 /var/lib/xen/images/small/data.img 0 16)
tb_say "guest pattern md5=$want, image region md5=$got"
tb_check "the guest's blocks are in the image file" [ -n "$want" -a "$want" = "$got" ]
tb_check_ours "syslog: io-error audit line, errno=28, action=stop" \
    tb_syslog_has "io-error domid=$domid drive=[^ ]+ cmd=\"WRITE DMA( EXT)?\" sectors=[0-9]+-[0-9]+ errno=28 \(No space left on device\) action=(stop|retry)"
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone disk-full-hold 60
tb_check "device model exited" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
grep -E 'io-error' /var/log/messages | head -5
tail -20 /var/log/xen/qemu-dm-disk-full-hold.log 2>/dev/null
tb_finish
