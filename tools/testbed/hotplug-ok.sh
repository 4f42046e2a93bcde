#!/bin/sh
# script= of fw-traditional's disk only (the other scenarios use Debian's
# /etc/xen/scripts/block): its target is "blkdebug:<ini>:<image>", not a
# file that Debian's script can attach. The block hotplug step libxl waits for.
# It attaches the
# image to a loop device for blkback and reports "connected", which is all
# libxl checks. A "blkdebug:<ini>:" prefix (host error injection for the
# traditional flavour, where params is the only per-disk channel) is not part
# of the file name.
echo "hotplug[$(cut -d' ' -f1 /proc/uptime)]: $0 $* XENBUS_PATH=$XENBUS_PATH" >> /tmp/tb/hotplug.log
case "$1" in
add|online)
    case "$XENBUS_PATH" in
    */vbd/*)
        p=$(xenstore-read "$XENBUS_PATH/params")
        case $p in blkdebug:*) p=${p#blkdebug:}; p=${p#*:} ;; esac
        # libxl runs the disks' scripts in parallel: two of them can pick
        # the same free loop device, and the loser retries.
        n=0
        until l=$(losetup -f) && losetup "$l" "$p" 2>/dev/null; do
            n=$((n + 1))
            [ $n -lt 20 ] || { echo "hotplug: losetup $p failed" >> /tmp/tb/hotplug.log; exit 1; }
            sleep 0.$((n % 5 + 1))
        done
        mm=$(stat -L -c '%t:%T' "$l")
        # blkback gets the loop device; physical-device-path is what libxl
        # hands the qemu-xen flavour DM, and that must be the image file
        # itself: host errors (ENOSPC on a full filesystem) are the point
        # of the tests, and a loop device turns them into EIO.
        xenstore-write "$XENBUS_PATH/physical-device" "$mm" "$XENBUS_PATH/physical-device-path" "$p" ;;
    esac
    [ -n "$XENBUS_PATH" ] && xenstore-write "$XENBUS_PATH/hotplug-status" connected ;;
remove|offline)
    l=$(xenstore-read "$XENBUS_PATH/physical-device-path" 2>/dev/null)
    [ -n "$l" ] && losetup -d "$l" 2>/dev/null ;;
esac
exit 0
