#!/bin/sh
# /init of the testbed's dom0 (busybox only). Brings up what xl needs
# (syslog first, so every later daemon and the device model log to it),
# then hands over to /testbed/dom0-run.sh, which run.sh puts into a second
# initramfs archive, and powers off whatever happens, which ends QEMU.
# xl & co. live in /usr/lib/xen-<version>/bin (4.17 or 4.20)
for d in /usr/lib/xen-*/bin; do XEN_BIN=$d; done
export PATH=$XEN_BIN:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
# what udev would add: Debian's hotplug scripts (locking.sh) stat /dev/stdin
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mark() { echo "TESTBED-DOM0[$(cut -d' ' -f1 /proc/uptime)]: $*"; }
mark "init started ($(uname -r))"

# A real syslog daemon behind /dev/log: the device model's audit lines are
# part of what the scenarios check. No rotation, the file is collected whole.
mkdir -p /var/log
syslogd -O /var/log/messages
n=0; while [ ! -S /dev/log ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
[ -S /dev/log ] || mark "syslogd did not create /dev/log"
logger -t testbed "dom0 syslog up"

M=/lib/modules/$(uname -r)
for m in xen-evtchn xen-privcmd xen-gntdev xen-gntalloc xenfs xen-blkback loop; do
    insmod "$M/$m.ko" || mark "insmod $m failed"
done
mount -t xenfs xenfs /proc/xen || mark "mount xenfs failed"
mkdir -p /run/xen /run/xenstored /var/lib/xen /var/log/xen/console /var/lib/xenstored /var/lock
export XENSTORED_ROOTDIR=/run/xenstored
xenstored --pid-file /run/xenstore.pid || mark "xenstored failed rc=$?"
n=0; while ! xenstore-read -s / >/dev/null 2>&1; do n=$((n+1)); [ $n -gt 60 ] && break; sleep 1; done
xen-init-dom0 >/dev/null || mark "xen-init-dom0 failed"
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console || mark "xenconsoled failed"
mark "xen tools up"

if [ -x /testbed/dom0-run.sh ]; then
    /testbed/dom0-run.sh
else
    mark "no /testbed/dom0-run.sh"
fi
mark "powering off"
sync
poweroff -f
