/*
 * storm: a freestanding HVM "firmware" that behaves as a hostile guest
 * towards the device model for minutes: a seeded random storm of port
 * accesses of every width on every port the DM claims, rep string I/O
 * (data_is_ptr ioreqs), bus-master START/STOP with PRD tables that point
 * anywhere, command bytes in the middle of transfers, soft resets, PCI
 * config writes that move BARs (over the IDE ports too), and the Xen
 * platform device's unplug half way through.
 *
 * Loaded by xl with firmware_override= (as idetest.c). Sector 0 of the
 * primary master holds "seed=N seconds=S" (written by the scenario), read
 * once by PIO before the storm. Output goes to port 0xE9:
 *   STORM: start seed=... seconds=...
 *   STORM: t=... ops=... cmds=... bm_starts=... strings=... cfg_writes=... (every 5 s)
 *   STORM: unplug at t=...
 *   STORM: done ...
 *
 * What the storm does not do, so that the scenario's checks stay exact
 * (each would make the firmware kill itself or address sectors that the
 * checks cannot bound; the fuzz targets cover them instead):
 *  - it never lets the bus master write guest memory in [1 MiB, 4 MiB),
 *    where this code, its stack and its data live: every PRD entry with a
 *    to-memory transfer and every rep-ins buffer lies outside it, and the
 *    PRD pointer is always set by the storm right before a START, to one
 *    of its own tables or to memory with nothing in it (so no table
 *    overlaps the data it moves: the ide fuzz target covers that);
 *  - the LBA high byte it writes is always 0 and the device register's head
 *    nibble too, so no command reaches the image beyond sector 2^19 (the
 *    scenario checks that nothing there was written); DATA SET MANAGEMENT
 *    (TRIM ranges come from memory) and READ NATIVE MAX ADDRESS (which
 *    loads the last sector into the LBA registers) are never sent;
 *  - no reset: 0xcf9 bit 2, port 0x92 bit 0 and the i8042 reset commands
 *    are masked, and the RTC (Xen's own, used as the storm's clock) is left
 *    alone.
 */
#include "fwlib.h"

#define PROTECT_LO  0x00100000u
#define PROTECT_HI  0x00410000u    /* code, stack, data, and the PRD area */
#define SCRATCH_LO  0x00410000u    /* data the DM moves: above the PRD area */
#define SCRATCH_HI  0x03c00000u    /* the scenario gives the guest 64 MiB */
#define PRD_AREA    0x00400000u    /* PRD tables the storm writes: 64 KiB */
#define PLATFORM_MMIO 0xf0000000u

#define ST_BSY 0x80
#define ST_DRQ 0x08

static uint32_t rng;
static uint32_t rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5;
    return rng;
}
static uint32_t below(uint32_t n) { return rnd() % n; }

static uint32_t bdf_ide = 0xffffffffu, bdf_platform = 0xffffffffu;
static uint16_t bm_base = 0xc000;
static uint16_t platform_io = 0xc100;
static int unplugged;
static uint32_t ops, cmds, bm_starts, strings, cfg_writes, unplug_writes;

/* -------- the storm's clock: Xen's RTC seconds register -------- */
static uint8_t rtc_seconds(void) { outb(0x70, 0x00); return inb(0x71); }
static uint32_t elapsed, last_sec;
static void tick(void)
{
    uint32_t s = rtc_seconds();
    /* BCD or binary, either way a change is a second gone by; a jump of
     * more than one counts one, which only makes the storm longer. */
    if (s != last_sec) { elapsed++; last_sec = s; }
}

/* -------- filters that keep the checks exact (see the top) -------- */
static int is_command_port(uint16_t port) { return port == 0x1f7 || port == 0x177; }
static uint8_t safe_command(uint8_t c)
{
    return (c == 0x06 || c == 0x27 || c == 0xf8) ? 0x00 : c;
}
/* One byte written at PORT: what the storm lets through. */
static uint8_t filter_byte(uint16_t port, uint8_t v)
{
    switch (port) {
    case 0x1f5: case 0x175: return 0;              /* LBA high / cylinder high */
    case 0x1f6: case 0x176: return v & 0xf0;       /* head nibble */
    case 0x1f7: case 0x177: return safe_command(v);
    case 0x92: return v & ~1u;
    case 0xcf9: return v & ~4u;
    case 0x64: return (v == 0xd1 || v >= 0xf0) ? 0x20 : v;   /* 0x20: read command byte */
    default: return v;
    }
}
static int unplug_port(uint16_t port)
{
    return port == 0x10 || port == 0x11 || (port >= platform_io + 4 && port < platform_io + 12);
}
static uint32_t filter_value(uint16_t port, uint32_t v, int width)
{
    uint32_t out = 0;
    for (int i = 0; i < width; i++)
        out |= (uint32_t)filter_byte((uint16_t)(port + i), (uint8_t)(v >> (8 * i))) << (8 * i);
    return out;
}

static void port_write(uint16_t port, uint32_t v, int width)
{
    if (port < 0x72 && port + width > 0x70) return;     /* the storm's clock */
    if (!unplugged) {
        for (int i = 0; i < width; i++) if (unplug_port((uint16_t)(port + i))) return;
    } else {
        for (int i = 0; i < width; i++) if (unplug_port((uint16_t)(port + i))) unplug_writes++;
    }
    /* The bus master's PRD pointer is the storm's to choose (see prd_pointer). */
    if ((port + width > bm_base + 4 && port < bm_base + 8) ||
        (port + width > bm_base + 12 && port < bm_base + 16)) return;
    v = filter_value(port, v, width);
    if (width == 1) outb(port, (uint8_t)v);
    else if (width == 2) outw(port, (uint16_t)v);
    else outl(port, v);
}
static void port_read(uint16_t port, int width)
{
    if (width == 1) (void)inb(port);
    else if (width == 2) (void)inw(port);
    else (void)inl(port);
}

/* -------- memory the DM may write -------- */
static uint32_t scratch_addr(uint32_t len)
{
    return SCRATCH_LO + below(SCRATCH_HI - SCRATCH_LO - len);
}
static int hits_protected(uint32_t addr, uint32_t len)
{
    uint64_t end = (uint64_t)addr + len;
    return end > PROTECT_LO && addr < PROTECT_HI;
}

/* A PRD entry's address: anywhere, with the pathologies the issue lists. */
static uint32_t wild_address(uint32_t len)
{
    switch (below(8)) {
    case 0: return below(0x1000);                       /* the bottom of RAM */
    case 1: return 0x000a0000u + below(0x60000);        /* legacy VGA/BIOS hole */
    case 2: return 0x04000000u + below(0x0c000000u);    /* above RAM */
    case 3: return PLATFORM_MMIO + below(0x01000000u);  /* the platform MMIO BAR */
    case 4: return 0xfffff000u + below(0x1000);         /* wraps past 4 GiB */
    default: return scratch_addr(len);
    }
}

/* Fills a PRD table at TABLE with N random entries. No entry covers the
 * protected range or the PRD area, whatever the direction: a random write
 * to the bus-master command register may turn any transfer into one that
 * writes memory, and a table the disk overwrote would steer its next
 * entries anywhere. */
static void write_prd_table(uint32_t table, uint32_t n)
{
    volatile uint32_t *p = (volatile uint32_t *)table;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = below(4) ? (below(0x10000) & ~1u) : below(0x10000);   /* odd lengths too */
        uint32_t bytes = len ? len : 0x10000u;
        uint32_t addr = wild_address(bytes);
        if (below(4) == 0) addr |= 1;                   /* odd addresses */
        if (hits_protected(addr, bytes)) addr = scratch_addr(bytes);
        int eot = (i + 1 == n) || below(16) == 0;
        p[2 * i] = addr;
        p[2 * i + 1] = len | (eot ? 0x80000000u : 0);
        if (eot && below(2)) break;                     /* sometimes garbage after EOT */
    }
}

/* The PRD pointer for a START at bus-master port B: one of the storm's
 * tables (each channel in its own half of the PRD area, so that a new
 * table never rewrites one in use), or memory with nothing in it (above
 * RAM, the MMIO hole, the last bytes below 4 GiB). */
static void prd_pointer(uint16_t b, int channel)
{
    uint32_t table = PRD_AREA + 0x8000u * (uint32_t)channel + below(0x8000 / 8 - 64) * 8;
    uint32_t ptr = table;
    write_prd_table(table, 1 + below(64));
    switch (below(16)) {
    case 0: ptr = 0x04000000u + (below(0x0c000000u) & ~3u); break;
    case 1: ptr = PLATFORM_MMIO + (below(0x1000) & ~3u); break;
    case 2: ptr = 0xfffffff8u; break;
    default: break;
    }
    if (below(8) == 0) ptr |= below(4);                 /* the low bits are reserved */
    outl((uint16_t)(b + 4), ptr);
}

static void bm_start(int channel)
{
    uint16_t b = (uint16_t)(bm_base + 8 * channel);
    int to_memory = (int)below(2);
    outb(b, 0);
    prd_pointer(b, channel);
    outb((uint16_t)(b + 2), (uint8_t)rnd());
    outb(b, (uint8_t)(1 | (to_memory ? 8 : 0)));
    bm_starts++;
}

/* -------- the ops -------- */
static const uint16_t taskfile_bases[2] = { 0x1f0, 0x170 };
static const uint16_t control_ports[2] = { 0x3f6, 0x376 };
static const uint8_t real_commands[] = {
    0x20, 0x24, 0x29, 0x30, 0x34, 0x39, 0x3c, 0xc4, 0xc5, 0xc8, 0xca, 0x25, 0x35,
    0xc6, 0xec, 0xa1, 0xa0, 0xe7, 0xea, 0xef, 0x40, 0x42, 0x91, 0x90, 0x08, 0xb0, 0xe5,
};
static const uint16_t other_ports[] = { 0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff,
    0x60, 0x64, 0x92, 0xcf9, 0xb2, 0xb3, 0x10, 0x11, 0x12, 0x13 };

static int random_width(void) { static const int w[4] = { 1, 2, 4, 1 }; return w[below(4)]; }

static void op_taskfile(void)
{
    int ch = (int)below(2);
    uint16_t port = (uint16_t)(below(8) == 0 ? control_ports[ch] : taskfile_bases[ch] + below(8));
    int width = random_width();
    if (below(2)) port_read(port, width);
    else port_write(port, rnd(), width);
    if (is_command_port(port)) cmds++;
}

static void op_bus_master(void)
{
    uint16_t port = (uint16_t)(bm_base + below(16));
    int width = random_width();
    if (below(3) == 0) { port_read(port, width); return; }
    if ((port & 7) == 0 && below(2)) { bm_start((int)((port - bm_base) >> 3)); return; }
    port_write(port, rnd(), width);
}

/* rep ins/outs on a data or command port: Xen hands the DM a guest buffer. */
static void op_string(void)
{
    int ch = (int)below(2);
    uint16_t port = (uint16_t)(taskfile_bases[ch] + (below(8) == 0 ? 7 : 0));
    uint32_t count = 1 + (below(4) ? below(512) : below(8192));
    uint32_t width = (uint32_t)random_width();
    uint32_t bytes = count * width;
    uint32_t buf = scratch_addr(bytes);
    if (is_command_port(port)) {
        uint8_t *b = (uint8_t *)buf;
        width = 1;
        for (uint32_t i = 0; i < count; i++) b[i] = safe_command(real_commands[below(sizeof real_commands)]);
    }
    int in = !is_command_port(port) && below(2);
    void *p = (void *)buf;
    if (width == 2) { if (in) insw(port, p, count); else outsw(port, p, count); }
    else if (width == 4) { if (in) insl(port, p, count); else outsl(port, p, count); }
    else { if (in) insb(port, p, count); else outsb(port, p, count); }
    strings++;
}

/* A whole command as a driver would start it, with random parameters, and
 * sometimes its data phase or a bus-master transfer right behind it. */
static void op_command(void)
{
    int ch = (int)below(2);
    uint16_t b = taskfile_bases[ch];
    uint8_t cmd = real_commands[below(sizeof real_commands)];
    port_write((uint16_t)(b + 6), 0xa0 | (below(2) << 6) | (below(2) << 4), 1);
    for (int i = 0; i < 2; i++) {                       /* HOB, then low */
        port_write((uint16_t)(b + 1), rnd(), 1);
        port_write((uint16_t)(b + 2), below(4) ? below(64) : rnd(), 1);
        port_write((uint16_t)(b + 3), rnd(), 1);
        port_write((uint16_t)(b + 4), below(2) ? 0 : rnd(), 1);
        port_write((uint16_t)(b + 5), 0, 1);
    }
    port_write((uint16_t)(b + 7), cmd, 1);
    cmds++;
    switch (below(4)) {
    case 0: bm_start(ch); break;
    case 1: {                                           /* a PIO data phase, maybe cut short */
        uint32_t words = 6 + below(1024);
        void *buf = (void *)scratch_addr(words * 2);
        if (cmd == 0xa0 || below(2)) outsw(b, buf, words);
        else insw(b, buf, words);
        strings++;
        break;
    }
    default: break;
    }
}

static void op_soft_reset(void)
{
    uint16_t port = control_ports[below(2)];
    switch (below(3)) {
    case 0: outb(port, 0x04); outb(port, 0x00); break;  /* SRST */
    case 1: outb(port, 0x02); break;                    /* nIEN */
    default: outb(port, (uint8_t)(rnd() & 0x86)); break;
    }
}

static void op_other(void)
{
    uint16_t port = other_ports[below(sizeof other_ports / sizeof other_ports[0])];
    if (below(4) == 0) port = (uint16_t)(platform_io + below(16));
    /* 0xcf9 alone: a wider access would reach 0xcfc, Xen's. */
    int width = port == 0xcf9 ? 1 : random_width();
    if (below(2)) port_read(port, width);
    else port_write(port, rnd(), width);
}

static void op_mmio(void)
{
    volatile uint8_t *p = (volatile uint8_t *)(PLATFORM_MMIO + below(0x1000));
    if (below(2)) (void)*p;
    else *p = (uint8_t)rnd();
}

/* Config space of our functions (and of absent ones). BAR4 is moved,
 * sometimes over the legacy IDE ports; decoding is turned off and on. */
static void op_config(void)
{
    static const uint32_t ours_fn[5] = { 0x00, 0x08, 0x09, 0x0b, 0x10 };
    uint32_t bdf = below(8) ? ours_fn[below(5)] : below(256);
    uint32_t reg = below(256);
    if (below(3) == 0) { (void)pci_read32(bdf, reg); return; }
    uint32_t v = rnd();
    int width = (int)below(3);                          /* 0: byte, 1: word, 2: dword */
    /* BAR4 (reg 0x20-0x23) only whole, to one of the legacy IDE ports, the
     * platform ports, or 0xc000-0xfff0: elsewhere below 0xc000 lie ports
     * that Xen decodes itself (the RTC that is the storm's clock, the PICs
     * and PIT, ACPI PM1 at 0xb000 whose SLP_EN powers the guest off,
     * 0xcf8), and the storm would be driving those instead of the DM. */
    if (bdf == bdf_ide && (below(2) || (reg >= 0x20 && reg <= 0x23))) {
        static const uint16_t over[] = { 0x1f0, 0x170, 0x3f0, 0x370, 0x10 };
        reg = 0x20;
        width = 2;
        v = (below(2) ? over[below(sizeof over / sizeof over[0])] : (0xc000 | (rnd() & 0x3ff0))) | 1;
    }
    outl(0xcf8, pci_addr(bdf, reg));
    switch (width) {
    case 0: outb((uint16_t)(0xcfc + (reg & 3)), (uint8_t)v); break;
    case 1: outw((uint16_t)(0xcfc + (reg & 2)), (uint16_t)v); break;
    default: outl(0xcfc, v); break;
    }
    cfg_writes++;
    /* Track BAR4 at once: port_write guards the PRD pointers by it. */
    if (bdf == bdf_ide) bm_base = (uint16_t)(pci_read32(bdf_ide, 0x20) & 0xfff0);
}

/* Decoding back on, BAR4 where the storm can find it: without this the
 * storm would soon talk to a controller that decodes nothing. */
static void re_enable(void)
{
    if (bdf_ide == 0xffffffffu) return;
    uint32_t bar4 = pci_read32(bdf_ide, 0x20) & 0xfff0;
    if (!bar4 || below(4) == 0) { pci_write32(bdf_ide, 0x20, 0xc001); bar4 = 0xc000; }
    bm_base = (uint16_t)bar4;
    pci_write32(bdf_ide, 0x40, pci_read32(bdf_ide, 0x40) | 0x80008000u);
    pci_write32(bdf_ide, 0x04, (pci_read32(bdf_ide, 0x04) & 0xffff0000u) | 0x0005);
    if (bdf_platform != 0xffffffffu) {
        pci_write32(bdf_platform, 0x10, platform_io | 1);
        pci_write32(bdf_platform, 0x14, PLATFORM_MMIO);
        pci_write32(bdf_platform, 0x04, 0x0007);
    }
}

static void find_functions(void)
{
    bdf_ide = pci_find(0x70108086u);
    bdf_platform = pci_find(0x00015853u);
    puts_e9("STORM: ide at "); puthex(bdf_ide, 2); puts_e9(" platform at "); puthex(bdf_platform, 2); putc_e9('\n');
}

/* "seed=N seconds=S" from sector 0 of the primary master (PIO, polled). */
static uint32_t parse_number(const char *s, const char *key)
{
    for (; *s; s++) {
        const char *k = key, *p = s;
        while (*k && *p == *k) { k++; p++; }
        if (!*k) {
            uint32_t v = 0;
            while (*p >= '0' && *p <= '9') v = v * 10 + (uint32_t)(*p++ - '0');
            return v;
        }
    }
    return 0;
}
static void read_config(uint32_t *seed, uint32_t *seconds)
{
    static char sector[513];
    outb(0x1f6, 0xe0);
    outb(0x1f2, 1); outb(0x1f3, 0); outb(0x1f4, 0); outb(0x1f5, 0);
    outb(0x1f7, 0x20);
    for (uint32_t i = 0; i < 200000; i++) {
        uint8_t st = inb(0x3f6);
        if (!(st & ST_BSY) && (st & ST_DRQ)) { insw(0x1f0, sector, 256); break; }
    }
    sector[512] = 0;
    *seed = parse_number(sector, "seed=");
    *seconds = parse_number(sector, "seconds=");
}

static void report(const char *what)
{
    puts_e9("STORM: "); puts_e9(what); puts_e9(" t="); putdec(elapsed);
    puts_e9(" ops="); putdec(ops); puts_e9(" cmds="); putdec(cmds);
    puts_e9(" bm_starts="); putdec(bm_starts); puts_e9(" strings="); putdec(strings);
    puts_e9(" cfg_writes="); putdec(cfg_writes); puts_e9(" unplug_writes="); putdec(unplug_writes);
    putc_e9('\n');
}

void fw_main(void)
{
    uint32_t seed, seconds;
    find_functions();
    re_enable();
    read_config(&seed, &seconds);
    if (!seed) seed = 1;
    if (!seconds) seconds = 60;
    rng = seed;
    last_sec = rtc_seconds();
    puts_e9("STORM: start seed="); putdec(seed); puts_e9(" seconds="); putdec(seconds); putc_e9('\n');
    uint32_t next_report = 5;
    while (elapsed < seconds) {
        uint32_t r = below(100);
        if (r < 28) op_taskfile();
        else if (r < 42) op_bus_master();
        else if (r < 50) op_string();
        else if (r < 66) op_command();
        else if (r < 74) op_config();
        else if (r < 78) op_soft_reset();
        else if (r < 88) op_other();
        else if (r < 90) op_mmio();
        else if (r < 94) bm_start((int)below(2));
        else re_enable();
        ops++;
        if ((ops & 31) == 0) tick();
        if (!unplugged && elapsed >= seconds / 2) {
            report("unplug at");
            outw(0x10, 0x0003);                          /* IDE disks and NICs */
            unplugged = 1;
        }
        if (elapsed >= next_report || (ops & 2047) == 0) { report("progress"); if (elapsed >= next_report) next_report += 5; }
    }
    report("done");
}
