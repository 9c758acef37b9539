/* daemon/process-stream.c: a process's stdio streams: listening on their ports, pairing the guest's connection with the endpoint, EOF, freeze, redial and the taps (k8s-file log, attach). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "daemon/log-k8s.h"
#include "daemon/process-private.h"
#include "util/log.h"

const char *const vmm_stream_names[_VMM_STREAM_KIND_MAX] = { "stdin", "stdout", "stderr" };

static bool stream_is_output(enum vmm_stream_kind k)
{
        return k != VMM_STDIN;
}

void stream_init(struct vmm_stream *s, struct vmm_process *p, enum vmm_stream_kind kind)
{
        s->process = p;
        s->kind = kind;
        s->endpoint_fd = -1;
}

/* hcsshim's guest redials at once and then writes what it held into the new connection, so a
 * connection that comes while the old one still drains is kept, unread, until the old one ends:
 * closing it would lose those bytes (the guest only sees a later write fail). It dials again only
 * once a write into its connection failed, having closed that one (internal/guest/transport/
 * reconnect.go, redial()), and what it wrote into it before is written as far as it knows (an
 * older guest never sends it again; a newer one replays only its last 128 KiB): so a redial that
 * comes while another is kept is kept behind it, and each goes on in turn, oldest first, once the
 * one before ended. Never empty: freed with its last connection. */
struct stream_redial {
        int fds[VMM_STREAM_REDIALS_MAX]; /* oldest first */
        unsigned n;
        bool old_ended; /* the old connection's end was seen: the timer hands fds[0] over */
        struct relay_timer *timer;
};

static void stream_take_redial(struct vmm_stream *s, int fd);
static void stream_went_on(struct vmm_stream *s, int r);

static struct stream_redial *redial_free(struct stream_redial *d)
{
        if (!d)
                return NULL;
        for (unsigned i = 0; i < d->n; i++)
                safe_close(d->fds[i]);
        relay_timer_free(d->timer);
        free(d);
        return NULL;
}

static bool stream_has_redial(const struct vmm_stream *s)
{
        return s->redial && s->redial->n > 0;
}

/* The oldest kept connection, out of the queue (which goes once empty). */
static int stream_pop_redial(struct vmm_stream *s)
{
        struct stream_redial *d = s->redial;
        int fd = d->fds[0];

        d->n--;
        memmove(d->fds, d->fds + 1, d->n * sizeof(d->fds[0]));
        /* The connection it goes on over now has not ended. */
        d->old_ended = false;
        if (d->n == 0)
                s->redial = redial_free(d);
        return fd;
}

void stream_release(struct vmm_stream *s)
{
        s->redial = redial_free(s->redial);
        if (s->stream) {
                relay_stream_get_counters(s->stream, &s->counters);
                s->stream = relay_stream_free(s->stream);
        }
        s->listener = relay_listener_free(s->listener);
        s->endpoint_fd = safe_close(s->endpoint_fd);
        process_held_sync(s->process);
}

void stream_detach(struct vmm_stream *s)
{
        s->listener = relay_listener_free(s->listener);
        /* Closed, the guest dials the port where it goes next (the destination). */
        s->redial = redial_free(s->redial);
        if (s->stream)
                (void)relay_stream_detach_guest(s->stream);
        /* The next connection resumes the stream (a save rolled back). */
        s->vm_frozen = s->freeze_owed = false;
}

/* Whether the guest dials this port again after a connection ended: every stream with the resume
 * extension; without it, hcsshim's guest still redials a container init's stdout and stderr
 * (internal/guest/runtime/hcsv2), from the unwritten tail, so the port must stay open for it. */
static bool stream_keeps_listening(const struct vmm_stream *s)
{
        return process_guest(s->process)->stdio_resume || (stream_is_output(s->kind) && s->process->container_init);
}

static void stream_on_done(struct relay_stream *rs, int error, void *userdata)
{
        struct vmm_stream *s = userdata;
        struct vmm_process *p = s->process;

        /* The old connection ended and the guest already dialled again: not an end, and nothing
         * read is lost (the relay keeps it for the new connection). The relay cannot take a new
         * guest from inside this call, hence the timer. */
        if (rs && stream_has_redial(s)) {
                s->redial->old_ended = true;
                if (relay_timer_arm(s->redial->timer, 0) >= 0)
                        return;
        }

        if (error < 0)
                log_warn("vm %s: process %u: %s stream on port 0x%08x ended: %s", process_guest(p)->vm_name, p->pid,
                         vmm_stream_names[s->kind], s->port, strerror(-error));
        s->done = true;
        s->error = error;
        if (error < 0 && rs) {
                struct relay_stream_counters c;

                relay_stream_get_counters(rs, &c);
                s->dropped = s->kind == VMM_STDIN ? c.rx_endpoint - c.tx_guest : c.rx_guest - c.tx_endpoint;
                p->table->dropped_bytes += s->dropped;
        }
        if (error < 0)
                p->table->stream_errors++;
        /* The journal writes only what changed: without this the record keeps the stream open, and
         * a restart would wait out the drain for output that already ended (or reopen a stdin that had). */
        (void)process_table_changed(p->table, p->pid, false);
        /* A drop can look like EOF (Unix sockets say nothing else): a stream the guest redials keeps
         * its relay stream and listener until the exit is reported, so the redial goes on there. */
        if (!stream_keeps_listening(s) || p->exit_reported)
                stream_release(s);
        if (stream_is_output(s->kind))
                process_maybe_report(p);
}

static void stream_on_tap(struct relay_stream *rs, const void *data, size_t len, void *userdata)
{
        struct vmm_stream *s = userdata;
        struct vmm_process *p = s->process;

        /* The relay taps every stream; what went to stdin is neither log nor attach output. */
        if (s->kind == VMM_STDIN)
                return;
        if (p->log_journald)
                process_journal_write(p, s->kind == VMM_STDOUT ? LOG_K8S_STDOUT : LOG_K8S_STDERR, data, len);
        if (p->log_fd >= 0) {
                int r = process_log_write(p, s->kind == VMM_STDOUT ? LOG_K8S_STDOUT : LOG_K8S_STDERR, data, len,
                                          process_realtime_ns());

                if (r < 0)
                        log_warn("vm %s: process %u: writing its k8s-file log: %s", process_guest(p)->vm_name, p->pid,
                                 strerror(-r));
        }

        if (s->process->attach)
                attach_output(s->process->attach, s->kind == VMM_STDOUT ? ATTACH_STREAM_STDOUT : ATTACH_STREAM_STDERR,
                              data, len, !s->endpoint);
}

/* Asked by the relay before each read from the guest on its splice path: while nobody wants the
 * copy stream_on_tap() makes, the bytes may go guest -> pipe -> endpoint without passing through
 * us. Every consumer of stream_on_tap() must be named here, or it would miss spliced bytes. */
static bool stream_tap_wanted(struct relay_stream *rs, void *userdata)
{
        struct vmm_stream *s = userdata;
        struct vmm_process *p = s->process;

        if (s->kind == VMM_STDIN)
                return false;
        /* A k8s-file log between two files (rotation) still wants every byte. */
        if (p->log_journald || p->log_fd >= 0 || p->log_path)
                return true;
        return p->attach && attach_wants_output(p->attach, !s->endpoint);
}

static void stream_report_frozen(struct vmm_stream *s)
{
        struct vmm_processes *t = s->process->table;

        if (!s->freeze_owed)
                return;
        s->freeze_owed = false;
        if (t->ops && t->ops->on_stream_frozen)
                t->ops->on_stream_frozen(t->userdata);
}

/* CloseStdin's end: the record must say so too, or a restart listens for that stdin and feeds it
 * again. */
void stream_mark_closed(struct vmm_stream *s)
{
        s->done = true;
        (void)process_table_changed(s->process->table, s->process->pid, false);
}

static void stream_on_frozen(struct relay_stream *rs, void *userdata)
{
        struct vmm_stream *s = userdata;

        /* CloseStdin froze it, or came while a stop's freeze drained it: all that was read went
         * to the guest, which now sees EOF. That freeze counts it first. */
        if (s->close_requested) {
                stream_report_frozen(s);
                /* With the end confirmation CloseStdin half-closes instead (end_input), and a
                 * VM's freeze (a save, a hold, a stop) caught it before the half-close: kept, as
                 * an ended stdin is, a thaw half-closes it, a hand-over passes its connection on,
                 * and its listener takes the guest's redial. Released, the guest took the close
                 * for a host gone away and redialled a port nobody listened on: no end came. */
                if (!process_guest(s->process)->stdin_eof)
                        stream_release(s);
                stream_mark_closed(s);
                return;
        }
        /* The guest dialled again while the freeze drained the connection it gave up: that one
         * runs on to its end (its bytes come first), then stream_take_redial() takes the kept one
         * and freezes it in turn, so the freeze also reads what the guest wrote into it. */
        if (s->freeze_owed && stream_is_output(s->kind) && stream_has_redial(s) && relay_stream_resume(rs) >= 0)
                return;
        /* The VM froze it (a save, a hold or a stop): it counts them. */
        stream_report_frozen(s);
}

/* CloseStdin froze it (without the end confirmation): stream_on_frozen() ends it once drained. */
static bool stream_closing(const struct vmm_stream *s)
{
        return s->close_requested && !process_guest(s->process)->stdin_eof;
}

bool stream_freeze(struct vmm_stream *s)
{
        /* A stop's freeze skips what a save's holds already (relay_stream_freeze: -EALREADY). */
        if (!s->stream || s->vm_frozen)
                return false;
        /* A redial is kept until the old connection ends (stream_park_redial): the guest gave that
         * one up, so it ends; freezing only then, over the kept connection, loses neither's bytes.
         * One that ended is kept for the guest's redial (stream_keeps_listening): frozen too, so a
         * redial during the freeze joins it frozen and its bytes wait in the socket, rather than
         * resuming it while the freeze counts (and a hand-over passes its fd on). */
        int r = stream_is_output(s->kind) && stream_has_redial(s) ? 0 : relay_stream_freeze(s->stream);

        /* CloseStdin's own freeze still drains it: this one takes it over and counts it once
         * drained, never mid-drain. */
        if (r < 0 && !(r == -EALREADY && stream_closing(s)))
                return false;
        s->vm_frozen = s->freeze_owed = true;
        return true;
}

void stream_thaw(struct vmm_stream *s)
{
        s->vm_frozen = s->freeze_owed = false;
        /* A stdin CloseStdin froze stays so: its drain goes on to its end. */
        if (s->stream && !stream_closing(s))
                (void)relay_stream_resume(s->stream);
}

static const struct relay_stream_ops stream_ops = {
        .on_done = stream_on_done,
        .on_frozen = stream_on_frozen,
        .on_tap = stream_on_tap,
        .tap_wanted = stream_tap_wanted,
};

/* Each connection follows the mode the guest's bridge agreed when it came: the guest frees its
 * replay buffer by our acks only when it agreed to them, and it confirms stdin's end only then. */
static void stream_follow_ack(struct vmm_stream *s)
{
        if (!s->stream)
                return;
        if (s->kind != VMM_STDIN)
                (void)relay_stream_set_ack(s->stream, process_guest(s->process)->stdio_ack);
        else
                (void)relay_stream_set_eof_confirm(s->stream, process_guest(s->process)->stdin_eof);
}

/* The old connection ended: the oldest kept one takes its place. */
static void redial_on_timer(struct relay_timer *t, void *userdata)
{
        struct vmm_stream *s = userdata;
        int r = relay_stream_replace_guest(s->stream, s->redial->fds[0], process_guest(s->process)->stdio_resume);

        /* The relay was not yet done with the old one: try again shortly. */
        if (r == -EBUSY) {
                (void)relay_timer_arm(s->redial->timer, 1000 * 1000);
                return;
        }
        (void)stream_pop_redial(s); /* replace_guest took it */
        stream_went_on(s, r);
}

static void stream_park_redial(struct vmm_stream *s, int fd)
{
        struct vmm_process *p = s->process;

        if (!s->redial) {
                _cleanup_free_ struct stream_redial *d = calloc(1, sizeof(*d));
                int r = d ? relay_timer_new(process_ctx(p)->relay, redial_on_timer, s, &d->timer) : -ENOMEM;

                if (r < 0) {
                        log_warn("vm %s: process %u: cannot keep the %s redial: %s", process_guest(p)->vm_name, p->pid,
                                 vmm_stream_names[s->kind], strerror(-r));
                        safe_close(fd);
                        return;
                }
                s->redial = TAKE_PTR(d);
        }
        if (s->redial->n == VMM_STREAM_REDIALS_MAX) {
                /* The guest redials only after a failed write: this many during one drain is no
                 * guest's, and each kept one holds an fd. */
                log_warn("vm %s: process %u: %s redialled with %u connections kept unread already; closing the newest",
                         process_guest(p)->vm_name, p->pid, vmm_stream_names[s->kind], VMM_STREAM_REDIALS_MAX);
                safe_close(fd);
                return;
        }
        log_debug("vm %s: process %u: %s redialled before the old connection ended; kept until it does",
                  process_guest(p)->vm_name, p->pid, vmm_stream_names[s->kind]);
        s->redial->fds[s->redial->n++] = fd;
}

/* The guest redialled a stream we kept (across a save, or after a drop): carry on where it
 * stopped. */
static void stream_take_redial(struct vmm_stream *s, int fd)
{
        int r;

        /* Connections kept before it go first. Or it came after a VM's freeze had drained the old
         * connection, which did not end: what the guest wrote into that one since waits in its
         * socket and would die with the swap. Kept, the old one goes first at a thaw (or on the
         * daemon a live hand-over passes them all to). */
        if (stream_has_redial(s) || (s->vm_frozen && !s->freeze_owed && !s->done && stream_is_output(s->kind))) {
                stream_park_redial(s, fd);
                return;
        }
        r = relay_stream_replace_guest(s->stream, fd, process_guest(s->process)->stdio_resume);
        if (r == -EBUSY) {
                stream_park_redial(s, fd);
                return;
        }
        stream_went_on(s, r);
}

/* replace_guest answered r (not -EBUSY): the stream goes on over its new connection, as the
 * VM's freeze wants it. */
static void stream_went_on(struct vmm_stream *s, int r)
{
        struct vmm_process *p = s->process;

        if (r >= 0 && s->freeze_owed) {
                /* A VM's freeze waits for this stream: it kept running (or resumed) for the old
                 * connection to end. Frozen now, its drain reads what the guest wrote into this one. */
                (void)relay_stream_resume(s->stream); /* -EINVAL: it ran */
                r = relay_stream_freeze(s->stream);
        } else if (r >= 0 && !s->vm_frozen) {
                int k = relay_stream_resume(s->stream);

                if (k < 0 && k != -EINVAL) /* -EINVAL: it was not frozen */
                        r = k;
        }
        /* Else the old connection had ended before a freeze flushed the stream: it stays frozen,
         * the connection's bytes wait in its socket for a thaw (or a hand-over, which passes the
         * fd on). */
        if (r < 0) {
                log_warn("vm %s: process %u: cannot resume %s: %s", process_guest(p)->vm_name, p->pid,
                         vmm_stream_names[s->kind], strerror(-r));
                /* No flush will come: the freeze must not wait for one. */
                stream_report_frozen(s);
                stream_on_done(NULL, r, s);
                return;
        }
        s->done = false;
        s->error = 0;
        stream_follow_ack(s);
}

static void stream_on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct vmm_stream *s = userdata;
        struct vmm_process *p = s->process;
        /* With V4 agreed every stdio connection, the first one too, starts with the byte count. */
        bool resume = process_guest(p)->stdio_resume;
        int r;

        if (!stream_keeps_listening(s) || fd < 0)
                s->listener = relay_listener_free(s->listener);
        /* Before stream_on_done(), which may report the exit and forget p. */
        process_held_sync(p);
        if (fd >= 0 && s->close_requested && !process_guest(p)->stdin_eof) {
                /* CloseStdin came before the guest dialled: it sees EOF at once (with the end
                 * confirmation the stream below has no endpoint: the end, confirmed). */
                s->listener = relay_listener_free(s->listener);
                process_held_sync(p);
                (void)shutdown(fd, SHUT_RDWR);
                safe_close(fd);
                stream_mark_closed(s);
                return;
        }
        if (fd < 0) {
                log_warn("vm %s: %s listener on port 0x%08x failed: %s", process_guest(p)->vm_name,
                         vmm_stream_names[s->kind], s->port, strerror(-fd));
                stream_on_done(NULL, fd, s);
                return;
        }
        if (s->stream) {
                stream_take_redial(s, fd);
                return;
        }
        r = relay_stream_new_at(process_ctx(p)->relay,
                                s->kind == VMM_STDIN ? RELAY_STREAM_TO_GUEST : RELAY_STREAM_FROM_GUEST, fd,
                                s->endpoint_fd, &stream_ops, &s->counters, resume, s, &s->stream);
        if (r < 0) {
                safe_close(fd);
                log_warn("vm %s: %s stream on port 0x%08x: %s", process_guest(p)->vm_name, vmm_stream_names[s->kind],
                         s->port, strerror(-r));
                stream_on_done(NULL, r, s);
                return;
        }
        s->endpoint_fd = -1; /* the stream owns it now */
        process_held_sync(p);
        /* A record trails what a crashed daemon sent: the guest's stdin count says where it is. */
        if (s->kind == VMM_STDIN && p->recovering)
                relay_stream_set_seed_stale(s->stream);
        stream_follow_ack(s);
}

int stream_listen(struct vmm_stream *s)
{
        const struct vmm_guest *g = process_guest(s->process);

        int r = relay_listen(g->ctx->relay, g->listen_transport, s->port,
                             stream_keeps_listening(s) ? RELAY_LISTEN_MANY : RELAY_LISTEN_ONCE, stream_on_accept, s,
                             &s->listener);

        process_held_sync(s->process);
        return r;
}

bool stream_redial_expected(const struct vmm_stream *s)
{
        struct vmm_process *p = s->process;

        /* With the resume extension every stream comes back; hcsshim's guest redials only a
         * container init's stdout and stderr (internal/guest/runtime/hcsv2). */
        return process_guest(p)->stdio_resume || p->container_init;
}

bool stream_kept_for_redial(const struct vmm_stream *s)
{
        /* What stream_on_done() keeps; once the exit is reported nothing comes any more. */
        return s->done && s->port != 0 && !s->process->exit_reported && stream_keeps_listening(s);
}

bool stream_awaits_stdin_end_redial(const struct vmm_stream *s)
{
        /* Once the exit is reported nothing reads stdin: process_report() let its listener go, and
         * a port listened on again then would stay so until the process is forgotten. */
        return s->kind == VMM_STDIN && s->done && s->port != 0 && process_guest(s->process)->stdin_eof &&
               !s->process->exit_reported;
}

int stream_adopt(struct vmm_stream *s, int guest_fd)
{
        struct vmm_process *p = s->process;
        int r;

        r = relay_stream_new_at(process_ctx(p)->relay,
                                s->kind == VMM_STDIN ? RELAY_STREAM_TO_GUEST : RELAY_STREAM_FROM_GUEST, guest_fd,
                                s->endpoint_fd, &stream_ops, &s->counters, false, s, &s->stream);
        if (r < 0)
                return r;
        s->endpoint_fd = -1; /* the stream owns it now */
        process_held_sync(p);
        stream_follow_ack(s);
        return 0;
}

int stream_hand_over_redial(struct vmm_stream *s)
{
        return stream_has_redial(s) ? stream_pop_redial(s) : -1;
}

int stream_adopt_redial(struct vmm_stream *s, int fd)
{
        int r;

        /* Kept as on the old daemon: the old connection runs to its end first (stream_on_done). */
        if (s->stream) {
                stream_park_redial(s, fd);
                return 0;
        }
        /* No old connection came with it: the redial is the guest's one. */
        r = stream_adopt(s, fd);
        if (r < 0)
                safe_close(fd);
        return r;
}

int stream_adopt_listener(struct vmm_stream *s, int fd)
{
        const struct vmm_guest *g = process_guest(s->process);

        int r = relay_listen_adopt(g->ctx->relay, g->listen_transport, s->port, fd,
                                   stream_keeps_listening(s) ? RELAY_LISTEN_MANY : RELAY_LISTEN_ONCE, stream_on_accept,
                                   s, &s->listener);

        process_held_sync(s->process);
        return r;
}
