# Pass: the guest starts from the kernel given by xl kernel= (SeaBIOS boots
# the linuxboot ROM, never the disk), reaches its init (the time from xl
# create is printed as a BOOT line), finds the IDE disk and does
# linux-boot's DMA write + read-back with matching md5, the blocks are in
# the image file, no ATA error, ACPI power-off, DM exit 0. Ours also logs
# the direct kernel boot (sizes, ROM). An xl channel= (connection=pty) is
# served by the DM as a PV console: the guest's hello on /dev/hvc1 reaches
# the pty the DM published, and dom0's reply line reaches the guest.
tb_guest_disk /var/lib/xen/images/kboot.img 64 "TBJOB dev=sda start_mb=33 mb=16 expect=ok channel=1"
tb_guest_kernel
t0=$(tb_now)
tb_create guest.cfg
domid=$(tb_domid kernel-boot)
tb_time_to_userspace "$t0" 480
tb_check "guest reached its init" tb_console_has 'GUEST: init running'
tb_channel_answer "$domid"; chan=$?
tb_check "channel: the guest's hello reached the pty in xenstore, dom0 answered" [ $chan = 0 ]
xl channel-list kernel-boot 2>&1 | sed 's/^/  xl channel-list: /'
tb_wait_console 'GUEST: DONE' 300
grep -E 'Booting from|Linux version|GUEST: |BOOT ' "$TB_CONSOLE" | sed 's/^/  console: /'
tb_check "SeaBIOS booted the linuxboot option ROM (Booting from ROM)" tb_console_has 'Booting from ROM'
tb_check "SeaBIOS did not boot the disk" tb_console_lacks 'Booting from Hard Disk'
tb_check "the kernel got xl's cmdline" tb_console_has 'Command line: earlyprintk=xen keep_bootcon console=hvc0 xen_emul_unplug=never panic=1 rdinit=/init'
tb_check "channel: the guest read dom0's line on /dev/hvc1" tb_console_has "GUEST: channel: got 'DOM0-CHANNEL-REPLY to d$domid'"
tb_check "guest found its disk (ata1.00)" tb_console_has 'GUEST: found the boot disk \(ata1\.00\)'
tb_check "guest DMA write + read-back md5 match (GUEST: RESULT PASS)" tb_console_has 'GUEST: RESULT PASS'
tb_check "no ATA errors on the guest console" tb_console_lacks 'failed command|exception Emask|I/O error'
want=$(tb_guest_md5)
got=$(tb_region_md5 /var/lib/xen/images/kboot.img 33 16)
tb_say "guest pattern md5=$want, image region md5=$got"
tb_check "the guest's blocks are in the image file" [ -n "$want" -a "$want" = "$got" ]
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone kernel-boot 60
tb_check "device model exited after the poweroff" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
if [ "$DM_KIND" != qemu ]; then
    tb_check "the DM logged the direct kernel boot" grep -q 'direct kernel boot: /var/lib/xen/images/vmlinuz' /var/log/xen/qemu-dm-kernel-boot.log
fi
tail -20 /var/log/xen/qemu-dm-kernel-boot.log 2>/dev/null
tb_finish
