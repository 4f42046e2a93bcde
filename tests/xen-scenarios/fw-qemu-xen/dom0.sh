# Pass criteria: tb_firmware_run in tools/testbed/dom0-lib.sh.
tb_firmware_run fw-qemu-xen fw.cfg
tb_check "no script=: the DM was handed the image file" grep -q 'exec: .*file=blkdebug:[^:]*:/var/lib/xen/images/fw-disk.img' /var/log/xen/qemu-dm-fw-qemu-xen.log
tb_check "Debian's block script attached a loop device for blkback" grep -q 'physical-device-path.*/dev/loop' /var/log/messages
tb_finish
