#!/bin/bash
# Peak RSS (VmHWM) and current RSS of xen-ioemu and QEMU for the same qtest
# command line (-m 128, one 64 MiB raw disk): once right after the PIIX3 is
# set up, once after the DMA workloads (8-sector READ DMA, 256-sector WRITE
# DMA), read from /proc/<pid>/status before the process is ended.
#
#   tools/bench/memory.sh [--seconds S]

. "$(dirname "$0")/common.sh"
echo "$("$qemu" --version | head -1)"
echo "== idle (PCI set up, no I/O)"
run_helper --repeat 3 --workloads "" --memory
echo "== after the DMA workloads"
run_helper --repeat 3 --workloads dma8r,dma256w --memory "${@:---seconds=2}"
