/* sim/bridge.c: the simulator's side of the bridge: the send queue, negotiation, and dispatching each request. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/codec.h"
#include "bridge/msg.h"
#include "sim/sim.h"
#include "util/log.h"

#define SIM_MAX_PENDING_FRAMES 4096u

struct sim_frame {
        uint8_t *buf;
        size_t len;
        enum sim_stat stat; /* counted once written */
        struct sim_frame *next;
};

struct sim_frame_queue {
        struct sim_frame *head, **tail;
        unsigned n;
};

static bool frame_is_reply(const struct sim_frame *f)
{
        struct bridge_header h;

        if (f->len < BRIDGE_HEADER_SIZE)
                return false;
        bridge_header_decode(f->buf, &h);
        return bridge_type_class(h.type) == BRIDGE_CLASS_RESPONSE;
}

/* hcsshim's guest after its bridge connection ended, read at microsoft/hcsshim 7c9ff7f4 (v0.15.0-rc.4
 * and 4 commits). The redial came with a4051da (#2698), first tagged v0.15.0-rc.2; v0.14.1 and every
 * release before have none: cmd/gcs/main.go there (v0.14.1 lines 393-398) ends the agent once
 * ListenAndServe returns, and its VM stops at the first loss (below), which the simulator does not
 * play: nothing of a save or a reconnect can work with that guest.
 * - cmd/gcs/main.go 475 and 521-549: the agent redials 100 ms after ListenAndServe returns, and every
 *   100 ms after a failed dial, for ever, no backoff and no limit (internal/guest/transport/vsock.go
 *   25-47 retries a dial that timed out 10 times, 100 ms apart, within one attempt); sim_bridge_run.
 * - internal/guest/bridge/bridge.go 303-325: each connection starts unnegotiated; the Host (its
 *   containers, processes and their stdio connections) lives on untouched; 220-256: container
 *   notifications made while no connection is up are queued and sent on the next one.
 * - bridge_v2.go 337-390: a pending WaitForProcess stays blocked on its process; its reply goes into
 *   b.responseChan as it is then (bridge.go 435), so after a redial it is written on the new
 *   connection with the old request's id (ours and upstream alike, here).
 * - But a reply made after the connection ended and before the next one went up goes into the old,
 *   unbuffered channel, whose writer is still running (bridge.go 449-476): its write into the closed
 *   connection fails and it sends on responseErrChan, closed by ListenAndServe's defers (475): the
 *   agent panics "send on closed channel". A writer that fails while the connection is up ends
 *   ListenAndServe, whose defers close requestErrChan before bridgeIn, so the reader woken by that
 *   close panics the same way (410). The agent is init's child (init/init.c 1023-1024: init returns
 *   its status, the kernel panics with panic=-1) and the VM has StopOnReset (internal/uvm/
 *   create_lcow.go 374): the VM stops, every process with it. bridge_panic_locked() plays that.
 *   --no-bridge-panic loses the reply and lives on instead: kinder, for tests of a lost reply. */
static void bridge_panic_locked(struct sim *s, const struct sim_frame *f, const char *what)
{
        struct bridge_header h = {};

        if (s->panicked)
                return;
        s->panicked = true;
        if (f->len >= BRIDGE_HEADER_SIZE)
                bridge_header_decode(f->buf, &h);
        log_error("bridge: %s (type %#x id %llu) after the connection ended: hcsshim's guest panics here (send on "
                  "closed channel) and its VM stops; so does this one (--no-bridge-panic to lose it instead)",
                  what, h.type, (unsigned long long)h.id);
        sim_stat_add(s, SIM_STAT_BRIDGE_PANICS);
        /* main() takes it at once (every thread blocks it) and stops everything; sim_request_stop()
         * needs s->lock, which a caller of sim_bridge_queue() may hold. */
        kill(getpid(), SIGTERM);
}

bool sim_bridge_panicked(struct sim *s)
{
        bool r;

        pthread_mutex_lock(&s->write_lock);
        r = s->panicked;
        pthread_mutex_unlock(&s->write_lock);
        return r;
}

static void frame_free(struct sim_frame *f)
{
        free(f->buf);
        free(f);
}

/* With --fidelity upstream and --no-bridge-panic: f, a reply, goes with the connection it was for. */
static void reply_lost_locked(struct sim *s, struct sim_frame *f)
{
        log_info("bridge: a reply lost with its connection (hcsshim's guest does not resend it)");
        sim_stat_add(s, SIM_STAT_REPLY_LOST);
        frame_free(f);
}

/* Called with write_lock held. A frame that fails to go out stays queued for the next connection;
 * with --fidelity upstream the agent panics (above), or with --no-bridge-panic the frame is lost
 * with the connection. */
static void bridge_flush_locked(struct sim *s)
{
        struct sim_frame_queue *q = s->pending;

        while (q && q->head && s->bridge_fd >= 0 && !s->panicked) {
                struct sim_frame *f = q->head;
                bool sent = sim_write_all(s->bridge_fd, f->buf, f->len) >= 0;

                if (!sent && !sim_upstream(s)) {
                        if (frame_is_reply(f))
                                sim_stat_add(s, SIM_STAT_REPLY_HELD);
                        return;
                }
                if (!sent && !s->opt.no_bridge_panic) {
                        bridge_panic_locked(
                                s, f, frame_is_reply(f) ? "a reply failed to go out" : "a frame failed to go out");
                        return;
                }
                if (sent)
                        sim_stat_add(s, f->stat);
                else if (frame_is_reply(f))
                        sim_stat_add(s, SIM_STAT_REPLY_LOST);
                q->head = f->next;
                if (!q->head)
                        q->tail = &q->head;
                q->n--;
                free(f->buf);
                free(f);
        }
}

/* Called with write_lock held: appends the frame to what goes out next, in order. While
 * disconnected, ours keeps a reply for the next connection (H4); hcsshim's guest keeps only
 * container notifications (pendingNotifications) and never sends a reply to a request of a
 * connection that is gone (its handler writes into that connection's channel: the reply is lost,
 * or the guest panics, docs/hcsshim-guest.md). */
static void bridge_queue_locked(struct sim *s, uint8_t *buf, size_t len, enum sim_stat stat)
{
        struct sim_frame *f = calloc(1, sizeof(*f));

        if (!f) {
                log_error("bridge: out of memory, dropping a %zu-byte frame", len);
                free(buf);
                return;
        }
        *f = (struct sim_frame){ .buf = buf, .len = len, .stat = stat };
        if (s->panicked) {
                frame_free(f);
                return;
        }
        if (s->bridge_fd < 0 && frame_is_reply(f)) {
                if (sim_upstream(s) && !s->opt.no_bridge_panic) {
                        bridge_panic_locked(s, f, "a reply made");
                        frame_free(f);
                        return;
                }
                if (sim_upstream(s)) {
                        reply_lost_locked(s, f);
                        return;
                }
                sim_stat_add(s, SIM_STAT_REPLY_HELD);
        }
        if (!s->pending) {
                s->pending = calloc(1, sizeof(*s->pending));
                if (!s->pending) {
                        log_error("bridge: out of memory, dropping a %zu-byte frame", len);
                        free(buf);
                        free(f);
                        return;
                }
                s->pending->tail = &s->pending->head;
        }
        if (s->pending->n >= SIM_MAX_PENDING_FRAMES) {
                struct sim_frame *old = s->pending->head;

                log_error("bridge: %u frames waiting for a connection; discarding the oldest", s->pending->n);
                s->pending->head = old->next;
                if (!s->pending->head)
                        s->pending->tail = &s->pending->head;
                s->pending->n--;
                free(old->buf);
                free(old);
        }
        *s->pending->tail = f;
        s->pending->tail = &f->next;
        s->pending->n++;
}

void sim_bridge_queue_counted(struct sim *s, uint8_t *buf, size_t len, enum sim_stat stat)
{
        pthread_mutex_lock(&s->write_lock);
        bridge_queue_locked(s, buf, len, stat);
        pthread_mutex_unlock(&s->write_lock);
}

void sim_bridge_queue(struct sim *s, uint8_t *buf, size_t len)
{
        sim_bridge_queue_counted(s, buf, len, SIM_STAT_NONE);
}

void sim_bridge_flush(struct sim *s)
{
        pthread_mutex_lock(&s->write_lock);
        bridge_flush_locked(s);
        pthread_mutex_unlock(&s->write_lock);
}

void sim_bridge_send(struct sim *s, uint8_t *buf, size_t len)
{
        pthread_mutex_lock(&s->write_lock);
        bridge_queue_locked(s, buf, len, SIM_STAT_NONE);
        bridge_flush_locked(s);
        pthread_mutex_unlock(&s->write_lock);
}

void sim_bridge_free_pending(struct sim *s)
{
        struct sim_frame_queue *q = s->pending;

        if (!q)
                return;
        while (q->head) {
                struct sim_frame *f = q->head;

                q->head = f->next;
                free(f->buf);
                free(f);
        }
        free(q);
        s->pending = NULL;
}

static void bridge_reply(struct sim *s, uint32_t req_type, uint64_t id, const struct bridge_response *resp)
{
        uint8_t *buf = NULL;
        size_t len;
        int r;

        r = bridge_response_frame(req_type, id, resp, &buf, &len);
        if (r < 0) {
                log_error("bridge: cannot encode the reply to %s id %llu: %s", bridge_type_name(req_type) ?: "request",
                          (unsigned long long)id, strerror(-r));
                return;
        }
        sim_bridge_send(s, buf, len);
}

/* HrNotImpl, echoing the id and ActivityId (H1). */
static void bridge_reply_not_impl(struct sim *s, const struct bridge_frame *f)
{
        struct bridge_request req = {};
        struct bridge_response resp = { .result = BRIDGE_HR_NOT_IMPL, .error_message = "not implemented" };

        if (bridge_request_decode(f->header.type, f->payload, f->payload_len, &req, NULL) == 0)
                resp.activity_id = req.activity_id;
        bridge_reply(s, f->header.type, f->header.id, &resp);
        bridge_request_done(&req);
}

static bool bridge_negotiate(struct sim *s, const struct bridge_frame *f)
{
        struct bridge_request req = {};
        struct bridge_response resp = {};
        const char *reason = "malformed request";
        bool ok = false;

        if (bridge_request_decode(f->header.type, f->payload, f->payload_len, &req, &reason) < 0) {
                resp.result = BRIDGE_HR_INVALID_ARG;
                resp.error_message = reason;
        } else if (req.negotiate.max_version < BRIDGE_PROTOCOL_VERSION ||
                   req.negotiate.min_version > BRIDGE_PROTOCOL_VERSION) {
                resp.result = BRIDGE_HR_UNSUPPORTED_VERSION;
                resp.error_message = "unsupported protocol version";
                resp.activity_id = req.activity_id;
        } else {
                resp.activity_id = req.activity_id;
                resp.negotiate.version = MIN(BRIDGE_PROTOCOL_VERSION, req.negotiate.max_version);
                resp.negotiate.stdio_resume = s->opt.announce_resume;
                resp.negotiate.stdio_ack = s->opt.announce_resume && s->opt.announce_ack;
                resp.negotiate.stdin_eof = s->opt.announce_resume && s->opt.announce_stdin_eof;
                pthread_mutex_lock(&s->lock);
                s->resume_agreed = s->opt.announce_resume && req.negotiate.stdio_resume;
                s->ack_agreed = s->resume_agreed && s->opt.announce_ack && req.negotiate.stdio_ack;
                s->stdin_eof_agreed = s->resume_agreed && s->opt.announce_stdin_eof && req.negotiate.stdin_eof;
                pthread_mutex_unlock(&s->lock);
                log_info("bridge: negotiated protocol %u, stdio resume %s, delivery acks %s, stdin end confirmation %s",
                         resp.negotiate.version, s->resume_agreed ? "on" : "off", s->ack_agreed ? "on" : "off",
                         s->stdin_eof_agreed ? "on" : "off");
                ok = true;
        }
        bridge_reply(s, f->header.type, f->header.id, &resp);
        bridge_request_done(&req);
        return ok;
}

static void *bridge_request_thread(void *arg)
{
        struct sim_request *req = arg;
        struct sim *s = req->s;

        sim_handle_request(req);
        sim_request_free(req);
        sim_thread_leave(s);
        return NULL;
}

static void bridge_dispatch(struct sim *s, const struct bridge_frame *f)
{
        struct sim_request *req;
        bool busy;

        /* Waits are answered or registered in arrival order, here: a thread per wait made thousands of
         * thread creations per host restore and kept this reader from seeing the bridge close. */
        if (f->header.type == BRIDGE_RPC_WAIT_FOR_PROCESS) {
                sim_handle_wait(s, f->header.id, f->payload, f->payload_len);
                return;
        }
        pthread_mutex_lock(&s->lock);
        busy = s->n_threads >= SIM_MAX_REQUEST_THREADS;
        pthread_mutex_unlock(&s->lock);
        req = calloc(1, sizeof(*req));
        if (req)
                req->payload = malloc(f->payload_len + 1);
        if (busy || !req || !req->payload) {
                struct bridge_response resp = { .result = BRIDGE_HR_FAIL, .error_message = "guest busy" };

                sim_request_free(req);
                bridge_reply(s, f->header.type, f->header.id, &resp);
                return;
        }
        req->s = s;
        req->type = f->header.type;
        req->id = f->header.id;
        req->len = f->payload_len;
        memcpy(req->payload, f->payload, f->payload_len);
        req->payload[f->payload_len] = '\0';
        /* Each request on its own thread so a slow exec never holds up the others (H3). */
        sim_thread_enter(s);
        if (sim_thread_start(NULL, bridge_request_thread, req) < 0) {
                struct bridge_response resp = { .result = BRIDGE_HR_FAIL, .error_message = "guest busy" };

                sim_thread_leave(s);
                sim_request_free(req);
                bridge_reply(s, f->header.type, f->header.id, &resp);
        }
}

/* Serves one connection until it breaks. The protocol version starts at 0 on each (H2). */
static void bridge_serve(struct sim *s, struct sim_conn *c)
{
        static const size_t cap = 2 * BRIDGE_MAX_FRAME;
        _cleanup_free_ uint8_t *buf = malloc(cap);
        uint32_t version = 0;
        size_t have = 0;

        if (!buf) {
                log_error("bridge: out of memory");
                return;
        }
        for (;;) {
                ssize_t n = read(c->fd, buf + have, cap - have);
                size_t off = 0;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        if (!sim_stopping(s))
                                log_info("bridge: connection %s%s",
                                         n == 0 ? "closed" : "failed: ", n == 0 ? "" : strerror(errno));
                        return;
                }
                have += (size_t)n;
                for (;;) {
                        struct bridge_frame f;
                        const char *reason = NULL;
                        int k = bridge_frame_parse(buf + off, have - off, &f, NULL, &reason);

                        if (k < 0) {
                                log_error("bridge: protocol error from host: %s; dropping the connection", reason);
                                return;
                        }
                        if (k == 0)
                                break;
                        off += (size_t)k;
                        if (bridge_type_class(f.header.type) != BRIDGE_CLASS_REQUEST) {
                                log_warn("bridge: ignoring message type %#x id %llu from host", f.header.type,
                                         (unsigned long long)f.header.id);
                                continue;
                        }
                        log_debug("bridge: %s id %llu", bridge_type_name(f.header.type) ?: "unknown request",
                                  (unsigned long long)f.header.id);
                        /* Requests are tagged with the version current when read (H1); negotiate only at 0. */
                        if (f.header.type == BRIDGE_RPC_NEGOTIATE_PROTOCOL && version == 0) {
                                if (bridge_negotiate(s, &f))
                                        version = BRIDGE_PROTOCOL_VERSION;
                        } else if (version == 0 || f.header.type == BRIDGE_RPC_NEGOTIATE_PROTOCOL)
                                bridge_reply_not_impl(s, &f);
                        else
                                bridge_dispatch(s, &f);
                }
                memmove(buf, buf + off, have - off);
                have -= off;
        }
}

/* Called with write_lock held, the connection just ended. With --fidelity upstream a reply still
 * queued for it (made before the end, not written yet: a process that exited as the host went) had
 * gone into that connection's channel, whose writer fails: the agent panics as at a reply made
 * after the end (bridge_panic_locked()), or with --no-bridge-panic it is lost with the connection.
 * A container's exit notification waits for the next connection, as pendingNotifications does. */
static void bridge_connection_ended_locked(struct sim *s)
{
        struct sim_frame_queue *q = s->pending;
        struct sim_frame **pp;

        if (!q || !sim_upstream(s))
                return;
        for (pp = &q->head; *pp;) {
                struct sim_frame *f = *pp;

                if (!frame_is_reply(f)) {
                        pp = &f->next;
                        continue;
                }
                if (!s->opt.no_bridge_panic) {
                        bridge_panic_locked(s, f, "a reply queued");
                        return;
                }
                *pp = f->next;
                q->n--;
                reply_lost_locked(s, f);
        }
        q->tail = pp;
}

/* The redial and its 100 ms are hcsshim's (bridge_panic_locked() says where). */
void sim_bridge_run(struct sim *s)
{
        bool announced_wait = false;

        while (!sim_stopping(s) && !sim_bridge_panicked(s)) {
                struct sim_conn *c = NULL;
                int r;

                r = sim_dial(s, SIM_BRIDGE_PORT, &c);
                if (r < 0) {
                        if (!announced_wait && r != -ECANCELED)
                                log_info("bridge: waiting for the host (%s); redialling every %d ms", strerror(-r),
                                         SIM_REDIAL_MS);
                        announced_wait = true;
                        sim_sleep(s, SIM_REDIAL_MS);
                        continue;
                }
                announced_wait = false;
                sim_stat_add(s, SIM_STAT_BRIDGE_CONNECTS);
                log_info("bridge: connected");
                /* ack_agreed stays as the last negotiation left it: a stream must not free what
                 * the host only read while a new host is still negotiating. */
                pthread_mutex_lock(&s->lock);
                s->resume_agreed = false;
                pthread_mutex_unlock(&s->lock);

                /* Exit notifications and replies held while disconnected go first (H4). */
                pthread_mutex_lock(&s->write_lock);
                s->bridge_fd = c->fd;
                bridge_flush_locked(s);
                pthread_mutex_unlock(&s->write_lock);

                bridge_serve(s, c);

                pthread_mutex_lock(&s->write_lock);
                s->bridge_fd = -1;
                bridge_connection_ended_locked(s);
                pthread_mutex_unlock(&s->write_lock);
                sim_stat_add(s, SIM_STAT_BRIDGE_LOSSES);
                sim_conn_close(s, c);
                if (!sim_stopping(s))
                        sim_sleep(s, SIM_REDIAL_MS);
        }
}
