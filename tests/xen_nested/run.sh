#!/bin/sh
# Runs inside the nested dom0 (nested-xen.sh EXTRA_DIR hook): two HVM guests
# whose device model is the xen_ioreq_probe example and whose firmware is
# fw.elf. rust-probe maps the ioreq pages with MMAP_RESOURCE, rust-probe-gfn
# with the legacy gfn + MMAPBATCH path. Prints each guest's port-0xE9 lines
# and the device model's log.
mark() { echo "EXTRA-MARK[$(cut -d' ' -f1 /proc/uptime)]: $*"; }
guest() {
    name=$1
    cat > /tmp/$name.cfg <<CFG
name = "$name"
type = "hvm"
device_model_version = "qemu-xen-traditional"
device_model_override = "/extra/xen_ioreq_probe"
firmware_override = "/extra/fw.elf"
memory = 32
vcpus = 2
on_crash = "preserve"
CFG
    mark "xl create $name"
    timeout 120 xl create /tmp/$name.cfg > /tmp/xl-$name.log 2>&1
    mark "xl create $name rc=$?"
    grep -E 'error|warning' /tmp/xl-$name.log
    p=$(pidof xen_ioreq_probe)
    [ -n "$p" ] && echo "PROBE-RSS $name: $(grep -E '^(VmRSS|VmHWM)' /proc/$p/status | tr -s ' \t' ' ' | tr '\n' ' ')"
    sleep 8
    mark "xl list after $name ran:"
    xl list
    mark "guest output:"
    xl dmesg -c | grep -E '\(d[1-9]'
    xl destroy $name 2>/dev/null && mark "had to destroy $name"
    sleep 2
    mark "qemu-dm log of $name:"
    cat /var/log/xen/qemu-dm-$name.log
    ps | grep -v grep | grep -q xen_ioreq_probe && mark "PROBE STILL RUNNING"
}
guest rust-probe
guest rust-probe-gfn
mark "done"
