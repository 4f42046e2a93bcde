# Pass: the guest boots (IDE, unplug, xvda through blkback), finds xvdb,
# its O_DIRECT write + read-back md5 match on xvdb (GUEST: RESULT PASS),
# the qdisk backend of xvdb was Connected (state 4), the blocks are in the
# image file, the guest powers itself off and the DM exits 0.
IMG=/var/lib/xen/images
tb_guest_disk $IMG/qdisk-boot.img 64 "TBJOB dev=xvdb start_mb=1 mb=16 expect=ok"
tb_check "syslinux.cfg of the copy has no xen_emul_unplug=never" tb_guest_pvhvm $IMG/qdisk-boot.img
truncate -s 64M $IMG/qdisk-data.img
tb_create guest.cfg
domid=$(tb_domid qdisk)
tb_say "qdisk backend nodes: $(xenstore-ls /local/domain/0/backend/qdisk/$domid 2>&1 | tr '\n' ' ' | cut -c1-400)"
tb_wait_console "\(d$domid\) .*GUEST: (RESULT|DONE)" 1500
qstate=$(xenstore-read /local/domain/0/backend/qdisk/$domid/51728/state 2>&1)
tb_say "qdisk xvdb (51728) backend state while the guest runs: $qstate"
tb_wait_console "\(d$domid\) .*GUEST: DONE" 300
tb_linux_milestones
tb_check "guest O_DIRECT write + read-back md5 match on xvdb (GUEST: RESULT PASS)" tb_guest_says "$domid" 'RESULT PASS'
tb_check "no disk errors on the guest console" tb_console_lacks 'failed command|exception Emask|I/O error'
want=$(tb_guest_md5)
got=$(tb_region_md5 $IMG/qdisk-data.img 1 16)
tb_say "guest pattern md5=$want, qdisk image region md5=$got"
tb_check "the guest's blocks are in the qdisk image file" [ -n "$want" -a "$want" = "$got" ]
tb_check "the qdisk backend of xvdb was Connected (state 4)" [ "$qstate" = 4 ]
tb_check_ours "the DM connected xvdb's ring" grep -q 'qdisk xvdb: connected' /var/log/xen/qemu-dm-qdisk.log
grep -E "\(d$domid\) .*(blkfront|xvdb|GUEST: BENCH)" "$TB_CONSOLE" | head -8
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone qdisk 60
tb_check "device model exited after the poweroff" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
grep -E 'qdisk' /var/log/xen/qemu-dm-qdisk.log | head -8
tail -5 /var/log/xen/qemu-dm-qdisk.log 2>/dev/null
tb_finish
