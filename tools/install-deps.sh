#!/bin/bash
# Debian packages the build, the tests and the testbed need. Idempotent.
set -euo pipefail
PKGS="qemu-system-x86 libxen-dev cpio file mtools syslinux syslinux-common dosfstools gcc binutils perl"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q $missing
fi
