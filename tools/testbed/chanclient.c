/*
 * chanclient: dom0's end of an xl channel= with connection=socket, which
 * the device model serves as a PV console on a unix socket it listens on.
 * dom0's busybox nc has no unix sockets.
 *
 *   chanclient SECONDS PATH EXPECT LINE
 *
 * Connects to PATH (retrying until it can), copies everything read to
 * stdout, and once EXPECT has been read sends LINE plus "\n" and reads on
 * for 2 s. Exit 0 if EXPECT was seen within SECONDS, 1 if not, 2 on a
 * usage or system error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: chanclient SECONDS PATH EXPECT LINE\n");
        return 2;
    }
    double deadline = now() + atof(argv[1]);
    const char *path = argv[2], *expect = argv[3], *line = argv[4];
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "chanclient: path too long\n");
        return 2;
    }
    strcpy(sa.sun_path, path);
    int fd = -1;
    while (now() < deadline) {
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) {
            perror("chanclient: socket");
            return 2;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            break;
        close(fd);
        fd = -1;
        usleep(200000);
    }
    if (fd < 0) {
        fprintf(stderr, "chanclient: could not connect to %s\n", path);
        return 1;
    }
    char seen[8192] = "";
    size_t have = 0;
    int found = 0;
    double stop_at = deadline;
    while (now() < stop_at) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 100) <= 0)
            continue;
        char buf[512];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        fwrite(buf, 1, n, stdout);
        fflush(stdout);
        /* Keep the last bytes only: EXPECT may straddle two reads. */
        if (have + n >= sizeof seen) {
            size_t keep = sizeof seen / 2;
            memmove(seen, seen + have - keep, keep);
            have = keep;
        }
        memcpy(seen + have, buf, n);
        have += n;
        seen[have] = '\0';
        if (!found && strstr(seen, expect)) {
            found = 1;
            char out[1024];
            int len = snprintf(out, sizeof out, "%s\n", line);
            if (write(fd, out, len) != len) {
                perror("chanclient: write");
                return 2;
            }
            stop_at = now() + 2;
        }
    }
    close(fd);
    return found ? 0 : 1;
}
