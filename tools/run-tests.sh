#!/bin/bash
# All tests: unit tests, the differential suite against QEMU 7.2, and the
# real-Xen testbed scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cargo build --release --locked
cargo test --release --locked --workspace
