/* bridge/conn.c: one VM's host-side bridge protocol: negotiation, calls and their answers, container
 * watchers, resume-window holding and wait probes. Tags in parentheses (W4, B4, F2, X item 12, ...) name
 * the paragraphs of ../shared/docs/bridge-protocol.md that describe the upstream behaviour. */
#include "bridge/conn.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/codec.h"
#include "bridge/held.h"

struct watcher {
        struct list_head link;
        char *container_id;
        bridge_notify_fn fn;
        void *userdata;
};

struct probe {
        struct bridge_conn *conn;
        uint64_t target;
        bool backing;
};

struct bridge_conn {
        struct bridge_conn_ops ops;
        void *userdata;

        struct bridge_calls *calls;
        enum bridge_conn_state state;
        bool attached;
        bool migrating;
        bool resume_window;
        uint64_t generation;
        uint64_t negotiate_id;
        uint64_t call_timeout_ns;
        uint64_t reconnect_grace_ns; /* 0: a lost connection fails every call at once (upstream) */
        uint64_t grace_deadline;     /* kept waits fail then unless a guest negotiated again */
        unsigned bounded_probes;     /* sent with TimeoutInMs, not answered yet */

        char *runtime_os;
        bool stdio_resume;
        bool offer_stdio_resume;
        bool stdio_ack; /* agreed only with stdio_resume */
        bool offer_stdio_ack;
        bool stdin_eof; /* agreed only with stdio_resume */
        bool offer_stdin_eof;

        struct list_head watchers; /* struct watcher */
        size_t n_watchers;

        struct bridge_held held;
};

static const char *const bridge_conn_state_names[_BRIDGE_CONN_STATE_MAX] = {
        [BRIDGE_CONN_WAITING] = "waiting",     [BRIDGE_CONN_NEGOTIATING] = "negotiating",
        [BRIDGE_CONN_CONNECTED] = "connected", [BRIDGE_CONN_MIGRATING] = "migrating",
        [BRIDGE_CONN_CLOSED] = "closed",
};

const char *bridge_conn_state_to_string(enum bridge_conn_state s)
{
        if (s < 0 || s >= _BRIDGE_CONN_STATE_MAX)
                return NULL;
        return bridge_conn_state_names[s];
}

static uint64_t conn_now(struct bridge_conn *c)
{
        struct timespec ts;

        if (c->ops.now)
                return c->ops.now(c, c->userdata);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * BRIDGE_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void conn_tell(struct bridge_conn *c, struct bridge_event ev)
{
        if (c->ops.event)
                c->ops.event(c, &ev, c->userdata);
}

static uint64_t deadline_after(struct bridge_conn *c, uint64_t ns)
{
        uint64_t now = conn_now(c);

        return ns >= BRIDGE_DEADLINE_NONE - now ? BRIDGE_DEADLINE_NONE - 1 : now + ns;
}

/* Reports a change made with `c->state = ...` once the dust settled: callbacks run in between
 * already saw the new state, and a callback that moved it on reports its own change. */
static void state_report(struct bridge_conn *c, enum bridge_conn_state old, enum bridge_conn_state s)
{
        if (old == s || c->state != s)
                return;
        if (c->ops.state_changed)
                c->ops.state_changed(c, old, s, c->userdata);
}

static void set_state(struct bridge_conn *c, enum bridge_conn_state s)
{
        enum bridge_conn_state old = c->state;

        c->state = s;
        state_report(c, old, s);
}

/* ---- held messages ---- */

static void held_discard_all(struct bridge_conn *c, const char *why)
{
        size_t n = bridge_held_clear(&c->held);

        if (n > 0)
                conn_tell(c, (struct bridge_event){ .kind = BRIDGE_EVENT_HELD_DISCARDED, .count = n, .what = why });
}

/* Returns 0 when held or refused over a cap (told: the message is lost), -ENOMEM. */
static int held_add(struct bridge_conn *c, uint32_t type, uint64_t id, const char *container_id, const char *payload,
                    size_t len)
{
        int r = bridge_held_add(&c->held, type, id, container_id, payload, len);

        if (r == -ENOSPC) {
                conn_tell(c, (struct bridge_event){
                                     .kind = BRIDGE_EVENT_HELD_REFUSED,
                                     .count = c->held.n,
                                     .bytes = c->held.bytes,
                                     .what = bridge_type_name(type),
                                     .id = id,
                                     .container_id = container_id,
                             });
                return 0;
        }
        return r < 0 ? r : 0;
}

/* ---- watchers ---- */

static struct watcher *watcher_take(struct bridge_conn *c, const char *container_id)
{
        struct list_head *pos;

        list_for_each(pos, &c->watchers) {
                struct watcher *w = list_entry(pos, struct watcher, link);

                if (strcmp(w->container_id, container_id) == 0) {
                        list_del(&w->link);
                        c->n_watchers--;
                        return w;
                }
        }
        return NULL;
}

static struct watcher *watcher_free(struct watcher *w)
{
        if (w) {
                free(w->container_id);
                free(w);
        }
        return NULL;
}

static void deliver_notification(struct bridge_conn *c, struct watcher *w, const struct bridge_notification *n)
{
        if (c->ops.notification)
                c->ops.notification(c, n, w != NULL, c->userdata);
        if (w) {
                bridge_notify_fn fn = w->fn;
                void *ud = w->userdata;
                watcher_free(w);
                fn(n, 0, ud);
        }
}

/* ---- results ---- */

/* Turns a decoded response into the call's result; message points into buf or resp. */
static void result_from_response(const struct bridge_call *call, const struct bridge_response *resp,
                                 struct bridge_result *res, char *buf, size_t buf_len)
{
        const char *guest_msg = resp->error_message && resp->error_message[0] ? resp->error_message : NULL;

        *res = (struct bridge_result){
                .status = BRIDGE_STATUS_OK,
                .hresult = resp->result,
                .message = "ok",
                .exit_code = -1,
                .response = resp,
        };
        if (resp->result == BRIDGE_HR_OK) {
                if (call->type == BRIDGE_RPC_EXECUTE_PROCESS)
                        res->pid = resp->exec.pid;
                else if (call->type == BRIDGE_RPC_WAIT_FOR_PROCESS) {
                        if (resp->wait.exit_code == BRIDGE_EXIT_CODE_SIGNALED) {
                                /* The process ended: never "lost", only its signal is unknown. */
                                res->signaled = true;
                                res->message = "killed by a signal the guest did not name";
                                return;
                        }
                        if (resp->wait.exit_code > INT32_MAX) {
                                res->status = BRIDGE_STATUS_BAD_REPLY;
                                res->error = -EPROTO;
                                res->message = "exit code out of range";
                                return;
                        }
                        res->exit_code = (int32_t)resp->wait.exit_code;
                }
                return;
        }
        if (resp->result == BRIDGE_HR_NOT_FOUND && call->type == BRIDGE_RPC_WAIT_FOR_PROCESS) {
                /* Upstream reads this as exit code 0 (Z4); the exit is unknowable, so say so. */
                res->status = BRIDGE_STATUS_EXIT_LOST;
                res->error = -ECHILD;
                res->message = "exit status lost: the guest no longer knows the process";
                return;
        }
        if (resp->result == BRIDGE_HR_NOT_FOUND && call->type == BRIDGE_RPC_SIGNAL_PROCESS) {
                res->status = BRIDGE_STATUS_ALREADY_GONE;
                res->message = "process already gone";
                return;
        }
        if (resp->result == BRIDGE_HR_SYSTEM_NOT_FOUND &&
            (call->type == BRIDGE_RPC_SHUTDOWN_GRACEFUL || call->type == BRIDGE_RPC_SHUTDOWN_FORCED)) {
                /* Tolerated upstream too (bridge-protocol.md X, item 12): what was to be stopped is not there. */
                res->status = BRIDGE_STATUS_ALREADY_GONE;
                res->message = "container already gone";
                return;
        }
        res->status = BRIDGE_STATUS_GUEST_ERROR;
        res->error = -EREMOTEIO;
        snprintf(buf, buf_len, "%s failed with HRESULT 0x%08" PRIx32 "%s%s%s%s", bridge_type_name(call->type) ?: "call",
                 (uint32_t)resp->result, bridge_hresult_name(resp->result) ? " (" : "",
                 bridge_hresult_name(resp->result) ?: "", bridge_hresult_name(resp->result) ? ")" : "",
                 guest_msg ? ": " : "");
        if (guest_msg) {
                size_t used = strlen(buf);
                snprintf(buf + used, buf_len - used, "%s", guest_msg);
        }
        res->message = buf;
}

/* Completes `call` from a payload; returns -EBADMSG (with reason) when it does not decode. */
static int complete_from_payload(struct bridge_conn *c, struct bridge_call *call, const char *payload, size_t len,
                                 const char **ret_reason)
{
        _cleanup_(bridge_response_done) struct bridge_response resp = {};
        struct bridge_result res;
        char msg[512];
        int r;

        r = bridge_response_decode(call->type, payload, len, &resp, ret_reason);
        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;
        result_from_response(call, &resp, &res, msg, sizeof(msg));
        bridge_calls_complete(c->calls, call, &res, false);
        return 0;
}

/* ---- losing the guest ---- */

static bool call_is_internal(const struct bridge_call *call)
{
        return call->flags & BRIDGE_CALL_INTERNAL;
}

static bool call_is_not_kept_wait(const struct bridge_call *call)
{
        return call->type != BRIDGE_RPC_WAIT_FOR_PROCESS || (call->flags & BRIDGE_CALL_INTERNAL);
}

static bool call_is_ours_to_fail(const struct bridge_call *call)
{
        return !(call->flags & BRIDGE_CALL_INTERNAL);
}

/* Fails, as zombies (a guest that reconnects may still answer them), the calls `pick` chooses. */
static size_t fail_calls(struct bridge_conn *c, bool (*pick)(const struct bridge_call *call))
{
        _cleanup_free_ uint64_t *ids = NULL;
        size_t n = 0, failed = 0;
        struct bridge_result res = {
                .error = -ENOTCONN,
                .status = BRIDGE_STATUS_CLOSED,
                .message = "bridge closed",
                .exit_code = -1,
        };

        if (bridge_calls_list(c->calls, 0, &ids, &n) < 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                struct bridge_call *call = bridge_calls_get(c->calls, ids[i]);

                if (call && pick(call)) {
                        bridge_calls_complete(c->calls, call, &res, true);
                        failed++;
                }
        }
        return failed;
}

/* The guest connection is gone. `notify_binding` when we decided it (the binding closes it);
 * `broken` when the guest broke the protocol, so nothing it still owes us can be trusted. */
static void lose_guest(struct bridge_conn *c, int error, bool notify_binding, bool broken)
{
        enum bridge_conn_state old;
        size_t kept;

        if (!c->attached)
                return;
        c->attached = false;
        c->stdio_resume = false;
        c->stdio_ack = false;
        c->stdin_eof = false;
        if (notify_binding && c->ops.disconnect)
                c->ops.disconnect(c, error, c->userdata);
        old = c->state;
        if (c->migrating) {
                /* Kept calls wait for the next connection, except ours: negotiate and probes are
                 * redone there (bridge-protocol.md B6). */
                c->state = BRIDGE_CONN_MIGRATING;
                fail_calls(c, call_is_internal);
                state_report(c, old, BRIDGE_CONN_MIGRATING);
                return;
        }
        c->state = BRIDGE_CONN_WAITING;
        if (broken || c->reconnect_grace_ns == 0) {
                /* As zombies: a guest that reconnects may still answer them (it queues replies), and
                 * that must not cost the new connection. */
                bridge_calls_fail_all(c->calls, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", true);
                c->grace_deadline = BRIDGE_DEADLINE_NONE;
                state_report(c, old, BRIDGE_CONN_WAITING);
                return;
        }
        /* The guest keeps its processes across a redial (H4): a wait asked again after the next
         * negotiation (the probe) still gets the exit, so it need not be lost with the connection.
         * What else was in flight has an unknown outcome and fails now. */
        fail_calls(c, call_is_not_kept_wait);
        /* Nothing can be sent while detached, so what is still live is exactly the kept waits. */
        kept = bridge_calls_count(c->calls);
        if (kept > 0 && c->grace_deadline == BRIDGE_DEADLINE_NONE) {
                c->grace_deadline = deadline_after(c, c->reconnect_grace_ns);
                conn_tell(c, (struct bridge_event){
                                     .kind = BRIDGE_EVENT_GRACE_STARTED,
                                     .count = kept,
                                     .ms = c->reconnect_grace_ns / 1000000,
                             });
        }
        state_report(c, old, BRIDGE_CONN_WAITING);
}

/* The guest did not negotiate again within the grace: what was kept for it is lost after all. */
static void grace_expire(struct bridge_conn *c, uint64_t now_ns)
{
        size_t n;

        if (c->grace_deadline > now_ns || c->state == BRIDGE_CONN_CONNECTED || c->migrating)
                return;
        c->grace_deadline = BRIDGE_DEADLINE_NONE;
        n = fail_calls(c, call_is_ours_to_fail);
        if (n > 0)
                conn_tell(c, (struct bridge_event){
                                     .kind = BRIDGE_EVENT_GRACE_EXPIRED,
                                     .count = n,
                                     .ms = c->reconnect_grace_ns / 1000000,
                             });
}

/* Ends the guest connection for a protocol error: one event saying why, then a loss. */
static int kill_guest(struct bridge_conn *c, int error, const char *fmt, ...) _printf_(3, 4);
static int kill_guest(struct bridge_conn *c, int error, const char *fmt, ...)
{
        char why[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        conn_tell(c,
                  (struct bridge_event){ .kind = BRIDGE_EVENT_GUEST_DROPPED, .what = why, .migrating = c->migrating });
        lose_guest(c, error, true, true);
        return error;
}

/* ---- sending ---- */

static int send_request(struct bridge_conn *c, const struct bridge_request *req, uint32_t flags, uint64_t timeout_ns,
                        uint32_t pid, bridge_call_fn fn, void *userdata, uint64_t *ret_call_id)
{
        _cleanup_free_ uint8_t *buf = NULL;
        struct bridge_call *call;
        uint64_t deadline, id, gen = c->generation;
        size_t len;
        int r;

        if (c->state == BRIDGE_CONN_CLOSED)
                return -ESHUTDOWN;
        if (!c->attached)
                return -ENOTCONN;
        if (c->state != BRIDGE_CONN_CONNECTED && !(flags & BRIDGE_CALL_INTERNAL))
                return -ENOTCONN;
        deadline = timeout_ns == BRIDGE_DEADLINE_NONE ? BRIDGE_DEADLINE_NONE : deadline_after(c, timeout_ns);
        /* In the table before the frame is written (bridge-protocol.md B1), so an instant reply finds it. */
        r = bridge_calls_add(c->calls, req->type, flags, deadline, req->container_id, pid, fn, userdata, &call);
        if (r < 0)
                return r;
        call->generation = gen;
        r = bridge_request_frame(req, call->id, &buf, &len);
        if (r < 0) {
                bridge_calls_cancel(c->calls, call);
                return r;
        }
        id = call->id;
        r = c->ops.write(c, buf, len, c->userdata);
        if (r < 0) {
                bridge_calls_cancel(c->calls, call);
                /* -EMSGSIZE: the host's frame limit refused this one frame; nothing was written. */
                if (!c->migrating && r != -EMSGSIZE)
                        kill_guest(c, r, "writing %s id %" PRIu64 " failed: %s",
                                   bridge_type_name(req->type) ?: "request", id, strerror(-r));
                return r;
        }
        if (ret_call_id)
                *ret_call_id = id;
        return 0;
}

static void probe_done(const struct bridge_result *res, void *userdata);

/* A WaitForProcess on behalf of `target`: the bounded probe (TimeoutInMs 50), or with
 * BRIDGE_WAIT_INFINITE the backing wait that stands in for a request the guest may never have had. */
static int send_probe(struct bridge_conn *c, struct bridge_call *target, uint32_t timeout_ms)
{
        bool backing = timeout_ms == BRIDGE_WAIT_INFINITE;
        struct bridge_request req = {
                .type = BRIDGE_RPC_WAIT_FOR_PROCESS,
                .container_id = target->container_id,
                .wait = { .pid = target->pid, .timeout_ms = timeout_ms },
        };
        struct probe *p = malloc(sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        *p = (struct probe){ .conn = c, .target = target->id, .backing = backing };
        r = send_request(c, &req, BRIDGE_CALL_INTERNAL | BRIDGE_CALL_PROBE,
                         backing ? BRIDGE_DEADLINE_NONE : BRIDGE_CONN_PROBE_DEADLINE_NS, target->pid, probe_done, p,
                         NULL);
        if (r < 0) {
                free(p);
                return r;
        }
        if (backing)
                target->backing_generation = c->generation;
        else
                c->bounded_probes++;
        return 0;
}

static void probe_done(const struct bridge_result *res, void *userdata)
{
        struct probe *p = userdata;
        struct bridge_conn *c = p->conn;
        struct bridge_call *target = bridge_calls_get(c->calls, p->target);
        bool backing = p->backing;
        struct bridge_result out;
        int r;

        if (!backing && c->bounded_probes > 0)
                c->bounded_probes--;
        free(p);
        if (!target)
                return; /* its own reply came first */
        switch (res->status) {
        case BRIDGE_STATUS_OK:
        case BRIDGE_STATUS_EXIT_LOST:
                conn_tell(c, (struct bridge_event){
                                     .kind = BRIDGE_EVENT_PROBE_DONE,
                                     .backing = backing,
                                     .pid = target->pid,
                                     .container_id = target->container_id,
                                     .id = target->id,
                                     .error = res->status == BRIDGE_STATUS_EXIT_LOST ? -ECHILD : 0,
                             });
                out = *res;
                out.probed = true;
                out.response = NULL;
                /* A zombie: if the guest still answers the original wait, that late reply is swallowed. */
                bridge_calls_complete(c->calls, target, &out, true);
                return;
        case BRIDGE_STATUS_GUEST_ERROR:
                if (res->hresult != BRIDGE_HR_TIMEOUT)
                        break;
                /* Still running. The original request may have died with the old connection (or
                 * in the source daemon's queue) and would then never be answered: back it with one
                 * infinite wait per connection. Whichever answers first completes it, the other is
                 * swallowed. */
                if (target->backing_generation == c->generation || c->state != BRIDGE_CONN_CONNECTED)
                        return;
                r = send_probe(c, target, BRIDGE_WAIT_INFINITE);
                if (r < 0)
                        conn_tell(c, (struct bridge_event){
                                             .kind = BRIDGE_EVENT_BACKING_UNSENT,
                                             .pid = target->pid,
                                             .error = r,
                                     });
                return;
        case BRIDGE_STATUS_CLOSED:
                /* The connection went; the next one probes again. */
                return;
        default: break;
        }
        conn_tell(c, (struct bridge_event){
                             .kind = BRIDGE_EVENT_PROBE_NO_ANSWER,
                             .backing = backing,
                             .pid = target->pid,
                             .id = target->id,
                             .what = res->message,
                     });
}

/* After each negotiation: every wait whose request went out on an earlier connection (or was
 * adopted) may have lost its reply with that connection; a bounded probe asks again (bridge-protocol.md F2, Z2). */
static void probe_waits(struct bridge_conn *c)
{
        _cleanup_free_ uint64_t *ids = NULL;
        size_t n = 0;
        uint64_t gen = c->generation;

        if (bridge_calls_list(c->calls, BRIDGE_RPC_WAIT_FOR_PROCESS, &ids, &n) < 0)
                return;
        for (size_t i = 0; i < n && c->state == BRIDGE_CONN_CONNECTED && c->generation == gen; i++) {
                struct bridge_call *call = bridge_calls_get(c->calls, ids[i]);
                int r;

                if (!call || (call->flags & BRIDGE_CALL_INTERNAL) || call->generation == gen)
                        continue;
                r = send_probe(c, call, BRIDGE_CONN_PROBE_TIMEOUT_MS);
                if (r < 0)
                        conn_tell(c, (struct bridge_event){
                                             .kind = BRIDGE_EVENT_PROBE_UNSENT,
                                             .pid = call->pid,
                                             .error = r,
                                     });
        }
}

static void negotiate_done(const struct bridge_result *res, void *userdata)
{
        struct bridge_conn *c = userdata;
        const struct bridge_response *resp = res->response;

        if (res->call_id != c->negotiate_id || !c->attached)
                return; /* from a connection that is gone */
        if (res->status != BRIDGE_STATUS_OK) {
                if (res->status != BRIDGE_STATUS_CLOSED)
                        kill_guest(c, res->error ?: -EPROTO, "NegotiateProtocol failed: %s", res->message);
                return;
        }
        free(c->runtime_os);
        c->runtime_os = strdup(resp->negotiate.runtime_os_type ?: "windows");
        /* Agreed only if offered: a guest announcing it unasked gets the plain behaviour. */
        c->stdio_resume = c->offer_stdio_resume && resp->negotiate.stdio_resume;
        /* Acks say where the guest may free its replay buffer, which only resume lets it use. */
        c->stdio_ack = c->stdio_resume && c->offer_stdio_ack && resp->negotiate.stdio_ack;
        /* The confirmation rides on a resumed stdin connection: without resume there is no redial. */
        c->stdin_eof = c->stdio_resume && c->offer_stdin_eof && resp->negotiate.stdin_eof;
        conn_tell(c, (struct bridge_event){
                             .kind = BRIDGE_EVENT_NEGOTIATED,
                             .what = c->runtime_os,
                             .stdio_resume = c->stdio_resume,
                             .stdio_ack = c->stdio_ack,
                             .id = c->generation,
                     });
        c->grace_deadline = BRIDGE_DEADLINE_NONE;
        set_state(c, BRIDGE_CONN_CONNECTED);
        if (c->state == BRIDGE_CONN_CONNECTED)
                probe_waits(c);
}

/* ---- public ---- */

int bridge_conn_new(const struct bridge_conn_ops *ops, void *userdata, struct bridge_conn **ret)
{
        struct bridge_conn *c;
        int r;

        if (!ops || !ops->write)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = bridge_calls_new(&c->calls);
        if (r < 0) {
                free(c);
                return r;
        }
        c->ops = *ops;
        c->userdata = userdata;
        c->state = BRIDGE_CONN_WAITING;
        c->call_timeout_ns = BRIDGE_CONN_CALL_TIMEOUT_NS;
        c->grace_deadline = BRIDGE_DEADLINE_NONE;
        c->offer_stdio_resume = true;
        c->offer_stdio_ack = true;
        c->offer_stdin_eof = true;
        bridge_held_init(&c->held);
        list_init(&c->watchers);
        *ret = c;
        return 0;
}

void bridge_conn_close(struct bridge_conn *c)
{
        enum bridge_conn_state old;

        if (c->state == BRIDGE_CONN_CLOSED)
                return;
        c->attached = false;
        old = c->state;
        c->state = BRIDGE_CONN_CLOSED;
        state_report(c, old, BRIDGE_CONN_CLOSED);
        bridge_calls_fail_all(c->calls, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false);
        held_discard_all(c, "bridge closed");
        while (!list_empty(&c->watchers)) {
                struct watcher *w = list_entry(c->watchers.next, struct watcher, link);
                bridge_notify_fn fn = w->fn;
                void *ud = w->userdata;

                list_del(&w->link);
                c->n_watchers--;
                watcher_free(w);
                fn(NULL, -ENOTCONN, ud);
        }
}

struct bridge_conn *bridge_conn_free(struct bridge_conn *c)
{
        if (!c)
                return NULL;
        bridge_conn_close(c);
        /* Callbacks run by close may have added nothing: every entry point refuses once closed. */
        bridge_calls_free(c->calls);
        free(c->runtime_os);
        free(c);
        return NULL;
}

int bridge_conn_attach(struct bridge_conn *c)
{
        struct bridge_request req = {
                .type = BRIDGE_RPC_NEGOTIATE_PROTOCOL,
                .container_id = "",
                .negotiate = {
                        .min_version = BRIDGE_PROTOCOL_VERSION,
                        .max_version = BRIDGE_PROTOCOL_VERSION,
                        .stdio_resume = c->offer_stdio_resume,
                        .stdio_ack = c->offer_stdio_resume && c->offer_stdio_ack,
                        .stdin_eof = c->offer_stdio_resume && c->offer_stdin_eof,
                },
        };
        uint64_t id;
        int r;

        if (c->state == BRIDGE_CONN_CLOSED)
                return -ESHUTDOWN;
        if (c->attached)
                lose_guest(c, -ECONNRESET, false, false);
        if (c->state == BRIDGE_CONN_CLOSED)
                return -ESHUTDOWN;
        c->attached = true;
        c->generation++;
        c->stdio_resume = false;
        c->stdio_ack = false;
        c->stdin_eof = false;
        set_state(c, BRIDGE_CONN_NEGOTIATING);
        if (!c->attached)
                return -ECONNRESET;
        r = send_request(c, &req, BRIDGE_CALL_INTERNAL, BRIDGE_CONN_NEGOTIATE_TIMEOUT_NS, 0, negotiate_done, c, &id);
        if (r < 0) {
                if (c->attached)
                        kill_guest(c, r, "cannot send NegotiateProtocol: %s", strerror(-r));
                return r;
        }
        c->negotiate_id = id;
        return 0;
}

void bridge_conn_detach(struct bridge_conn *c, int error)
{
        if (!c->attached)
                return;
        conn_tell(c, (struct bridge_event){
                             .kind = BRIDGE_EVENT_GUEST_DETACHED, .error = error, .migrating = c->migrating });
        lose_guest(c, error, false, false);
}

static int handle_notification(struct bridge_conn *c, const struct bridge_frame *f)
{
        _cleanup_(bridge_notification_done) struct bridge_notification n = {};
        const char *reason = "undecodable";
        struct watcher *w;
        int r;

        if (f->header.type != BRIDGE_NOTIFY_CONTAINER)
                return kill_guest(c, -EPROTO, "notification of unexpected type 0x%08" PRIx32, f->header.type);
        r = bridge_notification_decode(f->payload, f->payload_len, &n, &reason);
        if (r == -ENOMEM)
                return kill_guest(c, r, "out of memory decoding a notification");
        if (r < 0)
                return kill_guest(c, -EBADMSG, "undecodable container notification: %s", reason);
        w = watcher_take(c, n.container_id);
        if (!w && c->resume_window) {
                r = held_add(c, f->header.type, f->header.id, n.container_id, f->payload, f->payload_len);
                return r == -ENOMEM ? kill_guest(c, r, "out of memory holding a notification") : 0;
        }
        if (!w)
                /* Upstream kills the bridge here (bridge-protocol.md C4), so a second exit notification
                 * for one container takes every other container's calls down with it. A duplicate is
                 * harmless: tell it. */
                conn_tell(c, (struct bridge_event){
                                     .kind = BRIDGE_EVENT_UNWATCHED_NOTIFICATION,
                                     .what = n.type,
                                     .container_id = n.container_id,
                             });
        deliver_notification(c, w, &n);
        return 0;
}

static int handle_response(struct bridge_conn *c, const struct bridge_frame *f)
{
        uint64_t id = f->header.id;
        struct bridge_call *call = bridge_calls_get(c->calls, id);
        const char *reason = "undecodable";
        int r;

        if (call) {
                r = complete_from_payload(c, call, f->payload, f->payload_len, &reason);
                if (r == -ENOMEM)
                        return kill_guest(c, r, "out of memory decoding response id %" PRIu64, id);
                if (r < 0)
                        return kill_guest(c, r, "undecodable %s response id %" PRIu64 ": %s",
                                          bridge_type_name(f->header.type) ?: "?", id, reason);
                return 0;
        }
        if (bridge_calls_forget_zombie(c->calls, id))
                return 0;
        /* Only the base fields can be checked before the call is known. */
        {
                _cleanup_(bridge_response_done) struct bridge_response resp = {};
                r = bridge_response_decode(0, f->payload, f->payload_len, &resp, &reason);
        }
        if (r == -ENOMEM)
                return kill_guest(c, r, "out of memory decoding response id %" PRIu64, id);
        if (r < 0)
                return kill_guest(c, -EBADMSG, "undecodable response id %" PRIu64 ": %s", id, reason);
        if (!c->resume_window)
                return kill_guest(c, -EPROTO, "%s response for unknown id %" PRIu64,
                                  bridge_type_name(f->header.type) ?: "unnamed", id);
        r = held_add(c, f->header.type, id, NULL, f->payload, f->payload_len);
        return r == -ENOMEM ? kill_guest(c, r, "out of memory holding a response") : 0;
}

static int handle_frame(struct bridge_conn *c, const struct bridge_frame *f)
{
        switch (bridge_type_class(f->header.type)) {
        case BRIDGE_CLASS_RESPONSE: return handle_response(c, f);
        case BRIDGE_CLASS_NOTIFY: return handle_notification(c, f);
        case BRIDGE_CLASS_REQUEST:
                return kill_guest(c, -EPROTO, "the guest sent a request (%s, type 0x%08" PRIx32 ", id %" PRIu64 ")",
                                  bridge_type_name(f->header.type) ?: "unknown", f->header.type, f->header.id);
        default: return kill_guest(c, -EPROTO, "message of invalid type 0x%08" PRIx32, f->header.type);
        }
}

ssize_t bridge_conn_recv(struct bridge_conn *c, const void *data, size_t len)
{
        const uint8_t *p = data;
        size_t consumed = 0;
        uint64_t gen = c->generation;

        if (!c->attached)
                return -ENOTCONN;
        while (consumed < len) {
                struct bridge_frame f;
                const char *reason = "bad frame";
                int r;

                r = bridge_frame_parse(p + consumed, len - consumed, &f, NULL, &reason);
                if (r == 0)
                        break;
                if (r < 0)
                        return kill_guest(c, -EMSGSIZE, "%s", reason);
                consumed += (size_t)r;
                r = handle_frame(c, &f);
                if (r < 0)
                        return r;
                /* A callback may have replaced or lost the connection: the rest is not ours. */
                if (!c->attached || c->generation != gen)
                        return -ECONNRESET;
        }
        return (ssize_t)consumed;
}

int bridge_conn_set_call_timeout(struct bridge_conn *c, uint64_t timeout_ns)
{
        if (timeout_ns > BRIDGE_CONN_CALL_TIMEOUT_MAX_NS)
                return -ERANGE;
        c->call_timeout_ns = timeout_ns ?: BRIDGE_CONN_CALL_TIMEOUT_NS;
        return 0;
}

void bridge_conn_tick(struct bridge_conn *c, uint64_t now_ns)
{
        /* Upstream kills the whole bridge on a timeout (bridge-protocol.md B4). One slow answer should not cost every
         * other call: only the late call completes, and its late answer is swallowed (zombie). */
        if (c->state == BRIDGE_CONN_CLOSED)
                return;
        bridge_calls_expire(c->calls, now_ns);
        grace_expire(c, now_ns);
}

uint64_t bridge_conn_next_deadline(const struct bridge_conn *c)
{
        uint64_t d = bridge_calls_next_deadline(c->calls);

        /* Migrating keeps calls without a deadline; the grace runs again once it ends. */
        return c->migrating ? d : MIN(d, c->grace_deadline);
}

int bridge_conn_set_reconnect_grace(struct bridge_conn *c, uint64_t grace_ns)
{
        if (grace_ns > BRIDGE_CONN_RECONNECT_GRACE_MAX_NS)
                return -ERANGE;
        c->reconnect_grace_ns = grace_ns;
        return 0;
}

void bridge_conn_set_migrating(struct bridge_conn *c, bool migrating)
{
        if (c->state == BRIDGE_CONN_CLOSED || c->migrating == migrating)
                return;
        c->migrating = migrating;
        conn_tell(c, (struct bridge_event){ .kind = BRIDGE_EVENT_MIGRATING, .migrating = migrating });
        if (migrating) {
                bridge_conn_begin_resume_window(c);
                return;
        }
        if (!c->attached && c->state == BRIDGE_CONN_MIGRATING) {
                /* Nobody reconnected before migration ended: what we kept is lost after all. */
                c->state = BRIDGE_CONN_WAITING;
                bridge_calls_fail_all(c->calls, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", true);
                state_report(c, BRIDGE_CONN_MIGRATING, BRIDGE_CONN_WAITING);
        }
}

bool bridge_conn_is_migrating(const struct bridge_conn *c)
{
        return c->migrating;
}

void bridge_conn_begin_resume_window(struct bridge_conn *c)
{
        if (c->state == BRIDGE_CONN_CLOSED || c->resume_window)
                return;
        c->resume_window = true;
}

void bridge_conn_end_resume_window(struct bridge_conn *c)
{
        if (!c->resume_window)
                return;
        c->resume_window = false;
        held_discard_all(c, "resume window closed before anything claimed them");
}

bool bridge_conn_in_resume_window(const struct bridge_conn *c)
{
        return c->resume_window;
}

size_t bridge_conn_held_count(const struct bridge_conn *c)
{
        return c->held.n;
}

uint64_t bridge_conn_held_dropped(const struct bridge_conn *c)
{
        return c->held.dropped;
}

enum bridge_conn_state bridge_conn_state(const struct bridge_conn *c)
{
        return c->state;
}

const char *bridge_conn_runtime_os(const struct bridge_conn *c)
{
        return c->runtime_os;
}

bool bridge_conn_stdio_resume(const struct bridge_conn *c)
{
        return c->state == BRIDGE_CONN_CONNECTED && c->stdio_resume;
}

void bridge_conn_set_offer_stdio_resume(struct bridge_conn *c, bool offer)
{
        c->offer_stdio_resume = offer;
}

bool bridge_conn_stdio_ack(const struct bridge_conn *c)
{
        return bridge_conn_stdio_resume(c) && c->stdio_ack;
}

void bridge_conn_set_offer_stdio_ack(struct bridge_conn *c, bool offer)
{
        c->offer_stdio_ack = offer;
}

bool bridge_conn_stdin_eof(const struct bridge_conn *c)
{
        return bridge_conn_stdio_resume(c) && c->stdin_eof;
}

void bridge_conn_set_offer_stdin_eof(struct bridge_conn *c, bool offer)
{
        c->offer_stdin_eof = offer;
}

uint64_t bridge_conn_generation(const struct bridge_conn *c)
{
        return c->generation;
}

uint64_t bridge_conn_next_id(const struct bridge_conn *c)
{
        return bridge_calls_next_id(c->calls);
}

int bridge_conn_seed_next_id(struct bridge_conn *c, uint64_t next)
{
        return bridge_calls_seed_next_id(c->calls, next);
}

size_t bridge_conn_outstanding(const struct bridge_conn *c)
{
        return bridge_calls_count(c->calls);
}

unsigned bridge_conn_unanswered_probes(const struct bridge_conn *c)
{
        return c->bounded_probes;
}

static bool container_id_ok(const char *cid)
{
        return cid && strlen(cid) <= BRIDGE_MAX_ID_LEN;
}

/* A process outside any container is addressed with the null GUID, as hcsshim's host does: its
 * guest runs (and waits for) a VM-level process only then, and takes "" for a container's name. */
static const char *process_container_id(const char *cid)
{
        return cid[0] ? cid : BRIDGE_NULL_GUID;
}

int bridge_conn_create_container(struct bridge_conn *c, const char *container_id, const char *config_json,
                                 bridge_call_fn fn, void *userdata, uint64_t *ret_call_id)
{
        struct bridge_request req = {
                .type = BRIDGE_RPC_CREATE,
                .container_id = container_id,
                .create.config = config_json,
        };

        if (!container_id_ok(container_id) || !fn)
                return -EINVAL;
        return send_request(c, &req, 0, c->call_timeout_ns, 0, fn, userdata, ret_call_id);
}

int bridge_conn_exec(struct bridge_conn *c, const char *container_id, const struct bridge_process_params *params,
                     const struct bridge_stdio_ports *ports, bridge_call_fn fn, void *userdata, uint64_t *ret_call_id)
{
        struct bridge_stdio_ports none = {};
        struct bridge_request req = {
                .type = BRIDGE_RPC_EXECUTE_PROCESS,
                .container_id = container_id ? process_container_id(container_id) : NULL,
        };

        if (!container_id_ok(container_id) || !fn)
                return -EINVAL;
        if (!ports)
                ports = &none;
        if (params) {
                req.exec.has_params = true;
                req.exec.params = *params;
                /* The guest dials exactly what these flags ask for: a port nobody listens on, or a
                 * listener nobody dials, would stall the exit report (Z3). */
                req.exec.params.create_stdin = ports->stdin_port != 0;
                req.exec.params.create_stdout = ports->stdout_port != 0;
                req.exec.params.create_stderr = ports->stderr_port != 0;
        }
        req.exec.stdin_port = ports->stdin_port;
        req.exec.stdout_port = ports->stdout_port;
        req.exec.stderr_port = ports->stderr_port;
        return send_request(c, &req, 0, c->call_timeout_ns, 0, fn, userdata, ret_call_id);
}

int bridge_conn_wait(struct bridge_conn *c, const char *container_id, uint32_t pid, uint32_t timeout_ms,
                     bridge_call_fn fn, void *userdata, uint64_t *ret_call_id)
{
        struct bridge_request req = {
                .type = BRIDGE_RPC_WAIT_FOR_PROCESS,
                .container_id = container_id ? process_container_id(container_id) : NULL,
                .wait = { .pid = pid, .timeout_ms = timeout_ms },
        };
        uint64_t timeout_ns = timeout_ms == BRIDGE_WAIT_INFINITE ? BRIDGE_DEADLINE_NONE
                                                                 : (uint64_t)timeout_ms * 1000000u + c->call_timeout_ns;

        if (!container_id_ok(container_id) || !fn)
                return -EINVAL;
        return send_request(c, &req, 0, timeout_ns, pid, fn, userdata, ret_call_id);
}

int bridge_conn_signal(struct bridge_conn *c, const char *container_id, uint32_t pid, int signal, bridge_call_fn fn,
                       void *userdata, uint64_t *ret_call_id)
{
        struct bridge_request req = {
                .type = BRIDGE_RPC_SIGNAL_PROCESS,
                .container_id = container_id ? process_container_id(container_id) : NULL,
                .signal = { .pid = pid, .has_options = true, .signal = signal },
        };

        if (!container_id_ok(container_id) || !fn || signal < 0 || signal > BRIDGE_MAX_SIGNAL)
                return -EINVAL;
        return send_request(c, &req, 0, c->call_timeout_ns, pid, fn, userdata, ret_call_id);
}

int bridge_conn_resize(struct bridge_conn *c, const char *container_id, uint32_t pid, uint16_t height, uint16_t width,
                       bridge_call_fn fn, void *userdata, uint64_t *ret_call_id)
{
        struct bridge_request req = {
                .type = BRIDGE_RPC_RESIZE_CONSOLE,
                .container_id = container_id ? process_container_id(container_id) : NULL,
                .resize = { .pid = pid, .height = height, .width = width },
        };

        if (!container_id_ok(container_id) || !fn)
                return -EINVAL;
        return send_request(c, &req, 0, c->call_timeout_ns, pid, fn, userdata, ret_call_id);
}

int bridge_conn_shutdown(struct bridge_conn *c, const char *container_id, enum bridge_shutdown_kind kind,
                         bridge_call_fn fn, void *userdata, uint64_t *ret_call_id)
{
        struct bridge_request req = {
                .container_id = container_id,
        };

        if (!container_id_ok(container_id) || !fn)
                return -EINVAL;
        switch (kind) {
        case BRIDGE_SHUTDOWN_GRACEFUL: req.type = BRIDGE_RPC_SHUTDOWN_GRACEFUL; break;
        case BRIDGE_SHUTDOWN_FORCED: req.type = BRIDGE_RPC_SHUTDOWN_FORCED; break;
        default: return -EINVAL;
        }
        return send_request(c, &req, 0, c->call_timeout_ns, 0, fn, userdata, ret_call_id);
}

static int preregister_wait(struct bridge_conn *c, uint64_t call_id, const char *container_id, uint32_t pid,
                            bridge_call_fn fn, void *userdata, bool probe);

int bridge_conn_preregister_wait(struct bridge_conn *c, uint64_t call_id, const char *container_id, uint32_t pid,
                                 bridge_call_fn fn, void *userdata)
{
        return preregister_wait(c, call_id, container_id, pid, fn, userdata, true);
}

int bridge_conn_adopt_wait(struct bridge_conn *c, uint64_t call_id, const char *container_id, uint32_t pid,
                           bridge_call_fn fn, void *userdata)
{
        return preregister_wait(c, call_id, container_id, pid, fn, userdata, false);
}

static int preregister_wait(struct bridge_conn *c, uint64_t call_id, const char *container_id, uint32_t pid,
                            bridge_call_fn fn, void *userdata, bool probe)
{
        struct bridge_call *call;
        _cleanup_(bridge_held_msg_freep) struct bridge_held_msg *h = NULL;
        int r;

        if (c->state == BRIDGE_CONN_CLOSED)
                return -ESHUTDOWN;
        /* 0 is "no wait" in saved state (a waitCallID, bridge-protocol.md F2), and the first
         * negotiation's id on any source. */
        if (call_id == 0 || !container_id_ok(container_id) || !fn)
                return -EINVAL;
        r = bridge_calls_preregister(c->calls, call_id, BRIDGE_RPC_WAIT_FOR_PROCESS, process_container_id(container_id),
                                     pid, fn, userdata, &call);
        if (r != 0)
                return r;
        h = bridge_held_take_response(&c->held, call_id);
        if (h) {
                const char *reason = "undecodable";

                conn_tell(c, (struct bridge_event){ .kind = BRIDGE_EVENT_HELD_RELEASED, .id = call_id });
                r = complete_from_payload(c, call, h->payload, h->len, &reason);
                if (r < 0) {
                        /* It was a valid response once; only this call can tell it does not fit. */
                        struct bridge_result res = {
                                .error = -EPROTO,
                                .status = BRIDGE_STATUS_BAD_REPLY,
                                .message = reason,
                                .exit_code = -1,
                        };
                        bridge_calls_complete(c->calls, call, &res, false);
                }
                return 0;
        }
        if (probe && c->state == BRIDGE_CONN_CONNECTED) {
                r = send_probe(c, call, BRIDGE_CONN_PROBE_TIMEOUT_MS);
                if (r < 0)
                        conn_tell(c, (struct bridge_event){
                                             .kind = BRIDGE_EVENT_ADOPTED_PROBE_UNSENT,
                                             .pid = pid,
                                             .error = r,
                                     });
        }
        return 0;
}

int bridge_conn_watch_container(struct bridge_conn *c, const char *container_id, bridge_notify_fn fn, void *userdata)
{
        _cleanup_(bridge_held_msg_freep) struct bridge_held_msg *h = NULL;
        struct list_head *pos;
        struct watcher *w;

        if (c->state == BRIDGE_CONN_CLOSED)
                return -ESHUTDOWN;
        if (!container_id_ok(container_id) || !fn)
                return -EINVAL;
        list_for_each(pos, &c->watchers)
                if (strcmp(list_entry(pos, struct watcher, link)->container_id, container_id) == 0)
                        return -EEXIST;
        if (c->n_watchers >= BRIDGE_CONN_MAX_WATCHERS)
                return -ENOSPC;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->container_id = strdup(container_id);
        if (!w->container_id) {
                free(w);
                return -ENOMEM;
        }
        w->fn = fn;
        w->userdata = userdata;

        h = bridge_held_take_notification(&c->held, container_id);
        if (h) {
                _cleanup_(bridge_notification_done) struct bridge_notification n = {};
                int r = bridge_notification_decode(h->payload, h->len, &n, NULL);

                if (r == 0) {
                        conn_tell(c, (struct bridge_event){
                                             .kind = BRIDGE_EVENT_HELD_RELEASED,
                                             .container_id = container_id,
                                     });
                        deliver_notification(c, w, &n);
                        return 0;
                }
        }
        list_add_tail(&c->watchers, &w->link);
        c->n_watchers++;
        return 0;
}

int bridge_conn_unwatch_container(struct bridge_conn *c, const char *container_id)
{
        struct watcher *w;

        if (!container_id)
                return -EINVAL;
        w = watcher_take(c, container_id);
        if (!w)
                return -ENOENT;
        watcher_free(w);
        return 0;
}

/* ---- a live upgrade ---- */

bool bridge_conn_can_hand_over(const struct bridge_conn *c)
{
        _cleanup_free_ uint64_t *ids = NULL;
        size_t n = 0;

        if (c->state != BRIDGE_CONN_CONNECTED &&
            !(c->state == BRIDGE_CONN_WAITING && bridge_calls_count(c->calls) == 0))
                return false;
        if (bridge_calls_list(c->calls, 0, &ids, &n) < 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                const struct bridge_call *call = bridge_calls_get(c->calls, ids[i]);

                if (call && (call->type != BRIDGE_RPC_WAIT_FOR_PROCESS || (call->flags & BRIDGE_CALL_INTERNAL)))
                        return false;
        }
        return true;
}

void bridge_conn_hand_over(struct bridge_conn *c)
{
        _cleanup_free_ uint64_t *ids = NULL;
        size_t n = 0;

        if (bridge_calls_list(c->calls, 0, &ids, &n) >= 0)
                for (size_t i = 0; i < n; i++) {
                        struct bridge_call *call = bridge_calls_get(c->calls, ids[i]);

                        if (call)
                                bridge_calls_cancel(c->calls, call);
                }
        (void)bridge_held_clear(&c->held);
        while (!list_empty(&c->watchers)) {
                struct watcher *w = list_entry(c->watchers.next, struct watcher, link);

                list_del(&w->link);
                c->n_watchers--;
                watcher_free(w);
        }
        c->attached = false;
        c->state = BRIDGE_CONN_CLOSED;
}

int bridge_conn_adopt(struct bridge_conn *c, uint64_t generation, const char *runtime_os, bool stdio_resume,
                      bool stdio_ack, bool stdin_eof)
{
        char *os = NULL;

        if (c->state != BRIDGE_CONN_WAITING || c->attached || c->generation != 0)
                return -EINVAL;
        if (runtime_os && runtime_os[0]) {
                os = strdup(runtime_os);
                if (!os)
                        return -ENOMEM;
        }
        free(c->runtime_os);
        c->runtime_os = os;
        c->attached = true;
        /* The same connection: waits adopted on it are not probed (their requests went out on it). */
        c->generation = generation ?: 1;
        c->stdio_resume = stdio_resume;
        c->stdio_ack = stdio_resume && stdio_ack;
        c->stdin_eof = stdio_resume && stdin_eof;
        c->grace_deadline = BRIDGE_DEADLINE_NONE;
        set_state(c, BRIDGE_CONN_CONNECTED);
        return 0;
}
