/* bench/ctl.c: bench-ctl, the bench driver's control-socket client (setup and save/restore timing;
 * a thousand `vsockmux` CLI processes would take longer than what they set up). Owns nothing
 * beyond one run.
 *
 *   bench-ctl exec --socket S --vm NAME --jobs FILE [--parallel N] [--rate R] [--spec SPEC --ports FILE]
 *     One Exec --detach per job line "<stdin|-> <stdout|-> <stderr|-> ARGV...", N at a time (on N
 *     control connections), with --rate no faster than R per second; prints each job's pid, in job
 *     order, and the latency of the calls to stderr. With --spec, after each reply it reads bench-guest's new --ports lines
 *     ("<a> <b> <stdin port> <stdout port> <stderr port>") and links spec stream a's guest path to
 *     "<vm uds>_<stdin port>" and stream b's to "<vm uds>_<stdout port>" ('-': none), so
 *     bench-load's guest dials the daemon's real ports through its usual paths.
 *   bench-ctl saverestore --from S1 --to S2 --vm NAME --io FILE --probe-pid PID --probe-sock PATH
 *                         [--probe-out FILE]
 *     Listens on PATH, saves NAME on S1, restores it on S2 with the endpoints of --io (lines
 *     "<pid> <stdout path>"; the probe's stdout is PATH), waits for the probe's first byte and
 *     prints one JSON line: save_ms, restore_ms, blackout_ms (save sent -> first byte relayed by
 *     S2), state_bytes. Then copies the probe's output to --probe-out until EOF. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/spec.h"
#include "libvsockmux/cleanup.h"
#include "libvsockmux/vsockmux.h"
#include "util/macro.h"

#define BENCH_CTL_JOBS_MAX 20000u
#define BENCH_CTL_ARGV_MAX 16u
#define BENCH_CTL_LINE_MAX 8192u
#define BENCH_CTL_PROBE_WAIT_MS 60000
#define BENCH_CTL_PARALLEL_MAX 64u /* under vsockmuxd's default 128 control connections */
#define BENCH_CTL_CALL_TIMEOUT_NS (120ull * 1000000000ull)

static void bench_ctl_fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(bench_ctl_fclosep)

static double bench_ctl_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int bench_ctl_connect(const char *path, struct vsockmux_client **ret)
{
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;
        int r = vsockmux_client_connect(path, &c);

        if (r < 0)
                return r;
        r = vsockmux_client_set_timeout(c, BENCH_CTL_CALL_TIMEOUT_NS);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

static int bench_ctl_call(struct vsockmux_client *c, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret)
{
        struct vsockmux_status st = {};
        int r = vsockmux_client_call(c, method, req, desc, ret, &st);

        if (r == -EREMOTEIO)
                fprintf(stderr, "bench-ctl: %s: %s\n", method, st.message);
        else if (r < 0)
                fprintf(stderr, "bench-ctl: %s: %s\n", method, strerror(-r));
        return r;
}

/* ---- exec ---------------------------------------------------------------------------- */

struct bench_ctl_links {
        const struct bench_spec *spec;
        FILE *ports;
        char line[BENCH_CTL_LINE_MAX];
        size_t len;
        unsigned made;
};

static int bench_ctl_link(struct bench_ctl_links *l, const char *id, uint32_t port)
{
        char target[BENCH_PATH_MAX], *end;
        unsigned long i;

        if (strcmp(id, "-") == 0)
                return 0;
        errno = 0;
        i = strtoul(id, &end, 10);
        if (errno || *end || i >= l->spec->n || port == 0)
                return -EBADMSG;
        if (snprintf(target, sizeof(target), "%s_%" PRIu32, l->spec->vm_uds, port) >= (int)sizeof(target))
                return -ENAMETOOLONG;
        (void)unlink(l->spec->s[i].guest_path);
        if (symlink(target, l->spec->s[i].guest_path) < 0)
                return negative_errno();
        l->made++;
        return 0;
}

/* bench-guest flushes its line before it replies, so every exec answered so far has its line. */
static int bench_ctl_links_poll(struct bench_ctl_links *l)
{
        int c;

        while ((c = getc(l->ports)) != EOF) {
                char a[32], b[32];
                uint32_t in, out, err;
                int r;

                if (c != '\n') {
                        if (l->len + 1 >= sizeof(l->line))
                                return -EMSGSIZE;
                        l->line[l->len++] = (char)c;
                        continue;
                }
                l->line[l->len] = '\0';
                l->len = 0;
                if (sscanf(l->line, "%31s %31s %" SCNu32 " %" SCNu32 " %" SCNu32, a, b, &in, &out, &err) != 5)
                        return -EBADMSG;
                r = bench_ctl_link(l, a, in);
                if (r >= 0)
                        r = bench_ctl_link(l, b, out);
                if (r < 0)
                        return r;
        }
        clearerr(l->ports);
        return 0;
}

/* One job line "<stdin|-> <stdout|-> <stderr|-> ARGV..." as an Exec --detach request; the request
 * borrows line's words. */
static int bench_ctl_exec_request(const char *vm, char *line, char **words, size_t max_words,
                                  Vsockmux__V1__ExecRequest *req)
{
        char *save = NULL;
        size_t n = 0;

        for (char *w = strtok_r(line, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
                if (n == max_words)
                        return -E2BIG;
                words[n++] = w;
        }
        if (n < 4)
                return -EBADMSG;
        vsockmux__v1__exec_request__init(req);
        req->vm = (char *)vm;
        req->stdin_path = strcmp(words[0], "-") ? words[0] : (char *)"";
        req->stdout_path = strcmp(words[1], "-") ? words[1] : (char *)"";
        req->stderr_path = strcmp(words[2], "-") ? words[2] : (char *)"";
        req->argv = words + 3;
        req->n_argv = n - 3;
        req->detach = true;
        return 0;
}

/* One control connection with at most one Exec in flight: the daemon answers a connection's
 * calls in order, and a guest that starts processes slowly (the simulator spawns each) is kept
 * busy by several connections at once. */
struct bench_ctl_conn {
        struct vsockmux_client *client;
        uint32_t stream_id;
        long job; /* in flight, or -1 */
};

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

/* Sorts lat in place. */
static void bench_ctl_print_latency(double *lat, long n)
{
        if (n == 0)
                return;
        qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
        fprintf(stderr, "bench-ctl: exec latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", lat[n / 2],
                lat[(n * 99) / 100], lat[n - 1]);
}

/* With a rate, job i is not sent before t0 + i / rate: an offered load, not a closed loop. Returns
 * the ms until the next job is due (0: now; -1: no rate). */
static int bench_ctl_due_in(double t0, long job, unsigned long rate)
{
        double due;

        if (rate == 0)
                return -1;
        due = t0 + (double)job * 1000.0 / (double)rate - bench_ctl_now_ms();
        return due <= 0 ? 0 : (int)due + 1;
}

static int bench_ctl_exec(const char *sock, const char *vm, const char *jobs_path, const char *spec_path,
                          const char *ports_path, unsigned parallel, unsigned long rate)
{
        _cleanup_(bench_spec_freep) struct bench_spec *spec = NULL;
        _cleanup_free_ struct bench_ctl_conn *conns = NULL;
        _cleanup_free_ uint32_t *pids = NULL;
        _cleanup_free_ struct pollfd *pfds = NULL;
        _cleanup_free_ double *sent = NULL, *lat = NULL;
        struct bench_ctl_links links = {};
        _cleanup_fclose_ FILE *jobs = NULL;
        char line[BENCH_CTL_LINE_MAX];
        long next = 0, done = 0, n_jobs = 0;
        double t0 = bench_ctl_now_ms();
        int r = 0;

        jobs = fopen(jobs_path, "re");
        conns = calloc(parallel, sizeof(*conns));
        pids = calloc(BENCH_CTL_JOBS_MAX, sizeof(*pids));
        pfds = calloc(parallel, sizeof(*pfds));
        sent = calloc(BENCH_CTL_JOBS_MAX, sizeof(*sent));
        lat = calloc(BENCH_CTL_JOBS_MAX, sizeof(*lat));
        if (!jobs || !conns || !pids || !pfds || !sent || !lat)
                return jobs ? -ENOMEM : negative_errno();
        if (spec_path) {
                r = bench_spec_load(spec_path, &spec);
                if (r < 0)
                        return r;
                links.spec = spec;
                links.ports = fopen(ports_path, "re");
                if (!links.ports)
                        return negative_errno();
        }
        for (unsigned i = 0; i < parallel; i++) {
                conns[i].job = -1;
                r = bench_ctl_connect(sock, &conns[i].client);
                if (r < 0)
                        goto out;
        }
        while (r >= 0) {
                int wait_ms = -1, due;
                unsigned busy = 0;

                for (unsigned i = 0; i < parallel; i++) {
                        struct bench_ctl_conn *c = &conns[i];

                        if (c->job < 0 && (due = bench_ctl_due_in(t0, next, rate)) > 0)
                                wait_ms = wait_ms < 0 || due < wait_ms ? due : wait_ms;
                        else if (c->job < 0 && fgets(line, sizeof(line), jobs)) {
                                Vsockmux__V1__ExecRequest req;
                                char *words[3 + BENCH_CTL_ARGV_MAX];

                                if (next == BENCH_CTL_JOBS_MAX) {
                                        r = -E2BIG;
                                        goto out;
                                }
                                r = bench_ctl_exec_request(vm, line, words, ELEMENTSOF(words), &req);
                                if (r >= 0)
                                        r = vsockmux_client_send(c->client, VSOCKMUX_METHOD("Exec"), &req.base, 0, 0,
                                                                 &c->stream_id);
                                if (r < 0)
                                        goto out;
                                sent[next] = bench_ctl_now_ms();
                                c->job = next++;
                                n_jobs = next;
                        }
                        if (c->job >= 0)
                                pfds[busy++] = (struct pollfd){ .fd = vsockmux_client_fd(c->client), .events = POLLIN };
                }
                if (busy == 0 && wait_ms < 0)
                        break;
                if (poll(pfds, busy, wait_ms) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        goto out;
                }
                for (unsigned i = 0, k = 0; i < parallel; i++) {
                        struct bench_ctl_conn *c = &conns[i];
                        _cleanup_(vsockmux_message_freep) ProtobufCMessage *resp = NULL;
                        struct vsockmux_status st = {};

                        if (c->job < 0)
                                continue;
                        if (!(pfds[k++].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        r = vsockmux_client_recv(c->client, c->stream_id, &vsockmux__v1__exec_response__descriptor,
                                                 &resp, &st);
                        if (r == -EREMOTEIO)
                                fprintf(stderr, "bench-ctl: exec %ld: %s\n", c->job, st.message);
                        if (r < 0)
                                goto out;
                        pids[c->job] = ((Vsockmux__V1__ExecResponse *)resp)->pid;
                        lat[done] = bench_ctl_now_ms() - sent[c->job];
                        c->job = -1;
                        done++;
                }
                if (links.ports) {
                        r = bench_ctl_links_poll(&links);
                        if (r < 0)
                                goto out;
                }
        }
        for (long i = 0; i < n_jobs; i++)
                printf("%" PRIu32 "\n", pids[i]);
        if (spec && links.made != spec->n) {
                fprintf(stderr, "bench-ctl: %u guest paths linked, the spec has %u\n", links.made, spec->n);
                r = -EPROTO;
                goto out;
        }
        fprintf(stderr, "bench-ctl: %ld execs, %u links in %.0f ms\n", done, links.made, bench_ctl_now_ms() - t0);
        bench_ctl_print_latency(lat, done);
        r = 0;
out:
        for (unsigned i = 0; i < parallel; i++)
                vsockmux_client_free(conns[i].client);
        if (links.ports)
                fclose(links.ports);
        return r;
}

/* ---- save and restore ------------------------------------------------------------------ */

struct bench_ctl_io {
        Vsockmux__V1__RestoreIo *ios;
        Vsockmux__V1__RestoreIo **ptrs;
        char (*paths)[BENCH_PATH_MAX];
        size_t n;
};

static void bench_ctl_io_done(struct bench_ctl_io *io)
{
        free(io->ios);
        free(io->ptrs);
        free(io->paths);
}

static int bench_ctl_io_load(const char *path, uint32_t probe_pid, const char *probe_sock, struct bench_ctl_io *io)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char line[BENCH_CTL_LINE_MAX];

        if (!f)
                return negative_errno();
        io->ios = calloc(BENCH_CTL_JOBS_MAX, sizeof(*io->ios));
        io->ptrs = calloc(BENCH_CTL_JOBS_MAX, sizeof(*io->ptrs));
        io->paths = calloc(BENCH_CTL_JOBS_MAX, sizeof(*io->paths));
        if (!io->ios || !io->ptrs || !io->paths)
                return -ENOMEM;
        while (fgets(line, sizeof(line), f)) {
                Vsockmux__V1__RestoreIo *o;
                uint32_t pid;
                char p[BENCH_PATH_MAX];

                if (sscanf(line, "%" SCNu32 " %107s", &pid, p) != 2)
                        return -EBADMSG;
                if (io->n == BENCH_CTL_JOBS_MAX)
                        return -E2BIG;
                o = &io->ios[io->n];
                vsockmux__v1__restore_io__init(o);
                o->pid = pid;
                snprintf(io->paths[io->n], BENCH_PATH_MAX, "%s", pid == probe_pid ? probe_sock : p);
                o->stdout_path = io->paths[io->n];
                io->ptrs[io->n] = o;
                io->n++;
        }
        return 0;
}

static int bench_ctl_saverestore(const char *from, const char *to, const char *vm, const char *io_path,
                                 uint32_t probe_pid, const char *probe_sock, const char *probe_out)
{
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *a = NULL, *b = NULL;
        _cleanup_(vsockmux_message_freep) ProtobufCMessage *saved = NULL, *restored = NULL;
        Vsockmux__V1__SaveRequest sreq = VSOCKMUX__V1__SAVE_REQUEST__INIT;
        Vsockmux__V1__RestoreRequest rreq = VSOCKMUX__V1__RESTORE_REQUEST__INIT;
        _cleanup_close_ int lfd = -1, pfd = -1;
        _cleanup_fclose_ FILE *out = NULL;
        struct bench_ctl_io io = {};
        struct pollfd pl;
        double t0, t1, t2, t3;
        Vsockmux__V1__SaveResponse *sresp;
        uint64_t total = 0;
        char buf[65536];
        ssize_t n;
        int r;

        r = bench_ctl_io_load(io_path, probe_pid, probe_sock, &io);
        if (r < 0)
                goto out;
        lfd = bench_unix_listen(probe_sock, 4);
        if (lfd < 0) {
                r = lfd;
                goto out;
        }
        if (probe_out) {
                out = fopen(probe_out, "we");
                if (!out) {
                        r = negative_errno();
                        goto out;
                }
        }
        r = bench_ctl_connect(from, &a);
        if (r >= 0)
                r = bench_ctl_connect(to, &b);
        if (r < 0)
                goto out;

        sreq.vm = (char *)vm;
        t0 = bench_ctl_now_ms();
        r = bench_ctl_call(a, VSOCKMUX_METHOD("Save"), &sreq.base, &vsockmux__v1__save_response__descriptor, &saved);
        if (r < 0)
                goto out;
        t1 = bench_ctl_now_ms();
        sresp = (Vsockmux__V1__SaveResponse *)saved;
        rreq.state = sresp->state;
        rreq.io = io.ptrs;
        rreq.n_io = io.n;
        r = bench_ctl_call(b, VSOCKMUX_METHOD("Restore"), &rreq.base, &vsockmux__v1__restore_response__descriptor,
                           &restored);
        if (r < 0)
                goto out;
        t2 = bench_ctl_now_ms();

        /* The daemon connected the probe's endpoint during the restore; the first byte it relays
         * ends the blackout. */
        pl = (struct pollfd){ .fd = lfd, .events = POLLIN };
        if (poll(&pl, 1, BENCH_CTL_PROBE_WAIT_MS) <= 0) {
                r = -ETIMEDOUT;
                goto out;
        }
        pfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (pfd < 0) {
                r = negative_errno();
                goto out;
        }
        pl = (struct pollfd){ .fd = pfd, .events = POLLIN };
        if (poll(&pl, 1, BENCH_CTL_PROBE_WAIT_MS) <= 0) {
                r = -ETIMEDOUT;
                goto out;
        }
        t3 = bench_ctl_now_ms();
        printf("{\"save_ms\":%.3f,\"restore_ms\":%.3f,\"blackout_ms\":%.3f,\"state_bytes\":%zu,\"processes\":%u}\n",
               t1 - t0, t2 - t1, t3 - t0, sresp->state.len, sresp->processes);
        fflush(stdout);
        for (;;) {
                n = read(pfd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = negative_errno();
                        goto out;
                }
                if (n == 0)
                        break;
                total += (uint64_t)n;
                if (out && fwrite(buf, 1, (size_t)n, out) != (size_t)n) {
                        r = -EIO;
                        goto out;
                }
        }
        r = 0;
out:
        bench_ctl_io_done(&io);
        (void)unlink(probe_sock);
        return r;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' },    { "vm", required_argument, NULL, 'v' },
                { "jobs", required_argument, NULL, 'j' },      { "spec", required_argument, NULL, 'S' },
                { "ports", required_argument, NULL, 'p' },     { "from", required_argument, NULL, 'f' },
                { "to", required_argument, NULL, 't' },        { "io", required_argument, NULL, 'i' },
                { "probe-pid", required_argument, NULL, 'P' }, { "probe-sock", required_argument, NULL, 'k' },
                { "probe-out", required_argument, NULL, 'o' }, { "parallel", required_argument, NULL, 'n' },
                { "rate", required_argument, NULL, 'r' },      {},
        };
        const char *sock = NULL, *vm = NULL, *jobs = NULL, *spec = NULL, *ports = NULL, *from = NULL, *to = NULL,
                   *io = NULL, *probe_sock = NULL, *probe_out = NULL;
        unsigned long probe_pid = 0, parallel = 1, rate = 0;
        int c, r;

        if (argc < 2)
                goto usage;
        optind = 2;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case 's': sock = optarg; break;
                case 'v': vm = optarg; break;
                case 'j': jobs = optarg; break;
                case 'S': spec = optarg; break;
                case 'p': ports = optarg; break;
                case 'f': from = optarg; break;
                case 't': to = optarg; break;
                case 'i': io = optarg; break;
                case 'P': probe_pid = strtoul(optarg, NULL, 10); break;
                case 'k': probe_sock = optarg; break;
                case 'o': probe_out = optarg; break;
                case 'n': parallel = strtoul(optarg, NULL, 10); break;
                case 'r': rate = strtoul(optarg, NULL, 10); break;
                default: goto usage;
                }
        }
        if (strcmp(argv[1], "exec") == 0 && sock && vm && jobs && !spec == !ports && parallel > 0 &&
            parallel <= BENCH_CTL_PARALLEL_MAX)
                r = bench_ctl_exec(sock, vm, jobs, spec, ports, (unsigned)parallel, rate);
        else if (strcmp(argv[1], "saverestore") == 0 && from && to && vm && io && probe_sock && probe_pid > 0 &&
                 probe_pid <= UINT32_MAX)
                r = bench_ctl_saverestore(from, to, vm, io, (uint32_t)probe_pid, probe_sock, probe_out);
        else
                goto usage;
        if (r < 0) {
                fprintf(stderr, "bench-ctl %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        return 0;
usage:
        fprintf(stderr, "usage: bench-ctl exec --socket S --vm NAME --jobs FILE [--parallel N] [--rate R] [--spec SPEC "
                        "--ports FILE]\n"
                        "       bench-ctl saverestore --from S1 --to S2 --vm NAME --io FILE --probe-pid PID\n"
                        "                             --probe-sock PATH [--probe-out FILE]\n");
        return 2;
}
