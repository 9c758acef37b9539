/* tests/relay/relay-test-guest.c: plays the guest (dials <uds>_<port>) or a host endpoint process for the relay tests. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tests/relay/guest-data.h"

#define CHUNK_MAX (1u << 20)

static int dial(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int k = -errno;
                close(fd);
                return k;
        }
        return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

/* Writes bytes [from, to) of stream seed in chunk-sized writes. */
static int send_range(int fd, uint64_t seed, uint64_t from, uint64_t to, size_t chunk)
{
        static uint8_t buf[CHUNK_MAX];

        while (from < to) {
                size_t n = to - from < chunk ? (size_t)(to - from) : chunk;
                int k;
                guest_data_fill(seed, from, buf, n);
                k = write_all(fd, buf, n);
                if (k < 0)
                        return k;
                from += n;
        }
        return 0;
}

/* Reads to EOF (or max bytes), printing "<bytes> <hash>". */
static int consume(int fd, uint64_t max)
{
        static uint8_t buf[CHUNK_MAX];
        uint64_t total = 0, h = GUEST_HASH_INIT;

        while (total < max) {
                size_t want = max - total < sizeof(buf) ? (size_t)(max - total) : sizeof(buf);
                ssize_t n = read(fd, buf, want);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "relay-test-guest: read: %m\n");
                        return 1;
                }
                if (n == 0)
                        break;
                h = guest_hash(h, buf, (size_t)n);
                total += (uint64_t)n;
        }
        printf("%" PRIu64 " %016" PRIx64 "\n", total, h);
        fflush(stdout);
        return 0;
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* The stdin end confirmation (VsockmuxStdinEof) as a guest sees it: after the host's half-close,
 * our received count (one short of it with `under`), then the host closes both ways (POLLHUP).
 * "closed" once it did, within 60 s. */
static int recv_eof(const char *path, bool confirm, bool under)
{
        static uint8_t buf[CHUNK_MAX];
        uint64_t total = 0;
        uint8_t cnt[8];
        struct pollfd p;
        int fd = dial(path);
        ssize_t n;

        if (fd < 0)
                return 3;
        while ((n = read(fd, buf, sizeof(buf))) != 0) {
                if (n < 0 && errno != EINTR)
                        return 1;
                if (n > 0)
                        total += (uint64_t)n;
        }
        for (unsigned i = 0; i < 8; i++)
                cnt[i] = (uint8_t)((total - (under && total > 0)) >> (8 * i));
        if (confirm && write_all(fd, cnt, sizeof(cnt)) < 0)
                return 4;
        /* Only the hang-up can wake it: a half-closed socket stays writable. */
        p = (struct pollfd){ .fd = fd, .events = 0 };
        while (poll(&p, 1, 60000) < 0 && errno == EINTR)
                ;
        printf("%" PRIu64 " %s\n", total, p.revents & (POLLHUP | POLLERR) ? "closed" : "open");
        return 0;
}

static int usage(void)
{
        fprintf(stderr,
                "usage: relay-test-guest send PATH BYTES SEED [CHUNK]    dial, write the stream, close\n"
                "       relay-test-guest send-hdr PATH BYTES SEED        dial, read the 8-byte offset, write the rest\n"
                "       relay-test-guest recv PATH [MAX]                  dial, read to EOF (or MAX) and print "
                "bytes+hash\n"
                "       relay-test-guest recv-hdr PATH HAVE               dial, write the 8-byte count HAVE, read to "
                "EOF\n"
                "       relay-test-guest recv-eof PATH confirm|short|silent  dial, read to EOF, send our count "
                "(confirm)\n"
                "                                                       or one less (short)\n"
                "                                                         or not, print whether the host then closed\n"
                "       relay-test-guest dial PATH                        exit 0 if the dial succeeds\n"
                "       relay-test-guest sink [STALL_MS [MAX]]            read stdin to EOF, print bytes+hash\n"
                "       relay-test-guest source BYTES SEED                write the stream to stdout\n"
                "       relay-test-guest multi-send PREFIX PORT N BYTES   dial N ports, write BYTES+i of stream i to "
                "each\n");
        return 2;
}

int main(int argc, char **argv)
{
        int fd;

        signal(SIGPIPE, SIG_IGN);
        if (argc < 2)
                return usage();

        if (strcmp(argv[1], "send") == 0 && argc >= 5) {
                size_t chunk = argc >= 6 ? strtoul(argv[5], NULL, 0) : 65536;
                if (chunk == 0 || chunk > CHUNK_MAX)
                        return usage();
                fd = dial(argv[2]);
                if (fd < 0) {
                        fprintf(stderr, "relay-test-guest: dial %s: %s\n", argv[2], strerror(-fd));
                        return 3;
                }
                if (send_range(fd, strtoull(argv[4], NULL, 0), 0, strtoull(argv[3], NULL, 0), chunk) < 0)
                        return 4;
                close(fd);
                return 0;
        }
        if (strcmp(argv[1], "send-hdr") == 0 && argc >= 5) {
                uint8_t hdr[8];
                uint64_t off = 0;
                size_t got = 0;

                fd = dial(argv[2]);
                if (fd < 0)
                        return 3;
                while (got < sizeof(hdr)) {
                        ssize_t n = read(fd, hdr + got, sizeof(hdr) - got);
                        if (n <= 0)
                                return 5;
                        got += (size_t)n;
                }
                for (unsigned i = 0; i < 8; i++)
                        off |= (uint64_t)hdr[i] << (8 * i);
                printf("offset %" PRIu64 "\n", off);
                fflush(stdout);
                if (send_range(fd, strtoull(argv[4], NULL, 0), off, strtoull(argv[3], NULL, 0), 65536) < 0)
                        return 4;
                close(fd);
                return 0;
        }
        if (strcmp(argv[1], "recv") == 0 && argc >= 3) {
                fd = dial(argv[2]);
                if (fd < 0)
                        return 3;
                return consume(fd, argc >= 4 ? strtoull(argv[3], NULL, 0) : UINT64_MAX);
        }
        if (strcmp(argv[1], "recv-hdr") == 0 && argc >= 4) {
                /* stdin resume: tell the host how many bytes we already have, then read on */
                uint64_t have = strtoull(argv[3], NULL, 0);
                uint8_t hdr[8];

                fd = dial(argv[2]);
                if (fd < 0)
                        return 3;
                for (unsigned i = 0; i < 8; i++)
                        hdr[i] = (uint8_t)(have >> (8 * i));
                if (write_all(fd, hdr, sizeof(hdr)) < 0)
                        return 4;
                return consume(fd, UINT64_MAX);
        }
        if (strcmp(argv[1], "recv-eof") == 0 && argc >= 4)
                return recv_eof(argv[2], strcmp(argv[3], "silent") != 0, strcmp(argv[3], "short") == 0);
        if (strcmp(argv[1], "dial") == 0 && argc >= 3) {
                fd = dial(argv[2]);
                if (fd < 0) {
                        printf("%s\n", strerror(-fd));
                        return 1;
                }
                close(fd);
                return 0;
        }
        if (strcmp(argv[1], "sink") == 0) {
                if (argc >= 3)
                        sleep_ms((unsigned)strtoul(argv[2], NULL, 0));
                return consume(STDIN_FILENO, argc >= 4 ? strtoull(argv[3], NULL, 0) : UINT64_MAX);
        }
        if (strcmp(argv[1], "source") == 0 && argc >= 4)
                return send_range(STDOUT_FILENO, strtoull(argv[3], NULL, 0), 0, strtoull(argv[2], NULL, 0), 65536) < 0
                               ? 4
                               : 0;
        if (strcmp(argv[1], "multi-send") == 0 && argc >= 6) {
                char path[128];
                unsigned port = (unsigned)strtoul(argv[3], NULL, 0), n = (unsigned)strtoul(argv[4], NULL, 0);
                uint64_t bytes = strtoull(argv[5], NULL, 0);
                int *fds = calloc(n, sizeof(int));
                uint64_t *at = calloc(n, sizeof(uint64_t));
                unsigned left = n;

                if (!fds || !at)
                        return 6;
                for (unsigned i = 0; i < n; i++) {
                        snprintf(path, sizeof(path), "%s_%u", argv[2], port + i);
                        fds[i] = dial(path);
                        if (fds[i] < 0) {
                                fprintf(stderr, "relay-test-guest: dial %s: %s\n", path, strerror(-fds[i]));
                                return 3;
                        }
                }
                /* All streams stay open and advance together, in 16 KiB steps. */
                while (left > 0)
                        for (unsigned i = 0; i < n; i++) {
                                uint64_t total = bytes + i * 13;
                                uint64_t to;
                                if (fds[i] < 0)
                                        continue;
                                to = at[i] + 16384 < total ? at[i] + 16384 : total;
                                if (send_range(fds[i], port + i, at[i], to, 16384) < 0)
                                        return 4;
                                at[i] = to;
                                if (to == total) {
                                        close(fds[i]);
                                        fds[i] = -1;
                                        left--;
                                }
                        }
                free(fds);
                free(at);
                return 0;
        }
        return usage();
}
