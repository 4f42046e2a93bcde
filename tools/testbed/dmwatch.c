/*
 * dmwatch: watch a running device model once a second, from dom0, while a
 * hostile guest drives it (the storm scenario), and tell whether its
 * image was written beyond a sector.
 *
 *   dmwatch watch SECONDS LIMIT_MS QMP_SOCKET PID
 *     Every second: connect to the QMP socket, read the greeting, send
 *     qmp_capabilities and query-status, and time the exchange; check that
 *     PID is alive; read its VmRSS. One line every 10 s and for every
 *     probe that failed or took over LIMIT_MS, then
 *       WATCH summary probes=N failed=N slow=N p50_ms=N p95_ms=N max_ms=N ...
 *     (slow: over LIMIT_MS). Exit 0 when every probe answered within
 *     LIMIT_MS, PID stayed alive and query-status said "running" every
 *     time; 1 if not; 2 on a usage error.
 *   dmwatch first-data FILE OFFSET
 *     Prints the offset of the first allocated byte of FILE at or after
 *     OFFSET (lseek SEEK_DATA), or "none". The file must live on a file
 *     system that keeps holes (tmpfs, ext4).
 *
 * Static, like ptyrun: dom0 has only the libraries of the packages
 * unpacked into it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Reads until a line holding KEY arrives (QMP events may come first), or
 * DEADLINE passes. Returns the line in BUF, or NULL. */
static char *read_reply(int fd, const char *key, char *buf, size_t size, long deadline)
{
    size_t used = 0;
    for (;;) {
        char *nl;
        while ((nl = memchr(buf, '\n', used))) {
            *nl = 0;
            if (strstr(buf, key)) return buf;
            size_t rest = used - (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, rest);
            used = rest;
        }
        if (used + 1 >= size) used = 0;     /* an over-long line: drop it */
        long left = deadline - now_ms();
        if (left <= 0) return NULL;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, (int)left) <= 0) return NULL;
        ssize_t n = read(fd, buf + used, size - used - 1);
        if (n <= 0) return NULL;
        used += (size_t)n;
        buf[used] = 0;
    }
}

/* One probe: returns the exchange's milliseconds, or -1; STATUS gets the
 * status word of query-status. */
static long probe(const char *path, char *status, size_t status_size)
{
    long start = now_ms(), deadline = start + 2000;
    char buf[8192];
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    long ms = -1;
    static const char caps[] = "{\"execute\":\"qmp_capabilities\"}\n";
    static const char query[] = "{\"execute\":\"query-status\"}\n";
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        read_reply(fd, "\"QMP\"", buf, sizeof buf, deadline) &&
        write(fd, caps, sizeof caps - 1) == (ssize_t)(sizeof caps - 1) &&
        read_reply(fd, "\"return\"", buf, sizeof buf, deadline) &&
        write(fd, query, sizeof query - 1) == (ssize_t)(sizeof query - 1)) {
        char *line = read_reply(fd, "\"return\"", buf, sizeof buf, deadline);
        if (line) {
            ms = now_ms() - start;
            char *s = strstr(line, "\"status\"");
            snprintf(status, status_size, "?");
            if (s && (s = strchr(s + 8, '"'))) {
                char *e = strchr(s + 1, '"');
                if (e) snprintf(status, status_size, "%.*s", (int)(e - s - 1), s + 1);
            }
        }
    }
    close(fd);
    return ms;
}

static long rss_kb(int pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    fclose(f);
    return kb;
}

static int by_value(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int watch(int seconds, long limit_ms, const char *sock, int pid)
{
    static long answered[3600];
    int n_answered = 0;
    int probes = 0, failed = 0, slow = 0, dead = 0, not_running = 0;
    long max_ms = 0, rss_first = -1, rss_max = 0;
    char last_status[32] = "none";
    long next = now_ms();
    for (int t = 0; t < seconds; t++) {
        char status[32] = "";
        long ms = probe(sock, status, sizeof status);
        int alive = kill(pid, 0) == 0 || errno == EPERM;
        long rss = rss_kb(pid);
        probes++;
        if (ms < 0) failed++;
        else if (ms > limit_ms) slow++;
        if (ms >= 0 && n_answered < (int)(sizeof answered / sizeof answered[0])) answered[n_answered++] = ms;
        if (ms > max_ms) max_ms = ms;
        if (!alive) dead++;
        if (ms >= 0 && strcmp(status, "running") != 0) not_running++;
        if (ms >= 0) snprintf(last_status, sizeof last_status, "%s", status);
        if (rss >= 0 && rss_first < 0) rss_first = rss;
        if (rss > rss_max) rss_max = rss;
        if (t % 10 == 0 || ms < 0 || ms > limit_ms || !alive || (ms >= 0 && strcmp(status, "running")))
            printf("WATCH t=%d qmp_ms=%ld status=%s alive=%d rss_kb=%ld\n", t, ms, ms < 0 ? "-" : status, alive, rss);
        fflush(stdout);
        next += 1000;
        long wait = next - now_ms();
        if (wait > 0) usleep((useconds_t)wait * 1000);
    }
    qsort(answered, (size_t)n_answered, sizeof answered[0], by_value);
    long p50 = n_answered ? answered[n_answered / 2] : -1;
    long p95 = n_answered ? answered[(n_answered * 95) / 100 < n_answered ? (n_answered * 95) / 100 : n_answered - 1] : -1;
    printf("WATCH summary probes=%d failed=%d slow=%d limit_ms=%ld p50_ms=%ld p95_ms=%ld max_ms=%ld status=%s not_running=%d rss_kb_first=%ld rss_kb_max=%ld dead=%d\n",
           probes, failed, slow, limit_ms, p50, p95, max_ms, last_status, not_running, rss_first, rss_max, dead);
    return failed || slow || dead || not_running ? 1 : 0;
}

static int first_data(const char *file, long long offset)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { perror(file); return 2; }
    off_t at = lseek(fd, (off_t)offset, SEEK_DATA);
    if (at < 0 && errno == ENXIO) printf("none\n");
    else if (at < 0) { perror("lseek SEEK_DATA"); return 2; }
    else printf("%lld\n", (long long)at);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "watch")) return watch(atoi(argv[2]), atol(argv[3]), argv[4], atoi(argv[5]));
    if (argc == 4 && !strcmp(argv[1], "first-data")) return first_data(argv[2], atoll(argv[3]));
    fprintf(stderr, "usage: dmwatch watch SECONDS LIMIT_MS QMP_SOCKET PID | dmwatch first-data FILE OFFSET\n");
    return 2;
}
