# Pass: the guest boots through SeaBIOS from a qcow2 overlay (on a raw
# base) read by our IDE disk, unplugs it, finds xvda through blkfront on our
# qdisk backend (blkback cannot serve qcow2, so libxl gives it to the DM),
# its O_DIRECT write + read-back md5 match (GUEST: RESULT PASS); the blocks
# are in the overlay as qemu-img reads it, `qemu-img check` is clean, the
# base is unchanged (the backing file is opened read-only); (ours) the DM
# logged the unplug and connected the ring; the guest powers itself off and
# the DM exits 0.
IMG=/var/lib/xen/images
tb_guest_disk $IMG/pvhvm-base.img 64 "TBJOB dev=xvda start_mb=33 mb=16 expect=ok"
tb_check "syslinux.cfg of the copy has no xen_emul_unplug=never" tb_guest_pvhvm $IMG/pvhvm-base.img
qemu-img create -q -f qcow2 -F raw -b $IMG/pvhvm-base.img $IMG/pvhvm.qcow2
base_md5=$(md5sum < $IMG/pvhvm-base.img)
tb_say "overlay: $(qemu-img info $IMG/pvhvm.qcow2 | tr '\n' ' ' | cut -c1-300)"
tb_create guest.cfg
domid=$(tb_domid pvhvm)
tb_wait_console "\(d$domid\) .*GUEST: found the boot disk" 1200
qstate=$(xenstore-read /local/domain/0/backend/qdisk/$domid/51712/state 2>&1)
tb_say "qdisk xvda (51712) backend state while the guest runs: $qstate; params: $(xenstore-read /local/domain/0/backend/qdisk/$domid/51712/params 2>&1)"
tb_wait_console "\(d$domid\) .*GUEST: DONE" 300
tb_linux_milestones
tb_check "guest booted through SeaBIOS from the qcow2 disk" tb_console_has 'Booting from Hard Disk'
tb_check "guest booted from xvda (GUEST: found the boot disk (xvda))" tb_guest_says "$domid" 'found the boot disk \(xvda\)'
tb_check "guest O_DIRECT write + read-back md5 match on xvda (GUEST: RESULT PASS)" tb_guest_says "$domid" 'RESULT PASS'
tb_check "no disk errors on the guest console" tb_console_lacks 'failed command|exception Emask|I/O error'
tb_check "the qdisk backend of xvda was Connected (state 4)" [ "$qstate" = 4 ]
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone pvhvm 60
tb_check "device model exited after the poweroff" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
qemu-img check $IMG/pvhvm.qcow2 > $TB_OUT/qemu-img-check.log 2>&1
rc=$?
sed 's/^/  qemu-img check: /' $TB_OUT/qemu-img-check.log
tb_check "qemu-img check of the overlay is clean (rc $rc)" [ $rc -eq 0 ]
qemu-img convert -O raw $IMG/pvhvm.qcow2 $IMG/pvhvm-read.raw
want=$(tb_guest_md5)
got=$(tb_region_md5 $IMG/pvhvm-read.raw 33 16)
tb_say "guest pattern md5=$want, overlay region md5 (qemu-img convert)=$got"
tb_check "the guest's blocks are in the qcow2 overlay (read by qemu-img)" [ -n "$want" -a "$want" = "$got" ]
tb_check "the raw base is unchanged" [ "$(md5sum < $IMG/pvhvm-base.img)" = "$base_md5" ]
tb_check_ours "the DM logged the guest's unplug request" grep -q 'xen-platform: guest asked to unplug emulated devices' /var/log/xen/qemu-dm-pvhvm.log
tb_check_ours "the DM connected xvda's ring" grep -q 'qdisk xvda: connected' /var/log/xen/qemu-dm-pvhvm.log
grep -E 'xen-platform|unplug|qdisk' /var/log/xen/qemu-dm-pvhvm.log | head -8
tail -5 /var/log/xen/qemu-dm-pvhvm.log 2>/dev/null
tb_finish
