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
#include "daemon/event-ring.h"
#include "daemon/runtime-limits.h"
#include "daemon/metrics-http.h"
#include "daemon/upgrade-ops.h"
#include "daemon/migrate.h"
#include "daemon/relay-log.h"
#include "daemon/notify.h"
#include "daemon/service.h"
#include "daemon/vmm.h"
#include "relay/relay.h"
#include "util/log.h"
#include "util/size.h"

#define DEFAULT_SOCKET "/run/vsockmux/vsockmux.sock"
#define DEFAULT_STATE_DIR "/run/vsockmux"
#define DAEMON_STOP_FLUSH_NS (5ull * 1000000000ull)
/* --fdstore: how long a stop waits for its VMs to be quiet before it stops the plain way (within
 * the unit's TimeoutStopSec=30s, with the plain stop's flush after it). */
#define DAEMON_STORE_HOLD_NS (10ull * 1000000000ull)

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
        OPT_EVENTS_RING,
        OPT_VM_HELPER,
        OPT_LIMITS_FILE,
        OPT_NO_RECORD,
        OPT_FDSTORE,
};

struct daemon_signals {
        struct relay_op op;
        struct relay *relay;
        int fd;
        struct signalfd_siginfo info;
        bool stopping;
        struct daemon_notify *notify;
        const char *log_file;              /* --log-file, reopened on SIGHUP; NULL: stderr as given */
        struct upgrade *upgrade;           /* SIGUSR2 starts a live upgrade to our own binary */
        bool fdstore;                      /* --fdstore: a stop hands over to systemd's fd store */
        struct daemon_limits_file *limits; /* --limits-file, re-read on SIGHUP */
};

static int signals_arm(struct daemon_signals *s);

/* SIGHUP: a reload, never a stop. The log file is reopened so logrotate can move it away; the
 * limits file is read again, and applied only if all of it is right. */
static void signals_reload(struct daemon_signals *s)
{
        int r;

        (void)notify_reloading(s->notify);
        daemon_limits_reload(s->limits);
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

static void signals_store_done(int r, pid_t pid, const char *binary, const char *why, void *userdata)
{
        struct daemon_signals *s = userdata;

        (void)pid;
        (void)binary;
        if (r >= 0) {
                log_info("vsockmuxd: every connection waits in systemd's fd store for the next vsockmuxd");
                return;
        }
        log_warn("vsockmuxd: cannot leave the connections in systemd's fd store: %s; stopping the plain way", why);
        relay_stop(s->relay);
}

/* --fdstore: a stop hands everything over, as to a new daemon, into systemd's fd store; a
 * restart takes it back and no guest sees a connection close. false: stop the plain way. */
static bool signals_stop_stored(struct daemon_signals *s)
{
        char why[UPGRADE_WHY_MAX];

        if (!s->fdstore || !s->upgrade || !notify_enabled(s->notify))
                return false;
        if (upgrade_store(s->upgrade, DAEMON_STORE_HOLD_NS, signals_store_done, s, why, sizeof(why)) < 0) {
                log_warn("vsockmuxd: cannot leave the connections in systemd's fd store: %s; stopping the plain way",
                         why);
                return false;
        }
        return true;
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
                if (!signals_stop_stored(s))
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
                "  --fdstore            on a stop, leave every connection to systemd's fd store (the unit\n"
                "                       needs FileDescriptorStoreMax=1): a restart takes them back, and\n"
                "                       no guest sees its bridge or stdio connections close\n"
                "  --no-record          keep no record of the VMs in DIR/vms: a stop or a crash then loses\n"
                "                       every process (by default a restart recovers them)\n"
                "  --hvsock-root DIR    accept hybrid-vsock paths only inside DIR (no symlinks, no \"..\";\n"
                "                       default: the --state-dir)\n"
                "  --group NAME|GID     (root only) let this group use the control socket (mode 0660)\n"
                "  --read-group NAME|GID  (root only) let this group list and watch only: VmList, Ps,\n"
                "                       Stats, Events and Wait; other methods answer PERMISSION_DENIED\n"
                "  --log-level LEVEL    error, warn, info or debug (default info)\n"
                "  --log-file PATH      append the log to PATH instead of stderr; SIGHUP reopens it\n"
                "  --limits-file PATH   \"key = N\" lines for max-vms, max-processes, max-streams,\n"
                "                       max-attach-clients and max-connections; they override the\n"
                "                       command line's, and SIGHUP reads the file again\n"
                "  --exit-dir DIR       write DIR/<exec-id> with the decimal exit status once the output\n"
                "                       drained, atomically (conmon's --exit-dir; -1 when it was lost)\n"
                "  --default-log DRIVER where a detached exec's output goes when it names no --log and no\n"
                "                       --stdout/--stderr: k8s-file:/DIR (DIR/<exec-id>.log), journald,\n"
                "                       or passthrough (kept for attach; the default)\n"
                "  --metrics-listen ADDR  serve GET /metrics (Prometheus text) on ADDR: a loopback\n"
                "                       HOST:PORT (127.0.0.1:9464, [::1]:9464) or a Unix socket path (mode\n"
                "                       as the control socket's); off by default\n"
                "  --vm-helper PATH     the program Migrate runs libvirt in (default " VSOCKMUX_VM_HELPER_DEFAULT ")\n"
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
                "  --events-ring N         recent events kept for `vsockmux events --since` (default %u, max %u)\n"
                "  --stream-buffer-bytes SIZE  bytes read from a guest and not yet delivered, per stream;\n"
                "                          rounded up to %u-byte buffers (default %u, min %u, max %u)\n"
                "  --help\n"
                "Under systemd (vsockmuxd.service, Type=notify): READY=1 and STATUS= go to $NOTIFY_SOCKET,\n"
                "WATCHDOG=1 from the loop when $WATCHDOG_USEC is set, and a control socket passed through\n"
                "$LISTEN_FDS (vsockmuxd.socket, named \"" NOTIFY_CONTROL_FD_NAME "\") is served instead of\n"
                "binding --socket. SIGHUP reopens --log-file and re-reads --limits-file; SIGTERM and SIGINT stop.\n",
                (unsigned)(VMM_DEFAULT_RECONNECT_GRACE_NS / BRIDGE_NSEC_PER_SEC),
                (unsigned)(BRIDGE_CONN_RECONNECT_GRACE_MAX_NS / BRIDGE_NSEC_PER_SEC), CONTROL_SERVER_MAX_CONNECTIONS,
                CONTROL_SERVER_MAX_CONNECTIONS_LIMIT, VMM_DEFAULT_MAX_VMS, VMM_MAX_VMS_LIMIT, VMM_DEFAULT_MAX_PROCESSES,
                VMM_MAX_PROCESSES_LIMIT, VMM_MAX_STREAMS_LIMIT, ATTACH_DEFAULT_MAX_CLIENTS,
                VMM_ATTACH_MAX_CLIENTS_LIMIT, BRIDGE_MAX_FRAME, BRIDGE_HOST_MIN_FRAME, CONTROL_FRAME_MAX_DATA,
                CONTROL_FRAME_MIN_DATA, EVENT_RING_DEFAULT_SIZE, EVENT_RING_MAX_SIZE, rc.buf_size,
                rc.buf_size * rc.stream_max_bufs, rc.buf_size * 2, rc.buf_size * rc.buf_count);
}

/* A count or a size in [min, max]; sizes may end in K, M or G (KiB, MiB, GiB). */
static int parse_limit(const char *opt, const char *s, bool size, uint64_t min, uint64_t max, uint64_t *ret)
{
        uint64_t v;
        char *end;
        int r;

        if (size)
                r = size_parse(s, &v);
        else {
                errno = 0;
                v = strtoull(s, &end, 10);
                r = errno || end == s || *end || s[0] < '0' || s[0] > '9' ? -EINVAL : 0;
        }
        if (r < 0 || v < min || v > max) {
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

static const struct option daemon_options_table[] = {
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
        { "events-ring", required_argument, NULL, OPT_EVENTS_RING },
        { "vm-helper", required_argument, NULL, OPT_VM_HELPER },
        { "log-level", required_argument, NULL, 'l' },
        { "log-file", required_argument, NULL, OPT_LOG_FILE },
        { "limits-file", required_argument, NULL, OPT_LIMITS_FILE },
        { "no-record", no_argument, NULL, OPT_NO_RECORD },
        { "fdstore", no_argument, NULL, OPT_FDSTORE },
        { "handover-fd", required_argument, NULL, OPT_HANDOVER_FD }, /* internal: daemon/upgrade.c */
        { "help", no_argument, NULL, 'h' },
        {},
};

/* What the command line sets. */
struct daemon_options {
        struct service_config scfg;
        struct vmm_config vcfg;
        struct relay_config rcfg;
        char *hvsock_root;       /* --hvsock-root, resolved */
        const char *log_file;    /* --log-file */
        const char *limits_file; /* --limits-file */
        struct metrics_addr metrics_addr;
        bool metrics_on;
        int handover_fd;                  /* --handover-fd: a live upgrade hands us its sockets; -1: none */
        bool handover_stored;             /* handover_fd came from systemd's fd store: no old daemon */
        bool fdstore;                     /* --fdstore */
        struct upgrade_received handover; /* its VMs, kept until the vmm can adopt them */
        char **argv;                      /* what a live upgrade starts the new daemon with */
};

/* What main starts, runs and stops. */
struct daemon {
        struct relay *relay;
        struct service *service;
        struct vmm *vmm;
        struct daemon_signals sig;
        struct daemon_notify *notify;
        struct metrics_http *metrics;
        struct upgrade *upgrade;
        struct upgrade_daemon upgraded; /* what upgrade-ops.c hands over; new_pid once it did */
        struct daemon_limits_file limits;
};

static void options_init(struct daemon_options *o)
{
        *o = (struct daemon_options){
                .scfg = {
                        .socket_path = getenv("VSOCKMUX_SOCKET"),
                        .owner_uid = geteuid(),
                        .group = CONTROL_NO_GROUP,
                        .read_group = CONTROL_NO_GROUP,
                },
                .handover_fd = -1,
        };
        vmm_config_default(&o->vcfg);
        relay_config_default(&o->rcfg);
        o->vcfg.state_dir = DEFAULT_STATE_DIR;
        o->vcfg.record = true;
        if (!o->scfg.socket_path || !o->scfg.socket_path[0])
                o->scfg.socket_path = DEFAULT_SOCKET;
}

/* The caps (--max-*, --stream-buffer-bytes, --bridge-reconnect-grace). 1: not one of them. */
static int option_limit(struct daemon_options *o, int c, const char *arg)
{
        uint64_t v;

        switch (c) {
        case 'c':
                if (parse_limit("--max-connections", arg, false, 1, CONTROL_SERVER_MAX_CONNECTIONS_LIMIT, &v) < 0)
                        return -EINVAL;
                o->scfg.max_connections = (unsigned)v;
                return 0;
        case OPT_MAX_VMS:
                if (parse_limit("--max-vms", arg, false, 1, VMM_MAX_VMS_LIMIT, &v) < 0)
                        return -EINVAL;
                o->vcfg.max_vms = (unsigned)v;
                return 0;
        case OPT_MAX_PROCESSES:
                if (parse_limit("--max-processes", arg, false, 1, VMM_MAX_PROCESSES_LIMIT, &v) < 0)
                        return -EINVAL;
                o->vcfg.max_processes = (unsigned)v;
                return 0;
        case OPT_MAX_STREAMS:
                if (parse_limit("--max-streams", arg, false, 1, VMM_MAX_STREAMS_LIMIT, &v) < 0)
                        return -EINVAL;
                o->vcfg.max_streams = (unsigned)v;
                return 0;
        case OPT_EVENTS_RING:
                if (parse_limit("--events-ring", arg, false, 1, EVENT_RING_MAX_SIZE, &v) < 0)
                        return -EINVAL;
                o->scfg.events_ring = (unsigned)v;
                return 0;
        case OPT_MAX_ATTACH_CLIENTS:
                if (parse_limit("--max-attach-clients", arg, false, 1, VMM_ATTACH_MAX_CLIENTS_LIMIT, &v) < 0)
                        return -EINVAL;
                o->vcfg.attach_max_clients = (unsigned)v;
                return 0;
        case OPT_MAX_BRIDGE_FRAME:
                if (parse_limit("--max-bridge-frame", arg, true, BRIDGE_HOST_MIN_FRAME, BRIDGE_MAX_FRAME, &v) < 0)
                        return -EINVAL;
                o->vcfg.bridge_max_frame = (size_t)v;
                return 0;
        case OPT_RECONNECT_GRACE:
                if (parse_limit("--bridge-reconnect-grace", arg, false, 0,
                                BRIDGE_CONN_RECONNECT_GRACE_MAX_NS / BRIDGE_NSEC_PER_SEC, &v) < 0)
                        return -EINVAL;
                o->vcfg.reconnect_grace_ns = v * BRIDGE_NSEC_PER_SEC;
                return 0;
        case OPT_MAX_CONTROL_FRAME:
                if (parse_limit("--max-control-frame", arg, true, CONTROL_FRAME_MIN_DATA, CONTROL_FRAME_MAX_DATA, &v) <
                    0)
                        return -EINVAL;
                o->scfg.max_control_frame = (size_t)v;
                return 0;
        case OPT_STREAM_BUFFER_BYTES:
                if (parse_limit("--stream-buffer-bytes", arg, true, 2 * (uint64_t)o->rcfg.buf_size,
                                (uint64_t)o->rcfg.buf_size * o->rcfg.buf_count, &v) < 0)
                        return -EINVAL;
                /* Whole pool buffers: the relay's bound is counted in them. */
                o->rcfg.stream_max_bufs = (unsigned)((v + o->rcfg.buf_size - 1) / o->rcfg.buf_size);
                return 0;
        default: return 1;
        }
}

/* Paths and groups: who may connect, where state and hybrid-vsock sockets live. 1: not one of them. */
static int option_place(struct daemon_options *o, int c, const char *arg)
{
        switch (c) {
        case 's': o->scfg.socket_path = arg; return 0;
        case 'd': o->vcfg.state_dir = arg; return 0;
        case 'r':
                free(o->hvsock_root);
                o->hvsock_root = realpath(arg, NULL);
                if (!o->hvsock_root) {
                        fprintf(stderr, "vsockmuxd: --hvsock-root %s: %s\n", arg, strerror(errno));
                        return -EINVAL;
                }
                o->vcfg.hvsock_root = o->hvsock_root;
                return 0;
        case 'g':
                if (geteuid() != 0 || parse_group(arg, &o->scfg.group) < 0) {
                        fprintf(stderr, "vsockmuxd: --group needs root and a known group: %s\n", arg);
                        return -EINVAL;
                }
                return 0;
        case OPT_READ_GROUP:
                if (geteuid() != 0 || parse_group(arg, &o->scfg.read_group) < 0 || o->scfg.read_group == 0) {
                        fprintf(stderr, "vsockmuxd: --read-group needs root and a known group other than root's: %s\n",
                                arg);
                        return -EINVAL;
                }
                return 0;
        case OPT_VM_HELPER:
                if (arg[0] != '/') {
                        fprintf(stderr, "vsockmuxd: --vm-helper must be an absolute path, got '%s'\n", arg);
                        return -EINVAL;
                }
                o->scfg.vm_helper = arg;
                return 0;
        case OPT_EXIT_DIR:
                if (arg[0] != '/') {
                        fprintf(stderr, "vsockmuxd: --exit-dir must be an absolute path, got '%s'\n", arg);
                        return -EINVAL;
                }
                o->vcfg.exit_dir = arg;
                return 0;
        case OPT_HANDOVER_FD:
                o->handover_fd = atoi(arg);
                if (o->handover_fd < 3 || fcntl(o->handover_fd, F_SETFD, FD_CLOEXEC) < 0) {
                        fprintf(stderr, "vsockmuxd: --handover-fd %s is not an open fd\n", arg);
                        o->handover_fd = -1;
                        return -EINVAL;
                }
                return 0;
        default: return 1;
        }
}

/* What vsockmuxd tells: the log, the metrics and the processes' default log. 1: not one of them. */
static int option_output(struct daemon_options *o, int c, const char *arg)
{
        const char *why;

        switch (c) {
        case OPT_DEFAULT_LOG:
                if (strcmp(arg, "journald") == 0)
                        o->vcfg.default_log_journald = true;
                else if (strncmp(arg, "k8s-file:/", 10) == 0)
                        o->vcfg.default_log_dir = arg + 9;
                else if (strcmp(arg, "passthrough") != 0) {
                        fprintf(stderr,
                                "vsockmuxd: --default-log wants k8s-file:/DIR, journald or passthrough, "
                                "got '%s'\n",
                                arg);
                        return -EINVAL;
                }
                return 0;
        case OPT_METRICS_LISTEN:
                if (metrics_addr_parse(arg, &o->metrics_addr, &why) < 0) {
                        fprintf(stderr, "vsockmuxd: --metrics-listen %s: %s\n", arg, why);
                        return -EINVAL;
                }
                o->metrics_on = true;
                return 0;
        case 'l': {
                enum log_level l = log_level_from_string(arg);

                if (l < 0) {
                        fprintf(stderr, "vsockmuxd: unknown log level '%s'\n", arg);
                        return -EINVAL;
                }
                log_set_level(l);
                return 0;
        }
        case OPT_LOG_FILE:
                if (arg[0] != '/') {
                        fprintf(stderr, "vsockmuxd: --log-file must be an absolute path\n");
                        return -EINVAL;
                }
                o->log_file = arg;
                return 0;
        case OPT_NO_RECORD: o->vcfg.record = false; return 0;
        case OPT_FDSTORE: o->fdstore = true; return 0;
        case OPT_LIMITS_FILE:
                if (arg[0] != '/') {
                        fprintf(stderr, "vsockmuxd: --limits-file must be an absolute path\n");
                        return -EINVAL;
                }
                o->limits_file = arg;
                return 0;
        default: return 1;
        }
}

/* 0: run; 1: --help was printed; -EINVAL: a bad command line (said on stderr). */
static int options_parse(int argc, char **argv, struct daemon_options *o)
{
        int c, r;

        options_init(o);
        o->argv = argv;
        while ((c = getopt_long(argc, argv, "h", daemon_options_table, NULL)) >= 0) {
                if (c == 'h') {
                        usage(stdout);
                        return 1;
                }
                r = option_limit(o, c, optarg);
                if (r == 1)
                        r = option_place(o, c, optarg);
                if (r == 1)
                        r = option_output(o, c, optarg);
                if (r == 1)
                        usage(stderr);
                if (r != 0)
                        return -EINVAL;
        }
        if (optind < argc) {
                fprintf(stderr, "vsockmuxd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        if (o->vcfg.state_dir[0] != '/' || o->scfg.socket_path[0] != '/') {
                fprintf(stderr, "vsockmuxd: --socket and --state-dir must be absolute paths\n");
                return -EINVAL;
        }
        if (o->log_file) {
                r = log_open_file(o->log_file);
                if (r < 0) {
                        fprintf(stderr, "vsockmuxd: --log-file %s: %s\n", o->log_file, strerror(-r));
                        return -EINVAL;
                }
        }
        return 0;
}

/* SIGTERM, SIGINT and SIGHUP arrive through a signalfd the loop reads. */
static int daemon_take_signals(struct daemon *d, const struct daemon_options *o)
{
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGUSR2);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        d->sig.log_file = o->log_file;
        d->sig.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (d->sig.fd < 0)
                return log_errno(LOG_LEVEL_ERROR, -errno, "vsockmuxd: signalfd");
        return 0;
}

static void daemon_on_relay_event(struct relay *r, const struct relay_event *ev, void *userdata)
{
        relay_log_event(ev);
}

static const struct relay_ops daemon_relay_ops = {
        .event = daemon_on_relay_event,
};

/* The fd table a recovery grows into, made once while the process has one thread: the kernel grows
 * it by doublings, and with a second thread (the endpoint opener) each one waits for an RCU grace
 * period (expand_fdtable): B13's recovery of 1,000 processes spent 30-50 ms of its first 50-110 in
 * six of them. 16384 fds cost the kernel 128 KiB; a table that must grow past them still can. */
#define DAEMON_FD_TABLE_MIN 16384u

static void daemon_grow_fd_table(unsigned max_streams)
{
        unsigned want = MIN(2u * (uint64_t)max_streams + 64u, DAEMON_FD_TABLE_MIN);
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC), high;

        if (fd < 0)
                return;
        /* Best effort: a lower RLIMIT_NOFILE refuses, and the table grows as before. */
        high = fcntl(fd, F_DUPFD_CLOEXEC, (int)want - 1);
        if (high >= 0)
                close(high);
        close(fd);
}

/* The loop, and the stream cap it can hold. */
static int daemon_start_relay(struct daemon *d, struct daemon_options *o)
{
        int r = relay_new(&o->rcfg, &d->relay);

        if (r < 0)
                return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: cannot start the io_uring loop");
        relay_set_ops(d->relay, &daemon_relay_ops, d);
        /* Without --hvsock-root, hybrid-vsock paths stay inside the state directory. */
        o->vcfg.hvsock_in_state_dir = true;
        o->vcfg.stream_capacity = relay_stream_capacity(d->relay);
        if (!o->vcfg.max_streams)
                o->vcfg.max_streams = relay_stream_capacity(d->relay);
        else if (o->vcfg.max_streams > relay_stream_capacity(d->relay))
                log_warn("vsockmuxd: --max-streams %u is above what RLIMIT_NOFILE allows (%u streams): execs past "
                         "that fail for want of fds",
                         o->vcfg.max_streams, relay_stream_capacity(d->relay));
        daemon_grow_fd_table(o->vcfg.max_streams);
        return 0;
}

/* A control socket systemd handed over (vsockmuxd.socket) is served instead of binding one; a
 * handover a stop left in systemd's fd store (--fdstore) is taken over as a live upgrade's. */
static int daemon_adopt_socket(struct daemon_options *o)
{
        const char *why;
        int control = -1, stored = -1;
        int r = notify_listen_fds(&control, &stored, &why);

        if (r < 0) {
                if (why)
                        log_error("vsockmuxd: socket activation: %s", why);
                else
                        log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: socket activation");
                return r;
        }
        o->scfg.adopt_fd = control >= 0;
        o->scfg.adopted_fd = control;
        if (stored >= 0 && o->handover_fd >= 0) {
                log_warn("vsockmuxd: a live upgrade's handover comes first: the one in systemd's fd store is "
                         "dropped");
                safe_close(stored);
                (void)notify_fdstore_remove();
        } else if (stored >= 0) {
                o->handover_fd = stored;
                o->handover_stored = true;
        }
        return 0;
}

/* A handover from systemd's fd store that cannot be taken: its connections close (the guests
 * redial) and the VMs come back from the record, as after a plain restart. */
static void daemon_drop_stored(struct daemon_options *o, int r, const char *why)
{
        if (r == -EPIPE)
                log_info("vsockmuxd: systemd's fd store held no handover: recovering from the record");
        else
                log_warn("vsockmuxd: cannot take over from systemd's fd store: %s; recovering from the record", why);
        o->handover_fd = safe_close(o->handover_fd);
        o->handover_stored = false;
        upgrade_received_done(&o->handover);
}

/* A live upgrade: the old daemon hands us its sockets (it serves on if we refuse). */
static int daemon_take_over(struct daemon_options *o)
{
        char why[UPGRADE_WHY_MAX];
        int control_fd = -1, r;
        pid_t old_pid = 0;

        if (o->handover_fd < 0)
                return 0;
        r = upgrade_daemon_receive(o->handover_fd, o->handover_stored, &o->handover, &control_fd, &old_pid, why,
                                   sizeof(why));
        /* Read (or unreadable): the store must not hand it to a later start again. */
        if (o->handover_stored)
                (void)notify_fdstore_remove();
        if (r < 0 && o->handover_stored) {
                daemon_drop_stored(o, r, why);
                return 0;
        }
        if (r < 0) {
                log_error("vsockmuxd: cannot take over: %s", why);
                (void)upgrade_answer(o->handover_fd, r, why);
                return r;
        }
        upgrade_daemon_take_watchdog(old_pid);
        if (control_fd >= 0) {
                if (o->scfg.adopt_fd)
                        safe_close(o->scfg.adopted_fd);
                o->scfg.adopt_fd = true;
                o->scfg.adopted_fd = control_fd;
        }
        return 0;
}

/* A live upgrade: every VM the old daemon handed over is taken over before we say "ready". On a
 * failure the old daemon takes them back, so nothing it still needs may be touched: the adopted
 * sockets are shared with it. The half-built VM vmm_adopt() frees leaves them be (the relay's fds
 * are shared until "go"); we answer and go without freeing anything else. */
static int daemon_adopt_vms(struct daemon *d, struct daemon_options *o)
{
        char why[UPGRADE_WHY_MAX];
        int r;

        if (o->handover_fd < 0)
                return 0;
        r = upgrade_daemon_adopt_vms(&o->handover, d->vmm, why, sizeof(why));
        if (r < 0) {
                log_error("vsockmuxd: cannot take over: %s", why);
                /* From the store nobody takes them back: the next start recovers from the record. */
                if (!o->handover_stored)
                        (void)upgrade_answer(o->handover_fd, r, why);
                _exit(1);
        }
        upgrade_received_done(&o->handover);
        return 0;
}

/* --limits-file at start: its keys override the command line's, as they will at each SIGHUP. */
static int daemon_read_limits(struct daemon *d, struct daemon_options *o)
{
        struct daemon_limits_file *lf = &d->limits;
        char why[CONF_FILE_WHY_MAX];
        int r;

        lf->base = (struct daemon_limits){
                .max_vms = o->vcfg.max_vms,
                .max_processes = o->vcfg.max_processes,
                .max_streams = o->vcfg.max_streams,
                .max_attach_clients = o->vcfg.attach_max_clients,
                .max_connections = o->scfg.max_connections ?: CONTROL_SERVER_MAX_CONNECTIONS,
        };
        lf->now = lf->base;
        lf->path = o->limits_file;
        d->sig.limits = lf;
        if (!lf->path)
                return 0;
        r = daemon_limits_read(lf->path, &lf->base, &lf->now, why, sizeof(why));
        if (r < 0) {
                log_error("vsockmuxd: --limits-file %s: %s", lf->path, why);
                return r;
        }
        o->vcfg.max_vms = lf->now.max_vms;
        o->vcfg.max_processes = lf->now.max_processes;
        o->vcfg.max_streams = lf->now.max_streams;
        o->vcfg.attach_max_clients = lf->now.max_attach_clients;
        o->scfg.max_connections = lf->now.max_connections;
        return 0;
}

/* The model and the control socket. */
static int daemon_start_service(struct daemon *d, struct daemon_options *o)
{
        int r = service_alloc(&d->service);

        if (r >= 0)
                r = vmm_new(d->relay, &o->vcfg, service_on_event, d->service, &d->vmm);
        if (r < 0)
                return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: cannot set up state in %s", o->vcfg.state_dir);
        d->limits.vmm = d->vmm;
        d->limits.service = d->service;
        r = service_start(d->service, d->relay, d->vmm, &o->scfg);
        if (r < 0) {
                if (o->scfg.adopt_fd)
                        safe_close(o->scfg.adopted_fd);
                return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: cannot serve %s", o->scfg.socket_path);
        }
        upgrade_daemon_adopt_events(&o->handover, d->service);
        return 0;
}

/* Restart and crash recovery: the VMs a previous vsockmuxd recorded in --state-dir come back (a
 * live upgrade's handover is authoritative instead). */
static int daemon_recover(struct daemon *d, const struct daemon_options *o)
{
        int r;

        if (o->handover_fd >= 0)
                return 0;
        r = vmm_recover(d->vmm);
        if (r < 0)
                return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: cannot read the record in %s/vms", o->vcfg.state_dir);
        return 0;
}

/* SIGTERM is a clean stop: every VM recorded with its final offsets, the guests left redialling,
 * the waiters told that the processes go on (never "exit status lost"). Not after a hand-over:
 * the new daemon owns the VMs and their records. */
static void daemon_stop_recorded(struct daemon *d, bool ran)
{
        unsigned n;

        if (!ran || !d->vmm || d->upgraded.new_pid > 0 || d->upgraded.stored)
                return;
        n = vmm_stop_recorded(d->vmm, VMM_STOPPED_EXEC_MESSAGE);
        if (n > 0)
                log_info("vsockmuxd: %u VMs recorded; a restart recovers them", n);
}

static const struct metrics_http_ops daemon_metrics_ops = { .render = service_render_metrics };

/* What a live upgrade hands over (upgrade-ops.c), started by Upgrade or SIGUSR2. */
static int daemon_start_upgrade(struct daemon *d, const struct daemon_options *o)
{
        int r;

        d->upgraded = (struct upgrade_daemon){
                .relay = d->relay,
                .service = d->service,
                .vmm = d->vmm,
                .notify = d->notify,
                .metrics = { .http = &d->metrics,
                             .addr = o->metrics_on ? &o->metrics_addr : NULL,
                             .group = o->scfg.group,
                             .read_group = o->scfg.read_group,
                             .ops = &daemon_metrics_ops,
                             .userdata = d->service },
        };
        r = upgrade_new(d->relay, o->argv, &upgrade_daemon_ops, &d->upgraded, &d->upgrade);
        if (r < 0)
                return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: live upgrade");
        service_set_upgrade(d->service, d->upgrade);
        d->sig.upgrade = d->upgrade;
        d->sig.fdstore = o->fdstore;
        return 0;
}

/* --metrics-listen, systemd's notifications and watchdog, the live upgrade, and the signals on the loop. */
static int daemon_start_outputs(struct daemon *d, const struct daemon_options *o)
{
        int r;

        if (o->metrics_on) {
                r = metrics_http_new(d->relay, &o->metrics_addr, o->scfg.group, o->scfg.read_group, &daemon_metrics_ops,
                                     d->service, &d->metrics);
                if (r < 0)
                        return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: --metrics-listen");
                log_info("vsockmuxd: metrics on %s", metrics_http_name(d->metrics));
        }
        r = notify_new(d->relay, service_status, d->service, &d->notify);
        if (r < 0)
                return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: $NOTIFY_SOCKET or $WATCHDOG_USEC");
        r = daemon_start_upgrade(d, o);
        if (r < 0)
                return r;
        d->sig.relay = d->relay;
        d->sig.notify = d->notify;
        d->sig.op.fn = signals_on_read;
        return signals_arm(&d->sig);
}

static void daemon_log_limits(const struct daemon *d, const struct daemon_options *o)
{
        log_info("vsockmuxd: listening on %s%s; stream capacity %u; limits: %u VMs, %u processes per VM, %u streams, "
                 "%u attach clients per process, %u control connections, bridge frame %zu, control frame %zu, "
                 "%u bytes buffered per stream",
                 o->scfg.socket_path,
                 o->handover_fd >= 0 ? " (handed over)"
                 : o->scfg.adopt_fd  ? " (socket-activated)"
                                     : "",
                 relay_stream_capacity(d->relay), o->vcfg.max_vms, o->vcfg.max_processes, o->vcfg.max_streams,
                 o->vcfg.attach_max_clients, o->scfg.max_connections ?: CONTROL_SERVER_MAX_CONNECTIONS,
                 o->vcfg.bridge_max_frame ?: BRIDGE_MAX_FRAME, o->scfg.max_control_frame ?: CONTROL_FRAME_MAX_DATA,
                 o->rcfg.stream_max_bufs * o->rcfg.buf_size);
}

static int daemon_start(struct daemon *d, struct daemon_options *o)
{
        int r = daemon_adopt_socket(o);

        /* The loop first: a live upgrade starts us before the old daemon holds its guests quiet,
         * so what we set up before the handover arrives is not part of their stall. */
        if (r >= 0)
                r = daemon_take_signals(d, o);
        if (r >= 0)
                r = daemon_start_relay(d, o);
        if (r >= 0)
                r = daemon_take_over(o);
        /* Until "go", every adopted socket is the old daemon's too: a take-over that fails half
         * way must leave them as they were for its rollback (we answer and _exit then). */
        if (r >= 0 && o->handover_fd >= 0 && !o->handover_stored)
                relay_set_fds_shared(d->relay, true);
        if (r >= 0)
                r = daemon_read_limits(d, o);
        if (r >= 0)
                r = daemon_start_service(d, o);
        if (r >= 0)
                r = daemon_recover(d, o);
        if (r >= 0)
                r = daemon_start_outputs(d, o);
        if (r >= 0)
                r = daemon_adopt_vms(d, o);
        if (r < 0)
                return r;
        daemon_log_limits(d, o);
        r = notify_ready(d->notify);
        if (r < 0)
                log_errno(LOG_LEVEL_WARN, r, "vsockmuxd: cannot tell systemd we are ready");
        if (o->fdstore && !notify_enabled(d->notify))
                log_warn("vsockmuxd: --fdstore without NOTIFY_SOCKET (not started by systemd): a stop closes every "
                         "connection");
        if (notify_watchdog_usec(d->notify))
                log_info("vsockmuxd: watchdog every %" PRIu64 " ms", notify_watchdog_usec(d->notify) / 2000);
        if (o->handover_fd >= 0 && o->handover_stored) {
                log_info("vsockmuxd: took over from systemd's fd store");
                o->handover_fd = safe_close(o->handover_fd);
        } else if (o->handover_fd >= 0) {
                r = upgrade_answer(o->handover_fd, 0, NULL);
                if (r >= 0)
                        r = upgrade_await_go(o->handover_fd);
                relay_set_fds_shared(d->relay, false);
                /* Whatever the old daemon said or not, it no longer serves once it let us live. */
                if (r < 0)
                        log_errno(LOG_LEVEL_WARN, r, "vsockmuxd: the old daemon did not confirm the handover");
                else
                        log_info("vsockmuxd: took over from the old daemon");
                o->handover_fd = safe_close(o->handover_fd);
        }
        return 0;
}

/* What was read from a guest reaches its endpoint before we go; a stalled endpoint gets a
 * bounded wait, then its held bytes are reported lost. */
static void daemon_flush(struct daemon *d)
{
        uint64_t deadline;

        if (vmm_quiesce(d->vmm) == 0)
                return;
        deadline = relay_now_ns(d->relay) + DAEMON_STOP_FLUSH_NS;
        while (vmm_quiesce_pending(d->vmm) > 0 && relay_now_ns(d->relay) < deadline)
                if (relay_run_once(d->relay, 50 * 1000000ll) < 0)
                        break;
        if (vmm_quiesce_pending(d->vmm) > 0)
                log_warn("vsockmuxd: %u streams could not flush to their endpoints in time",
                         vmm_quiesce_pending(d->vmm));
}

/* Handed over: the Upgrade call's answer reaches its client before we go. */
static void daemon_flush_replies(struct daemon *d)
{
        uint64_t deadline = relay_now_ns(d->relay) + DAEMON_STOP_FLUSH_NS;

        while (service_tx_pending(d->service) > 0 && relay_now_ns(d->relay) < deadline)
                if (relay_run_once(d->relay, 50 * 1000000ll) < 0)
                        break;
        log_info("vsockmuxd: handed over to pid %d", (int)d->upgraded.new_pid);
}

static int daemon_run(struct daemon *d)
{
        int r = relay_run(d->relay);

        if (r < 0)
                return log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: the loop failed");
        if (d->upgraded.new_pid > 0)
                daemon_flush_replies(d);
        else if (!d->upgraded.stored)
                daemon_flush(d);
        return 0;
}

/* ran: the loop ran, so the last completions are reaped and the stop is logged. */
static void daemon_stop(struct daemon *d, bool ran)
{
        d->sig.upgrade = NULL;
        if (d->service)
                service_set_upgrade(d->service, NULL);
        d->upgrade = upgrade_free(d->upgrade);
        /* VMs first: their waiters still reach clients through the server. */
        d->metrics = metrics_http_free(d->metrics);
        daemon_stop_recorded(d, ran);
        d->vmm = vmm_free(d->vmm);
        d->notify = notify_free(d->notify);
        d->service = service_free(d->service);
        if (ran)
                relay_run_once(d->relay, 0);
        d->sig.fd = safe_close(d->sig.fd);
        if (ran)
                log_info("vsockmuxd: stopped");
        if (d->relay) {
                struct relay_stats st;

                relay_get_stats(d->relay, &st);
                relay_log_leftovers(&st);
        }
        d->relay = relay_free(d->relay);
}

static void options_done(struct daemon_options *o)
{
        free(o->hvsock_root);
        o->hvsock_root = NULL;
        o->handover_fd = safe_close(o->handover_fd);
        upgrade_received_done(&o->handover);
}

int main(int argc, char **argv)
{
        struct daemon_options o;
        struct daemon d = { .sig = { .fd = -1 } };
        int r;

        r = options_parse(argc, argv, &o);
        if (r != 0) {
                options_done(&o);
                return r > 0 ? 0 : 2;
        }
        r = daemon_start(&d, &o);
        if (r < 0) {
                daemon_stop(&d, false);
                options_done(&o);
                return 1;
        }
        r = daemon_run(&d);
        daemon_stop(&d, true);
        options_done(&o);
        return r < 0 ? 1 : 0;
}
