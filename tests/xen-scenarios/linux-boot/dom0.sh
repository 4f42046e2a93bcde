# Pass: the guest boots from our disk, its DMA write + read-back md5 match
# ("GUEST: RESULT PASS"), the blocks are in the image file (md5 from dom0
# equals the guest's pattern md5), no ATA error on the guest console, and
# the guest powers itself off (ACPI S5 via the DM) with the DM exiting 0.
# The disk has script=block explicitly: Debian's block script hands blkback
# and (through physical-device-path) the DM /dev/loopN; xen-ioemu resolves
# the loop device to its backing file (src/block/loopdev.rs).
tb_guest_disk /var/lib/xen/images/linux.img 64 "TBJOB dev=sda start_mb=33 mb=16 expect=ok"
tb_create linux.cfg
domid=$(tb_domid linux-boot)
tb_wait_console 'GUEST: DONE' 780
grep -E 'Booting from|Linux version|GUEST: ' "$TB_CONSOLE" | sed 's/^/  console: /'
tb_check "guest found its boot disk (ata1.00)" tb_console_has 'GUEST: found the boot disk \(ata1\.00\)'
tb_check "guest DMA write + read-back md5 match (GUEST: RESULT PASS)" tb_console_has 'GUEST: RESULT PASS'
tb_check "libata uses DMA (MWDMA2)" tb_console_has 'GUEST: testing .*dma_mode=XFER_MW_DMA_2'
tb_check "no ATA errors on the guest console" tb_console_lacks 'failed command|exception Emask|I/O error'
want=$(tb_guest_md5)
got=$(tb_region_md5 /var/lib/xen/images/linux.img 33 16)
tb_say "guest pattern md5=$want, image region md5=$got"
tb_check "the guest's blocks are in the image file" [ -n "$want" -a "$want" = "$got" ]
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone linux-boot 60
tb_check "device model exited after the poweroff" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
tb_check "script=block: Debian's block script attached a loop device" grep -q 'physical-device-path.*/dev/loop' /var/log/messages
tb_check "script=block: the DM was handed /dev/loopN" grep -q 'exec: .*file=/dev/loop[0-9]' /var/log/xen/qemu-dm-linux-boot.log
tail -20 /var/log/xen/qemu-dm-linux-boot.log 2>/dev/null
tb_finish
