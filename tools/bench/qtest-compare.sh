#!/bin/bash
# The same IDE work over the qtest protocol against xen-ioemu and QEMU in
# one run: port reads (100 000 pipelined, and lock-step), 1-sector PIO READ
# SECTORS (pipelined, and lock-step), 8-sector READ DMA, 256-sector WRITE
# DMA. Pipelined means: every request a guest could issue without looking
# at the device goes out in one batch; waits for BSY/DRQ/INTR are polls. Both get the same argv and a
# fresh copy of the same 64 MiB image; the first column is divided by the
# second for the ratio.
#
#   tools/bench/qtest-compare.sh [--seconds S] [--round-trips N] [--workloads a,b]
#
# SECONDS per timed workload defaults to 2; each model runs 3 times,
# alternating, and medians are printed (a later --repeat N overrides). QEMU=<path> picks another QEMU,
# XEN_IOEMU=<path> a prebuilt binary (otherwise a release build is made).

. "$(dirname "$0")/common.sh"
echo "$("$qemu" --version | head -1)"
run_helper --repeat 3 "$@"
