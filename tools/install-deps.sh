#!/bin/bash
# Debian packages the build, the tests and the testbed need. Idempotent.
set -euo pipefail
PKGS="qemu-system-x86 qemu-utils libxen-dev cpio file mtools syslinux syslinux-common dosfstools e2fsprogs genisoimage gcc g++ binutils perl"
# g++: libFuzzer (libfuzzer-sys builds it) for tools/fuzz.sh.
# --list: just name them (.ci/run installs them itself).
if [ "${1:-}" = --list ]; then echo "$PKGS"; exit 0; fi
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
export DEBIAN_FRONTEND=noninteractive
# The testbed fetches Xen with `apt-get download`, which needs package lists
# even when nothing is missing here.
if [ -n "$missing" ] || ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    apt-get update -q
fi
if [ -n "$missing" ]; then
    # The whole list, not just the missing ones: installing one alone can make
    # apt remove another, so apt must resolve them together.
    install=$PKGS
    downgrade=""
    # A machine can come with qemu-utils 10.0 from bookworm-backports and no
    # source list for it. Its "Breaks: qemu-system-common (<< 8.0)" makes
    # apt refuse QEMU 7.2 beside it ("held broken packages"), so take
    # bookworm's own qemu-utils (7.2, the version the tests use as oracle).
    if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q '~bpo'; then
        install=${install/qemu-utils/qemu-utils\/bookworm}
        downgrade=--allow-downgrades
    fi
    # shellcheck disable=SC2086
    apt-get install -y -q $downgrade $install
fi
for p in $PKGS; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' ||
        { echo "install-deps.sh: package $p is not installed after apt-get install" >&2; exit 1; }
done
