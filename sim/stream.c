/* sim/stream.c: one stdio relay of a simulated process: its pipe end, its host connection and replay. */
#include "sim/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "sim/ack.h"
#include "util/log.h"
#include "util/unaligned.h"

#define STREAM_POLL_MS 100
#define STREAM_FULL_POLL_MS 10 /* re-check what the host has taken while the window is full */
#define STREAM_IO_CHUNK (64u * 1024u)

static const char *const stream_names[_SIM_STREAM_MAX] = { "stdin", "stdout", "stderr" };

/* Where a stdout/stderr relay is, in our numbering of its bytes (the ring's offsets). */
struct stream_out {
        uint64_t sent;      /* on the current connection, from where its handshake put us */
        uint64_t confirmed; /* the window may be freed below this */
        uint64_t acked;     /* the most any host said reached the endpoint (delivery acks) */
        int64_t lag;        /* ours minus the host's count: a resume that went on elsewhere than asked */
        bool ack;           /* this connection came while acks were agreed: they free the window */
        bool stale_logged;
        struct sim_ack rx;
};

static bool stream_input_closed(struct sim_stream *st)
{
        bool closed;

        pthread_mutex_lock(&st->s->lock);
        closed = st->input_closed;
        pthread_mutex_unlock(&st->s->lock);
        return closed;
}

/* Redials the stream's port at once and then every 100 ms until it connects, as hcsshim's guest
 * does (internal/guest/stdio, redialWithBudget: the first attempt does not wait); NULL once the sim
 * stops, or for stdin once its process is gone (a host that knows stdin ended may never listen
 * again). */
static struct sim_conn *stream_redial(struct sim_stream *st)
{
        for (bool first = true;; first = false) {
                struct sim_conn *c = NULL;

                if (!first && sim_sleep(st->s, SIM_REDIAL_MS))
                        return NULL;
                if (sim_stopping(st->s))
                        return NULL;
                if (st->kind == SIM_STREAM_STDIN && stream_input_closed(st))
                        return NULL;
                if (sim_dial(st->s, st->port, &c) == 0) {
                        sim_stat_add(st->s, SIM_STAT_STDIO_REDIALS);
                        log_info("pid %d %s: reconnected to port %" PRIu32, (int)st->pid, stream_names[st->kind],
                                 st->port);
                        return c;
                }
        }
}

/* Reads the host's 8-byte count at the start of a resumed stdout/stderr connection. */
static int stream_read_count(struct sim_stream *st, struct sim_conn *c, uint64_t *ret)
{
        uint8_t raw[SIM_RESUME_COUNT_SIZE];
        size_t have = 0;

        while (have < sizeof(raw)) {
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                ssize_t n;

                if (sim_stopping(st->s))
                        return -ECANCELED;
                if (poll(&p, 1, STREAM_POLL_MS) <= 0)
                        continue;
                n = recv(c->fd, raw + have, sizeof(raw) - have, MSG_DONTWAIT);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return negative_errno();
                }
                have += (size_t)n;
        }
        *ret = unaligned_read_le64(raw);
        return 0;
}

/* The host's count in our numbering, 0 when a lag puts it below our first byte. */
static uint64_t stream_ours(const struct stream_out *o, uint64_t count)
{
        if (o->lag < 0 && count < (uint64_t) - (o->lag + 1) + 1)
                return 0;
        return count + (uint64_t)o->lag;
}

/* Where a resumed connection starts: the host's count, unless it asks for bytes it told us (by an
 * ack) were delivered: a host that lost track (a crash after its record's write) would get them
 * twice. Bytes below the window are gone; with acks that cannot happen, they keep the window. */
static uint64_t stream_resume_from(struct sim_stream *st, const struct stream_out *o, uint64_t count)
{
        struct sim_ring *ring = &st->ring;
        uint64_t from = stream_ours(o, count);

        if (from > ring->tail) {
                log_error("pid %d %s: host claims %" PRIu64 " bytes but only %" PRIu64
                          " were produced; resuming at the end",
                          (int)st->pid, stream_names[st->kind], from, ring->tail);
                return ring->tail;
        }
        if (from < o->acked) {
                log_warn("pid %d %s: host resumes at byte %" PRIu64 " but said %" PRIu64
                         " reached its endpoint; going on from there (nothing lost)",
                         (int)st->pid, stream_names[st->kind], from, o->acked);
                from = o->acked;
        }
        if (from < ring->head) {
                log_error("pid %d %s: OUTPUT LOST: host has %" PRIu64 " bytes but the replay buffer starts at %" PRIu64
                          "; %" PRIu64 " bytes are gone, resuming from the oldest held",
                          (int)st->pid, stream_names[st->kind], from, ring->head, ring->head - from);
                from = ring->head;
        }
        return from;
}

/* Where a new connection starts: the host's count (resume) or the whole window (legacy, H6). */
static int stream_output_handshake(struct sim_stream *st, struct sim_conn *c, bool first, struct stream_out *o)
{
        struct sim_ring *ring = &st->ring;
        uint64_t count, from;
        int r;

        o->rx = (struct sim_ack){};
        o->stale_logged = false;
        /* The mode of the bridge connection this one came under: a host that agreed sends acks. */
        o->ack = st->resume && sim_ack_agreed(st->s);
        if (!st->resume) {
                /* Ours replays its whole window (H6); hcsshim's guest goes on with what it had
                 * not written yet, losing what died in the old connection's queues. */
                if (first || !sim_upstream(st->s))
                        o->sent = ring->head;
                if (!first && sim_upstream(st->s))
                        log_info("pid %d %s: going on at byte %" PRIu64 " with the %" PRIu64
                                 " bytes not written yet (no replay)",
                                 (int)st->pid, stream_names[st->kind], o->sent, ring->tail - o->sent);
                else if (!first && ring->tail > ring->head)
                        log_info("pid %d %s: replaying the last %" PRIu64 " bytes (duplicates possible)", (int)st->pid,
                                 stream_names[st->kind], ring->tail - ring->head);
                return 0;
        }
        r = stream_read_count(st, c, &count);
        if (r < 0)
                return r;
        from = stream_resume_from(st, o, count);
        if (!first)
                log_info("pid %d %s: resuming at byte %" PRIu64 "%s", (int)st->pid, stream_names[st->kind], from,
                         o->ack ? " (delivery acks)" : "");
        o->lag = (int64_t)(from - count);
        o->sent = from;
        /* The count says what the host read, not what it delivered: only acks free by it. */
        if (!o->ack)
                o->confirmed = MAX(o->confirmed, from);
        return 0;
}

/* The host's acks on this connection; false when it claims bytes we never sent. */
static bool stream_take_acks(struct sim_stream *st, struct stream_out *o, const uint8_t *data, size_t len)
{
        uint64_t bad = 0;

        if (!o->ack)
                return true; /* not agreed when this connection came: nothing to read */
        if (sim_ack_feed(&o->rx, data, len, o->lag, o->sent, &o->acked, &bad) < 0) {
                log_error("pid %d %s: host acknowledged %" PRIu64 " bytes but only %" PRIu64
                          " were sent; dropping the connection",
                          (int)st->pid, stream_names[st->kind], bad, o->sent);
                return false;
        }
        if (o->rx.stale > 0 && !o->stale_logged) {
                log_warn("pid %d %s: host acknowledged less than before (ignored)", (int)st->pid,
                         stream_names[st->kind]);
                o->stale_logged = true;
        }
        return true;
}

/* What the host has certainly read: what was sent minus what still sits in the socket (an
 * over-estimate of unread bytes, so this errs on the side of keeping data). */
static uint64_t stream_confirmed(int fd, uint64_t sent, uint64_t confirmed)
{
        int queued = 0;

        if (ioctl(fd, SIOCOUTQ, &queued) < 0)
                return MAX(confirmed, sent);
        if (queued < 0 || (uint64_t)queued >= sent)
                return confirmed;
        return MAX(confirmed, sent - (uint64_t)queued);
}

/* What may leave the window: what the host delivered while acks are agreed, else what it read. */
static void stream_confirm(struct sim_stream *st, struct stream_out *o, int fd)
{
        if (o->ack && sim_ack_agreed(st->s))
                o->confirmed = MAX(o->confirmed, o->acked);
        else
                o->confirmed = stream_confirmed(fd, o->sent, o->confirmed);
}

static bool stream_errno_is_break(int err)
{
        /* Anything else (EIO, ...) also ends the connection; only EAGAIN/EINTR mean "try again". */
        return err != EAGAIN && err != EINTR;
}

static bool stream_redial_forbidden(struct sim_stream *st)
{
        bool forbidden;

        pthread_mutex_lock(&st->s->lock);
        forbidden = st->no_redial;
        pthread_mutex_unlock(&st->s->lock);
        return forbidden;
}

void sim_stream_forbid_redial(struct sim_stream *st)
{
        if (!st)
                return;
        pthread_mutex_lock(&st->s->lock);
        st->no_redial = true;
        pthread_mutex_unlock(&st->s->lock);
}

static void stream_output_run(struct sim_stream *st)
{
        struct sim *s = st->s;
        struct sim_ring *ring = &st->ring;
        struct sim_conn *c = TAKE_PTR(st->conn);
        struct stream_out o = {};
        bool pipe_eof = false, shut = false, handshake = true, first = true;

        for (;;) {
                struct pollfd p[2];
                size_t room;
                bool broken = false;
                const char *why = NULL;

                if (sim_stopping(s))
                        break;
                if (!c) {
                        c = stream_redial(st);
                        if (!c)
                                break;
                        handshake = true;
                        shut = false;
                }
                if (handshake) {
                        if (stream_output_handshake(st, c, first, &o) < 0) {
                                c = sim_conn_close(s, c);
                                continue;
                        }
                        handshake = false;
                        first = false;
                }
                /* Clean close (H5): after the process's EOF and our last byte, half-close and wait for the host. */
                if (pipe_eof && o.sent == ring->tail && !shut) {
                        shutdown(c->fd, SHUT_WR);
                        shut = true;
                }
                stream_confirm(st, &o, c->fd);
                room = sim_ring_room(ring, o.confirmed);

                p[0] = (struct pollfd){ .fd = pipe_eof || room == 0 ? -1 : st->pipe_fd, .events = POLLIN };
                p[1] = (struct pollfd){ .fd = c->fd, .events = POLLIN | (o.sent < ring->tail && !shut ? POLLOUT : 0) };
                if (poll(p, 2, !pipe_eof && room == 0 ? STREAM_FULL_POLL_MS : STREAM_POLL_MS) < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error("pid %d %s: poll: %s", (int)st->pid, stream_names[st->kind], strerror(errno));
                        break;
                }
                if (p[0].revents) {
                        uint8_t *span;
                        size_t len;
                        ssize_t n;

                        sim_ring_write_span(ring, MIN(room, STREAM_IO_CHUNK), &span, &len);
                        n = read(st->pipe_fd, span, len);
                        if (n > 0)
                                sim_ring_commit(ring, (size_t)n);
                        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                                pipe_eof = true;
                }
                if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
                        uint8_t in[256];
                        ssize_t n = recv(c->fd, in, sizeof(in), MSG_DONTWAIT);

                        if (n == 0 && shut && !sim_conn_dropped(s, c))
                                break; /* the host closed after our EOF: drained */
                        if (n > 0 && !stream_take_acks(st, &o, in, (size_t)n)) {
                                broken = true;
                                why = "a bad delivery ack";
                        } else if (n == 0) {
                                broken = true;
                                why = "closed by host";
                        } else if (n < 0 && stream_errno_is_break(errno)) {
                                broken = true;
                                why = strerror(errno);
                        }
                }
                if (!broken && (p[1].revents & POLLOUT)) {
                        const uint8_t *data;
                        size_t len;
                        ssize_t n;

                        sim_ring_peek(ring, o.sent, &data, &len);
                        n = send(c->fd, data, MIN(len, STREAM_IO_CHUNK), MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (n > 0)
                                o.sent += (uint64_t)n;
                        else if (n < 0 && stream_errno_is_break(errno)) {
                                broken = true;
                                why = strerror(errno);
                        }
                }
                if (broken && stream_redial_forbidden(st)) {
                        log_info("pid %d %s: connection lost (%s); hcsshim's guest redials only a container's "
                                 "init: the relay ends",
                                 (int)st->pid, stream_names[st->kind], why ?: "dropped");
                        /* The process now sees EPIPE, as with a relay that ended upstream. */
                        st->pipe_fd = safe_close(st->pipe_fd);
                        break;
                }
                if (broken) {
                        if (sim_conn_dropped(s, c))
                                why = "dropped";
                        log_info("pid %d %s: connection lost (%s); redialling port %" PRIu32 " every %d ms",
                                 (int)st->pid, stream_names[st->kind], why, st->port, SIM_REDIAL_MS);
                        c = sim_conn_close(s, c);
                }
        }
        sim_conn_close(s, c);
        pthread_mutex_lock(&s->lock);
        st->finished = true;
        pthread_mutex_unlock(&s->lock);
}

bool sim_stream_running_locked(const struct sim_stream *st)
{
        return st && st->kind != SIM_STREAM_STDIN && !st->finished;
}

static int stream_write_pipe(struct sim_stream *st, const uint8_t *buf, size_t len)
{
        while (len > 0) {
                struct pollfd p = { .fd = st->pipe_fd, .events = POLLOUT };
                ssize_t n;
                bool closed;

                pthread_mutex_lock(&st->s->lock);
                closed = st->input_closed || st->s->stopping;
                pthread_mutex_unlock(&st->s->lock);
                if (closed)
                        return -EPIPE;
                if (poll(&p, 1, STREAM_POLL_MS) <= 0)
                        continue;
                n = write(st->pipe_fd, buf, len);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return negative_errno();
                }
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* The host's close of a stdin connection (recv() == 0) is its half-close at stdin's end, or the
 * host gone (a stopped daemon, a save). With VsockmuxStdinEof our count goes back: a half-closed
 * host reads it, and a write to a host that closed both ways fails (EPIPE on AF_UNIX and on
 * AF_VSOCK, whose peer's RCV_SHUTDOWN fails the send), so only then is the connection lost. */
static bool stream_input_ended(struct sim_stream *st, struct sim_conn *c, bool confirm, uint64_t received)
{
        uint8_t raw[SIM_RESUME_COUNT_SIZE];
        int r;

        if (!confirm)
                return true; /* hcsshim's guest and ours without the extension: it is the end */
        unaligned_write_le64(raw, received);
        r = sim_write_all(c->fd, raw, sizeof(raw));
        if (r < 0) {
                log_info("pid %d stdin: the host closed without confirming stdin's end (%s): it went away",
                         (int)st->pid, strerror(-r));
                return false;
        }
        return true;
}

/* stdin: host → process. In resume mode each new connection starts with our count (V4). */
static void stream_input_run(struct sim_stream *st)
{
        struct sim *s = st->s;
        _cleanup_free_ uint8_t *buf = malloc(STREAM_IO_CHUNK);
        uint64_t received = 0;
        bool handshake = st->resume;
        /* Each connection follows the negotiation it came under. */
        bool confirm = st->resume && sim_stdin_eof_agreed(s);

        while (buf) {
                struct sim_conn *c;
                struct pollfd p;
                ssize_t n;
                bool closed;

                pthread_mutex_lock(&s->lock);
                c = st->conn;
                closed = st->input_closed || s->stopping;
                pthread_mutex_unlock(&s->lock);
                if (closed)
                        break;
                if (!c) {
                        if (!st->resume)
                                break; /* legacy guests do not redial stdin */
                        c = stream_redial(st);
                        if (!c)
                                break;
                        pthread_mutex_lock(&s->lock);
                        st->conn = c;
                        if (st->input_closed)
                                shutdown(c->fd, SHUT_RD);
                        pthread_mutex_unlock(&s->lock);
                        handshake = true;
                        confirm = sim_stdin_eof_agreed(s);
                }
                if (handshake) {
                        uint8_t raw[SIM_RESUME_COUNT_SIZE];

                        unaligned_write_le64(raw, received);
                        handshake = false;
                        if (sim_write_all(c->fd, raw, sizeof(raw)) < 0)
                                goto broken;
                }
                p = (struct pollfd){ .fd = c->fd, .events = POLLIN };
                if (poll(&p, 1, STREAM_POLL_MS) <= 0)
                        continue;
                n = recv(c->fd, buf, STREAM_IO_CHUNK, MSG_DONTWAIT);
                if (n > 0) {
                        received += (uint64_t)n;
                        if (stream_write_pipe(st, buf, (size_t)n) < 0)
                                break; /* the process closed stdin or exited */
                        continue;
                }
                if (n < 0 && !stream_errno_is_break(errno))
                        continue;
                pthread_mutex_lock(&s->lock);
                closed = st->input_closed || s->stopping;
                pthread_mutex_unlock(&s->lock);
                if (closed)
                        break;
                if (n == 0 && !sim_conn_dropped(s, c) && stream_input_ended(st, c, confirm, received))
                        break; /* the host half-closed: stdin EOF */
broken:
                log_info("pid %d stdin: connection lost%s", (int)st->pid,
                         st->resume ? "; redialling" : "; closing the process's stdin");
                pthread_mutex_lock(&s->lock);
                st->conn = NULL;
                pthread_mutex_unlock(&s->lock);
                sim_conn_close(s, c);
        }
        /* Closing our pipe end gives the process EOF on stdin. */
        st->pipe_fd = safe_close(st->pipe_fd);
        pthread_mutex_lock(&s->lock);
        if (st->conn)
                shutdown(st->conn->fd, SHUT_RD);
        pthread_mutex_unlock(&s->lock);
}

static void *stream_thread(void *arg)
{
        struct sim_stream *st = arg;

        if (st->kind == SIM_STREAM_STDIN)
                stream_input_run(st);
        else
                stream_output_run(st);
        return NULL;
}

int sim_stream_start(struct sim *s, enum sim_stream_kind kind, pid_t pid, uint32_t port, bool resume,
                     struct sim_conn *conn, int pipe_fd, struct sim_stream **ret)
{
        struct sim_stream *st = calloc(1, sizeof(*st));
        int r;

        if (!st)
                return -ENOMEM;
        *st = (struct sim_stream){
                .s = s, .kind = kind, .pid = pid, .port = port, .resume = resume, .pipe_fd = pipe_fd, .conn = conn
        };
        if (kind != SIM_STREAM_STDIN && sim_ring_init(&st->ring, s->opt.replay_bytes) < 0) {
                free(st);
                return -ENOMEM;
        }
        if (fcntl(pipe_fd, F_SETFL, fcntl(pipe_fd, F_GETFL) | O_NONBLOCK) < 0 ||
            (r = sim_thread_start(&st->thread, stream_thread, st)) < 0) {
                sim_ring_done(&st->ring);
                free(st);
                return -EAGAIN;
        }
        *ret = st;
        return 0;
}

void sim_stream_close_input(struct sim_stream *st)
{
        if (!st)
                return;
        pthread_mutex_lock(&st->s->lock);
        st->input_closed = true;
        if (st->conn)
                shutdown(st->conn->fd, SHUT_RD);
        pthread_mutex_unlock(&st->s->lock);
}

struct sim_stream *sim_stream_join(struct sim_stream *st)
{
        if (!st)
                return NULL;
        pthread_join(st->thread, NULL);
        if (st->kind == SIM_STREAM_STDIN)
                st->conn = sim_conn_close(st->s, st->conn);
        safe_close(st->pipe_fd);
        sim_ring_done(&st->ring);
        free(st);
        return NULL;
}
