# Pass: libxl starts the DM restricted (argv: -xen-domid-restrict, -chroot,
# -runas UID:GID, -S), the DM runs as uid base+domid (all four uids) inside
# the chroot, the firmware's checks all pass (PIO, DMA, the injected ENOSPC
# reported), the DMA data is in the image, (xen-ioemu) the ENOSPC is
# audited to syslog from inside the chroot, and xl destroy leaves neither
# domain nor DM behind.
base=131072
echo "xen-qemuuser-range-base:x:$base:$base::/nonexistent:/bin/false" >> /etc/passwd
echo "xen-qemuuser-reaper:x:$((base - 1)):$((base - 1))::/nonexistent:/bin/false" >> /etc/passwd
echo "xen-qemuuser-range-base:x:$base:" >> /etc/group
echo "xen-qemuuser-reaper:x:$((base - 1)):" >> /etc/group
IMG=/var/lib/xen/images/fw-disk.img
dd if=/dev/zero of=$IMG bs=1M count=4 2>/dev/null
tb_create fw.cfg
domid=$(tb_domid dm-restrict)
tb_wait_console 'FW: (ALL PASS|FAILED)' 90
grep -E '\(d[0-9]+\) .*FW: ' "$TB_CONSOLE" | sed 's/^/  console: /'
LOG=/var/log/xen/qemu-dm-dm-restrict.log
argv=$(grep -m1 'libxl argv:' $LOG)
argv_has() { echo "$argv" | grep -qE -e "$1"; }
echo "  $argv" | cut -c1-600
tb_check "libxl passed -xen-domid-restrict" argv_has '-xen-domid-restrict'
tb_check "libxl passed -chroot /var/run/xen/qemu-root-$domid" argv_has "-chroot /var/run/xen/qemu-root-$domid"
tb_check "libxl passed -runas $((base + domid)):$base" argv_has "-runas $((base + domid)):$base"
tb_check "libxl passed -S (start paused, then cont)" argv_has ' -S( |$)'
tb_check "the DM was handed the loop device (script=block)" grep -q 'exec: .*file=blkdebug:[^:]*:/dev/loop[0-9]' $LOG
pid=$(tb_dm_pid "$domid")
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' /proc/$pid/status 2>/dev/null)
root=$(readlink /proc/$pid/root 2>/dev/null)
fsize=$(awk '/^Max file size/ {print $4}' /proc/$pid/limits 2>/dev/null)
tb_say "DM pid $pid: uids $uids, root $root, RLIMIT_FSIZE $fsize"
u=$((base + domid))
tb_check "the DM runs as uid $u (real, effective, saved, fs)" [ "$uids" = "$u $u $u $u" ]
# (/var/run is a link to /run in dom0, as on Debian)
tb_check "the DM is chrooted in /var/run/xen/qemu-root-$domid" [ -n "$root" -a "$root" = "$(readlink -f /var/run/xen/qemu-root-$domid)" ]
tb_check "libxl capped the DM's RLIMIT_FSIZE at 256 KiB" [ "$fsize" = 262144 ]
tb_check "firmware checks all ok (FW: ALL PASS)" tb_console_has 'FW: ALL PASS'
tb_check "no firmware check failed" tb_console_lacks 'FW: .* FAIL'
zero16=$(dd if=/dev/zero bs=512 count=16 2>/dev/null | md5sum | cut -d' ' -f1)
tb_check "DMA write (sectors 300-315) reached the image file" \
    [ "$(dd if=$IMG bs=512 skip=300 count=16 2>/dev/null | md5sum | cut -d' ' -f1)" != "$zero16" ]
tb_check "nothing written at the failing sector 2048" \
    [ "$(dd if=$IMG bs=512 skip=2048 count=1 2>/dev/null | tr -d '\000' | wc -c)" -eq 0 ]
tb_check_ours "the DM served the loop device itself under RLIMIT_FSIZE (not its backing file)" \
    grep -qF 'RLIMIT_FSIZE is 262144 bytes (dm_restrict)); using the loop device itself' $LOG
tb_check_ours "syslog audits the injected ENOSPC from inside the chroot" \
    tb_syslog_has "io-error domid=$domid drive=[^ ]+ cmd=\"WRITE DMA( EXT)?\" sectors=[0-9]+-[0-9]+ errno=28 .*action=report"
tb_say "xenstore device-model/$domid/state: $(xenstore-read /local/domain/0/device-model/$domid/state 2>&1)"
grep -iE 'running as|chroot|restrict|qmp' $LOG | head -8
tb_dm_figures "$domid" dm-restrict
xl destroy dm-restrict
tb_check "xl destroy rc=0" [ $? -eq 0 ]
# libxl's reaper kills every process of the DM's uid with SIGKILL, so the
# DM's status is 137 for QEMU and for us alike.
tb_check "xl destroy ends the device model" tb_wait_dm_exit "$domid" 20
tb_say "DM exit status $(tb_dm_exit "$domid") (libxl's reaper: kill(-1, SIGKILL) as uid $u)"
tb_check "no process of uid $u left" [ -z "$(awk -v u=$u '/^Uid:/ && $2 == u {print FILENAME}' /proc/[0-9]*/status 2>/dev/null)" ]
tb_check "domain gone" tb_wait_domain_gone dm-restrict 10
tail -20 $LOG 2>/dev/null
tb_finish
