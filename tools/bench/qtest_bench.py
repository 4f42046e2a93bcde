#!/usr/bin/env python3
"""Drive device models over QEMU's qtest protocol and time IDE work.

Every device model under test gets the same argv (only the program
differs), its own fresh copy of the image, and the same client logic:
requests are pipelined in batches wherever the protocol allows it, and the
client waits for a reply only where a real guest would have to look at the
device before going on (BSY/DRQ after a command, BMDMA INTR after START),
because QEMU completes disk I/O asynchronously in its main loop.

Every workload also checks its data (a read returns the image's bytes, a
write lands in the image file), so a fast but broken model shows up as an
error, not as a figure. Timings are printed, never asserted.

Standard library only.
"""

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import time

SECTOR = 512
IMAGE_BYTES = 64 << 20
IMAGE_SECTORS = IMAGE_BYTES // SECTOR
BM = 0xC000
PRD_TABLE = 0x10000
DMA_BUFFER = 0x100000
PRD_SEGMENT = 4096
# Replies to a batch (~10 bytes each) stay well inside a 64 KiB pipe, so
# the device model never blocks writing while the client is still writing.
BATCH = 2000
POLL_TIMEOUT = 10.0

ST_BSY, ST_DRQ, ST_ERR = 0x80, 0x08, 0x01
BM_ACTIVE, BM_ERROR, BM_INTR = 0x01, 0x02, 0x04


class ProtocolError(Exception):
    pass


def image_pattern(size):
    """Deterministic, non-repeating-per-sector content: each sector starts
    with its own number so a read of the wrong LBA is caught."""
    out = bytearray(size)
    filler = bytes((i * 37 + 11) & 0xFF for i in range(SECTOR))
    for s in range(size // SECTOR):
        off = s * SECTOR
        out[off:off + SECTOR] = filler
        out[off:off + 4] = s.to_bytes(4, "little")
    return bytes(out)


class Qtest:
    def __init__(self, argv):
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.round_trips = 0
        self.stdin_fd = self.proc.stdin.fileno()
        self.stdout_fd = self.proc.stdout.fileno()
        self.pending = b""

    def batch(self, cmds):
        """Send cmds in one write, return their reply payloads. Replies are
        taken from the pipe in as large chunks as are there, so the client
        does not wake once per line."""
        self.round_trips += 1
        os.write(self.stdin_fd, ("\n".join(cmds) + "\n").encode())
        replies = []
        while len(replies) < len(cmds):
            while b"\n" not in self.pending:
                chunk = os.read(self.stdout_fd, 1 << 16)
                if not chunk:
                    raise ProtocolError("device model closed its qtest stream (rc=%s)" % self.proc.poll())
                self.pending += chunk
            *lines, self.pending = self.pending.split(b"\n")
            for raw in lines:
                line = raw.decode()
                if line.startswith("IRQ "):
                    continue
                if len(replies) == len(cmds):
                    raise ProtocolError("unexpected line %r after the replies to a batch" % line)
                if not line.startswith("OK"):
                    raise ProtocolError("%r answered %r" % (cmds[len(replies)], line))
                replies.append(line[3:])
        return replies

    def cmd(self, c):
        return self.batch([c])[0]

    def pipelined(self, cmds):
        out = []
        for i in range(0, len(cmds), BATCH):
            out.extend(self.batch(cmds[i:i + BATCH]))
        return out

    def memory_kib(self):
        fields = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    fields[key] = int(value.split()[0])
        return fields

    def close(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            # QEMU keeps running after its qtest stream closes.
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def taskfile(cmd, lba, count):
    return [
        "outb 0x1f6 0x%x" % (0xE0 | ((lba >> 24) & 0x0F)),
        "outb 0x1f2 0x%x" % (count & 0xFF),
        "outb 0x1f3 0x%x" % (lba & 0xFF),
        "outb 0x1f4 0x%x" % ((lba >> 8) & 0xFF),
        "outb 0x1f5 0x%x" % ((lba >> 16) & 0xFF),
        "outb 0x1f7 0x%x" % cmd,
    ]


def poll(qt, port, done, what):
    deadline = time.monotonic() + POLL_TIMEOUT
    while True:
        v = int(qt.cmd("inb 0x%x" % port), 16)
        if done(v):
            return v
        if time.monotonic() > deadline:
            raise ProtocolError("%s: port 0x%x stuck at 0x%02x" % (what, port, v))


def check_status(v, what):
    if v & (ST_BSY | ST_DRQ | ST_ERR):
        raise ProtocolError("%s: status 0x%02x" % (what, v))


def setup_pci(qt):
    ident = qt.batch(["outl 0xcf8 0x80000900", "inl 0xcfc"])[1]
    if int(ident, 16) != 0x70108086:
        raise ProtocolError("00:01.0 is not a PIIX3 IDE (id %s)" % ident)
    qt.batch([
        "outl 0xcf8 0x80000920", "outl 0xcfc 0x%x" % (BM | 1),
        "outl 0xcf8 0x80000904", "outw 0xcfc 0x5",
    ])


def prd_table(bytes_):
    table = bytearray()
    segments = (bytes_ + PRD_SEGMENT - 1) // PRD_SEGMENT
    for i in range(segments):
        length = min(PRD_SEGMENT, bytes_ - i * PRD_SEGMENT)
        eot = 0x80000000 if i + 1 == segments else 0
        table += (DMA_BUFFER + i * PRD_SEGMENT).to_bytes(4, "little")
        table += ((length & 0xFFFF) | eot).to_bytes(4, "little")
    return bytes(table)


def b64write(qt, addr, data):
    qt.cmd("b64write 0x%x 0x%x %s" % (addr, len(data), base64.b64encode(data).decode()))


def b64read(qt, addr, length):
    return base64.b64decode(qt.cmd("b64read 0x%x 0x%x" % (addr, length)))


def lba_for(i, count):
    return (i * 7919) % (IMAGE_SECTORS // count) * count


def timed(budget, body):
    """Run body(i) until budget seconds passed; returns (ops, seconds)."""
    start = time.monotonic()
    i = 0
    while True:
        body(i)
        i += 1
        elapsed = time.monotonic() - start
        if elapsed >= budget:
            return i, elapsed


def work_round_trips(qt, ctx):
    n = ctx.args.round_trips
    start = time.monotonic()
    replies = qt.pipelined(["inb 0x3f6"] * n)
    elapsed = time.monotonic() - start
    bad = [r for r in replies if int(r, 16) & (ST_BSY | ST_ERR)]
    if bad:
        raise ProtocolError("inb 0x3f6 answered %s" % bad[0])
    return n, elapsed


def work_lockstep(qt, ctx):
    """One command, wait for its reply, next: the latency a guest whose
    every access traps sees (QEMU's figure in ide-behaviour.md §8)."""
    def one(_):
        if int(qt.cmd("inb 0x3f6"), 16) & (ST_BSY | ST_ERR):
            raise ProtocolError("inb 0x3f6 shows BSY or ERR")
    return timed(ctx.args.seconds, one)


def work_pio_read(qt, ctx):
    def one(i):
        lba = lba_for(i, 1)
        qt.batch(taskfile(0x20, lba, 1))
        poll(qt, 0x1F7, lambda v: not v & ST_BSY, "READ SECTORS")
        replies = qt.batch(["inw 0x1f0"] * (SECTOR // 2) + ["inb 0x1f7"])
        check_status(int(replies[-1], 16), "READ SECTORS end")
        if i < 4:
            data = b"".join(int(w, 16).to_bytes(2, "little") for w in replies[:-1])
            if data != ctx.image[lba * SECTOR:(lba + 1) * SECTOR]:
                raise ProtocolError("READ SECTORS of LBA %d returned other bytes than the image" % lba)
    return timed(ctx.args.seconds, one)


def work_pio_read_lockstep(qt, ctx):
    """The same command with every access its own round trip, as a guest
    whose every port access traps (ide-behaviour.md §8 measured QEMU so)."""
    def one(i):
        lba = lba_for(i, 1)
        for c in taskfile(0x20, lba, 1):
            qt.cmd(c)
        poll(qt, 0x1F7, lambda v: not v & ST_BSY, "READ SECTORS")
        words = [qt.cmd("inw 0x1f0") for _ in range(SECTOR // 2)]
        check_status(int(qt.cmd("inb 0x1f7"), 16), "READ SECTORS end")
        if i < 4:
            data = b"".join(int(w, 16).to_bytes(2, "little") for w in words)
            if data != ctx.image[lba * SECTOR:(lba + 1) * SECTOR]:
                raise ProtocolError("READ SECTORS of LBA %d returned other bytes than the image" % lba)
    return timed(ctx.args.seconds, one)


def dma(qt, cmd, lba, count, to_memory):
    direction = 0x08 if to_memory else 0x00
    qt.batch(
        ["outl 0x%x 0x%x" % (BM + 4, PRD_TABLE), "outb 0x%x 0x%x" % (BM, direction),
         "outb 0x%x 0x%x" % (BM + 2, BM_INTR | BM_ERROR)]
        + taskfile(cmd, lba, count & 0xFF)
        + ["outb 0x%x 0x%x" % (BM, direction | 1)]
    )
    bm = poll(qt, BM + 2, lambda v: v & BM_INTR or not v & BM_ACTIVE, "DMA 0x%x" % cmd)
    if bm & (BM_INTR | BM_ERROR | BM_ACTIVE) != BM_INTR:
        raise ProtocolError("DMA 0x%x: BMDMA status 0x%02x" % (cmd, bm))
    status = qt.batch(["outb 0x%x 0x%x" % (BM, direction), "inb 0x1f7"])[1]
    check_status(int(status, 16), "DMA 0x%x end" % cmd)


def work_read_dma(qt, ctx):
    count = 8
    b64write(qt, PRD_TABLE, prd_table(count * SECTOR))

    def one(i):
        lba = lba_for(i, count)
        dma(qt, 0xC8, lba, count, True)
        if i < 4:
            got = b64read(qt, DMA_BUFFER, count * SECTOR)
            if got != ctx.image[lba * SECTOR:(lba + count) * SECTOR]:
                raise ProtocolError("READ DMA of LBA %d put other bytes into guest RAM than the image holds" % lba)
    return timed(ctx.args.seconds, one)


def work_write_dma(qt, ctx):
    count = 256
    b64write(qt, PRD_TABLE, prd_table(count * SECTOR))
    payload = bytes((i * 13 + 5) & 0xFF for i in range(count * SECTOR))
    b64write(qt, DMA_BUFFER, payload)

    def one(i):
        lba = lba_for(i, count)
        dma(qt, 0xCA, lba, count, False)
        ctx.written.add(lba)
    return timed(ctx.args.seconds, one)


WORKLOADS = {
    "rt": ("pipelined inb 0x3f6/s", work_round_trips),
    "rt1": ("lock-step inb 0x3f6 round trips/s", work_lockstep),
    "pio1": ("1-sector READ SECTORS/s", work_pio_read),
    "pio1ls": ("1-sector READ SECTORS/s, lock-step", work_pio_read_lockstep),
    "dma8r": ("8-sector READ DMA/s", work_read_dma),
    "dma256w": ("256-sector WRITE DMA/s", work_write_dma),
}


class Ctx:
    def __init__(self, args, image):
        self.args = args
        self.image = image
        self.written = set()


def run_model(label, program, args, image, workdir):
    img = os.path.join(workdir, "disk-%s.img" % label)
    with open(img, "wb") as f:
        f.write(image)
    argv = [program] + args.common_argv + [
        "-drive", "if=ide,index=0,media=disk,format=raw,cache=writeback,file=%s,werror=report,rerror=report" % img,
    ]
    ctx = Ctx(args, image)
    results = {}
    qt = Qtest(argv)
    try:
        setup_pci(qt)
        for name in args.workloads:
            before = qt.round_trips
            ops, seconds = WORKLOADS[name][1](qt, ctx)
            results[name] = {"ops": ops, "seconds": seconds, "rate": ops / seconds,
                             "round_trips_per_op": (qt.round_trips - before) / ops}
        if args.memory:
            results["memory"] = qt.memory_kib()
    finally:
        qt.close()
    if ctx.written:
        payload = bytes((i * 13 + 5) & 0xFF for i in range(256 * SECTOR))
        with open(img, "rb") as f:
            for lba in sorted(ctx.written)[:16]:
                f.seek(lba * SECTOR)
                if f.read(len(payload)) != payload:
                    raise ProtocolError("%s: WRITE DMA to LBA %d is not in the image file" % (label, lba))
    os.unlink(img)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, metavar="LABEL=PROGRAM",
                   help="device model to run (repeat; first is the numerator of the ratio)")
    p.add_argument("--bios", required=True, help="halt.bin for QEMU's TCG vCPU")
    p.add_argument("--workdir", required=True, help="where image copies are made")
    p.add_argument("--workloads", default="rt,rt1,pio1,pio1ls,dma8r,dma256w")
    p.add_argument("--seconds", type=float, default=2.0, help="time per timed workload")
    p.add_argument("--round-trips", type=int, default=100000)
    p.add_argument("--repeat", type=int, default=1, help="alternating runs per model; medians are printed")
    p.add_argument("--memory", action="store_true", help="report VmHWM/VmRSS after the workloads")
    args = p.parse_args()
    if args.repeat < 1:
        p.error("--repeat: must be at least 1")
    if args.seconds <= 0:
        p.error("--seconds: must be positive")
    args.workloads = [w for w in args.workloads.split(",") if w]
    for w in args.workloads:
        if w not in WORKLOADS:
            p.error("--workloads: unknown workload %r (known: %s)" % (w, ",".join(WORKLOADS)))
    models = []
    for m in args.model:
        label, sep, program = m.partition("=")
        if not sep or not label or not program:
            p.error("--model: %r is not LABEL=PROGRAM" % m)
        if shutil.which(program) is None:
            p.error("--model: %s: %r is not an executable" % (label, program))
        models.append((label, program))
    args.common_argv = [
        "-machine", "pc", "-m", "128", "-accel", "tcg", "-bios", args.bios,
        "-nodefaults", "-display", "none", "-qtest", "stdio", "-qtest-log", "none",
    ]

    image = image_pattern(IMAGE_BYTES)
    labels = [l for l, _ in models]
    # Runs alternate between the models so that load from other processes
    # on the host hits both alike; each figure is the median of the runs.
    runs = {l: [] for l in labels}
    for _ in range(args.repeat):
        for label, program in models:
            try:
                runs[label].append(run_model(label, program, args, image, args.workdir))
            except ProtocolError as e:
                print("%s: %s" % (label, e), file=sys.stderr)
                return 1

    def median(label, pick):
        return statistics.median(pick(r) for r in runs[label])

    print("argv (both): <program> %s -drive if=ide,index=0,media=disk,format=raw,cache=writeback,file=<copy>,werror=report,rerror=report"
          % " ".join(args.common_argv))
    print("median of %d alternating run(s) per model; %.1f s per timed workload" % (args.repeat, args.seconds))
    head = "%-36s" % "workload" + "".join("%16s" % l for l in labels)
    if len(labels) == 2:
        head += "%10s" % "ratio"
    head += "   round trips/op   spread (min..max)"
    print(head)
    for name in args.workloads:
        row = "%-36s" % WORKLOADS[name][0]
        rates = [median(l, lambda r: r[name]["rate"]) for l in labels]
        row += "".join("%16.0f" % r for r in rates)
        if len(labels) == 2:
            row += "%9.2fx" % (rates[0] / rates[1])
        row += "   %-16s" % " / ".join("%.3g" % median(l, lambda r: r[name]["round_trips_per_op"]) for l in labels)
        row += " " + " / ".join("%.0f..%.0f" % (min(r[name]["rate"] for r in runs[l]), max(r[name]["rate"] for r in runs[l]))
                                for l in labels)
        print(row)
    if args.memory:
        when = "after " + ",".join(args.workloads) if args.workloads else "idle"
        for key in ("VmHWM", "VmRSS"):
            row = "%-36s" % ("%s MiB (%s)" % (key, when))
            vals = [median(l, lambda r: r["memory"][key]) / 1024 for l in labels]
            row += "".join("%16.1f" % v for v in vals)
            if len(labels) == 2:
                row += "%9.2fx" % (vals[0] / vals[1])
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
