/*
 * fwlib.h: what the freestanding test firmwares (idetest.c, storm.c) share:
 * port and string I/O, output to Xen's debug port 0xE9, PCI config access
 * through 0xCF8/0xCFC, and the entry stub. Included once per firmware.
 */
#ifndef FWLIB_H
#define FWLIB_H
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* String I/O on purpose: Xen forwards rep ins/outs to the DM as
 * data_is_ptr ioreqs (guest-physical buffer, count up to a page), a path a
 * word-at-a-time loop would never exercise. */
static inline void insw(uint16_t port, void *buf, uint32_t words)
{
    __asm__ volatile("cld; rep insw" : "+D"(buf), "+c"(words) : "d"(port) : "memory");
}
static inline void outsw(uint16_t port, const void *buf, uint32_t words)
{
    __asm__ volatile("cld; rep outsw" : "+S"(buf), "+c"(words) : "d"(port) : "memory");
}
static inline void insb(uint16_t port, void *buf, uint32_t n)
{
    __asm__ volatile("cld; rep insb" : "+D"(buf), "+c"(n) : "d"(port) : "memory");
}
static inline void outsb(uint16_t port, const void *buf, uint32_t n)
{
    __asm__ volatile("cld; rep outsb" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
}
static inline void insl(uint16_t port, void *buf, uint32_t n)
{
    __asm__ volatile("cld; rep insl" : "+D"(buf), "+c"(n) : "d"(port) : "memory");
}
static inline void outsl(uint16_t port, const void *buf, uint32_t n)
{
    __asm__ volatile("cld; rep outsl" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
}

/* gcc may turn loops into these calls even when freestanding. */
void *memset(void *d, int c, uint32_t n) { uint8_t *p = d; while (n--) *p++ = (uint8_t)c; return d; }
void *memcpy(void *d, const void *s, uint32_t n) { uint8_t *p = d; const uint8_t *q = s; while (n--) *p++ = *q++; return d; }

static __attribute__((unused)) void putc_e9(char c) { outb(0xe9, (uint8_t)c); }
static __attribute__((unused)) void puts_e9(const char *s) { while (*s) putc_e9(*s++); }
static __attribute__((unused)) void puthex(uint32_t v, int digits)
{
    while (digits--) putc_e9("0123456789abcdef"[(v >> (digits * 4)) & 0xf]);
}
static __attribute__((unused)) void putdec(uint32_t v)
{
    char tmp[11]; int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n--) putc_e9(tmp[n]);
}

static __attribute__((unused)) uint32_t pci_addr(uint32_t bdf, uint32_t reg) { return 0x80000000u | (bdf << 8) | (reg & 0xfc); }
static __attribute__((unused)) uint32_t pci_read32(uint32_t bdf, uint32_t reg) { outl(0xcf8, pci_addr(bdf, reg)); return inl(0xcfc); }
static __attribute__((unused)) void pci_write32(uint32_t bdf, uint32_t reg, uint32_t v) { outl(0xcf8, pci_addr(bdf, reg)); outl(0xcfc, v); }

/* The first function on bus 0 (dev 0-31, fn 0-7) with this vendor:device
 * dword, or 0xffffffff. */
static __attribute__((unused)) uint32_t pci_find(uint32_t id)
{
    for (uint32_t bdf = 0; bdf < 256; bdf++)
        if (pci_read32(bdf, 0) == id) return bdf;
    return 0xffffffffu;
}


void fw_main(void);

/* Xen takes HLT with interrupts off as "vCPU down" and then powers the
 * domain off, which would let libxl tear the DM down before the scenario
 * destroys it. So the firmware idles with interrupts on, and masks both
 * PICs first since it has no IDT to take one. */
__asm__(
    ".pushsection .text.start, \"ax\"\n"
    ".globl _start\n"
    "_start:\n"
    "  cli\n"
    "  mov $0x00200000, %esp\n"
    "  call fw_main\n"
    "  mov $0xff, %al\n"
    "  outb %al, $0x21\n"
    "  outb %al, $0xa1\n"
    "1: sti\n"
    "  hlt\n"
    "  jmp 1b\n"
    ".popsection\n");

#endif
