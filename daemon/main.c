/* daemon/main.c: vsockmuxd's entry point: options, the loop, signals, orderly stop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "bridge/conn.h"
#include "daemon/attach.h"
#include "daemon/metrics-http.h"
#include "daemon/upgrade-ops.h"
#include "daemon/notify.h"
#include "daemon/service.h"
#include "daemon/vmm.h"
#include "relay/relay.h"
#include "util/log.h"

#define DEFAULT_SOCKET "/run/vsockmux/vsockmux.sock"
#define DEFAULT_STATE_DIR "/run/vsockmux"
#define DAEMON_STOP_FLUSH_NS (5ull * 1000000000ull)

enum {
        OPT_MAX_VMS = 0x100,
        OPT_MAX_PROCESSES,
        OPT_MAX_STREAMS,
        OPT_MAX_ATTACH_CLIENTS,
        OPT_MAX_BRIDGE_FRAME,
        OPT_MAX_CONTROL_FRAME,
        OPT_STREAM_BUFFER_BYTES,
        OPT_RECONNECT_GRACE,
        OPT_LOG_FILE,
        OPT_READ_GROUP,
        OPT_EXIT_DIR,
        OPT_DEFAULT_LOG,
        OPT_METRICS_LISTEN,
        OPT_HANDOVER_FD,
};

struct daemon_signals {
        struct relay_op op;
        struct relay *relay;
        int fd;
        struct signalfd_siginfo info;
        bool stopping;
        struct daemon_notify *notify;
        const char *log_file;           /* --log-file, reopened on SIGHUP; NULL: stderr as given */
        struct upgrade *upgrade;        /* SIGUSR2 starts a live upgrade to our own binary */
};

static int signals_arm(struct daemon_signals *s);

/* SIGHUP: a reload, never a stop. The log file is reopened so logrotate can move it away. */
static void signals_reload(struct daemon_signals *s)
{
        int r;

        (void)notify_reloading(s->notify);
        if (s->log_file) {
                r = log_open_file(s->log_file);
                if (r < 0)
                        log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: SIGHUP: cannot reopen %s, logging on", s->log_file);
                else
                        log_info("vsockmuxd: SIGHUP: reopened the log %s", s->log_file);
        } else {
                log_info("vsockmuxd: SIGHUP: nothing to reopen (no --log-file)");
        }
        (void)notify_ready(s->notify);
}

static void signals_upgrade_done(int r, pid_t pid, const char *binary, const char *why, void *userdata)
{
        (void)userdata;
        if (r < 0)
                log_error("vsockmuxd: SIGUSR2: upgrade failed: %s", why);
        else
                log_info("vsockmuxd: SIGUSR2: %s (pid %d) took over", binary, (int)pid);
}

/* SIGUSR2: a live upgrade to the executable we were started from, as it is on disk now. */
static void signals_upgrade(struct daemon_signals *s)
{
        char why[UPGRADE_WHY_MAX];

        log_info("vsockmuxd: SIGUSR2 received, upgrading");
        if (upgrade_start(s->upgrade, NULL, 0, signals_upgrade_done, s, why, sizeof(why)) < 0)
                log_error("vsockmuxd: SIGUSR2: upgrade failed: %s", why);
}

static void signals_on_read(struct relay *r, struct relay_op *op, int res, uint32_t cqe_flags)
{
        struct daemon_signals *s = container_of(op, struct daemon_signals, op);

        if (res == (int)sizeof(s->info) && s->info.ssi_signo == SIGHUP) {
                signals_reload(s);
        } else if (res == (int)sizeof(s->info) && s->info.ssi_signo == SIGUSR2) {
                signals_upgrade(s);
        } else if (res == (int)sizeof(s->info)) {
                log_info("vsockmuxd: %s received, stopping", strsignal((int)s->info.ssi_signo));
                s->stopping = true;
                (void)notify_stopping(s->notify);
                relay_stop(r);
                return;
        } else if (res < 0 && res != -EINTR && res != -EAGAIN)
                log_error("vsockmuxd: reading signals failed: %s", strerror(-res));
        if (signals_arm(s) < 0)
                log_error("vsockmuxd: cannot watch signals any more");
}

static int signals_arm(struct daemon_signals *s)
{
        struct io_uring_sqe *sqe = relay_get_sqe(s->relay);

        if (!sqe)
                return -EIO;
        io_uring_prep_read(sqe, s->fd, &s->info, sizeof(s->info), 0);
        relay_sqe_set_op(sqe, &s->op);
        return 0;
}

static void usage(FILE *f)
{
        struct relay_config rc;

        relay_config_default(&rc);
        fprintf(f,
                "Usage: vsockmuxd [OPTIONS]\n"
                "  --socket PATH        control socket (default $VSOCKMUX_SOCKET, else " DEFAULT_SOCKET ")\n"
                "  --state-dir DIR      attach sockets and default state (default " DEFAULT_STATE_DIR ")\n"
                "  --hvsock-root DIR    accept hybrid-vsock paths only inside DIR (no symlinks, no \"..\";\n"
                "                       default: the --state-dir)\n"
                "  --group NAME|GID     (root only) let this group use the control socket (mode 0660)\n"
                "  --read-group NAME|GID  (root only) let this group list and watch only: VmList, Ps,\n"
                "                       Stats, Events and Wait; other methods answer PERMISSION_DENIED\n"
                "  --log-level LEVEL    error, warn, info or debug (default info)\n"
                "  --log-file PATH      append the log to PATH instead of stderr; SIGHUP reopens it\n"
                "  --exit-dir DIR       write DIR/<exec-id> with the decimal exit status once the output\n"
                "                       drained, atomically (conmon's --exit-dir; -1 when it was lost)\n"
                "  --default-log DRIVER where a detached exec's output goes when it names no --log and no\n"
                "                       --stdout/--stderr: k8s-file:/DIR (DIR/<exec-id>.log), journald,\n"
                "                       or passthrough (kept for attach; the default)\n"
                "  --metrics-listen ADDR  serve GET /metrics (Prometheus text) on ADDR: a loopback\n"
                "                       HOST:PORT (127.0.0.1:9464, [::1]:9464) or a Unix socket path (mode\n"
                "                       as the control socket's); off by default\n"
                "  --bridge-reconnect-grace SECONDS  how long a guest whose bridge dropped (not migrating)\n"
                "                       may take to reconnect before its processes' exits are reported\n"
                "                       lost; 0 reports them lost at once, as hcsshim does (default %u, max %u)\n"
                "Limits (a request over one fails with a one-line reason; N from 1 to the maximum shown;\n"
                "sizes take a K or M suffix for KiB or MiB):\n"
                "  --max-connections N     control connections at once; idle ones make way (default %u, max %u)\n"
                "  --max-vms N             VMs (default %u, max %u)\n"
                "  --max-processes N       processes per VM, running and remembered (default %u, max %u)\n"
                "  --max-streams N         stdio streams in total (default: what RLIMIT_NOFILE allows, max %u)\n"
                "  --max-attach-clients N  attach clients per process (default %u, max %u)\n"
                "  --max-bridge-frame SIZE bridge frame to or from a guest, header included\n"
                "                          (default and max %u, min %u)\n"
                "  --max-control-frame SIZE control request (ttrpc data) (default and max %u, min %u)\n"
                "  --stream-buffer-bytes SIZE  bytes read from a guest and not yet delivered, per stream;\n"
                "                          rounded up to %u-byte buffers (default %u, min %u, max %u)\n"
                "  --help\n"
                "Under systemd (vsockmuxd.service, Type=notify): READY=1 and STATUS= go to $NOTIFY_SOCKET,\n"
                "WATCHDOG=1 from the loop when $WATCHDOG_USEC is set, and a control socket passed through\n"
                "$LISTEN_FDS (vsockmuxd.socket, named \"" NOTIFY_CONTROL_FD_NAME "\") is served instead of\n"
                "binding --socket. SIGHUP reopens --log-file; SIGTERM and SIGINT stop.\n",
                (unsigned)(VMM_DEFAULT_RECONNECT_GRACE_NS / BRIDGE_NSEC_PER_SEC),
                (unsigned)(BRIDGE_CONN_RECONNECT_GRACE_MAX_NS / BRIDGE_NSEC_PER_SEC),
                CONTROL_SERVER_MAX_CONNECTIONS, CONTROL_SERVER_MAX_CONNECTIONS_LIMIT, VMM_DEFAULT_MAX_VMS,
                VMM_MAX_VMS_LIMIT, VMM_DEFAULT_MAX_PROCESSES, VMM_MAX_PROCESSES_LIMIT, VMM_MAX_STREAMS_LIMIT,
                ATTACH_DEFAULT_MAX_CLIENTS, VMM_ATTACH_MAX_CLIENTS_LIMIT, BRIDGE_MAX_FRAME, BRIDGE_HOST_MIN_FRAME,
                CONTROL_FRAME_MAX_DATA, CONTROL_FRAME_MIN_DATA, rc.buf_size, rc.buf_size * rc.stream_max_bufs,
                rc.buf_size * 2, rc.buf_size * rc.buf_count);
}

/* A count or a size in [min, max]; sizes may end in K or M (KiB, MiB). */
static int parse_limit(const char *opt, const char *s, bool size, uint64_t min, uint64_t max, uint64_t *ret)
{
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (size && end != s && (*end == 'K' || *end == 'k') && !end[1] && v <= UINT64_MAX >> 10) {
                v <<= 10;
                end++;
        } else if (size && end != s && (*end == 'M' || *end == 'm') && !end[1] && v <= UINT64_MAX >> 20) {
                v <<= 20;
                end++;
        }
        if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
                fprintf(stderr, "vsockmuxd: %s must be %s from %" PRIu64 " to %" PRIu64 ", got '%s'\n", opt,
                        size ? "a size in bytes" : "a number", min, max, s);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int parse_group(const char *s, gid_t *ret)
{
        struct group *g = getgrnam(s);
        char *end;
        unsigned long v;

        if (g) {
                *ret = g->gr_gid;
                return 0;
        }
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || end == s || v >= (unsigned long)CONTROL_NO_GROUP)
                return -EINVAL;
        *ret = (gid_t)v;
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "state-dir", required_argument, NULL, 'd' },
                { "hvsock-root", required_argument, NULL, 'r' },
                { "group", required_argument, NULL, 'g' },
                { "read-group", required_argument, NULL, OPT_READ_GROUP },
                { "max-connections", required_argument, NULL, 'c' },
                { "max-vms", required_argument, NULL, OPT_MAX_VMS },
                { "max-processes", required_argument, NULL, OPT_MAX_PROCESSES },
                { "max-streams", required_argument, NULL, OPT_MAX_STREAMS },
                { "max-attach-clients", required_argument, NULL, OPT_MAX_ATTACH_CLIENTS },
                { "max-bridge-frame", required_argument, NULL, OPT_MAX_BRIDGE_FRAME },
                { "max-control-frame", required_argument, NULL, OPT_MAX_CONTROL_FRAME },
                { "stream-buffer-bytes", required_argument, NULL, OPT_STREAM_BUFFER_BYTES },
                { "bridge-reconnect-grace", required_argument, NULL, OPT_RECONNECT_GRACE },
                { "exit-dir", required_argument, NULL, OPT_EXIT_DIR },
                { "default-log", required_argument, NULL, OPT_DEFAULT_LOG },
                { "metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN },
                { "log-level", required_argument, NULL, 'l' },
                { "log-file", required_argument, NULL, OPT_LOG_FILE },
                { "handover-fd", required_argument, NULL, OPT_HANDOVER_FD }, /* internal: daemon/upgrade.c */
                { "help", no_argument, NULL, 'h' },
                {},
        };
        struct service_config scfg = {
                .socket_path = getenv("VSOCKMUX_SOCKET"),
                .owner_uid = geteuid(),
                .group = CONTROL_NO_GROUP,
                .read_group = CONTROL_NO_GROUP,
        };
        struct vmm_config vcfg;
        struct relay_config rcfg;
        uint64_t v, stream_buffer = 0;
        _cleanup_(relay_freep) struct relay *relay = NULL;
        _cleanup_(service_freep) struct service *service = NULL;
        struct vmm *vmm = NULL;
        struct daemon_signals sig = { .fd = -1 };
        _cleanup_(notify_freep) struct daemon_notify *notify = NULL;
        _cleanup_(metrics_http_freep) struct metrics_http *metrics = NULL;
        static const struct metrics_http_ops metrics_ops = { .render = service_render_metrics };
        struct metrics_addr metrics_addr;
        bool metrics_on = false;
        _cleanup_free_ char *hvsock_root = NULL;
        _cleanup_(upgrade_freep) struct upgrade *upgrade = NULL;
        struct upgrade_daemon upgraded = {};
        _cleanup_close_ int handover_fd = -1;
        char handover_why[UPGRADE_WHY_MAX];
        const char *why;
        sigset_t mask;
        int c, r, activated;

        vmm_config_default(&vcfg);
        relay_config_default(&rcfg);
        vcfg.state_dir = DEFAULT_STATE_DIR;
        if (!scfg.socket_path || !scfg.socket_path[0])
                scfg.socket_path = DEFAULT_SOCKET;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        scfg.socket_path = optarg;
                        break;
                case 'd':
                        vcfg.state_dir = optarg;
                        break;
                case 'r':
                        free(hvsock_root);
                        hvsock_root = realpath(optarg, NULL);
                        if (!hvsock_root) {
                                fprintf(stderr, "vsockmuxd: --hvsock-root %s: %s\n", optarg, strerror(errno));
                                return 2;
                        }
                        vcfg.hvsock_root = hvsock_root;
                        break;
                case 'g':
                        if (geteuid() != 0 || parse_group(optarg, &scfg.group) < 0) {
                                fprintf(stderr, "vsockmuxd: --group needs root and a known group: %s\n", optarg);
                                return 2;
                        }
                        break;
                case OPT_READ_GROUP:
                        if (geteuid() != 0 || parse_group(optarg, &scfg.read_group) < 0 || scfg.read_group == 0) {
                                fprintf(stderr, "vsockmuxd: --read-group needs root and a known group other than root's: %s\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'c':
                        if (parse_limit("--max-connections", optarg, false, 1, CONTROL_SERVER_MAX_CONNECTIONS_LIMIT,
                                        &v) < 0)
                                return 2;
                        scfg.max_connections = (unsigned)v;
                        break;
                case OPT_MAX_VMS:
                        if (parse_limit("--max-vms", optarg, false, 1, VMM_MAX_VMS_LIMIT, &v) < 0)
                                return 2;
                        vcfg.max_vms = (unsigned)v;
                        break;
                case OPT_MAX_PROCESSES:
                        if (parse_limit("--max-processes", optarg, false, 1, VMM_MAX_PROCESSES_LIMIT, &v) < 0)
                                return 2;
                        vcfg.max_processes = (unsigned)v;
                        break;
                case OPT_MAX_STREAMS:
                        if (parse_limit("--max-streams", optarg, false, 1, VMM_MAX_STREAMS_LIMIT, &v) < 0)
                                return 2;
                        vcfg.max_streams = (unsigned)v;
                        break;
                case OPT_MAX_ATTACH_CLIENTS:
                        if (parse_limit("--max-attach-clients", optarg, false, 1, VMM_ATTACH_MAX_CLIENTS_LIMIT, &v) < 0)
                                return 2;
                        vcfg.attach_max_clients = (unsigned)v;
                        break;
                case OPT_MAX_BRIDGE_FRAME:
                        if (parse_limit("--max-bridge-frame", optarg, true, BRIDGE_HOST_MIN_FRAME, BRIDGE_MAX_FRAME,
                                        &v) < 0)
                                return 2;
                        vcfg.bridge_max_frame = (size_t)v;
                        break;
                case OPT_RECONNECT_GRACE:
                        if (parse_limit("--bridge-reconnect-grace", optarg, false, 0,
                                        BRIDGE_CONN_RECONNECT_GRACE_MAX_NS / BRIDGE_NSEC_PER_SEC, &v) < 0)
                                return 2;
                        vcfg.reconnect_grace_ns = v * BRIDGE_NSEC_PER_SEC;
                        break;
                case OPT_MAX_CONTROL_FRAME:
                        if (parse_limit("--max-control-frame", optarg, true, CONTROL_FRAME_MIN_DATA,
                                        CONTROL_FRAME_MAX_DATA, &v) < 0)
                                return 2;
                        scfg.max_control_frame = (size_t)v;
                        break;
                case OPT_STREAM_BUFFER_BYTES:
                        if (parse_limit("--stream-buffer-bytes", optarg, true, 2 * (uint64_t)rcfg.buf_size,
                                        (uint64_t)rcfg.buf_size * rcfg.buf_count, &stream_buffer) < 0)
                                return 2;
                        /* Whole pool buffers: the relay's bound is counted in them. */
                        rcfg.stream_max_bufs = (unsigned)((stream_buffer + rcfg.buf_size - 1) / rcfg.buf_size);
                        break;
                case OPT_METRICS_LISTEN:
                        if (metrics_addr_parse(optarg, &metrics_addr, &why) < 0) {
                                fprintf(stderr, "vsockmuxd: --metrics-listen %s: %s\n", optarg, why);
                                return 2;
                        }
                        metrics_on = true;
                        break;
                case OPT_DEFAULT_LOG:
                        if (strcmp(optarg, "journald") == 0)
                                vcfg.default_log_journald = true;
                        else if (strncmp(optarg, "k8s-file:/", 10) == 0)
                                vcfg.default_log_dir = optarg + 9;
                        else if (strcmp(optarg, "passthrough") != 0) {
                                fprintf(stderr, "vsockmuxd: --default-log wants k8s-file:/DIR, journald or passthrough, "
                                        "got '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case OPT_EXIT_DIR:
                        if (optarg[0] != '/') {
                                fprintf(stderr, "vsockmuxd: --exit-dir must be an absolute path, got '%s'\n", optarg);
                                return 2;
                        }
                        vcfg.exit_dir = optarg;
                        break;
                case 'l': {
                        enum log_level l = log_level_from_string(optarg);

                        if (l < 0) {
                                fprintf(stderr, "vsockmuxd: unknown log level '%s'\n", optarg);
                                return 2;
                        }
                        log_set_level(l);
                        break;
                }
                case OPT_LOG_FILE:
                        if (optarg[0] != '/') {
                                fprintf(stderr, "vsockmuxd: --log-file must be an absolute path\n");
                                return 2;
                        }
                        sig.log_file = optarg;
                        break;
                case OPT_HANDOVER_FD:
                        handover_fd = atoi(optarg);
                        if (handover_fd < 3 || fcntl(handover_fd, F_SETFD, FD_CLOEXEC) < 0) {
                                fprintf(stderr, "vsockmuxd: --handover-fd %s is not an open fd\n", optarg);
                                handover_fd = -1;
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "vsockmuxd: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }
        if (vcfg.state_dir[0] != '/' || scfg.socket_path[0] != '/') {
                fprintf(stderr, "vsockmuxd: --socket and --state-dir must be absolute paths\n");
                return 2;
        }

        if (sig.log_file) {
                r = log_open_file(sig.log_file);
                if (r < 0) {
                        fprintf(stderr, "vsockmuxd: --log-file %s: %s\n", sig.log_file, strerror(-r));
                        return 2;
                }
        }
        activated = notify_listen_fd(&scfg.adopted_fd, &why);
        if (activated < 0) {
                if (why)
                        log_error("vsockmuxd: socket activation: %s", why);
                else
                        log_errno(LOG_LEVEL_ERROR, activated, "vsockmuxd: socket activation");
                return 1;
        }
        scfg.adopt_fd = activated > 0;
        if (handover_fd >= 0) {
                /* A live upgrade: the old daemon hands us its sockets; it serves on if we refuse. */
                int control_fd = -1;
                pid_t old_pid = 0;

                r = upgrade_daemon_receive(handover_fd, &control_fd, &old_pid, handover_why, sizeof(handover_why));
                if (r < 0) {
                        log_error("vsockmuxd: cannot take over: %s", handover_why);
                        (void)upgrade_answer(handover_fd, r, handover_why);
                        return 1;
                }
                upgrade_daemon_take_watchdog(old_pid);
                if (control_fd >= 0) {
                        if (scfg.adopt_fd)
                                safe_close(scfg.adopted_fd);
                        scfg.adopt_fd = true;
                        scfg.adopted_fd = control_fd;
                }
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGUSR2);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        sig.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sig.fd < 0)
                return log_errno(LOG_LEVEL_ERROR, -errno, "vsockmuxd: signalfd"), 1;

        r = relay_new(&rcfg, &relay);
        if (r < 0)
                return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: cannot start the io_uring loop"), 1;
        /* Without --hvsock-root, hybrid-vsock paths stay inside the state directory. */
        vcfg.hvsock_in_state_dir = true;
        if (!vcfg.max_streams)
                vcfg.max_streams = relay_stream_capacity(relay);
        else if (vcfg.max_streams > relay_stream_capacity(relay))
                log_warn("vsockmuxd: --max-streams %u is above what RLIMIT_NOFILE allows (%u streams): execs past "
                         "that fail for want of fds", vcfg.max_streams, relay_stream_capacity(relay));
        r = service_alloc(&service);
        if (r >= 0)
                r = vmm_new(relay, &vcfg, service_on_event, service, &vmm);
        if (r < 0)
                return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: cannot set up state in %s", vcfg.state_dir), 1;
        r = service_start(service, relay, vmm, &scfg);
        if (r < 0) {
                if (scfg.adopt_fd)
                        safe_close(scfg.adopted_fd);
                log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: cannot serve %s", scfg.socket_path);
                vmm_free(vmm);
                return 1;
        }
        if (metrics_on) {
                r = metrics_http_new(relay, &metrics_addr, scfg.group, scfg.read_group, &metrics_ops, service,
                                     &metrics);
                if (r < 0) {
                        log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: --metrics-listen");
                        vmm_free(vmm);
                        return 1;
                }
                log_info("vsockmuxd: metrics on %s", metrics_http_name(metrics));
        }
        r = notify_new(relay, service_status, service, &notify);
        if (r < 0) {
                log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: $NOTIFY_SOCKET or $WATCHDOG_USEC");
                vmm_free(vmm);
                return 1;
        }
        upgraded = (struct upgrade_daemon){
                .relay = relay, .service = service, .vmm = vmm, .notify = notify,
                .metrics = { .http = &metrics, .addr = metrics_on ? &metrics_addr : NULL, .group = scfg.group,
                             .read_group = scfg.read_group, .ops = &metrics_ops, .userdata = service },
        };
        r = upgrade_new(relay, argv, &upgrade_daemon_ops, &upgraded, &upgrade);
        if (r < 0) {
                log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: live upgrade");
                vmm_free(vmm);
                return 1;
        }
        service_set_upgrade(service, upgrade);
        sig.upgrade = upgrade;
        sig.relay = relay;
        sig.notify = notify;
        sig.op.fn = signals_on_read;
        if (signals_arm(&sig) < 0) {
                vmm_free(vmm);
                return 1;
        }
        log_info("vsockmuxd: listening on %s%s; stream capacity %u; limits: %u VMs, %u processes per VM, %u streams, "
                 "%u attach clients per process, %u control connections, bridge frame %zu, control frame %zu, "
                 "%u bytes buffered per stream", scfg.socket_path,
                 handover_fd >= 0 ? " (handed over)" : scfg.adopt_fd ? " (socket-activated)" : "", relay_stream_capacity(relay), vcfg.max_vms,
                 vcfg.max_processes, vcfg.max_streams, vcfg.attach_max_clients,
                 scfg.max_connections ?: CONTROL_SERVER_MAX_CONNECTIONS,
                 vcfg.bridge_max_frame ?: BRIDGE_MAX_FRAME, scfg.max_control_frame ?: CONTROL_FRAME_MAX_DATA,
                 rcfg.stream_max_bufs * rcfg.buf_size);
        r = notify_ready(notify);
        if (r < 0)
                log_errno(LOG_LEVEL_WARN, r, "vsockmuxd: cannot tell systemd we are ready");
        if (notify_watchdog_usec(notify))
                log_info("vsockmuxd: watchdog every %" PRIu64 " ms", notify_watchdog_usec(notify) / 2000);
        if (handover_fd >= 0) {
                r = upgrade_answer(handover_fd, 0, NULL);
                if (r < 0)
                        log_errno(LOG_LEVEL_WARN, r, "vsockmuxd: cannot tell the old daemon we serve");
                else
                        log_info("vsockmuxd: took over from the old daemon");
                handover_fd = safe_close(handover_fd);
        }

        r = relay_run(relay);
        if (r < 0)
                log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: the loop failed");
        else if (upgraded.new_pid > 0) {
                /* The Upgrade call's answer reaches its client before we go. */
                uint64_t deadline = relay_now_ns(relay) + DAEMON_STOP_FLUSH_NS;

                while (service_tx_pending(service) > 0 && relay_now_ns(relay) < deadline)
                        if (relay_run_once(relay, 50 * 1000000ll) < 0)
                                break;
                log_info("vsockmuxd: handed over to pid %d", (int)upgraded.new_pid);
        } else if (vmm_quiesce(vmm) > 0) {
                /* What was read from a guest reaches its endpoint before we go; a stalled endpoint
                 * gets a bounded wait, then its held bytes are reported lost. */
                uint64_t deadline = relay_now_ns(relay) + DAEMON_STOP_FLUSH_NS;

                while (vmm_quiesce_pending(vmm) > 0 && relay_now_ns(relay) < deadline)
                        if (relay_run_once(relay, 50 * 1000000ll) < 0)
                                break;
                if (vmm_quiesce_pending(vmm) > 0)
                        log_warn("vsockmuxd: %u streams could not flush to their endpoints in time",
                                 vmm_quiesce_pending(vmm));
        }
        sig.upgrade = NULL;
        service_set_upgrade(service, NULL);
        upgrade = upgrade_free(upgrade);
        /* VMs first: their waiters still reach clients through the server. */
        metrics = metrics_http_free(metrics);
        vmm = vmm_free(vmm);
        notify = notify_free(notify);
        service = service_free(service);
        relay_run_once(relay, 0);
        safe_close(sig.fd);
        log_info("vsockmuxd: stopped");
        return r < 0 ? 1 : 0;
}
