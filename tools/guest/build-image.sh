#!/bin/bash
# build-image.sh [OUT]: a bootable raw disk image with a small Linux guest
# for the testbed, built without loop mounts or root-only tools:
#   sector 0          SYSLINUX mbr.bin + one hand-written partition entry
#   1 MiB .. 32 MiB   FAT16 (mkfs.fat --offset), SYSLINUX, the Debian cloud
#                     kernel and a busybox initramfs (tools/guest/guest-init.sh)
#   32 MiB ..         the data region the guest tests (the image file ends
#                     at 32 MiB; scenarios extend it sparsely with truncate)
# Output: OUT/guest.img -> OUT/cache/guest-<key>/guest.img, <key> = hash of
# the package versions and of the scripts, so an unchanged rebuild is free.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../testbed/common.sh"

OUT=$(realpath -m "${1:-$REPO_DIR/build/testbed}")
# GUEST_KERNEL=cloud (default, as linux-guest.md recommends: LZ4, boots ~3 s
# faster) or generic (XZ: 8.2 MB instead of 14.2 MB, i.e. ~40 % less for
# SeaBIOS to read by INT13 PIO, which is what dominates a nested boot).
GUEST_KERNEL=${GUEST_KERNEL:-cloud}
case $GUEST_KERNEL in
cloud)
    PKGS="busybox-static $(kernel_pkg linux-image-cloud-amd64)"
    MODS="drivers/scsi/scsi_common drivers/scsi/scsi_mod drivers/ata/libata
          drivers/ata/ata_piix drivers/ata/ata_generic drivers/scsi/sd_mod" ;;
generic)
    PKGS="busybox-static $(kernel_pkg linux-image-amd64)"
    MODS="crypto/crct10dif_common crypto/crct10dif_generic lib/crc64
          crypto/crc64_rocksoft_generic drivers/scsi/scsi_common drivers/scsi/scsi_mod
          drivers/ata/libata drivers/ata/ata_piix drivers/ata/ata_generic lib/crc-t10dif
          lib/crc64-rocksoft block/t10-pi drivers/scsi/sd_mod" ;;
*) echo "build-image.sh: GUEST_KERNEL=$GUEST_KERNEL: must be cloud or generic" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
KEY=$( { echo "$GUEST_KERNEL"; packages_key $PKGS; sha256sum "$here/build-image.sh" "$here/guest-init.sh"; } | sha256sum | cut -c1-16)
C="$OUT/cache/guest-$KEY"
if [ -e "$C/.done" ]; then
    ln -sfn "cache/guest-$KEY/guest.img" "$OUT/guest.img"
    echo "$OUT/guest.img (cached)"
    exit 0
fi

mkdir -p "$C"
# shellcheck disable=SC2086
fetch_unpack "$C" $PKGS
R="$C/root"
kver=$(ls "$R/lib/modules" | head -1)

# --- initramfs -----------------------------------------------------------
I="$C/initrd"
rm -rf "$I"
mkdir -p "$I"/{bin,dev,proc,sys,tmp,mods}
cp "$R/bin/busybox" "$I/bin/busybox"
for applet in sh mount umount insmod dd md5sum cat echo sleep grep sed cut tr head \
              mkdir ls poweroff sync blockdev stat hexdump awk seq test wc printf; do
    ln -s busybox "$I/bin/$applet"
done
# ata_piix + disk, in dependency order (linux-guest.md); Debian ships no
# modules.dep and the set is small enough to spell out. /init loads them
# in the order of mods/order.
for m in $MODS; do
    cp "$R/lib/modules/$kver/kernel/$m.ko" "$I/mods/"
    basename "$m" >> "$I/mods/order"
done
cp "$here/guest-init.sh" "$I/init"
chmod +x "$I/init"
(cd "$I" && find . | LC_ALL=C sort | cpio -H newc -o --quiet -R 0:0 | gzip -9 > "$C/initrd.gz")

# --- disk image ----------------------------------------------------------
IMG="$C/guest.img"
PART_START=2048          # sectors: 1 MiB
PART_SECTORS=63488       # up to 32 MiB
rm -f "$IMG"
truncate -s 32M "$IMG"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$IMG" conv=notrunc status=none
# Partition entry 1: active, type 0x06 (FAT16), CHS fields at the
# "use LBA" maximum, then LBA start and size (little endian). perl-base is
# essential on Debian, so pack() is always there.
perl -e 'print pack("C8 V V", 0x80, 0xfe, 0xff, 0xff, 0x06, 0xfe, 0xff, 0xff, $ARGV[0], $ARGV[1])' \
    $PART_START $PART_SECTORS | dd of="$IMG" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$IMG" bs=1 seek=510 conv=notrunc status=none

mkfs.fat -F 16 -n TESTBED --offset $PART_START -h $PART_START -S 512 "$IMG" $((PART_SECTORS / 2)) >/dev/null
cat > "$C/syslinux.cfg" <<EOF
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND earlyprintk=xen keep_bootcon console=hvc0 xen_emul_unplug=never panic=1 rdinit=/init
EOF
cp "$R/boot/vmlinuz-$kver" "$C/vmlinuz"
mcopy -i "$IMG@@1M" "$C/vmlinuz" "$C/initrd.gz" "$C/syslinux.cfg" ::/
syslinux --offset $((PART_START * 512)) --install "$IMG"

rm -rf "$I" "$R" "$C/debs"
touch "$C/.done"
ln -sfn "cache/guest-$KEY/guest.img" "$OUT/guest.img"
ls -la "$C/vmlinuz" "$C/initrd.gz" "$IMG"
echo "$OUT/guest.img"
