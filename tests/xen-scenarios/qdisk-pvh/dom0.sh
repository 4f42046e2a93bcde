# Pass: libxl starts the DM for the PVH domain with -machine xenpv, the DM
# says it serves the domain's PV disks; the guest finds xvda through
# blkback and xvdb through blkfront on our qdisk backend; its O_DIRECT
# write + read-back md5 match on xvdb (GUEST: RESULT PASS), the backend of
# xvdb was Connected (state 4) while the guest tested it, the blocks are in
# the image file, the backend answered blkfront's close at power-off, and
# the DM exits 0 after libxl's SIGHUP. An xl channel= with
# connection=socket is served by the DM as a PV console: the guest's hello
# on /dev/hvc1 reaches dom0's client on the DM's socket, and the client's
# reply reaches the guest.
IMG=/var/lib/xen/images
DMLOG=/var/log/xen/qemu-dm-qdisk-pvh.log
tb_guest_disk $IMG/pvh-boot.img 64 "TBJOB dev=xvdb start_mb=1 mb=16 expect=ok channel=1"
tb_guest_kernel
truncate -s 64M $IMG/pvh-data.img
t0=$(tb_now)
tb_create guest.cfg
domid=$(tb_domid qdisk-pvh)
tb_say "qdisk backend nodes: $(xenstore-ls /local/domain/0/backend/qdisk/$domid 2>&1 | tr '\n' ' ' | cut -c1-400)"
tb_time_to_userspace "$t0" 300
chpath=$(xenstore-read /local/domain/0/backend/console/$domid/1/path 2>&1)
tb_say "channel: console 1 is on $chpath; consoles: $(xenstore-ls /local/domain/0/backend/console/$domid 2>&1 | tr '\n' ' ' | cut -c1-300)"
/testbed/chanclient 120 "$chpath" GUEST-CHANNEL-HELLO "DOM0-CHANNEL-REPLY to d$domid" > $TB_OUT/channel.out 2>&1
chan=$?
tb_say "channel socket: read $(wc -c < $TB_OUT/channel.out) bytes, first line '$(head -n 1 $TB_OUT/channel.out)'"
tb_check "channel: the guest's hello reached dom0's client on the socket, which answered" [ $chan = 0 ]
tb_wait_console "\(d$domid\) .*GUEST: testing /dev/xvdb" 120
qstate=$(xenstore-read /local/domain/0/backend/qdisk/$domid/51728/state 2>&1)
tb_say "qdisk xvdb (51728) backend state while the guest tests it: $qstate"
vbd_rd=$(tb_xentop_vbd_reads 51728)
tb_wait_console "\(d$domid\) .*GUEST: DONE" 300
tb_linux_milestones
tb_check "libxl started the DM with -xen-attach -machine xenpv" grep -q -- '-xen-attach.*-machine xenpv' $DMLOG
tb_check_ours "the DM serves the domain as xenpv (no ioreq server)" grep -q 'serving the PV disks of domain' $DMLOG
tb_check "channel: the guest read dom0's line on /dev/hvc1" tb_guest_says "$domid" "channel: got 'DOM0-CHANNEL-REPLY to d$domid'"
tb_check "guest's boot disk is xvda (blkback)" tb_guest_says "$domid" 'found the boot disk \(xvda\)'
tb_check "guest O_DIRECT write + read-back md5 match on xvdb (GUEST: RESULT PASS)" tb_guest_says "$domid" 'RESULT PASS'
tb_check "no disk errors on the guest console" tb_console_lacks 'I/O error'
tb_check_qdisk_xvdb $IMG/pvh-data.img "$qstate" "$vbd_rd" $DMLOG
w=$(sed -n "s/.*(d$domid) .*GUEST: write rc=0 in .*(\([0-9.]*\) MB\/s).*/\1/p" "$TB_CONSOLE" | tail -1)
r=$(sed -n "s/.*(d$domid) .*GUEST: read back md5=.*(\([0-9.]*\) MB\/s).*/\1/p" "$TB_CONSOLE" | tail -1)
echo "BENCH qdisk-pvh dm=$DM_KIND xvdb O_DIRECT bs=1M 16 MiB: write_MBps=${w:-?} read_MBps=${r:-?}"
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone qdisk-pvh 60
tb_check "the backend answered blkfront's close at power-off (no timeout closing vbd/51728)" tb_console_lacks 'device/vbd/51728 timeout closing device'
tb_check "device model exited after the poweroff" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
grep -E 'qdisk|seccomp|PV device|xenpv' $DMLOG | head -8
tail -5 $DMLOG 2>/dev/null
tb_finish
