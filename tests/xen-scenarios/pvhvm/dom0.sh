# Pass: the guest boots from our IDE disk, unplugs it, finds xvda through
# blkfront, its O_DIRECT write + read-back md5 match (GUEST: RESULT PASS),
# the blocks are in the image file, (ours) the DM logged the unplug, the
# guest powers itself off and the DM exits 0.
IMG=/var/lib/xen/images
tb_guest_disk $IMG/pvhvm.img 64 "TBJOB dev=xvda start_mb=33 mb=16 expect=ok"
tb_check "syslinux.cfg of the copy has no xen_emul_unplug=never" tb_guest_pvhvm $IMG/pvhvm.img
tb_create guest.cfg
domid=$(tb_domid pvhvm)
tb_wait_console "\(d$domid\) .*GUEST: found the boot disk" 1200
vbd=$(xenstore-read /local/domain/0/backend/vbd/$domid/51712/state 2>&1)
tb_say "blkback's xvda (vbd 51712) state while the guest runs: $vbd"
tb_wait_console "\(d$domid\) .*GUEST: DONE" 300
tb_linux_milestones
tb_check "guest booted from xvda (GUEST: found the boot disk (xvda))" tb_guest_says "$domid" 'found the boot disk \(xvda\)'
tb_check "guest O_DIRECT write + read-back md5 match on xvda (GUEST: RESULT PASS)" tb_guest_says "$domid" 'RESULT PASS'
tb_check "no disk errors on the guest console" tb_console_lacks 'failed command|exception Emask|I/O error'
want=$(tb_guest_md5)
got=$(tb_region_md5 $IMG/pvhvm.img 33 16)
tb_say "guest pattern md5=$want, image region md5=$got"
tb_check "the guest's blocks are in the image file" [ -n "$want" -a "$want" = "$got" ]
tb_check_ours "the DM logged the guest's unplug request" grep -q 'xen-platform: guest asked to unplug emulated devices' /var/log/xen/qemu-dm-pvhvm.log
tb_check "blkback served xvda (its vbd backend was Connected, state 4)" [ "$vbd" = 4 ]
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone pvhvm 60
tb_check "device model exited after the poweroff" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
grep -E 'xen-platform|unplug' /var/log/xen/qemu-dm-pvhvm.log | head -5
tail -5 /var/log/xen/qemu-dm-pvhvm.log 2>/dev/null
tb_finish
