/* diskbench DEV OP START_MB SIZE_MB COUNT [LABEL]: one O_DIRECT disk figure, for
 * the testbed guest (static, no libc beyond the kernel's interface).
 *   OP seqwrite|seqread: COUNT MiB in 1 MiB requests from START_MB on;
 *   OP randwrite|randread: COUNT requests of 4 KiB at random 4 KiB-aligned
 *      offsets within [START_MB, START_MB + SIZE_MB) MiB (a fixed seed, so
 *      both device models see the same offsets).
 * Prints "GUEST: BENCH dev=LABEL op=OP bs=B ops=N secs=S MBps=M iops=I" or
 * "GUEST: BENCH dev=LABEL op=OP FAILED ..." and exits non-zero; LABEL is
 * the job's name for the disk (default DEV, the kernel's name, which for
 * IDE disks depends on probe order).
 * Busybox dd spawns a process per request, which under TCG would measure
 * process creation rather than the disk; this issues them from one loop. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t next_random(uint64_t *s)
{
    /* xorshift64 */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: diskbench DEV seqwrite|seqread|randwrite|randread START_MB SIZE_MB COUNT [LABEL]\n");
        return 2;
    }
    const char *dev = argv[1], *op = argv[2], *label = argc == 7 ? argv[6] : argv[1];
    uint64_t start = strtoull(argv[3], NULL, 10) << 20;
    uint64_t size = strtoull(argv[4], NULL, 10) << 20;
    long count = strtol(argv[5], NULL, 10);
    int seq = strncmp(op, "seq", 3) == 0;
    int write = strstr(op, "write") != NULL;
    size_t bs = seq ? 1 << 20 : 4096;
    if (count <= 0 || size < bs || (!seq && strncmp(op, "rand", 4) != 0)) {
        fprintf(stderr, "diskbench: bad arguments\n");
        return 2;
    }
    char path[64];
    snprintf(path, sizeof path, "/dev/%s", dev);
    int fd = open(path, (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
    if (fd < 0) {
        printf("GUEST: BENCH dev=%s op=%s FAILED open: %s\n", label, op, strerror(errno));
        return 1;
    }
    void *buf;
    if (posix_memalign(&buf, 4096, bs) != 0)
        return 1;
    uint64_t rnd = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < bs; i += 8)
        *(uint64_t *)((char *)buf + i) = next_random(&rnd);
    uint64_t seed = 0x2545f4914f6cdd1dull;
    uint64_t blocks = size / bs;
    double t0 = now();
    for (long i = 0; i < count; i++) {
        uint64_t off = seq ? start + (uint64_t)i * bs : start + (next_random(&seed) % blocks) * bs;
        ssize_t n = write ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);
        if (n != (ssize_t)bs) {
            printf("GUEST: BENCH dev=%s op=%s FAILED at request %ld (offset %llu): %s\n", label, op, i,
                   (unsigned long long)off, n < 0 ? strerror(errno) : "short transfer");
            return 1;
        }
    }
    if (write && fdatasync(fd) != 0) {
        printf("GUEST: BENCH dev=%s op=%s FAILED fdatasync: %s\n", label, op, strerror(errno));
        return 1;
    }
    double secs = now() - t0;
    printf("GUEST: BENCH dev=%s op=%s bs=%zu ops=%ld secs=%.2f MBps=%.2f iops=%.0f\n", label, op, bs, count, secs,
           (double)count * bs / secs / 1e6, count / secs);
    close(fd);
    return 0;
}
