#!/bin/bash
# build.sh OUT_DIR: build the test firmwares (OUT_DIR/idetest.elf, the IDE
# checks; OUT_DIR/storm.elf, the hostile-guest storm), 32-bit ELFs that xl
# loads with firmware_override=. Needs gcc and binutils only (no 32-bit
# libc: they are freestanding).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
for fw in idetest storm; do
    gcc -m32 -march=i686 -O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
        -fno-asynchronous-unwind-tables -mno-sse -mno-mmx -mno-80387 \
        -Wall -Wextra -Werror -c "$here/$fw.c" -o "$out/$fw.o"
    ld -m elf_i386 -static -nostdlib --no-warn-rwx-segments -T "$here/firmware.ld" -o "$out/$fw.elf" "$out/$fw.o"
    echo "$out/$fw.elf"
done
