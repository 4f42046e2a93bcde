#!/bin/sh
# Runs inside the nested dom0 (nested-xen.sh EXTRA_DIR hook): one HVM guest
# whose device model is the xen_ioreq_probe example and whose firmware is
# fw.elf; prints the guest's port-0xE9 lines and the device model's log.
mark() { echo "EXTRA-MARK[$(cut -d' ' -f1 /proc/uptime)]: $*"; }
cat > /tmp/rust-probe.cfg <<'CFG'
name = "rust-probe"
type = "hvm"
device_model_version = "qemu-xen-traditional"
device_model_override = "/extra/xen_ioreq_probe"
firmware_override = "/extra/fw.elf"
memory = 32
vcpus = 2
on_crash = "preserve"
CFG
mark "xl create rust-probe"
timeout 120 xl create /tmp/rust-probe.cfg > /tmp/xl.log 2>&1
mark "xl create rc=$?"
grep -E 'error|warning' /tmp/xl.log
sleep 8
mark "xl list after the guest ran:"
xl list
mark "guest output:"
xl dmesg -c | grep -E '\(d[1-9]'
xl destroy rust-probe 2>/dev/null && mark "had to destroy rust-probe"
sleep 2
mark "qemu-dm log:"
cat /var/log/xen/qemu-dm-rust-probe.log
ps | grep -v grep | grep -q xen_ioreq_probe && mark "PROBE STILL RUNNING"
mark "done"
