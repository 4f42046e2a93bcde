#!/bin/bash
# build.sh OUT_DIR: build the test firmware (OUT_DIR/idetest.elf), a 32-bit
# ELF that xl loads with firmware_override=. Needs gcc and binutils only
# (no 32-bit libc: it is freestanding).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
gcc -m32 -march=i686 -O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
    -fno-asynchronous-unwind-tables -mno-sse -mno-mmx -mno-80387 \
    -Wall -Wextra -Werror -c "$here/idetest.c" -o "$out/idetest.o"
ld -m elf_i386 -static -nostdlib --no-warn-rwx-segments -T "$here/idetest.ld" -o "$out/idetest.elf" "$out/idetest.o"
echo "$out/idetest.elf"
