#!/bin/bash
# build-image.sh [OUT]: a bootable raw disk image with a small Linux guest
# for the testbed, built without loop mounts or root-only tools:
#   sector 0          SYSLINUX mbr.bin + one hand-written partition entry
#   1 MiB .. 32 MiB   FAT16 (mkfs.fat --offset), SYSLINUX, the Debian cloud
#                     kernel and a busybox initramfs (tools/guest/guest-init.sh)
#   32 MiB ..         the data region the guest tests (the image file ends
#                     at 32 MiB; scenarios extend it sparsely with truncate)
# and OUT/fs.map + OUT/fs.data: a 64 MiB ext4 data disk made with
# `mkfs.ext4 -d` (no loop mount), seeded with seed/s1..s4 (64 KiB random
# each), seed/MANIFEST (their md5sums) and an empty data/ folder, stored as
# its written extents (fs.map: "<offset> <length>" lines, fs.data: those
# bytes back to back) so that dom0 rebuilds it as a sparse file
# (tb_fs_image in dom0-lib.sh): every block mkfs wrote is allocated, every
# other block is a hole that a guest write must allocate on the host.
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
# Both kernels: the PV disk frontend (the pvhvm scenario: no
# xen_emul_unplug=never, the IDE disks are unplugged and xvda comes from
# blkback) and the ATAPI CD-ROM with ISO 9660. On an emulated-disk boot
# xen-blkfront refuses to load (no PV disks offered), which /init reports.
EXTRA_MODS="drivers/block/xen-blkfront drivers/cdrom/cdrom drivers/scsi/sr_mod fs/isofs/isofs"
case $GUEST_KERNEL in
cloud)
    PKGS="busybox-static $(kernel_pkg linux-image-cloud-amd64)"
    # ext4, jbd2, crc16, crc32c are built in (CONFIG_EXT4_FS=y)
    MODS="drivers/scsi/scsi_common drivers/scsi/scsi_mod drivers/ata/libata
          drivers/ata/ata_piix drivers/ata/ata_generic drivers/scsi/sd_mod $EXTRA_MODS" ;;
generic)
    PKGS="busybox-static $(kernel_pkg linux-image-amd64)"
    MODS="crypto/crct10dif_common crypto/crct10dif_generic lib/crc64
          crypto/crc64_rocksoft_generic drivers/scsi/scsi_common drivers/scsi/scsi_mod
          drivers/ata/libata drivers/ata/ata_piix drivers/ata/ata_generic lib/crc-t10dif
          lib/crc64-rocksoft block/t10-pi drivers/scsi/sd_mod
          lib/crc16 crypto/crc32c_generic fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4 $EXTRA_MODS" ;;
*) echo "build-image.sh: GUEST_KERNEL=$GUEST_KERNEL: must be cloud or generic" >&2; exit 2 ;;
esac
# e2fsck and mke2fs in the guest (busybox has no real e2fsck)
PKGS="$PKGS e2fsprogs libext2fs2 libcom-err2 libss2"
# shellcheck disable=SC2086
KEY=$( { echo "$GUEST_KERNEL"; packages_key $PKGS; sha256sum "$here/build-image.sh" "$here/guest-init.sh" "$here/diskbench.c"; } | sha256sum | cut -c1-16)
C="$OUT/cache/guest-$KEY"
if [ -e "$C/.done" ]; then
    ln -sfn "cache/guest-$KEY/guest.img" "$OUT/guest.img"
    for f in fs.map fs.data fs.size guest.unplug-at cd-a.iso cd-b.iso vmlinuz initrd.gz; do ln -sfn "cache/guest-$KEY/$f" "$OUT/$f"; done
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
              mkdir ls poweroff sync blockdev stat hexdump awk seq test wc printf \
              sort uniq basename tail ln rm stty; do
    ln -s busybox "$I/bin/$applet"
done
mkdir -p "$I/sbin" "$I/etc" "$I/mnt"
# diskbench (O_DIRECT figures issued from one loop, not one dd per request)
gcc -static -O2 -Wall -Wextra -Werror -o "$I/bin/diskbench" "$here/diskbench.c"
for f in sbin/e2fsck sbin/mke2fs; do
    copy_elf_with_libs "$R" "$R/$f" "$I/$f" "$I"
done
ln -s /proc/mounts "$I/etc/mtab"
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
# Where the FAT holds "xen_emul_unplug=never" of syslinux.cfg: dom0 blanks
# it with spaces (same length, nothing else in the FAT changes) to boot the
# same image as a PVHVM guest (tb_guest_pvhvm in dom0-lib.sh).
grep -obUa 'xen_emul_unplug=never' "$IMG" | cut -d: -f1 > "$C/guest.unplug-at"
[ "$(wc -l < "$C/guest.unplug-at")" = 1 ] || { echo "build-image.sh: xen_emul_unplug=never not found exactly once in $IMG" >&2; exit 1; }

# --- ext4 data disk --------------------------------------------------------
# One block group (4 KiB blocks, 16384 of them), 256 inodes, a 4 MiB
# journal; inode tables and journal written in full at mkfs time
# (lazy_*_init=0, and UNIX_IO_NOZEROOUT so that e2fsprogs writes zeros
# instead of punching holes), so that the guest's metadata writes land on
# allocated host blocks and only file data needs new ones.
S="$C/fsseed"
rm -rf "$S" "$C/fs.img"
mkdir -p "$S/seed" "$S/data"
for i in 1 2 3 4; do head -c 65536 /dev/urandom > "$S/seed/s$i"; done
(cd "$S/seed" && md5sum s1 s2 s3 s4 > MANIFEST)
UNIX_IO_NOZEROOUT=1 mkfs.ext4 -q -F -b 4096 -N 256 -J size=4 -L tbdata \
    -E lazy_itable_init=0,lazy_journal_init=0,nodiscard -d "$S" "$C/fs.img" 64M
perl -e 'open(F, "<", $ARGV[0]) or die; my $size = -s F; my $o = 0;
    while ($o < $size) { my $d = sysseek(F, $o, 3); last unless defined $d;  # SEEK_DATA
        my $h = sysseek(F, $d, 4);                                            # SEEK_HOLE
        die "unaligned extent $d $h" if $d % 4096 || $h % 4096;
        print $d + 0, " ", $h - $d, "\n"; $o = $h }' "$C/fs.img" > "$C/fs.map"
: > "$C/fs.data"
while read -r off len; do
    dd if="$C/fs.img" bs=4096 skip=$((off / 4096)) count=$((len / 4096)) status=none >> "$C/fs.data"
done < "$C/fs.map"
written=$(stat -c %s "$C/fs.data")
# a filesystem without SEEK_HOLE would report one 64 MiB extent
[ "$written" -lt $((32 << 20)) ] || { echo "build-image.sh: fs.img has $written bytes of data: no holes found" >&2; exit 1; }
echo "$((64 << 20))" > "$C/fs.size"
rm -rf "$S" "$C/fs.img"

# --- two CD-ROM media (ISO 9660 + Rock Ridge) ------------------------------
# each with data.bin (256 KiB random), its md5 and a label, for the cdrom
# scenario's xl cd-insert of a second medium.
for m in a b; do
    rm -rf "$C/cd-$m"; mkdir "$C/cd-$m"
    head -c 262144 /dev/urandom > "$C/cd-$m/data.bin"
    (cd "$C/cd-$m" && md5sum data.bin > md5sum.txt)
    echo "TBCD$m" > "$C/cd-$m/label.txt"
    genisoimage -quiet -R -V "TBCD$m" -o "$C/cd-$m.iso" "$C/cd-$m"
    rm -rf "$C/cd-$m"
done

rm -rf "$I" "$R" "$C/debs"
touch "$C/.done"
ln -sfn "cache/guest-$KEY/guest.img" "$OUT/guest.img"
for f in fs.map fs.data fs.size guest.unplug-at cd-a.iso cd-b.iso vmlinuz initrd.gz; do ln -sfn "cache/guest-$KEY/$f" "$OUT/$f"; done
ls -la "$C/vmlinuz" "$C/initrd.gz" "$IMG" "$C/fs.data"
echo "$OUT/guest.img"
