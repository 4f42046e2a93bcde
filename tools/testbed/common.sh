# Shared by the testbed scripts (sourced, not run).
# The host pieces come from Debian packages only; they are unpacked under a
# cache folder named after the package versions, so a rebuild happens exactly
# when the archive moves.

XV=4.17
TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$TESTBED_DIR/../.." && pwd)

# Meta packages resolved to the versioned kernel they pull in, because
# apt-get download does not follow dependencies.
kernel_pkg() {
    apt-cache depends "$1" | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}

host_packages() {
    echo "xen-hypervisor-$XV-amd64 xen-utils-$XV xen-utils-common xenstore-utils
 libxenmisc$XV libxencall1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
 libxenstore4 libxentoollog1 libxenhypfs1 libxendevicemodel1 libxentoolcore1
 libyajl2 busybox-static seabios qemu-system-xen $(kernel_pkg linux-image-amd64)
 bash mount util-linux e2fsprogs libext2fs2 libcom-err2 libss2"
}

# replace_with_real INITRD SYSROOT PATH...: put the Debian binary at each
# PATH (relative to both roots) in place of busybox's applet link, with its
# libraries. (Removing the link first matters: cp onto the symlink would
# overwrite busybox itself.)
replace_with_real() {
    local initrd=$1 sysroot=$2 p; shift 2
    for p in "$@"; do
        rm -f "$initrd/bin/$(basename "$p")" "$initrd/sbin/$(basename "$p")" "$initrd/usr/bin/$(basename "$p")" "$initrd/usr/sbin/$(basename "$p")"
        copy_elf_with_libs "$sysroot" "$sysroot/$p" "$initrd/$p" "$initrd"
    done
}

# Cache key: the candidate versions apt would fetch, hashed. A changed
# archive (security update) gives a new folder; an unchanged one is reused.
packages_key() {
    local p
    for p in "$@"; do
        printf '%s %s\n' "$p" "$(apt-cache policy "$p" | awk '/Candidate:/{print $2}')"
    done | sha256sum | cut -c1-16
}

# fetch_unpack DIR PKG...: download the .debs into DIR/debs and unpack them
# all into DIR/root. Idempotent through DIR/.unpacked.
fetch_unpack() {
    local dir=$1; shift
    [ -e "$dir/.unpacked" ] && return 0
    rm -rf "$dir/debs" "$dir/root"
    mkdir -p "$dir/debs" "$dir/root"
    (cd "$dir/debs" && apt-get download "$@" 2>&1 | grep -v 'unsandboxed' || true)
    local p
    for p in "$@"; do
        ls "$dir"/debs/"${p}"_*.deb >/dev/null 2>&1 || { echo "missing package $p after apt-get download" >&2; return 1; }
    done
    local f
    for f in "$dir"/debs/*.deb; do dpkg -x "$f" "$dir/root"; done
    touch "$dir/.unpacked"
}

# copy_elf_with_libs SYSROOT FILE DEST INITRD: copy FILE to DEST and every
# shared library it needs into INITRD (the unpacked packages first, then
# the build host's own bookworm libraries).
copy_elf_with_libs() {
    local sysroot=$1 f=$2 dst=$3 initrd=$4
    mkdir -p "$(dirname "$dst")"
    cp -L "$f" "$dst"
    file -L "$f" | grep -q 'ELF.*dynamic' || return 0
    local libs
    libs=$(LD_LIBRARY_PATH="$sysroot/usr/lib/x86_64-linux-gnu:$sysroot/lib/x86_64-linux-gnu:$sysroot/usr/lib/xen-$XV/lib/x86_64-linux-gnu" ldd "$f")
    if echo "$libs" | grep -q 'not found'; then
        echo "copy_elf_with_libs: $f: unresolved libraries:" >&2
        echo "$libs" | grep 'not found' >&2
        return 1
    fi
    echo "$libs" | awk '/=> \//{print $3} /^\t\/lib64/{print $1}' | while read -r lib; do
        local rel=${lib#"$sysroot"}
        [ -e "$initrd$rel" ] && continue
        mkdir -p "$initrd$(dirname "$rel")"
        cp -L "$lib" "$initrd$rel"
    done
}

# cpio_of DIR OUT: a gzip'd newc archive of DIR (owner root).
cpio_of() {
    (cd "$1" && find . | LC_ALL=C sort | cpio -H newc -o --quiet -R 0:0 | gzip -1 > "$2")
}
