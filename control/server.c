/* control/server.c: accepts on the control socket, frames ttrpc over relay channels, dispatches calls. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "control/server.h"
#include "control/socket.h"
#include "util/log.h"

/* Bytes of unfinished requests held across all connections. Real requests are small; without a
 * shared bound, clients that each trickle in a max-size frame hold max_connections * 4 MiB. */
#define CONTROL_SERVER_MAX_PARTIAL (32u << 20)

struct control_conn {
        struct control_server *server;
        struct relay_chan *chan;
        struct control_conn *prev, *next;
        struct control_call *calls;
        unsigned n_calls;
        uint32_t last_stream_id;
        struct ucred peer;
        gid_t *groups; /* SO_PEERGROUPS */
        size_t n_groups;
        enum control_access access;
        uint64_t last_active_ns; /* accepted, sent a frame or finished a call */
        size_t partial;          /* bytes of a frame still incomplete after the last on_data */
        bool in_data;            /* inside on_data: a failure is returned, not aborted */
        int pending_error;
        bool dead; /* aborted; on_close is on its way */
};

struct control_call {
        struct control_server *server;
        struct control_conn *conn; /* NULL once cancelled */
        struct control_call *prev, *next;
        const struct control_method *method;
        ProtobufCMessage *request;
        uint32_t stream_id;
        int64_t timeout_ns;
        struct ucred peer;
        struct relay_timer *deadline;
        control_cancel_fn cancel;
        void *cancel_userdata;
        bool cancelled;
};

struct control_server {
        struct relay *relay;
        struct control_server_config cfg;
        char *path;
        struct stat st;
        int listen_fd; /* until the listener takes it */
        struct relay_listener *listener;
        const struct control_method *methods;
        size_t n_methods;
        bool readable[CONTROL_SERVER_MAX_METHODS]; /* by method index: the read group may call it */
        void *userdata;
        struct control_conn *conns;
        unsigned n_conns;
        size_t partial_total; /* sum of the connections' partial */
        struct control_server_stats stats;
        /* The call whose handler runs now, and whether the handler completed it: its return value
         * then means nothing (`return control_call_reply(...)` may be -ENOTCONN). */
        struct control_call *dispatching;
        bool dispatching_done;
};

/* ---- sending --------------------------------------------------------------------------- */

static void conn_fail(struct control_conn *conn, int err)
{
        if (conn->dead)
                return;
        conn->dead = true;
        if (conn->in_data)
                conn->pending_error = err;
        else
                relay_chan_abort(conn->chan, err);
}

/* Queues a whole frame. A reply that does not fit ends the connection: it must not vanish. */
static int conn_send(struct control_conn *conn, uint8_t *buf, size_t len, bool droppable)
{
        int r;

        if (conn->dead)
                return -ENOTCONN;
        r = relay_chan_send(conn->chan, buf, len);
        if (r == -ENOBUFS && droppable)
                return r;
        if (r < 0) {
                log_warn("control: closing connection from pid %d uid %u: cannot queue %zu bytes: %s",
                         (int)conn->peer.pid, (unsigned)conn->peer.uid, len, strerror(-r));
                conn_fail(conn, r);
        }
        return r;
}

static int conn_send_status(struct control_conn *conn, uint32_t stream_id, int code, const char *message)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r;

        r = control_response_build(stream_id, code, message, NULL, &buf, &len);
        if (r < 0)
                return r;
        return conn_send(conn, buf, len, false);
}

/* ---- calls ------------------------------------------------------------------------------ */

static void call_cancel(struct control_call *call)
{
        control_cancel_fn fn = call->cancel;

        if (call->cancelled)
                return;
        call->cancelled = true;
        call->deadline = relay_timer_free(call->deadline);
        call->cancel = NULL;
        if (fn)
                fn(call, call->cancel_userdata);
}

static void call_unlink(struct control_call *call)
{
        struct control_conn *conn = call->conn;

        if (!conn)
                return;
        if (call->prev)
                call->prev->next = call->next;
        else
                conn->calls = call->next;
        if (call->next)
                call->next->prev = call->prev;
        conn->n_calls--;
        call->conn = NULL;
        call->prev = call->next = NULL;
}

static void call_free(struct control_call *call)
{
        if (call->server->dispatching == call)
                call->server->dispatching_done = true;
        if (call->conn)
                call->conn->last_active_ns = relay_now_ns(call->server->relay);
        call_unlink(call);
        relay_timer_free(call->deadline);
        control_message_free(call->request);
        free(call);
}

/* Sends the final frame if anyone can receive it, then frees the call. */
static int call_finish(struct control_call *call, int code, const char *message, const ProtobufCMessage *msg)
{
        struct control_conn *conn = call->conn;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r;

        if (!conn || call->cancelled) {
                call_free(call);
                return -ENOTCONN;
        }
        if (call->method->streaming && code == CONTROL_CODE_OK)
                /* ttrpc ends a server stream with an empty data frame flagged remote-closed. */
                r = control_frame_build(call->stream_id, CONTROL_MSG_DATA,
                                        CONTROL_FLAG_REMOTE_CLOSED | CONTROL_FLAG_NO_DATA, NULL, &buf, &len);
        else
                r = control_response_build(call->stream_id, code, message, msg, &buf, &len);
        if (r == -EMSGSIZE) {
                log_warn("control: %s reply over %u bytes, sending an error instead", call->method->name,
                         CONTROL_FRAME_MAX_DATA);
                r = control_response_build(call->stream_id, CONTROL_CODE_RESOURCE_EXHAUSTED, "reply too large", NULL,
                                           &buf, &len);
        }
        if (r >= 0)
                r = conn_send(conn, buf, len, false);
        else
                conn_fail(conn, r);
        call_free(call);
        return r;
}

int control_call_reply(struct control_call *call, const ProtobufCMessage *response)
{
        if (call->method->streaming && response) {
                call_finish(call, CONTROL_CODE_INTERNAL, "stream ended with a message", NULL);
                return -EINVAL;
        }
        return call_finish(call, CONTROL_CODE_OK, NULL, response);
}

int control_call_fail(struct control_call *call, enum control_code code, const char *fmt, ...)
{
        char message[CONTROL_STATUS_MESSAGE_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        /* A failure must never read as success on the wire. */
        if (code == CONTROL_CODE_OK)
                code = CONTROL_CODE_UNKNOWN;
        return call_finish(call, code, message, NULL);
}

int control_call_fail_errno(struct control_call *call, int err, const char *what)
{
        return control_call_fail(call, control_code_from_errno(err), "%s: %s", what ?: call->method->name,
                                 strerror(err < 0 ? -err : err));
}

int control_call_send(struct control_call *call, const ProtobufCMessage *msg)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r;

        if (!call->method->streaming || !msg)
                return -EINVAL;
        if (!call->conn || call->cancelled || call->conn->dead)
                return -ENOTCONN;
        r = control_frame_build(call->stream_id, CONTROL_MSG_DATA, 0, msg, &buf, &len);
        if (r < 0)
                return r;
        return conn_send(call->conn, buf, len, true);
}

void control_call_set_cancel(struct control_call *call, control_cancel_fn fn, void *userdata)
{
        call->cancel = fn;
        call->cancel_userdata = userdata;
}

bool control_call_is_cancelled(const struct control_call *call)
{
        return call->cancelled;
}

const struct ucred *control_call_peer(const struct control_call *call)
{
        return &call->peer;
}

const gid_t *control_call_peer_groups(const struct control_call *call, size_t *ret_n)
{
        *ret_n = call->conn ? call->conn->n_groups : 0;
        return call->conn ? call->conn->groups : NULL;
}

const struct control_method *control_call_method(const struct control_call *call)
{
        return call->method;
}

int64_t control_call_timeout_ns(const struct control_call *call)
{
        return call->timeout_ns;
}

static void call_on_deadline(struct relay_timer *t, void *userdata)
{
        struct control_call *call = userdata;

        if (call->conn && !call->cancelled)
                (void)conn_send_status(call->conn, call->stream_id, CONTROL_CODE_DEADLINE_EXCEEDED,
                                       "deadline exceeded");
        call_cancel(call);
}

/* ---- dispatch --------------------------------------------------------------------------- */

static const struct control_method *method_lookup(const struct control_server *s, const char *service,
                                                  const char *method)
{
        size_t sl = strlen(service);

        for (size_t i = 0; i < s->n_methods; i++) {
                const char *name = s->methods[i].name;
                if (strncmp(name, service, sl) == 0 && name[sl] == '/' && strcmp(name + sl + 1, method) == 0)
                        return &s->methods[i];
        }
        return NULL;
}

static bool conn_has_stream(const struct control_conn *conn, uint32_t stream_id)
{
        for (const struct control_call *c = conn->calls; c; c = c->next)
                if (c->stream_id == stream_id)
                        return true;
        return false;
}

static int conn_handle_request(struct control_conn *conn, const struct control_frame *f)
{
        struct control_server *s = conn->server;
        _cleanup_(control_request_freep) Vsockmux__V1__TtrpcRequest *req = NULL;
        const struct control_method *m;
        struct control_call *call;
        ProtobufCMessage *payload = NULL;
        uint32_t sid = f->header.stream_id;
        int r;

        if (sid == 0 || sid % 2 == 0)
                return conn_send_status(conn, sid, CONTROL_CODE_INVALID_ARGUMENT,
                                        "stream id must be odd for client-initiated streams");
        if (sid <= conn->last_stream_id)
                return conn_send_status(conn, sid, CONTROL_CODE_INVALID_ARGUMENT,
                                        "stream id cannot be reused and must increase");
        conn->last_stream_id = sid;

        r = control_request_decode(f->data, f->header.length, &req);
        if (r < 0)
                return conn_send_status(conn, sid, CONTROL_CODE_INVALID_ARGUMENT,
                                        r == -EBADMSG ? "malformed request envelope"
                                                      : "request names no service or method");
        m = method_lookup(s, req->service, req->method);
        if (!m) {
                char msg[CONTROL_STATUS_MESSAGE_MAX];

                snprintf(msg, sizeof(msg), "unknown method %s/%s", req->service, req->method);
                return conn_send_status(conn, sid, CONTROL_CODE_UNIMPLEMENTED, msg);
        }
        if (conn->access != CONTROL_ACCESS_FULL && !s->readable[m - s->methods]) {
                char msg[CONTROL_STATUS_MESSAGE_MAX];

                log_info("control: pid %d uid %u (read group) may not call %s", (int)conn->peer.pid,
                         (unsigned)conn->peer.uid, m->name);
                snprintf(msg, sizeof(msg), "permission denied: %s needs full access; uid %u is only in the read group",
                         m->name, (unsigned)conn->peer.uid);
                return conn_send_status(conn, sid, CONTROL_CODE_PERMISSION_DENIED, msg);
        }
        if (conn->n_calls >= s->cfg.max_calls) {
                s->stats.calls_refused++;
                return conn_send_status(conn, sid, CONTROL_CODE_RESOURCE_EXHAUSTED,
                                        "too many calls in flight on this connection");
        }
        r = control_message_decode(m->request, req->payload.data, req->payload.len, &payload);
        if (r < 0) {
                char msg[CONTROL_STATUS_MESSAGE_MAX];

                snprintf(msg, sizeof(msg), "malformed %s payload", m->request->name);
                return conn_send_status(conn, sid, CONTROL_CODE_INVALID_ARGUMENT, msg);
        }

        call = calloc(1, sizeof(*call));
        if (!call) {
                control_message_free(payload);
                return conn_send_status(conn, sid, CONTROL_CODE_RESOURCE_EXHAUSTED, "out of memory");
        }
        *call = (struct control_call){
                .server = s,
                .conn = conn,
                .method = m,
                .request = payload,
                .stream_id = sid,
                /* Past the cap a deadline is no deadline (and cannot overflow the timer). */
                .timeout_ns = req->timeout_nano > 0 && req->timeout_nano <= CONTROL_CALL_TIMEOUT_MAX_NS
                                      ? req->timeout_nano
                                      : 0,
                .peer = conn->peer,
                .next = conn->calls,
        };
        if (conn->calls)
                conn->calls->prev = call;
        conn->calls = call;
        conn->n_calls++;

        if (call->timeout_ns > 0) {
                r = relay_timer_new(s->relay, call_on_deadline, call, &call->deadline);
                if (r >= 0)
                        r = relay_timer_arm(call->deadline, (uint64_t)call->timeout_ns);
                if (r < 0) {
                        call_finish(call, CONTROL_CODE_RESOURCE_EXHAUSTED, "cannot arm the deadline", NULL);
                        return 0;
                }
        }

        log_debug("control: pid %d uid %u calls %s", (int)conn->peer.pid, (unsigned)conn->peer.uid, m->name);
        s->dispatching = call;
        s->dispatching_done = false;
        r = m->handler(call, payload, s->userdata);
        s->dispatching = NULL;
        if (r < 0 && !s->dispatching_done)
                control_call_fail_errno(call, r, m->name);
        return 0;
}

static int conn_handle_frame(struct control_conn *conn, const struct control_frame *f)
{
        switch (f->header.type) {
        case CONTROL_MSG_REQUEST: return conn_handle_request(conn, f);
        case CONTROL_MSG_DATA:
                /* No method takes client data; a bare close of the client's side is harmless. */
                if (f->header.length == 0 && (f->header.flags & CONTROL_FLAG_REMOTE_CLOSED))
                        return 0;
                if (conn_has_stream(conn, f->header.stream_id))
                        return 0;
                return conn_send_status(conn, f->header.stream_id, CONTROL_CODE_INVALID_ARGUMENT,
                                        "stream is not active");
        default:
                /* A client never sends responses; anything else is not ttrpc. */
                return -EPROTO;
        }
}

static uint32_t frame_length(const uint8_t *h)
{
        return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

/* A request over the limit: say so on its stream, then flush and close (its bytes are not read:
 * skipping up to 4 GiB would let a client keep us busy). */
static int conn_refuse_frame(struct control_conn *conn, const uint8_t *h)
{
        struct control_server *s = conn->server;
        uint32_t sid = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
        char msg[CONTROL_STATUS_MESSAGE_MAX];

        s->stats.frames_refused++;
        log_warn("control: closing connection from pid %d uid %u: a %" PRIu32 "-byte request is over the "
                 "%zu-byte limit",
                 (int)conn->peer.pid, (unsigned)conn->peer.uid, frame_length(h), s->cfg.max_frame);
        snprintf(msg, sizeof(msg),
                 "request of %" PRIu32 " bytes is over vsockmuxd's control frame limit of %zu "
                 "bytes (vsockmuxd --max-control-frame)",
                 frame_length(h), s->cfg.max_frame);
        if (conn_send_status(conn, sid, CONTROL_CODE_RESOURCE_EXHAUSTED, msg) < 0)
                return -EMSGSIZE;
        conn->dead = true;
        relay_chan_close(conn->chan);
        return 0;
}

static void conn_release(struct control_conn *conn);

/* Over the shared bound, the connections holding the most unfinished bytes go first, so one
 * that trickles in a huge frame cannot cost a small request its place. True when `current` (in
 * its own on_data) has to go: the caller fails it. */
static bool server_shed_partial(struct control_server *s, struct control_conn *current)
{
        while (s->partial_total > CONTROL_SERVER_MAX_PARTIAL) {
                struct control_conn *victim = NULL;

                for (struct control_conn *c = s->conns; c; c = c->next)
                        if (!c->dead && (!victim || c->partial > victim->partial))
                                victim = c;
                if (!victim || victim->partial == 0)
                        return false;
                s->stats.partial_shed++;
                log_warn("control: closing connection from pid %d uid %u: it holds %zu bytes of an unfinished "
                         "request and all connections together over %u",
                         (int)victim->peer.pid, (unsigned)victim->peer.uid, victim->partial,
                         CONTROL_SERVER_MAX_PARTIAL);
                if (victim == current) {
                        s->partial_total -= current->partial;
                        current->partial = 0;
                        current->dead = true;
                        return true;
                }
                victim->chan = relay_chan_free(victim->chan);
                conn_release(victim);
        }
        return false;
}

static ssize_t conn_on_data(struct relay_chan *chan, const void *data, size_t len, void *userdata)
{
        struct control_conn *conn = userdata;
        const uint8_t *p = data;
        size_t off = 0;
        int r = 0;

        if (conn->dead)
                return conn->pending_error ?: -ECONNABORTED;

        conn->last_active_ns = relay_now_ns(conn->server->relay);
        conn->in_data = true;
        while (off < len && !conn->dead) {
                struct control_frame f;
                size_t size;

                if (len - off >= CONTROL_FRAME_HEADER_SIZE && frame_length(p + off) > conn->server->cfg.max_frame) {
                        conn->in_data = false;
                        if (conn_refuse_frame(conn, p + off) < 0)
                                return -EMSGSIZE;
                        return (ssize_t)len; /* the rest is the refused frame's; the channel is closing */
                }
                r = control_frame_parse(p + off, len - off, &f, &size);
                if (r <= 0)
                        break;
                r = conn_handle_frame(conn, &f);
                if (r == -EPROTO) {
                        log_warn("control: closing connection from pid %d uid %u: frame type %u is not a request",
                                 (int)conn->peer.pid, (unsigned)conn->peer.uid, f.header.type);
                        conn_fail(conn, r);
                }
                off += size;
                r = 0;
        }
        conn->in_data = false;

        if (conn->dead)
                return conn->pending_error ?: -ECONNABORTED;
        conn->server->partial_total += (len - off) - conn->partial;
        conn->partial = len - off;
        if (conn->server->partial_total > CONTROL_SERVER_MAX_PARTIAL && server_shed_partial(conn->server, conn))
                return -ENOBUFS;
        return (ssize_t)off;
}

/* Detaches the connection from its server and its calls; the calls learn they are cancelled. */
static void conn_release(struct control_conn *conn)
{
        struct control_server *s = conn->server;

        if (conn->prev)
                conn->prev->next = conn->next;
        else
                s->conns = conn->next;
        if (conn->next)
                conn->next->prev = conn->prev;
        s->n_conns--;
        s->partial_total -= conn->partial;

        while (conn->calls) {
                struct control_call *call = conn->calls;

                call_unlink(call);
                call_cancel(call); /* may complete and free the call */
        }
        free(conn->groups);
        free(conn);
}

static void conn_on_close(struct relay_chan *chan, int error, void *userdata)
{
        struct control_conn *conn = userdata;

        if (error < 0 && error != -ECONNRESET && error != -EPIPE)
                log_debug("control: connection from pid %d closed: %s", (int)conn->peer.pid, strerror(-error));
        else if (conn->partial > 0 && !conn->dead)
                log_info("control: connection from pid %d uid %u closed in the middle of a request (%zu bytes dropped)",
                         (int)conn->peer.pid, (unsigned)conn->peer.uid, conn->partial);
        conn_release(conn);
}

static const struct relay_chan_ops conn_ops = {
        .on_data = conn_on_data,
        .on_close = conn_on_close,
};

/* ---- accepting -------------------------------------------------------------------------- */

/* At the cap, the connection idle longest (no call in flight) makes way for a new one, so clients
 * that connect and hold on cannot starve the others; calls in flight are never cut. */
static bool server_evict_idle(struct control_server *s)
{
        struct control_conn *victim = NULL;

        for (struct control_conn *c = s->conns; c; c = c->next)
                if (c->n_calls == 0 && !c->dead && (!victim || c->last_active_ns <= victim->last_active_ns))
                        victim = c;
        if (!victim)
                return false;
        s->stats.connections_evicted++;
        log_warn("control: %u connections open (max %u): closing the one idle longest (pid %d uid %u) for a new one",
                 s->n_conns, s->cfg.max_connections, (int)victim->peer.pid, (unsigned)victim->peer.uid);
        victim->chan = relay_chan_free(victim->chan);
        conn_release(victim);
        return true;
}

/* Past max_connections nothing is kept for the client, yet it should learn why: the answer to
 * the first request a ttrpc client sends (stream 1) is written straight into the new socket,
 * which is empty, so this never blocks; then the fd closes. A client whose request had not gone
 * out yet still reads the answer (control/client.c reads after a failed send). */
static void server_refuse_fd(struct control_server *s, int fd)
{
        _cleanup_free_ uint8_t *buf = NULL;
        char msg[CONTROL_STATUS_MESSAGE_MAX];
        size_t len;

        snprintf(msg, sizeof(msg), "vsockmuxd has %u control connections busy, the limit (vsockmuxd --max-connections)",
                 s->n_conns);
        if (control_response_build(1, CONTROL_CODE_RESOURCE_EXHAUSTED, msg, NULL, &buf, &len) < 0)
                return;
        (void)send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void server_take_fd(struct control_server *s, int fd)
{
        _cleanup_close_ int cfd = fd;
        struct control_conn *conn;
        struct ucred peer;
        _cleanup_free_ gid_t *groups = NULL;
        size_t n_groups = 0;
        int r;

        r = control_peer_check(cfd, s->cfg.owner_uid, s->cfg.group, s->cfg.read_group, &peer, &groups, &n_groups);
        if (r < 0) {
                log_warn("control: refusing a connection: cannot read peer credentials: %s", strerror(-r));
                return;
        }
        if (r == CONTROL_ACCESS_NONE) {
                log_warn("control: refusing connection from pid %d uid %u gid %u: not root, uid %u%s%s", (int)peer.pid,
                         (unsigned)peer.uid, (unsigned)peer.gid, (unsigned)s->cfg.owner_uid,
                         s->cfg.group != CONTROL_NO_GROUP ? " or a member of the control group" : "",
                         s->cfg.read_group != CONTROL_NO_GROUP ? " or a member of the read group" : "");
                return;
        }
        /* Only a permitted peer may make an idle one give way. */
        if (s->n_conns >= s->cfg.max_connections && !server_evict_idle(s)) {
                s->stats.connections_refused++;
                log_warn("control: refusing connection from pid %d: %u connections open (max %u), all with calls in "
                         "flight",
                         (int)peer.pid, s->n_conns, s->cfg.max_connections);
                server_refuse_fd(s, cfd);
                return;
        }

        conn = calloc(1, sizeof(*conn));
        if (!conn) {
                log_warn("control: refusing connection from pid %d: out of memory", (int)peer.pid);
                return;
        }
        *conn = (struct control_conn){
                .server = s,
                .peer = peer,
                .groups = groups,
                .n_groups = n_groups,
                .access = (enum control_access)r,
                .last_active_ns = relay_now_ns(s->relay),
        };
        r = relay_chan_new(s->relay, cfd, &conn_ops,
                           &(struct relay_chan_limits){
                                   .max_rx = CONTROL_FRAME_HEADER_SIZE + s->cfg.max_frame,
                                   .max_tx = s->cfg.max_tx,
                           },
                           conn, &conn->chan);
        if (r < 0) {
                log_warn("control: refusing connection from pid %d: %s", (int)peer.pid, strerror(-r));
                free(conn);
                return;
        }
        TAKE_FD(cfd);
        TAKE_PTR(groups);
        conn->next = s->conns;
        if (s->conns)
                s->conns->prev = conn;
        s->conns = conn;
        s->n_conns++;
        log_debug("control: connection from pid %d uid %u", (int)peer.pid, (unsigned)peer.uid);
}

/* The relay's listener retries transient accept failures (fd exhaustion, memory) itself; what
 * reaches here is the end of the listening socket. */
static void server_on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct control_server *s = userdata;

        if (fd < 0) {
                log_error("control: accept on %s failed: %s; no new connections", s->path, strerror(-fd));
                return;
        }
        server_take_fd(s, fd);
}

/* ---- server ----------------------------------------------------------------------------- */

static int methods_check(const struct control_method *methods, size_t n)
{
        if (n > CONTROL_SERVER_MAX_METHODS || (n > 0 && !methods))
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                const char *slash;

                if (!methods[i].name || !methods[i].request || !methods[i].handler)
                        return -EINVAL;
                slash = strchr(methods[i].name, '/');
                if (!slash || slash == methods[i].name || !slash[1] ||
                    strlen(methods[i].name) > CONTROL_METHOD_NAME_MAX)
                        return -EINVAL;
                for (size_t j = 0; j < i; j++)
                        if (strcmp(methods[i].name, methods[j].name) == 0)
                                return -EEXIST;
        }
        return 0;
}

int control_server_set_max_connections(struct control_server *s, unsigned max_connections)
{
        if (max_connections > CONTROL_SERVER_MAX_CONNECTIONS_LIMIT)
                return -EINVAL;
        s->cfg.max_connections = max_connections ?: CONTROL_SERVER_MAX_CONNECTIONS;
        return 0;
}

int control_server_new(struct relay *r, const struct control_server_config *cfg, const struct control_method *methods,
                       size_t n_methods, void *userdata, struct control_server **ret)
{
        _cleanup_(control_server_freep) struct control_server *s = NULL;
        int k;

        if (!r || !cfg || !cfg->path)
                return -EINVAL;
        if (cfg->max_connections > CONTROL_SERVER_MAX_CONNECTIONS_LIMIT ||
            cfg->max_calls > CONTROL_CONN_MAX_CALLS_LIMIT || cfg->max_tx > RELAY_CHAN_LIMIT_MAX ||
            (cfg->max_tx && cfg->max_tx < CONTROL_FRAME_MAX) ||
            (cfg->max_frame && (cfg->max_frame < CONTROL_FRAME_MIN_DATA || cfg->max_frame > CONTROL_FRAME_MAX_DATA)))
                return -EINVAL;
        k = methods_check(methods, n_methods);
        if (k < 0)
                return k;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->relay = r;
        s->listen_fd = -1;
        s->cfg = *cfg;
        s->cfg.max_connections = cfg->max_connections ?: CONTROL_SERVER_MAX_CONNECTIONS;
        s->cfg.max_calls = cfg->max_calls ?: CONTROL_CONN_MAX_CALLS;
        s->cfg.max_tx = cfg->max_tx ?: CONTROL_CONN_MAX_TX;
        s->cfg.max_frame = cfg->max_frame ?: CONTROL_FRAME_MAX_DATA;
        s->methods = methods;
        s->n_methods = n_methods;
        if (s->cfg.read_group == 0)
                s->cfg.read_group = CONTROL_NO_GROUP;
        for (size_t i = 0; i < cfg->n_read_methods; i++) {
                size_t j = 0;

                while (j < n_methods && strcmp(methods[j].name, cfg->read_methods[i]) != 0)
                        j++;
                if (j == n_methods)
                        return -EINVAL;
                s->readable[j] = true;
        }
        s->cfg.read_methods = NULL;
        s->cfg.n_read_methods = 0;
        s->userdata = userdata;
        s->path = strdup(cfg->path);
        if (!s->path)
                return -ENOMEM;
        s->cfg.path = s->path;

        if (cfg->adopt_fd) {
                k = relay_listen_fd(r, cfg->adopted_fd, s->path, RELAY_LISTEN_MANY, server_on_accept, s, &s->listener);
                if (k < 0)
                        return k;
                *ret = TAKE_PTR(s);
                return 0;
        }
        k = control_socket_listen(s->path, s->cfg.group, s->cfg.read_group, &s->listen_fd, &s->st);
        if (k < 0)
                return k;
        k = relay_listen_fd(r, s->listen_fd, s->path, RELAY_LISTEN_MANY, server_on_accept, s, &s->listener);
        if (k < 0)
                return k;
        s->listen_fd = -1;
        *ret = TAKE_PTR(s);
        return 0;
}

struct control_server *control_server_free(struct control_server *s)
{
        if (!s)
                return NULL;
        while (s->conns) {
                struct control_conn *conn = s->conns;

                conn->chan = relay_chan_free(conn->chan);
                conn_release(conn);
        }
        /* The socket file is ours while we listen on it, through the listener or still by fd;
         * an adopted socket's file belongs to whoever bound it. */
        if ((s->listener || s->listen_fd >= 0) && !s->cfg.adopt_fd)
                control_socket_unlink(s->path, &s->st);
        s->listener = relay_listener_free(s->listener);
        safe_close(s->listen_fd);
        free(s->path);
        free(s);
        return NULL;
}

unsigned control_server_connections(const struct control_server *s)
{
        return s->n_conns;
}

void control_server_get_stats(const struct control_server *s, struct control_server_stats *ret)
{
        *ret = s->stats;
}

int control_server_release_listener(struct control_server *s, int *ret_fd, bool *ret_owned)
{
        int fd, r;

        if (!s->listener)
                return -EBADF;
        r = relay_listener_release(s->listener, &fd);
        if (r < 0)
                return r;
        s->listener = NULL;
        *ret_owned = !s->cfg.adopt_fd;
        *ret_fd = fd;
        return 0;
}

size_t control_server_tx_pending(const struct control_server *s)
{
        size_t n = 0;

        for (struct control_conn *conn = s->conns; conn; conn = conn->next)
                if (conn->chan)
                        n += relay_chan_tx_pending(conn->chan);
        return n;
}

int control_server_listen_again(struct control_server *s, int fd)
{
        if (s->listener)
                return -EBUSY;
        return relay_listen_fd(s->relay, fd, s->path, RELAY_LISTEN_MANY, server_on_accept, s, &s->listener);
}
