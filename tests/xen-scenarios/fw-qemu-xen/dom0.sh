# Pass: every firmware check prints ok and the firmware ends with
# "FW: ALL PASS"; the data the firmware wrote by DMA is in the image file;
# (xen-ioemu) the injected ENOSPC is audited to syslog; xl destroy ends the
# device model with status 0.
dd if=/dev/zero of=/tmp/fw-disk.img bs=1M count=4 2>/dev/null
tb_create fw.cfg
domid=$(tb_domid fw-qemu-xen)
tb_wait_console 'FW: (ALL PASS|FAILED)' 90
grep -E '\(d[0-9]+\) FW: ' "$TB_CONSOLE"
tb_check "firmware checks all ok (FW: ALL PASS)" tb_console_has 'FW: ALL PASS'
tb_check "no firmware check failed" tb_console_lacks 'FW: .* FAIL'
# DMA-written sectors 300..315 must not be zero in the image itself.
tb_check "DMA write reached the image file" \
    sh -c '[ "$(dd if=/tmp/fw-disk.img bs=512 skip=300 count=16 2>/dev/null | md5sum | cut -d" " -f1)" != "$(dd if=/dev/zero bs=512 count=16 2>/dev/null | md5sum | cut -d" " -f1)" ]'
tb_check "nothing written at the failing sector 2048" \
    sh -c '[ "$(dd if=/tmp/fw-disk.img bs=512 skip=2048 count=1 2>/dev/null | tr -d "\000" | wc -c)" -eq 0 ]'
tb_check_ours "syslog audits the injected ENOSPC" \
    tb_syslog_has "io-error domid=$domid drive=[^ ]+ cmd=\"WRITE DMA( EXT)?\" sectors=[0-9]+-[0-9]+ errno=28 .*action=report"
xl destroy fw-qemu-xen
tb_check "xl destroy ends the device model" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
cat /var/log/xen/qemu-dm-fw-qemu-xen.log 2>/dev/null | tail -20
tb_finish
