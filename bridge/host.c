/* bridge/host.c: one VM's bridge on the relay loop: the 0x40000000 listener, the guest channel, the timeout timer. */
#include "bridge/host.h"

#include <stdlib.h>
#include <string.h>

struct bridge_host {
        struct relay *relay;
        struct relay_transport transport;
        struct bridge_host_ops ops;
        void *userdata;

        struct bridge_conn *conn;
        struct relay_listener *listener;
        struct relay_chan *chan; /* the current guest connection, NULL while detached */
        struct relay_timer *timer;
        uint64_t armed_deadline; /* what the timer is armed for, BRIDGE_DEADLINE_NONE if not */
        size_t max_frame;        /* BRIDGE_MAX_FRAME unless configured lower */

        /* bridge_host_hold(): the channel is held; fn once it is quiet */
        bool held;
        bridge_host_held_fn held_fn;
        void *held_userdata;
        bool held_quiet;

        /* bridge_host_free() from inside one of our callbacks: the memory goes when the outermost
         * entry into this host unwinds, so nothing below it touches freed state. */
        unsigned depth;
        bool freed;
};

static void host_tell(struct bridge_host *h, struct bridge_event ev)
{
        if (h->ops.on_event)
                h->ops.on_event(h, &ev, h->userdata);
}

static void host_destroy(struct bridge_host *h)
{
        bridge_conn_free(h->conn);
        free(h);
}

static void host_enter(struct bridge_host *h)
{
        h->depth++;
}

/* Don't touch h after this. */
static void host_leave(struct bridge_host *h)
{
        if (--h->depth == 0 && h->freed)
                host_destroy(h);
}

/* Keeps the one timer armed for the earliest call deadline; called after every entry into conn. */
static void host_rearm(struct bridge_host *h)
{
        uint64_t d, now;
        int r;

        if (h->freed || !h->timer)
                return;
        d = bridge_conn_next_deadline(h->conn);
        if (d == h->armed_deadline)
                return;
        if (d == BRIDGE_DEADLINE_NONE) {
                relay_timer_disarm(h->timer);
                h->armed_deadline = d;
                return;
        }
        now = relay_now_ns(h->relay);
        r = relay_timer_arm(h->timer, d > now ? d - now : 0);
        if (r < 0) {
                /* Deadlines are a safety net; a call without one still completes on answer or loss. */
                host_tell(h, (struct bridge_event){ .kind = BRIDGE_EVENT_TIMER_UNARMED, .error = r });
                h->armed_deadline = BRIDGE_DEADLINE_NONE;
                return;
        }
        h->armed_deadline = d;
}

static void host_on_timer(struct relay_timer *t, void *userdata)
{
        struct bridge_host *h = userdata;

        host_enter(h);
        h->armed_deadline = BRIDGE_DEADLINE_NONE;
        bridge_conn_tick(h->conn, relay_now_ns(h->relay));
        host_rearm(h);
        host_leave(h);
}

/* ---- conn ops ---- */

static int host_write(struct bridge_conn *c, const void *frame, size_t len, void *userdata)
{
        struct bridge_host *h = userdata;

        if (!h->chan)
                return -ENOTCONN;
        if (len > h->max_frame) {
                host_tell(h, (struct bridge_event){
                                     .kind = BRIDGE_EVENT_FRAME_UNSENT, .bytes = len, .limit = h->max_frame });
                return -EMSGSIZE;
        }
        return relay_chan_send(h->chan, frame, len);
}

static void host_disconnect(struct bridge_conn *c, int error, void *userdata)
{
        struct bridge_host *h = userdata;

        /* Safe inside the channel's own on_data; on_close does not follow. */
        h->chan = relay_chan_free(h->chan);
}

static void host_state_changed(struct bridge_conn *c, enum bridge_conn_state old_state,
                               enum bridge_conn_state new_state, void *userdata)
{
        struct bridge_host *h = userdata;

        if (h->ops.on_state_change)
                h->ops.on_state_change(h, old_state, new_state, h->userdata);
}

static void host_event(struct bridge_conn *c, const struct bridge_event *ev, void *userdata)
{
        host_tell(userdata, *ev);
}

static void host_notification(struct bridge_conn *c, const struct bridge_notification *n, bool watched, void *userdata)
{
        struct bridge_host *h = userdata;

        if (h->ops.on_notification)
                h->ops.on_notification(h, n, watched, h->userdata);
}

static uint64_t host_now(struct bridge_conn *c, void *userdata)
{
        struct bridge_host *h = userdata;

        return relay_now_ns(h->relay);
}

static const struct bridge_conn_ops host_conn_ops = {
        .write = host_write,
        .disconnect = host_disconnect,
        .state_changed = host_state_changed,
        .notification = host_notification,
        .event = host_event,
        .now = host_now,
};

/* ---- the guest channel ---- */

/* Under the hard maximum the codec enforces, a configured lower limit is checked on every header
 * that has arrived, before the frame behind it is buffered whole. */
static int host_check_frames(struct bridge_host *h, const uint8_t *p, size_t len)
{
        size_t off = 0;

        if (h->max_frame >= BRIDGE_MAX_FRAME)
                return 0;
        while (len - off >= BRIDGE_HEADER_SIZE) {
                struct bridge_header hdr;

                bridge_header_decode(p + off, &hdr);
                if (hdr.size > h->max_frame) {
                        host_tell(h, (struct bridge_event){
                                             .kind = BRIDGE_EVENT_FRAME_REFUSED,
                                             .bytes = hdr.size,
                                             .limit = h->max_frame,
                                     });
                        return -EMSGSIZE;
                }
                if (hdr.size < BRIDGE_HEADER_SIZE)
                        return 0; /* the codec names that one */
                off += hdr.size;
                if (off > len)
                        break;
        }
        return 0;
}

static ssize_t host_on_data(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        struct bridge_host *h = userdata;
        ssize_t r;

        if (c != h->chan)
                return -ECONNRESET;
        r = host_check_frames(h, data, len);
        if (r < 0)
                return r;
        host_enter(h);
        r = bridge_conn_recv(h->conn, data, len);
        host_rearm(h);
        host_leave(h);
        return r;
}

static void host_on_close(struct relay_chan *c, int error, void *userdata)
{
        struct bridge_host *h = userdata;

        if (c != h->chan)
                return;
        h->chan = NULL;
        host_enter(h);
        bridge_conn_detach(h->conn, error);
        host_rearm(h);
        host_leave(h);
}

static const struct relay_chan_ops host_chan_ops = {
        .on_data = host_on_data,
        .on_close = host_on_close,
};

static void host_on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct bridge_host *h = userdata;
        struct relay_chan_limits lim = { .max_rx = h->max_frame + 4096u, .max_tx = BRIDGE_HOST_MAX_TX };
        struct relay_chan *chan;
        int r;

        if (fd < 0) {
                /* The VM keeps its state; a guest can no longer dial in until the daemon re-listens. */
                host_tell(h, (struct bridge_event){ .kind = BRIDGE_EVENT_LISTENER_FAILED, .error = fd });
                h->listener = relay_listener_free(h->listener);
                return;
        }
        r = relay_chan_new(h->relay, fd, &host_chan_ops, &lim, h, &chan);
        if (r < 0) {
                host_tell(h, (struct bridge_event){ .kind = BRIDGE_EVENT_ACCEPT_FAILED, .error = r });
                safe_close(fd);
                return;
        }
        host_enter(h);
        if (h->chan) {
                struct relay_chan *old = TAKE_PTR(h->chan);

                host_tell(h, (struct bridge_event){ .kind = BRIDGE_EVENT_REPLACED });
                relay_chan_free(old);
                bridge_conn_detach(h->conn, -ECONNRESET);
        }
        if (h->freed) {
                /* Freed by a callback of that loss: the new connection has no bridge to join. */
                relay_chan_free(chan);
                host_leave(h);
                return;
        }
        h->chan = chan;
        r = bridge_conn_attach(h->conn);
        if (r < 0 && h->chan == chan) {
                host_tell(h, (struct bridge_event){ .kind = BRIDGE_EVENT_ATTACH_FAILED, .error = r });
                h->chan = relay_chan_free(h->chan);
        }
        host_rearm(h);
        host_leave(h);
}

/* ---- public ---- */

int bridge_host_new(struct relay *r, const struct relay_transport *t, const struct bridge_host_ops *ops, void *userdata,
                    struct bridge_host **ret)
{
        struct bridge_host *h;
        int k;

        if (!r || !t)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->relay = r;
        h->transport = *t;
        if (ops)
                h->ops = *ops;
        h->userdata = userdata;
        h->armed_deadline = BRIDGE_DEADLINE_NONE;
        h->max_frame = BRIDGE_MAX_FRAME;
        k = bridge_conn_new(&host_conn_ops, h, &h->conn);
        if (k < 0)
                goto fail;
        k = relay_timer_new(r, host_on_timer, h, &h->timer);
        if (k < 0)
                goto fail;
        k = relay_listen(r, t, BRIDGE_HOST_PORT, RELAY_LISTEN_MANY, host_on_accept, h, &h->listener);
        if (k < 0)
                goto fail;
        *ret = h;
        return 0;
fail:
        bridge_host_free(h);
        return k;
}

struct bridge_host *bridge_host_free(struct bridge_host *h)
{
        if (!h || h->freed)
                return NULL;
        host_enter(h);
        h->freed = true;
        h->listener = relay_listener_free(h->listener);
        h->chan = relay_chan_free(h->chan);
        h->timer = relay_timer_free(h->timer);
        /* Every completion runs here, before we return; the entry points refuse once closed. */
        if (h->conn)
                bridge_conn_close(h->conn);
        host_leave(h);
        return NULL;
}

void bridge_host_release(struct bridge_host *h)
{
        if (!h->listener && !h->chan)
                return;
        host_tell(h, (struct bridge_event){ .kind = BRIDGE_EVENT_RELEASED,
                                            .migrating = bridge_conn_is_migrating(h->conn) });
        host_enter(h);
        h->listener = relay_listener_free(h->listener);
        if (h->chan) {
                h->chan = relay_chan_free(h->chan);
                bridge_conn_detach(h->conn, -ECANCELED);
        }
        host_rearm(h);
        host_leave(h);
}

int bridge_host_relisten(struct bridge_host *h)
{
        int r;

        if (h->listener)
                return 0;
        if (h->freed || bridge_conn_state(h->conn) == BRIDGE_CONN_CLOSED)
                return -ESHUTDOWN;
        r = relay_listen(h->relay, &h->transport, BRIDGE_HOST_PORT, RELAY_LISTEN_MANY, host_on_accept, h, &h->listener);
        if (r < 0)
                return r;
        host_tell(h, (struct bridge_event){ .kind = BRIDGE_EVENT_RELISTENED });
        return 0;
}

bool bridge_host_is_listening(const struct bridge_host *h)
{
        return h->listener != NULL;
}

enum bridge_conn_state bridge_host_state(const struct bridge_host *h)
{
        return bridge_conn_state(h->conn);
}

bool bridge_host_stdio_resume(const struct bridge_host *h)
{
        return bridge_conn_stdio_resume(h->conn);
}

const char *bridge_host_runtime_os(const struct bridge_host *h)
{
        return bridge_conn_runtime_os(h->conn);
}

void bridge_host_set_offer_stdio_resume(struct bridge_host *h, bool offer)
{
        bridge_conn_set_offer_stdio_resume(h->conn, offer);
}

bool bridge_host_stdio_ack(const struct bridge_host *h)
{
        return bridge_conn_stdio_ack(h->conn);
}

void bridge_host_set_offer_stdio_ack(struct bridge_host *h, bool offer)
{
        bridge_conn_set_offer_stdio_ack(h->conn, offer);
}

bool bridge_host_stdin_eof(const struct bridge_host *h)
{
        return bridge_conn_stdin_eof(h->conn);
}

struct bridge_conn *bridge_host_conn(struct bridge_host *h)
{
        return h->conn;
}

void bridge_host_set_migrating(struct bridge_host *h, bool migrating)
{
        host_enter(h);
        bridge_conn_set_migrating(h->conn, migrating);
        host_rearm(h);
        host_leave(h);
}

bool bridge_host_is_migrating(const struct bridge_host *h)
{
        return bridge_conn_is_migrating(h->conn);
}

void bridge_host_begin_resume_window(struct bridge_host *h)
{
        bridge_conn_begin_resume_window(h->conn);
}

void bridge_host_end_resume_window(struct bridge_host *h)
{
        bridge_conn_end_resume_window(h->conn);
}

int bridge_host_set_call_timeout(struct bridge_host *h, uint64_t timeout_ns)
{
        return bridge_conn_set_call_timeout(h->conn, timeout_ns);
}

int bridge_host_set_reconnect_grace(struct bridge_host *h, uint64_t grace_ns)
{
        return bridge_conn_set_reconnect_grace(h->conn, grace_ns);
}

uint64_t bridge_host_next_id(const struct bridge_host *h)
{
        return bridge_conn_next_id(h->conn);
}

int bridge_host_seed_next_id(struct bridge_host *h, uint64_t next)
{
        return bridge_conn_seed_next_id(h->conn, next);
}

/* Every call may change the earliest deadline (or drop the guest on a write failure). */
#define HOST_CALL(h, expr)     \
        ({                     \
                int _r_;       \
                host_enter(h); \
                _r_ = (expr);  \
                host_rearm(h); \
                host_leave(h); \
                _r_;           \
        })

int bridge_host_create_container(struct bridge_host *h, const char *container_id, const char *config_json,
                                 bridge_call_fn cb, void *userdata)
{
        return HOST_CALL(h, bridge_conn_create_container(h->conn, container_id, config_json, cb, userdata, NULL));
}

int bridge_host_set_max_frame(struct bridge_host *h, size_t max_frame)
{
        if (max_frame == 0)
                max_frame = BRIDGE_MAX_FRAME;
        if (max_frame < BRIDGE_HOST_MIN_FRAME || max_frame > BRIDGE_MAX_FRAME)
                return -EINVAL;
        h->max_frame = max_frame;
        return 0;
}

size_t bridge_host_max_frame(const struct bridge_host *h)
{
        return h->max_frame;
}

unsigned bridge_host_unanswered_probes(const struct bridge_host *h)
{
        return bridge_conn_unanswered_probes(h->conn);
}

int bridge_host_exec(struct bridge_host *h, const char *container_id, const struct bridge_process_params *params,
                     const struct bridge_stdio_ports *ports, bridge_call_fn cb, void *userdata)
{
        return HOST_CALL(h, bridge_conn_exec(h->conn, container_id, params, ports, cb, userdata, NULL));
}

int bridge_host_wait(struct bridge_host *h, const char *container_id, uint32_t pid, uint32_t timeout_ms,
                     bridge_call_fn cb, void *userdata, uint64_t *ret_call_id)
{
        return HOST_CALL(h, bridge_conn_wait(h->conn, container_id, pid, timeout_ms, cb, userdata, ret_call_id));
}

int bridge_host_signal(struct bridge_host *h, const char *container_id, uint32_t pid, int signal, bridge_call_fn cb,
                       void *userdata)
{
        return HOST_CALL(h, bridge_conn_signal(h->conn, container_id, pid, signal, cb, userdata, NULL));
}

int bridge_host_resize(struct bridge_host *h, const char *container_id, uint32_t pid, uint16_t height, uint16_t width,
                       bridge_call_fn cb, void *userdata)
{
        return HOST_CALL(h, bridge_conn_resize(h->conn, container_id, pid, height, width, cb, userdata, NULL));
}

int bridge_host_shutdown(struct bridge_host *h, const char *container_id, enum bridge_shutdown_kind kind,
                         bridge_call_fn cb, void *userdata)
{
        return HOST_CALL(h, bridge_conn_shutdown(h->conn, container_id, kind, cb, userdata, NULL));
}

int bridge_host_preregister_wait(struct bridge_host *h, uint64_t call_id, const char *container_id, uint32_t pid,
                                 bridge_call_fn cb, void *userdata)
{
        return HOST_CALL(h, bridge_conn_preregister_wait(h->conn, call_id, container_id, pid, cb, userdata));
}

int bridge_host_adopt_wait(struct bridge_host *h, uint64_t call_id, const char *container_id, uint32_t pid,
                           bridge_call_fn cb, void *userdata)
{
        return HOST_CALL(h, bridge_conn_adopt_wait(h->conn, call_id, container_id, pid, cb, userdata));
}

int bridge_host_watch_container(struct bridge_host *h, const char *container_id, bridge_notify_fn cb, void *userdata)
{
        return HOST_CALL(h, bridge_conn_watch_container(h->conn, container_id, cb, userdata));
}

int bridge_host_unwatch_container(struct bridge_host *h, const char *container_id)
{
        return bridge_conn_unwatch_container(h->conn, container_id);
}

/* ---- a live upgrade ---- */

void bridge_host_handover_done(struct bridge_host_handover *hv)
{
        if (!hv)
                return;
        hv->listener_fd = safe_close(hv->listener_fd);
        hv->guest_fd = safe_close(hv->guest_fd);
        free(hv->rx);
        free(hv->tx);
        free(hv->runtime_os);
        hv->rx = hv->tx = NULL;
        hv->runtime_os = NULL;
        hv->rx_len = hv->tx_len = 0;
}

/* Inside an entry (host_enter): fn may free h. */
static void host_held_told(struct bridge_host *h)
{
        h->held_quiet = true;
        if (h->held_fn)
                h->held_fn(h, h->held_userdata);
}

static void host_on_chan_held(struct relay_chan *c, void *userdata)
{
        struct bridge_host *h = userdata;

        if (c != h->chan || !h->held)
                return;
        host_enter(h);
        host_held_told(h);
        host_leave(h);
}

/* No guest connection to hold: told on the next turn all the same. The deferral entered h. */
static void host_held_later(void *userdata)
{
        struct bridge_host *h = userdata;

        if (h->held && !h->chan && !h->freed)
                host_held_told(h);
        host_leave(h);
}

int bridge_host_hold(struct bridge_host *h, bridge_host_held_fn fn, void *userdata)
{
        int r;

        if (h->freed || !fn)
                return -EINVAL;
        if (h->held)
                return -EALREADY;
        if (!bridge_conn_can_hand_over(h->conn))
                return -EBUSY;
        if (h->chan)
                r = relay_chan_hold(h->chan, host_on_chan_held, h);
        else {
                r = relay_defer(h->relay, host_held_later, h);
                if (r >= 0)
                        host_enter(h); /* the deferred call's hold on h */
        }
        if (r < 0)
                return r;
        h->held = true;
        h->held_quiet = false;
        h->held_fn = fn;
        h->held_userdata = userdata;
        return 0;
}

void bridge_host_unhold(struct bridge_host *h)
{
        if (!h->held)
                return;
        h->held = false;
        h->held_fn = NULL;
        if (h->chan)
                relay_chan_unhold(h->chan);
}

int bridge_host_hand_over(struct bridge_host *h, struct bridge_host_handover *ret)
{
        struct bridge_host_handover hv = { .listener_fd = -1, .guest_fd = -1 };
        const char *os = bridge_conn_runtime_os(h->conn);
        int r;

        if (!h->held || !h->held_quiet)
                return -EBUSY;
        if (os) {
                hv.runtime_os = strdup(os);
                if (!hv.runtime_os)
                        return -ENOMEM;
        }
        if (h->chan) {
                r = relay_chan_release(h->chan, &hv.guest_fd, &hv.rx, &hv.rx_len, &hv.tx, &hv.tx_len);
                if (r < 0) {
                        bridge_host_handover_done(&hv);
                        return r;
                }
                h->chan = NULL;
        }
        if (h->listener) {
                r = relay_listener_release(h->listener, &hv.listener_fd);
                /* Only an AF_VSOCK listener refuses, and its VM was not held: a bug if seen. */
                if (r < 0) {
                        bridge_host_handover_done(&hv);
                        return r;
                }
                h->listener = NULL;
        }
        hv.stdio_resume = bridge_conn_stdio_resume(h->conn);
        hv.stdio_ack = bridge_conn_stdio_ack(h->conn);
        hv.stdin_eof = bridge_conn_stdin_eof(h->conn);
        hv.generation = bridge_conn_generation(h->conn);
        hv.next_id = bridge_conn_next_id(h->conn);
        bridge_conn_hand_over(h->conn);
        h->held = false;
        relay_timer_disarm(h->timer);
        h->armed_deadline = BRIDGE_DEADLINE_NONE;
        *ret = hv;
        return 0;
}

int bridge_host_adopt(struct relay *r, const struct relay_transport *t, const struct bridge_host_ops *ops,
                      void *userdata, struct bridge_host_handover *hv, struct bridge_host **ret)
{
        struct relay_chan_limits lim = { .max_rx = BRIDGE_HOST_MAX_RX, .max_tx = BRIDGE_HOST_MAX_TX };
        struct bridge_host *h;
        int k;

        if (!r || !t || !hv || hv->listener_fd < 0)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->relay = r;
        h->transport = *t;
        if (ops)
                h->ops = *ops;
        h->userdata = userdata;
        h->armed_deadline = BRIDGE_DEADLINE_NONE;
        h->max_frame = BRIDGE_MAX_FRAME;
        k = bridge_conn_new(&host_conn_ops, h, &h->conn);
        if (k >= 0)
                k = bridge_conn_seed_next_id(h->conn, hv->next_id ?: 1);
        if (k >= 0)
                k = relay_timer_new(r, host_on_timer, h, &h->timer);
        if (k >= 0)
                k = relay_listen_adopt(r, t, BRIDGE_HOST_PORT, hv->listener_fd, RELAY_LISTEN_MANY, host_on_accept, h,
                                       &h->listener);
        if (k < 0) {
                bridge_host_free(h);
                return k;
        }
        hv->listener_fd = -1;
        if (hv->guest_fd >= 0) {
                k = relay_chan_adopt(r, hv->guest_fd, &host_chan_ops, &lim, hv->rx, hv->rx_len, hv->tx, hv->tx_len, h,
                                     &h->chan);
                if (k >= 0)
                        k = bridge_conn_adopt(h->conn, hv->generation, hv->runtime_os, hv->stdio_resume, hv->stdio_ack,
                                              hv->stdin_eof);
                if (k < 0) {
                        /* The listener is ours already: the caller keeps only the guest fd. */
                        if (h->chan)
                                hv->guest_fd = -1;
                        bridge_host_free(h);
                        return k;
                }
                hv->guest_fd = -1;
        }
        *ret = h;
        return 0;
}
