# Pass: the guest's write fails and the guest says so (GUEST: RESULT PASS
# with expect=fail); its kernel logs the ATA error exactly as with QEMU
# (failed command: WRITE DMA [EXT], status: { DRDY ERR }, error: { ABRT });
# the boot disk saw no error; (xen-ioemu) syslog holds the audit line with
# errno=28 and action=report; the guest powers off; the DM exits 0.
tb_small_fs /var/lib/xen/images/small 8
truncate -s 64M /var/lib/xen/images/small/data.img
tb_guest_disk /var/lib/xen/images/boot.img 40 "TBJOB dev=sdb start_mb=0 mb=16 expect=fail"
tb_guest_kernel
tb_create guest.cfg
domid=$(tb_domid disk-full-report)
tb_wait_console 'GUEST: DONE' 780
tb_linux_milestones
tb_say "data fs: $(df -k /var/lib/xen/images/small | tail -1)"
tb_check "the data filesystem is full" [ "$(tb_fs_avail_kb /var/lib/xen/images/small)" -lt 64 ]
tb_check "guest's write failed as expected (GUEST: RESULT PASS)" tb_console_has 'GUEST: RESULT PASS'
tb_check "guest kernel: failed command: WRITE DMA" tb_console_has 'ata1\.01: failed command: WRITE DMA'
tb_check "guest kernel: status: { DRDY ERR }" tb_console_has 'ata1\.01: status: \{ DRDY ERR \}'
tb_check "guest kernel: error: { ABRT }" tb_console_has 'ata1\.01: error: \{ ABRT \}'
tb_check "boot disk saw no error" tb_console_lacks 'ata1\.00: failed command'
tb_check_ours "syslog: io-error audit line, errno=28, action=report" \
    tb_syslog_has "io-error domid=$domid drive=[^ ]+ cmd=\"WRITE DMA( EXT)?\" sectors=[0-9]+-[0-9]+ errno=28 \(No space left on device\) action=report"
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone disk-full-report 60
tb_check "device model exited" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
grep -E 'io-error' /var/log/messages | head -5
tail -20 /var/log/xen/qemu-dm-disk-full-report.log 2>/dev/null
tb_finish
