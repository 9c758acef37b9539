/* daemon/attach.c: one process's attach socket (conmon format): accepting clients, replaying the backlog, fanning output out. */
#include "daemon/attach.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "control/socket.h"
#include "daemon/attach-input.h"
#include "util/list.h"
#include "util/log.h"

struct attach_client {
        struct list_head link;
        struct attach *attach;
        struct relay_chan *chan;
};

struct attach {
        struct relay *relay;
        char *path;
        char *name;
        struct attach_config cfg;
        struct relay_listener *listener;
        struct list_head clients;
        unsigned n_clients;
        /* A ring of recent output packets, each stored as [stream][len16][data]. */
        uint8_t *backlog;
        size_t backlog_head, backlog_len;
        bool ended;
        bool bound;                 /* the socket file is ours to remove */
        struct attach_input *input; /* the process's stdin, fed by the clients; NULL: output only */
        bool stdin_once;            /* the input closes when the last client leaves */
        bool had_client;
};

static void attach_client_drop(struct attach_client *c)
{
        struct attach *a = c->attach;

        list_del(&c->link);
        a->n_clients--;
        free(c);
        /* --stdin-once: the attach session is over when its last client left. */
        if (a->n_clients == 0 && a->stdin_once && a->input)
                attach_input_close(a->input);
}

/* conmon's format: a client's packets are raw bytes for the process's stdin, shared by every
 * client in the order they arrive. */
static ssize_t attach_client_on_data(struct relay_chan *chan, const void *data, size_t len, void *userdata)
{
        struct attach_client *c = userdata;
        struct attach *a = c->attach;
        int r;

        if (!a->input) {
                log_debug("%s: %zu bytes from an attach client dropped: the process has no stdin", a->name, len);
                return (ssize_t)len;
        }
        r = attach_input_write(a->input, data, len);
        if (r == -ENOBUFS) {
                /* Nothing is lost silently: the client that ran ahead is told by the close. */
                log_warn("%s: attach client is more than %u bytes ahead of the process's stdin; disconnected", a->name,
                         ATTACH_INPUT_MAX);
                return r;
        }
        if (r < 0 && r != -EPIPE)
                log_info("%s: stdin from attach clients ended: %s", a->name, strerror(-r));
        return (ssize_t)len;
}

static void attach_client_on_close(struct relay_chan *chan, int error, void *userdata)
{
        struct attach_client *c = userdata;

        if (error < 0 && error != -ECONNRESET)
                log_info("%s: attach client gone: %s", c->attach->name, strerror(-error));
        attach_client_drop(c);
}

static const struct relay_chan_ops attach_client_ops = {
        .on_data = attach_client_on_data,
        .on_close = attach_client_on_close,
};

/* The backlog is a byte ring of cfg.backlog bytes: copy in at most two pieces around its end. */
static void attach_ring_read(const struct attach *a, size_t off, void *buf, size_t len)
{
        size_t cap = a->cfg.backlog, at = (a->backlog_head + off) % cap, first = MIN(len, cap - at);

        memcpy(buf, a->backlog + at, first);
        memcpy((uint8_t *)buf + first, a->backlog, len - first);
}

static void attach_ring_write(struct attach *a, size_t off, const void *buf, size_t len)
{
        size_t cap = a->cfg.backlog, at = (a->backlog_head + off) % cap, first = MIN(len, cap - at);

        memcpy(a->backlog + at, buf, first);
        memcpy(a->backlog, (const uint8_t *)buf + first, len - first);
}

/* Replays the backlog to a new client, packet by packet as it was produced. */
static int attach_client_replay(struct attach *a, struct relay_chan *chan)
{
        uint8_t pkt[1 + ATTACH_PACKET_MAX];
        size_t off = 0;

        while (off + 3 <= a->backlog_len) {
                uint8_t hdr[3];
                size_t n;
                int r;

                attach_ring_read(a, off, hdr, 3);
                n = (size_t)hdr[1] | (size_t)hdr[2] << 8;
                if (n == 0 || n > ATTACH_PACKET_MAX || off + 3 + n > a->backlog_len)
                        return -EBADMSG;
                pkt[0] = hdr[0];
                attach_ring_read(a, off + 3, pkt + 1, n);
                r = relay_chan_send(chan, pkt, n + 1);
                if (r < 0)
                        return r;
                off += 3 + n;
        }
        return 0;
}

static void attach_on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct attach *a = userdata;
        struct attach_client *c;
        struct relay_chan_limits lim = {
                .max_rx = ATTACH_PACKET_MAX,
                .max_tx = a->cfg.client_max_tx,
                .packet = true,
        };
        int r;

        if (fd < 0) {
                log_error("%s: attach socket no longer accepts: %s", a->name, strerror(-fd));
                a->listener = relay_listener_free(a->listener);
                return;
        }
        if (a->n_clients >= a->cfg.max_clients) {
                log_warn("%s: attach client refused: %u clients already", a->name, a->n_clients);
                safe_close(fd);
                return;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                safe_close(fd);
                return;
        }
        c->attach = a;
        r = relay_chan_new(a->relay, fd, &attach_client_ops, &lim, c, &c->chan);
        if (r < 0) {
                log_warn("%s: attach client: %s", a->name, strerror(-r));
                safe_close(fd);
                free(c);
                return;
        }
        list_add_tail(&a->clients, &c->link);
        a->n_clients++;
        a->had_client = true;
        r = attach_client_replay(a, c->chan);
        if (r < 0) {
                log_warn("%s: attach backlog replay failed: %s", a->name, strerror(-r));
                relay_chan_abort(c->chan, r);
        } else if (a->ended)
                relay_chan_close(c->chan);
}

void attach_end(struct attach *a)
{
        struct list_head *pos, *tmp;

        if (!a || a->ended)
                return;
        a->ended = true;
        list_for_each_safe(pos, tmp, &a->clients)
                relay_chan_close(list_entry(pos, struct attach_client, link)->chan);
}

int attach_new(struct relay *r, const char *path, const struct attach_config *cfg, const char *name,
               struct attach **ret)
{
        struct sockaddr_un sa;
        struct attach *a;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        list_init(&a->clients);
        a->relay = r;
        a->cfg = *cfg;
        if (a->cfg.client_max_tx == 0)
                a->cfg.client_max_tx = ATTACH_DEFAULT_CLIENT_TX;
        if (a->cfg.max_clients == 0)
                a->cfg.max_clients = ATTACH_DEFAULT_MAX_CLIENTS;
        a->path = strdup(path);
        a->name = strdup(name);
        if (!a->path || !a->name) {
                attach_free(a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

int attach_listen(struct attach *a)
{
        _cleanup_close_ int fd = -1;
        int k;

        if (a->listener)
                return 0;
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        (void)unlink(a->path);
        /* Created 0600 outright: no window between bind and chmod in which another uid connects. */
        k = control_socket_bind(fd, a->path, 0600, (gid_t)-1, NULL);
        if (k < 0)
                return k;
        if (listen(fd, 16) < 0) {
                k = negative_errno();
                (void)unlink(a->path);
                return k;
        }
        k = relay_listen_fd(a->relay, fd, a->path, RELAY_LISTEN_MANY, attach_on_accept, a, &a->listener);
        if (k < 0) {
                (void)unlink(a->path);
                return k;
        }
        TAKE_FD(fd);
        a->bound = true;
        log_debug("%s: attach socket %s open", a->name, a->path);
        return 0;
}

bool attach_is_listening(const struct attach *a)
{
        return a->listener != NULL;
}

struct attach *attach_free(struct attach *a)
{
        struct list_head *pos, *tmp;

        if (!a)
                return NULL;
        relay_listener_free(a->listener);
        list_for_each_safe(pos, tmp, &a->clients) {
                struct attach_client *c = list_entry(pos, struct attach_client, link);

                relay_chan_free(c->chan);
                attach_client_drop(c);
        }
        attach_input_free(a->input);
        if (a->bound)
                (void)unlink(a->path);
        free(a->path);
        free(a->name);
        free(a->backlog);
        free(a);
        return NULL;
}

static void attach_backlog_push(struct attach *a, uint8_t stream, const uint8_t *data, size_t len)
{
        size_t need = 3 + len, cap = a->cfg.backlog;
        uint8_t hdr[3] = { stream, (uint8_t)len, (uint8_t)(len >> 8) };

        if (need > cap)
                return;
        /* Allocated on first use: most processes never need one, and thousands of them are idle. */
        if (!a->backlog) {
                a->backlog = malloc(cap);
                if (!a->backlog) {
                        log_warn("%s: no memory for the attach backlog; late clients see live output only", a->name);
                        a->cfg.backlog = 0;
                        return;
                }
        }
        /* Drop whole old packets until the new one fits. */
        while (a->backlog_len + need > cap) {
                uint8_t old[3];
                size_t n;

                attach_ring_read(a, 0, old, 3);
                n = 3 + ((size_t)old[1] | (size_t)old[2] << 8);
                a->backlog_head = (a->backlog_head + n) % cap;
                a->backlog_len -= n;
        }
        attach_ring_write(a, a->backlog_len, hdr, 3);
        attach_ring_write(a, a->backlog_len + 3, data, len);
        a->backlog_len += need;
}

bool attach_wants_output(const struct attach *a, bool keep)
{
        return a->n_clients > 0 || (keep && a->cfg.backlog);
}

void attach_output(struct attach *a, uint8_t stream, const void *data, size_t len, bool keep)
{
        const uint8_t *p = data;

        /* The common case on a busy host: nobody attached and the output has a home already. */
        if (!attach_wants_output(a, keep))
                return;
        while (len > 0) {
                size_t n = MIN(len, (size_t)ATTACH_PACKET_MAX);
                uint8_t head = stream;
                struct iovec iov[2] = { { &head, 1 }, { (void *)p, n } };
                struct list_head *pos, *tmp;

                if (keep && a->cfg.backlog)
                        attach_backlog_push(a, stream, p, n);
                list_for_each_safe(pos, tmp, &a->clients) {
                        struct attach_client *c = list_entry(pos, struct attach_client, link);
                        int r = relay_chan_sendv(c->chan, iov, 2);

                        if (r == -ENOBUFS) {
                                log_warn("%s: attach client fell behind by more than %zu bytes; disconnected", a->name,
                                         a->cfg.client_max_tx);
                                relay_chan_abort(c->chan, r);
                        }
                }
                p += n;
                len -= n;
        }
}

int attach_set_input(struct attach *a, int fd, bool stdin_once)
{
        int r;

        if (a->input)
                return -EEXIST;
        r = attach_input_new(a->relay, fd, &a->input);
        if (r < 0)
                return r;
        a->stdin_once = stdin_once;
        return 0;
}

bool attach_has_input(const struct attach *a)
{
        return a->input && !attach_input_is_closed(a->input);
}

bool attach_close_input(struct attach *a)
{
        if (!a->input)
                return false;
        attach_input_close(a->input);
        return true;
}

const char *attach_path(const struct attach *a)
{
        return a->path;
}

unsigned attach_clients(const struct attach *a)
{
        return a->n_clients;
}

size_t attach_backlog_bytes(const struct attach *a)
{
        return a->backlog_len;
}
