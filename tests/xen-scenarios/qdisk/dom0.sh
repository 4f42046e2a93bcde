# Pass: the guest starts from xl's kernel=, unplugs the IDE disks, finds
# xvda through blkback and xvdb through blkfront on our qdisk backend; its
# O_DIRECT write + read-back md5 match on xvdb (GUEST: RESULT PASS), the
# qdisk backend of xvdb was Connected (state 4) while the guest tested it,
# the blocks are in the image file, blkfront uses indirect descriptors
# (ours), the backend answered blkfront's close
# at power-off (no "timeout closing device"), the guest powers itself off
# and the DM exits 0.
IMG=/var/lib/xen/images
tb_guest_disk $IMG/qdisk-boot.img 64 "TBJOB dev=xvdb start_mb=1 mb=16 expect=ok"
tb_guest_kernel
truncate -s 64M $IMG/qdisk-data.img
t0=$(tb_now)
tb_create guest.cfg
domid=$(tb_domid qdisk)
tb_say "qdisk backend nodes: $(xenstore-ls /local/domain/0/backend/qdisk/$domid 2>&1 | tr '\n' ' ' | cut -c1-400)"
tb_time_to_userspace "$t0" 480
tb_wait_console "\(d$domid\) .*GUEST: testing /dev/xvdb" 120
qstate=$(xenstore-read /local/domain/0/backend/qdisk/$domid/51728/state 2>&1)
tb_say "qdisk xvdb (51728) backend state while the guest tests it: $qstate"
vbd_rd=$(tb_xentop_vbd_reads 51728)
tb_wait_console "\(d$domid\) .*GUEST: DONE" 300
tb_linux_milestones
tb_check "the kernel got xl's cmdline, without xen_emul_unplug=never" tb_console_has 'Command line: earlyprintk=xen keep_bootcon console=hvc0 panic=1 rdinit=/init'
tb_check "guest unplugged IDE: its boot disk is xvda (GUEST: found the boot disk (xvda))" tb_guest_says "$domid" 'found the boot disk \(xvda\)'
tb_check "guest O_DIRECT write + read-back md5 match on xvdb (GUEST: RESULT PASS)" tb_guest_says "$domid" 'RESULT PASS'
tb_check "no disk errors on the guest console" tb_console_lacks 'failed command|exception Emask|I/O error'
tb_check_qdisk_xvdb $IMG/qdisk-data.img "$qstate" "$vbd_rd" /var/log/xen/qemu-dm-qdisk.log
grep -E "\(d$domid\) .*(blkfront|xvdb)" "$TB_CONSOLE" | head -8
# Our backend offers feature-max-indirect-segments (QEMU 7.2's does not):
# blkfront then sends up to 32 segments (128 KiB) per request, not 11.
tb_check_ours "blkfront on xvdb uses indirect descriptors" tb_console_has "\(d$domid\) .*blkfront: xvdb: .*indirect descriptors: enabled"
w=$(sed -n "s/.*(d$domid) .*GUEST: write rc=0 in .*(\([0-9.]*\) MB\/s).*/\1/p" "$TB_CONSOLE" | tail -1)
r=$(sed -n "s/.*(d$domid) .*GUEST: read back md5=.*(\([0-9.]*\) MB\/s).*/\1/p" "$TB_CONSOLE" | tail -1)
echo "BENCH qdisk dm=$DM_KIND xvdb O_DIRECT bs=1M 16 MiB: write_MBps=${w:-?} read_MBps=${r:-?}"
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone qdisk 60
tb_check "the backend answered blkfront's close at power-off (no timeout closing vbd/51728)" tb_console_lacks 'device/vbd/51728 timeout closing device'
tb_check "device model exited after the poweroff" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
grep -E 'qdisk|seccomp' /var/log/xen/qemu-dm-qdisk.log | head -8
tail -5 /var/log/xen/qemu-dm-qdisk.log 2>/dev/null
tb_finish
