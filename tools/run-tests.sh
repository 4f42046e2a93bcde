#!/bin/bash
# Every test, on a fresh Debian bookworm machine as root:
#   1. unit tests and scenario suites (cargo test --workspace), among them the
#      differential suite against QEMU 7.2 and the block tests on real
#      filesystems that fill up;
#   2. the real-Xen scenarios: Debian's Xen 4.17 under QEMU/TCG with
#      xen-ioemu as libxl's device model (tools/testbed/run.sh all).
# TESTBED=0 skips step 2 (it needs ~15 minutes of TCG).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - started ))s] $*"; }

stamp "installing Debian packages the tests need"
tools/install-deps.sh
stamp "building (release)"
cargo build --release --locked --workspace --all-targets
stamp "cargo test (unit, scenario and differential suites)"
cargo test --release --locked --workspace
if [ "${TESTBED:-1}" != 0 ]; then
    stamp "real-Xen scenarios (tools/testbed/run.sh -j 2 all: two nested Xens at once, one per core)"
    tools/testbed/run.sh -j 2 all
fi
stamp "all tests passed"
