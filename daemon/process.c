/* daemon/process.c: a VM's process table and one exec's life: endpoints, ports, ExecuteProcess,
 * the wait, and the exit report that always follows the output's EOF (the streams are in
 * process-stream.c, the saved state in process-state.c). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/endpoint.h"
#include "daemon/exec-id.h"
#include "daemon/exit-file.h"
#include "daemon/process-private.h"
#include "util/log.h"

const char *vmm_process_state_to_string(enum vmm_process_state s)
{
        static const char *const names[_VMM_PROCESS_STATE_MAX] = {
                [VMM_PROCESS_PENDING] = "pending", [VMM_PROCESS_STARTING] = "starting",
                [VMM_PROCESS_RUNNING] = "running", [VMM_PROCESS_EXITED] = "exited",
                [VMM_PROCESS_LOST] = "lost",
        };

        return s >= 0 && s < _VMM_PROCESS_STATE_MAX ? names[s] : "invalid";
}

const char *vmm_exit_kind_to_string(enum vmm_exit_kind k)
{
        return k == VMM_EXIT_EXITED ? "exited" : k == VMM_EXIT_SIGNALED ? "signaled" : "lost";
}

static char **strv_copy(const char *const *v, size_t n)
{
        char **c = calloc(n + 1, sizeof(char *));

        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(v[i] ? v[i] : "");
                if (!c[i]) {
                        for (size_t j = 0; j < i; j++)
                                free(c[j]);
                        free(c);
                        return NULL;
                }
        }
        return c;
}

static void strv_free(char **v, size_t n)
{
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/* Tells every starter, once: the pid is known (error 0) or the exec failed. */
static void process_started(struct vmm_process *p, int error, const char *message)
{
        while (!list_empty(&p->starters)) {
                struct vmm_starter *s = list_entry(p->starters.next, struct vmm_starter, link);

                list_del(&s->link);
                s->fn(p, error, message, s->userdata);
                free(s);
        }
}

void process_free(struct vmm_process *p)
{
        struct vmm_processes *t = p->table;

        while (!list_empty(&p->starters)) {
                struct vmm_starter *s = list_entry(p->starters.next, struct vmm_starter, link);

                list_del(&s->link);
                free(s);
        }

        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                struct relay_stream_counters *c = &p->streams[k].counters;

                stream_release(&p->streams[k]);
                free(p->streams[k].endpoint);
                /* Live processes are summed when asked; a forgotten one's bytes stay counted. */
                t->bytes[k] += k == VMM_STDIN ? c->tx_guest : c->tx_endpoint;
        }
        if (p->exit_reported)
                t->n_exited--;
        t->streams_held -= p->held;
        list_del(&p->link);
        list_del(&p->record_link);
        if (p->pid)
                pid_index_del(&t->pids, &p->pid_node);
        t->n--;
        p->attach = attach_free(p->attach);
        p->timer = relay_timer_free(p->timer);
        strv_free(p->argv, p->n_argv);
        strv_free(p->env, p->n_env);
        free(p->container_id);
        safe_close(p->log_fd);
        free(p->log_path);
        free(p->log_groups);
        free(p->creds_groups);
        free(p->cwd);
        /* Out of the table first: a mark that cannot wait writes the whole VM at once. */
        process_table_gone(t, p->pid, p->exec_id);
        free(p->exec_id);
        free(p);
}

void process_set_pid(struct vmm_process *p, uint32_t pid)
{
        if (p->pid)
                pid_index_del(&p->table->pids, &p->pid_node);
        p->pid = pid;
        if (pid)
                pid_index_add(&p->table->pids, &p->pid_node, pid, p->seq);
}

void process_set_state(struct vmm_process *p, enum vmm_process_state state)
{
        p->state = state;
        process_held_sync(p);
}

static bool process_table_notify(struct vmm_processes *t, uint32_t pid, const char *gone_exec_id, bool now)
{
        /* Handed over or stopped: the record is another daemon's, or stays as it was written. */
        if (t->handed_over || t->stopped || !t->ops || !t->ops->on_changed)
                return false;
        return t->ops->on_changed(pid, gone_exec_id, now, t->userdata);
}

bool process_table_changed(struct vmm_processes *t, uint32_t pid, bool now)
{
        return process_table_notify(t, pid, NULL, now);
}

void process_table_gone(struct vmm_processes *t, uint32_t pid, const char *exec_id)
{
        /* An exec that never had a pid was never recorded: only the VM's fields may have changed. */
        (void)process_table_notify(t, pid, pid ? exec_id : NULL, false);
}

void vmm_processes_encoded(struct vmm_processes *t)
{
        while (!list_empty(&t->durable_wait)) {
                struct vmm_process *p = list_entry(t->durable_wait.next, struct vmm_process, record_link);

                list_del(&p->record_link);
                p->awaiting_durable = false;
                p->awaiting_written = true;
                list_add_tail(&t->written_wait, &p->record_link);
        }
}

bool vmm_processes_awaiting_record(const struct vmm_processes *t)
{
        return !list_empty(&t->durable_wait);
}

/* Off both lists, told or not. */
static void process_record_unwait(struct vmm_process *p)
{
        p->awaiting_durable = p->awaiting_written = false;
        list_del(&p->record_link);
}

void vmm_processes_durable(struct vmm_processes *t)
{
        /* A starter may exec again (onto durable_wait) or forget processes: take one at a time. */
        while (!list_empty(&t->written_wait)) {
                struct vmm_process *p = list_entry(t->written_wait.next, struct vmm_process, record_link);

                process_record_unwait(p);
                process_started(p, 0, "");
        }
}

/* Forgets the oldest reported exits beyond the configured number. */
static void process_prune(struct vmm_processes *t)
{
        struct list_head *pos, *tmp;

        list_for_each_safe(pos, tmp, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                if (t->n_exited <= t->guest->ctx->cfg->exited_keep)
                        return;
                if (p->exit_reported && list_empty(&p->waiters) && !p->wait_outstanding && !p->in_exec)
                        process_free(p);
        }
}

/* At the process cap an exec makes room by forgetting the oldest reported exit, as pruning would. */
static void process_forget_oldest(struct vmm_processes *t)
{
        struct list_head *pos, *tmp;

        list_for_each_safe(pos, tmp, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                if (p->exit_reported && list_empty(&p->waiters) && !p->wait_outstanding && !p->in_exec) {
                        process_free(p);
                        return;
                }
        }
}

static bool path_given(const char *path)
{
        return path && path[0];
}

/* The streams process_send_exec() gives a port. */
static bool process_stream_wanted(const struct vmm_process *p, enum vmm_stream_kind k)
{
        return k == VMM_STDIN ? p->streams[k].endpoint != NULL : k == VMM_STDOUT || !p->no_stderr;
}

/* Streams that hold a listener or a relay stream now, and those a pending exec will open. */
static unsigned process_streams_held(const struct vmm_process *p)
{
        unsigned n = 0;

        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                const struct vmm_stream *s = &p->streams[k];

                if (p->state == VMM_PROCESS_PENDING ? process_stream_wanted(p, k) : s->listener || s->stream)
                        n++;
        }
        return n;
}

void process_held_sync(struct vmm_process *p)
{
        unsigned n = process_streams_held(p);

        p->table->streams_held = p->table->streams_held - p->held + n;
        p->held = (uint8_t)n;
}

unsigned vmm_processes_streams_held(const struct vmm_processes *t)
{
        return t->streams_held;
}

int vmm_processes_check_counts(const struct vmm_processes *t)
{
        struct list_head *pos;
        unsigned held = 0, durable = 0, written = 0, on_durable = 0, on_written = 0, n = 0;

        list_for_each(pos, &t->list) {
                const struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                held += process_streams_held(p);
                durable += p->awaiting_durable;
                written += p->awaiting_written;
        }
        /* Each list holds exactly the processes with its flag. */
        list_for_each(pos, &t->durable_wait) {
                on_durable += list_entry(pos, struct vmm_process, record_link)->awaiting_durable;
                n++;
        }
        list_for_each(pos, &t->written_wait) {
                on_written += list_entry(pos, struct vmm_process, record_link)->awaiting_written;
                n++;
        }
        return held == t->streams_held && durable == on_durable && written == on_written && n == on_durable + on_written
                       ? 0
                       : -EBADMSG;
}

unsigned vmm_processes_streams_open(const struct vmm_processes *t)
{
        struct list_head *pos;
        unsigned n = 0;

        list_for_each(pos, &t->list) {
                const struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                        if (p->streams[k].stream)
                                n++;
        }
        return n;
}

void vmm_processes_add_counters(const struct vmm_processes *t, struct vmm_vm_counters *c)
{
        struct list_head *pos;

        c->processes += t->n;
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                c->bytes[k] += t->bytes[k];
        c->stream_errors += t->stream_errors;
        c->dropped_bytes += t->dropped_bytes;
        list_for_each(pos, &t->list) {
                const struct vmm_process *p = list_entry(pos, struct vmm_process, link);
                struct vmm_process_info info;

                vmm_process_get_info(p, &info);
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                        c->bytes[k] += info.bytes[k];
                        if (p->streams[k].stream && !p->streams[k].done)
                                c->streams++;
                }
        }
}

void process_report(struct vmm_process *p)
{
        struct vmm_processes *t = p->table;
        struct list_head *pos, *tmp;

        p->exit_reported = true;
        t->n_exited++;
        relay_timer_disarm(p->timer);
        /* Nothing reads stdin any more and no output will come: let go of the host endpoints and
         * the ports' listeners. Attach clients see the end. */
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                if (k == VMM_STDIN || p->streams[k].done)
                        stream_release(&p->streams[k]);
        attach_end(p->attach);
        /* conmon's contract: the file appears, whole, only once the output drained (we are past
         * every output EOF here), and before any waiter hears of the exit. Lost: -1, never 0. */
        if (t->guest->ctx->exit_dir_fd >= 0) {
                int k = exit_file_write(t->guest->ctx->exit_dir_fd, p->exec_id,
                                        p->exit.kind == VMM_EXIT_EXITED ? p->exit.code : -1);

                if (k < 0)
                        log_warn("vm %s: process %u: cannot write exit file %s/%s: %s", t->guest->vm_name, p->pid,
                                 t->guest->ctx->cfg->exit_dir, p->exec_id, strerror(-k));
        }
        if (p->exit.kind == VMM_EXIT_EXITED)
                log_info("vm %s: process %u exited with code %d", t->guest->vm_name, p->pid, p->exit.code);
        else if (p->exit.kind == VMM_EXIT_SIGNALED)
                log_info("vm %s: process %u %s", t->guest->vm_name, p->pid, p->exit.message);
        else
                log_warn("vm %s: process %u: %s", t->guest->vm_name, p->pid, p->exit.message);
        list_for_each_safe(pos, tmp, &p->waiters) {
                struct vmm_waiter *w = list_entry(pos, struct vmm_waiter, link);

                list_del(&w->link);
                w->fn(p, &p->exit, w->userdata);
                free(w);
        }
        vmm_context_emit(t->guest->ctx, VMM_EVENT_PROCESS_EXITED, t->guest->vm_name, p->container_id, p->pid, &p->exit,
                         p->exit.message);
        process_table_changed(t, p->pid, false);
        if (!t->guest->removing)
                process_prune(t);
}

void process_maybe_report(struct vmm_process *p)
{
        if (!p->exit_known || p->exit_reported)
                return;
        for (int k = VMM_STDOUT; k < _VMM_STREAM_KIND_MAX; k++) {
                struct vmm_stream *s = &p->streams[k];

                if (s->port != 0 && !s->done && s->no_redial && !s->stream) {
                        /* Nothing is connected and nothing will dial: waiting could only time out. */
                        log_info("vm %s: process %u: %s was not dialled again after the move (without the "
                                 "resume extension, hcsshim's guest redials only a container's init); not waiting for "
                                 "it",
                                 process_guest(p)->vm_name, p->pid, vmm_stream_names[k]);
                        stream_release(s);
                        s->done = true;
                        s->error = -ENOTCONN;
                        continue;
                }
                if (s->port != 0 && !s->done) {
                        /* The guest reports the exit only after its relays drained, so EOF is near;
                         * a bound keeps a wedged stream from hiding the exit for ever. */
                        if (!relay_timer_is_armed(p->timer) &&
                            relay_timer_arm(p->timer, process_ctx(p)->cfg->drain_timeout_ns) < 0)
                                break;
                        return;
                }
        }
        process_report(p);
}

uint64_t process_realtime_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void process_set_exit(struct vmm_process *p, enum vmm_exit_kind kind, int code, const char *message)
{
        /* A later call only refines how it ended (the signal's name), not when. */
        if (!p->exit_known)
                p->exited_ns = process_realtime_ns();
        p->exit_known = true;
        p->exit.kind = kind;
        p->exit.code = code;
        snprintf(p->exit.message, sizeof(p->exit.message), "%s", message ? message : "");
        process_set_state(p, kind == VMM_EXIT_LOST ? VMM_PROCESS_LOST : VMM_PROCESS_EXITED);
}

/* The guest said a signal killed p but not which: name the one Kill delivered just before, if any. */
static void process_set_signaled(struct vmm_process *p)
{
        uint64_t now = relay_now_ns(process_ctx(p)->relay);
        char msg[160];

        if (p->killed_by > 0 && now - p->killed_at_ns <= VMM_SIGNAL_ATTRIBUTION_NS) {
                snprintf(msg, sizeof(msg), "killed by signal %d, which vsockmuxd delivered (the guest did not name it)",
                         p->killed_by);
                process_set_exit(p, VMM_EXIT_SIGNALED, p->killed_by, msg);
        } else
                process_set_exit(p, VMM_EXIT_SIGNALED, 0, "killed by a signal the guest did not name");
}

static void process_on_timer(struct relay_timer *t, void *userdata)
{
        struct vmm_process *p = userdata;

        if (p->state == VMM_PROCESS_PENDING) {
                log_warn("vm %s: exec timed out: the guest's bridge did not connect", process_guest(p)->vm_name);
                process_started(p, -ETIMEDOUT, "the guest's bridge did not connect in time");
                process_free(p);
                return;
        }
        for (int k = VMM_STDOUT; k < _VMM_STREAM_KIND_MAX; k++) {
                struct vmm_stream *s = &p->streams[k];

                if (s->port == 0 || s->done)
                        continue;
                log_warn("vm %s: process %u: %s did not reach EOF within the drain timeout after exit; closed",
                         process_guest(p)->vm_name, p->pid, vmm_stream_names[k]);
                stream_release(s);
                s->done = true;
                s->error = -ETIMEDOUT;
        }
        process_report(p);
}

/* ---- exec ---- */

void process_on_wait(const struct bridge_result *res, void *userdata)
{
        struct vmm_process *p = userdata;

        /* A recorded stop: the bridge failing its calls says nothing about the guest's process. */
        if (p->table->stopped)
                return;
        p->wait_outstanding = false;
        p->wait_call_id = 0;
        switch (res->status) {
        case BRIDGE_STATUS_OK:
                if (res->signaled)
                        process_set_signaled(p);
                else
                        process_set_exit(p, VMM_EXIT_EXITED, res->exit_code, "");
                break;
        case BRIDGE_STATUS_EXIT_LOST: process_set_exit(p, VMM_EXIT_LOST, -1, "exit status lost"); break;
        case BRIDGE_STATUS_CLOSED:
                /* A saved VM's calls end here only when the VM is dropped after the handover. */
                process_set_exit(p, VMM_EXIT_LOST, -1,
                                 process_guest(p)->saved ? "exit status lost: the VM was handed to another daemon"
                                                         : "exit status lost: bridge closed");
                break;
        default: {
                char msg[160];

                snprintf(msg, sizeof(msg), "exit status lost: %s", res->message);
                process_set_exit(p, VMM_EXIT_LOST, -1, msg);
                break;
        }
        }
        process_maybe_report(p);
}

static int process_start_wait(struct vmm_process *p)
{
        int r = bridge_host_wait(process_guest(p)->bridge, p->container_id, p->pid, BRIDGE_WAIT_INFINITE,
                                 process_on_wait, p, &p->wait_call_id);

        if (r < 0)
                return r;
        p->wait_outstanding = true;
        return 0;
}

/* A pid the guest hands out again replaces an old, reported entry. */
static void process_forget_pid(struct vmm_processes *t, struct vmm_process *keep, uint32_t pid)
{
        for (struct pid_node *e = pid_index_first(&t->pids, pid), *following; e; e = following) {
                struct vmm_process *p = container_of(e, struct vmm_process, pid_node);

                following = pid_index_next(e, pid);
                if (p != keep && p->exit_reported && list_empty(&p->waiters))
                        process_free(p);
        }
}

static void process_fail(struct vmm_process *p, int error, const char *message)
{
        process_started(p, error, message);
        if (!process_guest(p)->removing)
                process_free(p);
}

static void process_on_exec(const struct bridge_result *res, void *userdata)
{
        struct vmm_process *p = userdata;
        struct vmm_processes *t = p->table;
        int r;

        p->in_exec = false;
        if (res->error < 0) {
                log_warn("vm %s: exec of %s failed: %s", t->guest->vm_name, p->argv[0], res->message);
                /* The guest never dials a stream of a failed exec: stop listening for it. */
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                        stream_release(&p->streams[k]);
                process_fail(p, res->error, res->message);
                return;
        }
        process_set_pid(p, res->pid);
        process_set_state(p, VMM_PROCESS_RUNNING);
        p->started_ns = process_realtime_ns();
        process_forget_pid(t, p, p->pid);
        r = process_start_wait(p);
        if (r < 0) {
                /* Without a wait the exit could never be reported: say so instead of hanging. */
                log_error("vm %s: process %u: cannot send WaitForProcess: %s", t->guest->vm_name, p->pid, strerror(-r));
                process_set_exit(p, VMM_EXIT_LOST, -1, "exit status lost: WaitForProcess could not be sent");
        }
        log_info("vm %s: process %u started: %s", t->guest->vm_name, p->pid, p->argv[0]);
        vmm_context_emit(t->guest->ctx, VMM_EVENT_PROCESS_STARTED, t->guest->vm_name, p->container_id, p->pid, NULL,
                         p->argv[0]);
        /* Durable before the client sees the pid: a crash after it never forgets the process. The
         * record is written once this loop turn, for every exec answered in it (one fsync). */
        /* Before: a write that cannot wait runs inside the call. */
        p->awaiting_durable = true;
        list_add_tail(&t->durable_wait, &p->record_link);
        if (!process_table_changed(t, p->pid, false) && p->awaiting_durable) {
                process_record_unwait(p);
                process_started(p, 0, "");
        }
        process_maybe_report(p);
}

int process_attach_open(struct vmm_process *p, unsigned seq)
{
        const struct vmm_context *ctx = process_ctx(p);
        struct attach_config cfg = {
                .backlog = ctx->cfg->attach_backlog,
                .client_max_tx = ctx->cfg->attach_client_max_tx,
                .max_clients = p->attach_max_clients,
        };
        char path[RELAY_UDS_PATH_MAX], name[VMM_NAME_MAX + 32];

        if (snprintf(path, sizeof(path), "%s/%s.%u", ctx->attach_dir, process_guest(p)->vm_name, seq) >=
            (int)sizeof(path))
                return -ENAMETOOLONG;
        snprintf(name, sizeof(name), "vm %s: exec %u", process_guest(p)->vm_name, seq);
        return attach_new(ctx->relay, path, &cfg, name, &p->attach);
}

int vmm_process_attach_listen(struct vmm_process *p)
{
        if (!p->attach) {
                int r = process_attach_open(p, ++p->table->exec_seq);

                if (r < 0)
                        return r;
                if (p->exit_reported)
                        attach_end(p->attach);
        }
        return attach_listen(p->attach);
}

/* Output without an endpoint goes to the attach backlog, and -i's stdin comes from attach clients:
 * such a process needs its attach state from the start. Any other gets it on its first Attach,
 * so an idle process with endpoints holds none (B7). */
static bool process_keeps_for_attach(const struct vmm_process *p, const struct vmm_exec_params *params)
{
        return !p->streams[VMM_STDOUT].endpoint || (!p->no_stderr && !p->streams[VMM_STDERR].endpoint) ||
               (params->interactive && !path_given(params->stdin_path));
}

/* Ports, listeners, then the request: the guest dials as soon as it reads it. */
static int process_send_exec(struct vmm_process *p, struct vmm_error *err)
{
        struct vmm_processes *t = p->table;
        struct bridge_stdio_ports ports = { 0 };
        uint32_t *port_slot[_VMM_STREAM_KIND_MAX] = { &ports.stdin_port, &ports.stdout_port, &ports.stderr_port };
        struct bridge_process_params params = {
                .args = (const char **)p->argv,
                .n_args = p->n_argv,
                .working_dir = p->cwd,
                .env = (const char **)p->env,
                .n_env = p->n_env,
                .emulate_console = p->terminal,
                .console_height = p->console_height,
                .console_width = p->console_width,
        };
        int r;

        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                struct vmm_stream *s = &p->streams[k];

                /* A console has one output: the guest merges stderr into it (hcsshim's TtyRelay).
                 * A stderr nobody could read gets no port rather than a late listener: the guest
                 * dials every port the request names, at once, and fails the exec if one does
                 * not accept (hcsshim's internal/guest/stdio.Connect). */
                if (!process_stream_wanted(p, k))
                        continue;
                r = ports_alloc(t->guest->ports, &s->port);
                if (r < 0) {
                        vmm_error_set(err, r, "no stdio port left in VM %s", t->guest->vm_name);
                        goto undo;
                }
                r = stream_listen(s);
                if (r < 0) {
                        vmm_error_set(err, r, "cannot listen on %s port 0x%08x: %s", vmm_stream_names[k], s->port,
                                      strerror(-r));
                        goto undo;
                }
                *port_slot[k] = s->port;
        }
        r = bridge_host_exec(t->guest->bridge, p->container_id, &params, &ports, process_on_exec, p);
        if (r == -EMSGSIZE) {
                vmm_error_set(err, r,
                              "the ExecuteProcess request is over the bridge frame limit of %zu bytes "
                              "(argv and env too long, or vsockmuxd --max-bridge-frame)",
                              bridge_host_max_frame(t->guest->bridge));
                goto undo;
        }
        if (r < 0) {
                vmm_error_set(err, r, "cannot send ExecuteProcess: %s", strerror(-r));
                goto undo;
        }
        p->in_exec = true;
        process_set_state(p, VMM_PROCESS_STARTING);
        relay_timer_disarm(p->timer);
        return 0;
undo:
        /* Ports stay used: they are never handed out twice in a VM's life. */
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                p->streams[k].listener = relay_listener_free(p->streams[k].listener);
        process_held_sync(p);
        return r;
}

void vmm_processes_bridge_connected(struct vmm_processes *t)
{
        struct list_head *pos, *tmp;

        list_for_each_safe(pos, tmp, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);
                struct vmm_error err = {};
                int r;

                if (p->state != VMM_PROCESS_PENDING)
                        continue;
                r = process_send_exec(p, &err);
                if (r < 0) {
                        log_warn("vm %s: queued exec failed: %s", t->guest->vm_name, err.message);
                        process_fail(p, r, err.message);
                }
        }
}

int process_open_endpoints(struct vmm_process *p, const struct vmm_exec_params *params, struct vmm_error *err)
{
        char default_log[PATH_MAX];
        struct vmm_exec_params with_default;

        if (process_log_default(p, params, &with_default, default_log, sizeof(default_log)))
                params = &with_default;
        const char *paths[_VMM_STREAM_KIND_MAX] = { params->stdin_path, params->stdout_path, params->stderr_path };

        if ((params->log_journald || path_given(params->log_k8s_path)) &&
            ((paths[VMM_STDOUT] && paths[VMM_STDOUT][0]) || (paths[VMM_STDERR] && paths[VMM_STDERR][0])))
                return vmm_error_set(err, -EINVAL, "a %s log takes stdout and stderr: give no stdout or stderr path",
                                     params->log_journald ? "journald" : "k8s-file");
        p->log_journald = params->log_journald;
        if (path_given(params->log_k8s_path)) {
                int r;

                r = opener_open(process_ctx(p)->opener, params->creds, params->log_k8s_path, ENDPOINT_SINK, &p->log_fd,
                                NULL);
                if (r < 0) {
                        return vmm_error_set(err, r, "k8s-file log %s: %s", params->log_k8s_path, strerror(-r));
                }
                p->log_path = strdup(params->log_k8s_path);
                if (!p->log_path || process_log_setup(p, params) < 0)
                        return -ENOMEM;
        }
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                struct vmm_stream *s = &p->streams[k];
                int r;

                if (!paths[k] || paths[k][0] == '\0')
                        continue;
                r = opener_open(process_ctx(p)->opener, params->creds, paths[k],
                                k == VMM_STDIN ? ENDPOINT_SOURCE : ENDPOINT_SINK, &s->endpoint_fd, NULL);
                if (r < 0 && p->recovering) {
                        /* The rest of the VM still comes back: an attached client's sockets went
                         * with it, a file may have been removed. */
                        log_warn("vm %s: process %u: cannot reopen its %s endpoint %s after the restart: %s; its "
                                 "output is kept for attach",
                                 process_guest(p)->vm_name, p->pid, vmm_stream_names[k], paths[k], strerror(-r));
                        continue;
                }
                if (r < 0) {
                        return vmm_error_set(err, r, "%s endpoint %s: %s", vmm_stream_names[k], paths[k], strerror(-r));
                }
                s->endpoint = strdup(paths[k]);
                if (!s->endpoint)
                        return -ENOMEM;
                process_stream_note_file(s);
        }
        return process_keep_creds(p, params->creds);
}

void process_stream_note_file(struct vmm_stream *s)
{
        struct stat st;
        off_t pos;

        s->endpoint_is_file = fstat(s->endpoint_fd, &st) == 0 && S_ISREG(st.st_mode);
        s->endpoint_base = 0;
        if (!s->endpoint_is_file)
                return;
        if (s->kind != VMM_STDIN) {
                /* A sink appended to: after a crash, its length less this is exactly what reached it. */
                s->endpoint_base = (uint64_t)st.st_size;
                return;
        }
        /* A source read from here on: this plus the guest's count is where it goes on. */
        pos = lseek(s->endpoint_fd, 0, SEEK_CUR);
        s->endpoint_base = pos > 0 ? (uint64_t)pos : 0;
}

/* The record reopens the endpoints after a restart with the rights that opened them. */
int process_keep_creds(struct vmm_process *p, const struct opener_creds *creds)
{
        if (!creds || p->has_creds)
                return 0;
        p->creds = *creds;
        p->creds.groups = NULL;
        if (creds->n_groups > 0) {
                p->creds_groups = calloc(creds->n_groups, sizeof(gid_t));
                if (!p->creds_groups)
                        return -ENOMEM;
                memcpy(p->creds_groups, creds->groups, creds->n_groups * sizeof(gid_t));
                p->creds.groups = p->creds_groups;
        }
        p->has_creds = true;
        return 0;
}

/* A container's first exec is its init (the guest's rule too). Only the processes still remembered
 * are looked at: an init long gone and pruned ended its container anyway. */
static bool process_is_container_init(struct vmm_processes *t, const char *container_id)
{
        struct list_head *pos;

        if (!container_id || !container_id[0])
                return false;
        list_for_each(pos, &t->list)
                if (strcmp(list_entry(pos, struct vmm_process, link)->container_id, container_id) == 0)
                        return false;
        return true;
}

int process_new(struct vmm_processes *t, const struct vmm_exec_params *params, struct vmm_process **ret)
{
        struct vmm_process *p = calloc(1, sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        p->table = t;
        p->seq = ++t->created;
        p->container_init = process_is_container_init(t, params->container_id);
        list_init(&p->waiters);
        list_init(&p->starters);
        list_init(&p->record_link);
        p->log_fd = -1;
        list_add_tail(&t->list, &p->link);
        t->n++;
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                stream_init(&p->streams[k], p, k);
        p->terminal = params->terminal;
        p->no_stderr = !vmm_exec_wants_stderr(params);
        p->attach_max_clients = process_ctx(p)->cfg->attach_max_clients; /* the cap when it started */
        p->console_height = params->console_height;
        p->console_width = params->console_width;
        p->n_argv = params->n_argv;
        p->argv = strv_copy(params->argv, params->n_argv);
        p->n_env = params->n_env;
        p->env = strv_copy(params->env, params->n_env);
        p->container_id = strdup(params->container_id ? params->container_id : "");
        if (params->cwd && params->cwd[0])
                p->cwd = strdup(params->cwd);
        if (params->exec_id && params->exec_id[0])
                p->exec_id = strdup(params->exec_id);
        else {
                char id[EXEC_ID_MAX + 1];

                p->exec_id = exec_id_make(id) < 0 ? NULL : strdup(id);
        }
        r = relay_timer_new(t->guest->ctx->relay, process_on_timer, p, &p->timer);
        if (!p->argv || !p->env || !p->container_id || (params->cwd && params->cwd[0] && !p->cwd) || !p->exec_id ||
            r < 0) {
                process_free(p);
                return r < 0 ? r : -ENOMEM;
        }
        *ret = p;
        return 0;
}

static int starter_add(struct vmm_process *p, vmm_started_fn fn, void *userdata, struct vmm_starter **ret)
{
        struct vmm_starter *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        s->process = p;
        s->fn = fn;
        s->userdata = userdata;
        list_add_tail(&p->starters, &s->link);
        if (ret)
                *ret = s;
        return 0;
}

int vmm_process_when_started(struct vmm_process *p, vmm_started_fn fn, void *userdata, struct vmm_starter **ret_starter)
{
        if (p->state != VMM_PROCESS_PENDING && p->state != VMM_PROCESS_STARTING)
                return 1;
        return starter_add(p, fn, userdata, ret_starter);
}

struct vmm_process *vmm_starter_process(const struct vmm_starter *s)
{
        return s->process;
}

struct vmm_starter *vmm_starter_cancel(struct vmm_starter *s)
{
        struct vmm_process *p;

        if (!s)
                return NULL;
        p = s->process;
        list_del(&s->link);
        free(s);
        /* Its caller gave up (its deadline passed, or it left) before the guest saw the request:
         * sending it later would run a command a retry may run again. */
        if (list_empty(&p->starters) && p->state == VMM_PROCESS_PENDING && !process_guest(p)->removing) {
                log_info("vm %s: exec %s of %s cancelled before it reached the guest", process_guest(p)->vm_name,
                         p->exec_id, p->argv[0]);
                process_free(p);
        }
        return NULL;
}

int vmm_processes_exec_check(struct vmm_processes *t, const struct vmm_exec_params *params, struct vmm_error *err)
{
        if (params->exec_id && params->exec_id[0]) {
                if (!exec_id_is_valid(params->exec_id))
                        return vmm_error_set(err, -EINVAL,
                                             "exec id must be 1-%u characters: runs of [A-Za-z0-9] "
                                             "joined by single '.', '_' or '-'",
                                             EXEC_ID_MAX);
                if (vmm_processes_find_id(t, params->exec_id))
                        return vmm_error_set(err, -EEXIST, "exec id %s is in use in VM %s", params->exec_id,
                                             t->guest->vm_name);
        }
        if (bridge_host_is_migrating(t->guest->bridge))
                return vmm_error_set(err, -EBUSY, "VM is migrating");
        if (params->n_argv == 0 || params->n_argv > VMM_MAX_ARGV || params->n_env > VMM_MAX_ENV)
                return vmm_error_set(err, -EINVAL, "argv must have 1 to %u entries and env at most %u", VMM_MAX_ARGV,
                                     VMM_MAX_ENV);
        if (params->terminal && path_given(params->stderr_path))
                return vmm_error_set(err, -EINVAL, "a terminal has no stderr of its own: it merges into stdout");
        if (!params->console_height != !params->console_width)
                return vmm_error_set(err, -EINVAL, "the console size needs both a height and a width");
        return 0;
}

bool vmm_exec_wants_stderr(const struct vmm_exec_params *params)
{
        if (params->terminal)
                return false;
        /* A log (given, or the daemon's default, which applies only without stdout and stderr
         * paths) takes both outputs; attach clients of a process kept for them expect both. */
        return path_given(params->stderr_path) || params->keep_stderr || params->log_journald ||
               path_given(params->log_k8s_path) || !path_given(params->stdout_path) ||
               (params->interactive && !path_given(params->stdin_path));
}

unsigned vmm_exec_streams(const struct vmm_exec_params *params)
{
        return 1 + (path_given(params->stdin_path) || params->interactive) + vmm_exec_wants_stderr(params);
}

bool vmm_processes_make_room(struct vmm_processes *t, unsigned max)
{
        if (t->n >= max)
                process_forget_oldest(t);
        return t->n < max;
}

int vmm_processes_exec(struct vmm_processes *t, const struct vmm_exec_params *params, vmm_started_fn fn, void *userdata,
                       struct vmm_starter **ret_starter, struct vmm_error *err)
{
        static const char *const no_strings[1] = { NULL };
        struct vmm_exec_params copy = *params;
        struct vmm_process *p = NULL;
        struct vmm_starter *starter = NULL;
        int r;

        if (!copy.env)
                copy.env = no_strings;
        r = process_new(t, &copy, &p);
        if (r < 0)
                return vmm_error_set(err, r, "%s", strerror(-r));
        r = process_open_endpoints(p, params, err);
        if (r < 0)
                goto fail;
        r = process_keeps_for_attach(p, params) ? process_attach_open(p, ++t->exec_seq) : 0;
        if (r < 0)
                log_warn("vm %s: no attach socket for this exec: %s", t->guest->vm_name, strerror(-r));
        if (params->interactive && !path_given(params->stdin_path)) {
                r = process_stdin_from_attach(p, params->stdin_once, err);
                if (r < 0)
                        goto fail;
        }
        r = starter_add(p, fn, userdata, &starter);
        if (r < 0) {
                vmm_error_set(err, r, "%s", strerror(-r));
                goto fail;
        }
        if (bridge_host_state(t->guest->bridge) == BRIDGE_CONN_CONNECTED) {
                r = process_send_exec(p, err);
                if (r < 0)
                        goto fail;
                if (ret_starter)
                        *ret_starter = starter;
                return 0;
        }
        process_set_state(p, VMM_PROCESS_PENDING);
        r = relay_timer_arm(p->timer,
                            params->connect_timeout_ns ? params->connect_timeout_ns : VMM_DEFAULT_CONNECT_TIMEOUT_NS);
        if (r < 0) {
                vmm_error_set(err, r, "cannot arm the connect timeout: %s", strerror(-r));
                goto fail;
        }
        log_info("vm %s: guest not connected yet; exec of %s queued", t->guest->vm_name, p->argv[0]);
        if (ret_starter)
                *ret_starter = starter;
        return 0;
fail:
        process_free(p); /* its starter goes with it, untold */
        return r;
}

/* ---- lookups, waits, kill ---- */

struct vmm_process *vmm_processes_find(struct vmm_processes *t, uint32_t pid)
{
        struct pid_node *e;

        if (pid == 0)
                return NULL;
        /* The newest entry wins when a reported pid was reused. */
        e = pid_index_newest(&t->pids, pid);
        return e ? container_of(e, struct vmm_process, pid_node) : NULL;
}

struct vmm_process *vmm_processes_find_id(struct vmm_processes *t, const char *exec_id)
{
        struct list_head *pos;

        if (!exec_id || !exec_id[0])
                return NULL;
        list_for_each(pos, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                if (strcmp(p->exec_id, exec_id) == 0)
                        return p;
        }
        return NULL;
}

const char *vmm_process_exec_id(const struct vmm_process *p)
{
        return p->exec_id;
}

int vmm_process_log_reopen(struct vmm_process *p, const struct opener_creds *creds)
{
        int fd, r;

        if (p->log_fd < 0 || !p->log_path)
                return -ENOENT;
        r = opener_open(process_ctx(p)->opener, creds, p->log_path, ENDPOINT_SINK, &fd, NULL);
        if (r < 0)
                return r;
        safe_close(p->log_fd);
        p->log_fd = fd;
        process_log_measure(p);
        return 0;
}

uint32_t vmm_process_pid(const struct vmm_process *p)
{
        return p->pid;
}

int vmm_process_delete(struct vmm_process *p)
{
        if (!p->exit_reported || p->wait_outstanding || p->in_exec)
                return -EBUSY;
        process_free(p);
        return 0;
}

struct vmm_process *vmm_processes_next(struct vmm_processes *t, struct vmm_process *prev)
{
        struct list_head *n = prev ? prev->link.next : t->list.next;

        return n == &t->list ? NULL : list_entry(n, struct vmm_process, link);
}

void vmm_process_get_info(const struct vmm_process *p, struct vmm_process_info *ret)
{
        struct vmm_process_info i = {
                .pid = p->pid,
                .exec_id = p->exec_id,
                .container_id = p->container_id,
                .argv = (const char *const *)p->argv,
                .n_argv = p->n_argv,
                .state = p->state,
                .wait_call_id = p->wait_outstanding ? p->wait_call_id : 0,
                .exit_known = p->exit_known,
                .exit = p->exit,
                .attach_path = p->attach && attach_is_listening(p->attach) ? attach_path(p->attach) : NULL,
                .attach_clients = p->attach ? attach_clients(p->attach) : 0,
                .attach_max_clients = process_ctx(p)->cfg->attach_max_clients,
                .terminal = p->terminal,
                .attach_stdin = p->attach && attach_has_input(p->attach),
                .started_ns = p->started_ns,
                .exited_ns = p->exited_ns,
        };

        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                const struct vmm_stream *s = &p->streams[k];
                struct relay_stream_counters c = s->counters;

                if (s->stream)
                        relay_stream_get_counters(s->stream, &c);
                i.ports[k] = s->port;
                i.bytes[k] = k == VMM_STDIN ? c.tx_guest : c.tx_endpoint;
                if (k != VMM_STDIN && s->port != 0 && !p->exit_reported && !stream_redial_expected(s))
                        i.output_lost_on_move = true;
                i.stream_error[k] = s->done ? s->error : 0;
                i.dropped[k] = s->dropped;
        }
        *ret = i;
}

int vmm_process_wait(struct vmm_process *p, vmm_exit_fn fn, void *userdata, struct vmm_waiter **ret_waiter,
                     struct vmm_exit *ret_exit)
{
        struct vmm_waiter *w;

        if (p->exit_reported) {
                *ret_exit = p->exit;
                return 1;
        }
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->process = p;
        w->fn = fn;
        w->userdata = userdata;
        list_add_tail(&p->waiters, &w->link);
        *ret_waiter = w;
        return 0;
}

struct vmm_waiter *vmm_waiter_free(struct vmm_waiter *w)
{
        if (w) {
                list_del(&w->link);
                free(w);
        }
        return NULL;
}

struct vmm_kill_op {
        vmm_done_fn fn;
        void *userdata;
        struct vmm_processes *table;
        uint32_t pid;
        /* The process is named by its exec id too: a pid can be reused in the VM once its
         * process ended, and the signal must not be credited to a newer one. */
        char exec_id[EXEC_ID_MAX + 1];
        int signal;
        bool vm_level; /* aimed at a process outside any container */
};

/* Signals whose default action does not end a process cannot be what killed it. */
static bool signal_can_kill(int sig)
{
        switch (sig) {
        case SIGCHLD:
        case SIGCONT:
        case SIGURG:
        case SIGWINCH:
        case SIGSTOP:
        case SIGTSTP:
        case SIGTTIN:
        case SIGTTOU: return false;
        default: return true;
        }
}

/* The guest took the signal: remember it, to name the signal of an exit it reports without one. */
void process_vm_level_refusal(char *buf, size_t len, const char *what, uint32_t pid, const char *method,
                              uint32_t hresult)
{
        snprintf(buf, len,
                 "%s inside a container with hcsshim's guest; process %" PRIu32
                 " runs outside any container (%s answered 0x%08" PRIx32 ")",
                 what, pid, method, hresult);
}

static void kill_delivered(struct vmm_kill_op *op)
{
        struct vmm_process *p = vmm_processes_find(op->table, op->pid);

        if (!p || strcmp(p->exec_id, op->exec_id) != 0 || p->exit_reported || !signal_can_kill(op->signal))
                return;
        /* Signal 0 is SIGKILL to the guest (hcsshim's and ours). */
        p->killed_by = op->signal == 0 ? 9 : op->signal;
        p->killed_at_ns = relay_now_ns(op->table->guest->ctx->relay);
        /* The wait's answer may beat the Kill's reply: an exit known, not yet reported, that the
         * guest did not name the signal of is this signal's. */
        if (p->exit_known && p->exit.kind == VMM_EXIT_SIGNALED && p->exit.code == 0)
                process_set_signaled(p);
}

static void vmm_on_signal(const struct bridge_result *res, void *userdata)
{
        struct vmm_kill_op *op = userdata;

        /* Only a reply from a live guest says OK, so op->table is still there. */
        if (res->status == BRIDGE_STATUS_OK)
                kill_delivered(op);
        if (res->status == BRIDGE_STATUS_ALREADY_GONE)
                op->fn(0, "already gone", op->userdata);
        else if (op->vm_level && res->hresult == BRIDGE_HR_SYSTEM_NOT_FOUND) {
                char msg[192];

                /* hcsshim's guest looks for the pid only inside containers; we cannot change that. */
                process_vm_level_refusal(msg, sizeof(msg), "signals reach only processes", op->pid, "SignalProcess",
                                         (uint32_t)res->hresult);
                op->fn(-EOPNOTSUPP, msg, op->userdata);
        } else
                op->fn(res->error, res->message, op->userdata);
        free(op);
}

int vmm_processes_kill(struct vmm_processes *t, uint32_t pid, int signal, vmm_done_fn fn, void *userdata)
{
        struct vmm_process *p = vmm_processes_find(t, pid);
        struct vmm_kill_op *op;
        int r;

        if (pid == 0 || signal < 0 || signal > 64)
                return -EINVAL;
        if (!p)
                return -ENOENT;
        if (p->exit_reported) {
                fn(0, "already gone", userdata);
                return 0;
        }
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->fn = fn;
        op->userdata = userdata;
        op->table = t;
        op->pid = pid;
        snprintf(op->exec_id, sizeof(op->exec_id), "%s", p->exec_id);
        op->signal = signal;
        op->vm_level = !p->container_id[0];
        r = bridge_host_signal(t->guest->bridge, p->container_id, pid, signal, vmm_on_signal, op);
        if (r < 0)
                free(op);
        return r;
}

int vmm_processes_close_stdin(struct vmm_processes *t, uint32_t pid, bool held)
{
        struct vmm_process *p = vmm_processes_find(t, pid);
        struct vmm_stream *s;
        int r;

        if (!p)
                return -ENOENT;
        s = &p->streams[VMM_STDIN];
        if (s->port == 0 && !s->endpoint)
                return -ENOTCONN;
        /* Refused while a save or hold freezes the VM (control.proto), attach-fed or not: the
         * pipe's write end is this daemon's, so a VM saved or handed over then would go on
         * without that end, whatever the caller was told. */
        if (held && p->attach && attach_has_input(p->attach))
                return -EBUSY;
        /* Fed by attach clients: closing the pipe ends it after what they wrote, nothing lost. */
        if (p->attach && attach_close_input(p->attach))
                return 0;
        if (s->close_requested || s->done || p->exit_known)
                return 0;
        if (held)
                return -EBUSY;
        s->close_requested = true;
        s->endpoint_fd = safe_close(s->endpoint_fd);
        if (!s->stream)
                return 0; /* not dialled yet: stream_on_accept ends it */
        /* With the end confirmation the end is a half-close the guest confirms, not a close it
         * would take for a host that went away (and redial). */
        if (t->guest->stdin_eof)
                return relay_stream_end_input(s->stream);
        r = relay_stream_freeze(s->stream);
        /* A stop's freeze is draining it (a save's is refused above): stream_on_frozen() ends it
         * once what was read reached the guest, and counts it for the stop. Released here, those
         * bytes were lost and the stop waited out its flush for a stream that could never report. */
        if (r == -EALREADY && s->freeze_owed)
                return 0;
        if (r < 0) {
                /* Ended, or frozen and counted already: nothing more will be read. */
                stream_release(s);
                stream_mark_closed(s);
        }
        return 0;
}

/* ---- the table ---- */

int vmm_processes_new(const struct vmm_guest *guest, const struct vmm_processes_ops *ops, void *userdata,
                      struct vmm_processes **ret)
{
        struct vmm_processes *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->guest = guest;
        t->ops = ops;
        t->userdata = userdata;
        list_init(&t->list);
        list_init(&t->durable_wait);
        list_init(&t->written_wait);
        pid_index_init(&t->pids);
        *ret = t;
        return 0;
}

struct vmm_processes *vmm_processes_free(struct vmm_processes *t, const char *reason)
{
        struct list_head *pos, *tmp;

        if (!t)
                return NULL;
        list_for_each_safe(pos, tmp, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                /* Handed over live: the new daemon reports these exits, nobody hears of them here.
                 * Stopped: a restart recovers them from the record. The waiters stay their
                 * callers' (a Wait call, cancelled when its connection goes): unlinked, so freeing
                 * them later touches no freed process. */
                if (t->handed_over || t->stopped) {
                        struct list_head *wpos, *wtmp;

                        list_for_each_safe(wpos, wtmp, &p->waiters) {
                                struct vmm_waiter *w = list_entry(wpos, struct vmm_waiter, link);

                                list_del(&w->link);
                                w->process = NULL;
                        }
                        process_free(p);
                        continue;
                }
                process_started(p, -ESHUTDOWN, reason);
                if (!p->exit_reported) {
                        char msg[160];

                        if (!p->exit_known) {
                                snprintf(msg, sizeof(msg), "exit status lost: %s", reason);
                                process_set_exit(p, VMM_EXIT_LOST, -1, msg);
                        }
                        process_report(p);
                }
                process_free(p);
        }
        pid_index_done(&t->pids);
        free(t);
        return NULL;
}

void vmm_processes_stop(struct vmm_processes *t, const char *message)
{
        struct list_head *pos;

        list_for_each(pos, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                /* Without a pid the record cannot hold it: a restart would never find it. One
                 * waiting for its record write has it now (the stop wrote it). */
                if (p->awaiting_durable || p->awaiting_written) {
                        process_record_unwait(p);
                        process_started(p, 0, "");
                } else
                        process_started(p, -ESHUTDOWN, message);
                while (!list_empty(&p->waiters)) {
                        struct vmm_waiter *w = list_entry(p->waiters.next, struct vmm_waiter, link);

                        list_del(&w->link);
                        w->fn(p, NULL, w->userdata);
                        free(w);
                }
        }
        t->stopped = true;
}

unsigned vmm_processes_count(const struct vmm_processes *t)
{
        return t->n;
}

unsigned vmm_processes_freeze(struct vmm_processes *t)
{
        struct list_head *pos;
        unsigned n = 0;

        list_for_each(pos, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                        if (stream_freeze(&p->streams[k]))
                                n++;
        }
        return n;
}

void vmm_processes_thaw(struct vmm_processes *t)
{
        struct list_head *pos;

        list_for_each(pos, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                        stream_thaw(&p->streams[k]);
                process_maybe_report(p);
        }
}

bool vmm_processes_starting(const struct vmm_processes *t)
{
        struct list_head *pos;

        list_for_each(pos, &t->list) {
                const struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                if (p->state == VMM_PROCESS_PENDING || p->state == VMM_PROCESS_STARTING)
                        return true;
        }
        return false;
}

void vmm_processes_release(struct vmm_processes *t)
{
        struct list_head *pos;

        list_for_each(pos, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                relay_timer_disarm(p->timer);
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                        stream_detach(&p->streams[k]);
                process_held_sync(p);
        }
}

void vmm_processes_relisten(struct vmm_processes *t)
{
        struct list_head *pos;

        list_for_each(pos, &t->list) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                        struct vmm_stream *s = &p->streams[k];
                        int r;

                        /* As on a restore (adopt_process): the save closed the connections. */
                        if (s->port == 0 || (s->done && !stream_awaits_stdin_end_redial(s)))
                                continue;
                        r = stream_listen(s);
                        if (r < 0)
                                log_warn("vm %s: process %u: cannot listen on port 0x%08x again: %s", t->guest->vm_name,
                                         p->pid, s->port, strerror(-r));
                }
                process_maybe_report(p);
        }
}

void vmm_processes_report_ready(struct vmm_processes *t)
{
        struct list_head *pos;

        list_for_each(pos, &t->list)
                process_maybe_report(list_entry(pos, struct vmm_process, link));
}
