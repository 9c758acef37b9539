/* bench/tick.c: bench-tick, the writing process of B10/B11 (run by the guest simulator): writes
 * its line number ("<n>\n", from 0) every INTERVAL_US to stdout until STOP_FILE exists, then exits
 * 0. The numbers let the driver check that the output crossed save/restore exactly once, in order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TICK_INTERVAL_MAX_US 10000000ul

int main(int argc, char **argv)
{
        char line[32];
        unsigned long interval;
        unsigned long long n = 0;
        char *end;

        if (argc != 3)
                goto usage;
        errno = 0;
        interval = strtoul(argv[1], &end, 10);
        if (errno || *end || interval == 0 || interval > BENCH_TICK_INTERVAL_MAX_US)
                goto usage;
        for (;;) {
                struct timespec ts = { .tv_sec = (time_t)(interval / 1000000),
                                       .tv_nsec = (long)(interval % 1000000) * 1000 };
                int len = snprintf(line, sizeof(line), "%llu\n", n++);
                const char *p = line;

                while (len > 0) {
                        ssize_t w = write(STDOUT_FILENO, p, (size_t)len);

                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0)
                                return 1;
                        p += w;
                        len -= (int)w;
                }
                if (access(argv[2], F_OK) == 0)
                        return 0;
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
        }
usage:
        fprintf(stderr, "usage: bench-tick INTERVAL_US STOP_FILE\n");
        return 2;
}
