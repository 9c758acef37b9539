/* tests/relay/relay-throughput.c: measures one 64 KiB-write stream through the relay next to a direct Unix-socket
 * copy in the same run, and the RSS of idle streams. Not a test: timings belong to measurements, not assertions.
 *
 *   relay-throughput [GIB [BUF_KIB [MAX_BUFS [BUF_COUNT]]]]   throughput, best of 3 each
 *   relay-throughput idle N                                 RSS per idle stream
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relay/relay.h"

#define WRITE_SIZE 65536
#define ROUNDS 3

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               (double)ru.ru_stime.tv_usec / 1e6;
}

/* A forked child keeps only its own socket: a stray copy of the other end would hide EOF. */
static void close_all_but(int keep)
{
        for (int fd = 3; fd < 1024; fd++)
                if (fd != keep)
                        close(fd);
}

/* A child that writes bytes to fd in 64 KiB writes, like a busy guest process. */
static pid_t spawn_writer(int fd, uint64_t bytes)
{
        pid_t pid = fork();

        if (pid == 0) {
                static char buf[WRITE_SIZE];
                close_all_but(fd);
                memset(buf, 'x', sizeof(buf));
                while (bytes > 0) {
                        size_t n = bytes < sizeof(buf) ? (size_t)bytes : sizeof(buf);
                        ssize_t k = write(fd, buf, n);
                        if (k < 0) {
                                if (errno == EINTR)
                                        continue;
                                _exit(1);
                        }
                        bytes -= (uint64_t)k;
                }
                _exit(0);
        }
        return pid;
}

/* A child that reads fd to EOF, like a fast host endpoint. */
static pid_t spawn_reader(int fd)
{
        pid_t pid = fork();

        if (pid == 0) {
                static char buf[WRITE_SIZE * 4];
                close_all_but(fd);
                for (;;) {
                        ssize_t k = read(fd, buf, sizeof(buf));
                        if (k == 0)
                                _exit(0);
                        if (k < 0 && errno != EINTR)
                                _exit(1);
                }
        }
        return pid;
}

static void reap(pid_t pid)
{
        int status;

        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fprintf(stderr, "child %d failed\n", (int)pid);
}

/* Direct copy: writer process -> unix socket -> this process reading. */
static void run_direct(uint64_t bytes, double *ret_gbs, double *ret_cpu)
{
        static char buf[WRITE_SIZE * 4];
        uint64_t got = 0;
        int sv[2];
        double t0, c0;
        pid_t w;

        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        t0 = now_s();
        c0 = cpu_s();
        w = spawn_writer(sv[1], bytes);
        close(sv[1]);
        for (;;) {
                ssize_t k = read(sv[0], buf, sizeof(buf));
                if (k <= 0)
                        break;
                got += (uint64_t)k;
        }
        *ret_gbs = (double)got / (now_s() - t0) / 1e9;
        *ret_cpu = (cpu_s() - c0) / ((double)got / 1e9);
        close(sv[0]);
        reap(w);
}

struct run {
        bool done;
        int error;
        struct relay_stream_counters c;
};

static void on_done(struct relay_stream *s, int error, void *userdata)
{
        struct run *run = userdata;

        run->done = true;
        run->error = error;
        relay_stream_get_counters(s, &run->c);
}

static const struct relay_stream_ops ops = { .on_done = on_done };

/* Through the relay: writer process -> guest socket -> relay -> endpoint socket -> reader process. */
static int run_relay(const struct relay_config *cfg, uint64_t bytes, double *ret_gbs, double *ret_cpu)
{
        struct relay *r = NULL;
        struct relay_stream *s = NULL;
        struct run run = {};
        int g[2], e[2], k;
        double t0, c0;
        pid_t w, rd;

        k = relay_new(cfg, &r);
        if (k < 0)
                return k;
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g);
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e);
        rd = spawn_reader(e[1]);
        close(e[1]);
        t0 = now_s();
        c0 = cpu_s();
        w = spawn_writer(g[1], bytes);
        close(g[1]);
        k = relay_stream_new(r, RELAY_STREAM_FROM_GUEST, g[0], e[0], &ops, &run, &s);
        if (k < 0)
                return k;
        while (!run.done) {
                k = relay_run_once(r, -1);
                if (k < 0)
                        return k;
        }
        *ret_gbs = (double)run.c.tx_endpoint / (now_s() - t0) / 1e9;
        *ret_cpu = (cpu_s() - c0) / ((double)run.c.tx_endpoint / 1e9);
        relay_stream_free(s);
        relay_free(r);
        reap(w);
        reap(rd);
        return run.error;
}

static long rss_kib(void)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        long v = -1;

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
                        break;
        fclose(f);
        return v;
}

static int run_idle(unsigned n)
{
        struct relay *r = NULL;
        struct relay_stream **s = calloc(n, sizeof(*s));
        struct run *runs = calloc(n, sizeof(*runs));
        long before, after;
        int k;

        k = relay_new(NULL, &r);
        if (k < 0 || !s || !runs)
                return 1;
        for (int i = 0; i < 10; i++)
                relay_run_once(r, 0);
        before = rss_kib();
        for (unsigned i = 0; i < n; i++) {
                int g[2], e[2];
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g) < 0 ||
                    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e) < 0) {
                        fprintf(stderr, "socketpair %u: %m\n", i);
                        return 1;
                }
                k = relay_stream_new(r, RELAY_STREAM_FROM_GUEST, g[0], e[0], &ops, &runs[i], &s[i]);
                if (k < 0) {
                        fprintf(stderr, "stream %u: %s\n", i, strerror(-k));
                        return 1;
                }
        }
        for (int i = 0; i < 10; i++)
                relay_run_once(r, 0);
        after = rss_kib();
        printf("idle streams: %u, RSS before %ld KiB, after %ld KiB: %.0f bytes per idle stream "
               "(user memory; the fds' kernel socket memory is not in RSS)\n",
               n, before, after, (double)(after - before) * 1024.0 / n);
        for (unsigned i = 0; i < n; i++)
                relay_stream_free(s[i]);
        relay_free(r);
        free(s);
        free(runs);
        return 0;
}

int main(int argc, char **argv)
{
        struct relay_config cfg;
        double gib = 2, best_direct = 0, best_relay = 0, cpu_direct = 1e9, cpu_relay = 1e9;
        uint64_t bytes;

        signal(SIGPIPE, SIG_IGN);
        if (argc >= 3 && strcmp(argv[1], "idle") == 0)
                return run_idle((unsigned)strtoul(argv[2], NULL, 0));

        relay_config_default(&cfg);
        if (argc >= 2)
                gib = strtod(argv[1], NULL);
        if (argc >= 3)
                cfg.buf_size = (unsigned)strtoul(argv[2], NULL, 0) * 1024;
        if (argc >= 4)
                cfg.stream_max_bufs = (unsigned)strtoul(argv[3], NULL, 0);
        if (argc >= 5)
                cfg.buf_count = (unsigned)strtoul(argv[4], NULL, 0);
        while ((uint64_t)cfg.buf_size * cfg.buf_count > RELAY_POOL_BYTES_MAX)
                cfg.buf_count /= 2;
        bytes = (uint64_t)(gib * (1ull << 30));

        for (int i = 0; i < ROUNDS; i++) {
                double gbs, cpu;
                int k;

                run_direct(bytes, &gbs, &cpu);
                if (gbs > best_direct)
                        best_direct = gbs;
                if (cpu < cpu_direct)
                        cpu_direct = cpu;
                k = run_relay(&cfg, bytes, &gbs, &cpu);
                if (k < 0) {
                        fprintf(stderr, "relay run failed: %s\n", strerror(-k));
                        return 1;
                }
                if (gbs > best_relay)
                        best_relay = gbs;
                if (cpu < cpu_relay)
                        cpu_relay = cpu;
        }
        printf("%.2f GiB per run, best of %d; buf_size %u KiB x %u, stream_max_bufs %u\n", gib, ROUNDS,
               cfg.buf_size / 1024, cfg.buf_count, cfg.stream_max_bufs);
        printf("direct unix-socket copy: %.2f GB/s, reader CPU %.3f s/GB\n", best_direct, cpu_direct);
        printf("through the relay:       %.2f GB/s, relay CPU %.3f s/GB\n", best_relay, cpu_relay);
        return 0;
}
