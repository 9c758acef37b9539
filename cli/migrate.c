/* cli/migrate.c: `vsockmux migrate`, a thin client of the source daemon's Migrate: it sends the
 * request, follows the migration's Events, shows them, runs the hooks with the caller's own
 * rights, and turns Ctrl-C into an abort. The daemon (and its vsockmux-vmhelper) does the rest. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

extern char **environ;

#define MIGRATE_BAR_WIDTH 30
#define MIGRATE_PARAMS_MAX 32u
#define MIGRATE_CODE_ABORTED 10 /* google.rpc.Code: failed and rolled back */

struct migrate_args {
        Vsockmux__V1__MigrateRequest req;
        Vsockmux__V1__KeyValue kv[MIGRATE_PARAMS_MAX];
        Vsockmux__V1__KeyValue *kv_ptrs[MIGRATE_PARAMS_MAX];
        char *ac_copy; /* --auto-converge INIT,INC split in two */
        Vsockmux__V1__RestoreIo *ios;
        Vsockmux__V1__RestoreIo **io_ptrs;
        char **copies;
        const char *on_suspended, *on_resumed;
        bool json;
};

struct migrate {
        struct cli *cli;
        const struct migrate_args *a;
        const char *name;
        struct vsockmux_client *events;
        uint32_t events_sid;
        bool tty, bar_shown, hook_paused, interrupted, rolled_back;
        uint64_t t_start;
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- output: one updating line on a terminal, JSON lines with --json, phases otherwise ---- */

static void bar_clear(struct migrate *mg)
{
        if (mg->bar_shown) {
                fputs("\r\033[K", stdout);
                mg->bar_shown = false;
        }
}

static void json_line(struct json_object *o)
{
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        fflush(stdout);
}

/* Milliseconds with one decimal, as written (not 5048.554607000001). */
static struct json_object *json_ms(double ms)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%.1f", ms);
        return json_object_new_double_s(ms, buf);
}

static struct json_object *json_event(struct migrate *mg, const char *event)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "event", json_object_new_string(event));
        json_object_object_add(o, "vm", json_object_new_string(mg->name));
        json_object_object_add(o, "t_ms", json_ms((double)(now_ns() - mg->t_start) / 1e6));
        return o;
}

/* A phase: one line on a terminal or in a log, one object with --json. */
static void say(struct migrate *mg, const char *event, const char *fmt, ...) _printf_(3, 4);
static void say(struct migrate *mg, const char *event, const char *fmt, ...)
{
        char text[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        if (mg->a->json) {
                struct json_object *o = json_event(mg, event);

                json_object_object_add(o, "message", json_object_new_string(text));
                json_line(o);
                return;
        }
        bar_clear(mg);
        printf("%s\n", cli_sanitize(text));
        fflush(stdout);
}

static unsigned percent(const Vsockmux__V1__MigrationProgress *p)
{
        if (p->data_total == 0 || p->data_remaining > p->data_total)
                return 0;
        return (unsigned)((p->data_total - p->data_remaining) * 100 / p->data_total);
}

static void progress_json(struct migrate *mg, const Vsockmux__V1__MigrationProgress *p)
{
        struct json_object *o = json_event(mg, "progress");

        json_object_object_add(o, "elapsed_ms", json_object_new_uint64(p->elapsed_ms));
        json_object_object_add(o, "data_processed", json_object_new_uint64(p->data_processed));
        json_object_object_add(o, "data_remaining", json_object_new_uint64(p->data_remaining));
        json_object_object_add(o, "data_total", json_object_new_uint64(p->data_total));
        json_object_object_add(o, "iteration", json_object_new_uint64(p->iteration));
        json_object_object_add(o, "bytes_per_s", json_object_new_uint64(p->bytes_per_s));
        json_object_object_add(o, "dirty_pages_per_s", json_object_new_uint64(p->dirty_pages_per_s));
        json_object_object_add(o, "throttle_percent", json_object_new_int(p->throttle_percent));
        json_line(o);
}

static void progress_bar(struct migrate *mg, const Vsockmux__V1__MigrationProgress *p)
{
        unsigned pct = percent(p), fill = pct * MIGRATE_BAR_WIDTH / 100;
        char bar[MIGRATE_BAR_WIDTH + 1];

        for (unsigned i = 0; i < MIGRATE_BAR_WIDTH; i++)
                bar[i] = i < fill ? '#' : '-';
        bar[MIGRATE_BAR_WIDTH] = '\0';
        printf("\r\033[K%s [%s] %3u%%  %.1f/%.1f MiB  iteration %llu  %.1f MiB/s", mg->name, bar, pct,
               (double)(p->data_total - MIN(p->data_remaining, p->data_total)) / 1048576.0,
               (double)p->data_total / 1048576.0, (unsigned long long)p->iteration, (double)p->bytes_per_s / 1048576.0);
        if (p->throttle_percent)
                printf("  throttle %d%%", p->throttle_percent);
        fflush(stdout);
        mg->bar_shown = true;
}

static void show_saved(struct migrate *mg, const Vsockmux__V1__MigrationProgress *p)
{
        if (mg->a->json) {
                struct json_object *o = json_event(mg, "saved");

                json_object_object_add(o, "processes", json_object_new_int64(p->processes));
                json_object_object_add(o, "state_bytes", json_object_new_uint64(p->state_bytes));
                json_line(o);
        } else
                say(mg, "saved", "%s: source paused; relay state saved (%u processes, %llu bytes)", mg->name,
                    p->processes, (unsigned long long)p->state_bytes);
}

static void show_summary(struct migrate *mg, const Vsockmux__V1__MigrateResponse *r)
{
        char bo[64];

        if (mg->a->json) {
                struct json_object *o = json_event(mg, "summary");

                json_object_object_add(o, "migration_ms", json_object_new_uint64(r->migration_ms));
                json_object_object_add(o, "downtime_ms", json_object_new_uint64(r->downtime_ms));
                json_object_object_add(o, "data_bytes", json_object_new_uint64(r->data_bytes));
                json_object_object_add(o, "iterations", json_object_new_uint64(r->iterations));
                json_object_object_add(o, "processes", json_object_new_int64(r->processes));
                json_object_object_add(o, "save_to_restore_ms", json_ms((double)r->save_to_restore_us / 1e3));
                json_object_object_add(o, "save_to_resume_ms", json_ms((double)r->save_to_resume_us / 1e3));
                json_object_object_add(o, "stdio_blackout_ms",
                                       r->stdio_blackout_measured ? json_ms((double)r->stdio_blackout_us / 1e3) : NULL);
                json_line(o);
                return;
        }
        if (r->stdio_blackout_measured)
                snprintf(bo, sizeof(bo), "%.1f ms", (double)r->stdio_blackout_us / 1e3);
        else
                snprintf(bo, sizeof(bo), "not measured (no process, or no byte within 10 s)");
        say(mg, "summary",
            "%s: migrated in %llu ms; downtime %llu ms; %.1f MiB in %llu iterations; stdio blackout %s "
            "(save to first byte on the destination; restore after %.1f ms)",
            mg->name, (unsigned long long)r->migration_ms, (unsigned long long)r->downtime_ms,
            (double)r->data_bytes / 1048576.0, (unsigned long long)r->iterations, bo,
            (double)r->save_to_restore_us / 1e3);
}

/* ---- hooks: run here, with the caller's rights, as the daemon reports the guest pausing ---- */

/* Runs a hook with sh; its output goes to stderr so that --json stays one object a line. */
static int run_hook(const char *cmd, int *ret_status)
{
        char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)cmd, NULL };
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int r, status;

        if (posix_spawn_file_actions_init(&fa) != 0)
                return -ENOMEM;
        posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
        r = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return -r;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return 0;
}

/* $VSOCKMUX_MIGRATE_VM and $VSOCKMUX_MIGRATE_ON (source|destination) tell a hook which. */
static void hook(struct migrate *mg, const char *cmd, const char *name, const char *where)
{
        int r, status = 0;

        if (!cmd)
                return;
        setenv("VSOCKMUX_MIGRATE_VM", mg->name, 1);
        setenv("VSOCKMUX_MIGRATE_ON", where, 1);
        r = run_hook(cmd, &status);
        if (r < 0)
                cli_error(mg->cli, "--%s: %s", name, strerror(-r));
        else if (status != 0)
                cli_error(mg->cli, "--%s exited %d", name, status);
}

static void hook_resumed(struct migrate *mg, const char *where)
{
        if (!mg->hook_paused)
                return;
        mg->hook_paused = false;
        hook(mg, mg->a->on_resumed, "on-resumed", where);
}

/* ---- the events ---- */

static void on_phase(struct migrate *mg, const Vsockmux__V1__Event *ev)
{
        const Vsockmux__V1__MigrationProgress *p = ev->migration;
        const char *phase = p->phase;

        if (strcmp(phase, "progress") == 0) {
                if (mg->a->json)
                        progress_json(mg, p);
                else if (mg->tty)
                        progress_bar(mg, p);
        } else if (strcmp(phase, "iteration") == 0) {
                if (mg->a->json)
                        say(mg, "iteration", "%s", ev->message);
        } else if (strcmp(phase, "suspended") == 0) {
                mg->hook_paused = true;
                hook(mg, mg->a->on_suspended, "on-suspended", "source");
        } else if (strcmp(phase, "saved") == 0) {
                show_saved(mg, p);
        } else if (strcmp(phase, "destination-resumed") == 0) {
                say(mg, phase, "%s: %s", mg->name, ev->message);
                hook_resumed(mg, "destination");
        } else if (strcmp(phase, "source-resumed") == 0) {
                say(mg, phase, "%s: %s", mg->name, ev->message);
        } else if (strcmp(phase, "failed") == 0) {
                mg->rolled_back = p->rolled_back;
        } else if (strcmp(phase, "completed") != 0) {
                say(mg, phase, "%s: %s", mg->name, ev->message);
        }
}

/* One event of the stream; the daemon sends only this VM's. */
static int read_event(struct migrate *mg)
{
        Vsockmux__V1__Event *ev = NULL;
        struct vsockmux_status st = {};
        int r;

        r = vsockmux_client_recv(mg->events, mg->events_sid, &vsockmux__v1__event__descriptor, (ProtobufCMessage **)&ev,
                                 &st);
        if (r < 0)
                return r;
        if (r == VSOCKMUX_CLIENT_DATA && ev->migration && ev->migration->phase)
                on_phase(mg, ev);
        vsockmux_message_free(&ev->base);
        return r == VSOCKMUX_CLIENT_END ? -ECONNRESET : 0;
}

static int drain_events(struct migrate *mg, int timeout_ms)
{
        struct pollfd p = { .fd = vsockmux_client_fd(mg->events), .events = POLLIN };

        while (vsockmux_client_pending(mg->events) || poll(&p, 1, timeout_ms) == 1) {
                int r = read_event(mg);

                if (r < 0)
                        return r;
        }
        return 0;
}

/* Events of mg->name, subscribed before Migrate is sent: the VmList behind it on the same
 * connection is answered only after the subscription is in place. */
static int subscribe(struct migrate *mg)
{
        Vsockmux__V1__EventsRequest req = VSOCKMUX__V1__EVENTS_REQUEST__INIT;
        Vsockmux__V1__VmListRequest ls = VSOCKMUX__V1__VM_LIST_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        struct vsockmux_status st = {};
        int r;

        r = vsockmux_client_connect(mg->cli->socket, &mg->events);
        if (r < 0)
                return r;
        req.vm = (char *)mg->name;
        r = vsockmux_client_send(mg->events, VSOCKMUX_METHOD("Events"), &req.base, VSOCKMUX_FLAG_REMOTE_CLOSED, 0,
                                 &mg->events_sid);
        if (r < 0)
                return r;
        r = vsockmux_client_call(mg->events, VSOCKMUX_METHOD("VmList"), &ls.base,
                                 &vsockmux__v1__vm_list_response__descriptor, &resp, &st);
        vsockmux_message_free(resp);
        return r;
}

/* ---- the call ---- */

/* Ctrl-C: ask the daemon to abort (on a connection of its own); the migration's call then ends. */
static void request_abort(struct migrate *mg)
{
        Vsockmux__V1__MigrateRequest req = VSOCKMUX__V1__MIGRATE_REQUEST__INIT;
        _cleanup_(vsockmux_client_freep) struct vsockmux_client *c = NULL;
        ProtobufCMessage *resp = NULL;
        struct vsockmux_status st = {};
        int r;

        say(mg, "interrupted", "%s: interrupted; asking the daemon to abort the migration", mg->name);
        mg->interrupted = true;
        req.vm = (char *)mg->name;
        req.abort = true;
        r = vsockmux_client_connect(mg->cli->socket, &c);
        if (r == 0)
                r = vsockmux_client_call(c, VSOCKMUX_METHOD("Migrate"), &req.base,
                                         &vsockmux__v1__migrate_response__descriptor, &resp, &st);
        if (r < 0)
                cli_error(mg->cli, "abort: %s", r == -EREMOTEIO ? st.message : strerror(-r));
        vsockmux_message_free(resp);
}

static void on_signal(struct migrate *mg, int sigfd)
{
        struct signalfd_siginfo si;

        if (read(sigfd, &si, sizeof(si)) == sizeof(si) && !mg->interrupted)
                request_abort(mg);
}

/* Until the Migrate call answers; events and signals meanwhile. */
static int wait_answer(struct migrate *mg, int sigfd, uint32_t sid, Vsockmux__V1__MigrateResponse **ret,
                       struct vsockmux_status *st)
{
        for (;;) {
                struct pollfd p[3] = {
                        { .fd = vsockmux_client_fd(mg->cli->client), .events = POLLIN },
                        { .fd = vsockmux_client_fd(mg->events), .events = POLLIN },
                        { .fd = sigfd, .events = POLLIN },
                };
                int r;

                if (!vsockmux_client_pending(mg->events) && poll(p, 3, -1) < 0 && errno != EINTR)
                        return -errno;
                if (p[2].revents & POLLIN)
                        on_signal(mg, sigfd);
                if (vsockmux_client_pending(mg->events) || (p[1].revents & POLLIN)) {
                        r = read_event(mg);
                        if (r < 0)
                                return r;
                }
                if (vsockmux_client_pending(mg->cli->client) || (p[0].revents & POLLIN))
                        return vsockmux_client_recv(mg->cli->client, sid, &vsockmux__v1__migrate_response__descriptor,
                                                    (ProtobufCMessage **)ret, st);
        }
}

static int report_failure(struct migrate *mg, int r, const struct vsockmux_status *st)
{
        char why[VSOCKMUX_STATUS_MESSAGE_MAX + 64];

        /* A refusal (INVALID_ARGUMENT: a value the daemon judges, an --io naming no process; nothing
         * happened) is the daemon's error like any other, not a usage error: the command line
         * parsed, and --help would not say what is wrong with it. */
        mg->rolled_back = mg->rolled_back || (r == -EREMOTEIO && st->code == MIGRATE_CODE_ABORTED);
        if (mg->rolled_back)
                hook_resumed(mg, "source");
        cli_describe_failure(mg->cli, r, st, why, sizeof(why));
        if (mg->a->json) {
                struct json_object *o = json_event(mg, "failed");

                json_object_object_add(o, "message", json_object_new_string(why));
                json_object_object_add(o, "rolled_back", json_object_new_boolean(mg->rolled_back));
                json_line(o);
        }
        return cli_error(mg->cli, "%s", why);
}

static int run(struct migrate *mg, int sigfd)
{
        Vsockmux__V1__MigrateResponse *resp = NULL;
        struct vsockmux_status st = {};
        uint32_t sid;
        int r;

        mg->t_start = now_ns();
        r = vsockmux_client_send(mg->cli->client, VSOCKMUX_METHOD("Migrate"), &mg->a->req.base, 0, 0, &sid);
        if (r == 0)
                r = wait_answer(mg, sigfd, sid, &resp, &st);
        /* What the daemon published before it answered. */
        (void)drain_events(mg, 0);
        bar_clear(mg);
        if (r < 0)
                return report_failure(mg, r, &st);
        show_summary(mg, resp);
        vsockmux_message_free(&resp->base);
        return 0;
}

/* ---- options ---- */

enum {
        OPT_TO = 0x100,
        OPT_FROM,
        OPT_DOMAIN,
        OPT_DEST_SOCKET,
        OPT_DEST_NAME,
        OPT_DEST_HVSOCK,
        OPT_DEST_CID,
        OPT_IO,
        OPT_TRANSPORT,
        OPT_BANDWIDTH,
        OPT_DOWNTIME,
        OPT_COMPRESSION,
        OPT_XBZRLE_CACHE,
        OPT_MT_LEVEL,
        OPT_MT_THREADS,
        OPT_MT_DTHREADS,
        OPT_PARALLEL,
        OPT_AUTO_CONVERGE,
        OPT_PERSIST,
        OPT_MIGRATE_URI,
        OPT_P2P,
        OPT_DIRECT,
        OPT_JSON,
        OPT_ON_RESUMED,
        OPT_ON_SUSPENDED,
};

static const struct option migrate_options[] = { { "to", required_argument, NULL, OPT_TO },
                                                 { "from", required_argument, NULL, OPT_FROM },
                                                 { "domain", required_argument, NULL, OPT_DOMAIN },
                                                 { "dest-socket", required_argument, NULL, OPT_DEST_SOCKET },
                                                 { "dest-name", required_argument, NULL, OPT_DEST_NAME },
                                                 { "dest-hvsock", required_argument, NULL, OPT_DEST_HVSOCK },
                                                 { "dest-cid", required_argument, NULL, OPT_DEST_CID },
                                                 { "io", required_argument, NULL, OPT_IO },
                                                 { "transport", required_argument, NULL, OPT_TRANSPORT },
                                                 { "bandwidth", required_argument, NULL, OPT_BANDWIDTH },
                                                 { "downtime", required_argument, NULL, OPT_DOWNTIME },
                                                 { "compression", required_argument, NULL, OPT_COMPRESSION },
                                                 { "xbzrle-cache", required_argument, NULL, OPT_XBZRLE_CACHE },
                                                 { "mt-level", required_argument, NULL, OPT_MT_LEVEL },
                                                 { "mt-threads", required_argument, NULL, OPT_MT_THREADS },
                                                 { "mt-dthreads", required_argument, NULL, OPT_MT_DTHREADS },
                                                 { "parallel", required_argument, NULL, OPT_PARALLEL },
                                                 { "auto-converge", required_argument, NULL, OPT_AUTO_CONVERGE },
                                                 { "persist", no_argument, NULL, OPT_PERSIST },
                                                 { "migrate-uri", required_argument, NULL, OPT_MIGRATE_URI },
                                                 { "p2p", no_argument, NULL, OPT_P2P },
                                                 { "direct", no_argument, NULL, OPT_DIRECT },
                                                 { "json", no_argument, NULL, OPT_JSON },
                                                 { "on-resumed", required_argument, NULL, OPT_ON_RESUMED },
                                                 { "on-suspended", required_argument, NULL, OPT_ON_SUSPENDED },
                                                 {} };

/* The options that become MigrateRequest.params, by the Options field each one sets. The
 * daemon judges the values and names the field it refuses. */
static const char *const param_keys[] = {
        [OPT_TRANSPORT - OPT_TO] = "transport",
        [OPT_BANDWIDTH - OPT_TO] = "bandwidth_mib_per_s",
        [OPT_DOWNTIME - OPT_TO] = "max_downtime_ms",
        [OPT_COMPRESSION - OPT_TO] = "compression",
        [OPT_XBZRLE_CACHE - OPT_TO] = "xbzrle.cache_size_bytes",
        [OPT_MT_LEVEL - OPT_TO] = "multithread.level",
        [OPT_MT_THREADS - OPT_TO] = "multithread.compress_threads",
        [OPT_MT_DTHREADS - OPT_TO] = "multithread.decompress_threads",
        [OPT_PARALLEL - OPT_TO] = "parallel_connections",
        [OPT_MIGRATE_URI - OPT_TO] = "migrate_uri",
};

static int add_param(struct cli *cli, struct migrate_args *a, const char *key, const char *value)
{
        Vsockmux__V1__KeyValue *kv;

        if (a->req.n_params == MIGRATE_PARAMS_MAX)
                return cli_usage_error(cli, "too many migration options");
        kv = &a->kv[a->req.n_params];
        vsockmux__v1__key_value__init(kv);
        kv->key = (char *)key;
        kv->value = (char *)value;
        a->kv_ptrs[a->req.n_params++] = kv;
        return 0;
}

/* --auto-converge INITIAL,INCREMENT: two params. */
static int add_auto_converge(struct cli *cli, struct migrate_args *a, const char *arg)
{
        char *comma;

        free(a->ac_copy);
        a->ac_copy = strdup(arg);
        if (!a->ac_copy)
                return cli_error(cli, "out of memory");
        comma = strchr(a->ac_copy, ',');
        if (!comma)
                return cli_usage_error(cli, "--auto-converge wants INITIAL,INCREMENT percentages");
        *comma = '\0';
        if (add_param(cli, a, "auto_converge.initial_percent", a->ac_copy) != 0)
                return CLI_EXIT_USAGE;
        return add_param(cli, a, "auto_converge.increment_percent", comma + 1);
}

static int add_io(struct cli *cli, struct migrate_args *a, const char *arg)
{
        size_t n = a->req.n_io;

        if (n == CLI_MAX_IO)
                return cli_usage_error(cli, "at most %u --io options", CLI_MAX_IO);
        if (cli_parse_restore_io(arg, &a->ios[n], &a->copies[n]) < 0)
                return cli_usage_error(cli, CLI_IO_USAGE ", got '%s'", arg);
        a->io_ptrs[n] = &a->ios[n];
        a->req.n_io = n + 1;
        return 0;
}

static int set_dest_transport(struct cli *cli, struct migrate_args *a, int c, const char *arg)
{
        uint32_t cid;
        int r;

        if (c == OPT_DEST_HVSOCK) {
                r = cli_check_hvsock(cli, "--dest-hvsock", arg);
                if (r != 0)
                        return r;
                a->req.destination_transport_case =
                        VSOCKMUX__V1__MIGRATE_REQUEST__DESTINATION_TRANSPORT_DESTINATION_HVSOCK_PATH;
                a->req.destination_hvsock_path = (char *)arg;
                return 0;
        }
        r = cli_parse_cid(cli, "--dest-cid", arg, &cid);
        if (r != 0)
                return r;
        a->req.destination_transport_case = VSOCKMUX__V1__MIGRATE_REQUEST__DESTINATION_TRANSPORT_DESTINATION_CID;
        a->req.destination_cid = cid;
        return 0;
}

/* One option; 0, or the exit code of a usage error. */
static int migrate_option(struct cli *cli, struct migrate_args *a, int c, char **argv)
{
        switch (c) {
        case OPT_TO: a->req.destination_uri = optarg; return 0;
        case OPT_FROM: a->req.source_uri = optarg; return 0;
        case OPT_DOMAIN: a->req.domain = optarg; return 0;
        case OPT_DEST_SOCKET: a->req.destination_socket = optarg; return 0;
        case OPT_DEST_NAME: a->req.destination_name = optarg; return 0;
        case OPT_JSON: a->json = true; return 0;
        case OPT_ON_RESUMED: a->on_resumed = optarg; return 0;
        case OPT_ON_SUSPENDED: a->on_suspended = optarg; return 0;
        case OPT_PERSIST: return add_param(cli, a, "persist_destination", "true");
        case OPT_P2P: return add_param(cli, a, "mode", "p2p");
        case OPT_DIRECT: return add_param(cli, a, "mode", "direct");
        case OPT_AUTO_CONVERGE: return add_auto_converge(cli, a, optarg);
        case OPT_IO: return add_io(cli, a, optarg);
        case OPT_DEST_HVSOCK:
        case OPT_DEST_CID: return set_dest_transport(cli, a, c, optarg);
        case OPT_TRANSPORT:
                if (strcmp(optarg, "tcp") != 0 && strcmp(optarg, "unix") != 0 && strcmp(optarg, "tls") != 0)
                        return cli_usage_error(cli, "--transport wants tcp, unix or tls");
                return add_param(cli, a, "transport", optarg);
        default:
                if (c >= OPT_TO && (size_t)(c - OPT_TO) < ELEMENTSOF(param_keys) && param_keys[c - OPT_TO])
                        return add_param(cli, a, param_keys[c - OPT_TO], optarg);
                return cli_option_error(cli, c, argv);
        }
}

static int parse_options(struct cli *cli, struct migrate_args *a, int argc, char **argv)
{
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", migrate_options, NULL)) >= 0) {
                r = migrate_option(cli, a, c, argv);
                if (r != 0)
                        return r;
        }
        if (argc - optind != 1 || !a->req.destination_uri[0] || !a->req.destination_socket[0])
                return cli_usage_error(cli, "expected NAME --to LIBVIRT_URI --dest-socket PATH");
        a->req.vm = argv[optind];
        a->req.params = a->kv_ptrs;
        a->req.io = a->io_ptrs;
        return 0;
}

static int args_init(struct migrate_args *a)
{
        *a = (struct migrate_args){ .req = VSOCKMUX__V1__MIGRATE_REQUEST__INIT };
        a->ios = calloc(CLI_MAX_IO, sizeof(*a->ios));
        a->io_ptrs = calloc(CLI_MAX_IO, sizeof(*a->io_ptrs));
        a->copies = calloc(CLI_MAX_IO, sizeof(*a->copies));
        return a->ios && a->io_ptrs && a->copies ? 0 : -ENOMEM;
}

static void args_done(struct migrate_args *a)
{
        for (size_t i = 0; a->copies && i < a->req.n_io; i++)
                free(a->copies[i]);
        free(a->copies);
        free(a->io_ptrs);
        free(a->ios);
        free(a->ac_copy);
}

/* From here a signal asks for an abort instead of killing us halfway. */
static int block_signals(sigset_t *ret_old)
{
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, ret_old);
        return signalfd(-1, &mask, SFD_CLOEXEC);
}

static int migrate_with(struct cli *cli, const struct migrate_args *a)
{
        struct migrate mg = { .cli = cli, .a = a, .name = a->req.vm, .tty = isatty(STDOUT_FILENO) };
        _cleanup_close_ int sigfd = -1;
        sigset_t old;
        int r;

        r = cli_connect(cli);
        if (r != 0)
                return r;
        r = subscribe(&mg);
        if (r < 0) {
                mg.events = vsockmux_client_free(mg.events);
                return cli_error(cli, "cannot follow the events of VM %s: %s", mg.name, strerror(-r));
        }
        sigfd = block_signals(&old);
        if (sigfd < 0)
                r = cli_error(cli, "signalfd: %m");
        else
                r = run(&mg, sigfd);
        sigprocmask(SIG_SETMASK, &old, NULL);
        mg.events = vsockmux_client_free(mg.events);
        return r;
}

int cli_migrate(struct cli *cli, int argc, char **argv)
{
        struct migrate_args a;
        int r;

        if (args_init(&a) < 0)
                r = cli_error(cli, "out of memory");
        else {
                r = parse_options(cli, &a, argc, argv);
                if (r == 0)
                        r = migrate_with(cli, &a);
        }
        args_done(&a);
        return r;
}
