#!/bin/sh
# device_model_override of every testbed xl config. Runs the device model
# under test (/testbed/dm-path) with the argv libxl built, plus:
#  * per-drive options from the scenario's drive-opts file (qemu-xen
#    flavour), lines "<ide index> <key>=<value>": "blkdebug=<ini>" puts a
#    blkdebug layer under the image (host error injection), anything else is
#    appended to that -drive (werror=report, rerror=..., ...);
#  * with Debian's QEMU as the DM and the qemu-xen-traditional flavour, the
#    translation of the traditional argv + xenstore disks into a qemu-xen
#    command line (QEMU has no traditional mode; xen-ioemu reads both);
#  * the DM runs as our child, so that its exit status is recorded in
#    /tmp/tb/dm-<domid>.exit; the signals libxl sends (SIGHUP on destroy)
#    are passed on.
# stderr is /var/log/xen/qemu-dm-<name>.log (libxl's redirection).
DM=$(cat /testbed/dm-path)
OUT=/tmp/tb
. /testbed/params
log() { echo "dm-wrap[$(cut -d' ' -f1 /proc/uptime)]: $*" >&2; }

domid=""; prev=""
for a in "$@"; do
    case $prev in -d|-xen-domid) domid=$a ;; esac
    prev=$a
done
log "libxl argv: $*"

edit_drive() {
    drive=$1
    case $drive in *if=ide*) ;; *) echo "$drive"; return ;; esac
    idx=$(echo "$drive" | sed -n 's/.*,index=\([0-9]*\).*/\1/p')
    [ -f /testbed/scenario/drive-opts ] || { echo "$drive"; return; }
    while read -r rule_idx opt; do
        case $rule_idx in ''|\#*) continue ;; esac
        [ "$rule_idx" = "$idx" ] || continue
        case $opt in
        blkdebug=*) drive=$(echo "$drive" | sed "s|file=|file=blkdebug:${opt#blkdebug=}:|") ;;
        *) drive="$drive,$opt" ;;
        esac
    done < /testbed/scenario/drive-opts
    echo "$drive"
}

if [ "$1" = -d ] && [ "$DM_KIND" = qemu ]; then
    # traditional flavour -> qemu-xen argv for Debian's QEMU
    mem_kib=$(xenstore-read "/local/domain/$domid/memory/static-max")
    set -- -xen-domid "$domid" -no-shutdown -nodefaults -no-user-config -display none \
        -vnc none -net none -machine xenfv,suppress-vmdesc=on -m $((mem_kib / 1024))
    for vbd in $(xenstore-list "/local/domain/$domid/device/vbd" 2>/dev/null); do
        be=$(xenstore-read "/local/domain/$domid/device/vbd/$vbd/backend")
        params=$(xenstore-read "$be/params"); dev=$(xenstore-read "$be/dev")
        case $dev in hda) idx=0 ;; hdb) idx=1 ;; hdc) idx=2 ;; hdd) idx=3 ;; *) continue ;; esac
        opts=""
        case $params in blkdebug:*) opts=",werror=report,rerror=report" ;; esac
        set -- "$@" -drive "file=$params,if=ide,index=$idx,media=disk,format=raw,cache=writeback$opts"
    done
else
    after_drive=0
    for a do
        shift
        [ $after_drive = 1 ] && a=$(edit_drive "$a")
        after_drive=0
        [ "$a" = -drive ] && after_drive=1
        set -- "$@" "$a"
    done
fi
log "exec: $DM $*"

"$DM" "$@" &
child=$!
echo "$child" > "$OUT/dm-$domid.pid"
for sig in HUP INT TERM; do
    # shellcheck disable=SC2064
    trap "log 'passing SIG$sig to $child'; kill -$sig $child" $sig
done
while :; do
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || break
done
log "device model pid $child exited with status $status"
echo "$status" > "$OUT/dm-$domid.exit"
exit "$status"
