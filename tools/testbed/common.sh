# Shared by the testbed scripts (sourced, not run).
# The host pieces come from Debian packages only; they are unpacked under a
# cache folder named after the package versions, so a rebuild happens exactly
# when the archive moves.

TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$TESTBED_DIR/../.." && pwd)

# select_xen VERSION [OUT]: which Debian release the nested host is built from.
#   4.17  bookworm, through the build machine's own apt state (the default)
#   4.20  trixie, through a private apt configuration under OUT (apt_suite_ready)
# Sets XV, SUITE, TB_APT_CONFIG (empty: the system's apt) and XEN_TAG (""
# for 4.17, "-4.20" otherwise: the suffix of the host link, run and log
# folders, so the two hosts and their logs never mix).
select_xen() {
    XV=$1
    local out=${2:-$REPO_DIR/build/testbed}
    case $XV in
    4.17) SUITE=bookworm; TB_APT_CONFIG=""; XEN_TAG="" ;;
    4.20) SUITE=trixie; TB_APT_CONFIG="$out/apt-$SUITE/apt.conf"; XEN_TAG="-$XV" ;;
    *) echo "testbed: --xen $XV: unknown Xen version (4.17 = bookworm, 4.20 = trixie)" >&2; return 2 ;;
    esac
}
select_xen "${TESTBED_XEN:-4.17}" "${TESTBED_OUT:-}" || exit 2

# apt with the selected suite's configuration.
tb_apt() {
    if [ -n "$TB_APT_CONFIG" ]; then APT_CONFIG=$TB_APT_CONFIG "$@"; else "$@"; fi
}

# apt_suite_ready: for a suite other than the build machine's, write a
# private apt configuration beside TB_APT_CONFIG (its own sources.list,
# lists and cache, an empty dpkg status so that nothing counts as
# installed) and fetch its lists when they are missing or over an hour old.
# The system's apt state is not touched: APT_CONFIG replaces
# /etc/apt/apt.conf only (apt.conf.d, e.g. a proxy, still applies). The
# trixie archive keys are in bookworm's debian-archive-keyring
# (2023.3+deb12u2: debian-archive-trixie-{stable,automatic,security-automatic}).
apt_suite_ready() {
    [ -n "$TB_APT_CONFIG" ] || return 0
    local d mirror key=/usr/share/keyrings/debian-archive-keyring.gpg
    d=$(dirname "$TB_APT_CONFIG")
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/sources.d" "$d/prefs.d"
    # the mirror the machine already uses
    mirror=$(sed -n 's|^URIs: *\(http[^ ]*/debian\)/*$|\1|p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {sub(/\/$/, "", $2); print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    {
        echo "deb [signed-by=$key] $mirror $SUITE main"
        echo "deb [signed-by=$key] $mirror $SUITE-updates main"
        echo "deb [signed-by=$key] ${mirror%/debian}/debian-security $SUITE-security main"
    } > "$d/sources.list"
    cat > "$TB_APT_CONFIG" <<EOF
Dir::Etc::sourcelist "$d/sources.list";
Dir::Etc::sourceparts "$d/sources.d";
Dir::Etc::preferences "/dev/null";
Dir::Etc::preferencesparts "$d/prefs.d";
Dir::State::Lists "$d/lists";
Dir::State::status "/dev/null";
Dir::Cache "$d/cache";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
EOF
    if [ -z "$(find "$d/lists" -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | head -1)" ]; then
        tb_apt apt-get -q update >&2 || { echo "testbed: apt-get update for $SUITE failed" >&2; return 1; }
    fi
}

# Meta packages resolved to the versioned kernel they pull in, because
# apt-get download does not follow dependencies.
kernel_pkg() {
    tb_apt apt-cache depends "$1" | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}

# lib_closure PKG...: the PKGs plus every library package they depend on,
# recursively (first alternative of each Depends/Pre-Depends; lib* and
# gcc-N-base only: the daemons, perl or python that maintainer scripts pull
# in are not needed in dom0).
lib_closure() {
    local todo="$*" seen=" " p fresh
    while [ -n "${todo// /}" ]; do
        fresh=""
        for p in $todo; do
            case $seen in *" $p "*) continue ;; esac
            seen="$seen$p "
            fresh="$fresh $p"
        done
        [ -n "${fresh// /}" ] || break
        # shellcheck disable=SC2086
        todo=$(tb_apt apt-cache depends --no-recommends --no-suggests --no-conflicts \
                --no-breaks --no-replaces --no-enhances $fresh 2>/dev/null \
            | awk '/^  (Pre)?Depends: [^<]/{print $2}' | grep -E '^(lib|zlib1g$|gcc-[0-9]+-base$)' | sort -u | tr '\n' ' ')
    done
    echo "$seen" | tr ' ' '\n' | grep -v '^$' | sort | tr '\n' ' '
}

host_packages() {
    case $XV in
    4.17)
        echo "xen-hypervisor-$XV-amd64 xen-utils-$XV xen-utils-common xenstore-utils
 libxenmisc$XV libxencall1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
 libxenstore4 libxentoollog1 libxenhypfs1 libxendevicemodel1 libxentoolcore1
 libyajl2 busybox-static seabios qemu-system-xen qemu-utils $(kernel_pkg linux-image-amd64)
 bash mount util-linux e2fsprogs libext2fs2 libcom-err2 libss2" ;;
    *)
        # trixie's binaries need trixie's glibc (2.41) and libraries: the
        # whole library closure comes from the suite, none from the build host.
        # Resolved once per refresh of the lists (a dozen apt-cache calls).
        local list
        list="$(dirname "$TB_APT_CONFIG")/host-packages"
        if [ ! -s "$list" ] || [ -n "$(find "$(dirname "$TB_APT_CONFIG")/lists" -maxdepth 1 -name '*_Packages*' -newer "$list" | head -1)" ]; then
            lib_closure "xen-hypervisor-$XV-amd64" "xen-utils-$XV" xen-utils-common xenstore-utils \
                busybox-static seabios qemu-system-xen qemu-system-data qemu-utils "$(kernel_pkg linux-image-amd64)" \
                bash mount util-linux e2fsprogs libc6 libgcc-s1 > "$list.new"
            mv "$list.new" "$list"
        fi
        cat "$list" ;;
    esac
}
# replace_with_real INITRD SYSROOT PATH...: put the Debian binary at each
# PATH (relative to both roots) in place of busybox's applet link, with its
# libraries. (Removing the link first matters: cp onto the symlink would
# overwrite busybox itself.)
replace_with_real() {
    local initrd=$1 sysroot=$2 p src; shift 2
    for p in "$@"; do
        rm -f "$initrd/bin/$(basename "$p")" "$initrd/sbin/$(basename "$p")" "$initrd/usr/bin/$(basename "$p")" "$initrd/usr/sbin/$(basename "$p")"
        # merged-/usr suites (trixie) have it under usr/
        src="$sysroot/$p"
        [ -e "$src" ] || src="$sysroot/usr/$p"
        copy_elf_with_libs "$sysroot" "$src" "$initrd/$p" "$initrd"
    done
}

# Cache key: the candidate versions apt would fetch, hashed. A changed
# archive (security update) gives a new folder; an unchanged one is reused.
packages_key() {
    # one apt-cache call for all (each call reads the whole package cache)
    tb_apt apt-cache policy "$@" | awk '/^[^ ].*:$/{p=$1} /^  Candidate:/{print p, $2}' \
        | sha256sum | cut -c1-16
}

# fetch_unpack DIR PKG...: download the .debs into DIR/debs and unpack them
# all into DIR/root. Idempotent through DIR/.unpacked.
fetch_unpack() {
    local dir=$1; shift
    [ -e "$dir/.unpacked" ] && return 0
    rm -rf "$dir/debs" "$dir/root"
    mkdir -p "$dir/debs" "$dir/root"
    (cd "$dir/debs" && tb_apt apt-get download "$@" 2>&1 | grep -v 'unsandboxed' || true)
    local p
    for p in "$@"; do
        ls "$dir"/debs/"${p}"_*.deb >/dev/null 2>&1 || { echo "missing package $p after apt-get download" >&2; return 1; }
    done
    local f
    for f in "$dir"/debs/*.deb; do dpkg -x "$f" "$dir/root"; done
    touch "$dir/.unpacked"
}

# copy_elf_with_libs SYSROOT FILE DEST INITRD: copy FILE to DEST and every
# shared library it needs into INITRD. Bookworm (no glibc among the
# unpacked packages): the unpacked packages first, then the build machine's
# own bookworm libraries. A suite with its own glibc (trixie): resolved by
# that suite's loader, and a library from the build machine is an error
# (mixing glibc versions), unless TB_HOST_LIBS_OK=1. Libraries listed in
# TB_BASE_FILES (the dom0 base's file list) are not copied again.
copy_elf_with_libs() {
    local sysroot=$1 f=$2 dst=$3 initrd=$4
    mkdir -p "$(dirname "$dst")"
    cp -L "$f" "$dst"
    file -L "$f" | grep -q 'ELF.*dynamic' || return 0
    local libs lp="$sysroot/usr/lib/x86_64-linux-gnu:$sysroot/lib/x86_64-linux-gnu:$sysroot/usr/lib/xen-$XV/lib/x86_64-linux-gnu"
    local ldso="$sysroot/usr/lib64/ld-linux-x86-64.so.2" own_glibc=0
    if [ -x "$ldso" ]; then
        own_glibc=1
        libs=$("$ldso" --library-path "$lp" --list "$f")
    else
        libs=$(LD_LIBRARY_PATH="$lp" ldd "$f")
    fi
    if echo "$libs" | grep -q 'not found'; then
        echo "copy_elf_with_libs: $f: unresolved libraries:" >&2
        echo "$libs" | grep 'not found' >&2
        return 1
    fi
    # the loader line: the build machine's for bookworm; with the suite's
    # own glibc, build-host.sh has put its loader at /lib64 already
    { echo "$libs" | awk '/=> \//{print $3}'
      [ $own_glibc = 1 ] || echo "$libs" | awk '/^\t\/lib64/{print $1}'; } | while read -r lib; do
        local rel=${lib#"$sysroot"}
        if [ $own_glibc = 1 ] && [ "$rel" = "$lib" ] && [ "${TB_HOST_LIBS_OK:-0}" != 1 ]; then
            echo "copy_elf_with_libs: $f: $lib would come from the build machine, not from the $SUITE packages" >&2
            return 1
        fi
        [ -e "$initrd$rel" ] && continue
        [ -n "${TB_BASE_FILES:-}" ] && grep -qxF ".$rel" "$TB_BASE_FILES" && continue
        mkdir -p "$initrd$(dirname "$rel")"
        cp -L "$lib" "$initrd$rel"
    done
}

# cpio_of DIR OUT: a gzip'd newc archive of DIR (owner root).
cpio_of() {
    (cd "$1" && find . | LC_ALL=C sort | cpio -H newc -o --quiet -R 0:0 | gzip -1 > "$2")
}
