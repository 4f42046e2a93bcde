/*
 * ptyrun: run a command on a fresh pseudo-terminal, type a line into it,
 * and wait for a reply, as an administrator at a terminal would.
 * dom0's busybox has no script(1) or expect, and `xl console` needs a
 * terminal on its side (xenconsole puts stdin into raw mode).
 *
 *   ptyrun SECONDS EXPECT LINE -- COMMAND [ARG...]
 *
 * Everything the command prints is copied to stdout. LINE (plus "\r") is
 * typed once the command has printed something or after 3 s, and typed
 * again every 10 s until EXPECT shows up (a serial line may drop bytes
 * typed before the guest's shell reads the port). Then Ctrl-] (xenconsole's
 * escape) ends the command. Exit 0 if EXPECT was seen within SECONDS,
 * 1 if not, 2 on a usage or system error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void type_line(int master, const char *line)
{
    dprintf(master, "%s\r", line);
}

int main(int argc, char **argv)
{
    if (argc < 6 || strcmp(argv[4], "--") != 0) {
        fprintf(stderr, "usage: ptyrun SECONDS EXPECT LINE -- COMMAND [ARG...]\n");
        return 2;
    }
    double limit = atof(argv[1]);
    const char *expect = argv[2], *line = argv[3];
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) {
        perror("ptyrun: posix_openpt");
        return 2;
    }
    const char *slave_name = ptsname(master);
    pid_t child = fork();
    if (child < 0) {
        perror("ptyrun: fork");
        return 2;
    }
    if (child == 0) {
        setsid();
        int slave = open(slave_name, O_RDWR);
        if (slave < 0) {
            perror("ptyrun: open slave");
            _exit(127);
        }
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(slave, 2);
        if (slave > 2)
            close(slave);
        close(master);
        execvp(argv[5], argv + 5);
        perror("ptyrun: exec");
        _exit(127);
    }

    /* The last bytes seen, enough to find EXPECT across read boundaries. */
    size_t want = strlen(expect);
    char seen[4096] = "";
    size_t seen_len = 0;
    int found = 0, typed = 0;
    double start = now(), last_typed = 0, found_at = 0;
    while (!found && now() - start < limit) {
        struct pollfd p = { .fd = master, .events = POLLIN };
        int r = poll(&p, 1, 200);
        if (r > 0 && (p.revents & (POLLIN | POLLHUP))) {
            char buf[1024];
            ssize_t n = read(master, buf, sizeof buf);
            if (n <= 0)
                break; /* the command ended (EIO on a closed slave) */
            fwrite(buf, 1, n, stdout);
            fflush(stdout);
            if (seen_len + n >= sizeof seen) {
                size_t keep = want < seen_len ? want : seen_len;
                memmove(seen, seen + seen_len - keep, keep);
                seen_len = keep;
            }
            if ((size_t)n >= sizeof seen - seen_len)
                n = sizeof seen - seen_len - 1;
            memcpy(seen + seen_len, buf, n);
            seen_len += n;
            seen[seen_len] = 0;
            if (typed && memmem(seen, seen_len, expect, want)) {
                found = 1;
                found_at = now() - start;
            }
            if (!typed) {
                type_line(master, line);
                typed = 1;
                last_typed = now();
            }
        }
        if (!found && ((!typed && now() - start > 3) || (typed && now() - last_typed > 10))) {
            type_line(master, line);
            typed = 1;
            last_typed = now();
        }
    }
    /* Ctrl-] leaves xenconsole; a command that ignores it is killed. */
    (void)!write(master, "\x1d", 1);
    for (int i = 0; i < 50; i++) {
        if (waitpid(child, NULL, WNOHANG) == child) {
            child = 0;
            break;
        }
        usleep(100000);
    }
    if (child) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    if (found)
        printf("\nptyrun: reply seen after %.1f s\n", found_at);
    else
        printf("\nptyrun: no reply within %.0f s\n", limit);
    return found ? 0 : 1;
}
