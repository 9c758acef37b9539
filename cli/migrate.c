/* cli/migrate.c: `vsockmux migrate`: drives one libvirt live migration (vm/) and moves the VM's
 * relay state between two vsockmuxd at the switchover; the daemons never see libvirt. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "vm/migration.h"

extern char **environ;

#define MIGRATE_DEFAULT_FROM "qemu:///system"
#define MIGRATE_PUBLISH_INTERVAL_NS (1000ull * 1000000ull)     /* progress to the daemon's events: 1/s */
#define MIGRATE_BLACKOUT_POLL_NS (2ull * 1000000ull)
#define MIGRATE_BLACKOUT_WAIT_NS (10ull * 1000000000ull)      /* give up measuring, not migrating */
#define MIGRATE_EVENT_POLL_MS 1000
#define MIGRATE_BAR_WIDTH 30
#define MIGRATE_HOST_MAX 256u
#define MIGRATE_VM_NAME_MAX 64u                                 /* the daemon's VMM_NAME_MAX */

struct migrate {
        struct cli *cli;                        /* the source daemon */
        struct vsockmux_client *dst;             /* the destination daemon */
        const char *name;
        const char *dest_socket;
        const char *on_suspended;
        const char *on_resumed;
        bool json, tty, bar_shown;
        Vsockmux__V1__RestoreRequest restore;
        struct vm_migration *m;
        bool saved, restored, completed, resumed, failing, interrupted, hook_paused;
        char dest_vm[MIGRATE_VM_NAME_MAX + 1];
        char why[VM_MIGRATION_MESSAGE_MAX + 256];
        uint64_t t_start, t_save, t_restored, t_resumed, t_published;
        uint64_t dst_baseline;                  /* bytes the destination had delivered at the restore */
        unsigned processes;
        size_t state_len;
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t from, uint64_t to)
{
        return (double)(to - from) / 1e6;
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
        json_object_object_add(o, "t_ms", json_ms(ms_since(mg->t_start, now_ns())));
        return o;
}

/* A phase: one line on a terminal or in a log, one object with --json. */
static void say(struct migrate *mg, const char *event, const char *fmt, ...) _printf_(3, 4);
static void say(struct migrate *mg, const char *event, const char *fmt, ...)
{
        char text[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        if (mg->json) {
                struct json_object *o = json_event(mg, event);

                json_object_object_add(o, "message", json_object_new_string(text));
                json_line(o);
                return;
        }
        bar_clear(mg);
        printf("%s\n", cli_sanitize(text));
        fflush(stdout);
}

static unsigned percent(const struct vm_migration_stats *s)
{
        if (s->data_total == 0 || s->data_remaining > s->data_total)
                return 0;
        return (unsigned)((s->data_total - s->data_remaining) * 100 / s->data_total);
}

static void show_progress(struct migrate *mg, const struct vm_migration_event *e)
{
        const struct vm_migration_stats *s = &e->stats;
        unsigned pct = percent(s), fill = pct * MIGRATE_BAR_WIDTH / 100;
        char bar[MIGRATE_BAR_WIDTH + 1];

        if (mg->json) {
                struct json_object *o = json_event(mg, "progress");

                json_object_object_add(o, "elapsed_ms", json_object_new_uint64(s->time_elapsed_ms));
                json_object_object_add(o, "data_processed", json_object_new_uint64(s->data_processed));
                json_object_object_add(o, "data_remaining", json_object_new_uint64(s->data_remaining));
                json_object_object_add(o, "data_total", json_object_new_uint64(s->data_total));
                json_object_object_add(o, "iteration", json_object_new_uint64(s->memory_iteration));
                json_object_object_add(o, "bytes_per_s", json_object_new_uint64(s->memory_bps));
                json_object_object_add(o, "dirty_pages_per_s", json_object_new_uint64(s->dirty_rate_pages));
                json_object_object_add(o, "throttle_percent", json_object_new_int(s->auto_converge_throttle));
                json_line(o);
                return;
        }
        if (!mg->tty)
                return;
        for (unsigned i = 0; i < MIGRATE_BAR_WIDTH; i++)
                bar[i] = i < fill ? '#' : '-';
        bar[MIGRATE_BAR_WIDTH] = '\0';
        printf("\r\033[K%s [%s] %3u%%  %.1f/%.1f MiB  iteration %llu  %.1f MiB/s", mg->name, bar, pct,
               (double)(s->data_total - MIN(s->data_remaining, s->data_total)) / 1048576.0,
               (double)s->data_total / 1048576.0, (unsigned long long)s->memory_iteration,
               (double)s->memory_bps / 1048576.0);
        if (s->auto_converge_throttle)
                printf("  throttle %d%%", s->auto_converge_throttle);
        fflush(stdout);
        mg->bar_shown = true;
}

/* ---- the two daemons ---- */

/* Best effort: a migration must not fail because `vsockmux events` could not be told. */
static void publish(struct migrate *mg, Vsockmux__V1__EventKind kind, const char *fmt, ...) _printf_(3, 4);
static void publish(struct migrate *mg, Vsockmux__V1__EventKind kind, const char *fmt, ...)
{
        Vsockmux__V1__PublishMigrationEventRequest req = VSOCKMUX__V1__PUBLISH_MIGRATION_EVENT_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        struct vsockmux_status st = {};
        char text[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        req.vm = (char *)mg->name;
        req.kind = kind;
        req.message = text;
        if (vsockmux_client_call(mg->cli->client, VSOCKMUX_METHOD("PublishMigrationEvent"), &req.base,
                                &vsockmux__v1__publish_migration_event_response__descriptor, &resp, &st) == 0)
                vsockmux_message_free(resp);
        mg->t_published = now_ns();
}

static int call(struct vsockmux_client *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret, const char *daemon, char *why,
                size_t whylen)
{
        struct vsockmux_status st = {};
        int r = vsockmux_client_call(c, method, req, desc, ret, &st);

        if (r == -EREMOTEIO)
                snprintf(why, whylen, "%s daemon: %s", daemon, st.message);
        else if (r < 0)
                snprintf(why, whylen, "%s daemon: %s", daemon, strerror(-r));
        return r;
}

static int find_vm(struct vsockmux_client *c, const char *name, Vsockmux__V1__BridgeState *ret_state)
{
        Vsockmux__V1__VmListRequest req = VSOCKMUX__V1__VM_LIST_REQUEST__INIT;
        Vsockmux__V1__VmListResponse *resp = NULL;
        struct vsockmux_status st = {};
        int r;

        r = vsockmux_client_call(c, VSOCKMUX_METHOD("VmList"), &req.base, &vsockmux__v1__vm_list_response__descriptor,
                                (ProtobufCMessage **)&resp, &st);
        if (r < 0)
                return r;
        r = -ENOENT;
        for (size_t i = 0; i < resp->n_vms; i++)
                if (strcmp(resp->vms[i]->name, name) == 0) {
                        *ret_state = resp->vms[i]->bridge_state;
                        r = 0;
                }
        vsockmux_message_free(&resp->base);
        return r;
}

/* Bytes the destination delivered for the VM so far, across every process and stream. */
static int dst_bytes(struct migrate *mg, uint64_t *ret)
{
        Vsockmux__V1__PsRequest req = VSOCKMUX__V1__PS_REQUEST__INIT;
        Vsockmux__V1__PsResponse *resp = NULL;
        struct vsockmux_status st = {};
        uint64_t sum = 0;
        int r;

        req.vm = mg->dest_vm;
        r = vsockmux_client_call(mg->dst, VSOCKMUX_METHOD("Ps"), &req.base, &vsockmux__v1__ps_response__descriptor,
                                (ProtobufCMessage **)&resp, &st);
        if (r < 0)
                return r;
        for (size_t i = 0; i < resp->n_processes; i++)
                if (resp->processes[i]->bytes)
                        sum += resp->processes[i]->bytes->stdin_bytes + resp->processes[i]->bytes->stdout_bytes +
                               resp->processes[i]->bytes->stderr_bytes;
        vsockmux_message_free(&resp->base);
        *ret = sum;
        return 0;
}

/* At the switchover: the guest is paused, so nothing more is written; take the relay state. */
static int save_and_restore(struct migrate *mg)
{
        Vsockmux__V1__SaveRequest sreq = VSOCKMUX__V1__SAVE_REQUEST__INIT;
        Vsockmux__V1__SaveResponse *sresp = NULL;
        Vsockmux__V1__RestoreResponse *rresp = NULL;
        int r;

        mg->t_save = now_ns();
        sreq.vm = (char *)mg->name;
        r = call(mg->cli->client, VSOCKMUX_METHOD("Save"), &sreq.base, &vsockmux__v1__save_response__descriptor,
                 (ProtobufCMessage **)&sresp, "source", mg->why, sizeof(mg->why));
        if (r < 0)
                return r;
        mg->saved = true;
        mg->processes = sresp->processes;
        mg->state_len = sresp->state.len;
        if (mg->json) {
                struct json_object *o = json_event(mg, "saved");

                json_object_object_add(o, "processes", json_object_new_int64(sresp->processes));
                json_object_object_add(o, "state_bytes", json_object_new_uint64(sresp->state.len));
                json_line(o);
        } else
                say(mg, "saved", "%s: source paused; relay state saved (%u processes, %zu bytes)", mg->name,
                    sresp->processes, sresp->state.len);

        mg->restore.state = sresp->state;
        r = call(mg->dst, VSOCKMUX_METHOD("Restore"), &mg->restore.base, &vsockmux__v1__restore_response__descriptor,
                 (ProtobufCMessage **)&rresp, "destination", mg->why, sizeof(mg->why));
        mg->restore.state.data = NULL;
        mg->restore.state.len = 0;
        vsockmux_message_free(&sresp->base);
        if (r < 0)
                return r;
        mg->restored = true;
        mg->t_restored = now_ns();
        snprintf(mg->dest_vm, sizeof(mg->dest_vm), "%s", rresp->vm);
        vsockmux_message_free(&rresp->base);
        if (dst_bytes(mg, &mg->dst_baseline) < 0)
                mg->dst_baseline = 0;
        say(mg, "restored", "%s: relay state restored on the destination as %s (%.1f ms after the save)", mg->name,
            mg->dest_vm, ms_since(mg->t_save, mg->t_restored));
        return 0;
}

/* Undoes whatever of the handover happened; the source domain runs on (libvirt resumed it). */
static void roll_back(struct migrate *mg)
{
        char why[VSOCKMUX_STATUS_MESSAGE_MAX + 64];
        ProtobufCMessage *resp = NULL;

        if (mg->restored) {
                Vsockmux__V1__VmRemoveRequest req = VSOCKMUX__V1__VM_REMOVE_REQUEST__INIT;

                req.name = mg->dest_vm;
                if (call(mg->dst, VSOCKMUX_METHOD("VmRemove"), &req.base, &vsockmux__v1__vm_remove_response__descriptor,
                         &resp, "destination", why, sizeof(why)) < 0)
                        cli_error(mg->cli, "rollback: cannot remove %s from the destination: %s", mg->dest_vm, why);
                else
                        mg->restored = false;
                vsockmux_message_free(resp);
                resp = NULL;
        }
        if (mg->saved) {
                Vsockmux__V1__ResumeRequest req = VSOCKMUX__V1__RESUME_REQUEST__INIT;

                req.vm = (char *)mg->name;
                if (call(mg->cli->client, VSOCKMUX_METHOD("Resume"), &req.base,
                         &vsockmux__v1__resume_response__descriptor, &resp, "source", why, sizeof(why)) < 0)
                        cli_error(mg->cli, "rollback: cannot resume %s on the source (`vsockmux resume %s`): %s", mg->name,
                                  mg->name, why);
                else
                        mg->saved = false;
                vsockmux_message_free(resp);
        }
}

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

/* The hooks follow the guest: --on-suspended when the source pauses (before the save),
 * --on-resumed when it runs again, on the destination or, after a rollback, on the source.
 * $VSOCKMUX_MIGRATE_VM and $VSOCKMUX_MIGRATE_ON (source|destination) tell them which. */
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
        hook(mg, mg->on_resumed, "on-resumed", where);
}

/* Until the destination delivers a byte more than it had at the restore: the guest is back. */
static int measure_blackout(struct migrate *mg, uint64_t *ret_ns)
{
        uint64_t deadline = now_ns() + MIGRATE_BLACKOUT_WAIT_NS, bytes;
        struct timespec step = { 0, (long)MIGRATE_BLACKOUT_POLL_NS };

        if (mg->processes == 0)
                return -ENODATA;
        while (now_ns() < deadline) {
                if (dst_bytes(mg, &bytes) < 0)
                        return -EIO;
                if (bytes > mg->dst_baseline) {
                        *ret_ns = now_ns() - mg->t_save;
                        return 0;
                }
                nanosleep(&step, NULL);
        }
        return -ETIMEDOUT;
}

/* After COMPLETED with the relay state on the destination: resume there, then tell the guest. */
static int finish(struct migrate *mg, const struct vm_migration_event *e)
{
        Vsockmux__V1__VmRemoveRequest rm = VSOCKMUX__V1__VM_REMOVE_REQUEST__INIT;
        const struct vm_migration_stats *s = &e->stats;
        ProtobufCMessage *resp = NULL;
        uint64_t blackout = 0;
        int r, br;
        char why[VSOCKMUX_STATUS_MESSAGE_MAX + 64];

        mg->completed = true;
        r = vm_migration_finalize(mg->m);
        if (r < 0) {
                /* The source domain is gone: there is nothing to roll back to. */
                snprintf(mg->why, sizeof(mg->why),
                         "the domain migrated but could not be resumed on the destination: %s; it is paused "
                         "there with the relay state (resume it with virsh)",
                         vm_migration_strerror(mg->m));
                return r;
        }
        mg->resumed = true;
        mg->t_resumed = now_ns();
        say(mg, "destination-resumed", "%s: destination domain resumed", mg->name);
        mg->hook_paused = true;
        hook_resumed(mg, "destination");
        br = measure_blackout(mg, &blackout);

        /* Before the VM goes: the event names it. */
        publish(mg, VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_COMPLETED,
                "completed: %llu ms, downtime %llu ms, %llu bytes, %llu iterations",
                (unsigned long long)s->time_elapsed_ms, (unsigned long long)s->downtime_ms,
                (unsigned long long)s->data_processed, (unsigned long long)s->memory_iteration);

        /* The VM lives on the destination now; the source keeps nothing of it. */
        rm.name = (char *)mg->name;
        if (call(mg->cli->client, VSOCKMUX_METHOD("VmRemove"), &rm.base, &vsockmux__v1__vm_remove_response__descriptor,
                 &resp, "source", why, sizeof(why)) < 0)
                cli_error(mg->cli, "cannot remove the migrated VM from the source: %s", why);
        else
                mg->saved = false;
        vsockmux_message_free(resp);

        if (mg->json) {
                struct json_object *o = json_event(mg, "summary");

                json_object_object_add(o, "migration_ms", json_object_new_uint64(s->time_elapsed_ms));
                json_object_object_add(o, "downtime_ms", json_object_new_uint64(s->downtime_ms));
                json_object_object_add(o, "data_bytes", json_object_new_uint64(s->data_processed));
                json_object_object_add(o, "iterations", json_object_new_uint64(s->memory_iteration));
                json_object_object_add(o, "processes", json_object_new_int64(mg->processes));
                json_object_object_add(o, "save_to_restore_ms",
                                       json_ms(ms_since(mg->t_save, mg->t_restored)));
                json_object_object_add(o, "save_to_resume_ms", json_ms(ms_since(mg->t_save, mg->t_resumed)));
                json_object_object_add(o, "stdio_blackout_ms",
                                       br == 0 ? json_ms((double)blackout / 1e6) : NULL);
                json_line(o);
        } else {
                char bo[96];

                if (br == 0)
                        snprintf(bo, sizeof(bo), "%.1f ms", (double)blackout / 1e6);
                else
                        snprintf(bo, sizeof(bo), "not measured (%s)",
                                 br == -ENODATA ? "no processes" : "no byte relayed within 10 s");
                say(mg, "summary",
                    "%s: migrated in %llu ms; downtime %llu ms; %.1f MiB in %llu iterations; stdio blackout %s "
                    "(save to first byte on the destination; restore after %.1f ms)",
                    mg->name, (unsigned long long)s->time_elapsed_ms, (unsigned long long)s->downtime_ms,
                    (double)s->data_processed / 1048576.0, (unsigned long long)s->memory_iteration, bo,
                    ms_since(mg->t_save, mg->t_restored));
        }
        return 0;
}

/* ---- the event loop ---- */

static void fail_now(struct migrate *mg)
{
        int r;

        if (mg->failing)
                return;
        mg->failing = true;
        r = vm_migration_abort(mg->m);
        if (r < 0)
                cli_error(mg->cli, "abort: %s", vm_migration_strerror(mg->m));
}

/* Returns 1 once the terminal event was handled (0 on success, <0 on failure in *ret). */
static int on_event(struct migrate *mg, const struct vm_migration_event *e, int *ret)
{
        switch (e->kind) {
        case VM_MIGRATION_EVENT_PROGRESS:
                if (e->has_stats) {
                        show_progress(mg, e);
                        if (e->stats.data_total > 0 && now_ns() - mg->t_published >= MIGRATE_PUBLISH_INTERVAL_NS)
                                publish(mg, VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_PROGRESS,
                                        "%u%% of %llu MiB, iteration %llu", percent(&e->stats),
                                        (unsigned long long)(e->stats.data_total >> 20),
                                        (unsigned long long)e->stats.memory_iteration);
                }
                return 0;
        case VM_MIGRATION_EVENT_ITERATION:
                if (mg->json) {
                        struct json_object *o = json_event(mg, "iteration");

                        json_object_object_add(o, "iteration", json_object_new_int(e->iteration));
                        json_line(o);
                }
                return 0;
        case VM_MIGRATION_EVENT_SUSPENDED:
                if (mg->saved || mg->failing)
                        return 0;
                mg->hook_paused = true;
                hook(mg, mg->on_suspended, "on-suspended", "source");
                if (save_and_restore(mg) < 0) {
                        say(mg, "handover-failed", "%s: %s; aborting the migration", mg->name, mg->why);
                        fail_now(mg);
                }
                return 0;
        case VM_MIGRATION_EVENT_RESUMED:
                say(mg, "source-resumed", "%s: source domain running again", mg->name);
                if (!mg->saved)
                        hook_resumed(mg, "source");
                return 0;
        case VM_MIGRATION_EVENT_SOURCE_STOPPED:
                return 0;
        case VM_MIGRATION_EVENT_COMPLETED:
                if (mg->failing || !mg->restored) {
                        if (!mg->failing)
                                snprintf(mg->why, sizeof(mg->why), "libvirt completed without the source pausing");
                        snprintf(mg->why + strlen(mg->why), sizeof(mg->why) - strlen(mg->why),
                                 "; the domain finished migrating before the abort took effect and is paused on "
                                 "the destination (not resumed)");
                        *ret = -ECANCELED;
                        return 1;
                }
                *ret = finish(mg, e);
                return 1;
        case VM_MIGRATION_EVENT_FAILED:
        case VM_MIGRATION_EVENT_ABORTED:
                if (!mg->failing || !mg->why[0])
                        snprintf(mg->why, sizeof(mg->why), "%s: %s",
                                 mg->interrupted ? "interrupted" : vm_migration_event_kind_to_string(e->kind),
                                 e->message);
                *ret = e->error < 0 ? e->error : -ECANCELED;
                return 1;
        default:
                return 0;
        }
}

/* INT/TERM/HUP: abort while that still leaves everything on the source. */
static void on_signal(struct migrate *mg, int sigfd)
{
        struct signalfd_siginfo si;

        if (read(sigfd, &si, sizeof(si)) != sizeof(si) || mg->failing)
                return;
        if (mg->saved) {
                /* Mid-switchover an abort races QEMU's last pages; finishing is the quicker way
                 * back to one consistent place. */
                say(mg, "interrupted", "%s: interrupted during the switchover; finishing it", mg->name);
                return;
        }
        mg->interrupted = true;
        say(mg, "interrupted", "%s: interrupted; aborting the migration", mg->name);
        fail_now(mg);
}

static int run(struct migrate *mg, int sigfd)
{
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = vm_migration_event_fd(mg->m), .events = POLLIN },
                        { .fd = sigfd, .events = POLLIN },
                };
                struct vm_migration_event e;
                int r, ret = 0;

                if (poll(p, 2, MIGRATE_EVENT_POLL_MS) < 0 && errno != EINTR)
                        return -errno;
                if (p[1].revents & POLLIN)
                        on_signal(mg, sigfd);
                while ((r = vm_migration_next_event(mg->m, &e)) == 0)
                        if (on_event(mg, &e, &ret) == 1)
                                return ret;
                if (r != -EAGAIN)
                        return r;
        }
}

/* ---- options ---- */

/* tcp://HOST of the libvirt URI's host part ("qemu+ssh://root@h2/system" -> "tcp://h2"); a URI
 * without a host is this machine. */
static int default_migrate_uri(const char *to, char *buf, size_t len)
{
        const char *h = strstr(to, "://"), *end, *at;
        char host[MIGRATE_HOST_MAX];
        size_t n;

        if (!h)
                return -EINVAL;
        h += 3;
        end = h + strcspn(h, "/?");
        at = memchr(h, '@', (size_t)(end - h));
        if (at)
                h = at + 1;
        if (*h == '[') {
                const char *close = memchr(h, ']', (size_t)(end - h));

                n = close ? (size_t)(close + 1 - h) : (size_t)(end - h);
        } else
                n = strcspn(h, ":/?");
        if (n >= sizeof(host))
                return -ERANGE;
        memcpy(host, h, n);
        host[n] = '\0';
        snprintf(buf, len, "tcp://%s", n ? host : "127.0.0.1");
        return 0;
}

static int parse_pair(const char *s, uint32_t *a, uint32_t *b)
{
        const char *comma = strchr(s, ',');
        char first[16];

        if (!comma || (size_t)(comma - s) >= sizeof(first))
                return -EINVAL;
        memcpy(first, s, (size_t)(comma - s));
        first[comma - s] = '\0';
        return cli_parse_u32(first, 0, UINT32_MAX, a) < 0 || cli_parse_u32(comma + 1, 0, UINT32_MAX, b) < 0 ? -EINVAL
                                                                                                          : 0;
}

static int parse_i64(const char *s, int64_t *ret)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (!*s || *end || errno)
                return -EINVAL;
        *ret = v;
        return 0;
}

enum {
        OPT_TO = 0x100, OPT_FROM, OPT_DOMAIN, OPT_DEST_SOCKET, OPT_DEST_NAME, OPT_DEST_HVSOCK, OPT_DEST_CID, OPT_IO,
        OPT_TRANSPORT, OPT_BANDWIDTH, OPT_DOWNTIME, OPT_COMPRESSION, OPT_XBZRLE_CACHE, OPT_MT_LEVEL, OPT_MT_THREADS,
        OPT_MT_DTHREADS, OPT_PARALLEL, OPT_AUTO_CONVERGE, OPT_PERSIST, OPT_MIGRATE_URI, OPT_P2P, OPT_DIRECT, OPT_JSON,
        OPT_ON_RESUMED, OPT_ON_SUSPENDED,
};

struct migrate_args {
        const char *to, *from, *domain, *migrate_uri, *compression;
        enum vm_migration_mode mode;
        Vsockmux__Migration__Options o;
        Vsockmux__Migration__Xbzrle xbzrle;
        Vsockmux__Migration__Multithread mt;
        Vsockmux__Migration__AutoConverge ac;
        bool mt_given, xbzrle_given;
        Vsockmux__V1__RestoreIo *ios;
        Vsockmux__V1__RestoreIo **io_ptrs;
        char **copies;
        size_t n_io;
};

static int parse_options(struct migrate *mg, struct migrate_args *a, int argc, char **argv)
{
        static const struct option options[] = {
                { "to", required_argument, NULL, OPT_TO },
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
                {}
        };
        struct cli *cli = mg->cli;
        uint64_t u64;
        uint32_t u32;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) >= 0) {
                char *end;

                switch (c) {
                case OPT_TO: a->to = optarg; break;
                case OPT_FROM: a->from = optarg; break;
                case OPT_DOMAIN: a->domain = optarg; break;
                case OPT_DEST_SOCKET: mg->dest_socket = optarg; break;
                case OPT_DEST_NAME: mg->restore.name = optarg; break;
                case OPT_JSON: mg->json = true; break;
                case OPT_ON_RESUMED: mg->on_resumed = optarg; break;
                case OPT_ON_SUSPENDED: mg->on_suspended = optarg; break;
                case OPT_PERSIST: a->o.persist_destination = true; break;
                case OPT_MIGRATE_URI: a->migrate_uri = optarg; break;
                case OPT_P2P: a->mode = VM_MIGRATION_P2P; break;
                case OPT_DIRECT: a->mode = VM_MIGRATION_DIRECT; break;
                case OPT_DEST_HVSOCK:
                        r = cli_check_hvsock(cli, "--dest-hvsock", optarg);
                        if (r != 0)
                                return r;
                        mg->restore.transport_case = VSOCKMUX__V1__RESTORE_REQUEST__TRANSPORT_HVSOCK_PATH;
                        mg->restore.hvsock_path = optarg;
                        break;
                case OPT_DEST_CID:
                        r = cli_parse_cid(cli, "--dest-cid", optarg, &u32);
                        if (r != 0)
                                return r;
                        mg->restore.transport_case = VSOCKMUX__V1__RESTORE_REQUEST__TRANSPORT_CID;
                        mg->restore.cid = u32;
                        break;
                case OPT_IO:
                        if (a->n_io == CLI_MAX_IO)
                                return cli_usage_error(cli, "at most %u --io options", CLI_MAX_IO);
                        if (cli_parse_restore_io(optarg, &a->ios[a->n_io], &a->copies[a->n_io]) < 0)
                                return cli_usage_error(cli, "--io wants PID:stdin=PATH,stdout=PATH,stderr=PATH "
                                                            "with absolute paths, got '%s'", optarg);
                        a->io_ptrs[a->n_io] = &a->ios[a->n_io];
                        a->n_io++;
                        break;
                case OPT_TRANSPORT:
                        if (strcmp(optarg, "tcp") == 0)
                                a->o.transport = VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_TCP;
                        else if (strcmp(optarg, "unix") == 0)
                                a->o.transport = VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_UNIX;
                        else if (strcmp(optarg, "tls") == 0)
                                a->o.transport = VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_TLS;
                        else
                                return cli_usage_error(cli, "--transport wants tcp, unix or tls");
                        break;
                /* Numbers go to the converter as given: it names the field and the range. */
                case OPT_BANDWIDTH:
                        if (parse_i64(optarg, &a->o.bandwidth_mib_per_s) < 0)
                                return cli_usage_error(cli, "--bandwidth wants MiB/s as a number");
                        break;
                case OPT_DOWNTIME:
                        if (parse_i64(optarg, &a->o.max_downtime_ms) < 0)
                                return cli_usage_error(cli, "--downtime wants milliseconds as a number");
                        break;
                case OPT_COMPRESSION:
                        if (strcmp(optarg, "none") != 0 && strcmp(optarg, "xbzrle") != 0 && strcmp(optarg, "mt") != 0)
                                return cli_usage_error(cli, "--compression wants none, xbzrle or mt");
                        a->compression = optarg;
                        break;
                case OPT_XBZRLE_CACHE:
                        errno = 0;
                        u64 = strtoull(optarg, &end, 10);
                        if (optarg[0] == '-' || !*optarg || *end || errno)
                                return cli_usage_error(cli, "--xbzrle-cache wants bytes as a number");
                        a->xbzrle.cache_size_bytes = u64;
                        a->xbzrle_given = true;
                        break;
                case OPT_MT_LEVEL:
                        if (cli_parse_u32(optarg, 0, UINT32_MAX, &a->mt.level) < 0)
                                return cli_usage_error(cli, "--mt-level wants a number");
                        a->mt.level_set = true;
                        a->mt_given = true;
                        break;
                case OPT_MT_THREADS:
                case OPT_MT_DTHREADS:
                        if (cli_parse_u32(optarg, 0, UINT32_MAX, &u32) < 0)
                                return cli_usage_error(cli, "--mt-threads/--mt-dthreads want a number");
                        *(c == OPT_MT_THREADS ? &a->mt.compress_threads : &a->mt.decompress_threads) = u32;
                        a->mt_given = true;
                        break;
                case OPT_PARALLEL:
                        if (cli_parse_u32(optarg, 0, UINT32_MAX, &a->o.parallel_connections) < 0)
                                return cli_usage_error(cli, "--parallel wants a number of connections");
                        break;
                case OPT_AUTO_CONVERGE:
                        if (parse_pair(optarg, &a->ac.initial_percent, &a->ac.increment_percent) < 0)
                                return cli_usage_error(cli, "--auto-converge wants INITIAL,INCREMENT percentages");
                        a->o.auto_converge = &a->ac;
                        break;
                default:
                        return cli_option_error(cli, c, argv);
                }
        }
        if (argc - optind != 1 || !a->to || !a->domain || !mg->dest_socket)
                return cli_usage_error(cli, "expected NAME --to LIBVIRT_URI --domain DOMAIN --dest-socket PATH");
        mg->name = argv[optind];
        if (a->compression && strcmp(a->compression, "xbzrle") == 0) {
                a->o.compression_case = VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_XBZRLE;
                a->o.xbzrle = &a->xbzrle;
        } else if (a->compression && strcmp(a->compression, "mt") == 0) {
                a->o.compression_case = VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_MULTITHREAD;
                a->o.multithread = &a->mt;
        }
        if ((a->xbzrle_given && a->o.compression_case != VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_XBZRLE) ||
            (a->mt_given && a->o.compression_case != VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_MULTITHREAD))
                return cli_usage_error(cli, "--xbzrle-cache needs --compression xbzrle, --mt-* need --compression mt");
        return 0;
}

int cli_migrate(struct cli *cli, int argc, char **argv)
{
        struct migrate mg = { .cli = cli, .restore = VSOCKMUX__V1__RESTORE_REQUEST__INIT };
        struct migrate_args a = {
                .from = MIGRATE_DEFAULT_FROM,
                .mode = VM_MIGRATION_P2P,
                .o = VSOCKMUX__MIGRATION__OPTIONS__INIT,
                .xbzrle = VSOCKMUX__MIGRATION__XBZRLE__INIT,
                .mt = VSOCKMUX__MIGRATION__MULTITHREAD__INIT,
                .ac = VSOCKMUX__MIGRATION__AUTO_CONVERGE__INIT,
        };
        _cleanup_free_ Vsockmux__V1__RestoreIo *ios = calloc(CLI_MAX_IO, sizeof(*ios));
        _cleanup_free_ Vsockmux__V1__RestoreIo **io_ptrs = calloc(CLI_MAX_IO, sizeof(*io_ptrs));
        _cleanup_free_ char **copies = calloc(CLI_MAX_IO, sizeof(*copies));
        _cleanup_close_ int sigfd = -1;
        struct vm_migration_config cfg;
        struct vm_migrate_params params;
        Vsockmux__V1__BridgeState bs;
        char err[VM_ERR_MAX] = "", uri[VM_URI_MAX];
        sigset_t mask, old;
        int r, rc = CLI_EXIT_FAILURE;

        if (!ios || !io_ptrs || !copies)
                return cli_error(cli, "out of memory");
        a.ios = ios;
        a.io_ptrs = io_ptrs;
        a.copies = copies;
        r = parse_options(&mg, &a, argc, argv);
        if (r != 0) {
                rc = r;
                goto out_io;
        }
        mg.restore.io = a.io_ptrs;
        mg.restore.n_io = a.n_io;
        mg.tty = isatty(STDOUT_FILENO);

        /* Every option is checked before anything happens, with the converter's own words. */
        r = vm_migrate_options_from_proto(&a.o, &params, err, sizeof(err));
        if (r < 0) {
                rc = cli_usage_error(cli, "%s", err);
                goto out_io;
        }
        params.start_paused = true;     /* resumed by us, once the relay state is on the destination */
        if (a.migrate_uri)
                snprintf(uri, sizeof(uri), "%s", a.migrate_uri);
        else if (params.transport == VM_TRANSPORT_UNIX) {
                rc = cli_usage_error(cli, "--transport unix needs --migrate-uri unix:///PATH");
                goto out_io;
        } else if (default_migrate_uri(a.to, uri, sizeof(uri)) < 0) {
                rc = cli_usage_error(cli, "cannot take a host from --to %s; give --migrate-uri", a.to);
                goto out_io;
        }
        r = vm_migrate_params_check_uri(&params, uri, err, sizeof(err));
        if (r < 0) {
                rc = cli_usage_error(cli, "%s", err);
                goto out_io;
        }

        /* Both daemons answer and agree before libvirt is asked anything. */
        r = cli_connect(cli);
        if (r != 0) {
                rc = r;
                goto out_io;
        }
        r = find_vm(cli->client, mg.name, &bs);
        if (r < 0) {
                rc = cli_error(cli, r == -ENOENT ? "no VM '%s' on the source daemon" : "source daemon: %s",
                               r == -ENOENT ? mg.name : strerror(-r));
                goto out_io;
        }
        if (bs == VSOCKMUX__V1__BRIDGE_STATE__BRIDGE_STATE_MIGRATING) {
                rc = cli_error(cli, "VM %s is migrating or saved already", mg.name);
                goto out_io;
        }
        r = vsockmux_client_connect(mg.dest_socket, &mg.dst);
        if (r < 0) {
                rc = cli_error(cli, "cannot reach the destination vsockmuxd at %s: %s", mg.dest_socket, strerror(-r));
                goto out_io;
        }
        if (find_vm(mg.dst, mg.restore.name ?: mg.name, &bs) == 0) {
                rc = cli_error(cli, "the destination daemon has a VM '%s' already", mg.restore.name ?: mg.name);
                goto out;
        }

        /* From here a signal aborts the migration instead of killing us halfway. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, &old);
        sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (sigfd < 0) {
                rc = cli_error(cli, "signalfd: %m");
                goto out_sig;
        }

        cfg = (struct vm_migration_config){
                .src_uri = a.from,
                .domain = a.domain,
                .dest_uri = a.to,
                .migrate_uri = uri,
                .mode = a.mode,
        };
        mg.t_start = now_ns();
        publish(&mg, VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_STARTED, "domain %s to %s (%s, vsockmuxd %s)",
                a.domain, a.to, uri, mg.dest_socket);
        r = vm_migration_start(&cfg, &params, &mg.m, err, sizeof(err));
        if (r < 0) {
                publish(&mg, VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_FAILED, "could not start: %s", err);
                rc = cli_error(cli, "cannot start the migration: %s", err);
                goto out_sig;
        }
        say(&mg, "started", "%s: migrating domain %s to %s over %s", mg.name, a.domain, a.to, uri);

        r = run(&mg, sigfd);
        bar_clear(&mg);
        if (r == 0) {
                rc = 0;
                goto out_sig;
        }
        if (!mg.why[0])
                snprintf(mg.why, sizeof(mg.why), "%s", strerror(-r));
        if (!mg.completed) {
                roll_back(&mg);
                hook_resumed(&mg, "source");
                publish(&mg, VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_FAILED, "%s", mg.why);
                if (mg.json) {
                        struct json_object *o = json_event(&mg, "failed");

                        json_object_object_add(o, "message", json_object_new_string(mg.why));
                        json_object_object_add(o, "rolled_back", json_object_new_boolean(!mg.saved && !mg.restored));
                        json_line(o);
                }
                rc = cli_error(cli, "%s%s", mg.why,
                               !mg.saved && !mg.restored ? "; rolled back: the VM stays on the source" : "");
        } else
                rc = cli_error(cli, "%s", mg.why);
out_sig:
        mg.m = vm_migration_free(mg.m);
        sigprocmask(SIG_SETMASK, &old, NULL);
out:
        mg.dst = vsockmux_client_free(mg.dst);
out_io:
        for (size_t i = 0; i < a.n_io; i++)
                free(a.copies[i]);
        return rc;
}
