#!/bin/bash
# build-host.sh [OUT]: the nested Xen host, from Debian packages only.
#
# Produces OUT/host -> OUT/cache/<key>/ with
#   xen                 the hypervisor, uncompressed (QEMU's multiboot loader wants ELF)
#   vmlinuz             the dom0 kernel
#   dom0-base.cpio.gz   dom0's initramfs: busybox, the Xen tools + libraries,
#                       kernel modules, seabios, Debian's QEMU (qemu-xen DM)
#                       and /init (tools/testbed/dom0-init.sh)
# <key> hashes the candidate versions of every package plus the scripts that
# shape the result, so a second run with nothing changed only relinks.
# TESTBED_XEN=4.20 (run.sh --xen 4.20) builds it from Debian trixie instead
# (Xen 4.20, QEMU 10.0, trixie's kernel, glibc and libraries), fetched through
# a private apt configuration under OUT/apt-trixie; the link is then
# OUT/host-4.20.
# Nothing is installed on the build machine; packages are fetched with
# `apt-get download` and unpacked with `dpkg -x`.
set -euo pipefail
. "$(dirname "$0")/common.sh"

OUT=$(realpath -m "${1:-$REPO_DIR/build/testbed}")
select_xen "$XV" "$OUT"
apt_suite_ready
# shellcheck disable=SC2046
PKGS=$(host_packages)
# shellcheck disable=SC2086
KEY=$( { packages_key $PKGS; sha256sum "$TESTBED_DIR/build-host.sh" "$TESTBED_DIR/common.sh" "$TESTBED_DIR/dom0-init.sh"; } | sha256sum | cut -c1-16)
C="$OUT/cache/host-$KEY"
LINK="$OUT/host$XEN_TAG"

if [ -e "$C/.done" ]; then
    ln -sfn "cache/host-$KEY" "$LINK"
    echo "$LINK (cached: $C)"
    exit 0
fi

mkdir -p "$C"
# shellcheck disable=SC2086
fetch_unpack "$C" $PKGS
R="$C/root"
# in_root PATH: PATH in the unpacked packages; trixie's are merged-/usr
# (bin/bash is usr/bin/bash), bookworm's are not. dom0 keeps the
# bookworm layout (separate /bin, /sbin) either way.
in_root() { if [ -e "$R/$1" ] || [ ! -e "$R/usr/$1" ]; then echo "$R/$1"; else echo "$R/usr/$1"; fi; }

I="$C/initrd"
rm -rf "$I"
mkdir -p "$I"/{bin,sbin,etc,dev,proc,sys,run,tmp,root,lib64,var/lib/xen,var/log/xen,var/lib/xenstored,var/lock,usr/bin,usr/sbin,usr/libexec,lib/x86_64-linux-gnu,usr/lib/x86_64-linux-gnu,usr/share/seabios}
ln -sfn ../run "$I/var/run"

cp "$(in_root bin/busybox)" "$I/bin/busybox"
# A suite with its own glibc (trixie): its loader at the path every binary
# names, so that no binary meets the build machine's glibc.
if [ -x "$R/usr/lib64/ld-linux-x86-64.so.2" ]; then
    cp -L "$R/usr/lib64/ld-linux-x86-64.so.2" "$I/lib64/"
fi
for applet in $("$I/bin/busybox" --list); do
    [ -e "$I/bin/$applet" ] || ln -s busybox "$I/bin/$applet"
done

mkdir -p "$I/usr/lib/xen-$XV"
cp -a "$R/usr/lib/xen-$XV/boot" "$I/usr/lib/xen-$XV/"
for f in "$R"/usr/lib/xen-$XV/bin/*; do
    case $(basename "$f") in oxenstored|pygrub|xenpvnetboot|xencov_split|test-*|xen-9pfsd) continue ;; esac
    copy_elf_with_libs "$R" "$f" "$I/usr/lib/xen-$XV/bin/$(basename "$f")" "$I"
done
for f in "$R"/usr/bin/xenstore*; do
    copy_elf_with_libs "$R" "$f" "$I/usr/bin/$(basename "$f")" "$I"
done
cp -a "$R"/usr/lib/x86_64-linux-gnu/libxen*.so* "$R"/usr/lib/x86_64-linux-gnu/libyajl*.so* "$I/usr/lib/x86_64-linux-gnu/"
# xl aborts at exit ("libgcc_s.so.1 must be installed for pthread_cancel
# to work") without it, even after a successful create.
if [ -e "$R/usr/lib/x86_64-linux-gnu/libgcc_s.so.1" ]; then
    cp -L "$R/usr/lib/x86_64-linux-gnu/libgcc_s.so.1" "$I/usr/lib/x86_64-linux-gnu/"
else
    cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$I/lib/x86_64-linux-gnu/"
fi
cp -a "$R/etc/xen" "$I/etc/"
# Debian's hotplug scripts (/etc/xen/scripts/block & co., xen-utils-common)
# run as they are; they need bash, util-linux's losetup (`losetup -a` in the
# format their sharing check parses) and flock; busybox covers the rest
# (stat, expr, readlink, logger). e2fsprogs is there for the scenarios that
# check a guest's ext4 from dom0 (e2fsck, debugfs).
replace_with_real "$I" "$R" bin/bash sbin/losetup usr/bin/flock \
    sbin/e2fsck sbin/mke2fs sbin/debugfs sbin/e2image sbin/dumpe2fs
ln -sfn mke2fs "$I/sbin/mkfs.ext4"
ln -sfn e2fsck "$I/sbin/fsck.ext4"
mkdir -p "$I/var/lib/xen/images" "$I/var/run/xen-hotplug"

# The qemu-xen flavour's BIOS (libxl loads it as a module for hvmloader).
cp "$R/usr/share/seabios/bios-256k.bin" "$I/usr/share/seabios/"
[ -e "$R/usr/share/seabios/bios-256k.bin" ]
# Debian's QEMU as the reference device model (qemu-xen flavour), at the
# path libxl uses by default.
copy_elf_with_libs "$R" "$R/usr/libexec/xen-qemu-system-i386" "$I/usr/libexec/xen-qemu-system-i386" "$I"
# qemu-img (the suite's qemu-utils) for the qcow2 scenarios: dom0 builds
# their images and checks them afterwards (`qemu-img check`, `convert`),
# with QEMU's own qcow2 code as the oracle.
copy_elf_with_libs "$R" "$(in_root usr/bin/qemu-img)" "$I/usr/bin/qemu-img" "$I"

# QEMU reads a keymap even for "-vnc none"; the keymaps are data files of
# qemu-system-data, installed on the build machine with qemu-system-x86.
# trixie's qemu-system-data is among the unpacked packages (QEMU 10's own).
mkdir -p "$I/usr/share/qemu"
if [ -d "$R/usr/share/qemu/keymaps" ]; then
    cp -r "$R/usr/share/qemu/keymaps" "$I/usr/share/qemu/"
else
    cp -r /usr/share/qemu/keymaps "$I/usr/share/qemu/"
fi
# Direct kernel boot (xl kernel=): the linuxboot option ROMs, DMA (ours) and
# port (QEMU under Xen has no fw_cfg DMA) flavours, the suite's own if it
# has them.
for rom in linuxboot_dma.bin linuxboot.bin; do
    if [ -f "$R/usr/share/qemu/$rom" ]; then cp "$R/usr/share/qemu/$rom" "$I/usr/share/qemu/"
    else cp "/usr/share/qemu/$rom" "$I/usr/share/qemu/"; fi
done

# Kernel modules. Debian ships no modules.dep, so dom0-init.sh insmods them
# in dependency order. trixie's are xz-compressed (.ko.xz), which busybox's
# insmod cannot read: they are unpacked here.
mods=$(in_root lib/modules)
kver=$(ls "$mods" | head -1)
kd="$mods/$kver/kernel"
mkdir -p "$I/lib/modules/$kver"
for m in drivers/xen/{xen-evtchn,xen-privcmd,xen-gntdev,xen-gntalloc} drivers/xen/xenfs/xenfs \
         drivers/block/xen-blkback/xen-blkback drivers/block/loop; do
    if [ -e "$kd/$m.ko" ]; then
        cp "$kd/$m.ko" "$I/lib/modules/$kver/"
    else
        xz -dc "$kd/$m.ko.xz" > "$I/lib/modules/$kver/$(basename "$m").ko"
    fi
done

echo 'root:x:0:0:root:/root:/bin/sh' > "$I/etc/passwd"
echo 'root:x:0:' > "$I/etc/group"
cp "$TESTBED_DIR/dom0-init.sh" "$I/init"
chmod +x "$I/init"

# what the base holds, so that run.sh adds no second copy of a library
# (in particular no bookworm glibc over trixie's)
(cd "$I" && find . ! -type d | LC_ALL=C sort) > "$C/base-files.txt"
cpio_of "$I" "$C/dom0-base.cpio.gz"
zcat "$R/boot/xen-$XV-amd64.gz" > "$C/xen"
cp "$R"/boot/vmlinuz-"$kver" "$C/vmlinuz"
rm -rf "$I"
touch "$C/.done"
ln -sfn "cache/host-$KEY" "$LINK"
ls -la "$C"/xen "$C"/vmlinuz "$C"/dom0-base.cpio.gz
echo "$LINK"
