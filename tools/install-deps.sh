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
    # apt remove another (a machine with qemu-utils 10.0 from backports lost it
    # when qemu-system-x86 7.2 came in), so apt must resolve them together.
    # shellcheck disable=SC2086
    apt-get install -y -q $PKGS
fi
for p in $PKGS; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' ||
        { echo "install-deps.sh: package $p is not installed after apt-get install" >&2; exit 1; }
done
