# Shared by qtest-compare.sh and memory.sh: release build of xen-ioemu, a
# scratch directory with QEMU's halt.bin, and the QEMU binary to compare.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
qemu=${QEMU:-qemu-system-x86_64}
ours=${XEN_IOEMU:-}

if ! command -v "$qemu" >/dev/null; then
    echo "$0: QEMU=$qemu: not found (Debian: apt-get install qemu-system-x86)" >&2
    exit 1
fi
if [ -z "$ours" ]; then
    (cd "$repo" && cargo build --release --quiet --bin xen-ioemu)
    target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    ours=$target_dir/release/xen-ioemu
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/xen-ioemu-bench.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# Debian's QEMU has no qtest accelerator: its TCG vCPU runs this BIOS,
# whose reset vector (0xfff0) is cli; hlt; jmp back, and halts for ever.
python3 - "$scratch/halt.bin" <<'PY'
import sys
bios = bytearray(b"\xf4" * 65536)
bios[0xFFF0:0xFFF4] = bytes([0xFA, 0xF4, 0xEB, 0xFD])
open(sys.argv[1], "wb").write(bios)
PY

run_helper() {
    python3 "$repo/tools/bench/qtest_bench.py" \
        --model "xen-ioemu=$ours" --model "qemu-7.2=$qemu" \
        --bios "$scratch/halt.bin" --workdir "$scratch" "$@"
}
