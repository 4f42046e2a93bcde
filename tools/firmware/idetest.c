/*
 * idetest: a freestanding HVM "firmware" that exercises the device model's
 * PIIX3 IDE controller from inside a real Xen guest.
 *
 * xl loads it with firmware_override= in place of hvmloader, so nothing has
 * set up PCI or the disk: we do it here, the way hvmloader and SeaBIOS would,
 * which also keeps the test independent of the BIOS flavour (Debian's
 * hvmloader cannot run the qemu-xen-traditional flavour at all).
 *
 * Entered in 32-bit flat protected mode, paging off, interrupts off. Output
 * goes to port 0xE9, which Xen itself turns into "(dN) ..." console lines
 * (guest_loglvl=all), so the results never depend on the DM under test.
 *
 * Expected set-up (the scenario's xl config): primary master = a raw disk
 * of at least FW_MIN_SECTORS sectors, with a host write error injected at
 * sector ERR_LBA (blkdebug errno 28, writes only) and werror=report.
 */
#include "fwlib.h"

#define ERR_LBA         2048u  /* keep in sync with the scenarios' blkdebug.ini */
#define FW_MIN_SECTORS  4096u

/* Far above the image and the modules libxl loads after it (SeaBIOS blob),
 * far below the 32 MiB the scenarios give the guest. */
#define PRD_TABLE   0x00800000u
#define BUF_OUT     0x00810000u
#define BUF_IN      0x00820000u
#define BUF_BYTES   0x8000u

#define ATA_DATA    0x1f0
#define ATA_ERROR   0x1f1
#define ATA_COUNT   0x1f2
#define ATA_LBA0    0x1f3
#define ATA_LBA1    0x1f4
#define ATA_LBA2    0x1f5
#define ATA_DEVICE  0x1f6
#define ATA_CMD     0x1f7  /* reading it acknowledges (lowers) the IRQ */
#define ATA_ALTSTAT 0x3f6  /* reading it does not */

#define ST_ERR  0x01
#define ST_DRQ  0x08
#define ST_DRDY 0x40
#define ST_BSY  0x80

#define BM_CMD_START   0x01
#define BM_CMD_TO_MEM  0x08   /* bus master writes guest memory: disk reads */
#define BM_ST_ACTIVE   0x01
#define BM_ST_ERROR    0x02
#define BM_ST_INTR     0x04

/* Every poll is a round trip to the device model: 0.2 to a few ms under
 * nested TCG. This bounds a wait on a stuck device to well under the
 * scenario's timeout (so the firmware still reports which check hung)
 * while leaving seconds for a slow host write. */
#define POLL_LIMIT 50000u

static uint16_t bm_base;   /* BAR4 as we programmed it */
static unsigned failures;

/* One line per check, "FW: <check> ok|FAIL <detail>", detail printed by the
 * caller before the newline. */
static void verdict(const char *check, int ok)
{
    puts_e9("FW: "); puts_e9(check); puts_e9(ok ? " ok" : " FAIL");
    if (!ok) failures++;
}
static void kv(const char *key, uint32_t v, int digits)
{
    putc_e9(' '); puts_e9(key); puts_e9("=0x"); puthex(v, digits);
}

static int irq14_pending(void)
{
    outb(0xa0, 0x0a);  /* OCW3: next read of 0xa0 returns the slave IRR */
    return (inb(0xa0) >> 6) & 1;
}

static uint8_t wait_not_busy(void)
{
    uint8_t st = 0xff;
    for (uint32_t i = 0; i < POLL_LIMIT; i++) {
        st = inb(ATA_ALTSTAT);
        if (!(st & ST_BSY)) break;
    }
    return st;
}

static uint8_t wait_drq_or_error(void)
{
    uint8_t st = 0xff;
    for (uint32_t i = 0; i < POLL_LIMIT; i++) {
        st = inb(ATA_ALTSTAT);
        if (!(st & ST_BSY) && (st & (ST_DRQ | ST_ERR))) break;
    }
    return st;
}

static void ata_setup_lba28(uint32_t lba, uint8_t count)
{
    outb(ATA_DEVICE, (uint8_t)(0xe0 | ((lba >> 24) & 0x0f)));
    wait_not_busy();
    outb(ATA_COUNT, count);
    outb(ATA_LBA0, (uint8_t)lba);
    outb(ATA_LBA1, (uint8_t)(lba >> 8));
    outb(ATA_LBA2, (uint8_t)(lba >> 16));
}

/* A pattern that differs per sector and per run step, so a read that
 * returns a stale or misplaced sector cannot match. */
static void fill_pattern(uint8_t *buf, uint32_t bytes, uint32_t lba, uint32_t salt)
{
    for (uint32_t i = 0; i < bytes; i++) {
        uint32_t sector = lba + i / 512;
        buf[i] = (uint8_t)((i * 7) ^ (sector * 13) ^ salt ^ (i >> 9));
    }
}

static uint32_t first_mismatch(const uint8_t *a, const uint8_t *b, uint32_t bytes)
{
    for (uint32_t i = 0; i < bytes; i++)
        if (a[i] != b[i]) return i;
    return bytes;
}

static int check_pci(void)
{
    uint32_t bdf = pci_find(0x70108086u);
    verdict("pci-find-8086:7010", bdf != 0xffffffffu);
    if (bdf == 0xffffffffu) { putc_e9('\n'); return 0; }
    puts_e9(" at 00:"); puthex(bdf >> 3, 2); putc_e9('.'); puthex(bdf & 7, 1); putc_e9('\n');

    bm_base = 0xc000;
    pci_write32(bdf, 0x20, bm_base | 1);
    /* ata_piix and SeaBIOS ignore a channel whose IDETIM decode bit is
     * clear, and QEMU only decodes the legacy ports with it set. */
    uint32_t idetim = pci_read32(bdf, 0x40);
    pci_write32(bdf, 0x40, idetim | 0x80008000u);
    uint32_t cmd = pci_read32(bdf, 0x04);
    pci_write32(bdf, 0x04, (cmd & 0xffff0000u) | (cmd & 0xffff) | 0x0005);

    uint32_t bar4 = pci_read32(bdf, 0x20), cmd_back = pci_read32(bdf, 0x04) & 0xffff;
    uint32_t timing = pci_read32(bdf, 0x40);
    int ok = (bar4 & 0xfffc) == bm_base && (bar4 & 1) && (cmd_back & 5) == 5 &&
             (timing & 0x80008000u) == 0x80008000u;
    verdict("pci-enable", ok);
    kv("bar4", bar4, 8); kv("command", cmd_back, 4); kv("idetim", timing, 8); putc_e9('\n');
    return ok;
}

static uint32_t identify_sectors;

static int check_identify(void)
{
    static uint16_t id[256];
    outb(ATA_DEVICE, 0xa0);
    wait_not_busy();
    outb(ATA_CMD, 0xec);
    uint8_t st = wait_drq_or_error();
    int ok = (st & (ST_DRQ | ST_ERR | ST_BSY)) == ST_DRQ;
    if (ok) insw(ATA_DATA, id, 256);
    uint8_t st_end = wait_not_busy();

    char model[41];
    for (int i = 0; i < 20; i++) {   /* ATA strings are big-endian per word */
        model[2 * i] = (char)(id[27 + i] >> 8);
        model[2 * i + 1] = (char)(id[27 + i] & 0xff);
    }
    model[40] = 0;
    const char *want = "QEMU HARDDISK";
    for (int i = 0; want[i]; i++) if (model[i] != want[i]) ok = 0;
    identify_sectors = id[60] | ((uint32_t)id[61] << 16);
    if (identify_sectors < FW_MIN_SECTORS) ok = 0;
    if (st_end & (ST_BSY | ST_DRQ | ST_ERR)) ok = 0;
    verdict("identify", ok);
    kv("status", st, 2); puts_e9(" model=\""); puts_e9(model); puts_e9("\" sectors="); putdec(identify_sectors);
    putc_e9('\n');
    return ok;
}

/* PIO data-in/data-out with the DRQ block size of the command (1 sector
 * for READ/WRITE SECTORS, the SET MULTIPLE count for the MULTIPLE ones). */
static uint8_t pio_transfer(uint8_t cmd, uint32_t lba, uint32_t sectors, uint32_t block, uint8_t *buf, int out)
{
    ata_setup_lba28(lba, (uint8_t)sectors);
    outb(ATA_CMD, cmd);
    for (uint32_t done = 0; done < sectors; done += block) {
        uint8_t st = wait_drq_or_error();
        if ((st & (ST_DRQ | ST_ERR)) != ST_DRQ) return st;
        uint32_t n = sectors - done < block ? sectors - done : block;
        if (out) outsw(ATA_DATA, buf + done * 512, n * 256);
        else insw(ATA_DATA, buf + done * 512, n * 256);
    }
    return wait_not_busy();
}

static int check_pio(const char *wname, const char *rname, uint8_t wcmd, uint8_t rcmd,
                     uint32_t lba, uint32_t sectors, uint32_t block, uint32_t salt)
{
    uint8_t *out = (uint8_t *)BUF_OUT, *in = (uint8_t *)BUF_IN;
    uint32_t bytes = sectors * 512;
    fill_pattern(out, bytes, lba, salt);
    memset(in, 0xa5, bytes);

    uint8_t st = pio_transfer(wcmd, lba, sectors, block, out, 1);
    int ok = (st & (ST_BSY | ST_DRQ | ST_ERR | ST_DRDY)) == ST_DRDY;
    verdict(wname, ok);
    kv("status", st, 2); kv("error", inb(ATA_ERROR), 2); puts_e9(" lba="); putdec(lba);
    puts_e9(" sectors="); putdec(sectors); putc_e9('\n');

    st = pio_transfer(rcmd, lba, sectors, block, in, 0);
    uint32_t bad = first_mismatch(out, in, bytes);
    ok = (st & (ST_BSY | ST_DRQ | ST_ERR | ST_DRDY)) == ST_DRDY && bad == bytes;
    verdict(rname, ok);
    kv("status", st, 2);
    if (bad != bytes) { puts_e9(" first-mismatch-byte="); putdec(bad); }
    putc_e9('\n');
    inb(ATA_CMD);
    return ok;
}

static int check_set_multiple(uint8_t count)
{
    outb(ATA_DEVICE, 0xe0);
    wait_not_busy();
    outb(ATA_COUNT, count);
    outb(ATA_CMD, 0xc6);
    uint8_t st = wait_not_busy();
    int ok = (st & (ST_BSY | ST_DRQ | ST_ERR | ST_DRDY)) == ST_DRDY;
    verdict("set-multiple", ok);
    kv("status", st, 2); puts_e9(" count="); putdec(count); putc_e9('\n');
    inb(ATA_CMD);
    return ok;
}

struct dma_result { uint8_t ata_status, ata_error, bm_status; int irq_before, irq_after, irq_after_ack; };

/* One bus-master transfer through a single-entry PRD table. */
static struct dma_result dma_transfer(uint8_t cmd, uint32_t lba, uint32_t sectors, uint32_t buf, int to_memory)
{
    struct dma_result r;
    volatile uint32_t *prd = (volatile uint32_t *)PRD_TABLE;
    prd[0] = buf;
    prd[1] = 0x80000000u | ((sectors * 512) & 0xffff);   /* EOT; 0 would mean 64 KiB */

    outb(bm_base, 0);                                     /* stop any previous transfer */
    outb(bm_base + 2, BM_ST_ERROR | BM_ST_INTR);          /* write-1-to-clear */
    outl(bm_base + 4, PRD_TABLE);
    ata_setup_lba28(lba, (uint8_t)sectors);
    inb(ATA_CMD);
    r.irq_before = irq14_pending();
    outb(ATA_CMD, cmd);
    outb(bm_base, (uint8_t)(BM_CMD_START | (to_memory ? BM_CMD_TO_MEM : 0)));

    uint8_t bm = 0;
    for (uint32_t i = 0; i < POLL_LIMIT; i++) {
        bm = inb(bm_base + 2);
        if ((bm & BM_ST_INTR) || !(bm & BM_ST_ACTIVE)) break;
    }
    r.ata_status = wait_not_busy();
    r.bm_status = inb(bm_base + 2);
    outb(bm_base, 0);
    r.ata_error = inb(ATA_ERROR);
    r.irq_after = irq14_pending();
    inb(ATA_CMD);
    r.irq_after_ack = irq14_pending();
    return r;
}

static void print_dma(const struct dma_result *r)
{
    kv("status", r->ata_status, 2); kv("error", r->ata_error, 2); kv("bmdma", r->bm_status, 2);
    puts_e9(" irq14="); putdec((uint32_t)r->irq_before); putdec((uint32_t)r->irq_after);
    putdec((uint32_t)r->irq_after_ack);
}

static int check_dma(uint32_t lba, uint32_t sectors)
{
    uint32_t bytes = sectors * 512;
    fill_pattern((uint8_t *)BUF_OUT, bytes, lba, 0x5a);
    memset((void *)BUF_IN, 0x3c, bytes);

    struct dma_result w = dma_transfer(0xca, lba, sectors, BUF_OUT, 0);
    int ok = (w.ata_status & (ST_BSY | ST_DRQ | ST_ERR | ST_DRDY)) == ST_DRDY &&
             (w.bm_status & (BM_ST_ACTIVE | BM_ST_ERROR | BM_ST_INTR)) == BM_ST_INTR;
    verdict("dma-write", ok); print_dma(&w); putc_e9('\n');
    /* The IRQ check is separate so that a DM without interrupt routing
     * still shows whether its data path works. */
    verdict("dma-write-irq14", !w.irq_before && w.irq_after && !w.irq_after_ack);
    putc_e9('\n');

    struct dma_result rd = dma_transfer(0xc8, lba, sectors, BUF_IN, 1);
    uint32_t bad = first_mismatch((uint8_t *)BUF_OUT, (uint8_t *)BUF_IN, bytes);
    ok = (rd.ata_status & (ST_BSY | ST_DRQ | ST_ERR | ST_DRDY)) == ST_DRDY &&
         (rd.bm_status & (BM_ST_ACTIVE | BM_ST_ERROR | BM_ST_INTR)) == BM_ST_INTR && bad == bytes;
    verdict("dma-read", ok); print_dma(&rd);
    if (bad != bytes) { puts_e9(" first-mismatch-byte="); putdec(bad); }
    putc_e9('\n');
    return ok;
}

/* The host write fails (injected ENOSPC): QEMU's ide_dma_error reports
 * DRDY|ERR with ABRT, the bus master stops with INTR but without its own
 * ERR bit, and IRQ14 is raised. */
static void check_dma_write_error(void)
{
    fill_pattern((uint8_t *)BUF_OUT, 8 * 512, ERR_LBA, 0x77);
    struct dma_result w = dma_transfer(0xca, ERR_LBA - 2, 8, BUF_OUT, 0);
    verdict("dma-write-error-status", w.ata_status == 0x41 && w.ata_error == 0x04);
    print_dma(&w); putc_e9('\n');
    verdict("dma-write-error-bmdma", (w.bm_status & (BM_ST_ACTIVE | BM_ST_ERROR | BM_ST_INTR)) == BM_ST_INTR);
    kv("bmdma", w.bm_status, 2); putc_e9('\n');
    verdict("dma-write-error-irq14", !w.irq_before && w.irq_after && !w.irq_after_ack);
    putc_e9('\n');
}

static void check_pio_write_error(void)
{
    fill_pattern((uint8_t *)BUF_OUT, 512, ERR_LBA, 0x99);
    uint8_t st = pio_transfer(0x30, ERR_LBA, 1, 1, (uint8_t *)BUF_OUT, 1);
    uint8_t err = inb(ATA_ERROR);
    int irq = irq14_pending();
    verdict("pio-write-error", st == 0x41 && err == 0x04 && irq);
    kv("status", st, 2); kv("error", err, 2); puts_e9(" irq14="); putdec((uint32_t)irq); putc_e9('\n');
    inb(ATA_CMD);
}

/* After a failed write the controller must still work. */
static void check_recovery(void)
{
    check_pio("pio-write-after-error", "pio-read-after-error", 0x30, 0x20, 3000, 2, 1, 0x42);
}

void fw_main(void)
{
    puts_e9("FW: idetest starting\n");
    if (check_pci() && check_identify()) {
        check_pio("pio-write", "pio-read", 0x30, 0x20, 100, 4, 1, 0x11);
        if (check_set_multiple(8))
            check_pio("write-multiple", "read-multiple", 0xc5, 0xc4, 200, 20, 8, 0x22);
        check_dma(300, 16);
        check_dma_write_error();
        check_pio_write_error();
        check_recovery();
    }
    if (failures) { puts_e9("FW: FAILED "); putdec(failures); putc_e9('\n'); }
    else puts_e9("FW: ALL PASS\n");
}
