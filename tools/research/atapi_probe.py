#!/usr/bin/env python3
"""Throw-away probe: send ATAPI PACKET commands to Debian's QEMU 7.2 over
qtest (PIO, secondary master) and print every response byte, so the unit
tests in src/devices/ide/atapi.rs can assert QEMU's exact values.

Usage: atapi_probe.py [--iso-size BYTES | --no-medium] [--script NAME]
"""
import json, os, socket, subprocess, sys, tempfile, time

class Qemu:
    def __init__(self, iso, tmp):
        bios = os.path.join(tmp, "halt.bin")
        img = bytearray(b"\xf4" * 65536)
        img[0xFFF0:0xFFF4] = b"\xfa\xf4\xeb\xfd"
        open(bios, "wb").write(img)
        self.qmp_path = os.path.join(tmp, "qmp.sock")
        drive = "if=none,id=cd" + (",format=raw,readonly=on,file=" + iso if iso else "")
        args = ["qemu-system-x86_64", "-machine", "pc", "-m", "128", "-accel", "tcg",
                "-bios", bios, "-nodefaults", "-display", "none", "-qtest", "stdio", "-qtest-log", "/dev/null",
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
                "-drive", drive, "-device", "ide-cd,drive=cd,bus=ide.1,unit=0,id=cd0"]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)
        for _ in range(100):
            if os.path.exists(self.qmp_path):
                break
            time.sleep(0.05)
        self.qmp = socket.socket(socket.AF_UNIX)
        self.qmp.connect(self.qmp_path)
        self.qf = self.qmp.makefile("rw")
        self.qf.readline()
        self.qmp_cmd("qmp_capabilities")

    def qmp_cmd(self, cmd, **args):
        self.qf.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
        self.qf.flush()
        while True:
            r = json.loads(self.qf.readline())
            if "return" in r or "error" in r:
                return r

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        while True:
            r = self.p.stdout.readline().strip()
            if r.startswith("IRQ"):
                continue
            assert r.startswith("OK"), (line, r)
            return r

    def inb(self, port):
        return int(self.cmd("inb 0x%x" % port).split()[1], 16)

    def inw(self, port):
        return int(self.cmd("inw 0x%x" % port).split()[1], 16)

    def outb(self, port, v):
        self.cmd("outb 0x%x 0x%x" % (port, v))

    def outw(self, port, v):
        self.cmd("outw 0x%x 0x%x" % (port, v))

    def close(self):
        self.p.kill()
        self.p.wait(timeout=10)


def packet(q, cdb, bcl=0xfffe):
    cdb = bytes(cdb) + bytes(12 - len(cdb))
    q.outb(0x176, 0xA0)
    q.outb(0x171, 0)
    q.outb(0x174, bcl & 0xff)
    q.outb(0x175, bcl >> 8)
    q.outb(0x177, 0xA0)
    st = q.inb(0x177)
    if not st & 0x08:
        return {"cdb": cdb.hex(), "early_status": "%02x" % st, "error": "%02x" % q.inb(0x171)}
    for i in range(6):
        q.outw(0x170, cdb[2 * i] | (cdb[2 * i + 1] << 8))
    data = bytearray()
    chunks = []
    for _ in range(10000):
        st = q.inb(0x177)
        if st & 0x80:
            continue
        if not st & 0x08:
            break
        n = q.inb(0x174) | (q.inb(0x175) << 8)
        chunks.append(n)
        for _ in range((n + 1) // 2):
            w = q.inw(0x170)
            data += bytes([w & 0xff, w >> 8])
        data = data[: sum(chunks)]
    return {"cdb": cdb.hex(), "status": "%02x" % st, "error": "%02x" % q.inb(0x171),
            "ireason": "%02x" % q.inb(0x172), "chunks": chunks, "data": data.hex()}


def sense(q):
    r = packet(q, [0x03, 0, 0, 0, 18])
    return r["data"]


def show(name, r):
    print(name, json.dumps(r))


def main():
    iso_size = 1024 * 1024
    no_medium = "--no-medium" in sys.argv
    if "--iso-size" in sys.argv:
        iso_size = int(sys.argv[sys.argv.index("--iso-size") + 1])
    script = sys.argv[sys.argv.index("--script") + 1] if "--script" in sys.argv else "basic"
    with tempfile.TemporaryDirectory() as tmp:
        iso = os.path.join(tmp, "cd.iso")
        with open(iso, "wb") as f:
            f.truncate(iso_size)
            f.seek(0)
            f.write(bytes(range(256)) * 8)
        q = Qemu(None if no_medium else iso, tmp)
        q.cmd("outl 0xcf8 0x80000904")
        q.cmd("outw 0xcfc 0x0005")
        cmds = SCRIPTS[script]
        for name, cdb, *rest in cmds:
            if name == "QMP":
                show("QMP " + json.dumps(cdb), q.qmp_cmd(cdb["execute"], **cdb.get("arguments", {})))
                continue
            bcl = rest[0] if rest else 0xfffe
            r = packet(q, cdb, bcl)
            if len(r.get("data", "")) > 200:
                r["data_len"] = len(r["data"]) // 2
                r["data"] = r["data"][:96] + "..." + r["data"][-32:]
            show(name, r)
            if "--no-sense" not in sys.argv:
                show("  sense", sense(q))
        q.close()

NEWISO = "/tmp/atapi_probe_new.iso"

SCRIPTS = {
    "basic": [
        ("TUR0", [0x00]),
        ("TUR1", [0x00]),
        ("INQ", [0x12, 0, 0, 0, 96]),
        ("INQ8", [0x12, 0, 0, 0, 8]),
        ("INQ_VPD0", [0x12, 1, 0, 0, 96]),
        ("INQ_VPD83", [0x12, 1, 0x83, 0, 96]),
        ("INQ_VPD83_small", [0x12, 1, 0x83, 0, 10]),
        ("INQ_VPD_bad", [0x12, 1, 0x80, 0, 96]),
        ("RS_full", [0x03, 0, 0, 0, 252]),
        ("CAP", [0x25]),
        ("READ10", [0x28, 0, 0, 0, 0, 0, 0, 0, 1]),
        ("READ10_zero", [0x28, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("READ10_oor", [0x28, 0, 0, 0, 2, 0, 0, 0, 1]),
        ("READ10_oor_end", [0x28, 0, 0, 0, 1, 0xff, 0, 0, 2]),
        ("READ10_last", [0x28, 0, 0, 0, 1, 0xff, 0, 0, 1]),
        ("READ12", [0xa8, 0, 0, 0, 0, 1, 0, 0, 0, 1]),
        ("READ12_oor", [0xa8, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2]),
        ("SEEK", [0x2b, 0, 0, 0, 0, 5]),
        ("SEEK_oor", [0x2b, 0, 0, 0, 2, 0]),
        ("TOC0", [0x43, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("TOC0_msf", [0x43, 2, 0, 0, 0, 0, 0, 0, 100]),
        ("TOC0_aa", [0x43, 0, 0, 0, 0, 0, 0xaa, 0, 100]),
        ("TOC0_track2", [0x43, 0, 0, 0, 0, 0, 2, 0, 100]),
        ("TOC0_small", [0x43, 0, 0, 0, 0, 0, 0, 0, 6]),
        ("TOC1", [0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0x40]),
        ("TOC2", [0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0x80]),
        ("TOC2_msf", [0x43, 2, 0, 0, 0, 0, 0, 0, 100, 0x80]),
        ("TOC3", [0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0xc0]),
        ("TOC_fmt2_in_b2", [0x43, 0, 2, 0, 0, 0, 0, 0, 100]),
        ("MS01", [0x5a, 0, 0x01, 0, 0, 0, 0, 0, 100]),
        ("MS0e", [0x5a, 0, 0x0e, 0, 0, 0, 0, 0, 100]),
        ("MS2a", [0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 100]),
        ("MS3f", [0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 100]),
        ("MS08", [0x5a, 0, 0x08, 0, 0, 0, 0, 0, 100]),
        ("MS2a_changeable", [0x5a, 0, 0x6a, 0, 0, 0, 0, 0, 100]),
        ("MS2a_default", [0x5a, 0, 0xaa, 0, 0, 0, 0, 0, 100]),
        ("MS2a_saved", [0x5a, 0, 0xea, 0, 0, 0, 0, 0, 100]),
        ("MS2a_small", [0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 10]),
        ("MSENSE6", [0x1a, 0, 0x2a, 0, 100]),
        ("GETCONF", [0x46, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("GETCONF_rt1", [0x46, 1, 0, 0, 0, 0, 0, 0, 100]),
        ("GETCONF_feat1", [0x46, 0, 0, 1, 0, 0, 0, 0, 100]),
        ("GETCONF_big", [0x46, 0, 0, 0, 0, 0, 0, 0x10, 0]),
        ("GESN", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("GESN_async", [0x4a, 0, 0, 0, 0x10, 0, 0, 0, 100]),
        ("GESN_noclass", [0x4a, 1, 0, 0, 0x02, 0, 0, 0, 100]),
        ("DISCINFO", [0x51, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("DISCINFO_t1", [0x51, 1, 0, 0, 0, 0, 0, 0, 100]),
        ("MECH", [0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("SPEED", [0xbb, 0, 0xff, 0xff]),
        ("READCD_user", [0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0x10]),
        ("READCD_raw", [0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0xf8]),
        ("READCD_none", [0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0x00]),
        ("READCD_bad", [0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0x20]),
        ("READCD_oor", [0xbe, 0, 0, 0, 2, 0, 0, 0, 1, 0x10]),
        ("READCD_zero", [0xbe, 0, 0xff, 0, 0, 1, 0, 0, 0, 0x10]),
        ("DVDSTRUCT0", [0xad, 0, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("DVDSTRUCTff", [0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 100]),
        ("UNKNOWN", [0x55]),
        ("UNKNOWN_ff", [0xff]),
        ("BCL0_INQ", [0x12, 0, 0, 0, 36], 0),
        ("BCL0_TUR", [0x00], 0),
        ("BCL0_READCD_none", [0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0x00], 0),
        ("BCL0_READCD_user", [0xbe, 0, 0, 0, 0, 1, 0, 0, 1, 0x10], 0),
        ("BCL_odd", [0x12, 0, 0, 0, 36], 7),
        ("LOCK", [0x1e, 0, 0, 0, 1]),
        ("MS2a_locked", [0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 100]),
        ("EJECT_locked", [0x1b, 0, 0, 0, 2]),
        ("PWRCND_locked", [0x1b, 0, 0, 0, 0x12]),
        ("UNLOCK", [0x1e, 0, 0, 0, 0]),
        ("EJECT", [0x1b, 0, 0, 0, 2]),
        ("EJECT_again", [0x1b, 0, 0, 0, 2]),
        ("TUR_open", [0x00]),
        ("CAP_open", [0x25]),
        ("GESN_open", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("GETCONF_open", [0x46, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("LOCK_open", [0x1e, 0, 0, 0, 1]),
        ("EJECT_locked_open", [0x1b, 0, 0, 0, 2]),
        ("LOAD", [0x1b, 0, 0, 0, 3]),
        ("TUR_loaded", [0x00]),
        ("GESN_loaded", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("UNLOCK2", [0x1e, 0, 0, 0, 0]),
        ("STOP", [0x1b, 0, 0, 0, 0]),
        ("START", [0x1b, 0, 0, 0, 1]),
    ],
    "change": [
        ("TUR0", [0x00]),
        ("QMP", {"execute": "blockdev-open-tray", "arguments": {"id": "cd0"}}),
        ("GESN_open", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("TUR_open", [0x00]),
        ("QMP", {"execute": "blockdev-close-tray", "arguments": {"id": "cd0"}}),
        ("GESN_closed", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("GESN_closed2", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("TUR_a", [0x00]),
        ("TUR_b", [0x00]),
        ("INQ_in_UA", [0x12, 0, 0, 0, 36]),
        ("TUR_c", [0x00]),
        ("TUR_d", [0x00]),
        ("QMP", {"execute": "blockdev-change-medium", "arguments": {"id": "cd0", "filename": NEWISO, "format": "raw"}}),
        ("CAP_x", [0x25]),
        ("CAP_y", [0x25]),
        ("CAP_z", [0x25]),
        ("QMP", {"execute": "blockdev-change-medium", "arguments": {"id": "cd0", "filename": NEWISO, "format": "raw"}}),
        ("RS_first", [0x03, 0, 0, 0, 18]),
        ("TUR_p", [0x00]),
        ("TUR_q", [0x00]),
        ("TUR_r", [0x00]),
        ("QMP", {"execute": "blockdev-change-medium", "arguments": {"id": "cd0", "filename": NEWISO, "format": "raw"}}),
        ("TUR_s", [0x00]),
        ("TUR_t", [0x00]),
        ("TUR_u", [0x00]),
        ("TUR_v", [0x00]),
        ("LOCK", [0x1e, 0, 0, 0, 1]),
        ("QMP", {"execute": "eject", "arguments": {"id": "cd0"}}),
        ("GESN_ejreq", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("GESN_ejreq2", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("QMP", {"execute": "eject", "arguments": {"id": "cd0", "force": True}}),
        ("GESN_forced", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("TUR_forced", [0x00]),
    ],
    "ua": [
        ("QMP", {"execute": "blockdev-change-medium", "arguments": {"id": "cd0", "filename": NEWISO, "format": "raw"}}),
        ("INQ_first", [0x12, 0, 0, 0, 36]),
        ("GETCONF_first", [0x46, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("TUR_a", [0x00]),
        ("TUR_b", [0x00]),
        ("TUR_c", [0x00]),
        ("READ_c", [0x28, 0, 0, 0, 0, 0, 0, 0, 1]),
        ("UNKNOWN_c", [0x55]),
        ("INQ_c", [0x12, 0, 0, 0, 36]),
        ("GESN_c", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("RS_c", [0x03, 0, 0, 0, 18]),
        ("RS_d", [0x03, 0, 0, 0, 18]),
        ("TUR_d", [0x00]),
        ("QMP", {"execute": "blockdev-remove-medium", "arguments": {"id": "cd0"}}),
        ("TUR_e", [0x00]),
        ("TUR_f", [0x00]),
        ("RS_f", [0x03, 0, 0, 0, 18]),
    ],
    "nomedium": [
        ("TUR0", [0x00]),
        ("RS0", [0x03, 0, 0, 0, 18]),
        ("INQ", [0x12, 0, 0, 0, 36]),
        ("CAP", [0x25]),
        ("READ10", [0x28, 0, 0, 0, 0, 0, 0, 0, 1]),
        ("TOC0", [0x43, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("MS2a", [0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 100]),
        ("GETCONF", [0x46, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("GESN", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("MECH", [0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("DVDSTRUCTff", [0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 100]),
        ("SPEED", [0xbb, 0, 0xff, 0xff]),
        ("LOCK", [0x1e, 0, 0, 0, 1]),
        ("EJECT_locked", [0x1b, 0, 0, 0, 2]),
        ("UNLOCK", [0x1e, 0, 0, 0, 0]),
        ("EJECT", [0x1b, 0, 0, 0, 2]),
        ("GESN_open", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
        ("LOAD", [0x1b, 0, 0, 0, 3]),
        ("GESN_closed", [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 100]),
    ],
    "small": [
        ("TUR0", [0x00]),
        ("CAP", [0x25]),
        ("TOC0", [0x43, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("TOC0_msf", [0x43, 2, 0, 0, 0, 0, 0, 0, 100]),
        ("TOC2_msf", [0x43, 2, 0, 0, 0, 0, 0, 0, 100, 0x80]),
        ("GETCONF", [0x46, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("DVDSTRUCT0", [0xad, 0, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("DVDSTRUCT0_layer1", [0xad, 0, 0, 0, 0, 0, 1, 0, 0, 100]),
        ("DVDSTRUCT1", [0xad, 0, 0, 0, 0, 0, 0, 1, 0, 100]),
        ("DVDSTRUCT3", [0xad, 0, 0, 0, 0, 0, 0, 3, 0, 100]),
        ("DVDSTRUCT4", [0xad, 0, 0, 0, 0, 0, 0, 4, 0, 100]),
        ("DVDSTRUCT4_small", [0xad, 0, 0, 0, 0, 0, 0, 4, 0, 10]),
        ("DVDSTRUCTff", [0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 100]),
        ("DVDSTRUCT80", [0xad, 0, 0, 0, 0, 0, 0, 0x80, 0, 100]),
        ("DVDSTRUCT_media1", [0xad, 1, 0, 0, 0, 0, 0, 0, 0, 100]),
        ("DISCINFO", [0x51, 0, 0, 0, 0, 0, 0, 0, 100]),
    ],
}

if __name__ == "__main__":
    open(NEWISO, "wb").truncate(4 * 1024 * 1024)
    main()
