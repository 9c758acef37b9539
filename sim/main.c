/* sim/main.c: vsockmux-sim, a guest agent for one VM speaking the GCS bridge over (hybrid) vsock. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>

#include "sim/sim.h"
#include "util/log.h"

static void usage(FILE *f)
{
        fprintf(f, "Usage: vsockmux-sim (--hvsock UDS_PATH | --cid CID) [options]\n"
                   "Plays the guest agent of one VM: dials the host's bridge on port 0x40000000 and runs the\n"
                   "processes it asks for, with stdio over vsock.\n\n"
                   "  --hvsock PATH        hybrid vsock: dial the Unix socket PATH_<port>\n"
                   "  --cid CID            AF_VSOCK: dial CID (the host is 2)\n"
                   "  --no-resume          do not announce the VsockmuxStdioResume capability (legacy replay only)\n"
                   "  --no-ack             do not announce VsockmuxStdioAck: with resume, free the replay window\n"
                   "                       by what the host read, not by what it delivered\n"
                   "  --no-stdin-eof       do not announce VsockmuxStdinEof: a closed stdin connection is stdin's\n"
                   "                       end, also when the host went away (a daemon stop ends stdin early)\n"
                   "  --replay-bytes N     stdout/stderr replay window per stream (default 131072)\n"
                   "  --drop-after-ms N    drop every connection once, N ms after start (fault injection)\n"
                   "  --fidelity MODE      ours (default) or upstream: behave as hcsshim's guest where ours is\n"
                   "                       kinder (null GUID for VM-level processes, ExitCode 4294967295 for a\n"
                   "                       signal, no signals outside containers, no resume extension, stdio\n"
                   "                       redialled only for a container's init and only its unwritten tail,\n"
                   "                       the process deleted before the wait's reply, which may come\n"
                   "                       before its stdout reached EOF, and a reply made after the bridge\n"
                   "                       connection ended ends the agent, exit status 2, as hcsshim's\n"
                   "                       guest panics there and its VM stops)\n"
                   "  --no-bridge-panic    with --fidelity upstream: lose such a reply (never resent) and\n"
                   "                       live on, kinder than hcsshim's guest\n"
                   "  --stats PATH         keep counts of wait answers sent (exit code, not found, timed out),\n"
                   "                       replies lost with their connection or held for the next one, and\n"
                   "                       waits answered before stdout's EOF, bridge connections made, lost\n"
                   "                       and panicked over, and stdio connections redialled, in PATH,\n"
                   "                       rewritten at each change\n"
                   "  --log-level LEVEL    error, warn, info (default) or debug\n"
                   "  -h, --help           this text\n\n"
                   "Signals: SIGUSR1 drops every connection at once (like a vsock transport reset);\n"
                   "SIGUSR2 drops every stdio connection and keeps the bridge;\n"
                   "SIGTERM/SIGINT kill the processes and exit.\n");
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno || end == s || *end || s[0] == '-' || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_args(int argc, char **argv, struct sim_options *opt)
{
        enum {
                OPT_HVSOCK = 256,
                OPT_CID,
                OPT_NO_RESUME,
                OPT_NO_ACK,
                OPT_NO_STDIN_EOF,
                OPT_REPLAY,
                OPT_DROP,
                OPT_LOG,
                OPT_FIDELITY,
                OPT_NO_BRIDGE_PANIC,
                OPT_STATS
        };
        static const struct option options[] = {
                { "hvsock", required_argument, NULL, OPT_HVSOCK },
                { "cid", required_argument, NULL, OPT_CID },
                { "no-resume", no_argument, NULL, OPT_NO_RESUME },
                { "no-ack", no_argument, NULL, OPT_NO_ACK },
                { "no-stdin-eof", no_argument, NULL, OPT_NO_STDIN_EOF },
                { "replay-bytes", required_argument, NULL, OPT_REPLAY },
                { "drop-after-ms", required_argument, NULL, OPT_DROP },
                { "log-level", required_argument, NULL, OPT_LOG },
                { "fidelity", required_argument, NULL, OPT_FIDELITY },
                { "no-bridge-panic", no_argument, NULL, OPT_NO_BRIDGE_PANIC },
                { "stats", required_argument, NULL, OPT_STATS },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        bool have_cid = false;
        uint64_t v;
        int c;

        *opt = (struct sim_options){ .announce_resume = true,
                                     .announce_ack = true,
                                     .announce_stdin_eof = true,
                                     .replay_bytes = SIM_DEFAULT_REPLAY_BYTES };
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case OPT_HVSOCK: opt->hvsock_path = optarg; break;
                case OPT_CID:
                        if (parse_u64(optarg, UINT32_MAX, &v) < 0) {
                                fprintf(stderr, "vsockmux-sim: --cid: not a CID: %s\n", optarg);
                                return -EINVAL;
                        }
                        opt->cid = (uint32_t)v;
                        have_cid = true;
                        break;
                case OPT_NO_RESUME: opt->announce_resume = false; break;
                case OPT_NO_ACK: opt->announce_ack = false; break;
                case OPT_NO_STDIN_EOF: opt->announce_stdin_eof = false; break;
                case OPT_REPLAY:
                        if (parse_u64(optarg, SIM_MAX_REPLAY_BYTES, &v) < 0 || v < SIM_MIN_REPLAY_BYTES) {
                                fprintf(stderr, "vsockmux-sim: --replay-bytes must be between %u and %u\n",
                                        SIM_MIN_REPLAY_BYTES, SIM_MAX_REPLAY_BYTES);
                                return -EINVAL;
                        }
                        opt->replay_bytes = (size_t)v;
                        break;
                case OPT_DROP:
                        if (parse_u64(optarg, 24u * 3600u * 1000u, &v) < 0) {
                                fprintf(stderr, "vsockmux-sim: --drop-after-ms: not a duration: %s\n", optarg);
                                return -EINVAL;
                        }
                        opt->drop_after_ms = (unsigned)v;
                        break;
                case OPT_FIDELITY:
                        if (sim_fidelity_from_string(optarg, &opt->fidelity) < 0) {
                                fprintf(stderr, "vsockmux-sim: --fidelity: ours or upstream, not %s\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case OPT_NO_BRIDGE_PANIC: opt->no_bridge_panic = true; break;
                case OPT_STATS:
                        if (strlen(optarg) >= 4096) {
                                fprintf(stderr, "vsockmux-sim: --stats: path too long\n");
                                return -EINVAL;
                        }
                        opt->stats_path = optarg;
                        break;
                case OPT_LOG:
                        if (log_level_from_string(optarg) < 0) {
                                fprintf(stderr, "vsockmux-sim: unknown log level: %s\n", optarg);
                                return -EINVAL;
                        }
                        log_set_level(log_level_from_string(optarg));
                        break;
                case 'h': usage(stdout); return 1;
                default: usage(stderr); return -EINVAL;
                }
        }
        /* hcsshim's guest knows nothing of our extensions; acks mean nothing without resume. */
        if (opt->fidelity == SIM_FIDELITY_UPSTREAM)
                opt->announce_resume = false;
        if (!opt->announce_resume) {
                opt->announce_ack = false;
                opt->announce_stdin_eof = false;
        }
        if (optind < argc || !!opt->hvsock_path == have_cid) {
                fprintf(stderr, "vsockmux-sim: give exactly one of --hvsock PATH or --cid CID\n");
                return -EINVAL;
        }
        return 0;
}

/* Refuses a transport that can never work, so the error is said once at start, not every 100 ms. */
static int check_transport(const struct sim_options *opt)
{
        if (opt->hvsock_path) {
                struct sockaddr_un sa;

                /* The longest name we dial: PATH_4294967295. */
                if (strlen(opt->hvsock_path) + 11 >= sizeof(sa.sun_path)) {
                        fprintf(stderr, "vsockmux-sim: --hvsock path too long for a Unix socket: %s\n",
                                opt->hvsock_path);
                        return EX_USAGE;
                }
                return 0;
        }
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0) {
                fprintf(stderr, "vsockmux-sim: AF_VSOCK is not available here (%s); use --hvsock\n", strerror(errno));
                return EX_UNAVAILABLE;
        }
        safe_close(fd);
        return 0;
}

/* Each process holds up to three pipes, three sockets and a pidfd: take all the fds we may. */
static void raise_fd_limit(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        log_warn("vsockmux-sim: cannot raise the open-file limit: %s", strerror(errno));
        }
}

static void *bridge_thread(void *arg)
{
        sim_bridge_run(arg);
        return NULL;
}

int main(int argc, char **argv)
{
        struct sim_options opt;
        struct sim s;
        sigset_t mask;
        pthread_t bridge;
        struct timespec start;
        bool dropped_once = false, panicked;
        int r;

        r = parse_args(argc, argv, &opt);
        if (r != 0)
                return r > 0 ? EXIT_SUCCESS : EX_USAGE;
        r = check_transport(&opt);
        if (r != 0)
                return r;

        /* Every thread inherits this mask; only the loop below takes these signals. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGUSR1);
        sigaddset(&mask, SIGUSR2);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        /* An inherited SIG_IGN would make the kernel reap our children and hide their exit codes. */
        signal(SIGCHLD, SIG_DFL);
        raise_fd_limit();

        if (sim_init(&s, &opt) < 0) {
                fprintf(stderr, "vsockmux-sim: out of memory\n");
                return EXIT_FAILURE;
        }
        if (sim_thread_start(&bridge, bridge_thread, &s) < 0) {
                fprintf(stderr, "vsockmux-sim: cannot start the bridge thread\n");
                sim_done(&s);
                return EXIT_FAILURE;
        }
        if (opt.hvsock_path)
                log_info("vsockmux-sim: guest agent up (hybrid vsock %s_<port>, resume %s, acks %s, replay window %zu "
                         "bytes)",
                         opt.hvsock_path, opt.announce_resume ? "offered" : "off", opt.announce_ack ? "offered" : "off",
                         opt.replay_bytes);
        else
                log_info("vsockmux-sim: guest agent up (AF_VSOCK cid %" PRIu32
                         ", resume %s, acks %s, replay window %zu "
                         "bytes)",
                         opt.cid, opt.announce_resume ? "offered" : "off", opt.announce_ack ? "offered" : "off",
                         opt.replay_bytes);
        clock_gettime(CLOCK_MONOTONIC, &start);

        while (!sim_stopping(&s)) {
                struct timespec tick = { .tv_nsec = 100 * 1000000L }, now;
                int sig = sigtimedwait(&mask, NULL, &tick);

                if (sig == SIGUSR1)
                        sim_drop_all(&s);
                else if (sig == SIGUSR2)
                        sim_drop_stdio(&s);
                else if (sig == SIGTERM && sim_bridge_panicked(&s))
                        break; /* said by the bridge */
                else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
                        log_info("vsockmux-sim: signal %d, exiting", sig);
                        break;
                }
                if (opt.drop_after_ms && !dropped_once) {
                        clock_gettime(CLOCK_MONOTONIC, &now);
                        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >=
                            (long)opt.drop_after_ms) {
                                dropped_once = true;
                                sim_drop_all(&s);
                        }
                }
        }
        sim_request_stop(&s);
        pthread_join(bridge, NULL);
        panicked = sim_bridge_panicked(&s);
        sim_done(&s);
        if (panicked) {
                /* Go's status for a panic: hcsshim's agent ends so, and its VM with it. */
                log_error("vsockmux-sim: stopped as hcsshim's guest does when its bridge panics");
                return 2;
        }
        log_info("vsockmux-sim: stopped");
        return EXIT_SUCCESS;
}
