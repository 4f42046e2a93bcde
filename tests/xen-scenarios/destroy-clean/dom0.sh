# Pass: xl destroy rc=0; the DM (SIGHUP from libxl) exits with status 0
# within 10 s; its pid is gone; no DM process left; `xl list` shows only
# Domain-0 (a DM that kept guest mappings would leave a dying "(null)"
# domain, and the domain's ioreq servers go with it); libxl's xenstore dirs
# for the domain are gone.
tb_guest_disk /var/lib/xen/images/destroy-clean.img 40 "TBJOB dev=sda start_mb=33 mb=4 expect=ok"
tb_create guest.cfg
domid=$(tb_domid destroy-clean)
tb_wait_console 'Booting from 0000:7c00' 120
sleep 5
pid=$(tb_dm_pid "$domid")
tb_check "device model running before destroy" tb_pid_alive "$pid"
t0=$(tb_now)
xl destroy destroy-clean
rc=$?
tb_say "xl destroy rc=$rc after $(awk "BEGIN{print $(tb_now)-$t0}")s"
tb_check "xl destroy rc=0" [ $rc -eq 0 ]
tb_check "device model exited within 10 s" tb_wait_dm_exit "$domid" 10
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
tb_check "device model pid $pid gone" sh -c "! [ -d /proc/$pid ] || grep -q '^State:.*Z' /proc/$pid/status"
sleep 3
xl list
tb_check "only Domain-0 left in xl list" [ "$(xl list | awk 'NR > 1' | wc -l)" -eq 1 ]
tb_check "no device model process left" sh -c "! ps | grep -v grep | grep -qE 'xen-qemu-system|/testbed/dm/'"
tb_check "xenstore /local/domain/$domid gone" sh -c "! xenstore-exists /local/domain/$domid"
tb_check "xenstore device-model/$domid gone" sh -c "! xenstore-exists /local/domain/0/device-model/$domid"
tail -10 /var/log/xen/qemu-dm-destroy-clean.log 2>/dev/null
tb_finish
